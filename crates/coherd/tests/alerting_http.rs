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

/// A server with `intent`, fast alert grouping plus `alerting` (indented
/// under `alerting:`), and `rest` of the config.
fn start_alerting(name: &str, intent: &str, alerting: &str, rest: &str) -> Server {
    let dir = temp_dir(name);
    std::fs::write(dir.join("intent.yaml"), intent).unwrap();
    std::fs::write(
        dir.join("coherd.yaml"),
        format!("alerting:\n  route: {{group_wait: 1s, group_interval: 2s}}\n{alerting}{rest}"),
    )
    .unwrap();
    let (config, intent) = (
        dir.join("coherd.yaml").display().to_string(),
        dir.join("intent.yaml").display().to_string(),
    );
    Server::start(&dir, &["--config", &config, "--intent", &intent])
}

#[test]
fn a_split_brain_reaches_the_webhook_is_silenced_and_resolves() {
    let (hook, got) = receiver();
    let s = start_alerting(
        "alerting",
        "services:\n  api:\n    report_interval: 1h\n    leases:\n      leader: {exclusive: true}\n",
        "",
        &format!("notify:\n  webhooks: [\"{hook}\"]\n  external_url: http://coherd.test\n"),
    );
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
    // A maintenance window ahead: pending until it starts, with its own end.
    let at = |days: i64| {
        jiff::Timestamp::now()
            .checked_add(jiff::SignedDuration::from_hours(24 * days))
            .unwrap()
            .to_string()
    };
    let (from, to) = (at(2), at(3));
    let added = coherd(&[
        "silence",
        "add",
        "service=db",
        "--starts-at",
        &from,
        "--ends-at",
        &to,
        "--comment",
        "maintenance window",
    ]);
    let window = added
        .split_whitespace()
        .nth(1)
        .unwrap()
        .trim_end_matches(',')
        .to_string();
    let list: Value = serde_json::from_str(&coherd(&["silence", "list", "--json"])).unwrap();
    let s = list
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == window.as_str())
        .unwrap_or_else(|| panic!("{window} in {list}"));
    assert_eq!(s["state"], "pending", "{s}");
    let t = |v: &Value| v.as_str().unwrap().parse::<jiff::Timestamp>().unwrap();
    assert_eq!(t(&s["starts_at"]), from.parse::<jiff::Timestamp>().unwrap());
    assert_eq!(t(&s["ends_at"]), to.parse::<jiff::Timestamp>().unwrap());
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

