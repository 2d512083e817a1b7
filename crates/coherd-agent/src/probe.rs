//! Reading one facet or counter where it already is.

use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::config::{CounterProbe, Probe};

/// Bytes of a probe's output read at most (a file, a program's output, a body).
pub const MAX_OUTPUT: usize = 1 << 20;

/// Reads a facet; `Ok(None)` when there is nothing to report (an unset
/// variable), `Err` with what went wrong.
pub(crate) async fn facet(
    p: &Probe,
    client: &reqwest::Client,
    timeout: Duration,
) -> Result<Option<String>, String> {
    let raw = if let Some(path) = &p.file_sha256 {
        let bytes = tokio::fs::read(path)
            .await
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        return Ok(Some(format!("sha256:{:x}", Sha256::digest(&bytes))));
    } else if let Some(argv) = &p.command {
        run(argv, timeout).await?
    } else if let Some(name) = &p.env {
        match std::env::var(name) {
            Ok(v) => v,
            Err(_) => return Ok(None),
        }
    } else if let Some(url) = &p.http {
        get(client, url, timeout).await?
    } else if let Some(v) = &p.fixed {
        v.clone()
    } else {
        return Err("no source".into());
    };
    let mut value = match &p.json_pointer {
        Some(ptr) => {
            let doc: serde_json::Value =
                serde_json::from_str(&raw).map_err(|e| format!("the body is not JSON: {e}"))?;
            match doc.pointer(ptr) {
                Some(serde_json::Value::String(s)) => s.clone(),
                Some(serde_json::Value::Null) | None => {
                    return Err(format!("nothing at {ptr} in the body"));
                }
                Some(other) => other.to_string(),
            }
        }
        None => raw.trim().to_string(),
    };
    if let Some(r) = &p.regex {
        let re = regex::Regex::new(r).map_err(|e| e.to_string())?;
        let caps = re
            .captures(&value)
            .ok_or_else(|| format!("{r:?} does not match {value:?}"))?;
        value = caps
            .get(1)
            .or_else(|| caps.get(0))
            .map_or("", |m| m.as_str())
            .to_string();
    }
    if let Some(mapped) = p.map.get(&value) {
        value = mapped.clone();
    }
    Ok(Some(value))
}

/// Reads a counter: the metric summed over matching series.
pub(crate) async fn counter(
    c: &CounterProbe,
    client: &reqwest::Client,
    timeout: Duration,
) -> Result<Option<f64>, String> {
    let text = get(client, &c.prometheus, timeout).await?;
    Ok(crate::prom::sum(&text, &c.metric, &c.labels))
}

async fn get(client: &reqwest::Client, url: &str, timeout: Duration) -> Result<String, String> {
    let r = client
        .get(url)
        .timeout(timeout)
        .send()
        .await
        .map_err(|e| format!("GET {url}: {}", cause(&e)))?;
    let status = r.status();
    let bytes = r
        .bytes()
        .await
        .map_err(|e| format!("GET {url}: {}", cause(&e)))?;
    if bytes.len() > MAX_OUTPUT {
        return Err(format!("GET {url}: the body is over {MAX_OUTPUT} bytes"));
    }
    // A health endpoint answers 503 while draining: its body still says so.
    if !status.is_success() && !status.is_server_error() {
        return Err(format!("GET {url}: {status}"));
    }
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

async fn run(argv: &[String], timeout: Duration) -> Result<String, String> {
    use tokio::io::AsyncReadExt;
    let mut child = tokio::process::Command::new(&argv[0])
        .args(&argv[1..])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot run {}: {e}", argv[0]))?;
    let stdout = child.stdout.take().ok_or("no standard output")?;
    let finished = async {
        // At most MAX_OUTPUT bytes are kept, however much the program prints.
        let mut out = Vec::new();
        stdout
            .take(MAX_OUTPUT as u64)
            .read_to_end(&mut out)
            .await
            .map_err(|e| e.to_string())?;
        let status = child.wait().await.map_err(|e| e.to_string())?;
        Ok::<_, String>((status, out))
    };
    let (status, out) = tokio::time::timeout(timeout, finished)
        .await
        .map_err(|_| format!("{} did not finish within {timeout:?}", argv[0]))?
        .map_err(|e| format!("{}: {e}", argv[0]))?;
    if !status.success() {
        return Err(format!("{} exited with {status}", argv[0]));
    }
    Ok(String::from_utf8_lossy(&out).into_owned())
}

/// The innermost cause of a request error (reqwest's own message is generic).
pub(crate) fn cause(e: &reqwest::Error) -> String {
    let mut why = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        why = s.to_string();
        source = s.source();
    }
    why
}
