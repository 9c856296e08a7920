//! Durable state: what the layers above keep, behind one contract and two engines.
//!
//! In: records from ingest (outbox entries, delivery-id claims), from the admin API
//! (connections) and from delivery (attempt results). Out: the same records, in order.
//! Guarantees: a write is durable once [`Durable::commit`] has returned for it.
//!
//! One file per kind of record, each with the types it persists and the trait a backend
//! implements for it: [`connections`] ([`ConnectionRecords`]), [`outbox`] ([`Outbox`]: queued
//! cards, dead letters, delivered records), [`noise`] ([`NoiseState`]: dedup keys, folds,
//! digests), [`flows`] ([`FlowStates`]: connect flow states), [`seen`] ([`SeenIds`]: upstream
//! delivery ids), [`apps`] ([`SourceApps`]: GitHub Apps made for sources), [`hooks`] ([`SourceHooks`]: GitLab hooks made for sources), [`refs`] ([`MessageRefs`]: where the chats keep keyed cards' messages) and
//! [`recent`] ([`RecentEvents`]: the playground's ring). With [`Durable`]
//! (commit, flush, counts, the clock: [`backend`]) they make up [`Backend`], which the layers
//! above hold as [`SharedStore`]. What both engines share: [`error`], [`counts`], [`clock`], [`secrets`]
//! (webhook URLs and tokens sealed at rest).
//!
//! The engines: [`sled`] (embedded, the default: [`Store`]) and [`pg`] (PostgreSQL, shared by
//! several instances: [`pg::PgStore`]). The store imports nothing from the layers above it.

pub mod apps;
pub mod backend;
pub mod clock;
pub mod connections;
pub mod counts;
pub mod error;
pub mod flows;
pub mod hooks;
pub mod noise;
pub mod outbox;
pub mod pg;
pub mod recent;
pub mod refs;
pub mod secrets;
pub mod seen;
pub mod sled;

pub use self::sled::Store;
pub use apps::{Installation, SourceApp, SourceApps};
pub use backend::{prelude, Backend, Commit, Durable, SharedStore, Wake};
pub use clock::{now_ms, Clock};
pub use connections::{Bot, Connection, ConnectionOrigin, ConnectionRecords};
pub use counts::Counts;
pub use error::{decode, StoreError};
pub use flows::{FlowState, FlowStates};
pub use hooks::{SourceHook, SourceHooks};
pub use noise::{Bucket, Item, NoiseState};
pub use outbox::{Attempt, DeadLetter, Delivered, Outbox, OutboxKey, OutboxRecord, RenderFailure};
pub use recent::RecentEvents;
pub use refs::{MessageRef, MessageRefs, KEEP_REFS};
pub use seen::SeenIds;
