//! The store's traits on PostgreSQL: each call one statement, or one transaction where a
//! record moves (queued → delivered, queued → dead, dead → queued), so that a move is never
//! half done, here or seen from another instance.

use serde::Serialize;
use serde_json::Value;

use super::{ms, unms, PgStore};
use crate::ids::{ConnectionId, DeliveryId, EventId};
use crate::store::recent::{RecentEvent, RecentEvents};
use crate::store::{
    Bucket, Connection, ConnectionRecords, Counts, DeadLetter, Delivered, Durable, FlowState,
    FlowStates, Item, NoiseState, Outbox, OutboxKey, OutboxRecord, SeenIds, StoreError,
};

fn json<T: Serialize>(v: &T) -> Result<String, StoreError> {
    Ok(serde_json::to_string(v)?)
}

fn decode<T: serde::de::DeserializeOwned>(s: &str) -> Result<T, StoreError> {
    Ok(serde_json::from_str(s)?)
}

/// The outbox key of a row: its connection, then its sequence number (as sled's keys are).
fn key(connection: &str, seq: i64) -> OutboxKey {
    let mut k = connection.as_bytes().to_vec();
    k.extend_from_slice(&(seq as u64).to_be_bytes());
    OutboxKey(sled::IVec::from(k))
}

/// A key's sequence number.
fn seq(key: &OutboxKey) -> i64 {
    let b = key.0.as_ref();
    let tail: [u8; 8] = b[b.len().saturating_sub(8)..].try_into().unwrap_or([0; 8]);
    u64::from_be_bytes(tail) as i64
}

/// When an event id was made (its ULID's time), as the sled store reads a claim's age.
fn event_ms(event: &EventId) -> u64 {
    event
        .as_str()
        .strip_prefix(EventId::PREFIX)
        .and_then(|u| ulid::Ulid::from_string(u).ok())
        .map_or(0, |u| u.timestamp_ms())
}

/// A delivered card's record: the card without its body.
fn delivered_record(rec: &OutboxRecord, at: u64) -> Delivered {
    Delivered {
        record: rec.without_body(),
        delivered_ms: at,
    }
}

/// Inserts or replaces a dead letter inside a transaction or on a client.
fn put_dead_in(
    c: &mut impl postgres::GenericClient,
    id: &str,
    connection: &str,
    dead_ms: i64,
    record: &str,
) -> Result<(), postgres::Error> {
    c.execute(
        "INSERT INTO dead (id, connection, dead_ms, record) VALUES ($1, $2, $3, $4)
         ON CONFLICT (id) DO UPDATE SET connection = EXCLUDED.connection,
             dead_ms = EXCLUDED.dead_ms, record = EXCLUDED.record",
        &[&id, &connection, &dead_ms, &record],
    )?;
    Ok(())
}

impl ConnectionRecords for PgStore {
    fn put_connection(&self, c: &Connection) -> Result<(), StoreError> {
        let (id, record) = (c.id.as_str().to_string(), json(&c.sealed(&self.cipher))?);
        self.pool.run(move |db| {
            // Other instances read their connections again when told.
            db.query(
                "WITH up AS (INSERT INTO connections (id, record) VALUES ($1, $2)
                             ON CONFLICT (id) DO UPDATE SET record = EXCLUDED.record)
                 SELECT pg_notify('cardwire', 'c')",
                &[&id, &record],
            )
            .map(drop)
        })
    }

    fn connections(&self) -> Result<Vec<Connection>, StoreError> {
        let rows: Vec<String> = self.pool.run(|db| {
            Ok(db
                .query("SELECT record FROM connections ORDER BY id", &[])?
                .iter()
                .map(|r| r.get(0))
                .collect())
        })?;
        rows.iter()
            .map(|r| Connection::opened(r.as_bytes(), &self.cipher))
            .collect()
    }

    fn set_last_delivery(&self, id: &ConnectionId, at: u64) -> Result<(), StoreError> {
        let id = id.as_str().to_string();
        self.pool.run(move |db| {
            db.execute(
                "INSERT INTO last_delivery (connection, at_ms) VALUES ($1, $2)
                 ON CONFLICT (connection) DO UPDATE SET at_ms = EXCLUDED.at_ms",
                &[&id, &ms(at)],
            )
            .map(drop)
        })
    }

    fn last_deliveries(&self) -> Result<Vec<(ConnectionId, u64)>, StoreError> {
        self.pool.run(|db| {
            Ok(db
                .query("SELECT connection, at_ms FROM last_delivery", &[])?
                .iter()
                .filter_map(|r| {
                    let id: String = r.get(0);
                    Some((ConnectionId::parse(&id)?, unms(r.get(1))))
                })
                .collect())
        })
    }

    fn remove_connection(&self, id: &ConnectionId) -> Result<bool, StoreError> {
        let id = id.as_str().to_string();
        self.pool
            .run(move |db| {
                let mut tx = db.transaction()?;
                let existed = tx.execute("DELETE FROM connections WHERE id = $1", &[&id])? > 0;
                tx.execute("DELETE FROM last_delivery WHERE connection = $1", &[&id])?;
                let dropped = tx.execute("DELETE FROM outbox WHERE connection = $1", &[&id])?;
                tx.execute("SELECT pg_notify('cardwire', 'c')", &[])?;
                tx.commit()?;
                Ok((existed, dropped as usize))
            })
            .map(|(existed, dropped)| {
                self.count(|c| c.queued = c.queued.saturating_sub(dropped));
                existed
            })
    }
}

