//! Message references on sled: written to the main log's `refs` tree before the delivery
//! they come with, moved about a second later into segment files of their own
//! (`data_dir/message_refs`), as upstream delivery ids are ([`super::seen`]).

use super::*;
use crate::store::{MessageRef, MessageRefs};

impl segments::Record for MessageRef {
    fn key(&self) -> Option<u128> {
        Some(ref_key(&self.connection, &self.key))
    }

    fn at_ms(&self) -> u64 {
        self.at_ms
    }
}

/// 128 bits of the SHA-256 of a connection and a key: the kept references' key.
fn ref_key(con: &ConnectionId, key: &str) -> u128 {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    h.update(con.as_str().as_bytes());
    h.update([0]);
    h.update(key.as_bytes());
    let digest = h.finalize();
    u128::from_be_bytes(digest[..16].try_into().expect("16 bytes"))
}

/// A reference's key in the `refs` tree: the connection, a zero byte, the key.
fn tree_key(con: &ConnectionId, key: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(con.as_str().len() + 1 + key.len());
    k.extend_from_slice(con.as_str().as_bytes());
    k.push(0);
    k.extend_from_slice(key.as_bytes());
    k
}

impl MessageRefs for Store {
    fn message_ref(&self, con: &ConnectionId, key: &str) -> Result<Option<MessageRef>, StoreError> {
        // The main tree first: a reference leaves it only once the kept ones hold it.
        if let Some(v) = self.refs.get(tree_key(con, key))? {
            return Ok(Some(decode(&v)?));
        }
        Ok(self
            .refs_kept
            .get(ref_key(con, key))?
            .filter(|r| r.connection == *con && r.key == key))
    }

    fn deliver_with_ref(
        &self,
        key: &OutboxKey,
        rec: &OutboxRecord,
        reference: &MessageRef,
        _fresh: bool,
    ) -> Result<(), StoreError> {
        // In the log before the outbox's move: whatever of the two reaches the disk, the
        // reference is there if the card is delivered.
        self.refs.insert(
            tree_key(&reference.connection, &reference.key),
            serde_json::to_vec(reference)?,
        )?;
        self.deliver(key, rec)
    }

    fn prune_message_refs(&self, keep: std::time::Duration) -> Result<usize, StoreError> {
        let cutoff = self.clock.now_ms().saturating_sub(keep.as_millis() as u64);
        let mut n = self.refs_kept.prune(self.clock.now_ms(), keep)?;
        for kv in self.refs.iter() {
            let (k, v) = kv?;
            if decode::<MessageRef>(&v)?.at_ms < cutoff {
                self.refs.remove(k)?;
                n += 1;
            }
        }
        Ok(n)
    }

    fn message_refs_kept(&self) -> Result<usize, StoreError> {
        Ok(self.refs_kept.len() + self.refs.len())
    }
}

impl Store {
    /// Every message reference kept, the newest of each (connection, key): those moved into
    /// their files, then those still in the main log, which are newer (`migrate --from-sled`).
    pub fn message_refs(&self) -> Result<Vec<MessageRef>, StoreError> {
        let mut newest: std::collections::HashMap<(ConnectionId, String), MessageRef> =
            std::collections::HashMap::new();
        for r in self.refs_kept.page(None, usize::MAX, &|_| true)? {
            newest.insert((r.connection.clone(), r.key.clone()), r);
        }
        for v in self.refs.iter().values() {
            let r: MessageRef = decode(&v?)?;
            newest.insert((r.connection.clone(), r.key.clone()), r);
        }
        Ok(newest.into_values().collect())
    }

    /// Moves the references in the main log's `refs` tree into their segment files: the main
    /// log flushed first, the segment files synced next, then the references removed from
    /// the main tree (each only if unchanged meanwhile). Returns how many moved. The store
    /// runs it about once a second.
    pub fn move_refs(&self) -> Result<usize, StoreError> {
        let refs: Vec<(sled::IVec, sled::IVec)> = self.refs.iter().collect::<Result<_, _>>()?;
        if refs.is_empty() {
            return Ok(0);
        }
        self.db.flush()?;
        for (_, v) in &refs {
            self.refs_kept.append(&decode::<MessageRef>(v)?)?;
        }
        self.refs_kept.sync()?;
        for (k, v) in &refs {
            // A reference used again meanwhile stays, to be moved next time.
            let _ = self
                .refs
                .compare_and_swap(k, Some(v), None as Option<&[u8]>)?;
        }
        self.refs_kept.tidy_or_warn();
        Ok(refs.len())
    }
}
