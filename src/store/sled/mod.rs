//! sled's engine, the default: durable state in one embedded sled database (connections, the
//! outbox, dead letters, noise-control state, the playground's ring of recent events: see
//! [`ring`], in memory and written once a second) and, beside it in segment files that are
//! deleted whole ([`segments`]), what is kept for days: delivered records ([`history`]),
//! upstream delivery ids ([`claims`], claimed in sled with their event's cards and moved out
//! within a second: [`seen`]) and message references ([`refs`], written with their delivery
//! and moved out the same way).
//!
//! In: the calls of the store's contract ([`crate::store::Backend`]). Out: the same records,
//! in order. Guarantees: a write is durable once [`Durable::commit`] has returned for it.
//! `commit` is a group commit: callers that arrive while a flush runs share the next one, so a
//! burst of requests costs a few fsyncs, not one each, and no request waits on a timer.
//!
//! A full disk: [`Durable::room`] refuses new events while the data folder's disk has less
//! free than `limits.min_free_disk`, so that delivery's small writes keep room; a sled write
//! that fails anyway (`ENOSPC`) leaves sled writing nothing until it is opened again
//! ([`StoreError::needs_reopen`], which `cardwire serve` does).
//!
//! Card counts, and the index of queued cards by id ([`queued_ids`]), are kept in memory as
//! cards move; a clean stop leaves them in the `meta` tree so that the next start need not walk
//! the queue, and a start after a crash counts and indexes again.
//!
//! One file per kind of record, each implementing its trait for [`Store`]: [`connections`],
//! [`outbox`], [`noise`], [`flows`], [`seen`], [`refs`], [`apps`], [`hooks`], [`recent`]. This module holds what they share:
//! opening sled, the group commit, recovery after a crash.

pub mod apps;
pub mod claims;
pub mod connections;
pub mod flows;
pub mod history;
pub mod hooks;
pub mod noise;
pub mod outbox;
pub mod queued_ids;
pub mod recent;
pub mod refs;
pub mod ring;
pub mod seen;
pub mod segments;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

use serde::Deserialize;

use tokio::sync::{mpsc, oneshot};

use crate::ids::{ConnectionId, DeliveryId, EventId};

use crate::store::prelude::*;
use crate::store::{
    decode, secrets, Bucket, Clock, Commit, Connection, Counts, DeadLetter, Delivered, FlowState,
    Item, OutboxKey, OutboxRecord, StoreError,
};

/// The sled-backed store.
pub struct Store {
    cipher: secrets::Cipher,
    db: sled::Db,
    connections: sled::Tree,
    outbox: sled::Tree,
    /// Queued cards by delivery id (see [`queued_ids`]).
    queued_ids: Mutex<queued_ids::QueuedIds>,
    dead: sled::Tree,
    /// Upstream delivery ids just claimed, in the main log (see [`seen`]).
    seen: sled::Tree,
    /// Upstream delivery ids kept for `delivery.keep_delivery_ids`, in segment files.
    seen_kept: Arc<segments::Segments<claims::Claim>>,
    /// Held while claims move from `seen` to `seen_kept`, and by the calls that write both.
    claims_moving: Mutex<()>,
    /// The GitHub Apps made for sources (see [`apps`]).
    apps: sled::Tree,
    /// The GitLab hooks made for sources (see [`hooks`]).
    hooks: sled::Tree,
    /// Message references just written, in the main log (see [`refs`]).
    refs: sled::Tree,
    /// Message references kept for `delivery.keep_message_refs`, in segment files.
    refs_kept: Arc<segments::Segments<crate::store::MessageRef>>,
    flows: sled::Tree,
    last_delivery: sled::Tree,
    /// Delivered records, in files of their own (see [`history`]).
    history: Arc<history::History>,
    pub(in crate::store) dedup: sled::Tree,
    pub(in crate::store) fold_buckets: sled::Tree,
    pub(in crate::store) fold_items: sled::Tree,
    /// Fold buckets by due time: `due_ms (u64, big-endian) ‖ bucket id`.
    fold_due: sled::Tree,
    pub(in crate::store) digest_items: sled::Tree,
    pub(in crate::store) digest_state: sled::Tree,
    meta: sled::Tree,
    ring: Arc<ring::Ring>,
    counts: Mutex<Counts>,
    /// Upstream delivery ids reserved by events being staged (see [`Store::reserve_delivery`]).
    staging: Mutex<std::collections::HashMap<String, EventId>>,
    /// Where the store's time comes from.
    clock: Clock,
    sync: bool,
    commits: mpsc::UnboundedSender<CommitRequest>,
    /// The data folder's disk and the room kept on it.
    disk: Disk,
}

