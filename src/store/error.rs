//! What can go wrong in storage, on either backend, and the decoding of a stored record.

use serde::de::DeserializeOwned;

use super::secrets;

/// What can go wrong in storage.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// sled failed (I/O, corruption).
    #[error("storage failed")]
    Sled(#[from] sled::Error),
    /// A record did not decode: written by another version, or damaged.
    #[error("a stored record does not decode")]
    Decode(#[from] serde_json::Error),
    /// The data directory could not be opened.
    #[error("cannot open the data directory {path}")]
    Open {
        /// The directory.
        path: String,
        /// Why.
        #[source]
        source: sled::Error,
    },
    /// A file of the store outside sled (the delivered records) failed.
    #[error("a file of the store failed")]
    Io(#[from] std::io::Error),
    /// The store is shutting down.
    #[error("the store is closed")]
    Closed,
    /// A secret could not be sealed or opened.
    #[error("a secret at rest")]
    Secret(#[from] secrets::SecretError),
    /// PostgreSQL refused a statement.
    #[error("PostgreSQL failed")]
    Postgres(#[from] postgres::Error),
    /// PostgreSQL cannot be reached (down, restarting, the network): nothing was written.
    #[error("PostgreSQL is unavailable: {0}")]
    Unavailable(String),
    /// The store's settings are wrong (the message names the key).
    #[error("{0}")]
    Config(String),
    /// The database's schema is not this version's (see `cardwire migrate --check`).
    #[error("{0}")]
    Schema(String),
    /// PostgreSQL refused a statement made for several callers at once (the group commit):
    /// each gets its text.
    #[error("PostgreSQL failed: {0}")]
    Statement(String),
    /// This instance no longer holds the connection's delivery lease (it expired and another
    /// instance took it): the move was not made; the card is the other instance's now.
    #[error("the delivery lease of connection {0} was lost to another instance")]
    LeaseLost(String),
    /// The disk holding the data folder has less free space than `limits.min_free_disk`: new
    /// events are refused so that delivery, which writes little, keeps the room left.
    #[error(
        "the disk holding the data folder has {} free, under limits.min_free_disk ({})",
        crate::units::format_size(*free),
        crate::units::format_size(*floor)
    )]
    Full {
        /// Free bytes (for an unprivileged user).
        free: u64,
        /// `limits.min_free_disk`.
        floor: u64,
    },
}

impl StoreError {
    /// [`StoreError::Unavailable`], saying why.
    pub fn unavailable(e: impl std::fmt::Display) -> Self {
        Self::Unavailable(e.to_string())
    }

    /// Whether the disk (or a quota, or a file-size limit) is full: the write may succeed
    /// once space returns, so it is "try later", not a fault of the event. sled's I/O errors
    /// `ENOSPC`, `EDQUOT` and `EFBIG`; PostgreSQL's `disk_full` (53100).
    pub fn is_storage_full(&self) -> bool {
        let io = match self {
            Self::Sled(sled::Error::Io(io))
            | Self::Io(io)
            | Self::Open {
                source: sled::Error::Io(io),
                ..
            } => io,
            Self::Postgres(e) => return e.code() == Some(&postgres::error::SqlState::DISK_FULL),
            Self::Full { .. } => return true,
            _ => return false,
        };
        // ENOSPC, EFBIG and EDQUOT on Linux.
        matches!(io.raw_os_error(), Some(28 | 27 | 122))
            || io.kind() == std::io::ErrorKind::StorageFull
    }

    /// The error's kind, as `cardwire_store_errors_total{kind}` labels it: `storage_full`,
    /// `unavailable` (PostgreSQL cannot be reached), `lease_lost`, `decode` or `io` (the rest).
    pub fn kind(&self) -> &'static str {
        match self {
            e if e.is_storage_full() => "storage_full",
            Self::Unavailable(_) => "unavailable",
            Self::LeaseLost(_) => "lease_lost",
            Self::Decode(_) => "decode",
            _ => "io",
        }
    }

    /// Whether the store must be opened again before it writes anything: sled stops writing
    /// for good after an I/O error in its log (a full disk among them), until it is opened
    /// again, when it recovers from what reached the disk.
    pub fn needs_reopen(&self) -> bool {
        matches!(self, Self::Sled(sled::Error::Io(_)))
    }
}

/// A stored record, decoded (a [`StoreError::Decode`] when it does not).
pub fn decode<T: DeserializeOwned>(v: &[u8]) -> Result<T, StoreError> {
    Ok(serde_json::from_slice(v)?)
}
