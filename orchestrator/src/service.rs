//! `agentmesh.v1.OrchestratorService` over the engine and the run store.

use std::pin::Pin;
use std::sync::Arc;

use agentmesh_proto::error::{ErrorReason, MeshError};
use agentmesh_proto::v1::orchestrator_service_server::OrchestratorService;
use agentmesh_proto::v1::{
    CancelRunRequest, CancelRunResponse, GetRunRequest, GetRunResponse, ListAgentsRequest,
    ListAgentsResponse, ListRunsRequest, ListRunsResponse, PlanRequest, PlanResponse,
    ProvideInputRequest, ProvideInputResponse, RunEvent, RunParameters, RunRequest, RunSpec,
    RunState, SkillQueue, StreamOptions, SubmitRequest, SubmitResponse, WatchRunRequest,
};
use agentmesh_runtime::telemetry::context;
use futures_util::{Stream, StreamExt};
use opentelemetry::trace::SpanContext;
use tonic::{Request, Response, Status};
use tracing::Instrument as _;

use crate::access::limits::PrincipalLimits;
use crate::access::{Action, Caller};
use crate::events;
use crate::goal::FrontEnd;
use crate::run::trace::Traced;
use crate::run::{Accepted, Engine, Prepared};
use crate::store::RunRecord;

/// Runs listed when the client asks for no limit.
const DEFAULT_LIST: usize = 50;
/// How long CancelRun waits for the run to wind down.
const CANCEL_WAIT: std::time::Duration = std::time::Duration::from_secs(5);
/// Most runs one ListRuns returns.
const MAX_LIST: usize = 1_000;

type EventStream = Pin<Box<dyn Stream<Item = Result<RunEvent, Status>> + Send>>;

/// The Orchestrator API.
pub struct OrchestratorApi {
    engine: Arc<Engine>,
    front_end: FrontEnd,
    limits: Arc<PrincipalLimits>,
}

impl OrchestratorApi {
    /// Serves `engine`, planning goals with `front_end`, within each
    /// principal's `limits`.
    pub fn new(engine: Arc<Engine>, front_end: FrontEnd, limits: Arc<PrincipalLimits>) -> Self {
        Self {
            engine,
            front_end,
            limits,
        }
    }

    /// Run `run_id`, if `caller` may see it: another principal's run is
    /// NOT_FOUND, word for word as a run that never was.
    async fn run(&self, run_id: &str, caller: &Caller) -> Result<Arc<RunRecord>, Status> {
        if run_id.is_empty() {
            return Err(
                MeshError::new(ErrorReason::InvalidInput, "run_id is required")
                    .with_meta("field", "run_id")
                    .into_status(),
            );
        }
        let store = &self.engine.store;
        let found = store.get(run_id).await.map_err(MeshError::into_status)?;
        if let Some(run) = found.filter(|r| caller.sees(&r.owner)) {
            return Ok(run);
        }
        let evicted = store
            .evicted(run_id)
            .await
            .map_err(MeshError::into_status)?;
        let error = match evicted.filter(|e| caller.sees(&e.owner)) {
            Some(evicted) => MeshError::new(
                ErrorReason::RunEvicted,
                format!(
                    "run {run_id:?} finished and was dropped from memory under {}; its events were streamed to its clients as it ran",
                    evicted.limit
                ),
            )
            .with_meta("limit", evicted.limit),
            None => MeshError::new(ErrorReason::NotFound, format!("no run {run_id:?}")),
        };
        Err(error.with_meta("run_id", run_id).into_status())
    }
}

