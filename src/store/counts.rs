//! How many cards are in each state: kept in memory as cards move, on either backend.

use serde::{Deserialize, Serialize};

/// How many cards are in each state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    /// In the outbox (retrying included).
    pub queued: usize,
    /// In the outbox after at least one failed attempt.
    pub retrying: usize,
    /// Dead letters.
    pub dead: usize,
    /// Delivered records kept.
    pub delivered: usize,
}

impl Counts {
    /// A card left the queue (delivered, buried, dropped); it was counted as retrying if
    /// `retrying`. Never below zero: on PostgreSQL another instance may have moved it first.
    pub fn left_queue(&mut self, retrying: bool) {
        self.queued = self.queued.saturating_sub(1);
        if retrying {
            self.retrying = self.retrying.saturating_sub(1);
        }
    }
}
