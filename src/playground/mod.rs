//! The playground: `/playground` (signed in on /connections) shows what a payload does, card by
//! card, before it goes live: pick a shipped fixture, a recent event or pasted JSON; see the rules
//! that match and why others do not; edit a template or a card and watch the preview, the
//! validation errors and the size as you type; send the card to a connection through the outbox.
//! MessageCards are laid out by [`crate::connect::emulator::render_card`] (Markdown through
//! pulldown-cmark, HTML neutralized); Adaptive Cards by Microsoft's `adaptivecards` renderer,
//! vendored under `assets/` with its MIT licence.
//!
//! The JSON API underneath (admin token, or the page's session and CSRF token):
//!
//! - `POST /api/render` `{"source", "headers"?, "payload", "rule"?, "template"?, "kind"?}` → the
//!   explanation for every rule of the source and, for each matching rule (or the one named) and
//!   each kind, `{rule, kind, template, body, valid, errors, bytes}`. With `template` (edited
//!   template text) and `rule`, that text is rendered for `kind` (default `teams`) instead of
//!   the loaded template; errors name the line and column.
//! - `POST /api/preview` `{"kind", "body"}` → `{"html", "valid", "errors", "bytes", "limit"}`:
//!   the card as Teams lays it out (MessageCard sections, facts and actions; Adaptive Card texts
//!   and facts), Markdown rendered, HTML neutralized; over 28 KB is an error. With the input of
//!   `/api/render` instead, every card it gives: `{"html", "cards": [{rule, kind, html, ...}]}`.
//! - `GET /api/events/recent` → the last 50 events received (headers without credentials), to
//!   replay in `/api/render`.
//! - `GET /api/samples` → the configured sources and the built-in sample payloads, each with the
//!   source that would receive it and the headers that name its event.
//! - `POST /api/send` `{"connection", "body"}` → 202 `{"delivery"}`: the card, validated for the
//!   connection's kind and size, queued in the outbox like any other; follow it with
//!   `GET /api/deliveries/{id}`. A paused or broken connection is refused (409).
//! - `PUT /api/templates` `{"template": "github/push", "kind": "teams", "text"}` → writes an
//!   existing template back to the templates folder and reloads (only with
//!   `playground.write: true` and templates on disk). A text the reload rejects is taken back
//!   and the answer is 422 with every problem as `file:line:col: message`.
//! - `GET /api/stream` → server-sent events, one per notice of the live tail
//!   ([`crate::live`]): `received`, `matched`, `queued`, `delivered`, `retrying`, `dead`, each
//!   with a JSON `data` line; `lagged` with the number missed when the listener fell behind.

use std::collections::HashMap;

use axum::extract::{FromRef, State};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::error::ApiError;
use crate::event::SourceKind;
use crate::gate::{Admin, JsonBody};
use crate::html as pages;
use crate::ids::{ConnectionId, EventId};
use crate::render::{CardKind, RenderError};
use crate::stage::Stager;
use crate::store::{now_ms, OutboxRecord};

/// What the playground reaches: all that staging does (its send stages an event), the
/// signed-in sessions (its page) and reloading (saving a template).
#[derive(Clone)]
pub struct Playground {
    /// What staging reaches.
    pub stage: Stager,
    /// Signed-in sessions.
    pub sessions: std::sync::Arc<crate::gate::Sessions>,
    /// Reloading, after a template is saved.
    pub reloader: crate::reload::Reloader,
}

impl std::ops::Deref for Playground {
    type Target = Stager;

    fn deref(&self) -> &Stager {
        &self.stage
    }
}

/// The routes of the playground's API.
pub fn router<S>() -> Router<S>
where
    S: Clone + Send + Sync + 'static,
    Playground: FromRef<S>,
    crate::gate::Gate: FromRef<S>,
{
    Router::new()
        .route("/api/render", post(render))
        .route("/api/preview", post(preview))
        .route("/api/events/recent", get(recent))
        .route("/api/samples", get(samples))
        .route("/api/send", post(send))
        .route("/api/stream", get(stream))
        .route("/api/templates", put(save_template))
        .route("/playground", get(page))
        .route(
            "/assets/playground.js",
            get(|| async { asset(PAGE_JS, "text/javascript; charset=utf-8") }),
        )
        .route(
            "/assets/adaptivecards.min.js",
            get(|| async { asset(AC_JS, "text/javascript; charset=utf-8") }),
        )
        .route(
            "/assets/adaptivecards.LICENSE.txt",
            get(|| async { asset(AC_LICENSE, "text/plain; charset=utf-8") }),
        )
}

