//! Authentication and authorization on real gRPC servers on loopback: an
//! orchestrator with a tokens file, a JWKS file and client certificates;
//! agents that accept tasks only from the orchestrator; meshctl with
//! `--token` / `AGENTMESH_TOKEN` as a separate process. Every refusal has
//! its status, its reason and nothing of the credential in its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use agentmesh_e2e::mesh::{
    TestAgent, orchestrator, spawn_agent_at, spawn_orchestrator, spec, step, test_config,
    wait_serving_agents,
};
use agentmesh_e2e::pki::Pki;
use agentmesh_e2e::{run_meshctl, spawn_agent, temp_dir};
use agentmesh_orchestrator::OrchestratorConfig;
use agentmesh_proto::error::{ErrorReason, MeshError};
use agentmesh_proto::v1::agent_service_client::AgentServiceClient;
use agentmesh_proto::v1::orchestrator_service_client::OrchestratorServiceClient;
use agentmesh_proto::v1::registry_service_client::RegistryServiceClient;
use agentmesh_proto::v1::{
    ApprovalGate, CancelRunRequest, DeregisterRequest, EndpointHealth, GetAgentCardRequest,
    GetRunRequest, ListAgentsRequest, ListRunsRequest, PlanStep, RegisterRequest,
    RenewLeaseRequest, RunRequest, RunSpec, RunState, SubmitRequest, WatchRunRequest, run_event,
};
use agentmesh_runtime::ServerConfig;
use agentmesh_runtime::auth::tokens::hash_hex;
use agentmesh_runtime::auth::{AuthChannel, AuthConfig, CallCredentials, JwtConfig, Role};
use agentmesh_runtime::tls::{ClientTls, ServerTls};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use futures_util::StreamExt;
use serde_json::json;
use tonic::transport::Channel;
use tonic::{Code, Status};

const ALICE: &str = "alice-token-3b8f1c0e9d2a4f6b8c0e1d3f5a7b9c1d";
const BOB: &str = "bob-token-8e2c4a6f0b1d3e5f7a9c1b3d5e7f9a0b";
const AUDITOR: &str = "auditor-token-5d7f9b1c3e5a7c9e1f3b5d7a9c1e3f5b";
const ROOT: &str = "root-token-1a3c5e7b9d1f3a5c7e9b1d3f5a7c9e1b";
const AGENT: &str = "agent-token-7c9e1a3b5d7f9c1e3a5b7d9f1c3e5a7b";
const OTHER_AGENT: &str = "agent2-token-2b4d6f8a0c2e4b6d8f0a2c4e6b8d0f2a";
const ORCH: &str = "orch-token-9f1b3d5a7c9e1b3f5d7a9c1e3b5f7d9a";
const ISSUER: &str = "https://login.example.test";
const AUDIENCE: &str = "agentmesh";

/// The test's credentials on disk: a tokens file and a JWKS with one ES256
/// key, and the key that signs the test's JWTs.
struct Creds {
    tokens_file: PathBuf,
    jwks_file: PathBuf,
    signing: jsonwebtoken::EncodingKey,
    /// A key the server does not know, under the same kid.
    forger: jsonwebtoken::EncodingKey,
}

