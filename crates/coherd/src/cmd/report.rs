//! `coherd report`: send observations to a running server.
//!
//! Either one observation built from flags, or a file of them (a JSON object,
//! a JSON array or NDJSON). Everything is validated here first, so a typo
//! never reaches the server; then it is posted, retrying transient failures
//! with the very same body, so a `seq` stays stable and a retry that the
//! server had already stored counts as a duplicate, not twice.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Read};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use coherd_model::{Limits, Observation, View};
use reqwest::{Method, header};
use serde::{Deserialize, Serialize};

use crate::client::{Client, ClientError, Need, ServerArgs, describe_error, retry_policy, runtime};

const REPORT: Need = Need {
    scope: "report",
    action: "post observations",
};
const PATH: &str = "/v1/observations";
/// The most validation errors printed before "and N more".
const SHOW_ERRORS: usize = 50;

/// Send observations to coherd: one from flags, or a file of them.
#[derive(clap::Args)]
#[command(after_help = "Examples:\n  \
    coherd report --service checkout --member m1 --facet version=1.4.2 --phase ready\n  \
    coherd report --service checkout --member m1 --seq 42 --facet config=sha256:ab \\\n    \
    --label region=eu --counter requests=1203 --view lb/lb-1=ready\n  \
    coherd report --file observations.ndjson --server http://10.0.0.5:7070\n  \
    produce-reports | coherd report --file - --json")]
pub(crate) struct Args {
    #[command(flatten)]
    pub server: ServerArgs,
    /// Observations to send: a JSON object, a JSON array or NDJSON; - for standard input.
    #[arg(long, short, value_name = "FILE", conflicts_with_all = [
        "service", "member", "facets", "phase", "labels", "counters", "views", "seq", "deploy", "time",
    ])]
    pub file: Option<PathBuf>,
    /// The member's service.
    #[arg(long, required_unless_present = "file")]
    pub service: Option<String>,
    /// The member's id.
    #[arg(long, required_unless_present = "file")]
    pub member: Option<String>,
    /// A facet value (repeatable).
    #[arg(long = "facet", value_name = "NAME=VALUE", value_parser = key_value)]
    pub facets: Vec<(String, String)>,
    /// The member's lifecycle phase (the `phase` facet).
    #[arg(long)]
    pub phase: Option<String>,
    /// A label (repeatable).
    #[arg(long = "label", value_name = "KEY=VALUE", value_parser = key_value)]
    pub labels: Vec<(String, String)>,
    /// A monotonic counter total (repeatable).
    #[arg(long = "counter", value_name = "NAME=TOTAL", value_parser = key_count)]
    pub counters: Vec<(String, u64)>,
    /// What this member believes another member's phase is (repeatable).
    #[arg(long = "view", value_name = "SERVICE/MEMBER=PHASE", value_parser = key_value)]
    pub views: Vec<(String, String)>,
    /// Sequence number; without it the report is always applied.
    #[arg(long)]
    pub seq: Option<u64>,
    /// The deploy that produced this member's state.
    #[arg(long)]
    pub deploy: Option<String>,
    /// When the member made the report (RFC 3339); the server's receive time without it.
    #[arg(long)]
    pub time: Option<String>,
    /// Observations per request when sending a file.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    pub batch: u64,
    /// Retries after a connection error, a timeout, a 5xx or a 503, with exponential backoff.
    #[arg(long, default_value_t = 5)]
    pub retries: u32,
    /// Print the server's answer as JSON.
    #[arg(long)]
    pub json: bool,
}

/// The server's answer to a post.
#[derive(Debug, Default, Clone, Deserialize, Serialize)]
pub(crate) struct Ack {
    /// Observations stored and applied.
    pub accepted: u64,
    /// Observations acknowledged as duplicates of an earlier `seq`.
    pub duplicates: u64,
    /// Observations refused for their time alone; the others were stored.
    #[serde(default)]
    pub rejected: Vec<Rejected>,
}

/// An item the server refused alone (its time is out of bounds).
#[derive(Debug, Clone, Deserialize, Serialize)]
pub(crate) struct Rejected {
    /// Its position in what was sent (over every batch).
    pub index: usize,
    pub field: String,
    pub message: String,
}

/// One observation and where it came from, for messages.
struct Item {
    place: String,
    obs: Observation,
}