impl FlowStates for PgStore {
    fn put_flow_state(&self, state: &str, record: &FlowState) -> Result<(), StoreError> {
        let (state, created, record) = (state.to_string(), ms(record.created_ms), json(record)?);
        // States are short-lived: those older than an hour go while we are here.
        let cutoff = ms(self.clock.now_ms().saturating_sub(3_600_000));
        self.pool.run(move |db| {
            db.execute(
                "INSERT INTO flow_states (state, record, created_ms) VALUES ($1, $2, $3)
                 ON CONFLICT (state) DO UPDATE SET record = EXCLUDED.record,
                     created_ms = EXCLUDED.created_ms",
                &[&state, &record, &created],
            )?;
            db.execute("DELETE FROM flow_states WHERE created_ms < $1", &[&cutoff])?;
            Ok(())
        })
    }

    fn flow_state(&self, state: &str) -> Result<Option<FlowState>, StoreError> {
        let state = state.to_string();
        let row: Option<String> = self.pool.run(move |db| {
            Ok(db
                .query_opt("SELECT record FROM flow_states WHERE state = $1", &[&state])?
                .map(|r| r.get(0)))
        })?;
        row.map(|r| decode(&r)).transpose()
    }

    fn take_flow_state(&self, state: &str) -> Result<Option<FlowState>, StoreError> {
        let state = state.to_string();
        // One statement: of two instances taking the same state, one gets the row.
        let row: Option<String> = self.pool.run(move |db| {
            Ok(db
                .query_opt(
                    "DELETE FROM flow_states WHERE state = $1 RETURNING record",
                    &[&state],
                )?
                .map(|r| r.get(0)))
        })?;
        row.map(|r| decode(&r)).transpose()
    }
}

/// Claims an upstream delivery id; the event it had when it was claimed before.
fn claim_in(
    c: &mut impl postgres::GenericClient,
    key: &str,
    event: &str,
    claimed_ms: i64,
) -> Result<Option<String>, postgres::Error> {
    let inserted = c.query_opt(
        "INSERT INTO seen (key, event, claimed_ms) VALUES ($1, $2, $3)
         ON CONFLICT (key) DO NOTHING RETURNING key",
        &[&key, &event, &claimed_ms],
    )?;
    if inserted.is_some() {
        return Ok(None);
    }
    Ok(
        c.query_opt("SELECT event FROM seen WHERE key = $1", &[&key])?
            .map(|r| r.get(0)),
    )
}

impl SeenIds for PgStore {
    fn claim_delivery(&self, key: &str, event: &EventId) -> Result<Option<EventId>, StoreError> {
        let (key, ev, at) = (
            key.to_string(),
            event.as_str().to_string(),
            ms(event_ms(event)),
        );
        let first = self.pool.run(move |db| claim_in(db, &key, &ev, at))?;
        Ok(first.and_then(|f| EventId::parse(&f)))
    }

    fn reserve_delivery(&self, key: &str, event: &EventId) -> Result<Option<EventId>, StoreError> {
        // No read of the claims here: a round trip an event for what is rare. A delivery
        // claimed before is found by the claim itself, in the statement that would queue its
        // cards (`enqueue_event` answers with the first event and queues nothing); this
        // process's events being staged are found here.
        Ok(crate::store::seen::reserve(&self.staging, key, event))
    }

    fn release_delivery(&self, key: &str) -> Result<(), StoreError> {
        self.staging.lock().expect("staging lock").remove(key);
        let key = key.to_string();
        self.pool.run(move |db| {
            db.execute("DELETE FROM seen WHERE key = $1", &[&key])
                .map(drop)
        })
    }

    fn prune_seen(&self, keep: std::time::Duration) -> Result<usize, StoreError> {
        let cutoff = ms(self.clock.now_ms().saturating_sub(keep.as_millis() as u64));
        self.pool.run(move |db| {
            let n = db.execute("DELETE FROM seen WHERE claimed_ms < $1", &[&cutoff])?;
            // A limit whose arrival time has passed is as good as none.
            db.execute("DELETE FROM limits WHERE tat_ms < cardwire_now_ms()", &[])?;
            Ok(n as usize)
        })
    }
}

