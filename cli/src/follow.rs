//! Following a run: live progress (one line per step with agent, replica,
//! state, attempt and elapsed time; retries and reroutes shown), artifacts
//! collected, and reconnection after a dropped connection, resuming after
//! the last event received so nothing is missed or repeated.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::time::Duration;

use agentmesh_proto::json::from_opt_struct;
use agentmesh_proto::v1::orchestrator_service_client::OrchestratorServiceClient;
use agentmesh_proto::v1::{RunEvent, RunFinished, WatchRunRequest, run_event, task_event};
use agentmesh_runtime::auth::AuthChannel;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::Value;
use tokio_stream::StreamExt;
use tonic::Code;

use crate::client::{CliError, Exit};
use crate::output::say;

/// How long `follow` keeps trying to reconnect.
const RECONNECT_FOR: Duration = Duration::from_secs(120);

/// What a followed run produced.
#[derive(Default)]
pub struct Followed {
    /// The final event.
    pub finished: Option<RunFinished>,
    /// Report files by name (from ReportChunk events).
    pub files: BTreeMap<String, Vec<u8>>,
    /// Step outputs by step id.
    pub outputs: BTreeMap<String, Value>,
    /// The goal (from the plan event).
    pub goal: String,
    /// Last sequence number seen.
    pub last_seq: u64,
}

/// How events are shown.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Show {
    /// Progress bars on a terminal, plain lines otherwise (stderr).
    Human,
    /// One JSON line per event on stdout.
    JsonLines,
    /// Nothing.
    Quiet,
}

struct Ui {
    show: Show,
    bars: MultiProgress,
    steps: BTreeMap<String, ProgressBar>,
    tty: bool,
}

impl Ui {
    fn new(show: Show) -> Self {
        let tty = std::io::stderr().is_terminal();
        let target = if show == Show::Human && tty {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        };
        Self {
            show,
            bars: MultiProgress::with_draw_target(target),
            steps: BTreeMap::new(),
            tty,
        }
    }

