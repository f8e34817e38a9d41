//! Who is looking: the same credentials as the Orchestrator API. A request
//! carries a bearer token in `Authorization` or in the session cookie that
//! `POST /login` sets; the API's [`Authenticator`] decides. Pages redirect
//! a browser without a valid credential to `/login`; `/api/` answers 401.
//!
//! The cookie is HttpOnly (scripts cannot read the token) and
//! SameSite=Strict (other sites' pages cannot send it); every `POST` under
//! `/api/` must be `application/json`, which a cross-site form cannot send.

use std::sync::Arc;

use agentmesh_runtime::auth::Principal;
use axum::Form;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use tracing::info;

use super::Viewer;
use super::api::problem;
use crate::access::Caller;

/// The session cookie's name.
const COOKIE: &str = "agentmesh_token";
/// How long a browser keeps the session cookie.
const COOKIE_MAX_AGE_S: u32 = 12 * 3600;

/// The caller of a viewer request, as authentication left it (None: the
/// API is not authenticated).
#[derive(Clone)]
pub struct Signed(pub Option<Principal>);

impl Signed {
    /// The caller as the access policy knows it.
    pub fn caller(&self) -> Caller {
        match &self.0 {
            Some(p) => Caller::Principal(p.clone()),
            None => Caller::Anyone,
        }
    }

    /// `body` as an API request of this caller.
    pub fn request<T>(&self, body: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(body);
        if let Some(p) = &self.0 {
            request.extensions_mut().insert(p.clone());
        }
        request
    }
}

/// The bearer credential of a request: its `Authorization` header, else
/// the session cookie.
fn credential(headers: &HeaderMap) -> Option<String> {
    if let Some(value) = headers.get(header::AUTHORIZATION) {
        return Some(value.to_str().unwrap_or_default().to_string());
    }
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, token)| format!("Bearer {token}"))
}

/// Authenticates every signed-in route.
pub async fn require(
    State(viewer): State<Arc<Viewer>>,
    mut request: Request,
    next: Next,
) -> Response {
    let Some(auth) = &viewer.auth else {
        request.extensions_mut().insert(Signed(None));
        return next.run(request).await;
    };
    match auth.authenticate_bearer(credential(request.headers()).as_deref()) {
        Ok(principal) => {
            request.extensions_mut().insert(Signed(Some(principal)));
            next.run(request).await
        }
        Err(refusal) => {
            info!(
                credential = refusal.name(),
                "viewer request refused: not authenticated"
            );
            if request.uri().path().starts_with("/api/") {
                let mut resp = problem(refusal.into_status());
                resp.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer realm=\"agentmesh\""),
                );
                resp
            } else {
                Redirect::to("/login").into_response()
            }
        }
    }
}

/// The sign-in form.
#[derive(Deserialize)]
pub struct Login {
    token: String,
}

/// `POST /login`: checks the token and keeps it in the session cookie.
pub async fn login(State(viewer): State<Arc<Viewer>>, Form(form): Form<Login>) -> Response {
    let token = form.token.trim();
    let valid = match &viewer.auth {
        None => true,
        Some(auth) => auth
            .authenticate_bearer(Some(&format!("Bearer {token}")))
            .is_ok(),
    };
    // A token is opaque text or a JWT: neither has ';', ',' or spaces.
    let cookie_safe = token
        .bytes()
        .all(|b| b.is_ascii_graphic() && !matches!(b, b';' | b',' | b'"' | b'\\'));
    if !valid || !cookie_safe || token.is_empty() {
        return (
            StatusCode::UNAUTHORIZED,
            super::pages::login_page(Some("That token was not accepted.")),
        )
            .into_response();
    }
    match HeaderValue::try_from(cookie(token, COOKIE_MAX_AGE_S, viewer.secure)) {
        Ok(cookie) => {
            let mut resp = Redirect::to("/").into_response();
            resp.headers_mut().insert(header::SET_COOKIE, cookie);
            resp
        }
        Err(_) => (StatusCode::BAD_REQUEST, "unusable token").into_response(),
    }
}

/// `POST /logout`: forgets the session cookie.
pub async fn logout(State(viewer): State<Arc<Viewer>>) -> Response {
    let mut resp = Redirect::to("/login").into_response();
    if let Ok(forget) = HeaderValue::try_from(cookie("", 0, viewer.secure)) {
        resp.headers_mut().insert(header::SET_COOKIE, forget);
    }
    resp
}

/// The session cookie holding `token` for `max_age_s` seconds (0: forget
/// it), `Secure` over TLS.
fn cookie(token: &str, max_age_s: u32, secure: bool) -> String {
    let secure = if secure { "; Secure" } else { "" };
    format!("{COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age_s}{secure}")
}
