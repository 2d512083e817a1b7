//! `coherd agent`: runs beside a member and reports it to coherd.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Result, anyhow};
use coherd_agent::{Agent, AgentConfig};

/// Report this member to coherd from what it already exposes: file hashes,
/// program output, environment, a health endpoint, Prometheus counters.
///
/// It polls every `poll` (2s), reports at once on a change and otherwise
/// every `report_interval` at a stable per-member offset, keeps `seq` across
/// its restarts, and buffers reports while coherd is unreachable.
#[derive(clap::Args)]
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
pub(crate) struct Args {
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
    pub log_format: super::LogFormat,
}

pub(crate) fn run(args: Args) -> Result<ExitCode> {
    super::init_logging(args.log_format);
    let config = AgentConfig::from_file(&args.config).map_err(|e| anyhow!(e))?;
    // One thread is plenty for a handful of probes, and keeps the agent small.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let mut agent = Agent::new(config).map_err(|e| anyhow!(e))?;
        let now = coherd_model::time::wall_now();
        if args.dry_run {
            let reading = agent.read().await;
            let obs = agent.observation(&reading, now);
            println!("{}", serde_json::to_string_pretty(&obs)?);
            return Ok(ExitCode::SUCCESS);
        }
        if args.once {
            agent.poll(now).await;
            if agent.pending() > 0 {
                return Err(anyhow!("the report was not delivered; see the log above"));
            }
            println!("reported {} to coherd", agent.member());
            return Ok(ExitCode::SUCCESS);
        }
        eprintln!("coherd agent: reporting {} to coherd", agent.member());
        agent.run(coherd_server::shutdown_signal()).await;
        Ok(ExitCode::SUCCESS)
    })
}
