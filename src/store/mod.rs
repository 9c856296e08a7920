//! Durable state in sled: connections, the outbox, dead letters, delivered records, seen
//! delivery ids (pruned after 3 days), noise-control state and the playground's ring of recent
//! events (see [`recent`]: in memory, written once a second).
//!
//! In: records from ingest (outbox entries, delivery-id claims), from the admin API
//! (connections) and from delivery (attempt results). Out: the same records, in order.
//! Guarantees: a write is durable once [`Store::commit`] has returned for it. `commit` is a
//! group commit: callers that arrive while a flush runs share the next one, so a burst of
//! requests costs a few fsyncs, not one each, and no request waits on a timer.
//!
//! Card counts are kept in memory as cards move; a clean stop leaves them in the `meta` tree so
//! that the next start need not walk the queue, and a start after a crash counts again.
//!
//! The outbox is keyed `connection id ‖ sequence (u64, big-endian)`, so a prefix scan yields one
//! connection's cards in the order they were accepted. What has been delivered is deleted.
//!
//! This is one concrete type rather than a trait: there is one backend today, and the public
//! methods below are the whole interface a second one (PostgreSQL) would implement.

pub mod recent;
pub mod secrets;

use std::path::Path;
use std::sync::{Arc, Mutex};

use serde::{de::DeserializeOwned, Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};

use crate::ids::{ConnectionId, DeliveryId, EventId};
use crate::render::CardKind;

/// What can go wrong in storage.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// sled failed (I/O, corruption).
    #[error("storage failed")]
    Sled(#[from] sled::Error),
    /// A record did not decode: written by another version, or damaged.
    #[error("a stored record does not decode")]
    Decode(#[from] serde_json::Error),
    /// The data directory could not be opened.
    #[error("cannot open the data directory {path}")]
    Open {
        /// The directory.
        path: String,
        /// Why.
        #[source]
        source: sled::Error,
    },
    /// The store is shutting down.
    #[error("the store is closed")]
    Closed,
    /// A secret could not be sealed or opened.
    #[error("a secret at rest")]
    Secret(#[from] secrets::SecretError),
}

/// A webhook URL that cards go to.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Connection {
    /// Its id.
    pub id: ConnectionId,
    /// A name for people.
    pub name: String,
    /// The webhook URL. A secret: never logged, masked in every answer.
    pub url: String,
    /// What kind of card the URL takes.
    pub kind: CardKind,
    /// The channels it receives; empty means all.
    #[serde(default)]
    pub channels: Vec<String>,
    /// When it was created (Unix milliseconds).
    pub created_ms: u64,
    /// A paused connection receives nothing; its events are counted and skipped.
    #[serde(default)]
    pub paused: bool,
    /// Where it came from.
    #[serde(default)]
    pub origin: ConnectionOrigin,
    /// The digest schedule chosen for it, if any (acted on by noise control).
    #[serde(default)]
    pub digest: Option<serde_json::Value>,
    /// Why the webhook URL is broken (it answered 404 or 410); nothing is sent until a retry.
    #[serde(default)]
    pub broken: Option<String>,
    /// A limit for everything this connection receives (`count/period`, e.g. `20/1h`); what
    /// exceeds it folds into summaries like a rule's limit.
    #[serde(default)]
    pub limit: Option<String>,
}

/// How a connection was made.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct ConnectionOrigin {
    /// `api`, `connect` (the Office 365 callback) or `paste` (a URL pasted on /connect).
    #[serde(default)]
    pub via: String,
    /// `mail`, `groups` or `teams`, from the Office 365 callback.
    #[serde(default)]
    pub app_type: Option<String>,
    /// The group's name (absent for an inbox).
    #[serde(default)]
    pub group_name: Option<String>,
    /// The Office 365 user who connected it. A secret, sealed at rest.
    #[serde(default)]
    pub user_object_id: Option<String>,
}

/// One card waiting to be delivered to one connection.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct OutboxRecord {
    /// The delivery id, also the `Idempotency-Key` of every attempt.
    pub id: DeliveryId,
    /// The event the card came from.
    pub event: EventId,
    /// The connection it goes to.
    pub connection: ConnectionId,
    /// The rule that produced it.
    pub rule: String,
    /// The kind of card.
    pub kind: CardKind,
    /// The exact JSON body to POST.
    pub body: String,
    /// Attempts made so far.
    #[serde(default)]
    pub attempts: u32,
    /// Not before this time (Unix milliseconds); 0 means now.
    #[serde(default)]
    pub not_before_ms: u64,
    /// When the card was accepted (Unix milliseconds).
    pub created_ms: u64,
    /// What the last failed attempt said.
    #[serde(default)]
    pub last_error: Option<String>,
    /// Every attempt: when, the status, what came of it.
    #[serde(default)]
    pub attempt_log: Vec<crate::deliver::Attempt>,
    /// When the rule's template failed and this card was built without it: what failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback: Option<RenderFailure>,
}

/// A template that failed on an event, where and why.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct RenderFailure {
    /// The template file (`github/security.teams.hbs`).
    pub template: String,
    /// The line in the template, when known.
    pub line: Option<usize>,
    /// The column in the template, when known.
    pub column: Option<usize>,
    /// What went wrong.
    pub reason: String,
}