const PAGE_JS: &str = include_str!("assets/playground.js");
const AC_JS: &str = include_str!("assets/adaptivecards.min.js");
const AC_LICENSE: &str = include_str!("assets/adaptivecards.LICENSE.txt");

fn asset(body: &'static str, ty: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, ty),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        body,
    )
        .into_response()
}

async fn page(State(app): State<Playground>, headers: HeaderMap) -> Response {
    let Some(csrf) = app.sessions.csrf(&headers) else {
        return crate::admin::pages::login_page(&app.config, None, "/playground");
    };
    pages::page(
        StatusCode::OK,
        "Playground",
        &format!(
            "<meta name=\"csrf\" content=\"{csrf}\">\
             <h1>Playground</h1>\
             <section class=\"pg-pick\">\
               <label>Event <select id=\"event\"></select></label>\
               <div id=\"pasted\" hidden><label>Source <select id=\"source\"></select></label>\
                 <label>Event header <input id=\"event-type\" placeholder=\"push\"></label>\
                 <textarea id=\"payload\" rows=\"8\" spellcheck=\"false\" placeholder=\"Paste the JSON payload\"></textarea></div>\
             </section>\
             <section><h2>Rules</h2><ul id=\"rules\"></ul></section>\
             <section class=\"pg-card\">\
               <label>Rule <select id=\"rule\"></select></label>\
               <label>Kind <select id=\"kind\"><option value=\"teams\">MessageCard (Office 365 connector)</option>\
                 <option value=\"workflow\">Adaptive Card (Teams Workflows)</option>\
                 <option value=\"slack\">Slack</option><option value=\"discord\">Discord</option>\
                 <option value=\"google_chat\">Google Chat</option><option value=\"mattermost\">Mattermost</option></select></label>\
               <h2>Template <span id=\"template-name\" class=\"muted\"></span></h2>\
               <textarea id=\"template\" rows=\"14\" spellcheck=\"false\"></textarea>\
               <p><button type=\"button\" id=\"save\" disabled>Save template</button> <span id=\"saved\" class=\"muted\"></span></p>\
               <h2>Card JSON <span id=\"size\" class=\"muted\"></span></h2>\
               <textarea id=\"card\" rows=\"14\" spellcheck=\"false\"></textarea>\
               <ul id=\"errors\" class=\"error\"></ul>\
               <p id=\"subject\" class=\"muted\"></p>\
               <h2>Preview</h2><div id=\"preview\" class=\"preview\"></div>\
               <p><label>Send to <select id=\"connection\"></select></label>\
                 <button type=\"button\" id=\"send\">Send</button> <span id=\"outcome\"></span></p>\
             </section>\
             <section><h2>Live</h2><ol id=\"live\" class=\"live\" reversed></ol></section>\
             <p class=\"muted\">Adaptive Card previews by Microsoft's <a href=\"/assets/adaptivecards.LICENSE.txt\">adaptivecards</a> renderer.</p>\
             <script src=\"/assets/adaptivecards.min.js\"></script><script src=\"/assets/playground.js\"></script>"
        ),
    )
}

async fn stream(
    _: Admin,
    State(app): State<Playground>,
) -> Sse<impl futures_util::Stream<Item = Result<SseEvent, std::convert::Infallible>>> {
    use tokio::sync::broadcast::error::RecvError;
    let rx = app.live.subscribe();
    let live = app.live.clone();
    drop(app);
    let notices = futures_util::stream::unfold(rx, |mut rx| async move {
        let event = match rx.recv().await {
            Ok(n) => SseEvent::default().event(n.0).data(&n.1),
            Err(RecvError::Lagged(missed)) => {
                SseEvent::default().event("lagged").data(missed.to_string())
            }
            Err(RecvError::Closed) => return None,
        };
        Some((Ok(event), rx))
    });
    // The stream ends when the server stops, so shutdown does not wait for the listener.
    let until = Box::pin(async move { live.closed().await });
    Sse::new(futures_util::StreamExt::take_until(notices, until)).keep_alive(KeepAlive::default())
}

/// `PUT /api/templates`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SaveIn {
    /// The template's name, e.g. `github/push`.
    pub template: String,
    /// Which of its two files.
    pub kind: CardKind,
    /// The new text.
    pub text: String,
}

