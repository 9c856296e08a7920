//! Ingest: `POST /hooks/{source}` — read, verify, parse once, match, render, persist, 202.
//!
//! The parse builds only the members that the rules for the event's type and their templates
//! read (see [`crate::needs`]); the bytes go to the playground's ring as they came.
//!
//! In: an upstream's request. Out: outbox records for every (matching rule × connection), and
//! `202 {"id": "evt_…"}` only after they are durable (group commit). Errors are 4xx with the
//! common JSON body: 404 unknown source, 413 body over the limit, 401 bad credentials, 400 bad
//! JSON. A repeated upstream delivery id is answered with the first id and queues nothing.
//!
//! A generic source also takes `application/x-ndjson`: one event per line, each processed as
//! it arrives, memory bounded by the longest line whatever the body's size; a bad line is
//! reported and does not reject the good ones.

pub mod verify;

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use serde_json::{json, Value};

use crate::admin::Admin;
use crate::app::{App, AppState};
use crate::config::RenderErrors;
use crate::error::ApiError;
use crate::event::Event;
use crate::event::SourceKind;
use crate::ids::{ConnectionId, DeliveryId, EventId};
use crate::noise::Decision;
use crate::pipeline::Pipeline;
use crate::render::fallback::Fallback;
use crate::render::{CardKind, RenderError};
use crate::store::{now_ms, DeadLetter, OutboxRecord, RenderFailure, StoreError};
use verify::Unverified;

/// The routes under /hooks.
pub fn router() -> Router<AppState> {
    Router::new().route("/hooks/{source}", post(receive_hook))
}

async fn receive_hook(
    state: State<AppState>,
    path: Path<String>,
    query: RawQuery,
    admin: Result<Admin, ApiError>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let app = state.0.clone();
    let source = path.0.clone();
    let result = handle_hook(state, path, query, admin, headers, body).await;
    match &result {
        Ok(_) => app.metrics.event(&source, "accepted", ""),
        Err(e) => app.metrics.event(&source, "rejected", e.code),
    }
    result
}

async fn handle_hook(
    State(app): State<AppState>,
    Path(name): Path<String>,
    RawQuery(query): RawQuery,
    admin: Result<Admin, ApiError>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let Some(source) = app.config.sources.get(&name) else {
        return Err(ApiError::not_found(format!(
            "no source named {name:?} is configured"
        )));
    };
    // `?explain=1`: answer with the rules' explanation instead of queueing (admin only).
    let explain = url::form_urlencoded::parse(query.unwrap_or_default().as_bytes())
        .any(|(k, v)| k == "explain" && !matches!(v.as_ref(), "0" | "false"));
    if explain {
        admin?;
        let bytes = read_limited(body, &headers, app.config.max_body).await?;
        let payload: Value = serde_json::from_slice(&bytes).map_err(|e| {
            ApiError::bad_request("invalid_json", format!("the body is not JSON: {e}"))
        })?;
        // The admin token stands in for the source's credentials here: nothing is queued.
        let event = verify::build_event(&name, source, &headers, payload)?;
        let rules = app.pipeline.load().rules.explain(&event);
        return Ok(Json(json!({
            "source": event.source,
            "event": event.event_type,
            "action": event.action,
            "rules": rules,
        }))
        .into_response());
    }
    let queued = app.store.queued();
    if queued >= app.config.delivery.max_queued {
        // Refuse what cannot be kept; GitHub and GitLab deliver again later.
        let mut e = ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "queue_full",
            format!(
                "{queued} cards are waiting for delivery (delivery.max_queued); try again later"
            ),
        );
        e.retry_after = Some(30);
        return Err(e);
    }
    let limit = app.config.max_body;
    let ndjson = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-ndjson"));
    let unverified = Unverified::new(&name, source, &headers);
    if ndjson && source.kind == SourceKind::Generic {
        if unverified.needs_body() {
            // A signature covers the whole body: read it (within the limit), check, then split.
            let bytes = read_limited(body, &headers, limit).await?;
            let verified = unverified.verify(&bytes)?;
            let stream = futures_util::stream::iter([Ok::<_, axum::Error>(bytes)]);
            return receive_lines(&app, stream, |v| verified.event(v), limit).await;
        }
        let verified = unverified.verify_streaming()?;
        return receive_lines(&app, body.into_data_stream(), |v| verified.event(v), limit).await;
    }
    let bytes = read_limited(body, &headers, limit).await?;
    let verified = unverified.verify(&bytes)?;
    // Only what the rules for this event type and their templates read is built (the ring
    // keeps the bytes for people), and the same rules and templates take the event even if a
    // reload lands meanwhile.
    let pipeline = app.pipeline.load_full();
    let projection = pipeline
        .needs
        .projection(&name, verify::event_type_hint(source, &headers).as_deref());
    let payload = projection
        .parse(&bytes)
        .map_err(|e| ApiError::bad_request("invalid_json", format!("the body is not JSON: {e}")))?;
    let mut event = verified.event(payload)?;
    event.raw = Some(bytes);
    let id = accept(&app, &pipeline, event).await?;
    Ok((StatusCode::ACCEPTED, Json(json!({"id": id}))).into_response())
}

