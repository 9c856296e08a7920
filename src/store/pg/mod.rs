//! Durable state in PostgreSQL (14 or later): the same records as the sled store, in tables
//! that several instances share.
//!
//! In: the store's calls (the traits of [`super::Backend`]), from any thread, inside or outside
//! a Tokio runtime. Out: the same records, in order. Guarantees: every call that writes has
//! committed when it returns (so [`super::Durable::commit`] has nothing left to wait for); an
//! event's cards and its upstream delivery-id claim commit in one transaction
//! ([`super::Outbox::enqueue_event`]); the schema is created and upgraded by the versioned
//! migrations in [`migrations`], run at open under an advisory lock.
//!
//! The store's traits are synchronous (sled's calls are short and in process). PostgreSQL's
//! client runs on threads of its own ([`pool::Pool`]): a call hands its work to one of them
//! and waits for the answer, so that no runtime's thread ever drives the client's own.

pub mod migrations;
pub mod pool;
mod records;

pub use pool::Pool;

use std::sync::{Arc, Mutex};

use super::{secrets, Clock, Counts, StoreError};
use crate::ids::EventId;

/// `store.postgres` in the config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgSettings {
    /// `postgres://user:password@host:port/database` (libpq's URL form).
    pub url: String,
    /// Connections to the server (each on a thread of its own).
    pub pool: usize,
}

/// The PostgreSQL-backed store.
pub struct PgStore {
    pool: Pool,
    cipher: secrets::Cipher,
    clock: Clock,
    /// The card counts as the tables had them when last read (at most [`COUNTS_EVERY`] ago:
    /// other instances move cards too), plus this process's moves since.
    counts: Mutex<(std::time::Instant, Counts)>,
    /// Upstream delivery ids reserved by events being staged in this process (see
    /// [`super::SeenIds::reserve_delivery`]); the claim itself is a row, unique across
    /// instances.
    staging: Mutex<std::collections::HashMap<String, EventId>>,
    /// Recent events not written yet (the newest [`super::recent::RECENT`]), and when the ring
    /// was last written: at most once a second, so that an event does not pay for the
    /// playground's ring.
    recent: Mutex<(
        std::time::Instant,
        std::collections::VecDeque<super::recent::RecentEvent>,
    )>,
    /// Cards delivered and not yet recorded as such (see [`super::Outbox::deliver`]).
    done: Mutex<Vec<Done>>,
}

/// A delivered card waiting to be recorded.
struct Done {
    seq: i64,
    id: String,
    connection: String,
    at: i64,
    record: String,
}

/// Delivered cards recorded at the latest once this many wait.
const DONE_AT_MOST: usize = 64;

/// How old the tables' counts may be.
const COUNTS_EVERY: std::time::Duration = std::time::Duration::from_millis(250);

impl PgStore {
    /// Connects, upgrades the schema (under an advisory lock) and opens the store. `key` is
    /// the secrets key (`connect.secrets_key`), which every instance must share.
    pub fn open(settings: &PgSettings, key: &str, clock: Clock) -> Result<Arc<Self>, StoreError> {
        let cipher = secrets::Cipher::from_key(key)?;
        let pool = Pool::connect(&settings.url, settings.pool.max(1))?;
        let found = pool.run(migrations::migrate)?;
        if !found.unknown.is_empty() {
            return Err(StoreError::Schema(found.describe()));
        }
        let store = Arc::new(Self {
            pool,
            cipher,
            clock,
            counts: Mutex::new((std::time::Instant::now(), Counts::default())),
            staging: Mutex::default(),
            recent: Mutex::new((std::time::Instant::now(), Default::default())),
            done: Mutex::default(),
        });
        store.refresh_counts()?;
        Ok(store)
    }

    /// The pool, for tests and `migrate`.
    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    fn refresh_counts(&self) -> Result<Counts, StoreError> {
        self.record_done()?;
        let counts = self.pool.run(|c| {
            let row = c.query_one(
                "SELECT (SELECT count(*) FROM outbox), \
                        (SELECT count(*) FROM outbox WHERE retrying), \
                        (SELECT count(*) FROM dead), \
                        (SELECT count(*) FROM delivered)",
                &[],
            )?;
            let n = |i: usize| row.get::<_, i64>(i).max(0) as usize;
            Ok(Counts {
                queued: n(0),
                retrying: n(1),
                dead: n(2),
                delivered: n(3),
            })
        })?;
        *self.counts.lock().expect("counts lock") = (std::time::Instant::now(), counts);
        Ok(counts)
    }

