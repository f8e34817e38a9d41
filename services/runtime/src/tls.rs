//! TLS for agentmesh connections, on rustls: a server's certificate (and,
//! for mutual TLS, the CA its clients' certificates must chain to), and a
//! client's trust roots (and its own certificate for mutual TLS).
//!
//! Files are read once, when a server or client is set up, so a missing or
//! unreadable file stops the process at start with the path in the error,
//! not at the first connection.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tonic::transport::{Certificate, ClientTlsConfig, Identity, ServerTlsConfig};

/// Why TLS could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A PEM file could not be read.
    #[error("TLS {what} {path}: {source}")]
    Read {
        /// Which file it is (certificate, key, CA).
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A client certificate was given without its key, or the other way round.
    #[error("TLS: a client certificate needs its key (set both cert and key, or neither)")]
    HalfIdentity,
}

/// A server's TLS: `[server.tls]`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ServerTls {
    /// The server's certificate chain, PEM.
    pub cert: PathBuf,
    /// The certificate's private key, PEM.
    pub key: PathBuf,
    /// Mutual TLS: clients must present a certificate that chains to this
    /// CA (PEM). Unset: any client that trusts the server may connect.
    #[serde(default)]
    pub client_ca: Option<PathBuf>,
}

impl ServerTls {
    /// Reads the files into tonic's server TLS settings.
    pub fn load(&self) -> Result<ServerTlsConfig, TlsError> {
        let identity =
            Identity::from_pem(read("certificate", &self.cert)?, read("key", &self.key)?);
        let mut config = ServerTlsConfig::new().identity(identity);
        if let Some(ca) = &self.client_ca {
            config = config.client_ca_root(Certificate::from_pem(read("client CA", ca)?));
        }
        Ok(config)
    }
}

/// A client's TLS towards agentmesh servers: `[discovery.tls]` in the
/// orchestrator, `[server.registration.tls]` in agents, `--tls-*` in meshctl.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ClientTls {
    /// CA that servers' certificates must chain to, PEM. Unset: the
    /// system's trust roots.
    pub ca: Option<PathBuf>,
    /// Mutual TLS: this client's certificate chain, PEM.
    pub cert: Option<PathBuf>,
    /// Mutual TLS: the certificate's private key, PEM.
    pub key: Option<PathBuf>,
    /// Name the servers' certificates are checked against, when it is not
    /// the host being dialled (servers found by IP address, such as the
    /// replicas behind a headless Service).
    pub domain: Option<String>,
}

impl ClientTls {
    /// Reads the files into tonic's client TLS settings.
    pub fn load(&self) -> Result<ClientTlsConfig, TlsError> {
        let mut config = ClientTlsConfig::new();
        config = match &self.ca {
            Some(ca) => config.ca_certificate(Certificate::from_pem(read("CA", ca)?)),
            None => config.with_native_roots(),
        };
        match (&self.cert, &self.key) {
            (Some(cert), Some(key)) => {
                config = config.identity(Identity::from_pem(
                    read("certificate", cert)?,
                    read("key", key)?,
                ));
            }
            (None, None) => {}
            _ => return Err(TlsError::HalfIdentity),
        }
        if let Some(domain) = &self.domain {
            config = config.domain_name(domain.clone());
        }
        Ok(config)
    }
}

fn read(what: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        what,
        path: path.to_path_buf(),
        source,
    })
}

/// The URI scheme for a client with or without TLS.
pub fn scheme(tls: bool) -> &'static str {
    if tls { "https" } else { "http" }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_file_is_named_in_the_error() {
        let tls = ServerTls {
            cert: "/nonexistent/server.pem".into(),
            key: "/nonexistent/server.key".into(),
            client_ca: None,
        };
        let err = tls.load().err().map(|e| e.to_string()).unwrap_or_default();
        assert!(
            err.contains("TLS certificate /nonexistent/server.pem"),
            "{err}"
        );
    }

    #[test]
    fn a_client_certificate_without_its_key_is_refused() {
        let tls = ClientTls {
            cert: Some("/nonexistent/client.pem".into()),
            ..ClientTls::default()
        };
        assert!(matches!(tls.load(), Err(TlsError::HalfIdentity)));
    }
}
