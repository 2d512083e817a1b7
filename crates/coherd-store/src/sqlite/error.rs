//! Turning SQLite's errors into [`StoreError`]s.

use std::path::Path;

use rusqlite::ErrorCode;

use crate::StoreError;
use crate::error::Source;

/// What the store was doing when SQLite failed.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Op {
    Open,
    Write,
    Read,
}

/// Wraps a SQLite error; a lock held too long by another process becomes
/// [`StoreError::Locked`] whatever the store was doing.
pub(crate) fn db_error(path: &Path, e: rusqlite::Error, op: Op) -> StoreError {
    let path = path.to_path_buf();
    if matches!(
        e.sqlite_error_code(),
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked)
    ) {
        return StoreError::Locked { path };
    }
    let source = source(e);
    match op {
        Op::Open => StoreError::Open { path, source },
        Op::Write => StoreError::Write { path, source },
        Op::Read => StoreError::Read { path, source },
    }
}

pub(crate) fn source(e: rusqlite::Error) -> Source {
    Box::new(e)
}
