//! Upstream delivery ids as sled's kept ids hold them, in segment files of their own.

use serde::{Deserialize, Serialize};

use super::segments;
use crate::ids::EventId;
use crate::store::StoreError;

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
pub(super) fn claim_key(key: &str) -> u128 {
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
pub(super) fn claimed_ms(event: &[u8]) -> u64 {
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
