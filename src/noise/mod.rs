//! Noise control: value over noise, without losing information.
//!
//! Between rendering and the outbox, for each matching rule and connection:
//! 1. **Dedup** (`dedup: {key, window}`): a repeat of the same key inside the window is dropped
//!    and counted. Keys are kept in sled, so a restart does not forget them.
//! 2. **Limits that fold** (`limit: {rate, burst, per}`): governor keyed limiters, one per rule,
//!    keyed by the `per` value. What exceeds the limit is not dropped but *folded*: kept in sled
//!    (title and link) in a bucket that is due when the limiter allows again; then one summary
//!    card — "…and 45 more push events to org/repo in the last 12 minutes" — lists the first of
//!    them and counts the rest.
//! 3. **Teams' caps** (100 per hour, 1800 per day per webhook URL) feed the same mechanism: a
//!    connection at its cap folds its cards instead of being throttled by Teams.
//! 4. **Digests** (per connection, `{every}` or `{at, days, tz}`): the cards of rules with
//!    `digest: true` (the default) wait in sled and go out as one digest card, grouped by rule and
//!    repository, at the chosen time; nothing is sent for an empty period, and a digest that fell
//!    due while cardwire was down is sent at start.
//!
//! Time comes from a governor clock, so tests drive limits, folds and digests with a fake clock.
//! Digest schedules (`every`, or `at` on days in a time zone) are read in [`schedule`].

pub mod schedule;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use governor::clock::{Clock, DefaultClock, Reference};
use governor::middleware::NoOpMiddleware;
use governor::state::keyed::HashMapStateStore;
use governor::{Quota, RateLimiter};
use serde::Serialize;
use serde_json::{json, Value};

use crate::ids::{ConnectionId, EventId};
use crate::render::Renderer;
use crate::rules::{Limit, Rule};
use crate::store::{Bucket, Connection, Item, OutboxRecord, StoreError};
use schedule::Schedule;

type Keyed<C> =
    RateLimiter<String, HashMapStateStore<String>, C, NoOpMiddleware<<C as Clock>::Instant>>;
/// Per owner (a rule, or a connection): the limit its limiter was made for, and the limiter.
type Limiters<C> = Mutex<HashMap<String, (Limit, Arc<Keyed<C>>)>>;

/// Teams' caps per webhook URL: 100 per hour, 1800 per day.
const CAPS: [(u32, u64); 2] = [(100, 3600), (1800, 86_400)];
/// How many folded events a summary names.
pub const SUMMARY_ITEMS: usize = 10;

/// What noise control decided for a card.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Send it now.
    Send,
    /// Folded into a summary.
    Folded,
    /// Waiting for the connection's digest.
    Digested,
}

/// Per rule, since the gateway started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct RuleStats {
    /// Repeats dropped by dedup.
    pub deduped: u64,
    /// Cards folded into summaries.
    pub folded: u64,
}

/// Noise control's state.
pub struct Noise<C: Clock = DefaultClock> {
    store: crate::store::SharedStore,
    clock: C,
    origin: C::Instant,
    origin_ms: u64,
    limiters: Limiters<C>,
    caps: Vec<Keyed<C>>,
    /// Per connection with a `limit`: the rate its limiter was made for, and the limiter.
    connection_limits: Limiters<C>,
    stats: Mutex<HashMap<String, RuleStats>>,
}

impl Noise<DefaultClock> {
    /// Noise control on the real clock; `caps` applies Teams' hourly and daily caps (off with
    /// `delivery.pacing: false`, for tests and benchmarks).
    pub fn new(store: crate::store::SharedStore, caps: bool) -> Self {
        let mut n = Self::with_clock(store, DefaultClock::default());
        if !caps {
            n.caps.clear();
        }
        n
    }
}

impl<C: Clock + Clone> Noise<C> {
    /// Noise control on a given clock (a fake one in tests).
    pub fn with_clock(store: crate::store::SharedStore, clock: C) -> Self {
        let caps = CAPS
            .iter()
            .filter_map(|(n, secs)| {
                Quota::with_period(Duration::from_secs(*secs) / *n).map(|q| {
                    q.allow_burst(std::num::NonZeroU32::new(*n).expect("caps are positive"))
                })
            })
            .map(|q| RateLimiter::hashmap_with_clock(q, clock.clone()))
            .collect();
        Self {
            store,
            origin: clock.now(),
            origin_ms: crate::store::now_ms(),
            clock,
            limiters: Mutex::new(HashMap::new()),
            caps,
            connection_limits: Mutex::new(HashMap::new()),
            stats: Mutex::new(HashMap::new()),
        }
    }

