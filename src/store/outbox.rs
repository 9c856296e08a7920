//! The outbox and what leaves it: queued cards per connection in order, dead letters, delivered
//! records.
//!
//! In: cards from staging, attempt results from delivery. Out: each connection's cards in the
//! order they were accepted, keyed `connection id ‖ sequence (u64, big-endian)`. Guarantees:
//! a card is never lost between queued, dead and delivered: each move writes where the card goes
//! before removing it from where it was (a crash between the two leaves it in both, so it may be
//! sent again: at least once; a lookup by id that misses a card where it was finds it where it
//! went); queued cards are found by id through an index in memory ([`crate::store::sled::queued_ids`]),
//! updated after each move; no sled transaction or batch is used (see
//! [`crate::store::Outbox::enqueue_event`]); the in-memory counts follow every move; what has been delivered
//! keeps its record (without its body) for `keep_delivered`.

use serde::{Deserialize, Serialize};

use super::StoreError;
use crate::ids::{ConnectionId, DeliveryId, EventId};
use crate::render::{CardKind, Update};

/// One attempt, as recorded on the card.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attempt {
    /// When it was made (Unix milliseconds).
    pub at_ms: u64,
    /// The HTTP status, if an answer came.
    pub status: Option<u16>,
    /// What happened, with an excerpt of the answer.
    pub result: String,
}

/// One card waiting to be delivered to one connection.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct OutboxRecord {
    /// The delivery id, also the `Idempotency-Key` of every attempt.
    pub id: DeliveryId,
    /// The event the card came from.
    pub event: EventId,
    /// The connection it goes to.
    pub connection: ConnectionId,
    /// The rule that produced it.
    pub rule: String,
    /// The kind of card.
    pub kind: CardKind,
    /// The exact JSON body to POST.
    pub body: String,
    /// Attempts made so far.
    #[serde(default)]
    pub attempts: u32,
    /// Not before this time (Unix milliseconds); 0 means now.
    #[serde(default)]
    pub not_before_ms: u64,
    /// When the card was accepted (Unix milliseconds).
    pub created_ms: u64,
    /// What the last failed attempt said.
    #[serde(default)]
    pub last_error: Option<String>,
    /// Every attempt: when, the status, what came of it.
    #[serde(default)]
    pub attempt_log: Vec<Attempt>,
    /// When the rule's template failed and this card was built without it: what failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback: Option<RenderFailure>,
    /// The upstream delivery id its event claimed, if it had one: a card whose claim is not
    /// in the store after a crash is taken back at the next start (see
    /// [`crate::store::Outbox::enqueue_event`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claim: Option<String>,
    /// Its event's trace (the staging span's W3C `traceparent`) when telemetry is on: a
    /// delivery attempt, however late, joins that trace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace: Option<String>,
    /// The card's subject (its template's `key`): a later card with the same key and
    /// connection edits or replies to this one's message, as `update` says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// What this card does to its key's earlier message (`replace` when not given).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub update: Option<Update>,
}

impl OutboxRecord {
    /// A new card for a connection, queued now: the one way a record is made (staging, the
    /// playground's send, summaries and digests), so that every field starts the same.
    pub fn new(
        event: EventId,
        connection: ConnectionId,
        rule: impl Into<String>,
        kind: CardKind,
        body: String,
        created_ms: u64,
    ) -> Self {
        Self {
            id: DeliveryId::new(),
            event,
            connection,
            rule: rule.into(),
            kind,
            body,
            attempts: 0,
            not_before_ms: 0,
            created_ms,
            last_error: None,
            attempt_log: Vec::new(),
            fallback: None,
            claim: None,
            trace: None,
            key: None,
            update: None,
        }
    }
}

