//! Server configuration: a YAML file, flags and environment.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use coherd_model::Limits;
use coherd_model::time::deserialize_duration;
use serde::Deserialize;

use crate::auth::{Scope, TokenEntry};
use crate::error::ServerError;

/// Everything `coherd serve` needs.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Database: a SQLite file path.
    pub db: PathBuf,
    /// Intent file, reloaded on SIGHUP and when it changes.
    pub intent: Option<PathBuf>,
    /// With an intent file: accept `PUT /v1/intent` too (the file wins again
    /// when it changes). Off: such a PUT answers 409 naming the file.
    pub intent_api: bool,
    /// Bearer tokens and their scopes.
    pub tokens: Vec<TokenEntry>,
    /// Per-observation and per-request limits.
    pub limits: Limits,
    /// A report further in the future than this is applied at its receive
    /// time and opens `clock_skew` for its member.
    #[serde(deserialize_with = "deserialize_duration")]
    pub max_clock_skew: Duration,
    /// A report further in the future than this is refused (that item only).
    #[serde(deserialize_with = "deserialize_duration")]
    pub max_future: Duration,
    /// Reports older than this are refused (that item only).
    #[serde(deserialize_with = "deserialize_duration")]
    pub max_report_age: Duration,
    /// How often the engine is checkpointed: a restart loads the newest
    /// checkpoint and replays only the reports after it, and the log is
    /// truncated behind the checkpoints.
    #[serde(deserialize_with = "deserialize_duration")]
    pub checkpoint_interval: Duration,
    /// A checkpoint is also taken once this many observations came in since
    /// the last one, so a start never replays more (about 1.5 s on 2 cores).
    pub checkpoint_after_observations: u64,
    /// Keep raw reports this long for `coherd capture export` and `coherd
    /// replay`, past what the checkpoints need. `0s` (the default): off.
    #[serde(deserialize_with = "deserialize_duration")]
    pub capture_raw: Duration,
    /// Ingest requests handled at once; more wait briefly, then get 503.
    pub ingest_concurrency: usize,
    /// Ingest requests queued for the writer; beyond this, 503 with Retry-After.
    pub ingest_queue: usize,
    /// Services coherd tracks; reports that would add more are refused (422).
    pub max_services: usize,
    /// Members coherd tracks across all services; reports that would add more are refused (422).
    pub max_members: usize,
    /// How long a resolved divergence episode is kept after it resolved.
    #[serde(deserialize_with = "deserialize_duration")]
    pub divergence_retention: Duration,
    /// Resolved divergence episodes kept per service, newest first.
    pub max_resolved_per_service: usize,
    /// How long the history (divergence episodes, read with
    /// `GET /v1/divergences?since=&until=`) is kept after an episode resolved.
    #[serde(deserialize_with = "deserialize_duration")]
    pub history_retention: Duration,
    /// Connections open at once; more are answered 503 and closed.
    pub max_connections: usize,
    /// Connections open at once from one peer address.
    pub max_connections_per_peer: usize,
    /// Time a client has to send a request head, counted from when the
    /// connection waits for one: also how long an idle keep-alive connection stays open.
    #[serde(deserialize_with = "deserialize_duration")]
    pub header_read_timeout: Duration,
    /// Time a request body may take to arrive once its head is read.
    #[serde(deserialize_with = "deserialize_duration")]
    pub body_read_timeout: Duration,
    /// Time limit for one request.
    #[serde(deserialize_with = "deserialize_duration")]
    pub request_timeout: Duration,
    /// TLS certificate chain (PEM); with `tls_key`, the listener speaks HTTPS.
    /// Both files are read again on SIGHUP.
    pub tls_cert: Option<PathBuf>,
    /// TLS private key (PEM) for `tls_cert`.
    pub tls_key: Option<PathBuf>,
    /// Serve plain HTTP with tokens on an address other than loopback (behind a
    /// proxy that terminates TLS, say). Off: such a setup is refused, so tokens
    /// never cross the network in clear by accident.
    pub allow_insecure_http: bool,
    /// Alert rules, SLOs, routing, silencing and inhibition.
    pub alerting: coherd_alert::AlertConfig,
    /// Where notifications go.
    pub notify: crate::alerting::NotifyConfig,
    /// The reconcile loop: which divergences to repair and how carefully.
    /// Reloaded from the config file on SIGHUP; refused whole when invalid.
    pub reconcile: coherd_reconcile::ReconcileConfig,
    /// Where coherd reads the fleet itself: Prometheus servers.
    pub sources: crate::prometheus_source::SourcesConfig,
    /// The file this config came from, read again on SIGHUP.
    #[serde(skip)]
    pub file: Option<PathBuf>,
}

