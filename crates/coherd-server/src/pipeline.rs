//! The one writer: group-commits ingest to the store, then applies it to the
//! engine in commit order, and lets time pass between batches. Readers lock
//! the engine briefly for snapshots.
//!
//! The engine's clock is the wall clock. The writer stamps each stored entry
//! with the instant it is applied at (never earlier than the one before), and
//! fires the engine's deadlines as the wall clock reaches them, so a member
//! is `silent` 3 x `report_interval` after its last report whatever the rest
//! of the fleet does. Reports' own `time`s are checked (skew, age) but do not
//! move the clock. A rebuild applies the stored entries at their stamps, so
//! it reaches the state the live server had; `coherd capture export` writes
//! the same stamps, so `coherd replay` gives what the server gave.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, mpsc};
use std::time::Duration;

use coherd_engine::{Admission, Change, Divergence, Driver, Engine, Event, Outcome, Sink};
use coherd_model::time::wall_now;
use coherd_model::{Intent, Observation, Time};
use coherd_store::{Entry, NewEntry, Store, StoreError};
use serde_json::json;
use tokio::sync::{broadcast, oneshot};

use crate::checkpoint::{Checkpointer, Pending, RestoredIntent};
use crate::metrics::Metrics;

/// An intent as the operator wrote it, and as it parsed.
pub(crate) struct IntentInForce {
    /// The YAML or JSON text.
    pub source: String,
    /// The validated intent.
    pub intent: Intent,
    /// 1 for the first intent the database holds, one more for each change.
    pub revision: u64,
    /// Where it came from: the file, `PUT /v1/intent` with which token, or
    /// the database (after a restart).
    pub origin: String,
    /// When it took force.
    pub at: Time,
}

/// Sends the engine's events to the stream and counts them in the metrics,
/// at the engine time they happened. Off while the engine is rebuilt.
pub(crate) struct Publisher {
    metrics: Arc<Metrics>,
    stream: broadcast::Sender<(&'static str, String)>,
    /// Divergence changes for alerting, in the order they happened.
    alerts: mpsc::SyncSender<Divergence>,
    /// Set when alerting fell behind and a change was dropped: it resyncs.
    alerts_lost: Arc<AtomicBool>,
    /// Divergence changes and member events for the history.
    history: mpsc::SyncSender<crate::history::Item>,
    /// Set when the history fell behind: it records everything again.
    history_lost: Arc<AtomicBool>,
    live: bool,
}

/// Divergence changes alerting may fall behind by before it resyncs.
const ALERT_QUEUE: usize = 16_384;

impl Sink for Publisher {
    fn event(&mut self, engine: &Engine, event: Event) {
        if !self.live {
            return;
        }
        if let Event::Member {
            service,
            member,
            at,
            change,
        } = event
        {
            let item = crate::history::Item::Member {
                service,
                member,
                at,
                change,
            };
            if self.history.try_send(item).is_err() {
                self.metrics.history_dropped.inc();
            }
            return;
        }
        self.metrics.record_event(engine, &event);
        if let Event::Divergence { index, change } = event {
            let d = &engine.divergences()[index];
            if self.alerts.try_send(d.clone()).is_err() {
                self.alerts_lost.store(true, Ordering::SeqCst);
            }
            if self
                .history
                .try_send(crate::history::Item::Episode(d.clone()))
                .is_err()
            {
                self.history_lost.store(true, Ordering::SeqCst);
            }
            if self.stream.receiver_count() == 0 {
                // Nobody watches the stream: no need to write the event out.
                return;
            }
            let change = match change {
                Change::Opened => "opened",
                Change::Escalated => "escalated",
                Change::Resolved => "resolved",
            };
            let data = json!({"change": change, "divergence": d}).to_string();
            let _ = self.stream.send(("divergence", data));
        }
    }
}

/// The engine behind the shared lock, for readers. Hold it briefly.
pub(crate) struct EngineGuard<'a>(MutexGuard<'a, Driver<Publisher>>);

impl std::ops::Deref for EngineGuard<'_> {
    type Target = Engine;
    fn deref(&self) -> &Engine {
        self.0.engine()
    }
}

impl std::ops::DerefMut for EngineGuard<'_> {
    fn deref_mut(&mut self) -> &mut Engine {
        self.0.engine_mut()
    }
}

