//! Ingest: `POST /hooks/{source}` — read, verify, parse once, hand the event to
//! [`crate::stage`], answer 202 once it is durable. HTTP and verification only.
//!
//! The parse builds only the members that the rules for the event's type and their templates
//! read (see [`crate::needs`]); the bytes go to the playground's ring as they came.
//!
//! In: an upstream's request. Out: the staged event (outbox records for every matching rule ×
//! connection), and `202 {"id": "evt_…"}` only after they are durable (group commit). Errors are 4xx with the
//! common JSON body: 404 unknown source, 413 body over the limit, 408 a body slower than
//! `limits.body_min_rate` ([`floor`]), 401 bad credentials, 400 bad JSON or nested past
//! [`crate::needs::MAX_DEPTH`]. A repeated upstream delivery id is answered with the first id and queues nothing.
//!
//! A generic source also takes `application/x-ndjson`: one event per line, each processed as
//! it arrives, memory bounded by the longest line whatever the body's size; a bad line is
//! reported and does not reject the good ones.
//!
//! Its rooms: [`verify`] (signatures and tokens), [`floor`] (the slowest rate a body may
//! arrive at), [`lines`] (NDJSON bodies split into lines as they arrive).

pub mod floor;
pub mod lines;
pub mod verify;

use axum::body::Body;
use axum::extract::{FromRef, Path, RawQuery, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use bytes::Bytes;
use futures_util::StreamExt;
use serde_json::{json, Value};

use crate::error::ApiError;
use crate::event::{Event, SourceKind};
use crate::gate::Admin;
use crate::ids::{ConnectionId, EventId};
use crate::stage::Stager;
use verify::Unverified;

/// The routes under /hooks.
pub fn router<S>() -> Router<S>
where
    S: Clone + Send + Sync + 'static,
    Stager: FromRef<S>,
    crate::gate::Gate: FromRef<S>,
{
    Router::new().route("/hooks/{source}", post(receive_hook))
}

async fn receive_hook(
    state: State<Stager>,
    path: Path<String>,
    query: RawQuery,
    admin: Result<Admin, ApiError>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let metrics = state.0.metrics.clone();
    let source = path.0.clone();
    // One trace per event, from here (off: nothing but a branch).
    let traced = state.0.telemetry.request(&source, &headers);
    let result = handle_hook(state, path, query, admin, headers, body, &traced).await;
    match &result {
        Ok(_) => metrics.event(&source, "accepted", ""),
        Err(e) => metrics.event(&source, "rejected", e.code),
    }
    traced.finish(match &result {
        Ok(res) => res.status().as_u16(),
        Err(e) => e.status.as_u16(),
    });
    result
}

async fn handle_hook(
    State(app): State<Stager>,
    Path(name): Path<String>,
    RawQuery(query): RawQuery,
    admin: Result<Admin, ApiError>,
    headers: HeaderMap,
    body: Body,
    traced: &crate::telemetry::Request,
) -> Result<Response, ApiError> {
    let Some(configured) = app.config.sources.get(&name) else {
        return Err(ApiError::not_found(format!(
            "no source named {name:?} is configured"
        )));
    };
    // `?explain=1`: answer with the rules' explanation instead of queueing (admin only; the
    // admin token stands in for the source's credentials, its app's or hooks' too).
    let explain = url::form_urlencoded::parse(query.unwrap_or_default().as_bytes())
        .any(|(k, v)| k == "explain" && !matches!(v.as_ref(), "0" | "false"));
    if explain {
        admin?;
        let bytes = read_limited(body, &headers, app.config.max_body).await?;
        check_depth(&bytes)?;
        let payload: Value = serde_json::from_slice(&bytes).map_err(|e| {
            ApiError::bad_request("invalid_json", format!("the body is not JSON: {e}"))
        })?;
        // The admin token stands in for the source's credentials here: nothing is queued.
        let event = verify::Verified::trusted(&name, configured, &headers).event(payload)?;
        let rules = app.pipeline.load().rules.explain(&event);
        return Ok(Json(json!({
            "source": event.source,
            "event": event.event_type,
            "action": event.action,
            "rules": rules,
        }))
        .into_response());
    }
    // A GitHub source without a secret of its own verifies with its app's, once one is made
    // (`app: true`: nothing is accepted before).
    let with_app;
    let source = match (&configured.secret, configured.kind) {
        (None, SourceKind::Github) => match app.source_secrets.get(&name).or_else(|| {
            // Made by another instance since this one read them? (At most once a second.)
            app.source_secrets
                .refresh()
                .then(|| app.source_secrets.get(&name))
                .flatten()
        }) {
            Some(secret) => {
                with_app = crate::config::SourceConfig {
                    secret: Some(secret.to_string()),
                    ..configured.clone()
                };
                &with_app
            }
            None if configured.app => {
                return Err(ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    "no_app",
                    format!("source {name:?} verifies with its GitHub App's secret, and no app is made for it yet: create one on /sources"),
                ))
            }
            None => configured,
        },
        // A GitLab source without a token of its own verifies with its hooks' tokens, once
        // one is made on /sources.
        (None, SourceKind::Gitlab) => {
            let given = headers
                .get("x-gitlab-token")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default();
            let mut verdict = app.source_secrets.hook_token(&name, given);
            // Made by another instance since this one read them? (At most once a second.)
            if verdict != Some(true) && app.source_secrets.refresh() {
                verdict = app.source_secrets.hook_token(&name, given);
            }
            match verdict {
                Some(true) => {
                    with_app = crate::config::SourceConfig {
                        secret: Some(given.to_string()),
                        ..configured.clone()
                    };
                    &with_app
                }
                Some(false) if given.is_empty() => {
                    return Err(ApiError::unauthorized(
                        "the X-Gitlab-Token header is missing",
                    ))
                }
                Some(false) => {
                    return Err(ApiError::unauthorized(
                        "the X-Gitlab-Token header is none of this source's hooks' tokens",
                    ))
                }
                None => configured,
            }
        }
        _ => configured,
    };
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
    // Refused with an app's secret: the app may have been made again on another instance since
    // this one read it (at most once a second, the store is read again and the new secret tried).
    let replaced;
    let verified = match unverified.verify(&bytes) {
        Ok(v) => v,
        Err(e) if !std::ptr::eq(source, configured) => {
            let old = source.secret.as_deref();
            match app
                .source_secrets
                .refresh()
                .then(|| app.source_secrets.get(&name))
                .flatten()
            {
                Some(new) if Some(&*new) != old => {
                    replaced = crate::config::SourceConfig {
                        secret: Some(new.to_string()),
                        ..configured.clone()
                    };
                    Unverified::new(&name, &replaced, &headers).verify(&bytes)?
                }
                _ => return Err(e),
            }
        }
        Err(e) => return Err(e),
    };
    check_depth(&bytes)?;
    // A GitHub App's installations are understood without a rule: /sources shows them.
    if source.kind == SourceKind::Github && configured.secret.is_none() {
        let event = headers
            .get("x-github-event")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        if matches!(event, "installation" | "installation_repositories") {
            if let Ok(payload) = serde_json::from_slice::<Value>(&bytes) {
                match app.source_secrets.note_installation(&name, event, &payload) {
                    Ok(true) => {
                        tracing::info!(source = %name, event, "GitHub App installation noted")
                    }
                    Ok(false) => {}
                    Err(e) => return Err(app.refused(&e)),
                }
            }
        }
    }
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
    let stage = traced.stage(event.id.as_str());
    event.trace = stage.traceparent();
    let staged = crate::stage::accept(&app, &pipeline, event).await?;
    stage.finish(staged.matched, staged.cards);
    Ok((StatusCode::ACCEPTED, Json(json!({"id": staged.id}))).into_response())
}

