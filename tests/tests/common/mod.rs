//! Helpers several end-to-end test files share.

use std::net::SocketAddr;

use agentmesh_data::{DataAgent, DataConfig};
use agentmesh_e2e::{spawn_agent, temp_dir};

/// A data agent on a fresh root (removed when the returned folder is
/// dropped), in process.
pub async fn data_agent() -> (tempfile::TempDir, SocketAddr) {
    let tmp = temp_dir("data-agent");
    let cfg = DataConfig {
        root: tmp.path().to_path_buf(),
        ..DataConfig::default()
    };
    let data = tokio::task::spawn_blocking(move || DataAgent::open(&cfg))
        .await
        .unwrap()
        .unwrap();
    (tmp, spawn_agent(data).await)
}
