//! The pages a person lands on: `GET /` (what cardwire is, its version, where to go next, and
//! for a signed-in admin the queue and the connections), `GET /docs` (README, built in),
//! `GET /docs/<page>` (the reference pages of `src/docs/`, built in), and the 404 for a browser.
//!
//! In: a request for `/`, `/docs` or a page under it, or any path no route takes. Out: HTML pages, except that
//! API-like paths (`/api`, `/hooks`, `/metrics`, `/healthz`) and clients that do not ask for
//! HTML keep the JSON error body. Guarantees: counts and connections show only behind the admin
//! session; the pages carry `Referrer-Policy: no-referrer` like every other page.

use axum::extract::{FromRef, Path, State};
use axum::http::{header, HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use crate::admin::pages::Pages;
use crate::error::ApiError;
use crate::html::{esc, markdown_with, page};

/// README, as the binary was built with it.
const README: &str = include_str!("../../README.md");

/// The reference pages, as the binary was built with them: the name under `/docs/` (and the
/// file `src/docs/<name>.md`), and the text.
pub const PAGES: &[(&str, &str)] = &[
    ("configuration", include_str!("../docs/configuration.md")),
    ("rules", include_str!("../docs/rules.md")),
    ("noise", include_str!("../docs/noise.md")),
    ("templates", include_str!("../docs/templates.md")),
    ("connecting", include_str!("../docs/connecting.md")),
    ("delivery", include_str!("../docs/delivery.md")),
    ("instances", include_str!("../docs/instances.md")),
    ("operations", include_str!("../docs/operations.md")),
    ("metrics", include_str!("../docs/metrics.md")),
    ("cli", include_str!("../docs/cli.md")),
    ("development", include_str!("../docs/development.md")),
];

/// The routes `/` and `/docs`.
pub fn router<S>() -> Router<S>
where
    S: Clone + Send + Sync + 'static,
    Pages: FromRef<S>,
{
    Router::new().route("/", get(home_page)).merge(docs())
}

/// The routes `/docs` and `/docs/{page}`, which need no state.
pub fn docs<S>() -> Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    Router::new()
        .route("/docs", get(docs_page))
        .route("/docs/{page}", get(reference_page))
}

async fn home_page(State(app): State<Pages>, headers: HeaderMap) -> Response {
    let signed_in = app.sessions.csrf(&headers).is_some();
    let status = if signed_in {
        let c = app.store.counts();
        let connections = app.connections.all();
        let paused = connections.iter().filter(|c| c.paused).count();
        let broken = connections.iter().filter(|c| c.broken.is_some()).count();
        format!(
            "<h2>Now</h2><dl class=\"facts\" id=\"status\">\
             <dt>Queued</dt><dd id=\"queued\">{queued}</dd>\
             <dt>Retrying</dt><dd id=\"retrying\">{retrying}</dd>\
             <dt>Dead letters</dt><dd id=\"dead\">{dead}</dd>\
             <dt>Connections</dt><dd id=\"connections\">{all} ({paused} paused, {broken} broken)</dd></dl>\
             <form method=\"post\" action=\"/connections/logout\"><button class=\"secondary\">Sign out</button></form>",
            queued = c.queued - c.retrying.min(c.queued),
            retrying = c.retrying,
            dead = c.dead,
            all = connections.len(),
        )
    } else if app.config.admin_token.is_some() {
        "<h2>Now</h2><p class=\"muted\">Sign in with the admin token to see the queue and the connections.</p>\
         <form method=\"post\" action=\"/connections/login\"><input type=\"hidden\" name=\"next\" value=\"/\">\
         <label>Admin token <input type=\"password\" name=\"token\" id=\"token\" required></label>\
         <button type=\"submit\" id=\"login\">Sign in</button></form>"
            .to_string()
    } else {
        "<h2>Now</h2><p class=\"muted\">The admin pages are off: set <code>admin_token</code> in the config \
         (or start with <code>--admin-token</code>) to see the queue and the connections here.</p>"
            .to_string()
    };
    let body = format!(
        "<h1>cardwire <span class=\"muted\" id=\"version\">{version}</span></h1>\
         <p>A gateway that turns upstream webhooks (GitHub, GitLab, Alertmanager, any JSON) into chat \
         cards. Point webhooks at <code>{base}/hooks/&lt;source&gt;</code>; rules and templates say which \
         events matter and how they look.</p>\
         <nav><ul>\
         <li><a href=\"/connect\">Connect a channel</a></li>\
         <li><a href=\"/connections\">Connections</a>: pause, resume, remove</li>\
         <li><a href=\"/sources\">Sources</a>: a GitHub App or GitLab hooks, made with a button</li>\
         <li><a href=\"/playground\">Playground</a>: see, edit and send a card</li>\
         <li><a href=\"/metrics\">Metrics</a> (Prometheus) · <a href=\"/healthz\">health</a></li>\
         <li><a href=\"/docs\">Documentation</a> (README)</li>\
         </ul></nav>{status}",
        version = env!("CARGO_PKG_VERSION"),
        base = esc(&app.config.public_url()),
    );
    page(StatusCode::OK, "cardwire", &body)
}

