//! `coherd bench`: load generators against a running server, and the
//! store on a virtual clock (`bench storage`, in its own module).
//!
//! `bench ingest` posts generated observations from several concurrent tasks
//! over kept-alive connections for a fixed time and measures how many the
//! server acknowledges per second and how long each acknowledgement takes.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use hdrhistogram::Histogram;
use reqwest::{Method, Url, header};
use serde::Serialize;

use crate::client::{Client, ClientError, Need, ServerArgs, is_loopback, parse_duration};

const REPORT: Need = Need {
    scope: "report",
    action: "post observations",
};

/// Load generators against a running server, and the store on a virtual clock.
#[derive(clap::Args)]
#[command(after_help = "Examples:\n  \
    coherd bench ingest --members 100000 --batch 1000 --duration 30s\n  \
    coherd bench ingest --single --concurrency 32 --duration 10s --json\n  \
    coherd bench storage --members 100000 --duration 1h")]
pub(crate) struct Args {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(clap::Subcommand)]
pub(crate) enum Command {
    /// Post generated observations for a while; print throughput and acknowledgement latency.
    Ingest(IngestArgs),
    /// Run the store on a virtual clock; print bytes on disk, checkpoint cost and restart time.
    Storage(super::bench_storage::StorageArgs),
}

/// Measure observation ingest: throughput and acknowledgement latency.
///
/// Each task owns a share of the members and reports them round after round
/// with an increasing `seq`, so every observation is new (none is a duplicate).
/// Each observation carries five facets, a phase and two counters.
#[derive(clap::Args)]
#[command(after_help = "Examples:\n  \
    coherd bench ingest --members 100000 --batch 1000 --duration 30s\n  \
    coherd bench ingest --single --concurrency 32 --duration 10s\n  \
    coherd bench ingest --members 100000 --rate 10000 --duration 10m   # a real fleet's pace\n  \
    coherd bench ingest --server http://10.0.0.5:7070 --allow-remote --json")]
pub(crate) struct IngestArgs {
    #[command(flatten)]
    pub server: ServerArgs,
    /// Distinct members to report (cycled through).
    #[arg(long, default_value_t = 100_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub members: u64,
    /// Observations per request, sent as NDJSON.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    pub batch: u64,
    /// Post one JSON object per request instead of NDJSON batches.
    #[arg(long, conflicts_with = "batch")]
    pub single: bool,
    /// How long to send; requests in flight at the end are still awaited.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Concurrent tasks, each with its own kept-alive connection.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u64).range(1..=1024))]
    pub concurrency: u64,
    /// Send at this pace (observations per second, shared by the tasks)
    /// instead of as fast as the server answers: 10000 is a fleet of 100 000
    /// members reporting every 10 s.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub rate: Option<u64>,
    /// The service the generated members belong to.
    #[arg(long, default_value = "bench")]
    pub service: String,
    /// Allow a server that is not on this machine.
    #[arg(long)]
    pub allow_remote: bool,
    /// Print the results as JSON.
    #[arg(long)]
    pub json: bool,
}

pub(crate) fn run(args: Args) -> Result<ExitCode> {
    match args.command {
        Command::Ingest(a) => ingest(a),
        Command::Storage(a) => super::bench_storage::storage(a),
    }
}

/// What one run measured.
#[derive(Debug, Serialize)]
pub(crate) struct IngestReport {
    /// `batch` or `single`.
    pub mode: &'static str,
    /// Observations per request.
    pub batch: u64,
    /// Concurrent tasks.
    pub concurrency: u64,
    /// Distinct members.
    pub members: u64,
    /// Wall time from the first request to the last answer.
    pub seconds: f64,
    /// Requests answered with success.
    pub requests: u64,
    /// Observations acknowledged (accepted + duplicates).
    pub observations: u64,
    /// Observations stored and applied.
    pub accepted: u64,
    /// Observations acknowledged as duplicates.
    pub duplicates: u64,
    /// Acknowledged observations per second.
    pub observations_per_s: f64,
    /// Successful requests per second.
    pub requests_per_s: f64,
    /// Acknowledgement latency of successful requests.
    pub latency_ms: Latency,
    /// Failed requests by status code or transport failure.
    pub errors: BTreeMap<String, u64>,
}

/// Latency percentiles in milliseconds.
#[derive(Debug, Serialize)]
pub(crate) struct Latency {
    /// Median.
    pub p50: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Slowest.
    pub max: f64,
    /// Mean.
    pub mean: f64,
}

/// Per-task counts, merged at the end.
struct Tally {
    hist: Histogram<u64>,
    requests: u64,
    accepted: u64,
    duplicates: u64,
    errors: BTreeMap<String, u64>,
}

impl Tally {
    fn new() -> Tally {
        Tally {
            // Microseconds, 1 µs to 10 min, 3 significant digits.
            hist: Histogram::new_with_bounds(1, 600_000_000, 3).expect("valid bounds"),
            requests: 0,
            accepted: 0,
            duplicates: 0,
            errors: BTreeMap::new(),
        }
    }