async fn save_template(
    _: Admin,
    State(app): State<Playground>,
    JsonBody(input): JsonBody<SaveIn>,
) -> Result<Json<Value>, ApiError> {
    if !app.config.playground.write {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "read_only",
            "saving templates is off: set playground.write: true in the config",
        ));
    }
    let pipeline = app.pipeline.load_full();
    let crate::pipeline::Origin::Dir(root) = &pipeline.templates_origin else {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "built_in_templates",
            "the templates in force are built into the binary: set templates_dir (or create ./templates) to edit them",
        ));
    };
    // Only a template that exists: its name comes from a file under the folder, never a path
    // the request makes up.
    if pipeline
        .renderer
        .source(&input.template, input.kind)
        .is_none()
    {
        return Err(ApiError::not_found(format!(
            "no template {:?} of kind {}",
            input.template,
            input.kind.as_str()
        )));
    }
    // The file that renders this kind: the kind's own, the portable one, or the MessageCard
    // template the other chats read.
    let file = pipeline
        .renderer
        .file_for(&input.template, input.kind)
        .unwrap_or_else(|| format!("{}.{}.hbs", input.template, input.kind.as_str()));
    let path = root.join(&file);
    let before = std::fs::read(&path).map_err(|e| io_error("read", &path, &e))?;
    write_atomically(&path, input.text.as_bytes())?;
    if crate::reload::reload(&app.reloader).await {
        tracing::info!(template = %file, "template saved from the playground");
        return Ok(Json(
            json!({"saved": path.display().to_string(), "reloaded": true}),
        ));
    }
    // Rejected: put the file back as it was, so the folder matches what runs.
    let errors = app
        .reloader
        .last_rejected
        .load_full()
        .map(|r| r.errors.clone())
        .unwrap_or_default();
    write_atomically(&path, &before)?;
    Err(ApiError::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        "template_rejected",
        format!("the template was not saved: {}", errors.join("; ")),
    ))
}

/// Which file a card's template is, and what Save writes: the kind's own override, or the
/// portable template (or the MessageCard one) that every kind without an override reads.
fn template_file(renderer: &crate::render::Renderer, name: &str, kind: CardKind) -> Value {
    let Some(file) = renderer.file_for(name, kind) else {
        return Value::Null;
    };
    let writes = match renderer.how(name, kind) {
        Some("its own template") => {
            format!("Save writes {file}: the {} override only", kind.as_str())
        }
        Some(how) => {
            format!("Save writes {file}: {how}, for every kind without an override of its own")
        }
        None => String::new(),
    };
    json!({"file": format!("templates/{file}"), "save": writes})
}

fn io_error(what: &str, path: &std::path::Path, e: &std::io::Error) -> ApiError {
    tracing::error!(path = %path.display(), error = %e, "cannot {what} a template");
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "io",
        format!("cannot {what} {}: {e}", path.display()),
    )
}

/// Writes through a hidden file next to `path` (which the loader skips) and a rename, so the
/// reload never reads half a template.
fn write_atomically(path: &std::path::Path, bytes: &[u8]) -> Result<(), ApiError> {
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("template");
    let tmp = path.with_file_name(format!(".{name}.saving"));
    std::fs::write(&tmp, bytes)
        .and_then(|()| std::fs::rename(&tmp, path))
        .map_err(|e| io_error("write", path, &e))
}

async fn samples(_: Admin, State(app): State<Playground>) -> Json<Value> {
    let sources: Vec<Value> = app
        .config
        .sources
        .iter()
        .map(|(name, s)| json!({"name": name, "kind": s.kind.as_str()}))
        .collect();
    let samples: Vec<Value> = crate::samples::all()
        .into_iter()
        .filter_map(|s| {
            let (source, _) = app.config.sources.iter().find(|(_, c)| c.kind == s.kind)?;
            let headers = match s.kind {
                SourceKind::Github => json!({"X-GitHub-Event": s.event}),
                SourceKind::Gitlab => json!({"X-Gitlab-Event": s.event}),
                _ => json!({}),
            };
            Some(json!({"name": s.name, "source": source, "event": s.event, "headers": headers, "payload": s.payload}))
        })
        .collect();
    Json(json!({"sources": sources, "samples": samples, "write": app.config.playground.write}))
}

/// `POST /api/send`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SendIn {
    /// The connection (`con_…`).
    pub connection: String,
    /// The card, in the connection's kind.
    pub body: Value,
}

