//! The `coherd` command: a thin layer that parses arguments, dispatches to the
//! library crates and maps errors to exit codes.

// Unit tests compile with the dev-dependencies that only benches and integration tests use.
#![cfg_attr(test, allow(unused_crate_dependencies))]

mod client;
mod cmd;

use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};

/// coherd keeps a fleet coherent: it compares what every member reports with
/// the other members and with the operators' intent, and opens divergences
/// where the fleet has lost coherence.
#[derive(Parser)]
#[command(
    name = "coherd",
    version = env!("COHERD_VERSION"),
    propagate_version = true,
    max_term_width = 100
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Start a server with a simulated fleet losing and regaining coherence.
    Demo(cmd::demo::Args),
    /// Run the service: durable HTTP ingest, query API, stream and metrics.
    Serve(cmd::serve::Args),
    /// Run beside a member: read its facets where they are and report them.
    Agent(cmd::agent::Args),
    /// Send observations to a running coherd: one from flags, or a file of them.
    Report(cmd::report::Args),
    /// Services at a glance: members, live, coherence, mixed facets, open divergences.
    Status(cmd::status::Args),
    /// Why members are not coherent, facet by facet.
    Explain(cmd::explain::Args),
    /// List divergences: open by default.
    Divergences(cmd::divergences::Args),
    /// Whether a server is ready (exit 0), for health checks and scripts.
    Ready(cmd::ready::Args),
    /// Follow divergence and intent changes live.
    Watch(cmd::watch::Args),
    /// Check an intent file, or get and put the server's intent.
    Intent(cmd::intent::Args),
    /// Add, list and expire silences.
    Silence(cmd::silence::Args),
    /// The reconcile loop: status, emergency stop, resume, quarantine release.
    Reconcile(cmd::reconcile::Args),
    /// What the reconcile loop decided and why, newest first.
    Audit(cmd::audit::Args),
    /// Load generators for coherd's own speed.
    Bench(cmd::bench::Args),
    /// Replay a captured NDJSON stream of observations against an intent.
    Replay(cmd::replay::Args),
    /// Export what a server stored as a stream `coherd replay` takes.
    Capture(cmd::capture::Args),
    /// Run a simulated fleet with injected faults and score detection.
    Simulate(cmd::simulate::Args),
    /// Sleep a stable or random offset inside a window, then run a command.
    Splay(cmd::splay::Args),
    /// Print every member's offset under an even spread.
    Offsets(cmd::offsets::Args),
    /// Measure how synchronised periodic events or crontab schedules are.
    Herd(cmd::herd::Args),
    /// Export rules for other tools: Prometheus recording and alerting rules.
    Rules(cmd::rules::Args),
    /// Export dashboards for other tools: Grafana executive, on-call and debug.
    Dashboards(cmd::dashboards::Args),
    /// Print shell completions (bash, zsh, fish, elvish, powershell).
    Completions(cmd::completions::CompletionsArgs),
    /// Print the man page.
    Man(cmd::completions::ManArgs),
}

fn main() -> ExitCode {
    quiet_on_broken_pipe();
    let cli = Cli::parse();
    // TLS (https:// servers, webhooks, the listener) uses ring's primitives.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let result = match cli.command {
        Command::Demo(args) => cmd::demo::run(args),
        Command::Serve(args) => cmd::serve::run(args),
        Command::Agent(args) => cmd::agent::run(args),
        Command::Report(args) => cmd::report::run(args),
        Command::Status(args) => cmd::status::run(args),
        Command::Divergences(args) => cmd::divergences::run(args),
        Command::Explain(args) => cmd::explain::run(args),
        Command::Watch(args) => cmd::watch::run(args),
        Command::Ready(args) => cmd::ready::run(args),
        Command::Intent(args) => cmd::intent::run(args),
        Command::Silence(args) => cmd::silence::run(args),
        Command::Reconcile(args) => cmd::reconcile::run(args),
        Command::Audit(args) => cmd::audit::run(args),
        Command::Bench(args) => cmd::bench::run(args),
        Command::Replay(args) => cmd::replay::run(args),
        Command::Capture(args) => cmd::capture::run(args),
        Command::Simulate(args) => cmd::simulate::run(args),
        Command::Splay(args) => cmd::splay::run(args),
        Command::Offsets(args) => cmd::offsets::run(args),
        Command::Herd(args) => cmd::herd::run(args),
        Command::Rules(args) => cmd::rules::run(args),
        Command::Dashboards(args) => cmd::dashboards::run(args),
        Command::Completions(args) => cmd::completions::completions(args, Cli::command()),
        Command::Man(args) => cmd::completions::man(args, Cli::command()),
    };
    match result {
        Ok(code) => code,
        // The reader went away (`coherd ... | head`): nothing more to say.
        Err(err) if is_broken_pipe(&err) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {}", one_sentence(&err));
            ExitCode::from(1)
        }
    }
}

/// The error and its causes, each cause said once: a cause already quoted in
/// the message above it is not repeated.
fn one_sentence(err: &anyhow::Error) -> String {
    let mut message = err.to_string();
    for cause in err.chain().skip(1) {
        let cause = cause.to_string();
        if !message.contains(&cause) {
            message.push_str(": ");
            message.push_str(&cause);
        }
    }
    message
}

fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|e| {
        e.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// Output piped into a command that stops reading (`coherd offsets ... | head`)
/// ends the program quietly with exit 0, as `ripgrep` or `ls` do, instead of a
/// panic from `println!`.
fn quiet_on_broken_pipe() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let message = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or("");
        if message.contains("Broken pipe") || message.contains("BrokenPipe") {
            std::process::exit(0);
        }
        default(info);
    }));
}
