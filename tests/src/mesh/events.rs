//! Plans and runs: plan builders, running and watching, and reading the
//! events back.

use std::time::Duration;

use agentmesh_proto::json::to_struct;
use agentmesh_proto::v1::orchestrator_service_client::OrchestratorServiceClient;
use agentmesh_proto::v1::{
    PlanSpec, PlanStep, RunEvent, RunRequest, RunSpec, StepInputRef, StreamOptions, run_event,
};
use serde_json::Value;
use tokio_stream::StreamExt;
use tonic::transport::Channel;

/// A plan step with literal input.
pub fn step(id: &str, skill: &str, input: Value) -> PlanStep {
    let Value::Object(map) = input else {
        panic!("input must be an object")
    };
    PlanStep {
        id: id.into(),
        skill: skill.into(),
        input: Some(to_struct(&map)),
        ..PlanStep::default()
    }
}

/// `step` with its field `field` taken from `from`'s output at `pointer`.
pub fn with_ref(mut s: PlanStep, field: &str, from: &str, pointer: &str) -> PlanStep {
    s.refs.push(StepInputRef {
        field: field.into(),
        from_step: from.into(),
        pointer: pointer.into(),
    });
    s
}

/// A run spec with only a goal, for the orchestrator to plan.
pub fn goal(text: &str) -> RunSpec {
    RunSpec {
        goal: text.into(),
        ..RunSpec::default()
    }
}

/// A run spec for `steps`.
pub fn spec(steps: Vec<PlanStep>) -> RunSpec {
    RunSpec {
        goal: "test".into(),
        plan: Some(PlanSpec { steps }),
        ..RunSpec::default()
    }
}

/// The skills of [`chain`], one [`super::TestAgent`] each.
pub const CHAIN: [&str; 3] = ["first", "second", "third"];

/// The plan first → second → third, one skill each ([`CHAIN`]), each step's
/// `value` taken from the output of the one before; `inputs` are the
/// steps' own input.
pub fn chain(inputs: [Value; 3]) -> RunSpec {
    let [first, second, third] = inputs;
    spec(vec![
        step("first", "first", first),
        with_ref(step("second", "second", second), "value", "first", "/value"),
        with_ref(step("third", "third", third), "value", "second", "/value"),
    ])
}

/// Runs `spec` with `Run` and collects every event until the stream ends.
pub async fn run_all(
    client: &mut OrchestratorServiceClient<Channel>,
    spec: RunSpec,
) -> Vec<RunEvent> {
    run_all_with(client, spec, None).await
}

/// [`run_all`] with stream options.
pub async fn run_all_with(
    client: &mut OrchestratorServiceClient<Channel>,
    spec: RunSpec,
    options: Option<StreamOptions>,
) -> Vec<RunEvent> {
    let stream = client
        .run(RunRequest {
            spec: Some(spec),
            stream: options,
        })
        .await
        .unwrap()
        .into_inner();
    collect_events(stream).await
}

/// Every event of a `Run` or `WatchRun` stream, until it ends.
async fn collect_events(mut stream: tonic::Streaming<RunEvent>) -> Vec<RunEvent> {
    let mut events = Vec::new();
    while let Some(ev) = stream.next().await {
        events.push(ev.unwrap());
    }
    events
}

/// Submits `spec` and returns the run's id.
pub async fn submit(client: &mut OrchestratorServiceClient<Channel>, spec: RunSpec) -> String {
    client
        .submit(agentmesh_proto::v1::SubmitRequest { spec: Some(spec) })
        .await
        .unwrap()
        .into_inner()
        .run_id
}

/// Every event of run `run_id` after `after`, until the run's log ends.
pub async fn watch_to_end(
    client: &mut OrchestratorServiceClient<Channel>,
    run_id: &str,
    after: u64,
) -> Vec<RunEvent> {
    watch_to_end_with(client, run_id, after, None).await
}

/// [`watch_to_end`] with stream options.
pub async fn watch_to_end_with(
    client: &mut OrchestratorServiceClient<Channel>,
    run_id: &str,
    after: u64,
    options: Option<StreamOptions>,
) -> Vec<RunEvent> {
    let stream = client
        .watch_run(agentmesh_proto::v1::WatchRunRequest {
            run_id: run_id.into(),
            after_seq: after,
            stream: options,
        })
        .await
        .unwrap()
        .into_inner();
    collect_events(stream).await
}

/// The newest run other than `except`, waiting (bounded) for one to appear.
pub async fn newest_run(client: &mut OrchestratorServiceClient<Channel>, except: &str) -> String {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let runs = client
            .list_runs(agentmesh_proto::v1::ListRunsRequest {
                limit: 1,
                states: Vec::new(),
            })
            .await
            .unwrap()
            .into_inner()
            .runs;
        if let Some(r) = runs.first().filter(|r| r.run_id != except) {
            return r.run_id.clone();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no new run appeared"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The events' payloads.
pub fn kinds(events: &[RunEvent]) -> Vec<&run_event::Event> {
    events.iter().filter_map(|e| e.event.as_ref()).collect()
}

/// The final event of a run.
pub fn finished(events: &[RunEvent]) -> &agentmesh_proto::v1::RunFinished {
    match events.last().and_then(|e| e.event.as_ref()) {
        Some(run_event::Event::Finished(f)) => f,
        other => panic!("the run did not finish: last event {other:?}"),
    }
}

/// The run's plan event.
pub fn planned(events: &[RunEvent]) -> &agentmesh_proto::v1::RunPlanned {
    kinds(events)
        .into_iter()
        .find_map(|e| match e {
            run_event::Event::Planned(p) => Some(p),
            _ => None,
        })
        .expect("a RunPlanned event")
}

/// The `StepCompleted` of step `id`.
pub fn step_completed<'a>(
    events: &'a [RunEvent],
    id: &str,
) -> &'a agentmesh_proto::v1::StepCompleted {
    kinds(events)
        .into_iter()
        .find_map(|e| match e {
            run_event::Event::StepCompleted(c) if c.step_id == id => Some(c),
            _ => None,
        })
        .unwrap_or_else(|| panic!("step {id} did not complete"))
}

/// Index of the first event matching `pred`.
pub fn position(events: &[RunEvent], pred: impl Fn(&run_event::Event) -> bool) -> Option<usize> {
    events
        .iter()
        .position(|e| e.event.as_ref().is_some_and(&pred))
}

/// Artifacts streamed as ReportChunk events, reassembled: file name → bytes.
pub fn report_files(events: &[RunEvent]) -> std::collections::BTreeMap<String, Vec<u8>> {
    let mut files = std::collections::BTreeMap::<String, Vec<u8>>::new();
    for e in events {
        if let Some(run_event::Event::ReportChunk(c)) = &e.event {
            files.entry(c.filename.clone()).or_default().extend(&c.data);
        }
    }
    files
}

/// Reads `stream` into `events` until the first `StepStarted`, and returns
/// the endpoint it started on.
pub async fn read_until_started(
    stream: &mut tonic::Streaming<RunEvent>,
    events: &mut Vec<RunEvent>,
) -> String {
    loop {
        let ev = stream
            .next()
            .await
            .unwrap_or_else(|| panic!("the run ended before a step started"))
            .unwrap_or_else(|s| panic!("the run stream failed: {s}"));
        let started = match &ev.event {
            Some(run_event::Event::StepStarted(s)) => Some(s.endpoint.clone()),
            _ => None,
        };
        events.push(ev);
        if let Some(endpoint) = started {
            return endpoint;
        }
    }
}
