//! The planner: from the divergences seen, the state and the policy, decide
//! what to dispatch now and record why. Pure: no clock, no IO, no
//! randomness (backoff jitter comes from the idempotency key), so a round
//! replays the same on a virtual clock.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use coherd_dephase::{Backoff, Jitter};
use coherd_model::Time;
use serde::Serialize;
use serde_json::Value;

use crate::config::{ActionConfig, Policy};
use crate::state::{
    Episodes, Halt, MAX_REOPENS_KEPT, Phase, Quarantine, Seen, State, Task, idempotency_key,
};

/// Divergences by id, for one round's lookups.
type Index<'a> = HashMap<&'a str, &'a Seen>;

/// One decision, as the audit log records it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Decision {
    /// When.
    pub at: Time,
    /// What: `acquired`, `planned`, `skipped`, `dispatched`, `succeeded`, `failed`,
    /// `verified`, `unverified`, `gave_up`, `quarantined`, `released`,
    /// `halted`, `resumed`, `paused`, `refused`.
    pub decision: &'static str,
    /// Why, for skips, failures and halts.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The action (empty for the whole loop).
    pub action: String,
    /// The service (empty for the whole fleet).
    pub service: String,
    /// The member, when about one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub member: Option<String>,
    /// The divergence.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub divergence_id: Option<String>,
    /// The attempt (1-based; 0 before the first).
    pub attempt: u32,
    /// The task's idempotency key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
    /// The wave (1-based) the task is in.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wave: Option<usize>,
    /// The divergence when the task was made.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub evidence_before: Option<Value>,
    /// The divergence's record when it was verified or found unresolved.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub evidence_after: Option<Value>,
    /// Which of the two the divergence's record belongs in; the loop
    /// attaches it ([`Decision::attach`]) from the engine, which holds it.
    #[serde(skip)]
    pub evidence: Evidence,
}

/// Where a decision wants its divergence's record.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Evidence {
    /// Nowhere.
    #[default]
    None,
    /// As the evidence before the action (planned, dry run, quarantined).
    Before,
    /// As the evidence after it (verified, unverified).
    After,
}

impl Decision {
    /// A decision about the whole loop or a service, not a task.
    pub fn control(
        at: Time,
        decision: &'static str,
        action: &str,
        service: &str,
        reason: Option<String>,
    ) -> Decision {
        Decision {
            at,
            decision,
            reason,
            action: action.to_string(),
            service: service.to_string(),
            member: None,
            divergence_id: None,
            attempt: 0,
            idempotency_key: None,
            wave: None,
            evidence_before: None,
            evidence_after: None,
            evidence: Evidence::None,
        }
    }

    fn task(at: Time, decision: &'static str, t: &Task, reason: Option<String>) -> Decision {
        Decision {
            at,
            decision,
            reason,
            action: t.action.clone(),
            service: t.seen.service.clone(),
            member: t.seen.member.clone(),
            divergence_id: Some(t.seen.id.clone()),
            attempt: t.attempts,
            idempotency_key: Some(t.key.clone()),
            wave: t.wave.map(|w| w + 1),
            evidence_before: None,
            evidence_after: None,
            evidence: Evidence::None,
        }
    }

    /// Puts `record` where this decision wants its divergence's record.
    pub fn attach(&mut self, record: Value) {
        match self.evidence {
            Evidence::None => {}
            Evidence::Before => self.evidence_before = Some(record),
            Evidence::After => self.evidence_after = Some(record),
        }
    }
}

/// An action to perform now.
#[derive(Debug, Clone, PartialEq)]
pub struct Dispatch {
    /// The task's idempotency key.
    pub key: String,
    /// The action's index in the policy.
    pub action: usize,
    /// The attempt (1-based).
    pub attempt: u32,
    /// The divergence it acts on.
    pub seen: Seen,
}

/// What one round decided.
#[derive(Debug, Default)]
pub struct Round {
    /// For the audit log.
    pub decisions: Vec<Decision>,
    /// To perform, after the decisions are stored.
    pub dispatch: Vec<Dispatch>,
}

