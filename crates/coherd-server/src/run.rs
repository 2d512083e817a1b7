//! Start-up, the background tasks and shutdown.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use coherd_model::Intent;
use coherd_store::SqliteStore;
use tokio::sync::watch;

use crate::app::{AppState, app};
use crate::auth::Tokens;
use crate::config::ServerConfig;
use crate::listener::ConnectionLimits;
use crate::tls::Tls;

/// How long shutdown waits for requests in flight before it closes them.
const DRAIN: Duration = Duration::from_secs(3);
use crate::checkpoint::{self, Checkpointer};
use crate::error::ServerError;
use crate::pipeline::{self, Shared, Writer};
use crate::{alerting, api};

/// Reads and validates an intent file.
pub fn read_intent(path: &std::path::Path) -> Result<(String, Intent), ServerError> {
    let source = std::fs::read_to_string(path)
        .map_err(|e| ServerError::Intent(format!("cannot read intent {}: {e}", path.display())))?;
    let intent = Intent::from_yaml(&source)
        .map_err(|e| ServerError::Intent(format!("{}: {e}", path.display())))?;
    Ok((source, intent))
}

/// A started server's background: the writer thread and the signal that
/// stops the tasks. [`Running::stop`] ends them and waits for the writer.
pub struct Running {
    stop: watch::Sender<bool>,
    writer_thread: std::thread::JoinHandle<()>,
    history_thread: std::thread::JoinHandle<()>,
    /// The database's lock, held until the process ends.
    _db_lock: std::fs::File,
}

impl Running {
    /// A receiver that sees `true` once the server stops.
    fn stopping(&self) -> watch::Receiver<bool> {
        self.stop.subscribe()
    }

    /// Stops the background tasks, then waits until the writer has stored and
    /// applied what it holds (it ends once every handle to it is gone).
    pub async fn stop(self, state: AppState) {
        let _ = self.stop.send(true);
        drop(state);
        let (writer, history) = (self.writer_thread, self.history_thread);
        let _ = tokio::task::spawn_blocking(move || {
            let _ = writer.join();
            let _ = history.join();
        })
        .await;
    }
}

impl AppState {
    /// Start-up without a socket: opens the store, rebuilds the engine from
    /// it, starts the writer and applies the intent file. The router
    /// ([`app`]) then serves requests; [`serve`] adds the listener and the
    /// background tasks (alerting, intent reload, pruning).
    pub async fn open(config: ServerConfig) -> Result<(AppState, Running), ServerError> {
        config.validate()?;
        let db_lock = lock_database(&config.db)?;
        let mut store = SqliteStore::open(&config.db)?;
        let started = std::time::Instant::now();
        let engine_config = coherd_engine::EngineConfig {
            max_services: config.max_services,
            max_members: config.max_members,
            resolved_retention: config.divergence_retention,
            max_resolved_per_service: config.max_resolved_per_service,
            max_clock_skew: config.max_clock_skew,
            ..coherd_engine::EngineConfig::default()
        };
        let (rebuilt, replayed_events) = checkpoint::rebuild_engine_with(
            &mut store,
            engine_config,
            checkpoint::ReplayedEvents::default(),
        )?;
        let shared = Shared::new(rebuilt.engine);
        if let Some(intent) = rebuilt.intent {
            shared.restore_intent(intent);
        }
        // What fell due while the server was down fires now, before anything new.
        shared.tick();
        shared.go_live();
        tracing::info!(checkpoint_covers = rebuilt.checkpoint_covers, observations_replayed = rebuilt.replayed, took_ms = started.elapsed().as_millis() as u64, db = %config.db.display(), "engine rebuilt from the store");
        let keep_raw = (!config.capture_raw.is_zero()).then_some(config.capture_raw);
        let checkpoints = pipeline::Checkpoints {
            saver: Checkpointer::start(
                Box::new(SqliteStore::open(&config.db)?),
                shared.metrics.clone(),
                keep_raw,
            ),
            interval: config.checkpoint_interval,
            max_replay: config.checkpoint_after_observations,
            since: rebuilt.replayed,
            applied: rebuilt.applied,
            covered: rebuilt.checkpoint_covers,
        };
        let (writer, writer_thread) = Writer::start(
            Box::new(store),
            shared.clone(),
            config.ingest_queue,
            checkpoints,
        );
        let (stop, stopping) = watch::channel(false);
        let history_thread = crate::history::start(
            Box::new(SqliteStore::open(&config.db)?),
            shared.clone(),
            config.history_retention,
            replayed_events.0,
            stopping.clone(),
        );
        let reconcile = crate::reconcile::Control::new(
            config.reconcile_policy()?,
            SqliteStore::open(&config.db)?,
            shared.metrics.reconcile.clone(),
        );
        let state = AppState {
            reconcile,
            history: Arc::new(std::sync::Mutex::new(SqliteStore::open(&config.db)?)),
            shared,
            writer,
            tokens: Arc::new(Tokens::new(config.tokens.clone()).map_err(ServerError::Config)?),
            ingest_slots: crate::fairness::IngestSlots::new(config.ingest_concurrency),
            stopping,
            alerts: alerting::AlertState::new(
                config.alerting.clone(),
                Some(config.db.with_extension("silences.json")),
            ),
            config: Arc::new(config),
        };
        if let Some(path) = &state.config.intent {
            let (source, intent) = read_intent(path)?;
            reload(&state, source, intent, path).await;
        }
        pipeline::set_ready(&state.shared);
        Ok((
            state,
            Running {
                stop,
                writer_thread,
                history_thread,
                _db_lock: db_lock,
            },
        ))
    }
}

