//! Black-box: `coherd demo` starts a server, drives the fleet through it and stops cleanly.

#![allow(unused_crate_dependencies)] // a test target sees every dev-dependency of its package

mod common;

use std::process::Command;

use common::{Server, get_json, request, temp_dir};

/// A demo pointed at an address another server holds says so and sends it
/// nothing: that server's fleet and intent are untouched.
#[test]
fn demo_on_an_occupied_address_leaves_the_server_there_untouched() {
    let s = Server::start(&temp_dir("demo-occupied"), &[]);
    let addr = s.url.trim_start_matches("http://").to_string();
    let out = Command::new(env!("CARGO_BIN_EXE_coherd"))
        .args([
            "demo",
            "--duration",
            "5s",
            "--plain",
            "--members",
            "20",
            "--listen",
            &addr,
        ])
        .output()
        .expect("coherd runs");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("cannot listen") && err.contains("--listen"),
        "{err}"
    );
    assert_eq!(
        get_json(&format!("{}/v1/services", s.url)),
        serde_json::json!([])
    );
    let (status, _) = request("GET", &format!("{}/v1/intent", s.url), &[], b"").unwrap();
    assert_eq!(status, 404, "the other server's intent is untouched");
}

#[test]
fn demo_runs_a_server_and_a_fleet_then_stops() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let out = Command::new(env!("CARGO_BIN_EXE_coherd"))
        .args([
            "demo",
            "--duration",
            "7s",
            "--plain",
            "--members",
            "50",
            "--listen",
            &format!("127.0.0.1:{port}"),
        ])
        .output()
        .expect("coherd runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains(&format!("http://127.0.0.1:{port}")),
        "{stdout}"
    );
    assert!(
        stdout.contains("shop       members    50"),
        "the fleet reached the server: {stdout}"
    );
    assert!(stdout.contains("coherd demo stopped"), "{stdout}");
}

#[test]
fn demo_refuses_a_port_in_use_with_a_hint() {
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = busy.local_addr().unwrap().port();
    let out = Command::new(env!("CARGO_BIN_EXE_coherd"))
        .args([
            "demo",
            "--duration",
            "3s",
            "--plain",
            "--listen",
            &format!("127.0.0.1:{port}"),
        ])
        .output()
        .expect("coherd runs");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--listen"), "{err}");
}
