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

pub mod api;
pub mod guard;
pub mod policy;

use std::collections::{HashMap, VecDeque};
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::Rng;
use reqwest::header::{CONTENT_TYPE, RETRY_AFTER};
use tokio::sync::{Notify, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::{DeliveryConfig, PacingConfig};
use crate::connections::Connections;
use crate::error::ErrorChain;
use crate::ids::ConnectionId;
use crate::render::CardKind;
use crate::store::{now_ms, Attempt, Connection, DeadLetter, OutboxRecord};

/// What one attempt came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The target took the card.
    Delivered,
    /// Try again later; `pause` is how long the target asked the whole connection to wait
    /// (429 with Retry-After).
    Retry {
        /// What happened.
        why: String,
        /// Whether the target is throttling (429): the connection pauses.
        throttled: bool,
        /// The target's Retry-After, if it gave one.
        retry_after: Option<Duration>,
    },
    /// Trying this card again will not help (400, 413, ...).
    Failed(String),
    /// The webhook URL is gone (404, 410): the connection is broken.
    Gone(String),
}

impl Outcome {
    /// The outcome's name in metrics: delivered, retry, throttled, failed or gone.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Delivered => "delivered",
            Self::Retry {
                throttled: true, ..
            } => "throttled",
            Self::Retry { .. } => "retry",
            Self::Failed(_) => "failed",
            Self::Gone(_) => "gone",
        }
    }
}

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

/// What happens after an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Delivered: record it.
    Done,
    /// Throttled (429): the whole connection waits `wait`; the card keeps its place; the next
    /// 429 without Retry-After waits `next_backoff`.
    Pause {
        /// How long the connection waits.
        wait: Duration,
        /// The pause for the next 429 without Retry-After.
        next_backoff: Duration,
    },
    /// Try this card again after `wait` (the schedule's next step, jittered).
    Retry {
        /// How long the card waits.
        wait: Duration,
    },
    /// The webhook URL is gone: the connection is broken and its cards become dead letters.
    Break,
    /// Failed for good, or out of retries: the card becomes a dead letter.
    Bury,
}

impl Step {
    /// The live tail's name for it: delivered, retrying or dead.
    pub fn live_kind(self) -> &'static str {
        match self {
            Self::Done => "delivered",
            Self::Pause { .. } | Self::Retry { .. } => "retrying",
            Self::Break | Self::Bury => "dead",
        }
    }
}

/// The next step for a card after an attempt: `attempts` made so far (this one included), the
/// retry `schedule`, the pause for a 429 without Retry-After, and `jitter` applied to a
/// scheduled wait. Pauses double up to 10 minutes; a Retry-After is taken as given.
pub fn next_step(
    outcome: &Outcome,
    attempts: u32,
    schedule: &[Duration],
    throttle_backoff: Duration,
    jitter: impl FnOnce(Duration) -> Duration,
) -> Step {
    match outcome {
        Outcome::Delivered => Step::Done,
        Outcome::Retry {
            throttled: true,
            retry_after,
            ..
        } => Step::Pause {
            wait: retry_after.unwrap_or(throttle_backoff),
            next_backoff: (throttle_backoff * 2).min(Duration::from_secs(600)),
        },
        Outcome::Retry { .. } if attempts >= 1 && (attempts as usize) <= schedule.len() => {
            Step::Retry {
                wait: jitter(schedule[attempts as usize - 1]),
            }
        }
        Outcome::Gone(_) => Step::Break,
        Outcome::Retry { .. } | Outcome::Failed(_) => Step::Bury,
    }
}

