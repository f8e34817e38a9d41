//! One function per subcommand.

use std::path::Path;
use std::time::Duration;

use agentmesh_proto::v1::orchestrator_service_client::OrchestratorServiceClient;
use agentmesh_proto::v1::{
    CancelRunRequest, EndpointHealth, FanInPolicy, GetRunRequest, ListAgentsRequest,
    ListRunsRequest, PlanRequest, RunSpec, RunState, SubmitRequest,
};
use agentmesh_runtime::auth::AuthChannel;
use serde_json::json;

use crate::args::{FanIn, MeshOpts, RunOpts};
use crate::client::{CliError, Exit, Target, connect};
use crate::follow::{Show, exit_of, follow};
use crate::local::LocalMesh;
use crate::output;
use crate::output::say;

/// The goal `meshctl demo` runs.
pub const DEMO_GOAL: &str =
    "Generate a Q2 sales performance report with visualizations and an executive summary";

type Client = OrchestratorServiceClient<AuthChannel>;

fn spec(goal: &str, opts: Option<&RunOpts>) -> RunSpec {
    RunSpec {
        goal: goal.to_string(),
        fan_in: opts.map_or(FanInPolicy::Unspecified, |o| match o.fan_in {
            FanIn::AllRequired => FanInPolicy::AllRequired,
            FanIn::BestEffort => FanInPolicy::BestEffort,
        }) as i32,
        deadline: opts
            .and_then(|o| o.deadline)
            .and_then(|s| Duration::from_secs(s).try_into().ok()),
        ..RunSpec::default()
    }
}

/// `meshctl run`: submit, follow with progress (Ctrl-C cancels), write the
/// report, print the executive summary.
pub async fn run(
    target: &Target,
    json: bool,
    goal: &str,
    opts: &RunOpts,
) -> Result<Exit, CliError> {
    let mut client = connect(target).await?;
    run_with(&mut client, json, goal, opts).await
}

async fn run_with(
    client: &mut Client,
    json: bool,
    goal: &str,
    opts: &RunOpts,
) -> Result<Exit, CliError> {
    // A key of its own, so that sending the request again after a
    // connection failure cannot start the run twice.
    let mut spec = spec(goal, Some(opts));
    spec.idempotency_key = format!("meshctl-{}", uuid::Uuid::new_v4());
    let run_id = submit_safely(client, spec).await?;
    if !json {
        eprintln!("run {run_id}: {goal}");
    }
    let show = if json { Show::Quiet } else { Show::Human };
    let followed = {
        let mut watcher = client.clone();
        let prompt = show == Show::Human && crate::people::can_prompt();
        let fut = follow(&mut watcher, &run_id, 0, show, prompt);
        tokio::pin!(fut);
        tokio::select! {
            res = &mut fut => res?,
            _ = tokio::signal::ctrl_c() => {
                eprintln!("\ncanceling run {run_id}...");
                let state = client
                    .cancel_run(CancelRunRequest { run_id: run_id.clone(), reason: "Ctrl-C in meshctl".into() })
                    .await?
                    .into_inner()
                    .state();
                eprintln!("run {run_id}: {}", output::state_name(state));
                return Ok(Exit::Canceled);
            }
        }
    };
    finish(&run_id, json, &opts.out, followed)
}

/// How often `meshctl run` sends a Submit again when the connection failed
/// before an answer.
const SUBMIT_TRIES: u32 = 3;

/// Submits `spec`, sending it again (same idempotency key, with backoff)
/// when the orchestrator could not be reached: the key makes a repeat
/// answer with the run the first one made.
async fn submit_safely(client: &mut Client, spec: RunSpec) -> Result<String, CliError> {
    let backoff = agentmesh_runtime::backoff::Backoff {
        base: Duration::from_millis(200),
        max: Duration::from_secs(2),
    };
    let mut tries = 0;
    loop {
        tries += 1;
        let request = SubmitRequest {
            spec: Some(spec.clone()),
        };
        match client.submit(request).await {
            Ok(resp) => return Ok(resp.into_inner().run_id),
            Err(status) if status.code() == tonic::Code::Unavailable && tries < SUBMIT_TRIES => {
                eprintln!(
                    "submit: {} (try {tries} of {SUBMIT_TRIES}); sending it again",
                    status.message()
                );
                tokio::time::sleep(backoff.delay(tries)).await;
            }
            Err(status) => return Err(status.into()),
        }
    }
}