/// A card that will not be delivered without help, and why.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DeadLetter {
    /// The card as it stood at its last attempt (its body may be empty when rendering failed).
    pub record: OutboxRecord,
    /// Why it stopped.
    pub reason: String,
    /// When it stopped (Unix milliseconds).
    pub dead_ms: u64,
}

/// A delivered card, kept for `delivery.keep_delivered` (its body is not).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Delivered {
    /// The card as it stood when delivered, body emptied.
    pub record: OutboxRecord,
    /// When it was delivered (Unix milliseconds).
    pub delivered_ms: u64,
}

/// How many cards are in each state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    /// In the outbox (retrying included).
    pub queued: usize,
    /// In the outbox after at least one failed attempt.
    pub retrying: usize,
    /// Dead letters.
    pub dead: usize,
    /// Delivered records kept.
    pub delivered: usize,
}

/// A key of the outbox tree: connection id, then a sequence number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxKey(sled::IVec);

/// The sled-backed store.
pub struct Store {
    cipher: secrets::Cipher,
    db: sled::Db,
    connections: sled::Tree,
    outbox: sled::Tree,
    dead: sled::Tree,
    seen: sled::Tree,
    flows: sled::Tree,
    last_delivery: sled::Tree,
    delivered: sled::Tree,
    dedup: sled::Tree,
    fold_buckets: sled::Tree,
    fold_items: sled::Tree,
    digest_items: sled::Tree,
    digest_state: sled::Tree,
    meta: sled::Tree,
    ring: Arc<recent::Ring>,
    counts: Mutex<Counts>,
    sync: bool,
    commits: mpsc::UnboundedSender<CommitRequest>,
}

/// A waiter for the next flush, with a handle on the database to flush. The task holds no
/// handle between batches, so dropping the [`Store`] releases the data directory at once.
type CommitRequest = (oneshot::Sender<Result<(), StoreError>>, sled::Db);

impl Store {
    /// Opens (or creates) the store under `dir` (sled in `dir/sled`, the secrets key in
    /// `dir/secrets.key` unless `key` is given) and starts its group-commit task. Must be
    /// called inside a Tokio runtime.
    pub fn open(dir: &Path, key: Option<&str>) -> Result<Arc<Self>, StoreError> {
        Self::open_with(dir, key, false)
    }

    /// Like [`Store::open`]; with `sync`, every [`Store::commit`] flushes on its own instead of
    /// sharing a group commit (`durability: sync`).
    pub fn open_with(dir: &Path, key: Option<&str>, sync: bool) -> Result<Arc<Self>, StoreError> {
        let cipher = secrets::Cipher::load(key, dir)?;
        let config = sled::Config::new()
            .path(dir.join("sled"))
            .cache_capacity(8 * 1024 * 1024)
            .mode(sled::Mode::HighThroughput)
            // Durability comes from our own group commit, not from a background timer.
            .flush_every_ms(None);
        let db = open_locked(&config, &dir.join("sled")).map_err(|source| StoreError::Open {
            path: dir.display().to_string(),
            source,
        })?;
        let (tx, rx) = mpsc::unbounded_channel();
        let outbox = db.open_tree("outbox")?;
        let dead = db.open_tree("dead")?;
        let delivered = db.open_tree("delivered")?;
        let recent = db.open_tree("recent_events")?;
        let meta = db.open_tree("meta")?;
        let counts = match meta.remove(CLEAN_COUNTS)? {
            // A clean stop wrote the counts: no walk over the queue (which, with 100,000
            // cards, would page ~300 MB through sled). The record is gone from here on, so a
            // crash before the next clean stop makes the next start count again.
            Some(v) => {
                db.flush()?;
                decode(&v)?
            }
            None => count(&outbox, &dead, &delivered)?,
        };
        let store = Arc::new(Self {
            cipher,
            delivered,
            counts: Mutex::new(counts),
            sync,
            connections: db.open_tree("connections")?,
            outbox,
            dead,
            seen: db.open_tree("seen")?,
            flows: db.open_tree("connect_states")?,
            dedup: db.open_tree("dedup")?,
            fold_buckets: db.open_tree("fold_buckets")?,
            fold_items: db.open_tree("fold_items")?,
            digest_items: db.open_tree("digest_items")?,
            digest_state: db.open_tree("digest_state")?,
            ring: Arc::new(recent::Ring::load(recent, crate::playground::RECENT)?),
            meta,
            last_delivery: db.open_tree("last_delivery")?,
            db: db.clone(),
            commits: tx,
        });
        tokio::spawn(group_commit(rx));
        tokio::spawn(save_recent(store.ring.clone()));
        Ok(store)
    }

    /// Waits until every write made before this call is on disk.
    pub async fn commit(&self) -> Result<(), StoreError> {
        if self.sync {
            let db = self.db.clone();
            return tokio::task::spawn_blocking(move || db.flush().map(drop))
                .await
                .map_err(|_| StoreError::Closed)?
                .map_err(StoreError::from);
        }
        let (tx, rx) = oneshot::channel();
        self.commits
            .send((tx, self.db.clone()))
            .map_err(|_| StoreError::Closed)?;
        rx.await.map_err(|_| StoreError::Closed)?
    }