    /// Now, in Unix milliseconds, on this clock.
    pub fn now_ms(&self) -> u64 {
        let elapsed: Duration = self.clock.now().duration_since(self.origin).into();
        self.origin_ms + elapsed.as_millis() as u64
    }

    fn stat(&self, rule: &str, f: impl FnOnce(&mut RuleStats)) {
        f(self
            .stats
            .lock()
            .expect("stats lock")
            .entry(rule.to_string())
            .or_default());
    }

    /// A rule's counters.
    pub fn stats(&self, rule: &str) -> RuleStats {
        self.stats
            .lock()
            .expect("stats lock")
            .get(rule)
            .copied()
            .unwrap_or_default()
    }

    /// Whether the event is a repeat of `key` inside the rule's dedup window (then counted).
    pub fn is_duplicate(
        &self,
        rule: &Rule,
        key: &str,
        window: Duration,
    ) -> Result<bool, StoreError> {
        let now = self.now_ms();
        let dup = !self.store.dedup_claim(
            &format!("{}|{key}", rule.name),
            now,
            now + window.as_millis() as u64,
        )?;
        if dup {
            self.stat(&rule.name, |s| s.deduped += 1);
        }
        Ok(dup)
    }

    /// Whether the rule's limit lets one more card through for `per`; if not, when it will.
    pub fn limit_allows(&self, rule: &Rule, limit: &Limit, per: &str) -> Result<(), u64> {
        self.keyed_allows(&self.limiters, ("rule", &rule.name), limit, per)
    }

    /// Whether a connection's own `limit` lets one more card through; if not, when it will.
    pub fn connection_allows(&self, conn: &Connection) -> Result<(), u64> {
        let Some(rate) = &conn.limit else {
            return Ok(());
        };
        let Ok((count, period)) = crate::units::parse_rate(rate) else {
            return Ok(());
        };
        let limit = Limit {
            count,
            period,
            burst: count,
            per: None,
        };
        self.keyed_allows(
            &self.connection_limits,
            ("connection", conn.id.as_str()),
            &limit,
            "",
        )
    }

    /// The one keyed limiter behind rule and connection limits: the limiter of `owner` (made
    /// afresh when its limit changed, as on a reload) lets one more card for `key` through, or
    /// says when it will (Unix milliseconds). `scope` names the kind of owner.
    ///
    /// A store that several instances share keeps the limit (its key names the limit, so a
    /// changed limit starts afresh there too): 5/1m is 5 cards however the events are spread
    /// over the instances.
    fn keyed_allows(
        &self,
        limiters: &Limiters<C>,
        (scope, owner): (&str, &str),
        limit: &Limit,
        key: &str,
    ) -> Result<(), u64> {
        let interval = (limit.period / limit.count.max(1)).as_millis() as u64;
        if let Some(shared) = self.shared_limit(
            &format!(
                "{scope}|{owner}|{}/{}ms/{}|{key}",
                limit.count,
                limit.period.as_millis(),
                limit.burst
            ),
            interval,
            limit.burst,
        ) {
            return shared;
        }
        let limiter = {
            let mut all = limiters.lock().expect("limiters lock");
            let entry = all
                .entry(owner.to_string())
                .or_insert_with(|| (limit.clone(), Arc::new(keyed(limit, &self.clock))));
            if &entry.0 != limit {
                *entry = (limit.clone(), Arc::new(keyed(limit, &self.clock)));
            }
            entry.1.clone()
        };
        limiter
            .check_key(&key.to_string())
            .map(drop)
            .map_err(|not_until| {
                self.now_ms() + not_until.wait_time_from(self.clock.now()).as_millis() as u64
            })
    }

    /// The store's shared limit for `key`, if the store keeps limits (PostgreSQL); `None`
    /// also when it cannot answer now (logged), and the limiter in memory decides.
    fn shared_limit(&self, key: &str, interval_ms: u64, burst: u32) -> Option<Result<(), u64>> {
        match self
            .store
            .limit_take(key, self.now_ms(), interval_ms.max(1), burst)
        {
            Ok(answer) => answer,
            Err(e) => {
                tracing::warn!(error = %crate::error::ErrorChain(&e), "cannot read a shared rate limit; this instance's own decides");
                None
            }
        }
    }

