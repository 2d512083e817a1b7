//! With a real Alertmanager on loopback: a split brain driven through coherd
//! arrives as an alert, a silence in coherd holds another back, and the
//! resolution reaches Alertmanager after the divergence resolves.
//!
//! Needs Debian's `prometheus-alertmanager` (CI installs it). Set
//! `COHERD_SKIP_TOOL_TESTS=1` to skip on a machine without it.

#![allow(unused_crate_dependencies)] // a test target sees every dev-dependency of its package

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{Server, post_json, request, temp_dir, ureq_get};
use serde_json::Value;

struct Alertmanager {
    child: Child,
    url: String,
}

impl Drop for Alertmanager {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_alertmanager(dir: &std::path::Path) -> Option<Alertmanager> {
    if !common::tool_available(
        "prometheus-alertmanager",
        "--version",
        "apt-get install prometheus-alertmanager",
    ) {
        return None;
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    std::fs::write(
        dir.join("am.yml"),
        "route:\n  receiver: sink\n  group_wait: 1s\nreceivers:\n  - name: sink\n",
    )
    .unwrap();
    let child = Command::new("prometheus-alertmanager")
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .arg("--cluster.listen-address=")
        .arg(format!("--storage.path={}", dir.join("am-data").display()))
        .arg(format!("--config.file={}", dir.join("am.yml").display()))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("alertmanager starts");
    let am = Alertmanager {
        child,
        url: format!("http://127.0.0.1:{port}"),
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while ureq_get(&format!("{}/-/ready", am.url)).map(|r| r.0).ok() != Some(200) {
        assert!(
            Instant::now() < deadline,
            "alertmanager did not become ready"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    Some(am)
}

fn am_alerts(am: &Alertmanager) -> Vec<Value> {
    let (status, body) = request("GET", &format!("{}/api/v2/alerts", am.url), &[], b"").unwrap();
    assert_eq!(status, 200, "{body}");
    serde_json::from_str::<Value>(&body)
        .unwrap()
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn named<'a>(alerts: &'a [Value], name: &str, member: Option<&str>) -> Option<&'a Value> {
    alerts.iter().find(|a| {
        a["labels"]["alertname"] == name && member.is_none_or(|m| a["labels"]["member"] == m)
    })
}

#[test]
fn split_brain_reaches_a_real_alertmanager_is_silenced_and_resolves() {
    let dir = temp_dir("alertmanager");
    let Some(am) = start_alertmanager(&dir) else {
        return;
    };
    std::fs::write(dir.join("intent.yaml"), "services:\n  api:\n    report_interval: 1h\n    leases:\n      leader: {exclusive: true}\n").unwrap();
    std::fs::write(
        dir.join("coherd.yaml"),
        format!("alerting:\n  route: {{group_wait: 1s, group_interval: 2s}}\nnotify:\n  alertmanagers: [\"{}\"]\n", am.url),
    )
    .unwrap();
    let (config, intent) = (
        dir.join("coherd.yaml").display().to_string(),
        dir.join("intent.yaml").display().to_string(),
    );
    let s = Server::start(&dir, &["--config", &config, "--intent", &intent]);
    let (status, body) = request(
        "POST",
        &format!("{}/v1/silences", s.url),
        &[("Content-Type", "application/json")],
        br#"{"matchers":["alertname=CoherdStaleEpoch","member=c"],"duration":"1h","comment":"known stale leader"}"#,
    )
    .unwrap();
    assert_eq!(status, 201, "{body}");

    let url = format!("{}/v1/observations", s.url);
    let lease = |m: &str, epoch: u32| {
        format!(
            r#"{{"service":"api","member":"{m}","leases":[{{"resource":"leader","epoch":{epoch},"expires":"2099-01-01T00:00:00Z"}}]}}"#
        )
    };
    for (m, e) in [("a", 1), ("b", 3), ("c", 2)] {
        assert_eq!(post_json(&url, &lease(m, e)).0, 200);
    }
    let opened = Instant::now();
    let deadline = opened + Duration::from_secs(20);
    let alerts = loop {
        let alerts = am_alerts(&am);
        if named(&alerts, "CoherdSplitBrain", None).is_some()
            && named(&alerts, "CoherdStaleEpoch", Some("a")).is_some()
        {
            break alerts;
        }
        assert!(
            Instant::now() < deadline,
            "the split brain did not reach Alertmanager: {alerts:#?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    // group_wait (1 s) plus one tick (1 s), with slack for a loaded machine.
    assert!(
        opened.elapsed() < Duration::from_secs(10),
        "took {:?}",
        opened.elapsed()
    );
    let sb = named(&alerts, "CoherdSplitBrain", None).unwrap();
    assert_eq!(
        (
            sb["labels"]["severity"].as_str(),
            sb["labels"]["service"].as_str()
        ),
        (Some("page"), Some("api"))
    );
    assert!(
        named(&alerts, "CoherdStaleEpoch", Some("c")).is_none(),
        "the silence in coherd held c back: {alerts:#?}"
    );

    // Everyone but a lets go: the split brain resolves, and so does it in Alertmanager.
    for m in ["b", "c"] {
        assert_eq!(
            post_json(&url, &format!(r#"{{"service":"api","member":"{m}"}}"#)).0,
            200
        );
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let alerts = am_alerts(&am);
        if named(&alerts, "CoherdSplitBrain", None).is_none() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the resolution did not reach Alertmanager: {alerts:#?}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}