    /// Flushes everything now (at a clean stop), the playground's ring and the counts of
    /// cards included (so that the next start need not count them).
    pub fn flush(&self) -> Result<(), StoreError> {
        self.ring.save()?;
        self.meta
            .insert(CLEAN_COUNTS, serde_json::to_vec(&self.counts())?)?;
        self.db.flush()?;
        Ok(())
    }

    // --- connections ---

    /// Inserts or replaces a connection; its URL and user id are sealed.
    pub fn put_connection(&self, c: &Connection) -> Result<(), StoreError> {
        let mut sealed = c.clone();
        sealed.url = self.cipher.seal(c.id.as_str(), &c.url);
        sealed.origin.user_object_id = c
            .origin
            .user_object_id
            .as_ref()
            .map(|u| self.cipher.seal(c.id.as_str(), u));
        self.connections
            .insert(c.id.as_str(), serde_json::to_vec(&sealed)?)?;
        Ok(())
    }

    /// Every connection, oldest first, secrets opened.
    pub fn connections(&self) -> Result<Vec<Connection>, StoreError> {
        self.connections
            .iter()
            .values()
            .map(|v| {
                let mut c: Connection = serde_json::from_slice(&v?)?;
                c.url = self.cipher.open(c.id.as_str(), &c.url)?;
                if let Some(u) = &c.origin.user_object_id {
                    c.origin.user_object_id = Some(self.cipher.open(c.id.as_str(), u)?);
                }
                Ok(c)
            })
            .collect()
    }

    /// Notes when a connection last got a card.
    pub fn set_last_delivery(&self, id: &ConnectionId, ms: u64) -> Result<(), StoreError> {
        self.last_delivery.insert(id.as_str(), &ms.to_be_bytes())?;
        Ok(())
    }

    /// When each connection last got a card.
    pub fn last_deliveries(&self) -> Result<Vec<(ConnectionId, u64)>, StoreError> {
        let mut out = Vec::new();
        for kv in self.last_delivery.iter() {
            let (k, v) = kv?;
            let id = std::str::from_utf8(&k).ok().and_then(ConnectionId::parse);
            let ms = <[u8; 8]>::try_from(v.as_ref()).map(u64::from_be_bytes).ok();
            if let (Some(id), Some(ms)) = (id, ms) {
                out.push((id, ms));
            }
        }
        Ok(out)
    }

    /// Removes a connection (its sealed secrets with it) and the cards still queued for it.
    /// Returns whether it existed.
    pub fn remove_connection(&self, id: &ConnectionId) -> Result<bool, StoreError> {
        let existed = self.connections.remove(id.as_str())?.is_some();
        self.last_delivery.remove(id.as_str())?;
        for kv in self.outbox.scan_prefix(id.as_str()) {
            let (key, v) = kv?;
            self.outbox.remove(key)?;
            let retrying = decode::<OutboxRecord>(&v)
                .map(|r| r.attempts > 0)
                .unwrap_or(false);
            self.count(|c| {
                c.queued -= 1;
                if retrying {
                    c.retrying -= 1;
                }
            });
        }
        Ok(existed)
    }

    // --- noise control ---

    /// Claims a dedup key until `expires_ms`; false when it is held and not expired (a repeat).
    pub fn dedup_claim(&self, key: &str, now_ms: u64, expires_ms: u64) -> Result<bool, StoreError> {
        let held = self
            .dedup
            .get(key)?
            .and_then(|v| <[u8; 8]>::try_from(v.as_ref()).ok().map(u64::from_be_bytes));
        if held.is_some_and(|until| until > now_ms) {
            return Ok(false);
        }
        self.dedup.insert(key, &expires_ms.to_be_bytes())?;
        Ok(true)
    }

    /// A fold bucket.
    pub fn fold_bucket(&self, id: &str) -> Result<Option<crate::noise::Bucket>, StoreError> {
        self.fold_buckets.get(id)?.map(|v| decode(&v)).transpose()
    }

    /// Adds a folded card to its bucket.
    pub fn put_fold(
        &self,
        bucket: &crate::noise::Bucket,
        item: &crate::noise::Item,
    ) -> Result<(), StoreError> {
        self.fold_buckets
            .insert(bucket.id.as_str(), serde_json::to_vec(bucket)?)?;
        let mut key = bucket.id.as_bytes().to_vec();
        key.push(0);
        key.extend_from_slice(&self.db.generate_id()?.to_be_bytes());
        self.fold_items.insert(key, serde_json::to_vec(item)?)?;
        Ok(())
    }

    /// Every fold bucket.
    pub fn fold_buckets(&self) -> Result<Vec<crate::noise::Bucket>, StoreError> {
        self.fold_buckets
            .iter()
            .values()
            .map(|v| decode(&v?))
            .collect()
    }

    /// Empties a bucket, returning its cards in the order they were folded.
    pub fn take_folds(&self, id: &str) -> Result<Vec<crate::noise::Item>, StoreError> {
        let mut prefix = id.as_bytes().to_vec();
        prefix.push(0);
        let mut items = Vec::new();
        for kv in self.fold_items.scan_prefix(&prefix) {
            let (k, v) = kv?;
            items.push(decode(&v)?);
            self.fold_items.remove(k)?;
        }
        self.fold_buckets.remove(id)?;
        Ok(items)
    }

