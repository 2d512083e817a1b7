//! The embedded SQLite store: one file, WAL journal, a full sync per commit.

mod checkpoint;
mod control;
mod error;
mod history;
mod log;
mod schema;

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

use crate::{
    AuditQuery, AuditRecord, CheckpointInfo, Entry, Episode, EpisodeQuery, Fence, IntentRevision,
    LeaseInfo, MemberEvent, NewAudit, NewEntry, SliMinute, StateItem, Store, StoreError, Time,
    TimelineQuery, TruncateStats,
};
use error::{Op, db_error};

/// How long a write waits for a lock another process holds before it fails
/// with [`StoreError::Locked`].
pub(crate) const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// The [`Store`] in one SQLite file.
///
/// The file is in WAL mode with `synchronous=FULL`: every append is one
/// transaction and one sync of the log to disk, so an acknowledged entry
/// survives `kill -9` and power loss. The schema is versioned with
/// `PRAGMA user_version` and upgraded on open; a file from a newer coherd is
/// refused rather than misread.
///
/// Tables: `entries` (the log: one row per observation batch, intent or
/// deletion, `id INTEGER PRIMARY KEY AUTOINCREMENT` so ids are never
/// reused; observation batches as zstd-compressed JSON), `checkpoints` and
/// `checkpoint_chunks` (the engine's checkpoints, compressed, in pieces of
/// 1 MiB), `episodes` (the history of divergence episodes, indexed by when
/// they opened and ended), `member_events` (members' timelines),
/// `sli_minutes` (each service's SLIs per minute), `leases`, `controller_state`
/// and `audit` (controllers' fencing leases, state and decisions), and `member_states` (member states an older coherd kept when it
/// pruned the log; read at start, deleted by the first truncation).
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
        after: u64,
        visit: &mut dyn FnMut(Entry) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        log::load(&mut self.conn, &self.path, after, visit)
    }

    fn latest_intent(&mut self) -> Result<Option<(Time, String)>, StoreError> {
        log::latest_intent(&self.conn, &self.path)
    }

    fn save_checkpoint(&mut self, covers: u64, at: Time, bytes: &[u8]) -> Result<u64, StoreError> {
        checkpoint::save(&mut self.conn, &self.path, covers, at, bytes)
    }

    fn checkpoints(&mut self) -> Result<Vec<CheckpointInfo>, StoreError> {
        checkpoint::list(&self.conn, &self.path)
    }

    fn read_checkpoint(&mut self, id: u64) -> Result<Vec<u8>, StoreError> {
        checkpoint::read(&mut self.conn, &self.path, id)
    }

    fn truncate(
        &mut self,
        keep: u64,
        keep_raw_since: Option<Time>,
    ) -> Result<TruncateStats, StoreError> {
        checkpoint::truncate(&mut self.conn, &self.path, keep, keep_raw_since)
    }

    fn record_episodes(&mut self, episodes: &[Episode]) -> Result<(), StoreError> {
        history::record(&mut self.conn, &self.path, episodes)
    }

    fn episodes(&mut self, query: &EpisodeQuery) -> Result<Vec<Episode>, StoreError> {
        history::query(&self.conn, &self.path, query)
    }

    fn record_member_events(&mut self, events: &[MemberEvent]) -> Result<(), StoreError> {
        history::record_members(&mut self.conn, &self.path, events)
    }

    fn member_events(&mut self, query: &TimelineQuery) -> Result<Vec<MemberEvent>, StoreError> {
        history::timeline(&self.conn, &self.path, query)
    }

    fn record_sli(&mut self, minutes: &[SliMinute]) -> Result<(), StoreError> {
        history::record_sli(&mut self.conn, &self.path, minutes)
    }

    fn sli_minutes(
        &mut self,
        service: &str,
        since: Time,
        until: Time,
        limit: usize,
    ) -> Result<Vec<SliMinute>, StoreError> {
        history::sli_minutes(&self.conn, &self.path, service, since, until, limit)
    }

    fn intents(
        &mut self,
        since: Time,
        until: Time,
        after: u64,
        limit: usize,
    ) -> Result<Vec<IntentRevision>, StoreError> {
        history::intents(&self.conn, &self.path, since, until, after, limit)
    }

    fn prune_history(&mut self, before: Time) -> Result<u64, StoreError> {
        history::prune(&mut self.conn, &self.path, before)
    }

    fn acquire_lease(
        &mut self,
        name: &str,
        holder: &str,
        now: Time,
        ttl: Duration,
    ) -> Result<Option<u64>, StoreError> {
        control::acquire(&mut self.conn, &self.path, name, holder, now, ttl)
    }

    fn renew_lease(&mut self, fence: &Fence, now: Time, ttl: Duration) -> Result<(), StoreError> {
        control::renew(&mut self.conn, &self.path, fence, now, ttl)
    }

    fn release_lease(&mut self, fence: &Fence) -> Result<(), StoreError> {
        control::release(&self.conn, &self.path, fence)
    }

    fn lease(&mut self, name: &str) -> Result<Option<LeaseInfo>, StoreError> {
        control::lease(&self.conn, &self.path, name)
    }

    fn record_fenced(
        &mut self,
        fence: &Fence,
        audit: &[NewAudit],
        state: &[StateItem],
    ) -> Result<Vec<u64>, StoreError> {
        control::record(&mut self.conn, &self.path, fence, audit, state)
    }

    fn append_audit(&mut self, audit: &[NewAudit]) -> Result<Vec<u64>, StoreError> {
        control::append_audit(&mut self.conn, &self.path, audit)
    }

    fn controller_state(&mut self, name: &str) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        control::state(&self.conn, &self.path, name)
    }

    fn audit(&mut self, query: &AuditQuery) -> Result<Vec<AuditRecord>, StoreError> {
        control::audit(&self.conn, &self.path, query)
    }

    fn prune_audit(&mut self, before: Time) -> Result<u64, StoreError> {
        control::prune(&mut self.conn, &self.path, before)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use coherd_model::Observation;

    fn intent(secs: i64, source: &str) -> NewEntry {
        NewEntry::Intent {
            at: Time::from_secs(secs),
            source: source.into(),
        }
    }

    /// A failure inside the database, after earlier entries of the same
    /// append were inserted, rolls all of them back.
    #[test]
    fn a_database_failure_mid_append_rolls_back_the_whole_append() {
        let mut store = SqliteStore::open_in_memory().unwrap();
        let kept = store.append(&[intent(0, "kept")]).unwrap();
        store
            .conn
            .execute_batch(
                "CREATE TEMP TRIGGER inject_failure BEFORE INSERT ON entries
                 WHEN NEW.payload = CAST('fail here' AS BLOB)
                 BEGIN SELECT RAISE(ABORT, 'injected failure'); END;",
            )
            .unwrap();
        let batch = NewEntry::Observations {
            received_at: Time::from_secs(1),
            observations: vec![Observation {
                service: "a".into(),
                member: "m".into(),
                ..Observation::default()
            }],
        };
        let err = store
            .append(&[batch, intent(2, "lost"), intent(3, "fail here")])
            .unwrap_err();
        assert!(matches!(err, StoreError::Write { .. }), "{err}");
        assert!(err.to_string().contains("injected failure"), "{err}");

        let mut ids = Vec::new();
        store
            .load(0, &mut |e| {
                ids.push(e.id);
                Ok(())
            })
            .unwrap();
        assert_eq!(ids, kept);
        assert_eq!(store.latest_intent().unwrap().unwrap().1, "kept");
    }

    #[test]
    fn a_file_store_uses_wal_and_full_sync() {
        let dir = std::env::temp_dir().join(format!("coherd-store-pragmas-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let store = SqliteStore::open(&dir.join("coherd.db")).unwrap();
        let mode: String = store
            .conn
            .pragma_query_value(None, "journal_mode", |r| r.get(0))
            .unwrap();
        let sync: i64 = store
            .conn
            .pragma_query_value(None, "synchronous", |r| r.get(0))
            .unwrap();
        assert_eq!((mode.as_str(), sync), ("wal", 2));
        drop(store);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// A database of schema version 2, pruned by an older coherd (kept
    /// member states, plain JSON batches), opens, is migrated, and loads
    /// everything it held in id order; the first truncation drops the kept
    /// states a checkpoint now covers.
    #[test]
    fn a_version_2_database_is_migrated_and_loads_its_kept_states() {
        let dir = std::env::temp_dir().join(format!("coherd-store-v2-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("v2.db");
        let _ = std::fs::remove_file(&path);
        let kept = r#"{"service":"a","member":"a-1","seq":4,"facets":{"version":"1"}}"#;
        let batch = r#"[{"service":"a","member":"a-2","seq":1,"facets":{"version":"2"}}]"#;
        {
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch(schema::MIGRATIONS[0]).unwrap();
            conn.execute_batch(schema::MIGRATIONS[1]).unwrap();
            conn.pragma_update(None, "user_version", 2).unwrap();
            conn.pragma_update(None, "application_id", schema::APPLICATION_ID)
                .unwrap();
            conn.execute(
                "INSERT INTO member_states VALUES ('a', 'a-1', 3, 0, 5, CAST(?1 AS BLOB))",
                [kept],
            )
            .unwrap();
            conn.execute(
                "INSERT INTO entries (id, kind, at, count, payload) VALUES (7, 'observations', 9, 1, CAST(?1 AS BLOB))",
                [batch],
            )
            .unwrap();
        }
        let mut store = SqliteStore::open(&path).unwrap();
        let mut loaded = Vec::new();
        store
            .load(0, &mut |e| {
                if let NewEntry::Observations { observations, .. } = e.body {
                    loaded.push((e.id, observations[0].member.clone()));
                }
                Ok(())
            })
            .unwrap();
        assert_eq!(loaded, [(3, "a-1".to_string()), (7, "a-2".to_string())]);
        let id = store
            .save_checkpoint(7, Time::from_nanos(9), b"state")
            .unwrap();
        let stats = store.truncate(id, None).unwrap();
        assert_eq!((stats.entries_deleted, stats.legacy_states_deleted), (1, 1));
        drop(store);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