/// How an attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The receiver took it (2xx, exit 0).
    Succeeded,
    /// It failed; `retry` unless the receiver refused it for good.
    Failed {
        /// Whether another attempt may succeed.
        retry: bool,
        /// What went wrong.
        detail: String,
    },
    /// Not sent: the loop was paused between the decision and the dispatch.
    NotSent,
}

/// The reconciler: its state and the rounds over it.
#[derive(Debug, Default)]
pub struct Reconciler {
    /// What it remembers.
    pub state: State,
}

impl Reconciler {
    /// A reconciler resuming from `state`. Attempts in flight when the last
    /// process stopped have no known outcome: they count as failed and are
    /// retried under the same idempotency key, so a receiver that already
    /// acted sees a repeat it can recognise.
    pub fn restore(mut state: State, now: Time) -> (Reconciler, Vec<Decision>) {
        let mut decisions = Vec::new();
        for t in state.tasks.values_mut() {
            if t.phase == Phase::InFlight {
                t.phase = Phase::Planned;
                t.next_at = now;
                decisions.push(Decision::task(
                    now,
                    "failed",
                    t,
                    Some("coherd stopped while the attempt was in flight; its outcome is unknown, so it is retried under the same idempotency key".into()),
                ));
            }
        }
        (Reconciler { state }, decisions)
    }

    /// One round at `now` over `seen`: the open divergences the policy
    /// wants, and the latest record of each divergence a task waits on.
    pub fn round(&mut self, policy: &Policy, seen: &[Seen], now: Time) -> Round {
        let mut out = Round::default();
        let open: Index<'_> = seen
            .iter()
            .filter(|s| s.resolved_at.is_none())
            .map(|s| (s.id.as_str(), s))
            .collect();
        // In the order given, so a round decides the same every time.
        let in_order: Vec<&Seen> = seen.iter().filter(|s| s.resolved_at.is_none()).collect();
        self.track_episodes(policy, &in_order, now, &mut out);
        self.make_tasks(policy, &in_order);
        self.follow_divergences(policy, &open, now, &mut out);
        // Each (action, service)'s tasks, found once: a round costs the tasks, not services x tasks.
        let mut groups: BTreeMap<(&str, &str), Vec<String>> = BTreeMap::new();
        for (key, t) in &self.state.tasks {
            groups
                .entry((t.action.as_str(), t.seen.service.as_str()))
                .or_default()
                .push(key.clone());
        }
        let groups: Vec<(String, String, Vec<String>)> = groups
            .into_iter()
            .map(|((a, s), keys)| (a.to_string(), s.to_string(), keys))
            .collect();
        let mut everywhere = self
            .state
            .tasks
            .values()
            .filter(|t| t.phase == Phase::InFlight)
            .count();
        for (i, action) in policy.actions().iter().enumerate() {
            for (_, service, keys) in groups.iter().filter(|g| g.0 == action.name) {
                self.advance_waves(action, service, keys, now, &mut out);
                self.dispatch(policy, i, service, keys, &mut everywhere, now, &mut out);
            }
        }
        self.forget(policy, &open, now);
        out
    }

