//! Black-box: the reconcile loop of `coherd serve` repairs drift through a
//! real webhook receiver, in waves, within its budget, fenced and audited.

#![allow(unused_crate_dependencies)] // a test target sees every dev-dependency of its package

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use common::{Server, get_json, post_json, temp_dir, wait_until};
use serde_json::{Value, json};

const INTENT: &str = "services:\n  checkout:\n    report_interval: 1h\n    facets:\n      config: {target: \"v2\"}\n";

/// Report sequence numbers: one counter is increasing for every member.
static SEQ: AtomicU64 = AtomicU64::new(1);

fn report(server: &str, members: &[String], config: &str) {
    let batch: Vec<Value> = members
        .iter()
        .map(|m| json!({"service": "checkout", "member": m, "seq": SEQ.fetch_add(1, Ordering::SeqCst), "facets": {"config": config}}))
        .collect();
    let (status, body) = post_json(
        &format!("{server}/v1/observations"),
        &Value::from(batch).to_string(),
    );
    assert_eq!(status, 200, "{body}");
}

/// One webhook call as the receiver saw it.
#[derive(Debug, Clone)]
struct Call {
    body: Value,
    headers: BTreeMap<String, String>,
}

/// What the receiver does after answering.
#[derive(Clone, Copy)]
enum Mode {
    /// Reports the member at its target.
    Fix,
    /// Fixes, then another controller puts it back a moment later.
    FixThenRevert,
    /// Answers 200 and changes nothing.
    Ignore,
}

/// A deploy system on loopback: holds each call `hold`, answers 200, then
/// acts on the member as `mode` says; counts calls in progress at once.
struct Receiver {
    url: String,
    calls: Arc<Mutex<Vec<Call>>>,
    peak: Arc<AtomicUsize>,
    server: Arc<OnceLock<String>>,
}

impl Receiver {
    fn start(hold: Duration, mode: Mode) -> Receiver {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/fix", listener.local_addr().unwrap());
        let calls: Arc<Mutex<Vec<Call>>> = Arc::default();
        let peak: Arc<AtomicUsize> = Arc::default();
        let now: Arc<AtomicUsize> = Arc::default();
        let server: Arc<OnceLock<String>> = Arc::default();
        let (c, p, s) = (calls.clone(), peak.clone(), server.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (calls, peak, now, server) = (c.clone(), p.clone(), now.clone(), s.clone());
                std::thread::spawn(move || {
                    let Some(call) = read_call(stream, hold, &now, &peak) else {
                        return;
                    };
                    let member = call.body["member"].as_str().unwrap_or_default().to_string();
                    let target = call.body["target"].as_str().unwrap_or_default().to_string();
                    calls.lock().unwrap().push(call);
                    let Some(server) = server.get().filter(|_| !matches!(mode, Mode::Ignore))
                    else {
                        return;
                    };
                    std::thread::sleep(Duration::from_millis(200));
                    report(server, std::slice::from_ref(&member), &target);
                    if let Mode::FixThenRevert = mode {
                        std::thread::sleep(Duration::from_millis(2500));
                        report(server, &[member], "v1");
                    }
                });
            }
        });
        Receiver {
            url,
            calls,
            peak,
            server,
        }
    }

    fn calls(&self) -> Vec<Call> {
        self.calls.lock().unwrap().clone()
    }
}

fn read_call(
    stream: std::net::TcpStream,
    hold: Duration,
    now: &AtomicUsize,
    peak: &AtomicUsize,
) -> Option<Call> {
    let mut reader = BufReader::new(stream);
    let mut headers = BTreeMap::new();
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    loop {
        line.clear();
        if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        }
    }
    let len: usize = headers
        .get("content-length")
        .and_then(|l| l.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; len];
    reader.read_exact(&mut body).ok()?;
    let inside = now.fetch_add(1, Ordering::SeqCst) + 1;
    peak.fetch_max(inside, Ordering::SeqCst);
    std::thread::sleep(hold);
    now.fetch_sub(1, Ordering::SeqCst);
    let _ = reader
        .get_mut()
        .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
    Some(Call {
        body: serde_json::from_slice(&body).ok()?,
        headers,
    })
}

