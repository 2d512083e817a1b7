//! The CLI behaves like the tools people like: quiet when the reader of its
//! output goes away, completions and a man page from the same definitions as
//! `--help`, a version that names its commit, folders made for what it
//! writes, and offline commands that never reach for a server by themselves.

#![allow(unused_crate_dependencies)] // a test target sees every dev-dependency of its package

mod common;

use std::process::Command;

use common::{Server, get_json, succeeded, temp_dir};

fn coherd() -> Command {
    Command::new(env!("CARGO_BIN_EXE_coherd"))
}

#[test]
fn output_into_a_closed_pipe_ends_quietly_with_exit_0() {
    let dir = temp_dir("pipe");
    let members: String = (0..50_000).map(|i| format!("m-{i}\n")).collect();
    std::fs::write(dir.join("members.txt"), members).unwrap();
    let out = common::hang_up_after_first_read(
        coherd()
            .args(["offsets", "--window", "1h", "--members-file"])
            .arg(dir.join("members.txt")),
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "exit {:?}: {err}", out.status.code());
    assert!(!err.contains("panicked"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn completions_and_the_man_page_come_from_the_command_definitions() {
    for shell in ["bash", "zsh", "fish"] {
        let out = coherd().args(["completions", shell]).output().unwrap();
        assert!(out.status.success(), "{shell}");
        let text = String::from_utf8_lossy(&out.stdout);
        for sub in ["serve", "divergences", "capture"] {
            assert!(text.contains(sub), "{shell} completions lack {sub}");
        }
    }
    let man = coherd().arg("man").output().unwrap();
    let text = String::from_utf8_lossy(&man.stdout);
    assert!(
        man.status.success() && text.contains(".TH coherd 1"),
        "{text}"
    );
    assert!(text.contains("serve"), "the man page lists the commands");
}

#[test]
fn the_version_names_its_commit() {
    let out = coherd().arg("--version").output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("coherd 0."), "{text}");
    assert!(text.contains("commit "), "{text}");
}

#[test]
fn rules_export_makes_the_folder_it_writes_into() {
    let dir = temp_dir("rules-dir");
    let target = dir.join("not/there/yet/coherd.rules.yml");
    succeeded(
        coherd()
            .args(["rules", "export", "--format", "prometheus", "--output"])
            .arg(&target)
            .output()
            .unwrap(),
    );
    assert!(
        std::fs::read_to_string(&target)
            .unwrap()
            .contains("groups:")
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn simulate_ignores_coherd_server_and_stays_offline() {
    let s = Server::start(&temp_dir("simulate-offline"), &[]);
    let out = coherd()
        .args([
            "simulate",
            "--scenario",
            "silent",
            "--members",
            "20",
            "--seed",
            "1",
            "--json",
        ])
        .env("COHERD_SERVER", &s.url)
        .output()
        .unwrap();
    succeeded(out);
    let services = get_json(&format!("{}/v1/services", s.url));
    assert_eq!(
        services,
        serde_json::json!([]),
        "nothing may reach the server"
    );
    let (status, _) = common::request("GET", &format!("{}/v1/intent", s.url), &[], b"").unwrap();
    assert_eq!(status, 404, "the server's intent is untouched");
}

#[test]
fn serve_logs_json_lines_when_asked() {
    let dir = temp_dir("json-logs");
    let s = Server::start(&dir, &["--log-format", "json"]);
    drop(s);
    let log = std::fs::read_to_string(dir.join("serve.log")).unwrap();
    let first = log.lines().next().expect("a log line");
    let v: serde_json::Value = serde_json::from_str(first).expect("each line is JSON");
    assert_eq!(v["level"], "INFO", "{v}");
    assert!(
        v["message"].is_string() && v["timestamp"].is_string(),
        "{v}"
    );
}

#[test]
fn ready_says_whether_a_server_is_ready_by_its_exit_code() {
    let s = Server::start(&temp_dir("ready"), &[]);
    let up = coherd()
        .args(["ready", "--server", &s.url])
        .output()
        .unwrap();
    assert!(
        up.status.success(),
        "{}",
        String::from_utf8_lossy(&up.stderr)
    );
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let down = coherd()
        .args(["ready", "--server", &format!("http://127.0.0.1:{port}")])
        .output()
        .unwrap();
    assert_eq!(down.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&down.stderr).contains("not ready"));
}

#[test]
fn a_database_path_that_cannot_work_is_one_sentence_saying_what_to_do() {
    let dir = temp_dir("db-paths");
    let serve = |db: &std::path::Path| {
        let out = coherd()
            .args(["serve", "--listen", "127.0.0.1:0", "--db"])
            .arg(db)
            .output()
            .unwrap();
        assert!(!out.status.success());
        String::from_utf8_lossy(&out.stderr).trim().to_string()
    };
    let missing = serve(&dir.join("no/such/folder/coherd.db"));
    assert!(
        missing.contains("does not exist") && missing.contains("mkdir -p"),
        "{missing}"
    );
    let folder = serve(&dir);
    assert!(
        folder.contains("is a folder") && folder.contains("coherd.db"),
        "{folder}"
    );
    for e in [&missing, &folder] {
        assert_eq!(e.lines().count(), 1, "{e}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