async fn send(
    _: Admin,
    State(app): State<Playground>,
    JsonBody(input): JsonBody<SendIn>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let con = ConnectionId::parse(&input.connection)
        .and_then(|id| app.connections.get(&id))
        .ok_or_else(|| ApiError::not_found(format!("no connection {:?}", input.connection)))?;
    if con.paused || con.broken.is_some() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "connection_not_sending",
            format!(
                "{} is {}: resume or fix it on /connections first",
                con.id,
                if con.paused { "paused" } else { "broken" }
            ),
        ));
    }
    if let Err(errors) = crate::render::validate::validate(con.kind, &input.body) {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_card",
            format!(
                "not a valid {} card for this connection: {}",
                con.kind.as_str(),
                errors.join("; ")
            ),
        ));
    }
    let body = input.body.to_string();
    if body.len() > con.kind.max_bytes() {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "card_too_large",
            format!(
                "the card is {} bytes; the limit is {}",
                body.len(),
                con.kind.max_bytes()
            ),
        ));
    }
    let record = OutboxRecord::new(
        EventId::new(),
        con.id.clone(),
        "playground",
        con.kind,
        body,
        now_ms(),
    );
    app.store
        .enqueue(&record)
        .map_err(|e| ApiError::internal(&e))?;
    app.store
        .commit()
        .await
        .map_err(|e| ApiError::internal(&e))?;
    app.live.emit(
        "queued",
        json!({"type": "queued", "event": record.event, "rule": record.rule,
               "delivery": record.id, "connection": con.id}),
    );
    app.deliverer.wake(&con.id);
    Ok((StatusCode::ACCEPTED, Json(json!({"delivery": record.id}))))
}

/// `POST /api/render`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RenderIn {
    /// A configured source.
    pub source: String,
    /// The request headers the upstream would send (e.g. `X-GitHub-Event`).
    #[serde(default)]
    pub headers: HashMap<String, String>,
    /// The payload.
    pub payload: Value,
    /// Only this rule.
    #[serde(default)]
    pub rule: Option<String>,
    /// Edited template text to render instead of the rule's template (needs `rule`).
    #[serde(default)]
    pub template: Option<String>,
    /// The kind the edited template is for (default `teams`).
    #[serde(default)]
    pub kind: Option<CardKind>,
}

fn errors_of(e: &RenderError) -> Vec<Value> {
    match e {
        RenderError::Template { pos, message, .. } => {
            vec![json!({"message": message, "line": pos.map(|p| p.0), "column": pos.map(|p| p.1)})]
        }
        RenderError::Json { source, .. } => vec![json!({
            "message": format!("the rendered card is not JSON: {source}"),
            "output_line": source.line(), "output_column": source.column(),
        })],
        other => vec![json!({"message": other.to_string()})],
    }
}

async fn render(
    _: Admin,
    State(app): State<Playground>,
    JsonBody(input): JsonBody<RenderIn>,
) -> Result<Json<Value>, ApiError> {
    render_value(&app, input).map(Json)
}

/// What `/api/render` answers.
fn render_value(app: &Stager, input: RenderIn) -> Result<Value, ApiError> {
    let source = app.config.sources.get(&input.source).ok_or_else(|| {
        ApiError::bad_request(
            "unknown_source",
            format!("no source named {:?}", input.source),
        )
    })?;
    if input.template.is_some() && input.rule.is_none() {
        return Err(ApiError::bad_request(
            "invalid_body",
            "an edited `template` needs the `rule` it is for",
        ));
    }
    let mut headers = HeaderMap::new();
    for (k, v) in &input.headers {
        let name = HeaderName::from_bytes(k.as_bytes()).map_err(|_| {
            ApiError::bad_request("invalid_body", format!("{k:?} is not a header name"))
        })?;
        let value = HeaderValue::from_str(v).map_err(|_| {
            ApiError::bad_request(
                "invalid_body",
                format!("the value of {k} is not a header value"),
            )
        })?;
        headers.insert(name, value);
    }
    let event = crate::ingest::verify::Verified::trusted(&input.source, source, &headers)
        .event(input.payload)?;
    let pipeline = app.pipeline.load();
    if let Some(r) = &input.rule {
        if !pipeline.rules.rules().iter().any(|x| &x.name == r) {
            return Err(ApiError::bad_request(
                "unknown_rule",
                format!("no rule named {r:?}"),
            ));
        }
    }
    let explanation = pipeline.rules.explain(&event);
    let mut cards = Vec::new();
    for rule in pipeline.rules.rules().iter().filter(|r| match &input.rule {
        Some(name) => &r.name == name,
        None => explanation.iter().any(|e| e.matched && e.rule == r.name),
    }) {
        let kinds: Vec<CardKind> = match (&input.template, input.kind) {
            (Some(_), k) => vec![k.unwrap_or(CardKind::Teams)],
            (None, _) => CardKind::ALL
                .into_iter()
                .filter(|k| pipeline.renderer.has(&rule.template, *k))
                .collect(),
        };
        for kind in kinds {
            let rendered = match &input.template {
                Some(text) => pipeline.renderer.render_source(
                    &rule.template,
                    &format!("{}.{} (edited)", rule.template, kind.as_str()),
                    text,
                    kind,
                    event.context(),
                ),
                None => pipeline.renderer.render_card_with(
                    &rule.template,
                    kind,
                    event.template_context(),
                ),
            };
            cards.push(match rendered {
                Ok(r) => json!({
                    "rule": rule.name, "kind": kind, "template": rule.template,
                    "template_source": pipeline.renderer.source(&rule.template, kind),
                    "template_file": template_file(&pipeline.renderer, &rule.template, kind),
                    "body": serde_json::from_str::<Value>(&r.body).unwrap_or(Value::Null),
                    "valid": true, "errors": [], "bytes": r.body.len(), "limit": kind.max_bytes(),
                    "subject": subject_of(kind, rule.update, r.subject.as_ref()),
                }),
                Err(e) => json!({
                    "rule": rule.name, "kind": kind, "template": rule.template,
                    "template_source": pipeline.renderer.source(&rule.template, kind),
                    "template_file": template_file(&pipeline.renderer, &rule.template, kind),
                    "body": null, "valid": false, "errors": errors_of(&e), "bytes": null, "limit": kind.max_bytes(),
                }),
            });
        }
    }
    Ok(json!({
        "source": event.source,
        "event": event.event_type,
        "action": event.action,
        "rules": explanation,
        "cards": cards,
    }))
}