pub(crate) fn run(args: Args) -> Result<ExitCode> {
    let limits = Limits::default();
    let (items, source) = match &args.file {
        Some(path) if path.as_os_str() == "-" => {
            (read_file(path, &limits)?, "standard input".to_string())
        }
        Some(path) => (read_file(path, &limits)?, path.display().to_string()),
        None => (vec![from_flags(&args, &limits)?], String::new()),
    };
    let client = Client::new(&args.server)?;
    let ack = runtime()?.block_on(send(&client, &args, &items, &source, &limits))?;
    if args.json {
        println!("{}", serde_json::to_string(&ack)?);
    } else {
        println!("accepted {}, duplicates {}", ack.accepted, ack.duplicates);
    }
    if ack.rejected.is_empty() {
        return Ok(ExitCode::SUCCESS);
    }
    // The rest was stored; say which items were not, and fail.
    for r in &ack.rejected {
        let place = items
            .get(r.index)
            .map(|i| i.place.as_str())
            .filter(|p| !p.is_empty())
            .unwrap_or("the observation");
        eprintln!("error: {place}: {}: {}", r.field, r.message);
    }
    eprintln!(
        "{} observation(s) refused for their time; the others were stored",
        ack.rejected.len()
    );
    Ok(ExitCode::FAILURE)
}

fn key_value(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("expected NAME=VALUE, got {s:?}")),
    }
}

fn key_count(s: &str) -> Result<(String, u64), String> {
    let (k, v) = key_value(s)?;
    let n = v
        .parse()
        .map_err(|_| format!("{k}: {v:?} is not a whole number ≥ 0"))?;
    Ok((k, n))
}

/// Builds and validates the observation that the flags describe.
fn from_flags(args: &Args, limits: &Limits) -> Result<Item> {
    fn insert<V>(map: &mut BTreeMap<String, V>, flag: &str, k: &str, v: V) -> Result<()> {
        if map.insert(k.to_string(), v).is_some() {
            bail!("--{flag} {k} is given twice; give each name once");
        }
        Ok(())
    }
    let mut obs = Observation {
        service: args.service.clone().unwrap_or_default(),
        member: args.member.clone().unwrap_or_default(),
        seq: args.seq,
        deploy: args.deploy.clone(),
        ..Observation::default()
    };
    if let Some(t) = &args.time {
        obs.time = Some(t.parse().map_err(|e| anyhow::anyhow!("--time: {e}"))?);
    }
    for (k, v) in &args.facets {
        insert(&mut obs.facets, "facet", k, v.clone())?;
    }
    if let Some(p) = &args.phase {
        insert(&mut obs.facets, "facet", "phase", p.clone())
            .context("--phase and --facet phase=... both set the phase; give one")?;
    }
    for (k, v) in &args.labels {
        insert(&mut obs.labels, "label", k, v.clone())?;
    }
    for (k, v) in &args.counters {
        insert(&mut obs.counters, "counter", k, *v)?;
    }
    for (k, v) in &args.views {
        let view = View {
            phase: Some(v.clone()),
        };
        insert(&mut obs.views, "view", k, view)?;
    }
    if let Err(errs) = obs.validate(limits) {
        bail!("{}", invalid("the observation", &flag_errors(errs)));
    }
    Ok(Item {
        place: String::new(),
        obs,
    })
}

/// Names the flag for each field error (`facets.version` → `--facet version`).
fn flag_errors(errs: Vec<coherd_model::FieldError>) -> Vec<String> {
    errs.into_iter()
        .map(|e| {
            let flag = match e.field.split_once('.') {
                Some(("facets", "phase")) => "--phase".to_string(),
                Some(("facets", k)) => format!("--facet {k}"),
                Some(("labels", k)) => format!("--label {k}"),
                Some(("counters", k)) => format!("--counter {k}"),
                Some(("views", k)) => format!("--view {k}"),
                _ if e.field.is_empty() => String::new(),
                _ => format!("--{}", e.field),
            };
            if flag.is_empty() || flag == format!("--{}", e.field) {
                e.to_string()
            } else {
                format!("{e} ({flag})")
            }
        })
        .collect()
}

/// "invalid ... (N errors):" and the list, capped.
fn invalid(what: &str, errs: &[String]) -> String {
    let n = errs.len();
    let mut out = format!(
        "{what} is invalid ({n} error{}); nothing was sent:",
        if n == 1 { "" } else { "s" }
    );
    for e in errs.iter().take(SHOW_ERRORS) {
        out.push_str("\n  ");
        out.push_str(e);
    }
    if n > SHOW_ERRORS {
        out.push_str(&format!("\n  ... and {} more", n - SHOW_ERRORS));
    }
    out
}

/// Reads a file (or standard input) of observations and validates every one.
fn read_file(path: &PathBuf, limits: &Limits) -> Result<Vec<Item>> {
    let mut text = String::new();
    if path.as_os_str() == "-" {
        std::io::stdin()
            .read_to_string(&mut text)
            .context("cannot read standard input")?;
    } else {
        text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
    }
    let name = if path.as_os_str() == "-" {
        "standard input".to_string()
    } else {
        path.display().to_string()
    };
    let (items, errs) = parse_observations(&text, limits);
    if !errs.is_empty() {
        bail!("{}", invalid(&name, &errs));
    }
    if items.is_empty() {
        bail!("{name} holds no observations");
    }
    Ok(items)
}

