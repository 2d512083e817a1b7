//! Starting the real `coherd serve` on a free loopback port for black-box tests.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running `coherd serve` child; killed on drop.
pub(crate) struct Server {
    pub child: Child,
    pub url: String,
    pub dir: PathBuf,
    args: Vec<String>,
}

/// A fresh temporary directory.
pub(crate) fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "coherd-test-{name}-{}-{}",
        std::process::id(),
        fastrand::u64(..)
    ));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

impl Server {
    /// Starts a server with a database in `dir` and extra arguments, and
    /// waits until it is ready.
    pub(crate) fn start(dir: &Path, extra: &[&str]) -> Server {
        let mut s = Server::spawn(dir, extra);
        s.wait_ready();
        s
    }

    /// Starts a server without waiting for it (one that speaks HTTPS, say).
    pub(crate) fn spawn(dir: &Path, extra: &[&str]) -> Server {
        let port = free_port();
        let mut args = vec![
            "serve".to_string(),
            "--db".to_string(),
            dir.join("coherd.db").display().to_string(),
            "--listen".to_string(),
            format!("127.0.0.1:{port}"),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        Server {
            child: spawn(&args, dir),
            url: format!("http://127.0.0.1:{port}"),
            dir: dir.to_path_buf(),
            args,
        }
    }

    /// Kills with SIGKILL and starts again on the same port and database.
    pub(crate) fn kill_and_restart(&mut self) {
        self.kill9();
        self.restart();
    }

    /// SIGTERM, and waits until the server has stopped (it checkpoints first).
    pub(crate) fn stop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let status = self.child.wait().expect("wait");
        assert!(status.success(), "coherd serve stopped with {status}");
    }

    /// Starts again on the same port and database after [`stop`](Server::stop) or [`kill9`](Server::kill9).
    pub(crate) fn restart(&mut self) {
        self.child = spawn(&self.args, &self.dir);
        self.wait_ready();
    }

    /// The server's log so far.
    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("serve.log")).unwrap_or_default()
    }

    /// SIGKILL, no chance to flush.
    pub(crate) fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                let log = std::fs::read_to_string(self.dir.join("serve.log")).unwrap_or_default();
                panic!("coherd serve exited with {status}:\n{log}");
            }
            if let Ok(r) = ureq_get(&format!("{}/readyz", self.url))
                && r.0 == 200
            {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("coherd serve did not become ready");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn(args: &[String], dir: &Path) -> Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("serve.log"))
        .expect("log file");
    Command::new(env!("CARGO_BIN_EXE_coherd"))
        .args(args)
        .env_remove("COHERD_TOKEN_ADMIN")
        .env_remove("COHERD_TOKEN_READ")
        .env_remove("COHERD_TOKEN_REPORT")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("coherd runs")
}

/// A minimal blocking HTTP/1.1 request over a fresh connection: (status, body).
pub(crate) fn request(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> std::io::Result<(u16, String)> {
    request_with_head(method, url, headers, body).map(|(status, _, body)| (status, body))
}

/// [`request`], with the response head (status line and headers) as well.
pub(crate) fn request_with_head(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> std::io::Result<(u16, String, String)> {
    use std::io::{Read, Write};
    let rest = url.strip_prefix("http://").expect("http url");
    let (host, path) = rest
        .split_once('/')
        .map_or((rest, "/".to_string()), |(h, p)| (h, format!("/{p}")));
    let mut s = std::net::TcpStream::connect(host)?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes())?;
    s.write_all(body)?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw).to_string();
    let status = text.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_string()
    };
    Ok((status, head.to_string(), body))
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((len, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(len.trim(), 16).unwrap_or(0);
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].strip_prefix("\r\n").unwrap_or(&rest[n..]);
    }
    out
}

pub(crate) fn ureq_get(url: &str) -> std::io::Result<(u16, String)> {
    request("GET", url, &[], b"")
}

