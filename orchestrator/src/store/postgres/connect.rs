//! Connections to the database: the URL's settings, TLS on rustls (ring)
//! when its `sslmode` asks for it, a pool for reads and inserts, and single
//! connections for the writer and the listener.

use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use tokio_postgres::config::SslMode;
use tokio_postgres::tls::MakeTlsConnect;
use tokio_postgres::{Client, Config, Connection, NoTls, Socket};
use tokio_postgres_rustls::MakeRustlsConnect;

use super::PgStoreError;

/// How long taking a pooled connection, or making one, may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The database's address and how to reach it.
#[derive(Clone)]
pub struct Database {
    config: Config,
    tls: Option<MakeRustlsConnect>,
}

/// A connection's I/O half (run it to drive its client), plain or TLS.
pub enum Driver {
    /// Without TLS (`sslmode=disable`, or `prefer` on a server without it).
    Plain(Box<Connection<Socket, tokio_postgres::tls::NoTlsStream>>),
    /// Over TLS.
    Tls(Box<Connection<Socket, <MakeRustlsConnect as MakeTlsConnect<Socket>>::Stream>>),
}

impl Database {
    /// Reads `url` (a `postgres://` URL) and sets TLS up as its `sslmode`
    /// says: certificates signed by `ca_file` (PEM), else the system's
    /// roots.
    pub fn new(url: &str, ca_file: Option<&Path>) -> Result<Self, PgStoreError> {
        let mut config = Config::from_str(url).map_err(|e| PgStoreError::Url(e.to_string()))?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        if config.get_application_name().is_none() {
            config.application_name("agentmesh-orchestrator");
        }
        let tls = match config.get_ssl_mode() {
            SslMode::Disable => None,
            _ => Some(tls(ca_file)?),
        };
        Ok(Self { config, tls })
    }

    /// A pool of up to `size` connections.
    pub fn pool(&self, size: usize) -> Result<Pool, PgStoreError> {
        let manager_config = ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        };
        let manager = match &self.tls {
            Some(tls) => Manager::from_config(self.config.clone(), tls.clone(), manager_config),
            None => Manager::from_config(self.config.clone(), NoTls, manager_config),
        };
        Pool::builder(manager)
            .max_size(size)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(CONNECT_TIMEOUT))
            .create_timeout(Some(CONNECT_TIMEOUT))
            .build()
            .map_err(|e| PgStoreError::Pool(e.to_string()))
    }

    /// One connection of its own (the listener's): the client, and the
    /// driver to run (it carries notifications).
    pub async fn connect(&self) -> Result<(Client, Driver), tokio_postgres::Error> {
        match &self.tls {
            Some(tls) => {
                let (client, conn) = self.config.connect(tls.clone()).await?;
                Ok((client, Driver::Tls(Box::new(conn))))
            }
            None => {
                let (client, conn) = self.config.connect(NoTls).await?;
                Ok((client, Driver::Plain(Box::new(conn))))
            }
        }
    }
}

impl Driver {
    /// The next notice or notification; None when the connection closed.
    pub fn poll_message(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<tokio_postgres::AsyncMessage, tokio_postgres::Error>>> {
        match self {
            Self::Plain(c) => c.poll_message(cx),
            Self::Tls(c) => c.poll_message(cx),
        }
    }
}

/// rustls with ring, trusting `ca_file` or the system's roots.
fn tls(ca_file: Option<&Path>) -> Result<MakeRustlsConnect, PgStoreError> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    match ca_file {
        Some(path) => {
            let bad =
                |e: String| PgStoreError::Tls(format!("store.ca_file {}: {e}", path.display()));
            for cert in CertificateDer::pem_file_iter(path).map_err(|e| bad(e.to_string()))? {
                roots
                    .add(cert.map_err(|e| bad(e.to_string()))?)
                    .map_err(|e| bad(e.to_string()))?;
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            roots.add_parsable_certificates(found.certs);
        }
    }
    if roots.is_empty() {
        return Err(PgStoreError::Tls(
            "no CA certificates to check the database's certificate with (set store.ca_file)"
                .into(),
        ));
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| PgStoreError::Tls(e.to_string()))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(MakeRustlsConnect::new(config))
}
