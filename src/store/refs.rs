//! Message references: for a card with a key, where the chat keeps the message it made, so
//! that a later card with the same key edits it or replies in its thread.
//!
//! In: a delivered keyed card and what the chat answered (a Discord message id, a Slack
//! channel and `ts`, a Mattermost post id, a Google Chat thread). Out: the reference of a
//! (connection, key), the newest. Guarantees: a reference is written with the delivery that
//! made or last used it, before that delivery is recorded as delivered, so that a stop between
//! the two leaves a card queued whose reference names it (sent again, it is known as sent:
//! [`MessageRef::delivery`]), never a delivered card without its reference; every instance
//! sharing a PostgreSQL store sees it; it is kept for `delivery.keep_message_refs` after its
//! last use, then pruned, so disk and memory stay bounded whatever the traffic.
//!
//! On sled a reference is written to the main log's `refs` tree, in the same log as the
//! outbox's move (so the two reach the disk in order), and moved about a second later into
//! segment files of their own (`data_dir/message_refs`, [`crate::store::sled::segments`],
//! keyed by 128 bits of the SHA-256 of connection and key), as upstream delivery ids are. On
//! PostgreSQL it is a row of `message_refs`, keyed (connection, key).

use serde::{Deserialize, Serialize};

use super::{OutboxKey, OutboxRecord, StoreError};
use crate::ids::{ConnectionId, DeliveryId};

/// How long a message reference is kept after its last use by default (`delivery.keep_message_refs`).
pub const KEEP_REFS: std::time::Duration = std::time::Duration::from_secs(30 * 86_400);

/// Where a chat keeps the message that a card with a key made.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageRef {
    /// The connection it was sent through.
    #[serde(rename = "c")]
    pub connection: ConnectionId,
    /// The card's key.
    #[serde(rename = "k")]
    pub key: String,
    /// The message's id on the chat: Discord's message id, Slack's `ts`, Mattermost's post id,
    /// Google Chat's message name.
    #[serde(rename = "m")]
    pub message: String,
    /// Where it is, when the chat needs it besides the id: Slack's channel id, the Discord
    /// forum thread it opened, Google Chat's thread name.
    #[serde(rename = "p", default, skip_serializing_if = "Option::is_none")]
    pub place: Option<String>,
    /// The latest delivery that posted, edited or replied to it: a card sent again after a
    /// stop finds here that it was sent.
    #[serde(rename = "d")]
    pub delivery: DeliveryId,
    /// When it was last used (Unix ms): it is kept for `keep_message_refs` after.
    #[serde(rename = "t")]
    pub at_ms: u64,
}

/// The message references of keyed cards.
pub trait MessageRefs {
    /// The reference of `key`'s message on `con`, if one is kept.
    fn message_ref(&self, con: &ConnectionId, key: &str) -> Result<Option<MessageRef>, StoreError>;

    /// Records a delivered keyed card with the reference it made or used: the reference
    /// first, then the card as [`crate::store::Outbox::deliver`] does. `fresh`: it made a new
    /// message (written at once on every engine; a use of an older one may be written with
    /// the next batch of delivered cards).
    fn deliver_with_ref(
        &self,
        key: &OutboxKey,
        rec: &OutboxRecord,
        reference: &MessageRef,
        fresh: bool,
    ) -> Result<(), StoreError>;

    /// Forgets references last used more than `keep` ago; returns how many.
    fn prune_message_refs(&self, keep: std::time::Duration) -> Result<usize, StoreError>;

    /// How many references are kept (with, on sled, older copies of a reference used since,
    /// until their file is pruned).
    fn message_refs_kept(&self) -> Result<usize, StoreError>;
}
