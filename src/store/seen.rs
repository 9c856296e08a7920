//! Upstream delivery ids already accepted (`X-GitHub-Delivery`, `Idempotency-Key`), so that a
//! redelivery queues nothing twice.
//!
//! In: an id when its event is accepted. Out: whether it was new. Guarantees: an id is claimed
//! once; ids older than the retention are pruned.
//!
//! On sled a claim is written to the main log's `seen` tree, behind its event's cards (whose
//! crash safety rests on that order, see [`crate::store::Outbox::enqueue_event`]), and moved about a second
//! later, once that log is flushed, into segment files of their own (`data_dir/delivery_ids`,
//! [`crate::store::sled::segments`], keyed by 128 bits of the id's SHA-256; [`crate::store::Store::move_claims`]). Kept
//! in the main log for their three days, ids taken at every event's pace left a live page in
//! every segment of it, so sled could free none: its file grew ~2.3 KB an event whatever was
//! pruned; in a sled database of their own a million took 310 bytes each and 67 MB of memory
//! (examples/BENCHMARKS.md). A lookup reads the main tree, then the kept ids: a claim being
//! moved is in the second before it leaves the first. A released claim that was kept gets a
//! record without its event, which replaces it.

use std::sync::Mutex;

use super::StoreError;
use crate::ids::EventId;

/// How long an upstream delivery id is remembered, so that a redelivery is accepted once:
/// GitHub offers to redeliver a webhook for 3 days.
pub const SEEN_FOR: std::time::Duration = std::time::Duration::from_secs(3 * 86_400);

/// Upstream delivery ids already accepted.
pub trait SeenIds {
    /// Records that `key` (an upstream delivery id) is being handled as `event`, durably at
    /// once. If it was already, returns the event id it got the first time. (Staging reserves
    /// with [`crate::store::SeenIds::reserve_delivery`] instead and claims in [`crate::store::Outbox::enqueue_event`].)
    fn claim_delivery(&self, key: &str, event: &EventId) -> Result<Option<EventId>, StoreError>;

    /// Reserves `key` for `event` while the event is staged: the id it got before if it is
    /// being staged already, else `None`. sled also answers the first event's id for a key
    /// claimed before; PostgreSQL leaves that to the claim itself (no round trip for a rare
    /// case: [`crate::store::Outbox::enqueue_event`] then answers with the first event and queues nothing).
    /// The claim is written with the event's cards; [`crate::store::SeenIds::release_delivery`] drops a
    /// reservation that will not be.
    fn reserve_delivery(&self, key: &str, event: &EventId) -> Result<Option<EventId>, StoreError>;

    /// Forgets a claim (or a reservation) whose event could not be accepted, so that a
    /// redelivery is processed.
    fn release_delivery(&self, key: &str) -> Result<(), StoreError>;

    /// Forgets upstream delivery ids claimed more than `keep` ago (their event id says when);
    /// returns how many. Without this the ids of every event ever received would stay.
    fn prune_seen(&self, keep: std::time::Duration) -> Result<usize, StoreError>;
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
