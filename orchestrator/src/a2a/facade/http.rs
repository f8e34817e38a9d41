//! The A2A HTTP listener (`[a2a] listen`): the JSON-RPC binding at `POST /`
//! and the public agent card at `GET /.well-known/agent-card.json`, both
//! from the A2A SDK. With `[server.tls]` it serves HTTPS with the same
//! certificate as the gRPC port (HTTP/1.1 and HTTP/2 by ALPN). With
//! `[server.auth]`, a JSON-RPC call without a valid bearer token is
//! answered 401 with `WWW-Authenticate: Bearer` before it is read; the card
//! stays public, as A2A discovery needs.

use std::sync::Arc;

use agentmesh_runtime::auth::Authenticator;
use agentmesh_runtime::tls::ServerTls;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum_server::tls_rustls::RustlsConfig;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::metadata::{MetadataMap, MetadataValue};
use tracing::{info, warn};

use super::Facade;

/// How long open connections get to finish after `stop`.
const CLOSE_GRACE: Duration = Duration::from_secs(2);

/// Serves the JSON-RPC binding and the card on `listener` until `stop`,
/// over TLS with `tls`.
pub async fn serve(
    listener: TcpListener,
    facade: Arc<Facade>,
    auth: Option<Arc<Authenticator>>,
    tls: Option<RustlsConfig>,
    stop: CancellationToken,
) {
    let card = Arc::clone(facade.card_source());
    let mut rpc = a2a_server::jsonrpc::jsonrpc_router(facade);
    if let Some(auth) = auth {
        rpc = rpc.layer(axum::middleware::from_fn_with_state(auth, require_bearer));
    }
    let app = rpc.merge(a2a_server::agent_card::agent_card_router(card));
    if let Ok(addr) = listener.local_addr() {
        info!(%addr, tls = tls.is_some(), "A2A listener (JSON-RPC and the agent card)");
    }
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
        warn!(error = %e, "A2A listener failed");
    }
}

/// The listener's TLS from `[server.tls]`: the same certificate and key.
pub async fn tls(cfg: &ServerTls) -> std::io::Result<RustlsConfig> {
    RustlsConfig::from_pem_file(&cfg.cert, &cfg.key).await
}

async fn require_bearer(
    State(auth): State<Arc<Authenticator>>,
    request: Request,
    next: Next,
) -> Response {
    let mut md = MetadataMap::new();
    if let Some(value) = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| MetadataValue::try_from(v).ok())
    {
        md.insert("authorization", value);
    }
    match auth.authenticate(&md, None) {
        Ok(_) => next.run(request).await,
        Err(refusal) => {
            info!(
                credential = refusal.name(),
                "A2A call refused: not authenticated"
            );
            let mut resp = (StatusCode::UNAUTHORIZED, refusal.message()).into_response();
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"agentmesh\""),
            );
            resp
        }
    }
}
