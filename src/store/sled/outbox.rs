//! The outbox on sled: queued cards, dead letters, delivered records (in [`super::history`]).

use serde::de::DeserializeOwned;

use super::*;

impl Outbox for Store {
    fn enqueue(&self, rec: &OutboxRecord) -> Result<OutboxKey, StoreError> {
        self.enqueue_then(rec, || {})
    }

    fn enqueue_event(
        &self,
        claim: Option<(&str, &EventId)>,
        records: &mut [OutboxRecord],
    ) -> Result<Result<(), EventId>, StoreError> {
        let mut keys = Vec::with_capacity(records.len());
        let mut written = Ok(());
        for rec in records.iter_mut() {
            rec.claim = claim.map(|(key, _)| key.to_string());
            match self.enqueue(rec) {
                Ok(key) => keys.push(key),
                Err(e) => {
                    written = Err(e);
                    break;
                }
            }
        }
        let claimed = match (written, claim) {
            (Err(e), _) => Err(e),
            (Ok(()), None) => Ok(Ok(())),
            (Ok(()), Some((key, event))) => {
                self.claim_delivery(key, event).map(|first| match first {
                    None => Ok(()),
                    Some(first) => Err(first),
                })
            }
        };
        if let Some((key, _)) = claim {
            self.staging.lock().expect("staging lock").remove(key);
        }
        if !matches!(claimed, Ok(Ok(()))) {
            for key in &keys {
                self.take_back(key)?;
            }
        }
        claimed
    }

    fn next_for(
        &self,
        con: &ConnectionId,
    ) -> Result<Option<(OutboxKey, OutboxRecord)>, StoreError> {
        match self.outbox.scan_prefix(con.as_str()).next() {
            None => Ok(None),
            Some(kv) => {
                let (k, v) = kv?;
                Ok(Some((OutboxKey(k), decode(&v)?)))
            }
        }
    }

    fn update(&self, key: &OutboxKey, rec: &OutboxRecord) -> Result<(), StoreError> {
        self.outbox
            .insert(key.0.clone(), serde_json::to_vec(rec)?)?;
        if rec.attempts == 1 {
            self.count(Counts::first_failure);
        }
        Ok(())
    }

    fn next_batch(
        &self,
        con: &ConnectionId,
        n: usize,
    ) -> Result<Vec<(OutboxKey, OutboxRecord)>, StoreError> {
        self.outbox
            .scan_prefix(con.as_str())
            .take(n)
            .map(|kv| {
                let (k, v) = kv?;
                Ok((OutboxKey(k), decode(&v)?))
            })
            .collect()
    }

    fn deliver(&self, key: &OutboxKey, rec: &OutboxRecord) -> Result<(), StoreError> {
        let value = Delivered {
            record: rec.without_body(),
            delivered_ms: self.clock.now_ms(),
        };
        self.history.append(&value)?;
        let queued = self.outbox.remove(&key.0)?.is_some();
        self.unindex(rec.id.as_str());
        let was_retrying = rec.attempts > 1;
        self.count(|c| c.delivered_one(queued, was_retrying));
        Ok(())
    }

    fn prune_delivered(&self, keep: std::time::Duration) -> Result<usize, StoreError> {
        let n = self.history.prune(self.clock.now_ms(), keep)?;
        self.count(|c| c.pruned_delivered(n));
        Ok(n)
    }

    fn delivered(&self) -> Result<Vec<Delivered>, StoreError> {
        self.history.page_after(None, usize::MAX, &|_| true)
    }

    fn bury_all(&self, con: &ConnectionId, reason: &str) -> Result<usize, StoreError> {
        let mut n = 0;
        while let Some((key, rec)) = self.next_for(con)? {
            // As it was queued: retrying once an attempt failed.
            let retrying = rec.attempts > 0;
            self.bury_queued(
                &key,
                &DeadLetter {
                    record: rec,
                    reason: reason.to_string(),
                    dead_ms: self.clock.now_ms(),
                },
                retrying,
            )?;
            n += 1;
        }
        Ok(n)
    }

    fn revive(&self, ids: &[DeliveryId]) -> Result<Vec<ConnectionId>, StoreError> {
        let mut cons = Vec::new();
        for id in ids {
            // Queued again first, then no longer dead: a crash between the two leaves the card
            // in both (it is sent; the letter stays to be retried), never in neither.
            let Some(v) = self.dead.get(id.as_str())? else {
                continue;
            };
            let letter: DeadLetter = decode(&v)?;
            if letter.record.body.is_empty() {
                // A card that never rendered cannot be sent; it stays dead.
                continue;
            }
            let mut rec = letter.record;
            rec.attempts = 0;
            rec.not_before_ms = 0;
            cons.push(rec.connection.clone());
            self.enqueue(&rec)?;
            if self.dead.remove(id.as_str())?.is_some() {
                self.count(|c| c.revived(1));
            }
        }
        cons.sort();
        cons.dedup();
        Ok(cons)
    }

    fn bury(&self, key: &OutboxKey, letter: &DeadLetter) -> Result<(), StoreError> {
        // The record carries the attempt that buried it: retrying if one failed before.
        self.bury_queued(key, letter, letter.record.attempts > 1)
    }

    fn put_dead(&self, letter: &DeadLetter) -> Result<(), StoreError> {
        self.dead
            .insert(letter.record.id.as_str(), serde_json::to_vec(letter)?)?;
        self.count(|c| c.buried_one(false, false));
        Ok(())
    }

    fn dead_letters(&self) -> Result<Vec<DeadLetter>, StoreError> {
        self.dead.iter().values().map(|v| decode(&v?)).collect()
    }

