//! The viewer's script and style sheet, compiled into the binary.

use axum::extract::Path;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

/// The one script of every page.
const SCRIPT: &str = include_str!("assets/viewer.js");
/// The style sheet.
const STYLE: &str = include_str!("assets/viewer.css");

/// `GET /assets/{file}`.
pub async fn serve(Path(file): Path<String>) -> Response {
    let (body, media_type) = match file.as_str() {
        "viewer.js" => (SCRIPT, "text/javascript; charset=utf-8"),
        "viewer.css" => (STYLE, "text/css; charset=utf-8"),
        _ => return (StatusCode::NOT_FOUND, "no such asset").into_response(),
    };
    (
        [
            (header::CONTENT_TYPE, media_type),
            // Assets change with the binary; a restart may bring new ones.
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

/// `GET /favicon.ico`: there is none (said plainly, not as an error).
pub async fn no_icon() -> StatusCode {
    StatusCode::NO_CONTENT
}
