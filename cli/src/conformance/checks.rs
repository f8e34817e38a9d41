//! The checks themselves: each calls the agent over gRPC the way the
//! orchestrator (or any caller) would, and says what it saw.

use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant, SystemTime};

use agentmesh_proto::error::{ErrorReason, reason_of};
use agentmesh_proto::json::{from_struct, to_struct};
use agentmesh_proto::v1::agent_service_client::AgentServiceClient;
use agentmesh_proto::v1::{
    AGENT_SERVICE_NAME, AgentCard, CancelTaskRequest, ExecuteTaskRequest, GetAgentCardRequest,
    PROTOCOL_VERSION, Skill, TaskEvent, TaskState,
};
use agentmesh_runtime::auth::AuthChannel;
use agentmesh_runtime::schema::SkillSchemas;
use serde_json::{Map, Value};
use tonic::{Code, Status, Streaming};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

use super::stream::{self, Ending, Received};
use super::{Check, Verdict};

/// Deadline of each unary call (health, card, cancel, reflection).
const RPC_TIMEOUT: Duration = Duration::from_secs(10);
/// Heartbeat interval asked of the agent in the task checks.
const HEARTBEAT: Duration = Duration::from_millis(250);
/// Longest silence allowed while a task works, in heartbeat intervals.
const SILENT_INTERVALS: u32 = 4;
/// A service name no agent serves.
const NO_SUCH_SERVICE: &str = "agentmesh.conformance.NoSuchService";
/// A skill id no agent offers.
const NO_SUCH_SKILL: &str = "agentmesh.conformance.no-such-skill";
/// Largest message accepted from the agent.
const MAX_MESSAGE: usize = 64 * 1024 * 1024;

type Agent = AgentServiceClient<AuthChannel>;

fn with_timeout<T>(msg: T) -> tonic::Request<T> {
    let mut req = tonic::Request::new(msg);
    req.set_timeout(RPC_TIMEOUT);
    req
}

/// A status as people read it: code, agentmesh reason, message.
fn describe(status: &Status) -> String {
    let reason = reason_of(status).map_or_else(
        || "no agentmesh ErrorInfo".to_string(),
        |r| format!("reason {r}"),
    );
    format!("{:?} ({reason}): {}", status.code(), status.message())
}

/// The refusal a request must get: `code` with ErrorInfo `reason`.
fn refusal(status: &Status, code: Code, reason: ErrorReason) -> Verdict {
    if status.code() == code && reason_of(status).as_deref() == Some(reason.name()) {
        Verdict::Pass(format!("{code:?} with reason {}", reason.name()))
    } else {
        Verdict::Fail(format!(
            "got {}; expected {code:?} with ErrorInfo reason {} (domain agentmesh)",
            describe(status),
            reason.name()
        ))
    }
}

/// `grpc.health.v1.Health`: the overall service and the agent service are
/// SERVING, an unknown name is NOT_FOUND, `Watch` answers.
pub async fn health(channel: &AuthChannel) -> Vec<Check> {
    let mut client = HealthClient::new(channel.clone());
    let mut checks = Vec::new();
    for (id, service) in [
        ("health.overall", ""),
        ("health.agent_service", AGENT_SERVICE_NAME),
    ] {
        let req = HealthCheckRequest {
            service: service.to_string(),
        };
        let verdict = match client.check(with_timeout(req)).await {
            Ok(resp) if resp.get_ref().status == ServingStatus::Serving as i32 => {
                Verdict::Pass(format!("{service:?} is SERVING"))
            }
            Ok(resp) => Verdict::Fail(format!(
                "{service:?} is {:?}, not SERVING",
                resp.get_ref().status()
            )),
            Err(status) => Verdict::Fail(format!("Check({service:?}): {}", describe(&status))),
        };
        checks.push(Check::new(id, verdict));
    }
    let req = HealthCheckRequest {
        service: NO_SUCH_SERVICE.to_string(),
    };
    let verdict = match client.check(with_timeout(req)).await {
        Err(status) if status.code() == Code::NotFound => {
            Verdict::Pass("an unknown service is NOT_FOUND".into())
        }
        Err(status) => Verdict::Fail(format!(
            "Check of an unknown service: {}; expected NotFound",
            describe(&status)
        )),
        Ok(resp) => Verdict::Fail(format!(
            "Check of an unknown service answered {:?}; expected NotFound",
            resp.get_ref().status()
        )),
    };
    checks.push(Check::new("health.unknown_service", verdict));
    checks.push(Check::new("health.watch", watch(&mut client).await));
    checks
}