/// A waiter for the next flush, with a handle on the database to flush. The task holds no
/// handle between batches, so dropping the [`Store`] releases the data directory at once.
type CommitRequest = (
    oneshot::Sender<Result<(), StoreError>>,
    sled::Db,
    Arc<history::History>,
);

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
        Self::open_with_clock(dir, key, sync, Clock::System)
    }

    /// Like [`Store::open_with`], with the time from `clock` (a test's [`Clock::manual`]).
    pub fn open_with_clock(
        dir: &Path,
        key: Option<&str>,
        sync: bool,
        clock: Clock,
    ) -> Result<Arc<Self>, StoreError> {
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
        let history = Arc::new(history::History::open(&dir.join("delivered"))?);
        let seen_kept = Arc::new(segments::Segments::open(&dir.join("delivery_ids"))?);
        let refs_kept = Arc::new(segments::Segments::open(&dir.join("message_refs"))?);
        take_old_delivered(&db, &history)?;
        let recent = db.open_tree("recent_events")?;
        let meta = db.open_tree("meta")?;
        // Whatever a clean stop left is taken now, so that a crash before the next clean stop
        // makes the next start count again.
        let saved_ids = meta.remove(CLEAN_QUEUED_IDS)?;
        let (counts, queued_ids) = match meta.remove(CLEAN_COUNTS)? {
            // A clean stop wrote the counts and the index: no walk over the queue (which,
            // with 100,000 cards, would page ~300 MB through sled).
            Some(v) => {
                db.flush()?;
                let counts: Counts = decode(&v)?;
                let saved = saved_ids.and_then(|b| queued_ids::QueuedIds::decode(&b));
                match saved {
                    Some(index) if index.len() == counts.queued => (counts, index),
                    // Written by a version without the index: walk the queue once.
                    _ => (counts, index_queue(&outbox)?),
                }
            }
            None => recover(
                &outbox,
                &dead,
                &|claim| {
                    Ok(db.open_tree("seen")?.contains_key(claim)?
                        || claims::kept_claim(&seen_kept, claim)?.is_some())
                },
                meta.get(claims::SEEN_PRUNED_BEFORE)?
                    .map_or(0, |v| claims::decode_ms(&v)),
                clock.now_ms(),
            )?,
        };
        // The delivered records count themselves.
        let counts = Counts {
            delivered: history.len(),
            ..counts
        };
        let store = Arc::new(Self {
            cipher,
            history,
            counts: Mutex::new(counts),
            staging: Mutex::default(),
            clock,
            sync,
            connections: db.open_tree("connections")?,
            outbox,
            queued_ids: Mutex::new(queued_ids),
            dead,
            seen: db.open_tree("seen")?,
            seen_kept,
            claims_moving: Mutex::default(),
            apps: db.open_tree("source_apps")?,
            hooks: db.open_tree("source_hooks")?,
            refs: db.open_tree("message_refs")?,
            refs_kept,
            flows: db.open_tree("connect_states")?,
            dedup: db.open_tree("dedup")?,
            fold_buckets: db.open_tree("fold_buckets")?,
            fold_items: db.open_tree("fold_items")?,
            fold_due: db.open_tree("fold_due")?,
            digest_items: db.open_tree("digest_items")?,
            digest_state: db.open_tree("digest_state")?,
            ring: Arc::new(ring::Ring::load(recent, crate::store::recent::RECENT)?),
            meta,
            last_delivery: db.open_tree("last_delivery")?,
            db: db.clone(),
            commits: tx,
            disk: Disk::new(dir),
        });
        store.reindex_folds()?;
        tokio::spawn(group_commit(rx));
        tokio::spawn(save_recent(store.ring.clone()));
        tokio::spawn(every_second(Arc::downgrade(&store)));
        Ok(store)
    }

    /// Keeps `bytes` free on the data folder's disk (`limits.min_free_disk`): below it,
    /// [`Durable::room`] refuses new events. 0 turns the check off.
    pub fn set_min_free(&self, bytes: u64) {
        self.disk.min_free.store(bytes, Relaxed);
    }

    fn count(&self, f: impl FnOnce(&mut Counts)) {
        f(&mut self.counts.lock().expect("counts lock"));
    }
}

impl Durable for Store {
    fn commit(&self) -> Commit {
        if self.sync {
            let db = self.db.clone();
            let history = self.history.clone();
            return Box::pin(async move {
                tokio::task::spawn_blocking(move || {
                    history.write()?;
                    db.flush().map(drop).map_err(StoreError::from)
                })
                .await
                .map_err(|_| StoreError::Closed)?
            });
        }
        let (tx, rx) = oneshot::channel();
        let sent = self
            .commits
            .send((tx, self.db.clone(), self.history.clone()));
        Box::pin(async move {
            sent.map_err(|_| StoreError::Closed)?;
            rx.await.map_err(|_| StoreError::Closed)?
        })
    }

    fn flush(&self) -> Result<(), StoreError> {
        self.ring.save()?;
        let index = self.queued_ids.lock().expect("index lock").encode();
        self.meta.insert(CLEAN_QUEUED_IDS, index)?;
        self.meta
            .insert(CLEAN_COUNTS, serde_json::to_vec(&self.counts())?)?;
        self.history.sync()?;
        self.db.flush()?;
        self.seen_kept.sync()?;
        self.refs_kept.sync()?;
        Ok(())
    }

    fn counts(&self) -> Counts {
        *self.counts.lock().expect("counts lock")
    }

    fn now_ms(&self) -> u64 {
        self.clock.now_ms()
    }

    fn health(&self) -> Result<(), StoreError> {
        self.room()?;
        // After an I/O error in its log, sled keeps the write that failed unwritten and
        // fails every flush: nothing written when all is well.
        self.db.flush()?;
        self.seen_kept.sync()?;
        Ok(())
    }

