//! Controllers: fencing leases, each controller's state, and the audit log.

use std::path::Path;
use std::time::Duration;

use coherd_model::Time;
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

use super::error::{Op, db_error};
use crate::{AuditQuery, AuditRecord, Fence, LeaseInfo, NewAudit, StateItem, StoreError};

/// Audit rows deleted per transaction while pruning.
const DELETE_CHUNK: i64 = 10_000;

fn lease_row(conn: &Connection, name: &str) -> rusqlite::Result<Option<LeaseInfo>> {
    conn.prepare_cached("SELECT holder, epoch, expires_at FROM leases WHERE name = ?1")?
        .query_row([name], |r| {
            Ok(LeaseInfo {
                holder: r.get(0)?,
                epoch: r.get::<_, i64>(1)? as u64,
                expires_at: Time::from_nanos(r.get(2)?),
            })
        })
        .optional()
}

pub(crate) fn lease(
    conn: &Connection,
    path: &Path,
    name: &str,
) -> Result<Option<LeaseInfo>, StoreError> {
    lease_row(conn, name).map_err(|e| db_error(path, e, Op::Read))
}

pub(crate) fn acquire(
    conn: &mut Connection,
    path: &Path,
    name: &str,
    holder: &str,
    now: Time,
    ttl: Duration,
) -> Result<Option<u64>, StoreError> {
    let write_err = |e| db_error(path, e, Op::Write);
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(write_err)?;
    let current = lease_row(&tx, name).map_err(write_err)?;
    if let Some(l) = &current
        && l.holder != holder
        && l.expires_at > now
    {
        return Ok(None);
    }
    let epoch = current
        .map_or(0, |l| l.epoch)
        .checked_add(1)
        .ok_or_else(|| StoreError::InvalidEntry {
            index: 0,
            reason: format!("lease {name} ran out of epochs"),
        })?;
    tx.execute(
        "INSERT INTO leases (name, holder, epoch, expires_at) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, epoch = excluded.epoch,
             expires_at = excluded.expires_at",
        params![name, holder, epoch as i64, now.add(ttl).as_nanos()],
    )
    .map_err(write_err)?;
    tx.commit().map_err(write_err)?;
    Ok(Some(epoch))
}

/// Fails with [`StoreError::Fenced`] unless `fence` is the lease's current holder and epoch.
fn check(tx: &Connection, fence: &Fence) -> rusqlite::Result<Result<(), StoreError>> {
    let current = lease_row(tx, &fence.name)?;
    Ok(match current {
        Some(l) if l.holder == fence.holder && l.epoch == fence.epoch => Ok(()),
        other => Err(StoreError::Fenced {
            name: fence.name.clone(),
            epoch: fence.epoch,
            current: other.as_ref().map_or(0, |l| l.epoch),
            holder: other.map(|l| l.holder).unwrap_or_default(),
        }),
    })
}

pub(crate) fn renew(
    conn: &mut Connection,
    path: &Path,
    fence: &Fence,
    now: Time,
    ttl: Duration,
) -> Result<(), StoreError> {
    let write_err = |e| db_error(path, e, Op::Write);
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(write_err)?;
    check(&tx, fence).map_err(write_err)??;
    tx.execute(
        "UPDATE leases SET expires_at = ?2 WHERE name = ?1",
        params![fence.name, now.add(ttl).as_nanos()],
    )
    .map_err(write_err)?;
    tx.commit().map_err(write_err)
}

pub(crate) fn release(conn: &Connection, path: &Path, fence: &Fence) -> Result<(), StoreError> {
    conn.execute(
        "UPDATE leases SET expires_at = 0 WHERE name = ?1 AND holder = ?2 AND epoch = ?3",
        params![fence.name, fence.holder, fence.epoch as i64],
    )
    .map(|_| ())
    .map_err(|e| db_error(path, e, Op::Write))
}

