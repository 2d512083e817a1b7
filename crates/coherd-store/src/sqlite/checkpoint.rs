//! Checkpoints: saved in pieces, listed, read back with their checksum
//! checked, and the log and older checkpoints they cover truncated.

use std::path::Path;

use coherd_model::Time;
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

use super::error::{Op, db_error};
use super::log::{INTENT, OBSERVATIONS, compress, decompress};
use crate::{CheckpointInfo, StoreError, TruncateStats};

/// Compressed bytes per piece: one piece is one transaction, so an append
/// waits for at most one piece to be written.
const CHUNK: usize = 1 << 20;

/// Rows deleted per transaction while truncating.
const DELETE_CHUNK: i64 = 10_000;

/// The largest checkpoint read back (a damaged length must not exhaust memory).
const MAX_CHECKPOINT: u64 = 16 << 30;

pub(crate) fn save(
    conn: &mut Connection,
    path: &Path,
    covers: u64,
    at: Time,
    bytes: &[u8],
) -> Result<u64, StoreError> {
    let write_err = |e| db_error(path, e, Op::Write);
    let compressed = compress(bytes).map_err(|e| StoreError::InvalidEntry {
        index: 0,
        reason: format!("cannot compress the checkpoint: {e}"),
    })?;
    let crc = crc32fast::hash(bytes);
    conn.execute(
        "INSERT INTO checkpoints (covers, at, bytes, crc, complete) VALUES (?1, ?2, ?3, ?4, 0)",
        params![covers as i64, at.as_nanos(), bytes.len() as i64, crc],
    )
    .map_err(write_err)?;
    let id = conn.last_insert_rowid();
    for (seq, piece) in compressed.chunks(CHUNK).enumerate() {
        conn.execute(
            "INSERT INTO checkpoint_chunks (checkpoint, seq, data) VALUES (?1, ?2, ?3)",
            params![id, seq as i64, piece],
        )
        .map_err(write_err)?;
    }
    conn.execute("UPDATE checkpoints SET complete = 1 WHERE id = ?1", [id])
        .map_err(write_err)?;
    Ok(id as u64)
}

pub(crate) fn list(conn: &Connection, path: &Path) -> Result<Vec<CheckpointInfo>, StoreError> {
    let read = |e| db_error(path, e, Op::Read);
    let mut stmt = conn
        .prepare_cached(
            "SELECT id, covers, at, bytes FROM checkpoints WHERE complete = 1 ORDER BY id DESC",
        )
        .map_err(read)?;
    let rows = stmt
        .query_map([], |r| {
            Ok(CheckpointInfo {
                id: r.get::<_, i64>(0)? as u64,
                covers: r.get::<_, i64>(1)? as u64,
                at: Time::from_nanos(r.get(2)?),
                bytes: r.get::<_, i64>(3)? as u64,
            })
        })
        .map_err(read)?;
    rows.collect::<Result<_, _>>().map_err(read)
}

pub(crate) fn read(conn: &mut Connection, path: &Path, id: u64) -> Result<Vec<u8>, StoreError> {
    let read = |e| db_error(path, e, Op::Read);
    let corrupt = |reason: String| StoreError::CorruptCheckpoint {
        path: path.to_path_buf(),
        id,
        reason,
    };
    let tx = conn.transaction().map_err(read)?;
    let (len, crc): (i64, u32) = tx
        .query_row(
            "SELECT bytes, crc FROM checkpoints WHERE id = ?1 AND complete = 1",
            [id as i64],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()
        .map_err(read)?
        .ok_or_else(|| corrupt("there is no complete checkpoint with this id".into()))?;
    let mut compressed = Vec::new();
    let mut stmt = tx
        .prepare("SELECT seq, data FROM checkpoint_chunks WHERE checkpoint = ?1 ORDER BY seq")
        .map_err(read)?;
    let mut rows = stmt.query([id as i64]).map_err(read)?;
    let mut expected = 0i64;
    while let Some(row) = rows.next().map_err(read)? {
        let seq: i64 = row.get(0).map_err(read)?;
        if seq != expected {
            return Err(corrupt(format!("piece {expected} is missing")));
        }
        expected += 1;
        let data = row
            .get_ref(1)
            .map_err(read)?
            .as_blob()
            .map_err(|e| corrupt(format!("piece {seq} is not a blob ({e})")))?;
        compressed.extend_from_slice(data);
    }
    let limit = (len as u64).min(MAX_CHECKPOINT);
    let bytes = decompress(&compressed, limit).map_err(|e| corrupt(e.to_string()))?;
    if bytes.len() as i64 != len {
        return Err(corrupt(format!(
            "it holds {} bytes where {len} were saved",
            bytes.len()
        )));
    }
    if crc32fast::hash(&bytes) != crc {
        return Err(corrupt("its checksum does not match".into()));
    }
    Ok(bytes)
}

pub(crate) fn truncate(
    conn: &mut Connection,
    path: &Path,
    keep: u64,
    keep_raw_since: Option<Time>,
) -> Result<TruncateStats, StoreError> {
    let write_err = |e| db_error(path, e, Op::Write);
    let mut stats = TruncateStats::default();
    let covers: Option<i64> = conn
        .query_row(
            "SELECT covers FROM checkpoints WHERE id = ?1 AND complete = 1",
            [keep as i64],
            |r| r.get(0),
        )
        .optional()
        .map_err(|e| db_error(path, e, Op::Read))?;
    let Some(covers) = covers else {
        return Ok(stats);
    };
    // Raw capture keeps observation batches received since `keep_raw_since`.
    let raw_since = keep_raw_since.map_or(i64::MAX, Time::as_nanos);
    loop {
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(write_err)?;
        let deleted = tx
            .execute(
                "DELETE FROM entries WHERE id IN (
                     SELECT id FROM entries
                     WHERE id <= ?1 AND kind <> ?2 AND NOT (kind = ?3 AND at >= ?4)
                     ORDER BY id LIMIT ?5)",
                params![covers, INTENT, OBSERVATIONS, raw_since, DELETE_CHUNK],
            )
            .map_err(write_err)?;
        tx.commit().map_err(write_err)?;
        stats.entries_deleted += deleted as u64;
        if (deleted as i64) < DELETE_CHUNK {
            break;
        }
    }
    loop {
        let deleted = conn
            .execute(
                "DELETE FROM member_states WHERE (service, member) IN (
                     SELECT service, member FROM member_states WHERE entry_id <= ?1 LIMIT ?2)",
                params![covers, DELETE_CHUNK],
            )
            .map_err(write_err)?;
        stats.legacy_states_deleted += deleted as u64;
        if (deleted as i64) < DELETE_CHUNK {
            break;
        }
    }
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(write_err)?;
    tx.execute(
        "DELETE FROM checkpoint_chunks WHERE checkpoint IN (
             SELECT id FROM checkpoints WHERE id < ?1 OR complete = 0)",
        [keep as i64],
    )
    .map_err(write_err)?;
    stats.checkpoints_deleted = tx
        .execute(
            "DELETE FROM checkpoints WHERE id < ?1 OR complete = 0",
            [keep as i64],
        )
        .map_err(write_err)? as u64;
    tx.commit().map_err(write_err)?;
    Ok(stats)
}
