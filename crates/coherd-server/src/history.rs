//! History: divergence episodes written to the store as they change, read by
//! time window for `GET /v1/divergences?since=&until=`, and member events
//! read as a member's timeline; both pruned after `history_retention`.
//!
//! The writer's sink queues every divergence change and member event; a
//! thread of its own, with its own store handle, records them in batches,
//! so ingest never waits on history. Recording is idempotent (an episode is
//! keyed by its id and the time it opened, an event by its member, time and
//! what happened): at start, and whenever the queue overflowed, the thread
//! records every episode the engine holds, and a start records the member
//! events of the reports it replayed, which covers what a crash kept from
//! being written. Member events that overflow the queue are counted in
//! `coherd_history_dropped_total`. At the start of every minute (and at
//! start) the thread also records each service's SLIs, for their trend.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use coherd_engine::{Divergence, MemberChange};
use coherd_model::Time;
use coherd_model::time::wall_now;
use coherd_store::{Episode, MemberEvent, SliMinute, Store};
use tokio::sync::watch;

use crate::pipeline::Shared;

/// Changes history may fall behind by before it records everything again.
pub(crate) const QUEUE: usize = 16_384;

/// Most episodes recorded in one transaction.
const BATCH: usize = 5_000;

/// How often history older than its retention is deleted.
const PRUNE_EVERY: Duration = Duration::from_secs(3600);

/// What the sink hands the history.
pub(crate) enum Item {
    /// A divergence record that changed.
    Episode(Divergence),
    /// A member event, formatted by the history thread (not the writer).
    Member {
        service: String,
        member: String,
        at: Time,
        change: MemberChange,
    },
}

impl Item {
    /// The member event this is, as the history keeps it.
    fn member_event(self) -> Option<MemberEvent> {
        match self {
            Item::Member {
                service,
                member,
                at,
                change,
            } => Some(member_event(service, member, at, &change)),
            Item::Episode(_) => None,
        }
    }
}

/// The ends of the queue from the engine's sink to the history thread.
pub(crate) struct Feed {
    /// Where the sink sends what happened.
    pub tx: mpsc::SyncSender<Item>,
    /// Set when a change could not be queued: every episode is recorded again.
    pub lost: Arc<AtomicBool>,
    rx: Mutex<Option<mpsc::Receiver<Item>>>,
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

/// A member event as the history keeps it: `what` names the event (and the
/// facet of a change), the record is what the API shows.
pub(crate) fn member_event(
    service: String,
    member: String,
    at: Time,
    change: &MemberChange,
) -> MemberEvent {
    let what = match change {
        // The value it changed to is part of what identifies the event: a
        // batch that a reporter buffered through an outage can change one
        // facet twice in one instant, and both changes belong in the timeline.
        MemberChange::Changed { facet, to, .. } => format!("changed:{facet}:{to}"),
        MemberChange::Joined { .. } => "joined".into(),
        MemberChange::Silent => "silent".into(),
        MemberChange::Back => "back".into(),
        MemberChange::Left => "left".into(),
        MemberChange::Deleted => "deleted".into(),
        MemberChange::Forgotten => "forgotten".into(),
    };
    let mut record = serde_json::to_value(change).expect("a member change always serialises");
    record["at"] = serde_json::json!(at);
    MemberEvent {
        service,
        member,
        at,
        what,
        record: record.to_string(),
    }
}

/// Starts the history thread over its own `store`, first recording
/// `replayed` (the member events of the reports a start replayed); it stops
/// when `stop` turns true.
pub(crate) fn start(
    mut store: Box<dyn Store>,
    shared: Arc<Shared>,
    retention: Duration,
    replayed: Vec<MemberEvent>,
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
            for chunk in replayed.chunks(BATCH) {
                write(&mut *store, &shared, &[], chunk);
            }
            drop(replayed);
            let mut next_prune = Instant::now();
            // The first record is taken at start, for the minute the server started in.
            let mut next_minute = wall_now();
            loop {
                let stopping = *stop.borrow();
                if shared.history.lost.swap(false, Ordering::SeqCst) {
                    // What is queued is covered below, but for member events.
                    let members: Vec<MemberEvent> =
                        feed.try_iter().filter_map(Item::member_event).collect();
                    // Copied out under the engine lock, written after.
                    let all: Vec<Episode> =
                        shared.engine().divergences().iter().map(episode).collect();
                    write(&mut *store, &shared, &all, &members);
                }
                let mut episodes = Vec::new();
                let mut members = Vec::new();
                let mut take = |item| match item {
                    Item::Episode(d) => episodes.push(episode(&d)),
                    member => members.extend(member.member_event()),
                };
                if let Ok(item) = feed.recv_timeout(Duration::from_millis(500)) {
                    take(item);
                    feed.try_iter().take(BATCH - 1).for_each(&mut take);
                }
                let idle = episodes.is_empty() && members.is_empty();
                write(&mut *store, &shared, &episodes, &members);
                let now = wall_now();
                if now >= next_minute {
                    let minute = minute_of(now);
                    next_minute = minute.add(Duration::from_secs(60));
                    if let Err(e) = store.record_sli(&sli_minutes(&shared, minute)) {
                        tracing::error!(error = %e, "cannot record the SLIs of this minute");
                        shared.metrics.history_failures.inc();
                    }
                }
                if Instant::now() >= next_prune {
                    next_prune = Instant::now() + PRUNE_EVERY;
                    match store.prune_history(wall_now().sub(retention)) {
                        Ok(0) => {}
                        Ok(n) => tracing::info!(rows = n, "history past its retention deleted"),
                        Err(e) => tracing::error!(error = %e, "cannot prune the history"),
                    }
                }
                if stopping && idle {
                    return;
                }
            }
        })
        .expect("spawn the history thread")
}