/// State shared by the writer, the timer and the handlers.
pub(crate) struct Shared {
    driver: Mutex<Driver<Publisher>>,
    /// Server-sent events, already serialised: (event name, JSON data).
    pub stream: broadcast::Sender<(&'static str, String)>,
    /// True once the engine has been rebuilt from the store.
    pub ready: AtomicBool,
    /// False while the store cannot commit (the last attempt failed).
    pub(crate) store_ok: AtomicBool,
    /// The intent in force: as the operator wrote it, and parsed.
    pub intent: Mutex<Option<Arc<IntentInForce>>>,
    /// Ingest and request metrics.
    pub metrics: Arc<Metrics>,
    /// The receiving end of divergence changes, for the alerting task to take.
    pub(crate) alert_feed: Mutex<Option<mpsc::Receiver<Divergence>>>,
    /// Set when a change could not be queued for alerting.
    pub(crate) alerts_lost: Arc<AtomicBool>,
    /// Divergence changes on their way to the history.
    pub(crate) history: crate::history::Feed,
}

impl Shared {
    /// A new shared state around an empty engine, whose events are not
    /// published until [`Shared::go_live`].
    pub(crate) fn new(engine: Engine) -> Arc<Shared> {
        let stream = broadcast::channel(4096).0;
        let metrics = Arc::new(Metrics::default());
        let (alerts, feed) = mpsc::sync_channel(ALERT_QUEUE);
        // Alerting starts from the open divergences, whatever came before.
        let alerts_lost = Arc::new(AtomicBool::new(true));
        let history = crate::history::Feed::new();
        let publisher = Publisher {
            metrics: metrics.clone(),
            stream: stream.clone(),
            alerts,
            alerts_lost: alerts_lost.clone(),
            history: history.tx.clone(),
            history_lost: history.lost.clone(),
            live: false,
        };
        Arc::new(Shared {
            driver: Mutex::new(Driver::with_sink(engine, publisher)),
            alert_feed: Mutex::new(Some(feed)),
            alerts_lost,
            history,
            stream,
            ready: AtomicBool::new(false),
            store_ok: AtomicBool::new(true),
            intent: Mutex::new(None),
            metrics,
        })
    }

    /// The engine, locked, for reading. Hold it briefly.
    pub(crate) fn engine(&self) -> EngineGuard<'_> {
        EngineGuard(self.driver())
    }

    /// The driver, locked: the writer's and the timer's way in.
    pub(crate) fn driver(&self) -> MutexGuard<'_, Driver<Publisher>> {
        self.driver.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// From now on the engine's events go to the stream and the metrics.
    pub(crate) fn go_live(&self) {
        self.driver().sink_mut().live = true;
    }

    /// The intent in force, if any.
    pub(crate) fn intent(&self) -> Option<Arc<IntentInForce>> {
        self.intent
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Records the intent in force, the next revision.
    pub(crate) fn set_intent(&self, source: String, intent: Intent, origin: String, at: Time) {
        let mut current = self.intent.lock().unwrap_or_else(|e| e.into_inner());
        let revision = current.as_ref().map_or(1, |c| c.revision + 1);
        tracing::info!(revision, origin = %origin, "intent changed");
        *current = Some(Arc::new(IntentInForce {
            source,
            intent,
            revision,
            origin,
            at,
        }));
    }

    /// Records the intent a rebuild found in force, with its revision.
    pub(crate) fn restore_intent(&self, restored: RestoredIntent) {
        let RestoredIntent {
            source,
            intent,
            revision,
            at,
        } = restored;
        *self.intent.lock().unwrap_or_else(|e| e.into_inner()) = Some(Arc::new(IntentInForce {
            source,
            intent,
            revision,
            origin: "the database (set before the last start)".into(),
            at,
        }));
    }

    /// Lets time pass to the wall clock: fires the deadlines due by now, and
    /// says when time must pass next.
    pub(crate) fn tick(&self) -> Time {
        let mut driver = self.driver();
        let now = wall_now();
        if driver.started() {
            let at = now.max(driver.engine().now());
            driver.tick(at);
        }
        next_due(driver.engine(), now)
    }
}

/// The instant the next stored entry is applied at: the wall clock, and
/// always after `previous` (the engine's clock or the entry before), so each
/// entry is an instant of its own.
fn stamp_after(previous: Time) -> Time {
    wall_now().max(previous.add(Duration::from_nanos(1)))
}

/// The longest the writer waits before letting time pass.
const TICK: Duration = Duration::from_secs(1);

/// When time must pass next: the engine's next deadline, at most [`TICK`] on.
fn next_due(engine: &Engine, now: Time) -> Time {
    let latest = now.add(TICK);
    engine.poll_timeout().map_or(latest, |t| t.min(latest))
}

/// What an ingest request got.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub(crate) struct Ingested {
    /// Reports applied.
    pub accepted: usize,
    /// Reports ignored as duplicates.
    pub duplicates: usize,
}

