//! The mesh as an A2A v1.0 agent: a [`RequestHandler`] over the
//! Orchestrator API, served by the A2A SDK's bindings (JSON-RPC over HTTP,
//! and `lf.a2a.v1.A2AService` over gRPC).
//!
//! Every call goes through [`OrchestratorApi`] with the caller's
//! [`Principal`], so authentication, authorization, per-principal limits,
//! idempotency and the run store are the API's, not a second copy: a task
//! is a run, and a run started through A2A is an ordinary run (meshctl and
//! the Orchestrator API see it; `metadata.agentmesh` on the task names it).
//! A2A calls authenticate with a bearer token (a static token or a JWT);
//! mutual TLS identifies callers of the Orchestrator API only.

pub mod card;
pub mod errors;
pub mod http;
pub mod request;
pub mod task;

use std::sync::Arc;

use a2a::{
    A2AError, AgentCard, Artifact, CancelTaskRequest, DeleteTaskPushNotificationConfigRequest,
    GetExtendedAgentCardRequest, GetTaskPushNotificationConfigRequest, GetTaskRequest,
    ListTaskPushNotificationConfigsRequest, ListTaskPushNotificationConfigsResponse,
    ListTasksRequest, ListTasksResponse, SendMessageRequest, SendMessageResponse, StreamResponse,
    SubscribeToTaskRequest, Task, TaskPushNotificationConfig,
};
use a2a_server::{RequestHandler, ServiceParams};
use agentmesh_proto::v1::orchestrator_service_server::OrchestratorService;
use agentmesh_proto::v1::{
    CancelRunRequest, GetRunRequest, GetRunResponse, ListRunsRequest, ProvideInputRequest,
    RunEvent, RunState, SubmitRequest, WatchRunRequest,
};
use agentmesh_runtime::auth::{Authenticator, Principal};
use futures_util::stream::BoxStream;
use futures_util::{StreamExt, TryStreamExt};
use tonic::metadata::{MetadataMap, MetadataValue};

use crate::run::Engine;
use crate::service::OrchestratorApi;

use self::card::CardSource;
use self::errors::{from_status, invalid};
use self::task::{Files, TaskView};

/// Tasks one ListTasks returns when the client asks for no page size.
const DEFAULT_PAGE: usize = 50;
/// Most tasks one ListTasks returns (A2A's bound).
const MAX_PAGE: usize = 100;
/// Deepest ListTasks pages reach (the Orchestrator API lists at most this
/// many runs, newest first).
const MAX_LISTED: usize = 1_000;

type A2aStream = BoxStream<'static, Result<StreamResponse, A2AError>>;

/// The A2A request handler of the orchestrator.
pub struct Facade {
    api: Arc<OrchestratorApi>,
    engine: Arc<Engine>,
    auth: Option<Arc<Authenticator>>,
    card: Arc<CardSource>,
}

impl Facade {
    /// Serves A2A through `api`; `auth` is the API's authenticator, when
    /// `[server.auth]` is set.
    pub fn new(
        api: Arc<OrchestratorApi>,
        engine: Arc<Engine>,
        auth: Option<Arc<Authenticator>>,
        card: Arc<CardSource>,
    ) -> Self {
        Self {
            api,
            engine,
            auth,
            card,
        }
    }

    /// The card clients see.
    pub fn card_source(&self) -> &Arc<CardSource> {
        &self.card
    }

    /// The caller, from the bearer token in `params` (None: the API is not
    /// authenticated).
    fn principal(&self, params: &ServiceParams) -> Result<Option<Principal>, A2AError> {
        check_version(params)?;
        let Some(auth) = &self.auth else {
            return Ok(None);
        };
        auth.authenticate(&metadata(params, &["authorization"]), None)
            .map(Some)
            .map_err(|refusal| errors::refused(refusal.name(), refusal.message()))
    }