impl OutboxRecord {
    /// The card as a delivered record keeps it: everything but its body (not copied).
    pub(super) fn without_body(&self) -> OutboxRecord {
        OutboxRecord {
            id: self.id.clone(),
            event: self.event.clone(),
            connection: self.connection.clone(),
            rule: self.rule.clone(),
            kind: self.kind,
            body: String::new(),
            attempts: self.attempts,
            not_before_ms: self.not_before_ms,
            created_ms: self.created_ms,
            last_error: self.last_error.clone(),
            attempt_log: self.attempt_log.clone(),
            fallback: self.fallback.clone(),
            claim: self.claim.clone(),
            trace: self.trace.clone(),
            key: self.key.clone(),
            update: self.update,
        }
    }
}

/// A template that failed on an event, where and why.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct RenderFailure {
    /// The template file (`github/security.teams.hbs`).
    pub template: String,
    /// The line in the template, when known.
    pub line: Option<usize>,
    /// The column in the template, when known.
    pub column: Option<usize>,
    /// What went wrong.
    pub reason: String,
}

/// A card that will not be delivered without help, and why.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DeadLetter {
    /// The card as it stood at its last attempt (its body may be empty when rendering failed).
    pub record: OutboxRecord,
    /// Why it stopped.
    pub reason: String,
    /// When it stopped (Unix milliseconds).
    pub dead_ms: u64,
}

/// A delivered card, kept for `delivery.keep_delivered` (its body is not).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Delivered {
    /// The card as it stood when delivered, body emptied.
    pub record: OutboxRecord,
    /// When it was delivered (Unix milliseconds).
    pub delivered_ms: u64,
}

/// A key of the outbox tree: connection id, then a sequence number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxKey(pub(super) sled::IVec);

/// Queued cards per connection, dead letters, delivered records.
pub trait Outbox {
    /// Queues a card.
    fn enqueue(&self, rec: &OutboxRecord) -> Result<OutboxKey, StoreError>;

    /// Queues an event's cards and claims its upstream delivery id (reserved with
    /// [`crate::store::SeenIds::reserve_delivery`]), all or nothing: the one write of staging, which a
    /// PostgreSQL backend makes one transaction.
    ///
    /// Here each card carries its claim and is written first, the claim last. sled writes its
    /// log in order and replays it in order at recovery, so a crash between them leaves cards
    /// whose claim is missing and nothing else; the next start takes those cards back
    /// (see `recover`) and the upstream, which had no 202, delivers the event again. A claim is
    /// never without its cards, cards are never without their claim: an event is queued once.
    /// `Ok(Err(first))` when another event claimed the id meanwhile: this event's cards are
    /// taken back. The reservation ends either way.
    ///
    /// Not a sled transaction or batch: the first of either switches every later sled
    /// operation of the process to a global read-write lock, which tripled the CPU an event
    /// in the benchmark (examples/BENCHMARKS.md).
    fn enqueue_event(
        &self,
        claim: Option<(&str, &EventId)>,
        records: &mut [OutboxRecord],
    ) -> Result<Result<(), EventId>, StoreError>;

    /// The oldest card queued for a connection.
    fn next_for(&self, con: &ConnectionId)
        -> Result<Option<(OutboxKey, OutboxRecord)>, StoreError>;

    /// Saves a card's new state (after a failed attempt).
    fn update(&self, key: &OutboxKey, rec: &OutboxRecord) -> Result<(), StoreError>;

    /// The oldest `n` cards queued for a connection, in order (what its worker sends next).
    fn next_batch(
        &self,
        con: &ConnectionId,
        n: usize,
    ) -> Result<Vec<(OutboxKey, OutboxRecord)>, StoreError>;

    /// Moves a delivered card out of the outbox into the delivered records (without its body).
    ///
    /// Two writes, not a transaction (see [`crate::store::Outbox::enqueue_event`]), in the order of every
    /// move: its record is added, then the card leaves the outbox. A lookup that misses it in
    /// the outbox therefore finds its record; a crash between the two leaves the card queued,
    /// to be sent again with the same `Idempotency-Key` (at least once).
    fn deliver(&self, key: &OutboxKey, rec: &OutboxRecord) -> Result<(), StoreError>;