/// Why work failed after it was queued.
#[derive(Debug, Clone)]
pub(crate) enum WorkError {
    /// The store could not commit; nothing was stored.
    Store,
    /// The engine refused items (stored, but not applied).
    Refused(String),
}

/// Work for the writer.
pub(crate) enum Work {
    /// Observations received together.
    Observations {
        observations: Vec<Observation>,
        reply: oneshot::Sender<Result<Ingested, WorkError>>,
    },
    /// A new intent, already validated.
    Intent {
        source: String,
        intent: Box<Intent>,
        /// Who or what changed it, for the log and `GET /v1/intent`.
        origin: String,
        reply: oneshot::Sender<Result<(), WorkError>>,
    },
    /// An operator's delete.
    DeleteMember {
        service: String,
        member: String,
        reply: oneshot::Sender<Result<bool, WorkError>>,
    },
    /// An operator's delete of a whole service.
    DeleteService {
        service: String,
        reply: oneshot::Sender<Result<bool, WorkError>>,
    },
}

/// The handle to the writer thread.
#[derive(Clone)]
pub(crate) struct Writer {
    tx: mpsc::SyncSender<Work>,
}

/// Why work was not taken.
#[derive(Debug)]
pub(crate) enum SubmitError {
    /// The queue is full.
    Full,
    /// The writer has stopped.
    Stopped,
}

impl Writer {
    /// Starts the writer thread over `store`; `checkpoints` says where
    /// checkpoints go, how often, and which entry the engine has applied up to.
    pub(crate) fn start(
        store: Box<dyn Store>,
        shared: Arc<Shared>,
        queue: usize,
        checkpoints: Checkpoints,
    ) -> (Writer, std::thread::JoinHandle<()>) {
        let (tx, rx) = mpsc::sync_channel(queue);
        let handle = std::thread::Builder::new()
            .name("coherd-writer".into())
            .spawn(move || run(store, shared, rx, checkpoints))
            .expect("spawn the writer thread");
        (Writer { tx }, handle)
    }

    /// Queues work without waiting; a full queue is overload.
    pub(crate) fn submit(&self, work: Work) -> Result<(), SubmitError> {
        self.tx.try_send(work).map_err(|e| match e {
            mpsc::TrySendError::Full(_) => SubmitError::Full,
            mpsc::TrySendError::Disconnected(_) => SubmitError::Stopped,
        })
    }
}

enum Reply {
    Observations(oneshot::Sender<Result<Ingested, WorkError>>),
    Intent(oneshot::Sender<Result<(), WorkError>>, Box<Intent>, String),
    Delete(oneshot::Sender<Result<bool, WorkError>>),
}

/// The writer's checkpoints: where they go and when the next is due.
pub(crate) struct Checkpoints {
    /// The thread that stores them.
    pub saver: Checkpointer,
    /// How often one is taken.
    pub interval: Duration,
    /// One is also taken once this many observations came in since the
    /// last: a start never replays more.
    pub max_replay: u64,
    /// Observations stored since the last one was taken.
    pub since: u64,
    /// The last entry the engine has applied (restored or replayed).
    pub applied: u64,
    /// The last entry the newest stored checkpoint covers.
    pub covered: u64,
}

impl Checkpoints {
    /// A checkpoint of the engine as it is now, if it has applied anything
    /// the last one does not cover. The engine is held only to copy it.
    fn take(&mut self, shared: &Shared) -> Option<Pending> {
        if self.applied <= self.covered {
            return None;
        }
        let driver = shared.driver();
        let started = std::time::Instant::now();
        let snapshot = driver.engine().snapshot();
        let at = driver.engine().now();
        drop(driver);
        shared
            .metrics
            .checkpoint_copy_seconds
            .observe(started.elapsed().as_secs_f64());
        let intent = shared
            .intent()
            .map(|i| (i.source.clone(), i.revision, i.at));
        Some(Pending {
            covers: self.applied,
            at,
            snapshot,
            intent,
        })
    }

    /// Takes a checkpoint when one is due (by time, or by the observations
    /// a start would replay) and hands it to the saver.
    fn maybe_take(&mut self, shared: &Shared, next: &mut std::time::Instant) {
        if std::time::Instant::now() < *next && self.since < self.max_replay {
            return;
        }
        *next = std::time::Instant::now() + self.interval;
        if let Some(pending) = self.take(shared) {
            let covers = pending.covers;
            if self.saver.offer(pending) {
                self.covered = covers;
                self.since = 0;
            } else {
                tracing::warn!("the last checkpoint is still being stored; skipping this one");
            }
        }
    }
}