/// Takes the database for this process alone: an exclusive lock on
/// `<db>.lock`, held for the server's lifetime and released by the OS when the
/// process ends (so a SIGKILL leaves no stale lock). A second server on the
/// same database would acknowledge writes the first one never sees.
fn lock_database(db: &std::path::Path) -> Result<std::fs::File, ServerError> {
    use std::io::{Read, Seek, Write};
    if db.is_dir() {
        return Err(ServerError::Config(format!(
            "--db {} is a folder: give a file in it, such as {}",
            db.display(),
            db.join("coherd.db").display()
        )));
    }
    let folder = match db.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => std::path::Path::new("."),
    };
    if !folder.is_dir() {
        return Err(ServerError::Config(format!(
            "the folder {} for --db does not exist: create it (mkdir -p {}) or choose another --db",
            folder.display(),
            folder.display()
        )));
    }
    let path = std::path::PathBuf::from(format!("{}.lock", db.display()));
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::PermissionDenied => ServerError::Config(format!(
                "cannot write in {}: permission denied; run coherd as a user who may write there, or choose another --db",
                folder.display()
            )),
            _ => ServerError::Config(format!("cannot create {}: {e}", path.display())),
        })?;
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            let holder = holder.trim();
            let who = if holder.is_empty() {
                "another process".to_string()
            } else {
                format!("process {holder}")
            };
            return Err(ServerError::Config(format!(
                "database {} is in use by {who} (a coherd serve); stop it, or give this server its own --db",
                db.display()
            )));
        }
        Err(std::fs::TryLockError::Error(e)) => {
            return Err(ServerError::Config(format!(
                "cannot lock {}: {e}",
                path.display()
            )));
        }
    }
    let _ = file.set_len(0);
    let _ = file.rewind();
    let _ = write!(file, "{}", std::process::id());
    Ok(file)
}

/// Runs the server until `shutdown` completes, then drains and exits.
pub async fn serve(
    config: ServerConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    // Bind first: an address in use is reported before anything else is done.
    let listen = config.listen;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|source| ServerError::Listen {
            addr: listen,
            source,
        })?;
    serve_on(listener, config, shutdown).await
}