    /// Removes delivered records older than `keep`; returns how many.
    fn prune_delivered(&self, keep: std::time::Duration) -> Result<usize, StoreError>;

    /// The delivered records kept.
    fn delivered(&self) -> Result<Vec<Delivered>, StoreError>;

    /// Moves every card queued for a connection to the dead letters; returns how many.
    fn bury_all(&self, con: &ConnectionId, reason: &str) -> Result<usize, StoreError>;

    /// Puts dead letters back in the outbox, their attempt count reset (their attempt log
    /// kept); returns the connections that got cards.
    fn revive(&self, ids: &[DeliveryId]) -> Result<Vec<ConnectionId>, StoreError>;

    /// Moves a card to the dead letters.
    ///
    /// The dead letter is written first, then the card leaves the outbox: a crash between the
    /// two leaves it in both (sent again after the restart, at least once), never in neither.
    /// Not a sled transaction: see [`crate::store::Outbox::enqueue_event`].
    fn bury(&self, key: &OutboxKey, letter: &DeadLetter) -> Result<(), StoreError>;

    /// Records a dead letter that never was in the outbox (a card that failed to render).
    fn put_dead(&self, letter: &DeadLetter) -> Result<(), StoreError>;

    /// Every dead letter, oldest first.
    fn dead_letters(&self) -> Result<Vec<DeadLetter>, StoreError>;

    /// A dead letter, by its delivery id (the dead letters are keyed by it).
    fn dead_letter(&self, id: &str) -> Result<Option<DeadLetter>, StoreError>;

    /// A delivered card's record, by its delivery id (keyed by it).
    fn delivered_record(&self, id: &str) -> Result<Option<Delivered>, StoreError>;

    /// A queued card, by its delivery id, through an index kept with every move (see
    /// [`crate::store::sled::queued_ids`]): one lookup, not a walk over the queue.
    fn queued_record(&self, id: &str) -> Result<Option<OutboxRecord>, StoreError>;

    /// Dead letters with ids after `after`, in id order, that `keep` keeps: read lazily, so a
    /// page reads what it shows (and what `keep` passes over), not every dead letter.
    fn dead_page(
        &self,
        after: Option<&str>,
        limit: usize,
        keep: &dyn Fn(&OutboxRecord) -> bool,
    ) -> Result<Vec<DeadLetter>, StoreError>;

    /// Delivered records with ids after `after`, in id order, as [`crate::store::Outbox::dead_page`].
    fn delivered_page(
        &self,
        after: Option<&str>,
        limit: usize,
        keep: &dyn Fn(&OutboxRecord) -> bool,
    ) -> Result<Vec<Delivered>, StoreError>;

    /// Every queued card, in queue order per connection.
    fn queued_records(&self) -> Result<Vec<OutboxRecord>, StoreError>;

    /// The connections that have cards queued.
    fn queued_connections(&self) -> Result<Vec<ConnectionId>, StoreError>;

    /// Whether this process may deliver `con`'s cards now: it holds the connection's delivery
    /// lease, or has just taken it. Only the holder reads a connection's cards and moves them
    /// (delivered, retried, buried), so one instance at a time sends them, in order. A store
    /// that one process owns (sled) always answers yes.
    fn lease(&self, _con: &ConnectionId) -> Result<bool, StoreError> {
        Ok(true)
    }

    /// Lets go of `con`'s lease (its worker stops), so another instance may take it at once.
    fn release(&self, _con: &ConnectionId) -> Result<(), StoreError> {
        Ok(())
    }

    /// The connections with queued cards that this process may deliver (no other instance
    /// holds their lease): what the polling backstop wakes.
    fn deliverable_connections(&self) -> Result<Vec<ConnectionId>, StoreError> {
        self.queued_connections()
    }
}
