//! The JSON the viewer's script reads and posts, each call one
//! Orchestrator API call made as the signed-in caller. Errors are the
//! API's: `{code, reason, message, metadata}` with the HTTP status of the
//! gRPC code (INVALID_ARGUMENT 400, NOT_FOUND 404, FAILED_PRECONDITION 409,
//! ...), so a form can name the field an answer got wrong.

use std::convert::Infallible;
use std::sync::Arc;

use agentmesh_proto::error::{ErrorReason, MeshError};
use agentmesh_proto::json::to_struct;
use agentmesh_proto::v1::orchestrator_service_server::OrchestratorService;
use agentmesh_proto::v1::{
    CancelRunRequest, GetRunRequest, ListAgentsRequest, ListRunsRequest, ProvideInputRequest,
    RunSpec, RunState, StreamOptions, SubmitRequest, WatchRunRequest, run_event::Event,
};
use agentmesh_proto::view;
use axum::Extension;
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::sse::{self, KeepAlive, Sse};
use axum::response::{IntoResponse, Json, Response};
use futures_util::StreamExt;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use tonic::Code;

use super::Viewer;
use super::session::Signed;
use crate::report::HTML_FILE;

/// Most bytes of a JSON body the viewer accepts (a goal, an answer).
pub const MAX_BODY: usize = 256 * 1024;

/// A refused call as JSON, with the HTTP status of its gRPC code.
pub fn problem(status: tonic::Status) -> Response {
    let http = match status.code() {
        Code::InvalidArgument | Code::OutOfRange => StatusCode::BAD_REQUEST,
        Code::Unauthenticated => StatusCode::UNAUTHORIZED,
        Code::PermissionDenied => StatusCode::FORBIDDEN,
        Code::NotFound => StatusCode::NOT_FOUND,
        Code::AlreadyExists | Code::FailedPrecondition | Code::Aborted => StatusCode::CONFLICT,
        Code::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
        Code::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
        Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        Code::Unimplemented => StatusCode::NOT_IMPLEMENTED,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    (http, Json(problem_json(&status))).into_response()
}

fn problem_json(status: &tonic::Status) -> Value {
    let error = MeshError::from_status(status);
    json!({
        "code": code_name(status.code()),
        "reason": error.reason.name(),
        "message": status.message(),
        "metadata": error.metadata,
    })
}

/// A gRPC code's canonical name (`INVALID_ARGUMENT`).
fn code_name(code: Code) -> String {
    let mut name = String::new();
    for (i, c) in format!("{code:?}").chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            name.push('_');
        }
        name.push(c.to_ascii_uppercase());
    }
    name
}

fn invalid(field: &str, message: impl Into<String>) -> Response {
    problem(
        MeshError::new(ErrorReason::InvalidInput, message)
            .with_meta("field", field)
            .into_status(),
    )
}

/// A POST's JSON body, through axum's `Json`: `application/json` only (a
/// cross-site form cannot send it), at most [`MAX_BODY`] bytes (the
/// router's `DefaultBodyLimit`). A refusal is INVALID_INPUT naming `body`.
pub struct Body<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for Body<T> {
    type Rejection = Response;

    async fn from_request(req: Request, state: &S) -> Result<Self, Response> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(v)) => Ok(Self(v)),
            Err(refused) => Err(invalid("body", refused.body_text())),
        }
    }
}

/// A query string, through axum's `Query`. A refusal is INVALID_INPUT
/// naming `query`.
pub struct Params<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Params<T> {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Response> {
        match Query::<T>::from_request_parts(parts, state).await {
            Ok(Query(v)) => Ok(Self(v)),
            Err(refused) => Err(invalid("query", refused.body_text())),
        }
    }
}

/// `?states=WAITING,RUNNING&limit=50`, or `?waiting=mine`.
#[derive(Deserialize)]
pub struct ListQuery {
    #[serde(default)]
    states: String,
    #[serde(default)]
    limit: u32,
    /// `mine`: only the runs waiting on a person that the caller may
    /// answer (its own, or every one for an admin).
    #[serde(default)]
    waiting: String,
}

