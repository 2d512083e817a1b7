//! The SQLite schema and its numbered migrations.
//!
//! `PRAGMA user_version` holds the number of migrations applied;
//! `PRAGMA application_id` marks the file as coherd's. Each migration runs in
//! the same transaction as the version bump, so a database is always at one
//! exact version.

use std::path::Path;

use rusqlite::{Connection, OptionalExtension, TransactionBehavior};

use super::error::{Op, db_error, source};
use crate::StoreError;

/// `coh1` in ASCII: marks a SQLite file as a coherd database.
pub(crate) const APPLICATION_ID: i64 = 0x636f_6831;

/// Migration `i` brings the schema from version `i` to `i + 1`.
pub(crate) const MIGRATIONS: &[&str] = &[
    // 1: the entry log, and the member states kept by pruning.
    "
    CREATE TABLE entries (
        -- Store-issued, strictly increasing, never reused (AUTOINCREMENT).
        id      INTEGER PRIMARY KEY AUTOINCREMENT,
        kind    TEXT    NOT NULL CHECK (kind IN ('observations', 'intent', 'delete_member')),
        -- Receive time of observations, or when an intent or deletion took effect; ns since the epoch.
        at      INTEGER NOT NULL,
        -- The deleted member (delete_member only).
        service TEXT    CHECK ((kind = 'delete_member') = (service IS NOT NULL AND service <> '')),
        member  TEXT    CHECK ((kind = 'delete_member') = (member IS NOT NULL AND member <> '')),
        -- How many observations the payload holds.
        count   INTEGER NOT NULL DEFAULT 0 CHECK (count >= 0),
        -- observations: a JSON array of observations; intent: the source text as UTF-8.
        payload BLOB    CHECK ((kind = 'delete_member') = (payload IS NULL))
    ) STRICT;
    CREATE INDEX entries_by_time ON entries (at);
    CREATE INDEX entries_by_kind ON entries (kind);

    CREATE TABLE member_states (
        service     TEXT    NOT NULL,
        member      TEXT    NOT NULL,
        -- The pruned entry that held the member's latest applied report, and its place in it.
        entry_id    INTEGER NOT NULL,
        position    INTEGER NOT NULL,
        received_at INTEGER NOT NULL,
        -- The member's reports folded into one observation, as JSON.
        observation BLOB    NOT NULL,
        PRIMARY KEY (service, member)
    ) STRICT, WITHOUT ROWID;
    CREATE INDEX member_states_by_entry ON member_states (entry_id, position);
    ",
    // 2: an operator may delete a whole service. SQLite cannot change a CHECK,
    // so the log moves to a new table; ids keep counting from where they were.
    "
    CREATE TABLE entries_v2 (
        id      INTEGER PRIMARY KEY AUTOINCREMENT,
        kind    TEXT    NOT NULL
                CHECK (kind IN ('observations', 'intent', 'delete_member', 'delete_service')),
        at      INTEGER NOT NULL,
        -- The deleted member's service, or the deleted service.
        service TEXT    CHECK ((kind IN ('delete_member', 'delete_service'))
                               = (service IS NOT NULL AND service <> '')),
        member  TEXT    CHECK ((kind = 'delete_member') = (member IS NOT NULL AND member <> '')),
        count   INTEGER NOT NULL DEFAULT 0 CHECK (count >= 0),
        payload BLOB    CHECK ((kind IN ('delete_member', 'delete_service')) = (payload IS NULL))
    ) STRICT;
    INSERT INTO entries_v2 (id, kind, at, service, member, count, payload)
        SELECT id, kind, at, service, member, count, payload FROM entries;
    INSERT INTO sqlite_sequence (name, seq)
        SELECT 'entries_v2', 0
        WHERE NOT EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = 'entries_v2');
    UPDATE sqlite_sequence
        SET seq = max(seq, coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'entries'), 0))
        WHERE name = 'entries_v2';
    DROP TABLE entries;
    ALTER TABLE entries_v2 RENAME TO entries;
    CREATE INDEX entries_by_time ON entries (at);
    CREATE INDEX entries_by_kind ON entries (kind);
    ",
    // Version 3: checkpoints of the engine. Observation payloads may now be
    // zstd-compressed JSON (told apart by zstd's magic number).
    "
    CREATE TABLE checkpoints (
        id       INTEGER PRIMARY KEY AUTOINCREMENT,
        -- The last entry the checkpoint includes.
        covers   INTEGER NOT NULL CHECK (covers >= 0),
        -- The engine time it was taken at; ns since the epoch.
        at       INTEGER NOT NULL,
        -- Length and CRC-32 of the bytes before compression.
        bytes    INTEGER NOT NULL CHECK (bytes >= 0),
        crc      INTEGER NOT NULL,
        -- Set in the last transaction of a save: until then it is not used.
        complete INTEGER NOT NULL DEFAULT 0 CHECK (complete IN (0, 1))
    ) STRICT;
    CREATE TABLE checkpoint_chunks (
            checkpoint INTEGER NOT NULL,
        seq        INTEGER NOT NULL,
        -- A piece of the zstd-compressed bytes.
        data       BLOB    NOT NULL,
        PRIMARY KEY (checkpoint, seq)
    ) STRICT, WITHOUT ROWID;
    ",
    // Version 4: history: divergence episodes, member events, SLIs per minute.
    "
    CREATE TABLE episodes (
        id          TEXT    NOT NULL,
        opened_at   INTEGER NOT NULL,
        service     TEXT    NOT NULL,
        kind        TEXT    NOT NULL,
        resolved_at INTEGER,
        -- resolved_at, or the largest time while open: the window's index.
        ends_at     INTEGER NOT NULL,
        -- The record as the API shows it, JSON.
        record      TEXT    NOT NULL,
        PRIMARY KEY (id, opened_at)
    ) STRICT, WITHOUT ROWID;
    CREATE INDEX episodes_by_opening ON episodes (opened_at, id);
    CREATE INDEX episodes_by_end ON episodes (ends_at);
    CREATE TABLE member_events (
        service TEXT    NOT NULL,
        member  TEXT    NOT NULL,
        at      INTEGER NOT NULL,
        -- What happened, with the facet for a change: joined, changed:version...
        what    TEXT    NOT NULL,
        -- The event as the API shows it, JSON.
        record  TEXT    NOT NULL,
        PRIMARY KEY (service, member, at, what)
    ) STRICT, WITHOUT ROWID;
    CREATE INDEX member_events_by_time ON member_events (at);
    CREATE TABLE sli_minutes (
        service TEXT    NOT NULL,
        -- The minute's start; ns since the epoch.
        minute  INTEGER NOT NULL,
        -- The service's SLIs then, JSON.
        record  TEXT    NOT NULL,
        PRIMARY KEY (service, minute)
    ) STRICT, WITHOUT ROWID;
    CREATE INDEX sli_minutes_by_time ON sli_minutes (minute);
    ",
    // Version 5: controllers: fencing leases, their state, and the audit log.
    "
    CREATE TABLE leases (
        name       TEXT    PRIMARY KEY,
        holder     TEXT    NOT NULL,
        -- Raised by every acquisition: the fencing token.
        epoch      INTEGER NOT NULL CHECK (epoch > 0),
        expires_at INTEGER NOT NULL
    ) STRICT, WITHOUT ROWID;
    CREATE TABLE controller_state (
        name  TEXT NOT NULL,
        -- One item of the controller's state, opaque to the store.
        key   TEXT NOT NULL,
        value BLOB NOT NULL,
        PRIMARY KEY (name, key)
    ) STRICT, WITHOUT ROWID;
    CREATE TABLE audit (
        id       INTEGER PRIMARY KEY AUTOINCREMENT,
        at       INTEGER NOT NULL,
        epoch    INTEGER NOT NULL,
        action   TEXT    NOT NULL,
        service  TEXT    NOT NULL,
        member   TEXT,
        decision TEXT    NOT NULL,
        -- The record as the API shows it, JSON.
        record   TEXT    NOT NULL
    ) STRICT;
    CREATE INDEX audit_by_time ON audit (at);
    CREATE INDEX audit_by_service ON audit (service, id);
    ",
];

