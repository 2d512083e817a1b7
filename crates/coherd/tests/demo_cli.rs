//! Black-box: `coherd demo` starts a server, drives the fleet through it and stops cleanly.

#![allow(unused_crate_dependencies)] // a test target sees every dev-dependency of its package

use std::process::Command;

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
