//! History: divergence episodes written to the store as they change, read by
//! time window for `GET /v1/divergences?since=&until=`, pruned after
//! `history_retention`.
//!
//! The writer's sink queues every divergence change; a thread of its own,
//! with its own store handle, records them in batches (one transaction a
//! second at most), so ingest never waits on history. Recording is
//! idempotent (an episode is keyed by its id and the time it opened): at
//! start, and whenever the queue overflowed, the thread records every
//! episode the engine holds, which also covers what a crash kept from being
//! written.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use coherd_engine::Divergence;
use coherd_model::time::wall_now;
use coherd_store::{Episode, Store};
use tokio::sync::watch;

use crate::pipeline::Shared;

/// Changes history may fall behind by before it records everything again.
pub(crate) const QUEUE: usize = 16_384;

/// Most episodes recorded in one transaction.
const BATCH: usize = 5_000;

/// How often history older than its retention is deleted.
const PRUNE_EVERY: Duration = Duration::from_secs(3600);

/// The ends of the queue from the engine's sink to the history thread.
pub(crate) struct Feed {
    /// Where the sink sends each changed record.
    pub tx: mpsc::SyncSender<Divergence>,
    /// Set when a change could not be queued: everything is recorded again.
    pub lost: Arc<AtomicBool>,
    rx: Mutex<Option<mpsc::Receiver<Divergence>>>,
}

impl Feed {
    pub(crate) fn new() -> Feed {
        let (tx, rx) = mpsc::sync_channel(QUEUE);
        Feed {
            tx,
            // History starts from every episode the engine holds.
            lost: Arc::new(AtomicBool::new(true)),
            rx: Mutex::new(Some(rx)),
        }
    }
}

/// The episode a divergence record is.
fn episode(d: &Divergence) -> Episode {
    Episode {
        id: d.id.clone(),
        service: d.service.clone(),
        kind: d.kind.as_str().to_string(),
        opened_at: d.opened_at,
        resolved_at: d.resolved_at,
        record: serde_json::to_string(d).expect("a divergence always serialises"),
    }
}

/// Starts the history thread over its own `store`; it stops when `stop` turns true.
pub(crate) fn start(
    mut store: Box<dyn Store>,
    shared: Arc<Shared>,
    retention: Duration,
    stop: watch::Receiver<bool>,
) -> std::thread::JoinHandle<()> {
    let feed = shared
        .history
        .rx
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .take()
        .expect("the history thread starts once");
    std::thread::Builder::new()
        .name("coherd-history".into())
        .spawn(move || {
            let mut next_prune = Instant::now();
            loop {
                let stopping = *stop.borrow();
                if shared.history.lost.swap(false, Ordering::SeqCst) {
                    while feed.try_recv().is_ok() {}
                    // Copied out under the engine lock, written after.
                    let all: Vec<Episode> =
                        shared.engine().divergences().iter().map(episode).collect();
                    write(&mut *store, &shared, &all);
                }
                let mut batch = Vec::new();
                if let Ok(d) = feed.recv_timeout(Duration::from_millis(500)) {
                    batch.push(episode(&d));
                    batch.extend(feed.try_iter().take(BATCH - 1).map(|d| episode(&d)));
                }
                write(&mut *store, &shared, &batch);
                if Instant::now() >= next_prune {
                    next_prune = Instant::now() + PRUNE_EVERY;
                    match store.prune_history(wall_now().sub(retention)) {
                        Ok(0) => {}
                        Ok(n) => tracing::info!(episodes = n, "history past its retention deleted"),
                        Err(e) => tracing::error!(error = %e, "cannot prune the history"),
                    }
                }
                if stopping && batch.is_empty() {
                    return;
                }
            }
        })
        .expect("spawn the history thread")
}

fn write(store: &mut dyn Store, shared: &Shared, episodes: &[Episode]) {
    if let Err(e) = store.record_episodes(episodes) {
        tracing::error!(error = %e, "cannot record divergence history; recording it all again");
        shared.metrics.history_failures.inc();
        shared.history.lost.store(true, Ordering::SeqCst);
    }
}
