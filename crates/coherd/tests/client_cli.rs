//! Black-box tests of the client commands (`report`, `status`, `divergences`,
//! `intent`, `bench`): local validation and messages without a server, then
//! the real `coherd serve` on a free loopback port with a scratch database.

#![allow(unused_crate_dependencies)] // a test target sees every dev-dependency of its package

use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use serde_json::Value;

/// The binary, with no server or token leaking in from the environment.
fn coherd() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_coherd"));
    for var in [
        "COHERD_SERVER",
        "COHERD_TOKEN",
        "COHERD_TOKEN_REPORT",
        "COHERD_TOKEN_READ",
        "COHERD_TOKEN_ADMIN",
    ] {
        c.env_remove(var);
    }
    c
}

fn run(args: &[&str]) -> Output {
    coherd()
        .args(args)
        .output()
        .expect("the coherd binary runs")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn ok(o: Output) -> String {
    assert!(
        o.status.success(),
        "coherd failed: {}\n{}",
        stderr(&o),
        stdout(&o)
    );
    stdout(&o)
}

fn failed(o: &Output) -> String {
    assert!(
        !o.status.success(),
        "coherd should have failed; stdout: {}",
        stdout(o)
    );
    stderr(o)
}

/// A fresh scratch directory for one test.
fn scratch(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join("client_cli")
        .join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

fn write(dir: &std::path::Path, name: &str, contents: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, contents).expect("scratch file");
    path.to_string_lossy().into_owned()
}

/// A loopback port nothing listens on (bound, then released).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

const INTENT: &str = "services:
  web:
    report_interval: 10s
    facets:
      version: {target: \"2\", compatible: [\"1\"], rollout_window: 30m}
";

#[test]
fn intent_check_accepts_a_valid_file() {
    let dir = scratch("intent_ok");
    let file = write(&dir, "intent.yaml", INTENT);
    let out = ok(run(&["intent", "check", &file]));
    assert!(out.contains("ok: 1 service"), "{out}");

    let json: Value =
        serde_json::from_str(&ok(run(&["intent", "check", &file, "--json"]))).expect("JSON");
    assert_eq!(json["ok"], true);
    assert_eq!(json["services"], 1);
}

#[test]
fn intent_check_prints_every_error_with_file_line_and_column() {
    let dir = scratch("intent_bad");
    let file = write(
        &dir,
        "bad.yaml",
        "services:
  web:
    report_interval: soon
    facets:
      version: {target: \"2\", rollout_window: 30x}
  Bad_Name: {}
",
    );
    let out = run(&["intent", "check", &file]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    for (line, path) in [
        (3, "services.web.report_interval"),
        (5, "services.web.facets.version.rollout_window"),
        (6, "services.Bad_Name"),
    ] {
        let prefix = format!("{file}:{line}:");
        assert!(
            err.lines()
                .any(|l| l.starts_with(&prefix) && l.contains(path)),
            "no error at line {line} for {path}:\n{err}"
        );
    }
    assert!(err.contains("3 errors"), "{err}");
}

#[test]
fn report_refuses_a_bad_observation_before_any_network() {
    // The server address is unreachable: the error must come from local validation.
    let out = run(&[
        "report",
        "--server",
        &format!("http://127.0.0.1:{}", free_port()),
        "--retries",
        "0",
        "--service",
        "Not A Service",
        "--member",
        "m1",
        "--facet",
        "version=1",
    ]);
    let err = failed(&out);
    assert!(err.contains("service: invalid service name"), "{err}");
    assert!(err.contains("nothing was sent"), "{err}");
    assert!(!err.contains("cannot reach"), "{err}");
}

#[test]
fn report_file_errors_name_the_line_and_field() {
    let dir = scratch("report_file");
    let file = write(
        &dir,
        "obs.ndjson",
        "{\"service\":\"web\",\"member\":\"w1\"}\n{\"service\":\"web\",\"membr\":\"w2\"}\n",
    );
    let err = failed(&run(&[
        "report",
        "--file",
        &file,
        "--server",
        "http://127.0.0.1:1",
        "--retries",
        "0",
    ]));
    assert!(err.contains("line 2: membr: unknown field"), "{err}");
}

#[test]
fn report_to_an_unreachable_server_says_what_to_do() {
    let server = format!("http://127.0.0.1:{}", free_port());
    let out = run(&[
        "report",
        "--server",
        &server,
        "--retries",
        "0",
        "--timeout",
        "2s",
        "--service",
        "web",
        "--member",
        "w1",
    ]);
    let err = failed(&out);
    assert!(
        err.contains(&format!(
            "cannot reach coherd at {server}: connection refused; is `coherd serve` running?"
        )),
        "{err}"
    );
}

#[test]
fn every_client_command_has_examples_in_its_help() {
    for cmd in [
        &["report"][..],
        &["status"],
        &["divergences"],
        &["watch"],
        &["intent"],
        &["intent", "check"],
        &["intent", "get"],
        &["intent", "put"],
        &["bench"],
        &["bench", "ingest"],
    ] {
        let mut args = cmd.to_vec();
        args.push("--help");
        let out = ok(run(&args));
        assert!(
            out.contains("Example"),
            "{cmd:?} --help has no example:\n{out}"
        );
    }
}

#[test]
fn bench_refuses_a_remote_server_unless_allowed() {
    let err = failed(&run(&[
        "bench",
        "ingest",
        "--server",
        "http://192.0.2.1:7070",
        "--duration",
        "1s",
    ]));
    assert!(err.contains("--allow-remote"), "{err}");
}

/// A `coherd serve` child on a free loopback port, killed on drop.
struct Server {
    child: Child,
    url: String,
}

impl Server {
    fn start(dir: &std::path::Path, env: &[(&str, &str)]) -> Server {
        let port = free_port();
        let intent = write(dir, "intent.yaml", INTENT);
        let mut cmd = coherd();
        cmd.args([
            "serve",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--intent",
            &intent,
        ])
        .arg("--db")
        .arg(dir.join("coherd.db"))
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
        let child = cmd.spawn().expect("coherd serve starts");
        let mut server = Server {
            child,
            url: format!("http://127.0.0.1:{port}"),
        };
        // Wait until it listens (or exits).
        for _ in 0..600 {
            if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return server;
            }
            if let Ok(Some(status)) = server.child.try_wait() {
                let log = std::fs::read_to_string(dir.join("serve.log")).unwrap_or_default();
                panic!("coherd serve exited early: {status}\n{log}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("coherd serve did not listen on port {port}");
    }

    fn run(&self, args: &[&str]) -> Output {
        coherd()
            .args(args)
            .env("COHERD_SERVER", &self.url)
            .output()
            .expect("the coherd binary runs")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn report_status_and_divergences_against_a_live_server() {
    let dir = scratch("live");
    let server = Server::start(&dir, &[]);

    // w1 at target, w2 on a version nobody intends (foreign: critical drift and mixed).
    let out = ok(server.run(&[
        "report",
        "--service",
        "web",
        "--member",
        "w1",
        "--seq",
        "1",
        "--facet",
        "version=2",
        "--phase",
        "ready",
    ]));
    assert_eq!(out.trim(), "accepted 1, duplicates 0");
    ok(server.run(&[
        "report",
        "--service",
        "web",
        "--member",
        "w2",
        "--seq",
        "1",
        "--facet",
        "version=7",
        "--phase",
        "ready",
    ]));
    // The same seq again is a duplicate: acknowledged, not applied.
    let dup: Value = serde_json::from_str(&ok(server.run(&[
        "report",
        "--service",
        "web",
        "--member",
        "w2",
        "--seq",
        "1",
        "--facet",
        "version=2",
        "--json",
    ])))
    .expect("JSON");
    assert_eq!(
        dup,
        serde_json::json!({"accepted": 0, "duplicates": 1, "rejected": []})
    );

    // A file with an item beyond max_future: that item alone is refused, by
    // its line, the rest is stored, and the command fails.
    let bad = write(
        &dir,
        "future.ndjson",
        "{\"service\":\"web\",\"member\":\"w3\",\"seq\":0}\n{\"service\":\"web\",\"member\":\"w4\",\"time\":\"2200-01-01T00:00:00Z\"}\n",
    );
    let err = failed(&server.run(&["report", "--file", &bad, "--retries", "0"]));
    assert!(err.contains("line 2: time:"), "{err}");
    assert!(err.contains("max_future"), "{err}");
    assert!(err.contains("the others were stored"), "{err}");
    // A file with an invalid item: the batch is atomic, refused by its line.
    let bad = write(
        &dir,
        "invalid.ndjson",
        "{\"service\":\"web\",\"member\":\"w4\",\"seq\":0}\n{\"service\":\"web\",\"member\":\"w 4\"}\n",
    );
    let err = failed(&server.run(&["report", "--file", &bad, "--retries", "0"]));
    assert!(err.contains("line 2: member:"), "{err}");
    let good = write(
        &dir,
        "good.ndjson",
        "{\"service\":\"web\",\"member\":\"w3\",\"seq\":1,\"facets\":{\"version\":\"2\"}}\n{\"service\":\"web\",\"member\":\"w4\",\"seq\":1,\"facets\":{\"version\":\"1\"}}\n",
    );
    let out = ok(server.run(&["report", "--file", &good, "--batch", "1"]));
    assert_eq!(out.trim(), "accepted 2, duplicates 0");

    let status: Value = serde_json::from_str(&ok(server.run(&["status", "--json"]))).expect("JSON");
    let web = &status["services"][0];
    assert_eq!(web["service"], "web", "{status:#}");
    assert_eq!(web["members"], 4, "{status:#}");
    assert_eq!(web["mixed_facets"]["version"], 3, "{status:#}");
    assert!(
        web["open_divergences"]["critical"].as_u64() >= Some(1),
        "{status:#}"
    );
    let table = ok(server.run(&["status"]));
    assert!(table.contains("version(3)"), "{table}");

    let one: Value =
        serde_json::from_str(&ok(server.run(&["status", "--service", "web", "--json"])))
            .expect("JSON");
    assert_eq!(
        one["services"][0]["facets"]["version"]["target"], "2",
        "{one:#}"
    );
    let err = failed(&server.run(&["status", "--service", "nope"]));
    assert!(err.contains("knows no service \"nope\""), "{err}");

    let divs: Value = serde_json::from_str(&ok(server.run(&[
        "divergences",
        "--kind",
        "drift",
        "--json",
    ])))
    .expect("JSON");
    let drift: Vec<&Value> = divs
        .as_array()
        .expect("an array")
        .iter()
        .filter(|d| d["subjects"] == serde_json::json!(["w2"]))
        .collect();
    assert_eq!(drift.len(), 1, "{divs:#}");
    assert_eq!(drift[0]["severity"], "critical");
    let table = ok(server.run(&["divergences"]));
    assert!(table.lines().any(|l| l.starts_with("drift")), "{table}");

    let src = ok(server.run(&["intent", "get"]));
    assert!(src.contains("rollout_window: 30m"), "{src}");
}

const READER: &str = "reader-token-0123456789";
const REPORTER: &str = "reporter-token-0123456789";

#[test]
fn tokens_are_sent_and_refusals_explained() {
    let dir = scratch("tokens");
    let server = Server::start(
        &dir,
        &[
            ("COHERD_TOKEN_READ", READER),
            ("COHERD_TOKEN_REPORT", REPORTER),
        ],
    );
    let err = failed(&server.run(&["status"]));
    assert!(err.contains("needs a token"), "{err}");
    let err = failed(&server.run(&["status", "--token", "wrong-token-0123456789"]));
    assert!(err.contains("refused the token"), "{err}");
    let err = failed(&server.run(&[
        "report",
        "--token",
        READER,
        "--retries",
        "0",
        "--service",
        "web",
        "--member",
        "w1",
    ]));
    assert!(err.contains("lacks the `report` scope"), "{err}");
    ok(server.run(&[
        "report",
        "--token",
        REPORTER,
        "--service",
        "web",
        "--member",
        "w1",
    ]));
    let out = coherd()
        .args(["status", "--json"])
        .env("COHERD_SERVER", &server.url)
        .env("COHERD_TOKEN", READER)
        .output()
        .expect("runs");
    let status: Value = serde_json::from_str(&ok(out)).expect("JSON");
    assert_eq!(status["services"][0]["members"], 1, "{status:#}");
}
