//! What the reconciler remembers across rounds and restarts: one task per
//! (divergence episode, action), each service's rollout of each action, the
//! episodes each subject went through, and the counts behind the SLIs.

use std::collections::{BTreeMap, BTreeSet};
use std::hash::Hasher as _;

use coherd_model::{Kind, Severity, Time};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use siphasher::sip128::{Hasher128 as _, SipHasher13};

/// A divergence as the reconciler sees it: open, or the latest record of
/// one a task waits on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Seen {
    /// The divergence's stable id.
    pub id: String,
    /// Its service.
    pub service: String,
    /// Its kind.
    pub kind: Kind,
    /// Its severity.
    pub severity: Severity,
    /// The member, for member-level kinds.
    pub member: Option<String>,
    /// The facet, where the evidence names one.
    pub facet: Option<String>,
    /// The target value, where the evidence names one.
    pub target: Option<String>,
    /// When this episode opened.
    pub opened_at: Time,
    /// When it resolved; `None` while open.
    pub resolved_at: Option<Time>,
    /// The record as the API shows it; not stored with a task (the loop
    /// reads it from the engine when a decision or a dispatch needs it).
    #[serde(skip)]
    pub record: Value,
}

/// Where a task is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "phase", content = "at")]
pub enum Phase {
    /// Seen, not yet taken into a wave.
    Waiting,
    /// Taken into a wave; dispatched when its turn, budget and backoff allow.
    Planned,
    /// Dispatched; the outcome is awaited.
    InFlight,
    /// The action reported success; the divergence must resolve.
    Succeeded(Time),
    /// The divergence resolved after the action succeeded.
    Verified(Time),
    /// The divergence did not resolve within `verify_within`.
    Unverified(Time),
    /// Every attempt failed, or the receiver refused the action.
    GaveUp(Time),
    /// The divergence resolved before the action was dispatched.
    Resolved(Time),
    /// Dry run: it would have been dispatched.
    DryRun(Time),
    /// A guard action (`verify: false`) succeeded.
    Done(Time),
}

impl Phase {
    /// Whether nothing more happens to the task.
    pub fn is_terminal(self) -> bool {
        !matches!(
            self,
            Phase::Waiting | Phase::Planned | Phase::InFlight | Phase::Succeeded(_)
        )
    }

    /// Whether it ended in a way that halts its rollout.
    pub fn halts(self) -> bool {
        matches!(self, Phase::Unverified(_) | Phase::GaveUp(_))
    }

    /// When it ended, for terminal phases.
    pub fn ended_at(self) -> Option<Time> {
        match self {
            Phase::Verified(t)
            | Phase::Unverified(t)
            | Phase::GaveUp(t)
            | Phase::Resolved(t)
            | Phase::DryRun(t)
            | Phase::Done(t) => Some(t),
            _ => None,
        }
    }
}

/// One action on one divergence episode.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Task {
    /// The action's name.
    pub action: String,
    /// The divergence as it was when the task was made.
    pub seen: Seen,
    /// Stable per (episode, action), across attempts and restarts.
    pub key: String,
    /// Attempts dispatched so far.
    pub attempts: u32,
    /// Where it is.
    pub phase: Phase,
    /// The rollout it was taken into, and its wave (0-based).
    pub rollout: u64,
    /// Its wave in that rollout, once planned.
    pub wave: Option<usize>,
    /// Not dispatched before this (backoff).
    pub next_at: Time,
    /// The last backoff delay, in milliseconds (decorrelated jitter grows from it).
    pub last_delay_ms: u64,
    /// The last reason it was skipped, so a reason is audited once, not every round.
    pub skipped: Option<String>,
}

/// A wave stopped by a failed verification or an action that gave up.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Halt {
    /// Since when.
    pub at: Time,
    /// Why.
    pub reason: String,
}

/// One service's rollout of one action.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rollout {
    /// Raised when a rollout completes and a new one starts.
    pub id: u64,
    /// The wave under way (0-based); `None` before the first.
    pub wave: Option<usize>,
    /// When the next wave may start, once the current one is verified.
    pub gate_at: Option<Time>,
    /// Set when the rollout halted; cleared by a resume.
    pub halted: Option<Halt>,
}

/// A subject kept from acting because it keeps coming back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Quarantine {
    /// Since when.
    pub since: Time,
    /// The action whose thrash limit it reached.
    pub action: String,
    /// The subject's service.
    pub service: String,
    /// Reopens counted.
    pub reopens: usize,
}