async fn docs_page() -> Response {
    page(
        StatusCode::OK,
        "Documentation",
        &with_heading_ids(&doc_markdown(README, true)),
    )
}

async fn reference_page(Path(name): Path<String>, uri: Uri, headers: HeaderMap) -> Response {
    let name = name.strip_suffix(".md").unwrap_or(&name);
    match PAGES.iter().find(|(n, _)| *n == name) {
        Some((_, text)) => {
            let title = text
                .lines()
                .next()
                .and_then(|l| l.strip_prefix("# "))
                .unwrap_or(name);
            page(
                StatusCode::OK,
                title,
                &with_heading_ids(&doc_markdown(text, false)),
            )
        }
        None => not_found(uri, headers).await,
    }
}

/// The documentation's Markdown as HTML, its links made to work where it is served: a page's
/// link to another (`rules.md#dedup`, `src/docs/rules.md` from README) goes to `/docs/rules`,
/// README's to `/docs`; a link to a file of the source that is not served keeps its text and
/// loses its link (it works on a code host, not here). Raw HTML is shown as text.
fn doc_markdown(md: &str, from_readme: bool) -> String {
    markdown_with(md, pulldown_cmark::Options::ENABLE_TABLES, |dest| {
        doc_link(dest, from_readme)
    })
}

/// Where a documentation link goes when served (see [`doc_markdown`]); `None` for a file of
/// the source that is not served.
fn doc_link(dest: &str, from_readme: bool) -> Option<String> {
    if dest.starts_with('#')
        || dest.starts_with('/')
        || dest.starts_with("https://")
        || dest.starts_with("http://")
        || dest.starts_with("mailto:")
    {
        return Some(dest.to_string());
    }
    let (file, anchor) = match dest.split_once('#') {
        Some((f, a)) => (f, format!("#{a}")),
        None => (dest, String::new()),
    };
    let page = if from_readme {
        file.strip_prefix("src/docs/")
    } else if file == "../../README.md" {
        return Some(format!("/docs{anchor}"));
    } else if file == "README.md" {
        return Some("/docs#documentation".to_string());
    } else {
        Some(file)
    }?;
    let name = page.strip_suffix(".md")?;
    PAGES
        .iter()
        .any(|(n, _)| *n == name)
        .then(|| format!("/docs/{name}{anchor}"))
}

/// Gives each `<h2>`…`<h4>` the id GitHub gives it (lower case, spaces as `-`, other
/// punctuation dropped), so that README's own links (`#performance`) work on /docs.
fn with_heading_ids(html: &str) -> String {
    let mut out = String::with_capacity(html.len() + 512);
    let mut rest = html;
    while let Some(at) = rest.find("<h") {
        let level = rest[at + 2..].chars().next();
        let opens = matches!(level, Some('1'..='4')) && rest[at + 3..].starts_with('>');
        out.push_str(&rest[..at]);
        if !opens {
            out.push_str("<h");
            rest = &rest[at + 2..];
            continue;
        }
        let level = level.unwrap_or('2');
        let body_start = at + 4;
        let close = format!("</h{level}>");
        let Some(len) = rest[body_start..].find(&close) else {
            out.push_str(&rest[at..]);
            return out;
        };
        let inner = &rest[body_start..body_start + len];
        out.push_str(&format!("<h{level} id=\"{}\">{inner}{close}", slug(inner)));
        rest = &rest[body_start + len + close.len()..];
    }
    out.push_str(rest);
    out
}

