//! The store's contract, through the public API on a real file.

#![allow(unused_crate_dependencies)] // a test target sees every dev-dependency of its package

mod common;

use coherd_store::{CheckpointInfo, Entry, NewEntry, SqliteStore, Store, StoreError};
use common::{TempDir, load_all, obs, observations, t};

fn intent(at: i64, source: &str) -> NewEntry {
    NewEntry::Intent {
        at: t(at),
        source: source.into(),
    }
}

#[test]
fn append_then_load_round_trips_in_id_order() {
    let mut store = SqliteStore::open_in_memory().unwrap();
    let first = vec![
        intent(0, "services:\n  checkout: {}\n"),
        observations(
            t(1),
            vec![
                obs("checkout", "c-1", 1, "1.4.2"),
                obs("checkout", "c-2", 1, "1.4.1"),
            ],
        ),
    ];
    let second = vec![
        NewEntry::DeleteMember {
            at: t(2),
            service: "checkout".into(),
            member: "c-2".into(),
        },
        observations(t(3), vec![obs("checkout", "c-1", 2, "1.4.2")]),
    ];
    let ids1 = store.append(&first).unwrap();
    let ids2 = store.append(&second).unwrap();
    assert_eq!(store.append(&[]).unwrap(), Vec::<u64>::new());

    let ids: Vec<u64> = ids1.iter().chain(&ids2).copied().collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
    let expected: Vec<Entry> = ids
        .iter()
        .zip(first.into_iter().chain(second))
        .map(|(&id, body)| Entry { id, body })
        .collect();
    assert_eq!(load_all(&mut store), expected);
}

#[test]
fn a_reopened_file_holds_everything_and_ids_keep_increasing() {
    let dir = TempDir::new("reopen");
    let batch = observations(t(1), vec![obs("checkout", "c-1", 1, "1.4.2")]);
    let ids = {
        let mut store = SqliteStore::open(&dir.db()).unwrap();
        store.append(&[intent(0, "a"), batch.clone()]).unwrap()
    };
    let mut store = SqliteStore::open(&dir.db()).unwrap();
    let loaded = load_all(&mut store);
    assert_eq!(loaded.iter().map(|e| e.id).collect::<Vec<_>>(), ids);
    assert_eq!(loaded[1].body, batch);
    assert_eq!(
        store.latest_intent().unwrap(),
        Some((t(0), "a".to_string()))
    );
    let later = store.append(&[intent(5, "b")]).unwrap();
    assert!(later[0] > ids[1]);
}

#[test]
fn a_failing_entry_leaves_nothing_of_its_append() {
    let mut store = SqliteStore::open_in_memory().unwrap();
    let kept = store.append(&[intent(0, "kept")]).unwrap();
    let err = store
        .append(&[
            observations(t(1), vec![obs("checkout", "c-1", 1, "1.4.2")]),
            intent(2, "lost"),
            NewEntry::DeleteMember {
                at: t(3),
                service: "checkout".into(),
                member: String::new(),
            },
        ])
        .unwrap_err();
    assert!(
        matches!(err, StoreError::InvalidEntry { index: 2, .. }),
        "{err}"
    );
    assert!(
        err.to_string()
            .contains("nothing of this append was stored"),
        "{err}"
    );
    let loaded = load_all(&mut store);
    assert_eq!(loaded.iter().map(|e| e.id).collect::<Vec<_>>(), kept);
    assert_eq!(store.latest_intent().unwrap().unwrap().1, "kept");
    // The store is still usable, and ids still increase.
    let next = store.append(&[intent(4, "next")]).unwrap();
    assert!(next[0] > kept[0]);
}

#[test]
fn latest_intent_is_the_last_appended() {
    let mut store = SqliteStore::open_in_memory().unwrap();
    assert_eq!(store.latest_intent().unwrap(), None);
    store.append(&[intent(0, "one"), intent(1, "two")]).unwrap();
    store
        .append(&[observations(t(2), vec![obs("a", "m", 1, "1")])])
        .unwrap();
    assert_eq!(
        store.latest_intent().unwrap(),
        Some((t(1), "two".to_string()))
    );
}