/// The episodes one divergence id went through.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Episodes {
    /// The latest episode's opening.
    pub last_opened_at: Time,
    /// When each reopen happened, oldest first (bounded).
    pub reopens: Vec<Time>,
    /// Set while quarantined.
    pub quarantine: Option<Quarantine>,
}

/// Reopen times kept per subject.
pub const MAX_REOPENS_KEPT: usize = 64;

/// Counts per action, behind the SLIs; kept across restarts.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stats {
    /// Attempts dispatched.
    pub dispatched: u64,
    /// Attempts that succeeded.
    pub succeeded: u64,
    /// Attempts that failed.
    pub failed: u64,
    /// Tasks verified: divergences repaired.
    pub verified: u64,
    /// Tasks whose divergence did not resolve in time.
    pub unverified: u64,
    /// Tasks that gave up.
    pub gave_up: u64,
    /// Sum of open-to-verified times of the verified tasks, in milliseconds.
    pub repair_ms: u64,
}

impl Stats {
    /// Verified over tasks that ended after an attempt; `None` before any.
    pub fn success_rate(&self) -> Option<f64> {
        let ended = self.verified + self.unverified + self.gave_up;
        (ended > 0).then(|| self.verified as f64 / ended as f64)
    }

    /// Attempts per repaired divergence; `None` before any repair.
    pub fn cost(&self) -> Option<f64> {
        (self.verified > 0).then(|| self.dispatched as f64 / self.verified as f64)
    }

    /// Mean time from opening to verified repair, in seconds.
    pub fn mean_time_to_repair(&self) -> Option<f64> {
        (self.verified > 0).then(|| self.repair_ms as f64 / 1e3 / self.verified as f64)
    }
}

/// Everything the reconciler remembers; stored as JSON after every round
/// that changed it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct State {
    /// The emergency stop: nothing is dispatched.
    pub paused: bool,
    /// Services nothing is dispatched to.
    pub paused_services: BTreeSet<String>,
    /// Tasks by idempotency key.
    pub tasks: BTreeMap<String, Task>,
    /// Rollouts by action, then service.
    pub rollouts: BTreeMap<String, BTreeMap<String, Rollout>>,
    /// Episodes by divergence id.
    pub subjects: BTreeMap<String, Episodes>,
    /// Counts by action.
    pub stats: BTreeMap<String, Stats>,
}

impl State {
    /// Per service: rollouts halted and subjects quarantined (only services with either).
    pub fn troubles(&self) -> BTreeMap<String, (u32, u32)> {
        let mut out: BTreeMap<String, (u32, u32)> = BTreeMap::new();
        for r in self.rollouts.values() {
            for (service, r) in r {
                if r.halted.is_some() {
                    out.entry(service.clone()).or_default().0 += 1;
                }
            }
        }
        for e in self.subjects.values() {
            if let Some(q) = &e.quarantine {
                out.entry(q.service.clone()).or_default().1 += 1;
            }
        }
        out
    }

    /// Whether nothing may be dispatched to `service` now.
    pub fn is_paused(&self, service: &str) -> bool {
        self.paused || self.paused_services.contains(service)
    }
}

/// The small part of the state, stored as one item.
#[derive(Serialize)]
struct MetaRef<'a> {
    paused: bool,
    paused_services: &'a BTreeSet<String>,
    rollouts: &'a BTreeMap<String, BTreeMap<String, Rollout>>,
    stats: &'a BTreeMap<String, Stats>,
}

#[derive(Deserialize)]
struct Meta {
    paused: bool,
    paused_services: BTreeSet<String>,
    rollouts: BTreeMap<String, BTreeMap<String, Rollout>>,
    stats: BTreeMap<String, Stats>,
}

const META: &str = "meta";
const TASK: &str = "task/";
const SUBJECT: &str = "subject/";

/// The state as last stored, so the next store writes only what changed:
/// one item for the small part, one per task and one per subject.
#[derive(Debug, Clone, Default)]
pub struct Stored {
    meta: Vec<u8>,
    tasks: BTreeMap<String, Task>,
    subjects: BTreeMap<String, Episodes>,
}

/// One stored item: its key and its bytes, `None` to delete it.
pub type Item = (String, Option<Vec<u8>>);

