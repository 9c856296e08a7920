//! The contract every engine keeps: durability and what the store knows about itself
//! ([`Durable`]), and [`Backend`], all the traits of the records together, which the layers
//! above hold as [`SharedStore`].

use std::sync::Arc;

use crate::ids::ConnectionId;
use crate::store::{
    ConnectionRecords, Counts, FlowStates, MessageRefs, NoiseState, Outbox, RecentEvents, SeenIds,
    SourceApps, SourceHooks, StoreError,
};

/// Making writes durable, and what the store knows about itself.
pub trait Durable {
    /// Resolves once every write made before this call is on disk.
    fn commit(&self) -> Commit;

    /// Flushes everything now (at a clean stop).
    fn flush(&self) -> Result<(), StoreError>;

    /// How many cards are in each state.
    fn counts(&self) -> Counts;

    /// How many cards are queued in all.
    fn queued(&self) -> usize {
        self.counts().queued
    }

    /// Now, by the store's clock.
    fn now_ms(&self) -> u64;

    /// Whether the store can take writes now (PostgreSQL: the server answers; sled: there is
    /// room on its disk and a write reaches it).
    fn health(&self) -> Result<(), StoreError> {
        Ok(())
    }

    /// Whether there is room for new events: [`StoreError::Full`] while the disk holding the
    /// data folder has less free space than `limits.min_free_disk` (sled; PostgreSQL's server
    /// answers `disk_full` itself). Checked before an event is staged, not before delivery's
    /// small writes, which use the room kept.
    fn room(&self) -> Result<(), StoreError> {
        Ok(())
    }

    /// Whether a call waits on the network (PostgreSQL), so that callers on an async runtime
    /// should make it from a blocking thread; sled's calls are in process and short.
    fn blocking(&self) -> bool {
        false
    }

    /// Wake-ups from other instances sharing the store (PostgreSQL's `LISTEN` / `NOTIFY`):
    /// cards queued for a connection this instance may deliver, connections changed. Taken
    /// once; `None` for a store no other process shares (sled).
    fn wakeups(&self) -> Option<tokio::sync::mpsc::UnboundedReceiver<Wake>> {
        None
    }
}

/// What another instance (or a lost notification's backstop) tells this one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Wake {
    /// Cards were queued for the connection, or its lease was let go: its worker may start.
    Cards(ConnectionId),
    /// A connection was added, changed or removed: read them again.
    Connections,
    /// Notifications may have been missed (the listener reconnected): look at everything.
    All,
}

/// What [`Durable::commit`] returns: a future that owns what it needs.
pub type Commit =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), StoreError>> + Send>>;

/// Everything the layers above use of the store: one trait per kind of record, and
/// durability. sled implements it ([`crate::store::Store`]); a second backend implements these traits and
/// nothing else changes. Calls are short and synchronous, as sled's are; only
/// [`Durable::commit`] waits.
pub trait Backend:
    ConnectionRecords
    + FlowStates
    + NoiseState
    + Outbox
    + MessageRefs
    + SourceApps
    + SourceHooks
    + RecentEvents
    + SeenIds
    + Durable
    + Send
    + Sync
{
}

impl<T> Backend for T where
    T: ConnectionRecords
        + FlowStates
        + NoiseState
        + Outbox
        + MessageRefs
        + SourceApps
        + SourceHooks
        + SourceHooks
        + RecentEvents
        + SeenIds
        + Durable
        + Send
        + Sync
{
}

/// The store as the layers above hold it.
pub type SharedStore = Arc<dyn Backend>;

/// The traits, to call the store's methods through [`SharedStore`]: `use crate::store::prelude::*`.
pub mod prelude {
    pub use crate::store::{
        Backend, ConnectionRecords, Durable, FlowStates, MessageRefs, NoiseState, Outbox,
        RecentEvents, SeenIds, SharedStore, SourceApps, SourceHooks,
    };
}