    /// Whether a connection is under Teams' caps; if not, when it will be.
    pub fn cap_allows(&self, con: &ConnectionId) -> Result<(), u64> {
        if !self.caps.is_empty() {
            let mut shared = None;
            for (n, secs) in CAPS {
                let answer = self.shared_limit(
                    &format!("cap|{n}/{secs}s|{con}"),
                    secs * 1000 / u64::from(n),
                    n,
                );
                match answer {
                    Some(Err(at)) => return Err(at),
                    Some(Ok(())) => shared = Some(()),
                    None => break,
                }
            }
            if shared.is_some() {
                return Ok(());
            }
        }
        for cap in &self.caps {
            if let Err(not_until) = cap.check_key(&con.to_string()) {
                return Err(
                    self.now_ms() + not_until.wait_time_from(self.clock.now()).as_millis() as u64
                );
            }
        }
        Ok(())
    }

    /// Folds a card into its bucket (made if needed, due at `due_ms`).
    pub fn fold(&self, mut bucket: Bucket, item: &Item) -> Result<(), StoreError> {
        if let Some(existing) = self.store.fold_bucket(&bucket.id)? {
            // The bucket is due when its first fold said: one summary for the whole burst.
            bucket.first_ms = existing.first_ms;
            bucket.due_ms = existing.due_ms;
        }
        self.store.put_fold(&bucket, item)?;
        self.stat(&item.rule, |s| s.folded += 1);
        Ok(())
    }

    /// Decides what happens to one rendered card for one connection: folded by the rule's
    /// limit (`limited` is when it allows again) or the connection's cap, kept for a digest, or
    /// sent.
    pub fn decide(
        &self,
        rule: &Rule,
        conn: &Connection,
        limited: Option<(String, u64)>,
        item: impl FnOnce() -> Item,
    ) -> Result<Decision, StoreError> {
        let now = self.now_ms();
        if let Some((per, due)) = limited {
            let bucket = Bucket {
                id: format!("limit|{}|{per}|{}", rule.name, conn.id),
                rule: rule.name.clone(),
                per,
                connection: conn.id.clone(),
                kind: conn.kind,
                due_ms: due,
                first_ms: now,
                reason: "limit".into(),
            };
            self.fold(bucket, &item())?;
            return Ok(Decision::Folded);
        }
        if conn.digest.is_some() && rule.digest {
            self.store.put_digest_item(&conn.id, &item())?;
            return Ok(Decision::Digested);
        }
        if let Err(due) = self.connection_allows(conn) {
            let bucket = Bucket {
                id: format!("connection|{}", conn.id),
                rule: rule.name.clone(),
                per: String::new(),
                connection: conn.id.clone(),
                kind: conn.kind,
                due_ms: due,
                first_ms: now,
                reason: "connection".into(),
            };
            self.fold(bucket, &item())?;
            return Ok(Decision::Folded);
        }
        // Teams' caps are Teams': the other platforms pace per second and answer 429.
        let capped = if conn.kind.is_teams() {
            self.cap_allows(&conn.id)
        } else {
            Ok(())
        };
        if let Err(due) = capped {
            let bucket = Bucket {
                id: format!("cap|{}", conn.id),
                rule: rule.name.clone(),
                per: String::new(),
                connection: conn.id.clone(),
                kind: conn.kind,
                due_ms: due,
                first_ms: now,
                reason: "cap".into(),
            };
            self.fold(bucket, &item())?;
            return Ok(Decision::Folded);
        }
        Ok(Decision::Send)
    }

