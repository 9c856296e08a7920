//! Noise-control state on sled: dedup keys, folds, digests.

use super::*;

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