    /// Counts reopens per subject and quarantines those that thrash.
    fn track_episodes(&mut self, policy: &Policy, open: &[&Seen], now: Time, out: &mut Round) {
        for s in open {
            if !self.state.subjects.contains_key(&s.id) {
                let first = Episodes {
                    last_opened_at: s.opened_at,
                    ..Episodes::default()
                };
                self.state.subjects.insert(s.id.clone(), first);
            }
            let history = self.state.subjects.get_mut(&s.id).expect("inserted above");
            if s.opened_at > history.last_opened_at {
                history.last_opened_at = s.opened_at;
                history.reopens.push(s.opened_at);
                if history.reopens.len() > MAX_REOPENS_KEPT {
                    history.reopens.remove(0);
                }
            }
            if history.quarantine.is_some() {
                continue;
            }
            for (i, a) in policy.actions().iter().enumerate() {
                if !policy.matches(i, s.kind, s.severity, &s.service, s.facet.as_deref()) {
                    continue;
                }
                let since = now.sub(a.thrash.within);
                let reopens = history.reopens.iter().filter(|t| **t >= since).count();
                if reopens >= a.thrash.reopens as usize {
                    history.quarantine = Some(Quarantine {
                        since: now,
                        action: a.name.clone(),
                        service: s.service.clone(),
                        reopens,
                    });
                    let mut d = Decision::control(
                        now,
                        "quarantined",
                        &a.name,
                        &s.service,
                        Some(format!(
                            "reopened {reopens} times within {}: another controller may be undoing the repair; no more actions until released",
                            coherd_model::time::format_duration(a.thrash.within)
                        )),
                    );
                    d.member = s.member.clone();
                    d.divergence_id = Some(s.id.clone());
                    d.evidence = Evidence::Before;
                    out.decisions.push(d);
                    break;
                }
            }
        }
    }

    /// One task per (open episode, matching action).
    fn make_tasks(&mut self, policy: &Policy, open: &[&Seen]) {
        for s in open {
            for (i, a) in policy.actions().iter().enumerate() {
                if !policy.matches(i, s.kind, s.severity, &s.service, s.facet.as_deref()) {
                    continue;
                }
                let key = idempotency_key(&a.name, &s.id, s.opened_at);
                self.state.tasks.entry(key.clone()).or_insert_with(|| Task {
                    action: a.name.clone(),
                    seen: (*s).clone(),
                    key,
                    attempts: 0,
                    phase: Phase::Waiting,
                    rollout: 0,
                    wave: None,
                    next_at: Time::EPOCH,
                    last_delay_ms: 0,
                    skipped: None,
                });
            }
        }
    }

    /// Verifies, expires and drops tasks as their divergences resolve.
    fn follow_divergences(
        &mut self,
        policy: &Policy,
        open: &Index<'_>,
        now: Time,
        out: &mut Round,
    ) {
        let mut halts: Vec<(String, String, String)> = Vec::new();
        let mut gone: Vec<String> = Vec::new();
        for t in self.state.tasks.values_mut() {
            let now_open = open
                .get(t.seen.id.as_str())
                .filter(|s| s.opened_at == t.seen.opened_at);
            let still_open = now_open.is_some();
            let Some((i, action)) = policy
                .actions()
                .iter()
                .enumerate()
                .find(|(_, a)| a.name == t.action)
            else {
                continue;
            };
            // A reloaded policy may no longer want a task not yet planned.
            let wanted = now_open.is_some_and(|s| {
                policy.matches(i, s.kind, s.severity, &s.service, s.facet.as_deref())
            });
            match t.phase {
                Phase::Waiting if !wanted => gone.push(t.key.clone()),
                Phase::Planned if !still_open => {
                    t.phase = Phase::Resolved(now);
                    out.decisions.push(Decision::task(
                        now,
                        "skipped",
                        t,
                        Some("the divergence resolved before the action was dispatched".into()),
                    ));
                }
                Phase::Succeeded(at) if !still_open => {
                    t.phase = Phase::Verified(now);
                    let stats = self.state.stats.entry(t.action.clone()).or_default();
                    stats.verified += 1;
                    stats.repair_ms = stats
                        .repair_ms
                        .saturating_add(now.since(t.seen.opened_at).as_millis() as u64);
                    let mut d = Decision::task(
                        now,
                        "verified",
                        t,
                        Some(format!(
                            "resolved {}s after the action succeeded",
                            now.since(at).as_secs()
                        )),
                    );
                    d.evidence = Evidence::After;
                    out.decisions.push(d);
                }
                Phase::Succeeded(at) if now >= at.add(action.verify_within) => {
                    t.phase = Phase::Unverified(now);
                    self.state
                        .stats
                        .entry(t.action.clone())
                        .or_default()
                        .unverified += 1;
                    let reason = format!(
                        "the divergence is still open {} after the action succeeded",
                        coherd_model::time::format_duration(action.verify_within)
                    );
                    let mut d = Decision::task(now, "unverified", t, Some(reason.clone()));
                    d.evidence = Evidence::After;
                    out.decisions.push(d);
                    halts.push((
                        t.action.clone(),
                        t.seen.service.clone(),
                        format!("{}: {reason}", t.seen.id),
                    ));
                }
                _ => {}
            }
        }
        for key in gone {
            if let Some(t) = self.state.tasks.remove(&key)
                && t.skipped.is_some()
            {
                out.decisions.push(Decision::task(
                    now,
                    "skipped",
                    &t,
                    Some(
                        "the divergence resolved on its own, or the policy no longer matches it"
                            .into(),
                    ),
                ));
            }
        }
        for (action, service, reason) in halts {
            self.halt(&action, &service, now, reason, out);
        }
    }