/// The schema version this build writes.
pub(crate) const LATEST: i64 = MIGRATIONS.len() as i64;

/// Checks that `conn` is a coherd database this build can use, and brings its
/// schema up to [`LATEST`].
pub(crate) fn migrate(conn: &mut Connection, path: &Path) -> Result<(), StoreError> {
    let open_err = |e| db_error(path, e, Op::Open);
    check_identity(conn, path).map_err(|e| match e {
        Identity::Db(e) => open_err(e),
        Identity::Refused(e) => e,
    })?;

    let current = user_version(conn).map_err(open_err)?;
    if current == LATEST {
        return Ok(());
    }
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(open_err)?;
    // Another process may have migrated while we waited for the lock.
    let current = user_version(&tx).map_err(open_err)?;
    if current > LATEST {
        return Err(too_new(path, current));
    }
    for version in current + 1..=LATEST {
        let step = MIGRATIONS[(version - 1) as usize];
        tx.execute_batch(step)
            .and_then(|()| tx.pragma_update(None, "user_version", version))
            .and_then(|()| tx.pragma_update(None, "application_id", APPLICATION_ID))
            .map_err(|e| StoreError::Migrate {
                path: path.to_path_buf(),
                version,
                source: source(e),
            })?;
    }
    tx.commit().map_err(|e| StoreError::Migrate {
        path: path.to_path_buf(),
        version: LATEST,
        source: source(e),
    })
}