/// `400 too_deep` for a body that nests deeper than [`crate::needs::MAX_DEPTH`] levels,
/// whichever source it came to and however little of it the rules read.
fn check_depth(bytes: &[u8]) -> Result<(), ApiError> {
    match crate::needs::too_deep(bytes, crate::needs::MAX_DEPTH) {
        None => Ok(()),
        Some(at) => Err(ApiError::bad_request("too_deep", deeper_than(at))),
    }
}

/// What `too_deep` says: the limit, and where it was passed.
fn deeper_than(at: usize) -> String {
    format!(
        "the body nests arrays and objects deeper than {} levels (at byte {at}); cardwire accepts {} from every source",
        crate::needs::MAX_DEPTH,
        crate::needs::MAX_DEPTH
    )
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
                if s.is::<floor::TooSlow>() {
                    return ApiError::new(
                        StatusCode::REQUEST_TIMEOUT,
                        "body_timeout",
                        s.to_string(),
                    );
                }
                source = s.source();
            }
            ApiError::bad_request(
                "unreadable_body",
                format!("the body could not be read: {e}"),
            )
        })
}

/// What an NDJSON body has produced so far.
struct Lines<'a, F> {
    app: &'a Stager,
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
        if let Some(at) = crate::needs::too_deep(text, crate::needs::MAX_DEPTH) {
            self.error(line_no, format!("too_deep: {}", deeper_than(at)));
            return Ok(());
        }
        let event = serde_json::from_slice::<Value>(text)
            .map_err(|e| format!("not JSON: {e}"))
            .and_then(|v| (self.to_event)(v).map_err(|e| e.detail));
        match event {
            Ok(mut event) => {
                event.raw = Some(Bytes::copy_from_slice(text));
                let staged = crate::stage::stage(self.app, &self.app.pipeline.load(), &event)
                    .map_err(|e| self.app.refused(&e))?;
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
            .map_err(|e| self.app.refused(&e))?;
        self.wake.sort();
        self.wake.dedup();
        crate::stage::wake(self.app, &self.wake);
        self.wake.clear();
        crate::stage::announce(self.app, std::mem::take(&mut self.news));
        Ok(())
    }
}