fn finish(
    run_id: &str,
    json: bool,
    out: &Path,
    followed: crate::follow::Followed,
) -> Result<Exit, CliError> {
    let Some(finished) = followed.finished else {
        return Err(CliError::new(
            Exit::Failed,
            "the run ended without a result",
        ));
    };
    let dir = output::write_report(
        out,
        run_id,
        &followed.goal,
        &finished,
        &followed.files,
        &followed.outputs,
    )
    .map_err(|e| {
        CliError::new(
            Exit::Failed,
            format!("writing the report to {}: {e}", out.display()),
        )
    })?;
    let exit = exit_of(&finished);
    if json {
        let text = std::fs::read_to_string(dir.join("report.json")).unwrap_or_default();
        say!("{text}");
        return Ok(exit);
    }
    let report = finished.report.clone().unwrap_or_default();
    say!();
    say!("{}", report.title);
    say!(
        "state: {}{}",
        output::state_name(finished.state()),
        if finished.message.is_empty() {
            String::new()
        } else {
            format!(" ({}: {})", finished.reason, finished.message)
        }
    );
    if let Some(summary) = report
        .sections
        .iter()
        .find(|s| s.title == "Executive summary" && !s.missing)
    {
        say!("\n{}\n", summary.body.trim());
    } else if !report.summary.is_empty() {
        say!("\n{}\n", report.summary);
    }
    for s in report.sections.iter().filter(|s| s.missing) {
        say!("missing: {} — {}", s.title, s.missing_reason);
    }
    let html = dir.join("report.html");
    if html.exists() {
        say!("report: {}", html.display());
    } else {
        say!("report: {}", dir.join("report.json").display());
    }
    Ok(exit)
}

/// `meshctl plan`.
pub async fn plan(target: &Target, json: bool, goal: &str) -> Result<Exit, CliError> {
    let mut client = connect(target).await?;
    let planned = client
        .plan(PlanRequest {
            spec: Some(spec(goal, None)),
        })
        .await?
        .into_inner()
        .planned
        .unwrap_or_default();
    if json {
        say!("{:#}", output::planned(&planned));
        return Ok(Exit::Ok);
    }
    if let Some(i) = &planned.intent {
        let period = i
            .period
            .as_ref()
            .map(|p| p.label.clone())
            .unwrap_or_default();
        let deliverables: Vec<String> = i
            .deliverables()
            .map(|d| {
                d.as_str_name()
                    .trim_start_matches("DELIVERABLE_")
                    .to_lowercase()
            })
            .collect();
        say!("period:       {period}");
        say!("deliverables: {}", deliverables.join(", "));
        for f in &i.filters {
            say!("filter:       {} = {}", f.field, f.values.join(", "));
        }
        let mut cmp = Vec::new();
        if i.compare_previous {
            cmp.push("previous period".to_string());
        }
        if i.compare_year_ago {
            cmp.push("a year earlier".to_string());
        }
        cmp.extend(i.compare_period.as_ref().map(|p| p.label.clone()));
        if !cmp.is_empty() {
            say!("compare with: {}", cmp.join(", "));
        }
        for n in &i.notes {
            say!("note:         {n}");
        }
        say!();
    }
    let rows: Vec<Vec<String>> = planned
        .steps
        .iter()
        .map(|s| {
            let step = s.step.clone().unwrap_or_default();
            vec![
                step.id,
                step.skill,
                if s.agent.is_empty() {
                    "(none serving)".into()
                } else {
                    format!("{} @ {}", s.agent, s.endpoint)
                },
                if s.after.is_empty() {
                    "-".into()
                } else {
                    s.after.join(", ")
                },
            ]
        })
        .collect();
    output::table(&["STEP", "SKILL", "AGENT @ REPLICA", "AFTER"], &rows);
    say!();
    for s in &planned.steps {
        if let Some(step) = &s.step {
            say!("{}: {}", step.id, step.rationale);
        }
    }
    Ok(Exit::Ok)
}