enum Identity {
    Db(rusqlite::Error),
    Refused(StoreError),
}

impl From<rusqlite::Error> for Identity {
    fn from(e: rusqlite::Error) -> Identity {
        Identity::Db(e)
    }
}

fn check_identity(conn: &Connection, path: &Path) -> Result<(), Identity> {
    let not_coherd = |reason: String| {
        Identity::Refused(StoreError::NotCoherd {
            path: path.to_path_buf(),
            reason,
        })
    };
    let app_id: i64 = match conn.pragma_query_value(None, "application_id", |r| r.get(0)) {
        Ok(id) => id,
        Err(e) if e.sqlite_error_code() == Some(rusqlite::ErrorCode::NotADatabase) => {
            return Err(not_coherd("it is not an SQLite database file".into()));
        }
        Err(e) => return Err(e.into()),
    };
    let version = user_version(conn)?;
    if app_id == APPLICATION_ID {
        if version > LATEST {
            return Err(Identity::Refused(too_new(path, version)));
        }
        return Ok(());
    }
    if app_id != 0 {
        return Err(not_coherd(format!(
            "its application id is {app_id:#x}, coherd's is {APPLICATION_ID:#x}"
        )));
    }
    let foreign_table: Option<String> = conn
        .query_row(
            "SELECT name FROM sqlite_schema WHERE name NOT LIKE 'sqlite_%' LIMIT 1",
            [],
            |r| r.get(0),
        )
        .optional()?;
    match foreign_table {
        Some(table) => Err(not_coherd(format!(
            "it already holds other data, such as the table {table:?}"
        ))),
        None if version != 0 => Err(not_coherd(format!(
            "it has schema version {version} but no coherd mark"
        ))),
        None => Ok(()),
    }
}

fn user_version(conn: &Connection) -> rusqlite::Result<i64> {
    conn.pragma_query_value(None, "user_version", |r| r.get(0))
}

fn too_new(path: &Path, found: i64) -> StoreError {
    StoreError::SchemaTooNew {
        path: path.to_path_buf(),
        found,
        supported: LATEST,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A database written at version 1 opens, is migrated, keeps every entry
    /// and keeps counting ids from where they were (never reusing one, even
    /// one pruned away), and takes the entries version 2 adds.
    #[test]
    fn a_version_1_database_is_migrated_without_losing_or_reusing_ids() {
        let dir = std::env::temp_dir().join(format!("coherd-migrate-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("v1.db");
        let _ = std::fs::remove_file(&path);
        {
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch(MIGRATIONS[0]).unwrap();
            conn.pragma_update(None, "user_version", 1).unwrap();
            conn.pragma_update(None, "application_id", APPLICATION_ID)
                .unwrap();
            for i in 1..=5 {
                conn.execute(
                    "INSERT INTO entries (kind, at, service, member, count, payload) VALUES ('delete_member', ?1, 'api', 'm', 0, NULL)",
                    [i],
                )
                .unwrap();
            }
            // The newest entry pruned away: its id must not come back.
            conn.execute("DELETE FROM entries WHERE id = 5", [])
                .unwrap();
        }
        let mut conn = Connection::open(&path).unwrap();
        migrate(&mut conn, &path).unwrap();
        assert_eq!(user_version(&conn).unwrap(), LATEST);
        let kept: i64 = conn
            .query_row("SELECT count(*) FROM entries", [], |r| r.get(0))
            .unwrap();
        assert_eq!(kept, 4);
        conn.execute(
            "INSERT INTO entries (kind, at, service, member, count, payload) VALUES ('delete_service', 9, 'api', NULL, 0, NULL)",
            [],
        )
        .unwrap();
        let id: i64 = conn
            .query_row("SELECT max(id) FROM entries", [], |r| r.get(0))
            .unwrap();
        assert_eq!(id, 6, "ids go on after the pruned 5");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
