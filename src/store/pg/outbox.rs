//! The outbox on PostgreSQL: each move of a card one transaction (queued → delivered, queued →
//! dead, dead → queued), never half done, here or seen from another instance.

use super::rows::*;
use super::{ms, PgStore};
use crate::ids::{ConnectionId, DeliveryId, EventId};
use crate::store::{DeadLetter, Delivered, Outbox, OutboxKey, OutboxRecord, StoreError};

/// A card as the outbox row holds it.
pub(super) struct Row {
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
pub(super) fn keyed(
    rows: Vec<(i64, String, String)>,
) -> Result<Vec<(OutboxKey, OutboxRecord)>, StoreError> {
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
    pub(super) fn all<T: serde::de::DeserializeOwned>(
        &self,
        sql: &'static str,
    ) -> Result<Vec<T>, StoreError> {
        let rows: Vec<String> = self
            .pool
            .run(move |db| Ok(db.query(sql, &[])?.iter().map(|r| r.get(0)).collect()))?;
        rows.iter().map(|r| decode(r)).collect()
    }

    /// One record by id.
    pub(super) fn one<T: serde::de::DeserializeOwned>(
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
        self.count(|c| c.enqueued(1));
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
                self.count(|c| c.enqueued(n));
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
            self.count(crate::store::Counts::first_failure);
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
        self.deliver_referenced(key, rec, None)
    }

    fn prune_delivered(&self, keep: std::time::Duration) -> Result<usize, StoreError> {
        self.record_done()?;
        let cutoff = ms(self.clock.now_ms().saturating_sub(keep.as_millis() as u64));
        let n = self.pool.run(move |db| {
            db.execute("DELETE FROM delivered WHERE delivered_ms < $1", &[&cutoff])
                .map(|n| n as usize)
        })?;
        self.count(|c| c.pruned_delivered(n));
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
                "DELETE FROM outbox WHERE connection = $1 RETURNING seq, id, record, retrying",
                &[&con],
            )?;
            let retrying = rows.iter().filter(|r| r.get::<_, bool>(3)).count();
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
            Ok(Some((cards.len(), retrying)))
        })?;
        let Some((n, retrying)) = n else {
            return Err(self.lost(&con));
        };
        self.count(|c| c.buried_queued(n, retrying));
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
            c.enqueued(n);
            c.revived(n);
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
        self.count(|c| c.buried_one(queued, was_retrying));
        Ok(())
    }

    fn put_dead(&self, letter: &DeadLetter) -> Result<(), StoreError> {
        let id = letter.record.id.as_str().to_string();
        let con = letter.record.connection.as_str().to_string();
        let (at, record) = (ms(letter.dead_ms), json(letter)?);
        self.pool
            .run(move |db| put_dead_in(db, &id, &con, at, &record))?;
        self.count(|c| c.buried_one(false, false));
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
pub(super) fn holds(
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

impl PgStore {
    /// [`Outbox::deliver`], with the message reference the card used, written with the
    /// batch it is recorded in (before it).
    pub(super) fn deliver_referenced(
        &self,
        key: &OutboxKey,
        rec: &OutboxRecord,
        reference: Option<crate::store::MessageRef>,
    ) -> Result<(), StoreError> {
        let at = self.clock.now_ms();
        let done = super::Done {
            seq: seq(key),
            id: rec.id.as_str().to_string(),
            connection: rec.connection.as_str().to_string(),
            at: ms(at),
            record: json(&delivered_record(rec, at))?,
            lease: self.lease_of(rec.connection.as_str()),
            reference,
        };
        // Recorded with the next read of the outbox (which a worker makes before its next
        // cards), any lookup, or a stop: one statement for a worker's whole batch.
        let full = {
            let mut done_list = self.done.lock().expect("done lock");
            done_list.push(done);
            done_list.len() >= super::DONE_AT_MOST
        };
        let was_retrying = rec.attempts > 1;
        self.count(|c| c.delivered_one(true, was_retrying));
        if full {
            self.record_done()?;
        }
        Ok(())
    }
}