    fn room(&self) -> Result<(), StoreError> {
        let floor = self.disk.min_free.load(Relaxed);
        if floor == 0 {
            return Ok(());
        }
        let free = self.disk.free(self.clock.now_ms());
        if free < floor {
            return Err(StoreError::Full { free, floor });
        }
        Ok(())
    }
}

/// The free space on the disk holding the data folder, read at most every
/// [`Disk::EVERY_MS`] (one `statvfs`), against `limits.min_free_disk`.
#[derive(Debug)]
struct Disk {
    dir: PathBuf,
    min_free: AtomicU64,
    free: AtomicU64,
    /// When `free` was read (store clock, ms); 0: never.
    read_at: AtomicU64,
}

impl Disk {
    const EVERY_MS: u64 = 250;

    fn new(dir: &Path) -> Self {
        Self {
            dir: dir.to_path_buf(),
            min_free: AtomicU64::new(0),
            free: AtomicU64::new(u64::MAX),
            read_at: AtomicU64::new(0),
        }
    }

    fn free(&self, now: u64) -> u64 {
        let at = self.read_at.load(Relaxed);
        if at != 0 && now.saturating_sub(at) < Self::EVERY_MS {
            return self.free.load(Relaxed);
        }
        let free = match rustix::fs::statvfs(&self.dir) {
            Ok(s) => s.f_bavail.saturating_mul(s.f_frsize),
            // Not knowable (the folder went away): the writes themselves will say.
            Err(_) => u64::MAX,
        };
        self.free.store(free, Relaxed);
        self.read_at.store(now.max(1), Relaxed);
        free
    }
}

/// Flushes sled for every batch of waiters: the first waiter starts a flush, everyone who
/// arrived by then shares it, and those who arrive during it share the next one.
async fn group_commit(mut rx: mpsc::UnboundedReceiver<CommitRequest>) {
    let mut batch = Vec::new();
    while let Some((first, db, history)) = rx.recv().await {
        batch.push(first);
        // Let requests that are already running reach their commit too: one flush for them
        // all instead of one now and another right after. A few scheduler turns at most, so
        // that a lone request is not kept waiting.
        for _ in 0..4 {
            tokio::task::yield_now().await;
            let before = batch.len();
            while let Ok((more, _, _)) = rx.try_recv() {
                batch.push(more);
            }
            if batch.len() == before {
                break;
            }
        }
        let result = tokio::task::spawn_blocking(move || {
            // The delivered records appended since the last commit, with one write, before
            // sled's flush. They are history, not what the 202 promises: they reach the disk
            // on their own, within a second (`seen::every_second`), so that no commit waits
            // on a second sync. A crash can lose that second's records of cards that were
            // delivered; it cannot make a card be sent again (the outbox says what is due).
            history.write()?;
            let flushed = db.flush();
            // A flush seals sled's log buffer and defers dropping the old one to crossbeam's
            // epoch collector, in this thread's bag of 64. A blocking-pool thread pins rarely,
            // so without this its bag kept up to 64 sealed buffers, and the 512 KB segment
            // buffers they share, alive for a long time.
            crossbeam_epoch::pin().flush();
            flushed.map(drop).map_err(StoreError::from)
        })
        .await
        .map_err(|_| StoreError::Closed)
        .and_then(|r| r);
        for waiter in batch.drain(..) {
            let r = match &result {
                Ok(()) => Ok(()),
                Err(StoreError::Sled(e)) => Err(StoreError::Sled(e.clone())),
                Err(StoreError::Io(e)) => {
                    Err(StoreError::Io(std::io::Error::new(e.kind(), e.to_string())))
                }
                Err(_) => Err(StoreError::Closed),
            };
            let _ = waiter.send(r);
        }
    }
}