/// A card as the outbox row holds it.
struct Row {
    connection: String,
    id: String,
    retrying: bool,
    record: String,
}

impl Row {
    fn of(rec: &OutboxRecord) -> Result<Self, StoreError> {
        Ok(Self {
            connection: rec.connection.as_str().to_string(),
            id: rec.id.as_str().to_string(),
            retrying: rec.attempts > 0,
            record: json(rec)?,
        })
    }

    fn insert(&self, c: &mut impl postgres::GenericClient) -> Result<i64, postgres::Error> {
        Ok(c.query_one(
            "INSERT INTO outbox (connection, id, retrying, record) VALUES ($1, $2, $3, $4)
             RETURNING seq",
            &[&self.connection, &self.id, &self.retrying, &self.record],
        )?
        .get(0))
    }
}

/// Rows of `(seq, connection, record)` as keyed cards.
fn keyed(rows: Vec<(i64, String, String)>) -> Result<Vec<(OutboxKey, OutboxRecord)>, StoreError> {
    rows.into_iter()
        .map(|(s, c, r)| Ok((key(&c, s), decode(&r)?)))
        .collect()
}

impl PgStore {
    /// The oldest `n` cards of a connection.
    fn oldest(
        &self,
        con: &ConnectionId,
        n: usize,
    ) -> Result<Vec<(OutboxKey, OutboxRecord)>, StoreError> {
        self.record_done()?;
        let (con, n) = (con.as_str().to_string(), n.min(i64::MAX as usize) as i64);
        let rows = self.pool.run(move |db| {
            Ok(db
                .query(
                    "SELECT seq, connection, record FROM outbox WHERE connection = $1
                     ORDER BY seq LIMIT $2",
                    &[&con, &n],
                )?
                .iter()
                .map(|r| (r.get(0), r.get(1), r.get(2)))
                .collect())
        })?;
        keyed(rows)
    }

    /// A page of `table`'s records with ids after `after`, in id order, kept by `keep`: read
    /// a chunk at a time, so a page reads about what it shows.
    fn page<T: serde::de::DeserializeOwned>(
        &self,
        table: &'static str,
        after: Option<&str>,
        limit: usize,
        keep: &dyn Fn(&T) -> bool,
    ) -> Result<Vec<T>, StoreError> {
        let mut out = Vec::new();
        let mut from = after.unwrap_or("").to_string();
        let chunk = (limit.max(1) * 2).min(1_000) as i64;
        loop {
            let after = from.clone();
            let rows: Vec<(String, String)> = self.pool.run(move |db| {
                Ok(db
                    .query(
                        &format!(
                            "SELECT id, record FROM {table} WHERE id > $1 ORDER BY id LIMIT $2"
                        ),
                        &[&after, &chunk],
                    )?
                    .iter()
                    .map(|r| (r.get(0), r.get(1)))
                    .collect())
            })?;
            let last = rows.len() < chunk as usize;
            for (id, record) in rows {
                from = id;
                let item: T = decode(&record)?;
                if keep(&item) {
                    out.push(item);
                    if out.len() >= limit {
                        return Ok(out);
                    }
                }
            }
            if last {
                return Ok(out);
            }
        }
    }

    /// Every record of `table`, in id order.
    fn all<T: serde::de::DeserializeOwned>(&self, sql: &'static str) -> Result<Vec<T>, StoreError> {
        let rows: Vec<String> = self
            .pool
            .run(move |db| Ok(db.query(sql, &[])?.iter().map(|r| r.get(0)).collect()))?;
        rows.iter().map(|r| decode(r)).collect()
    }

    /// One record by id.
    fn one<T: serde::de::DeserializeOwned>(
        &self,
        sql: &'static str,
        id: &str,
    ) -> Result<Option<T>, StoreError> {
        let id = id.to_string();
        let row: Option<String> = self
            .pool
            .run(move |db| Ok(db.query_opt(sql, &[&id])?.map(|r| r.get(0))))?;
        row.map(|r| decode(&r)).transpose()
    }
}

impl Outbox for PgStore {
    fn enqueue(&self, rec: &OutboxRecord) -> Result<OutboxKey, StoreError> {
        let row = Row::of(rec)?;
        let tell = self.to_tell(std::slice::from_ref(&row.connection));
        let seq = self.pool.run(move |db| row.insert(db))?;
        self.tell.add(tell);
        self.count(|c| c.queued += 1);
        Ok(key(rec.connection.as_str(), seq))
    }

