//! History: divergence episodes, recorded as they change and read by
//! window, and member events, read as a member's timeline.

use std::path::Path;

use coherd_model::Time;
use rusqlite::{Connection, TransactionBehavior, params};

use super::error::{Op, db_error};
use super::log::INTENT;
use crate::{
    Episode, EpisodeQuery, IntentRevision, MemberEvent, SliMinute, StoreError, TimelineQuery,
};

/// Rows deleted per transaction while pruning.
const DELETE_CHUNK: i64 = 10_000;

/// Runs `sql` once per item, in one transaction.
fn write_each<T>(
    conn: &mut Connection,
    path: &Path,
    sql: &str,
    items: &[T],
    run: impl Fn(&mut rusqlite::CachedStatement<'_>, &T) -> rusqlite::Result<usize>,
) -> Result<(), StoreError> {
    if items.is_empty() {
        return Ok(());
    }
    let write_err = |e| db_error(path, e, Op::Write);
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(write_err)?;
    {
        let mut stmt = tx.prepare_cached(sql).map_err(write_err)?;
        for item in items {
            run(&mut stmt, item).map_err(write_err)?;
        }
    }
    tx.commit().map_err(write_err)
}

pub(crate) fn record(
    conn: &mut Connection,
    path: &Path,
    episodes: &[Episode],
) -> Result<(), StoreError> {
    let upsert = "INSERT INTO episodes (id, opened_at, service, kind, resolved_at, ends_at, record)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
         ON CONFLICT (id, opened_at) DO UPDATE SET
             resolved_at = excluded.resolved_at,
             ends_at = excluded.ends_at,
             record = excluded.record";
    write_each(conn, path, upsert, episodes, |stmt, e| {
        let resolved = e.resolved_at.map(Time::as_nanos);
        stmt.execute(params![
            e.id,
            e.opened_at.as_nanos(),
            e.service,
            e.kind,
            resolved,
            resolved.unwrap_or(i64::MAX),
            e.record
        ])
    })
}

pub(crate) fn query(
    conn: &Connection,
    path: &Path,
    q: &EpisodeQuery,
) -> Result<Vec<Episode>, StoreError> {
    let read = |e| db_error(path, e, Op::Read);
    let (after_at, after_id) = q
        .after
        .as_ref()
        .map_or((i64::MIN, ""), |(at, id)| (at.as_nanos(), id.as_str()));
    let mut stmt = conn
        .prepare_cached(
            "SELECT id, service, kind, opened_at, resolved_at, record FROM episodes
             WHERE opened_at < ?2 AND ends_at >= ?1
               AND (?3 IS NULL OR service = ?3)
               AND (?4 IS NULL OR kind = ?4)
               AND (?5 IS NULL OR (resolved_at IS NULL) = ?5)
               AND (opened_at, id) > (?6, ?7)
             ORDER BY opened_at, id
             LIMIT ?8",
        )
        .map_err(read)?;
    let rows = stmt
        .query_map(
            params![
                q.since.as_nanos(),
                q.until.as_nanos(),
                q.service,
                q.kind,
                q.open,
                after_at,
                after_id,
                q.limit as i64
            ],
            |r| {
                Ok(Episode {
                    id: r.get(0)?,
                    service: r.get(1)?,
                    kind: r.get(2)?,
                    opened_at: Time::from_nanos(r.get(3)?),
                    resolved_at: r.get::<_, Option<i64>>(4)?.map(Time::from_nanos),
                    record: r.get(5)?,
                })
            },
        )
        .map_err(read)?;
    rows.collect::<Result<_, _>>().map_err(read)
}

pub(crate) fn record_members(
    conn: &mut Connection,
    path: &Path,
    events: &[MemberEvent],
) -> Result<(), StoreError> {
    let insert = "INSERT OR IGNORE INTO member_events (service, member, at, what, record)
         VALUES (?1, ?2, ?3, ?4, ?5)";
    write_each(conn, path, insert, events, |stmt, e| {
        stmt.execute(params![
            e.service,
            e.member,
            e.at.as_nanos(),
            e.what,
            e.record
        ])
    })
}

pub(crate) fn record_sli(
    conn: &mut Connection,
    path: &Path,
    minutes: &[SliMinute],
) -> Result<(), StoreError> {
    let upsert = "INSERT INTO sli_minutes (service, minute, record) VALUES (?1, ?2, ?3)
         ON CONFLICT (service, minute) DO UPDATE SET record = excluded.record";
    write_each(conn, path, upsert, minutes, |stmt, m| {
        stmt.execute(params![m.service, m.minute.as_nanos(), m.record])
    })
}

pub(crate) fn sli_minutes(
    conn: &Connection,
    path: &Path,
    service: &str,
    since: Time,
    until: Time,
    limit: usize,
) -> Result<Vec<SliMinute>, StoreError> {
    let read = |e| db_error(path, e, Op::Read);
    let mut stmt = conn
        .prepare_cached(
            "SELECT minute, record FROM sli_minutes
             WHERE service = ?1 AND minute >= ?2 AND minute < ?3
             ORDER BY minute LIMIT ?4",
        )
        .map_err(read)?;
    let rows = stmt
        .query_map(
            params![service, since.as_nanos(), until.as_nanos(), limit as i64],
            |r| {
                Ok(SliMinute {
                    service: service.to_string(),
                    minute: Time::from_nanos(r.get(0)?),
                    record: r.get(1)?,
                })
            },
        )
        .map_err(read)?;
    rows.collect::<Result<_, _>>().map_err(read)
}

pub(crate) fn intents(
    conn: &Connection,
    path: &Path,
    since: Time,
    until: Time,
    after: u64,
    limit: usize,
) -> Result<Vec<IntentRevision>, StoreError> {
    let read = |e| db_error(path, e, Op::Read);
    let mut stmt = conn
        .prepare_cached(
            "SELECT id, at, payload,
                    (SELECT count(*) FROM entries n WHERE n.kind = ?1 AND n.id > e.id)
             FROM entries e
             WHERE kind = ?1 AND at >= ?2 AND at < ?3 AND id > ?4
             ORDER BY id LIMIT ?5",
        )
        .map_err(read)?;
    let rows = stmt
        .query_map(
            params![
                INTENT,
                since.as_nanos(),
                until.as_nanos(),
                after as i64,
                limit as i64
            ],
            |r| {
                let payload: Vec<u8> = r.get(2)?;
                Ok(IntentRevision {
                    id: r.get::<_, i64>(0)? as u64,
                    at: Time::from_nanos(r.get(1)?),
                    source: String::from_utf8_lossy(&payload).into_owned(),
                    newer: r.get::<_, i64>(3)? as u64,
                })
            },
        )
        .map_err(read)?;
    rows.collect::<Result<_, _>>().map_err(read)
}

pub(crate) fn timeline(
    conn: &Connection,
    path: &Path,
    q: &TimelineQuery,
) -> Result<Vec<MemberEvent>, StoreError> {
    let read = |e| db_error(path, e, Op::Read);
    let (after_at, after_what) = q
        .after
        .as_ref()
        .map_or((i64::MIN, ""), |(at, what)| (at.as_nanos(), what.as_str()));
    let mut stmt = conn
        .prepare_cached(
            "SELECT at, what, record FROM member_events
             WHERE service = ?1 AND member = ?2 AND at >= ?3 AND at < ?4
               AND (at, what) > (?5, ?6)
             ORDER BY at, what
             LIMIT ?7",
        )
        .map_err(read)?;
    let rows = stmt
        .query_map(
            params![
                q.service,
                q.member,
                q.since.as_nanos(),
                q.until.as_nanos(),
                after_at,
                after_what,
                q.limit as i64
            ],
            |r| {
                Ok(MemberEvent {
                    service: q.service.clone(),
                    member: q.member.clone(),
                    at: Time::from_nanos(r.get(0)?),
                    what: r.get(1)?,
                    record: r.get(2)?,
                })
            },
        )
        .map_err(read)?;
    rows.collect::<Result<_, _>>().map_err(read)
}

pub(crate) fn prune(conn: &mut Connection, path: &Path, before: Time) -> Result<u64, StoreError> {
    let write_err = |e| db_error(path, e, Op::Write);
    let mut total = 0;
    for delete in [
        "DELETE FROM episodes WHERE (id, opened_at) IN (
             SELECT id, opened_at FROM episodes WHERE ends_at < ?1 LIMIT ?2)",
        "DELETE FROM member_events WHERE (service, member, at, what) IN (
             SELECT service, member, at, what FROM member_events WHERE at < ?1 LIMIT ?2)",
        "DELETE FROM sli_minutes WHERE (service, minute) IN (
             SELECT service, minute FROM sli_minutes WHERE minute < ?1 LIMIT ?2)",
        // Intents replaced before `before`: not the one in force, and none a
        // restart from the oldest kept checkpoint would replay.
        "DELETE FROM entries WHERE id IN (
             SELECT id FROM entries
             WHERE kind = 'intent' AND at < ?1
               AND id < (SELECT max(id) FROM entries WHERE kind = 'intent')
               AND id <= (SELECT coalesce(min(covers), 0) FROM checkpoints WHERE complete = 1)
             LIMIT ?2)",
    ] {
        loop {
            let deleted = conn
                .execute(delete, params![before.as_nanos(), DELETE_CHUNK])
                .map_err(write_err)?;
            total += deleted as u64;
            if (deleted as i64) < DELETE_CHUNK {
                break;
            }
        }
    }
    Ok(total)
}
