//! The configuration the Kubernetes manifests ship (`k8s/base/config`),
//! used as the pods use it: every file loads with its service's own typed
//! config, and the four real binaries started with those files find each
//! other through the headless Services' DNS names and run the reference
//! goal. (The manifests themselves are checked by `k8s/validate`.)
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;

use agentmesh_analytics::AnalyticsConfig;
use agentmesh_data::DataAgentConfig;
use agentmesh_e2e::mesh::*;
use agentmesh_e2e::{Child, dns, start_process, start_process_env, temp_dir};
use agentmesh_orchestrator::OrchestratorConfig;
use agentmesh_proto::v1::{AGENT_SERVICE_NAME, ORCHESTRATOR_SERVICE_NAME, RunState};
use agentmesh_runtime::config::{ConfigError, Validate, load};
use agentmesh_summary::SummaryConfig;
use hickory_resolver::Resolver;
use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolverConfig};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::system_conf::parse_resolv_conf;
use serde::Serialize;
use serde::de::DeserializeOwned;

const GOAL: &str =
    "Generate a Q2 sales performance report with visualizations and an executive summary";

fn config_file(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("../k8s/base/config/{name}"))
}

/// `name` loaded as the binary loads it (defaults < file), no environment.
fn load_file<T: Serialize + DeserializeOwned + Validate>(
    defaults: &T,
    name: &str,
) -> Result<T, ConfigError> {
    load(
        defaults,
        Some(&config_file(name)),
        Vec::new(),
        Default::default(),
    )
}

