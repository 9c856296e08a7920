//! Upstream delivery ids already accepted (`X-GitHub-Delivery`, `Idempotency-Key`), so that a
//! redelivery queues nothing twice.
//!
//! In: an id when its event is accepted. Out: whether it was new. Guarantees: an id is claimed
//! once; ids older than the retention are pruned.

use super::*;

/// How long an upstream delivery id is remembered, so that a redelivery is accepted once:
/// GitHub offers to redeliver a webhook for 3 days.
pub const SEEN_FOR: std::time::Duration = std::time::Duration::from_secs(3 * 86_400);

/// Upstream delivery ids already accepted.
pub trait SeenIds {
    /// Records that `key` (an upstream delivery id) is being handled as `event`, durably at
    /// once. If it was already, returns the event id it got the first time. (Staging reserves
    /// with [`Store::reserve_delivery`] instead and claims in [`Store::enqueue_event`].)
    fn claim_delivery(&self, key: &str, event: &EventId) -> Result<Option<EventId>, StoreError>;

    /// Reserves `key` for `event` while the event is staged: the id it got before if it is
    /// being staged already, else `None`. sled also answers the first event's id for a key
    /// claimed before; PostgreSQL leaves that to the claim itself (no round trip for a rare
    /// case: [`Store::enqueue_event`] then answers with the first event and queues nothing).
    /// The claim is written with the event's cards; [`Store::release_delivery`] drops a
    /// reservation that will not be.
    fn reserve_delivery(&self, key: &str, event: &EventId) -> Result<Option<EventId>, StoreError>;

    /// Forgets a claim (or a reservation) whose event could not be accepted, so that a
    /// redelivery is processed.
    fn release_delivery(&self, key: &str) -> Result<(), StoreError>;

    /// Forgets upstream delivery ids claimed more than `keep` ago (their event id says when);
    /// returns how many. Without this the ids of every event ever received would stay.
    fn prune_seen(&self, keep: std::time::Duration) -> Result<usize, StoreError>;
}

impl SeenIds for Store {
    fn claim_delivery(&self, key: &str, event: &EventId) -> Result<Option<EventId>, StoreError> {
        match self.seen.compare_and_swap(
            key,
            None as Option<&[u8]>,
            Some(event.as_str().as_bytes()),
        )? {
            Ok(()) => Ok(None),
            Err(cas) => Ok(cas
                .current
                .and_then(|v| EventId::parse(std::str::from_utf8(&v).ok()?))),
        }
    }

    fn reserve_delivery(&self, key: &str, event: &EventId) -> Result<Option<EventId>, StoreError> {
        if let Some(v) = self.seen.get(key)? {
            return Ok(EventId::parse(&String::from_utf8_lossy(&v)));
        }
        Ok(reserve(&self.staging, key, event))
    }

    fn release_delivery(&self, key: &str) -> Result<(), StoreError> {
        self.staging.lock().expect("staging lock").remove(key);
        self.seen.remove(key)?;
        Ok(())
    }

    fn prune_seen(&self, keep: std::time::Duration) -> Result<usize, StoreError> {
        let cutoff = self.clock.now_ms().saturating_sub(keep.as_millis() as u64);
        let mut n = 0;
        for kv in self.seen.iter() {
            let (k, v) = kv?;
            let claimed_ms = std::str::from_utf8(&v)
                .ok()
                .and_then(|s| s.strip_prefix(EventId::PREFIX))
                .and_then(|u| ulid::Ulid::from_string(u).ok())
                .map_or(0, |u| u.timestamp_ms());
            if claimed_ms < cutoff {
                self.seen.remove(k)?;
                n += 1;
            }
        }
        Ok(n)
    }
}

/// Reserves `key` for `event` among the events being staged in this process: the event that
/// holds it already, or `None` when this one now does.
pub(super) fn reserve(
    staging: &Mutex<std::collections::HashMap<String, EventId>>,
    key: &str,
    event: &EventId,
) -> Option<EventId> {
    let mut staging = staging.lock().expect("staging lock");
    if let Some(first) = staging.get(key) {
        return Some(first.clone());
    }
    staging.insert(key.to_string(), event.clone());
    None
}