    fn halt(&mut self, action: &str, service: &str, now: Time, reason: String, out: &mut Round) {
        let r = self
            .state
            .rollouts
            .entry(action.to_string())
            .or_default()
            .entry(service.to_string())
            .or_default();
        if r.halted.is_none() {
            r.halted = Some(Halt {
                at: now,
                reason: reason.clone(),
            });
            out.decisions.push(Decision::control(
                now,
                "halted",
                action,
                service,
                Some(format!(
                    "{reason}; no further waves until `coherd reconcile resume --service {service}`"
                )),
            ));
        }
    }

    /// Starts the next wave when the current one is verified and its pause
    /// is over; plans the tasks it takes.
    fn advance_waves(
        &mut self,
        action: &ActionConfig,
        service: &str,
        keys: &[String],
        now: Time,
        out: &mut Round,
    ) {
        let mut rollout = self
            .state
            .rollouts
            .get(&action.name)
            .and_then(|m| m.get(service))
            .cloned()
            .unwrap_or_default();
        let paused = self.state.is_paused(service);
        let quarantined = |id: &str, subjects: &BTreeMap<String, Episodes>| {
            subjects.get(id).is_some_and(|e| e.quarantine.is_some())
        };
        // One pass over the group: what waits (and why), and the state of the wave under way.
        let debounce = format!(
            "debounce: open for less than {}",
            coherd_model::time::format_duration(action.debounce)
        );
        let mut skips: Vec<(String, &str)> = Vec::new();
        let mut eligible: Vec<(Time, String)> = Vec::new();
        let (mut admitted, mut wave_done, mut last_end) = (0usize, true, None::<Time>);
        for t in keys.iter().filter_map(|k| self.state.tasks.get(k)) {
            if t.rollout == rollout.id && t.wave.is_some() {
                admitted += 1;
                wave_done &= t.phase.is_terminal();
                last_end = last_end.max(t.phase.ended_at());
            }
            if t.phase != Phase::Waiting {
                continue;
            }
            let why = if quarantined(&t.seen.id, &self.state.subjects) {
                "quarantine: the subject keeps reopening"
            } else if now < t.seen.opened_at.add(action.debounce) {
                debounce.as_str()
            } else if paused {
                "paused"
            } else if rollout.halted.is_some() {
                "halted: a wave failed verification; waiting for resume"
            } else {
                eligible.push((t.seen.opened_at, t.key.clone()));
                continue;
            };
            if t.skipped.as_deref() != Some(why) {
                skips.push((t.key.clone(), why));
            }
        }
        if wave_done && rollout.wave.is_some() && rollout.gate_at.is_none() {
            rollout.gate_at = Some(last_end.unwrap_or(now).add(action.wave_pause));
        }
        let gate_open =
            rollout.wave.is_none() || (wave_done && rollout.gate_at.is_some_and(|g| now >= g));
        if !eligible.is_empty() && gate_open {
            let mut next = rollout.wave.map_or(0, |w| w + 1);
            let mut admitted = admitted;
            if next >= action.waves.len() {
                // The rollout is complete: what is open now starts a new one.
                rollout = crate::state::Rollout {
                    id: rollout.id + 1,
                    ..Default::default()
                };
                next = 0;
                admitted = 0;
            }
            // Order: oldest divergence first, then by key (stable).
            eligible.sort_unstable();
            let total = admitted + eligible.len();
            let mut take = 0;
            while next < action.waves.len() {
                let limit = action.waves[next].cumulative(total);
                if limit > admitted {
                    take = limit - admitted;
                    break;
                }
                next += 1;
            }
            rollout.wave = Some(next.min(action.waves.len() - 1));
            rollout.gate_at = None;
            for (_, key) in eligible.drain(..take.min(eligible.len())) {
                let t = self
                    .state
                    .tasks
                    .get_mut(&key)
                    .expect("eligible tasks exist");
                t.phase = Phase::Planned;
                t.rollout = rollout.id;
                t.wave = rollout.wave;
                t.next_at = now;
                t.skipped = None;
                let mut d = Decision::task(
                    now,
                    "planned",
                    t,
                    Some(format!("wave {} of {}", next + 1, action.waves.len())),
                );
                d.evidence = Evidence::Before;
                out.decisions.push(d);
            }
        }
        const GATE: &str =
            "wave gate: waiting for the wave under way to be verified and its pause to pass";
        for (_, key) in eligible {
            if self
                .state
                .tasks
                .get(&key)
                .is_some_and(|t| t.skipped.as_deref() != Some(GATE))
            {
                skips.push((key, GATE));
            }
        }
        for (key, why) in skips {
            let t = self.state.tasks.get_mut(&key).expect("skipped tasks exist");
            out.decisions
                .push(Decision::task(now, "skipped", t, Some(why.to_string())));
            t.skipped = Some(why.to_string());
        }
        self.state
            .rollouts
            .entry(action.name.clone())
            .or_default()
            .insert(service.to_string(), rollout);
    }