    /// Keeps a card for a connection's digest.
    pub fn put_digest_item(
        &self,
        con: &ConnectionId,
        item: &crate::noise::Item,
    ) -> Result<(), StoreError> {
        let mut key = con.as_str().as_bytes().to_vec();
        key.extend_from_slice(&self.db.generate_id()?.to_be_bytes());
        self.digest_items.insert(key, serde_json::to_vec(item)?)?;
        Ok(())
    }

    /// Takes the cards kept for a connection's digest, in order.
    pub fn take_digest_items(
        &self,
        con: &ConnectionId,
    ) -> Result<Vec<crate::noise::Item>, StoreError> {
        let mut items = Vec::new();
        for kv in self.digest_items.scan_prefix(con.as_str()) {
            let (k, v) = kv?;
            items.push(decode(&v)?);
            self.digest_items.remove(k)?;
        }
        Ok(items)
    }

    /// When a connection's next digest is due (Unix milliseconds), if set.
    pub fn digest_due(&self, con: &ConnectionId) -> Result<Option<u64>, StoreError> {
        Ok(self
            .digest_state
            .get(con.as_str())?
            .and_then(|v| <[u8; 8]>::try_from(v.as_ref()).ok().map(u64::from_be_bytes)))
    }

    /// Forgets when a connection's next digest is due (its schedule changed).
    pub fn clear_digest_due(&self, con: &ConnectionId) -> Result<(), StoreError> {
        self.digest_state.remove(con.as_str())?;
        Ok(())
    }

    /// Sets when a connection's next digest is due.
    pub fn set_digest_due(&self, con: &ConnectionId, ms: u64) -> Result<(), StoreError> {
        self.digest_state.insert(con.as_str(), &ms.to_be_bytes())?;
        Ok(())
    }

    // --- the playground's recent events ---

    /// Keeps an event in the ring of the last [`crate::playground::RECENT`] received (in
    /// memory; written to sled within a second, see [`recent`]).
    pub fn put_recent(&self, event: recent::RecentEvent) {
        self.ring.push(event);
    }

    /// The events in the ring, newest first.
    pub fn recent(&self) -> Result<Vec<Value>, StoreError> {
        Ok(self.ring.all())
    }

    // --- Connect to Office 365 states ---

    /// Keeps a flow's state (its choices and browser binding) under `state`.
    pub fn put_flow_state(
        &self,
        state: &str,
        record: &crate::connect::flow::FlowState,
    ) -> Result<(), StoreError> {
        self.flows.insert(state, serde_json::to_vec(record)?)?;
        // States are short-lived: drop those older than an hour while we are here.
        let cutoff = now_ms().saturating_sub(3_600_000);
        for kv in self.flows.iter() {
            let (k, v) = kv?;
            if serde_json::from_slice::<crate::connect::flow::FlowState>(&v)
                .map_or(true, |r| r.created_ms < cutoff)
            {
                self.flows.remove(k)?;
            }
        }
        Ok(())
    }

    /// A flow's state, without consuming it.
    pub fn flow_state(
        &self,
        state: &str,
    ) -> Result<Option<crate::connect::flow::FlowState>, StoreError> {
        self.flows.get(state)?.map(|v| decode(&v)).transpose()
    }

    /// Consumes a flow's state: only the first caller gets it.
    pub fn take_flow_state(
        &self,
        state: &str,
    ) -> Result<Option<crate::connect::flow::FlowState>, StoreError> {
        self.flows.remove(state)?.map(|v| decode(&v)).transpose()
    }

    // --- delivery ids seen (dedup of upstream redeliveries) ---

    /// Records that `key` (an upstream delivery id) is being handled as `event`. If it was
    /// already, returns the event id it got the first time.
    pub fn claim_delivery(
        &self,
        key: &str,
        event: &EventId,
    ) -> Result<Option<EventId>, StoreError> {
        match self.seen.compare_and_swap(
            key,
            None as Option<&[u8]>,
            Some(event.as_str().as_bytes()),
        )? {
            Ok(()) => Ok(None),
            Err(cas) => Ok(cas
                .current
                .and_then(|v| EventId::parse(std::str::from_utf8(&v).ok()?))),
        }
    }

    /// Forgets a claim whose event could not be accepted, so that a redelivery is processed.
    pub fn release_delivery(&self, key: &str) -> Result<(), StoreError> {
        self.seen.remove(key)?;
        Ok(())
    }

    /// Forgets upstream delivery ids claimed more than `keep` ago (their event id says when);
    /// returns how many. Without this the ids of every event ever received would stay.
    pub fn prune_seen(&self, keep: std::time::Duration) -> Result<usize, StoreError> {
        let cutoff = now_ms().saturating_sub(keep.as_millis() as u64);
        let mut n = 0;
        for kv in self.seen.iter() {
            let (k, v) = kv?;
            let claimed_ms = std::str::from_utf8(&v)
                .ok()
                .and_then(|s| s.strip_prefix(EventId::PREFIX))
                .and_then(|u| ulid::Ulid::from_string(u).ok())
                .map_or(0, |u| u.timestamp_ms());
            if claimed_ms < cutoff {
                self.seen.remove(k)?;
                n += 1;
            }
        }
        Ok(n)
    }

    fn count(&self, f: impl FnOnce(&mut Counts)) {
        f(&mut self.counts.lock().expect("counts lock"));
    }

