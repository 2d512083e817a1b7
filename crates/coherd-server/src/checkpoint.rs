//! Checkpoints as the server keeps them: the engine's bytes with the intent
//! in force beside them (as the operator wrote it), written by a thread of
//! their own, and the restart that loads the newest intact one.
//!
//! The writer encodes a checkpoint between two batches, holding the engine
//! only for the encoding; the checkpoint thread compresses and stores it
//! with its own store handle, then truncates what the checkpoint before it
//! covers. So the store always holds the two newest checkpoints and the log
//! since the older one: a damaged newest checkpoint falls back to the one
//! before plus the log.

use std::sync::{Arc, mpsc};
use std::time::Instant;

use coherd_engine::{Engine, EngineConfig};
use coherd_model::{Intent, Time};
use coherd_store::{Store, StoreError};
use serde::{Deserialize, Serialize};

use crate::metrics::Metrics;
use crate::pipeline::IntentInForce;

/// The first bytes of every checkpoint the server writes.
const MAGIC: &[u8; 8] = b"coherdck";

/// The envelope's format: raised when [`Meta`] changes. The engine's part
/// carries its own format number.
pub(crate) const FORMAT: u32 = 1;

/// What the server keeps beside the engine.
#[derive(Serialize, Deserialize)]
struct Meta {
    intent: Option<StoredIntent>,
}

/// The intent in force, as the operator wrote it.
#[derive(Serialize, Deserialize)]
struct StoredIntent {
    source: String,
    revision: u64,
    at: Time,
}

/// The bytes of a checkpoint of `engine` with `intent` in force.
pub(crate) fn encode(engine: &Engine, intent: Option<&IntentInForce>) -> Vec<u8> {
    let meta = Meta {
        intent: intent.map(|i| StoredIntent {
            source: i.source.clone(),
            revision: i.revision,
            at: i.at,
        }),
    };
    let mut out = MAGIC.to_vec();
    out.extend_from_slice(&FORMAT.to_le_bytes());
    let mut out = postcard::to_extend(&meta, out).expect("metadata always encodes");
    out.extend_from_slice(&engine.checkpoint());
    out
}

/// An engine loaded from a checkpoint, and the intent that was in force.
pub(crate) struct Restored {
    pub engine: Engine,
    /// Source, parsed intent, revision and when it took force.
    pub intent: Option<(String, Intent, u64, Time)>,
}

/// Loads checkpoint bytes; the error says what is wrong with them.
pub(crate) fn decode(bytes: &[u8], config: EngineConfig) -> Result<Restored, String> {
    let rest = bytes
        .strip_prefix(MAGIC)
        .ok_or("it does not start as a coherd checkpoint")?;
    let (format, rest) = rest.split_at_checked(4).ok_or("it ends in its header")?;
    let format = u32::from_le_bytes(format.try_into().expect("four bytes"));
    if format != FORMAT {
        return Err(format!(
            "its format {format} is not the format {FORMAT} this coherd reads; \
             run the coherd version that wrote it"
        ));
    }
    let (meta, engine_bytes) =
        postcard::take_from_bytes::<Meta>(rest).map_err(|e| format!("its metadata: {e}"))?;
    let intent = match meta.intent {
        Some(i) => {
            let parsed = Intent::from_yaml(&i.source)
                .map_err(|e| format!("its intent no longer parses: {e}"))?;
            Some((i.source, parsed, i.revision, i.at))
        }
        None => None,
    };
    let engine = Engine::from_checkpoint(
        config,
        engine_bytes,
        intent.as_ref().map(|(_, parsed, ..)| parsed.clone()),
    )
    .map_err(|e| e.to_string())?;
    Ok(Restored { engine, intent })
}