/// `GET /api/runs`: the runs the caller may see, newest first.
pub async fn list_runs(
    State(v): State<Arc<Viewer>>,
    Extension(who): Extension<Signed>,
    Params(q): Params<ListQuery>,
) -> Response {
    let mut states = Vec::new();
    for name in q.states.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        match RunState::from_str_name(&format!("RUN_STATE_{}", name.to_ascii_uppercase())) {
            Some(s) if s != RunState::Unspecified => states.push(s as i32),
            _ => return invalid("states", format!("{name:?} is not a run state")),
        }
    }
    let mine = match q.waiting.as_str() {
        "" => false,
        "mine" => true,
        other => return invalid("waiting", format!("{other:?} is not a filter; send mine")),
    };
    if mine {
        states = vec![RunState::Waiting as i32];
    }
    let req = who.request(ListRunsRequest {
        limit: q.limit,
        states,
    });
    let caller = who.caller();
    match v.api.list_runs(req).await {
        Ok(r) => {
            let runs: Vec<Value> = r
                .get_ref()
                .runs
                .iter()
                .filter(|run| !mine || caller.steers(&run.owner))
                .map(view::run_summary)
                .collect();
            Json(json!({ "runs": runs })).into_response()
        }
        Err(s) => problem(s),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Start {
    goal: String,
}

/// `POST /api/runs {goal}`: starts a run of a goal.
pub async fn start_run(
    State(v): State<Arc<Viewer>>,
    Extension(who): Extension<Signed>,
    Body(start): Body<Start>,
) -> Response {
    let req = who.request(SubmitRequest {
        spec: Some(RunSpec {
            goal: start.goal,
            ..RunSpec::default()
        }),
    });
    match v.api.submit(req).await {
        Ok(r) => (
            StatusCode::CREATED,
            Json(json!({ "run_id": r.get_ref().run_id })),
        )
            .into_response(),
        Err(s) => problem(s),
    }
}

/// `GET /api/runs/{id}`: the run's summary, plan and end.
pub async fn get_run(
    State(v): State<Arc<Viewer>>,
    Extension(who): Extension<Signed>,
    Path(run_id): Path<String>,
) -> Response {
    match v.api.get_run(who.request(GetRunRequest { run_id })).await {
        Ok(r) => {
            let r = r.get_ref();
            Json(json!({
                "run": r.run.as_ref().map(view::run_summary),
                "plan": r.planned.as_ref().map(view::planned),
                "finished": r.finished.as_ref().map(|f| json!({
                    "state": view::state_name(f.state()), "reason": f.reason, "message": f.message,
                    "report": f.report.as_ref().map(agentmesh_proto::report::report),
                })),
            }))
            .into_response()
        }
        Err(s) => problem(s),
    }
}

/// `?after=SEQ`.
#[derive(Deserialize)]
pub struct After {
    after: Option<u64>,
}

/// `GET /api/runs/{id}/events`: the run's log as server-sent events, from
/// after `Last-Event-ID` (a reconnecting browser) or `?after=`. Each event
/// is `run` with the event as JSON and `id` its seq; a refusal mid-stream
/// is `problem` (RUN_MOVED: reconnect, on any replica); `end` closes.
/// Step outputs are left out (the Q2 dataset alone is 150 KB).
pub async fn events(
    State(v): State<Arc<Viewer>>,
    Extension(who): Extension<Signed>,
    Path(run_id): Path<String>,
    Params(q): Params<After>,
    headers: HeaderMap,
) -> Response {
    let resumed = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|s| s.trim().parse::<u64>().ok());
    let req = who.request(WatchRunRequest {
        run_id,
        after_seq: resumed.or(q.after).unwrap_or(0),
        stream: Some(StreamOptions {
            omit_step_outputs: true,
        }),
    });
    let stream = match v.api.watch_run(req).await {
        Ok(r) => r.into_inner(),
        Err(s) => return problem(s),
    };
    let events = stream
        .map(|item| {
            Ok::<_, Infallible>(match item {
                Ok(ev) => sse::Event::default()
                    .id(ev.seq.to_string())
                    .event("run")
                    .data(view::event(&ev).to_string()),
                Err(status) => sse::Event::default()
                    .event("problem")
                    .data(problem_json(&status).to_string()),
            })
        })
        .chain(futures_util::stream::once(async {
            Ok(sse::Event::default().event("end").data("end"))
        }));
    Sse::new(events)
        .keep_alive(KeepAlive::default())
        .into_response()
}