#[test]
fn every_shipped_config_loads_with_its_services_own_types() {
    let orch = load_file(&OrchestratorConfig::default(), "orchestrator.toml").unwrap();
    let data = load_file(&DataAgentConfig::default(), "data.toml").unwrap();
    let analytics = load_file(&AnalyticsConfig::default(), "analytics.toml").unwrap();
    let summary = load_file(&SummaryConfig::default(), "summary.toml").unwrap();
    // In a pod every server listens on all interfaces (the kubelet probes
    // the pod IP), on the port its Service and probes name.
    for (server, port) in [
        (&orch.server, 50050),
        (&data.server, 50051),
        (&analytics.server, 50052),
        (&summary.server, 50053),
    ] {
        assert_eq!(server.listen, SocketAddr::from(([0, 0, 0, 0], port)));
    }
    assert!(orch.discovery.endpoints.is_empty());
    // Runs outlive a container restart: the store is on the pod's emptyDir.
    assert_eq!(
        orch.store.path.as_deref(),
        Some(std::path::Path::new(
            "/var/lib/agentmesh/orchestrator/runs.db"
        ))
    );
    assert_eq!(
        orch.discovery.dns,
        [
            "data-agent:50051",
            "analytics-agent:50052",
            "summary-agent:50053"
        ]
    );
    assert_eq!(
        orch.discovery.dns_server, None,
        "the pod's resolv.conf is used"
    );
    assert!(data.data.root.is_absolute(), "the data volume's mount path");
    assert!(summary.llm.base_url.is_empty(), "the LLM backend is off");

    // The check is real: a misspelt key in a shipped file would fail.
    let dir = temp_dir("k8s-config");
    let typo = dir.path().join("orchestrator.toml");
    std::fs::write(&typo, "[discovery]\ndns_refesh_ms = 5000\n").unwrap();
    let err = load(
        &OrchestratorConfig::default(),
        Some(&typo),
        Vec::new(),
        Default::default(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("dns_refesh_ms"), "{err}");
}

/// A file of the secure overlay, loaded as its binary loads it.
fn load_secure<T: Serialize + DeserializeOwned + Validate>(defaults: &T, name: &str) -> T {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join(format!("../k8s/overlays/secure/config/{name}"));
    load(defaults, Some(&path), Vec::new(), Default::default()).unwrap()
}

#[test]
fn the_secure_overlays_configs_load_with_tls_auth_and_metrics() {
    let orch = load_secure(&OrchestratorConfig::default(), "orchestrator.toml");
    let data = load_secure(&DataAgentConfig::default(), "data.toml");
    let analytics = load_secure(&AnalyticsConfig::default(), "analytics.toml");
    let summary = load_secure(&SummaryConfig::default(), "summary.toml");
    let orchestrator_id = "spiffe://agentmesh/orchestrator";
    assert!(orch.server.tls.is_some() && orch.server.auth.is_some());
    assert!(
        orch.server.health_listen.is_some(),
        "probes need plaintext health"
    );
    let to_agents = orch.discovery.tls.as_ref().unwrap();
    assert!(
        to_agents.cert.is_some() && to_agents.domain.is_some(),
        "mutual TLS to agents"
    );
    assert!(orch.access.max_active_runs_per_principal > 0);
    for (name, server, telemetry) in [
        ("orchestrator", &orch.server, &orch.telemetry),
        ("data", &data.server, &data.telemetry),
        ("analytics", &analytics.server, &analytics.telemetry),
        ("summary", &summary.server, &summary.telemetry),
    ] {
        assert!(telemetry.metrics.is_some(), "{name}: metrics");
        assert!(server.health_listen.is_some(), "{name}: health listener");
        if name != "orchestrator" {
            let tls = server.tls.as_ref().unwrap();
            assert!(tls.client_ca.is_some(), "{name}: mutual TLS");
            let auth = server.auth.as_ref().unwrap();
            assert_eq!(auth.task_callers, [orchestrator_id], "{name}");
            assert!(auth.certificates.contains_key(orchestrator_id), "{name}");
        }
    }
}

#[test]
fn the_replicated_overlays_orchestrator_shares_its_runs_in_postgresql() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../k8s/overlays/replicated/config/orchestrator.toml");
    // The URL comes from the Secret, through the variable the Deployment
    // sets.
    let url = "postgresql://agentmesh:secret@agentmesh-db-rw:5432/agentmesh";
    let env = vec![("AGENTMESH_STORE__URL".to_string(), url.to_string())];
    let orch = load(
        &OrchestratorConfig::default(),
        Some(&path),
        env,
        Default::default(),
    )
    .unwrap();
    assert_eq!(orch.store.url.as_deref(), Some(url));
    assert_eq!(
        orch.store.path, None,
        "no SQLite file beside the shared store"
    );
    assert!(orch.store.ca_file.is_some(), "the database's CA is checked");
    assert!(
        orch.store.instance.is_none(),
        "each pod is named by $HOSTNAME"
    );
    let base = load_file(&OrchestratorConfig::default(), "orchestrator.toml").unwrap();
    assert_eq!(
        orch.discovery, base.discovery,
        "agents are found as in the base"
    );
}

