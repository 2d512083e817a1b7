//! `coherd demo`: a real server on loopback, fed over HTTP by a simulated
//! fleet that loses and regains coherence in a loop.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use coherd_model::{Lease, Observation, Severity, View};
use coherd_server::ServerConfig;
use serde_json::Value;

/// Start coherd on loopback with a temporary database and drive a simulated fleet through it.
///
/// The fleet loops through a rollout with stragglers, a config drift, a drain violation,
/// a split brain and a silent member, then recovers. Watch the summary, or point other
/// commands and curl at the server while it runs. Ctrl-C stops it.
#[derive(clap::Args)]
#[command(
    after_help = "Examples:\n  coherd demo\n  coherd demo --members 500 --listen 127.0.0.1:7070\n  \
    coherd demo --duration 2m --plain    # stop after two minutes, no screen redraws"
)]
pub(crate) struct Args {
    /// Members in the simulated service.
    #[arg(long, default_value_t = 300)]
    pub members: usize,
    /// Address for the server.
    #[arg(long, default_value = "127.0.0.1:7070")]
    pub listen: SocketAddr,
    /// Stop after this long (default: run until Ctrl-C).
    #[arg(long, value_parser = crate::client::parse_duration)]
    pub duration: Option<Duration>,
    /// Print a summary line at a time instead of redrawing the screen.
    #[arg(long)]
    pub plain: bool,
}

const INTERVAL: Duration = Duration::from_secs(2);
/// One loop of the story, in seconds.
const CYCLE: u64 = 120;

fn intent(target: &str) -> String {
    format!(
        "services:\n  shop:\n    report_interval: 2s\n    expect_members: MEMBERS\n    facets:\n      version: {{target: \"{target}\", rollout_window: 30s}}\n      config: {{target: \"cfg-1\", rollout_window: 30s}}\n    phases:\n      agreement_timeout: 6s\n    leases:\n      scheduler: {{exclusive: true}}\n  shop-lb:\n    report_interval: 2s\n"
    )
}

