//! Discovery through health checks: static endpoints, DNS (a real DNS
//! server on loopback), self-registration with leases, NOT_SERVING
//! endpoints, ejection.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use agentmesh_e2e::dns;
use agentmesh_e2e::mesh::*;
use agentmesh_proto::v1::registry_service_client::RegistryServiceClient;
use agentmesh_proto::v1::{
    DeregisterRequest, EndpointHealth, RegisterRequest, RenewLeaseRequest, RunRequest, RunState,
    SubmitRequest,
};
use agentmesh_runtime::ServerConfig;
use serde_json::json;
use tokio_stream::StreamExt;
use tonic::transport::Channel;

/// Runs a one-step plan and returns the endpoint that served it.
async fn served_by(
    client: &mut agentmesh_proto::v1::orchestrator_service_client::OrchestratorServiceClient<
        Channel,
    >,
    skill: &str,
) -> String {
    let events = run_all(client, spec(vec![step("s", skill, json!({}))])).await;
    let f = finished(&events);
    assert_eq!(f.state(), RunState::Completed, "{f:?}");
    f.report.as_ref().unwrap().provenance[0].endpoint.clone()
}

#[tokio::test]
async fn static_endpoints_are_listed_and_a_not_serving_one_gets_no_new_work() {
    let (a, stop_a) = spawn_agent_at(
        TestAgent::new("work", &["work"]),
        "127.0.0.1:0".parse().unwrap(),
        ServerConfig::default(),
    )
    .await;
    let (b, stop_b) = spawn_agent_at(
        TestAgent::new("work", &["work"]),
        "127.0.0.1:0".parse().unwrap(),
        ServerConfig::default(),
    )
    .await;
    // A server with health but without the Agent service name: NOT_FOUND.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let stranger = listener.local_addr().unwrap();
    tokio::spawn(async move {
        struct Idle;
        impl agentmesh_runtime::Drain for Idle {
            fn begin_drain(&self) {}
            async fn drained(&self) {}
            fn cancel_all(&self) {}
            fn in_flight(&self) -> usize {
                0
            }
        }
        let routes = tonic::service::Routes::default();
        agentmesh_runtime::serve_routes(
            routes,
            listener,
            &ServerConfig::default(),
            &[],
            &Idle,
            std::future::pending(),
        )
        .await
    });
    let orch = spawn_orchestrator(test_config(&[a, b, stranger])).await;
    let mut client = orchestrator(orch).await;
    wait_serving_agents(&mut client, 2).await;

    let listed = endpoints(&mut client).await;
    assert_eq!(listed.len(), 3);
    for ep in &listed {
        assert_eq!(ep.source, "static");
        if ep.address == stranger.to_string() {
            assert_eq!(
                ep.health(),
                EndpointHealth::NotServing,
                "unknown service name"
            );
            assert!(ep.card.is_none());
        } else {
            assert_eq!(ep.health(), EndpointHealth::Serving);
            let card = ep.card.as_ref().unwrap();
            assert_eq!(
                (card.name.as_str(), card.version.as_str()),
                ("work", "1.2.3")
            );
            assert_eq!(card.skills[0].id, "work");
            assert!(!ep.ejected);
        }
    }

    // A long task starts on one replica; that replica then shuts down
    // gracefully (NOT_SERVING, draining).
    let mut long = client
        .run(RunRequest {
            spec: Some(spec(vec![step("long", "work", json!({"sleep_ms": 1_000}))])),
            stream: None,
        })
        .await
        .unwrap()
        .into_inner();
    let mut events = Vec::new();
    let busy = read_until_started(&mut long, &mut events).await;
    let lower = a.to_string().min(b.to_string());
    assert_eq!(busy, lower, "least loaded, ties go to the lower address");
    let (other, _keep) = if busy == a.to_string() {
        drop(stop_a);
        (b, stop_b)
    } else {
        drop(stop_b);
        (a, stop_a)
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while endpoints(&mut client)
        .await
        .iter()
        .any(|e| e.address == busy && e.health() == EndpointHealth::Serving)
    {
        assert!(tokio::time::Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // New work goes elsewhere...
    for _ in 0..3 {
        assert_eq!(served_by(&mut client, "work").await, other.to_string());
    }
    // ...while the in-flight task on the draining replica finishes there.
    while let Some(ev) = long.next().await {
        events.push(ev.unwrap());
    }
    let f = finished(&events);
    assert_eq!(f.state(), RunState::Completed);
    assert_eq!(f.report.as_ref().unwrap().provenance[0].endpoint, busy);
}

#[tokio::test]
async fn dns_names_are_re_resolved_and_each_address_is_a_replica() {
    // Three replicas on 127.0.0.{2,3,4}, same port, as pods behind a
    // headless Service.
    let (first, _s1) = spawn_agent_at(
        TestAgent::new("work", &["work"]),
        "127.0.0.2:0".parse().unwrap(),
        ServerConfig::default(),
    )
    .await;
    let port = first.port();
    let (second, _s2) = spawn_agent_at(
        TestAgent::new("work", &["work"]),
        SocketAddr::from(([127, 0, 0, 3], port)),
        ServerConfig::default(),
    )
    .await;
    const NAME: &str = "agents.mesh.test";
    let zone = dns::zone([(NAME, vec![Ipv4Addr::new(127, 0, 0, 2)])]);
    let dns = dns::dns_server(Arc::clone(&zone)).await;
    let mut cfg = test_config(&[]);
    cfg.discovery.dns = vec![format!("agents.mesh.test:{port}")];
    cfg.discovery.dns_server = Some(dns);
    let orch = spawn_orchestrator(cfg).await;
    let mut client = orchestrator(orch).await;
    assert_eq!(
        wait_serving_agents(&mut client, 1).await,
        vec![first.to_string()]
    );
    let listed = endpoints(&mut client).await;
    assert_eq!(listed[0].source, format!("dns:agents.mesh.test:{port}"));

    // Runs keep going while the answer changes.
    let mut early_runs = Vec::new();
    for _ in 0..3 {
        let s = spec(vec![step("s", "work", json!({"sleep_ms": 300}))]);
        early_runs.push(
            client
                .submit(SubmitRequest { spec: Some(s) })
                .await
                .unwrap()
                .into_inner()
                .run_id,
        );
    }
    zone.lock()
        .unwrap()
        .get_mut(NAME)
        .unwrap()
        .push(Ipv4Addr::new(127, 0, 0, 3));
    let both = wait_serving_agents(&mut client, 2).await;
    assert!(both.contains(&second.to_string()));
    // A run now lands on the new replica when the old one is busy.
    let busy = client
        .submit(SubmitRequest {
            spec: Some(spec(vec![step("s", "work", json!({"sleep_ms": 500}))])),
        })
        .await
        .unwrap();
    drop(busy);
    assert_eq!(served_by(&mut client, "work").await, second.to_string());

    // The first address disappears from DNS: its endpoint goes away.
    zone.lock()
        .unwrap()
        .get_mut(NAME)
        .unwrap()
        .retain(|ip| *ip != Ipv4Addr::new(127, 0, 0, 2));
    assert_eq!(
        wait_serving_agents(&mut client, 1).await,
        vec![second.to_string()]
    );
    for _ in 0..2 {
        assert_eq!(served_by(&mut client, "work").await, second.to_string());
    }
    // The runs started before the changes completed.
    for run_id in early_runs {
        let events = watch_to_end(&mut client, &run_id, 0).await;
        assert_eq!(finished(&events).state(), RunState::Completed);
    }
}

/// An agent no discovery source lists, an orchestrator with no endpoints,
/// and clients of the orchestrator's two services.
struct Unlisted {
    agent: SocketAddr,
    _stop: tokio::sync::oneshot::Sender<()>,
    client: agentmesh_proto::v1::orchestrator_service_client::OrchestratorServiceClient<Channel>,
    registry: RegistryServiceClient<Channel>,
}

async fn unlisted() -> Unlisted {
    let (agent, _stop) = spawn_agent_at(
        TestAgent::new("work", &["work"]),
        "127.0.0.1:0".parse().unwrap(),
        ServerConfig::default(),
    )
    .await;
    let orch = spawn_orchestrator(test_config(&[])).await;
    let client = orchestrator(orch).await;
    let channel = Channel::from_shared(format!("http://{orch}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    Unlisted {
        agent,
        _stop,
        client,
        registry: RegistryServiceClient::new(channel),
    }
}

#[tokio::test]
async fn a_self_registered_agent_stays_while_it_renews_and_goes_when_its_lease_expires() {
    let Unlisted {
        agent,
        _stop,
        mut client,
        mut registry,
    } = unlisted().await;

    let bad = registry
        .register(RegisterRequest {
            address: "no port".into(),
            lease: None,
        })
        .await
        .unwrap_err();
    assert_eq!(bad.code(), tonic::Code::InvalidArgument);

    let lease = registry
        .register(RegisterRequest {
            address: agent.to_string(),
            lease: Some(Duration::from_millis(600).try_into().unwrap()),
        })
        .await
        .unwrap()
        .into_inner();
    wait_serving_agents(&mut client, 1).await;
    assert!(
        endpoints(&mut client).await[0]
            .source
            .starts_with("registered:")
    );
    assert_eq!(served_by(&mut client, "work").await, agent.to_string());

    // Renewing keeps it for longer than one lease.
    for _ in 0..6 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        registry
            .renew_lease(RenewLeaseRequest {
                lease_id: lease.lease_id.clone(),
            })
            .await
            .unwrap();
    }
    assert_eq!(endpoints(&mut client).await.len(), 1);

    // It stops renewing: the endpoint is removed.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    while !endpoints(&mut client).await.is_empty() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "lease did not expire"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let gone = registry
        .renew_lease(RenewLeaseRequest {
            lease_id: lease.lease_id,
        })
        .await
        .unwrap_err();
    assert_eq!(gone.code(), tonic::Code::NotFound);
    // Without agents, a run cannot be planned.
    let err = client
        .run(RunRequest {
            spec: Some(spec(vec![step("s", "work", json!({}))])),
            stream: None,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
}

#[tokio::test]
async fn a_replica_that_keeps_failing_is_ejected_and_comes_back_after_the_cool_down() {
    let one = TestAgent::new("work", &["work"]);
    let two = TestAgent::new("work", &["work"]);
    let (addr1, _s1) = spawn_agent_at(
        one.clone(),
        "127.0.0.1:0".parse().unwrap(),
        ServerConfig::default(),
    )
    .await;
    let (addr2, _s2) = spawn_agent_at(
        two.clone(),
        "127.0.0.1:0".parse().unwrap(),
        ServerConfig::default(),
    )
    .await;
    // Ties go to the lower address: make that one the broken replica.
    let (broken, broken_addr, good_addr) = if addr1.to_string() < addr2.to_string() {
        (one, addr1, addr2)
    } else {
        (two, addr2, addr1)
    };
    broken.seen.fail_next.store(1_000, Ordering::SeqCst);
    let mut cfg = test_config(&[addr1, addr2]);
    cfg.routing.eject_after_failures = 2;
    cfg.routing.eject_cooldown = Duration::from_millis(800);
    let orch = spawn_orchestrator(cfg).await;
    let mut client = orchestrator(orch).await;
    wait_serving_agents(&mut client, 2).await;

    // Each run tries the broken replica first, then reroutes.
    for _ in 0..2 {
        assert_eq!(served_by(&mut client, "work").await, good_addr.to_string());
    }
    let listed = endpoints(&mut client).await;
    let ep = listed
        .iter()
        .find(|e| e.address == broken_addr.to_string())
        .unwrap();
    assert!(ep.ejected && ep.ejected_until.is_some(), "{ep:?}");
    assert!(ep.error_rate > 0.99, "{ep:?}");
    // While ejected it gets nothing.
    let before = broken.seen.started.load(Ordering::SeqCst);
    assert_eq!(served_by(&mut client, "work").await, good_addr.to_string());
    assert_eq!(broken.seen.started.load(Ordering::SeqCst), before);
    // After the cool-down it is back.
    tokio::time::sleep(Duration::from_millis(900)).await;
    let ep = endpoints(&mut client)
        .await
        .into_iter()
        .find(|e| e.address == broken_addr.to_string())
        .unwrap();
    assert!(!ep.ejected);
    broken.seen.fail_next.store(0, Ordering::SeqCst);
    assert_eq!(
        served_by(&mut client, "work").await,
        broken_addr.to_string()
    );
}

/// A health service with Check only (Watch is UNIMPLEMENTED), as some gRPC
/// servers in other languages have it.
struct CheckOnly(Arc<std::sync::atomic::AtomicI32>);

#[tonic::async_trait]
impl tonic_health::pb::health_server::Health for CheckOnly {
    async fn check(
        &self,
        _: tonic::Request<tonic_health::pb::HealthCheckRequest>,
    ) -> Result<tonic::Response<tonic_health::pb::HealthCheckResponse>, tonic::Status> {
        Ok(tonic::Response::new(
            tonic_health::pb::HealthCheckResponse {
                status: self.0.load(Ordering::SeqCst),
            },
        ))
    }

    type WatchStream =
        tokio_stream::Pending<Result<tonic_health::pb::HealthCheckResponse, tonic::Status>>;

    async fn watch(
        &self,
        _: tonic::Request<tonic_health::pb::HealthCheckRequest>,
    ) -> Result<tonic::Response<Self::WatchStream>, tonic::Status> {
        Err(tonic::Status::unimplemented(
            "Watch is not implemented here",
        ))
    }
}

#[tokio::test]
async fn without_watch_the_orchestrator_falls_back_to_periodic_check() {
    let status = Arc::new(std::sync::atomic::AtomicI32::new(1));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let health = CheckOnly(Arc::clone(&status));
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(
                agentmesh_proto::v1::agent_service_server::AgentServiceServer::new(
                    RawAgent::default(),
                ),
            )
            .add_service(tonic_health::pb::health_server::HealthServer::new(health))
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener)),
    );
    let orch = spawn_orchestrator(test_config(&[addr])).await;
    let mut client = orchestrator(orch).await;
    wait_serving_agents(&mut client, 1).await;
    assert_eq!(served_by(&mut client, "raw").await, addr.to_string());

    // NOT_SERVING (2) by Check: no new work.
    status.store(2, Ordering::SeqCst);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    while endpoints(&mut client).await[0].health() != EndpointHealth::NotServing {
        assert!(
            tokio::time::Instant::now() < deadline,
            "Check fallback did not see NOT_SERVING"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let events = run_all(&mut client, spec(vec![step("s", "raw", json!({}))])).await;
    let f = finished(&events);
    assert_eq!(
        (f.state(), f.reason.as_str()),
        (RunState::Failed, "NO_AGENT_FOR_SKILL"),
        "{f:?}"
    );
    // And back.
    status.store(1, Ordering::SeqCst);
    wait_serving_agents(&mut client, 1).await;
    assert_eq!(served_by(&mut client, "raw").await, addr.to_string());
}

#[tokio::test]
async fn an_agent_registers_itself_and_deregisters_when_it_shuts_down() {
    let orch = spawn_orchestrator(test_config(&[])).await;
    let mut client = orchestrator(orch).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let cfg = ServerConfig {
        registration: Some(agentmesh_runtime::registration::RegistrationConfig {
            orchestrator: orch.to_string(),
            advertise: addr.to_string(),
            lease: Duration::from_millis(1_500),
            tls: None,
            token_file: None,
        }),
        shutdown_grace: Duration::from_millis(100),
        ..ServerConfig::default()
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(agentmesh_runtime::serve(
        TestAgent::new("work", &["work"]),
        listener,
        cfg,
        async {
            let _ = stopped.await;
        },
    ));
    wait_serving_agents(&mut client, 1).await;
    assert!(
        endpoints(&mut client).await[0]
            .source
            .starts_with("registered:")
    );
    // It renews: still there after two lease lengths.
    tokio::time::sleep(Duration::from_millis(3_200)).await;
    assert_eq!(served_by(&mut client, "work").await, addr.to_string());
    // Shutting down deregisters at once (well before the lease would expire).
    drop(stop);
    let t0 = std::time::Instant::now();
    while !endpoints(&mut client).await.is_empty() {
        assert!(
            t0.elapsed() < Duration::from_millis(1_000),
            "not deregistered"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    server.await.unwrap().unwrap();
}

#[tokio::test]
async fn registration_takes_the_documented_address_forms_and_deregister_is_idempotent() {
    let Unlisted {
        agent,
        _stop,
        mut client,
        mut registry,
    } = unlisted().await;
    let register = |address: String| RegisterRequest {
        address,
        lease: Some(Duration::from_secs(30).try_into().unwrap()),
    };

    // A scheme this orchestrator does not dial, or no scheme of ours at all,
    // is refused naming the field.
    for wrong in [format!("https://{agent}"), format!("ftp://{agent}")] {
        let err = registry
            .register(register(wrong.clone()))
            .await
            .unwrap_err();
        assert_eq!(err.code(), tonic::Code::InvalidArgument, "{wrong}");
        let refused = agentmesh_proto::error::MeshError::from_status(&err);
        assert_eq!(refused.reason.name(), "INVALID_INPUT", "{wrong}");
        assert!(
            err.message().contains("scheme"),
            "{wrong}: {}",
            err.message()
        );
    }

    // The form registry.proto documents: the endpoint is known as host:port.
    let lease = registry
        .register(register(format!("http://{agent}/")))
        .await
        .unwrap()
        .into_inner();
    wait_serving_agents(&mut client, 1).await;
    assert_eq!(endpoints(&mut client).await[0].address, agent.to_string());
    assert_eq!(served_by(&mut client, "work").await, agent.to_string());

    // Deregistering twice, and a lease never granted, all answer OK.
    for id in [
        &lease.lease_id,
        &lease.lease_id,
        &"never-granted".to_string(),
    ] {
        registry
            .deregister(DeregisterRequest {
                lease_id: id.clone(),
            })
            .await
            .unwrap();
    }
    assert!(endpoints(&mut client).await.is_empty());
}
