//! Appending to the entry log and replaying it.

use std::path::Path;

use coherd_model::{Observation, Time};
use rusqlite::{Connection, Rows, TransactionBehavior, params};

use super::error::{Op, db_error};
use crate::{Entry, NewEntry, StoreError};

/// The `kind` column's values.
pub(crate) const OBSERVATIONS: &str = "observations";
pub(crate) const INTENT: &str = "intent";
pub(crate) const DELETE_MEMBER: &str = "delete_member";
pub(crate) const DELETE_SERVICE: &str = "delete_service";

pub(crate) fn append(
    conn: &mut Connection,
    path: &Path,
    buf: &mut Vec<u8>,
    entries: &[NewEntry],
) -> Result<Vec<u64>, StoreError> {
    if entries.is_empty() {
        return Ok(Vec::new());
    }
    let write_err = |e| db_error(path, e, Op::Write);
    // IMMEDIATE takes the write lock now, so a busy database fails here and
    // not halfway through.
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(write_err)?;
    let mut ids = Vec::with_capacity(entries.len());
    {
        let mut insert = tx
            .prepare_cached(
                "INSERT INTO entries (kind, at, service, member, count, payload)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )
            .map_err(write_err)?;
        for (index, entry) in entries.iter().enumerate() {
            let invalid = |reason: String| StoreError::InvalidEntry { index, reason };
            let at = entry.time().as_nanos();
            match entry {
                NewEntry::Observations { observations, .. } => {
                    buf.clear();
                    serde_json::to_writer(&mut *buf, observations)
                        .map_err(|e| invalid(format!("cannot encode the observations: {e}")))?;
                    let payload = compress(buf)
                        .map_err(|e| invalid(format!("cannot compress the observations: {e}")))?;
                    let count = observations.len() as i64;
                    insert.execute(params![
                        OBSERVATIONS,
                        at,
                        None::<&str>,
                        None::<&str>,
                        count,
                        payload
                    ])
                }
                NewEntry::Intent { source, .. } => insert.execute(params![
                    INTENT,
                    at,
                    None::<&str>,
                    None::<&str>,
                    0,
                    source.as_bytes()
                ]),
                NewEntry::DeleteService { service, .. } => {
                    if service.is_empty() {
                        return Err(invalid("a service deletion needs a service".into()));
                    }
                    insert.execute(params![
                        DELETE_SERVICE,
                        at,
                        service,
                        None::<&str>,
                        0,
                        None::<&[u8]>
                    ])
                }
                NewEntry::DeleteMember {
                    service, member, ..
                } => {
                    if service.is_empty() || member.is_empty() {
                        return Err(invalid(
                            "a member deletion needs both a service and a member id".into(),
                        ));
                    }
                    insert.execute(params![
                        DELETE_MEMBER,
                        at,
                        service,
                        member,
                        0,
                        None::<&[u8]>
                    ])
                }
            }
            .map_err(write_err)?;
            ids.push(tx.last_insert_rowid() as u64);
        }
    }
    // Dropping `tx` on any error above rolls the whole append back.
    tx.commit().map_err(write_err)?;
    Ok(ids)
}

pub(crate) fn latest_intent(
    conn: &Connection,
    path: &Path,
) -> Result<Option<(Time, String)>, StoreError> {
    let mut stmt = conn
        .prepare_cached(
            "SELECT id, at, payload FROM entries WHERE kind = ?1 ORDER BY id DESC LIMIT 1",
        )
        .map_err(|e| db_error(path, e, Op::Read))?;
    let mut rows = stmt
        .query([INTENT])
        .map_err(|e| db_error(path, e, Op::Read))?;
    let Some(row) = rows.next().map_err(|e| db_error(path, e, Op::Read))? else {
        return Ok(None);
    };
    let read = |e| db_error(path, e, Op::Read);
    let id: i64 = row.get(0).map_err(read)?;
    let at: i64 = row.get(1).map_err(read)?;
    let payload: Vec<u8> = row.get(2).map_err(read)?;
    let source = decode_intent(path, id as u64, payload)?;
    Ok(Some((Time::from_nanos(at), source)))
}

/// Replays the log after entry `after`, merged with the kept member states, in id order.
pub(crate) fn load(
    conn: &mut Connection,
    path: &Path,
    after: u64,
    visit: &mut dyn FnMut(Entry) -> Result<(), StoreError>,
) -> Result<(), StoreError> {
    let read = |e| db_error(path, e, Op::Read);
    // One read transaction: a consistent snapshot from start to end.
    let tx = conn.transaction().map_err(read)?;
    let mut states_stmt = tx
        .prepare(
            "SELECT entry_id, received_at, observation FROM member_states
             WHERE entry_id > ?1 ORDER BY entry_id, position",
        )
        .map_err(read)?;
    let mut entries_stmt = tx
        .prepare(
            "SELECT id, kind, at, service, member, payload FROM entries WHERE id > ?1 ORDER BY id",
        )
        .map_err(read)?;
    let mut states = KeptStates {
        rows: states_stmt.query([after as i64]).map_err(read)?,
        peeked: None,
        path,
    };
    let mut entries = entries_stmt.query([after as i64]).map_err(read)?;
    let mut next_entry = read_entry(path, &mut entries)?;
    let mut next_state = states.next_group()?;
    loop {
        let take_state = match (&next_entry, &next_state) {
            (None, None) => break,
            (Some(e), Some(s)) => s.id < e.id,
            (None, Some(_)) => true,
            (Some(_), None) => false,
        };
        if take_state {
            visit(next_state.take().expect("checked above"))?;
            next_state = states.next_group()?;
        } else {
            visit(next_entry.take().expect("checked above"))?;
            next_entry = read_entry(path, &mut entries)?;
        }
    }
    Ok(())
}

fn read_entry(path: &Path, rows: &mut Rows<'_>) -> Result<Option<Entry>, StoreError> {
    let read = |e| db_error(path, e, Op::Read);
    let Some(row) = rows.next().map_err(read)? else {
        return Ok(None);
    };
    let id = row.get::<_, i64>(0).map_err(read)? as u64;
    let kind: String = row.get(1).map_err(read)?;
    let at = Time::from_nanos(row.get(2).map_err(read)?);
    let body = match kind.as_str() {
        OBSERVATIONS => {
            let payload = row.get_ref(5).map_err(read)?.as_blob().map_err(|e| {
                corrupt(
                    path,
                    id,
                    format!("observations payload is not a blob ({e})"),
                )
            })?;
            NewEntry::Observations {
                received_at: at,
                observations: decode_observations(path, id, payload)?,
            }
        }
        INTENT => NewEntry::Intent {
            at,
            source: decode_intent(path, id, row.get(5).map_err(read)?)?,
        },
        DELETE_MEMBER => NewEntry::DeleteMember {
            at,
            service: row.get(3).map_err(read)?,
            member: row.get(4).map_err(read)?,
        },
        DELETE_SERVICE => NewEntry::DeleteService {
            at,
            service: row.get(3).map_err(read)?,
        },
        other => return Err(corrupt(path, id, format!("unknown kind {other:?}"))),
    };
    Ok(Some(Entry { id, body }))
}

/// The `member_states` rows, grouped by the entry they came from.
struct KeptStates<'a> {
    rows: Rows<'a>,
    peeked: Option<(u64, Time, Observation)>,
    path: &'a Path,
}