#[test]
fn a_newer_schema_is_refused() {
    let dir = TempDir::new("newer");
    drop(SqliteStore::open(&dir.db()).unwrap());
    let conn = rusqlite::Connection::open(dir.db()).unwrap();
    conn.pragma_update(None, "user_version", 99).unwrap();
    drop(conn);
    let err = SqliteStore::open(&dir.db()).unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::SchemaTooNew {
                found: 99,
                supported: 5,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("schema version 99"), "{err}");
}

#[test]
fn another_database_is_refused() {
    let dir = TempDir::new("foreign");
    let conn = rusqlite::Connection::open(dir.db()).unwrap();
    conn.execute_batch("CREATE TABLE users (name TEXT)")
        .unwrap();
    drop(conn);
    let err = SqliteStore::open(&dir.db()).unwrap_err();
    assert!(matches!(err, StoreError::NotCoherd { .. }), "{err}");
    assert!(err.to_string().contains("\"users\""), "{err}");

    let text = dir.path().join("notes.txt");
    std::fs::write(&text, "x".repeat(4096)).unwrap();
    let err = SqliteStore::open(&text).unwrap_err();
    assert!(err.to_string().contains("not an SQLite database"), "{err}");
}

#[test]
fn an_unopenable_path_names_the_path() {
    let dir = TempDir::new("missing");
    let path = dir.path().join("no/such/dir/coherd.db");
    let err = SqliteStore::open(&path).unwrap_err();
    assert!(matches!(err, StoreError::Open { .. }), "{err}");
    assert!(err.to_string().contains("no/such/dir/coherd.db"), "{err}");
    assert!(
        err.to_string().contains("check the path and permissions"),
        "{err}"
    );
}

#[test]
fn a_visit_error_stops_load() {
    let mut store = SqliteStore::open_in_memory().unwrap();
    let ids = store.append(&[intent(0, "a"), intent(1, "b")]).unwrap();
    let mut seen = 0;
    let err = store
        .load(0, &mut |e| {
            seen += 1;
            Err(StoreError::replay(e.id, "engine refused it"))
        })
        .unwrap_err();
    assert_eq!(seen, 1);
    assert!(
        matches!(err, StoreError::Replay { id, .. } if id == ids[0]),
        "{err}"
    );
}

/// Entries after `after`, as a restart from a checkpoint reads them.
fn load_after(store: &mut dyn Store, after: u64) -> Vec<u64> {
    let mut ids = Vec::new();
    store
        .load(after, &mut |e| {
            ids.push(e.id);
            Ok(())
        })
        .unwrap();
    ids
}