/// Parses a JSON object, a JSON array or NDJSON; returns the valid items and
/// every problem, each prefixed with its place (`item I` in an array, `line N` in NDJSON).
fn parse_observations(text: &str, limits: &Limits) -> (Vec<Item>, Vec<String>) {
    let mut items = Vec::new();
    let mut errs = Vec::new();
    let mut take = |place: String, value: serde_json::Value, errs: &mut Vec<String>| {
        match Observation::from_value(value, limits) {
            Ok(obs) => items.push(Item { place, obs }),
            Err(fe) => errs.extend(fe.iter().map(|e| format!("{place}: {e}"))),
        }
    };
    let trimmed = text.trim_start();
    if trimmed.starts_with('[') {
        match serde_json::from_str::<Vec<serde_json::Value>>(text) {
            Ok(values) => {
                for (i, v) in values.into_iter().enumerate() {
                    take(format!("item {i}"), v, &mut errs);
                }
            }
            Err(e) => errs.push(format!("not a valid JSON array: {e}")),
        }
    } else if let Ok(value @ serde_json::Value::Object(_)) =
        serde_json::from_str::<serde_json::Value>(text)
    {
        take("line 1".into(), value, &mut errs);
    } else {
        for (i, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            match serde_json::from_str::<serde_json::Value>(line) {
                Ok(v) => take(format!("line {}", i + 1), v, &mut errs),
                Err(e) => errs.push(format!("line {}: not valid JSON: {e}", i + 1)),
            }
        }
    }
    (items, errs)
}

/// Splits items into NDJSON bodies of at most `batch` observations and the body limit.
fn batches(items: &[Item], batch: usize, limits: &Limits) -> Result<Vec<(usize, Vec<u8>)>> {
    let mut out = Vec::new();
    let mut body = Vec::new();
    let mut start = 0;
    for (i, item) in items.iter().enumerate() {
        let mut line = serde_json::to_vec(&item.obs)?;
        line.push(b'\n');
        if line.len() > limits.body_bytes {
            bail!(
                "{}: the observation is {} bytes, more than a request may carry ({})",
                item.place,
                line.len(),
                limits.body_bytes
            );
        }
        if i > start && (i - start >= batch || body.len() + line.len() > limits.body_bytes) {
            out.push((start, std::mem::take(&mut body)));
            start = i;
        }
        body.extend_from_slice(&line);
    }
    if !body.is_empty() {
        out.push((start, body));
    }
    Ok(out)
}

async fn send(
    client: &Client,
    args: &Args,
    items: &[Item],
    source: &str,
    limits: &Limits,
) -> Result<Ack> {
    if args.file.is_none() {
        let body = serde_json::to_vec(&items[0].obs)?;
        return post(client, body, "application/json", args.retries)
            .await
            .map_err(|e| refused(e, items, 0, source));
    }
    let bodies = batches(items, args.batch as usize, limits)?;
    let bar = if bodies.len() > 1 && std::io::stderr().is_terminal() {
        let bar = indicatif::ProgressBar::new(items.len() as u64);
        if let Ok(style) = indicatif::ProgressStyle::with_template(
            "{bar:40} {pos}/{len} observations {per_sec} eta {eta}",
        ) {
            bar.set_style(style);
        }
        bar
    } else {
        indicatif::ProgressBar::hidden()
    };
    let mut total = Ack::default();
    for (k, (start, body)) in bodies.into_iter().enumerate() {
        let body_lines = body.iter().filter(|c| **c == b'\n').count() as u64;
        let ack = post(client, body, "application/x-ndjson", args.retries)
            .await
            .map_err(|e| {
                bar.abandon();
                let err = refused(e, items, start, source);
                if k == 0 {
                    err
                } else {
                    err.context(format!(
                        "the first {start} observations were stored (accepted {}, duplicates {}); the rest were not sent",
                        total.accepted, total.duplicates
                    ))
                }
            })?;
        total.accepted += ack.accepted;
        total.duplicates += ack.duplicates;
        total
            .rejected
            .extend(ack.rejected.into_iter().map(|r| Rejected {
                index: start + r.index,
                ..r
            }));
        bar.inc(body_lines);
    }
    bar.finish_and_clear();
    Ok(total)
}