fn too_large(limit: u64) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "body_too_large",
        format!("the body is over the {limit}-byte limit (max_body)"),
    )
}

/// Reads the whole body, refusing more than `limit` bytes (early when Content-Length says so).
async fn read_limited(body: Body, headers: &HeaderMap, limit: u64) -> Result<Bytes, ApiError> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(too_large(limit));
    }
    axum::body::to_bytes(body, limit as usize)
        .await
        .map_err(|e| {
            let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&e);
            while let Some(s) = source {
                if s.is::<http_body_util::LengthLimitError>() {
                    return too_large(limit);
                }
                source = s.source();
            }
            ApiError::bad_request(
                "unreadable_body",
                format!("the body could not be read: {e}"),
            )
        })
}

/// Accepts one event: stage it with `pipeline`'s rules and templates, make it durable, wake
/// delivery. Returns its id (the first id when the upstream delivery was seen before).
pub async fn accept(app: &App, pipeline: &Pipeline, event: Event) -> Result<EventId, ApiError> {
    let staged = stage(app, pipeline, &event).map_err(|e| ApiError::internal(&e))?;
    if let Err(e) = app.store.commit().await {
        if let Some(key) = &event.delivery_key {
            let _ = app.store.release_delivery(key);
        }
        return Err(ApiError::internal(&e));
    }
    wake(app, &staged.wake);
    announce(app, staged.news);
    Ok(staged.id)
}

