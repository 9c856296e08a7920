//! Upstream delivery ids already accepted (`X-GitHub-Delivery`, `Idempotency-Key`), so that a
//! redelivery queues nothing twice.
//!
//! In: an id when its event is accepted. Out: whether it was new. Guarantees: an id is claimed
//! once; ids older than the retention are pruned.
//!
//! On sled a claim is written to the main log's `seen` tree, behind its event's cards (whose
//! crash safety rests on that order, see [`Store::enqueue_event`]), and moved about a second
//! later, once that log is flushed, into segment files of their own (`data_dir/delivery_ids`,
//! [`super::segments`], keyed by 128 bits of the id's SHA-256; [`Store::move_claims`]). Kept
//! in the main log for their three days, ids taken at every event's pace left a live page in
//! every segment of it, so sled could free none: its file grew ~2.3 KB an event whatever was
//! pruned; in a sled database of their own a million took 310 bytes each and 67 MB of memory
//! (examples/BENCHMARKS.md). A lookup reads the main tree, then the kept ids: a claim being
//! moved is in the second before it leaves the first. A released claim that was kept gets a
//! record without its event, which replaces it.

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
        let _moving = self.claims_moving.lock().expect("claims lock");
        if let Some(first) = kept_claim(&self.seen_kept, key)? {
            return Ok(Some(first));
        }
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
        // The main tree first: a claim leaves it only once it is in the kept ids.
        if let Some(v) = self.seen.get(key)? {
            return Ok(EventId::parse(&String::from_utf8_lossy(&v)));
        }
        if let Some(first) = kept_claim(&self.seen_kept, key)? {
            return Ok(Some(first));
        }
        Ok(reserve(&self.staging, key, event))
    }

    fn release_delivery(&self, key: &str) -> Result<(), StoreError> {
        self.staging.lock().expect("staging lock").remove(key);
        let _moving = self.claims_moving.lock().expect("claims lock");
        self.seen.remove(key)?;
        if let Some(kept) = self.seen_kept.get(claim_key(key))? {
            if kept.key == key && kept.event.is_some() {
                // As old as the claim it cancels: it need not outlive it.
                self.seen_kept.append(&Claim {
                    event: None,
                    ..kept
                })?;
            }
        }
        Ok(())
    }

    fn prune_seen(&self, keep: std::time::Duration) -> Result<usize, StoreError> {
        let cutoff = self.clock.now_ms().saturating_sub(keep.as_millis() as u64);
        // Said before any id goes, for the recovery after a crash: a card of an event claimed
        // before this may have lost its claim to pruning, not to a crash (see `recover`).
        let before = self
            .meta
            .get(SEEN_PRUNED_BEFORE)?
            .map_or(0, |v| decode_ms(&v));
        if cutoff > before {
            self.meta
                .insert(SEEN_PRUNED_BEFORE, &cutoff.to_be_bytes())?;
        }
        let mut n = self.seen_kept.prune(self.clock.now_ms(), keep)?;
        for kv in self.seen.iter() {
            let (k, v) = kv?;
            if claimed_ms(&v) < cutoff {
                self.seen.remove(k)?;
                n += 1;
            }
        }
        Ok(n)
    }
}

impl Store {
    /// Moves the claims in the main log's `seen` tree into the kept ids' files: the
    /// main log flushed first (so that no claim is kept before its event's cards are on disk),
    /// the kept ids flushed next, then the claims removed from the main tree. Returns how many
    /// moved. The store runs it about once a second.
    pub fn move_claims(&self) -> Result<usize, StoreError> {
        let claims: Vec<(sled::IVec, sled::IVec)> = self.seen.iter().collect::<Result<_, _>>()?;
        if claims.is_empty() {
            return Ok(0);
        }
        self.db.flush()?;
        {
            let _moving = self.claims_moving.lock().expect("claims lock");
            for (k, v) in &claims {
                // Released meanwhile: its event was not accepted after all.
                if self.seen.get(k)?.as_ref() != Some(v) {
                    continue;
                }
                self.seen_kept.append(&Claim {
                    key: String::from_utf8_lossy(k).into_owned(),
                    event: EventId::parse(&String::from_utf8_lossy(v)),
                    at_ms: claimed_ms(v),
                })?;
            }
        }
        self.seen_kept.sync()?;
        let _moving = self.claims_moving.lock().expect("claims lock");
        for (k, v) in &claims {
            // Only if unchanged: a claim released and claimed again since stays to be moved.
            let _ = self
                .seen
                .compare_and_swap(k, Some(v), None as Option<&[u8]>)?;
        }
        drop(_moving);
        // Files sealed meanwhile hand their filters to the shared one, now and then.
        self.seen_kept.tidy_or_warn();
        Ok(claims.len())
    }

    /// Every upstream delivery id claimed, with its event (`migrate --from-sled`), once: a
    /// claim being moved is in both places.
    pub fn seen_ids(&self) -> Result<Vec<(String, EventId)>, StoreError> {
        let mut out = Vec::new();
        let mut taken = std::collections::HashSet::new();
        for kv in self.seen.iter() {
            let (k, v) = kv?;
            if let Some(event) = EventId::parse(&String::from_utf8_lossy(&v)) {
                let key = String::from_utf8_lossy(&k).into_owned();
                taken.insert(key.clone());
                out.push((key, event));
            }
        }
        for c in self
            .seen_kept
            .page(None, usize::MAX, &|c: &Claim| c.event.is_some())?
        {
            match c.event {
                Some(event) if !taken.contains(&c.key) => out.push((c.key, event)),
                _ => {}
            }
        }
        Ok(out)
    }
}

/// An upstream delivery id as the kept ids hold it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Claim {
    /// The id as the upstream sent it.
    pub key: String,
    /// The event it was claimed for; `None` once the claim was released.
    pub event: Option<EventId>,
    /// When it was claimed (Unix ms; the event id's time).
    pub at_ms: u64,
}

impl segments::Record for Claim {
    fn key(&self) -> Option<u128> {
        Some(claim_key(&self.key))
    }

    fn at_ms(&self) -> u64 {
        self.at_ms
    }
}

/// 128 bits of an id's SHA-256: the kept ids' key (ids are any text an upstream sends).
fn claim_key(key: &str) -> u128 {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(key.as_bytes());
    u128::from_be_bytes(digest[..16].try_into().expect("16 bytes"))
}

/// The event a kept id was claimed for, if it is kept and not released.
pub(super) fn kept_claim(
    kept: &segments::Segments<Claim>,
    key: &str,
) -> Result<Option<EventId>, StoreError> {
    Ok(match kept.get(claim_key(key))? {
        Some(c) if c.key == key => c.event,
        _ => None,
    })
}

/// When a claim was made: its event id's time (0 when it does not read).
fn claimed_ms(event: &[u8]) -> u64 {
    std::str::from_utf8(event)
        .ok()
        .and_then(|s| s.strip_prefix(EventId::PREFIX))
        .and_then(|u| ulid::Ulid::from_string(u).ok())
        .map_or(0, |u| u.timestamp_ms())
}

/// The key, in the `meta` tree, of the latest cutoff of [`SeenIds::prune_seen`] (Unix ms,
/// big-endian).
pub(super) const SEEN_PRUNED_BEFORE: &str = "seen_pruned_before";

/// A time as [`SEEN_PRUNED_BEFORE`] keeps it (0 if it does not read).
pub(super) fn decode_ms(v: &[u8]) -> u64 {
    <[u8; 8]>::try_from(v).map_or(0, u64::from_be_bytes)
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