/// Posts one body, retrying transient failures with the same bytes.
async fn post(
    client: &Client,
    body: Vec<u8>,
    content_type: &str,
    retries: u32,
) -> Result<Ack, ClientError> {
    let url = client.url(PATH, &[]);
    let mut policy = retry_policy(retries);
    let mut attempt = 0;
    loop {
        attempt += 1;
        let req = client
            .request(Method::POST, url.clone())
            .header(header::CONTENT_TYPE, content_type)
            .body(body.clone());
        match client.send(req, REPORT).await {
            Ok((_, text)) => return client.decode(PATH, &text),
            Err(e) if e.is_retryable() => {
                let Some(delay) = policy.next_delay(&mut fastrand::f64) else {
                    if attempt > 1 {
                        eprintln!("giving up after {attempt} attempts");
                    }
                    return Err(e);
                };
                let delay = e.retry_after().map_or(delay, |ra| ra.max(delay));
                eprintln!(
                    "{e}; retry {attempt} of {retries} in {:.1}s",
                    delay.as_secs_f64()
                );
                tokio::time::sleep(delay).await;
            }
            Err(e) => return Err(e),
        }
    }
}

/// Turns a refusal into a message that points at the observations the server
/// named, by their place in the input.
fn refused(e: ClientError, items: &[Item], start: usize, source: &str) -> anyhow::Error {
    let ClientError::Status { status, body, .. } = &e else {
        return e.into();
    };
    let Some(errs) = serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v["errors"].as_array().cloned())
    else {
        return e.into();
    };
    let lines: Vec<String> = errs
        .iter()
        .map(|err| {
            let mut err = err.clone();
            let place = err["index"]
                .as_u64()
                .and_then(|i| items.get(start + i as usize))
                .map(|item| item.place.clone())
                .filter(|p| !p.is_empty());
            if let (Some(place), Some(map)) = (place, err.as_object_mut()) {
                map.remove("index");
                format!("{place}: {}", describe_error(&err))
            } else {
                describe_error(&err)
            }
        })
        .collect();
    let what = if source.is_empty() {
        "the observation".to_string()
    } else {
        source.to_string()
    };
    let mut msg = format!("coherd refused {what} ({status}); nothing in this request was stored:");
    for l in lines.iter().take(SHOW_ERRORS) {
        msg.push_str("\n  ");
        msg.push_str(l);
    }
    if lines.len() > SHOW_ERRORS {
        msg.push_str(&format!("\n  ... and {} more", lines.len() - SHOW_ERRORS));
    }
    anyhow::anyhow!(msg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_object_array_and_ndjson_with_places() {
        let l = Limits::default();
        let (items, errs) = parse_observations(r#"{"service":"a","member":"m"}"#, &l);
        assert_eq!((items.len(), errs.len()), (1, 0));

        let (items, errs) = parse_observations(
            r#"[{"service":"a","member":"m"},{"service":"A!","member":"m"}]"#,
            &l,
        );
        assert_eq!(items.len(), 1);
        assert_eq!(errs.len(), 1);
        assert!(errs[0].starts_with("item 1: service: "), "{errs:?}");

        let ndjson = "{\"service\":\"a\",\"member\":\"m\",\"seq\":1}\n\n{\"service\":\"a\",\"membr\":\"m\"}\nnot json\n";
        let (items, errs) = parse_observations(ndjson, &l);
        assert_eq!(items.len(), 1);
        assert_eq!(errs.len(), 2, "{errs:?}");
        assert!(errs[0].starts_with("line 3: "), "{errs:?}");
        assert!(errs[0].contains("membr"), "{errs:?}");
        assert!(errs[1].starts_with("line 4: not valid JSON"), "{errs:?}");
    }

    #[test]
    fn batches_respect_count_and_size() {
        let l = Limits {
            body_bytes: 100,
            ..Limits::default()
        };
        let items: Vec<Item> = (0..7)
            .map(|i| Item {
                place: format!("line {i}"),
                obs: Observation {
                    service: "a".into(),
                    member: format!("m{i}"),
                    ..Observation::default()
                },
            })
            .collect();
        // Each line is 30 bytes: three fit in 100.
        let b = batches(&items, 1000, &l).unwrap();
        assert_eq!(b.iter().map(|(s, _)| *s).collect::<Vec<_>>(), vec![0, 3, 6]);
        let b = batches(&items, 2, &Limits::default()).unwrap();
        assert_eq!(b.len(), 4);
        let lines: usize = b
            .iter()
            .map(|(_, body)| body.iter().filter(|c| **c == b'\n').count())
            .sum();
        assert_eq!(lines, 7);
    }

    #[test]
    fn field_errors_name_the_flag() {
        let errs = flag_errors(vec![
            coherd_model::FieldError::new("facets.version", "too long"),
            coherd_model::FieldError::new("service", "bad"),
        ]);
        assert_eq!(errs[0], "facets.version: too long (--facet version)");
        assert_eq!(errs[1], "service: bad");
    }
}