fn creds(dir: &Path) -> Creds {
    let entry = |token: &str, principal: &str, roles: &[&str]| {
        format!(
            "[[tokens]]\nsha256 = \"{}\"\nprincipal = \"{principal}\"\nroles = {roles:?}\n",
            hash_hex(token)
        )
    };
    let tokens = [
        entry(ALICE, "alice", &["submit"]),
        entry(BOB, "bob", &["submit"]),
        entry(AUDITOR, "auditor", &["read"]),
        entry(ROOT, "root", &["admin"]),
        entry(AGENT, "agent-1", &["agent"]),
        entry(OTHER_AGENT, "agent-2", &["agent"]),
        entry(ORCH, "orchestrator", &[]),
    ]
    .concat();
    let tokens_file = dir.join("tokens.toml");
    std::fs::write(&tokens_file, tokens).unwrap();

    let key = rcgen::KeyPair::generate().unwrap();
    let raw = key.public_key_raw();
    assert_eq!(raw.len(), 65, "uncompressed P-256 point");
    let jwks = json!({"keys": [{
        "kty": "EC", "crv": "P-256", "kid": "k1", "alg": "ES256", "use": "sig",
        "x": URL_SAFE_NO_PAD.encode(&raw[1..33]),
        "y": URL_SAFE_NO_PAD.encode(&raw[33..65]),
    }]});
    let jwks_file = dir.join("jwks.json");
    std::fs::write(&jwks_file, jwks.to_string()).unwrap();
    let forger = rcgen::KeyPair::generate().unwrap();
    Creds {
        tokens_file,
        jwks_file,
        signing: jsonwebtoken::EncodingKey::from_ec_der(&key.serialize_der()),
        forger: jsonwebtoken::EncodingKey::from_ec_der(&forger.serialize_der()),
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A JWT signed with `key` (kid k1) carrying `claims`.
fn jwt(key: &jsonwebtoken::EncodingKey, claims: serde_json::Value) -> String {
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
    header.kid = Some("k1".into());
    jsonwebtoken::encode(&header, &claims, key).unwrap()
}

fn claims(sub: &str, roles: serde_json::Value) -> serde_json::Value {
    json!({"sub": sub, "iss": ISSUER, "aud": AUDIENCE, "exp": now() + 600, "roles": roles})
}

fn auth_config(c: &Creds) -> AuthConfig {
    AuthConfig {
        tokens_file: Some(c.tokens_file.clone()),
        jwt: Some(JwtConfig {
            jwks_file: Some(c.jwks_file.clone()),
            issuer: ISSUER.into(),
            audience: AUDIENCE.into(),
            leeway: Duration::ZERO,
            ..JwtConfig::default()
        }),
        ..AuthConfig::default()
    }
}

/// An orchestrator with authentication on, over `agents`.
async fn secured_orchestrator(c: &Creds, agents: &[SocketAddr]) -> SocketAddr {
    let mut cfg: OrchestratorConfig = test_config(agents);
    cfg.server.auth = Some(auth_config(c));
    spawn_orchestrator(cfg).await
}

async fn channel(addr: SocketAddr) -> Channel {
    Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap()
}

fn with(token: Option<&str>) -> CallCredentials {
    token.map_or_else(CallCredentials::none, |t| {
        CallCredentials::bearer(t).unwrap()
    })
}

async fn client(addr: SocketAddr, token: Option<&str>) -> OrchestratorServiceClient<AuthChannel> {
    OrchestratorServiceClient::new(with(token).channel(channel(addr).await))
}

/// A client sending a raw `authorization` value.
async fn raw_client(
    addr: SocketAddr,
    authorization: &'static str,
) -> OrchestratorServiceClient<
    tonic::service::interceptor::InterceptedService<
        Channel,
        impl FnMut(tonic::Request<()>) -> Result<tonic::Request<()>, Status> + Clone,
    >,
> {
    OrchestratorServiceClient::with_interceptor(
        channel(addr).await,
        move |mut r: tonic::Request<()>| {
            r.metadata_mut()
                .insert("authorization", authorization.parse().unwrap());
            Ok(r)
        },
    )
}

/// Asserts a refusal: its code, reason, a metadata entry, and that its
/// message holds none of `secrets`.
fn refused(status: &Status, code: Code, reason: ErrorReason, meta: (&str, &str), secrets: &[&str]) {
    assert_eq!(status.code(), code, "{status:?}");
    let e = MeshError::from_status(status);
    assert_eq!(e.reason, reason, "{status:?}");
    assert_eq!(
        e.metadata.get(meta.0).map(String::as_str),
        Some(meta.1),
        "{status:?}"
    );
    for s in secrets {
        assert!(
            !status.message().contains(s),
            "the message leaks a credential: {status:?}"
        );
        assert!(
            e.metadata.values().all(|v| !v.contains(s)),
            "metadata leaks a credential: {status:?}"
        );
    }
}

fn unauthenticated(status: &Status, credential: &str, secrets: &[&str]) {
    refused(
        status,
        Code::Unauthenticated,
        ErrorReason::Unauthenticated,
        ("credential", credential),
        secrets,
    );
}

fn submission(spec: RunSpec) -> SubmitRequest {
    SubmitRequest { spec: Some(spec) }
}

fn cancel(run_id: &str) -> CancelRunRequest {
    CancelRunRequest {
        run_id: run_id.into(),
        reason: "test".into(),
    }
}

fn watch(run_id: &str) -> WatchRunRequest {
    WatchRunRequest {
        run_id: run_id.into(),
        ..Default::default()
    }
}

fn list() -> ListRunsRequest {
    ListRunsRequest {
        limit: 100,
        states: Vec::new(),
    }
}

fn slow_spec(ms: u64) -> RunSpec {
    spec(vec![step("s", "work", json!({"sleep_ms": ms}))])
}

#[tokio::test]
async fn calls_without_a_good_credential_are_refused_with_the_reason() {
    let dir = temp_dir("auth-refusals");
    let c = creds(dir.path());
    let orch = secured_orchestrator(&c, &[]).await;

    let err = client(orch, None)
        .await
        .list_runs(list())
        .await
        .unwrap_err();
    unauthenticated(&err, "missing", &[]);
    let err = raw_client(orch, "Basic YWxpY2U6cHc=")
        .await
        .list_runs(list())
        .await
        .unwrap_err();
    unauthenticated(&err, "malformed", &["YWxpY2U6cHc="]);
    let unknown = "not-a-token-we-know-0123456789abcdef";
    let err = client(orch, Some(unknown))
        .await
        .list_runs(list())
        .await
        .unwrap_err();
    unauthenticated(&err, "unknown", &[unknown]);

    let expired = jwt(
        &c.signing,
        json!({"sub": "alice", "iss": ISSUER, "aud": AUDIENCE, "exp": now() - 60, "roles": ["read"]}),
    );
    let err = client(orch, Some(&expired))
        .await
        .list_runs(list())
        .await
        .unwrap_err();
    unauthenticated(&err, "expired", &[&expired]);
    let wrong_aud = jwt(
        &c.signing,
        json!({"sub": "alice", "iss": ISSUER, "aud": "someone-else", "exp": now() + 600, "roles": ["read"]}),
    );
    let err = client(orch, Some(&wrong_aud))
        .await
        .list_runs(list())
        .await
        .unwrap_err();
    unauthenticated(&err, "wrong_audience", &[&wrong_aud]);
    let wrong_iss = jwt(
        &c.signing,
        json!({"sub": "alice", "iss": "https://evil.test", "aud": AUDIENCE, "exp": now() + 600, "roles": ["read"]}),
    );
    let err = client(orch, Some(&wrong_iss))
        .await
        .list_runs(list())
        .await
        .unwrap_err();
    unauthenticated(&err, "wrong_issuer", &[&wrong_iss]);
    let forged = jwt(&c.forger, claims("mallory", json!(["admin"])));
    let err = client(orch, Some(&forged))
        .await
        .list_runs(list())
        .await
        .unwrap_err();
    unauthenticated(&err, "invalid", &[&forged]);

    // Good JWTs work, with roles as an array or a space-separated string.
    let reader = jwt(&c.signing, claims("dana", json!(["read"])));
    assert!(
        client(orch, Some(&reader))
            .await
            .list_runs(list())
            .await
            .is_ok()
    );
    let scoped = jwt(&c.signing, claims("erin", json!("openid read")));
    assert!(
        client(orch, Some(&scoped))
            .await
            .list_runs(list())
            .await
            .is_ok()
    );
    // A role the principal lacks is PERMISSION_DENIED, naming the roles.
    let err = client(orch, Some(&reader))
        .await
        .submit(submission(slow_spec(0)))
        .await
        .unwrap_err();
    refused(
        &err,
        Code::PermissionDenied,
        ErrorReason::PermissionDenied,
        ("needs", "submit,admin"),
        &[&reader],
    );

    // Probes need no credential.
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel(orch).await);
    let resp = health
        .check(tonic_health::pb::HealthCheckRequest {
            service: String::new(),
        })
        .await
        .unwrap();
    assert_eq!(resp.into_inner().status, 1, "SERVING");
}

#[tokio::test]
async fn a_run_is_seen_and_cancelled_only_by_its_owner_or_those_allowed() {
    let dir = temp_dir("auth-owners");
    let c = creds(dir.path());
    let agent = spawn_agent(TestAgent::new("work", &["work"])).await;
    let orch = secured_orchestrator(&c, &[agent]).await;
    let mut alice = client(orch, Some(ALICE)).await;
    let mut bob = client(orch, Some(BOB)).await;
    let mut auditor = client(orch, Some(AUDITOR)).await;
    let mut root = client(orch, Some(ROOT)).await;
    wait_serving_agents(&mut root, 1).await;

    let mut keyed = slow_spec(30_000);
    keyed.idempotency_key = "nightly".into();
    let run_id = alice
        .submit(submission(keyed.clone()))
        .await
        .unwrap()
        .into_inner()
        .run_id;

    // Bob: the run does not exist for him, word for word as a made-up id.
    let get = |id: &str| GetRunRequest { run_id: id.into() };
    let theirs = bob.get_run(get(&run_id)).await.unwrap_err();
    let made_up = bob
        .get_run(get("00000000-0000-4000-8000-000000000000"))
        .await
        .unwrap_err();
    assert_eq!(theirs.code(), Code::NotFound);
    assert_eq!(
        theirs.message().replace(&run_id, "ID"),
        made_up
            .message()
            .replace("00000000-0000-4000-8000-000000000000", "ID"),
        "another's run answers exactly as no run"
    );
    let watched = bob.watch_run(watch(&run_id)).await.unwrap_err();
    assert_eq!(watched.code(), Code::NotFound, "{watched:?}");
    let cancelled = bob.cancel_run(cancel(&run_id)).await.unwrap_err();
    assert_eq!(cancelled.code(), Code::NotFound, "{cancelled:?}");
    let bobs = bob.list_runs(list()).await.unwrap().into_inner().runs;
    assert!(bobs.iter().all(|r| r.run_id != run_id), "{bobs:?}");
    // The same idempotency key is Bob's own: a new run, not Alice's.
    let bob_run = bob
        .submit(submission(keyed.clone()))
        .await
        .unwrap()
        .into_inner()
        .run_id;
    assert_ne!(bob_run, run_id);
    let again = alice
        .submit(SubmitRequest { spec: Some(keyed) })
        .await
        .unwrap()
        .into_inner()
        .run_id;
    assert_eq!(again, run_id, "Alice's key still names her run");

    // Alice sees her run, with her as its owner, and only her runs.
    let got = alice.get_run(get(&run_id)).await.unwrap().into_inner();
    assert_eq!(got.run.as_ref().map(|r| r.owner.as_str()), Some("alice"));
    let hers = alice.list_runs(list()).await.unwrap().into_inner().runs;
    assert_eq!(
        hers.iter().map(|r| r.run_id.as_str()).collect::<Vec<_>>(),
        [run_id.as_str()]
    );

    // The auditor reads everything, and cancels nothing.
    let all = auditor.list_runs(list()).await.unwrap().into_inner().runs;
    assert_eq!(all.len(), 2, "{all:?}");
    assert!(auditor.get_run(get(&run_id)).await.is_ok());
    let mut events = auditor
        .watch_run(watch(&run_id))
        .await
        .unwrap()
        .into_inner();
    assert!(events.next().await.is_some_and(|e| e.is_ok()));
    let err = auditor.cancel_run(cancel(&run_id)).await.unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");

    // The owner cancels hers; an admin cancels anyone's.
    let state = alice
        .cancel_run(cancel(&run_id))
        .await
        .unwrap()
        .into_inner()
        .state();
    assert_eq!(state, RunState::Canceled);
    let state = root
        .cancel_run(cancel(&bob_run))
        .await
        .unwrap()
        .into_inner()
        .state();
    assert_eq!(state, RunState::Canceled);
}

#[tokio::test]
async fn registration_needs_the_agent_role_and_a_lease_is_its_owners() {
    let dir = temp_dir("auth-registry");
    let c = creds(dir.path());
    let orch = secured_orchestrator(&c, &[]).await;
    let registry = |token: Option<&'static str>| async move {
        RegistryServiceClient::new(with(token).channel(channel(orch).await))
    };
    let register = || RegisterRequest {
        address: "127.0.0.1:1".into(),
        lease: None,
    };

    let err = registry(None).await.register(register()).await.unwrap_err();
    unauthenticated(&err, "missing", &[]);
    let err = registry(Some(ALICE))
        .await
        .register(register())
        .await
        .unwrap_err();
    refused(
        &err,
        Code::PermissionDenied,
        ErrorReason::PermissionDenied,
        ("needs", "agent,admin"),
        &[ALICE],
    );

    let mut agent = registry(Some(AGENT)).await;
    let lease_id = agent
        .register(register())
        .await
        .unwrap()
        .into_inner()
        .lease_id;
    let mut other = registry(Some(OTHER_AGENT)).await;
    let err = other
        .renew_lease(RenewLeaseRequest {
            lease_id: lease_id.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(
        err.code(),
        Code::NotFound,
        "another agent's lease is unknown to it: {err:?}"
    );
    other
        .deregister(DeregisterRequest {
            lease_id: lease_id.clone(),
        })
        .await
        .unwrap();
    assert!(
        agent
            .renew_lease(RenewLeaseRequest {
                lease_id: lease_id.clone()
            })
            .await
            .is_ok(),
        "another agent's deregistration did not remove it"
    );
    agent
        .deregister(DeregisterRequest {
            lease_id: lease_id.clone(),
        })
        .await
        .unwrap();
    let err = agent
        .renew_lease(RenewLeaseRequest { lease_id })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
}

#[tokio::test]
async fn an_agent_takes_tasks_only_from_its_orchestrator() {
    let dir = temp_dir("auth-agent");
    let c = creds(dir.path());
    let agent_auth = AuthConfig {
        tokens_file: Some(c.tokens_file.clone()),
        task_callers: vec!["orchestrator".into()],
        ..AuthConfig::default()
    };
    let agent_cfg = ServerConfig {
        auth: Some(agent_auth),
        ..ServerConfig::default()
    };
    let worker = TestAgent::new("work", &["work"]);
    let seen = worker.seen.clone();
    let (agent, _stop) = spawn_agent_at(worker, "127.0.0.1:0".parse().unwrap(), agent_cfg).await;

    // Anyone else is refused, with or without a credential.
    let mut direct = AgentServiceClient::new(with(None).channel(channel(agent).await));
    let err = direct
        .get_agent_card(GetAgentCardRequest {})
        .await
        .unwrap_err();
    unauthenticated(&err, "missing", &[]);
    let mut alice = AgentServiceClient::new(with(Some(ALICE)).channel(channel(agent).await));
    let err = alice
        .get_agent_card(GetAgentCardRequest {})
        .await
        .unwrap_err();
    refused(
        &err,
        Code::PermissionDenied,
        ErrorReason::PermissionDenied,
        ("caller", "alice"),
        &[ALICE],
    );

    // The orchestrator presents its token (discovery.token_file).
    let token_file = dir.path().join("orchestrator.token");
    std::fs::write(&token_file, format!("{ORCH}\n")).unwrap();
    let mut cfg = test_config(&[agent]);
    cfg.server.auth = Some(auth_config(&c));
    cfg.discovery.token_file = Some(token_file);
    let orch = spawn_orchestrator(cfg).await;
    let mut client = client(orch, Some(ALICE)).await;
    wait_serving_agents(&mut client, 1).await;
    let mut stream = client
        .run(RunRequest {
            spec: Some(slow_spec(0)),
            stream: None,
        })
        .await
        .unwrap()
        .into_inner();
    let mut finished = None;
    while let Some(ev) = stream.next().await {
        if let Some(run_event::Event::Finished(f)) = ev.unwrap().event {
            finished = Some(f.state());
        }
    }
    assert_eq!(finished, Some(RunState::Completed));
    assert_eq!(seen.completed.load(std::sync::atomic::Ordering::SeqCst), 1);

    // Without the token, the orchestrator gets no card and sends no work.
    let mut cfg = test_config(&[agent]);
    cfg.server.auth = None;
    let bare = spawn_orchestrator(cfg).await;
    let mut bare = orchestrator(bare).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let endpoints = bare
        .list_agents(ListAgentsRequest {})
        .await
        .unwrap()
        .into_inner()
        .endpoints;
    assert!(
        endpoints
            .iter()
            .all(|e| e.health() != EndpointHealth::Serving),
        "{endpoints:?}"
    );
}

#[tokio::test]
async fn each_principal_has_its_own_limits_with_a_retry_delay() {
    let dir = temp_dir("auth-limits");
    let c = creds(dir.path());
    let agent = spawn_agent(TestAgent::new("work", &["work"])).await;
    let mut cfg = test_config(&[agent]);
    cfg.server.auth = Some(auth_config(&c));
    cfg.access.max_active_runs_per_principal = 1;
    cfg.access.submits_per_second = 1;
    cfg.access.submit_burst = 2;
    let orch = spawn_orchestrator(cfg).await;
    let mut alice = client(orch, Some(ALICE)).await;
    let mut bob = client(orch, Some(BOB)).await;
    wait_serving_agents(&mut alice, 1).await;

    let first = alice
        .submit(submission(slow_spec(30_000)))
        .await
        .unwrap()
        .into_inner()
        .run_id;
    let err = alice.submit(submission(slow_spec(0))).await.unwrap_err();
    refused(
        &err,
        Code::ResourceExhausted,
        ErrorReason::ResourceExhausted,
        ("limit", "access.max_active_runs_per_principal"),
        &[ALICE],
    );
    assert!(
        MeshError::from_status(&err).retry_after.is_some(),
        "{err:?}"
    );
    // Bob is not held up by Alice.
    assert!(
        bob.submit(SubmitRequest {
            spec: Some(slow_spec(0))
        })
        .await
        .is_ok()
    );
    // Her run ends; her slot is free again, but her rate is spent.
    alice.cancel_run(cancel(&first)).await.unwrap();
    alice
        .submit(submission(slow_spec(0)))
        .await
        .expect("burst of 2: the second start is allowed");
    let err = alice.submit(submission(slow_spec(0))).await.unwrap_err();
    let e = MeshError::from_status(&err);
    assert!(
        e.metadata
            .get("limit")
            .is_some_and(|l| l.starts_with("access.")),
        "{err:?}"
    );
    assert!(
        e.retry_after.is_some_and(|d| d <= Duration::from_secs(1)),
        "{err:?}"
    );
}

#[tokio::test]
async fn a_client_certificate_is_a_principal_under_mutual_tls() {
    let dir = temp_dir("auth-mtls");
    let pki = Pki::create(dir.path());
    let mut cfg = test_config(&[]);
    cfg.server.tls = Some(ServerTls {
        cert: pki.server_cert.clone(),
        key: pki.server_key.clone(),
        client_ca: Some(pki.ca.clone()),
    });
    cfg.server.auth = Some(AuthConfig {
        certificates: [("meshctl".to_string(), vec![Role::Read])]
            .into_iter()
            .collect(),
        ..AuthConfig::default()
    });
    let orch = spawn_orchestrator(cfg).await;
    let tls = ClientTls {
        ca: Some(pki.ca.clone()),
        cert: Some(pki.client_cert.clone()),
        key: Some(pki.client_key.clone()),
        domain: Some("localhost".into()),
    }
    .load()
    .unwrap();
    let channel = Channel::from_shared(format!("https://{orch}"))
        .unwrap()
        .tls_config(tls)
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut client = OrchestratorServiceClient::new(channel);
    assert!(
        client.list_runs(list()).await.is_ok(),
        "the certificate reads"
    );
    let err = client.submit(submission(slow_spec(0))).await.unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");
}

#[tokio::test]
async fn meshctl_presents_its_token() {
    let dir = temp_dir("auth-meshctl");
    let c = creds(dir.path());
    let orch = secured_orchestrator(&c, &[]).await.to_string();
    let (code, _, err) = run_meshctl(&["--orchestrator", &orch, "runs"], &[]).await;
    assert_eq!(code, 77, "EX_NOPERM: {err}");
    assert!(err.contains("UNAUTHENTICATED"), "{err}");
    let (code, out, err) =
        run_meshctl(&["--orchestrator", &orch, "--token", AUDITOR, "runs"], &[]).await;
    assert_eq!(code, 0, "{out}{err}");
    let (code, out, err) = run_meshctl(
        &["--orchestrator", &orch, "runs"],
        &[("AGENTMESH_TOKEN", AUDITOR)],
    )
    .await;
    assert_eq!(code, 0, "{out}{err}");
    let (code, _, err) = run_meshctl(
        &["--orchestrator", &orch, "plan", "Q2 sales report"],
        &[("AGENTMESH_TOKEN", AUDITOR)],
    )
    .await;
    assert_eq!(code, 77, "{err}");
    assert!(
        err.contains("PERMISSION_DENIED") && !err.contains(AUDITOR),
        "{err}"
    );
}

/// The run viewer takes the API's credentials: a browser signs in with its
/// token (an HttpOnly, SameSite=Strict cookie), a program sends a bearer
/// header; roles and run ownership are the API's.
#[tokio::test]
async fn the_viewer_takes_the_apis_credentials_and_roles() {
    use reqwest::StatusCode;
    use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, COOKIE, LOCATION, SET_COOKIE};
    let dir = temp_dir("auth-viewer");
    let c = creds(dir.path());
    let agent = spawn_agent(TestAgent::new("work", &["work"])).await;
    let viewer = agentmesh_e2e::free_port([127, 0, 0, 1]);
    let mut cfg: OrchestratorConfig = test_config(&[agent]);
    cfg.server.auth = Some(auth_config(&c));
    cfg.viewer.listen = Some(viewer);
    let orch = spawn_orchestrator(cfg).await;
    let mut alice = client(orch, Some(ALICE)).await;
    wait_serving_agents(&mut alice, 1).await;
    let run_id = alice
        .submit(submission(slow_spec(30_000)))
        .await
        .unwrap()
        .into_inner()
        .run_id;
    let base = format!("http://{viewer}");
    let _ = rustls::crypto::ring::default_provider().install_default();
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let bearer = |t: &str| format!("Bearer {t}");
    const FORM: &str = "application/x-www-form-urlencoded";

    // No credential: the JSON says why, a page sends the browser to sign in.
    let resp = http.get(format!("{base}/api/runs")).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert!(resp.headers().contains_key("www-authenticate"));
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["code"], "UNAUTHENTICATED");
    assert_eq!(body["reason"], "UNAUTHENTICATED");
    let page = http
        .get(format!("{base}/runs/{run_id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), StatusCode::SEE_OTHER);
    assert_eq!(page.headers()[LOCATION], "/login");

    // A wrong token does not sign in; the right one sets the cookie.
    let wrong = http
        .post(format!("{base}/login"))
        .header(CONTENT_TYPE, FORM)
        .body("token=not-a-token")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    assert!(!wrong.headers().contains_key(SET_COOKIE));
    let signed = http
        .post(format!("{base}/login"))
        .header(CONTENT_TYPE, FORM)
        .body(format!("token={ALICE}"))
        .send()
        .await
        .unwrap();
    assert_eq!(signed.status(), StatusCode::SEE_OTHER);
    let cookie = signed.headers()[SET_COOKIE].to_str().unwrap().to_string();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    let session = cookie.split(';').next().unwrap().to_string();
    let runs: serde_json::Value = http
        .get(format!("{base}/api/runs"))
        .header(COOKIE, &session)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(runs["runs"][0]["run_id"], run_id.as_str());
    assert_eq!(runs["runs"][0]["owner"], "alice");
    // The page says who is signed in, and offers the way out.
    let page = http
        .get(format!("{base}/"))
        .header(COOKIE, &session)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        page.contains(r#"id="who">alice<"#) && page.contains(r#"action="/logout""#),
        "{page}"
    );

    // Bob does not see Alice's run; the auditor sees it and may not cancel.
    let bobs = http
        .get(format!("{base}/api/runs/{run_id}"))
        .header(AUTHORIZATION, bearer(BOB))
        .send()
        .await
        .unwrap();
    assert_eq!(bobs.status(), StatusCode::NOT_FOUND);
    let seen = http
        .get(format!("{base}/api/runs/{run_id}"))
        .header(AUTHORIZATION, bearer(AUDITOR))
        .send()
        .await
        .unwrap();
    assert_eq!(seen.status(), StatusCode::OK);
    let cancel = |token: &'static str| {
        http.post(format!("{base}/api/runs/{run_id}/cancel"))
            .header(AUTHORIZATION, bearer(token))
            .header(CONTENT_TYPE, "application/json")
            .body("{}")
            .send()
    };
    let denied = cancel(AUDITOR).await.unwrap();
    assert_eq!(denied.status(), StatusCode::FORBIDDEN);
    let body: serde_json::Value = denied.json().await.unwrap();
    assert_eq!(body["reason"], "PERMISSION_DENIED");
    // A form post from another site (not JSON) is refused before anything.
    let forged = http
        .post(format!("{base}/api/runs/{run_id}/cancel"))
        .header(COOKIE, &session)
        .header(CONTENT_TYPE, FORM)
        .body("reason=x")
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), StatusCode::BAD_REQUEST);
    // A body over the limit (256 KiB) and a query that is not one are
    // refused in the API's shape, naming what was wrong.
    let oversized = http
        .post(format!("{base}/api/runs/{run_id}/cancel"))
        .header(COOKIE, &session)
        .header(CONTENT_TYPE, "application/json")
        .body(format!("{{\"reason\": \"{}\"}}", "x".repeat(300 * 1024)))
        .send()
        .await
        .unwrap();
    assert_eq!(oversized.status(), StatusCode::BAD_REQUEST);
    let body: serde_json::Value = oversized.json().await.unwrap();
    assert_eq!(
        (&body["reason"], &body["metadata"]["field"]),
        (&json!("INVALID_INPUT"), &json!("body"))
    );
    let query = http
        .get(format!("{base}/api/runs?limit=many"))
        .header(COOKIE, &session)
        .send()
        .await
        .unwrap();
    assert_eq!(query.status(), StatusCode::BAD_REQUEST);
    let body: serde_json::Value = query.json().await.unwrap();
    assert_eq!(body["metadata"]["field"], "query");
    let done: serde_json::Value = cancel(ALICE).await.unwrap().json().await.unwrap();
    assert_eq!(done["state"], "CANCELED");

    // "Waiting for me": the runs waiting on a person that the caller may
    // answer; the auditor sees Alice's gate and may not answer it.
    let gate = PlanStep {
        id: "gate".into(),
        approval: Some(ApprovalGate {
            prompt: "Go on?".into(),
            timeout: None,
        }),
        ..PlanStep::default()
    };
    let gated = alice
        .submit(submission(spec(vec![gate])))
        .await
        .unwrap()
        .into_inner()
        .run_id;
    let mine = |token: &'static str, query: &'static str| {
        http.get(format!("{base}/api/runs?{query}"))
            .header(AUTHORIZATION, bearer(token))
            .send()
    };
    let ids = |runs: serde_json::Value| -> Vec<String> {
        runs["runs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["run_id"].as_str().unwrap().to_string())
            .collect()
    };
    for _ in 0..100 {
        let listed = mine(ALICE, "waiting=mine")
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if !ids(listed).is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for (token, expected) in [(ALICE, vec![gated.clone()]), (ROOT, vec![gated.clone()])] {
        let listed = mine(token, "waiting=mine")
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(ids(listed), expected);
    }
    let everyone = mine(AUDITOR, "states=WAITING")
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ids(everyone), vec![gated.clone()]);
    let auditors = mine(AUDITOR, "waiting=mine")
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ids(auditors), Vec::<String>::new());
    let bad = mine(ALICE, "waiting=yes").await.unwrap();
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
    let body: serde_json::Value = bad.json().await.unwrap();
    assert_eq!(body["metadata"]["field"], "waiting");
}