    /// Queues the summaries and digests that are due; returns the connections to wake.
    pub fn tick(
        &self,
        renderer: &Renderer,
        connections: &[Connection],
    ) -> Result<Vec<ConnectionId>, StoreError> {
        let now = self.now_ms();
        let mut wake = Vec::new();
        for bucket in self.store.fold_buckets_due(now)? {
            let Some(conn) = connections.iter().find(|c| c.id == bucket.connection) else {
                self.store.take_folds(&bucket.id)?; // the connection is gone
                continue;
            };
            let items = self.store.take_folds(&bucket.id)?;
            if items.is_empty() {
                continue;
            }
            let ctx = summary_context(&bucket, &items, now);
            self.queue(
                renderer,
                "noise/summary",
                conn,
                &bucket.rule,
                &ctx,
                shared_subject(&items),
            )?;
            wake.push(conn.id.clone());
        }
        for conn in connections {
            let Some(schedule) = conn.digest.as_ref().and_then(|s| Schedule::parse(s).ok()) else {
                // No digest (any more): what was waiting for one goes out now.
                let items = self.store.take_digest_items(&conn.id)?;
                if !items.is_empty() {
                    self.queue(
                        renderer,
                        "digest/digest",
                        conn,
                        "digest",
                        &digest_context(conn, &items, now),
                        None,
                    )?;
                    wake.push(conn.id.clone());
                }
                continue;
            };
            let due = match self.store.digest_due(&conn.id)? {
                Some(d) => d,
                None => {
                    let first = schedule.next_after(ts(now)).as_millisecond() as u64;
                    self.store.set_digest_due(&conn.id, first)?;
                    first
                }
            };
            if due > now {
                continue;
            }
            let items = self.store.take_digest_items(&conn.id)?;
            if !items.is_empty() {
                let ctx = digest_context(conn, &items, now);
                self.queue(renderer, "digest/digest", conn, "digest", &ctx, None)?;
                wake.push(conn.id.clone());
            }
            // A digest missed while down goes out now (above); the next is the next on the
            // schedule after now, not a backlog of missed ones.
            self.store.set_digest_due(
                &conn.id,
                schedule.next_after(ts(now)).as_millisecond() as u64,
            )?;
        }
        Ok(wake)
    }

    fn queue(
        &self,
        renderer: &Renderer,
        template: &str,
        conn: &Connection,
        rule: &str,
        ctx: &Value,
        subject: Option<(String, crate::render::Update)>,
    ) -> Result<(), StoreError> {
        let body = match renderer.render(template, conn.kind, ctx) {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(connection = %conn.id, template, error = %e, "a summary or digest did not render");
                return Ok(());
            }
        };
        let (key, update) = subject.map_or((None, None), |(k, u)| (Some(k), Some(u)));
        self.store.enqueue(&OutboxRecord {
            key,
            update,
            ..OutboxRecord::new(
                EventId::new(),
                conn.id.clone(),
                rule,
                conn.kind,
                body,
                self.now_ms(),
            )
        })?;
        Ok(())
    }
}

/// The key the folded cards share, with their update: a summary of one subject's cards
/// changes that subject's message; a summary of several subjects (or of cards without a
/// key) is a message of its own.
pub fn shared_subject(items: &[Item]) -> Option<(String, crate::render::Update)> {
    let first = items.first()?.subject.clone()?;
    items
        .iter()
        .all(|i| i.subject.as_ref() == Some(&first))
        .then_some(first)
}

fn keyed<C: Clock + Clone>(limit: &Limit, clock: &C) -> Keyed<C> {
    let quota = Quota::with_period(limit.period / limit.count.max(1))
        .unwrap_or_else(|| Quota::per_second(std::num::NonZeroU32::MIN))
        .allow_burst(std::num::NonZeroU32::new(limit.burst.max(1)).expect("at least 1"));
    RateLimiter::hashmap_with_clock(quota, clock.clone())
}

fn ts(ms: u64) -> jiff::Timestamp {
    jiff::Timestamp::from_millisecond(ms as i64).unwrap_or(jiff::Timestamp::UNIX_EPOCH)
}

fn minutes(from_ms: u64, to_ms: u64) -> u64 {
    (to_ms.saturating_sub(from_ms) / 60_000).max(1)
}

/// What the summary template sees.
pub fn summary_context(bucket: &Bucket, items: &[Item], now: u64) -> Value {
    let event = items.first().map(|i| i.event.clone()).unwrap_or_default();
    let shown: Vec<&Item> = items.iter().take(SUMMARY_ITEMS).collect();
    json!({
        "reason": bucket.reason,
        "rule": bucket.rule,
        "per": bucket.per,
        "event": event,
        "count": items.len(),
        "items": shown,
        "more": items.len().saturating_sub(shown.len()),
        "minutes": minutes(bucket.first_ms, now),
    })
}

/// What the digest template sees: items grouped by rule and repository.
pub fn digest_context(conn: &Connection, items: &[Item], now: u64) -> Value {
    let mut groups: Vec<(String, String, Vec<&Item>)> = Vec::new();
    for item in items {
        match groups
            .iter_mut()
            .find(|(r, repo, _)| *r == item.rule && *repo == item.repository)
        {
            Some(g) => g.2.push(item),
            None => groups.push((item.rule.clone(), item.repository.clone(), vec![item])),
        }
    }
    let since = items.iter().map(|i| i.at_ms).min().unwrap_or(now);
    json!({
        "connection": conn.name,
        "count": items.len(),
        "minutes": minutes(since, now),
        "groups": groups.iter().map(|(rule, repo, list)| json!({
            "rule": rule,
            "repository": repo,
            "count": list.len(),
            "items": list.iter().take(SUMMARY_ITEMS).collect::<Vec<_>>(),
            "more": list.len().saturating_sub(SUMMARY_ITEMS),
        })).collect::<Vec<_>>(),
    })
}