#[test]
fn a_checkpoint_reads_back_and_a_restart_replays_only_what_it_does_not_cover() {
    let dir = TempDir::new("checkpoint");
    let mut store = SqliteStore::open(&dir.db()).unwrap();
    let ids = store
        .append(&[
            intent(0, "a"),
            observations(t(1), vec![obs("a", "a-1", 1, "1")]),
            observations(t(2), vec![obs("a", "a-1", 2, "1")]),
        ])
        .unwrap();
    // More than one piece, and bytes that do not compress well.
    let bytes: Vec<u8> = (0..3_000_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let id = store.save_checkpoint(ids[1], t(1), &bytes).unwrap();
    drop(store);

    let mut store = SqliteStore::open(&dir.db()).unwrap();
    assert_eq!(
        store.checkpoints().unwrap(),
        vec![CheckpointInfo {
            id,
            covers: ids[1],
            at: t(1),
            bytes: bytes.len() as u64
        }]
    );
    assert!(
        store.read_checkpoint(id).unwrap() == bytes,
        "the bytes read back differ"
    );
    assert_eq!(load_after(&mut store, ids[1]), vec![ids[2]]);
    assert_eq!(load_after(&mut store, 0), ids);
}

#[test]
fn truncation_keeps_intents_raw_capture_and_everything_the_kept_checkpoint_does_not_cover() {
    let mut store = SqliteStore::open_in_memory().unwrap();
    let ids = store
        .append(&[
            intent(0, "first"),
            observations(t(1), vec![obs("a", "a-1", 1, "1")]),
            NewEntry::DeleteMember {
                at: t(2),
                service: "a".into(),
                member: "a-2".into(),
            },
            observations(t(3), vec![obs("a", "a-1", 2, "1")]),
            observations(t(4), vec![obs("a", "a-1", 3, "1")]),
        ])
        .unwrap();
    let older = store.save_checkpoint(ids[1], t(1), b"one").unwrap();
    let kept = store.save_checkpoint(ids[3], t(3), b"two").unwrap();
    let newest = store.save_checkpoint(ids[4], t(4), b"three").unwrap();

    // Raw capture keeps the batch received at t=3.
    let stats = store.truncate(kept, Some(t(3))).unwrap();
    assert_eq!(stats.entries_deleted, 2, "{stats:?}");
    assert_eq!(stats.checkpoints_deleted, 1, "{stats:?}");
    assert_eq!(load_after(&mut store, 0), vec![ids[0], ids[3], ids[4]]);
    let listed: Vec<u64> = store.checkpoints().unwrap().iter().map(|c| c.id).collect();
    assert_eq!(listed, vec![newest, kept]);
    assert!(store.read_checkpoint(older).is_err());

    // Without raw capture the batch goes too; the intent never does.
    store.truncate(kept, None).unwrap();
    assert_eq!(load_after(&mut store, 0), vec![ids[0], ids[4]]);
    assert_eq!(store.latest_intent().unwrap().unwrap().1, "first");

    // Ids are never reused, even when the newest entries were truncated.
    store.truncate(newest, None).unwrap();
    let next = store.append(&[intent(9, "next")]).unwrap();
    assert!(next[0] > ids[4]);
}

#[test]
fn a_damaged_or_unfinished_checkpoint_is_never_used() {
    let dir = TempDir::new("damaged");
    let mut store = SqliteStore::open(&dir.db()).unwrap();
    let good = store.save_checkpoint(0, t(1), &[7u8; 10_000]).unwrap();
    let damaged = store.save_checkpoint(0, t(2), &[8u8; 10_000]).unwrap();
    drop(store);
    {
        let conn = rusqlite::Connection::open(dir.db()).unwrap();
        // Flip the stored checksum of one; leave another half-written.
        conn.execute(
            "UPDATE checkpoints SET crc = crc + 1 WHERE id = ?1",
            [damaged as i64],
        )
        .unwrap();
        conn.execute(
            "INSERT INTO checkpoints (covers, at, bytes, crc, complete) VALUES (0, 3, 10, 0, 0)",
            [],
        )
        .unwrap();
    }
    let mut store = SqliteStore::open(&dir.db()).unwrap();
    let listed: Vec<u64> = store.checkpoints().unwrap().iter().map(|c| c.id).collect();
    assert_eq!(
        listed,
        vec![damaged, good],
        "the unfinished one is not listed"
    );
    let err = store.read_checkpoint(damaged).unwrap_err();
    assert!(matches!(err, StoreError::CorruptCheckpoint { .. }), "{err}");
    assert!(err.to_string().contains("checksum"), "{err}");
    assert_eq!(store.read_checkpoint(good).unwrap(), vec![7u8; 10_000]);
    let stats = store.truncate(good, None).unwrap();
    assert_eq!(
        stats.checkpoints_deleted, 1,
        "the unfinished one goes: {stats:?}"
    );
}

#[test]
fn observation_batches_are_stored_compressed() {
    let dir = TempDir::new("compressed");
    let mut store = SqliteStore::open(&dir.db()).unwrap();
    let batch: Vec<_> = (0..1000)
        .map(|i| obs("web", &format!("web-{i:05}"), 7, "1.4.2"))
        .collect();
    let json = serde_json::to_vec(&batch).unwrap();
    store.append(&[observations(t(1), batch)]).unwrap();
    drop(store);
    let conn = rusqlite::Connection::open(dir.db()).unwrap();
    let stored: i64 = conn
        .query_row("SELECT length(payload) FROM entries", [], |r| r.get(0))
        .unwrap();
    assert!(
        (stored as usize) * 5 < json.len(),
        "{stored} bytes stored for {} bytes of JSON",
        json.len()
    );
}

fn episode(id: &str, service: &str, opened: i64, resolved: Option<i64>) -> coherd_store::Episode {
    coherd_store::Episode {
        id: id.into(),
        service: service.into(),
        kind: "drift".into(),
        opened_at: t(opened),
        resolved_at: resolved.map(t),
        record: format!(r#"{{"id":"{id}","resolved":{}}}"#, resolved.is_some()),
    }
}

fn window(since: i64, until: i64) -> coherd_store::EpisodeQuery {
    coherd_store::EpisodeQuery {
        since: t(since),
        until: t(until),
        service: None,
        kind: None,
        open: None,
        after: None,
        limit: 100,
    }
}

fn ids(episodes: Vec<coherd_store::Episode>) -> Vec<(String, i64)> {
    episodes
        .into_iter()
        .map(|e| {
            (
                e.id,
                (e.opened_at.as_nanos() - t(0).as_nanos()) / 1_000_000_000,
            )
        })
        .collect()
}

#[test]
fn episodes_are_read_by_the_window_they_were_open_in_and_a_newer_state_replaces_the_older() {
    let mut store = SqliteStore::open_in_memory().unwrap();
    store
        .record_episodes(&[
            episode("a", "web", 10, Some(20)),
            episode("b", "web", 15, None),
            episode("c", "db", 30, Some(40)),
            // The same id again later: another episode.
            episode("a", "web", 50, None),
        ])
        .unwrap();
    // Resolving b replaces its open state; recording it twice changes nothing.
    store
        .record_episodes(&[episode("b", "web", 15, Some(35))])
        .unwrap();
    store
        .record_episodes(&[episode("b", "web", 15, Some(35))])
        .unwrap();

    let s = |v: &[(&str, i64)]| {
        v.iter()
            .map(|(i, t)| (i.to_string(), *t))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        ids(store.episodes(&window(0, 100)).unwrap()),
        s(&[("a", 10), ("b", 15), ("c", 30), ("a", 50)])
    );
    // Open at some point in [21, 30): b only (a ended at 20, c opened at 30).
    assert_eq!(
        ids(store.episodes(&window(21, 30)).unwrap()),
        s(&[("b", 15)])
    );
    // The open one is open until now.
    assert_eq!(
        ids(store.episodes(&window(1000, 2000)).unwrap()),
        s(&[("a", 50)])
    );
    let resolved = coherd_store::EpisodeQuery {
        open: Some(false),
        ..window(0, 100)
    };
    assert_eq!(
        ids(store.episodes(&resolved).unwrap()),
        s(&[("a", 10), ("b", 15), ("c", 30)])
    );
    let db = coherd_store::EpisodeQuery {
        service: Some("db".into()),
        ..window(0, 100)
    };
    assert_eq!(ids(store.episodes(&db).unwrap()), s(&[("c", 30)]));
    let b = store.episodes(&window(15, 16)).unwrap().remove(1);
    assert_eq!(b.resolved_at, Some(t(35)));
    assert!(b.record.contains(r#""resolved":true"#), "{}", b.record);

    // Pages continue after the last (opened_at, id).
    let page = coherd_store::EpisodeQuery {
        limit: 2,
        ..window(0, 100)
    };
    let first = store.episodes(&page).unwrap();
    let last = first.last().unwrap();
    let next = coherd_store::EpisodeQuery {
        after: Some((last.opened_at, last.id.clone())),
        ..page
    };
    assert_eq!(
        ids(store.episodes(&next).unwrap()),
        s(&[("c", 30), ("a", 50)])
    );

    // Retention: what ended before 36 goes; open episodes stay.
    assert_eq!(store.prune_history(t(36)).unwrap(), 2);
    assert_eq!(
        ids(store.episodes(&window(0, 100)).unwrap()),
        s(&[("c", 30), ("a", 50)])
    );
}

fn member_event(member: &str, at: i64, what: &str) -> coherd_store::MemberEvent {
    coherd_store::MemberEvent {
        service: "web".into(),
        member: member.into(),
        at: t(at),
        what: what.into(),
        record: format!(r#"{{"event":"{what}"}}"#),
    }
}

#[test]
fn a_members_timeline_is_read_by_window_in_time_order_and_recording_twice_changes_nothing() {
    let mut store = SqliteStore::open_in_memory().unwrap();
    let events = [
        member_event("w-1", 0, "joined"),
        member_event("w-1", 20, "changed:version"),
        member_event("w-1", 20, "changed:phase"),
        member_event("w-2", 25, "joined"),
        member_event("w-1", 50, "silent"),
    ];
    store.record_member_events(&events).unwrap();
    store.record_member_events(&events[1..2]).unwrap();
    let query = |since: i64, until: i64, after: Option<(i64, &str)>, limit: usize| {
        coherd_store::TimelineQuery {
            service: "web".into(),
            member: "w-1".into(),
            since: t(since),
            until: t(until),
            after: after.map(|(at, what)| (t(at), what.to_string())),
            limit,
        }
    };
    let whats =
        |v: Vec<coherd_store::MemberEvent>| v.into_iter().map(|e| e.what).collect::<Vec<_>>();
    assert_eq!(
        whats(store.member_events(&query(0, 100, None, 10)).unwrap()),
        ["joined", "changed:phase", "changed:version", "silent"]
    );
    assert_eq!(
        whats(store.member_events(&query(20, 50, None, 10)).unwrap()),
        ["changed:phase", "changed:version"]
    );
    assert_eq!(
        whats(
            store
                .member_events(&query(0, 100, Some((20, "changed:phase")), 1))
                .unwrap()
        ),
        ["changed:version"]
    );
    assert_eq!(store.prune_history(t(21)).unwrap(), 3);
    assert_eq!(
        whats(store.member_events(&query(0, 100, None, 10)).unwrap()),
        ["silent"]
    );
}

#[test]
fn sli_minutes_are_read_by_window_and_a_minute_recorded_again_is_replaced() {
    let mut store = SqliteStore::open_in_memory().unwrap();
    let minute = |service: &str, m: i64, v: &str| coherd_store::SliMinute {
        service: service.into(),
        minute: t(m * 60),
        record: v.into(),
    };
    store
        .record_sli(&[
            minute("web", 0, "a"),
            minute("web", 1, "b"),
            minute("db", 1, "x"),
            minute("web", 2, "c"),
        ])
        .unwrap();
    store.record_sli(&[minute("web", 1, "b2")]).unwrap();
    let records = |store: &mut SqliteStore, since: i64, until: i64, limit: usize| {
        store
            .sli_minutes("web", t(since * 60), t(until * 60), limit)
            .unwrap()
            .into_iter()
            .map(|m| m.record)
            .collect::<Vec<_>>()
    };
    assert_eq!(records(&mut store, 0, 3, 10), ["a", "b2", "c"]);
    assert_eq!(records(&mut store, 1, 2, 10), ["b2"]);
    assert_eq!(records(&mut store, 0, 3, 2), ["a", "b2"]);
    assert_eq!(store.prune_history(t(120)).unwrap(), 3);
    assert_eq!(records(&mut store, 0, 3, 10), ["c"]);
}

#[test]
fn intent_revisions_are_listed_by_window_and_only_replaced_ones_a_checkpoint_covers_are_pruned() {
    let mut store = SqliteStore::open_in_memory().unwrap();
    let ids = store
        .append(&[
            intent(10, "one"),
            intent(20, "two"),
            intent(30, "three"),
            intent(40, "four"),
        ])
        .unwrap();
    let list = |store: &mut SqliteStore, since: i64, after: u64| {
        store
            .intents(t(since), t(1000), after, 10)
            .unwrap()
            .into_iter()
            .map(|r| (r.source, r.newer))
            .collect::<Vec<_>>()
    };
    let s = |v: &[(&str, u64)]| {
        v.iter()
            .map(|(a, n)| (a.to_string(), *n))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        list(&mut store, 0, 0),
        s(&[("one", 3), ("two", 2), ("three", 1), ("four", 0)])
    );
    assert_eq!(
        list(&mut store, 20, 0),
        s(&[("two", 2), ("three", 1), ("four", 0)])
    );
    assert_eq!(list(&mut store, 0, ids[2]), s(&[("four", 0)]));

    // Without a checkpoint every intent is still needed to rebuild.
    assert_eq!(store.prune_history(t(1000)).unwrap(), 0);
    // A checkpoint that covers the first two lets them go.
    store.save_checkpoint(ids[1], t(20), b"state").unwrap();
    assert_eq!(store.prune_history(t(1000)).unwrap(), 2);
    assert_eq!(list(&mut store, 0, 0), s(&[("three", 1), ("four", 0)]));
    // The one in force stays, however old.
    store.save_checkpoint(ids[3], t(40), b"state").unwrap();
    store.truncate(2, None).unwrap();
    store.prune_history(t(1000)).unwrap();
    assert_eq!(list(&mut store, 0, 0), s(&[("four", 0)]));
}
