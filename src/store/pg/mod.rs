//! Durable state in PostgreSQL (14 or later): the same records as the sled store, in tables
//! that several instances share.
//!
//! In: the store's calls (the traits of [`super::Backend`]), from any thread, inside or outside
//! a Tokio runtime. Out: the same records, in order. Guarantees: every call that writes has
//! committed when it returns (so [`super::Durable::commit`] has nothing left to wait for); an
//! event's cards and its upstream delivery-id claim commit in one transaction
//! ([`super::Outbox::enqueue_event`]); the schema is created and upgraded by the versioned
//! migrations in [`migrations`], run at open under an advisory lock; several instances share
//! one database: a connection's cards are moved only under its delivery lease ([`leases`]),
//! and instances wake each other through `LISTEN` / `NOTIFY`.
//!
//! The store's traits are synchronous (sled's calls are short and in process). PostgreSQL's
//! client runs on threads of its own ([`pool::Pool`]): a call hands its work to one of them
//! and waits for the answer, so that no runtime's thread ever drives the client's own.
//!
//! One file per kind of record, as sled's: [`connections`], [`flows`], [`seen`], [`outbox`],
//! [`noise`], [`recent`], [`refs`], [`apps`], [`hooks`], and [`durable`] (commit, counts, health); [`rows`] holds what they
//! share.
//! Besides: [`batch`] (the group commit of accepted events), [`leases`] (delivery leases and
//! wake-ups between instances), [`migrations`], [`pool`] (the client's threads), [`tls`] (TLS
//! as libpq's `sslmode` and `sslrootcert` say, through rustls), [`import`]
//! (a sled folder moved in).

pub mod apps;
pub mod batch;
pub mod connections;
pub mod durable;
pub mod flows;
pub mod hooks;
pub mod import;
pub mod leases;
pub mod migrations;
pub mod noise;
pub mod outbox;
pub mod pool;
pub mod recent;
pub mod refs;
pub mod rows;
pub mod seen;
pub mod tls;

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
    /// A delivery lease's term (see [`leases`]): how long the cards of an instance that died
    /// wait before another takes them. Renewed every third of it.
    pub lease: std::time::Duration,
}

/// The default lease term.
pub const LEASE: std::time::Duration = std::time::Duration::from_secs(15);

/// The PostgreSQL-backed store.
pub struct PgStore {
    pool: Pool,
    cipher: secrets::Cipher,
    clock: Clock,
    /// The card counts as the tables had them when last read (other instances move cards
    /// too), plus this process's moves since. Read again in the background
    /// ([`COUNTS_EVERY`]) while someone asks for them, so that asking (ingest's backpressure
    /// check, on the server's threads) never waits on the database.
    counts: Mutex<(std::time::Instant, Counts)>,
    /// Whether the counts were asked for since they were last read.
    counts_wanted: std::sync::atomic::AtomicBool,
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
    /// Held while delivered cards are recorded ([`PgStore::record_done`]), so that a reader
    /// of the outbox waits for a recording another thread has taken the list for.
    recording: Mutex<()>,
    /// Events staged and waiting for their group commit ([`batch`]).
    batch: batch::Queue,
    /// Connections to tell other instances about, sent together ([`leases::Tell`]).
    tell: Arc<leases::Tell>,
    /// This process, as a lease holder: made at open, so a restarted instance is a new one.
    instance: String,
    /// The lease term.
    term: std::time::Duration,
    /// The leases held, and where others hold them.
    leases: Arc<Mutex<leases::Leases>>,
    /// Wake-ups from other instances, until the gateway takes them.
    wakeups: Mutex<Option<tokio::sync::mpsc::UnboundedReceiver<super::Wake>>>,
    /// Stops the listener and the renewals when the store goes (the channel closes).
    stop: Mutex<Option<std::sync::mpsc::Sender<()>>>,
    /// The listener's thread, joined at drop so that its session ends with the store.
    listener: Mutex<Option<std::thread::JoinHandle<()>>>,
}