/// About once a second while the store is open: delivered records synced, claims and message
/// references moved (see [`Store::move_claims`], [`Store::move_refs`]).
async fn every_second(store: std::sync::Weak<Store>) {
    let second = std::time::Duration::from_secs(1);
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + second, second);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(store) = store.upgrade() else {
            return;
        };
        let done = tokio::task::spawn_blocking(move || {
            // Delivered records reach the disk here, off every commit's path.
            if let Err(e) = store.history.sync() {
                tracing::warn!(error = %crate::error::ErrorChain(&e), "cannot sync delivered records; tried again in a second");
            }
            (store.move_claims(), store.move_refs())
        })
        .await;
        if let Ok((claims, refs)) = done {
            if let Err(e) = claims {
                tracing::warn!(error = %crate::error::ErrorChain(&e), "cannot move upstream delivery ids to where they are kept; tried again in a second");
            }
            if let Err(e) = refs {
                tracing::warn!(error = %crate::error::ErrorChain(&e), "cannot move message references to where they are kept; tried again in a second");
            }
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

/// The key of the index of queued cards a clean stop leaves in the `meta` tree.
const CLEAN_QUEUED_IDS: &str = "clean_stop_queued_ids";

/// Counts the cards after a crash (or at the first start) by walking the trees, indexes the
/// queued cards by id, and takes back the cards of an event whose delivery-id
/// claim never reached the disk (a crash inside [`Store::enqueue_event`]: its upstream had no
/// 202 and will deliver it again). A card of an event claimed before the latest cutoff of
/// [`SeenIds::prune_seen`] (`pruned_before`; or, for a store an earlier version pruned without
/// saying, more than [`crate::store::seen::SEEN_FOR`] ago), or within a minute after it (the time between an
/// event's id and its cards), is kept: its claim may have been pruned.
fn recover(
    outbox: &sled::Tree,
    dead: &sled::Tree,
    claimed: &dyn Fn(&str) -> Result<bool, StoreError>,
    pruned_before: u64,
    now_ms: u64,
) -> Result<(Counts, queued_ids::QueuedIds), StoreError> {
    // Only these fields are read of each card (the body is skipped, not copied).
    #[derive(Deserialize)]
    struct Head<'a> {
        id: &'a str,
        #[serde(default)]
        attempts: u32,
        #[serde(default)]
        claim: Option<String>,
        created_ms: u64,
    }
    let recent = pruned_before
        .max(now_ms.saturating_sub(crate::store::seen::SEEN_FOR.as_millis() as u64))
        .saturating_add(60_000);
    let mut counts = Counts {
        dead: dead.len(),
        ..Counts::default()
    };
    let mut taken_back = 0;
    let mut index = queued_ids::QueuedIds::default();
    for kv in outbox.iter() {
        let (k, v) = kv?;
        let head: Head<'_> = serde_json::from_slice(&v)?;
        if let Some(claim) = &head.claim {
            if head.created_ms >= recent && !claimed(claim)? {
                outbox.remove(k)?;
                taken_back += 1;
                continue;
            }
        }
        index.insert(head.id, &k);
        counts.enqueued(1);
        if head.attempts > 0 {
            counts.first_failure();
        }
    }
    if taken_back > 0 {
        tracing::warn!(
            cards = taken_back,
            "cards of events cut short by a crash taken back; their upstreams had no 202 and deliver them again"
        );
    }
    Ok((counts, index))
}

/// Moves the delivered records an earlier version kept in sled's `delivered` tree into the
/// history, once, and drops the tree (its records pinned sled's log: see [`history`]).
fn take_old_delivered(db: &sled::Db, history: &history::History) -> Result<(), StoreError> {
    if !db.tree_names().iter().any(|n| n.as_ref() == b"delivered") {
        return Ok(());
    }
    let old = db.open_tree("delivered")?;
    let mut n = 0;
    for v in old.iter().values() {
        history.append(&decode(&v?)?)?;
        n += 1;
    }
    // On disk before the tree is dropped: a crash in between moves them again (at worst twice,
    // and a page shows a record once).
    history.sync()?;
    db.drop_tree("delivered")?;
    db.flush()?;
    if n > 0 {
        tracing::info!(
            records = n,
            "delivered records moved out of sled into files of their own"
        );
    }
    Ok(())
}

/// Indexes every queued card by its delivery id, walking the queue.
fn index_queue(outbox: &sled::Tree) -> Result<queued_ids::QueuedIds, StoreError> {
    #[derive(Deserialize)]
    struct Id<'a> {
        id: &'a str,
    }
    let mut index = queued_ids::QueuedIds::default();
    for kv in outbox.iter() {
        let (k, v) = kv?;
        let card: Id<'_> = serde_json::from_slice(&v)?;
        index.insert(card.id, &k);
    }
    Ok(index)
}

