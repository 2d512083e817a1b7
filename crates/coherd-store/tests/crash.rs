//! Crash safety: an entry whose append returned `Ok` survives `kill -9`, and
//! so does a checkpoint whose save returned `Ok`; a checkpoint cut short is
//! never used, and truncation never takes what a kept checkpoint needs.
//!
//! The test re-runs its own binary as a child that appends in a loop and
//! prints each id after `append` returns `Ok`; every tenth append it saves a
//! checkpoint of a few pieces and truncates behind the one before, as the
//! server does. The parent kills it with SIGKILL after a random number of
//! appends (so usually in the middle of one, sometimes of a checkpoint),
//! reopens the file and checks that everything printed is there, intact.

#![allow(unused_crate_dependencies)] // a test target sees every dev-dependency of its package

mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};

use coherd_store::{NewEntry, SqliteStore, Store};
use common::{TempDir, load_all, obs, observations, t};

/// Set in the child: the database file to append to.
const CHILD_DB: &str = "COHERD_STORE_CRASH_CHILD_DB";

/// What the child appends for round `round`, call `n`: tagged so the parent
/// can check the contents, not only the ids.
fn entries(round: u64, n: u64) -> Vec<NewEntry> {
    let tag = round * 1_000_000 + n;
    let batch = (0..1 + n % 40)
        .map(|i| obs("crash", &format!("m-{i}"), tag, "1.0"))
        .collect();
    let mut out = vec![observations(t(n as i64), batch)];
    if n.is_multiple_of(7) {
        out.push(NewEntry::Intent {
            at: t(n as i64),
            source: format!("# {tag}\nservices: {{}}\n"),
        });
    }
    out
}

/// The child's loop; a no-op in a normal test run.
#[test]
fn crash_child() {
    let Ok(db) = std::env::var(CHILD_DB) else {
        return;
    };
    let round: u64 = std::env::var("COHERD_STORE_CRASH_ROUND")
        .unwrap()
        .parse()
        .unwrap();
    let mut store = SqliteStore::open(db.as_ref()).unwrap();
    let mut out = std::io::stdout().lock();
    let mut previous = store.checkpoints().unwrap().first().map(|c| c.id);
    for n in 0.. {
        let ids = store.append(&entries(round, n)).unwrap();
        let last = *ids.last().unwrap();
        let ids: Vec<String> = ids.iter().map(u64::to_string).collect();
        writeln!(out, "appended {round} {n} {}", ids.join(" ")).unwrap();
        out.flush().unwrap();
        if n % 10 == 9 {
            let id = store
                .save_checkpoint(last, t(n as i64), &checkpoint_bytes(last))
                .unwrap();
            writeln!(out, "checkpoint {id} {last}").unwrap();
            out.flush().unwrap();
            if let Some(keep) = previous.replace(id) {
                store.truncate(keep, None).unwrap();
            }
        }
    }
}

/// A checkpoint's bytes, made from the entry it covers: three pieces of 1 MiB
/// once compressed, so a kill often lands in the middle of a save.
fn checkpoint_bytes(covers: u64) -> Vec<u8> {
    let mut rng = fastrand::Rng::with_seed(covers);
    (0..2_500_000).map(|_| rng.u8(..)).collect()
}

#[test]
fn every_acknowledged_append_survives_sigkill() {
    let dir = TempDir::new("crash");
    let exe = std::env::current_exe().unwrap();
    let mut acknowledged: Vec<(u64, u64, Vec<u64>)> = Vec::new();
    let mut saved: Vec<(u64, u64)> = Vec::new();
    for round in 0..4 {
        let mut child = Command::new(&exe)
            .args(["crash_child", "--exact", "--nocapture", "--test-threads=1"])
            .env(CHILD_DB, dir.db())
            .env("COHERD_STORE_CRASH_ROUND", round.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        let kill_after = fastrand::usize(20..120);
        let mut seen = 0;
        let mut lines = stdout.lines();
        for line in lines.by_ref() {
            let line = line.unwrap();
            saved.extend(parse_checkpoint(&line));
            if let Some(ack) = parse(&line) {
                acknowledged.push(ack);
                seen += 1;
                if seen == kill_after {
                    child.kill().unwrap();
                    break;
                }
            }
        }
        // Lines the child printed before it died are acknowledged too.
        for line in lines {
            let line = line.unwrap();
            saved.extend(parse_checkpoint(&line));
            if let Some(ack) = parse(&line) {
                acknowledged.push(ack);
            }
        }
        assert!(!child.wait().unwrap().success());
        assert!(
            seen >= kill_after,
            "the child stopped early in round {round}"
        );

        let mut store = SqliteStore::open(&dir.db()).unwrap();
        // Every listed checkpoint is whole; every saved one since the oldest
        // listed is listed.
        let listed = store.checkpoints().unwrap();
        for c in &listed {
            let bytes = store.read_checkpoint(c.id).unwrap();
            assert!(
                bytes == checkpoint_bytes(c.covers),
                "checkpoint {} differs",
                c.id
            );
        }
        let oldest = listed.last().map_or(0, |c| c.id);
        for (id, covers) in saved.iter().filter(|(id, _)| *id >= oldest) {
            assert!(
                listed.iter().any(|c| c.id == *id && c.covers == *covers),
                "saved checkpoint {id} is not listed"
            );
        }
        // Everything after the oldest kept checkpoint is in the log, and every intent.
        let after = listed.last().map_or(0, |c| c.covers);
        let loaded = load_all(&mut store);
        let mut by_id = std::collections::HashMap::new();
        for e in loaded {
            by_id.insert(e.id, e.body);
        }
        for (round, n, ids) in &acknowledged {
            let expected = entries(*round, *n);
            assert_eq!(ids.len(), expected.len());
            for (id, body) in ids.iter().zip(expected) {
                if *id <= after && !matches!(body, NewEntry::Intent { .. }) {
                    continue;
                }
                assert_eq!(
                    by_id.get(id),
                    Some(&body),
                    "entry {id} (round {round}, call {n})"
                );
            }
        }
    }
}

fn parse(line: &str) -> Option<(u64, u64, Vec<u64>)> {
    let mut words = line.strip_prefix("appended ")?.split(' ');
    let round = words.next()?.parse().ok()?;
    let n = words.next()?.parse().ok()?;
    let ids = words.map(|w| w.parse().unwrap()).collect();
    Some((round, n, ids))
}

fn parse_checkpoint(line: &str) -> Option<(u64, u64)> {
    let mut words = line.strip_prefix("checkpoint ")?.split(' ');
    Some((words.next()?.parse().ok()?, words.next()?.parse().ok()?))
}