/// Processes an NDJSON body line by line as it arrives.
async fn receive_lines<S, E>(
    app: &Stager,
    mut stream: S,
    to_event: impl Fn(Value) -> Result<Event, ApiError>,
    limit: u64,
) -> Result<Response, ApiError>
where
    S: futures_util::Stream<Item = Result<Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    let mut out = Lines {
        app,
        to_event,
        ids: Vec::new(),
        errors: Vec::new(),
        wake: Vec::new(),
        news: Vec::new(),
    };
    let mut split = lines::Splitter::new(limit as usize);
    let too_long = format!("the line is over the {limit}-byte limit (max_body)");
    let piece = |out: &mut Lines<'_, _>, p: lines::Piece<'_>| match p {
        lines::Piece::Line(n, line) => out.line(line, n),
        lines::Piece::TooLong(n) => {
            out.error(n, too_long.clone());
            Ok(())
        }
    };
    while let Some(chunk) = stream.next().await {
        let chunk = match chunk {
            Ok(c) => c,
            Err(e) => {
                // What was staged so far is kept (and committed below); the rest never arrived.
                let n = split.broke_off();
                out.error(n, format!("the body broke off: {e}"));
                break;
            }
        };
        split.push(&chunk, &mut |p| piece(&mut out, p))?;
        // Without waiting for the end of a long stream, make what arrived durable and
        // start delivering it.
        if out.wake.len() >= 256 {
            out.commit().await?;
        }
    }
    split.finish(&mut |p| piece(&mut out, p))?;
    out.commit().await?;
    let Lines { ids, errors, .. } = out;
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({"accepted": ids.len(), "ids": ids, "errors": errors})),
    )
        .into_response())
}