    /// Dispatches planned tasks whose backoff is over, within the budgets.
    #[allow(clippy::too_many_arguments)]
    fn dispatch(
        &mut self,
        policy: &Policy,
        i: usize,
        service: &str,
        keys: &[String],
        everywhere: &mut usize,
        now: Time,
        out: &mut Round,
    ) {
        let action = &policy.actions()[i];
        let paused = self.state.is_paused(service);
        let (mut here, mut ready) = (0usize, Vec::<(Time, String)>::new());
        for t in keys.iter().filter_map(|k| self.state.tasks.get(k)) {
            match t.phase {
                Phase::InFlight => here += 1,
                Phase::Planned if t.next_at <= now => ready.push((t.next_at, t.key.clone())),
                _ => {}
            }
        }
        ready.sort_unstable();
        for (_, key) in ready {
            let t = self.state.tasks.get_mut(&key).expect("ready tasks exist");
            let blocked = if paused {
                Some("paused".to_string())
            } else if here >= action.max_in_flight {
                Some(format!(
                    "budget: {} actions in flight for this service (max_in_flight)",
                    action.max_in_flight
                ))
            } else if *everywhere >= policy.config.max_in_flight {
                Some(format!(
                    "budget: {} actions in flight in all (reconcile.max_in_flight)",
                    policy.config.max_in_flight
                ))
            } else {
                None
            };
            if let Some(why) = blocked {
                if t.skipped.as_deref() != Some(why.as_str()) {
                    out.decisions
                        .push(Decision::task(now, "skipped", t, Some(why.clone())));
                    t.skipped = Some(why);
                }
                continue;
            }
            t.skipped = None;
            if action.dry_run {
                t.phase = Phase::DryRun(now);
                let mut d = Decision::task(
                    now,
                    "skipped",
                    t,
                    Some(format!(
                        "dry run: would dispatch attempt {}",
                        t.attempts + 1
                    )),
                );
                d.attempt = t.attempts + 1;
                d.evidence = Evidence::Before;
                out.decisions.push(d);
                continue;
            }
            t.attempts += 1;
            t.phase = Phase::InFlight;
            here += 1;
            *everywhere += 1;
            self.state
                .stats
                .entry(action.name.clone())
                .or_default()
                .dispatched += 1;
            out.decisions
                .push(Decision::task(now, "dispatched", t, None));
            out.dispatch.push(Dispatch {
                key: t.key.clone(),
                action: i,
                attempt: t.attempts,
                seen: t.seen.clone(),
            });
        }
    }

