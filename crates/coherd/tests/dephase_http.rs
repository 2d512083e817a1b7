//! Black-box tests of dephasing in the service: `GET /v1/dephase/{service}/{job}`
//! from the live membership, its errors, the intent block, and `herd` over HTTP.

#![allow(unused_crate_dependencies)] // a test target sees every dev-dependency of its package

mod common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use coherd_model::Time;
use common::{Server, get_json, post_json, request, temp_dir};
use serde_json::{Value, json};

const INTENT: &str = "services:
  db:
    dephase:
      jobs:
        cron:compact: {period: 1h, window: 10m}
        cron:backup: {period: 1d, spread: stable}
        cron:vacuum: {period: 1h, max_concurrent: 2}
";

fn start(name: &str) -> Server {
    let dir = temp_dir(name);
    std::fs::write(dir.join("intent.yaml"), INTENT).expect("intent file");
    let intent = dir.join("intent.yaml").display().to_string();
    Server::start(&dir, &["--intent", &intent])
}

fn wall() -> Time {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970");
    Time::from_nanos(d.as_nanos() as i64)
}

fn report_members(s: &Server, members: &[&str]) {
    let batch: Vec<Value> = members
        .iter()
        .map(|m| json!({"service": "db", "member": m, "seq": 1, "facets": {"phase": "ready"}}))
        .collect();
    let (status, body) = post_json(
        &format!("{}/v1/observations", s.url),
        &Value::from(batch).to_string(),
    );
    assert_eq!(status, 200, "{body}");
}

fn slot(s: &Server, job: &str, member: &str) -> Value {
    get_json(&format!("{}/v1/dephase/db/{job}?member={member}", s.url))
}

#[test]
fn even_spread_over_the_live_members_with_the_next_start_after_now() {
    let s = start("dephase-even");
    report_members(&s, &["db-1", "db-2", "db-3", "db-4"]);
    let before = wall();
    let slots: Vec<Value> = ["db-1", "db-2", "db-3", "db-4"]
        .iter()
        .map(|m| slot(&s, "cron:compact", m))
        .collect();
    let after = wall();
    let mut offsets = Vec::new();
    for v in &slots {
        assert_eq!(v["members"], 4, "{v}");
        assert_eq!(v["spread"], "even");
        assert_eq!(v["period_seconds"], 3600.0);
        assert_eq!(v["window_seconds"], 600.0);
        let offset = v["offset_seconds"].as_f64().expect("offset");
        assert!((0.0..600.0).contains(&offset), "{v}");
        let next: Time = v["next_start"]
            .as_str()
            .and_then(|t| t.parse().ok())
            .expect("RFC 3339 next_start");
        // The next period boundary plus the offset, strictly after now.
        assert!(
            next > before && next <= after.add(Duration::from_secs(3600)),
            "{v}"
        );
        let boundary = next.as_nanos() - (offset * 1e9).round() as i64;
        assert_eq!(boundary.rem_euclid(3_600_000_000_000), 0, "{v}");
        offsets.push(offset);
    }
    // Four members share the ten-minute window evenly: 150 s apart.
    offsets.sort_by(f64::total_cmp);
    for w in offsets.windows(2) {
        assert!((w[1] - w[0] - 150.0).abs() < 1e-6, "{offsets:?}");
    }
    // A member that has not reported yet is counted in with the live ones.
    assert_eq!(slot(&s, "cron:compact", "db-9")["members"], 5);
}

#[test]
fn stable_spread_is_a_fixed_hash_of_member_and_job() {
    let s = start("dephase-stable");
    report_members(&s, &["db-1", "db-2"]);
    let a = slot(&s, "cron:backup", "db-1");
    assert_eq!(a["spread"], "stable");
    assert_eq!(a["members"], 2);
    report_members(&s, &["db-3", "db-4", "db-5"]);
    let b = slot(&s, "cron:backup", "db-1");
    assert_eq!(a["offset_seconds"], b["offset_seconds"]);
    assert_eq!(b["members"], 5);
    let offset = a["offset_seconds"].as_f64().expect("offset");
    assert!((0.0..86_400.0).contains(&offset), "{a}");
}