    fn enqueue_event(
        &self,
        claim: Option<(&str, &EventId)>,
        records: &mut [OutboxRecord],
    ) -> Result<Result<(), EventId>, StoreError> {
        let mut rows = Vec::with_capacity(records.len());
        for rec in records.iter_mut() {
            rec.claim = claim.map(|(key, _)| key.to_string());
            rows.push(Row::of(rec)?);
        }
        let owned_claim =
            claim.map(|(k, e)| (k.to_string(), e.as_str().to_string(), ms(event_ms(e))));
        // Connections whose worker may be another instance's are told once the cards are
        // committed (in rounds: `leases::Tell`); those this instance holds are woken here by the
        // caller.
        let targets: Vec<String> = rows.iter().map(|r| r.connection.clone()).collect();
        let tell = self.to_tell(&targets);
        // Committed with the events staged meanwhile, in one statement (one transaction):
        // the claim, and the cards only if the claim was made (see `batch`).
        let (reply, answer) = std::sync::mpsc::sync_channel(1);
        self.batch
            .lock()
            .expect("batch lock")
            .push(super::batch::Pending {
                claim: owned_claim,
                cards: rows
                    .into_iter()
                    .map(|r| (r.connection, r.id, r.retrying, r.record))
                    .collect(),
                reply,
            });
        let queue = self.batch.clone();
        let result = self
            .pool
            .submit(move |db| super::batch::commit(db, super::batch::take(&queue)))
            .and_then(|()| answer.recv().map_err(|_| StoreError::Closed)?);
        if let Some((key, _)) = claim {
            self.staging.lock().expect("staging lock").remove(key);
        }
        let n = records.len();
        match result? {
            None => {
                self.tell.add(tell);
                self.count(|c| c.queued += n);
                Ok(Ok(()))
            }
            Some(first) => Ok(Err(EventId::parse(&first).unwrap_or_else(EventId::new))),
        }
    }

    fn next_for(
        &self,
        con: &ConnectionId,
    ) -> Result<Option<(OutboxKey, OutboxRecord)>, StoreError> {
        Ok(self.oldest(con, 1)?.into_iter().next())
    }

