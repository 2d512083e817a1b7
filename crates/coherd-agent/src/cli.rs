//! The agent's command line, shared by `coherd agent` and the small
//! `coherd-agent` binary (for hosts where every megabyte counts).

use std::path::PathBuf;
use std::process::ExitCode;

use crate::{Agent, AgentConfig};

/// Report this member to coherd from what it already exposes: file hashes,
/// program output, environment, a health endpoint, Prometheus counters.
///
/// It polls every `poll` (2s), reports at once on a change and otherwise
/// every `report_interval` at a stable per-member offset, keeps `seq` across
/// its restarts, and buffers reports while coherd is unreachable.
#[derive(Debug, clap::Args)]
#[command(after_help = "Example config (agent.yaml):\n  \
    server: http://coherd.internal:7070\n  \
    service: checkout\n  \
    poll: 2s\n  \
    report_interval: 30s\n  \
    facets:\n    \
      config: {file_sha256: /etc/checkout/config.yaml}\n    \
      version: {command: [/usr/bin/checkout, --version], regex: 'v([0-9.]+)'}\n    \
      region: {env: REGION}\n    \
      phase: {http: 'http://127.0.0.1:8080/health', json_pointer: /status, map: {UP: ready, DOWN: draining}}\n  \
    counters:\n    \
      requests: {prometheus: 'http://127.0.0.1:8080/metrics', metric: http_requests_total}\n\n\
    Examples:\n  coherd agent --config agent.yaml\n  \
    coherd agent --config agent.yaml --once --dry-run    # print the report it would send")]
pub struct Args {
    /// The agent's config file (YAML).
    #[arg(long)]
    pub config: PathBuf,
    /// Read and report once, then exit.
    #[arg(long)]
    pub once: bool,
    /// With --once: print the report instead of sending it.
    #[arg(long, requires = "once")]
    pub dry_run: bool,
    /// Log lines as text, or as one JSON object each (env COHERD_LOG_FORMAT).
    #[arg(long, env = "COHERD_LOG_FORMAT", value_enum, default_value = "text")]
    pub log_format: LogFormat,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum LogFormat {
    /// One readable line per event.
    Text,
    /// One JSON object per line.
    Json,
}

/// Runs the agent as `args` say; the error says what to fix.
pub fn run(args: Args) -> Result<ExitCode, String> {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match args.log_format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
    let config = AgentConfig::from_file(&args.config)?;
    // One thread is plenty for a handful of probes, and keeps the agent small.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start: {e}"))?;
    rt.block_on(async move {
        let mut agent = Agent::new(config)?;
        let now = coherd_model::time::wall_now();
        if args.dry_run {
            let reading = agent.read().await;
            let obs = agent.observation(&reading, now);
            println!("{}", serde_json::to_string_pretty(&obs).unwrap_or_default());
            return Ok(ExitCode::SUCCESS);
        }
        if args.once {
            agent.poll(now).await;
            if agent.pending() > 0 {
                return Err("the report was not delivered; see the log above".to_string());
            }
            println!("reported {} to coherd", agent.member());
            return Ok(ExitCode::SUCCESS);
        }
        tracing::info!(member = agent.member(), "coherd agent running");
        agent.run(shutdown()).await;
        Ok(ExitCode::SUCCESS)
    })
}

/// Completes on SIGTERM or Ctrl-C.
async fn shutdown() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! { _ = tokio::signal::ctrl_c() => {}, _ = term => {} }
}