/// GET and parse JSON, asserting 200.
pub(crate) fn get_json(url: &str) -> serde_json::Value {
    let (status, body) = ureq_get(url).expect("GET");
    assert_eq!(status, 200, "GET {url}: {body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {url}: {e}: {body}"))
}

/// POST JSON, returning (status, parsed body).
pub(crate) fn post_json(url: &str, body: &str) -> (u16, serde_json::Value) {
    let (status, text) = request(
        "POST",
        url,
        &[("Content-Type", "application/json")],
        body.as_bytes(),
    )
    .expect("POST");
    (
        status,
        serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text)),
    )
}

/// Runs `coherd replay --json` on a stream (with an intent, or with the
/// intents the stream holds) and returns its divergence records, failing the
/// test when replay fails.
pub(crate) fn replay_divergences(intent: Option<&Path>, stream: &Path) -> Vec<serde_json::Value> {
    let mut replay = Command::new(env!("CARGO_BIN_EXE_coherd"));
    replay.args(["replay", "--json"]);
    if let Some(intent) = intent {
        replay.arg("--intent").arg(intent);
    }
    let out = replay.arg(stream).output().expect("coherd runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    report["divergences"]
        .as_array()
        .expect("a divergence list")
        .clone()
}

/// Whether an external tool the tests drive is installed. Without it the
/// test fails with how to install it, unless `COHERD_SKIP_TOOL_TESTS=1` says
/// to skip (then false).
pub(crate) fn tool_available(program: &str, version_arg: &str, install: &str) -> bool {
    let found = Command::new(program)
        .arg(version_arg)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if found {
        return true;
    }
    if std::env::var("COHERD_SKIP_TOOL_TESTS").as_deref() == Ok("1") {
        eprintln!("skipped: {program} is not installed and COHERD_SKIP_TOOL_TESTS=1");
        return false;
    }
    panic!("{program} is not installed: {install} (or set COHERD_SKIP_TOOL_TESTS=1 to skip)");
}

/// The target of a `Link: <...>; rel="next"` header in a response head.
pub(crate) fn next_link(head: &str) -> Option<String> {
    head.lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("link").then_some(value)
        })
        .filter(|v| v.contains("rel=\"next\""))
        .map(|v| {
            v.trim()
                .trim_start_matches('<')
                .split('>')
                .next()
                .unwrap_or("")
                .to_string()
        })
}

/// The output of a command that must have succeeded; its standard error
/// otherwise.
pub(crate) fn succeeded(out: std::process::Output) -> std::process::Output {
    assert!(
        out.status.success(),
        "exit {:?}: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// `coherd capture export` of the database in `dir` into `out`.
pub(crate) fn export_capture(dir: &Path, out: &Path) {
    let run = Command::new(env!("CARGO_BIN_EXE_coherd"))
        .args(["capture", "export", "--db"])
        .arg(dir.join("coherd.db"))
        .arg("--output")
        .arg(out)
        .output()
        .expect("coherd runs");
    succeeded(run);
}

/// Runs `command` with its output piped to a reader that takes one chunk and
/// hangs up (as `| head -1` does), and returns how it ended.
pub(crate) fn hang_up_after_first_read(command: &mut Command) -> std::process::Output {
    use std::io::Read;
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("coherd runs");
    let mut stdout = child.stdout.take().expect("piped");
    let mut first = [0u8; 64];
    let _ = stdout.read(&mut first);
    drop(stdout);
    child.wait_with_output().expect("coherd ends")
}

/// Polls `done` every 100 ms until it holds, failing the test after `secs`
/// seconds with what was awaited; returns how long it took.
pub(crate) fn wait_until(what: &str, secs: u64, mut done: impl FnMut() -> bool) -> Duration {
    let started = Instant::now();
    while !done() {
        assert!(
            started.elapsed() < Duration::from_secs(secs),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    started.elapsed()
}
