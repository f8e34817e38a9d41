//! `meshctl`: the command-line client of the Orchestrator API, the local
//! mesh launcher (`up`), the one-command demo (`demo`) and the agent
//! conformance suite (`conformance`).

mod args;
mod client;
mod commands;
mod conformance;
mod follow;
mod local;
mod output;
mod people;

use clap::Parser;

// mimalloc: the services allocate and free many small objects per request
// across worker threads; measured in docs/BENCHMARKS.md.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use crate::args::{Cli, Command};
use crate::client::{CliError, Exit, Target};

async fn dispatch(cli: Cli) -> Result<Exit, CliError> {
    let json = cli.json;
    let token = cli.token.as_deref();
    let target = || Target::new(&cli.orchestrator, &cli.tls)?.with_token(token);
    match cli.command {
        Command::Run { goal, opts } => commands::run(&target()?, json, &goal, &opts).await,
        Command::Plan { goal } => commands::plan(&target()?, json, &goal).await,
        Command::Agents => commands::agents(&target()?, json).await,
        Command::Runs { limit, waiting } => commands::runs(&target()?, json, limit, waiting).await,
        Command::Answer {
            run,
            step,
            answer,
            text,
        } => {
            let answer = people::parse_answer(answer.as_deref(), text)?;
            people::answer(&target()?, json, &run, &step, answer).await
        }
        Command::Approve { run, step, reason } => {
            people::answer(
                &target()?,
                json,
                &run,
                &step,
                people::approval(true, reason),
            )
            .await
        }
        Command::Reject { run, step, reason } => {
            people::answer(
                &target()?,
                json,
                &run,
                &step,
                people::approval(false, reason),
            )
            .await
        }
        Command::Get { run } => commands::get(&target()?, json, &run).await,
        Command::Watch { run, after, out } => {
            commands::watch(&target()?, json, &run, after, out.as_deref()).await
        }
        Command::Cancel { run } => commands::cancel(&target()?, json, &run).await,
        Command::Conformance {
            agent,
            inputs,
            task_timeout,
        } => {
            let timeout = std::time::Duration::from_secs(task_timeout);
            let target = Target::new(&agent, &cli.tls)?.with_token(token)?;
            conformance::conformance(&target, json, &inputs, timeout).await
        }
        Command::Up { mesh } => commands::up(&mesh).await,
        Command::Demo { mesh, out } => commands::demo(&mesh, &out).await,
        Command::Serve { service, args } => local::serve(&service, args).await.map(|()| Exit::Ok),
    }
}

#[tokio::main]
async fn main() {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() {
                Exit::Usage
            } else {
                Exit::Ok
            };
            let _ = e.print();
            std::process::exit(code as i32);
        }
    };
    let code = match dispatch(cli).await {
        Ok(exit) => exit,
        Err(e) => {
            eprintln!("error: {e}");
            e.exit
        }
    };
    std::process::exit(code as i32);
}