    fn bar(&mut self, step: &str) -> ProgressBar {
        let style = ProgressStyle::with_template("{spinner} {prefix:<10} {elapsed:>4} {wide_msg}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner());
        self.steps
            .entry(step.to_string())
            .or_insert_with(|| {
                let bar = self.bars.add(ProgressBar::new_spinner());
                bar.set_style(style);
                bar.set_prefix(step.to_string());
                bar.set_message("waiting");
                bar
            })
            .clone()
    }

    /// A line for logs when there is no terminal to draw on.
    fn line(&self, text: &str) {
        if self.show == Show::Human && !self.tty {
            eprintln!("{text}");
        }
    }

    fn event(&mut self, ev: &RunEvent) {
        if self.show == Show::JsonLines {
            say!("{}", event_json(ev));
            return;
        }
        if self.show == Show::Quiet {
            return;
        }
        let Some(e) = &ev.event else { return };
        match e {
            run_event::Event::Planned(p) => {
                self.line(&format!(
                    "run {}: {} steps planned",
                    ev.run_id,
                    p.steps.len()
                ));
                for s in &p.steps {
                    if let Some(step) = &s.step {
                        let bar = self.bar(&step.id);
                        bar.set_message(format!("waiting  {}", step.skill));
                    }
                }
            }
            run_event::Event::StepStarted(s) => {
                let bar = self.bar(&s.step_id);
                bar.enable_steady_tick(Duration::from_millis(120));
                let text = format!(
                    "running  {} on {} @ {}  attempt {}",
                    s.skill, s.agent, s.endpoint, s.attempt
                );
                self.line(&format!("{}: {text}", s.step_id));
                bar.set_message(text);
            }
            run_event::Event::StepEvent(s) => {
                if let Some(task_event::Event::Progress(p)) =
                    s.event.as_ref().and_then(|e| e.event.as_ref())
                    && !p.message.is_empty()
                {
                    let bar = self.bar(&s.step_id);
                    bar.set_message(format!("running  {}", p.message));
                }
            }
            run_event::Event::StepRetrying(r) => {
                let text = format!(
                    "retrying in {:.0} ms after attempt {}: {} ({})",
                    crate::output::secs(r.delay.as_ref()) * 1000.0,
                    r.failed_attempt,
                    r.reason,
                    r.message
                );
                self.line(&format!("{}: {text}", r.step_id));
                self.bar(&r.step_id).set_message(text);
            }
            run_event::Event::StepQueued(q) => {
                let text = format!(
                    "queued   {}: every replica is busy; {} waiting for it",
                    q.skill, q.waiting
                );
                self.line(&format!("{}: {text}", q.step_id));
                self.bar(&q.step_id).set_message(text);
            }
            run_event::Event::StepRerouted(r) => {
                let text = format!(
                    "rerouted from {} to {} ({})",
                    r.from_endpoint, r.to_endpoint, r.reason
                );
                self.line(&format!("{}: {text}", r.step_id));
                let bar = self.bar(&r.step_id);
                let _ = self.bars.println(format!("  {}: {text}", r.step_id));
                bar.set_message(text);
            }
            run_event::Event::StepCompleted(c) => {
                let p = c.provenance.clone().unwrap_or_default();
                let text = format!(
                    "done     {} on {} @ {}  attempt {}  {:.2} s",
                    p.skill,
                    p.agent,
                    p.endpoint,
                    p.attempts,
                    crate::output::secs(p.duration.as_ref())
                );
                self.line(&format!("{}: {text}", c.step_id));
                self.bar(&c.step_id).finish_with_message(text);
            }
            run_event::Event::StepFailed(f) => {
                let text = format!(
                    "failed   {}: {} (attempts {})",
                    f.reason, f.message, f.attempts
                );
                self.line(&format!("{}: {text}", f.step_id));
                self.bar(&f.step_id).abandon_with_message(text);
            }
            run_event::Event::Resumed(r) => {
                self.line(&format!(
                    "run {}: resumed by {} ({} steps kept, {} sent again)",
                    ev.run_id,
                    r.orchestrator,
                    r.completed_steps.len(),
                    r.resumed_steps.len()
                ));
            }
            run_event::Event::StepWaiting(w) => {
                let text = format!("waiting  for a person: {}", w.question);
                self.line(&format!("{}: {text}", w.step_id));
                self.bar(&w.step_id).set_message(text);
            }
            run_event::Event::StepAnswered(a) => {
                let by = if a.by.is_empty() {
                    "a person"
                } else {
                    a.by.as_str()
                };
                let text = format!("answered by {by}");
                self.line(&format!("{}: {text}", a.step_id));
                self.bar(&a.step_id).set_message(text);
            }
            run_event::Event::ReportChunk(_) => {}
            run_event::Event::Finished(f) => {
                for bar in self.steps.values() {
                    if !bar.is_finished() {
                        bar.abandon();
                    }
                }
                self.line(&format!(
                    "run {}: {} {}",
                    ev.run_id,
                    crate::output::state_name(f.state()),
                    f.message
                ));
            }
        }
    }
}

/// One event as a JSON line (`--json` for `watch`).
fn event_json(ev: &RunEvent) -> Value {
    use agentmesh_proto::view::{event_kind, event_step};
    serde_json::json!({"run_id": ev.run_id, "seq": ev.seq, "event": event_kind(ev), "step": event_step(ev)})
}

/// Follows run `run_id` from after `after` until it finishes, reconnecting
/// (and resuming after the last event seen) when the connection drops.
/// With `prompt`, a step that waits for a person is asked about at the
/// terminal.
pub async fn follow(
    client: &mut OrchestratorServiceClient<AuthChannel>,
    run_id: &str,
    after: u64,
    show: Show,
    prompt: bool,
) -> Result<Followed, CliError> {
    let mut answerer = client.clone();
    let mut ui = Ui::new(show);
    let mut got = Followed {
        last_seq: after,
        ..Followed::default()
    };
    let mut down_since: Option<tokio::time::Instant> = None;
    let mut delay = Duration::from_millis(100);
    loop {
        let stream = client
            .watch_run(WatchRunRequest {
                run_id: run_id.to_string(),
                after_seq: got.last_seq,
                stream: None,
            })
            .await;
        let mut stream = match stream {
            Ok(s) => {
                down_since = None;
                delay = Duration::from_millis(100);
                s.into_inner()
            }
            Err(status) if retryable(&status) => {
                let since = *down_since.get_or_insert_with(tokio::time::Instant::now);
                if since.elapsed() > RECONNECT_FOR {
                    return Err(status.into());
                }
                ui.line(&format!(
                    "connection lost ({}); reconnecting",
                    status.message()
                ));
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(2));
                continue;
            }
            Err(status) => return Err(status.into()),
        };
        loop {
            match stream.next().await {
                Some(Ok(ev)) => {
                    if ev.seq <= got.last_seq {
                        continue;
                    }
                    got.last_seq = ev.seq;
                    ui.event(&ev);
                    if prompt && let Some(run_event::Event::StepWaiting(w)) = &ev.event {
                        ui.bars.set_draw_target(ProgressDrawTarget::hidden());
                        let asked = crate::people::prompt(&mut answerer, run_id, w).await;
                        ui.bars.set_draw_target(ProgressDrawTarget::stderr());
                        asked?;
                    }
                    collect(&mut got, ev);
                    if got.finished.is_some() {
                        // The server ends the stream after the final event;
                        // read to the end rather than reset it.
                        let _ = tokio::time::timeout(Duration::from_secs(1), async {
                            while stream.next().await.is_some() {}
                        })
                        .await;
                        return Ok(got);
                    }
                }
                Some(Err(status)) if retryable(&status) => {
                    ui.line(&format!(
                        "connection lost after event {} ({}); resuming",
                        got.last_seq,
                        status.message()
                    ));
                    break;
                }
                Some(Err(status)) => return Err(status.into()),
                None => break,
            }
        }
        if got.finished.is_some() {
            return Ok(got);
        }
        tokio::time::sleep(delay).await;
    }
}

fn retryable(status: &tonic::Status) -> bool {
    matches!(
        status.code(),
        Code::Unavailable | Code::Unknown | Code::Internal | Code::Cancelled
    )
}

fn collect(got: &mut Followed, ev: RunEvent) {
    match ev.event {
        Some(run_event::Event::Planned(p)) => got.goal = p.goal,
        Some(run_event::Event::StepCompleted(c)) => {
            got.outputs
                .insert(c.step_id, Value::Object(from_opt_struct(c.output.as_ref())));
        }
        Some(run_event::Event::ReportChunk(c)) => {
            got.files.entry(c.filename).or_default().extend(c.data);
        }
        Some(run_event::Event::Finished(f)) => got.finished = Some(f),
        _ => {}
    }
}

/// The exit code of a finished run.
pub fn exit_of(f: &RunFinished) -> Exit {
    use agentmesh_proto::v1::RunState;
    match f.state() {
        RunState::Completed => Exit::Ok,
        RunState::Partial => Exit::Partial,
        RunState::Canceled => Exit::Canceled,
        _ => Exit::Failed,
    }
}