    fn update(&self, key: &OutboxKey, rec: &OutboxRecord) -> Result<(), StoreError> {
        let (s, row) = (seq(key), Row::of(rec)?);
        let lease = self.lease_of(&row.connection);
        let con = row.connection.clone();
        let held: bool = self.pool.run(move |db| {
            Ok(db
                .query_one(
                    "WITH l AS (SELECT 1 FROM leases WHERE connection = $4 AND lease = $5
                                FOR SHARE),
                     u AS (UPDATE outbox SET record = $2, retrying = $3
                           WHERE seq = $1 AND ($5::bigint IS NULL OR EXISTS (SELECT 1 FROM l))
                           RETURNING 1)
                     SELECT $5::bigint IS NULL OR EXISTS (SELECT 1 FROM l)",
                    &[&s, &row.record, &row.retrying, &row.connection, &lease],
                )?
                .get(0))
        })?;
        if !held {
            return Err(self.lost(&con));
        }
        if rec.attempts == 1 {
            self.count(|c| c.retrying += 1);
        }
        Ok(())
    }

    fn next_batch(
        &self,
        con: &ConnectionId,
        n: usize,
    ) -> Result<Vec<(OutboxKey, OutboxRecord)>, StoreError> {
        self.oldest(con, n)
    }

    fn deliver(&self, key: &OutboxKey, rec: &OutboxRecord) -> Result<(), StoreError> {
        let at = self.clock.now_ms();
        let done = super::Done {
            seq: seq(key),
            id: rec.id.as_str().to_string(),
            connection: rec.connection.as_str().to_string(),
            at: ms(at),
            record: json(&delivered_record(rec, at))?,
            lease: self.lease_of(rec.connection.as_str()),
        };
        // Recorded with the next read of the outbox (which a worker makes before its next
        // cards), any lookup, or a stop: one statement for a worker's whole batch.
        let full = {
            let mut done_list = self.done.lock().expect("done lock");
            done_list.push(done);
            done_list.len() >= super::DONE_AT_MOST
        };
        let was_retrying = rec.attempts > 1;
        self.count(|c| {
            c.left_queue(was_retrying);
            c.delivered += 1;
        });
        if full {
            self.record_done()?;
        }
        Ok(())
    }

    fn prune_delivered(&self, keep: std::time::Duration) -> Result<usize, StoreError> {
        self.record_done()?;
        let cutoff = ms(self.clock.now_ms().saturating_sub(keep.as_millis() as u64));
        let n = self.pool.run(move |db| {
            db.execute("DELETE FROM delivered WHERE delivered_ms < $1", &[&cutoff])
                .map(|n| n as usize)
        })?;
        self.count(|c| c.delivered = c.delivered.saturating_sub(n));
        Ok(n)
    }

    fn delivered(&self) -> Result<Vec<Delivered>, StoreError> {
        self.record_done()?;
        self.all("SELECT record FROM delivered ORDER BY id")
    }

    fn bury_all(&self, con: &ConnectionId, reason: &str) -> Result<usize, StoreError> {
        self.record_done()?;
        let con = con.as_str().to_string();
        let lease = self.lease_of(&con);
        let (reason, now) = (reason.to_string(), self.clock.now_ms());
        let con_owned = con.clone();
        let n = self.pool.run(move |db| {
            let con = con_owned;
            let mut tx = db.transaction()?;
            if !holds(&mut tx, &con, lease)? {
                return Ok(None);
            }
            let rows = tx.query(
                "DELETE FROM outbox WHERE connection = $1 RETURNING seq, id, record",
                &[&con],
            )?;
            let mut cards: Vec<(i64, String, String)> = rows
                .iter()
                .map(|r| (r.get(0), r.get(1), r.get(2)))
                .collect();
            cards.sort_by_key(|c| c.0);
            for (_, id, record) in &cards {
                let Ok(rec) = serde_json::from_str::<OutboxRecord>(record) else {
                    continue;
                };
                let letter = DeadLetter {
                    record: rec,
                    reason: reason.clone(),
                    dead_ms: now,
                };
                let Ok(letter) = serde_json::to_string(&letter) else {
                    continue;
                };
                put_dead_in(&mut tx, id, &con, ms(now), &letter)?;
            }
            tx.commit()?;
            Ok(Some(cards.len()))
        })?;
        let Some(n) = n else {
            return Err(self.lost(&con));
        };
        self.count(|c| {
            c.queued = c.queued.saturating_sub(n);
            c.dead += n;
        });
        Ok(n)
    }

    fn revive(&self, ids: &[DeliveryId]) -> Result<Vec<ConnectionId>, StoreError> {
        let ids: Vec<String> = ids.iter().map(|i| i.as_str().to_string()).collect();
        let revived: Vec<String> = self.pool.run(move |db| {
            let mut cons = Vec::new();
            for id in &ids {
                let mut tx = db.transaction()?;
                let Some(row) =
                    tx.query_opt("SELECT record FROM dead WHERE id = $1 FOR UPDATE", &[id])?
                else {
                    continue;
                };
                let record: String = row.get(0);
                let Ok(letter) = serde_json::from_str::<DeadLetter>(&record) else {
                    continue;
                };
                if letter.record.body.is_empty() {
                    // A card that never rendered cannot be sent; it stays dead.
                    continue;
                }
                let mut rec = letter.record;
                rec.attempts = 0;
                rec.not_before_ms = 0;
                let Ok(row) = Row::of(&rec) else { continue };
                row.insert(&mut tx)?;
                tx.execute("DELETE FROM dead WHERE id = $1", &[id])?;
                tx.commit()?;
                cons.push(rec.connection.as_str().to_string());
            }
            // Whichever instance holds a connection's lease sends its revived cards.
            cons.sort();
            cons.dedup();
            super::leases::notify(db, &cons)?;
            Ok(cons)
        })?;
        let n = revived.len();
        self.count(|c| {
            c.queued += n;
            c.dead = c.dead.saturating_sub(n);
        });
        let mut cons: Vec<ConnectionId> = revived
            .iter()
            .filter_map(|c| ConnectionId::parse(c))
            .collect();
        cons.sort();
        cons.dedup();
        Ok(cons)
    }

    fn bury(&self, key: &OutboxKey, letter: &DeadLetter) -> Result<(), StoreError> {
        let s = seq(key);
        let id = letter.record.id.as_str().to_string();
        let con = letter.record.connection.as_str().to_string();
        let (at, record) = (ms(letter.dead_ms), json(letter)?);
        let lease = self.lease_of(&con);
        let con_owned = con.clone();
        let queued = self.pool.run(move |db| {
            let con = con_owned;
            let mut tx = db.transaction()?;
            if !holds(&mut tx, &con, lease)? {
                return Ok(None);
            }
            put_dead_in(&mut tx, &id, &con, at, &record)?;
            let queued = tx.execute("DELETE FROM outbox WHERE seq = $1", &[&s])? > 0;
            tx.commit()?;
            Ok(Some(queued))
        })?;
        let Some(queued) = queued else {
            return Err(self.lost(&con));
        };
        let was_retrying = letter.record.attempts > 1;
        self.count(|c| {
            if queued {
                c.left_queue(was_retrying);
            }
            c.dead += 1;
        });
        Ok(())
    }

    fn put_dead(&self, letter: &DeadLetter) -> Result<(), StoreError> {
        let id = letter.record.id.as_str().to_string();
        let con = letter.record.connection.as_str().to_string();
        let (at, record) = (ms(letter.dead_ms), json(letter)?);
        self.pool
            .run(move |db| put_dead_in(db, &id, &con, at, &record))?;
        self.count(|c| c.dead += 1);
        Ok(())
    }

    fn dead_letters(&self) -> Result<Vec<DeadLetter>, StoreError> {
        self.all("SELECT record FROM dead ORDER BY id")
    }

    fn dead_letter(&self, id: &str) -> Result<Option<DeadLetter>, StoreError> {
        self.one("SELECT record FROM dead WHERE id = $1", id)
    }

    fn delivered_record(&self, id: &str) -> Result<Option<Delivered>, StoreError> {
        self.record_done()?;
        self.one("SELECT record FROM delivered WHERE id = $1", id)
    }

    fn queued_record(&self, id: &str) -> Result<Option<OutboxRecord>, StoreError> {
        self.record_done()?;
        self.one("SELECT record FROM outbox WHERE id = $1", id)
    }

    fn dead_page(
        &self,
        after: Option<&str>,
        limit: usize,
        keep: &dyn Fn(&OutboxRecord) -> bool,
    ) -> Result<Vec<DeadLetter>, StoreError> {
        self.page("dead", after, limit, &|d: &DeadLetter| keep(&d.record))
    }

    fn delivered_page(
        &self,
        after: Option<&str>,
        limit: usize,
        keep: &dyn Fn(&OutboxRecord) -> bool,
    ) -> Result<Vec<Delivered>, StoreError> {
        self.record_done()?;
        self.page("delivered", after, limit, &|d: &Delivered| keep(&d.record))
    }

    fn queued_records(&self) -> Result<Vec<OutboxRecord>, StoreError> {
        self.record_done()?;
        self.all("SELECT record FROM outbox ORDER BY connection, seq")
    }

    fn queued_connections(&self) -> Result<Vec<ConnectionId>, StoreError> {
        self.record_done()?;
        self.pool.run(|db| {
            Ok(db
                .query(
                    "SELECT DISTINCT connection FROM outbox ORDER BY connection",
                    &[],
                )?
                .iter()
                .filter_map(|r| ConnectionId::parse(&r.get::<_, String>(0)))
                .collect())
        })
    }

    fn lease(&self, con: &ConnectionId) -> Result<bool, StoreError> {
        self.take_lease(con.as_str())
    }

    fn release(&self, con: &ConnectionId) -> Result<(), StoreError> {
        self.let_go(con.as_str())
    }

    fn deliverable_connections(&self) -> Result<Vec<ConnectionId>, StoreError> {
        self.record_done()?;
        let me = self.instance.clone();
        self.pool.run(move |db| {
            Ok(db
                .query(
                    "SELECT DISTINCT o.connection FROM outbox o
                     LEFT JOIN leases l ON l.connection = o.connection
                     WHERE l.connection IS NULL OR l.holder = $1
                         OR l.expires_ms < cardwire_now_ms()
                     ORDER BY o.connection",
                    &[&me],
                )?
                .iter()
                .filter_map(|r| ConnectionId::parse(&r.get::<_, String>(0)))
                .collect())
        })
    }
}