async fn watch(client: &mut HealthClient<AuthChannel>) -> Verdict {
    let req = HealthCheckRequest {
        service: AGENT_SERVICE_NAME.to_string(),
    };
    let first = tokio::time::timeout(RPC_TIMEOUT, async {
        let mut stream = client.watch(req).await?.into_inner();
        stream.message().await
    })
    .await;
    match first {
        Ok(Ok(Some(resp))) if resp.status == ServingStatus::Serving as i32 => {
            Verdict::Pass("Watch sends SERVING".into())
        }
        Ok(Ok(Some(resp))) => {
            Verdict::Fail(format!("Watch sends {:?}, not SERVING", resp.status()))
        }
        Ok(Ok(None)) => Verdict::Fail("Watch ended without a message".into()),
        Ok(Err(status)) => Verdict::Fail(format!("Watch: {}", describe(&status))),
        Err(_) => Verdict::Fail(format!("Watch sent nothing within {RPC_TIMEOUT:?}")),
    }
}

/// Lists the services through server reflection, in package `$pkg`
/// (`v1` or `v1alpha`: servers in some languages offer only the older one).
macro_rules! list_services {
    ($pkg:ident, $channel:expr) => {{
        use tonic_reflection::pb::$pkg::ServerReflectionRequest;
        use tonic_reflection::pb::$pkg::server_reflection_client::ServerReflectionClient;
        use tonic_reflection::pb::$pkg::server_reflection_request::MessageRequest;
        use tonic_reflection::pb::$pkg::server_reflection_response::MessageResponse;
        let mut client = ServerReflectionClient::new($channel.clone());
        let req = ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::ListServices(String::new())),
        };
        let answer = tokio::time::timeout(RPC_TIMEOUT, async {
            let mut stream = client
                .server_reflection_info(tokio_stream::once(req))
                .await?
                .into_inner();
            stream.message().await
        })
        .await;
        match answer {
            Err(_) => Err(Status::deadline_exceeded("no answer")),
            Ok(Err(status)) => Err(status),
            Ok(Ok(resp)) => Ok(match resp.and_then(|r| r.message_response) {
                Some(MessageResponse::ListServicesResponse(list)) => {
                    list.service.into_iter().map(|s| s.name).collect::<Vec<_>>()
                }
                _ => Vec::new(),
            }),
        }
    }};
}

/// Server reflection lists the agent service and health.
pub async fn reflection(channel: &AuthChannel) -> Check {
    let listed = match list_services!(v1, channel) {
        Err(status) if status.code() == Code::Unimplemented => list_services!(v1alpha, channel),
        other => other,
    };
    let verdict = match listed {
        Err(status) => Verdict::Fail(format!("ServerReflectionInfo: {}", describe(&status))),
        Ok(names) => {
            let missing: Vec<&str> = [AGENT_SERVICE_NAME, "grpc.health.v1.Health"]
                .into_iter()
                .filter(|want| !names.iter().any(|n| n == want))
                .collect();
            if missing.is_empty() {
                Verdict::Pass(format!("{} services listed", names.len()))
            } else {
                Verdict::Fail(format!("reflection does not list {}", missing.join(", ")))
            }
        }
    };
    Check::new("reflection.services", verdict)
}

/// A card and each skill's compiled schemas (skills whose schemas do not
/// compile are left out).
pub struct Card {
    /// The card as sent.
    pub card: AgentCard,
    /// Compiled schemas by skill id.
    pub schemas: BTreeMap<String, SkillSchemas>,
}