#[test]
fn unknown_service_or_job_is_404_and_a_missing_member_is_400() {
    let s = start("dephase-errors");
    let get = |path: &str| {
        let (status, body) = request("GET", &format!("{}{path}", s.url), &[], b"").expect("GET");
        let v: Value = serde_json::from_str(&body).expect("json error");
        (
            status,
            v["errors"][0]["message"].as_str().unwrap_or("").to_string(),
        )
    };
    let (status, msg) = get("/v1/dephase/db/cron:nope?member=db-1");
    assert_eq!(status, 404);
    assert!(
        msg.contains("cron:nope") && msg.contains("cron:backup, cron:compact, cron:vacuum"),
        "{msg}"
    );
    let (status, msg) = get("/v1/dephase/web/cron:compact?member=w-1");
    assert_eq!(status, 404);
    assert!(
        msg.contains("declares no dephase jobs") && msg.contains("services.web.dephase.jobs"),
        "{msg}"
    );
    let (status, msg) = get("/v1/dephase/db/cron:compact");
    assert_eq!(status, 400);
    assert!(msg.contains("?member="), "{msg}");
    let (status, _) = get("/v1/dephase/db/cron:compact?member=bad%20id");
    assert_eq!(status, 400);
}

#[test]
fn the_intent_shows_its_jobs_and_concurrent_runs_are_a_herd() {
    let s = start("dephase-herd");
    let intent = get_json(&format!("{}/v1/intent", s.url));
    let job = &intent["intent"]["services"]["db"]["dephase"]["jobs"]["cron:compact"];
    assert_eq!(
        job,
        &json!({"period": "1h", "window": "10m", "spread": "even", "herd_threshold": 0.6})
    );

    // Three runs of cron:vacuum overlap; the job allows two at once.
    let now = wall();
    let t = |back: u64| now.sub(Duration::from_secs(back)).to_string();
    let run = |m: &str, start: u64, end: u64| {
        json!({"service": "db", "member": m, "seq": 1, "time": now.to_string(),
               "events": [{"kind": "cron:vacuum", "start": t(start), "end": t(end)}]})
    };
    let batch = json!([
        run("db-1", 300, 100),
        run("db-2", 250, 120),
        run("db-3", 200, 150)
    ]);
    let (status, body) = post_json(&format!("{}/v1/observations", s.url), &batch.to_string());
    assert_eq!(status, 200, "{body}");
    let herds = get_json(&format!("{}/v1/divergences?kind=herd", s.url));
    let herds = herds.as_array().expect("list");
    assert_eq!(herds.len(), 1, "{herds:?}");
    assert_eq!(herds[0]["id"], "herd:db:cron:vacuum");
    // Past max_concurrent: critical, and it pages.
    assert_eq!(herds[0]["severity"], "critical");
    assert_eq!(herds[0]["subjects"], json!(["db-1", "db-2", "db-3"]));
    assert_eq!(herds[0]["evidence"]["peak_concurrency"], 3);
    assert_eq!(herds[0]["evidence"]["max_concurrent"], 2);

    // Dashboards see the same: the job's synchrony is on /metrics.
    let (status, metrics) =
        common::request("GET", &format!("{}/metrics", s.url), &[], b"").unwrap();
    assert_eq!(status, 200);
    let line = |name: &str| {
        metrics
            .lines()
            .find(|l| l.starts_with(name) && l.contains("job=\"cron:vacuum\""))
            .map(str::to_string)
    };
    assert!(
        line("coherd_dephase_peak_concurrency{").is_some_and(|l| l.ends_with(" 3")),
        "{metrics}"
    );
    assert!(line("coherd_dephase_members{").is_some_and(|l| l.ends_with(" 3")));
    assert!(
        line("coherd_dephase_order_parameter{").is_some(),
        "{metrics}"
    );
    // The start-time histogram: every start in one of twelve slots.
    let starts: Vec<u64> = metrics
        .lines()
        .filter(|l| l.starts_with("coherd_dephase_starts{") && l.contains("job=\"cron:vacuum\""))
        .map(|l| l.rsplit(' ').next().unwrap().parse().unwrap())
        .collect();
    assert_eq!(starts.len(), 12, "{metrics}");
    assert_eq!(starts.iter().sum::<u64>(), 3, "{metrics}");
}
