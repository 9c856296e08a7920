//! Where the store's time comes from: the system's, or a test's.

use std::sync::Arc;

/// Where the store's time (pruning cutoffs, when a card was delivered or buried) comes from:
/// the system's, or a time a test sets and moves.
#[derive(Debug, Clone, Default)]
pub enum Clock {
    /// The system's time.
    #[default]
    System,
    /// A time that only moves when told (Unix milliseconds).
    Manual(Arc<std::sync::atomic::AtomicU64>),
}

impl Clock {
    /// A clock at `ms` that moves only through the handle it returns.
    pub fn manual(ms: u64) -> (Self, Arc<std::sync::atomic::AtomicU64>) {
        let at = Arc::new(std::sync::atomic::AtomicU64::new(ms));
        (Self::Manual(at.clone()), at)
    }

    /// Now, in Unix milliseconds.
    pub fn now_ms(&self) -> u64 {
        match self {
            Self::System => now_ms(),
            Self::Manual(at) => at.load(std::sync::atomic::Ordering::Relaxed),
        }
    }
}

/// Now, by the system's clock, in Unix milliseconds.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
