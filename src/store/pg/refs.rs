//! Message references on PostgreSQL: a row of `message_refs` per (connection, key), seen by
//! every instance.

use super::rows::upsert_refs as upsert;
use super::{ms, unms, PgStore};
use crate::ids::{ConnectionId, DeliveryId};
use crate::store::{MessageRef, MessageRefs, OutboxKey, OutboxRecord, StoreError};

impl MessageRefs for PgStore {
    fn message_ref(&self, con: &ConnectionId, key: &str) -> Result<Option<MessageRef>, StoreError> {
        // Delivered cards waiting to be recorded carry references too.
        self.record_done()?;
        let (c, k) = (con.as_str().to_string(), key.to_string());
        let row = self.pool.run(move |db| {
            db.query_opt(
                "SELECT message, place, delivery, at_ms FROM message_refs
                 WHERE connection = $1 AND key = $2",
                &[&c, &k],
            )
        })?;
        Ok(row.and_then(|r| {
            Some(MessageRef {
                connection: con.clone(),
                key: key.to_string(),
                message: r.get(0),
                place: r.get(1),
                delivery: DeliveryId::parse(r.get::<_, &str>(2))?,
                at_ms: unms(r.get(3)),
            })
        }))
    }

    fn deliver_with_ref(
        &self,
        key: &OutboxKey,
        rec: &OutboxRecord,
        reference: &MessageRef,
        fresh: bool,
    ) -> Result<(), StoreError> {
        if fresh {
            // A new message: its reference at once, so that no stop can lose it while the
            // card's record waits for its batch.
            let r = reference.clone();
            self.pool
                .run(move |db| upsert(db, std::slice::from_ref(&r)))?;
            return self.deliver_referenced(key, rec, None);
        }
        self.deliver_referenced(key, rec, Some(reference.clone()))
    }

    fn prune_message_refs(&self, keep: std::time::Duration) -> Result<usize, StoreError> {
        self.record_done()?;
        let cutoff = ms(self.clock.now_ms().saturating_sub(keep.as_millis() as u64));
        self.pool.run(move |db| {
            db.execute("DELETE FROM message_refs WHERE at_ms < $1", &[&cutoff])
                .map(|n| n as usize)
        })
    }

    fn message_refs_kept(&self) -> Result<usize, StoreError> {
        self.record_done()?;
        let n: i64 = self.pool.run(|db| {
            db.query_one("SELECT count(*) FROM message_refs", &[])
                .map(|r| r.get(0))
        })?;
        Ok(usize::try_from(n).unwrap_or(0))
    }
}