/// GitHub's anchor for a heading's HTML: its text, lower case, spaces as `-`, letters, digits,
/// `-` and `_` kept.
fn slug(inner_html: &str) -> String {
    let mut text = String::new();
    let mut in_tag = false;
    for c in inner_html.chars() {
        match c {
            '<' => in_tag = true,
            '>' => in_tag = false,
            c if !in_tag => text.push(c),
            _ => {}
        }
    }
    let text = text
        .replace("&amp;", "&")
        .replace("&lt;", "<")
        .replace("&gt;", ">");
    text.trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}

/// Whether a request for an unknown path gets an HTML page rather than the JSON error: a
/// browser's request (it accepts `text/html`) for a path that is not part of an API.
pub fn wants_html(path: &str, accept: Option<&str>) -> bool {
    let api = ["/api", "/hooks", "/metrics", "/healthz"]
        .iter()
        .any(|p| path == *p || path.starts_with(&format!("{p}/")));
    !api && accept.is_some_and(|a| a.contains("text/html"))
}

/// The answer for a path no route takes.
pub async fn not_found(uri: Uri, headers: HeaderMap) -> Response {
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok());
    if wants_html(uri.path(), accept) {
        page(
            StatusCode::NOT_FOUND,
            "Not found",
            &format!(
                "<h1>Not found</h1><p class=\"muted\">cardwire has no page at <code>{}</code>.</p>\
                 <p><a href=\"/\" id=\"home\">Home</a></p>",
                esc(uri.path())
            ),
        )
    } else {
        ApiError::not_found("no such route").into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headings_get_the_ids_github_gives_them() {
        let html = crate::html::markdown("## Quick start (five minutes)\n\n### The playground: see, edit and send a card before it goes live\n\n#### `x` & y\n\ntext <h2>");
        let html = with_heading_ids(&html);
        assert!(
            html.contains("<h2 id=\"quick-start-five-minutes\">"),
            "{html}"
        );
        assert!(
            html.contains(
                "<h3 id=\"the-playground-see-edit-and-send-a-card-before-it-goes-live\">"
            ),
            "{html}"
        );
        assert!(html.contains("<h4 id=\"x--y\">"), "{html}");
    }

    #[test]
    fn documentation_links_go_where_the_pages_are_served() {
        assert_eq!(
            doc_link("src/docs/rules.md#dedup", true).as_deref(),
            Some("/docs/rules#dedup")
        );
        assert_eq!(
            doc_link("src/docs/cli.md", true).as_deref(),
            Some("/docs/cli")
        );
        assert_eq!(
            doc_link("rules.md#x", false).as_deref(),
            Some("/docs/rules#x")
        );
        assert_eq!(
            doc_link("../../README.md#performance", false).as_deref(),
            Some("/docs#performance")
        );
        assert_eq!(
            doc_link("README.md", false).as_deref(),
            Some("/docs#documentation")
        );
        assert_eq!(doc_link("#here", false).as_deref(), Some("#here"));
        assert_eq!(
            doc_link("https://example.com/a.md", false).as_deref(),
            Some("https://example.com/a.md")
        );
        // Files of the source that are not served, and pages that do not exist.
        assert_eq!(doc_link("examples/cardwire.yaml", true), None);
        assert_eq!(doc_link("../../examples/bench.rs", false), None);
        assert_eq!(doc_link("src/docs/nope.md", true), None);
        // Their text stays, without a link; raw HTML is text.
        let html = doc_markdown("[the example](examples/cardwire.yaml) <b>x</b>", true);
        assert!(html.contains("<em>the example</em>"), "{html}");
        assert!(html.contains("&lt;b&gt;"), "{html}");
        assert!(!html.contains("href"), "{html}");
    }

    #[test]
    fn browsers_get_html_and_apis_keep_json() {
        let html = Some("text/html,application/xhtml+xml,*/*;q=0.8");
        assert!(wants_html("/nope", html));
        assert!(wants_html("/connect/nope", html));
        assert!(!wants_html("/nope", Some("application/json")));
        assert!(!wants_html("/nope", None));
        assert!(!wants_html("/api/nope", html));
        assert!(!wants_html("/api", html));
        assert!(!wants_html("/hooks/x/y", html));
        assert!(wants_html("/apiary", html));
    }

    /// GETs `path` from `router` with axum's `oneshot`: the status, the content type, the body.
    async fn get(
        router: Router,
        path: String,
        accept: Option<&'static str>,
    ) -> (StatusCode, String, String) {
        use axum::body::Body;
        use axum::http::Request;
        use http_body_util::BodyExt;
        use tower::ServiceExt;
        let mut req = Request::builder().uri(path);
        if let Some(a) = accept {
            req = req.header("accept", a);
        }
        let res = router
            .oneshot(req.body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = res.status();
        let kind = res.headers()["content-type"].to_str().unwrap().to_string();
        let bytes = res.into_body().collect().await.unwrap().to_bytes();
        (status, kind, String::from_utf8_lossy(&bytes).into_owned())
    }

    /// The docs' routes through axum's `oneshot`: README at /docs, each page at /docs/<page>
    /// (and with `.md`), a browser's 404 for a page that does not exist.
    #[tokio::test]
    async fn the_docs_routes_serve_readme_and_every_page() {
        let html = Some("text/html");
        let get = |path: String| get(docs::<()>(), path, html);
        let (status, _, readme) = get("/docs".into()).await;
        assert_eq!(status, StatusCode::OK);
        assert!(
            readme.contains("<h2 id=\"quick-start-five-minutes\">"),
            "{readme}"
        );
        for (name, text) in PAGES {
            let title = text.lines().next().unwrap().trim_start_matches("# ");
            for path in [format!("/docs/{name}"), format!("/docs/{name}.md")] {
                let (status, _, html) = get(path.clone()).await;
                assert_eq!(status, StatusCode::OK, "{path}");
                assert!(
                    html.contains(&format!("<title>{title} · cardwire</title>")),
                    "{path}"
                );
                assert!(
                    html.contains("href=\"/docs\""),
                    "{path}: no way back to README"
                );
            }
        }
        let (status, _, html) = get("/docs/nope".into()).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert!(html.contains("Not found"), "{html}");
    }

    /// The fallback through axum's `oneshot`: a browser gets an HTML 404 with a way home, an
    /// API path or a client that does not ask for HTML the common JSON error.
    #[tokio::test]
    async fn unknown_paths_answer_html_to_browsers_and_json_to_the_rest() {
        let ask = |path: &str, accept| {
            get(
                Router::<()>::new().fallback(not_found),
                path.to_string(),
                accept,
            )
        };
        let html = Some("text/html,application/xhtml+xml,*/*;q=0.8");
        let (status, kind, body) = ask("/no/such/%3Cpage%3E", html).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert!(kind.starts_with("text/html"), "{kind}");
        assert!(body.contains("href=\"/\" id=\"home\""), "{body}");
        // The path is shown as it came, percent-encoded: nothing in it becomes markup.
        assert!(body.contains("<code>/no/such/%3Cpage%3E</code>"), "{body}");
        assert!(!body.contains("<page>"), "{body}");
        for (path, accept) in [("/api/nope", html), ("/nope", None), ("/hooks/x/y", html)] {
            let (status, kind, body) = ask(path, accept).await;
            assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
            assert!(kind.starts_with("application/json"), "{path}: {kind}");
            assert!(body.contains("\"error\":\"not_found\""), "{path}: {body}");
        }
    }
}