    /// Drops what no longer matters: finished tasks of finished rollouts
    /// whose episode is over, and subjects with no episode within the longest thrash window.
    fn forget(&mut self, policy: &Policy, open: &Index<'_>, now: Time) {
        let current: BTreeMap<(&str, &str), u64> = self
            .state
            .rollouts
            .iter()
            .flat_map(|(a, m)| m.iter().map(move |(s, r)| ((a.as_str(), s.as_str()), r.id)))
            .collect();
        let keep_open = |t: &Task| {
            open.get(t.seen.id.as_str())
                .is_some_and(|s| s.opened_at == t.seen.opened_at)
        };
        self.state.tasks.retain(|_, t| {
            if !policy.actions().iter().any(|a| a.name == t.action) {
                // The action left the config: only an attempt in flight waits for its outcome.
                return t.phase == Phase::InFlight;
            }
            !t.phase.is_terminal()
                || keep_open(t)
                || current.get(&(t.action.as_str(), t.seen.service.as_str())) == Some(&t.rollout)
        });
        let window = policy
            .actions()
            .iter()
            .map(|a| a.thrash.within)
            .max()
            .unwrap_or(Duration::ZERO);
        let tasks = &self.state.tasks;
        let live: std::collections::HashSet<&str> =
            tasks.values().map(|t| t.seen.id.as_str()).collect();
        let recent = now.sub(window);
        self.state.subjects.retain(|id, e| {
            e.quarantine.is_some()
                || open.contains_key(id.as_str())
                || live.contains(id.as_str())
                || e.last_opened_at >= recent
        });
    }

    /// Records how an attempt ended.
    pub fn outcome(
        &mut self,
        policy: &Policy,
        key: &str,
        attempt: u32,
        outcome: Outcome,
        now: Time,
    ) -> Vec<Decision> {
        let mut out = Round::default();
        let Some(t) = self.state.tasks.get_mut(key) else {
            return Vec::new();
        };
        if t.phase != Phase::InFlight || t.attempts != attempt {
            return Vec::new();
        }
        let Some(action) = policy.actions().iter().find(|a| a.name == t.action) else {
            // The action left the config while in flight: its outcome is recorded, nothing follows.
            t.phase = Phase::GaveUp(now);
            return vec![Decision::task(
                now,
                "gave_up",
                t,
                Some("the action was removed from the config".into()),
            )];
        };
        let stats = self.state.stats.entry(t.action.clone()).or_default();
        match outcome {
            Outcome::Succeeded => {
                stats.succeeded += 1;
                if action.verify {
                    t.phase = Phase::Succeeded(now);
                    out.decisions
                        .push(Decision::task(now, "succeeded", t, None));
                } else {
                    t.phase = Phase::Done(now);
                    let why = "a guard (verify: false): its success ends the task".to_string();
                    out.decisions
                        .push(Decision::task(now, "succeeded", t, Some(why)));
                }
            }
            Outcome::NotSent => {
                t.attempts -= 1;
                stats.dispatched = stats.dispatched.saturating_sub(1);
                t.phase = Phase::Planned;
                t.skipped = Some("paused".into());
                out.decisions.push(Decision::task(
                    now,
                    "skipped",
                    t,
                    Some("paused before the dispatch fired".into()),
                ));
            }
            Outcome::Failed { retry, detail } => {
                stats.failed += 1;
                out.decisions
                    .push(Decision::task(now, "failed", t, Some(detail.clone())));
                if retry && t.attempts < action.max_attempts {
                    let delay = backoff_delay(action, t);
                    t.last_delay_ms = delay.as_millis() as u64;
                    t.next_at = now.add(delay);
                    t.phase = Phase::Planned;
                } else {
                    stats.gave_up += 1;
                    t.phase = Phase::GaveUp(now);
                    let why = if retry {
                        format!("{} attempts failed", t.attempts)
                    } else {
                        format!("the receiver refused the action: {detail}")
                    };
                    out.decisions
                        .push(Decision::task(now, "gave_up", t, Some(why.clone())));
                    let (a, s, id) = (t.action.clone(), t.seen.service.clone(), t.seen.id.clone());
                    self.halt(&a, &s, now, format!("{id}: {why}"), &mut out);
                }
            }
        }
        out.decisions
    }

