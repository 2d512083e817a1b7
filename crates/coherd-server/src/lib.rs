//! coherd's HTTP service around the sans-IO engine.
//!
//! One writer thread owns the store: it group-commits ingest (many requests,
//! one transaction, one fsync), then applies each batch to the engine in
//! commit order and only then acknowledges. A timer ticks the engine at its
//! deadlines. Handlers only translate: they parse, call the core and map the
//! result; reads lock the engine briefly. On start the engine is rebuilt by
//! replaying the store, so divergences and SLIs survive a restart.
//!
//! ```no_run
//! # async fn example() -> Result<(), coherd_server::ServerError> {
//! let config = coherd_server::ServerConfig { db: "coherd.db".into(), ..Default::default() };
//! coherd_server::serve(config, std::future::pending()).await
//! # }
//! ```

pub mod alerting;
pub mod api;
pub mod auth;
pub mod config;
pub mod dephase;
pub mod error;
pub mod ingest;
pub mod metrics;
pub mod openapi;
pub mod pipeline;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{delete, get, post};
use coherd_model::Intent;
use coherd_store::SqliteStore;
use tokio::sync::{Semaphore, watch};

pub use config::ServerConfig;
pub use error::ServerError;

use crate::auth::Tokens;
use crate::pipeline::{Job, Shared, Writer, wall_now};

/// Shared by every handler: cheap to clone.
#[derive(Clone)]
pub struct AppState {
    /// The engine and the stream.
    pub shared: Arc<Shared>,
    /// The writer's queue.
    pub writer: Writer,
    /// Bearer tokens.
    pub tokens: Arc<Tokens>,
    /// The configuration.
    pub config: Arc<ServerConfig>,
    /// Ingest requests allowed at once.
    pub ingest_slots: Arc<Semaphore>,
    /// Becomes true when the server shuts down (ends open streams).
    pub stopping: watch::Receiver<bool>,
    /// Alerting: rules, SLOs, routing, silences.
    pub alerts: Arc<alerting::AlertState>,
}

/// The router, with every route and its limits.
pub fn app(state: AppState) -> Router {
    let timeout = tower_http::timeout::TimeoutLayer::with_status_code(
        axum::http::StatusCode::REQUEST_TIMEOUT,
        state.config.request_timeout,
    );
    let api = Router::new()
        .route("/v1/observations", post(api::post_observations))
        .route("/v1/services", get(api::get_services))
        .route("/v1/services/{service}", get(api::get_service))
        .route("/v1/services/{service}/members", get(api::get_members))
        .route(
            "/v1/services/{service}/members/{member}",
            delete(api::delete_member),
        )
        .route("/v1/divergences", get(api::get_divergences))
        .route("/v1/alerts", get(alerting::get_alerts))
        .route("/v1/slos", get(alerting::get_slos))
        .route(
            "/v1/silences",
            get(alerting::get_silences).post(alerting::post_silence),
        )
        .route("/v1/silences/{id}", delete(alerting::delete_silence))
        .route("/v1/dephase/{service}/{job}", get(dephase::get_slot))
        .route("/v1/intent", get(api::get_intent).put(api::put_intent))
        .route("/v1/openapi.json", get(api::openapi))
        .route("/healthz", get(api::healthz))
        .route("/readyz", get(api::readyz))
        .route("/metrics", get(api::metrics))
        .layer(timeout);
    Router::new()
        .route("/v1/stream", get(api::stream))
        .merge(api)
        .fallback(api::not_found)
        .layer(middleware::from_fn_with_state(
            state.clone(),
            count_requests,
        ))
        .with_state(state)
}

async fn count_requests(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched".to_string(), |p| p.as_str().to_string());
    let method = req.method().to_string();
    let res = next.run(req).await;
    let class = format!("{}xx", res.status().as_u16() / 100);
    state
        .shared
        .metrics
        .requests
        .get_or_create(&vec![
            ("route".into(), route),
            ("method".into(), method),
            ("code".into(), class),
        ])
        .inc();
    res
}

/// Reads and validates an intent file.
pub fn read_intent(path: &std::path::Path) -> Result<(String, Intent), ServerError> {
    let source = std::fs::read_to_string(path)
        .map_err(|e| ServerError::Intent(format!("cannot read intent {}: {e}", path.display())))?;
    let intent = Intent::from_yaml(&source)
        .map_err(|e| ServerError::Intent(format!("{}: {e}", path.display())))?;
    Ok((source, intent))
}