    /// How many cards are in each state.
    pub fn counts(&self) -> Counts {
        *self.counts.lock().expect("counts lock")
    }

    // --- outbox ---

    /// Queues a card.
    pub fn enqueue(&self, rec: &OutboxRecord) -> Result<OutboxKey, StoreError> {
        self.enqueue_then(rec, || {})
    }

    /// Queues a card; `visible` runs once it is in sled, where delivery (on a thread of its
    /// own) can already take it. It is counted before that: counted after, a card delivered in
    /// between made the count go below zero (it wrapped, and ingest answered 503 queue_full).
    fn enqueue_then(
        &self,
        rec: &OutboxRecord,
        visible: impl FnOnce(),
    ) -> Result<OutboxKey, StoreError> {
        let seq = self.db.generate_id()?;
        let mut key = Vec::with_capacity(rec.connection.as_str().len() + 8);
        key.extend_from_slice(rec.connection.as_str().as_bytes());
        key.extend_from_slice(&seq.to_be_bytes());
        let key = sled::IVec::from(key);
        let value = serde_json::to_vec(rec)?;
        self.count(|c| c.queued += 1);
        if let Err(e) = self.outbox.insert(key.clone(), value) {
            self.count(|c| c.queued -= 1);
            return Err(e.into());
        }
        visible();
        Ok(OutboxKey(key))
    }

    /// The oldest card queued for a connection.
    pub fn next_for(
        &self,
        con: &ConnectionId,
    ) -> Result<Option<(OutboxKey, OutboxRecord)>, StoreError> {
        match self.outbox.scan_prefix(con.as_str()).next() {
            None => Ok(None),
            Some(kv) => {
                let (k, v) = kv?;
                Ok(Some((OutboxKey(k), decode(&v)?)))
            }
        }
    }

    /// Saves a card's new state (after a failed attempt).
    pub fn update(&self, key: &OutboxKey, rec: &OutboxRecord) -> Result<(), StoreError> {
        self.outbox
            .insert(key.0.clone(), serde_json::to_vec(rec)?)?;
        if rec.attempts == 1 {
            self.count(|c| c.retrying += 1);
        }
        Ok(())
    }

    /// The oldest `n` cards queued for a connection, in order (what its worker sends next).
    pub fn next_batch(
        &self,
        con: &ConnectionId,
        n: usize,
    ) -> Result<Vec<(OutboxKey, OutboxRecord)>, StoreError> {
        self.outbox
            .scan_prefix(con.as_str())
            .take(n)
            .map(|kv| {
                let (k, v) = kv?;
                Ok((OutboxKey(k), decode(&v)?))
            })
            .collect()
    }

    /// Moves a delivered card out of the outbox into the delivered records (without its body).
    ///
    /// Two writes, not a transaction (a sled transaction across trees costs more than the rest
    /// of a delivery): the card leaves the outbox, then its record is added. A crash between
    /// them loses the record of the delivery, never a card; a crash before both leaves the card
    /// queued, to be sent again with the same `Idempotency-Key` (at least once).
    pub fn deliver(&self, key: &OutboxKey, rec: &OutboxRecord) -> Result<(), StoreError> {
        let kept = OutboxRecord {
            id: rec.id.clone(),
            event: rec.event.clone(),
            connection: rec.connection.clone(),
            rule: rec.rule.clone(),
            kind: rec.kind,
            body: String::new(),
            attempts: rec.attempts,
            not_before_ms: rec.not_before_ms,
            created_ms: rec.created_ms,
            last_error: rec.last_error.clone(),
            attempt_log: rec.attempt_log.clone(),
            fallback: rec.fallback.clone(),
        };
        let value = serde_json::to_vec(&Delivered {
            record: kept,
            delivered_ms: now_ms(),
        })?;
        let queued = self.outbox.remove(&key.0)?.is_some();
        self.delivered.insert(rec.id.as_str(), value)?;
        let was_retrying = rec.attempts > 1;
        self.count(|c| {
            if queued {
                c.queued -= 1;
                if was_retrying {
                    c.retrying -= 1;
                }
            }
            c.delivered += 1;
        });
        Ok(())
    }

    /// Removes delivered records older than `keep`; returns how many.
    pub fn prune_delivered(&self, keep: std::time::Duration) -> Result<usize, StoreError> {
        let cutoff = now_ms().saturating_sub(keep.as_millis() as u64);
        let mut n = 0;
        for kv in self.delivered.iter() {
            let (k, v) = kv?;
            if decode::<Delivered>(&v).map_or(true, |d| d.delivered_ms < cutoff) {
                self.delivered.remove(k)?;
                n += 1;
            }
        }
        self.count(|c| c.delivered -= n);
        Ok(n)
    }

    /// The delivered records kept.
    pub fn delivered(&self) -> Result<Vec<Delivered>, StoreError> {
        self.delivered
            .iter()
            .values()
            .map(|v| decode(&v?))
            .collect()
    }

    /// Moves every card queued for a connection to the dead letters; returns how many.
    pub fn bury_all(&self, con: &ConnectionId, reason: &str) -> Result<usize, StoreError> {
        let mut n = 0;
        while let Some((key, rec)) = self.next_for(con)? {
            self.bury(
                &key,
                &DeadLetter {
                    record: rec,
                    reason: reason.to_string(),
                    dead_ms: now_ms(),
                },
            )?;
            n += 1;
        }
        Ok(n)
    }