/// `run`'s events after `after_seq` as a client asked for them. If this
/// orchestrator leaves the run to another (it lost its store lease, or shut
/// down on a durable store), the stream ends with `RUN_MOVED`: the client
/// watches on from its last event, on any replica.
fn followed(
    run: &Arc<RunRecord>,
    after_seq: u64,
    options: StreamOptions,
) -> impl Stream<Item = Result<RunEvent, Status>> + Send + 'static {
    let events = run
        .log
        .follow(after_seq)
        .map(move |ev| Ok(events::for_client(ev, &options)))
        .take_until(run.suspended());
    let run = Arc::clone(run);
    // Looked at once the events end: a run that finished ends plainly.
    let tail = futures_util::stream::once(async move {
        (run.is_suspended() && !run.log.is_closed()).then(|| {
            Err(MeshError::new(
                ErrorReason::RunMoved,
                format!(
                    "run {} is now driven by another orchestrator; watch it again with after_seq",
                    run.id
                ),
            )
            .with_meta("run_id", run.id.clone())
            .into_status())
        })
    })
    .filter_map(std::future::ready);
    events.chain(tail)
}

fn required(spec: Option<RunSpec>) -> Result<RunSpec, Status> {
    spec.ok_or_else(|| {
        MeshError::new(ErrorReason::InvalidInput, "spec is required")
            .with_meta("field", "spec")
            .into_status()
    })
}

/// Cancels the run when the owning `Run` stream is dropped before the run
/// finished (the client went away without Submit).
struct CancelOnDrop {
    run: Arc<RunRecord>,
    engine: Arc<Engine>,
}

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        if !self.run.log.is_closed() {
            self.engine
                .cancel(&self.run, "the client closed its Run stream");
        }
    }
}

impl OrchestratorApi {
    /// Checks a request and plans it: the client's plan as it is, a goal
    /// through the front-end. An empty request (no plan, no goal, no
    /// parameters) is INVALID_INPUT: there is nothing to understand.
    async fn prepare(&self, mut spec: RunSpec, fingerprint: String) -> Result<Prepared, MeshError> {
        if spec.plan.as_ref().is_some_and(|p| !p.steps.is_empty()) {
            return self.engine.prepare(spec, None, None, fingerprint);
        }
        let no_params = spec
            .parameters
            .as_ref()
            .is_none_or(|p| *p == RunParameters::default());
        if spec.goal.trim().is_empty() && no_params {
            return Err(
                MeshError::new(ErrorReason::InvalidInput, "send a goal or a plan")
                    .with_meta("field", "spec"),
            );
        }
        // Limits first: the goal is not read if it is too long.
        self.engine.check(&spec)?;
        let planned = self.front_end.plan(&spec).await?;
        spec.plan = Some(planned.plan);
        self.engine.prepare(
            spec,
            Some(planned.intent),
            Some(planned.planning),
            fingerprint,
        )
    }

    /// Prepares and starts the run a request asks for, owned by `caller`,
    /// in a trace that continues the client's (`parent`, invalid for none).
    /// The run's span covers planning too; a refused request's span says
    /// why.
    async fn accept(
        &self,
        spec: Option<RunSpec>,
        caller: &Caller,
        parent: &SpanContext,
    ) -> Result<Accepted, Status> {
        let trace = Traced::run(parent, &caller.owner());
        let span = trace.span.clone();
        let accepted = self
            .admit(spec, caller, trace)
            .instrument(span.clone())
            .await;
        if let Err(status) = &accepted {
            Traced::finished(&span, "REFUSED", &format!("{:?}", status.code()));
        }
        accepted
    }

    /// A repeat of the caller's earlier request (same idempotency key) gets
    /// that run, before anything could refuse it. The caller's limits are
    /// checked before the goal is planned.
    async fn admit(
        &self,
        spec: Option<RunSpec>,
        caller: &Caller,
        trace: Traced,
    ) -> Result<Accepted, Status> {
        caller.require(Action::StartRun)?;
        let spec = required(spec)?;
        let owner = caller.owner();
        let fingerprint = Engine::fingerprint(&spec);
        if let Some(run) = self
            .engine
            .repeat(&owner, &spec.idempotency_key, &fingerprint)
            .await
            .map_err(MeshError::into_status)?
        {
            trace.run_id(&run.id);
            return Ok(Accepted {
                run,
                created: false,
            });
        }
        let slot = self.limits.admit(&owner).map_err(MeshError::into_status)?;
        let prepared = self
            .prepare(spec, fingerprint)
            .await
            .map_err(MeshError::into_status)?;
        let accepted = self
            .engine
            .start(prepared, owner, trace)
            .await
            .map_err(MeshError::into_status)?;
        if accepted.created
            && let Some(slot) = slot
        {
            // The run counts against its owner until it ends.
            accepted.run.hold_until_finished(slot);
        }
        Ok(accepted)
    }
}

