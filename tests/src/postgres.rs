//! A real PostgreSQL server for the shared run store's tests: Debian's
//! `postgresql` binaries, a cluster made with `initdb` in a temporary
//! folder and started on a free loopback port, as `nobody` when the tests
//! run as root (PostgreSQL refuses to run as root). It stops when dropped.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

/// A running PostgreSQL server.
pub struct Postgres {
    child: std::process::Child,
    port: u16,
    _dir: tempfile::TempDir,
}

/// The folder holding `initdb` and `postgres`: `$AGENTMESH_PG_BIN`, else
/// the newest `/usr/lib/postgresql/*/bin`, else the PATH.
fn bin_dir() -> Option<PathBuf> {
    if let Ok(dir) = std::env::var("AGENTMESH_PG_BIN") {
        return Some(PathBuf::from(dir));
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(Result::ok)
        .filter_map(|e| {
            let v = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((v, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin)
}

/// The user the server runs as: `nobody` when running as root.
fn server_user() -> Option<nix::unistd::User> {
    if !nix::unistd::geteuid().is_root() {
        return None;
    }
    nix::unistd::User::from_name("nobody").ok().flatten()
}

fn command(bin: &Option<PathBuf>, name: &str, user: &Option<nix::unistd::User>) -> Command {
    let path = bin
        .as_ref()
        .map_or_else(|| PathBuf::from(name), |b| b.join(name));
    let mut cmd = Command::new(path);
    if let Some(u) = user {
        cmd.uid(u.uid.as_raw()).gid(u.gid.as_raw());
    }
    cmd.env_remove("PGDATA").env("LC_ALL", "C");
    cmd
}

impl Postgres {
    /// Makes a cluster and starts the server; waits until it accepts
    /// connections.
    pub async fn start() -> Self {
        let bin = bin_dir();
        let user = server_user();
        let dir = tempfile::Builder::new()
            .prefix("agentmesh-pg-")
            .tempdir_in(std::env::temp_dir())
            .unwrap();
        let data = dir.path().join("data");
        std::fs::create_dir(&data).unwrap();
        if let Some(u) = &user {
            nix::unistd::chown(dir.path(), Some(u.uid), Some(u.gid)).unwrap();
            nix::unistd::chown(&data, Some(u.uid), Some(u.gid)).unwrap();
        }
        let out = command(&bin, "initdb", &user)
            .args([
                "-U",
                "agentmesh",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-sync",
                "-D",
            ])
            .arg(&data)
            .stdout(Stdio::null())
            .output()
            .expect("initdb runs (install Debian's postgresql)");
        assert!(
            out.status.success(),
            "initdb: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let port = crate::free_port([127, 0, 0, 1]).port();
        let log = std::fs::File::create(dir.path().join("postgres.log")).unwrap();
        let child = command(&bin, "postgres", &user)
            .arg("-D")
            .arg(&data)
            .args(["-p", &port.to_string()])
            .args(["-c", "listen_addresses=127.0.0.1"])
            .args(["-c", "unix_socket_directories="])
            .args(["-c", "fsync=off", "-c", "synchronous_commit=off"])
            .args(["-c", "max_connections=300"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("postgres starts");
        let pg = Self {
            child,
            port,
            _dir: dir,
        };
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            if pg.client("postgres").await.is_ok() {
                return pg;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "PostgreSQL did not accept connections; see {}",
                pg._dir.path().join("postgres.log").display()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The URL of database `db`.
    pub fn url(&self, db: &str) -> String {
        format!("postgres://agentmesh@127.0.0.1:{}/{db}", self.port)
    }

    /// A client of database `db` (its connection driven in a task).
    pub async fn client(&self, db: &str) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
        let (client, conn) = tokio_postgres::connect(&self.url(db), tokio_postgres::NoTls).await?;
        tokio::spawn(conn);
        Ok(client)
    }

    /// Creates an empty database `db` and returns its URL.
    pub async fn database(&self, db: &str) -> String {
        self.client("postgres")
            .await
            .unwrap()
            .batch_execute(&format!("CREATE DATABASE \"{db}\""))
            .await
            .unwrap();
        self.url(db)
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        // Immediate shutdown: the cluster is thrown away.
        if let Ok(pid) = i32::try_from(self.child.id()) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGQUIT,
            );
        }
        let _ = self.child.wait();
    }
}