    /// Puts dead letters back in the outbox, their attempt count reset (their attempt log
    /// kept); returns the connections that got cards.
    pub fn revive(&self, ids: &[DeliveryId]) -> Result<Vec<ConnectionId>, StoreError> {
        let mut cons = Vec::new();
        for id in ids {
            let Some(v) = self.dead.remove(id.as_str())? else {
                continue;
            };
            self.count(|c| c.dead -= 1);
            let letter: DeadLetter = decode(&v)?;
            if letter.record.body.is_empty() {
                // A card that never rendered cannot be sent; it stays dead.
                self.put_dead(&letter)?;
                continue;
            }
            let mut rec = letter.record;
            rec.attempts = 0;
            rec.not_before_ms = 0;
            cons.push(rec.connection.clone());
            self.enqueue(&rec)?;
        }
        cons.sort();
        cons.dedup();
        Ok(cons)
    }

    /// Moves a card to the dead letters, atomically.
    pub fn bury(&self, key: &OutboxKey, letter: &DeadLetter) -> Result<(), StoreError> {
        let value = serde_json::to_vec(letter)?;
        use sled::Transactional;
        (&self.outbox, &self.dead)
            .transaction(|(outbox, dead)| {
                outbox.remove(&key.0)?;
                dead.insert(letter.record.id.as_str(), value.as_slice())?;
                Ok(())
            })
            .map_err(tx_error)?;
        let was_retrying = letter.record.attempts > 1;
        self.count(|c| {
            c.queued -= 1;
            c.dead += 1;
            if was_retrying {
                c.retrying -= 1;
            }
        });
        Ok(())
    }

    /// Records a dead letter that never was in the outbox (a card that failed to render).
    pub fn put_dead(&self, letter: &DeadLetter) -> Result<(), StoreError> {
        self.dead
            .insert(letter.record.id.as_str(), serde_json::to_vec(letter)?)?;
        self.count(|c| c.dead += 1);
        Ok(())
    }

    /// Every dead letter, oldest first.
    pub fn dead_letters(&self) -> Result<Vec<DeadLetter>, StoreError> {
        self.dead.iter().values().map(|v| decode(&v?)).collect()
    }

    /// Every queued card, in queue order per connection.
    pub fn queued_records(&self) -> Result<Vec<OutboxRecord>, StoreError> {
        self.outbox.iter().values().map(|v| decode(&v?)).collect()
    }

    /// The connections that have cards queued.
    pub fn queued_connections(&self) -> Result<Vec<ConnectionId>, StoreError> {
        // Keys are the connection id then a sequence number: one seek per connection, past all
        // of its cards, instead of a walk over every queued card.
        let mut out: Vec<ConnectionId> = Vec::new();
        let mut from: Vec<u8> = Vec::new();
        while let Some(kv) = self.outbox.range(from.as_slice()..).next() {
            let (key, _) = kv?;
            let prefix = &key[..key.len().saturating_sub(8)];
            if let Some(id) = std::str::from_utf8(prefix)
                .ok()
                .and_then(ConnectionId::parse)
            {
                out.push(id);
            }
            from = prefix.to_vec();
            from.extend_from_slice(&[0xff; 9]);
        }
        Ok(out)
    }

    /// How many cards are queued in all.
    pub fn queued(&self) -> usize {
        self.counts().queued
    }
}

fn tx_error(e: sled::transaction::TransactionError<()>) -> StoreError {
    match e {
        sled::transaction::TransactionError::Storage(e) => StoreError::Sled(e),
        sled::transaction::TransactionError::Abort(()) => StoreError::Closed,
    }
}

fn decode<T: DeserializeOwned>(v: &[u8]) -> Result<T, StoreError> {
    Ok(serde_json::from_slice(v)?)
}

/// Flushes sled for every batch of waiters: the first waiter starts a flush, everyone who
/// arrived by then shares it, and those who arrive during it share the next one.
async fn group_commit(mut rx: mpsc::UnboundedReceiver<CommitRequest>) {
    let mut batch = Vec::new();
    while let Some((first, db)) = rx.recv().await {
        batch.push(first);
        // Let requests that are already running reach their commit too: one flush for them
        // all instead of one now and another right after. A few scheduler turns at most, so
        // that a lone request is not kept waiting.
        for _ in 0..4 {
            tokio::task::yield_now().await;
            let before = batch.len();
            while let Ok((more, _)) = rx.try_recv() {
                batch.push(more);
            }
            if batch.len() == before {
                break;
            }
        }
        let result = tokio::task::spawn_blocking(move || {
            let flushed = db.flush();
            // A flush seals sled's log buffer and defers dropping the old one to crossbeam's
            // epoch collector, in this thread's bag of 64. A blocking-pool thread pins rarely,
            // so without this its bag kept up to 64 sealed buffers, and the 512 KB segment
            // buffers they share, alive for a long time.
            crossbeam_epoch::pin().flush();
            flushed
        })
        .await
        .map_err(|_| StoreError::Closed)
        .and_then(|r| r.map(drop).map_err(StoreError::from));
        for waiter in batch.drain(..) {
            let r = match &result {
                Ok(()) => Ok(()),
                Err(StoreError::Sled(e)) => Err(StoreError::Sled(e.clone())),
                Err(_) => Err(StoreError::Closed),
            };
            let _ = waiter.send(r);
        }
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        // The last moment of a clean stop: whatever changed since `flush`, the ring first so
        // that the final flush covers every write.
        if let Err(e) = self.ring.close() {
            tracing::warn!(error = %crate::error::ErrorChain(&e), "cannot save the playground's recent events");
        }
        if let Err(e) = self.flush() {
            tracing::warn!(error = %crate::error::ErrorChain(&e), "cannot save the store at shutdown");
        }
    }
}