/// A server whose one action sends config drift of `checkout` to `hook`,
/// with `extra` lines added to the action.
fn start(name: &str, hook: &str, extra: &str) -> Server {
    let dir = temp_dir(name);
    let verify = if extra.contains("verify_within") {
        ""
    } else {
        "      verify_within: 20s\n"
    };
    std::fs::write(dir.join("intent.yaml"), INTENT).unwrap();
    std::fs::write(
        dir.join("coherd.yaml"),
        format!(
            "reconcile:
  lease_ttl: 2s
  dispatch_spread: 300ms
  actions:
    - name: fix-config
      match: {{kind: drift, facet: config, service: \"check*\", severity: [warning, critical]}}
      webhook: {{url: \"{hook}\", timeout: 5s, headers: {{X-Team: sre}}}}
      debounce: 1s
      max_in_flight: 5
      waves: [1, \"10%\", \"50%\", \"100%\"]
      wave_pause: 1s
{verify}      backoff: {{base: 1s, cap: 4s}}
      max_attempts: 3
{extra}"
        ),
    )
    .unwrap();
    let (config, intent) = (
        dir.join("coherd.yaml").display().to_string(),
        dir.join("intent.yaml").display().to_string(),
    );
    Server::start(&dir, &["--config", &config, "--intent", &intent])
}

/// The whole audit log, oldest first.
fn audit(server: &str) -> Vec<Value> {
    let mut all = Vec::new();
    let mut url = format!("{server}/v1/audit?limit=1000");
    loop {
        let (status, head, body) = common::request_with_head("GET", &url, &[], b"").unwrap();
        assert_eq!(status, 200, "{body}");
        all.extend(serde_json::from_str::<Vec<Value>>(&body).unwrap());
        match common::next_link(&head) {
            Some(next) => url = format!("{server}{next}"),
            None => break,
        }
    }
    all.reverse();
    all
}

fn members(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("c-{i:02}")).collect()
}

fn open_drift(server: &str) -> usize {
    get_json(&format!("{server}/v1/divergences?kind=drift"))
        .as_array()
        .map_or(0, Vec::len)
}

fn decisions<'a>(audit: &'a [Value], what: &str) -> Vec<&'a Value> {
    audit.iter().filter(|d| d["decision"] == what).collect()
}

#[test]
fn fifty_drifted_members_are_repaired_once_each_in_waves_within_budget() {
    let fixer = Receiver::start(Duration::from_millis(400), Mode::Fix);
    let s = start("reconcile-waves", &fixer.url, "");
    fixer.server.set(s.url.clone()).unwrap();
    report(&s.url, &members(50), "v1");
    wait_until("every drift repaired and verified", 120, || {
        open_drift(&s.url) == 0 && decisions(&audit(&s.url), "verified").len() == 50
    });

    let calls = fixer.calls();
    let called: BTreeSet<&str> = calls
        .iter()
        .filter_map(|c| c.body["member"].as_str())
        .collect();
    assert_eq!(calls.len(), 50, "one dispatch per member");
    assert_eq!(called.len(), 50);
    assert!(
        fixer.peak.load(Ordering::SeqCst) <= 5,
        "peak {} above max_in_flight",
        fixer.peak.load(Ordering::SeqCst)
    );
    for c in &calls {
        assert_eq!(
            c.headers["idempotency-key"],
            c.body["idempotency_key"].as_str().unwrap()
        );
        assert_eq!(c.headers["coherd-fencing-token"], "1");
        assert_eq!(c.headers["x-team"], "sre");
        for field in [
            "action",
            "service",
            "member",
            "facet",
            "kind",
            "target",
            "divergence_id",
            "attempt",
            "fencing_epoch",
            "divergence",
        ] {
            assert!(!c.body[field].is_null(), "{field} missing from {}", c.body);
        }
        assert_eq!(c.body["target"], "v2");
    }

    let log = audit(&s.url);
    let planned = decisions(&log, "planned");
    let waves: Vec<u64> = planned
        .iter()
        .map(|d| d["wave"].as_u64().unwrap())
        .collect();
    assert!(
        waves.windows(2).all(|w| w[0] <= w[1]),
        "waves in order: {waves:?}"
    );
    let per_wave: Vec<usize> = (1..=4)
        .map(|w| waves.iter().filter(|x| **x == w).count())
        .collect();
    assert_eq!(per_wave, [1, 4, 20, 25]);
    // Each wave starts after every repair of the one before was verified.
    for w in 2..=4u64 {
        let first = log
            .iter()
            .position(|d| d["decision"] == "planned" && d["wave"] == w)
            .unwrap();
        let last_verified = log
            .iter()
            .rposition(|d| d["decision"] == "verified" && d["wave"] == w - 1)
            .unwrap();
        assert!(
            first > last_verified,
            "wave {w} started before wave {} was verified",
            w - 1
        );
    }
    for m in &called {
        let last = log
            .iter()
            .rev()
            .find(|d| d["member"] == *m && d["idempotency_key"].is_string())
            .unwrap();
        assert_eq!(last["decision"], "verified", "{m}: {last}");
    }
    let status = get_json(&format!("{}/v1/reconcile", s.url));
    assert_eq!(status["actions"][0]["sli"]["success_rate"], 1.0);
    assert_eq!(status["actions"][0]["sli"]["actions_per_repair"], 1.0);
    let metrics = common::ureq_get(&format!("{}/metrics", s.url)).unwrap().1;
    assert!(
        metrics.contains(
            "coherd_reconcile_decisions_total{action=\"fix-config\",decision=\"verified\"} 50"
        ),
        "{metrics}"
    );
    assert!(
        metrics.contains("coherd_reconcile_time_to_repair_seconds_count{action=\"fix-config\"} 50")
    );
}

#[test]
fn sigkill_mid_wave_keeps_keys_and_limits_and_the_epoch_fences_old_outcomes() {
    let fixer = Receiver::start(Duration::from_millis(800), Mode::Fix);
    let mut s = start("reconcile-kill", &fixer.url, "");
    fixer.server.set(s.url.clone()).unwrap();
    report(&s.url, &members(30), "v1");
    // Kill in the third wave, with calls in flight.
    wait_until("the third wave", 90, || {
        decisions(&audit(&s.url), "dispatched")
            .iter()
            .any(|d| d["wave"] == 3)
    });
    let old_key = decisions(&audit(&s.url), "dispatched")[0]["idempotency_key"]
        .as_str()
        .unwrap()
        .to_string();
    s.kill9();
    s.restart();
    wait_until("every drift repaired after the restart", 120, || {
        open_drift(&s.url) == 0
    });

    let calls = fixer.calls();
    let mut keys: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for c in &calls {
        keys.entry(c.body["member"].as_str().unwrap().into())
            .or_default()
            .insert(c.headers["idempotency-key"].clone());
    }
    assert_eq!(keys.len(), 30, "every member reached");
    for (m, k) in &keys {
        assert_eq!(k.len(), 1, "{m} got two idempotency keys: {k:?}");
    }
    // The wave limits hold across the restart: before wave w+1 is planned,
    // no more members were planned than wave w allows (cumulative 1, 3, 15).
    let log = audit(&s.url);
    assert!(
        log.iter().any(|d| d["decision"] == "failed"
            && d["reason"]
                .as_str()
                .is_some_and(|r| r.starts_with("coherd stopped while the attempt was in flight"))),
        "an attempt in flight at the kill is retried after it"
    );
    for (w, limit) in [(2u64, 1usize), (3, 3), (4, 15)] {
        if let Some(start) = log
            .iter()
            .position(|d| d["decision"] == "planned" && d["wave"] == w)
        {
            let before: BTreeSet<&str> = log[..start]
                .iter()
                .filter(|d| d["decision"] == "planned")
                .filter_map(|d| d["member"].as_str())
                .collect();
            assert!(
                before.len() <= limit,
                "{} members planned before wave {w}",
                before.len()
            );
        }
    }
    // The restart took the lease with the next epoch; calls after it carry it.
    let status = get_json(&format!("{}/v1/reconcile", s.url));
    assert_eq!(status["fencing_epoch"], 2);
    assert!(
        calls
            .iter()
            .any(|c| c.headers["coherd-fencing-token"] == "2")
    );
    // An outcome reported under the old epoch is refused, and audited.
    let (code, body) = post_json(
        &format!("{}/v1/reconcile/outcome", s.url),
        &json!({"idempotency_key": old_key, "fencing_epoch": 1, "outcome": "failed", "detail": "late"}).to_string(),
    );
    assert_eq!(code, 409, "{body}");
    let refused = decisions(&audit(&s.url), "refused")
        .into_iter()
        .cloned()
        .collect::<Vec<_>>();
    assert!(
        refused
            .iter()
            .any(|d| d["epoch"] == 1 && d["idempotency_key"] == old_key.as_str()),
        "{refused:?}"
    );
}

#[test]
fn a_subject_that_reopens_is_quarantined_until_released() {
    let fixer = Receiver::start(Duration::from_millis(50), Mode::FixThenRevert);
    let s = start(
        "reconcile-thrash",
        &fixer.url,
        "      thrash: {reopens: 2, within: 1h}\n",
    );
    fixer.server.set(s.url.clone()).unwrap();
    report(&s.url, &members(1), "v1");
    wait_until("the quarantine", 90, || {
        !decisions(&audit(&s.url), "quarantined").is_empty()
    });
    assert_eq!(
        fixer.calls().len(),
        2,
        "dispatched for the first two episodes only"
    );
    let status = get_json(&format!("{}/v1/reconcile", s.url));
    assert_eq!(
        status["quarantined"][0]["divergence_id"],
        "drift:checkout:c-00:config"
    );
    // Still open, still quarantined: nothing more is sent.
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(fixer.calls().len(), 2);
    let out = common::succeeded(
        std::process::Command::new(env!("CARGO_BIN_EXE_coherd"))
            .args([
                "reconcile",
                "release",
                "drift:checkout:c-00:config",
                "--server",
                &s.url,
            ])
            .output()
            .unwrap(),
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("released"));
    wait_until("a dispatch after the release", 30, || {
        fixer.calls().len() == 3
    });
}

#[test]
fn dry_run_dispatches_nothing_and_audits_what_it_would_do() {
    let fixer = Receiver::start(Duration::from_millis(50), Mode::Fix);
    let s = start("reconcile-dry", &fixer.url, "      dry_run: true\n");
    fixer.server.set(s.url.clone()).unwrap();
    report(&s.url, &members(10), "v1");
    let would = |log: &[Value]| {
        log.iter()
            .filter(|d| {
                d["reason"]
                    .as_str()
                    .is_some_and(|r| r.starts_with("dry run"))
            })
            .count()
    };
    wait_until("a dry-run decision per member", 60, || {
        would(&audit(&s.url)) == 10
    });
    std::thread::sleep(Duration::from_secs(2));
    assert!(fixer.calls().is_empty(), "dry run sent {:?}", fixer.calls());
    assert!(decisions(&audit(&s.url), "dispatched").is_empty());
    assert_eq!(open_drift(&s.url), 10);
}

#[test]
fn the_emergency_stop_holds_dispatch_until_resumed() {
    let fixer = Receiver::start(Duration::from_millis(50), Mode::Fix);
    let s = start("reconcile-pause", &fixer.url, "");
    fixer.server.set(s.url.clone()).unwrap();
    wait_until("the loop to take its lease", 20, || {
        get_json(&format!("{}/v1/reconcile", s.url))["running"] == true
    });
    let coherd = |args: &[&str]| {
        let mut all = args.to_vec();
        all.extend(["--server", &s.url]);
        common::succeeded(
            std::process::Command::new(env!("CARGO_BIN_EXE_coherd"))
                .args(&all)
                .output()
                .unwrap(),
        )
    };
    coherd(&["reconcile", "pause"]);
    report(&s.url, &members(3), "v1");
    std::thread::sleep(Duration::from_secs(4));
    assert!(fixer.calls().is_empty(), "paused, yet dispatched");
    let status = String::from_utf8_lossy(&coherd(&["reconcile", "status"]).stdout).to_string();
    assert!(status.contains("PAUSED"), "{status}");
    let skipped = audit(&s.url);
    assert!(
        skipped
            .iter()
            .any(|d| d["decision"] == "skipped" && d["reason"] == "paused"),
        "{skipped:?}"
    );
    coherd(&["reconcile", "resume"]);
    wait_until("the repairs after resume", 60, || open_drift(&s.url) == 0);
    let out = String::from_utf8_lossy(&coherd(&["audit", "--member", "c-00"]).stdout).to_string();
    assert!(
        out.contains("verified") && out.contains("dispatched"),
        "{out}"
    );
}

fn alert_names(server: &str) -> Vec<String> {
    get_json(&format!("{server}/v1/alerts"))
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|a| a["labels"]["alertname"].as_str().map(String::from))
        .collect()
}

#[test]
fn a_repair_that_does_not_hold_halts_the_rollout_alerts_and_waits_for_resume() {
    let liar = Receiver::start(Duration::from_millis(50), Mode::Ignore);
    let s = start("reconcile-halt", &liar.url, "      verify_within: 3s\n");
    liar.server.set(s.url.clone()).unwrap();
    report(&s.url, &members(5), "v1");
    wait_until("the halt", 60, || {
        !decisions(&audit(&s.url), "halted").is_empty()
    });
    assert_eq!(liar.calls().len(), 1, "only the first wave's one member");
    let log = audit(&s.url);
    let unverified = decisions(&log, "unverified");
    assert_eq!(unverified.len(), 1);
    assert!(
        unverified[0]["evidence_after"]["resolved_at"].is_null(),
        "still open: {}",
        unverified[0]
    );
    wait_until("CoherdReconcileHalted", 30, || {
        alert_names(&s.url)
            .iter()
            .any(|a| a == "CoherdReconcileHalted")
    });
    let metrics = common::ureq_get(&format!("{}/metrics", s.url)).unwrap().1;
    assert!(
        metrics.contains("coherd_reconcile_halted_rollouts{service=\"checkout\"} 1"),
        "{metrics}"
    );
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(liar.calls().len(), 1, "halted: no next wave");
    let out = common::succeeded(
        std::process::Command::new(env!("CARGO_BIN_EXE_coherd"))
            .args([
                "reconcile",
                "resume",
                "--service",
                "checkout",
                "--server",
                &s.url,
            ])
            .output()
            .unwrap(),
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("1 halted rollout(s) lifted"));
    wait_until("the next wave after resume", 30, || liar.calls().len() > 1);
}

#[test]
fn a_rollout_guard_runs_its_program_once_when_mixed_turns_critical() {
    let dir = temp_dir("reconcile-guard");
    let script = dir.join("pause-rollout.sh");
    let log = dir.join("guard.log");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\necho \"$@ key=$COHERD_IDEMPOTENCY_KEY epoch=$COHERD_FENCING_EPOCH\" >> {log}\ncat >> {log}\necho >> {log}\n",
            log = log.display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::write(
        dir.join("intent.yaml"),
        "services:\n  checkout:\n    report_interval: 1h\n    facets:\n      schema: {target: \"s2\", uniform: true}\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("coherd.yaml"),
        format!(
            "reconcile:\n  lease_ttl: 2s\n  dispatch_spread: 0s\n  actions:\n    - name: pause-rollout\n      match: {{kind: mixed, severity: [warning, critical]}}\n      exec: {{argv: [\"{}\", \"pause\", \"{{service}}\", \"{{facet}}\"], timeout: 5s}}\n      debounce: 0s\n      verify: false\n",
            script.display()
        ),
    )
    .unwrap();
    let (config, intent) = (
        dir.join("coherd.yaml").display().to_string(),
        dir.join("intent.yaml").display().to_string(),
    );
    let s = Server::start(&dir, &["--config", &config, "--intent", &intent]);
    let batch = json!([
        {"service": "checkout", "member": "a", "seq": 1, "facets": {"schema": "s2"}},
        {"service": "checkout", "member": "b", "seq": 1, "facets": {"schema": "s2"}},
        {"service": "checkout", "member": "c", "seq": 1, "facets": {"schema": "s9"}},
    ]);
    assert_eq!(
        post_json(&format!("{}/v1/observations", s.url), &batch.to_string()).0,
        200
    );
    let read = || std::fs::read_to_string(&log).unwrap_or_default();
    wait_until("the guard to run", 30, || {
        read().contains("pause checkout schema key=")
    });
    std::thread::sleep(Duration::from_secs(3));
    let text = read();
    assert_eq!(
        text.matches("pause checkout schema").count(),
        1,
        "once per episode: {text}"
    );
    assert!(text.contains("epoch=1"));
    let body: Value = serde_json::from_str(text.lines().nth(1).unwrap()).unwrap();
    assert_eq!(body["kind"], "mixed");
    assert_eq!(body["divergence"]["severity"], "critical");
    let log = audit(&s.url);
    assert!(decisions(&log, "succeeded").iter().any(|d| {
        d["reason"]
            .as_str()
            .is_some_and(|r| r.starts_with("a guard"))
    }));
    assert!(
        decisions(&log, "halted").is_empty(),
        "a guard is not verified, so it never halts"
    );
}

#[test]
fn sighup_reloads_the_reconcile_policy_and_keeps_it_when_the_new_one_is_invalid() {
    let fixer = Receiver::start(Duration::from_millis(50), Mode::Fix);
    let s = start("reconcile-reload", &fixer.url, "      dry_run: true\n");
    fixer.server.set(s.url.clone()).unwrap();
    let config = s.dir.join("coherd.yaml");
    let hup = || {
        let pid = nix::unistd::Pid::from_raw(s.child.id() as i32);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGHUP).unwrap();
    };
    let good = std::fs::read_to_string(&config).unwrap();
    // An invalid file is refused whole: the dry run stays in force.
    std::fs::write(
        &config,
        good.replace("dry_run: true", "dry_run: true\n      max_attempts: 0"),
    )
    .unwrap();
    hup();
    wait_until("the refusal in the log", 20, || {
        s.log().contains("the reconcile config is invalid")
    });
    report(&s.url, &members(2), "v1");
    wait_until("dry-run decisions", 30, || {
        audit(&s.url)
            .iter()
            .filter(|d| {
                d["reason"]
                    .as_str()
                    .is_some_and(|r| r.starts_with("dry run"))
            })
            .count()
            == 2
    });
    assert!(fixer.calls().is_empty());
    // A valid one takes over: a new drift episode is repaired for real.
    std::fs::write(&config, good.replace("dry_run: true", "dry_run: false")).unwrap();
    hup();
    wait_until("the reload in the log", 20, || {
        s.log().contains("reconcile policy reloaded")
    });
    report(&s.url, &members(3)[2..], "v1");
    wait_until("a real dispatch", 30, || {
        fixer.calls().iter().any(|c| c.body["member"] == "c-02")
    });
}
