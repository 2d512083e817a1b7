//! Black-box: coherd's Prometheus source against a real Prometheus scraping
//! small exporters this test runs: a version change in an exporter becomes a
//! `drift` divergence in coherd, and a failing target becomes a non-serving phase.

#![allow(unused_crate_dependencies)] // a test target sees every dev-dependency of its package

mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};

use common::{Server, get_json, temp_dir, wait_until};

/// An exporter on loopback serving `app_build_info{version=...} 1`, or 500 when `version` is empty.
fn exporter(version: Arc<Mutex<String>>) -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut reader = BufReader::new(stream);
            let mut line = String::new();
            while reader.read_line(&mut line).unwrap_or(0) > 0 && line != "\r\n" {
                line.clear();
            }
            let v = version.lock().unwrap().clone();
            let answer = if v.is_empty() {
                "HTTP/1.1 500 Internal Server Error\r\ncontent-length: 0\r\nconnection: close\r\n\r\n".to_string()
            } else {
                let body =
                    format!("# TYPE app_build_info gauge\napp_build_info{{version=\"{v}\"}} 1\n");
                format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                )
            };
            let _ = reader.get_mut().write_all(answer.as_bytes());
        }
    });
    addr
}

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn member(url: &str, m: &str) -> serde_json::Value {
    common::ureq_get(&format!("{url}/v1/services/app/members/{m}"))
        .ok()
        .and_then(|(s, b)| (s == 200).then(|| serde_json::from_str(&b).unwrap()))
        .unwrap_or_default()
}

#[test]
fn a_version_change_seen_through_prometheus_becomes_drift_in_coherd() {
    if !common::tool_available("prometheus", "--version", "apt-get install prometheus") {
        return;
    }
    let dir = temp_dir("prom-source");
    let (v1, v2) = (
        Arc::new(Mutex::new("1.0".to_string())),
        Arc::new(Mutex::new("1.0".to_string())),
    );
    let (e1, e2) = (exporter(v1.clone()), exporter(v2.clone()));
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    std::fs::write(
        dir.join("prometheus.yml"),
        format!("global: {{scrape_interval: 1s, scrape_timeout: 900ms}}\nscrape_configs:\n  - job_name: app\n    static_configs:\n      - targets: [\"{e1}\", \"{e2}\"]\n"),
    )
    .unwrap();
    let _prometheus = Killed(
        Command::new("prometheus")
            .arg(format!(
                "--config.file={}",
                dir.join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("tsdb").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("prometheus.log")).unwrap())
            .spawn()
            .expect("prometheus starts"),
    );
    let prom = format!("http://127.0.0.1:{port}");
    wait_until("Prometheus ready", 30, || {
        common::ureq_get(&format!("{prom}/-/ready")).is_ok_and(|r| r.0 == 200)
    });
    std::fs::write(dir.join("intent.yaml"), "services:\n  app:\n    report_interval: 1h\n    facets:\n      version: {target: \"1.0\"}\n").unwrap();
    std::fs::write(
        dir.join("coherd.yaml"),
        format!(
            "sources:\n  prometheus:\n    - name: local\n      url: {prom}\n      interval: 1s\n      timeout: 900ms\n      queries:\n        \
             - {{query: app_build_info, facets: {{version: version}}}}\n        - {{query: 'up{{job=\"app\"}}', phase: {{up: ready, down: stopped}}}}\n"
        ),
    )
    .unwrap();
    let (config, intent) = (
        dir.join("coherd.yaml").display().to_string(),
        dir.join("intent.yaml").display().to_string(),
    );
    let s = Server::start(&dir, &["--config", &config, "--intent", &intent]);
    wait_until("both exporters in coherd at 1.0 and ready", 40, || {
        [&e1, &e2].iter().all(|e| {
            let m = member(&s.url, e);
            m["facets"]["version"] == "1.0" && m["facets"]["phase"] == "ready"
        })
    });
    // The second exporter moves to 2.0: drift opens for it, and only it.
    *v2.lock().unwrap() = "2.0".into();
    let took = wait_until("drift on the changed exporter", 30, || {
        get_json(&format!("{}/v1/divergences?kind=drift", s.url))
            .as_array()
            .is_some_and(|d| d.iter().any(|d| d["subjects"][0] == e2.as_str()))
    });
    eprintln!("version change to drift in coherd: {took:?} (scrape 1s, poll 1s)");
    let drifts = get_json(&format!("{}/v1/divergences?kind=drift", s.url));
    assert_eq!(drifts.as_array().unwrap().len(), 1, "{drifts}");
    assert_eq!(drifts[0]["evidence"]["value"], "2.0");
    // The first exporter fails its scrapes: up is 0, its phase non-serving.
    v1.lock().unwrap().clear();
    wait_until("the failing target's phase", 30, || {
        member(&s.url, &e1)["facets"]["phase"] == "stopped"
    });
    let metrics = common::ureq_get(&format!("{}/metrics", s.url)).unwrap().1;
    assert!(
        metrics.contains("coherd_source_polls_total{source=\"local\",outcome=\"ok\"}"),
        "{metrics}"
    );
}