impl Default for ServerConfig {
    fn default() -> ServerConfig {
        ServerConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 7070)),
            db: PathBuf::from("coherd.db"),
            intent: None,
            intent_api: false,
            tokens: Vec::new(),
            limits: Limits::default(),
            max_clock_skew: Duration::from_secs(30),
            max_future: Duration::from_secs(86_400),
            max_report_age: Duration::from_secs(600),
            checkpoint_interval: Duration::from_secs(60),
            capture_raw: Duration::ZERO,
            checkpoint_after_observations: 500_000,
            ingest_concurrency: 64,
            ingest_queue: 1024,
            max_services: 10_000,
            max_members: 2_000_000,
            divergence_retention: Duration::from_secs(7 * 86_400),
            max_resolved_per_service: 10_000,
            history_retention: Duration::from_secs(30 * 86_400),
            max_connections: 2048,
            max_connections_per_peer: 256,
            header_read_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            tls_cert: None,
            tls_key: None,
            allow_insecure_http: false,
            alerting: coherd_alert::AlertConfig::default(),
            notify: crate::alerting::NotifyConfig::default(),
            reconcile: coherd_reconcile::ReconcileConfig::default(),
            sources: crate::prometheus_source::SourcesConfig::default(),
            file: None,
        }
    }
}

impl ServerConfig {
    /// Reads a YAML config file; unknown keys are errors.
    pub fn from_file(path: &std::path::Path) -> Result<ServerConfig, ServerError> {
        let src = std::fs::read_to_string(path)
            .map_err(|e| ServerError::Config(format!("cannot read {}: {e}", path.display())))?;
        let mut config: ServerConfig = coherd_model::yaml::from_str(&src)
            .map_err(|e| ServerError::Config(format!("{}: {e}", path.display())))?;
        config.file = Some(path.to_path_buf());
        Ok(config)
    }

    /// The checked reconcile policy.
    pub fn reconcile_policy(&self) -> Result<coherd_reconcile::Policy, ServerError> {
        coherd_reconcile::Policy::new(self.reconcile.clone()).map_err(ServerError::Config)
    }

    /// Adds tokens from the environment: `COHERD_TOKEN_REPORT`, `COHERD_TOKEN_READ`,
    /// `COHERD_TOKEN_ADMIN` (each may hold several, comma-separated).
    pub fn add_env_tokens(&mut self) {
        for (var, scopes) in [
            ("COHERD_TOKEN_REPORT", vec![Scope::Report]),
            ("COHERD_TOKEN_READ", vec![Scope::Read]),
            (
                "COHERD_TOKEN_ADMIN",
                vec![Scope::Report, Scope::Read, Scope::Admin],
            ),
        ] {
            if let Ok(v) = std::env::var(var) {
                for t in v.split(',').map(str::trim).filter(|t| !t.is_empty()) {
                    self.tokens.push(TokenEntry {
                        token: t.to_string(),
                        scopes: scopes.clone(),
                        services: Vec::new(),
                        members: Vec::new(),
                    });
                }
            }
        }
    }

    /// Checks what serde cannot: tokens present off loopback, sane numbers.
    pub fn validate(&self) -> Result<(), ServerError> {
        if self.tokens.is_empty() && !self.listen.ip().is_loopback() {
            return Err(ServerError::Config(format!(
                "refusing to listen on {} without tokens: configure tokens (config file `tokens:` or COHERD_TOKEN_* variables) or listen on 127.0.0.1",
                self.listen
            )));
        }
        if self.tls_cert.is_some() != self.tls_key.is_some() {
            return Err(ServerError::Config(
                "TLS needs both tls_cert and tls_key (--tls-cert and --tls-key)".into(),
            ));
        }
        if !self.listen.ip().is_loopback() && self.tls_cert.is_none() && !self.allow_insecure_http {
            return Err(ServerError::Config(format!(
                "refusing to serve tokens in clear on {}: give --tls-cert and --tls-key, or, behind a proxy that terminates TLS, --allow-insecure-http",
                self.listen
            )));
        }
        if let Some(t) = self.tokens.iter().find(|t| t.token.len() < 16) {
            let _ = t;
            return Err(ServerError::Config(
                "every token must be at least 16 characters long".into(),
            ));
        }
        if self.max_clock_skew < Duration::from_secs(1) {
            return Err(ServerError::Config(
                "max_clock_skew must be at least 1s".into(),
            ));
        }
        if self.max_future < self.max_clock_skew {
            return Err(ServerError::Config(format!(
                "max_future ({}s) must be at least max_clock_skew ({}s): reports between the two are applied and flagged as clock_skew",
                self.max_future.as_secs(),
                self.max_clock_skew.as_secs()
            )));
        }
        crate::auth::Tokens::new(self.tokens.clone()).map_err(ServerError::Config)?;
        if self.ingest_concurrency == 0 || self.ingest_queue == 0 {
            return Err(ServerError::Config(
                "ingest_concurrency and ingest_queue must be at least 1".into(),
            ));
        }
        self.reconcile_policy()?;
        self.sources.check().map_err(ServerError::Config)?;
        if self.checkpoint_interval < Duration::from_secs(1) {
            return Err(ServerError::Config(
                "checkpoint_interval must be at least 1s (the default, 60s, suits most fleets)"
                    .into(),
            ));
        }
        Ok(())
    }
}
