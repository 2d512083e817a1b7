//! `coherd simulate`: a simulated fleet with injected faults, scored.

use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use coherd_sim::{Scenario, SimConfig, SimReport};
use indicatif::{ProgressBar, ProgressStyle};

/// Run a deterministic simulated fleet with injected faults and score detection.
///
/// Each scenario is its own service with known faults; the report gives, per divergence
/// kind, faults injected and detected, false positives, recall, precision and latency.
#[derive(clap::Args)]
#[command(
    after_help = "Examples:\n  coherd simulate --scenario all --members 1000 --seed 7\n  \
    coherd simulate --scenario drain --members 200 --duration 1h --json"
)]
pub(crate) struct Args {
    /// Scenario to run: rollout, config-drift, drain, split-brain, replica, silent, flap,
    /// incompatible-mix, herd (runs at least 2h of simulated time), clock-skew, canary, replica-lag, or all.
    #[arg(long, default_value = "all")]
    pub scenario: String,
    /// Members per scenario.
    #[arg(long, default_value_t = 1000)]
    pub members: usize,
    /// Seed: which members are faulty.
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
    /// Simulated time per scenario (faults happen in the first 25 minutes).
    #[arg(long, default_value = "40m", value_parser = crate::client::parse_duration)]
    pub duration: Duration,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Send the scenario to this running server over HTTP instead of the in-process
    /// engine, in real time. It replaces the server's intent: use a test server.
    /// Only this flag sends anything: COHERD_SERVER is ignored here.
    #[arg(long)]
    pub server: Option<String>,
    /// Bearer token for --server (needs report and admin).
    #[arg(long, env = "COHERD_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
}

pub(crate) fn run(args: Args) -> Result<ExitCode> {
    let scenarios = match args.scenario.as_str() {
        "all" => Scenario::ALL.to_vec(),
        name => match Scenario::parse(name) {
            Some(s) => vec![s],
            None => bail!(
                "unknown scenario {name:?}; choose one of: {}, all",
                Scenario::ALL
                    .iter()
                    .map(|s| s.name())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        },
    };
    if args.members == 0 || args.members > 1_000_000 {
        bail!("--members must be from 1 to 1000000");
    }
    if args.duration < Duration::from_secs(60) {
        bail!("--duration must be at least 1m");
    }
    if let Some(server) = &args.server {
        let [scenario] = scenarios[..] else {
            bail!(
                "--server sends one scenario at a time (each sets the server's intent); pick one with --scenario"
            );
        };
        return super::simulate_remote::run(server, args.token.as_deref(), scenario, &args);
    }
    let cfg = SimConfig {
        scenarios,
        members: args.members,
        seed: args.seed,
        duration: args.duration,
    };
    let started = Instant::now();
    let bar = std::io::stderr().is_terminal().then(|| {
        let bar = ProgressBar::hidden();
        bar.set_style(
            ProgressStyle::with_template("{spinner} simulating [{bar:40}] {percent}% {elapsed}")
                .expect("valid template"),
        );
        bar
    });
    let report = coherd_sim::run(&cfg, |done, total| {
        if let Some(bar) = &bar {
            if started.elapsed() > Duration::from_secs(2) && bar.is_hidden() {
                bar.set_draw_target(indicatif::ProgressDrawTarget::stderr());
            }
            bar.set_length(total);
            bar.set_position(done);
        }
    });
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_report(&report, started.elapsed());
    }
    Ok(ExitCode::SUCCESS)
}

fn print_report(r: &SimReport, took: Duration) {
    print_kinds(&r.kinds);
    for (name, s) in &r.scenarios {
        for id in &s.missed {
            println!("missed in {name}: {id}");
        }
        for id in &s.false_positives {
            println!("false positive in {name}: {id}");
        }
    }
    println!(
        "\n{} observations in {:.1}s",
        r.observations,
        took.as_secs_f64()
    );
}

/// The per-kind table.
pub(crate) fn print_kinds(kinds: &std::collections::BTreeMap<String, coherd_sim::KindScore>) {
    let f = |x: Option<f64>, p: usize| x.map_or("-".to_string(), |v| format!("{v:.p$}"));
    println!(
        "{:<20} {:>8} {:>8} {:>6} {:>7} {:>9} {:>8} {:>8}",
        "KIND", "INJECTED", "DETECTED", "FALSE+", "RECALL", "PRECISION", "P50 S", "MAX S"
    );
    for (kind, k) in kinds {
        println!(
            "{:<20} {:>8} {:>8} {:>6} {:>7} {:>9} {:>8} {:>8}",
            kind,
            k.injected,
            k.detected,
            k.false_positives,
            f(k.recall, 3),
            f(k.precision, 3),
            f(k.latency_p50_s, 1),
            f(k.latency_max_s, 1)
        );
    }
}