    /// `body` as a request of the caller in `params`, continuing its trace.
    fn request<T>(&self, params: &ServiceParams, body: T) -> Result<tonic::Request<T>, A2AError> {
        let principal = self.principal(params)?;
        let mut request = tonic::Request::from_parts(
            metadata(params, &["traceparent", "tracestate"]),
            tonic::Extensions::default(),
            body,
        );
        if let Some(p) = principal {
            request.extensions_mut().insert(p);
        }
        Ok(request)
    }

    async fn get_run(&self, params: &ServiceParams, id: &str) -> Result<GetRunResponse, A2AError> {
        let req = self.request(
            params,
            GetRunRequest {
                run_id: id.to_string(),
            },
        )?;
        match self.api.get_run(req).await {
            Ok(resp) => Ok(resp.into_inner()),
            Err(status) if status.code() == tonic::Code::NotFound => {
                Err(A2AError::task_not_found(id))
            }
            Err(status) => Err(from_status(&status)),
        }
    }

    /// The run's events after `after`, as the caller may read them.
    async fn events(
        &self,
        params: &ServiceParams,
        id: &str,
        after: u64,
    ) -> Result<BoxStream<'static, Result<RunEvent, A2AError>>, A2AError> {
        let req = self.request(
            params,
            WatchRunRequest {
                run_id: id.to_string(),
                after_seq: after,
                stream: None,
            },
        )?;
        let stream = self
            .api
            .watch_run(req)
            .await
            .map_err(|s| from_status(&s))?
            .into_inner();
        Ok(stream.map_err(|s| from_status(&s)).boxed())
    }

    /// The A2A context of run `id`: the one its A2A message named, else
    /// the run's own id.
    async fn context(&self, id: &str) -> String {
        match self.engine.store.get(id).await {
            Ok(Some(run)) => request::context_of(&run.idempotency_key)
                .unwrap_or(id)
                .to_string(),
            _ => id.to_string(),
        }
    }

    /// The report's files (and the report as data) of run `id`, read from
    /// its log to the end: for a run still going, once it has finished.
    async fn files(&self, params: &ServiceParams, id: &str) -> Result<Vec<Artifact>, A2AError> {
        let mut gathered = Files::default();
        let mut events = self.events(params, id, 0).await?;
        while let Some(event) = events.next().await {
            gathered.take(&event?);
        }
        Ok(gathered.artifacts())
    }

    /// Run `id` as a task in `context` (looked up when not known) with
    /// `files` (None: a finished run's, read from its log).
    async fn task(
        &self,
        params: &ServiceParams,
        id: &str,
        context: Option<String>,
        files: Option<Vec<Artifact>>,
        history: bool,
    ) -> Result<Task, A2AError> {
        let run = self.get_run(params, id).await?;
        let summary = run.run.unwrap_or_default();
        let files = match files {
            Some(files) => files,
            None if run.finished.is_some() => self.files(params, id).await?,
            None => Vec::new(),
        };
        let context_id = match context {
            Some(c) => c,
            None => self.context(id).await,
        };
        Ok(TaskView {
            summary: &summary,
            finished: run.finished.as_ref(),
            context_id: &context_id,
        }
        .task(files, history))
    }

    /// Starts the run `req` asks for; its id and context.
    async fn start(
        &self,
        params: &ServiceParams,
        req: &SendMessageRequest,
    ) -> Result<(String, String), A2AError> {
        if let Some(task_id) = &req.message.task_id {
            self.answer(params, task_id, &req.message).await?;
            let context_id = self.context(task_id).await;
            return Ok((task_id.clone(), context_id));
        }
        let context_id = req
            .message
            .context_id
            .clone()
            .filter(|c| !c.is_empty())
            .unwrap_or_else(a2a::new_context_id);
        let spec = request::run_spec(&req.message, &context_id)?;
        let submit = self.request(params, SubmitRequest { spec: Some(spec) })?;
        let run_id = self
            .api
            .submit(submit)
            .await
            .map_err(|s| from_status(&s))?
            .into_inner()
            .run_id;
        Ok((run_id, context_id))
    }

    /// A message to task `task_id` while it is INPUT_REQUIRED: the answer
    /// to the step that waits (`metadata.agentmesh.stepId` names it when
    /// several do), given through ProvideInput.
    async fn answer(
        &self,
        params: &ServiceParams,
        task_id: &str,
        message: &a2a::Message,
    ) -> Result<(), A2AError> {
        let run = self.get_run(params, task_id).await?;
        let waiting = run.run.map(|r| r.waiting).unwrap_or_default();
        let named = message
            .metadata
            .as_ref()
            .and_then(|m| m.get("agentmesh"))
            .and_then(|m| m.get("stepId"))
            .and_then(serde_json::Value::as_str);
        let wait = match (named, waiting.as_slice()) {
            (_, []) => {
                return Err(A2AError::unsupported_operation(format!(
                    "task {task_id} is not waiting for input; send a new message without taskId"
                )));
            }
            (Some(step), all) => all.iter().find(|w| w.step_id == step).ok_or_else(|| {
                invalid(
                    "message.metadata.agentmesh.stepId",
                    format!("step {step} is not waiting"),
                )
            })?,
            (None, [one]) => one,
            (None, _) => {
                return Err(invalid(
                    "message.metadata.agentmesh.stepId",
                    "several steps wait; name one",
                ));
            }
        };
        let answer = request::answer(message, &wait.input_id)?;
        let req = self.request(
            params,
            ProvideInputRequest {
                run_id: task_id.to_string(),
                step_id: wait.step_id.clone(),
                answer: Some(agentmesh_proto::json::to_struct(&answer)),
            },
        )?;
        self.api
            .provide_input(req)
            .await
            .map_err(|s| from_status(&s))?;
        Ok(())
    }

    /// The task now, then its events after `after`: status updates as the
    /// run goes, the report's files as artifact updates (every one, even
    /// those before `after`), the report as data, and the run's final
    /// state.
    async fn follow(
        &self,
        params: &ServiceParams,
        run_id: &str,
        context_id: String,
        first: Task,
        after: u64,
    ) -> Result<A2aStream, A2AError> {
        let events = self.events(params, run_id, 0).await?;
        let mut mapper = task::Stream::new(run_id, &context_id);
        let updates = events
            .map(move |event| {
                let out: Vec<Result<StreamResponse, A2AError>> = match event {
                    Ok(event) => {
                        let is_file = matches!(
                            event.event,
                            Some(agentmesh_proto::v1::run_event::Event::ReportChunk(_))
                        );
                        if event.seq > after || is_file {
                            mapper.events(&event).into_iter().map(Ok).collect()
                        } else {
                            Vec::new()
                        }
                    }
                    Err(e) => vec![Err(e)],
                };
                futures_util::stream::iter(out)
            })
            .flatten();
        Ok(
            futures_util::stream::once(std::future::ready(Ok(StreamResponse::Task(first))))
                .chain(updates)
                .boxed(),
        )
    }
}

