//! Pruning: old observation batches become one kept state per member.

use std::collections::HashMap;
use std::collections::hash_map::Entry as Slot;
use std::path::Path;

use coherd_model::Observation;
use rusqlite::{Connection, OptionalExtension, Transaction, TransactionBehavior, params};

use super::error::{Op, db_error};
use super::fold::fold;
use super::log::{DELETE_MEMBER, INTENT, OBSERVATIONS, decode_observations};
use crate::{PruneStats, StoreError, Time};

/// Log entries folded per transaction: bounds memory and the time the writer
/// is held, while a large prune still makes steady progress.
const CHUNK: i64 = 64;

/// One chunk of old entries, in (at, id) order straight from the index on `at`.
pub(super) const SELECT_OLD: &str = "SELECT id, kind, at, service, member, payload
    FROM entries INDEXED BY entries_by_time
    WHERE at < ?1 AND kind IN (?2, ?3) ORDER BY at, id LIMIT ?4";

/// A member's kept state while a chunk is folded.
struct Kept {
    entry_id: i64,
    position: i64,
    received_at: i64,
    obs: Observation,
}

/// An old log entry about to be folded.
struct OldEntry {
    id: i64,
    kind: String,
    at: i64,
    service: Option<String>,
    member: Option<String>,
    payload: Option<Vec<u8>>,
}

/// Per member: its state (`None` once deleted) and whether it changed.
type States = HashMap<(String, String), (Option<Kept>, bool)>;

pub(crate) fn prune(
    conn: &mut Connection,
    path: &Path,
    before: Time,
) -> Result<PruneStats, StoreError> {
    let write_err = |e| db_error(path, e, Op::Write);
    let before = before.as_nanos();
    let mut stats = PruneStats::default();

    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(write_err)?;
    stats.intents_deleted = tx
        .execute(
            "DELETE FROM entries WHERE kind = ?1 AND at < ?2
             AND id < (SELECT max(id) FROM entries WHERE kind = ?1)",
            params![INTENT, before],
        )
        .map_err(write_err)? as u64;
    tx.commit().map_err(write_err)?;

    loop {
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(write_err)?;
        let folded = fold_chunk(&tx, path, before, &mut stats)?;
        tx.commit().map_err(write_err)?;
        if !folded {
            return Ok(stats);
        }
    }
}

/// Folds and deletes one chunk of old entries; `false` when none was left.
fn fold_chunk(
    tx: &Transaction<'_>,
    path: &Path,
    before: i64,
    stats: &mut PruneStats,
) -> Result<bool, StoreError> {
    let write_err = |e| db_error(path, e, Op::Write);
    let mut chunk: Vec<OldEntry> = tx
        .prepare_cached(SELECT_OLD)
        .and_then(|mut stmt| {
            stmt.query_map(params![before, OBSERVATIONS, DELETE_MEMBER, CHUNK], |r| {
                Ok(OldEntry {
                    id: r.get(0)?,
                    kind: r.get(1)?,
                    at: r.get(2)?,
                    service: r.get(3)?,
                    member: r.get(4)?,
                    payload: r.get(5)?,
                })
            })?
            .collect()
        })
        .map_err(write_err)?;
    if chunk.is_empty() {
        return Ok(false);
    }
    chunk.sort_by_key(|e| e.id);

    let mut states = States::new();
    let mut delete = tx
        .prepare_cached("DELETE FROM entries WHERE id = ?1")
        .map_err(write_err)?;
    for OldEntry {
        id,
        kind,
        at,
        service,
        member,
        payload,
    } in chunk
    {
        if kind == DELETE_MEMBER {
            let key = (service.unwrap_or_default(), member.unwrap_or_default());
            states.insert(key, (None, true));
            stats.deletions_folded += 1;
        } else {
            let observations =
                decode_observations(path, id as u64, payload.as_deref().unwrap_or_default())?;
            stats.batches_deleted += 1;
            stats.observations_deleted += observations.len() as u64;
            for (position, obs) in observations.into_iter().enumerate() {
                let key = (obs.service.clone(), obs.member.clone());
                let slot = match states.entry(key) {
                    Slot::Occupied(o) => o.into_mut(),
                    Slot::Vacant(v) => {
                        let kept = load_kept(tx, path, &v.key().0, &v.key().1)?;
                        v.insert((kept, false))
                    }
                };
                let (kept, dirty) = slot;
                let applied = match kept {
                    Some(k) => fold(&mut k.obs, &obs),
                    None => true,
                };
                if applied {
                    let received_at = at;
                    let position = position as i64;
                    match kept {
                        Some(k) => {
                            (k.entry_id, k.position, k.received_at) = (id, position, received_at)
                        }
                        None => {
                            *kept = Some(Kept {
                                entry_id: id,
                                position,
                                received_at,
                                obs,
                            })
                        }
                    }
                    *dirty = true;
                }
            }
        }
        delete.execute([id]).map_err(write_err)?;
    }
    stats.member_states_kept += write_states(tx, path, states)?;
    Ok(true)
}

fn load_kept(
    tx: &Transaction<'_>,
    path: &Path,
    service: &str,
    member: &str,
) -> Result<Option<Kept>, StoreError> {
    let row: Option<(i64, i64, i64, Vec<u8>)> = tx
        .prepare_cached(
            "SELECT entry_id, position, received_at, observation FROM member_states
             WHERE service = ?1 AND member = ?2",
        )
        .and_then(|mut stmt| {
            stmt.query_row([service, member], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
            })
            .optional()
        })
        .map_err(|e| db_error(path, e, Op::Read))?;
    let Some((entry_id, position, received_at, bytes)) = row else {
        return Ok(None);
    };
    let obs = serde_json::from_slice(&bytes).map_err(|e| StoreError::Corrupt {
        path: path.to_path_buf(),
        id: entry_id as u64,
        reason: format!("kept state of {service}/{member}: {e}"),
    })?;
    Ok(Some(Kept {
        entry_id,
        position,
        received_at,
        obs,
    }))
}

/// Writes the changed states back; returns how many states were written.
fn write_states(tx: &Transaction<'_>, path: &Path, states: States) -> Result<u64, StoreError> {
    let write_err = |e| db_error(path, e, Op::Write);
    let mut upsert = tx
        .prepare_cached(
            "INSERT OR REPLACE INTO member_states
             (service, member, entry_id, position, received_at, observation)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )
        .map_err(write_err)?;
    let mut remove = tx
        .prepare_cached("DELETE FROM member_states WHERE service = ?1 AND member = ?2")
        .map_err(write_err)?;
    let mut written = 0;
    for ((service, member), (kept, dirty)) in states {
        if !dirty {
            continue;
        }
        match kept {
            Some(k) => {
                let json = serde_json::to_vec(&k.obs).map_err(|e| StoreError::Write {
                    path: path.to_path_buf(),
                    source: Box::new(e),
                })?;
                upsert
                    .execute(params![
                        service,
                        member,
                        k.entry_id,
                        k.position,
                        k.received_at,
                        json
                    ])
                    .map_err(write_err)?;
                written += 1;
            }
            None => {
                remove.execute([service, member]).map_err(write_err)?;
            }
        }
    }
    Ok(written)
}