    fn merge(&mut self, other: Tally) {
        self.hist.add(&other.hist).expect("same bounds");
        self.requests += other.requests;
        self.accepted += other.accepted;
        self.duplicates += other.duplicates;
        for (k, v) in other.errors {
            *self.errors.entry(k).or_default() += v;
        }
    }
}

fn ingest(args: IngestArgs) -> Result<ExitCode> {
    if !args.allow_remote && !is_loopback(&args.server.server) {
        bail!(
            "--server {} is not on this machine; bench ingest floods its target, so pass --allow-remote to load a remote server on purpose",
            args.server.server
        );
    }
    if let Err(e) = coherd_model::names::service(&args.service) {
        bail!("--service {:?}: {e}", args.service);
    }
    if args.members < args.concurrency {
        bail!(
            "--members {} is below --concurrency {}: each task needs members of its own",
            args.members,
            args.concurrency
        );
    }
    let client = Client::new(&args.server)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let report = rt.block_on(drive(&client, &args))?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", describe(&report, client.base(), &args.service));
    }
    Ok(if report.requests > 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

async fn drive(client: &Client, args: &IngestArgs) -> Result<IngestReport> {
    // Fail at once, with the client's message, when nothing listens.
    let probe = client.request(Method::GET, client.url("/healthz", &[]));
    match client.send(probe, REPORT).await {
        Ok(_) | Err(ClientError::Status { .. }) => {}
        Err(e) => return Err(e.into()),
    }
    let seq_base = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_millis() as u64 * 1000);
    let stop = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    let deadline = start + args.duration;
    let mut tasks = tokio::task::JoinSet::new();
    for task in 0..args.concurrency {
        let generator = Generator {
            service: args.service.clone(),
            task,
            tasks: args.concurrency,
            members: args.members,
            seq_base,
            next: 0,
        };
        let worker = Worker {
            client: client.clone(),
            url: client.url("/v1/observations", &[]),
            per_request: if args.single { 1 } else { args.batch },
            single: args.single,
            pace: args.rate.map(|rate| {
                let per_request = if args.single { 1 } else { args.batch };
                Duration::from_secs_f64(per_request as f64 * args.concurrency as f64 / rate as f64)
            }),
            deadline,
            stop: stop.clone(),
        };
        tasks.spawn(worker.run(generator));
    }
    let mut total = Tally::new();
    let mut fatal = None;
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok(Ok(t)) => total.merge(t),
            Ok(Err(e)) => {
                stop.store(true, Ordering::Relaxed);
                fatal.get_or_insert(e);
            }
            Err(e) => bail!("a load task failed: {e}"),
        }
    }
    if let Some(e) = fatal {
        return Err(anyhow::Error::from(e).context("bench ingest stopped"));
    }
    let seconds = start.elapsed().as_secs_f64();
    let ms = |us: u64| us as f64 / 1000.0;
    let observations = total.accepted + total.duplicates;
    Ok(IngestReport {
        mode: if args.single { "single" } else { "batch" },
        batch: if args.single { 1 } else { args.batch },
        concurrency: args.concurrency,
        members: args.members,
        seconds,
        requests: total.requests,
        observations,
        accepted: total.accepted,
        duplicates: total.duplicates,
        observations_per_s: observations as f64 / seconds,
        requests_per_s: total.requests as f64 / seconds,
        latency_ms: Latency {
            p50: ms(total.hist.value_at_quantile(0.50)),
            p99: ms(total.hist.value_at_quantile(0.99)),
            max: ms(total.hist.max()),
            mean: total.hist.mean() / 1000.0,
        },
        errors: total.errors,
    })
}

/// One task's loop: build a body, post it, time the answer.
struct Worker {
    client: Client,
    url: Url,
    per_request: u64,
    single: bool,
    /// With `--rate`: the time between two of this task's requests.
    pace: Option<Duration>,
    deadline: Instant,
    stop: Arc<AtomicBool>,
}

