//! The pages: server-rendered frames that name what they show (a run's id
//! in `data-run`) and load the one script, which draws the live parts.
//! Every text from a request is escaped here; the script sets text, never
//! HTML.

use axum::Extension;
use axum::extract::{Path, Request};
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::{Html, Response};

use super::session::Signed;

/// The pages' content security policy: this origin only, no inline script;
/// the report's frame is this origin too.
const CSP: &str = "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; frame-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'";

/// Adds the security headers to every response (the report's own policy,
/// stricter, is kept).
pub async fn security_headers(request: Request, next: Next) -> Response {
    let mut resp = next.run(request).await;
    let h = resp.headers_mut();
    if !h.contains_key(header::CONTENT_SECURITY_POLICY) {
        h.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CSP),
        );
        h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    }
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    resp
}

/// `text` safe in HTML text and attribute values.
fn escape(text: &str) -> String {
    ammonia::clean_text(text)
}

/// Who is signed in, and the way out; nothing when the API is open.
fn account(who: &Signed) -> String {
    match &who.0 {
        Some(p) => format!(
            r#"<span class="who" id="who">{}</span><form method="post" action="/logout" class="logout"><button type="submit">Sign out</button></form>"#,
            escape(&p.name)
        ),
        None => String::new(),
    }
}

/// A whole page: the navigation, `main`, and the script.
fn page(who: &Signed, title: &str, kind: &str, attrs: &str, main: &str) -> Html<String> {
    Html(format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title} · agentmesh</title><link rel="stylesheet" href="/assets/viewer.css"></head>
<body data-page="{kind}"{attrs}>
<header><a class="brand" href="/">agentmesh</a><nav><a href="/">Runs</a><a href="/agents">Agents</a></nav>
{account}</header>
<main>{main}</main>
<script src="/assets/viewer.js"></script>
</body></html>"#,
        title = escape(title),
        account = account(who),
    ))
}

/// `GET /`: the runs, a goal to start, filters.
pub async fn runs(Extension(who): Extension<Signed>) -> Html<String> {
    page(
        &who,
        "Runs",
        "runs",
        "",
        r#"<h1>Runs</h1>
<form id="start" class="card"><label for="goal">Start a run</label>
<textarea id="goal" name="goal" rows="2" placeholder="Generate a Q2 sales performance report with visualizations and an executive summary" required></textarea>
<button type="submit" id="start-button">Start</button><p class="error" id="start-error" hidden></p></form>
<div class="filters"><label>State <select id="state-filter">
<option value="">any</option><option>RUNNING</option><option>WAITING</option><option>COMPLETED</option><option>PARTIAL</option><option>FAILED</option><option>CANCELED</option><option>REJECTED</option><option>PENDING</option>
</select></label><label><input type="checkbox" id="waiting-filter"> waiting for me</label></div>
<table id="runs"><thead><tr><th>Run</th><th>Goal</th><th>State</th><th>Started</th><th>Waiting for</th></tr></thead><tbody></tbody></table>
<p class="note" id="runs-note"></p>"#,
    )
}

/// `GET /runs/{id}`: one run, live.
pub async fn run(Extension(who): Extension<Signed>, Path(run_id): Path<String>) -> Html<String> {
    page(
        &who,
        &format!("Run {run_id}"),
        "run",
        &format!(r#" data-run="{}""#, escape(&run_id)),
        r#"<h1><span id="run-goal">Run</span> <span class="badge" id="run-state">…</span></h1>
<p class="meta"><span id="run-id"></span> <span id="run-message"></span></p>
<div class="actions"><button type="button" id="cancel" disabled>Cancel run</button><a id="report-link" href="" hidden>Open the report</a></div>
<p class="error" id="run-error" hidden></p>
<section id="waiting" hidden><h2>Waiting for you</h2><div id="waits"></div></section>
<section><h2>Plan</h2><div id="graph"></div></section>
<section id="report-section" hidden><h2>Report</h2><iframe id="report" title="The run's report" sandbox></iframe></section>
<section><h2>Provenance</h2><table id="provenance"><thead><tr><th>Step</th><th>Agent</th><th>Version</th><th>Replica</th><th>Attempts</th><th>Took</th><th>Earlier replicas</th></tr></thead><tbody></tbody></table></section>
<section><h2>Events</h2><ol id="log"></ol></section>"#,
    )
}

/// `GET /agents`: the registry.
pub async fn agents(Extension(who): Extension<Signed>) -> Html<String> {
    page(
        &who,
        "Agents",
        "agents",
        "",
        r#"<h1>Agents</h1>
<table id="agents"><thead><tr><th>Agent</th><th>Version</th><th>Endpoint</th><th>Source</th><th>Health</th><th>Skills</th><th>Load</th><th>Error rate</th></tr></thead><tbody></tbody></table>
<h2>Queues</h2><table id="queues"><thead><tr><th>Skill</th><th>Steps waiting</th></tr></thead><tbody></tbody></table>"#,
    )
}

/// `GET /login`.
pub async fn login() -> Html<String> {
    login_page(None)
}

/// The sign-in page, with what went wrong.
pub fn login_page(problem: Option<&str>) -> Html<String> {
    let problem = problem
        .map(|p| format!(r#"<p class="error">{}</p>"#, escape(p)))
        .unwrap_or_default();
    Html(format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Sign in · agentmesh</title><link rel="stylesheet" href="/assets/viewer.css"></head>
<body data-page="login"><main><h1>agentmesh</h1>
<form method="post" action="/login" class="card"><label for="token">API token (the bearer token you give meshctl)</label>
<input type="password" id="token" name="token" autocomplete="current-password" required>
<button type="submit">Sign in</button>{problem}</form></main></body></html>"#
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_id_cannot_break_out_of_its_attribute() {
        let escaped = escape(r#""><script>x</script>"#);
        assert!(!escaped.contains(['"', '<', '>']), "{escaped}");
    }
}