/// `GetAgentCard`: identity, skills, schemas.
pub async fn card(agent: &mut Agent) -> (Vec<Check>, Option<Card>) {
    let card = match agent
        .get_agent_card(with_timeout(GetAgentCardRequest {}))
        .await
    {
        Ok(resp) => resp.into_inner().card,
        Err(status) => {
            let why = format!("GetAgentCard: {}", describe(&status));
            return (vec![Check::new("card.identity", Verdict::Fail(why))], None);
        }
    };
    let Some(card) = card else {
        let why = "GetAgentCard answered without a card".to_string();
        return (vec![Check::new("card.identity", Verdict::Fail(why))], None);
    };
    let mut problems = Vec::new();
    if card.name.trim().is_empty() {
        problems.push("the name is empty".to_string());
    }
    if let Err(e) = semver::Version::parse(&card.version) {
        problems.push(format!("version {:?} is not semver ({e})", card.version));
    }
    if card.protocol_version != PROTOCOL_VERSION {
        problems.push(format!(
            "protocol_version is {:?}, not {PROTOCOL_VERSION:?}",
            card.protocol_version
        ));
    }
    let identity = verdict_of(
        problems,
        format!("{} {} ({})", card.name, card.version, card.protocol_version),
    );

    let mut problems = Vec::new();
    let mut seen = HashSet::new();
    if card.skills.is_empty() {
        problems.push("the card lists no skills".to_string());
    }
    for skill in &card.skills {
        let dotted = skill.id.split('.').count() >= 2
            && skill.id.split('.').all(|part| !part.is_empty())
            && !skill.id.contains(char::is_whitespace);
        if !dotted {
            problems.push(format!(
                "skill id {:?} is not dotted (like sales.extract)",
                skill.id
            ));
        }
        if !seen.insert(skill.id.as_str()) {
            problems.push(format!("skill id {:?} is listed twice", skill.id));
        }
        if skill.description.trim().is_empty() {
            problems.push(format!("skill {} has no description", skill.id));
        }
    }
    let skills = verdict_of(problems, format!("{} skills", card.skills.len()));

    let mut problems = Vec::new();
    let mut schemas = BTreeMap::new();
    for skill in &card.skills {
        match SkillSchemas::compile(skill) {
            Ok(compiled) => {
                schemas.insert(skill.id.clone(), compiled);
            }
            Err(e) => problems.push(e.to_string()),
        }
    }
    let compiled = verdict_of(problems, "every input and output schema compiles".into());
    let checks = vec![
        Check::new("card.identity", identity),
        Check::new("card.skills", skills),
        Check::new("card.schemas", compiled),
    ];
    (checks, Some(Card { card, schemas }))
}

fn verdict_of(problems: Vec<String>, ok: String) -> Verdict {
    if problems.is_empty() {
        Verdict::Pass(ok)
    } else {
        Verdict::Fail(problems.join("; "))
    }
}

/// What an `ExecuteTask` call gave back.
enum Answer {
    /// An error status before any event.
    Refused(Status),
    /// Events, then the end of the stream with OK.
    Streamed(Vec<Received>),
    /// Events, then an error status.
    Cut(Vec<Received>, Status),
    /// Events, then nothing more before the time limit.
    Silent(Vec<Received>),
}

impl Answer {
    /// The verdict when the call must be refused with `code` and `reason`.
    fn expect_refusal(&self, code: Code, reason: ErrorReason) -> Verdict {
        match self {
            Self::Refused(status) => refusal(status, code, reason),
            other => Verdict::Fail(format!(
                "{}; expected {code:?} with ErrorInfo reason {} before any event",
                other.describe(),
                reason.name()
            )),
        }
    }

