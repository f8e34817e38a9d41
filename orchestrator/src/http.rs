//! The orchestrator's HTTP listeners (the A2A JSON-RPC binding, the run
//! viewer): one way to serve an axum app, over TLS with `[server.tls]`
//! (the gRPC port's certificate and key, HTTP/1.1 and HTTP/2 by ALPN), and
//! to close it when the gRPC server stops.

use std::time::Duration;

use agentmesh_runtime::tls::ServerTls;
use axum::Router;
use axum_server::tls_rustls::RustlsConfig;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::warn;

/// How long open connections get to finish after `stop`.
const CLOSE_GRACE: Duration = Duration::from_secs(2);

/// The listeners' TLS from `[server.tls]`: the same certificate and key.
pub async fn tls(cfg: &ServerTls) -> std::io::Result<RustlsConfig> {
    RustlsConfig::from_pem_file(&cfg.cert, &cfg.key).await
}

/// Serves `app` on `listener` until `stop`, over TLS with `tls`; `what`
/// names the listener in the log when it fails.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    tls: Option<RustlsConfig>,
    stop: CancellationToken,
    what: &'static str,
) {
    let served = match tls {
        None => {
            axum::serve(listener, app)
                .with_graceful_shutdown(stop.cancelled_owned())
                .await
        }
        Some(tls) => {
            let handle = axum_server::Handle::new();
            let closing = handle.clone();
            tokio::spawn(async move {
                stop.cancelled().await;
                closing.graceful_shutdown(Some(CLOSE_GRACE));
            });
            match listener
                .into_std()
                .and_then(|l| axum_server::tls_rustls::from_tcp_rustls(l, tls))
            {
                Ok(server) => server.handle(handle).serve(app.into_make_service()).await,
                Err(e) => Err(e),
            }
        }
    };
    if let Err(e) = served {
        warn!(error = %e, listener = what, "HTTP listener failed");
    }
}