/// The A2A major version served.
const SERVED_MAJOR: &str = "1";

/// A2A §3.6: the `A2A-Version` header (gRPC metadata `a2a-version`) names
/// the version the client speaks; absent, it is 0.3, which is not served.
/// (The JSON-RPC binding checks this itself; the gRPC binding does not.)
fn check_version(params: &ServiceParams) -> Result<(), A2AError> {
    let requested = params
        .get("a2a-version")
        .and_then(|v| v.first())
        .map_or("0.3", String::as_str);
    if requested.trim().split('.').next() == Some(SERVED_MAJOR) {
        Ok(())
    } else {
        Err(A2AError::version_not_supported(requested))
    }
}

/// The headers `keys` of `params` (those the client sent) as gRPC
/// metadata.
fn metadata(params: &ServiceParams, keys: &[&'static str]) -> MetadataMap {
    let mut md = MetadataMap::new();
    for key in keys {
        if let Some(value) = params.get(*key).and_then(|v| v.first())
            && let Ok(value) = MetadataValue::try_from(value.as_str())
        {
            md.insert(*key, value);
        }
    }
    md
}

fn page_size(requested: Option<i32>) -> Result<usize, A2AError> {
    match requested {
        None | Some(0) => Ok(DEFAULT_PAGE),
        Some(n) if n < 0 => Err(invalid("pageSize", "must not be negative")),
        Some(n) => Ok(usize::try_from(n).unwrap_or(MAX_PAGE).min(MAX_PAGE)),
    }
}

fn page_offset(token: Option<&str>) -> Result<usize, A2AError> {
    match token.filter(|t| !t.is_empty()) {
        None => Ok(0),
        Some(t) => t
            .parse::<usize>()
            .ok()
            .filter(|n| *n < MAX_LISTED)
            .ok_or_else(|| invalid("pageToken", "not a page token of this server")),
    }
}

fn no_push() -> A2AError {
    A2AError::push_notification_not_supported()
}

#[async_trait::async_trait]
impl RequestHandler for Facade {
    async fn send_message(
        &self,
        params: &ServiceParams,
        req: SendMessageRequest,
    ) -> Result<SendMessageResponse, A2AError> {
        let immediately = req
            .configuration
            .as_ref()
            .and_then(|c| c.return_immediately)
            .unwrap_or(false);
        let history = req
            .configuration
            .as_ref()
            .and_then(|c| c.history_length)
            .is_some_and(|n| n != 0);
        let (run_id, context_id) = self.start(params, &req).await?;
        let files = if immediately {
            Vec::new()
        } else {
            // Blocking: answer once the run has finished, with its files.
            self.files(params, &run_id).await?
        };
        let task = self
            .task(params, &run_id, Some(context_id), Some(files), history)
            .await?;
        Ok(SendMessageResponse::Task(task))
    }

    async fn send_streaming_message(
        &self,
        params: &ServiceParams,
        req: SendMessageRequest,
    ) -> Result<A2aStream, A2AError> {
        let (run_id, context_id) = self.start(params, &req).await?;
        let first = self
            .task(
                params,
                &run_id,
                Some(context_id.clone()),
                Some(Vec::new()),
                true,
            )
            .await?;
        // A repeated message (same ids) follows its run from the start.
        self.follow(params, &run_id, context_id, first, 0).await
    }

    async fn get_task(
        &self,
        params: &ServiceParams,
        req: GetTaskRequest,
    ) -> Result<Task, A2AError> {
        let history = req.history_length.is_none_or(|n| n != 0);
        self.task(params, &req.id, None, None, history).await
    }

    async fn list_tasks(
        &self,
        params: &ServiceParams,
        req: ListTasksRequest,
    ) -> Result<ListTasksResponse, A2AError> {
        let size = page_size(req.page_size)?;
        let offset = page_offset(req.page_token.as_deref())?;
        let wanted: Option<&[RunState]> = req.status.as_ref().map(task::run_states);
        let list = self.request(
            params,
            ListRunsRequest {
                limit: u32::try_from(MAX_LISTED).unwrap_or(u32::MAX),
                states: Vec::new(),
            },
        )?;
        let runs = self
            .api
            .list_runs(list)
            .await
            .map_err(|s| from_status(&s))?
            .into_inner()
            .runs;
        let in_context = req.context_id.as_deref().filter(|c| !c.is_empty());
        let mut matching = Vec::new();
        for run in runs {
            if wanted.is_some_and(|w| !w.contains(&run.state())) {
                continue;
            }
            if let Some(after) = req.status_timestamp_after {
                let at = run.finished.or(run.created).unwrap_or_default();
                if at.seconds < after.timestamp() {
                    continue;
                }
            }
            // A run's context is read from the store: only when asked to
            // filter by it, else only for the page's tasks (below).
            let context_id = match in_context {
                Some(wanted) => {
                    let context_id = self.context(&run.run_id).await;
                    if context_id != wanted {
                        continue;
                    }
                    Some(context_id)
                }
                None => None,
            };
            matching.push((run, context_id));
        }
        let total = matching.len();
        let include_artifacts = req.include_artifacts.unwrap_or(false);
        let history = req.history_length.is_some_and(|n| n != 0);
        let mut tasks = Vec::new();
        for (run, context_id) in matching.into_iter().skip(offset).take(size) {
            let context_id = match context_id {
                Some(c) => c,
                None => self.context(&run.run_id).await,
            };
            let task = if include_artifacts {
                self.task(params, &run.run_id, Some(context_id), None, history)
                    .await?
            } else {
                TaskView {
                    summary: &run,
                    finished: None,
                    context_id: &context_id,
                }
                .task(Vec::new(), history)
            };
            tasks.push(task);
        }
        let next = offset + tasks.len();
        Ok(ListTasksResponse {
            page_size: i32::try_from(tasks.len()).unwrap_or(i32::MAX),
            tasks,
            next_page_token: if next < total {
                next.to_string()
            } else {
                String::new()
            },
            total_size: i32::try_from(total).unwrap_or(i32::MAX),
        })
    }

    async fn cancel_task(
        &self,
        params: &ServiceParams,
        req: CancelTaskRequest,
    ) -> Result<Task, A2AError> {
        let run = self.get_run(params, &req.id).await?;
        if run.finished.is_some() {
            return Err(A2AError::task_not_cancelable(&req.id));
        }
        let reason = req
            .metadata
            .as_ref()
            .and_then(|m| m.get("reason"))
            .and_then(|r| r.as_str())
            .unwrap_or("canceled through A2A")
            .to_string();
        let cancel = self.request(
            params,
            CancelRunRequest {
                run_id: req.id.clone(),
                reason,
            },
        )?;
        self.api
            .cancel_run(cancel)
            .await
            .map_err(|s| from_status(&s))?;
        self.task(params, &req.id, None, None, false).await
    }

    async fn subscribe_to_task(
        &self,
        params: &ServiceParams,
        req: SubscribeToTaskRequest,
    ) -> Result<A2aStream, A2AError> {
        let run = self.get_run(params, &req.id).await?;
        if run.finished.is_some() {
            return Err(A2AError::unsupported_operation(format!(
                "task {} is in a terminal state; read it with GetTask",
                req.id
            )));
        }
        let summary = run.run.unwrap_or_default();
        let after = summary.last_seq;
        let context_id = self.context(&req.id).await;
        let first = TaskView {
            summary: &summary,
            finished: None,
            context_id: &context_id,
        }
        .task(Vec::new(), false);
        self.follow(params, &req.id, context_id, first, after).await
    }

    async fn create_push_config(
        &self,
        _params: &ServiceParams,
        _req: TaskPushNotificationConfig,
    ) -> Result<TaskPushNotificationConfig, A2AError> {
        Err(no_push())
    }

    async fn get_push_config(
        &self,
        _params: &ServiceParams,
        _req: GetTaskPushNotificationConfigRequest,
    ) -> Result<TaskPushNotificationConfig, A2AError> {
        Err(no_push())
    }

    async fn list_push_configs(
        &self,
        _params: &ServiceParams,
        _req: ListTaskPushNotificationConfigsRequest,
    ) -> Result<ListTaskPushNotificationConfigsResponse, A2AError> {
        Err(no_push())
    }

    async fn delete_push_config(
        &self,
        _params: &ServiceParams,
        _req: DeleteTaskPushNotificationConfigRequest,
    ) -> Result<(), A2AError> {
        Err(no_push())
    }

    async fn get_extended_agent_card(
        &self,
        params: &ServiceParams,
        _req: GetExtendedAgentCardRequest,
    ) -> Result<AgentCard, A2AError> {
        check_version(params)?;
        if self.auth.is_none() {
            return Err(A2AError::extended_card_not_configured());
        }
        // Only an authenticated caller gets it; it also lists the agents
        // behind each skill.
        self.principal(params)?;
        Ok(self.card.extended())
    }
}
