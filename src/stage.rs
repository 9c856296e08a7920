//! Staging: a verified event through match → dedup → limit → render → noise → outbox, before
//! the commit that makes it durable.
//!
//! In: an [`Event`] that ingest verified (or that the CLI or the playground built from trusted
//! input), and the pipeline (rules and templates) in force. Out: one outbox record per card and
//! connection ([`OutboxRecord::new`]), dead letters for broken connections, noise-control state
//! (dedup keys, folds, digest items), the event in the playground's ring, and live-tail notices
//! sent once durable. Guarantees: staging writes nothing durable by itself; [`accept`] answers
//! only after [`crate::store::Durable::commit`], and a failed commit releases the upstream's
//! delivery id so a redelivery is accepted. A template that fails never loses the event: the
//! connection gets a fallback card, or a dead letter under `render_errors: dead_letter`.

use std::sync::Arc;

use serde_json::{json, Value};

use crate::config::RenderErrors;
use crate::error::ApiError;
use crate::event::Event;
use crate::ids::{ConnectionId, EventId};
use crate::noise::Decision;
use crate::pipeline::Pipeline;
use crate::render::fallback::Fallback;
use crate::render::{CardKind, RenderError, Update};
use crate::store::{now_ms, DeadLetter, OutboxRecord, RenderFailure, StoreError};

/// What staging reaches: the settings, the rules and templates in force, the store, the
/// connections, delivery (to wake), the live tail, the metrics, noise control.
#[derive(Clone)]
pub struct Stager {
    /// The settings.
    pub config: Arc<crate::config::Config>,
    /// The rules and templates in force.
    pub pipeline: Arc<arc_swap::ArcSwap<Pipeline>>,
    /// Durable state.
    pub store: crate::store::SharedStore,
    /// The connections, cached.
    pub connections: Arc<crate::connections::Connections>,
    /// The delivery workers.
    pub deliverer: Arc<crate::deliver::Deliverer>,
    /// The live tail.
    pub live: crate::live::Live,
    /// The Prometheus metrics.
    pub metrics: Arc<crate::metrics::Metrics>,
    /// Noise control.
    pub noise: Arc<crate::noise::Noise>,
    /// Template failures already logged.
    pub render_failures: Arc<RenderFailures>,
    /// The sources' GitHub Apps' secrets.
    pub source_secrets: Arc<crate::sources::SourceSecrets>,
    /// Traces (off unless `telemetry.otlp` says otherwise).
    pub telemetry: Arc<crate::telemetry::Telemetry>,
}

impl Stager {
    /// The answer when the store could not take an event ([`store_failed`]), counted in
    /// `cardwire_store_errors_total{kind}`.
    pub fn refused(&self, e: &StoreError) -> ApiError {
        self.metrics.store_error(e.kind());
        store_failed(e)
    }
}

/// Accepts one event: stage it with `pipeline`'s rules and templates, make it durable, wake
/// delivery. Returns its id (the first id when the upstream delivery was seen before).
pub async fn accept(
    app: &Stager,
    pipeline: &Arc<Pipeline>,
    event: Event,
) -> Result<Staged, ApiError> {
    let (staged, event) = if app.store.blocking() {
        // A store across the network (PostgreSQL) makes each call wait on a round trip: staged
        // on the blocking pool, so that the runtime's few threads keep serving other requests
        // meanwhile rather than waiting in turn.
        let (app, pipeline) = (app.clone(), pipeline.clone());
        tokio::task::spawn_blocking(move || (stage(&app, &pipeline, &event), event))
            .await
            .map_err(|e| ApiError::internal(&e))?
    } else {
        (stage(app, pipeline, &event), event)
    };
    let staged = staged.map_err(|e| app.refused(&e))?;
    if let Err(e) = app.store.commit().await {
        if let Some(key) = &event.delivery_key {
            let _ = app.store.release_delivery(key);
        }
        return Err(app.refused(&e));
    }
    wake(app, &staged.wake);
    let mut staged = staged;
    announce(app, std::mem::take(&mut staged.news));
    Ok(staged)
}