/// Judges an answer. For the legacy connector (`teams`) only a 2xx with a numeric body, or a
/// JSON body with `"isSuccessStatusCode":true`, is a success; a 200 that says
/// `Microsoft Teams endpoint returned HTTP error NNN` is judged as status NNN. Workflows
/// (`workflow`) answer 202 and report nothing more.
///
/// Slack, Discord, Google Chat and Mattermost answer a 2xx for a posted message (`ok`, 204,
/// the message JSON). The answers that mean the webhook URL is gone for good break the
/// connection: Slack's 403/404/410 (`action_prohibited`, `no_service`, `channel_not_found`,
/// `channel_is_archived`, `team_disabled`, `invalid_token`), Discord's 401/403/404 (Unknown
/// Webhook), Google Chat's 403/404, Mattermost's 404 or `Invalid webhook`. A 429 pauses the
/// connection for `Retry-After`, or Discord's `retry_after` in the body.
pub fn classify(kind: CardKind, status: u16, retry_after: Option<&str>, body: &str) -> Outcome {
    let excerpt = excerpt(body);
    let mut status = status;
    if !kind.is_teams() {
        if (200..300).contains(&status) {
            return Outcome::Delivered;
        }
        let gone = match kind {
            CardKind::Slack => matches!(status, 403 | 404 | 410),
            CardKind::Discord => matches!(status, 401 | 403 | 404),
            CardKind::GoogleChat => matches!(status, 403 | 404),
            CardKind::Mattermost => status == 404 || body.contains("Invalid webhook"),
            CardKind::Teams | CardKind::Workflow => false,
        };
        if gone {
            return Outcome::Gone(format!("HTTP {status}: {excerpt}"));
        }
        if status == 429 {
            let in_body = serde_json::from_str::<serde_json::Value>(body)
                .ok()
                .and_then(|v| v.get("retry_after").and_then(serde_json::Value::as_f64))
                .filter(|s| s.is_finite() && *s >= 0.0)
                .map(|s| Duration::from_secs_f64(s.min(86_400.0)));
            return Outcome::Retry {
                why: format!("HTTP 429: {excerpt}"),
                throttled: true,
                retry_after: retry_after.and_then(parse_retry_after).or(in_body),
            };
        }
    }
    if (200..300).contains(&status) {
        if kind == CardKind::Workflow {
            return Outcome::Delivered;
        }
        let text = body.trim();
        if !text.is_empty() && text.parse::<f64>().is_ok() {
            return Outcome::Delivered;
        }
        if serde_json::from_str::<serde_json::Value>(text)
            .ok()
            .and_then(|v| v.get("isSuccessStatusCode").and_then(|b| b.as_bool()))
            == Some(true)
        {
            return Outcome::Delivered;
        }
        match inner_status(text) {
            Some(inner) => status = inner,
            None => {
                return Outcome::Retry {
                    why: format!("HTTP {status} without the connector's success answer: {excerpt}"),
                    throttled: false,
                    retry_after: None,
                }
            }
        }
    }
    let why = format!("HTTP {status}: {excerpt}");
    match status {
        429 => Outcome::Retry {
            why,
            throttled: true,
            retry_after: retry_after.and_then(parse_retry_after),
        },
        408 | 500..=599 if status != 501 => Outcome::Retry {
            why,
            throttled: false,
            retry_after: None,
        },
        404 | 410 => Outcome::Gone(why),
        _ => Outcome::Failed(why),
    }
}

