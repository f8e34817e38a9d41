//! Mutual TLS across the mesh, with the real binaries as separate
//! processes: the data agent and the orchestrator require client
//! certificates from a test CA; the orchestrator dials the agent with its
//! own; `meshctl` and a gRPC client run work through it. Probes use the
//! plaintext health listener. Clients without TLS, or without a
//! certificate, are refused.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use agentmesh_e2e::mesh::{spec, step};
use agentmesh_e2e::pki::Pki;
use agentmesh_e2e::{Child, binary, free_port, hermetic, run_meshctl, temp_dir, wait_serving};
use agentmesh_proto::v1::orchestrator_service_client::OrchestratorServiceClient;
use agentmesh_proto::v1::{
    AGENT_SERVICE_NAME, ORCHESTRATOR_SERVICE_NAME, RunRequest, RunState, run_event,
};
use agentmesh_runtime::tls::ClientTls;
use serde_json::{Value, json};
use tonic::transport::Channel;

/// Starts binary `name` on `listen` with TLS required of clients, and its
/// plaintext health on `health`, with `env` and `args` besides; waits until
/// that says its service (agent or orchestrator) is SERVING.
async fn start_tls(
    name: &str,
    listen: SocketAddr,
    health: SocketAddr,
    pki: &Pki,
    env: &[(&str, &Path)],
    args: &[&str],
    cwd: &Path,
) -> Child {
    let service = if name == "orchestrator" {
        ORCHESTRATOR_SERVICE_NAME
    } else {
        AGENT_SERVICE_NAME
    };
    let mut cmd = std::process::Command::new(binary(name));
    let child = hermetic(&mut cmd)
        .env("AGENTMESH_SERVER__TLS__CERT", &pki.server_cert)
        .env("AGENTMESH_SERVER__TLS__KEY", &pki.server_key)
        .env("AGENTMESH_SERVER__TLS__CLIENT_CA", &pki.ca)
        .env("AGENTMESH_SERVER__HEALTH_LISTEN", health.to_string())
        .envs(env.iter().map(|(k, v)| (k, v)))
        .arg("--listen")
        .arg(listen.to_string())
        .args(args)
        .current_dir(cwd)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let child = Child(child);
    wait_serving(health, service, Duration::from_secs(60)).await;
    child
}

/// A path as a command-line argument.
fn text(path: &Path) -> String {
    path.to_string_lossy().into_owned()
}