/// Whether `lease` (if any: `None` is a move by no worker, such as the admin's) still holds
/// `con`, its row locked until the transaction ends so that no one takes it meanwhile.
fn holds(
    tx: &mut postgres::Transaction<'_>,
    con: &str,
    lease: Option<i64>,
) -> Result<bool, postgres::Error> {
    let Some(lease) = lease else {
        return Ok(true);
    };
    Ok(tx
        .query_opt(
            "SELECT 1 FROM leases WHERE connection = $1 AND lease = $2 FOR SHARE",
            &[&con, &lease],
        )?
        .is_some())
}

impl NoiseState for PgStore {
    fn dedup_claim(&self, key: &str, now_ms: u64, expires_ms: u64) -> Result<bool, StoreError> {
        let key = key.to_string();
        // One statement: a key held and not expired stays held, whichever instance asks.
        self.pool.run(move |db| {
            Ok(db
                .query_opt(
                    "INSERT INTO dedup (key, expires_ms) VALUES ($1, $2)
                     ON CONFLICT (key) DO UPDATE SET expires_ms = EXCLUDED.expires_ms
                         WHERE dedup.expires_ms <= $3
                     RETURNING key",
                    &[&key, &ms(expires_ms), &ms(now_ms)],
                )?
                .is_some())
        })
    }