/// The newest checkpoint that loads, with the id of the last entry it
/// covers; `None` when there is none (the whole log is replayed). A
/// checkpoint that does not load is skipped with an error in the log.
pub(crate) fn restore(
    store: &mut dyn Store,
    config: &EngineConfig,
) -> Result<Option<(Restored, u64)>, StoreError> {
    for info in store.checkpoints()? {
        let loaded = match store.read_checkpoint(info.id) {
            Ok(bytes) => decode(&bytes, config.clone()),
            Err(e @ StoreError::CorruptCheckpoint { .. }) => Err(e.to_string()),
            Err(e) => return Err(e),
        };
        match loaded {
            Ok(restored) => {
                tracing::info!(
                    checkpoint = info.id,
                    covers = info.covers,
                    at = %info.at,
                    bytes = info.bytes,
                    "engine loaded from a checkpoint"
                );
                return Ok(Some((restored, info.covers)));
            }
            Err(reason) => tracing::error!(
                checkpoint = info.id,
                %reason,
                "a checkpoint cannot be used; trying the one before it"
            ),
        }
    }
    Ok(None)
}

/// A checkpoint on its way to the store.
pub(crate) struct Pending {
    /// The last entry applied before it was taken.
    pub covers: u64,
    /// The engine's time.
    pub at: Time,
    pub bytes: Vec<u8>,
}

/// The thread that stores checkpoints, and truncates behind them.
pub(crate) struct Checkpointer {
    tx: Option<mpsc::SyncSender<Pending>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Checkpointer {
    /// Starts the thread over its own `store`. `keep_raw` says how long raw
    /// observation batches are kept past the checkpoints (raw capture).
    pub(crate) fn start(
        store: Box<dyn Store>,
        metrics: Arc<Metrics>,
        keep_raw: Option<std::time::Duration>,
    ) -> Checkpointer {
        // One checkpoint waits at most: a newer one is not taken while it does.
        let (tx, rx) = mpsc::sync_channel::<Pending>(1);
        let thread = std::thread::Builder::new()
            .name("coherd-checkpoint".into())
            .spawn(move || save_loop(store, rx, &metrics, keep_raw))
            .expect("spawn the checkpoint thread");
        Checkpointer {
            tx: Some(tx),
            thread: Some(thread),
        }
    }

    /// Hands a checkpoint over; false (and nothing happens) while the last
    /// one is still being stored.
    pub(crate) fn offer(&self, pending: Pending) -> bool {
        self.tx
            .as_ref()
            .is_some_and(|tx| tx.try_send(pending).is_ok())
    }

    /// Stores `pending` after what is queued, and waits until the thread is done.
    pub(crate) fn finish(mut self, pending: Option<Pending>) {
        if let (Some(tx), Some(p)) = (self.tx.take(), pending) {
            let _ = tx.send(p);
        }
        self.tx = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn save_loop(
    mut store: Box<dyn Store>,
    rx: mpsc::Receiver<Pending>,
    metrics: &Metrics,
    keep_raw: Option<std::time::Duration>,
) {
    // The checkpoint before the newest: what truncation keeps.
    let mut previous = store
        .checkpoints()
        .ok()
        .and_then(|list| list.first().map(|c| c.id));
    for pending in rx {
        let started = Instant::now();
        let saved = store.save_checkpoint(pending.covers, pending.at, &pending.bytes);
        let id = match saved {
            Ok(id) => id,
            Err(e) => {
                metrics.checkpoint_failures.inc();
                tracing::error!(error = %e, "cannot store a checkpoint; the log grows until one is stored");
                continue;
            }
        };
        metrics
            .checkpoint_save_seconds
            .observe(started.elapsed().as_secs_f64());
        metrics.checkpoint_bytes.set(pending.bytes.len() as i64);
        // The first checkpoint has none before it to fall back to: the log
        // stays until the second one is stored.
        let Some(keep) = previous.replace(id) else {
            continue;
        };
        let keep_raw_since = keep_raw.map(|d| pending.at.sub(d));
        match store.truncate(keep, keep_raw_since) {
            Ok(stats) => tracing::debug!(
                checkpoint = id,
                covers = pending.covers,
                bytes = pending.bytes.len(),
                took_ms = started.elapsed().as_millis() as u64,
                ?stats,
                "checkpoint stored"
            ),
            Err(e) => tracing::error!(error = %e, "cannot truncate the log behind a checkpoint"),
        }
    }
}