#[tokio::test]
async fn the_mesh_runs_over_mutual_tls_and_refuses_clients_without_a_certificate() {
    let tmp = temp_dir("tls");
    let pki = Pki::create(tmp.path());

    let data = free_port([127, 0, 0, 1]);
    let data_health = free_port([127, 0, 0, 1]);
    let _data = start_tls("data-agent", data, data_health, &pki, &[], &[], tmp.path()).await;

    // The orchestrator requires client certificates too, and presents its
    // own to the agent.
    let orch = free_port([127, 0, 0, 1]);
    let orch_health = free_port([127, 0, 0, 1]);
    let data_arg = data.to_string();
    let _orch = start_tls(
        "orchestrator",
        orch,
        orch_health,
        &pki,
        &[
            ("AGENTMESH_DISCOVERY__TLS__CA", pki.ca.as_path()),
            ("AGENTMESH_DISCOVERY__TLS__CERT", pki.client_cert.as_path()),
            ("AGENTMESH_DISCOVERY__TLS__KEY", pki.client_key.as_path()),
        ],
        &["--agent", &data_arg],
        tmp.path(),
    )
    .await;

    let orch_arg = orch.to_string();
    let (ca, cert, key) = (text(&pki.ca), text(&pki.client_cert), text(&pki.client_key));
    let tls = [
        "--orchestrator",
        orch_arg.as_str(),
        "--tls-ca",
        ca.as_str(),
        "--tls-cert",
        cert.as_str(),
        "--tls-key",
        key.as_str(),
    ];

    // The orchestrator watched the agent's health and fetched its card
    // over mutual TLS.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let agents = loop {
        let (code, out, err) = run_meshctl(&[&tls[..], &["--json", "agents"]].concat(), &[]).await;
        assert_eq!(code, 0, "meshctl agents over TLS: {err}");
        let agents: Value = serde_json::from_str(&out).unwrap();
        if agents[0]["health"] == "SERVING" && agents[0]["agent"].is_string() {
            break agents;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the agent is not SERVING over TLS: {agents}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(agents[0]["address"], data_arg.as_str());
    assert!(
        agents[0]["skills"]
            .as_array()
            .unwrap()
            .contains(&json!("sales.extract"))
    );

    // A run through the orchestrator: client → orchestrator → agent, each
    // hop over mutual TLS.
    let client_tls = ClientTls {
        ca: Some(pki.ca.clone()),
        cert: Some(pki.client_cert.clone()),
        key: Some(pki.client_key.clone()),
        domain: None,
    }
    .load()
    .unwrap();
    let channel = Channel::from_shared(format!("https://{orch}"))
        .unwrap()
        .tls_config(client_tls)
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut client = OrchestratorServiceClient::new(channel);
    let mut stream = client
        .run(RunRequest {
            spec: Some(spec(vec![step(
                "extract",
                "sales.extract",
                json!({"period": "2025-Q2"}),
            )])),
            stream: None,
        })
        .await
        .unwrap()
        .into_inner();
    let mut finished = None;
    while let Some(event) = tokio::time::timeout(Duration::from_secs(60), stream.message())
        .await
        .expect("the run goes on")
        .unwrap()
    {
        if let Some(run_event::Event::Finished(f)) = event.event {
            finished = Some(f);
        }
    }
    let finished = finished.expect("a final event");
    assert_eq!(
        finished.state(),
        RunState::Completed,
        "{}: {}",
        finished.reason,
        finished.message
    );

    // The agent contract, checked over mutual TLS.
    let data_target = data.to_string();
    let (code, out, err) = run_meshctl(
        &[
            &tls[2..],
            &["--json", "conformance", data_target.as_str()][..],
        ]
        .concat(),
        &[],
    )
    .await;
    assert_eq!(code, 0, "conformance over TLS: {out}{err}");

    // Refused: a client without TLS, and one without a certificate. Both
    // end with an error, not a hang.
    let (code, _, err) = run_meshctl(&["--orchestrator", orch_arg.as_str(), "agents"], &[]).await;
    assert_eq!(code, 69, "plaintext against TLS: {err}");
    assert!(err.contains("--tls"), "the error says what to try: {err}");
    let (code, _, err) = run_meshctl(&[&tls[..4], &["agents"][..]].concat(), &[]).await;
    assert_eq!(code, 69, "TLS without a client certificate: {err}");
    // A certificate from a CA the server does not trust is refused too.
    let other = temp_dir("tls-other");
    let stranger = Pki::create(other.path());
    let (s_cert, s_key) = (text(&stranger.client_cert), text(&stranger.client_key));
    let (code, _, err) = run_meshctl(
        &[
            &tls[..4],
            &[
                "--tls-cert",
                s_cert.as_str(),
                "--tls-key",
                s_key.as_str(),
                "agents",
            ][..],
        ]
        .concat(),
        &[],
    )
    .await;
    assert_eq!(code, 69, "a certificate from another CA: {err}");
}

#[tokio::test]
async fn meshctl_refuses_a_server_its_ca_does_not_vouch_for() {
    let tmp = temp_dir("tls-verify");
    let pki = Pki::create(tmp.path());
    let other = temp_dir("tls-verify-other");
    let stranger = Pki::create(other.path());
    let data = free_port([127, 0, 0, 1]);
    let health = free_port([127, 0, 0, 1]);
    let _data = start_tls("data-agent", data, health, &pki, &[], &[], tmp.path()).await;
    let ca = text(&stranger.ca);
    let target = data.to_string();
    let (code, out, err) = run_meshctl(&["--tls-ca", &ca, "conformance", &target], &[]).await;
    assert_eq!(code, 69, "{out}{err}");
    assert!(err.contains("cannot reach the agent"), "{err}");
    assert!(
        err.to_lowercase().contains("certificate"),
        "the error says why: {err}"
    );
}