/// What a card's key makes of a later card of its subject on `kind`: `null` without a key.
fn subject_of(
    kind: CardKind,
    rule: Option<crate::render::Update>,
    subject: Option<&(String, crate::render::Update)>,
) -> Value {
    let Some((key, update)) = subject else {
        return Value::Null;
    };
    let update = rule.unwrap_or(*update);
    json!({
        "key": key,
        "update": update.as_str(),
        "effect": crate::deliver::updates::update_effect(kind, update),
    })
}

/// `POST /api/preview` with a card (or, instead, the input of `/api/render`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PreviewIn {
    /// The card kind.
    pub kind: CardKind,
    /// The card.
    pub body: Value,
}

async fn preview(
    _: Admin,
    State(app): State<Playground>,
    JsonBody(input): JsonBody<Value>,
) -> Result<Json<Value>, ApiError> {
    let invalid = |e: serde_json::Error| ApiError::bad_request("invalid_body", e.to_string());
    if input.get("body").is_some() {
        let card: PreviewIn = serde_json::from_value(input).map_err(invalid)?;
        return Ok(Json(preview_card(card.kind, &card.body)));
    }
    // The input of /api/render: every card it gives, laid out one after the other.
    let rendered = render_value(&app, serde_json::from_value(input).map_err(invalid)?)?;
    let mut html = String::new();
    let mut cards = Vec::new();
    for c in rendered["cards"].as_array().into_iter().flatten() {
        let mut p = match c["body"].is_null() {
            true => json!({"html": "", "valid": false, "errors": c["errors"]}),
            false => preview_card(
                serde_json::from_value(c["kind"].clone()).map_err(invalid)?,
                &c["body"],
            ),
        };
        html.push_str(&format!(
            "<section data-rule=\"{}\" data-kind=\"{}\">{}</section>",
            pages::esc(c["rule"].as_str().unwrap_or_default()),
            pages::esc(c["kind"].as_str().unwrap_or_default()),
            p["html"].as_str().unwrap_or_default()
        ));
        p["rule"] = c["rule"].clone();
        p["kind"] = c["kind"].clone();
        cards.push(p);
    }
    Ok(Json(json!({"html": html, "cards": cards})))
}

/// A card's preview fragment, its validation and its size against the limit.
fn preview_card(kind: CardKind, body: &Value) -> Value {
    let mut errors = crate::render::validate::validate(kind, body)
        .err()
        .unwrap_or_default();
    let bytes = body.to_string().len();
    let limit = kind.max_bytes();
    if bytes > limit {
        errors.push(format!(
            "the card is {bytes} bytes; {} takes at most {limit}",
            kind.as_str()
        ));
    }
    json!({
        "html": crate::connect::emulator::render_card_of(kind, body),
        "valid": errors.is_empty(),
        "errors": errors,
        "bytes": bytes,
        "limit": limit,
    })
}

async fn recent(_: Admin, State(app): State<Playground>) -> Result<Json<Value>, ApiError> {
    Ok(Json(
        json!({"events": app.store.recent().map_err(|e| ApiError::internal(&e))?}),
    ))
}
