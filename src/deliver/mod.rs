//! Delivery: the outbox's cards POSTed to their connections.
//!
//! In: outbox records in sled and wake-ups from ingest. Out: HTTP requests, and each card's
//! outcome written back. The workers run on a runtime of their own, one thread: on the server's
//! runtime one worker per connection waited its turn behind every request task, and under load
//! delivery fell far behind ingest. Guarantees:
//! - one worker per connection sends that connection's cards in the order they were accepted,
//!   and only while its store grants it the connection's lease ([`crate::store::Outbox::lease`]:
//!   always on sled; on PostgreSQL one instance at a time, so that several instances send each
//!   card once, in order); a slow, throttled or failing connection delays only itself; at most
//!   `delivery.concurrency` attempts are in flight across connections;
//! - every attempt of a card carries the same `Idempotency-Key`, and is recorded (time, status,
//!   an excerpt of the answer) on the card;
//! - retries are persisted (`not_before` on the record), on `delivery.retry_schedule` ±20 %,
//!   so they survive restarts; a 429 (or the legacy connector's 200 saying "HTTP error 429")
//!   pauses the whole connection for `Retry-After`, or exponentially without it;
//! - requests are paced per platform unless `delivery.pacing: false`: Teams' windows (4/s,
//!   60/30 s) per URL, Slack one a second per URL, Discord 5 per 2 s per URL, Google Chat one a
//!   second per space, Mattermost not at all ([`pace_key`]); Discord's `X-RateLimit-Remaining:
//!   0` holds the connection for `X-RateLimit-Reset-After` ([`bucket_wait`]), and its 401, 403
//!   and 429 answers are kept to a tenth of the count that gets an address banned
//!   ([`InvalidBudget`]);
//! - 404/410 (and each platform's answers that mean the webhook is gone: [`classify`]) mark
//!   the connection broken (kept, with its cards as dead letters); 400/413 make that card a
//!   dead letter at once; a card whose schedule is exhausted becomes one too;
//! - a card is deleted from the outbox only after its success was seen (kept as a delivered
//!   record for `delivery.keep_delivered`), so a stop at any point — kill -9 included — leaves it
//!   queued: at least once, never zero times. On a graceful stop, attempts in flight finish.
//!
//! - a card with a key edits its key's earlier message, or replies in its thread, where the
//!   chat and the connection allow (else it posts anew): the message's reference is recorded
//!   with the delivery, and one that was sent before a stop is not sent again; a message
//!   deleted in the chat is posted anew ([`updates`]).
//!
//! This file is the worker loop around three rooms of pure functions: [`decide`] (what an
//! answer means, what comes next), [`updates`] (what a keyed card does) and [`pacing`] (what
//! requests count against, Discord's buckets and budget); [`policy`] and [`guard`] say which URLs may be called, [`api`] is the admin API's
//! view of deliveries.

pub mod api;
pub mod decide;
pub mod guard;
pub mod pacing;
pub mod policy;
pub mod updates;

pub use decide::{
    classify, discord_send, jittered, next_step, parse_retry_after, Outcome, Step, MAX_RETRY_AFTER,
};
pub use pacing::{bucket_wait, pace_key, InvalidBudget};