#[tokio::test]
async fn the_shipped_configs_find_the_agents_through_their_headless_services() {
    let tmp = temp_dir("k8s-mesh");
    let dir = tmp.path().to_path_buf();
    // One loopback address per Service, as a pod IP behind each headless
    // Service; each agent on the port its file names.
    let pods = [
        (
            "data-agent",
            "data.toml",
            Ipv4Addr::new(127, 0, 53, 1),
            50051,
        ),
        (
            "analytics-agent",
            "analytics.toml",
            Ipv4Addr::new(127, 0, 53, 2),
            50052,
        ),
        (
            "summary-agent",
            "summary.toml",
            Ipv4Addr::new(127, 0, 53, 3),
            50053,
        ),
    ];
    // Killed when dropped, at the end of the test.
    let mut children: Vec<Child> = Vec::new();
    for (binary, file, ip, port) in pods {
        let mut args = vec![
            "--config".to_string(),
            config_file(file).display().to_string(),
        ];
        if binary == "data-agent" {
            args.extend(["--data-root".to_string(), dir.display().to_string()]);
        }
        let listen = SocketAddr::from((ip, port));
        children.push(start_process(binary, listen, &args, &dir, AGENT_SERVICE_NAME).await);
    }
    // The pods' addresses, sorted.
    let addresses: Vec<String> = pods
        .iter()
        .map(|&(_, _, ip, port)| SocketAddr::from((ip, port)).to_string())
        .collect();
    // The cluster DNS: each Service name answers with its pod's address.
    let zone = dns::zone(pods.map(|(name, _, ip, _)| (name, vec![ip])));
    let dns_addr = dns::dns_server(zone).await.to_string();
    let orchestrator_addr = agentmesh_e2e::free_port([127, 0, 0, 1]);
    let store = dir.join("runs.db").display().to_string();
    children.push(
        start_process_env(
            "orchestrator",
            orchestrator_addr,
            &[
                "--config".to_string(),
                config_file("orchestrator.toml").display().to_string(),
            ],
            &[
                ("AGENTMESH_DISCOVERY__DNS_SERVER", dns_addr.as_str()),
                // The pod's emptyDir, here the test's folder.
                ("AGENTMESH_STORE__PATH", store.as_str()),
            ],
            &dir,
            ORCHESTRATOR_SERVICE_NAME,
        )
        .await,
    );

    let mut client = orchestrator(orchestrator_addr).await;
    let mut serving = wait_serving_agents(&mut client, 3).await;
    serving.sort();
    assert_eq!(serving, addresses);
    let mut sources: Vec<String> = endpoints(&mut client)
        .await
        .into_iter()
        .map(|e| e.source)
        .collect();
    sources.sort();
    assert_eq!(
        sources,
        [
            "dns:analytics-agent:50052",
            "dns:data-agent:50051",
            "dns:summary-agent:50053"
        ]
    );

    let events = run_all(&mut client, goal(GOAL)).await;
    let f = finished(&events);
    assert_eq!(f.state(), RunState::Completed, "{f:?}");
    let mut used: Vec<String> = f
        .report
        .as_ref()
        .unwrap()
        .provenance
        .iter()
        .map(|p| p.endpoint.clone())
        .collect();
    used.sort_unstable();
    used.dedup();
    assert_eq!(used, addresses);
}

/// In a pod, the short names of `discovery.dns` resolve through the search
/// path the kubelet writes into resolv.conf. The orchestrator reads
/// resolv.conf with hickory's parser (when `discovery.dns_server` is unset);
/// this checks that the parsed search path and `ndots` take `data-agent` to
/// the Service's full name, asking a DNS server that knows only that name.
#[tokio::test]
async fn a_pods_resolv_conf_takes_a_short_service_name_to_the_full_one() {
    let zone = dns::zone([(
        "data-agent.agentmesh.svc.cluster.local",
        vec![Ipv4Addr::new(10, 1, 2, 3), Ipv4Addr::new(10, 1, 2, 4)],
    )]);
    let server = dns::dns_server(zone).await;
    // What the kubelet writes for a pod in namespace `agentmesh`.
    let (conf, options) = parse_resolv_conf(
        "search agentmesh.svc.cluster.local svc.cluster.local cluster.local\n\
         nameserver 10.96.0.10\n\
         options ndots:5\n",
    )
    .unwrap();
    assert_eq!(options.ndots, 5);
    // The same search path and options, asking the loopback server instead
    // of the cluster's DNS Service.
    let mut udp = ConnectionConfig::udp();
    udp.port = server.port();
    let ns = NameServerConfig::new(server.ip(), true, vec![udp]);
    let config = ResolverConfig::from_parts(None, conf.search().to_vec(), vec![ns]);
    let mut builder = Resolver::builder_with_config(config, TokioRuntimeProvider::default());
    *builder.options_mut() = options;
    let resolver = builder.build().unwrap();
    let mut found: Vec<IpAddr> = resolver
        .lookup_ip("data-agent")
        .await
        .unwrap()
        .iter()
        .collect();
    found.sort();
    assert_eq!(
        found,
        [IpAddr::from([10, 1, 2, 3]), IpAddr::from([10, 1, 2, 4])]
    );
    assert!(
        resolver.lookup_ip("no-such-agent").await.is_err(),
        "a name no Service has stays unresolved"
    );
}
