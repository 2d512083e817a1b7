//! One module per subcommand: each has `Args` (clap) and `run(Args) -> Result<ExitCode>`.

pub mod bench;
pub mod dashboards;
pub mod demo;
pub mod divergences;
pub mod herd;
pub mod intent;
pub mod offsets;
pub mod output;
pub mod replay;
pub mod report;
pub mod rules;
pub mod serve;
pub mod silence;
pub mod simulate;
pub mod simulate_remote;
pub mod splay;
pub mod status;
pub mod watch;

/// Logs to standard error; `RUST_LOG` sets the level (default info).
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    use std::io::IsTerminal;
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .try_init();
}