    fn describe(&self) -> String {
        match self {
            Self::Refused(status) => format!("refused: {}", describe(status)),
            Self::Streamed(events) => format!("streamed {} events", events.len()),
            Self::Cut(events, status) => format!(
                "the stream broke after {} events: {}",
                events.len(),
                describe(status)
            ),
            Self::Silent(events) => format!(
                "{} events, then nothing before the time limit",
                events.len()
            ),
        }
    }
}

/// Why [`read`] stopped.
enum ReadEnd {
    /// The stream ended with OK, or the events asked for arrived.
    Done,
    /// The stream ended with an error status.
    Broke(Status),
    /// `until` passed first.
    TimedOut,
}

/// Reads `stream` into `events` until it ends, `stop` events are there, or
/// `until`.
async fn read(
    stream: &mut Streaming<TaskEvent>,
    events: &mut Vec<Received>,
    stop: Option<usize>,
    until: tokio::time::Instant,
) -> ReadEnd {
    let mut last = Instant::now();
    loop {
        if stop.is_some_and(|n| events.len() >= n) {
            return ReadEnd::Done;
        }
        match tokio::time::timeout_at(until, stream.message()).await {
            Err(_) => return ReadEnd::TimedOut,
            Ok(Ok(Some(event))) => {
                events.push(Received {
                    event,
                    gap: last.elapsed(),
                });
                last = Instant::now();
            }
            Ok(Ok(None)) => return ReadEnd::Done,
            Ok(Err(status)) => return ReadEnd::Broke(status),
        }
    }
}

/// Runs the task checks against an agent whose card was read.
pub struct Tasks<'a> {
    /// The agent.
    pub agent: Agent,
    /// Its card.
    pub card: &'a Card,
    /// A valid input for each skill that has one.
    pub inputs: &'a BTreeMap<String, Map<String, Value>>,
    /// How long a task may take.
    pub task_timeout: Duration,
    /// Prefix of task ids and idempotency keys.
    pub prefix: String,
}

