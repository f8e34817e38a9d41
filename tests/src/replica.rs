//! Orchestrator replicas on one shared store (`store.url`), as real
//! processes that tests and benches stop, kill, freeze and start again.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use agentmesh_proto::v1::ORCHESTRATOR_SERVICE_NAME;

use crate::{Child, free_port, start_process_logged};

/// An orchestrator process on a PostgreSQL store, with its agents given
/// as static endpoints and its JSON log in a file per start.
pub struct Replica {
    /// Its `store.instance`.
    pub name: String,
    /// Where it listens (the same across restarts, as a pod behind its
    /// Service).
    pub addr: SocketAddr,
    /// The log of its latest start.
    pub log: PathBuf,
    /// The process; None while it is down.
    pub child: Option<Child>,
    url: String,
    agents: Vec<SocketAddr>,
    dir: PathBuf,
    lease_ms: String,
    starts: u32,
}

impl Replica {
    /// Starts replica `name` on the database at `url` with a store lease
    /// of `lease_ms`, its logs in `dir`.
    pub async fn start(
        name: &str,
        url: &str,
        agents: &[SocketAddr],
        dir: &Path,
        lease_ms: u64,
    ) -> Self {
        let mut r = Self {
            name: name.to_string(),
            addr: free_port([127, 0, 0, 1]),
            log: PathBuf::new(),
            child: None,
            url: url.to_string(),
            agents: agents.to_vec(),
            dir: dir.to_path_buf(),
            lease_ms: lease_ms.to_string(),
            starts: 0,
        };
        r.restart().await;
        r
    }

    /// Starts the process again, on the same address; waits until it
    /// serves.
    pub async fn restart(&mut self) {
        let mut args = Vec::new();
        for a in &self.agents {
            args.extend(["--agent".to_string(), a.to_string()]);
        }
        self.log = self.dir.join(format!("{}.{}.log", self.name, self.starts));
        self.starts += 1;
        let child = start_process_logged(
            "orchestrator",
            self.addr,
            &args,
            &[
                ("AGENTMESH_STORE__URL", &self.url),
                ("AGENTMESH_STORE__INSTANCE", &self.name),
                ("AGENTMESH_STORE__LEASE_MS", &self.lease_ms),
                ("AGENTMESH_SERVER__SHUTDOWN_GRACE_MS", "100"),
                ("AGENTMESH_TELEMETRY__LOG_FORMAT", "json"),
            ],
            &self.dir,
            ORCHESTRATOR_SERVICE_NAME,
            Some(&self.log),
        )
        .await;
        self.child = Some(child);
    }

    /// Kills the process (SIGKILL): no drain, no final write.
    pub fn kill(&mut self) {
        drop(self.child.take());
    }

    /// Sends `sig` to the process.
    pub fn signal(&self, sig: nix::sys::signal::Signal) {
        let child = self.child.as_ref().expect("the replica is running");
        let pid = nix::unistd::Pid::from_raw(i32::try_from(child.0.id()).unwrap());
        nix::sys::signal::kill(pid, sig).unwrap();
    }

    /// What its latest start logged so far.
    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}