impl State {
    /// The items that changed since `stored` (written, or `None`: deleted).
    /// Costs a comparison per task, and an encoding per changed one. Once
    /// they are stored, [`Stored::commit`] records that.
    pub fn changes(&self, stored: &Stored) -> Vec<Item> {
        let mut out = Vec::new();
        let meta = serde_json::to_vec(&MetaRef {
            paused: self.paused,
            paused_services: &self.paused_services,
            rollouts: &self.rollouts,
            stats: &self.stats,
        })
        .expect("the state encodes");
        if meta != stored.meta {
            out.push((META.to_string(), Some(meta)));
        }
        diff(TASK, &self.tasks, &stored.tasks, &mut out);
        diff(SUBJECT, &self.subjects, &stored.subjects, &mut out);
        out
    }

    /// The state from its stored items, and what is stored.
    pub fn from_items(
        items: impl IntoIterator<Item = (String, Vec<u8>)>,
    ) -> Result<(State, Stored), String> {
        let mut state = State::default();
        let bad = |key: &str, e: serde_json::Error| {
            format!("reconcile state item {key:?} cannot be read: {e}")
        };
        for (key, bytes) in items {
            if key == META {
                let m: Meta = serde_json::from_slice(&bytes).map_err(|e| bad(&key, e))?;
                state.paused = m.paused;
                state.paused_services = m.paused_services;
                state.rollouts = m.rollouts;
                state.stats = m.stats;
            } else if let Some(k) = key.strip_prefix(TASK) {
                let t: Task = serde_json::from_slice(&bytes).map_err(|e| bad(&key, e))?;
                state.tasks.insert(k.to_string(), t);
            } else if let Some(id) = key.strip_prefix(SUBJECT) {
                let e: Episodes = serde_json::from_slice(&bytes).map_err(|e| bad(&key, e))?;
                state.subjects.insert(id.to_string(), e);
            }
        }
        let mut stored = Stored::default();
        let all = state.changes(&stored);
        stored.commit(&state, &all);
        Ok((state, stored))
    }
}

impl Stored {
    /// Records that `items`, taken from `state`, were stored.
    pub fn commit(&mut self, state: &State, items: &[Item]) {
        for (key, value) in items {
            if key == META {
                self.meta = value.clone().unwrap_or_default();
            } else if let Some(k) = key.strip_prefix(TASK) {
                match state.tasks.get(k).filter(|_| value.is_some()) {
                    Some(t) => self.tasks.insert(k.to_string(), t.clone()),
                    None => self.tasks.remove(k),
                };
            } else if let Some(id) = key.strip_prefix(SUBJECT) {
                match state.subjects.get(id).filter(|_| value.is_some()) {
                    Some(e) => self.subjects.insert(id.to_string(), e.clone()),
                    None => self.subjects.remove(id),
                };
            }
        }
    }
}

/// Walks `now` and `before` together (both sorted): what differs or is new
/// is written, what left is deleted.
fn diff<V: PartialEq + Serialize>(
    prefix: &str,
    now: &BTreeMap<String, V>,
    before: &BTreeMap<String, V>,
    out: &mut Vec<Item>,
) {
    let write = |k: &str, v: &V| {
        (
            format!("{prefix}{k}"),
            Some(serde_json::to_vec(v).expect("the state encodes")),
        )
    };
    let (mut a, mut b) = (now.iter().peekable(), before.iter().peekable());
    loop {
        match (a.peek(), b.peek()) {
            (None, None) => break,
            (Some((k, v)), Some((kb, vb))) if k == kb => {
                if v != vb {
                    out.push(write(k, v));
                }
                a.next();
                b.next();
            }
            (Some((k, v)), Some((kb, _))) if k < kb => {
                out.push(write(k, v));
                a.next();
            }
            (Some((k, v)), None) => {
                out.push(write(k, v));
                a.next();
            }
            (_, Some((kb, _))) => {
                out.push((format!("{prefix}{kb}"), None));
                b.next();
            }
        }
    }
}

/// The idempotency key of `action` on the episode of divergence `id` that
/// opened at `opened_at`: the same on every attempt and after restarts.
pub fn idempotency_key(action: &str, id: &str, opened_at: Time) -> String {
    let mut h = SipHasher13::new_with_keys(0x636f_6865_7264_0001, 0x7265_636f_6e63_696c);
    h.write(action.as_bytes());
    h.write_u8(0);
    h.write(id.as_bytes());
    h.write_u8(0);
    h.write_i64(opened_at.as_nanos());
    format!("{:032x}", h.finish128().as_u128())
}
