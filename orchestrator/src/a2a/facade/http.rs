//! The A2A HTTP listener (`[a2a] listen`): the JSON-RPC binding at `POST /`
//! and the public agent card at `GET /.well-known/agent-card.json`, both
//! from the A2A SDK. With `[server.tls]` it serves HTTPS with the same
//! certificate as the gRPC port (HTTP/1.1 and HTTP/2 by ALPN). With
//! `[server.auth]`, a JSON-RPC call without a valid bearer token is
//! answered 401 with `WWW-Authenticate: Bearer` before it is read; the card
//! stays public, as A2A discovery needs.

use std::sync::Arc;

use agentmesh_runtime::auth::Authenticator;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum_server::tls_rustls::RustlsConfig;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::info;

use super::Facade;

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
    crate::http::serve(listener, app, tls, stop, "a2a").await;
}

async fn require_bearer(
    State(auth): State<Arc<Authenticator>>,
    request: Request,
    next: Next,
) -> Response {
    let authorization = request
        .headers()
        .get(header::AUTHORIZATION)
        .map(|v| v.to_str().unwrap_or_default());
    match auth.authenticate_bearer(authorization) {
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
