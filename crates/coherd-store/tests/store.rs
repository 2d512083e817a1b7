//! The store's contract, through the public API on a real file.

#![allow(unused_crate_dependencies)] // a test target sees every dev-dependency of its package

mod common;

use coherd_store::{Entry, NewEntry, SqliteStore, Store, StoreError};
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
fn prune_keeps_each_members_latest_state_and_the_latest_intent() {
    let dir = TempDir::new("prune");
    let mut store = SqliteStore::open(&dir.db()).unwrap();
    let intent_ids = store
        .append(&[intent(0, "old"), intent(1, "current")])
        .unwrap();
    // a-1 goes quiet after t=3; a-2 keeps reporting; a-3 is deleted.
    let old = store
        .append(&[
            observations(
                t(2),
                vec![
                    obs("a", "a-1", 1, "1"),
                    obs("a", "a-2", 1, "1"),
                    obs("a", "a-3", 1, "1"),
                ],
            ),
            observations(t(3), vec![obs("a", "a-1", 2, "2"), obs("a", "a-2", 2, "2")]),
            observations(t(4), vec![obs("a", "a-1", 1, "stale retry")]),
            NewEntry::DeleteMember {
                at: t(5),
                service: "a".into(),
                member: "a-3".into(),
            },
        ])
        .unwrap();
    let recent = store
        .append(&[observations(t(20), vec![obs("a", "a-2", 3, "3")])])
        .unwrap();

    let stats = store.prune(t(10)).unwrap();
    assert_eq!(stats.batches_deleted, 3);
    assert_eq!(stats.observations_deleted, 6);
    assert_eq!(stats.deletions_folded, 1);
    assert_eq!(stats.intents_deleted, 1);
    assert_eq!(stats.member_states_kept, 2);

    // Reopen: what load yields comes from the file.
    drop(store);
    let mut store = SqliteStore::open(&dir.db()).unwrap();
    let loaded = load_all(&mut store);
    let expected = vec![
        Entry {
            id: intent_ids[1],
            body: intent(1, "current"),
        },
        // Both states came from the batch at t=3 (the retry at t=4 was a duplicate).
        Entry {
            id: old[1],
            body: observations(t(3), vec![obs("a", "a-1", 2, "2"), obs("a", "a-2", 2, "2")]),
        },
        Entry {
            id: recent[0],
            body: observations(t(20), vec![obs("a", "a-2", 3, "3")]),
        },
    ];
    assert_eq!(loaded, expected);
    assert_eq!(store.latest_intent().unwrap().unwrap().1, "current");

    // Pruning again folds into the kept states: a-1 stays, a-2 moves on.
    let stats = store.prune(t(30)).unwrap();
    assert_eq!((stats.batches_deleted, stats.member_states_kept), (1, 1));
    let loaded = load_all(&mut store);
    let states: Vec<(u64, Vec<String>)> = loaded
        .iter()
        .filter_map(|e| match &e.body {
            NewEntry::Observations { observations, .. } => Some((
                e.id,
                observations
                    .iter()
                    .map(|o| format!("{}@{:?}", o.member, o.seq))
                    .collect(),
            )),
            _ => None,
        })
        .collect();
    assert_eq!(
        states,
        [
            (old[1], vec!["a-1@Some(2)".to_string()]),
            (recent[0], vec!["a-2@Some(3)".to_string()])
        ]
    );
    assert!(
        load_all(&mut store)
            .iter()
            .any(|e| e.body == intent(1, "current"))
    );
}

#[test]
fn prune_keeps_facets_from_earlier_partial_reports() {
    let mut store = SqliteStore::open_in_memory().unwrap();
    let mut partial = obs("a", "a-1", 2, "2");
    partial.facets.retain(|k, _| k == "version");
    partial.labels.clear();
    store
        .append(&[
            observations(t(1), vec![obs("a", "a-1", 1, "1")]),
            observations(t(2), vec![partial]),
        ])
        .unwrap();
    store.prune(t(10)).unwrap();
    let loaded = load_all(&mut store);
    let NewEntry::Observations { observations, .. } = &loaded[0].body else {
        panic!("{loaded:?}")
    };
    assert_eq!(observations[0].facets["version"], "2");
    assert_eq!(observations[0].facets["schema"], "42");
    assert_eq!(observations[0].labels["zone"], "b");
}

#[test]
fn ids_are_not_reused_after_pruning_the_newest_entry() {
    let mut store = SqliteStore::open_in_memory().unwrap();
    let ids = store
        .append(&[observations(t(1), vec![obs("a", "a-1", 1, "1")])])
        .unwrap();
    store.prune(t(10)).unwrap();
    let next = store
        .append(&[observations(t(11), vec![obs("a", "a-1", 2, "1")])])
        .unwrap();
    assert!(next[0] > ids[0]);
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
                supported: 2,
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
        .load(&mut |e| {
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

#[test]
fn a_prune_over_many_chunks_keeps_the_last_report_of_each_member() {
    let mut store = SqliteStore::open_in_memory().unwrap();
    let batches: Vec<NewEntry> = (0..300)
        .map(|i| {
            observations(
                t(i),
                vec![obs("a", &format!("m-{}", i % 7), i as u64 + 1, "1")],
            )
        })
        .collect();
    let ids = store.append(&batches).unwrap();
    let stats = store.prune(t(1_000)).unwrap();
    assert_eq!(stats.batches_deleted, 300);

    let loaded = load_all(&mut store);
    let kept: Vec<(u64, String, Option<u64>)> = loaded
        .into_iter()
        .map(|e| match e.body {
            NewEntry::Observations { observations, .. } => {
                assert_eq!(observations.len(), 1);
                (e.id, observations[0].member.clone(), observations[0].seq)
            }
            other => panic!("{other:?}"),
        })
        .collect();
    let expected: Vec<(u64, String, Option<u64>)> = (293..300)
        .map(|i| (ids[i], format!("m-{}", i % 7), Some(i as u64 + 1)))
        .collect();
    assert_eq!(kept, expected);
}