impl KeptStates<'_> {
    fn next_row(&mut self) -> Result<Option<(u64, Time, Observation)>, StoreError> {
        let read = |e| db_error(self.path, e, Op::Read);
        let Some(row) = self.rows.next().map_err(read)? else {
            return Ok(None);
        };
        let id = row.get::<_, i64>(0).map_err(read)? as u64;
        let at = Time::from_nanos(row.get(1).map_err(read)?);
        let bytes = row.get_ref(2).map_err(read)?.as_blob().map_err(|e| {
            corrupt(
                self.path,
                id,
                format!("kept member state is not a blob ({e})"),
            )
        })?;
        let obs = serde_json::from_slice(bytes)
            .map_err(|e| corrupt(self.path, id, format!("kept member state: {e}")))?;
        Ok(Some((id, at, obs)))
    }

    /// The kept states that came from one pruned entry, as one entry.
    fn next_group(&mut self) -> Result<Option<Entry>, StoreError> {
        let first = match self.peeked.take() {
            Some(row) => row,
            None => match self.next_row()? {
                Some(row) => row,
                None => return Ok(None),
            },
        };
        let (id, received_at, obs) = first;
        let mut observations = vec![obs];
        while let Some(row) = self.next_row()? {
            if row.0 != id {
                self.peeked = Some(row);
                break;
            }
            observations.push(row.2);
        }
        Ok(Some(Entry {
            id,
            body: NewEntry::Observations {
                received_at,
                observations,
            },
        }))
    }
}

/// zstd level 1: a batch of similar reports shrinks about 15 times, at a
/// cost the writer does not notice.
const LEVEL: i32 = 1;

/// The most a payload may grow to when decompressed (a damaged length field
/// must not exhaust memory).
const MAX_DECOMPRESSED: u64 = 1 << 30;

/// zstd frames start with these bytes; JSON never does.
const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];

pub(crate) fn compress(bytes: &[u8]) -> std::io::Result<Vec<u8>> {
    zstd::bulk::compress(bytes, LEVEL)
}

/// Decompresses one zstd frame, refusing more than `limit` bytes.
pub(crate) fn decompress(frame: &[u8], limit: u64) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let mut out = Vec::new();
    zstd::stream::read::Decoder::new(frame)?
        .take(limit + 1)
        .read_to_end(&mut out)?;
    if out.len() as u64 > limit {
        return Err(std::io::Error::other(format!(
            "it decompresses to more than {limit} bytes"
        )));
    }
    Ok(out)
}

/// A batch's observations: zstd-compressed JSON, or plain JSON as coherd
/// wrote it before schema version 3.
pub(crate) fn decode_observations(
    path: &Path,
    id: u64,
    payload: &[u8],
) -> Result<Vec<Observation>, StoreError> {
    let json = if payload.starts_with(&ZSTD_MAGIC) {
        std::borrow::Cow::Owned(
            decompress(payload, MAX_DECOMPRESSED)
                .map_err(|e| corrupt(path, id, format!("observations: {e}")))?,
        )
    } else {
        std::borrow::Cow::Borrowed(payload)
    };
    serde_json::from_slice(&json).map_err(|e| corrupt(path, id, format!("observations: {e}")))
}

fn decode_intent(path: &Path, id: u64, payload: Vec<u8>) -> Result<String, StoreError> {
    String::from_utf8(payload).map_err(|e| corrupt(path, id, format!("intent is not UTF-8 ({e})")))
}

fn corrupt(path: &Path, id: u64, reason: String) -> StoreError {
    StoreError::Corrupt {
        path: path.to_path_buf(),
        id,
        reason,
    }
}
