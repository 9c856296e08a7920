//! Noise-control state: dedup keys, folded cards waiting for their summary, cards waiting for a
//! connection's digest, and when each digest is due.
//!
//! In: decisions from noise control. Out: the same state after a restart. Guarantees: a dedup
//! key is claimed at most once per window; folded and digested cards come back in the order
//! they were kept.

use serde::{Deserialize, Serialize};

use super::StoreError;
use crate::ids::ConnectionId;
use crate::render::CardKind;

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
    /// The card's key and update, if it had one: a summary of cards of one key changes that
    /// key's message as they would have.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<(String, crate::render::Update)>,
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
