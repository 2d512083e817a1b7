//! Why a store operation failed, in words an operator can act on.

use std::error::Error;
use std::path::PathBuf;

/// The underlying cause of a [`StoreError`], kept opaque so the trait does not
/// depend on one database's client.
pub(crate) type Source = Box<dyn Error + Send + Sync + 'static>;

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The database could not be opened or created.
    #[error("cannot open database {path}: {source}; check the path and permissions")]
    Open {
        /// The database location.
        path: PathBuf,
        /// What the database reported.
        source: Source,
    },

    /// The file exists but is not a coherd database.
    #[error(
        "{path} is not a coherd database ({reason}); point coherd at its own database file, or at a path that does not exist yet"
    )]
    NotCoherd {
        /// The database location.
        path: PathBuf,
        /// What gave it away.
        reason: String,
    },

    /// The database was written by a newer coherd, whose schema this one does not know.
    #[error(
        "database {path} has schema version {found}, but this coherd knows versions up to {supported}; run a coherd at least as new as the one that wrote it"
    )]
    SchemaTooNew {
        /// The database location.
        path: PathBuf,
        /// The version the database has.
        found: i64,
        /// The newest version this build knows.
        supported: i64,
    },

    /// Upgrading the schema failed; the database was left as it was.
    #[error(
        "cannot upgrade database {path} to schema version {version}: {source}; the database is unchanged, check free disk space and permissions"
    )]
    Migrate {
        /// The database location.
        path: PathBuf,
        /// The migration that failed.
        version: i64,
        /// What the database reported.
        source: Source,
    },

    /// Another process holds the database locked for longer than the busy timeout.
    #[error(
        "database {path} is locked by another process; stop the other coherd using it, or give this one its own file"
    )]
    Locked {
        /// The database location.
        path: PathBuf,
    },

    /// An entry was refused before anything of its append was stored.
    #[error("entry {index} of the append is invalid: {reason}; nothing of this append was stored")]
    InvalidEntry {
        /// Its position in the slice passed to `append`.
        index: usize,
        /// The rule it breaks.
        reason: String,
    },

    /// Writing failed; nothing of the operation was stored.
    #[error(
        "cannot write to database {path}: {source}; nothing of this write was stored, check free disk space and that the file is writable"
    )]
    Write {
        /// The database location.
        path: PathBuf,
        /// What the database reported.
        source: Source,
    },

    /// Reading failed.
    #[error("cannot read database {path}: {source}")]
    Read {
        /// The database location.
        path: PathBuf,
        /// What the database reported.
        source: Source,
    },

    /// A stored entry cannot be decoded: the file is damaged or was written by an incompatible build.
    #[error(
        "entry {id} in database {path} cannot be decoded: {reason}; the file is damaged or was written by an incompatible build, restore it from a backup"
    )]
    Corrupt {
        /// The database location.
        path: PathBuf,
        /// The entry's id.
        id: u64,
        /// What is wrong with it.
        reason: String,
    },

    /// A checkpoint's bytes are damaged or missing: the caller falls back
    /// to the checkpoint before it.
    #[error("checkpoint {id} in database {path} cannot be used: {reason}")]
    CorruptCheckpoint {
        /// The database.
        path: PathBuf,
        /// The checkpoint.
        id: u64,
        /// What is wrong.
        reason: String,
    },

    /// A write under a fence that is no longer current: another acquisition
    /// of the lease raised its epoch. Nothing of the write was stored.
    #[error(
        "lease {name} moved on: this write was made under epoch {epoch}, the lease is at epoch {current} held by {holder}; nothing was stored"
    )]
    Fenced {
        /// The lease.
        name: String,
        /// The epoch the write carried.
        epoch: u64,
        /// The lease's epoch now (0: it was never acquired).
        current: u64,
        /// Who holds the lease now.
        holder: String,
    },

    /// The caller's `visit` callback refused an entry during [`load`](crate::Store::load).
    #[error("replaying entry {id} failed: {source}")]
    Replay {
        /// The entry's id.
        id: u64,
        /// The callback's error.
        source: Source,
    },
}

impl StoreError {
    /// Wraps an error from a [`load`](crate::Store::load) callback.
    pub fn replay(id: u64, source: impl Into<Source>) -> StoreError {
        StoreError::Replay {
            id,
            source: source.into(),
        }
    }
}