use std::collections::{HashMap, VecDeque};
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::header::{CONTENT_TYPE, RETRY_AFTER};
use tokio::sync::{Notify, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::{DeliveryConfig, PacingConfig};
use crate::connections::Connections;
use crate::error::ErrorChain;
use crate::ids::ConnectionId;
use crate::render::CardKind;
use crate::render::Update;
use crate::store::{now_ms, Attempt, Connection, DeadLetter, MessageRef, OutboxRecord};
use updates::{Plan, Request};

/// Whether a card's outcome was recorded ([`Deliverer::settle`]).
#[derive(Debug, PartialEq, Eq)]
enum Settled {
    /// Recorded (or lost to another instance, or logged as not recorded).
    Recorded,
    /// The store writes nothing until it is opened again: the worker stops.
    StoreBroken,
}

/// A connection worker's state between cards.
struct Queue {
    /// Exponential pause after a 429 without Retry-After, reset by a success.
    throttle_backoff: Duration,
    /// The next cards, read from the outbox a batch at a time (one scan per batch rather than
    /// per card). Only this worker changes or removes its connection's queued cards; cards
    /// queued later are read with the next batch. What is here is also in sled.
    ahead: VecDeque<(crate::store::OutboxKey, OutboxRecord)>,
}

type Limiter = governor::DefaultDirectRateLimiter;

/// How many queued cards a worker reads from the outbox at a time.
const READ_AHEAD: usize = 64;

/// The workers' runtime, one thread of its own. Dropped without waiting for it, since the
/// deliverer can be dropped inside another runtime; [`Deliverer::shutdown`] is what waits for
/// attempts in flight.
struct Lane(Option<tokio::runtime::Runtime>);

impl Lane {
    fn start() -> std::io::Result<Self> {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("cardwire-deliver")
            .enable_all()
            .build()
            .map(|rt| Self(Some(rt)))
    }

    fn handle(&self) -> &tokio::runtime::Handle {
        self.0
            .as_ref()
            .expect("the runtime lives as long as the lane")
            .handle()
    }
}

impl Drop for Lane {
    fn drop(&mut self) {
        if let Some(rt) = self.0.take() {
            rt.shutdown_background();
        }
    }
}

/// The outbox workers.
pub struct Deliverer {
    store: crate::store::SharedStore,
    connections: Arc<Connections>,
    client: reqwest::Client,
    schedule: Vec<Duration>,
    pacing: PacingConfig,
    in_flight: Semaphore,
    workers: Mutex<HashMap<ConnectionId, Arc<Notify>>>,
    limiters: Mutex<HashMap<String, Arc<Vec<Limiter>>>>,
    discord_invalid: Mutex<InvalidBudget>,
    shutdown: CancellationToken,
    tasks: TaskTracker,
    lane: Lane,
    metrics: Arc<crate::metrics::Metrics>,
    guard: guard::AddressGuard,
    live: crate::live::Live,
    telemetry: Arc<crate::telemetry::Telemetry>,
}

impl Deliverer {
    /// A deliverer with its HTTP client (which refuses private addresses at connect time unless
    /// `guard` allows them) and the thread its workers run on.
    pub fn new(
        store: crate::store::SharedStore,
        connections: Arc<Connections>,
        config: &DeliveryConfig,
        guard: guard::AddressGuard,
        metrics: Arc<crate::metrics::Metrics>,
        live: crate::live::Live,
        telemetry: Arc<crate::telemetry::Telemetry>,
    ) -> anyhow::Result<Arc<Self>> {
        use anyhow::Context as _;
        let client = reqwest::Client::builder()
            .connect_timeout(config.timeout.min(Duration::from_secs(5)))
            .timeout(config.timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("cardwire/", env!("CARGO_PKG_VERSION")))
            .pool_idle_timeout(Duration::from_secs(60))
            .pool_max_idle_per_host(16)
            .dns_resolver(Arc::new(guard.clone()))
            .build()
            .context("cannot build the HTTP client")?;
        let lane = Lane::start().context("cannot start the delivery thread")?;
        Ok(Arc::new(Self {
            store,
            connections,
            client,
            schedule: config.retry_schedule.clone(),
            pacing: config.pacing.clone(),
            in_flight: Semaphore::new(config.concurrency),
            workers: Mutex::new(HashMap::new()),
            limiters: Mutex::new(HashMap::new()),
            discord_invalid: Mutex::new(InvalidBudget::discord()),
            shutdown: CancellationToken::new(),
            tasks: TaskTracker::new(),
            lane,
            metrics,
            guard,
            live,
            telemetry,
        }))
    }

    /// Starts workers for every connection that has cards queued (after a restart), or wakes
    /// them: those no other instance delivers (on PostgreSQL, whose leases are free, expired
    /// or this instance's). Also the backstop for notifications lost between instances.
    pub fn resume(self: &Arc<Self>) -> Result<usize, crate::store::StoreError> {
        let queued = self.store.deliverable_connections()?;
        for con in &queued {
            self.wake(con);
        }
        Ok(queued.len())
    }

    /// Tells the connection's worker that it has work, starting it if needed.
    pub fn wake(self: &Arc<Self>, con: &ConnectionId) {
        if self.shutdown.is_cancelled() {
            return;
        }
        let mut workers = self.workers.lock().expect("workers lock");
        if let Some(n) = workers.get(con) {
            n.notify_one();
            return;
        }
        let notify = Arc::new(Notify::new());
        workers.insert(con.clone(), notify.clone());
        drop(workers);
        let this = self.clone();
        let con = con.clone();
        self.tasks.spawn_on(
            async move { this.work(con, notify).await },
            self.lane.handle(),
        );
    }

    /// The token that stops the workers (cancelled by [`Deliverer::shutdown`]).
    pub fn stopping(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Stops the workers: no new attempt starts; attempts in flight finish (each within the
    /// delivery timeout) and their outcome is recorded.
    pub async fn shutdown(&self) {
        self.shutdown.cancel();
        self.tasks.close();
        if tokio::time::timeout(Duration::from_secs(8), self.tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                "delivery attempts still in flight at shutdown; their cards stay queued"
            );
        }
    }

    fn limiters(&self, conn: &Connection) -> Arc<Vec<Limiter>> {
        let key = pace_key(conn.kind, &conn.url);
        let mut all = self.limiters.lock().expect("limiters lock");
        if let Some(found) = all.get(&key) {
            return found.clone();
        }
        all.entry(key)
            .or_insert_with(|| {
                Arc::new(
                    self.pacing
                        .windows(conn.kind)
                        .into_iter()
                        .filter_map(|(count, period)| {
                            // Evenly spaced (no burst): at most `count` in any window of
                            // `period`, which is how Teams counts; a burst would let more in.
                            let quota = governor::Quota::with_period(period / count)?
                                .allow_burst(NonZeroU32::MIN);
                            Some(governor::RateLimiter::direct(quota))
                        })
                        .collect(),
                )
            })
            .clone()
    }

    /// Waits `d`, or until shutdown (Err).
    async fn pause(&self, d: Duration) -> Result<(), ()> {
        tokio::select! {
            _ = tokio::time::sleep(d) => Ok(()),
            _ = self.shutdown.cancelled() => Err(()),
        }
    }

    async fn work(self: Arc<Self>, con: ConnectionId, notify: Arc<Notify>) {
        let mut queue = Queue {
            throttle_backoff: Duration::from_secs(1),
            ahead: VecDeque::new(),
        };
        // The connection's webhook URL, parsed once rather than for every card.
        let mut target: Option<(String, Option<url::Url>)> = None;
        loop {
            if self.shutdown.is_cancelled() {
                break;
            }
            let Some(conn) = self.connections.get(&con) else {
                break;
            };
            if conn.paused || conn.broken.is_some() {
                // Held until the connection is resumed or fixed (which wakes this worker).
                tokio::select! {
                    _ = notify.notified() => continue,
                    _ = self.shutdown.cancelled() => break,
                }
            }
            // Only the holder of the connection's lease sends its cards (always this process on
            // sled); without it the worker stops, and is started again when the lease is free.
            match self.store.lease(&con) {
                Ok(true) => {}
                Ok(false) => {
                    tracing::debug!(connection = %con, "another instance delivers this connection's cards");
                    break;
                }
                Err(e) => {
                    self.metrics.store_error(e.kind());
                    tracing::error!(connection = %con, error = %ErrorChain(&e), "cannot take the connection's delivery lease; retrying in 1 s");
                    queue.ahead.clear();
                    if self.pause(Duration::from_secs(1)).await.is_err() {
                        break;
                    }
                    continue;
                }
            }
            if queue.ahead.is_empty() {
                match self.store.next_batch(&con, READ_AHEAD) {
                    Ok(batch) => queue.ahead.extend(batch),
                    Err(e) => {
                        self.metrics.store_error(e.kind());
                        tracing::error!(connection = %con, error = %ErrorChain(&e), "cannot read the outbox; retrying in 1 s");
                        if self.pause(Duration::from_secs(1)).await.is_err() {
                            break;
                        }
                        continue;
                    }
                }
            }
            let Some((key, rec)) = queue.ahead.pop_front() else {
                tokio::select! {
                    _ = notify.notified() => continue,
                    _ = self.shutdown.cancelled() => break,
                }
            };
            let now = now_ms();
            if rec.not_before_ms > now {
                let wait = rec.not_before_ms - now;
                queue.ahead.push_front((key, rec));
                if self.pause(Duration::from_millis(wait)).await.is_err() {
                    break;
                }
                continue;
            }
            for limiter in self.limiters(&conn).iter() {
                tokio::select! {
                    _ = limiter.until_ready() => {},
                    _ = self.shutdown.cancelled() => return self.retire(&con),
                }
            }
            if conn.kind == CardKind::Discord {
                let wait = self
                    .discord_invalid
                    .lock()
                    .expect("budget lock")
                    .wait(now_ms());
                if !wait.is_zero() {
                    tracing::warn!(connection = %con, wait = ?wait, "many invalid answers from Discord lately; waiting to stay far from its ban");
                    queue.ahead.push_front((key, rec));
                    if self.pause(wait).await.is_err() {
                        break;
                    }
                    continue;
                }
            }
            let permit = tokio::select! {
                p = self.in_flight.acquire() => p.expect("the semaphore is never closed"),
                _ = self.shutdown.cancelled() => break,
            };
            // Not raced with shutdown: an attempt in flight finishes and is recorded.
            let started = std::time::Instant::now();
            if target.as_ref().is_none_or(|(raw, _)| *raw != conn.url) {
                target = Some((conn.url.clone(), url::Url::parse(&conn.url).ok()));
            }
            let url = target.as_ref().and_then(|(_, u)| u.as_ref());
            // In its event's trace (off: nothing but a branch).
            let span = self.telemetry.attempt(
                rec.trace.as_deref(),
                &conn.name,
                rec.id.as_str(),
                rec.attempts,
            );
            let tried = self.attempt(&conn, url, &rec).await;
            drop(permit);
            self.metrics
                .delivery(&con, tried.outcome.label(), started.elapsed());
            let hold = tried.hold;
            if self.settle(&con, (key, rec), tried, &mut queue, span) == Settled::StoreBroken {
                return self.retire(&con);
            }
            if let Some(hold) = hold {
                // The platform said its bucket for this webhook is empty until then.
                tracing::debug!(connection = %con, hold = ?hold, "rate-limit bucket empty; holding");
                if self.pause(hold).await.is_err() {
                    break;
                }
            }
        }
        self.retire(&con);
    }

    /// Records an attempt on its card and does what follows it ([`next_step`]): the card is
    /// delivered, waits for another attempt, or is buried (with its connection's, when the
    /// webhook URL is gone).
    fn settle(
        &self,
        con: &ConnectionId,
        (key, mut rec): (crate::store::OutboxKey, OutboxRecord),
        tried: Tried,
        queue: &mut Queue,
        span: crate::telemetry::Attempt,
    ) -> Settled {
        let Tried {
            outcome,
            status,
            reference,
            note,
            ..
        } = tried;
        let Queue {
            throttle_backoff,
            ahead,
        } = queue;
        rec.attempts += 1;
        rec.attempt_log.push(Attempt {
            at_ms: now_ms(),
            status,
            result: match (&outcome, note) {
                (Outcome::Delivered, None) => "delivered".into(),
                (Outcome::Delivered, Some(note)) => format!("delivered: {note}"),
                (Outcome::Retry { why, .. } | Outcome::Failed(why) | Outcome::Gone(why), _) => {
                    why.clone()
                }
            },
        });
        let step = next_step(
            &outcome,
            rec.attempts,
            &self.schedule,
            *throttle_backoff,
            |d| jittered(d, &mut rand::rng()),
        );
        if self.live.listening() {
            let kind = step.live_kind();
            let last = rec.attempt_log.last();
            self.live.emit(
                kind,
                serde_json::json!({
                    "type": kind, "delivery": rec.id, "connection": con, "rule": rec.rule,
                    "event": rec.event, "attempts": rec.attempts,
                    "status": last.and_then(|a| a.status), "result": last.map(|a| &a.result),
                }),
            );
        }
        let why = match outcome {
            Outcome::Delivered => String::new(),
            Outcome::Retry { why, .. } | Outcome::Failed(why) | Outcome::Gone(why) => why,
        };
        span.finish(
            status,
            match &step {
                Step::Done => "delivered",
                Step::Pause { .. } | Step::Retry { .. } => "retry",
                Step::Break => "broken",
                _ => "dead",
            },
        );
        let result = match step {
            Step::Done => {
                *throttle_backoff = Duration::from_secs(1);
                tracing::debug!(connection = %con, delivery = %rec.id, attempts = rec.attempts, "card delivered");
                self.connections.delivered(con);
                match &reference {
                    Some((r, fresh)) => self.store.deliver_with_ref(&key, &rec, r, *fresh),
                    None => self.store.deliver(&key, &rec),
                }
            }
            Step::Pause { wait, next_backoff } => {
                // Throttled: the whole connection waits; this card keeps its place.
                *throttle_backoff = next_backoff;
                tracing::warn!(connection = %con, delivery = %rec.id, pause = ?wait, error = %why, "throttled; pausing the connection");
                self.retry_later(key, rec, wait, why, ahead)
            }
            Step::Retry { wait } => {
                tracing::warn!(connection = %con, delivery = %rec.id, attempt = rec.attempts, retry_in = ?wait, error = %why, "delivery failed; will retry");
                self.retry_later(key, rec, wait, why, ahead)
            }
            Step::Break => {
                tracing::error!(connection = %con, error = %why, "the webhook URL is gone; connection marked broken, its cards kept as dead letters");
                // Every card queued for it becomes a dead letter.
                ahead.clear();
                self.break_connection(con, &key, rec, why)
            }
            Step::Bury => {
                tracing::error!(connection = %con, delivery = %rec.id, attempts = rec.attempts, error = %why, "delivery failed for good; card moved to dead letters");
                rec.last_error = Some(why.clone());
                self.metrics.dead_letters(1);
                self.store.bury(
                    &key,
                    &DeadLetter {
                        record: rec,
                        reason: why,
                        dead_ms: now_ms(),
                    },
                )
            }
        };
        match result {
            Ok(()) => {}
            Err(e @ crate::store::StoreError::LeaseLost(_)) => {
                self.metrics.store_error(e.kind());
                // Another instance took the connection over (this one could not renew in
                // time): its cards are that instance's now, read afresh if this one gets
                // the lease back.
                tracing::warn!(connection = %con, error = %ErrorChain(&e), "delivery lease lost; leaving the connection's cards to its new holder");
                ahead.clear();
            }
            Err(e) if e.needs_reopen() => {
                // Nothing more can be recorded until the store is opened again (the server's
                // watchdog does it, and delivery resumes from what reached the disk): sending
                // on would only send cards that go out again then.
                self.metrics.store_error(e.kind());
                tracing::error!(connection = %con, error = %ErrorChain(&e), "cannot record a delivery outcome; this connection's delivery stops until the store is opened again");
                ahead.clear();
                return Settled::StoreBroken;
            }
            Err(e) => {
                self.metrics.store_error(e.kind());
                tracing::error!(connection = %con, error = %ErrorChain(&e), "cannot record a delivery outcome");
            }
        }
        Settled::Recorded
    }

    /// Keeps a card for another attempt after `wait`, at the front of the worker's queue.
    fn retry_later(
        &self,
        key: crate::store::OutboxKey,
        mut rec: OutboxRecord,
        wait: Duration,
        why: String,
        ahead: &mut VecDeque<(crate::store::OutboxKey, OutboxRecord)>,
    ) -> Result<(), crate::store::StoreError> {
        rec.not_before_ms = now_ms() + wait.as_millis() as u64;
        rec.last_error = Some(why);
        self.metrics.retry(&rec.connection);
        let saved = self.store.update(&key, &rec);
        ahead.push_front((key, rec));
        saved
    }

    /// Marks a connection broken (its webhook URL is gone) and buries its cards, this one first.
    fn break_connection(
        &self,
        con: &ConnectionId,
        key: &crate::store::OutboxKey,
        mut rec: OutboxRecord,
        why: String,
    ) -> Result<(), crate::store::StoreError> {
        rec.last_error = Some(why.clone());
        let reason = format!("connection broken: {why}");
        let marked = self
            .connections
            .update(con, |c| c.broken = Some(why.clone()));
        self.store
            .bury(
                key,
                &DeadLetter {
                    record: rec,
                    reason: reason.clone(),
                    dead_ms: now_ms(),
                },
            )
            .and_then(|()| marked.map(drop))
            .and_then(|()| self.store.bury_all(con, &reason))
            .map(|n| self.metrics.dead_letters(n + 1))
    }

    fn retire(&self, con: &ConnectionId) {
        let mut workers = self.workers.lock().expect("workers lock");
        workers.remove(con);
        // Another instance may take the connection at once (PostgreSQL). Let go while no new
        // worker can start here, so that none starts on the lease being let go.
        if let Err(e) = self.store.release(con) {
            tracing::warn!(connection = %con, error = %ErrorChain(&e), "cannot let go of a delivery lease; it expires by itself");
        }
    }

    /// One attempt at `rec`; `url` is `conn.url` parsed (`None` if it does not parse, which
    /// fails as a transport error like any other). A card with a key goes as its update and
    /// the connection allow ([`updates`]).
    async fn attempt(
        &self,
        conn: &Connection,
        url: Option<&url::Url>,
        rec: &OutboxRecord,
    ) -> Tried {
        if let Err(blocked) = url.map_or(Ok(()), |u| self.guard.check_url(u)) {
            return Tried::plain(Outcome::Failed(format!("transport: {blocked}")), None);
        }
        let Some(key) = rec.key.as_deref() else {
            return self.post(conn, url, rec).await;
        };
        let update = updates::effective(
            rec.update.unwrap_or_default(),
            updates::can(conn.kind, conn.bot.is_some(), conn.forum),
        );
        match conn.kind {
            CardKind::GoogleChat => {
                let body = updates::google_chat_body(&rec.body, key, update);
                let query = [(
                    "messageReplyOption",
                    "REPLY_MESSAGE_FALLBACK_TO_NEW_THREAD".to_string(),
                )];
                let sent = self
                    .send(conn, url, &Request::webhook(body, query.to_vec()), rec)
                    .await;
                let mut tried = sent.tried();
                if tried.outcome == Outcome::Delivered {
                    // Kept for what it says (the thread); replies find their thread by key.
                    tried.reference = updates::answered_ref(conn.kind, &sent.body, false)
                        .map(|(m, place)| (self.reference(conn, rec, key, m, place), false));
                }
                tried
            }
            CardKind::Discord | CardKind::Slack | CardKind::Mattermost if update != Update::New => {
                self.keyed(conn, url, rec, key, update).await
            }
            _ => self.post(conn, url, rec).await,
        }
    }

    /// A card without a key (or whose update is `new`), as it always went.
    async fn post(&self, conn: &Connection, url: Option<&url::Url>, rec: &OutboxRecord) -> Tried {
        let (body, query) = match conn.kind {
            CardKind::Discord => (discord_send(&rec.body, conn.forum).into_owned(), Vec::new()),
            // A card with a thread key joins that thread, or starts it (Google Chat's
            // webhooks need the option in the URL; without a key it starts a new thread as
            // before).
            CardKind::GoogleChat => (
                rec.body.clone(),
                vec![(
                    "messageReplyOption",
                    "REPLY_MESSAGE_FALLBACK_TO_NEW_THREAD".to_string(),
                )],
            ),
            _ => (rec.body.clone(), Vec::new()),
        };
        self.send(conn, url, &Request::webhook(body, query), rec)
            .await
            .tried()
    }

    /// A card with a key, on a chat that edits or replies (Discord's webhook, Slack's and
    /// Mattermost's bots):
    /// posted (its message's reference kept), or its key's message edited or replied to; a
    /// message deleted meanwhile is posted anew, and its reference replaced.
    async fn keyed(
        &self,
        conn: &Connection,
        url: Option<&url::Url>,
        rec: &OutboxRecord,
        key: &str,
        update: Update,
    ) -> Tried {
        let found = match self.store.message_ref(&conn.id, key) {
            Ok(found) => found,
            Err(e) => {
                self.metrics.store_error(e.kind());
                return Tried::plain(
                    Outcome::Retry {
                        why: format!("cannot read the message reference: {}", ErrorChain(&e)),
                        throttled: false,
                        retry_after: None,
                    },
                    None,
                );
            }
        };
        let mut plan = updates::plan(update, found, &rec.id);
        let mut note = None;
        if plan == Plan::Post && updates::maybe_sent(&rec.attempt_log) {
            // An earlier attempt may have posted without its answer reaching us: find that post
            // where the chat allows (Mattermost: by the delivery id it carries), else say that
            // the card may show twice.
            let found = match (&conn.bot, conn.kind) {
                (Some(bot), CardKind::Mattermost) => self.mattermost_lookup(bot, rec).await,
                _ => None,
            };
            match found {
                Some((message, place)) => {
                    let mut tried = Tried::plain(Outcome::Delivered, None);
                    tried.note = Some(format!(
                        "an earlier attempt got no answer; its post {message} was found, not posted again"
                    ));
                    tried.reference = Some((self.reference(conn, rec, key, message, place), true));
                    return tried;
                }
                None => {
                    note = Some(
                        "an earlier attempt got no answer: if it reached the chat, this card shows twice"
                            .to_string(),
                    );
                }
            }
        }
        loop {
            if let Plan::Sent(_) = plan {
                let mut tried = Tried::plain(Outcome::Delivered, None);
                tried.note = Some("sent before a stop (its message reference says so)".into());
                return tried;
            }
            let req = match (&conn.bot, conn.kind) {
                (Some(bot), CardKind::Slack) => updates::slack_request(&plan, &rec.body, bot),
                (Some(bot), CardKind::Mattermost) => {
                    updates::mattermost_request(&plan, &rec.body, bot, rec.id.as_str())
                }
                _ => updates::discord_request(&plan, &rec.body, conn.forum),
            };
            let sent = self.send(conn, url, &req, rec).await;
            let gone = matches!(plan, Plan::Edit(_) | Plan::Reply(_))
                && sent
                    .status
                    .is_some_and(|s| updates::message_gone(conn.kind, s, &sent.body));
            if gone {
                // Deleted in the chat: a new message takes its place.
                note = Some("its key's message was deleted; posted anew".to_string());
                plan = Plan::Post;
                continue;
            }
            let mut tried = sent.tried();
            if tried.outcome != Outcome::Delivered {
                return tried;
            }
            tried.reference = match &plan {
                Plan::Edit(r) | Plan::Reply(r) => {
                    tried.note = Some(if matches!(plan, Plan::Edit(_)) {
                        format!("edited message {}", r.message)
                    } else {
                        format!("replied in thread {}", r.place.as_deref().unwrap_or("?"))
                    });
                    let used = self.reference(conn, rec, key, r.message.clone(), r.place.clone());
                    Some((used, false))
                }
                _ => {
                    tried.note = note.clone();
                    updates::answered_ref(conn.kind, &sent.body, conn.forum)
                        .map(|(m, place)| (self.reference(conn, rec, key, m, place), true))
                }
            };
            return tried;
        }
    }

    /// The post an earlier attempt of `rec` made on Mattermost, if it did: the bot's channel's
    /// posts since a minute before the card was accepted, searched for its delivery id.
    async fn mattermost_lookup(
        &self,
        bot: &crate::store::Bot,
        rec: &OutboxRecord,
    ) -> Option<(String, Option<String>)> {
        let url = format!(
            "{}channels/{}/posts?since={}",
            bot.api,
            bot.channel,
            rec.created_ms.saturating_sub(60_000)
        );
        let u = url::Url::parse(&url).ok()?;
        self.guard.check_url(&u).ok()?;
        let res = self
            .client
            .get(u)
            .bearer_auth(&bot.token)
            .send()
            .await
            .ok()?;
        if !res.status().is_success() {
            return None;
        }
        updates::mattermost_post_of(&res.text().await.ok()?, rec.id.as_str())
    }

    /// The reference a delivery of `rec` makes or uses, dated now.
    fn reference(
        &self,
        conn: &Connection,
        rec: &OutboxRecord,
        key: &str,
        message: String,
        place: Option<String>,
    ) -> MessageRef {
        MessageRef {
            connection: conn.id.clone(),
            key: key.to_string(),
            message,
            place,
            delivery: rec.id.clone(),
            at_ms: now_ms(),
        }
    }

    /// One request: its body POSTed (or PATCHed) to the connection's URL, with its path and
    /// query added, or to a chat's API with the bot's token; the answer read and classified.
    async fn send(
        &self,
        conn: &Connection,
        url: Option<&url::Url>,
        req: &Request,
        rec: &OutboxRecord,
    ) -> Sent {
        let method = match req.verb {
            updates::Verb::Post => reqwest::Method::POST,
            updates::Verb::Patch => reqwest::Method::PATCH,
            updates::Verb::Put => reqwest::Method::PUT,
        };
        let (path, query) = (req.path.as_str(), &req.query);
        let request = match (&req.api, url) {
            (Some((api, token)), _) => {
                let api = url::Url::parse(api);
                if let Err(blocked) = api.as_ref().map_or(Ok(()), |u| self.guard.check_url(u)) {
                    return Sent::failed(format!("transport: {blocked}"));
                }
                match api {
                    Ok(u) => self.client.request(method, u).bearer_auth(token),
                    Err(_) => return Sent::failed("the chat's API URL does not parse".into()),
                }
            }
            (None, Some(u)) if !query.is_empty() || !path.is_empty() => {
                let mut u = u.clone();
                if !path.is_empty() {
                    if let Ok(mut segments) = u.path_segments_mut() {
                        segments
                            .pop_if_empty()
                            .extend(path.split('/').filter(|s| !s.is_empty()));
                    }
                }
                if !query.is_empty() {
                    u.query_pairs_mut().extend_pairs(query);
                }
                self.client.request(method, u)
            }
            (None, Some(u)) => self.client.request(method, u.clone()),
            (None, None) => self.client.request(method, &conn.url),
        };
        let sent = request
            // Slack's Web API asks for the charset with JSON.
            .header(
                CONTENT_TYPE,
                match req.api {
                    Some(_) => "application/json; charset=utf-8",
                    None => "application/json",
                },
            )
            .header("Idempotency-Key", rec.id.as_str())
            .body(req.body.clone())
            .send()
            .await;
        match sent {
            Ok(res) => {
                let status = res.status().as_u16();
                let header = |name: &str| {
                    res.headers()
                        .get(name)
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_string)
                };
                let retry_after = header(RETRY_AFTER.as_str());
                let hold = bucket_wait(
                    header("x-ratelimit-remaining").as_deref(),
                    header("x-ratelimit-reset-after").as_deref(),
                );
                if conn.kind == CardKind::Discord
                    && InvalidBudget::counts(status, header("x-ratelimit-scope").as_deref())
                {
                    self.discord_invalid
                        .lock()
                        .expect("budget lock")
                        .record(now_ms());
                }
                let body = res.text().await.unwrap_or_default();
                let outcome = match (&req.api, conn.kind) {
                    (Some(_), CardKind::Mattermost) => {
                        updates::mattermost_api_outcome(status, retry_after.as_deref(), &body)
                    }
                    (Some(_), _) => {
                        updates::slack_api_outcome(status, retry_after.as_deref(), &body)
                    }
                    (None, _) => classify(conn.kind, status, retry_after.as_deref(), &body),
                };
                Sent {
                    outcome,
                    status: Some(status),
                    hold,
                    body,
                }
            }
            // The error text can contain the URL, which is a secret: keep only its kind.
            Err(e) => Sent {
                outcome: Outcome::Retry {
                    why: transport_error(&e),
                    throttled: false,
                    retry_after: None,
                },
                status: None,
                hold: None,
                body: String::new(),
            },
        }
    }
}

/// One request's answer, classified.
struct Sent {
    outcome: Outcome,
    status: Option<u16>,
    hold: Option<Duration>,
    body: String,
}

impl Sent {
    /// Not sent: why.
    fn failed(why: String) -> Self {
        Self {
            outcome: Outcome::Failed(why),
            status: None,
            hold: None,
            body: String::new(),
        }
    }

    fn tried(&self) -> Tried {
        Tried {
            outcome: self.outcome.clone(),
            status: self.status,
            hold: self.hold,
            reference: None,
            note: None,
        }
    }
}

/// What one attempt came to, and what is recorded with it.
struct Tried {
    outcome: Outcome,
    /// The HTTP status, if an answer came.
    status: Option<u16>,
    /// How long the platform's rate-limit bucket is empty, if it said.
    hold: Option<Duration>,
    /// The message reference to record with the card once delivered; `true`: a new message.
    reference: Option<(MessageRef, bool)>,
    /// What the attempt did besides a plain post (recorded in the card's attempt log).
    note: Option<String>,
}

impl Tried {
    fn plain(outcome: Outcome, status: Option<u16>) -> Self {
        Self {
            outcome,
            status,
            hold: None,
            reference: None,
            note: None,
        }
    }
}

fn transport_error(e: &reqwest::Error) -> String {
    let blocked = {
        let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
        let mut found = None;
        while let Some(s) = source {
            if let Some(b) = s.downcast_ref::<guard::Blocked>() {
                found = Some(b.to_string());
            }
            source = s.source();
        }
        found
    };
    let what = if let Some(b) = blocked {
        b
    } else if e.is_timeout() {
        "timed out".into()
    } else if e.is_connect() {
        "could not connect".into()
    } else if e.is_body() || e.is_decode() {
        "broken response body".into()
    } else {
        "request failed".into()
    };
    format!("transport: {what}")
}