    fn fold_bucket(&self, id: &str) -> Result<Option<Bucket>, StoreError> {
        self.one("SELECT record FROM fold_buckets WHERE id = $1", id)
    }

    fn put_fold(&self, bucket: &Bucket, item: &Item) -> Result<(), StoreError> {
        let (id, due, b, i) = (
            bucket.id.clone(),
            ms(bucket.due_ms),
            json(bucket)?,
            json(item)?,
        );
        self.pool.run(move |db| {
            let mut tx = db.transaction()?;
            tx.execute(
                "INSERT INTO fold_buckets (id, due_ms, record) VALUES ($1, $2, $3)
                 ON CONFLICT (id) DO UPDATE SET due_ms = EXCLUDED.due_ms, record = EXCLUDED.record",
                &[&id, &due, &b],
            )?;
            tx.execute(
                "INSERT INTO fold_items (bucket, record) VALUES ($1, $2)",
                &[&id, &i],
            )?;
            tx.commit()
        })
    }

    fn fold_buckets(&self) -> Result<Vec<Bucket>, StoreError> {
        self.all("SELECT record FROM fold_buckets ORDER BY id")
    }

    fn fold_buckets_due(&self, now_ms: u64) -> Result<Vec<Bucket>, StoreError> {
        let now = ms(now_ms);
        let rows: Vec<String> = self.pool.run(move |db| {
            Ok(db
                .query(
                    "SELECT record FROM fold_buckets WHERE due_ms <= $1 ORDER BY due_ms, id",
                    &[&now],
                )?
                .iter()
                .map(|r| r.get(0))
                .collect())
        })?;
        rows.iter().map(|r| decode(r)).collect()
    }

    fn take_folds(&self, id: &str) -> Result<Vec<Item>, StoreError> {
        let id = id.to_string();
        // One transaction: of two instances taking a bucket, one gets its cards.
        let rows: Vec<(i64, String)> = self.pool.run(move |db| {
            let mut tx = db.transaction()?;
            let rows = tx.query(
                "DELETE FROM fold_items WHERE bucket = $1 RETURNING seq, record",
                &[&id],
            )?;
            tx.execute("DELETE FROM fold_buckets WHERE id = $1", &[&id])?;
            tx.commit()?;
            Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
        })?;
        take_in_order(rows)
    }

    fn put_digest_item(&self, con: &ConnectionId, item: &Item) -> Result<(), StoreError> {
        let (con, record) = (con.as_str().to_string(), json(item)?);
        self.pool.run(move |db| {
            db.execute(
                "INSERT INTO digest_items (connection, record) VALUES ($1, $2)",
                &[&con, &record],
            )
            .map(drop)
        })
    }

    fn take_digest_items(&self, con: &ConnectionId) -> Result<Vec<Item>, StoreError> {
        let con = con.as_str().to_string();
        let rows: Vec<(i64, String)> = self.pool.run(move |db| {
            Ok(db
                .query(
                    "DELETE FROM digest_items WHERE connection = $1 RETURNING seq, record",
                    &[&con],
                )?
                .iter()
                .map(|r| (r.get(0), r.get(1)))
                .collect())
        })?;
        take_in_order(rows)
    }

    fn digest_due(&self, con: &ConnectionId) -> Result<Option<u64>, StoreError> {
        let con = con.as_str().to_string();
        self.pool.run(move |db| {
            Ok(db
                .query_opt(
                    "SELECT due_ms FROM digest_due WHERE connection = $1",
                    &[&con],
                )?
                .map(|r| unms(r.get(0))))
        })
    }

    fn clear_digest_due(&self, con: &ConnectionId) -> Result<(), StoreError> {
        let con = con.as_str().to_string();
        self.pool.run(move |db| {
            db.execute("DELETE FROM digest_due WHERE connection = $1", &[&con])
                .map(drop)
        })
    }