impl Tasks<'_> {
    fn request(&self, name: &str, skill: &str, input: &Map<String, Value>) -> ExecuteTaskRequest {
        let id = format!("{}-{name}-{skill}", self.prefix);
        ExecuteTaskRequest {
            task_id: id.clone(),
            run_id: self.prefix.clone(),
            skill_id: skill.to_string(),
            input: Some(to_struct(input)),
            idempotency_key: id,
            attempt: 1,
            deadline: Some((SystemTime::now() + self.task_timeout).into()),
            heartbeat_interval: HEARTBEAT.try_into().ok(),
            ..ExecuteTaskRequest::default()
        }
    }

    async fn call(&self, req: ExecuteTaskRequest) -> Answer {
        let until = tokio::time::Instant::now() + self.task_timeout + RPC_TIMEOUT;
        let mut agent = self.agent.clone();
        let started = tokio::time::timeout_at(until, agent.execute_task(req)).await;
        let mut stream = match started {
            Err(_) => return Answer::Silent(Vec::new()),
            Ok(Err(status)) => return Answer::Refused(status),
            Ok(Ok(resp)) => resp.into_inner(),
        };
        let mut events = Vec::new();
        match read(&mut stream, &mut events, None, until).await {
            ReadEnd::TimedOut => Answer::Silent(events),
            ReadEnd::Done => Answer::Streamed(events),
            ReadEnd::Broke(status) if events.is_empty() => Answer::Refused(status),
            ReadEnd::Broke(status) => Answer::Cut(events, status),
        }
    }

    /// Every check; skills without an input skip the checks that run one.
    pub async fn run(&self) -> Vec<Check> {
        let mut checks = Vec::new();
        let empty = Map::new();
        let answer = self
            .call(self.request("unknown", NO_SUCH_SKILL, &empty))
            .await;
        checks.push(Check::new(
            "task.unknown_skill",
            answer.expect_refusal(Code::NotFound, ErrorReason::UnknownSkill),
        ));
        for skill in &self.card.card.skills {
            let id = &skill.id;
            let Some(schemas) = self.card.schemas.get(id) else {
                continue;
            };
            checks.push(Check::new(
                format!("task.invalid_input/{id}"),
                self.invalid_input(skill, schemas).await,
            ));
            let Some(input) = self.inputs.get(id) else {
                let why = format!(
                    "no valid input: neither an example on the card nor {{}} passes its \
                     input schema; pass --input {id}=JSON"
                );
                checks.push(Check::new(
                    format!("task.stream/{id}"),
                    Verdict::Skip(why.clone()),
                ));
                checks.push(Check::new(
                    format!("task.idempotent_repeat/{id}"),
                    Verdict::Skip(why),
                ));
                continue;
            };
            let req = self.request("stream", id, input);
            let task_id = req.task_id.clone();
            let (verdict, ending) =
                stream_verdict(&self.call(req.clone()).await, &task_id, schemas);
            checks.push(Check::new(format!("task.stream/{id}"), verdict));
            let repeat = ExecuteTaskRequest {
                task_id: format!("{task_id}-repeat"),
                attempt: 2,
                ..req
            };
            checks.push(Check::new(
                format!("task.idempotent_repeat/{id}"),
                repeat_verdict(&self.call(repeat).await, ending.as_ref()),
            ));
        }
        let first = self
            .card
            .card
            .skills
            .iter()
            .find_map(|s| self.inputs.get(&s.id).map(|input| (s.id.as_str(), input)));
        let why = "no skill has a valid input (see task.stream)";
        match first {
            Some((skill, input)) => {
                checks.push(Check::new(
                    "task.deadline_passed",
                    self.deadline(skill, input).await,
                ));
                checks.push(Check::new("task.cancel", self.cancel(skill, input).await));
            }
            None => {
                checks.push(Check::new(
                    "task.deadline_passed",
                    Verdict::Skip(why.into()),
                ));
                checks.push(Check::new("task.cancel", Verdict::Skip(why.into())));
            }
        }
        checks.push(Check::new(
            "task.cancel_unknown",
            self.cancel_unknown().await,
        ));
        checks
    }

    /// An input the skill's schema rejects: refused INVALID_INPUT.
    async fn invalid_input(&self, skill: &Skill, schemas: &SkillSchemas) -> Verdict {
        let Some(input) = rejected_input(schemas, skill) else {
            return Verdict::Skip("its input schema accepts every input tried".into());
        };
        let answer = self.call(self.request("invalid", &skill.id, &input)).await;
        match answer.expect_refusal(Code::InvalidArgument, ErrorReason::InvalidInput) {
            Verdict::Fail(why) => Verdict::Fail(format!("input {}: {why}", Value::Object(input))),
            verdict => verdict,
        }
    }

    /// A deadline already passed: refused, or failed, with DEADLINE_EXCEEDED.
    async fn deadline(&self, skill: &str, input: &Map<String, Value>) -> Verdict {
        let mut req = self.request("deadline", skill, input);
        req.deadline = Some((SystemTime::now() - Duration::from_secs(1)).into());
        let answer = self.call(req.clone()).await;
        let reason = ErrorReason::DeadlineExceeded;
        if let Answer::Streamed(events) = &answer {
            return match stream::check(events, Some(&req.task_id)) {
                Ok(end) if end.reason.as_deref() == Some(reason.name()) => {
                    Verdict::Pass(format!("the task failed with {}", reason.name()))
                }
                Ok(end) => Verdict::Fail(format!(
                    "a task whose deadline had passed ended {} ({}); expected DEADLINE_EXCEEDED",
                    stream::name(end.state),
                    end.reason.as_deref().unwrap_or("no failure")
                )),
                Err(e) => Verdict::Fail(format!("malformed stream: {e}")),
            };
        }
        answer.expect_refusal(Code::DeadlineExceeded, reason)
    }

    /// `CancelTask` on a task just started: a terminal state, the stream
    /// ends in it, and a second cancel answers the same.
    async fn cancel(&self, skill: &str, input: &Map<String, Value>) -> Verdict {
        let req = self.request("cancel", skill, input);
        let task_id = req.task_id.clone();
        let until = tokio::time::Instant::now() + self.task_timeout + RPC_TIMEOUT;
        let mut agent = self.agent.clone();
        let mut stream = match tokio::time::timeout_at(until, agent.execute_task(req)).await {
            Ok(Ok(resp)) => resp.into_inner(),
            Ok(Err(status)) => return Verdict::Fail(format!("refused: {}", describe(&status))),
            Err(_) => return Verdict::Fail("no answer before the time limit".into()),
        };
        let mut events = Vec::new();
        match read(&mut stream, &mut events, Some(1), until).await {
            ReadEnd::Done => {}
            ReadEnd::Broke(status) => {
                return Verdict::Fail(format!("before the cancel: {}", describe(&status)));
            }
            ReadEnd::TimedOut => return Verdict::Fail("no event before the time limit".into()),
        }
        let cancel = || CancelTaskRequest {
            task_id: task_id.clone(),
            reason: "meshctl conformance".into(),
        };
        let state = match agent.cancel_task(with_timeout(cancel())).await {
            Ok(resp) => resp.into_inner().state(),
            Err(status) => return Verdict::Fail(format!("CancelTask: {}", describe(&status))),
        };
        match read(&mut stream, &mut events, None, until).await {
            ReadEnd::Done => {}
            ReadEnd::Broke(status) => {
                return Verdict::Fail(format!("the stream broke: {}", describe(&status)));
            }
            ReadEnd::TimedOut => {
                return Verdict::Fail("the stream did not end after CancelTask".into());
            }
        }
        let ending = match stream::check(&events, Some(&task_id)) {
            Ok(ending) => ending,
            Err(e) => return Verdict::Fail(format!("malformed stream: {e}")),
        };
        if ending.state != state {
            return Verdict::Fail(format!(
                "CancelTask answered {}, but the stream ended {}",
                stream::name(state),
                stream::name(ending.state)
            ));
        }
        match agent.cancel_task(with_timeout(cancel())).await {
            Ok(resp) if resp.get_ref().state() == state => {}
            Ok(resp) => {
                return Verdict::Fail(format!(
                    "a second CancelTask answered {}, the first {}",
                    stream::name(resp.get_ref().state()),
                    stream::name(state)
                ));
            }
            Err(status) => {
                return Verdict::Fail(format!("a second CancelTask: {}", describe(&status)));
            }
        }
        Verdict::Pass(if state == TaskState::Canceled {
            "canceled while working; a second cancel answers the same".into()
        } else {
            format!(
                "the task had already ended {}; both cancels answer it",
                stream::name(state)
            )
        })
    }

    /// `CancelTask` of a task the agent never saw: NOT_FOUND.
    async fn cancel_unknown(&self) -> Verdict {
        let req = CancelTaskRequest {
            task_id: format!("{}-never-started", self.prefix),
            reason: "meshctl conformance".into(),
        };
        match self.agent.clone().cancel_task(with_timeout(req)).await {
            Err(status) => refusal(&status, Code::NotFound, ErrorReason::NotFound),
            Ok(resp) => Verdict::Fail(format!(
                "answered {} for a task it never saw; expected NotFound",
                stream::name(resp.get_ref().state())
            )),
        }
    }
}

