//! The run viewer: web pages over the Orchestrator API on their own HTTP
//! listener (`[viewer] listen`, `--viewer-listen`).
//!
//! Pages are server-rendered frames ([`pages`]) whose live parts are drawn
//! by one small script ([`assets`]), embedded in the binary: no build step,
//! no framework, nothing fetched from elsewhere, so the viewer works
//! offline and behind any proxy. The script reads JSON from [`api`], which
//! calls [`OrchestratorApi`] in process with the caller's [`Principal`]:
//! authentication, authorization, limits and validation are the API's own.
//! A run's page follows the run's log through `WatchRun` as server-sent
//! events whose ids are the events' `seq`, so a browser that reconnects
//! (`Last-Event-ID`) resumes after the last event it had, without gaps.
//!
//! With `[server.auth]`, a browser signs in once with its bearer token
//! ([`session`]); the token is kept in an HttpOnly, SameSite=Strict cookie.
//! Scripts and programs may send `Authorization: Bearer` instead.

pub mod api;
pub mod assets;
pub mod pages;
pub mod session;

use std::sync::Arc;

use agentmesh_runtime::auth::Authenticator;
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use axum_server::tls_rustls::RustlsConfig;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::service::OrchestratorApi;

/// What every viewer handler shares.
pub struct Viewer {
    api: Arc<OrchestratorApi>,
    auth: Option<Arc<Authenticator>>,
    secure: bool,
}

impl Viewer {
    /// The viewer of `api`; `auth` is the API's authenticator (with
    /// `[server.auth]`); `secure` when served over TLS (the session cookie
    /// is then `Secure`).
    pub fn new(api: Arc<OrchestratorApi>, auth: Option<Arc<Authenticator>>, secure: bool) -> Self {
        Self { api, auth, secure }
    }
}

/// Every route of the viewer.
pub fn router(viewer: Arc<Viewer>) -> Router {
    let signed_in = Router::new()
        .route("/", get(pages::runs))
        .route("/runs/{run_id}", get(pages::run))
        .route("/agents", get(pages::agents))
        .route("/api/runs", get(api::list_runs).post(api::start_run))
        .route("/api/runs/{run_id}", get(api::get_run))
        .route("/api/runs/{run_id}/events", get(api::events))
        .route("/api/runs/{run_id}/report", get(api::report))
        .route("/api/runs/{run_id}/cancel", post(api::cancel))
        .route(
            "/api/runs/{run_id}/steps/{step_id}/answer",
            post(api::answer),
        )
        .route("/api/agents", get(api::agents))
        .route_layer(axum::middleware::from_fn_with_state(
            Arc::clone(&viewer),
            session::require,
        ));
    Router::new()
        .route("/login", get(pages::login).post(session::login))
        .route("/logout", post(session::logout))
        .route("/assets/{file}", get(assets::serve))
        .route("/favicon.ico", get(assets::no_icon))
        .merge(signed_in)
        .layer(DefaultBodyLimit::max(api::MAX_BODY))
        .layer(axum::middleware::from_fn(pages::security_headers))
        .with_state(viewer)
}

/// Serves the viewer on `listener` until `stop`, over TLS with `tls`.
pub async fn serve(
    listener: TcpListener,
    viewer: Arc<Viewer>,
    tls: Option<RustlsConfig>,
    stop: CancellationToken,
) {
    if let Ok(addr) = listener.local_addr() {
        info!(%addr, tls = tls.is_some(), "run viewer");
    }
    crate::http::serve(listener, router(viewer), tls, stop, "viewer").await;
}
