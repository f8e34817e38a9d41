//! Each agent binary started with no arguments is a working agent on its
//! default port: health SERVING, a card, and its skills answer. The real
//! binaries run as separate processes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::Duration;

use agentmesh_e2e::{
    Child, agent_card, binary, connect, hermetic, run_skill, temp_dir, wait_serving,
};
use agentmesh_proto::v1::AGENT_SERVICE_NAME;
use serde_json::json;

#[tokio::test]
async fn agent_binaries_work_with_no_arguments_on_their_default_ports() {
    let tmp = temp_dir("binaries");
    let cwd = tmp.path().to_path_buf();
    let mut children = Vec::new();
    for (name, port, skill) in [
        ("data-agent", 50051, "sales.extract"),
        ("analytics-agent", 50052, "analytics.metrics"),
        ("summary-agent", 50053, "summary.write"),
    ] {
        let mut cmd = Command::new(binary(name));
        let child = hermetic(&mut cmd)
            .current_dir(&cwd)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        children.push(Child(child));
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        wait_serving(addr, AGENT_SERVICE_NAME, Duration::from_secs(60)).await;
        let card = agent_card(addr).await;
        assert!(
            card.skills.iter().any(|s| s.id == skill),
            "{name} offers {skill}"
        );
    }
    // And the skills answer: the whole chain over the three processes.
    let mut data = connect(([127, 0, 0, 1], 50051).into()).await;
    let mut analytics = connect(([127, 0, 0, 1], 50052).into()).await;
    let mut summary = connect(([127, 0, 0, 1], 50053).into()).await;
    let ds = run_skill(
        &mut data,
        "sales.extract",
        json!({"period": "Q2", "compare": ["previous_period", "year_ago"]}),
    )
    .await
    .output
    .unwrap();
    let m = run_skill(&mut analytics, "analytics.metrics", json!({"dataset": ds}))
        .await
        .output
        .unwrap();
    let c = run_skill(&mut analytics, "analytics.charts", json!({"metrics": m})).await;
    assert_eq!(c.artifacts.len(), 4);
    let s = run_skill(&mut summary, "summary.write", json!({"metrics": m}))
        .await
        .output
        .unwrap();
    assert_eq!(s["faithfulness"]["passed"], json!(true));
    assert!(
        cwd.join("data/sales.db").exists(),
        "the embedded database was created on first start"
    );
    drop(children);
}