impl Worker {
    async fn run(self, mut generator: Generator) -> Result<Tally, ClientError> {
        let mut tally = Tally::new();
        let content_type = if self.single {
            "application/json"
        } else {
            "application/x-ndjson"
        };
        let mut next = Instant::now();
        while Instant::now() < self.deadline && !self.stop.load(Ordering::Relaxed) {
            if let Some(pace) = self.pace {
                // A fixed schedule: a slow answer does not slow the pace down.
                tokio::time::sleep_until(next.into()).await;
                next += pace;
            }
            let body = generator.body(self.per_request);
            let req = self
                .client
                .request(Method::POST, self.url.clone())
                .header(header::CONTENT_TYPE, content_type)
                .body(body);
            let t0 = Instant::now();
            let result = self.client.send(req, REPORT).await;
            let micros = t0.elapsed().as_micros() as u64;
            match result {
                Ok((_, text)) => {
                    let ack: super::report::Ack = self.client.decode("/v1/observations", &text)?;
                    tally.hist.saturating_record(micros.max(1));
                    tally.requests += 1;
                    tally.accepted += ack.accepted;
                    tally.duplicates += ack.duplicates;
                }
                // The generator is wrong or the token is: every request would fail alike.
                Err(e @ (ClientError::Unauthorized { .. } | ClientError::Forbidden { .. })) => {
                    return Err(e);
                }
                Err(e @ ClientError::Status { status, .. }) if status.is_client_error() => {
                    return Err(e);
                }
                Err(e) => {
                    let label = match &e {
                        ClientError::Unreachable { .. } => "unreachable".to_string(),
                        ClientError::Timeout { .. } => "timeout".to_string(),
                        ClientError::Broken { .. } => "connection lost".to_string(),
                        other => other
                            .status()
                            .map_or_else(|| "other".to_string(), |s| s.as_u16().to_string()),
                    };
                    *tally.errors.entry(label).or_default() += 1;
                    // Back off as asked, or briefly, rather than spin on a failing server.
                    let pause = e.retry_after().unwrap_or(Duration::from_millis(50));
                    let left = self.deadline.saturating_duration_since(Instant::now());
                    tokio::time::sleep(pause.min(left)).await;
                }
            }
        }
        Ok(tally)
    }
}

/// Generates one task's observations: its members in turn, round after round,
/// with `seq` = base + round so every report is newer than the last.
struct Generator {
    service: String,
    task: u64,
    tasks: u64,
    members: u64,
    seq_base: u64,
    next: u64,
}

impl Generator {
    /// Members this task owns: those whose number is `task` modulo `tasks`.
    fn owned(&self) -> u64 {
        (self.members - self.task).div_ceil(self.tasks)
    }

    /// The next `n` observations, one JSON object per line.
    fn body(&mut self, n: u64) -> Vec<u8> {
        let owned = self.owned();
        let mut out = String::with_capacity(n as usize * 260);
        for _ in 0..n {
            let k = self.next;
            self.next += 1;
            let member = self.task + (k % owned) * self.tasks;
            let round = k / owned;
            // Two members in a hundred stay on the previous version: a mixed facet.
            let version = if member.is_multiple_of(50) {
                "1.4.1"
            } else {
                "1.4.2"
            };
            let _ = writeln!(
                out,
                r#"{{"service":"{}","member":"m-{member:06}","seq":{},"facets":{{"version":"{version}","config":"sha256:ab12cd34","schema":"42","flags":"f{}","kernel":"6.1.0-{}","phase":"ready"}},"counters":{{"requests":{},"errors":{}}}}}"#,
                self.service,
                self.seq_base + round,
                member % 4,
                member % 3,
                round * 100 + member % 100,
                round,
            );
        }
        out.into_bytes()
    }
}

fn describe(r: &IngestReport, base: &str, service: &str) -> String {
    let mode = if r.mode == "single" {
        "one JSON object per request".to_string()
    } else {
        format!("NDJSON batches of {}", r.batch)
    };
    let errors = if r.errors.is_empty() {
        "none".to_string()
    } else {
        r.errors
            .iter()
            .map(|(k, v)| format!("{k}: {v}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut out = String::new();
    let _ = writeln!(
        out,
        "bench ingest against {base}: {:.1}s, {} tasks, {mode}, {} members of service {service:?}",
        r.seconds, r.concurrency, r.members
    );
    let _ = writeln!(out, "  observations/s  {:.0}", r.observations_per_s);
    let _ = writeln!(out, "  requests/s      {:.1}", r.requests_per_s);
    let _ = writeln!(
        out,
        "  ack latency     p50 {:.2} ms   p99 {:.2} ms   max {:.2} ms",
        r.latency_ms.p50, r.latency_ms.p99, r.latency_ms.max
    );
    let _ = writeln!(
        out,
        "  acknowledged    {} observations in {} requests (accepted {}, duplicates {})",
        r.observations, r.requests, r.accepted, r.duplicates
    );
    let _ = writeln!(out, "  errors          {errors}");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use coherd_model::{Limits, Observation};

    #[test]
    fn generated_observations_are_valid_and_seq_rises_per_member() {
        let mut g = Generator {
            service: "bench".into(),
            task: 1,
            tasks: 3,
            members: 10,
            seq_base: 1000,
            next: 0,
        };
        // Task 1 of 3 owns members 1, 4 and 7.
        let body = String::from_utf8(g.body(7)).unwrap();
        let obs: Vec<Observation> = body
            .lines()
            .map(|l| Observation::from_json(l, &Limits::default()).unwrap())
            .collect();
        let ids: Vec<(&str, u64)> = obs
            .iter()
            .map(|o| (o.member.as_str(), o.seq.unwrap()))
            .collect();
        assert_eq!(
            ids,
            vec![
                ("m-000001", 1000),
                ("m-000004", 1000),
                ("m-000007", 1000),
                ("m-000001", 1001),
                ("m-000004", 1001),
                ("m-000007", 1001),
                ("m-000001", 1002),
            ]
        );
        assert_eq!(obs[0].facets.len(), 6);
        assert_eq!(obs[0].facets["phase"], "ready");
    }
}
