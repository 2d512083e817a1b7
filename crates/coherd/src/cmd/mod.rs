//! One module per subcommand: each has `Args` (clap) and `run(Args) -> Result<ExitCode>`.

pub(crate) mod agent;
pub(crate) mod audit;
pub(crate) mod bench;
pub(crate) mod bench_storage;
pub(crate) mod capture;
pub(crate) mod completions;
pub(crate) mod dashboards;
pub(crate) mod demo;
pub(crate) mod divergences;
pub(crate) mod explain;
pub(crate) mod herd;
pub(crate) mod intent;
pub(crate) mod offsets;
pub(crate) mod output;
pub(crate) mod ready;
pub(crate) mod reconcile;
pub(crate) mod replay;
pub(crate) mod report;
pub(crate) mod rules;
pub(crate) mod serve;
pub(crate) mod silence;
pub(crate) mod simulate;
pub(crate) mod simulate_remote;
pub(crate) mod splay;
pub(crate) mod status;
pub(crate) mod suggest;
pub(crate) mod watch;

/// How log lines are written.
#[derive(Clone, Copy, Debug, Default, clap::ValueEnum)]
pub(crate) enum LogFormat {
    /// For people: one readable line per event.
    #[default]
    Text,
    /// For log pipelines: one JSON object per line.
    Json,
}

/// Logs to standard error; `RUST_LOG` sets the level (default info).
pub(crate) fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    use std::io::IsTerminal;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder
            .with_ansi(std::io::stderr().is_terminal())
            .try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}
