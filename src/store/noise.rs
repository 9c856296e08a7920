//! Noise-control state: dedup keys, folded cards waiting for their summary, cards waiting for a
//! connection's digest, and when each digest is due.
//!
//! In: decisions from noise control. Out: the same state after a restart. Guarantees: a dedup
//! key is claimed at most once per window; folded and digested cards come back in the order
//! they were kept.

use super::*;

/// A card that was not sent on its own: its title and link, for a summary or a digest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Item {
    /// The rule.
    pub rule: String,
    /// The event type.
    pub event: String,
    /// The repository or project, when the payload names one.
    pub repository: String,
    /// The card's title.
    pub title: String,
    /// What the event is about, as a reader scans for it: the or pull request's own
    /// title with its number, the release's name, the alert's summary ("" when the payload
    /// names none; made by noise control).
    #[serde(default)]
    pub headline: String,
    /// The card's first link.
    pub url: String,
    /// When it arrived (Unix milliseconds).
    pub at_ms: u64,
}

/// Folded cards waiting for their summary.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Bucket {
    /// `limit|rule|per|connection` or `cap|connection`.
    pub id: String,
    /// The rule (for a cap: the first rule folded).
    pub rule: String,
    /// The `per` value of the limit ("" for none or for a cap).
    pub per: String,
    /// The connection the summary goes to.
    pub connection: ConnectionId,
    /// Its kind of card.
    pub kind: CardKind,
    /// When the summary may go (Unix milliseconds).
    pub due_ms: u64,
    /// When the first card was folded.
    pub first_ms: u64,
    /// `limit` or `cap`.
    pub reason: String,
}

/// Noise control's state: dedup keys, fold buckets and their items, digest items and due times.
pub trait NoiseState {
    /// Claims a dedup key until `expires_ms`; false when it is held and not expired (a repeat).
    fn dedup_claim(&self, key: &str, now_ms: u64, expires_ms: u64) -> Result<bool, StoreError>;

    /// A fold bucket.
    fn fold_bucket(&self, id: &str) -> Result<Option<Bucket>, StoreError>;

    /// Adds a folded card to its bucket (a bucket keeps the due time of its first fold).
    fn put_fold(&self, bucket: &Bucket, item: &Item) -> Result<(), StoreError>;

    /// Every fold bucket.
    fn fold_buckets(&self) -> Result<Vec<Bucket>, StoreError>;

    /// The fold buckets due by `now_ms`, read through the index by due time: a tick reads what
    /// is due, not every bucket.
    fn fold_buckets_due(&self, now_ms: u64) -> Result<Vec<Bucket>, StoreError>;

    /// Empties a bucket, returning its cards in the order they were folded.
    fn take_folds(&self, id: &str) -> Result<Vec<Item>, StoreError>;

    /// Keeps a card for a connection's digest.
    fn put_digest_item(&self, con: &ConnectionId, item: &Item) -> Result<(), StoreError>;

    /// Takes the cards kept for a connection's digest, in order.
    fn take_digest_items(&self, con: &ConnectionId) -> Result<Vec<Item>, StoreError>;

    /// When a connection's next digest is due (Unix milliseconds), if set.
    fn digest_due(&self, con: &ConnectionId) -> Result<Option<u64>, StoreError>;

    /// Forgets when a connection's next digest is due (its schedule changed).
    fn clear_digest_due(&self, con: &ConnectionId) -> Result<(), StoreError>;

    /// Sets when a connection's next digest is due.
    fn set_digest_due(&self, con: &ConnectionId, ms: u64) -> Result<(), StoreError>;

    /// A rate limit shared by every process using the store (GCRA: one card every
    /// `interval_ms`, bursts of `burst`): `Ok(())` lets one more through for `key` at
    /// `now_ms`, `Err(at)` says when the next will pass. `None`: the store is one process's
    /// (sled), which keeps its limits in memory.
    fn limit_take(
        &self,
        _key: &str,
        _now_ms: u64,
        _interval_ms: u64,
        _burst: u32,
    ) -> Result<Option<Result<(), u64>>, StoreError> {
        Ok(None)
    }
}