    /// Records the delivered cards waiting in memory, in one statement: each leaves the
    /// outbox and is kept as delivered. Until then a delivered card is still queued in the
    /// tables: a crash loses nothing, and sends it again (at least once, same
    /// `Idempotency-Key`), as a crash between sending and recording always could; so does a
    /// failure to record them (the database gone meanwhile).
    fn record_done(&self) -> Result<(), StoreError> {
        let done: Vec<Done> = std::mem::take(&mut *self.done.lock().expect("done lock"));
        if done.is_empty() {
            return Ok(());
        }
        let (mut seqs, mut ids, mut cons, mut ats, mut records) =
            (vec![], vec![], vec![], vec![], vec![]);
        for d in done {
            seqs.push(d.seq);
            ids.push(d.id);
            cons.push(d.connection);
            ats.push(d.at);
            records.push(d.record);
        }
        self.pool.run(move |db| {
            db.execute(
                "WITH gone AS (DELETE FROM outbox WHERE seq = ANY($1))
                 INSERT INTO delivered (id, connection, delivered_ms, record)
                 SELECT * FROM unnest($2::text[], $3::text[], $4::bigint[], $5::text[])
                 ON CONFLICT (id) DO UPDATE SET delivered_ms = EXCLUDED.delivered_ms,
                     record = EXCLUDED.record",
                &[&seqs, &ids, &cons, &ats, &records],
            )
            .map(drop)
        })
    }

    /// Notes a move of this process's in the counts until the next read of the tables.
    fn count(&self, f: impl FnOnce(&mut Counts)) {
        f(&mut self.counts.lock().expect("counts lock").1);
    }
}

/// A time as PostgreSQL's `bigint`.
fn ms(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// A `bigint` time back.
fn unms(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

/// The advisory lock an instance holds while it uses the database: "cardwire1".
const INSTANCE_LOCK: i64 = 0x6361_7264_7769_7231;

/// One gateway a database, for now (the gateway takes it at start; the store itself works for
/// several): each delivers the cards of every connection it sees, so two on one database would
/// send every card twice. The lock is a session-level advisory lock,
/// held by a connection on a thread of its own until the store is dropped (or the process
/// dies: PostgreSQL releases it with the session).
pub struct InstanceLock {
    stop: Option<std::sync::mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl InstanceLock {
    /// Takes the lock, or says that another instance holds it.
    pub fn take(url: &str) -> Result<Self, StoreError> {
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        let (taken, answer) = std::sync::mpsc::sync_channel::<Result<(), StoreError>>(1);
        let url = url.to_string();
        let thread = std::thread::Builder::new()
            .name("cardwire-pg-lock".into())
            .spawn(move || {
                let mut client = match postgres::Client::connect(&url, postgres::NoTls) {
                    Ok(c) => c,
                    Err(e) => {
                        let _ = taken.send(Err(StoreError::unavailable(e)));
                        return;
                    }
                };
                let got = client
                    .query_one("SELECT pg_try_advisory_lock($1)", &[&INSTANCE_LOCK])
                    .map(|r| r.get::<_, bool>(0));
                let _ = taken.send(match got {
                    Ok(true) => Ok(()),
                    Ok(false) => Err(StoreError::Config(
                        "another cardwire is using this PostgreSQL database; several instances on one database are not supported yet (each would deliver every card)".into(),
                    )),
                    Err(e) => Err(StoreError::from(e)),
                });
                // Held until the store goes (the channel closes) or the session ends.
                let _ = stopped.recv();
            })
            .map_err(|e| StoreError::Config(format!("cannot start a thread: {e}")))?;
        let lock = Self {
            stop: Some(stop),
            thread: Some(thread),
        };
        answer.recv().map_err(|_| StoreError::Closed)??;
        Ok(lock)
    }
}

impl Drop for InstanceLock {
    fn drop(&mut self) {
        self.stop.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
