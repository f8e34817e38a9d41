//! Endpoint sources: the static list and DNS names re-resolved on a timer
//! (each address is one replica, as with a Kubernetes headless Service).
//! Self-registration with leases is in [`crate::routing::leases`].

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolverConfig};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::{Resolver, TokioResolver};
use tracing::{info, warn};

use crate::config::DiscoveryConfig;
use crate::routing::registry::Registry;

/// Source label of configured endpoints.
pub const STATIC_SOURCE: &str = "static";

/// Why discovery could not start.
#[derive(Debug, thiserror::Error)]
pub enum DiscoveryError {
    /// An entry is not `host:port`.
    #[error("discovery entry {entry:?}: {problem}")]
    Entry {
        /// The entry.
        entry: String,
        /// What is wrong.
        problem: String,
    },
    /// The resolver could not be built.
    #[error("DNS resolver: {0}")]
    Resolver(String),
}

/// Splits `host:port`, checking both parts.
pub fn split_host_port(entry: &str) -> Result<(&str, u16), String> {
    let (host, port) = entry
        .rsplit_once(':')
        .ok_or_else(|| "expected host:port".to_string())?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() || host.contains('/') || host.chars().any(char::is_whitespace) {
        return Err("the host is empty or not a host name".into());
    }
    let port: u16 = port
        .parse()
        .map_err(|_| format!("port {port:?} is not a number in 1..65535"))?;
    if port == 0 {
        return Err("port 0 is not a real port".into());
    }
    Ok((host, port))
}

/// Adds the static endpoints and starts one resolver loop per DNS name.
pub fn start(registry: &Arc<Registry>, cfg: &DiscoveryConfig) -> Result<(), DiscoveryError> {
    for entry in &cfg.endpoints {
        split_host_port(entry).map_err(|problem| DiscoveryError::Entry {
            entry: entry.clone(),
            problem,
        })?;
        registry
            .add_source(entry, STATIC_SOURCE)
            .map_err(|problem| DiscoveryError::Entry {
                entry: entry.clone(),
                problem,
            })?;
    }
    if cfg.dns.is_empty() {
        return Ok(());
    }
    let resolver = Arc::new(resolver(cfg.dns_server)?);
    let refresh = cfg.dns_refresh;
    for entry in &cfg.dns {
        let (host, port) = split_host_port(entry).map_err(|problem| DiscoveryError::Entry {
            entry: entry.clone(),
            problem,
        })?;
        let name = host.to_string();
        let source = format!("dns:{entry}");
        let registry = Arc::clone(registry);
        let resolver = Arc::clone(&resolver);
        tokio::spawn(async move {
            let stop = registry.shutdown.clone();
            tokio::select! {
                () = resolve_loop(&registry, &resolver, &name, port, &source, refresh) => {}
                () = stop.cancelled() => {}
            }
        });
    }
    Ok(())
}

fn resolver(server: Option<SocketAddr>) -> Result<TokioResolver, DiscoveryError> {
    let provider = TokioRuntimeProvider::default();
    let mut builder = match server {
        Some(addr) => {
            let mut udp = ConnectionConfig::udp();
            udp.port = addr.port();
            let mut tcp = ConnectionConfig::tcp();
            tcp.port = addr.port();
            let ns = NameServerConfig::new(addr.ip(), true, vec![udp, tcp]);
            Resolver::builder_with_config(ResolverConfig::from_name_servers(vec![ns]), provider)
        }
        None => Resolver::builder(provider).map_err(|e| DiscoveryError::Resolver(e.to_string()))?,
    };
    // Re-resolution must see changes: never serve answers from a cache.
    builder.options_mut().cache_size = 0;
    builder
        .build()
        .map_err(|e| DiscoveryError::Resolver(e.to_string()))
}

async fn resolve_loop(
    registry: &Arc<Registry>,
    resolver: &TokioResolver,
    name: &str,
    port: u16,
    source: &str,
    refresh: Duration,
) {
    let mut last: Option<BTreeSet<String>> = None;
    loop {
        match resolver.lookup_ip(name).await {
            Ok(found) => {
                let addrs: BTreeSet<String> = found
                    .iter()
                    .map(|ip| SocketAddr::new(ip, port).to_string())
                    .collect();
                if last.as_ref() != Some(&addrs) {
                    info!(name, replicas = addrs.len(), "DNS endpoints");
                    registry.set_source_members(source, &addrs);
                    last = Some(addrs);
                }
            }
            Err(e) if e.is_no_records_found() => {
                if last.as_ref().is_none_or(|l| !l.is_empty()) {
                    info!(name, "DNS name has no addresses");
                    registry.set_source_members(source, &BTreeSet::new());
                    last = Some(BTreeSet::new());
                }
            }
            // A transient failure keeps the endpoints we have.
            Err(e) => warn!(name, error = %e, "DNS resolution failed; keeping current endpoints"),
        }
        tokio::time::sleep(refresh).await;
    }
}
