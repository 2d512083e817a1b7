//! Crash safety: an entry whose append returned `Ok` survives `kill -9`.
//!
//! The test re-runs its own binary as a child that appends in a loop and
//! prints each id after `append` returns `Ok`; the parent kills it with
//! SIGKILL after a random number of appends (so usually in the middle of
//! one), reopens the file and checks that every printed id is there, intact.

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
    for n in 0.. {
        let ids = store.append(&entries(round, n)).unwrap();
        let ids: Vec<String> = ids.iter().map(u64::to_string).collect();
        writeln!(out, "appended {round} {n} {}", ids.join(" ")).unwrap();
        out.flush().unwrap();
    }
}

#[test]
fn every_acknowledged_append_survives_sigkill() {
    let dir = TempDir::new("crash");
    let exe = std::env::current_exe().unwrap();
    let mut acknowledged: Vec<(u64, u64, Vec<u64>)> = Vec::new();
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
        let kill_after = fastrand::usize(20..200);
        let mut seen = 0;
        let mut lines = stdout.lines();
        for line in lines.by_ref() {
            let line = line.unwrap();
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
            if let Some(ack) = parse(&line.unwrap()) {
                acknowledged.push(ack);
            }
        }
        assert!(!child.wait().unwrap().success());
        assert!(
            seen >= kill_after,
            "the child stopped early in round {round}"
        );

        let mut store = SqliteStore::open(&dir.db()).unwrap();
        let loaded = load_all(&mut store);
        let mut by_id = std::collections::HashMap::new();
        for e in loaded {
            by_id.insert(e.id, e.body);
        }
        for (round, n, ids) in &acknowledged {
            let expected = entries(*round, *n);
            assert_eq!(ids.len(), expected.len());
            for (id, body) in ids.iter().zip(expected) {
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