    fn dead_letter(&self, id: &str) -> Result<Option<DeadLetter>, StoreError> {
        self.dead.get(id)?.map(|v| decode(&v)).transpose()
    }

    fn delivered_record(&self, id: &str) -> Result<Option<Delivered>, StoreError> {
        self.history.find(id)
    }

    fn queued_record(&self, id: &str) -> Result<Option<OutboxRecord>, StoreError> {
        let key = self.queued_ids.lock().expect("index lock").key(id);
        let Some(key) = key else {
            return Ok(None);
        };
        // The card may have just moved on: only the card itself, with this id, is an answer.
        match self.outbox.get(key)? {
            Some(v) => {
                let rec: OutboxRecord = decode(&v)?;
                Ok((rec.id.as_str() == id).then_some(rec))
            }
            None => Ok(None),
        }
    }

    fn dead_page(
        &self,
        after: Option<&str>,
        limit: usize,
        keep: &dyn Fn(&OutboxRecord) -> bool,
    ) -> Result<Vec<DeadLetter>, StoreError> {
        page(&self.dead, after, limit, |d: &DeadLetter| keep(&d.record))
    }

    fn delivered_page(
        &self,
        after: Option<&str>,
        limit: usize,
        keep: &dyn Fn(&OutboxRecord) -> bool,
    ) -> Result<Vec<Delivered>, StoreError> {
        self.history.page_after(after, limit, keep)
    }

    fn queued_records(&self) -> Result<Vec<OutboxRecord>, StoreError> {
        self.outbox.iter().values().map(|v| decode(&v?)).collect()
    }

    fn queued_connections(&self) -> Result<Vec<ConnectionId>, StoreError> {
        // Keys are the connection id then a sequence number: one seek per connection, past all
        // of its cards, instead of a walk over every queued card.
        let mut out: Vec<ConnectionId> = Vec::new();
        let mut from: Vec<u8> = Vec::new();
        while let Some(kv) = self.outbox.range(from.as_slice()..).next() {
            let (key, _) = kv?;
            let prefix = &key[..key.len().saturating_sub(8)];
            if let Some(id) = std::str::from_utf8(prefix)
                .ok()
                .and_then(ConnectionId::parse)
            {
                out.push(id);
            }
            from = prefix.to_vec();
            from.extend_from_slice(&[0xff; 9]);
        }
        Ok(out)
    }
}

impl Store {
    /// A queued card made a dead letter; `retrying` when it was counted as retrying.
    fn bury_queued(
        &self,
        key: &OutboxKey,
        letter: &DeadLetter,
        retrying: bool,
    ) -> Result<(), StoreError> {
        self.dead
            .insert(letter.record.id.as_str(), serde_json::to_vec(letter)?)?;
        self.outbox.remove(&key.0)?;
        self.unindex(letter.record.id.as_str());
        self.count(|c| c.buried_one(true, retrying));
        Ok(())
    }

    /// Queues a card; `visible` runs once it is in sled, where delivery (on a thread of its
    /// own) can already take it. It is counted before that: counted after, a card delivered in
    /// between made the count go below zero (it wrapped, and ingest answered 503 queue_full).
    pub(super) fn enqueue_then(
        &self,
        rec: &OutboxRecord,
        visible: impl FnOnce(),
    ) -> Result<OutboxKey, StoreError> {
        let seq = self.db.generate_id()?;
        let mut key = Vec::with_capacity(rec.connection.as_str().len() + 8);
        key.extend_from_slice(rec.connection.as_str().as_bytes());
        key.extend_from_slice(&seq.to_be_bytes());
        let key = sled::IVec::from(key);
        let value = serde_json::to_vec(rec)?;
        self.count(|c| c.enqueued(1));
        if let Err(e) = self.outbox.insert(key.clone(), value) {
            self.count(|c| c.left_queue(false));
            return Err(e.into());
        }
        self.queued_ids
            .lock()
            .expect("index lock")
            .insert(rec.id.as_str(), &key);
        visible();
        Ok(OutboxKey(key))
    }

    /// Forgets a card that has left the queue.
    pub(super) fn unindex(&self, id: &str) {
        self.queued_ids.lock().expect("index lock").remove(id);
    }

    /// Removes a card just queued (its event was not accepted after all).
    fn take_back(&self, key: &OutboxKey) -> Result<(), StoreError> {
        if let Some(v) = self.outbox.remove(&key.0)? {
            let rec = decode::<OutboxRecord>(&v);
            if let Ok(rec) = &rec {
                self.unindex(rec.id.as_str());
            }
            let retrying = rec.is_ok_and(|r| r.attempts > 0);
            self.count(|c| c.left_queue(retrying));
        }
        Ok(())
    }
}

/// Up to `limit` records of a tree keyed by delivery id, after `after`, that `keep` keeps.
fn page<T: DeserializeOwned>(
    tree: &sled::Tree,
    after: Option<&str>,
    limit: usize,
    keep: impl Fn(&T) -> bool,
) -> Result<Vec<T>, StoreError> {
    use std::ops::Bound;
    let start = match after {
        Some(a) => Bound::Excluded(a.as_bytes().to_vec()),
        None => Bound::Unbounded,
    };
    let mut out = Vec::new();
    for v in tree.range::<Vec<u8>, _>((start, Bound::Unbounded)).values() {
        let t: T = decode(&v?)?;
        if keep(&t) {
            out.push(t);
            if out.len() == limit {
                break;
            }
        }
    }
    Ok(out)
}
