//! Black-box: alerts leave `coherd serve` as Alertmanager webhook payloads,
//! silences hold them back, and resolutions follow.

#![allow(unused_crate_dependencies)] // a test target sees every dev-dependency of its package

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{Server, get_json, post_json, request, temp_dir};
use serde_json::Value;

/// A webhook receiver on loopback that keeps every JSON body it gets.
fn receiver() -> (String, Arc<Mutex<Vec<Value>>>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let got: Arc<Mutex<Vec<Value>>> = Arc::default();
    let sink = got.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut reader = BufReader::new(stream);
            let mut len = 0;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    len = v.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0; len];
            if reader.read_exact(&mut body).is_ok()
                && let Ok(v) = serde_json::from_slice(&body)
            {
                sink.lock().unwrap().push(v);
            }
            let _ = reader
                .get_mut()
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
        }
    });
    (url, got)
}

fn wait_for(got: &Arc<Mutex<Vec<Value>>>, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(v) = got.lock().unwrap().iter().find(|v| pred(v)) {
            return v.clone();
        }
        assert!(
            Instant::now() < deadline,
            "no webhook for {what}; got {:#?}",
            got.lock().unwrap()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn has_alert(v: &Value, name: &str, status: &str) -> bool {
    v["alerts"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|a| a["labels"]["alertname"] == name && a["status"] == status)
}

#[test]
fn a_split_brain_reaches_the_webhook_is_silenced_and_resolves() {
    let (hook, got) = receiver();
    let dir = temp_dir("alerting");
    std::fs::write(dir.join("intent.yaml"), "services:\n  api:\n    report_interval: 1h\n    leases:\n      leader: {exclusive: true}\n").unwrap();
    std::fs::write(
        dir.join("coherd.yaml"),
        format!("alerting:\n  route: {{group_wait: 1s, group_interval: 2s}}\nnotify:\n  webhooks: [\"{hook}\"]\n  external_url: http://coherd.test\n"),
    )
    .unwrap();
    let (config, intent) = (
        dir.join("coherd.yaml").display().to_string(),
        dir.join("intent.yaml").display().to_string(),
    );
    let s = Server::start(&dir, &["--config", &config, "--intent", &intent]);
    let url = format!("{}/v1/observations", s.url);
    let lease = |m: &str, epoch: u32| {
        format!(
            r#"{{"service":"api","member":"{m}","leases":[{{"resource":"leader","epoch":{epoch},"expires":"2099-01-01T00:00:00Z"}}]}}"#
        )
    };
    assert_eq!(post_json(&url, &lease("a", 1)).0, 200);
    assert_eq!(post_json(&url, &lease("b", 2)).0, 200);

    let v = wait_for(&got, "split brain", |v| {
        has_alert(v, "CoherdSplitBrain", "firing")
    });
    assert_eq!(
        (
            v["version"].as_str(),
            v["status"].as_str(),
            v["externalURL"].as_str()
        ),
        (Some("4"), Some("firing"), Some("http://coherd.test"))
    );
    assert_eq!(v["groupLabels"]["service"], "api");
    let alerts = get_json(&format!("{}/v1/alerts", s.url));
    assert!(
        alerts
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["labels"]["alertname"] == "CoherdStaleEpoch"),
        "{alerts}"
    );

    // Silence stale epochs, then a second split brain on another resource is
    // not needed: a new stale epoch (member c, epoch 1) must stay silent.
    let (status, body) = request(
        "POST",
        &format!("{}/v1/silences", s.url),
        &[("Content-Type", "application/json")],
        br#"{"matchers":["alertname=CoherdStaleEpoch","member=c"],"duration":"1h","comment":"known","created_by":"test"}"#,
    )
    .unwrap();
    assert_eq!(status, 201, "{body}");
    assert_eq!(post_json(&url, &lease("c", 1)).0, 200);
    std::thread::sleep(Duration::from_secs(5));
    let leaked = got.lock().unwrap().iter().any(|v| {
        v["alerts"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|a| a["labels"]["member"] == "c")
    });
    assert!(!leaked, "a silenced alert was notified");
    let silences = get_json(&format!("{}/v1/silences", s.url));
    assert_eq!(silences[0]["state"], "active");

    // b gives the lease up: the split brain resolves and the receiver hears it.
    assert_eq!(post_json(&url, r#"{"service":"api","member":"b"}"#).0, 200);
    assert_eq!(post_json(&url, r#"{"service":"api","member":"c"}"#).0, 200);
    wait_for(&got, "resolved split brain", |v| {
        has_alert(v, "CoherdSplitBrain", "resolved")
    });
}

#[test]
fn silence_cli_adds_lists_and_expires() {
    let dir = temp_dir("silence-cli");
    let mut s = Server::start(&dir, &[]);
    let base = s.url.clone();
    let coherd = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_coherd"))
            .args(args)
            .args(["--server", &base])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    let added = coherd(&[
        "silence",
        "add",
        "kind=drift",
        "service=checkout",
        "--duration",
        "2h",
        "--comment",
        "rollout",
    ]);
    let id = added.split_whitespace().nth(1).unwrap().to_string();
    let list: Value = serde_json::from_str(&coherd(&["silence", "list", "--json"])).unwrap();
    assert_eq!(list[0]["id"], id.as_str());
    assert_eq!(list[0]["state"], "active");
    assert_eq!(list[0]["matchers"][0], "kind=\"drift\"");
    s.kill_and_restart();
    let list: Value = serde_json::from_str(&coherd(&["silence", "list", "--json"])).unwrap();
    assert_eq!(
        (list[0]["id"].as_str(), list[0]["state"].as_str()),
        (Some(id.as_str()), Some("active")),
        "silences survive a restart"
    );
    coherd(&["silence", "expire", &id]);
    let list: Value = serde_json::from_str(&coherd(&["silence", "list", "--json"])).unwrap();
    assert_eq!(list[0]["state"], "expired");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_coherd"))
        .args(["silence", "add", "kind", "--server", &base])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("name=value"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn slo_error_budget_is_served_by_the_api_and_metrics() {
    let dir = temp_dir("slo");
    std::fs::write(
        dir.join("intent.yaml"),
        "services:\n  api:\n    report_interval: 1h\n    facets:\n      version: {target: \"2\"}\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("coherd.yaml"),
        "alerting:\n  slos:\n    - {service: api, objective: 0.99, min_events: 0.01}\n",
    )
    .unwrap();
    let (config, intent) = (
        dir.join("coherd.yaml").display().to_string(),
        dir.join("intent.yaml").display().to_string(),
    );
    let s = Server::start(&dir, &["--config", &config, "--intent", &intent]);
    let url = format!("{}/v1/observations", s.url);
    assert_eq!(post_json(&url, r#"[{"service":"api","member":"a","facets":{"version":"2"}},{"service":"api","member":"b","facets":{"version":"9"}}]"#).0, 200);
    let deadline = Instant::now() + Duration::from_secs(40);
    let status = loop {
        let slos = get_json(&format!("{}/v1/slos", s.url));
        if let Some(st) = slos
            .as_array()
            .and_then(|a| a.first())
            .map(|x| x["status"].clone())
            && st["error_budget_remaining"].is_number()
        {
            break st;
        }
        assert!(Instant::now() < deadline, "no SLO status: {slos}");
        std::thread::sleep(Duration::from_millis(500));
    };
    assert!(
        status["error_budget_remaining"].as_f64().unwrap() < 0.0,
        "half the fleet incoherent overspends a 1 % budget: {status}"
    );
    let (_, metrics) = request("GET", &format!("{}/metrics", s.url), &[], b"").unwrap();
    assert!(
        metrics.contains(
            "coherd_slo_error_budget_remaining_ratio{service=\"api\",objective=\"0.99\"}"
        ),
        "{metrics}"
    );
}