/// The payload paths [`item_of`] reads (see [`crate::needs`]).
pub const ITEM_READS: &[&str] = &[
    "repository.full_name",
    "project.path_with_namespace",
    "object_kind",
    "issue.number",
    "issue.title",
    "pull_request.number",
    "pull_request.title",
    "object_attributes.iid",
    "object_attributes.title",
    "object_attributes.name",
    "release.name",
    "release.tag_name",
    "alert.security_advisory.summary",
    "alert.rule.description",
    "workflow_run.display_title",
    "workflow_run.name",
    "workflow_job.name",
    "check_run.name",
    "check_suite.head_commit.message",
    "deployment_status.environment",
    "head_commit.message",
    "commonAnnotations.summary",
    "commonLabels.alertname",
    "title",
];

/// What an event is about, as a digest or summary lists it: `#12 Fix the login` for an issue
/// or pull request (`!12 …` for a GitLab merge request), a release's name, an alert's
/// summary, a run's or job's name, a push's first commit line. The first of these the payload
/// has; "" when it has none. Reads only [`ITEM_READS`].
pub fn headline(p: &Value) -> String {
    let text = |path: &str| {
        p.pointer(path)
            .and_then(Value::as_str)
            .map(str::trim)
            .filter(|s| !s.is_empty())
    };
    let number = |path: &str| p.pointer(path).and_then(Value::as_u64);
    let numbered = |mark: &str, n: Option<u64>, title: &str| {
        let title = crate::render::truncate_text(title, 200);
        match n {
            Some(n) => format!("{mark}{n} {title}"),
            None => title,
        }
    };
    if let Some(t) = text("/issue/title") {
        return numbered("#", number("/issue/number"), t);
    }
    if let Some(t) = text("/pull_request/title") {
        return numbered("#", number("/pull_request/number"), t);
    }
    if let Some(t) = text("/object_attributes/title") {
        let mark = if text("/object_kind") == Some("merge_request") {
            "!"
        } else {
            "#"
        };
        return numbered(mark, number("/object_attributes/iid"), t);
    }
    [
        "/release/name",
        "/release/tag_name",
        "/alert/security_advisory/summary",
        "/alert/rule/description",
        "/workflow_run/display_title",
        "/workflow_run/name",
        "/workflow_job/name",
        "/check_run/name",
        "/check_suite/head_commit/message",
        "/deployment_status/environment",
        "/head_commit/message",
        "/commonAnnotations/summary",
        "/commonLabels/alertname",
        "/object_attributes/name",
        "/title",
    ]
    .iter()
    .find_map(|path| text(path))
    .map(|t| {
        let first = t.lines().next().unwrap_or(t);
        crate::render::truncate_text(first, 200)
    })
    .unwrap_or_default()
}

/// A card's title and first link, from its MessageCard rendering; the repository from the
/// payload (GitHub's `repository.full_name`, GitLab's `project.path_with_namespace`).
pub fn item_of(
    rule: &Rule,
    event: &crate::event::Event,
    teams_card: Option<&str>,
    subject: Option<(String, crate::render::Update)>,
    at_ms: u64,
) -> Item {
    let card: Value = teams_card
        .and_then(|b| serde_json::from_str(b).ok())
        .unwrap_or(Value::Null);
    // A MessageCard's title is Markdown; the item holds what a reader sees of it.
    let title = card["title"]
        .as_str()
        .map(crate::render::portable::unmarkdown)
        .or(card["summary"].as_str().map(str::to_string))
        .unwrap_or_else(|| event.event_type.clone());
    let url = card
        .pointer("/potentialAction/0/targets/0/uri")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    // What this reads is in `ITEM_READS`.
    let p = event.payload();
    let repository = p
        .pointer("/repository/full_name")
        .or_else(|| p.pointer("/project/path_with_namespace"))
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    Item {
        rule: rule.name.clone(),
        event: event.event_type.clone(),
        repository,
        title,
        headline: headline(p),
        url,
        at_ms,
        subject,
    }
}

#[cfg(test)]
mod tests;