/// Alerts group by deploy (the default `group_by: [service, deploy]`) and
/// carry the breakdown labels; a threshold rule on any SLI fires from the
/// server's own numbers; the breakdown and SLI gauges are on /metrics.
#[test]
fn alerts_group_by_deploy_and_sli_threshold_rules_fire() {
    let (hook, got) = receiver();
    let s = start_alerting(
        "alerting-breakdown",
        "services:\n  web:\n    report_interval: 1h\n    breakdown: [region]\n    facets:\n      version: {target: \"2\"}\n",
        "  rules:\n    - {name: WebErrors, sli: error_rate, above: 0.1, service: web, for: 0s, severity: page}\n    - {name: WebForeign, match: {kinds: [drift]}, for: 0s, severity: ticket}\n",
        &format!("notify:\n  webhooks: [\"{hook}\"]\n"),
    );
    let url = format!("{}/v1/observations", s.url);
    let report = |m: &str,
                  seq: u32,
                  deploy: &str,
                  region: &str,
                  version: &str,
                  req: u32,
                  err: u32| {
        format!(
            r#"{{"service":"web","member":"{m}","seq":{seq},"deploy":"{deploy}","labels":{{"region":"{region}"}},"facets":{{"version":"{version}"}},"counters":{{"requests":{req},"errors":{err}}}}}"#
        )
    };
    for (m, deploy, region, version) in [
        ("w1", "rel-1", "eu", "1"),
        ("w2", "rel-2", "us", "1"),
        ("w3", "rel-2", "us", "2"),
    ] {
        assert_eq!(
            post_json(&url, &report(m, 1, deploy, region, version, 0, 0)).0,
            200
        );
        assert_eq!(
            post_json(&url, &report(m, 2, deploy, region, version, 100, 50)).0,
            200
        );
    }
    let drift = |v: &Value, deploy: &str| {
        v["groupLabels"]["deploy"] == deploy && has_alert(v, "WebForeign", "firing")
    };
    let rel1 = wait_for(&got, "drift of rel-1", |v| drift(v, "rel-1"));
    let rel2 = wait_for(&got, "drift of rel-2", |v| drift(v, "rel-2"));
    let alert = |v: &Value| v["alerts"][0]["labels"].clone();
    assert_eq!(alert(&rel1)["region"], "eu", "{rel1}");
    assert_eq!(alert(&rel2)["region"], "us", "{rel2}");
    wait_for(&got, "the error-rate rule", |v| {
        has_alert(v, "WebErrors", "firing")
    });

    let divergences = get_json(&format!("{}/v1/divergences?kind=drift", s.url));
    let w1 = divergences
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["subjects"][0] == "w1")
        .expect("w1 drifts");
    assert_eq!(
        (w1["deploy"].as_str(), w1["labels"]["region"].as_str()),
        (Some("rel-1"), Some("eu"))
    );

    let (_, metrics) = request("GET", &format!("{}/metrics", s.url), &[], b"").unwrap();
    for series in [
        r#"coherd_breakdown_coherence_ratio{service="web",label="region",value="us"} 0.5"#,
        r#"coherd_breakdown_members{service="web",label="region",value="eu",state="live"} 1"#,
        r#"coherd_error_window_ratio{service="web",window="5m"} 0.5"#,
        r#"coherd_exposure_unapproved_window_ratio{service="web",facet="version",window="5m"}"#,
    ] {
        assert!(metrics.contains(series), "{series} not in\n{metrics}");
    }
}

/// A receiver that never answers holds back only itself: the live one gets
/// the alert within its group timing and a little, and the dead one's
/// attempts and queue show on /metrics.
#[test]
fn a_receiver_that_never_answers_does_not_hold_the_others_back() {
    // Accepts connections and never answers.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_url = format!("http://{}/hook", dead.local_addr().unwrap());
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for s in dead.incoming().flatten() {
            held.push(s);
        }
    });
    let (hook, got) = receiver();
    let s = start_alerting(
        "alerting-dead-receiver",
        "services:\n  api:\n    report_interval: 1h\n    leases:\n      leader: {exclusive: true}\n",
        "",
        &format!("notify:\n  webhooks: [\"{dead_url}\", \"{hook}\"]\n"),
    );
    let url = format!("{}/v1/observations", s.url);
    let started = Instant::now();
    for (m, epoch) in [("a", 1), ("b", 2)] {
        let body = format!(
            r#"{{"service":"api","member":"{m}","leases":[{{"resource":"leader","epoch":{epoch},"expires":"2099-01-01T00:00:00Z"}}]}}"#
        );
        assert_eq!(post_json(&url, &body).0, 200);
    }
    wait_for(&got, "split brain at the live receiver", |v| {
        has_alert(v, "CoherdSplitBrain", "firing")
    });
    // group_wait 1 s, a tick of the alerting task, delivery: well under one
    // attempt's 10 s timeout at the dead receiver, which used to come first.
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(8),
        "the live receiver waited {took:?}"
    );
    let (_, metrics) = request("GET", &format!("{}/metrics", s.url), &[], b"").unwrap();
    for series in [
        r#"coherd_notify_attempts_total{receiver="webhook-0"}"#,
        r#"coherd_notify_attempts_total{receiver="webhook-1"}"#,
        r#"coherd_notify_queue_depth{receiver="webhook-0"} 1"#,
        r#"coherd_notify_oldest_undelivered_age_seconds{receiver="webhook-0"}"#,
    ] {
        assert!(metrics.contains(series), "{series} not in\n{metrics}");
    }
}