/// Writes the playground's ring to sled once a second until the store closes it.
async fn save_recent(ring: Arc<ring::Ring>) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::CardKind;
    use crate::store::{now_ms, ConnectionOrigin};

    /// Leaves the store under `dir` as kill -9 would: no counts from a clean stop, so the next
    /// start walks the queue and recovers.
    fn as_after_a_crash(dir: &Path) {
        let path = dir.join("sled");
        let db = open_locked(&sled::Config::new().path(&path), &path).unwrap();
        db.open_tree("meta").unwrap().remove(CLEAN_COUNTS).unwrap();
        db.flush().unwrap();
    }

    /// The claim of every queued card, in queue order.
    fn queued_claims(store: &Store) -> Vec<Option<String>> {
        store
            .queued_records()
            .unwrap()
            .into_iter()
            .map(|r| r.claim)
            .collect()
    }

    fn record(con: &ConnectionId, n: u32) -> OutboxRecord {
        OutboxRecord::new(
            EventId::new(),
            con.clone(),
            format!("r{n}"),
            CardKind::Teams,
            "{}".into(),
            now_ms(),
        )
    }

    /// A store reopened while its last holder is still letting go waits for sled's lock
    /// instead of failing; a lock that stays held is still an error, after the wait.
    /// The noise tick reads only the fold buckets that are due, through the index by due time,
    /// which follows the buckets and is rebuilt at open.
    /// An event's cards are written, then the claim of its upstream delivery id: a
    /// concurrent redelivery sees the reservation, and an id claimed meanwhile writes nothing.
    /// The store never starts a sled transaction or batch: the first one would put every later
    /// sled operation of the process behind a global read-write lock (sled 0.34's concurrency
    /// control), which tripled the CPU an event in the benchmark.
    #[test]
    fn no_sled_transaction_or_batch() {
        let sources = [
            ("mod.rs", include_str!("mod.rs")),
            ("apps.rs", include_str!("apps.rs")),
            ("claims.rs", include_str!("claims.rs")),
            ("connections.rs", include_str!("connections.rs")),
            ("flows.rs", include_str!("flows.rs")),
            ("hooks.rs", include_str!("hooks.rs")),
            ("history.rs", include_str!("history.rs")),
            ("noise.rs", include_str!("noise.rs")),
            ("outbox.rs", include_str!("outbox.rs")),
            ("queued_ids.rs", include_str!("queued_ids.rs")),
            ("recent.rs", include_str!("recent.rs")),
            ("ring.rs", include_str!("ring.rs")),
            ("refs.rs", include_str!("refs.rs")),
            ("seen.rs", include_str!("seen.rs")),
            ("segments.rs", include_str!("segments.rs")),
        ];
        for (file, text) in sources {
            for (n, line) in text.lines().enumerate() {
                let code = line.split("//").next().unwrap_or("");
                let called = [".transaction(", ".apply_batch(", "Batch::default"]
                    .iter()
                    .any(|c| code.contains(c) && !code.contains("\"."));
                assert!(!called, "store/sled/{file}:{}: {line}", n + 1);
            }
        }
    }

    #[tokio::test]
    async fn an_events_cards_then_its_claim_are_written() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), None).unwrap();
        let con = ConnectionId::new();
        let (first, second) = (EventId::new(), EventId::new());
        assert_eq!(store.reserve_delivery("d1", &first).unwrap(), None);
        assert_eq!(
            store.reserve_delivery("d1", &second).unwrap(),
            Some(first.clone()),
            "being staged: the redelivery gets the first id"
        );
        assert!(
            store.seen.get("d1").unwrap().is_none(),
            "not claimed before the write"
        );
        let mut cards = [record(&con, 1), record(&con, 2)];
        assert_eq!(
            store
                .enqueue_event(Some(("d1", &first)), &mut cards)
                .unwrap(),
            Ok(())
        );
        assert_eq!(store.queued(), 2);
        assert_eq!(
            store
                .queued_records()
                .unwrap()
                .iter()
                .map(|r| r.rule.as_str())
                .collect::<Vec<_>>(),
            ["r1", "r2"]
        );
        assert_eq!(
            store.reserve_delivery("d1", &second).unwrap(),
            Some(first.clone()),
            "claimed"
        );
        // Claimed meanwhile (by another path): nothing of this event is written.
        assert_eq!(
            store
                .enqueue_event(Some(("d1", &second)), &mut [record(&con, 3)])
                .unwrap(),
            Err(first.clone())
        );
        assert_eq!(store.queued(), 2);
        assert_eq!(store.queued_records().unwrap().len(), 2);
        // A reservation that is released lets the redelivery through.
        assert_eq!(store.reserve_delivery("d2", &first).unwrap(), None);
        store.release_delivery("d2").unwrap();
        assert_eq!(store.reserve_delivery("d2", &second).unwrap(), None);
        // Without a delivery id, the cards alone, in one batch.
        assert_eq!(
            store.enqueue_event(None, &mut [record(&con, 4)]).unwrap(),
            Ok(())
        );
        assert_eq!(store.queued(), 3);
    }

    /// A crash between an event's cards and its claim (the cards on disk, the claim not):
    /// the next start takes those cards back, so the redelivery its upstream makes (it had no
    /// 202) queues them once. Cards whose claim is there, cards without a delivery id and
    /// cards older than the claims' retention stay; a clean stop recovers nothing.
    #[tokio::test]
    async fn a_crash_between_cards_and_claim_takes_the_cards_back() {
        let dir = tempfile::tempdir().unwrap();
        let con = ConnectionId::new();
        let claimed = |key: &str, created_ms| OutboxRecord {
            claim: Some(key.into()),
            created_ms,
            ..record(&con, 0)
        };
        {
            let store = Store::open(dir.path(), None).unwrap();
            // A whole event: cards and claim.
            store
                .enqueue_event(Some(("whole", &EventId::new())), &mut [record(&con, 1)])
                .unwrap()
                .unwrap();
            // A whole event whose claim has moved to the kept ids' database.
            store
                .enqueue_event(Some(("moved", &EventId::new())), &mut [record(&con, 3)])
                .unwrap()
                .unwrap();
            assert_eq!(store.move_claims().unwrap(), 2);
            assert!(store.seen.is_empty());
            // Cut short: two cards written, the claim not.
            store.enqueue(&claimed("cut", now_ms())).unwrap();
            store.enqueue(&claimed("cut", now_ms())).unwrap();
            // Four days old: its claim was pruned, the card stays.
            let old = now_ms() - 4 * 86_400_000;
            store.enqueue(&claimed("pruned", old)).unwrap();
            // No delivery id.
            store
                .enqueue_event(None, &mut [record(&con, 2)])
                .unwrap()
                .unwrap();
            assert_eq!(store.queued(), 6);
        }
        // As after kill -9: no counts left by a clean stop.
        as_after_a_crash(dir.path());
        let store = Store::open(dir.path(), None).unwrap();
        assert_eq!(store.queued(), 4, "the two cards cut short are taken back");
        assert_eq!(
            queued_claims(&store),
            [
                Some("whole".to_string()),
                Some("moved".into()),
                Some("pruned".into()),
                None
            ]
        );
        assert_eq!(
            store.reserve_delivery("cut", &EventId::new()).unwrap(),
            None
        );
    }

    /// `delivery.keep_delivery_ids` shorter than a card's wait: its claim pruned is not taken
    /// for a claim lost in a crash (which would take the card back, and lose it).
    #[tokio::test]
    async fn a_card_whose_claim_was_pruned_under_a_short_keep_survives_a_crash() {
        let dir = tempfile::tempdir().unwrap();
        let con = ConnectionId::new();
        {
            let store = Store::open(dir.path(), None).unwrap();
            let ten_minutes_ago = now_ms() - 600_000;
            let event = EventId::parse(&format!(
                "evt_{}",
                ulid::Ulid::from_parts(ten_minutes_ago, 7)
                    .to_string()
                    .to_lowercase()
            ))
            .unwrap();
            let mut cards = [OutboxRecord {
                created_ms: ten_minutes_ago,
                ..record(&con, 1)
            }];
            store
                .enqueue_event(Some(("waiting", &event)), &mut cards)
                .unwrap()
                .unwrap();
            assert_eq!(
                store
                    .prune_seen(std::time::Duration::from_secs(300))
                    .unwrap(),
                1
            );
            // And an event cut short now: its card is taken back.
            store
                .enqueue(&OutboxRecord {
                    claim: Some("cut".into()),
                    ..record(&con, 2)
                })
                .unwrap();
        }
        as_after_a_crash(dir.path());
        let store = Store::open(dir.path(), None).unwrap();
        assert_eq!(queued_claims(&store), [Some("waiting".to_string())]);
    }

    /// Queued cards are found by id through the index in memory, which follows every move
    /// (queued, delivered, dead, taken back, revived, connection removed), is saved by a clean
    /// stop and loaded by the next start, built by walking the queue after a crash, and built
    /// once for a store an older version wrote (no index saved). The lookup reads the index,
    /// not the queue: a card whose entry is missing is not found.
    #[tokio::test]
    async fn queued_cards_are_found_by_id_through_an_index() {
        let dir = tempfile::tempdir().unwrap();
        let con = ConnectionId::new();
        let indexed = |store: &Store, ids: &[&OutboxRecord]| -> Vec<bool> {
            let index = store.queued_ids.lock().unwrap();
            ids.iter()
                .map(|r| index.key(r.id.as_str()).is_some())
                .collect()
        };
        let (a, b, c) = (record(&con, 1), record(&con, 2), record(&con, 3));
        {
            let store = Store::open(dir.path(), None).unwrap();
            let ka = store.enqueue(&a).unwrap();
            let kb = store.enqueue(&b).unwrap();
            store.enqueue(&c).unwrap();
            assert_eq!(store.queued_record(b.id.as_str()).unwrap(), Some(b.clone()));
            store.deliver(&ka, &a).unwrap();
            let letter = DeadLetter {
                record: b.clone(),
                reason: "410".into(),
                dead_ms: 1,
            };
            store.bury(&kb, &letter).unwrap();
            assert_eq!(indexed(&store, &[&a, &b, &c]), [false, false, true]);
            assert_eq!(store.queued_record(a.id.as_str()).unwrap(), None);
            assert_eq!(store.queued_record(c.id.as_str()).unwrap(), Some(c.clone()));
            // An event already claimed: its cards are taken back, their entries too.
            let first = EventId::new();
            store
                .enqueue_event(Some(("d1", &first)), &mut [])
                .unwrap()
                .unwrap();
            let mut again = [record(&con, 4)];
            assert_eq!(
                store
                    .enqueue_event(Some(("d1", &EventId::new())), &mut again)
                    .unwrap(),
                Err(first)
            );
            assert_eq!(store.queued_ids.lock().unwrap().len(), 1);
            // Revived: queued again, found again.
            store.revive(std::slice::from_ref(&b.id)).unwrap();
            assert_eq!(
                store.queued_record(b.id.as_str()).unwrap().map(|r| r.id),
                Some(b.id.clone())
            );
            // The lookup is the index's: without its entry, a queued card is not found.
            store.unindex(c.id.as_str());
            assert_eq!(store.queued_record(c.id.as_str()).unwrap(), None);
            // An entry whose card has moved on finds nothing.
            store
                .queued_ids
                .lock()
                .unwrap()
                .insert(a.id.as_str(), &kb.0);
            assert_eq!(store.queued_record(a.id.as_str()).unwrap(), None);
        }
        // A clean stop saved the index as it stood (c forgotten above): loaded as such.
        {
            let store = Store::open(dir.path(), None).unwrap();
            assert_eq!(indexed(&store, &[&a, &b, &c]), [true, true, false]);
        }
        // As after kill -9: the next start walks the queue and indexes what is there.
        let crash = || as_after_a_crash(dir.path());
        crash();
        {
            let store = Store::open(dir.path(), None).unwrap();
            assert_eq!(indexed(&store, &[&a, &b, &c]), [false, true, true]);
            assert!(store.queued_record(c.id.as_str()).unwrap().is_some());
            // Removing the connection drops its cards' entries.
            store.remove_connection(&con).unwrap();
            assert!(store.queued_ids.lock().unwrap().is_empty());
            store.enqueue(&a).unwrap();
        }
        // A store an older version wrote: a queue and a clean stop's counts, no index.
        {
            let path = dir.path().join("sled");
            let db = open_locked(&sled::Config::new().path(&path), &path).unwrap();
            let meta = db.open_tree("meta").unwrap();
            assert!(meta.remove(CLEAN_QUEUED_IDS).unwrap().is_some());
            assert!(meta.get(CLEAN_COUNTS).unwrap().is_some());
            db.flush().unwrap();
        }
        let store = Store::open(dir.path(), None).unwrap();
        assert_eq!(indexed(&store, &[&a, &b, &c]), [true, false, false]);
        assert!(store.queued_record(a.id.as_str()).unwrap().is_some());
    }

    #[tokio::test]
    async fn fold_buckets_are_found_by_due_time() {
        let dir = tempfile::tempdir().unwrap();
        let con = ConnectionId::new();
        let bucket = |id: &str, due_ms| Bucket {
            id: id.into(),
            rule: "r".into(),
            per: String::new(),
            connection: con.clone(),
            kind: CardKind::Teams,
            due_ms,
            first_ms: 0,
            reason: "limit".into(),
        };
        let item = Item {
            rule: "r".into(),
            event: "push".into(),
            repository: "o/r".into(),
            title: "t".into(),
            headline: String::new(),
            url: String::new(),
            at_ms: 0,
            subject: None,
        };
        let ids = |v: Vec<Bucket>| v.into_iter().map(|b| b.id).collect::<Vec<_>>();
        {
            let store = Store::open(dir.path(), None).unwrap();
            store.put_fold(&bucket("late", 2_000), &item).unwrap();
            store.put_fold(&bucket("early", 1_000), &item).unwrap();
            store.put_fold(&bucket("early", 1_000), &item).unwrap();
            assert!(store.fold_buckets_due(999).unwrap().is_empty());
            assert_eq!(ids(store.fold_buckets_due(1_000).unwrap()), ["early"]);
            assert_eq!(store.take_folds("early").unwrap().len(), 2);
            assert!(store.fold_buckets_due(1_500).unwrap().is_empty());
            // An index lost (a store written before it existed) is rebuilt at open.
            store.fold_due.clear().unwrap();
            store.flush().unwrap();
        }
        let store = Store::open(dir.path(), None).unwrap();
        assert_eq!(ids(store.fold_buckets_due(5_000).unwrap()), ["late"]);
    }

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

    #[tokio::test(start_paused = true)]
    async fn delivered_records_are_written_at_each_commit_and_synced_once_a_second() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), None).unwrap();
        let con = ConnectionId::new();
        let file_len = || -> u64 {
            std::fs::read_dir(dir.path().join("delivered"))
                .unwrap()
                .map(|e| e.unwrap().metadata().unwrap().len())
                .sum()
        };
        for round in 0..3 {
            for n in 0..10 {
                store.enqueue(&record(&con, round * 10 + n)).unwrap();
            }
            for (key, rec) in store.next_batch(&con, 64).unwrap() {
                store.deliver(&key, &rec).unwrap();
            }
            let before = file_len();
            store.commit().await.unwrap();
            // The commit wrote the records (a killed process keeps them) and synced none:
            // that is left to the store's second-by-second task, off the 202's path.
            assert!(file_len() > before, "round {round}: written at the commit");
            assert_eq!(
                store.history.syncs(),
                0,
                "round {round}: no sync on a commit"
            );
        }
        // Within a second they are synced, once for all three commits.
        tokio::time::sleep(std::time::Duration::from_millis(1_100)).await;
        for _ in 0..100 {
            if store.history.syncs() > 0 {
                break;
            }
            tokio::task::yield_now().await;
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert_eq!(store.history.syncs(), 1);
        assert_eq!(store.counts().delivered, 30);
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
        let (clock, at) = Clock::manual(1_000_000);
        let store = Store::open_with_clock(dir.path(), None, false, clock).unwrap();
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
        // An hour and a millisecond later, by the store's clock.
        at.fetch_add(3_600_001, std::sync::atomic::Ordering::Relaxed);
        assert_eq!(
            store
                .prune_delivered(std::time::Duration::from_secs(3600))
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
    async fn delivered_records_an_older_version_kept_in_sled_move_to_the_history_once() {
        let dir = tempfile::tempdir().unwrap();
        let con = ConnectionId::new();
        let old = Delivered {
            record: record(&con, 5),
            delivered_ms: 7,
        };
        {
            let path = dir.path().join("sled");
            let db = open_locked(&sled::Config::new().path(&path), &path).unwrap();
            db.open_tree("delivered")
                .unwrap()
                .insert(old.record.id.as_str(), serde_json::to_vec(&old).unwrap())
                .unwrap();
            db.flush().unwrap();
        }
        for _ in 0..2 {
            let store = Store::open(dir.path(), None).unwrap();
            assert_eq!(store.counts().delivered, 1);
            assert_eq!(
                store.delivered_record(old.record.id.as_str()).unwrap(),
                Some(old.clone())
            );
            assert!(!store
                .db
                .tree_names()
                .iter()
                .any(|n| n.as_ref() == b"delivered"));
        }
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
        as_after_a_crash(dir.path());
        let store = Store::open(dir.path(), None).unwrap();
        assert_eq!(store.queued(), 4);
    }

    /// Claims move out of the main log into the kept ids' files and are found there: a
    /// redelivery gets the first event, a release forgets it, pruning reaches it.
    #[tokio::test]
    async fn claims_move_to_their_own_files_and_are_still_claimed_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), None).unwrap();
        let (first, second) = (EventId::new(), EventId::new());
        assert_eq!(store.claim_delivery("a", &first).unwrap(), None);
        assert_eq!(store.claim_delivery("b", &first).unwrap(), None);
        assert_eq!(store.move_claims().unwrap(), 2);
        assert!(store.seen.is_empty());
        assert_eq!(store.seen_kept.len(), 2);
        assert!(
            std::fs::read_dir(dir.path().join("delivery_ids"))
                .unwrap()
                .count()
                > 0
        );
        assert_eq!(store.move_claims().unwrap(), 0);
        assert_eq!(
            store.claim_delivery("a", &second).unwrap(),
            Some(first.clone())
        );
        assert!(store.seen.is_empty(), "a claim found kept writes nothing");
        assert_eq!(
            store.reserve_delivery("a", &second).unwrap(),
            Some(first.clone())
        );
        store.release_delivery("b").unwrap();
        assert_eq!(store.claim_delivery("b", &second).unwrap(), None);
        // A move cut short: "b" kept and still in the main tree; listed once.
        store
            .seen_kept
            .append(&claims::Claim {
                key: "b".into(),
                event: Some(second.clone()),
                at_ms: now_ms(),
            })
            .unwrap();
        assert_eq!(store.seen_ids().unwrap().len(), 2);
        drop(store);
        // And after a restart.
        let store = Store::open(dir.path(), None).unwrap();
        assert_eq!(store.claim_delivery("a", &second).unwrap(), Some(first));
        assert_eq!(
            store.seen_ids().unwrap().len(),
            2,
            "one kept, one moved at the next tick"
        );
    }

    /// sled frees a segment of its log only when nothing in it is live: with upstream ids
    /// (kept three days) and delivered records (kept a week) written at every event's pace
    /// beside the cards, every segment stayed live and the log grew ~2.3 KB an event. With
    /// both out of the main log, its file stays the size of what is live.
    #[tokio::test]
    async fn the_main_log_does_not_grow_with_the_events_it_has_seen() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), None).unwrap();
        let con = ConnectionId::new();
        let body = "x".repeat(1500);
        for i in 0..20_000u32 {
            let mut cards = [OutboxRecord {
                body: body.clone(),
                ..record(&con, i)
            }];
            store
                // Random, as GitHub's delivery ids (UUIDs) are.
                .enqueue_event(
                    Some((&format!("{:032x}", rand::random::<u128>()), &EventId::new())),
                    &mut cards,
                )
                .unwrap()
                .unwrap();
            let (key, rec) = store.next_for(&con).unwrap().unwrap();
            store.deliver(&key, &rec).unwrap();
            if i % 200 == 199 {
                store.commit().await.unwrap();
                store.move_claims().unwrap();
            }
        }
        store.flush().unwrap();
        let log = std::fs::metadata(dir.path().join("sled/db")).unwrap().len();
        // 20,000 events wrote ~40 MB through it.
        assert!(log < 12 << 20, "sled's log holds {log} bytes");
        assert_eq!(store.counts().delivered, 20_000);
        assert_eq!(store.seen_ids().unwrap().len(), 20_000);
    }

    /// Kept ids go a whole file at a time, once the newest in it is past keep; a released
    /// kept id is forgotten at once.
    #[tokio::test]
    async fn kept_delivery_ids_are_pruned_and_released() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), None).unwrap();
        let hour = std::time::Duration::from_secs(3600);
        let at = |ms: u64| {
            EventId::parse(&format!(
                "evt_{}",
                ulid::Ulid::from_parts(ms, 7).to_string().to_lowercase()
            ))
            .unwrap()
        };
        let early = at(now_ms() - 2 * 3_600_000);
        store.claim_delivery("early", &early).unwrap();
        store.claim_delivery("released", &early).unwrap();
        assert_eq!(store.move_claims().unwrap(), 2);
        store.release_delivery("released").unwrap();
        assert_eq!(
            store.claim_delivery("released", &EventId::new()).unwrap(),
            None,
            "released: a redelivery is taken"
        );
        assert_eq!(
            store.claim_delivery("early", &EventId::new()).unwrap(),
            Some(early.clone())
        );
        // The file holding the two-hour-old ids goes at a prune with an hour's keep (two: the
        // release replaced its claim).
        assert_eq!(store.prune_seen(hour).unwrap(), 2);
        assert_eq!(
            store.claim_delivery("early", &EventId::new()).unwrap(),
            None
        );
        assert_eq!(store.move_claims().unwrap(), 2);
        assert_eq!(store.prune_seen(hour).unwrap(), 0);
        assert!(store
            .claim_delivery("early", &EventId::new())
            .unwrap()
            .is_some());
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
        let c = Connection::new(
            "n",
            "https://x",
            CardKind::Teams,
            vec![],
            ConnectionOrigin::default(),
        );
        store.put_connection(&c).unwrap();
        store.enqueue(&record(&c.id, 0)).unwrap();
        assert!(store.remove_connection(&c.id).unwrap());
        assert!(store.next_for(&c.id).unwrap().is_none());
        assert!(store.connections().unwrap().is_empty());
    }
}