fn insert_audit(tx: &Connection, audit: &[NewAudit]) -> rusqlite::Result<Vec<u64>> {
    let mut stmt = tx.prepare_cached(
        "INSERT INTO audit (at, epoch, action, service, member, decision, record)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?;
    audit
        .iter()
        .map(|a| {
            stmt.execute(params![
                a.at.as_nanos(),
                a.epoch as i64,
                a.action,
                a.service,
                a.member,
                a.decision,
                a.record
            ])?;
            Ok(tx.last_insert_rowid() as u64)
        })
        .collect()
}

pub(crate) fn record(
    conn: &mut Connection,
    path: &Path,
    fence: &Fence,
    audit: &[NewAudit],
    state: &[StateItem],
) -> Result<Vec<u64>, StoreError> {
    let write_err = |e| db_error(path, e, Op::Write);
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(write_err)?;
    check(&tx, fence).map_err(write_err)??;
    let ids = insert_audit(&tx, audit).map_err(write_err)?;
    {
        let mut put = tx
            .prepare_cached(
                "INSERT INTO controller_state (name, key, value) VALUES (?1, ?2, ?3)
                 ON CONFLICT (name, key) DO UPDATE SET value = excluded.value",
            )
            .map_err(write_err)?;
        let mut delete = tx
            .prepare_cached("DELETE FROM controller_state WHERE name = ?1 AND key = ?2")
            .map_err(write_err)?;
        for item in state {
            match &item.value {
                Some(v) => put.execute(params![fence.name, item.key, v]),
                None => delete.execute(params![fence.name, item.key]),
            }
            .map_err(write_err)?;
        }
    }
    tx.commit().map_err(write_err)?;
    Ok(ids)
}

pub(crate) fn append_audit(
    conn: &mut Connection,
    path: &Path,
    audit: &[NewAudit],
) -> Result<Vec<u64>, StoreError> {
    let write_err = |e| db_error(path, e, Op::Write);
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(write_err)?;
    let ids = insert_audit(&tx, audit).map_err(write_err)?;
    tx.commit().map_err(write_err)?;
    Ok(ids)
}

pub(crate) fn state(
    conn: &Connection,
    path: &Path,
    name: &str,
) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
    let read = |e| db_error(path, e, Op::Read);
    let mut stmt = conn
        .prepare_cached("SELECT key, value FROM controller_state WHERE name = ?1 ORDER BY key")
        .map_err(read)?;
    let rows = stmt
        .query_map([name], |r| Ok((r.get(0)?, r.get(1)?)))
        .map_err(read)?;
    rows.collect::<Result<_, _>>().map_err(read)
}

pub(crate) fn audit(
    conn: &Connection,
    path: &Path,
    q: &AuditQuery,
) -> Result<Vec<AuditRecord>, StoreError> {
    let read = |e| db_error(path, e, Op::Read);
    let mut stmt = conn
        .prepare_cached(
            "SELECT id, at, epoch, action, service, member, decision, record FROM audit
             WHERE id < ?1 AND (?2 IS NULL OR service = ?2) AND (?3 IS NULL OR member = ?3)
               AND (?4 IS NULL OR action = ?4)
             ORDER BY id DESC LIMIT ?5",
        )
        .map_err(read)?;
    let before = q.before.map_or(i64::MAX, |b| b.min(i64::MAX as u64) as i64);
    let rows = stmt
        .query_map(
            params![before, q.service, q.member, q.action, q.limit as i64],
            |r| {
                Ok(AuditRecord {
                    id: r.get::<_, i64>(0)? as u64,
                    entry: NewAudit {
                        at: Time::from_nanos(r.get(1)?),
                        epoch: r.get::<_, i64>(2)? as u64,
                        action: r.get(3)?,
                        service: r.get(4)?,
                        member: r.get(5)?,
                        decision: r.get(6)?,
                        record: r.get(7)?,
                    },
                })
            },
        )
        .map_err(read)?;
    rows.collect::<Result<_, _>>().map_err(read)
}