    fn limit_take(
        &self,
        key: &str,
        now_ms: u64,
        interval_ms: u64,
        burst: u32,
    ) -> Result<Option<Result<(), u64>>, StoreError> {
        let key = key.to_string();
        let (now, t, b) = (ms(now_ms), ms(interval_ms.max(1)), i64::from(burst.max(1)));
        // GCRA in one statement, the row locked while it decides: a card passes when its
        // theoretical arrival time is within `burst` intervals of now, and moves it one
        // interval on. Refused, it says when the next passes (from the time before).
        let (passed, before): (Option<i64>, Option<i64>) = self.pool.run(move |db| {
            let row = db.query_one(
                "WITH up AS (
                     INSERT INTO limits (key, tat_ms) VALUES ($1, $2::bigint + $3::bigint)
                     ON CONFLICT (key) DO UPDATE
                         SET tat_ms = greatest(limits.tat_ms, $2) + $3
                         WHERE greatest(limits.tat_ms, $2) + $3 - $2 <= $3 * $4::bigint
                     RETURNING tat_ms)
                 SELECT (SELECT tat_ms FROM up), (SELECT tat_ms FROM limits WHERE key = $1)",
                &[&key, &now, &t, &b],
            )?;
            Ok((row.get(0), row.get(1)))
        })?;
        if passed.is_some() {
            return Ok(Some(Ok(())));
        }
        let tat = before.unwrap_or(now);
        Ok(Some(Err(unms((tat.max(now) + t - t * b).max(now)))))
    }

    fn set_digest_due(&self, con: &ConnectionId, at: u64) -> Result<(), StoreError> {
        let con = con.as_str().to_string();
        self.pool.run(move |db| {
            db.execute(
                "INSERT INTO digest_due (connection, due_ms) VALUES ($1, $2)
                 ON CONFLICT (connection) DO UPDATE SET due_ms = EXCLUDED.due_ms",
                &[&con, &ms(at)],
            )
            .map(drop)
        })
    }
}

/// Items deleted with their sequence numbers, in the order they were kept.
fn take_in_order(mut rows: Vec<(i64, String)>) -> Result<Vec<Item>, StoreError> {
    rows.sort_by_key(|r| r.0);
    rows.iter().map(|(_, r)| decode(r)).collect()
}

impl PgStore {
    /// Writes the recent events kept in memory, in one statement, and drops the ring's oldest.
    fn save_recent(&self) -> Result<(), StoreError> {
        let pending: Vec<RecentEvent> = {
            let mut recent = self.recent.lock().expect("recent lock");
            recent.0 = std::time::Instant::now();
            recent.1.drain(..).collect()
        };
        if pending.is_empty() {
            return Ok(());
        }
        let records: Vec<String> = pending
            .iter()
            .map(|e| json(&e.to_json()))
            .collect::<Result<_, _>>()?;
        let keep = crate::store::recent::RECENT as i64;
        self.pool.run(move |db| {
            db.execute(
                "INSERT INTO recent_events (record)
                 SELECT r FROM unnest($1::text[]) WITH ORDINALITY AS t(r, n) ORDER BY n",
                &[&records],
            )?;
            db.execute(
                "DELETE FROM recent_events WHERE seq <= (
                     SELECT seq FROM recent_events ORDER BY seq DESC OFFSET $1 LIMIT 1)",
                &[&keep],
            )?;
            Ok(())
        })
    }
}

impl RecentEvents for PgStore {
    fn put_recent(&self, event: RecentEvent) {
        let due = {
            let mut recent = self.recent.lock().expect("recent lock");
            recent.1.push_back(event);
            while recent.1.len() > crate::store::recent::RECENT {
                recent.1.pop_front();
            }
            recent.0.elapsed() >= std::time::Duration::from_secs(1)
        };
        // The playground's ring is not state that an event's acceptance depends on: a failure
        // here is logged, never an error for the upstream.
        if due {
            if let Err(e) = self.save_recent() {
                tracing::warn!(error = %crate::error::ErrorChain(&e), "cannot keep the recent events");
            }
        }
    }

    fn recent(&self) -> Result<Vec<Value>, StoreError> {
        self.save_recent()?;
        let keep = crate::store::recent::RECENT as i64;
        let rows: Vec<String> = self.pool.run(move |db| {
            Ok(db
                .query(
                    "SELECT record FROM recent_events ORDER BY seq DESC LIMIT $1",
                    &[&keep],
                )?
                .iter()
                .map(|r| r.get(0))
                .collect())
        })?;
        rows.iter().map(|r| decode(r)).collect()
    }
}

impl Durable for PgStore {
    fn commit(&self) -> crate::store::Commit {
        // Every write committed before its call returned.
        Box::pin(std::future::ready(Ok(())))
    }

    fn flush(&self) -> Result<(), StoreError> {
        // Every card is committed but the delivered ones not yet recorded, and the
        // playground's ring.
        self.record_done()?;
        self.save_recent()?;
        // A clean stop: the other instances take this one's connections at once.
        self.let_go_all()
    }

    fn counts(&self) -> Counts {
        self.cached_counts()
    }

    fn now_ms(&self) -> u64 {
        self.clock.now_ms()
    }

    fn blocking(&self) -> bool {
        true
    }

    fn wakeups(&self) -> Option<tokio::sync::mpsc::UnboundedReceiver<crate::store::Wake>> {
        self.wakeups.lock().expect("wakeups lock").take()
    }

    fn health(&self) -> Result<(), StoreError> {
        self.pool.run(|db| db.simple_query("SELECT 1").map(drop))
    }
}