#[tonic::async_trait]
impl OrchestratorService for OrchestratorApi {
    type RunStream = EventStream;

    async fn run(&self, request: Request<RunRequest>) -> Result<Response<EventStream>, Status> {
        let caller = Caller::of(&request);
        let parent = context::extract(request.metadata());
        let request = request.into_inner();
        let options = request.stream.unwrap_or_default();
        let accepted = self.accept(request.spec, &caller, &parent).await?;
        let stream = followed(&accepted.run, 0, options);
        if !accepted.created {
            // A repeat of an earlier request: follow it, do not own it.
            return Ok(Response::new(Box::pin(stream)));
        }
        let guard = CancelOnDrop {
            run: accepted.run,
            engine: Arc::clone(&self.engine),
        };
        Ok(Response::new(Box::pin(stream.map(move |ev| {
            let _owned = &guard;
            ev
        }))))
    }

    async fn submit(
        &self,
        request: Request<SubmitRequest>,
    ) -> Result<Response<SubmitResponse>, Status> {
        let caller = Caller::of(&request);
        let parent = context::extract(request.metadata());
        let accepted = self
            .accept(request.into_inner().spec, &caller, &parent)
            .await?;
        // With a durable store, answer once the run is stored (its plan
        // event is committed), so that the id names a run that outlives a
        // crash. In memory the event is there already.
        let _planned = Box::pin(accepted.run.log.follow(0)).next().await;
        Ok(Response::new(SubmitResponse {
            run_id: accepted.run.id.clone(),
        }))
    }

    async fn get_run(
        &self,
        request: Request<GetRunRequest>,
    ) -> Result<Response<GetRunResponse>, Status> {
        let caller = Caller::of(&request);
        caller.require(Action::ReadRuns)?;
        let run = self.run(&request.get_ref().run_id, &caller).await?;
        Ok(Response::new(GetRunResponse {
            run: Some(run.summary()),
            planned: run.planned(),
            finished: run.finished().map(|(f, _)| f),
        }))
    }

    type WatchRunStream = EventStream;

    async fn watch_run(
        &self,
        request: Request<WatchRunRequest>,
    ) -> Result<Response<EventStream>, Status> {
        let caller = Caller::of(&request);
        caller.require(Action::ReadRuns)?;
        let req = request.get_ref();
        let run = self.run(&req.run_id, &caller).await?;
        let last = run.log.visible_len();
        if req.after_seq > last {
            return Err(MeshError::new(
                ErrorReason::InvalidInput,
                format!(
                    "after_seq {} is beyond the run's last event {last}",
                    req.after_seq
                ),
            )
            .with_meta("field", "after_seq")
            .into_status());
        }
        let options = req.stream.unwrap_or_default();
        Ok(Response::new(Box::pin(followed(
            &run,
            req.after_seq,
            options,
        ))))
    }

    async fn cancel_run(
        &self,
        request: Request<CancelRunRequest>,
    ) -> Result<Response<CancelRunResponse>, Status> {
        let caller = Caller::of(&request);
        caller.require(Action::CancelRun)?;
        let req = request.get_ref();
        let run = self.run(&req.run_id, &caller).await?;
        caller.may_cancel(&run.owner)?;
        if !run.log.is_closed() {
            let elsewhere = self
                .engine
                .store
                .cancel_elsewhere(&run, &req.reason)
                .await
                .map_err(MeshError::into_status)?;
            if !elsewhere {
                self.engine.cancel(&run, &req.reason);
            }
            // Attempts cancel their agent tasks with a bounded CancelTask.
            let _ = tokio::time::timeout(CANCEL_WAIT, run.log.closed()).await;
        }
        Ok(Response::new(CancelRunResponse {
            state: run.state().into(),
        }))
    }

