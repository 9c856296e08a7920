//! Noise-control state on PostgreSQL: dedup keys, folds, digests.

use super::rows::*;
use super::{ms, unms, PgStore};
use crate::ids::ConnectionId;
use crate::store::{Bucket, Item, NoiseState, StoreError};

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
pub(super) fn take_in_order(mut rows: Vec<(i64, String)>) -> Result<Vec<Item>, StoreError> {
    rows.sort_by_key(|r| r.0);
    rows.iter().map(|(_, r)| decode(r)).collect()
}