/// A delivered card waiting to be recorded.
struct Done {
    seq: i64,
    id: String,
    connection: String,
    at: i64,
    record: String,
    /// The lease it was sent under (checked when it is recorded).
    lease: Option<i64>,
    /// The message reference it used, written before it ([`super::MessageRefs`]).
    reference: Option<super::MessageRef>,
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
        let (wakes, wakeups) = tokio::sync::mpsc::unbounded_channel();
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        let leases = Arc::new(Mutex::new(leases::Leases::default()));
        let listener = {
            let (url, leases) = (settings.url.clone(), leases.clone());
            std::thread::Builder::new()
                .name("cardwire-pg-listen".into())
                .spawn(move || leases::listen(&url, leases, wakes, stopped))
                .map_err(|e| StoreError::Config(format!("cannot start a thread: {e}")))?
        };
        let store = Arc::new(Self {
            pool,
            cipher,
            clock,
            counts: Mutex::new((std::time::Instant::now(), Counts::default())),
            counts_wanted: Default::default(),
            staging: Mutex::default(),
            recent: Mutex::new((std::time::Instant::now(), Default::default())),
            done: Mutex::default(),
            recording: Mutex::default(),
            batch: Default::default(),
            tell: Default::default(),
            instance: format!("{}", ulid::Ulid::new()),
            term: settings.lease.max(std::time::Duration::from_millis(300)),
            leases,
            wakeups: Mutex::new(Some(wakeups)),
            stop: Mutex::new(Some(stop)),
            listener: Mutex::new(Some(listener)),
        });
        // The renewals hold the store weakly: they end with it.
        let weak = Arc::downgrade(&store);
        let every = store.term / 3;
        std::thread::Builder::new()
            .name("cardwire-pg-lease".into())
            .spawn(move || {
                loop {
                    std::thread::sleep(every);
                    let Some(store) = weak.upgrade() else { return };
                    if let Err(e) = store.renew() {
                        tracing::warn!(error = %crate::error::ErrorChain(&e), "cannot renew delivery leases; this instance stops sending until it can");
                    }
                }
            })
            .map_err(|e| StoreError::Config(format!("cannot start a thread: {e}")))?;
        // New cards are told to their holders in rounds, outside the events' transactions.
        let (tell, weak) = (store.tell.clone(), Arc::downgrade(&store));
        std::thread::Builder::new()
            .name("cardwire-pg-tell".into())
            .spawn(move || {
                while let Some(cons) = tell.next() {
                    let Some(store) = weak.upgrade() else { return };
                    // Lost, the backstop finds the cards within seconds.
                    if let Err(e) = store.pool.run(move |db| leases::notify(db, &cons)) {
                        tracing::debug!(error = %crate::error::ErrorChain(&e), "cannot tell other instances of new cards");
                    }
                }
            })
            .map_err(|e| StoreError::Config(format!("cannot start a thread: {e}")))?;
        // The counts, read again while asked for: the queue every round (backpressure), the
        // dead and delivered records (which can be many: a week's) every 40th.
        let weak = Arc::downgrade(&store);
        std::thread::Builder::new()
            .name("cardwire-pg-counts".into())
            .spawn(move || {
                let mut round = 0u64;
                loop {
                    std::thread::sleep(COUNTS_EVERY);
                    let Some(store) = weak.upgrade() else { return };
                    if !store
                        .counts_wanted
                        .swap(false, std::sync::atomic::Ordering::Relaxed)
                    {
                        continue;
                    }
                    round += 1;
                    if let Err(e) = store.read_counts(round.is_multiple_of(40)) {
                        tracing::debug!(error = %crate::error::ErrorChain(&e), "cannot read the card counts");
                    }
                }
            })
            .map_err(|e| StoreError::Config(format!("cannot start a thread: {e}")))?;
        store.refresh_counts()?;
        Ok(store)
    }

    /// The counts as last read plus this process's moves since; asks for a fresh read.
    fn cached_counts(&self) -> Counts {
        self.counts_wanted
            .store(true, std::sync::atomic::Ordering::Relaxed);
        self.counts.lock().expect("counts lock").1
    }

    /// This instance's name as a lease holder.
    pub fn instance(&self) -> &str {
        &self.instance
    }

    /// Renews every lease held, in one statement, and notes those found lost.
    fn renew(&self) -> Result<(), StoreError> {
        let before: Vec<(String, i64)> = {
            let l = self.leases.lock().expect("leases lock");
            l.held.iter().map(|(c, h)| (c.clone(), h.lease)).collect()
        };
        if before.is_empty() {
            return Ok(());
        }
        let asked = std::time::Instant::now();
        let (me, term) = (self.instance.clone(), ms(self.term.as_millis() as u64));
        let renewed: Vec<(String, i64)> = self.pool.run(move |db| {
            Ok(db
                .query(
                    "UPDATE leases SET expires_ms = cardwire_now_ms() + $2 WHERE holder = $1
                     RETURNING connection, lease",
                    &[&me, &term],
                )?
                .iter()
                .map(|r| (r.get(0), r.get(1)))
                .collect())
        })?;
        self.leases
            .lock()
            .expect("leases lock")
            .renewed(&before, &renewed, asked);
        Ok(())
    }

    /// Takes `con`'s lease if no other instance holds it (or its holder's term is over).
    fn take_lease(&self, con: &str) -> Result<bool, StoreError> {
        let now = std::time::Instant::now();
        if let Some(known) = self
            .leases
            .lock()
            .expect("leases lock")
            .known(con, now, self.term)
        {
            return Ok(known);
        }
        let lease: i64 = rand::random::<i64>() & i64::MAX;
        let (con_owned, me, term) = (
            con.to_string(),
            self.instance.clone(),
            ms(self.term.as_millis() as u64),
        );
        let result = self.pool.run(move |db| {
            let con = con_owned;
            // A connection nobody held yet.
            if db
                .query_opt(
                    "INSERT INTO leases (connection, holder, lease, expires_ms)
                     VALUES ($1, $2, $3, cardwire_now_ms() + $4)
                     ON CONFLICT (connection) DO NOTHING RETURNING lease",
                    &[&con, &me, &lease, &term],
                )?
                .is_some()
            {
                return Ok(Ok(lease));
            }
            // One whose holder's term is over (or this instance's, lost track of: it keeps
            // its id, so that cards sent under it are still recorded): of instances taking it
            // over together, one locks the row, the others skip it.
            if let Some(row) = db.query_opt(
                "WITH cur AS (
                     SELECT connection FROM leases
                     WHERE connection = $1
                         AND (expires_ms < cardwire_now_ms() OR holder = $2)
                     FOR UPDATE SKIP LOCKED)
                 UPDATE leases l SET
                     lease = CASE WHEN l.holder = $2 THEN l.lease ELSE $3 END,
                     holder = $2, expires_ms = cardwire_now_ms() + $4
                 FROM cur WHERE l.connection = cur.connection
                 RETURNING l.lease",
                &[&con, &me, &lease, &term],
            )? {
                return Ok(Ok(row.get(0)));
            }
            let remaining: i64 = db
                .query_opt(
                    "SELECT greatest(expires_ms - cardwire_now_ms(), 0) FROM leases
                     WHERE connection = $1",
                    &[&con],
                )?
                .map_or(0, |r| r.get(0));
            Ok(Err(std::time::Duration::from_millis(unms(remaining))))
        })?;
        Ok(self
            .leases
            .lock()
            .expect("leases lock")
            .taken(con, now, result))
    }

    /// Lets go of `con`'s lease, telling the others (after recording what was delivered
    /// under it).
    fn let_go(&self, con: &str) -> Result<(), StoreError> {
        let Some(held) = self.leases.lock().expect("leases lock").held.remove(con) else {
            return Ok(());
        };
        self.record_done()?;
        let con = con.to_string();
        self.pool.run(move |db| {
            db.query(
                "WITH gone AS (DELETE FROM leases WHERE connection = $1 AND lease = $2
                               RETURNING connection)
                 SELECT pg_notify('cardwire', 'o ' || connection) FROM gone",
                &[&con, &held.lease],
            )
            .map(drop)
        })
    }

    /// Lets go of every lease this instance holds (at a clean stop), telling the others.
    fn let_go_all(&self) -> Result<(), StoreError> {
        self.leases.lock().expect("leases lock").held.clear();
        let me = self.instance.clone();
        self.pool.run(move |db| {
            db.query(
                "WITH gone AS (DELETE FROM leases WHERE holder = $1 RETURNING connection)
                 SELECT pg_notify('cardwire', 'o ' || connection) FROM gone",
                &[&me],
            )
            .map(drop)
        })
    }

    /// The lease to check a move of `con`'s card against.
    fn lease_of(&self, con: &str) -> Option<i64> {
        self.leases.lock().expect("leases lock").of(con)
    }

    /// Notes that `con`'s lease was found lost by a move.
    fn lost(&self, con: &str) -> StoreError {
        if let Some(h) = self.leases.lock().expect("leases lock").held.get_mut(con) {
            h.valid = false;
        }
        StoreError::LeaseLost(con.to_string())
    }

    /// Of the connections `cons` got cards, those whose worker may be another instance's:
    /// the ones to notify.
    fn to_tell(&self, cons: &[String]) -> Vec<String> {
        self.leases
            .lock()
            .expect("leases lock")
            .to_tell(cons, std::time::Instant::now(), self.term)
    }

    /// The pool, for tests and `migrate`.
    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    fn refresh_counts(&self) -> Result<Counts, StoreError> {
        self.read_counts(true)
    }

    /// Reads the counts from the tables: the queue, and with `all` the dead and delivered
    /// records too (else those keep their last reading plus this process's moves).
    fn read_counts(&self, all: bool) -> Result<Counts, StoreError> {
        self.record_done()?;
        let read = self.pool.run(move |c| {
            let row = c.query_one(
                if all {
                    "SELECT (SELECT count(*) FROM outbox), \
                            (SELECT count(*) FROM outbox WHERE retrying), \
                            (SELECT count(*) FROM dead), \
                            (SELECT count(*) FROM delivered)"
                } else {
                    "SELECT (SELECT count(*) FROM outbox), \
                            (SELECT count(*) FROM outbox WHERE retrying), -1::bigint, -1::bigint"
                },
                &[],
            )?;
            let n = |i: usize| usize::try_from(row.get::<_, i64>(i)).ok();
            Ok((n(0), n(1), n(2), n(3)))
        })?;
        let mut counts = self.counts.lock().expect("counts lock");
        counts
            .1
            .recounted(read.0.unwrap_or(0), read.1.unwrap_or(0), read.2.zip(read.3));
        counts.0 = std::time::Instant::now();
        Ok(counts.1)
    }

    /// Records the delivered cards waiting in memory, in one statement: each leaves the
    /// outbox and is kept as delivered. Until then a delivered card is still queued in the
    /// tables: a crash loses nothing, and sends it again (at least once, same
    /// `Idempotency-Key`), as a crash between sending and recording always could; so does a
    /// failure to record them (the database gone meanwhile).
    fn record_done(&self) -> Result<(), StoreError> {
        // Taken and written under one lock: a second caller (the worker reading its next
        // cards while an API call or the backstop records) must not find the list empty and
        // read the outbox before the first caller's write commits, or it reads cards already
        // sent and sends them again (seen in `instances::a_connection_broken_…`, 1 run in 10).
        let _recording = self.recording.lock().expect("recording lock");
        let done: Vec<Done> = std::mem::take(&mut *self.done.lock().expect("done lock"));
        if done.is_empty() {
            return Ok(());
        }
        let (mut seqs, mut ids, mut cons, mut ats, mut records, mut leases) =
            (vec![], vec![], vec![], vec![], vec![], vec![]);
        let references: Vec<super::MessageRef> =
            done.iter().filter_map(|d| d.reference.clone()).collect();
        for d in done {
            seqs.push(d.seq);
            ids.push(d.id);
            cons.push(d.connection);
            ats.push(d.at);
            records.push(d.record);
            leases.push(d.lease);
        }
        // Only cards whose lease still holds are recorded (the lease rows locked meanwhile):
        // one sent under a lease that expired is the new holder's, queued still, and is sent
        // again (at least once, same Idempotency-Key).
        self.pool.run(move |db| {
            // The references first: a stop between the two statements leaves cards queued
            // whose references name them (sent again, they are known as sent).
            rows::upsert_refs(db, &references)?;
            db.execute(
                "WITH d AS (
                     SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::bigint[],
                                          $5::text[], $6::bigint[])
                         AS t(seq, id, connection, at, record, lease)),
                 held AS (
                     SELECT l.connection, l.lease FROM leases l
                     JOIN (SELECT DISTINCT connection, lease FROM d) x
                         ON l.connection = x.connection AND l.lease = x.lease
                     FOR SHARE OF l),
                 ok AS (
                     SELECT d.* FROM d WHERE d.lease IS NULL
                         OR (d.connection, d.lease) IN (SELECT connection, lease FROM held)),
                 gone AS (DELETE FROM outbox WHERE seq IN (SELECT seq FROM ok))
                 INSERT INTO delivered (id, connection, delivered_ms, record)
                 SELECT id, connection, at, record FROM ok
                 ON CONFLICT (id) DO UPDATE SET delivered_ms = EXCLUDED.delivered_ms,
                     record = EXCLUDED.record",
                &[&seqs, &ids, &cons, &ats, &records, &leases],
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

impl Drop for PgStore {
    fn drop(&mut self) {
        // The listener's session ends with the store (a test may drop the database next).
        self.tell.close();
        self.stop.lock().expect("stop lock").take();
        if let Some(t) = self.listener.lock().expect("listener lock").take() {
            let _ = t.join();
        }
    }
}
