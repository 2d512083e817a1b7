//! Checkpoints as the server keeps them: the engine's bytes with the intent
//! in force beside them (as the operator wrote it), written by a thread of
//! their own, and the restart that loads the newest intact one.
//!
//! The writer copies the engine's state between two batches, holding the
//! engine only for the copy; the checkpoint thread encodes, compresses and
//! stores it with its own store handle, then truncates what the checkpoint before it
//! covers. So the store always holds the two newest checkpoints and the log
//! since the older one: a damaged newest checkpoint falls back to the one
//! before plus the log.

use std::sync::{Arc, mpsc};
use std::time::Instant;

use coherd_engine::{Engine, EngineConfig, Sink};
use coherd_model::{Intent, Time};
use coherd_store::{MemberEvent, Store, StoreError};
use serde::{Deserialize, Serialize};

use crate::metrics::Metrics;

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

/// The bytes of a checkpoint of an engine's `snapshot`, with the intent in
/// force as its source text, revision and the time it took force.
pub fn encode_checkpoint(
    snapshot: &coherd_engine::Snapshot,
    intent: Option<(&str, u64, Time)>,
) -> Vec<u8> {
    let meta = Meta {
        intent: intent.map(|(source, revision, at)| StoredIntent {
            source: source.to_string(),
            revision,
            at,
        }),
    };
    let mut out = MAGIC.to_vec();
    out.extend_from_slice(&FORMAT.to_le_bytes());
    let mut out = postcard::to_extend(&meta, out).expect("metadata always encodes");
    out.extend_from_slice(&snapshot.encode());
    out
}

/// The intent in force when a checkpoint was written or the log ended.
#[derive(Debug, Clone)]
pub struct RestoredIntent {
    /// As the operator wrote it.
    pub source: String,
    /// Parsed.
    pub intent: Intent,
    /// 1 for the first intent the database held, one more for each change.
    pub revision: u64,
    /// When it took force.
    pub at: Time,
}

/// Loads checkpoint bytes; the error says what is wrong with them.
fn decode(bytes: &[u8], config: EngineConfig) -> Result<(Engine, Option<RestoredIntent>), String> {
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
        Some(i) => Some(RestoredIntent {
            intent: Intent::from_yaml(&i.source)
                .map_err(|e| format!("its intent no longer parses: {e}"))?,
            source: i.source,
            revision: i.revision,
            at: i.at,
        }),
        None => None,
    };
    let engine = Engine::from_checkpoint(
        config,
        engine_bytes,
        intent.as_ref().map(|i| i.intent.clone()),
    )
    .map_err(|e| e.to_string())?;
    Ok((engine, intent))
}

/// The newest checkpoint that loads, with the id of the last entry it
/// covers; `None` when there is none (the whole log is replayed). A
/// checkpoint that does not load is skipped with an error in the log.
fn restore(
    store: &mut dyn Store,
    config: &EngineConfig,
) -> Result<Option<(Engine, Option<RestoredIntent>, u64)>, StoreError> {
    for info in store.checkpoints()? {
        let loaded = match store.read_checkpoint(info.id) {
            Ok(bytes) => decode(&bytes, config.clone()),
            Err(e @ StoreError::CorruptCheckpoint { .. }) => Err(e.to_string()),
            Err(e) => return Err(e),
        };
        match loaded {
            Ok((engine, intent)) => {
                tracing::info!(
                    checkpoint = info.id,
                    covers = info.covers,
                    at = %info.at,
                    bytes = info.bytes,
                    "engine loaded from a checkpoint"
                );
                return Ok(Some((engine, intent, info.covers)));
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

/// An engine rebuilt from a store, as a server start does it.
pub struct Rebuilt {
    /// The engine, with every stored entry applied.
    pub engine: Engine,
    /// The intent in force.
    pub intent: Option<RestoredIntent>,
    /// The last entry the checkpoint it was loaded from covers (0: none).
    pub checkpoint_covers: u64,
    /// The last entry applied.
    pub applied: u64,
    /// Observations replayed from the log after the checkpoint.
    pub replayed: u64,
}

/// Rebuilds the engine from `store`: the newest checkpoint that loads (a
/// damaged one falls back to the one before), then the log after it, at the
/// instants the writer stamped.
pub fn rebuild_engine(store: &mut dyn Store, config: EngineConfig) -> Result<Rebuilt, StoreError> {
    rebuild_engine_with(store, config, coherd_engine::Discard).map(|(rebuilt, _)| rebuilt)
}

/// [`rebuild_engine`], with the events of the replayed log sent to `sink`.
pub(crate) fn rebuild_engine_with<S: Sink>(
    store: &mut dyn Store,
    config: EngineConfig,
    sink: S,
) -> Result<(Rebuilt, S), StoreError> {
    let (engine, intent, covers) = match restore(store, &config)? {
        Some(restored) => restored,
        None => (Engine::new(config), None, 0),
    };
    let mut driver = coherd_engine::Driver::with_sink(engine, sink);
    let (replayed, applied, intent) =
        crate::pipeline::replay_log(store, &mut driver, covers, intent)?;
    let (engine, sink) = driver.into_parts();
    Ok((
        Rebuilt {
            engine,
            intent,
            checkpoint_covers: covers,
            applied,
            replayed,
        },
        sink,
    ))
}

/// Keeps the member events of a replayed log, for the history: at most
/// [`MAX_REPLAYED_EVENTS`] (a log that held more is mostly recorded already).
#[derive(Default)]
pub(crate) struct ReplayedEvents(pub Vec<MemberEvent>);

/// Most member events a start hands the history from the replayed log.
const MAX_REPLAYED_EVENTS: usize = 1_000_000;

impl Sink for ReplayedEvents {
    fn event(&mut self, _engine: &Engine, event: coherd_engine::Event) {
        if let coherd_engine::Event::Member {
            service,
            member,
            at,
            change,
        } = event
            && self.0.len() < MAX_REPLAYED_EVENTS
        {
            self.0
                .push(crate::history::member_event(service, member, at, &change));
        }
    }
}

/// A checkpoint on its way to the store.
pub(crate) struct Pending {
    /// The last entry applied before it was taken.
    pub covers: u64,
    /// The engine's time.
    pub at: Time,
    /// A copy of the engine's state, encoded by the checkpoint thread.
    pub snapshot: coherd_engine::Snapshot,
    /// The intent in force: source, revision, when it took force.
    pub intent: Option<(String, u64, Time)>,
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
        let intent = pending.intent.as_ref();
        let bytes = encode_checkpoint(
            &pending.snapshot,
            intent.map(|(source, revision, at)| (source.as_str(), *revision, *at)),
        );
        drop(pending.snapshot);
        let saved = store.save_checkpoint(pending.covers, pending.at, &bytes);
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
        metrics.checkpoint_bytes.set(bytes.len() as i64);
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
                bytes = bytes.len(),
                took_ms = started.elapsed().as_millis() as u64,
                ?stats,
                "checkpoint stored"
            ),
            Err(e) => tracing::error!(error = %e, "cannot truncate the log behind a checkpoint"),
        }
    }
}