impl NoiseState for Store {
    fn dedup_claim(&self, key: &str, now_ms: u64, expires_ms: u64) -> Result<bool, StoreError> {
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

    fn fold_bucket(&self, id: &str) -> Result<Option<Bucket>, StoreError> {
        self.fold_buckets.get(id)?.map(|v| decode(&v)).transpose()
    }

    fn put_fold(&self, bucket: &Bucket, item: &Item) -> Result<(), StoreError> {
        self.fold_buckets
            .insert(bucket.id.as_str(), serde_json::to_vec(bucket)?)?;
        self.fold_due.insert(due_key(bucket), &[])?;
        let mut key = bucket.id.as_bytes().to_vec();
        key.push(0);
        key.extend_from_slice(&self.db.generate_id()?.to_be_bytes());
        self.fold_items.insert(key, serde_json::to_vec(item)?)?;
        Ok(())
    }

    fn fold_buckets(&self) -> Result<Vec<Bucket>, StoreError> {
        self.fold_buckets
            .iter()
            .values()
            .map(|v| decode(&v?))
            .collect()
    }

    fn fold_buckets_due(&self, now_ms: u64) -> Result<Vec<Bucket>, StoreError> {
        let mut out = Vec::new();
        for key in self.fold_due.range(..=due_prefix(now_ms).as_slice()).keys() {
            let key = key?;
            let id = String::from_utf8_lossy(&key[8..]).into_owned();
            match self.fold_bucket(&id)? {
                Some(b) => out.push(b),
                // Taken meanwhile: the index entry is left over.
                None => {
                    self.fold_due.remove(&key)?;
                }
            }
        }
        Ok(out)
    }

    fn take_folds(&self, id: &str) -> Result<Vec<Item>, StoreError> {
        let mut prefix = id.as_bytes().to_vec();
        prefix.push(0);
        let mut items = Vec::new();
        for kv in self.fold_items.scan_prefix(&prefix) {
            let (k, v) = kv?;
            items.push(decode(&v)?);
            self.fold_items.remove(k)?;
        }
        if let Some(b) = self.fold_bucket(id)? {
            self.fold_due.remove(due_key(&b))?;
        }
        self.fold_buckets.remove(id)?;
        Ok(items)
    }

    fn put_digest_item(&self, con: &ConnectionId, item: &Item) -> Result<(), StoreError> {
        let mut key = con.as_str().as_bytes().to_vec();
        key.extend_from_slice(&self.db.generate_id()?.to_be_bytes());
        self.digest_items.insert(key, serde_json::to_vec(item)?)?;
        Ok(())
    }

    fn take_digest_items(&self, con: &ConnectionId) -> Result<Vec<Item>, StoreError> {
        let mut items = Vec::new();
        for kv in self.digest_items.scan_prefix(con.as_str()) {
            let (k, v) = kv?;
            items.push(decode(&v)?);
            self.digest_items.remove(k)?;
        }
        Ok(items)
    }

    fn digest_due(&self, con: &ConnectionId) -> Result<Option<u64>, StoreError> {
        Ok(self
            .digest_state
            .get(con.as_str())?
            .and_then(|v| <[u8; 8]>::try_from(v.as_ref()).ok().map(u64::from_be_bytes)))
    }

    fn clear_digest_due(&self, con: &ConnectionId) -> Result<(), StoreError> {
        self.digest_state.remove(con.as_str())?;
        Ok(())
    }

    fn set_digest_due(&self, con: &ConnectionId, ms: u64) -> Result<(), StoreError> {
        self.digest_state.insert(con.as_str(), &ms.to_be_bytes())?;
        Ok(())
    }
}

impl Store {
    /// Rebuilds the index by due time from the buckets (at open: a store written before the
    /// index existed, or after a crash between two writes, is indexed right).
    pub(super) fn reindex_folds(&self) -> Result<(), StoreError> {
        self.fold_due.clear()?;
        for b in self.fold_buckets()? {
            self.fold_due.insert(due_key(&b), &[])?;
        }
        Ok(())
    }
}

/// The index key of a bucket: its due time (big-endian, so keys sort by time), then its id.
fn due_key(b: &Bucket) -> Vec<u8> {
    let mut k = b.due_ms.to_be_bytes().to_vec();
    k.extend_from_slice(b.id.as_bytes());
    k
}

/// The last possible key of a due time: `..=` this covers every bucket due by then.
fn due_prefix(due_ms: u64) -> Vec<u8> {
    let mut k = due_ms.to_be_bytes().to_vec();
    k.push(0xff);
    k
}
