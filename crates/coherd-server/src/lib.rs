//! coherd's HTTP service around the sans-IO engine.
//!
//! One writer thread owns the store: it group-commits ingest (many requests,
//! one transaction, one fsync), then applies each batch to the engine in
//! commit order and only then acknowledges; between batches it lets time
//! pass, firing the engine's deadlines as the wall clock reaches them. Handlers only translate: they parse, call the core and map the
//! result; reads lock the engine briefly. The engine is checkpointed every
//! minute; on start it is loaded from the newest checkpoint and the reports
//! after it are replayed, so divergences and SLIs survive a restart in
//! seconds however long the server ran.
//!
//! [`serve`] runs it all until a shutdown future completes. For tests and
//! embedding, [`AppState::open`] does the start-up without a socket and
//! [`app`] gives the router, so requests can be sent with `tower`'s `oneshot`.
//!
//! ```no_run
//! # async fn example() -> Result<(), coherd_server::ServerError> {
//! let config = coherd_server::ServerConfig { db: "coherd.db".into(), ..Default::default() };
//! coherd_server::serve(config, std::future::pending()).await
//! # }
//! ```

// Unit tests compile with the dev-dependencies that only benches and integration tests use.
#![cfg_attr(test, allow(unused_crate_dependencies))]

mod alerting;
mod api;
mod app;
mod auth;
mod checkpoint;
mod config;
mod delivery;
mod dephase;
mod error;
mod fairness;
mod history;
mod ingest;
mod kube_source;
mod listener;
mod metrics;
mod openapi;
mod page;
mod pipeline;
mod prometheus_source;
mod reconcile;
mod reconcile_api;
mod run;
mod tls;
mod ui;

pub use alerting::NotifyConfig;
pub use app::{AppState, app};
pub use auth::{Scope, TokenEntry};
pub use checkpoint::{Rebuilt, RestoredIntent, encode_checkpoint, rebuild_engine};
pub use config::ServerConfig;
pub use error::ServerError;
pub use prometheus_source::{
    KubeSource, PhaseFromValue, PromQuery, PrometheusSource, SourcesConfig,
};
pub use run::{Running, read_intent, serve, serve_on, shutdown_signal};