/// `GET /api/runs/{id}/report`: the finished run's report page, charts
/// inside, as the report hook rendered it (sanitized there). Shown in a
/// sandboxed frame: it may run no script and load nothing.
pub async fn report(
    State(v): State<Arc<Viewer>>,
    Extension(who): Extension<Signed>,
    Path(run_id): Path<String>,
) -> Response {
    let got = match v
        .api
        .get_run(who.request(GetRunRequest {
            run_id: run_id.clone(),
        }))
        .await
    {
        Ok(r) => r.into_inner(),
        Err(s) => return problem(s),
    };
    if got.finished.is_none() {
        return problem(
            MeshError::new(
                ErrorReason::NotFound,
                "the run has not finished: no report yet",
            )
            .with_meta("run_id", run_id)
            .into_status(),
        );
    }
    let req = who.request(WatchRunRequest {
        run_id,
        after_seq: 0,
        stream: Some(StreamOptions {
            omit_step_outputs: true,
        }),
    });
    let mut stream = match v.api.watch_run(req).await {
        Ok(r) => r.into_inner(),
        Err(s) => return problem(s),
    };
    let mut html = Vec::new();
    while let Some(item) = stream.next().await {
        match item {
            Ok(ev) => {
                if let Some(Event::ReportChunk(c)) = ev.event
                    && c.artifact_id == HTML_FILE
                {
                    html.extend_from_slice(&c.data);
                }
            }
            Err(s) => return problem(s),
        }
    }
    if html.is_empty() {
        return problem(
            MeshError::new(ErrorReason::NotFound, "the run ended without a report page")
                .into_status(),
        );
    }
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; img-src data:; style-src 'unsafe-inline'; sandbox",
            ),
        ],
        html,
    )
        .into_response()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cancel {
    #[serde(default)]
    reason: String,
}

/// `POST /api/runs/{id}/cancel {reason}`.
pub async fn cancel(
    State(v): State<Arc<Viewer>>,
    Extension(who): Extension<Signed>,
    Path(run_id): Path<String>,
    Body(c): Body<Cancel>,
) -> Response {
    let reason = if c.reason.trim().is_empty() {
        "canceled from the run viewer".to_string()
    } else {
        c.reason
    };
    match v
        .api
        .cancel_run(who.request(CancelRunRequest { run_id, reason }))
        .await
    {
        Ok(r) => Json(json!({ "state": view::state_name(r.get_ref().state()) })).into_response(),
        Err(s) => problem(s),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Answer {
    answer: Value,
}

/// `POST /api/runs/{id}/steps/{step}/answer {answer}`: answers a question
/// or an approval gate (`{"approved": bool, "reason": "..."}`).
pub async fn answer(
    State(v): State<Arc<Viewer>>,
    Extension(who): Extension<Signed>,
    Path((run_id, step_id)): Path<(String, String)>,
    Body(a): Body<Answer>,
) -> Response {
    let Value::Object(answer) = a.answer else {
        return invalid("answer", "the answer must be a JSON object");
    };
    let req = who.request(ProvideInputRequest {
        run_id,
        step_id,
        answer: Some(to_struct(&answer)),
    });
    match v.api.provide_input(req).await {
        Ok(r) => Json(json!({
            "seq": r.get_ref().seq,
            "state": view::state_name(r.get_ref().state()),
        }))
        .into_response(),
        Err(s) => problem(s),
    }
}

/// `GET /api/agents`: endpoints (health, skills, load) and skill queues.
pub async fn agents(State(v): State<Arc<Viewer>>, Extension(who): Extension<Signed>) -> Response {
    match v.api.list_agents(who.request(ListAgentsRequest {})).await {
        Ok(r) => Json(view::agents(r.get_ref())).into_response(),
        Err(s) => problem(s),
    }
}