/// The checks of a task run with a valid input: a well-formed stream, an
/// output valid against the output schema, no long silence.
fn stream_verdict(
    answer: &Answer,
    task_id: &str,
    schemas: &SkillSchemas,
) -> (Verdict, Option<Ending>) {
    let Answer::Streamed(events) = answer else {
        return (Verdict::Fail(answer.describe()), None);
    };
    let ending = match stream::check(events, Some(task_id)) {
        Ok(ending) => ending,
        Err(e) => return (Verdict::Fail(e), None),
    };
    let silence = stream::longest_silence(events);
    let limit = HEARTBEAT * SILENT_INTERVALS;
    if silence > limit {
        let why = format!(
            "silent for {} ms while working (heartbeat asked every {} ms)",
            silence.as_millis(),
            HEARTBEAT.as_millis()
        );
        return (Verdict::Fail(why), Some(ending));
    }
    if let Some(output) = &ending.output
        && let Err(e) = schemas.check_output(&from_struct(output))
    {
        return (Verdict::Fail(e.to_string()), Some(ending));
    }
    let done = match &ending.reason {
        None => format!("{}, {} events", stream::name(ending.state), events.len()),
        Some(reason) => format!(
            "{} ({reason}), {} events",
            stream::name(ending.state),
            events.len()
        ),
    };
    (Verdict::Pass(done), Some(ending))
}

