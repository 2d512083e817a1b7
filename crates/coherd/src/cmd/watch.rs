//! `coherd watch`: follow a running server's stream of divergence and intent
//! changes, one line per event, reconnecting when the stream breaks.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Result;
use coherd_dephase::{Backoff, Jitter};
use reqwest::{Method, header};
use serde_json::Value;

use super::divergences::{clock, subjects};
use super::output::short;
use crate::client::{Client, ClientError, DivergenceRecord, READ, ServerArgs, root_cause, runtime};

/// Follow divergences and intent changes as they happen (Ctrl-C stops).
#[derive(clap::Args)]
#[command(after_help = "Examples:\n  \
    coherd watch\n  \
    coherd watch --service checkout\n  \
    coherd watch --json | jq 'select(.data.change == \"opened\")'")]
pub(crate) struct Args {
    #[command(flatten)]
    pub server: ServerArgs,
    /// Only divergences of this service (intent changes are always shown).
    #[arg(long, value_name = "SERVICE")]
    pub service: Option<String>,
    /// Print each event as one JSON line: {"event": ..., "data": ...}.
    #[arg(long)]
    pub json: bool,
}

pub(crate) fn run(args: Args) -> Result<ExitCode> {
    let client = Client::for_stream(&args.server)?;
    runtime()?.block_on(async {
        tokio::select! {
            r = follow(&client, &args) => r,
            _ = tokio::signal::ctrl_c() => Ok(ExitCode::SUCCESS),
        }
    })
}

/// Connects, prints events, and reconnects with backoff until a failure that
/// retrying cannot fix.
async fn follow(client: &Client, args: &Args) -> Result<ExitCode> {
    let policy = Backoff::new(
        Duration::from_millis(500),
        Duration::from_secs(30),
        Jitter::Full,
    )
    .expect("base below cap");
    let mut retries = policy.retries();
    let mut last_id: Option<String> = None;
    let service = args.service.as_deref().unwrap_or("");
    eprintln!("watching coherd at {} (Ctrl-C to stop)", client.base());
    loop {
        let mut req = client
            .request(
                Method::GET,
                client.url("/v1/stream", &[("service", service)]),
            )
            .header(header::ACCEPT, "text/event-stream");
        if let Some(id) = &last_id {
            req = req.header("Last-Event-ID", id.as_str());
        }
        let why = match client.start(req, READ).await {
            Ok(mut resp) => {
                retries = policy.retries();
                let mut parser = SseParser::default();
                loop {
                    match resp.chunk().await {
                        Ok(Some(bytes)) => {
                            for ev in parser.feed(&bytes) {
                                if ev.id.is_some() {
                                    last_id.clone_from(&ev.id);
                                }
                                print_event(&ev, args);
                            }
                        }
                        Ok(None) => break "the server closed the stream".to_string(),
                        Err(e) => break format!("the stream broke ({})", root_cause(&e)),
                    }
                }
            }
            Err(e @ ClientError::Status { status, .. }) if status.is_client_error() => {
                return Err(e.into());
            }
            Err(e) if !e.is_retryable() => return Err(e.into()),
            Err(e) => e.to_string(),
        };
        let delay = retries
            .next_delay(&mut fastrand::f64)
            .unwrap_or(Duration::from_secs(30));
        eprintln!("{why}; reconnecting in {:.1}s", delay.as_secs_f64());
        tokio::time::sleep(delay).await;
    }
}

fn print_event(ev: &SseEvent, args: &Args) {
    let data: Value = serde_json::from_str(&ev.data).unwrap_or(Value::String(ev.data.clone()));
    if ev.event == "divergence"
        && let Some(s) = &args.service
        && data["divergence"]["service"].as_str() != Some(s)
    {
        return;
    }
    if args.json {
        println!("{}", serde_json::json!({"event": ev.event, "data": data}));
    } else {
        println!("{}", line(&ev.event, &data, jiff::Timestamp::now()));
    }
}

