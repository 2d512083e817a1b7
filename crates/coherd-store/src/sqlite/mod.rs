//! The embedded SQLite store: one file, WAL journal, a full sync per commit.

mod error;
mod fold;
mod log;
mod prune;
mod schema;

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

use crate::{Entry, NewEntry, PruneStats, Store, StoreError, Time};
use error::{Op, db_error};

/// How long a write waits for a lock another process holds before it fails
/// with [`StoreError::Locked`].
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// The [`Store`] in one SQLite file.
///
/// The file is in WAL mode with `synchronous=FULL`: every append is one
/// transaction and one sync of the log to disk, so an acknowledged entry
/// survives `kill -9` and power loss. The schema is versioned with
/// `PRAGMA user_version` and upgraded on open; a file from a newer coherd is
/// refused rather than misread.
///
/// Tables: `entries` (the log: one row per observation batch, intent or
/// member deletion, `id INTEGER PRIMARY KEY AUTOINCREMENT` so ids are never
/// reused) and `member_states` (one folded observation per `(service,
/// member)`, written by [`Store::prune`]).
#[derive(Debug)]
pub struct SqliteStore {
    conn: Connection,
    /// For error messages.
    path: PathBuf,
    /// Reused encoding buffer.
    buf: Vec<u8>,
}

impl SqliteStore {
    /// Opens the database at `path`, creating it if it does not exist, and
    /// brings its schema up to date.
    ///
    /// Fails with [`StoreError::NotCoherd`] if the file is some other
    /// database, and with [`StoreError::SchemaTooNew`] if a newer coherd
    /// wrote it.
    pub fn open(path: &Path) -> Result<SqliteStore, StoreError> {
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(path, flags).map_err(|e| StoreError::Open {
            path: path.to_path_buf(),
            source: Box::new(e),
        })?;
        SqliteStore::setup(conn, path.to_path_buf())
    }

    /// A store that lives in memory and vanishes when dropped; for tests and
    /// runs that need no durability.
    pub fn open_in_memory() -> Result<SqliteStore, StoreError> {
        let path = PathBuf::from(":memory:");
        let conn = Connection::open_in_memory().map_err(|e| db_error(&path, e, Op::Open))?;
        SqliteStore::setup(conn, path)
    }

    /// Where the database lives (`:memory:` for an in-memory store).
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn setup(mut conn: Connection, path: PathBuf) -> Result<SqliteStore, StoreError> {
        let open_err = |e| db_error(&path, e, Op::Open);
        conn.busy_timeout(BUSY_TIMEOUT).map_err(open_err)?;
        schema::migrate(&mut conn, &path)?;
        // WAL: appends do not block readers and need one sync per commit.
        // An in-memory database answers "memory", which is fine.
        let _mode: String = conn
            .pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))
            .map_err(open_err)?;
        // FULL: the WAL is synced at every commit, so a commit survives power loss.
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(open_err)?;
        conn.set_prepared_statement_cache_capacity(32);
        Ok(SqliteStore {
            conn,
            path,
            buf: Vec::new(),
        })
    }
}

impl Store for SqliteStore {
    fn append(&mut self, entries: &[NewEntry]) -> Result<Vec<u64>, StoreError> {
        log::append(&mut self.conn, &self.path, &mut self.buf, entries)
    }

    fn load(
        &mut self,
        visit: &mut dyn FnMut(Entry) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        log::load(&mut self.conn, &self.path, visit)
    }

    fn prune(&mut self, before: Time) -> Result<PruneStats, StoreError> {
        prune::prune(&mut self.conn, &self.path, before)
    }

    fn latest_intent(&mut self) -> Result<Option<(Time, String)>, StoreError> {
        log::latest_intent(&self.conn, &self.path)
    }
}