/// Opens sled, waiting up to 2 s for its file lock: right after a store in this process is
/// dropped (a restart in tests, or of an embedded server), sled's I/O threads can hold the lock
/// for a moment longer. Another process holding it gets sled's error after the wait. The lock
/// is sled's `flock` on the `db` file in its folder; it is tried here directly rather than by
/// reading sled's error message.
fn open_locked(config: &sled::Config, dir: &Path) -> Result<sled::Db, sled::Error> {
    if let Ok(file) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(dir.join("db"))
    {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
        loop {
            match file.try_lock() {
                Ok(()) => {
                    let _ = file.unlock();
                    break;
                }
                Err(std::fs::TryLockError::WouldBlock) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                Err(_) => break,
            }
        }
    }
    config.open()
}

/// The key of the counts a clean stop leaves in the `meta` tree.
const CLEAN_COUNTS: &str = "clean_stop_counts";

/// Counts the cards in each state by walking the trees (after a crash, or the first start).
fn count(
    outbox: &sled::Tree,
    dead: &sled::Tree,
    delivered: &sled::Tree,
) -> Result<Counts, StoreError> {
    // Only `attempts` is read of each card (the body is skipped, not copied).
    #[derive(Deserialize)]
    struct Attempts {
        #[serde(default)]
        attempts: u32,
    }
    let mut counts = Counts {
        dead: dead.len(),
        delivered: delivered.len(),
        ..Counts::default()
    };
    for v in outbox.iter().values() {
        counts.queued += 1;
        if decode::<Attempts>(&v?)?.attempts > 0 {
            counts.retrying += 1;
        }
    }
    Ok(counts)
}

/// Writes the playground's ring to sled once a second until the store closes it.
async fn save_recent(ring: Arc<recent::Ring>) {
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        match ring.save() {
            Ok(Some(_)) => {}
            Ok(None) => return,
            Err(e) => {
                tracing::warn!(error = %crate::error::ErrorChain(&e), "cannot save the playground's recent events")
            }
        }
    }
}