/// The answer when the store could not take an event: `503 store_unavailable` with
/// `Retry-After: 5` while PostgreSQL cannot be reached, `503 storage_full` with
/// `Retry-After: 30` while the disk is full (nothing was accepted either way; the upstream's
/// retry will be), else `500 internal`.
pub fn store_failed(e: &StoreError) -> ApiError {
    // Once a minute each, not once a request.
    static UNAVAILABLE_LOGGED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    static FULL_LOGGED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    match e {
        StoreError::Unavailable(why) => {
            if once_a_minute(&UNAVAILABLE_LOGGED) {
                tracing::warn!(%why, "the store is unavailable: events are refused with 503 until it is back");
            }
            let mut answer = ApiError::new(
                axum::http::StatusCode::SERVICE_UNAVAILABLE,
                "store_unavailable",
                "the gateway cannot reach its database; nothing was accepted: retry later",
            );
            answer.retry_after = Some(5);
            answer
        }
        e if e.is_storage_full() => {
            if once_a_minute(&FULL_LOGGED) {
                tracing::error!(error = %crate::error::ErrorChain(e), "the disk is full: events are refused with 503 storage_full until there is space again");
            }
            let mut answer = ApiError::new(
                axum::http::StatusCode::SERVICE_UNAVAILABLE,
                "storage_full",
                "the gateway's disk is full; nothing was accepted: retry later",
            );
            answer.retry_after = Some(30);
            answer
        }
        _ => ApiError::internal(e),
    }
}

/// Whether a minute has passed since `last` (Unix ms) was last set, setting it if so: one
/// log line a minute for a condition every request meets.
fn once_a_minute(last: &std::sync::atomic::AtomicU64) -> bool {
    use std::sync::atomic::Ordering::Relaxed;
    let now = crate::store::now_ms();
    let then = last.load(Relaxed);
    now.saturating_sub(then) >= 60_000 && last.compare_exchange(then, now, Relaxed, Relaxed).is_ok()
}