pub(crate) fn run(args: Args) -> Result<ExitCode> {
    if !args.listen.ip().is_loopback() {
        anyhow::bail!("the demo listens on loopback only; pass --listen 127.0.0.1:PORT");
    }
    let dir = std::env::temp_dir().join(format!("coherd-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let db = dir.join("coherd.db");
    let config = ServerConfig {
        listen: args.listen,
        db: db.clone(),
        ..ServerConfig::default()
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let result = rt.block_on(async move {
        // Our own listener first: if the address is taken, say so before
        // anything is sent, rather than feeding someone else's server.
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .with_context(|| {
                format!(
                    "cannot listen on {}: is a server already there? pass --listen 127.0.0.1:PORT (port 0 picks a free one)",
                    args.listen
                )
            })?;
        let base = format!("http://{}", listener.local_addr()?);
        let mut stop = stop_rx.clone();
        let server = tokio::spawn(coherd_server::serve_on(listener, config, async move {
            let _ = stop.changed().await;
        }));
        let client = reqwest::Client::builder().timeout(Duration::from_secs(10)).build()?;
        wait_ready(&client, &base, &server).await?;
        let header = format!(
            "coherd demo: the server runs at {base} (database {}).\n\
             Try, in another terminal:\n  coherd status --server {base}\n  coherd watch --server {base}\n  \
             coherd divergences --server {base}\n  curl -s {base}/v1/services/shop | head -c 600\n  \
             curl -s {base}/metrics | grep coherd_divergences_open\n\
             The fleet loops every {CYCLE}s: rollout with stragglers (at 10s), config drift (25s), drain violation (40s),\n\
             split brain (55s), a silent member (65s), then recovery (85s). Ctrl-C stops.\n",
            db.display()
        );
        println!("{header}");
        let fleet = drive(client.clone(), base.clone(), args.members);
        let view = summarize(client, base, args.plain, header);
        let end = async {
            match args.duration {
                Some(d) => tokio::time::sleep(d).await,
                None => {
                    let _ = tokio::signal::ctrl_c().await;
                }
            }
        };
        tokio::select! {
            r = fleet => r?,
            r = view => r?,
            _ = end => {}
        }
        let _ = stop_tx.send(true);
        server.await.context("the server task failed")??;
        anyhow::Ok(())
    });
    let _ = std::fs::remove_dir_all(&dir);
    result?;
    println!("\ncoherd demo stopped.");
    Ok(ExitCode::SUCCESS)
}

async fn wait_ready(
    client: &reqwest::Client,
    base: &str,
    server: &tokio::task::JoinHandle<Result<(), coherd_server::ServerError>>,
) -> Result<()> {
    for _ in 0..100 {
        if server.is_finished() {
            anyhow::bail!("the server at {base} stopped at once; see the log above");
        }
        if client
            .get(format!("{base}/readyz"))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    anyhow::bail!("the server did not become ready at {base}")
}

/// What the story does to member `i` at second `s` of the cycle.
struct Story {
    members: usize,
}

impl Story {
    /// The version the fleet runs at the start of a cycle; the rollout at 10 s moves to the next.
    fn version(cycle: u64) -> String {
        format!("2.{cycle}.0")
    }

    /// The target the operators set at second `s` of a cycle.
    fn target(cycle: u64, s: u64) -> String {
        Story::version(if s < 10 { cycle } else { cycle + 1 })
    }

    fn report(&self, i: usize, seq: u64, cycle: u64, s: u64) -> Option<Observation> {
        let (new, old) = (Story::version(cycle + 1), Story::version(cycle));
        let straggler = i % 30 == 7;
        // Rollout in waves from 10 s; stragglers catch up only at recovery.
        let upgraded = s >= 10 + (i % 5) as u64 * 3 && (!straggler || s >= 85);
        let version = if upgraded { new } else { old };
        // Member 1 drains at 40 s and restarts properly at 85 s.
        let phase = match (i, s) {
            (1, 40..85) => "draining",
            (1, 85..88) => "stopped",
            (1, 88..91) => "starting",
            _ => "ready",
        };
        let config = if i % 100 == 3 && (25..85).contains(&s) {
            format!("cfg-hand-edited-{i}")
        } else {
            "cfg-1".into()
        };
        let silent = i == 2 && (65..85).contains(&s);
        if silent {
            return None;
        }
        let mut facets = BTreeMap::from([
            ("version".to_string(), version),
            ("config".to_string(), config),
        ]);
        facets.insert("phase".into(), phase.into());
        let mut leases = Vec::new();
        let expires = coherd_model::time::wall_now().add(Duration::from_secs(5));
        if i == 0 {
            leases.push(Lease {
                resource: "scheduler".into(),
                epoch: cycle * 2 + 1,
                expires,
            });
        }
        if i == 3 && (55..85).contains(&s) {
            leases.push(Lease {
                resource: "scheduler".into(),
                epoch: cycle * 2,
                expires,
            });
        }
        let requests = seq * 40;
        Some(Observation {
            service: "shop".into(),
            member: format!("shop-{i:04}"),
            seq: Some(seq),
            facets,
            leases,
            counters: BTreeMap::from([("requests".to_string(), requests)]),
            ..Observation::default()
        })
    }

    fn balancer(&self, seq: u64, s: u64) -> Observation {
        let mut views = BTreeMap::new();
        for i in 0..self.members.min(1000) {
            // The balancer keeps routing to member 1 while it drains (a drain
            // violation), and sees its restart from 85 s.
            let phase = match (i, s) {
                (1, 85..88) => "stopped",
                (1, 88..91) => "starting",
                _ => "ready",
            };
            views.insert(
                format!("shop/shop-{i:04}"),
                View {
                    phase: Some(phase.into()),
                },
            );
        }
        Observation {
            service: "shop-lb".into(),
            member: "lb-0".into(),
            seq: Some(seq),
            views,
            ..Observation::default()
        }
    }
}

async fn drive(client: reqwest::Client, base: String, members: usize) -> Result<()> {
    let story = Story { members };
    let start = Instant::now();
    let mut seq = 0u64;
    let mut last_target = String::new();
    let mut tick = tokio::time::interval(INTERVAL);
    loop {
        tick.tick().await;
        seq += 1;
        let elapsed = start.elapsed().as_secs();
        let (cycle, s) = (elapsed / CYCLE, elapsed % CYCLE);
        let target = Story::target(cycle, s);
        if target != last_target {
            let body = intent(&target).replace("MEMBERS", &members.to_string());
            last_target = target;
            client
                .put(format!("{base}/v1/intent"))
                .body(body)
                .send()
                .await?
                .error_for_status()?;
        }
        let mut batch: Vec<String> = (0..members)
            .filter_map(|i| story.report(i, seq, cycle, s))
            .map(|o| serde_json::to_string(&o))
            .collect::<Result<_, _>>()?;
        batch.push(serde_json::to_string(&story.balancer(seq, s))?);
        for chunk in batch.chunks(500) {
            let r = client
                .post(format!("{base}/v1/observations"))
                .header("Content-Type", "application/x-ndjson")
                .body(chunk.join("\n"))
                .send()
                .await?;
            if !r.status().is_success() {
                let text = r.text().await.unwrap_or_default();
                anyhow::bail!("the server refused the fleet's reports: {text}");
            }
        }
    }
}

async fn summarize(
    client: reqwest::Client,
    base: String,
    plain: bool,
    header: String,
) -> Result<()> {
    let redraw = !plain && std::io::stdout().is_terminal();
    let mut tick = tokio::time::interval(Duration::from_secs(2));
    let started = Instant::now();
    loop {
        tick.tick().await;
        let services: Value = client
            .get(format!("{base}/v1/services"))
            .send()
            .await?
            .json()
            .await?;
        let open: Value = client
            .get(format!("{base}/v1/divergences?state=open&limit=1000"))
            .send()
            .await?
            .json()
            .await?;
        let mut by_kind: BTreeMap<String, (usize, String)> = BTreeMap::new();
        for d in open.as_array().into_iter().flatten() {
            let e = by_kind
                .entry(d["kind"].as_str().unwrap_or("?").to_string())
                .or_default();
            e.0 += 1;
            let sev = d["severity"].as_str().unwrap_or("").to_string();
            if Severity::parse(&sev) > Severity::parse(&e.1) {
                e.1 = sev;
            }
        }
        let mut out = String::new();
        let secs = started.elapsed().as_secs();
        out.push_str(&format!(
            "t+{secs:>4}s  (cycle second {:>3})\n",
            secs % CYCLE
        ));
        for s in services.as_array().into_iter().flatten() {
            let coherence = s["coherence"]
                .as_f64()
                .map_or("-".into(), |c| format!("{:.1}%", c * 100.0));
            out.push_str(&format!(
                "  {:<10} members {:>5}  live {:>5}  coherence {:>7}  open {:>3}\n",
                s["service"].as_str().unwrap_or(""),
                s["members"].as_u64().unwrap_or(0),
                s["live"].as_u64().unwrap_or(0),
                coherence,
                s["open_divergences"].as_u64().unwrap_or(0)
            ));
        }
        if by_kind.is_empty() {
            out.push_str("  no open divergences: the fleet is coherent\n");
        }
        for (kind, (n, sev)) in &by_kind {
            out.push_str(&format!("  {kind:<20} {n:>4} open   worst {sev}\n"));
        }
        if redraw {
            print!("\x1b[2J\x1b[H{header}\n{out}");
        } else {
            println!("{}", out.trim_end());
        }
        std::io::stdout().flush().ok();
    }
}