/// `meshctl agents`.
pub async fn agents(target: &Target, json: bool) -> Result<Exit, CliError> {
    let mut client = connect(target).await?;
    let endpoints = client
        .list_agents(ListAgentsRequest {})
        .await?
        .into_inner()
        .endpoints;
    if json {
        say!(
            "{:#}",
            json!(endpoints.iter().map(output::endpoint).collect::<Vec<_>>())
        );
        return Ok(Exit::Ok);
    }
    let rows: Vec<Vec<String>> = endpoints
        .iter()
        .map(|e| {
            let card = e.card.clone().unwrap_or_default();
            let health = if e.ejected {
                "EJECTED".to_string()
            } else {
                output::health_name(e.health()).to_string()
            };
            vec![
                e.address.clone(),
                health,
                card.name,
                card.version,
                card.skills
                    .iter()
                    .map(|s| s.id.clone())
                    .collect::<Vec<_>>()
                    .join(","),
                format!("{}/{}", e.in_flight, card.max_concurrency),
                format!("{:.0}%", e.error_rate * 100.0),
                e.source.clone(),
            ]
        })
        .collect();
    output::table(
        &[
            "ADDRESS", "HEALTH", "AGENT", "VERSION", "SKILLS", "LOAD", "ERRORS", "SOURCE",
        ],
        &rows,
    );
    let serving = endpoints
        .iter()
        .filter(|e| e.health() == EndpointHealth::Serving)
        .count();
    say!("\n{serving} of {} serving", endpoints.len());
    Ok(Exit::Ok)
}

/// `meshctl runs`.
pub async fn runs(
    target: &Target,
    json: bool,
    limit: u32,
    waiting: bool,
) -> Result<Exit, CliError> {
    let mut client = connect(target).await?;
    let states = if waiting {
        vec![RunState::Waiting.into()]
    } else {
        Vec::new()
    };
    let runs = client
        .list_runs(ListRunsRequest { limit, states })
        .await?
        .into_inner()
        .runs;
    if waiting && !json {
        crate::people::print_waiting(&runs);
        return Ok(Exit::Ok);
    }
    if json {
        say!(
            "{:#}",
            json!(runs.iter().map(output::run_summary).collect::<Vec<_>>())
        );
        return Ok(Exit::Ok);
    }
    let rows: Vec<Vec<String>> = runs
        .iter()
        .map(|r| {
            vec![
                r.run_id.clone(),
                output::state_name(r.state()).to_string(),
                output::ts(r.created.as_ref())
                    .as_str()
                    .unwrap_or("")
                    .to_string(),
                r.goal.chars().take(60).collect(),
            ]
        })
        .collect();
    output::table(&["RUN", "STATE", "CREATED", "GOAL"], &rows);
    Ok(Exit::Ok)
}

/// `meshctl get`.
pub async fn get(target: &Target, json: bool, run: &str) -> Result<Exit, CliError> {
    let mut client = connect(target).await?;
    let got = client
        .get_run(GetRunRequest {
            run_id: run.to_string(),
        })
        .await?
        .into_inner();
    let summary = got.run.unwrap_or_default();
    if json {
        say!(
            "{:#}",
            json!({
                "run": output::run_summary(&summary),
                "plan": got.planned.as_ref().map(output::planned),
                "finished": got.finished.as_ref().map(|f| json!({
                    "state": output::state_name(f.state()), "reason": f.reason, "message": f.message,
                    "report": f.report.as_ref().map(output::report),
                })),
            })
        );
        return Ok(got.finished.as_ref().map_or(Exit::Ok, exit_of));
    }
    say!("run:     {}", summary.run_id);
    say!("goal:    {}", summary.goal);
    say!("state:   {}", output::state_name(summary.state()));
    say!("events:  {}", summary.last_seq);
    if let Some(p) = &got.planned {
        let steps: Vec<String> = p
            .steps
            .iter()
            .filter_map(|s| s.step.as_ref().map(|s| format!("{} ({})", s.id, s.skill)))
            .collect();
        say!("steps:   {}", steps.join(", "));
    }
    if let Some(f) = &got.finished {
        if !f.message.is_empty() {
            say!("result:  {}: {}", f.reason, f.message);
        }
        if let Some(r) = &f.report {
            say!("summary: {}", r.summary);
            for p in &r.provenance {
                say!(
                    "  {} by {} @ {} ({} v{}, {} attempt(s))",
                    p.step_id,
                    p.agent,
                    p.endpoint,
                    p.skill,
                    p.agent_version,
                    p.attempts
                );
            }
        }
    }
    Ok(got.finished.as_ref().map_or(Exit::Ok, exit_of))
}

/// `meshctl watch`.
pub async fn watch(
    target: &Target,
    json: bool,
    run: &str,
    after: u64,
    out: Option<&Path>,
) -> Result<Exit, CliError> {
    let mut client = connect(target).await?;
    let show = if json { Show::JsonLines } else { Show::Human };
    let followed = follow(&mut client, run, after, show, false).await?;
    let Some(finished) = &followed.finished else {
        return Err(CliError::new(
            Exit::Failed,
            "the run ended without a result",
        ));
    };
    let exit = exit_of(finished);
    if let Some(out) = out {
        return finish(run, json, out, followed).map(|_| exit);
    }
    if !json {
        say!("{}: {}", run, output::state_name(finished.state()));
    }
    Ok(exit)
}

