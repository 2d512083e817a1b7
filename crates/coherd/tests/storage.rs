//! Checkpoints and the short log, black-box against `coherd serve`: a restart
//! loads the newest checkpoint and replays only what came after it, a
//! damaged checkpoint falls back to the one before, the log is truncated
//! behind the checkpoints unless raw capture keeps it.

#![allow(unused_crate_dependencies)] // a test target sees every dev-dependency of its package

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use common::{Server, export_capture, get_json, request, temp_dir};
use serde_json::Value;

const INTENT: &str = "
services:
  web:
    report_interval: 10s
    facets:
      version: {target: \"1.4.2\"}
";

/// Every member of a 40-member fleet at `seq`; two run a foreign version.
fn round(seq: u64) -> String {
    (0..40)
        .map(|m| {
            let version = if m % 20 == 0 { "0.9.0" } else { "1.4.2" };
            format!(
                r#"{{"service":"web","member":"web-{m:02}","seq":{seq},"facets":{{"version":"{version}","phase":"ready"}}}}"#
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Posts NDJSON and returns the answer, asserting 200.
fn post(s: &Server, body: &str) -> Value {
    let (status, text) = request(
        "POST",
        &format!("{}/v1/observations", s.url),
        &[("Content-Type", "application/x-ndjson")],
        body.as_bytes(),
    )
    .expect("POST");
    assert_eq!(status, 200, "{text}");
    serde_json::from_str(&text).expect("JSON")
}

/// Checkpoints the server has stored, from `/metrics`.
fn checkpoints_stored(s: &Server) -> u64 {
    let (_, text) = request("GET", &format!("{}/metrics", s.url), &[], b"").expect("GET");
    text.lines()
        .find_map(|l| l.strip_prefix("coherd_checkpoint_save_seconds_count "))
        .map_or(0, |v| v.trim().parse().expect("a count"))
}

/// Posts a round after each stored checkpoint until `n` more are stored
/// (a checkpoint is only taken when something new was applied). Returns the
/// next `seq`.
fn post_until_checkpoints(s: &Server, mut seq: u64, n: u64) -> u64 {
    let target = checkpoints_stored(s) + n;
    let deadline = Instant::now() + Duration::from_secs(60);
    while checkpoints_stored(s) < target {
        assert!(Instant::now() < deadline, "no checkpoint stored in 60 s");
        post(s, &round(seq));
        seq += 1;
        std::thread::sleep(Duration::from_millis(300));
    }
    seq
}

/// What a restart must bring back: each member's `seq` and facets, and every
/// divergence record with its times.
fn state(s: &Server) -> (BTreeMap<String, Value>, Value) {
    let members = get_json(&format!("{}/v1/services/web/members?limit=1000", s.url));
    let members = members["members"]
        .as_array()
        .expect("members")
        .iter()
        .map(|m| {
            let key = m["member"].as_str().unwrap().to_string();
            (key, serde_json::json!([m["seq"], m["facets"], m["state"]]))
        })
        .collect();
    let divergences = get_json(&format!("{}/v1/divergences?state=all", s.url));
    (members, divergences)
}

fn start(name: &str, extra: &[&str]) -> Server {
    let dir = temp_dir(name);
    std::fs::write(dir.join("intent.yaml"), INTENT).unwrap();
    let intent = dir.join("intent.yaml").display().to_string();
    let mut args = vec!["--intent", intent.as_str()];
    args.extend_from_slice(extra);
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Server::start(&dir, &args)
}

#[test]
fn a_restart_loads_the_newest_checkpoint_and_replays_only_the_reports_after_it() {
    let mut s = start("ckpt-restart", &["--checkpoint-interval", "1s"]);
    let seq = post_until_checkpoints(&s, 1, 1);
    // After the checkpoint: reports only the log holds.
    let last = round(seq);
    post(&s, &last);
    let before = state(&s);
    assert!(
        before.1.as_array().is_some_and(|d| !d.is_empty()),
        "drift is open"
    );

    s.kill_and_restart();
    assert_eq!(state(&s), before);
    let log = s.log();
    assert!(log.contains("engine loaded from a checkpoint"), "{log}");

    // The duplicate rule holds across the restart: the last seq again is a duplicate.
    let again = post(&s, &last);
    assert_eq!(
        (again["accepted"].as_u64(), again["duplicates"].as_u64()),
        (Some(0), Some(40))
    );
}

#[test]
fn a_graceful_stop_checkpoints_so_the_next_start_replays_nothing() {
    let mut s = start("ckpt-stop", &[]);
    post(&s, &round(1));
    post(&s, &round(2));
    let before = state(&s);
    s.stop();
    s.restart();
    assert_eq!(state(&s), before);
    let log = s.log();
    let rebuilt = log
        .lines()
        .rfind(|l| l.contains("engine rebuilt from the store"))
        .expect("a rebuild line");
    assert!(rebuilt.contains("observations_replayed=0"), "{rebuilt}");
}

/// Damages the newest complete checkpoint's checksum in place.
fn damage_newest_checkpoint(db: &Path) -> i64 {
    let conn = rusqlite::Connection::open(db).unwrap();
    let id: i64 = conn
        .query_row(
            "SELECT max(id) FROM checkpoints WHERE complete = 1",
            [],
            |r| r.get(0),
        )
        .unwrap();
    conn.execute("UPDATE checkpoints SET crc = crc + 1 WHERE id = ?1", [id])
        .unwrap();
    id
}

#[test]
fn a_damaged_newest_checkpoint_falls_back_to_the_one_before_and_the_log() {
    let mut s = start("ckpt-damaged", &["--checkpoint-interval", "1s"]);
    let seq = post_until_checkpoints(&s, 1, 3);
    post(&s, &round(seq));
    let before = state(&s);
    s.kill9();
    let damaged = damage_newest_checkpoint(&s.dir.join("coherd.db"));
    s.restart();
    assert_eq!(state(&s), before);
    let log = s.log();
    assert!(
        log.contains(&format!("checkpoint={damaged}")) && log.contains("cannot be used"),
        "{log}"
    );
}

/// Observation lines in an export.
fn exported_observations(s: &Server, name: &str) -> usize {
    let out = s.dir.join(name);
    export_capture(&s.dir, &out);
    std::fs::read_to_string(&out)
        .unwrap()
        .lines()
        .filter(|l| l.contains("\"member\""))
        .count()
}

#[test]
fn the_log_is_truncated_behind_the_checkpoints_unless_raw_capture_keeps_it() {
    let s = start("ckpt-truncate", &["--checkpoint-interval", "1s"]);
    let posted = post_until_checkpoints(&s, 1, 3) - 1;
    let kept = exported_observations(&s, "short.ndjson");
    assert!(
        kept < posted as usize * 40,
        "{kept} of {} observations still in the log",
        posted * 40
    );

    let raw = start(
        "ckpt-raw",
        &["--checkpoint-interval", "1s", "--capture-raw", "1h"],
    );
    let posted = post_until_checkpoints(&raw, 1, 3) - 1;
    assert_eq!(
        exported_observations(&raw, "raw.ndjson"),
        posted as usize * 40
    );
}

#[test]
fn bench_storage_measures_the_disk_the_checkpoints_and_a_restart_that_finds_every_member() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_coherd"))
        .args(["bench", "storage", "--members", "2000", "--duration", "3m"])
        .args([
            "--checkpoint-interval",
            "30s",
            "--checkpoint-after-observations",
            "20000",
        ])
        .arg("--json")
        .output()
        .expect("coherd runs");
    let out = common::succeeded(out);
    let report: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(report["observations"], 2000 * 18, "{report}");
    assert_eq!(report["restart_members"], 2000, "{report}");
    assert!(report["checkpoints"].as_u64().unwrap() >= 5, "{report}");
    assert!(report["disk_bytes"].as_u64().unwrap() > 0, "{report}");
    // The restart replays the fullest tail the settings allow, and no more.
    let replayed = report["restart_replayed"].as_u64().unwrap();
    assert!((19_000..20_000).contains(&replayed), "{report}");
}

/// Polls `url` until `done` holds for its JSON, for up to 10 s.
fn eventually(url: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let v = get_json(url);
        if done(&v) {
            return v;
        }
        assert!(Instant::now() < deadline, "{url}: {v}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn time_of(v: &Value) -> coherd_model::Time {
    v.as_str().expect("a time").parse().expect("RFC 3339")
}

#[test]
fn divergence_history_is_read_by_time_window_and_survives_a_restart() {
    let mut s = start("history", &[]);
    let before = coherd_model::time::wall_now();
    let report = |seq: u64, version: &str| {
        format!(
            r#"{{"service":"web","member":"w-1","seq":{seq},"facets":{{"version":"{version}"}}}}"#
        )
    };
    post(&s, &report(1, "0.9.0"));
    post(&s, &report(2, "1.4.2"));
    post(&s, &report(3, "0.8.0"));
    let window = format!("{}/v1/divergences?since={before}", s.url);
    // Two episodes of one drift: the first resolved, the second open.
    let all = eventually(&window, |v| v.as_array().is_some_and(|a| a.len() == 2));
    let first = &all[0];
    assert_eq!(first["id"], all[1]["id"]);
    assert!(
        first["resolved_at"].is_string() && all[1]["resolved_at"].is_null(),
        "{all}"
    );

    // After the first resolved, only the second was open.
    let resolved = time_of(&first["resolved_at"]);
    let later = format!(
        "{}/v1/divergences?since={}",
        s.url,
        resolved.add(Duration::from_millis(1))
    );
    let v = get_json(&later);
    assert_eq!(v.as_array().map(Vec::len), Some(1), "{v}");
    // Before the first opened, nothing was.
    let opened = time_of(&first["opened_at"]);
    let earlier = format!("{}/v1/divergences?since={before}&until={opened}", s.url);
    assert_eq!(get_json(&earlier), serde_json::json!([]));
    let v = get_json(&format!("{window}&state=resolved"));
    assert_eq!(v.as_array().map(Vec::len), Some(1), "{v}");

    // Pages of one, through Link.
    let (status, head, body) =
        common::request_with_head("GET", &format!("{window}&limit=1"), &[], b"").unwrap();
    assert_eq!(status, 200, "{body}");
    let next = common::next_link(&head).expect("a next page");
    let v = get_json(&format!("{}{next}", s.url));
    assert_eq!(v[0]["opened_at"], all[1]["opened_at"], "{v}");

    s.kill_and_restart();
    assert_eq!(get_json(&window), all);

    let empty = format!("{}/v1/divergences?since={before}&until={before}", s.url);
    let (status, body) = common::ureq_get(&empty).unwrap();
    assert_eq!(status, 422, "{body}");
    assert!(body.contains("must be before until"), "{body}");
}

#[test]
fn a_members_timeline_shows_its_changes_across_a_restart_and_after_it_is_deleted() {
    let mut s = start("timeline", &[]);
    let report = |seq: u64, version: &str| {
        format!(
            r#"{{"service":"web","member":"w-1","seq":{seq},"facets":{{"version":"{version}","phase":"ready"}}}}"#
        )
    };
    post(&s, &report(1, "1.4.1"));
    post(&s, &report(2, "1.4.1"));
    post(&s, &report(3, "1.4.2"));
    let url = format!("{}/v1/history/timeline?service=web&member=w-1", s.url);
    let events = eventually(&url, |v| v.as_array().is_some_and(|a| a.len() == 2));
    assert_eq!(events[0]["event"], "joined", "{events}");
    assert_eq!(events[0]["facets"]["version"], "1.4.1", "{events}");
    assert_eq!(
        (
            &events[1]["event"],
            &events[1]["facet"],
            &events[1]["from"],
            &events[1]["to"]
        ),
        (
            &Value::from("changed"),
            &Value::from("version"),
            &Value::from("1.4.1"),
            &Value::from("1.4.2")
        ),
        "{events}"
    );

    // After SIGKILL, the reports replayed from the log do not add events twice.
    s.kill_and_restart();
    assert_eq!(get_json(&url), events);

    let (status, body) = request(
        "DELETE",
        &format!("{}/v1/services/web/members/w-1", s.url),
        &[],
        b"",
    )
    .unwrap();
    assert_eq!(status, 204, "{body}");
    let after = eventually(&url, |v| v.as_array().is_some_and(|a| a.len() == 3));
    assert_eq!(after[2]["event"], "deleted", "{after}");
    // A window before the change holds only the join.
    let changed: coherd_model::Time = events[1]["at"].as_str().unwrap().parse().unwrap();
    let v = get_json(&format!("{url}&until={changed}"));
    assert_eq!(v.as_array().map(Vec::len), Some(1), "{v}");
}

#[test]
fn a_services_slis_are_kept_per_minute() {
    let mut s = start("sli", &[]);
    post(&s, &round(1));
    // A start records the minute it began in, with the fleet it rebuilt.
    s.kill_and_restart();
    let url = format!("{}/v1/history/sli?service=web", s.url);
    let minutes = eventually(&url, |v| {
        v.as_array()
            .and_then(|a| a.last())
            .is_some_and(|m| m["members"] == 40)
    });
    let last = minutes.as_array().unwrap().last().unwrap();
    assert_eq!(last["live"], 40, "{last}");
    // Two members on 0.9.0 drift, and the version is mixed.
    assert_eq!(last["open_divergences"], 3, "{last}");
    assert!(last["minute"].as_str().unwrap().ends_with(":00Z"), "{last}");
    assert!(
        last["coherence"]
            .as_f64()
            .is_some_and(|c| (c - 38.0 / 40.0).abs() < 1e-9),
        "{last}"
    );
}

#[test]
fn every_revision_of_the_intent_is_in_the_history_with_its_text() {
    let mut s = start("intents", &["--checkpoint-interval", "1s"]);
    // The file's intent is revision 1; a change to the file (reloaded when it
    // changes) is revision 2.
    let file = s.dir.join("intent.yaml");
    let second = INTENT.replace("1.4.2", "1.4.3");
    std::fs::write(&file, &second).unwrap();
    let url = format!("{}/v1/history/intents", s.url);
    let revisions = eventually(&url, |v| v.as_array().is_some_and(|a| a.len() == 2));
    assert_eq!(revisions[0]["revision"], 1, "{revisions}");
    assert_eq!(revisions[1]["revision"], 2, "{revisions}");
    assert_eq!(revisions[1]["source"], second.as_str(), "{revisions}");
    assert_eq!(get_json(&format!("{}/v1/intent", s.url))["revision"], 2);
    // Revisions keep their numbers across a restart from a checkpoint.
    post_until_checkpoints(&s, 1, 1);
    s.kill_and_restart();
    assert_eq!(get_json(&url), revisions);
}

/// Clients post while the server checkpoints every second; SIGKILL lands at
/// random moments, three times: after each restart every acknowledged
/// report is there, and re-sending the last acknowledged one is a duplicate.
#[test]
fn sigkill_during_ingest_and_checkpoints_loses_nothing_acknowledged() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};

    let mut s = start("ckpt-kill", &["--checkpoint-interval", "1s"]);
    let acked: Arc<Mutex<BTreeMap<String, u64>>> = Arc::default();
    let mut seq_base = 0;
    for round in 0..3 {
        let stop = Arc::new(AtomicBool::new(false));
        let clients: Vec<_> = (0..3)
            .map(|c| {
                let (url, acked, stop) = (s.url.clone(), acked.clone(), stop.clone());
                std::thread::spawn(move || {
                    let mut seq = seq_base;
                    while !stop.load(Ordering::SeqCst) {
                        seq += 1;
                        let body: Vec<String> = (0..50)
                            .map(|m| format!(r#"{{"service":"web","member":"c{c}-m{m}","seq":{seq},"facets":{{"version":"1.4.2"}}}}"#))
                            .collect();
                        let answer = request(
                            "POST",
                            &format!("{url}/v1/observations"),
                            &[("Content-Type", "application/x-ndjson")],
                            body.join("\n").as_bytes(),
                        );
                        if matches!(answer, Ok((200, _))) {
                            let mut a = acked.lock().unwrap();
                            for m in 0..50 {
                                a.insert(format!("c{c}-m{m}"), seq);
                            }
                        } else {
                            std::thread::sleep(Duration::from_millis(5));
                        }
                    }
                })
            })
            .collect();
        // At least one checkpoint in this run, so the restart loads one; then
        // a random moment, often during the next.
        let deadline = Instant::now() + Duration::from_secs(30);
        while checkpoints_stored(&s) == 0 {
            assert!(Instant::now() < deadline, "no checkpoint in 30 s");
            std::thread::sleep(Duration::from_millis(50));
        }
        std::thread::sleep(Duration::from_millis(fastrand::u64(0..1500)));
        s.kill9();
        stop.store(true, Ordering::SeqCst);
        for c in clients {
            c.join().unwrap();
        }
        s.restart();
        let members = get_json(&format!("{}/v1/services/web/members?limit=1000", s.url));
        let stored: BTreeMap<String, u64> = members["members"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| {
                (
                    m["member"].as_str().unwrap().to_string(),
                    m["seq"].as_u64().unwrap_or(0),
                )
            })
            .collect();
        let acked = acked.lock().unwrap().clone();
        assert!(!acked.is_empty(), "round {round}: nothing was acknowledged");
        for (member, seq) in &acked {
            assert!(
                stored.get(member).is_some_and(|s| s >= seq),
                "round {round}, {member}: acknowledged seq {seq}, stored {:?}",
                stored.get(member)
            );
        }
        let (member, seq) = acked.iter().next().unwrap();
        let again = post(
            &s,
            &format!(
                r#"{{"service":"web","member":"{member}","seq":{seq},"facets":{{"version":"1.4.2"}}}}"#
            ),
        );
        assert_eq!(again["duplicates"], 1, "round {round}: {again}");
        seq_base = acked.values().max().copied().unwrap_or(0) + 1_000;
    }
    let log = s.log();
    assert!(log.contains("engine loaded from a checkpoint"), "{log}");
}