/// One line for an event: when, what changed, and about whom.
fn line(event: &str, data: &Value, now: jiff::Timestamp) -> String {
    match event {
        "divergence" => {
            let change = data["change"].as_str().unwrap_or("changed");
            let Ok(d) = serde_json::from_value::<DivergenceRecord>(data["divergence"].clone())
            else {
                return format!(
                    "{} {change:<9} {}",
                    clock(now),
                    short(&data.to_string(), 70)
                );
            };
            let at = match change {
                "resolved" => d.resolved_at.as_deref(),
                "escalated" => d.last_seen_at.as_deref(),
                _ => Some(d.opened_at.as_str()),
            }
            .and_then(|t| t.parse::<jiff::Timestamp>().ok())
            .unwrap_or(now);
            format!(
                "{} {change:<9} {:<8} {:<18} {:<16} {}",
                clock(at),
                short(&d.severity, 8),
                short(&d.kind, 18),
                short(&d.service, 16),
                short(&subjects(&d.subjects), 24)
            )
        }
        "intent" => {
            let what = match data["source"].as_str().map(coherd_model::Intent::from_yaml) {
                Some(Ok(i)) => format!(
                    "{} service{}",
                    i.services.len(),
                    if i.services.len() == 1 { "" } else { "s" }
                ),
                _ => "new intent".into(),
            };
            let at = data["at"]
                .as_str()
                .and_then(|t| t.parse::<jiff::Timestamp>().ok())
                .unwrap_or(now);
            format!("{} {:<9} in force: {what}", clock(at), "intent")
        }
        other => format!(
            "{} {:<9} {}",
            clock(now),
            short(other, 9),
            short(&data.to_string(), 70)
        ),
    }
}

/// One server-sent event.
#[derive(Debug, Default, PartialEq)]
struct SseEvent {
    event: String,
    data: String,
    id: Option<String>,
}

/// An incremental parser of `text/event-stream`: feed it bytes as they
/// arrive; it returns the events completed by a blank line.
#[derive(Default)]
struct SseParser {
    buf: Vec<u8>,
    event: String,
    data: Vec<String>,
    id: Option<String>,
}

impl SseParser {
    fn feed(&mut self, bytes: &[u8]) -> Vec<SseEvent> {
        self.buf.extend_from_slice(bytes);
        let mut out = Vec::new();
        while let Some(nl) = self.buf.iter().position(|&b| b == b'\n') {
            let raw: Vec<u8> = self.buf.drain(..=nl).collect();
            let text = String::from_utf8_lossy(&raw);
            let line = text.trim_end_matches('\n').trim_end_matches('\r');
            if line.is_empty() {
                if !self.data.is_empty() {
                    out.push(SseEvent {
                        event: if self.event.is_empty() {
                            "message".into()
                        } else {
                            std::mem::take(&mut self.event)
                        },
                        data: self.data.join("\n"),
                        id: self.id.clone(),
                    });
                }
                self.event.clear();
                self.data.clear();
                continue;
            }
            if line.starts_with(':') {
                continue; // a comment: keep-alive
            }
            let (field, value) = match line.split_once(':') {
                Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
                None => (line, ""),
            };
            match field {
                "event" => self.event = value.to_string(),
                "data" => self.data.push(value.to_string()),
                "id" => self.id = Some(value.to_string()),
                _ => {}
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sse_events_survive_arbitrary_chunking() {
        let stream = ": keep-alive\n\nevent: divergence\r\ndata: {\"change\":\"opened\"}\nid: 7\n\ndata: a\ndata: b\n\n";
        let bytes = stream.as_bytes();
        for cut in 0..bytes.len() {
            let mut p = SseParser::default();
            let mut got = p.feed(&bytes[..cut]);
            got.extend(p.feed(&bytes[cut..]));
            assert_eq!(
                got,
                vec![
                    SseEvent {
                        event: "divergence".into(),
                        data: "{\"change\":\"opened\"}".into(),
                        id: Some("7".into())
                    },
                    SseEvent {
                        event: "message".into(),
                        data: "a\nb".into(),
                        id: Some("7".into())
                    },
                ],
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn a_divergence_line_names_change_kind_service_and_subjects() {
        let data: Value = serde_json::from_str(
            r#"{"change":"resolved","divergence":{"id":"drift/web/w1/version","service":"web","kind":"drift",
                "severity":"critical","subjects":["w1"],"opened_at":"2026-11-22T08:00:00Z",
                "resolved_at":"2026-11-22T08:05:00Z"}}"#,
        )
        .unwrap();
        let now = "2026-11-22T09:00:00Z".parse().unwrap();
        assert_eq!(
            line("divergence", &data, now).trim_end(),
            "2026-11-22 08:05:00 resolved  critical drift              web              w1"
        );
    }
}