pub(crate) fn prune(conn: &mut Connection, path: &Path, before: Time) -> Result<u64, StoreError> {
    let write_err = |e| db_error(path, e, Op::Write);
    let mut total = 0;
    loop {
        let deleted = conn
            .execute(
                "DELETE FROM audit WHERE id IN (SELECT id FROM audit WHERE at < ?1 LIMIT ?2)",
                params![before.as_nanos(), DELETE_CHUNK],
            )
            .map_err(write_err)?;
        total += deleted as u64;
        if (deleted as i64) < DELETE_CHUNK {
            return Ok(total);
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::{AuditQuery, Fence, NewAudit, SqliteStore, StateItem, Store, StoreError, Time};

    fn item(key: &str, value: Option<&[u8]>) -> StateItem {
        StateItem {
            key: key.into(),
            value: value.map(<[u8]>::to_vec),
        }
    }
    use std::time::Duration;

    fn audit(decision: &str) -> NewAudit {
        NewAudit {
            at: Time::from_secs(10),
            epoch: 1,
            action: "fix".into(),
            service: "checkout".into(),
            member: Some("c-1".into()),
            decision: decision.into(),
            record: "{}".into(),
        }
    }

    #[test]
    fn a_write_under_an_old_epoch_is_refused_and_stores_nothing() {
        let mut store = SqliteStore::open_in_memory().unwrap();
        let ttl = Duration::from_secs(15);
        let t = Time::from_secs(100);
        let first = store.acquire_lease("reconciler", "a", t, ttl).unwrap();
        assert_eq!(first, Some(1));
        assert_eq!(
            store.acquire_lease("reconciler", "b", t, ttl).unwrap(),
            None,
            "held by a until it lapses"
        );
        let old = Fence {
            name: "reconciler".into(),
            holder: "a".into(),
            epoch: 1,
        };
        store
            .record_fenced(
                &old,
                &[audit("dispatched")],
                &[item("meta", Some(b"one")), item("task/a", Some(b"a"))],
            )
            .unwrap();
        // a lapses; b takes over with the next epoch.
        let later = t.add(Duration::from_secs(16));
        assert_eq!(
            store.acquire_lease("reconciler", "b", later, ttl).unwrap(),
            Some(2)
        );
        let refused =
            store.record_fenced(&old, &[audit("succeeded")], &[item("meta", Some(b"two"))]);
        assert!(
            matches!(
                refused,
                Err(StoreError::Fenced {
                    epoch: 1,
                    current: 2,
                    ..
                })
            ),
            "{refused:?}"
        );
        assert!(store.renew_lease(&old, later, ttl).is_err());
        store.release_lease(&old).unwrap();
        assert_eq!(
            store.lease("reconciler").unwrap().unwrap().holder,
            "b",
            "a stale release changes nothing"
        );
        let state = store.controller_state("reconciler").unwrap();
        assert_eq!(
            state,
            [
                ("meta".to_string(), b"one".to_vec()),
                ("task/a".to_string(), b"a".to_vec())
            ]
        );
        // Under the new fence, items are replaced and deleted one by one.
        let new = Fence {
            holder: "b".into(),
            epoch: 2,
            ..old.clone()
        };
        store
            .record_fenced(
                &new,
                &[],
                &[item("task/a", None), item("meta", Some(b"three"))],
            )
            .unwrap();
        assert_eq!(
            store.controller_state("reconciler").unwrap(),
            [("meta".to_string(), b"three".to_vec())]
        );
        let all = store
            .audit(&AuditQuery {
                limit: 10,
                ..AuditQuery::default()
            })
            .unwrap();
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].entry.decision, "dispatched");
    }

    #[test]
    fn audit_reads_newest_first_by_filter_and_prunes_by_age() {
        let mut store = SqliteStore::open_in_memory().unwrap();
        let mut other = audit("verified");
        other.service = "cart".into();
        other.at = Time::from_secs(50);
        store
            .append_audit(&[audit("planned"), audit("dispatched"), other])
            .unwrap();
        let q = |service: Option<&str>, before: Option<u64>| AuditQuery {
            service: service.map(str::to_string),
            before,
            limit: 1,
            ..AuditQuery::default()
        };
        let page = store.audit(&q(Some("checkout"), None)).unwrap();
        assert_eq!(page[0].entry.decision, "dispatched");
        let next = store.audit(&q(Some("checkout"), Some(page[0].id))).unwrap();
        assert_eq!(next[0].entry.decision, "planned");
        assert_eq!(store.prune_audit(Time::from_secs(20)).unwrap(), 2);
        let left = store.audit(&q(None, None)).unwrap();
        assert_eq!(left[0].entry.service, "cart");
    }
}