/// Now, in Unix milliseconds.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(con: &ConnectionId, n: u32) -> OutboxRecord {
        OutboxRecord {
            id: DeliveryId::new(),
            event: EventId::new(),
            connection: con.clone(),
            rule: format!("r{n}"),
            kind: CardKind::Teams,
            body: "{}".into(),
            attempts: 0,
            not_before_ms: 0,
            created_ms: now_ms(),
            last_error: None,
            attempt_log: Vec::new(),
            fallback: None,
        }
    }

    /// A store reopened while its last holder is still letting go waits for sled's lock
    /// instead of failing; a lock that stays held is still an error, after the wait.
    #[test]
    fn opening_waits_for_the_lock_of_a_store_being_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sled");
        let config = sled::Config::new().path(&path);
        let held = config.open().unwrap();
        assert!(
            open_locked(&config, &path).is_err(),
            "held for good: sled's own error"
        );
        let releaser = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(200));
            drop(held);
        });
        let reopened = open_locked(&config, &path);
        releaser.join().unwrap();
        assert!(reopened.is_ok(), "{reopened:?}");
    }

    #[tokio::test]
    async fn a_card_delivered_as_soon_as_it_is_queued_is_counted_once() {
        // Delivery runs on a thread of its own and can take a card the moment it is in sled,
        // before `enqueue` returns. Counted after the insert, the count went below zero here
        // (a panic in a debug build; in release it wrapped, and ingest answered 503).
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), None).unwrap();
        let con = ConnectionId::new();
        store
            .enqueue_then(&record(&con, 0), || {
                for (key, rec) in store.next_batch(&con, 64).unwrap() {
                    store.deliver(&key, &rec).unwrap();
                }
            })
            .unwrap();
        let counts = store.counts();
        assert_eq!((counts.queued, counts.delivered), (0, 1));
    }

    #[tokio::test]
    async fn outbox_is_fifo_per_connection_and_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (ConnectionId::new(), ConnectionId::new());
        {
            let store = Store::open(dir.path(), None).unwrap();
            for n in 0..3 {
                store.enqueue(&record(&a, n)).unwrap();
                store.enqueue(&record(&b, n)).unwrap();
            }
            store.commit().await.unwrap();
            let (k, r) = store.next_for(&a).unwrap().unwrap();
            assert_eq!(r.rule, "r0");
            store.deliver(&k, &r).unwrap();
            store.commit().await.unwrap();
        }
        let store = Store::open(dir.path(), None).unwrap();
        assert_eq!(store.next_for(&a).unwrap().unwrap().1.rule, "r1");
        assert_eq!(store.next_for(&b).unwrap().unwrap().1.rule, "r0");
        let mut queued = store.queued_connections().unwrap();
        queued.sort();
        let mut want = vec![a, b];
        want.sort();
        assert_eq!(queued, want);
        assert_eq!(store.queued(), 5);
    }

    #[tokio::test]
    async fn delivered_records_are_kept_then_pruned_and_counts_follow() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), None).unwrap();
        let con = ConnectionId::new();
        let key = store.enqueue(&record(&con, 0)).unwrap();
        let mut failed = store.next_for(&con).unwrap().unwrap().1;
        failed.attempts = 1;
        store.update(&key, &failed).unwrap();
        assert_eq!(
            store.counts(),
            Counts {
                queued: 1,
                retrying: 1,
                dead: 0,
                delivered: 0
            }
        );
        failed.attempts = 2;
        store.deliver(&key, &failed).unwrap();
        assert_eq!(
            store.counts(),
            Counts {
                queued: 0,
                retrying: 0,
                dead: 0,
                delivered: 1
            }
        );
        assert!(
            store.delivered().unwrap()[0].record.body.is_empty(),
            "a delivered record keeps no body"
        );
        assert_eq!(
            store
                .prune_delivered(std::time::Duration::from_secs(3600))
                .unwrap(),
            0
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
        assert_eq!(
            store
                .prune_delivered(std::time::Duration::from_millis(1))
                .unwrap(),
            1
        );
        assert_eq!(store.counts().delivered, 0);
        // Counts survive a reopen.
        store.enqueue(&record(&con, 1)).unwrap();
        drop(store);
        let store = Store::open(dir.path(), None).unwrap();
        assert_eq!(store.counts().queued, 1);
    }

    #[tokio::test]
    async fn a_clean_stop_keeps_the_counts_and_a_crash_makes_the_next_start_count() {
        let dir = tempfile::tempdir().unwrap();
        let con = ConnectionId::new();
        {
            let store = Store::open(dir.path(), None).unwrap();
            for n in 0..3 {
                store.enqueue(&record(&con, n)).unwrap();
            }
        } // a clean stop: Drop flushes and leaves the counts
        {
            let store = Store::open(dir.path(), None).unwrap();
            assert_eq!(store.queued(), 3);
            assert!(
                store.meta.get(CLEAN_COUNTS).unwrap().is_none(),
                "taken at start, so that a crash cannot leave stale counts behind"
            );
            store.enqueue(&record(&con, 3)).unwrap();
        }
        // As after kill -9: no counts left by a clean stop. The start walks the queue.
        {
            let path = dir.path().join("sled");
            let db = open_locked(&sled::Config::new().path(&path), &path).unwrap();
            db.open_tree("meta").unwrap().remove(CLEAN_COUNTS).unwrap();
            db.flush().unwrap();
        }
        let store = Store::open(dir.path(), None).unwrap();
        assert_eq!(store.queued(), 4);
    }

    #[tokio::test]
    async fn old_delivery_ids_are_forgotten() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), None).unwrap();
        let day = 86_400_000;
        let old = EventId::parse(&format!(
            "evt_{}",
            ulid::Ulid::from_parts(now_ms() - 4 * day, 7)
                .to_string()
                .to_lowercase()
        ))
        .unwrap();
        store.claim_delivery("old", &old).unwrap();
        store.claim_delivery("new", &EventId::new()).unwrap();
        let three_days = std::time::Duration::from_millis(3 * day);
        assert_eq!(store.prune_seen(three_days).unwrap(), 1);
        assert_eq!(store.claim_delivery("old", &EventId::new()).unwrap(), None);
        assert!(store
            .claim_delivery("new", &EventId::new())
            .unwrap()
            .is_some());
    }

    #[tokio::test]
    async fn a_delivery_id_is_claimed_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), None).unwrap();
        let first = EventId::new();
        assert_eq!(store.claim_delivery("d1", &first).unwrap(), None);
        assert_eq!(
            store.claim_delivery("d1", &EventId::new()).unwrap(),
            Some(first)
        );
        store.release_delivery("d1").unwrap();
        assert_eq!(store.claim_delivery("d1", &EventId::new()).unwrap(), None);
    }

    #[tokio::test]
    async fn bury_moves_a_card_to_the_dead_letters() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), None).unwrap();
        let con = ConnectionId::new();
        let rec = record(&con, 0);
        let key = store.enqueue(&rec).unwrap();
        store
            .bury(
                &key,
                &DeadLetter {
                    record: rec.clone(),
                    reason: "410".into(),
                    dead_ms: 1,
                },
            )
            .unwrap();
        assert!(store.next_for(&con).unwrap().is_none());
        assert_eq!(store.dead_letters().unwrap()[0].record, rec);
    }

    #[tokio::test]
    async fn removing_a_connection_drops_its_queue() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), None).unwrap();
        let c = Connection {
            id: ConnectionId::new(),
            name: "n".into(),
            url: "https://x".into(),
            kind: CardKind::Teams,
            channels: vec![],
            created_ms: 1,
            paused: false,
            origin: ConnectionOrigin::default(),
            digest: None,
            broken: None,
            limit: None,
        };
        store.put_connection(&c).unwrap();
        store.enqueue(&record(&c.id, 0)).unwrap();
        assert!(store.remove_connection(&c.id).unwrap());
        assert!(store.next_for(&c.id).unwrap().is_none());
        assert!(store.connections().unwrap().is_empty());
    }
}
