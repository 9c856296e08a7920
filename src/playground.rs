//! The playground's JSON API (admin token): what a payload does, card by card, before it goes
//! live. The page that drives it is not built yet; scripts can use the API today.
//!
//! - `POST /api/render` `{"source", "headers"?, "payload", "rule"?, "template"?, "kind"?}` → the
//!   explanation for every rule of the source and, for each matching rule (or the one named) and
//!   each kind, `{rule, kind, template, body, valid, errors, bytes}`. With `template` (edited
//!   template text) and `rule`, that text is rendered for `kind` (default `teams`) instead of
//!   the loaded template; errors name the line and column.
//! - `POST /api/preview` `{"kind", "body"}` → `{"html"}`: the card as Teams lays it out
//!   (MessageCard sections, facts and actions; Adaptive Card texts and facts), Markdown rendered,
//!   HTML neutralized.
//! - `GET /api/events/recent` → the last 50 events received (headers without credentials), to
//!   replay in `/api/render`.

use std::collections::HashMap;

use axum::extract::State;
use axum::http::{HeaderMap, HeaderName, HeaderValue};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::admin::{Admin, JsonBody};
use crate::app::AppState;
use crate::error::ApiError;
use crate::render::{CardKind, RenderError, MAX_CARD_BYTES};

/// How many received events the ring keeps.
pub const RECENT: usize = 50;

/// The routes of the playground's API.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/render", post(render))
        .route("/api/preview", post(preview))
        .route("/api/events/recent", get(recent))
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
    State(app): State<AppState>,
    JsonBody(input): JsonBody<RenderIn>,
) -> Result<Json<Value>, ApiError> {
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
    let event = crate::ingest::verify::build_event(&input.source, source, &headers, input.payload)?;
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
            (None, _) => CardKind::ALL.to_vec(),
        };
        for kind in kinds {
            let rendered = match &input.template {
                Some(text) => pipeline.renderer.render_source(
                    &format!("{}.{} (edited)", rule.template, kind.as_str()),
                    text,
                    kind,
                    event.context(),
                ),
                None => pipeline
                    .renderer
                    .render(&rule.template, kind, event.context()),
            };
            cards.push(match rendered {
                Ok(body) => json!({
                    "rule": rule.name, "kind": kind, "template": rule.template,
                    "body": serde_json::from_str::<Value>(&body).unwrap_or(Value::Null),
                    "valid": true, "errors": [], "bytes": body.len(), "limit": MAX_CARD_BYTES,
                }),
                Err(e) => json!({
                    "rule": rule.name, "kind": kind, "template": rule.template,
                    "body": null, "valid": false, "errors": errors_of(&e), "bytes": null, "limit": MAX_CARD_BYTES,
                }),
            });
        }
    }
    Ok(Json(json!({
        "source": event.source,
        "event": event.event_type,
        "action": event.action,
        "rules": explanation,
        "cards": cards,
    })))
}

/// `POST /api/preview`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PreviewIn {
    /// The card kind.
    pub kind: CardKind,
    /// The card.
    pub body: Value,
}

async fn preview(_: Admin, JsonBody(input): JsonBody<PreviewIn>) -> Result<Json<Value>, ApiError> {
    let errors = crate::render::validate::validate(input.kind, &input.body)
        .err()
        .unwrap_or_default();
    let bytes = input.body.to_string().len();
    Ok(Json(json!({
        "html": crate::connect::emulator::render_card(&input.body),
        "valid": errors.is_empty(),
        "errors": errors,
        "bytes": bytes,
        "limit": MAX_CARD_BYTES,
    })))
}

async fn recent(_: Admin, State(app): State<AppState>) -> Result<Json<Value>, ApiError> {
    Ok(Json(
        json!({"events": app.store.recent().map_err(|e| ApiError::internal(&e))?}),
    ))
}
