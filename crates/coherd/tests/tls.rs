//! HTTPS: the server speaks TLS with the certificate it is given, takes a
//! renewed one on SIGHUP without a restart, and refuses to put tokens on a
//! non-loopback address in clear unless told so.

#![allow(unused_crate_dependencies)] // a test target sees every dev-dependency of its package

mod common;

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{Server, temp_dir};
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const TOKEN: &str = "admin-token-0123456789";

/// A self-signed certificate for 127.0.0.1 written as PEM; its DER back.
fn write_cert(dir: &Path) -> CertificateDer<'static> {
    let cert = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()]).unwrap();
    std::fs::write(dir.join("tls.crt"), cert.cert.pem()).unwrap();
    std::fs::write(dir.join("tls.key"), cert.key_pair.serialize_pem()).unwrap();
    cert.cert.der().clone()
}

/// One request over TLS trusting only `trusted`: (status, body), or the TLS error.
fn https(
    addr: &str,
    trusted: &CertificateDer<'static>,
    request: &str,
) -> Result<(u16, String), String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(trusted.clone()).unwrap();
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
        let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
        let tcp = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| e.to_string())?;
        let name = ServerName::try_from("127.0.0.1").unwrap();
        let mut tls = connector
            .connect(name, tcp)
            .await
            .map_err(|e| e.to_string())?;
        tls.write_all(request.as_bytes())
            .await
            .map_err(|e| e.to_string())?;
        let mut raw = Vec::new();
        let _ = tls.read_to_end(&mut raw).await;
        let text = String::from_utf8_lossy(&raw).to_string();
        let status = text.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0);
        let body = text.split_once("\r\n\r\n").map_or("", |p| p.1).to_string();
        Ok((status, body))
    })
}

fn get(path: &str) -> String {
    format!(
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {TOKEN}\r\nConnection: close\r\n\r\n"
    )
}

fn tls_server(dir: &Path) -> (Server, String) {
    let config = dir.join("coherd.yaml");
    std::fs::write(
        &config,
        format!("tokens:\n  - {{token: \"{TOKEN}\", scopes: [admin]}}\n"),
    )
    .unwrap();
    let (cert, key) = (dir.join("tls.crt"), dir.join("tls.key"));
    let s = Server::spawn(
        dir,
        &[
            "--config",
            &config.display().to_string(),
            "--tls-cert",
            &cert.display().to_string(),
            "--tls-key",
            &key.display().to_string(),
        ],
    );
    let addr = s.url.trim_start_matches("http://").to_string();
    (s, addr)
}

/// Retries `f` until it gives Some or 30 s pass.
fn eventually<T>(mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn https_serves_with_the_given_certificate_and_takes_a_renewed_one_on_sighup() {
    let dir = temp_dir("tls");
    let first = write_cert(&dir);
    let (server, addr) = tls_server(&dir);
    let ready = eventually(|| {
        https(&addr, &first, &get("/readyz"))
            .ok()
            .filter(|r| r.0 == 200)
    });
    assert!(ready.is_some(), "the server should answer over TLS");
    let (status, body) = https(&addr, &first, &get("/v1/services")).unwrap();
    assert_eq!((status, body.as_str()), (200, "[]"));

    // Plain HTTP on the TLS port gets no answer.
    let plain = common::request("GET", &format!("http://{addr}/healthz"), &[], b"");
    assert!(
        plain.map_or(true, |(status, _)| status != 200),
        "plain HTTP must not be served"
    );

    // A renewed certificate: SIGHUP, and new connections present it.
    let second = write_cert(&dir);
    let hup = Command::new("kill")
        .args(["-HUP", &server.child.id().to_string()])
        .status()
        .unwrap();
    assert!(hup.success());
    let renewed = eventually(|| {
        https(&addr, &second, &get("/healthz"))
            .ok()
            .filter(|r| r.0 == 200)
    });
    assert!(
        renewed.is_some(),
        "the renewed certificate should be served after SIGHUP"
    );
    assert!(
        https(&addr, &first, &get("/healthz")).is_err(),
        "the old certificate should be gone"
    );

    // A broken file on SIGHUP keeps the certificate in use.
    std::fs::write(dir.join("tls.key"), "not a key").unwrap();
    Command::new("kill")
        .args(["-HUP", &server.child.id().to_string()])
        .status()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        https(&addr, &second, &get("/healthz")).map(|r| r.0),
        Ok(200)
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn tokens_off_loopback_need_tls_or_an_explicit_yes() {
    let dir = temp_dir("tls-refuse");
    let config = dir.join("coherd.yaml");
    std::fs::write(
        &config,
        format!("tokens:\n  - {{token: \"{TOKEN}\", scopes: [admin]}}\n"),
    )
    .unwrap();
    let serve = |extra: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_coherd"))
            .args(["serve", "--listen", "0.0.0.0:0", "--db"])
            .arg(dir.join("coherd.db"))
            .arg("--config")
            .arg(&config)
            .args(extra)
            .env_remove("COHERD_TOKEN_ADMIN")
            .output()
            .unwrap()
    };
    let refused = serve(&[]);
    assert!(!refused.status.success());
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(
        err.contains("--tls-cert") && err.contains("--allow-insecure-http"),
        "{err}"
    );

    let half = serve(&["--tls-cert", "x.crt"]);
    assert!(
        !half.status.success(),
        "a certificate without a key is refused"
    );

    let missing = serve(&["--tls-cert", "missing.crt", "--tls-key", "missing.key"]);
    assert!(!missing.status.success());
    let err = String::from_utf8_lossy(&missing.stderr);
    assert!(
        err.contains("missing.crt"),
        "the error names the file: {err}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// The CLI speaks HTTPS too, trusting a CA certificate it is given.
#[test]
fn the_cli_reads_over_https_with_a_given_ca_certificate() {
    let dir = temp_dir("tls-cli");
    let cert = write_cert(&dir);
    let (_server, addr) = tls_server(&dir);
    assert!(
        eventually(|| https(&addr, &cert, &get("/readyz"))
            .ok()
            .filter(|r| r.0 == 200))
        .is_some()
    );
    let status = |extra: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_coherd"))
            .args([
                "status",
                "--json",
                "--server",
                &format!("https://{addr}"),
                "--token",
                TOKEN,
            ])
            .args(extra)
            .output()
            .unwrap()
    };
    let trusted = status(&["--ca-cert", &dir.join("tls.crt").display().to_string()]);
    assert!(
        trusted.status.success(),
        "{}",
        String::from_utf8_lossy(&trusted.stderr)
    );
    let untrusted = status(&[]);
    assert!(
        !untrusted.status.success(),
        "an unknown certificate must not be trusted"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