/// What staging an event did.
pub struct Staged {
    /// The event's id (the first one, for a repeated delivery).
    pub id: EventId,
    /// Connections that got cards.
    pub wake: Vec<ConnectionId>,
    /// Notices for the live tail, sent once the event is durable (empty when nobody listens).
    pub news: Vec<(&'static str, Value)>,
    /// How many rules took the event.
    pub matched: usize,
    /// How many cards were queued.
    pub cards: usize,
}

/// Keeps the event in the playground's ring of recent events (the request's bytes when
/// ingest has them: no copy of the payload).
fn keep_recent(app: &Stager, event: &Event) {
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

pub fn announce(app: &Stager, news: Vec<(&'static str, Value)>) {
    for (kind, notice) in news {
        app.live.emit(kind, notice);
    }
}

pub fn wake(app: &Stager, cons: &[ConnectionId]) {
    for c in cons {
        app.deliverer.wake(c);
    }
}

/// Reserves the delivery id, matches rules, renders and queues cards — everything but the
/// commit. The cards and the delivery-id claim are written all or nothing
/// ([`crate::store::Outbox::enqueue_event`]). A card that fails to render becomes a fallback
/// card, or a dead letter with the reason.
pub fn stage(app: &Stager, pipeline: &Pipeline, event: &Event) -> Result<Staged, StoreError> {
    // No room kept on the disk: refused before anything is written.
    app.store.room()?;
    let repeated = |first: EventId| {
        tracing::info!(source = %event.source, delivery = ?event.delivery_key, event = %first, "repeated delivery; already accepted");
        Staged {
            id: first,
            wake: Vec::new(),
            news: Vec::new(),
            matched: 0,
            cards: 0,
        }
    };
    if let Some(key) = &event.delivery_key {
        if let Some(first) = app.store.reserve_delivery(key, &event.id)? {
            return Ok(repeated(first));
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
    let mut queue = Vec::new();
    let mut cards = 0;
    let written = queue_cards(app, pipeline, event, &mut news, &mut queue).and_then(|wake| {
        let claim = event.delivery_key.as_deref().map(|k| (k, &event.id));
        cards = queue.len();
        Ok(app.store.enqueue_event(claim, &mut queue)?.map(|()| wake))
    });
    match written {
        Ok(Ok((wake, matched))) => Ok(Staged {
            id: event.id.clone(),
            wake,
            news,
            matched,
            cards,
        }),
        Ok(Err(first)) => Ok(repeated(first)),
        Err(e) => {
            if let Some(key) = &event.delivery_key {
                let _ = app.store.release_delivery(key);
            }
            Err(e)
        }
    }
}

/// The cards of an event, decided: matched, deduplicated, limited, rendered, through noise
/// control. The records to queue are returned, not written: [`stage`] writes them with the
/// delivery-id claim, all or nothing ([`crate::store::Outbox::enqueue_event`]). (Dead letters for broken connections and
/// noise-control state are written as they are decided.)
fn queue_cards(
    app: &Stager,
    pipeline: &Pipeline,
    event: &Event,
    news: &mut Vec<(&'static str, Value)>,
    queue: &mut Vec<OutboxRecord>,
) -> Result<(Vec<ConnectionId>, usize), StoreError> {
    let rules = pipeline.rules.matches(event);
    if rules.is_empty() {
        tracing::debug!(source = %event.source, event_type = %event.event_type, event = %event.id, "no rule matched");
        return Ok((Vec::new(), 0));
    }
    let matched = rules.len();
    let connections = app.connections.all();
    let mut staging = Staging {
        app,
        pipeline,
        event,
        ctx: event.template_context(),
        listening: app.live.listening(),
        news,
        queue,
        wake: Vec::new(),
    };
    for rule in rules {
        staging.rule(rule, &connections)?;
    }
    Ok((staging.wake, matched))
}

/// One event's staging in progress: what it reads, and what it has decided so far.
struct Staging<'a> {
    app: &'a Stager,
    pipeline: &'a Pipeline,
    event: &'a Event,
    ctx: &'a handlebars::Context,
    listening: bool,
    news: &'a mut Vec<(&'static str, Value)>,
    queue: &'a mut Vec<OutboxRecord>,
    wake: Vec<ConnectionId>,
}

impl Staging<'_> {
    /// A rule that took the event: noise control once for the rule, then a card for every
    /// connection of the rule's channel.
    fn rule(
        &mut self,
        rule: &crate::rules::Rule,
        connections: &[crate::store::Connection],
    ) -> Result<(), StoreError> {
        if self.listening {
            self.news.push((
                "matched",
                json!({"type": "matched", "event": self.event.id, "rule": rule.name}),
            ));
        }
        if self.is_repeat(rule)? {
            return Ok(());
        }
        let limited = self.limited(rule);
        let mut bodies: [Option<Carded>; CardKind::ALL.len()] = Default::default();
        for conn in connections.iter().filter(|c| rule.sends_to(&c.channels)) {
            if conn.paused {
                self.app.connections.count_skip(&conn.id);
                continue;
            }
            let body =
                bodies[conn.kind as usize].get_or_insert_with(|| self.render(rule, conn.kind));
            self.card(rule, conn, body, &limited)?;
        }
        Ok(())
    }

    /// Whether the rule's dedup drops the event as a repeat (once per event and rule).
    fn is_repeat(&self, rule: &crate::rules::Rule) -> Result<bool, StoreError> {
        let Some(d) = &rule.dedup else {
            return Ok(false);
        };
        match self.pipeline.renderer.render_expr(&d.key, self.ctx) {
            Ok(key) => {
                let repeat = self.app.noise.is_duplicate(rule, &key, d.window)?;
                if repeat {
                    self.app.metrics.deduped(&rule.name);
                    tracing::debug!(rule = %rule.name, key = %key, "repeat dropped by dedup");
                }
                Ok(repeat)
            }
            Err(e) => {
                tracing::warn!(rule = %rule.name, error = %e, "dedup key did not render; not deduplicated");
                Ok(false)
            }
        }
    }

    /// Over the rule's limit: the `per` value and when the limit allows again (the event is
    /// folded for every connection).
    fn limited(&self, rule: &crate::rules::Rule) -> Option<(String, u64)> {
        let l = rule.limit.as_ref()?;
        let per = match &l.per {
            Some(expr) => self
                .pipeline
                .renderer
                .render_expr(expr, self.ctx)
                .unwrap_or_default(),
            None => String::new(),
        };
        self.app
            .noise
            .limit_allows(rule, l, &per)
            .err()
            .map(|due| (per, due))
    }

    /// The rule's card of a kind, or what goes instead when its template fails ([`card_of`]),
    /// counted; a failure logged once per template and reason.
    fn render(&self, rule: &crate::rules::Rule, kind: CardKind) -> Carded {
        let render_errors = self.app.config.render_errors;
        let carded = card_in(
            self.pipeline,
            rule,
            self.event,
            self.ctx,
            kind,
            render_errors,
        );
        let failure = match &carded {
            Ok(Carded::Card(..)) => {
                self.app.metrics.card(&rule.name, true);
                None
            }
            Ok(Carded::Fallback(_, f)) => {
                self.app.metrics.card_fallback(&rule.name);
                Some((f.template.clone(), f.reason.clone(), f.line, f.column))
            }
            Ok(Carded::Failed(_)) => None,
            Err(e) => {
                self.app.metrics.card(&rule.name, false);
                let (template, pos, reason) = e.parts();
                Some((template, reason, pos.map(|p| p.0), pos.map(|p| p.1)))
            }
        };
        if let Some((template, reason, line, column)) = failure {
            if self.app.render_failures.first(&template, &reason) {
                let fallback = render_errors == RenderErrors::Fallback;
                tracing::error!(rule = %rule.name, template = %template, line, column,
                    reason = %reason, event = %self.event.id,
                    "a template failed; {} (logged once per template and reason)",
                    if fallback { "a card built without it goes instead" } else { "the card is kept as a dead letter" });
            }
        }
        carded.unwrap_or_else(|e| Carded::Failed(e.to_string()))
    }

    /// One card for one connection: kept as a dead letter (a broken connection, a template
    /// that failed under `dead_letter`), folded, kept for a digest, or queued.
    fn card(
        &mut self,
        rule: &crate::rules::Rule,
        conn: &crate::store::Connection,
        body: &Carded,
        limited: &Option<(String, u64)>,
    ) -> Result<(), StoreError> {
        let (text, fallback, subject) = match body {
            Carded::Card(b, subject) => (b.to_string(), None, subject.as_ref()),
            Carded::Fallback(b, f) => (b.to_string(), Some(f.clone()), None),
            Carded::Failed(_) => (String::new(), None, None),
        };
        let record = OutboxRecord {
            fallback,
            trace: self.event.trace.clone(),
            key: subject.map(|(k, _)| k.to_string()),
            update: subject.map(|(_, u)| *u),
            ..OutboxRecord::new(
                self.event.id.clone(),
                conn.id.clone(),
                &rule.name,
                conn.kind,
                text,
                now_ms(),
            )
        };
        let dead = |reason: String| DeadLetter {
            record: record.clone(),
            reason,
            dead_ms: now_ms(),
        };
        if let Some(why) = &conn.broken {
            // Kept, not sent: retrying the connection's dead letters sends it once fixed.
            return self
                .app
                .store
                .put_dead(&dead(format!("connection broken: {why}")));
        }
        if let Carded::Failed(why) = body {
            return self.app.store.put_dead(&dead(format!("render: {why}")));
        }
        let item = || {
            // The summary or digest names the card by its MessageCard title and link.
            let teams = match conn.kind {
                CardKind::Teams => Some(record.body.clone()),
                _ => self
                    .pipeline
                    .renderer
                    .render_with(&rule.template, CardKind::Teams, self.ctx)
                    .ok(),
            };
            let subject = record
                .key
                .clone()
                .map(|k| (k, record.update.unwrap_or_default()));
            crate::noise::item_of(
                rule,
                self.event,
                teams.as_deref(),
                subject,
                self.app.noise.now_ms(),
            )
        };
        match self.app.noise.decide(rule, conn, limited.clone(), item)? {
            Decision::Send => {
                self.wake.push(conn.id.clone());
                if self.listening {
                    let mut note = json!({"type": "queued", "event": self.event.id, "rule": rule.name,
                               "delivery": record.id, "connection": conn.id});
                    if let Some(f) = &record.fallback {
                        note["fallback"] = json!(f);
                    }
                    self.news.push(("queued", note));
                }
                self.queue.push(record);
            }
            Decision::Folded => self.app.metrics.folded(&rule.name),
            Decision::Digested => {}
        }
        Ok(())
    }
}

/// A rule's card of one kind for an event, rendered once for every connection of that kind.
#[derive(Debug, Clone)]
pub enum Carded {
    /// The template's card, and its subject: its key and what a later card of it does (the
    /// rule's `update` over the template's).
    Card(Arc<str>, Option<(Arc<str>, Update)>),
    /// The template failed; a card built without it goes instead (`render_errors: fallback`).
    Fallback(Arc<str>, RenderFailure),
    /// The template failed and nothing goes (`render_errors: dead_letter`): why.
    Failed(String),
}

/// A rule's card of one kind for an event, as staging makes it: the template's card, or when
/// the template fails what `render_errors` says goes instead. No side effects: staging counts
/// and logs around it, `cardwire render` and the playground show it.
pub fn card_of(
    pipeline: &Pipeline,
    rule: &crate::rules::Rule,
    event: &Event,
    kind: CardKind,
    render_errors: RenderErrors,
) -> Result<Carded, RenderError> {
    card_in(
        pipeline,
        rule,
        event,
        event.template_context(),
        kind,
        render_errors,
    )
}

fn card_in(
    pipeline: &Pipeline,
    rule: &crate::rules::Rule,
    event: &Event,
    ctx: &handlebars::Context,
    kind: CardKind,
    render_errors: RenderErrors,
) -> Result<Carded, RenderError> {
    let e = match pipeline
        .renderer
        .render_card_with(&rule.template, kind, ctx)
    {
        Ok(r) => {
            let subject = r
                .subject
                .map(|(key, update)| (Arc::from(key), rule.update.unwrap_or(update)));
            return Ok(Carded::Card(Arc::from(r.body), subject));
        }
        Err(e) => e,
    };
    if render_errors != RenderErrors::Fallback {
        return Err(e);
    }
    let (template, pos, reason) = e.parts();
    let card = Fallback::from_payload(
        &event.source,
        &event.event_type,
        event.action.as_deref(),
        event.payload(),
        e.to_string(),
    )
    .card(kind);
    Ok(Carded::Fallback(
        Arc::from(card),
        RenderFailure {
            template,
            line: pos.map(|p| p.0),
            column: pos.map(|p| p.1),
            reason,
        },
    ))
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

#[cfg(test)]
mod tests {
    use super::*;

    fn io(errno: i32) -> StoreError {
        StoreError::Sled(sled::Error::Io(std::io::Error::from_raw_os_error(errno)))
    }

    /// A full disk (or quota, or file-size limit) is "try later" with its own code; other
    /// I/O failures stay internal errors; an unreachable database is unavailable.
    #[test]
    fn a_full_disk_is_503_storage_full_with_retry_after() {
        for errno in [28, 27, 122] {
            let answer = store_failed(&io(errno));
            assert_eq!(
                (answer.status, answer.code, answer.retry_after),
                (
                    axum::http::StatusCode::SERVICE_UNAVAILABLE,
                    "storage_full",
                    Some(30)
                ),
                "errno {errno}"
            );
        }
        let other = store_failed(&io(5)); // EIO
        assert_eq!(other.status, axum::http::StatusCode::INTERNAL_SERVER_ERROR);
        let down = store_failed(&StoreError::Unavailable("connection refused".into()));
        assert_eq!(
            (down.code, down.retry_after),
            ("store_unavailable", Some(5))
        );
    }

    #[test]
    fn a_condition_met_by_every_request_is_logged_once_a_minute() {
        let last = std::sync::atomic::AtomicU64::new(0);
        assert!(once_a_minute(&last));
        assert!(!once_a_minute(&last), "not again within the minute");
        last.store(
            crate::store::now_ms() - 60_000,
            std::sync::atomic::Ordering::Relaxed,
        );
        assert!(once_a_minute(&last));
    }

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