    /// An outcome reported from outside for a task's latest attempt: one in
    /// flight, or one that succeeded and awaits verification (an executor
    /// that accepted the action and later failed at it).
    pub fn report(
        &mut self,
        policy: &Policy,
        key: &str,
        attempt: u32,
        outcome: Outcome,
        now: Time,
    ) -> Vec<Decision> {
        if let Some(t) = self.state.tasks.get_mut(key)
            && matches!(t.phase, Phase::Succeeded(_))
            && matches!(outcome, Outcome::Failed { .. })
        {
            t.phase = Phase::InFlight;
        }
        self.outcome(policy, key, attempt, outcome, now)
    }

    /// Stops every dispatch (`service` `None`) or one service's.
    pub fn pause(&mut self, service: Option<&str>, now: Time) -> Vec<Decision> {
        match service {
            None => self.state.paused = true,
            Some(s) => {
                self.state.paused_services.insert(s.to_string());
            }
        }
        vec![Decision::control(
            now,
            "paused",
            "",
            service.unwrap_or(""),
            None,
        )]
    }

    /// Lifts the pause and the halts, everywhere (`service` `None`) or for one service.
    pub fn resume(&mut self, service: Option<&str>, now: Time) -> Vec<Decision> {
        let mut out = vec![Decision::control(
            now,
            "resumed",
            "",
            service.unwrap_or(""),
            None,
        )];
        match service {
            None => {
                self.state.paused = false;
                self.state.paused_services.clear();
            }
            Some(s) => {
                self.state.paused_services.remove(s);
            }
        }
        for (action, services) in &mut self.state.rollouts {
            for (name, r) in services.iter_mut() {
                if service.is_none_or(|s| s == name) && r.halted.take().is_some() {
                    // The halted wave counts as done: the next starts after its pause.
                    r.gate_at = Some(now);
                    out.push(Decision::control(
                        now,
                        "resumed",
                        action,
                        name,
                        Some("halt lifted".into()),
                    ));
                }
            }
        }
        out
    }

    /// Releases a quarantined subject; `false` when it was not quarantined.
    pub fn release(&mut self, divergence_id: &str, now: Time) -> Option<Decision> {
        let e = self.state.subjects.get_mut(divergence_id)?;
        let q = e.quarantine.take()?;
        e.reopens.clear();
        let service = self
            .state
            .tasks
            .values()
            .find(|t| t.seen.id == divergence_id)
            .map(|t| t.seen.service.clone())
            .unwrap_or_default();
        let mut d = Decision::control(
            now,
            "released",
            &q.action,
            &service,
            Some(format!("quarantined since {}", q.since)),
        );
        d.divergence_id = Some(divergence_id.to_string());
        Some(d)
    }
}

/// The delay before the next attempt: decorrelated jitter whose randomness
/// is the task's key and attempt, so a replay decides the same.
fn backoff_delay(action: &ActionConfig, t: &Task) -> Duration {
    let policy = Backoff::new(
        action.backoff.base,
        action.backoff.cap,
        Jitter::Decorrelated,
    )
    .unwrap_or_else(|_| {
        Backoff::new(action.backoff.cap, action.backoff.cap, Jitter::Decorrelated)
            .expect("equal bounds")
    });
    let random = (coherd_dephase::stable_offset(
        &t.key,
        &t.attempts.to_string(),
        Duration::from_secs(1_000_000),
    )
    .as_secs_f64()
        / 1e6)
        .clamp(0.0, 0.999_999);
    policy.delay(
        t.attempts.saturating_sub(1),
        Duration::from_millis(t.last_delay_ms),
        random,
    )
}