/// [`serve`] on a listener the caller bound (to learn the port of
/// `127.0.0.1:0`, or to be sure it speaks to its own server).
pub async fn serve_on(
    listener: tokio::net::TcpListener,
    config: ServerConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    let tls = match (&config.tls_cert, &config.tls_key) {
        (Some(cert), Some(key)) => Some(Tls::load(cert, key)?),
        _ => None,
    };
    let (state, running) = AppState::open(config).await?;
    let addr = listener.local_addr()?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    if state.tokens.enabled() {
        tracing::info!(%addr, scheme, "coherd listening; bearer tokens required");
    } else {
        tracing::warn!(%addr, "coherd listening without tokens: anyone on this machine can read and write; loopback only");
    }

    let shared = state.shared.clone();
    tokio::spawn(alerting::run(
        shared,
        state.alerts.clone(),
        state.reconcile.clone(),
        running.stopping(),
    ));
    tokio::spawn(alerting::deliver(
        state.alerts.clone(),
        state.config.notify.clone(),
        state.shared.metrics.delivery.clone(),
        running.stopping(),
    ));
    tokio::spawn(watch_intent(state.clone(), running.stopping()));
    tokio::spawn(reload_reconcile(state.clone(), running.stopping()));
    if let Some(k) = state.config.sources.kubernetes.clone() {
        tokio::spawn(crate::kube_source::run(
            k,
            state.writer.clone(),
            state.config.limits,
            running.stopping(),
        ));
    }
    for source in state.config.sources.prometheus.clone() {
        tokio::spawn(crate::prometheus_source::run(
            source,
            state.writer.clone(),
            state.config.limits,
            state.shared.metrics.source_polls.clone(),
            running.stopping(),
        ));
    }
    let reconcile_thread = crate::reconcile::start(
        state.reconcile.clone(),
        state.shared.clone(),
        running.stopping(),
    );
    if let Some(tls) = &tls {
        tokio::spawn(reload_tls(tls.clone(), running.stopping()));
    }

    let stopper = running.stop.clone();
    tokio::spawn(async move {
        shutdown.await;
        // Stops accepting, ends open event streams and drains the rest.
        let _ = stopper.send(true);
    });
    let limits = ConnectionLimits {
        max: state.config.max_connections,
        per_peer: state.config.max_connections_per_peer,
        header_read_timeout: state.config.header_read_timeout,
        drain: DRAIN,
    };
    crate::listener::serve(
        listener,
        app(state.clone()),
        limits,
        tls,
        running.stopping(),
    )
    .await;
    running.stop(state).await;
    let _ = tokio::task::spawn_blocking(move || reconcile_thread.join()).await;
    tracing::info!("coherd stopped");
    Ok(())
}

async fn reload(state: &AppState, source: String, intent: Intent, path: &std::path::Path) {
    if state
        .shared
        .intent()
        .is_some_and(|current| current.source == source)
    {
        return;
    }
    let origin = format!("file {}", path.display());
    match api::apply_intent(state, source, intent, origin).await {
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
            Ok((source, intent)) => reload(&state, source, intent, &path).await,
            Err(e) => {
                tracing::error!(error = %e, "the intent file is invalid; the running intent stays in force")
            }
        }
    }
}

/// Calls `reload` on every SIGHUP until `stop`.
async fn on_hangup(mut stop: watch::Receiver<bool>, mut reload: impl FnMut()) {
    let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) else {
        return;
    };
    loop {
        tokio::select! {
            _ = hup.recv() => reload(),
            _ = stop.changed() => return,
        }
    }
}

/// Reads the `reconcile:` section of the config file again on SIGHUP; an
/// invalid one is refused whole and the running policy stays.
async fn reload_reconcile(state: AppState, stop: watch::Receiver<bool>) {
    let Some(path) = state.config.file.clone() else {
        return;
    };
    on_hangup(stop, || {
        match ServerConfig::from_file(&path).and_then(|c| c.reconcile_policy()) {
            Ok(policy) => {
                let actions = policy.actions().len();
                state.reconcile.set_policy(policy);
                tracing::info!(actions, "reconcile policy reloaded");
            }
            Err(e) => {
                tracing::error!(error = %e, "the reconcile config is invalid; the running policy stays in force")
            }
        }
    })
    .await
}

/// Reads the TLS certificate and key again on SIGHUP (after a renewal).
async fn reload_tls(tls: Arc<Tls>, stop: watch::Receiver<bool>) {
    on_hangup(stop, || match tls.reload() {
        Ok(()) => tracing::info!("TLS certificate reloaded"),
        Err(e) => {
            tracing::error!(error = %e, "TLS certificate not reloaded; the one in use stays")
        }
    })
    .await
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