fn run(
    mut store: Box<dyn Store>,
    shared: Arc<Shared>,
    rx: mpsc::Receiver<Work>,
    mut checkpoints: Checkpoints,
) {
    // Time passes between batches: deadlines fire as the wall clock reaches
    // them. The engine is locked for that only when something is due.
    let mut due = shared.tick();
    let mut next_checkpoint = std::time::Instant::now() + checkpoints.interval;
    loop {
        checkpoints.maybe_take(&shared, &mut next_checkpoint);
        let now = wall_now();
        if now >= due {
            due = shared.tick();
            continue;
        }
        let first = match rx.recv_timeout(due.since(now)) {
            Ok(work) => work,
            Err(mpsc::RecvTimeoutError::Timeout) => continue,
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                // Stopping: one last checkpoint, so the next start replays nothing.
                let last = checkpoints.take(&shared);
                checkpoints.saver.finish(last);
                return;
            }
        };
        let mut batch = vec![first];
        while batch.len() < 1024 {
            match rx.try_recv() {
                Ok(w) => batch.push(w),
                Err(_) => break,
            }
        }
        let mut entries = Vec::with_capacity(batch.len());
        let mut replies = Vec::with_capacity(batch.len());
        // The engine's own limits are checked before anything is stored, so a
        // batch it would refuse in part is refused whole and leaves no trace.
        let engine = shared.engine();
        let mut admission = Admission::new(&engine);
        let mut at = engine.now();
        let mut next_stamp = || {
            at = stamp_after(at);
            at
        };
        for work in batch {
            match work {
                Work::Observations {
                    observations,
                    reply,
                } => {
                    if let Err((i, e)) = admission.admit(&observations) {
                        let _ = reply.send(Err(WorkError::Refused(format!("item {i}: {e}"))));
                        continue;
                    }
                    entries.push(NewEntry::Observations {
                        received_at: next_stamp(),
                        observations,
                    });
                    replies.push(Reply::Observations(reply));
                }
                Work::Intent {
                    source,
                    intent,
                    origin,
                    reply,
                } => {
                    entries.push(NewEntry::Intent {
                        at: next_stamp(),
                        source,
                    });
                    replies.push(Reply::Intent(reply, intent, origin));
                }
                Work::DeleteMember {
                    service,
                    member,
                    reply,
                } => {
                    entries.push(NewEntry::DeleteMember {
                        at: next_stamp(),
                        service,
                        member,
                    });
                    replies.push(Reply::Delete(reply));
                }
                Work::DeleteService { service, reply } => {
                    entries.push(NewEntry::DeleteService {
                        at: next_stamp(),
                        service,
                    });
                    replies.push(Reply::Delete(reply));
                }
            }
        }
        drop(admission);
        drop(engine);
        if entries.is_empty() {
            continue;
        }
        let started = std::time::Instant::now();
        let stored = store.append(&entries);
        shared.store_ok.store(stored.is_ok(), Ordering::SeqCst);
        if let Ok(ids) = &stored {
            checkpoints.applied = ids.last().copied().unwrap_or(checkpoints.applied);
            checkpoints.since += entries
                .iter()
                .map(|e| match e {
                    NewEntry::Observations { observations, .. } => observations.len() as u64,
                    _ => 1,
                })
                .sum::<u64>();
        }
        if let Err(e) = stored {
            tracing::error!(error = %e, "cannot store a batch; refusing it");
            for r in replies {
                match r {
                    Reply::Observations(tx) => drop(tx.send(Err(WorkError::Store))),
                    Reply::Intent(tx, ..) => drop(tx.send(Err(WorkError::Store))),
                    Reply::Delete(tx) => drop(tx.send(Err(WorkError::Store))),
                }
            }
            continue;
        }
        shared
            .metrics
            .commit_seconds
            .observe(started.elapsed().as_secs_f64());
        let mut driver = shared.driver();
        let mut answers = Vec::with_capacity(replies.len());
        for (entry, reply) in entries.iter().zip(replies) {
            match (entry, reply) {
                (
                    NewEntry::Observations {
                        received_at,
                        observations,
                    },
                    Reply::Observations(tx),
                ) => {
                    let got = apply_observations(&mut driver, *received_at, observations);
                    if let Ok(i) = &got {
                        shared.metrics.observations.inc_by(i.accepted as u64);
                        shared.metrics.duplicates.inc_by(i.duplicates as u64);
                    }
                    answers.push(Box::new(move || drop(tx.send(got))) as Box<dyn FnOnce()>);
                }
                (NewEntry::Intent { at, source }, Reply::Intent(tx, intent, origin)) => {
                    shared.set_intent(source.clone(), (*intent).clone(), origin, *at);
                    driver.set_intent(*at, *intent);
                    let _ = shared
                        .stream
                        .send(("intent", json!({"source": source, "at": at}).to_string()));
                    answers.push(Box::new(move || drop(tx.send(Ok(())))));
                }
                (
                    NewEntry::DeleteMember {
                        at,
                        service,
                        member,
                    },
                    Reply::Delete(tx),
                ) => {
                    let found = driver.remove_member(*at, service, member);
                    answers.push(Box::new(move || drop(tx.send(Ok(found)))));
                }
                (NewEntry::DeleteService { at, service }, Reply::Delete(tx)) => {
                    let found = driver.remove_service(*at, service);
                    answers.push(Box::new(move || drop(tx.send(Ok(found)))));
                }
                _ => unreachable!("entries and replies are built together"),
            }
        }
        // What the batch set in motion may fall due sooner.
        due = due.min(next_due(driver.engine(), wall_now()));
        drop(driver);
        for a in answers {
            a();
        }
    }
}