/// `meshctl cancel`.
pub async fn cancel(target: &Target, json: bool, run: &str) -> Result<Exit, CliError> {
    let mut client = connect(target).await?;
    let state = client
        .cancel_run(CancelRunRequest {
            run_id: run.to_string(),
            reason: "meshctl cancel".into(),
        })
        .await?
        .into_inner()
        .state();
    if json {
        say!(
            "{}",
            json!({"run_id": run, "state": output::state_name(state)})
        );
    } else {
        say!("{run}: {}", output::state_name(state));
    }
    Ok(Exit::Ok)
}

fn print_mesh(mesh: &LocalMesh, opts: &MeshOpts) {
    let rows: Vec<Vec<String>> = mesh
        .services
        .iter()
        .map(|s| {
            vec![
                s.name.clone(),
                s.addr.to_string(),
                s.pid().map(|p| p.to_string()).unwrap_or_default(),
                s.log.display().to_string(),
            ]
        })
        .collect();
    output::table(&["SERVICE", "ADDRESS", "PID", "LOG"], &rows);
    if let Some(a2a) = mesh.a2a() {
        say!(
            "A2A (JSON-RPC; gRPC on the orchestrator's port): http://{a2a}/ — card at http://{a2a}/.well-known/agent-card.json"
        );
    }
    if let Some(viewer) = mesh.viewer() {
        say!("run viewer (runs, plans live, reports, approvals): http://{viewer}/");
    }
    say!("working folder: {}", opts.dir.display());
}

/// Waits (bounded) until the orchestrator sees every agent SERVING.
async fn wait_discovered(client: &mut Client, n: usize) -> Result<(), CliError> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let endpoints = client
            .list_agents(ListAgentsRequest {})
            .await?
            .into_inner()
            .endpoints;
        let serving = endpoints
            .iter()
            .filter(|e| e.health() == EndpointHealth::Serving && e.card.is_some())
            .count();
        if serving >= n {
            return Ok(());
        }
        if tokio::time::Instant::now() > deadline {
            return Err(CliError::new(
                Exit::Failed,
                format!("the orchestrator discovered {serving} of {n} agents"),
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `meshctl up`.
pub async fn up(opts: &MeshOpts) -> Result<Exit, CliError> {
    eprintln!("starting the local mesh in {} ...", opts.dir.display());
    let mut mesh = LocalMesh::start(opts).await?;
    let addr = mesh
        .orchestrator()
        .map(|a| a.to_string())
        .unwrap_or_default();
    let mut client = connect(&Target::plain(addr.clone())).await?;
    let agents = mesh.services.len() - 1;
    wait_discovered(&mut client, agents).await?;
    print_mesh(&mesh, opts);
    say!(
        "\nall {} services SERVING; the orchestrator discovered {agents} agents through health checks.",
        mesh.services.len()
    );
    say!("try: meshctl --orchestrator {addr} run \"{DEMO_GOAL}\"");
    say!("press Ctrl-C to stop");
    let exit = tokio::select! {
        _ = tokio::signal::ctrl_c() => Exit::Ok,
        (name, status) = mesh.any_exit() => {
            eprintln!("{name} exited ({status}); stopping the others");
            Exit::Failed
        }
    };
    eprintln!("stopping ...");
    mesh.shutdown().await;
    eprintln!("stopped");
    Ok(exit)
}

/// `meshctl demo`.
pub async fn demo(opts: &MeshOpts, out: &Path) -> Result<Exit, CliError> {
    eprintln!(
        "starting the local mesh in {} (the data agent generates its database on first start) ...",
        opts.dir.display()
    );
    let mut mesh = LocalMesh::start(opts).await?;
    let result = async {
        let addr = mesh
            .orchestrator()
            .map(|a| a.to_string())
            .unwrap_or_default();
        let mut client = connect(&Target::plain(addr)).await?;
        let agents = mesh.services.len() - 1;
        wait_discovered(&mut client, agents).await?;
        print_mesh(&mesh, opts);
        eprintln!("\ngoal: {DEMO_GOAL}\n");
        let run_opts = RunOpts {
            out: out.to_path_buf(),
            fan_in: FanIn::AllRequired,
            deadline: None,
        };
        run_with(&mut client, false, DEMO_GOAL, &run_opts).await
    }
    .await;
    eprintln!("stopping the local mesh ...");
    mesh.shutdown().await;
    result
}
