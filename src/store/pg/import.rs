//! Moving a sled data folder into PostgreSQL (`cardwire migrate --from-sled DIR`).
//!
//! In: a sled store no gateway is using, and an empty PostgreSQL store. Out: the same state
//! in PostgreSQL, and what was copied. Guarantees: nothing is taken out of the sled folder
//! (it is opened as a start opens it, recovering a crash's leftovers first, and read), so a
//! failed import leaves it whole and can be run again into a fresh database; a database
//! that already holds connections or cards is refused rather than mixed; queued cards keep their order per connection; webhook URLs are opened with the
//! folder's key and sealed again with the shared `connect.secrets_key`.
//!
//! Copied: connections and their last delivery, queued cards, dead letters, delivered records,
//! upstream delivery ids seen, message references, the sources' GitHub Apps, dedup keys, folds waiting for their
//! summary, digest items and due times. Not copied: Connect flows in progress (minutes long: start them again) and the
//! playground's recent events.

use serde::Serialize;

use super::{ms, PgStore};
use crate::ids::ConnectionId;
use crate::store::{decode, Bucket, Item, StoreError};
use crate::store::{
    ConnectionRecords, NoiseState, Outbox, SeenIds, SourceApps, SourceHooks, Store,
};

/// What an import copied.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct Imported {
    /// Connections.
    pub connections: usize,
    /// Queued cards.
    pub queued: usize,
    /// Dead letters.
    pub dead: usize,
    /// Delivered records.
    pub delivered: usize,
    /// Upstream delivery ids.
    pub seen: usize,
    /// Message references (where keyed cards' messages are).
    pub message_refs: usize,
    /// The sources' GitHub Apps.
    pub apps: usize,
    /// GitLab hooks made for sources.
    pub hooks: usize,
    /// Dedup keys.
    pub dedup: usize,
    /// Folded cards waiting for a summary.
    pub folded: usize,
    /// Cards waiting for a digest.
    pub digest: usize,
}

impl std::fmt::Display for Imported {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} connections, {} queued cards, {} dead letters, {} delivered records, {} delivery ids, {} message references, {} GitHub Apps, {} GitLab hooks, {} dedup keys, {} folded cards, {} digest items",
            self.connections,
            self.queued,
            self.dead,
            self.delivered,
            self.seen,
            self.message_refs,
            self.apps,
            self.hooks,
            self.dedup,
            self.folded,
            self.digest
        )
    }
}

/// Copies `from` into `to` (see the module's guarantees).
pub fn import(from: &Store, to: &PgStore) -> Result<Imported, StoreError> {
    let held: (i64, i64) = to.pool.run(|db| {
        let row = db.query_one(
            "SELECT (SELECT count(*) FROM connections), (SELECT count(*) FROM outbox)",
            &[],
        )?;
        Ok((row.get(0), row.get(1)))
    })?;
    if held != (0, 0) {
        return Err(StoreError::Config(format!(
            "the PostgreSQL database already holds {} connections and {} queued cards: import into an empty database (a new one, or `cardwire migrate` on a fresh one)",
            held.0, held.1
        )));
    }
    let mut n = Imported::default();
    for c in from.connections()? {
        to.put_connection(&c)?;
        n.connections += 1;
    }
    for (con, at) in from.last_deliveries()? {
        to.set_last_delivery(&con, at)?;
    }
    // In queue order per connection: each card gets the next sequence number.
    for rec in from.queued_records()? {
        to.enqueue(&rec)?;
        n.queued += 1;
    }
    for letter in from.dead_letters()? {
        to.put_dead(&letter)?;
        n.dead += 1;
    }
    let delivered = from.delivered()?;
    n.delivered = delivered.len();
    for chunk in delivered.chunks(1_000) {
        let (mut ids, mut cons, mut ats, mut records) = (vec![], vec![], vec![], vec![]);
        for d in chunk {
            ids.push(d.record.id.as_str().to_string());
            cons.push(d.record.connection.as_str().to_string());
            ats.push(ms(d.delivered_ms));
            records.push(serde_json::to_string(d)?);
        }
        to.pool.run(move |db| {
            db.execute(
                "INSERT INTO delivered (id, connection, delivered_ms, record)
                 SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[], $4::text[])
                 ON CONFLICT (id) DO NOTHING",
                &[&ids, &cons, &ats, &records],
            )
            .map(drop)
        })?;
    }
    for (key, event) in from.seen_ids()? {
        to.claim_delivery(&key, &event)?;
        n.seen += 1;
    }
    // Opened with the folder's key, sealed again with the shared one.
    for app in from.source_apps()? {
        to.put_source_app(&app)?;
        n.apps += 1;
    }
    for hook in from.source_hooks()? {
        to.put_source_hook(&hook)?;
        n.hooks += 1;
    }
    let refs = from.message_refs()?;
    n.message_refs = refs.len();
    for chunk in refs.chunks(1_000) {
        let chunk = chunk.to_vec();
        to.pool
            .run(move |db| super::rows::upsert_refs(db, &chunk))?;
    }
    for kv in from.dedup.iter() {
        let (key, expires) = kv?;
        let (Ok(key), Ok(expires)) = (std::str::from_utf8(&key), <[u8; 8]>::try_from(&*expires))
        else {
            continue;
        };
        to.dedup_claim(key, 0, u64::from_be_bytes(expires))?;
        n.dedup += 1;
    }
    // Folds and digest items are read, not taken: the folder stays whole.
    for kv in from.fold_buckets.iter() {
        let (_, bucket) = kv?;
        let bucket: Bucket = decode(&bucket)?;
        let mut prefix = bucket.id.as_bytes().to_vec();
        prefix.push(0);
        for item in from.fold_items.scan_prefix(&prefix).values() {
            let item: Item = decode(&item?)?;
            to.put_fold(&bucket, &item)?;
            n.folded += 1;
        }
    }
    for kv in from.digest_items.iter() {
        let (key, item) = kv?;
        // The key is the connection id, then 8 bytes of sequence.
        let Some(con) = key
            .len()
            .checked_sub(8)
            .and_then(|end| std::str::from_utf8(&key[..end]).ok())
            .and_then(ConnectionId::parse)
        else {
            continue;
        };
        to.put_digest_item(&con, &decode(&item)?)?;
        n.digest += 1;
    }
    for kv in from.digest_state.iter() {
        let (key, due) = kv?;
        let (Some(con), Ok(due)) = (
            std::str::from_utf8(&key).ok().and_then(ConnectionId::parse),
            <[u8; 8]>::try_from(&*due),
        ) else {
            continue;
        };
        to.set_digest_due(&con, u64::from_be_bytes(due))?;
    }
    to.refresh_counts()?;
    Ok(n)
}
