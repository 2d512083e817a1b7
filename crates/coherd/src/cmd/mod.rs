//! One module per subcommand: each has `Args` (clap) and `run(Args) -> Result<ExitCode>`.

pub(crate) mod bench;
pub(crate) mod capture;
pub(crate) mod completions;
pub(crate) mod dashboards;
pub(crate) mod demo;
pub(crate) mod divergences;
pub(crate) mod herd;
pub(crate) mod intent;
pub(crate) mod offsets;
pub(crate) mod output;
pub(crate) mod replay;
pub(crate) mod report;
pub(crate) mod rules;
pub(crate) mod serve;
pub(crate) mod silence;
pub(crate) mod simulate;
pub(crate) mod simulate_remote;
pub(crate) mod splay;
pub(crate) mod status;
pub(crate) mod watch;

/// Logs to standard error; `RUST_LOG` sets the level (default info).
pub(crate) fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    use std::io::IsTerminal;
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .try_init();
}