    async fn list_runs(
        &self,
        request: Request<ListRunsRequest>,
    ) -> Result<Response<ListRunsResponse>, Status> {
        let caller = Caller::of(&request);
        caller.require(Action::ReadRuns)?;
        let limit = match request.get_ref().limit {
            0 => DEFAULT_LIST,
            n => (n as usize).min(MAX_LIST),
        };
        let mut states = Vec::new();
        for (i, &s) in request.get_ref().states.iter().enumerate() {
            match RunState::try_from(s) {
                Ok(state) if state != RunState::Unspecified => states.push(state),
                _ => {
                    return Err(MeshError::new(
                        ErrorReason::InvalidInput,
                        format!("states[{i}] = {s} is not a RunState"),
                    )
                    .with_meta("field", "states")
                    .into_status());
                }
            }
        }
        let runs = self
            .engine
            .store
            .list(limit, caller.visible_owner(), &states)
            .await
            .map_err(MeshError::into_status)?;
        Ok(Response::new(ListRunsResponse { runs }))
    }

    async fn provide_input(
        &self,
        request: Request<ProvideInputRequest>,
    ) -> Result<Response<ProvideInputResponse>, Status> {
        let caller = Caller::of(&request);
        caller.require(Action::CancelRun)?;
        let req = request.get_ref();
        if req.step_id.is_empty() {
            return Err(
                MeshError::new(ErrorReason::InvalidInput, "step_id is required")
                    .with_meta("field", "step_id")
                    .into_status(),
            );
        }
        let run = self.run(&req.run_id, &caller).await?;
        caller.may_cancel(&run.owner)?;
        if !run.log.is_closed() && self.engine.store.durable() && !run.driven_here() {
            return Err(MeshError::new(
                ErrorReason::RunMoved,
                format!(
                    "run {} is driven by another orchestrator replica; send the answer to it",
                    run.id
                ),
            )
            .with_meta("run_id", run.id.as_str())
            .into_status());
        }
        let by = caller.owner();
        let answer = req.answer.clone().unwrap_or_default();
        let seq = run
            .answer(&req.step_id, answer, &by)
            .map_err(MeshError::into_status)?;
        tracing::info!(run_id = %run.id, step = %req.step_id, by = %by, "step answered");
        Ok(Response::new(ProvideInputResponse {
            seq,
            state: run.state().into(),
        }))
    }

    async fn plan(&self, request: Request<PlanRequest>) -> Result<Response<PlanResponse>, Status> {
        Caller::of(&request).require(Action::Plan)?;
        let spec = required(request.into_inner().spec)?;
        let fingerprint = Engine::fingerprint(&spec);
        let prepared = self
            .prepare(spec, fingerprint)
            .await
            .map_err(MeshError::into_status)?;
        Ok(Response::new(PlanResponse {
            planned: Some(self.engine.describe(&prepared)),
        }))
    }

    async fn list_agents(
        &self,
        request: Request<ListAgentsRequest>,
    ) -> Result<Response<ListAgentsResponse>, Status> {
        Caller::of(&request).require(Action::ListAgents)?;
        let registry = self.engine.registry();
        let queues = registry
            .queue_lengths()
            .into_iter()
            .map(|(skill, waiting)| SkillQueue {
                skill,
                waiting: u32::try_from(waiting).unwrap_or(u32::MAX),
            })
            .collect();
        Ok(Response::new(ListAgentsResponse {
            endpoints: registry.snapshot(),
            queues,
        }))
    }
}