/// The same idempotency key again: the first task's outcome, not a new run.
fn repeat_verdict(answer: &Answer, first: Option<&Ending>) -> Verdict {
    let Some(first) = first else {
        return Verdict::Skip("the first task did not end well-formed".into());
    };
    let Answer::Streamed(events) = answer else {
        return Verdict::Fail(answer.describe());
    };
    match stream::check(events, None) {
        Err(e) => Verdict::Fail(format!("malformed stream: {e}")),
        Ok(again) if again == *first => Verdict::Pass(format!(
            "the first task's {} again",
            stream::name(first.state)
        )),
        Ok(again) => Verdict::Fail(format!(
            "the repeat ended {} ({}), the first task {} ({}): a key seen before must not run again",
            stream::name(again.state),
            again.reason.as_deref().unwrap_or("with its own output"),
            stream::name(first.state),
            first.reason.as_deref().unwrap_or("with its output"),
        )),
    }
}

/// An input the skill's schema rejects: `{}`, a field no schema names, or
/// a declared field of the wrong type, whichever the schema refuses first.
fn rejected_input(schemas: &SkillSchemas, skill: &Skill) -> Option<Map<String, Value>> {
    let mut candidates = vec![Map::new()];
    let mut unknown = Map::new();
    unknown.insert(
        "agentmesh_conformance_unknown_field".into(),
        Value::Bool(true),
    );
    candidates.push(unknown);
    let declared = skill
        .input_schema
        .as_ref()
        .map(from_struct)
        .and_then(|schema| schema.get("properties").cloned());
    if let Some(Value::Object(props)) = declared {
        for name in props.keys() {
            for wrong in [Value::Bool(true), serde_json::json!([[[]]]), Value::Null] {
                let mut input = Map::new();
                input.insert(name.clone(), wrong);
                candidates.push(input);
            }
        }
    }
    candidates
        .into_iter()
        .find(|input| schemas.check_input(input).is_err())
}

/// An input for each skill: the one given with `--input`, else the first
/// example on the card that is a JSON object the schema accepts, else `{}`
/// if the schema accepts it.
pub fn valid_inputs(
    card: &Card,
    given: &BTreeMap<String, Map<String, Value>>,
) -> Result<BTreeMap<String, Map<String, Value>>, String> {
    for (skill, input) in given {
        let Some(schemas) = card.schemas.get(skill) else {
            return Err(format!("--input {skill}: the agent has no skill {skill:?}"));
        };
        schemas
            .check_input(input)
            .map_err(|e| format!("--input {skill}: {e}"))?;
    }
    let mut inputs = given.clone();
    for skill in &card.card.skills {
        let Some(schemas) = card.schemas.get(&skill.id) else {
            continue;
        };
        if inputs.contains_key(&skill.id) {
            continue;
        }
        let found = skill
            .examples
            .iter()
            .filter_map(|e| serde_json::from_str::<Map<String, Value>>(e).ok())
            .chain(std::iter::once(Map::new()))
            .find(|input| schemas.check_input(input).is_ok());
        if let Some(input) = found {
            inputs.insert(skill.id.clone(), input);
        }
    }
    Ok(inputs)
}

/// The agent client with this suite's message limit.
pub fn agent(channel: &AuthChannel) -> Agent {
    AgentServiceClient::new(channel.clone())
        .max_decoding_message_size(MAX_MESSAGE)
        .max_encoding_message_size(MAX_MESSAGE)
}