/// The status inside the legacy connector's "200 with an error text".
fn inner_status(text: &str) -> Option<u16> {
    let rest = text.split("returned HTTP error ").nth(1)?;
    rest.split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

/// The longest wait a `Retry-After` can ask for: a day.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(86_400);

/// `Retry-After`: seconds, or an HTTP date; at most [`MAX_RETRY_AFTER`] either way.
pub fn parse_retry_after(v: &str) -> Option<Duration> {
    let v = v.trim();
    if let Ok(secs) = v.parse::<f64>() {
        return (secs >= 0.0 && secs.is_finite())
            .then(|| Duration::from_secs_f64(secs.min(MAX_RETRY_AFTER.as_secs_f64())));
    }
    let at = httpdate::parse_http_date(v).ok()?;
    Some(
        at.duration_since(std::time::SystemTime::now())
            .unwrap_or_default()
            .min(MAX_RETRY_AFTER),
    )
}

/// What pacing counts requests against: the webhook URL, except Google Chat, whose limit is
/// per space (`/v1/spaces/{space}/messages`), shared by every webhook in it.
pub fn pace_key(kind: CardKind, url: &str) -> String {
    if kind == CardKind::GoogleChat {
        if let Some(space) = url::Url::parse(url).ok().and_then(|u| {
            let mut parts = u.path_segments()?;
            (parts.next() == Some("v1") && parts.next() == Some("spaces"))
                .then(|| parts.next().map(str::to_string))
                .flatten()
        }) {
            return format!("google_chat space {space}");
        }
    }
    url.to_string()
}

/// How long to hold a connection after an answer that says its rate-limit bucket is empty:
/// Discord's `X-RateLimit-Remaining: 0` with `X-RateLimit-Reset-After` (seconds, decimals),
/// learned from every answer instead of guessed. At most a minute.
pub fn bucket_wait(remaining: Option<&str>, reset_after: Option<&str>) -> Option<Duration> {
    let remaining: u64 = remaining?.trim().parse().ok()?;
    let reset: f64 = reset_after?.trim().parse().ok()?;
    (remaining == 0 && reset.is_finite() && reset > 0.0)
        .then(|| Duration::from_secs_f64(reset.min(60.0)))
}

/// Discord bans an address that makes 10,000 invalid requests (401, 403, 429 but those of a
/// shared bucket) in 10 minutes. cardwire keeps to a tenth of that: past `limit` such answers
/// in the window, Discord deliveries wait until the oldest leaves it.
#[derive(Debug)]
pub struct InvalidBudget {
    window_ms: u64,
    limit: usize,
    seen: VecDeque<u64>,
}

impl InvalidBudget {
    /// Discord's window (10 minutes), a tenth of its limit.
    pub fn discord() -> Self {
        Self::new(10 * 60 * 1000, 1_000)
    }

    /// At most `limit` invalid answers in any `window_ms`.
    pub fn new(window_ms: u64, limit: usize) -> Self {
        Self {
            window_ms,
            limit,
            seen: VecDeque::new(),
        }
    }

    /// Whether an answer counts: 401, 403, or a 429 not of a shared bucket.
    pub fn counts(status: u16, scope: Option<&str>) -> bool {
        matches!(status, 401 | 403) || (status == 429 && scope != Some("shared"))
    }

    /// Notes an invalid answer at `now_ms`.
    pub fn record(&mut self, now_ms: u64) {
        self.seen.push_back(now_ms);
    }

    /// How long to wait before the next request at `now_ms` (zero: go).
    pub fn wait(&mut self, now_ms: u64) -> Duration {
        while self
            .seen
            .front()
            .is_some_and(|t| now_ms.saturating_sub(*t) >= self.window_ms)
        {
            self.seen.pop_front();
        }
        if self.seen.len() < self.limit {
            return Duration::ZERO;
        }
        let oldest = self.seen[self.seen.len() - self.limit];
        Duration::from_millis((oldest + self.window_ms).saturating_sub(now_ms))
    }
}

/// A Discord card as it goes to its connection: the body, what to add to the URL's query, and
/// the name of the thread it opens (whose id the answer gives). Outside a forum channel the
/// card's `thread_name` is dropped (Discord refuses it there). In a forum every message is a
/// thread: a card replies in its thread once it is known (`thread_id`), else opens it
/// (`thread_name`: its key, or its title) with `wait=true` so that the answer names it.
pub fn discord_send<'a>(
    body: &'a str,
    forum: bool,
    threads: &[(String, String)],
) -> (
    std::borrow::Cow<'a, str>,
    Vec<(&'static str, String)>,
    Option<String>,
) {
    use std::borrow::Cow;
    if !forum && !body.contains("\"thread_name\"") {
        return (Cow::Borrowed(body), Vec::new(), None);
    }
    let Ok(mut v) = serde_json::from_str::<serde_json::Value>(body) else {
        return (Cow::Borrowed(body), Vec::new(), None);
    };
    let key = v
        .as_object_mut()
        .and_then(|o| o.remove("thread_name"))
        .and_then(|t| t.as_str().map(str::to_string));
    if !forum {
        return (Cow::Owned(v.to_string()), Vec::new(), None);
    }
    let name = key
        .or_else(|| {
            v.pointer("/embeds/0/title")
                .and_then(serde_json::Value::as_str)
                .map(|t| crate::render::truncate_text(t, 100))
        })
        .unwrap_or_else(|| "cardwire".into());
    if let Some((_, id)) = threads.iter().rev().find(|(n, _)| *n == name) {
        return (
            Cow::Owned(v.to_string()),
            vec![("thread_id", id.clone())],
            None,
        );
    }
    v["thread_name"] = serde_json::Value::String(name.clone());
    (
        Cow::Owned(v.to_string()),
        vec![("wait", "true".into())],
        Some(name),
    )
}

/// The forum threads a connection keeps (the newest).
const KEEP_THREADS: usize = 500;

/// A wait from the schedule, ±20 %.
pub fn jittered(d: Duration, rng: &mut impl Rng) -> Duration {
    d.mul_f64(rng.random_range(0.8..=1.2))
}

fn excerpt(body: &str) -> String {
    crate::render::truncate_text(body.trim(), 200)
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
            let (outcome, status, hold) = self.attempt(&conn, url, &rec).await;
            drop(permit);
            self.metrics
                .delivery(&con, outcome.label(), started.elapsed());
            if self.settle(&con, (key, rec), (outcome, status), &mut queue) == Settled::StoreBroken
            {
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
        (outcome, status): (Outcome, Option<u16>),
        queue: &mut Queue,
    ) -> Settled {
        let Queue {
            throttle_backoff,
            ahead,
        } = queue;
        rec.attempts += 1;
        rec.attempt_log.push(Attempt {
            at_ms: now_ms(),
            status,
            result: match &outcome {
                Outcome::Delivered => "delivered".into(),
                Outcome::Retry { why, .. } | Outcome::Failed(why) | Outcome::Gone(why) => {
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
        let result = match step {
            Step::Done => {
                *throttle_backoff = Duration::from_secs(1);
                tracing::debug!(connection = %con, delivery = %rec.id, attempts = rec.attempts, "card delivered");
                self.connections.delivered(con);
                self.store.deliver(&key, &rec)
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

    /// Keeps the id of a Discord forum thread a card opened (the answer's `channel_id`), so
    /// that the next cards with its name reply in it.
    fn learn_thread(&self, conn: &Connection, name: String, answer: &str) {
        let id = serde_json::from_str::<serde_json::Value>(answer)
            .ok()
            .and_then(|v| v.get("channel_id")?.as_str().map(str::to_string));
        let Some(id) = id else { return };
        let kept = self.connections.update(&conn.id, |c| {
            c.threads.retain(|(n, _)| *n != name);
            c.threads.push((name, id));
            let over = c.threads.len().saturating_sub(KEEP_THREADS);
            c.threads.drain(..over);
        });
        if let Err(e) = kept {
            tracing::warn!(connection = %conn.id, error = %ErrorChain(&e), "cannot keep a forum thread's id");
        }
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
    /// fails as a transport error like any other).
    async fn attempt(
        &self,
        conn: &Connection,
        url: Option<&url::Url>,
        rec: &OutboxRecord,
    ) -> (Outcome, Option<u16>, Option<Duration>) {
        if let Err(blocked) = url.map_or(Ok(()), |u| self.guard.check_url(u)) {
            return (Outcome::Failed(format!("transport: {blocked}")), None, None);
        }
        let (body, query, opens) = match conn.kind {
            CardKind::Discord => discord_send(&rec.body, conn.forum, &conn.threads),
            // A card with a thread key joins that thread, or starts it (Google Chat's
            // webhooks need the option in the URL; without a key it starts a new thread as
            // before).
            CardKind::GoogleChat => (
                std::borrow::Cow::Borrowed(rec.body.as_str()),
                vec![(
                    "messageReplyOption",
                    "REPLY_MESSAGE_FALLBACK_TO_NEW_THREAD".to_string(),
                )],
                None,
            ),
            _ => (
                std::borrow::Cow::Borrowed(rec.body.as_str()),
                Vec::new(),
                None,
            ),
        };
        let request = match url {
            Some(u) if !query.is_empty() => {
                let mut u = u.clone();
                u.query_pairs_mut().extend_pairs(&query);
                self.client.post(u)
            }
            Some(u) => self.client.post(u.clone()),
            None => self.client.post(&conn.url),
        };
        let body = match body {
            std::borrow::Cow::Borrowed(_) => rec.body.clone(),
            std::borrow::Cow::Owned(b) => b,
        };
        let sent = request
            .header(CONTENT_TYPE, "application/json")
            .header("Idempotency-Key", rec.id.as_str())
            .body(body)
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
                let outcome = classify(conn.kind, status, retry_after.as_deref(), &body);
                if let (Outcome::Delivered, Some(name)) = (&outcome, opens) {
                    self.learn_thread(conn, name, &body);
                }
                (outcome, Some(status), hold)
            }
            // The error text can contain the URL, which is a secret: keep only its kind.
            Err(e) => (
                Outcome::Retry {
                    why: transport_error(&e),
                    throttled: false,
                    retry_after: None,
                },
                None,
                None,
            ),
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

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn google_chat_is_paced_per_space_the_others_per_url() {
        let a = "https://chat.googleapis.com/v1/spaces/AAA/messages?key=k&token=t1";
        let b = "https://chat.googleapis.com/v1/spaces/AAA/messages?key=k&token=t2";
        let c = "https://chat.googleapis.com/v1/spaces/BBB/messages?key=k&token=t1";
        assert_eq!(
            pace_key(CardKind::GoogleChat, a),
            pace_key(CardKind::GoogleChat, b)
        );
        assert_ne!(
            pace_key(CardKind::GoogleChat, a),
            pace_key(CardKind::GoogleChat, c)
        );
        let s = "https://hooks.slack.com/services/T/B/x";
        assert_eq!(pace_key(CardKind::Slack, s), s);
        // Not Google Chat's shape (a test receiver): the URL.
        assert_eq!(
            pace_key(CardKind::GoogleChat, "http://127.0.0.1:9/chat"),
            "http://127.0.0.1:9/chat"
        );
    }

    #[test]
    fn discord_threads_only_in_a_forum() {
        let card = r#"{"embeds":[{"title":"T"}],"thread_name":"repo main"}"#;
        // Outside a forum: the thread name is dropped.
        let (body, query, opens) = discord_send(card, false, &[]);
        assert!(!body.contains("thread_name") && query.is_empty() && opens.is_none());
        // A card without one is sent as it is.
        let plain = r#"{"embeds":[{"title":"T"}]}"#;
        assert!(matches!(
            discord_send(plain, false, &[]).0,
            std::borrow::Cow::Borrowed(_)
        ));
        // In a forum: it opens its thread, waiting for the answer that names it...
        let (body, query, opens) = discord_send(card, true, &[]);
        assert!(body.contains(r#""thread_name":"repo main""#));
        assert_eq!(query, vec![("wait", "true".to_string())]);
        assert_eq!(opens.as_deref(), Some("repo main"));
        // ...then replies in it.
        let known = [("repo main".to_string(), "1234".to_string())];
        let (body, query, opens) = discord_send(card, true, &known);
        assert!(!body.contains("thread_name"));
        assert_eq!(query, vec![("thread_id", "1234".to_string())]);
        assert!(opens.is_none());
        // A card without a key opens a thread named by its title.
        let (body, _, opens) = discord_send(plain, true, &[]);
        assert!(body.contains(r#""thread_name":"T""#));
        assert_eq!(opens.as_deref(), Some("T"));
    }

    #[test]
    fn an_empty_bucket_holds_until_its_reset() {
        assert_eq!(
            bucket_wait(Some("0"), Some("1.25")),
            Some(Duration::from_millis(1250))
        );
        assert_eq!(bucket_wait(Some("3"), Some("1.25")), None);
        assert_eq!(bucket_wait(Some("0"), None), None);
        assert_eq!(bucket_wait(None, Some("2")), None);
        assert_eq!(bucket_wait(Some("0"), Some("NaN")), None);
        assert_eq!(
            bucket_wait(Some("0"), Some("86400")),
            Some(Duration::from_secs(60))
        );
    }

    #[test]
    fn the_invalid_request_budget_stays_far_from_discords_ban() {
        assert!(InvalidBudget::counts(401, None));
        assert!(InvalidBudget::counts(403, None));
        assert!(InvalidBudget::counts(429, Some("user")));
        assert!(!InvalidBudget::counts(429, Some("shared")));
        assert!(!InvalidBudget::counts(404, None));
        let mut b = InvalidBudget::new(1_000, 3);
        for t in [0, 100, 200] {
            assert_eq!(b.wait(t), Duration::ZERO);
            b.record(t);
        }
        // A fourth would pass the limit: wait until the first leaves the window.
        assert_eq!(b.wait(300), Duration::from_millis(700));
        assert_eq!(b.wait(1_000), Duration::ZERO);
        // Discord's: 1,000 in 10 minutes, a tenth of the 10,000 that bans.
        let mut d = InvalidBudget::discord();
        for t in 0..1_000 {
            d.record(t);
        }
        assert!(d.wait(1_000) > Duration::from_secs(590));
    }

    fn retry(throttled: bool, after: Option<u64>) -> impl Fn(&Outcome) -> bool {
        move |o| matches!(o, Outcome::Retry { throttled: t, retry_after: a, .. } if *t == throttled && *a == after.map(Duration::from_secs))
    }

    #[test]
    fn the_next_step_after_each_outcome() {
        let schedule = [Duration::from_secs(10), Duration::from_secs(60)];
        let second = Duration::from_secs(1);
        let same = |d| d;
        let step = |o: &Outcome, attempts| next_step(o, attempts, &schedule, second, same);
        let failed = Outcome::Retry {
            why: "HTTP 500".into(),
            throttled: false,
            retry_after: None,
        };
        assert_eq!(step(&Outcome::Delivered, 1), Step::Done);
        assert_eq!(step(&failed, 1), Step::Retry { wait: schedule[0] });
        assert_eq!(step(&failed, 2), Step::Retry { wait: schedule[1] });
        assert_eq!(step(&failed, 3), Step::Bury, "out of retries");
        assert_eq!(step(&Outcome::Failed("HTTP 400".into()), 1), Step::Bury);
        assert_eq!(step(&Outcome::Gone("HTTP 410".into()), 1), Step::Break);
        // A 429: the connection pauses as asked, or doubles its own pause up to 10 minutes,
        // whatever the attempts, and the card keeps its place.
        let throttled = |after| Outcome::Retry {
            why: "HTTP 429".into(),
            throttled: true,
            retry_after: after,
        };
        assert_eq!(
            step(&throttled(Some(Duration::from_secs(30))), 9),
            Step::Pause {
                wait: Duration::from_secs(30),
                next_backoff: Duration::from_secs(2)
            }
        );
        assert_eq!(
            next_step(
                &throttled(None),
                1,
                &schedule,
                Duration::from_secs(400),
                same
            ),
            Step::Pause {
                wait: Duration::from_secs(400),
                next_backoff: Duration::from_secs(600)
            }
        );
        // The scheduled wait goes through the jitter.
        assert_eq!(
            next_step(&failed, 1, &schedule, second, |d| d * 2),
            Step::Retry {
                wait: Duration::from_secs(20)
            }
        );
        assert_eq!(
            [Step::Done, step(&failed, 1), step(&failed, 3)].map(Step::live_kind),
            ["delivered", "retrying", "dead"]
        );
    }

    #[test]
    fn answers_are_judged_as_teams_means_them() {
        use CardKind::*;
        assert_eq!(classify(Teams, 200, None, "1"), Outcome::Delivered);
        assert_eq!(
            classify(
                Teams,
                200,
                None,
                r#"{"isSuccessStatusCode":true,"statusCode":200}"#
            ),
            Outcome::Delivered
        );
        let legacy429 = classify(Teams, 200, None, "Webhook message delivery failed with error: Microsoft Teams endpoint returned HTTP error 429 with ContextId x");
        assert!(retry(true, None)(&legacy429), "{legacy429:?}");
        let legacy400 = classify(Teams, 200, None, "Webhook message delivery failed with error: Microsoft Teams endpoint returned HTTP error 400 with ContextId x");
        assert!(matches!(legacy400, Outcome::Failed(_)), "{legacy400:?}");
        assert!(retry(false, None)(&classify(Teams, 200, None, "")));
        assert_eq!(classify(Workflow, 202, None, ""), Outcome::Delivered);
        assert!(retry(true, Some(2))(&classify(
            Workflow,
            429,
            Some("2"),
            ""
        )));
        assert!(retry(false, None)(&classify(Workflow, 503, None, "")));
        assert!(retry(false, None)(&classify(Workflow, 408, None, "")));
        assert!(matches!(
            classify(Workflow, 501, None, ""),
            Outcome::Failed(_)
        ));
        assert!(matches!(
            classify(Teams, 400, None, "Summary or Text is required"),
            Outcome::Failed(_)
        ));
        assert!(matches!(classify(Teams, 413, None, ""), Outcome::Failed(_)));
        assert!(matches!(classify(Teams, 410, None, ""), Outcome::Gone(_)));
        assert!(matches!(classify(Teams, 404, None, ""), Outcome::Gone(_)));
    }

    /// Each platform's answers, from its documentation (render::portable's sources in
    /// ../shared/reference/more-chats.md): success, a URL that is gone, throttling, failure.
    #[test]
    fn answers_are_judged_as_each_platform_means_them() {
        use CardKind::*;
        assert_eq!(classify(Slack, 200, None, "ok"), Outcome::Delivered);
        for (status, body) in [
            (404, "no_service"),
            (404, "channel_not_found"),
            (410, "channel_is_archived"),
            (403, "action_prohibited"),
        ] {
            assert!(
                matches!(classify(Slack, status, None, body), Outcome::Gone(_)),
                "{body}"
            );
        }
        assert!(matches!(
            classify(Slack, 400, None, "invalid_payload"),
            Outcome::Failed(_)
        ));
        assert!(retry(false, None)(&classify(
            Slack,
            500,
            None,
            "rollup_error"
        )));
        assert!(retry(true, Some(30))(&classify(Slack, 429, Some("30"), "")));

        assert_eq!(classify(Discord, 204, None, ""), Outcome::Delivered);
        assert!(matches!(
            classify(
                Discord,
                404,
                None,
                r#"{"message": "Unknown Webhook", "code": 10015}"#
            ),
            Outcome::Gone(_)
        ));
        let throttled = classify(
            Discord,
            429,
            None,
            r#"{"message": "You are being rate limited.", "retry_after": 1.5, "global": false}"#,
        );
        assert!(
            matches!(&throttled, Outcome::Retry { throttled: true, retry_after: Some(d), .. } if *d == Duration::from_millis(1500)),
            "{throttled:?}"
        );
        assert!(
            retry(true, Some(2))(&classify(Discord, 429, Some("2"), r#"{"retry_after": 9}"#)),
            "the header first"
        );
        assert!(matches!(
            classify(Discord, 400, None, r#"{"code": 50006}"#),
            Outcome::Failed(_)
        ));

        assert_eq!(
            classify(GoogleChat, 200, None, r#"{"name": "spaces/x/messages/y"}"#),
            Outcome::Delivered
        );
        assert!(matches!(
            classify(
                GoogleChat,
                403,
                None,
                r#"{"error": {"code": 403, "status": "PERMISSION_DENIED"}}"#
            ),
            Outcome::Gone(_)
        ));
        assert!(retry(true, None)(&classify(
            GoogleChat,
            429,
            None,
            r#"{"error": {"code": 429}}"#
        )));

        assert_eq!(classify(Mattermost, 200, None, "ok"), Outcome::Delivered);
        assert!(matches!(
            classify(
                Mattermost,
                400,
                None,
                r#"{"id": "web.incoming_webhook.invalid.app_error", "message": "Invalid webhook"}"#
            ),
            Outcome::Gone(_)
        ));
        assert!(matches!(
            classify(Mattermost, 400, None, "Couldn't find the channel"),
            Outcome::Failed(_)
        ));
    }

    #[test]
    fn retry_after_in_seconds_or_as_a_date() {
        assert_eq!(parse_retry_after("2"), Some(Duration::from_secs(2)));
        // A date years ahead waits a day, as a number of seconds that large does.
        assert_eq!(
            parse_retry_after("Fri, 31 Dec 9999 23:59:59 GMT"),
            Some(MAX_RETRY_AFTER)
        );
        assert_eq!(parse_retry_after("99999999"), Some(MAX_RETRY_AFTER));
        assert_eq!(parse_retry_after("1.5"), Some(Duration::from_millis(1500)));
        let soon = httpdate::fmt_http_date(std::time::SystemTime::now() + Duration::from_secs(30));
        let d = parse_retry_after(&soon).unwrap();
        assert!(
            d <= Duration::from_secs(30) && d >= Duration::from_secs(28),
            "{d:?}"
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon"), None);
    }

    #[test]
    fn the_schedule_is_jittered_within_twenty_percent() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let base = Duration::from_secs(30);
        let waits: Vec<Duration> = (0..1000).map(|_| jittered(base, &mut rng)).collect();
        assert!(waits
            .iter()
            .all(|w| *w >= base.mul_f64(0.8) && *w <= base.mul_f64(1.2)));
        let spread =
            waits.iter().max().unwrap().as_secs_f64() - waits.iter().min().unwrap().as_secs_f64();
        assert!(spread > 10.0, "the jitter spreads retries: {spread}");
        let total: Duration = crate::config::DeliveryConfig::default()
            .retry_schedule
            .iter()
            .sum();
        assert!(
            (16..=18).contains(&(total.as_secs() / 3600)),
            "about 17 hours: {total:?}"
        );
    }
}