/// The reports of one stored request, applied together at the instant the
/// writer stamped it with. Live ingest and the rebuild on start both come
/// here, in store order, so they reach the same state.
fn apply_observations<S: Sink>(
    driver: &mut Driver<S>,
    at: Time,
    observations: &[Observation],
) -> Result<Ingested, WorkError> {
    let batch: Vec<&Observation> = observations.iter().collect();
    let mut got = Ingested::default();
    let mut refused = Vec::new();
    for (i, r) in driver.observe_instant(at, &batch).into_iter().enumerate() {
        match r {
            Ok(Outcome::Applied) => got.accepted += 1,
            Ok(Outcome::Duplicate) => got.duplicates += 1,
            Err(e) => refused.push(format!("item {i}: {e}")),
        }
    }
    if refused.is_empty() {
        Ok(got)
    } else {
        Err(WorkError::Refused(refused.join("; ")))
    }
}

/// Replays what the store holds after entry `after` (0: everything; else
/// the checkpoint the engine was loaded from covers it), in store order,
/// starting from the intent the checkpoint held. Returns the observations
/// applied, the last entry's id, and the intent in force at the end.
pub(crate) fn replay_log<S: Sink>(
    store: &mut dyn Store,
    driver: &mut Driver<S>,
    after: u64,
    mut intent: Option<RestoredIntent>,
) -> Result<(u64, u64, Option<RestoredIntent>), StoreError> {
    let mut count = 0;
    let mut last = after;
    // Reading and decoding (SQLite, zstd, JSON) run on a thread of their
    // own, ahead of the engine: a start takes the slower of the two, not the sum.
    std::thread::scope(|scope| {
        let (tx, rx) = mpsc::sync_channel::<Entry>(64);
        // Batches go back to be freed where they were allocated (freeing
        // another thread's memory is slow).
        let (done_tx, done_rx) = mpsc::channel::<Vec<Observation>>();
        let loader = scope.spawn(move || {
            store.load(after, &mut |entry| {
                let id = entry.id;
                done_rx.try_iter().for_each(drop);
                tx.send(entry)
                    .map_err(|_| StoreError::replay(id, "the rebuild stopped"))
            })
        });
        for Entry { id, body } in rx {
            last = id;
            match body {
                NewEntry::Observations {
                    received_at,
                    observations,
                } => {
                    count += observations.len() as u64;
                    let _ = apply_observations(driver, received_at, &observations);
                    let _ = done_tx.send(observations);
                }
                NewEntry::Intent { at, source } => match Intent::from_yaml(&source) {
                    Ok(parsed) => {
                        driver.set_intent(at, parsed.clone());
                        let revision = intent.as_ref().map_or(0, |i| i.revision) + 1;
                        intent = Some(RestoredIntent {
                            source,
                            intent: parsed,
                            revision,
                            at,
                        });
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "a stored intent no longer parses; skipped")
                    }
                },
                NewEntry::DeleteMember {
                    at,
                    service,
                    member,
                } => {
                    driver.remove_member(at, &service, &member);
                }
                NewEntry::DeleteService { at, service } => {
                    driver.remove_service(at, &service);
                }
            }
        }
        loader.join().expect("the loader thread does not panic")
    })?;
    Ok((count, last, intent))
}

/// Marks the server ready.
pub(crate) fn set_ready(shared: &Shared) {
    shared.ready.store(true, Ordering::SeqCst);
}
