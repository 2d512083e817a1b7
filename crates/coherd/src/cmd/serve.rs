//! `coherd serve`: the durable HTTP service.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use coherd_server::ServerConfig;

/// Run the coherd service: durable ingest on SQLite, the query API, the stream and /metrics.
///
/// Without tokens the server listens on loopback only. Tokens come from the config file
/// (`tokens: [{token, scopes: [report, read, admin]}]`) or from COHERD_TOKEN_REPORT,
/// COHERD_TOKEN_READ and COHERD_TOKEN_ADMIN (comma-separated). Off loopback it speaks
/// HTTPS (--tls-cert, --tls-key; reloaded on SIGHUP) unless told --allow-insecure-http.
#[derive(clap::Args)]
#[command(after_help = "Examples:\n  coherd serve --intent intent.yaml\n  \
    coherd serve --config coherd.yaml --db /var/lib/coherd/coherd.db --listen 127.0.0.1:7070\n  \
    coherd serve --capture-raw 2h    # keep two hours of raw reports for `coherd capture export`\n  \
    coherd serve --config coherd.yaml --intent intent.yaml --check    # validate, then exit\n  \
    COHERD_TOKEN_ADMIN=$(openssl rand -hex 24) coherd serve --listen 0.0.0.0:7070 \\\n      --tls-cert /etc/coherd/tls.crt --tls-key /etc/coherd/tls.key")]
pub(crate) struct Args {
    /// Configuration file (YAML); flags override it.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Intent file; reloaded on SIGHUP and when it changes.
    #[arg(long)]
    pub intent: Option<PathBuf>,
    /// SQLite database file [default: ./coherd.db].
    #[arg(long)]
    pub db: Option<PathBuf>,
    /// Address to listen on [default: 127.0.0.1:7070].
    #[arg(long)]
    pub listen: Option<SocketAddr>,
    /// TLS certificate chain (PEM); with --tls-key, serve HTTPS.
    #[arg(long, requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// TLS private key (PEM).
    #[arg(long, requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Serve plain HTTP off loopback (behind a proxy that terminates TLS).
    #[arg(long)]
    pub allow_insecure_http: bool,
    /// Keep raw reports this long (e.g. 2h) for `coherd capture export` and
    /// `coherd replay`; off by default, when the log holds only what the last
    /// checkpoints do not cover.
    #[arg(long, value_parser = coherd_model::time::parse_duration)]
    pub capture_raw: Option<std::time::Duration>,
    /// How often the engine is checkpointed [default: 60s]; a restart
    /// replays only the reports since the newest checkpoint.
    #[arg(long, value_parser = coherd_model::time::parse_duration)]
    pub checkpoint_interval: Option<std::time::Duration>,
    /// Check the configuration (and the intent file, if given) and exit:
    /// status 0 when both are valid, 1 with every problem named when not.
    #[arg(long)]
    pub check: bool,
    /// Log lines as text, or as one JSON object each (env COHERD_LOG_FORMAT).
    #[arg(long, env = "COHERD_LOG_FORMAT", value_enum, default_value = "text")]
    pub log_format: super::LogFormat,
}

/// Builds the configuration from the file, the environment and the flags.
pub(crate) fn config(args: &Args) -> Result<ServerConfig> {
    let mut config = match &args.config {
        Some(p) => ServerConfig::from_file(p)?,
        None => ServerConfig::default(),
    };
    if let Some(db) = &args.db {
        config.db = db.clone();
    }
    if let Some(listen) = args.listen {
        config.listen = listen;
    }
    if let Some(intent) = &args.intent {
        config.intent = Some(intent.clone());
    }
    if let (Some(cert), Some(key)) = (&args.tls_cert, &args.tls_key) {
        config.tls_cert = Some(cert.clone());
        config.tls_key = Some(key.clone());
    }
    config.allow_insecure_http |= args.allow_insecure_http;
    if let Some(d) = args.capture_raw {
        config.capture_raw = d;
    }
    if let Some(d) = args.checkpoint_interval {
        config.checkpoint_interval = d;
    }
    config.add_env_tokens();
    Ok(config)
}

pub(crate) fn run(args: Args) -> Result<ExitCode> {
    let config = config(&args)?;
    if args.check {
        config.validate()?;
        if let Some(intent) = &config.intent {
            coherd_server::read_intent(intent)?;
        }
        let actions = config.reconcile.actions.len();
        println!("configuration valid: {actions} reconcile action(s)");
        return Ok(ExitCode::SUCCESS);
    }
    super::init_logging(args.log_format);
    raise_file_limit();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(coherd_server::serve(
        config,
        coherd_server::shutdown_signal(),
    ))?;
    // Everything is stored and the writer has stopped: exit now rather than
    // spend seconds freeing a large fleet model piece by piece.
    std::process::exit(0)
}

/// Connections need file descriptors: take the hard limit, as servers do, so
/// that `max_connections` (not a low default soft limit) is what bounds them.
fn raise_file_limit() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    if let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE)
        && soft < hard
        && setrlimit(Resource::RLIMIT_NOFILE, hard, hard).is_err()
    {
        eprintln!("coherd: could not raise the open file limit from {soft} to {hard}");
    }
}