/// Runs the server until `shutdown` completes, then drains and exits.
pub async fn serve(
    config: ServerConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    config.validate()?;
    let mut store = SqliteStore::open(&config.db)?;
    let started = std::time::Instant::now();
    let applier = pipeline::Applier::new(config.clock_grace);
    let shared = Shared::new(config.clock_grace);
    let (observations, stored_intent) = {
        let mut driver = shared.driver();
        let got = pipeline::rebuild(&mut store, &mut driver, &applier)?;
        if driver.started() {
            let now = shared.watermark(driver.engine());
            driver.tick(now);
        }
        got
    };
    shared.go_live();
    tracing::info!(observations, took_ms = started.elapsed().as_millis() as u64, db = %config.db.display(), "engine rebuilt from the store");
    let (stop_tx, stop_rx) = watch::channel(false);
    if let Some((source, intent)) = stored_intent {
        shared.set_intent(source, intent);
    }
    let (writer, writer_thread) = Writer::start(
        Box::new(store),
        applier,
        shared.clone(),
        config.ingest_queue,
    );
    let state = AppState {
        shared: shared.clone(),
        writer: writer.clone(),
        tokens: Arc::new(Tokens::new(config.tokens.clone())),
        ingest_slots: Arc::new(Semaphore::new(config.ingest_concurrency)),
        config: Arc::new(config.clone()),
        stopping: stop_rx.clone(),
        alerts: alerting::AlertState::new(
            config.alerting.clone(),
            Some(config.db.with_extension("silences.json")),
        ),
    };
    if let Some(path) = &config.intent {
        let (source, intent) = read_intent(path)?;
        reload(&state, source, intent).await;
    }
    pipeline::set_ready(&shared);

    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|source| ServerError::Listen {
            addr: config.listen,
            source,
        })?;
    let addr = listener.local_addr()?;
    if state.tokens.enabled() {
        tracing::info!(%addr, "coherd listening; bearer tokens required");
    } else {
        tracing::warn!(%addr, "coherd listening without tokens: anyone on this machine can read and write; loopback only");
    }

    tokio::spawn(pipeline::timer(shared.clone(), stop_rx.clone()));
    tokio::spawn(alerting::run(
        shared.clone(),
        state.alerts.clone(),
        stop_rx.clone(),
    ));
    tokio::spawn(alerting::deliver(
        state.alerts.clone(),
        config.notify.clone(),
        stop_rx.clone(),
    ));
    tokio::spawn(watch_intent(state.clone(), stop_rx.clone()));
    tokio::spawn(prune(writer.clone(), config.retention, stop_rx.clone()));

    let router = app(state);
    let stopper = stop_tx.clone();
    let shutdown = async move {
        shutdown.await;
        // Ends open event streams, so graceful shutdown does not wait on them.
        let _ = stopper.send(true);
    };
    let result = axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await;
    let _ = stop_tx.send(true);
    drop(writer);
    // The writer ends when every queue handle is gone; it finishes what it holds first.
    let _ = tokio::task::spawn_blocking(move || writer_thread.join()).await;
    tracing::info!("coherd stopped");
    result.map_err(ServerError::Io)
}

async fn reload(state: &AppState, source: String, intent: Intent) {
    if state
        .shared
        .intent()
        .is_some_and(|current| current.source == source)
    {
        return;
    }
    match api::apply_intent(state, source, intent).await {
        Ok(()) => tracing::info!("intent applied"),
        Err(e) => tracing::error!(?e, "intent not applied"),
    }
}

/// Reloads the intent file on SIGHUP and when it changes on disk.
async fn watch_intent(state: AppState, mut stop: watch::Receiver<bool>) {
    let Some(path) = state.config.intent.clone() else {
        return;
    };
    let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
    let mtime = |p: &std::path::Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    let mut seen = mtime(&path);
    loop {
        let hangup = async {
            match hup.as_mut() {
                Some(h) => {
                    h.recv().await;
                }
                None => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            _ = hangup => {}
            _ = tokio::time::sleep(Duration::from_secs(2)) => {
                let now = mtime(&path);
                if now == seen { continue; }
                seen = now;
            }
            _ = stop.changed() => return,
        }
        match read_intent(&path) {
            Ok((source, intent)) => reload(&state, source, intent).await,
            Err(e) => {
                tracing::error!(error = %e, "the intent file is invalid; the running intent stays in force")
            }
        }
    }
}

async fn prune(writer: Writer, retention: Duration, mut stop: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(600)) => {}
            _ = stop.changed() => return,
        }
        let _ = writer.submit(Job::Prune {
            before: wall_now().sub(retention),
        });
    }
}

/// Completes on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
    tracing::info!("shutting down: no new requests; finishing the ones in flight");
}