/// What staging an event did.
pub struct Staged {
    /// The event's id (the first one, for a repeated delivery).
    pub id: EventId,
    /// Connections that got cards.
    pub wake: Vec<ConnectionId>,
    /// Notices for the live tail, sent once the event is durable (empty when nobody listens).
    pub news: Vec<(&'static str, Value)>,
}

/// Keeps the event in the playground's ring of recent events (the request's bytes when
/// ingest has them: no copy of the payload).
fn keep_recent(app: &App, event: &Event) {
    use crate::store::recent::{RecentEvent, RecentPayload};
    app.store.put_recent(RecentEvent {
        id: event.id.clone(),
        source: event.source.clone(),
        event: event.event_type.clone(),
        headers: event.headers.clone(),
        payload: match &event.raw {
            Some(raw) => RecentPayload::Raw(raw.clone()),
            None => RecentPayload::Value(event.payload().clone()),
        },
        received_ms: now_ms(),
    });
}

fn announce(app: &App, news: Vec<(&'static str, Value)>) {
    for (kind, notice) in news {
        app.live.emit(kind, notice);
    }
}

fn wake(app: &App, cons: &[ConnectionId]) {
    for c in cons {
        app.deliverer.wake(c);
    }
}

/// Claims the delivery id, matches rules, renders and queues cards — everything but the
/// commit. A card that fails to render becomes a dead letter with the reason.
pub fn stage(app: &App, pipeline: &Pipeline, event: &Event) -> Result<Staged, StoreError> {
    if let Some(key) = &event.delivery_key {
        if let Some(first) = app.store.claim_delivery(key, &event.id)? {
            tracing::info!(source = %event.source, delivery = %key, event = %first, "repeated delivery; already accepted");
            return Ok(Staged {
                id: first,
                wake: Vec::new(),
                news: Vec::new(),
            });
        }
    }
    keep_recent(app, event);
    let mut news = Vec::new();
    if app.live.listening() {
        news.push((
            "received",
            json!({"type": "received", "event": event.id, "source": event.source,
                   "event_type": event.event_type, "action": event.action}),
        ));
    }
    let result = queue_cards(app, pipeline, event, &mut news);
    if result.is_err() {
        if let Some(key) = &event.delivery_key {
            let _ = app.store.release_delivery(key);
        }
    }
    result.map(|wake| Staged {
        id: event.id.clone(),
        wake,
        news,
    })
}

fn queue_cards(
    app: &App,
    pipeline: &Pipeline,
    event: &Event,
    news: &mut Vec<(&'static str, Value)>,
) -> Result<Vec<ConnectionId>, StoreError> {
    let rules = pipeline.rules.matches(event);
    let mut wake = Vec::new();
    if rules.is_empty() {
        tracing::debug!(source = %event.source, event_type = %event.event_type, event = %event.id, "no rule matched");
        return Ok(wake);
    }
    let connections = app.connections.all();
    let ctx = event.template_context();
    let listening = app.live.listening();
    for rule in rules {
        if listening {
            news.push((
                "matched",
                json!({"type": "matched", "event": event.id, "rule": rule.name}),
            ));
        }
        // Noise control, once per event and rule: a repeat is dropped; over the limit, the
        // event is folded for every connection below.
        if let Some(d) = &rule.dedup {
            match pipeline.renderer.render_expr(&d.key, ctx) {
                Ok(key) => {
                    if app.noise.is_duplicate(rule, &key, d.window)? {
                        app.metrics.deduped(&rule.name);
                        tracing::debug!(rule = %rule.name, key = %key, "repeat dropped by dedup");
                        continue;
                    }
                }
                Err(e) => {
                    tracing::warn!(rule = %rule.name, error = %e, "dedup key did not render; not deduplicated")
                }
            }
        }
        let limited = rule.limit.as_ref().and_then(|l| {
            let per = match &l.per {
                Some(expr) => pipeline.renderer.render_expr(expr, ctx).unwrap_or_default(),
                None => String::new(),
            };
            app.noise
                .limit_allows(rule, l, &per)
                .err()
                .map(|due| (per, due))
        });
        let mut bodies: [Option<Carded>; 2] = [None, None];
        for conn in connections
            .iter()
            .filter(|c| c.channels.is_empty() || c.channels.contains(&rule.channel))
        {
            if conn.paused {
                app.connections.count_skip(&conn.id);
                continue;
            }
            let slot = &mut bodies[conn.kind as usize];
            let body = slot.get_or_insert_with(|| {
                match pipeline
                    .renderer
                    .render_with(&rule.template, conn.kind, ctx)
                {
                    Ok(b) => {
                        app.metrics.card(&rule.name, true);
                        Carded::Card(Arc::from(b))
                    }
                    Err(e) => card_without_template(app, rule, event, conn.kind, &e),
                }
            });
            let (text, fallback) = match &*body {
                Carded::Card(b) => (b.to_string(), None),
                Carded::Fallback(b, f) => (b.to_string(), Some(f.clone())),
                Carded::Failed(_) => (String::new(), None),
            };
            let record = OutboxRecord {
                id: DeliveryId::new(),
                event: event.id.clone(),
                connection: conn.id.clone(),
                rule: rule.name.clone(),
                kind: conn.kind,
                body: text,
                attempts: 0,
                not_before_ms: 0,
                created_ms: now_ms(),
                last_error: None,
                attempt_log: Vec::new(),
                fallback,
            };
            if let Some(why) = &conn.broken {
                // Kept, not sent: retrying the connection's dead letters sends it once fixed.
                app.store.put_dead(&DeadLetter {
                    record,
                    reason: format!("connection broken: {why}"),
                    dead_ms: now_ms(),
                })?;
                continue;
            }
            match body {
                Carded::Card(_) | Carded::Fallback(..) => {
                    let item = || {
                        // The summary or digest names the card by its MessageCard title and link.
                        let teams = match conn.kind {
                            CardKind::Teams => Some(record.body.clone()),
                            CardKind::Workflow => pipeline
                                .renderer
                                .render_with(&rule.template, CardKind::Teams, ctx)
                                .ok(),
                        };
                        crate::noise::item_of(rule, event, teams.as_deref(), app.noise.now_ms())
                    };
                    match app.noise.decide(rule, conn, limited.clone(), item)? {
                        Decision::Send => {
                            app.store.enqueue(&record)?;
                            wake.push(conn.id.clone());
                            if listening {
                                let mut note = json!({"type": "queued", "event": event.id, "rule": rule.name,
                                           "delivery": record.id, "connection": conn.id});
                                if let Some(f) = &record.fallback {
                                    note["fallback"] = json!(f);
                                }
                                news.push(("queued", note));
                            }
                        }
                        Decision::Folded => app.metrics.folded(&rule.name),
                        Decision::Digested => {}
                    }
                }
                Carded::Failed(why) => {
                    app.store.put_dead(&DeadLetter {
                        record,
                        reason: format!("render: {why}"),
                        dead_ms: now_ms(),
                    })?;
                }
            }
        }
    }
    Ok(wake)
}

/// A rule's card of one kind for an event, rendered once for every connection of that kind.
enum Carded {
    /// The template's card.
    Card(Arc<str>),
    /// The template failed; a card built without it goes instead (`render_errors: fallback`).
    Fallback(Arc<str>, RenderFailure),
    /// The template failed and nothing goes (`render_errors: dead_letter`): why.
    Failed(String),
}

/// What a connection gets when the rule's template fails on the event: a fallback card, or
/// nothing (kept as a dead letter), as `render_errors` says. Counted, and logged once per
/// template and reason.
fn card_without_template(
    app: &App,
    rule: &crate::rules::Rule,
    event: &Event,
    kind: CardKind,
    e: &RenderError,
) -> Carded {
    let (template, pos, reason) = e.parts();
    let fallback = app.config.render_errors == RenderErrors::Fallback;
    if app.render_failures.first(&template, &reason) {
        tracing::error!(rule = %rule.name, template = %template, line = pos.map(|p| p.0), column = pos.map(|p| p.1),
            reason = %reason, event = %event.id,
            "a template failed; {} (logged once per template and reason)",
            if fallback { "a card built without it goes instead" } else { "the card is kept as a dead letter" });
    }
    if !fallback {
        app.metrics.card(&rule.name, false);
        return Carded::Failed(e.to_string());
    }
    app.metrics.card_fallback(&rule.name);
    let card = Fallback::from_payload(
        &event.source,
        &event.event_type,
        event.action.as_deref(),
        event.payload(),
        e.to_string(),
    )
    .card(kind);
    Carded::Fallback(
        Arc::from(card),
        RenderFailure {
            template,
            line: pos.map(|p| p.0),
            column: pos.map(|p| p.1),
            reason,
        },
    )
}

/// The (template, reason) pairs already logged: a template that fails on every event is
/// logged once, not per event.
#[derive(Default)]
pub struct RenderFailures(std::sync::Mutex<std::collections::HashSet<(String, String)>>);

impl RenderFailures {
    /// Whether this failure is new (and now remembered).
    pub fn first(&self, template: &str, reason: &str) -> bool {
        let mut seen = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        seen.insert((template.to_string(), reason.to_string()))
    }
}

/// What an NDJSON body has produced so far.
struct Lines<'a, F> {
    app: &'a App,
    to_event: F,
    ids: Vec<EventId>,
    errors: Vec<Value>,
    /// Connections with cards staged since the last commit.
    wake: Vec<ConnectionId>,
    /// Live-tail notices staged since the last commit.
    news: Vec<(&'static str, Value)>,
}

impl<F: Fn(Value) -> Result<Event, ApiError>> Lines<'_, F> {
    fn line(&mut self, line: &[u8], line_no: usize) -> Result<(), ApiError> {
        let text = line.strip_suffix(b"\r").unwrap_or(line);
        if text.iter().all(u8::is_ascii_whitespace) {
            return Ok(());
        }
        let event = serde_json::from_slice::<Value>(text)
            .map_err(|e| format!("not JSON: {e}"))
            .and_then(|v| (self.to_event)(v).map_err(|e| e.detail));
        match event {
            Ok(mut event) => {
                event.raw = Some(Bytes::copy_from_slice(text));
                let staged = stage(self.app, &self.app.pipeline.load(), &event)
                    .map_err(|e| ApiError::internal(&e))?;
                self.ids.push(staged.id);
                self.wake.extend(staged.wake);
                self.news.extend(staged.news);
            }
            Err(e) => self.error(line_no, e),
        }
        Ok(())
    }

    fn error(&mut self, line_no: usize, error: String) {
        self.errors.push(json!({"line": line_no, "error": error}));
    }

    /// Makes what was staged durable and starts delivering it.
    async fn commit(&mut self) -> Result<(), ApiError> {
        self.app
            .store
            .commit()
            .await
            .map_err(|e| ApiError::internal(&e))?;
        self.wake.sort();
        self.wake.dedup();
        wake(self.app, &self.wake);
        self.wake.clear();
        announce(self.app, std::mem::take(&mut self.news));
        Ok(())
    }
}

/// Processes an NDJSON body line by line as it arrives.
async fn receive_lines<S, E>(
    app: &App,
    mut stream: S,
    to_event: impl Fn(Value) -> Result<Event, ApiError>,
    limit: u64,
) -> Result<Response, ApiError>
where
    S: futures_util::Stream<Item = Result<Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    let limit = limit as usize;
    let mut out = Lines {
        app,
        to_event,
        ids: Vec::new(),
        errors: Vec::new(),
        wake: Vec::new(),
        news: Vec::new(),
    };
    let mut buf = BytesMut::new();
    let mut line_no = 0usize;
    let mut skipping = false; // inside an over-long line, dropping bytes until its end
    let too_long = format!("the line is over the {limit}-byte limit (max_body)");
    while let Some(chunk) = stream.next().await {
        let chunk = match chunk {
            Ok(c) => c,
            Err(e) => {
                // What was staged so far is kept (and committed below); the rest never arrived.
                out.error(line_no + 1, format!("the body broke off: {e}"));
                buf.clear();
                break;
            }
        };
        let mut rest = &chunk[..];
        while let Some(i) = rest.iter().position(|b| *b == b'\n') {
            line_no += 1;
            if skipping {
                skipping = false;
            } else if buf.len() + i > limit {
                out.error(line_no, too_long.clone());
            } else if buf.is_empty() {
                out.line(&rest[..i], line_no)?;
            } else {
                buf.extend_from_slice(&rest[..i]);
                out.line(&buf, line_no)?;
            }
            buf.clear();
            rest = &rest[i + 1..];
        }
        if !skipping {
            if buf.len() + rest.len() > limit {
                out.error(line_no + 1, too_long.clone());
                buf.clear();
                skipping = true;
            } else {
                buf.extend_from_slice(rest);
            }
        }
        // Without waiting for the end of a long stream, make what arrived durable and
        // start delivering it.
        if out.wake.len() >= 256 {
            out.commit().await?;
        }
    }
    if !buf.is_empty() && !skipping {
        out.line(&buf, line_no + 1)?;
    }
    out.commit().await?;
    let Lines { ids, errors, .. } = out;
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({"accepted": ids.len(), "ids": ids, "errors": errors})),
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A template that fails on every event is logged once per reason, not per event.
    #[test]
    fn a_template_failure_is_logged_once_per_template_and_reason() {
        let seen = RenderFailures::default();
        assert!(seen.first("a.teams.hbs", "md param not found"));
        assert!(!seen.first("a.teams.hbs", "md param not found"));
        assert!(seen.first("a.teams.hbs", "invalid JSON"));
        assert!(seen.first("b.teams.hbs", "md param not found"));
        assert!(!seen.first("b.teams.hbs", "md param not found"));
    }
}