/// The start of the minute `t` is in.
fn minute_of(t: Time) -> Time {
    Time::from_nanos(t.as_nanos() - t.as_nanos().rem_euclid(60_000_000_000))
}

/// Every service's SLIs now, as the minute's record: what a trend needs,
/// not every window (those are on `/v1/services/{service}/slis` and `/metrics`).
fn sli_minutes(shared: &Shared, minute: Time) -> Vec<SliMinute> {
    // Computed under the engine lock, written out after.
    let slis: Vec<(String, u32, coherd_engine::ServiceSlis, AtTarget)> = {
        let mut engine = shared.engine();
        let services = engine.services();
        services
            .into_iter()
            .filter_map(|s| {
                let slis = engine.service_slis(&s.service)?;
                let at_target = at_target(engine.facet_distributions(&s.service));
                Some((s.service, s.open_divergences, slis, at_target))
            })
            .collect()
    };
    slis.into_iter()
        .map(|(service, open, s, at_target)| {
            let exposure: std::collections::BTreeMap<&str, Option<f64>> = s
                .exposure
                .iter()
                .map(|(f, e)| (f.as_str(), e.now))
                .collect();
            let record = serde_json::json!({
                "minute": minute,
                "members": s.members,
                "live": s.live,
                "silent": s.silent,
                "open_divergences": open,
                "coherence": s.coherence,
                "telemetry_completeness": s.telemetry_completeness,
                "phase_mismatch_rate": s.phase_mismatch_rate,
                "flap_frequency": s.flap_frequency,
                "exposure": exposure,
                "at_target": at_target,
            });
            SliMinute {
                service,
                minute,
                record: record.to_string(),
            }
        })
        .collect()
}

/// Per targeted facet, the share of members reporting at its target.
type AtTarget = std::collections::BTreeMap<String, f64>;

fn at_target(
    facets: Option<std::collections::BTreeMap<String, coherd_engine::FacetDistribution>>,
) -> AtTarget {
    facets
        .into_iter()
        .flatten()
        .filter_map(|(facet, d)| {
            let target = d.target.as_ref()?;
            let all: u32 = d.values.values().sum();
            (all > 0).then(|| {
                (
                    facet,
                    f64::from(d.values.get(target).copied().unwrap_or(0)) / f64::from(all),
                )
            })
        })
        .collect()
}

fn write(store: &mut dyn Store, shared: &Shared, episodes: &[Episode], members: &[MemberEvent]) {
    let written = store
        .record_episodes(episodes)
        .and_then(|()| store.record_member_events(members));
    if let Err(e) = written {
        tracing::error!(error = %e, "cannot record history; recording every episode again");
        shared.metrics.history_failures.inc();
        shared.metrics.history_dropped.inc_by(members.len() as u64);
        shared.history.lost.store(true, Ordering::SeqCst);
        // A full or failing disk: do not copy every episode out again at once.
        std::thread::sleep(Duration::from_secs(1));
    }
}
