//! The engine: the one writer of the fleet model.

use std::collections::VecDeque;
use std::time::Duration;

use coherd_model::{Intent, Observation, Time};
use hashbrown::HashMap;

use crate::divergence::{Change, DivergenceTable};
use crate::ids::{IdVec, LabelSetId, MemberSlot, ServiceId};
use crate::intern::{Interner, NONE, Sym};
use crate::labels::LabelSets;
use crate::pairs::Views;
use crate::state::{Column, Member, Service, ServiceCfg, flag};
use crate::timer::{Timer, Timers};

/// Settings that are not part of the intent.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// How long a member that left (terminal phase, then silent) is remembered.
    pub retention: Duration,
    /// Distinct facet names one service may have (each costs 4 bytes per member).
    pub max_facets_per_service: usize,
    /// Services the engine tracks; reports that would add more are refused.
    pub max_services: usize,
    /// Members the engine tracks across all services (about 200 bytes each);
    /// reports that would add more are refused.
    pub max_members: usize,
    /// How long a resolved divergence episode is kept after it resolved.
    pub resolved_retention: Duration,
    /// Resolved episodes kept per service, newest first.
    pub max_resolved_per_service: usize,
    /// A report whose own time is further ahead of the time it is applied at
    /// opens `clock_skew` for its member.
    pub max_clock_skew: Duration,
}

impl Default for EngineConfig {
    fn default() -> EngineConfig {
        EngineConfig {
            retention: Duration::from_secs(3600),
            max_facets_per_service: 64,
            max_services: 10_000,
            max_members: 2_000_000,
            resolved_retention: Duration::from_secs(7 * 86_400),
            max_resolved_per_service: 10_000,
            max_clock_skew: Duration::from_secs(30),
        }
    }
}

/// A `seq` this far below a member's last one is not a retry but a reporter
/// that started its sequence over: the report is applied, as after a gap.
/// Without this, a member that once sent `seq` = 2^64 - 1 could never report again.
pub const SEQ_RESTART_GAP: u64 = 1 << 32;

/// What `observe` did with a report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The report was applied.
    Applied,
    /// Its `seq` was at or below the last applied one: acknowledged, counted, not applied.
    Duplicate,
}

/// How many reports the engine has taken, by what it did with them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct ReportCounts {
    /// Reports applied.
    pub applied: u64,
    /// Reports acknowledged as duplicates and not applied.
    pub duplicates: u64,
}

/// Why `observe` refused a report.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ObserveError {
    /// The service already tracks the most distinct facet names allowed.
    #[error(
        "facets.{facet}: service {service:?} already tracks {limit} distinct facet names; report fewer distinct facets or raise the limit"
    )]
    TooManyFacets {
        /// The service.
        service: String,
        /// The facet that would exceed the limit.
        facet: String,
        /// The limit.
        limit: usize,
    },
    /// The engine already tracks the most services allowed.
    #[error(
        "service: coherd already tracks {limit} services; this report would add {service:?} (raise max_services, or check the reporter's service names)"
    )]
    TooManyServices {
        /// The service that would be added.
        service: String,
        /// The limit.
        limit: usize,
    },
    /// The engine already tracks the most members allowed.
    #[error(
        "member: coherd already tracks {limit} members; this report would add {member:?} to {service:?} (raise max_members, or delete members that are gone)"
    )]
    TooManyMembers {
        /// The service.
        service: String,
        /// The member that would be added.
        member: String,
        /// The limit.
        limit: usize,
    },
}

/// An output of the engine, polled with [`Engine::poll_event`].
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// A divergence opened, escalated or resolved; `index` is its record in [`Engine::divergences`].
    Divergence {
        /// Index into [`Engine::divergences`].
        index: usize,
        /// What happened.
        change: Change,
    },
    /// Something happened to a member that its timeline shows: it joined,
    /// a facet (the phase too) changed value, it went silent, came back,
    /// left, or was deleted or forgotten. Only changes: a report that
    /// repeats what the member said before raises none.
    Member {
        /// The service.
        service: String,
        /// The member.
        member: String,
        /// When it happened.
        at: Time,
        /// What happened.
        change: MemberChange,
    },
    /// A change of a targeted facet reached 95 % or 100 % of live members.
    Convergence {
        /// The service.
        service: String,
        /// The facet.
        facet: String,
        /// Change number.
        revision: u32,
        /// 95 or 100.
        percent: u8,
        /// Seconds since the change started.
        seconds: f64,
        /// When it was reached.
        at: Time,
    },
}

/// What happened to a member, in its timeline.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum MemberChange {
    /// Its first report (or the first after it was forgotten), with its facets.
    Joined {
        /// The facets it reported.
        facets: std::collections::BTreeMap<String, String>,
    },
    /// A facet's value changed; the phase is a facet too.
    Changed {
        /// The facet.
        facet: String,
        /// The value before.
        from: String,
        /// The value now.
        to: String,
    },
    /// It stopped reporting while not in a terminal phase.
    Silent,
    /// It reported again after it was silent or had left.
    Back,
    /// It stopped reporting in a terminal phase: it left.
    Left,
    /// An operator deleted it.
    Deleted,
    /// It was forgotten, `retention` after it left.
    Forgotten,
}

/// The sans-IO coherence engine.
///
/// Methods come in four groups, in the order a driver calls them:
///
/// - inputs: [`observe`](Engine::observe), [`set_intent`](Engine::set_intent),
///   [`remove_member`](Engine::remove_member) — each takes the current time;
/// - [`handle_timeout`](Engine::handle_timeout) when the time returned by
///   [`poll_timeout`](Engine::poll_timeout) has come (calling it early is harmless);
/// - outputs: drain [`poll_event`](Engine::poll_event) after every input or timeout;
/// - getters: [`divergences`](Engine::divergences), [`service_slis`](Engine::service_slis), ...
///
/// Time never goes backwards inside the engine: an input older than the
/// latest one is applied at the latest time.
pub struct Engine {
    pub(crate) config: EngineConfig,
    pub(crate) syms: Interner,
    pub(crate) services: IdVec<ServiceId, Service>,
    pub(crate) service_index: HashMap<Sym, ServiceId>,
    pub(crate) intent: Option<Intent>,
    pub(crate) timers: Timers,
    pub(crate) table: DivergenceTable,
    pub(crate) views: Views,
    /// Interned label sets: members in one zone share one set.
    pub(crate) labels: LabelSets,
    pub(crate) events: VecDeque<Event>,
    /// The latest time seen.
    pub(crate) now: Time,
    /// The time of the call being handled (deadlines may be stamped earlier).
    pub(crate) clock: Time,
    pub(crate) counts: ReportCounts,
    /// Reused by `apply_facets`.
    pub(crate) facet_scratch: Vec<(usize, Sym)>,
    /// When resolved episodes are next pruned.
    pub(crate) next_prune: Time,
    /// Canary traffic and replica positions.
    pub(crate) signals: crate::signals::Signals,
}

impl Default for Engine {
    fn default() -> Engine {
        Engine::new(EngineConfig::default())
    }
}

impl Engine {
    /// An engine with no intent (every service gets the defaults).
    pub fn new(config: EngineConfig) -> Engine {
        Engine {
            config,
            syms: Interner::default(),
            services: IdVec::default(),
            service_index: HashMap::new(),
            intent: None,
            timers: Timers::default(),
            table: DivergenceTable::default(),
            views: Views::default(),
            labels: LabelSets::default(),
            events: VecDeque::new(),
            now: Time::EPOCH,
            clock: Time::EPOCH,
            counts: ReportCounts::default(),
            facet_scratch: Vec::new(),
            next_prune: Time::EPOCH,
            signals: Default::default(),
        }
    }

    /// The next deadline, if any: call [`handle_timeout`](Engine::handle_timeout) then.
    pub fn poll_timeout(&self) -> Option<Time> {
        self.timers.next()
    }

    /// The next output, if any.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// Fires every deadline at or before `now`, each stamped with its own time.
    pub fn handle_timeout(&mut self, now: Time) {
        let now = now.max(self.now);
        self.clock = now;
        self.run_timers(now, true);
        self.now = now;
        self.prune_resolved(now);
    }

    /// Applies one report at `now`. Deadlines before `now` fire first.
    pub fn observe(&mut self, now: Time, obs: &Observation) -> Result<Outcome, ObserveError> {
        let now = now.max(self.now);
        self.clock = now;
        self.run_timers(now, false);
        self.now = now;
        let svc = self.service_idx(&obs.service);
        let name = self.syms.intern(&obs.member);
        self.check_facet_room(svc, obs)?;
        let (slot, is_new) = self.member_slot(svc, name);

        let m = &self.services[svc].members[slot];
        let gap = match obs.seq {
            Some(seq) if m.has(flag::HAS_SEQ) => {
                if seq <= m.seq && m.seq - seq <= SEQ_RESTART_GAP {
                    self.counts.duplicates += 1;
                    return Ok(Outcome::Duplicate);
                }
                // Far below the last (a reporter that lost its count and started
                // over, or one that reached the top): a new sequence, with a gap.
                seq.checked_sub(m.seq) != Some(1)
            }
            _ => false,
        };
        self.counts.applied += 1;
        let was_live = m.has(flag::LIVE);
        let was_counting = m.is_counting();
        let old_phase = m.phase;

        // Liveness and the silence list.
        {
            let s = &mut self.services[svc];
            let m = &mut s.members[slot];
            m.last_report = now;
            if let Some(seq) = obs.seq {
                m.seq = seq;
                m.set(flag::HAS_SEQ, true);
            }
            s.unlink(slot);
            s.push_back(slot);
            if s.head == slot {
                let d = Time::from_nanos(now.as_nanos().saturating_add(s.cfg.silence_after()));
                self.timers.schedule(d, Timer::Silence { svc });
            }
        }
        if !was_live {
            self.set_live(svc, slot, true, is_new, now);
            let change = if is_new {
                MemberChange::Joined {
                    facets: obs.facets.clone(),
                }
            } else {
                MemberChange::Back
            };
            self.member_event(svc, slot, now, change);
        }
        self.apply_labels(svc, slot, obs);
        self.check_clock(svc, slot, obs, now);

        // Phase first, so that terminal status is known before facets count.
        let new_phase = obs
            .phase()
            .map(|p| self.syms.intern(p))
            .unwrap_or(old_phase);
        if new_phase != old_phase {
            self.set_phase(svc, slot, old_phase, new_phase, gap, now);
        }

        self.apply_facets(svc, slot, obs, was_counting, now);
        if new_phase != old_phase || !was_live {
            self.reeval_viewers_of(svc, slot, now);
        }
        self.apply_counters(svc, slot, obs, old_phase, new_phase, now);
        self.apply_views(svc, slot, obs, was_live, now);
        self.apply_leases(svc, slot, obs, now);
        self.apply_checksums(svc, slot, obs, now);
        self.apply_events(svc, slot, obs, now);
        self.refresh_coherent(svc, slot);
        self.touch_coherence(svc);
        Ok(Outcome::Applied)
    }

    /// Applies every report of one instant, in a canonical order (service,
    /// member, seq), so the result does not depend on the order they arrived
    /// in; a condition that holds only between two of them leaves no record.
    /// Returns one result per report, in the order given.
    pub fn observe_instant(
        &mut self,
        now: Time,
        batch: &[&Observation],
    ) -> Vec<Result<Outcome, ObserveError>> {
        let mut order: Vec<usize> = (0..batch.len()).collect();
        order.sort_by(|&a, &b| {
            let (x, y) = (batch[a], batch[b]);
            (&x.service, &x.member, x.seq).cmp(&(&y.service, &y.member, y.seq))
        });
        let mut out: Vec<Option<Result<Outcome, ObserveError>>> = vec![None; batch.len()];
        for i in order {
            out[i] = Some(self.observe(now, batch[i]));
        }
        out.into_iter()
            .map(|r| r.expect("every report applied"))
            .collect()
    }

    /// Replaces the intent at `now`. Targets that differ start a change.
    pub fn set_intent(&mut self, now: Time, intent: Intent) {
        let now = now.max(self.now);
        self.clock = now;
        self.run_timers(now, false);
        self.now = now;
        for name in intent.services.keys() {
            self.service_idx(name);
        }
        self.intent = Some(intent);
        for svc in self.services.ids() {
            self.apply_service_intent(svc, now);
        }
    }

    /// Forgets a member at once (an operator's delete), resolving what it had open.
    /// Returns false when the member is unknown.
    pub fn remove_member(&mut self, now: Time, service: &str, member: &str) -> bool {
        let now = now.max(self.now);
        self.clock = now;
        self.run_timers(now, false);
        self.now = now;
        let (Some(s), Some(m)) = (self.syms.get(service), self.syms.get(member)) else {
            return false;
        };
        let Some(&svc) = self.service_index.get(&s) else {
            return false;
        };
        let Some(slot) = self.services[svc].slot_of(m) else {
            return false;
        };
        self.member_event(svc, slot, now, MemberChange::Deleted);
        self.forget_member(svc, slot, now);
        self.touch_coherence(svc);
        true
    }

    /// Forgets a service at `now`: every member, and every divergence open in
    /// it. It is no longer listed until a member reports again or an intent
    /// names it. False when unknown.
    pub fn remove_service(&mut self, now: Time, service: &str) -> bool {
        let now = now.max(self.now);
        self.clock = now;
        self.run_timers(now, false);
        self.now = now;
        let Some(svc) = self.svc(service) else {
            return false;
        };
        let slots: Vec<MemberSlot> = self.services[svc].by_name.values().copied().collect();
        for slot in slots {
            self.forget_member(svc, slot, now);
        }
        let open: Vec<crate::divergence::DivKey> = self
            .table
            .open()
            .filter(|(k, _, _)| k.svc == svc)
            .map(|(k, _, _)| *k)
            .collect();
        for key in open {
            self.resolve(key, now, None);
        }
        for (_, c) in self.signals.canaries.range_mut((svc, 0)..=(svc, u16::MAX)) {
            c.values.clear();
        }
        self.signals
            .replicas
            .retain(|&(s, _), r| s != svc || r.max_lag.is_some());
        self.signals.unapproved.remove(&svc);
        self.touch_coherence(svc);
        self.services[svc].forgotten = true;
        true
    }

    /// The current intent, if one was set.
    pub fn intent(&self) -> Option<&Intent> {
        self.intent.as_ref()
    }

    /// The latest time the engine has seen.
    pub fn now(&self) -> Time {
        self.now
    }

    /// Members known across every service.
    pub fn member_count(&self) -> usize {
        self.services.iter().map(|s| s.known as usize).sum()
    }

    /// Reports applied and duplicates ignored so far.
    pub fn report_counts(&self) -> ReportCounts {
        self.counts
    }

    pub(crate) fn run_timers(&mut self, now: Time, inclusive: bool) {
        while let Some((t, timer)) = self.timers.pop_due(now, inclusive) {
            self.fire(t, timer);
        }
    }

    fn fire(&mut self, t: Time, timer: Timer) {
        match timer {
            Timer::Silence { svc } => self.on_silence_timer(svc, t),
            Timer::Window { svc, col } => self.on_window_timer(svc, col as usize, t),
            Timer::UniformMixed { svc, col } => self.on_uniform_timer(svc, col as usize, t),
            Timer::Hold { svc, slot } => self.on_hold_timer(svc, slot, t),
            Timer::Flap { svc, slot } => self.on_flap_timer(svc, slot, t),
            Timer::Pair {
                obs_svc,
                obs_slot,
                tsvc,
                tmem,
            } => self.on_pair_timer(obs_svc, obs_slot, tsvc, tmem, t),
            Timer::Lease { svc, resource } => self.eval_resource(svc, resource, t),
            Timer::Forget { svc, slot } => self.on_forget_timer(svc, slot, t),
            Timer::Herd { svc, job } => self.on_herd_timer(svc, job, t),
        }
        if let Timer::Silence { svc }
        | Timer::Window { svc, .. }
        | Timer::UniformMixed { svc, .. }
        | Timer::Hold { svc, .. }
        | Timer::Flap { svc, .. }
        | Timer::Lease { svc, .. }
        | Timer::Forget { svc, .. } = timer
        {
            self.touch_coherence_at(svc, t);
        }
    }

    /// The index of a service, creating it with the intent's rules or the defaults.
    pub(crate) fn service_idx(&mut self, name: &str) -> ServiceId {
        let sym = self.syms.intern(name);
        if let Some(&i) = self.service_index.get(&sym) {
            self.services[i].forgotten = false;
            return i;
        }
        let cfg = self.compile_cfg(name);
        let i = self.services.push(Service {
            name: sym,
            name_str: name.to_string(),
            cfg,
            members: IdVec::default(),
            free: Vec::new(),
            by_name: HashMap::new(),
            columns: Vec::new(),
            head: MemberSlot::NONE,
            tail: MemberSlot::NONE,
            known: 0,
            live: 0,
            terminal: 0,
            counting: 0,
            coherent: 0,
            datasets: HashMap::new(),
            resources: HashMap::new(),
            jobs: HashMap::new(),
            windows: Default::default(),
            forgotten: false,
        });
        self.service_index.insert(sym, i);
        if self.intent.is_some() {
            self.apply_service_intent(i, self.now);
        }
        i
    }

    pub(crate) fn compile_cfg(&mut self, name: &str) -> ServiceCfg {
        let default = coherd_model::ServiceIntent::default();
        let si = self
            .intent
            .as_ref()
            .and_then(|i| i.services.get(name))
            .unwrap_or(&default)
            .clone();
        let m = &si.phases;
        let syms = &mut self.syms;
        let mut v =
            |xs: &mut dyn Iterator<Item = &str>| xs.map(|x| syms.intern(x)).collect::<Vec<_>>();
        let terminal = v(&mut m.terminal().into_iter());
        let phases = v(&mut m.phases().into_iter());
        let serving = v(&mut m.serving.iter().map(String::as_str));
        let exclusive = v(&mut si
            .leases
            .iter()
            .filter(|(_, l)| l.exclusive)
            .map(|(k, _)| k.as_str()));
        let transitions = m
            .transitions
            .iter()
            .map(|(from, to)| {
                (
                    self.syms.intern(from),
                    to.iter().map(|t| self.syms.intern(t)).collect(),
                )
            })
            .collect();
        ServiceCfg {
            report_interval: coherd_model::time::duration_nanos(si.report_interval),
            expect_members: si.expect_members,
            serving,
            terminal,
            phases,
            transitions,
            agreement_timeout: coherd_model::time::duration_nanos(m.agreement_timeout),
            max_flips: m.max_flips_per_hour,
            hold: coherd_model::time::duration_nanos(m.hold),
            exclusive,
        }
    }

    fn check_facet_room(&mut self, svc: ServiceId, obs: &Observation) -> Result<(), ObserveError> {
        let s = &self.services[svc];
        let limit = self.config.max_facets_per_service;
        if s.columns.len() + obs.facets.len() <= limit {
            return Ok(());
        }
        let mut new = 0;
        for f in obs.facets.keys() {
            if self.syms.get(f).and_then(|sym| s.column_of(sym)).is_none() {
                new += 1;
                if s.columns.len() + new > limit {
                    return Err(ObserveError::TooManyFacets {
                        service: s.name_str.clone(),
                        facet: f.clone(),
                        limit,
                    });
                }
            }
        }
        Ok(())
    }

    /// The slot of a member, adding it when new.
    fn member_slot(&mut self, svc: ServiceId, name: Sym) -> (MemberSlot, bool) {
        let s = &mut self.services[svc];
        if let Some(slot) = s.slot_of(name) {
            return (slot, false);
        }
        let slot = match s.free.pop() {
            Some(slot) => {
                s.members[slot] = Member::new(name);
                for c in &mut s.columns {
                    c.values[slot] = NONE;
                }
                slot
            }
            None => {
                for c in &mut s.columns {
                    c.values.push(NONE);
                }
                s.members.push(Member::new(name))
            }
        };
        s.by_name.insert(name, slot);
        s.known += 1;
        (slot, true)
    }

    /// The column of a facet, adding it when new.
    pub(crate) fn column(&mut self, svc: ServiceId, facet: Sym) -> usize {
        let s = &mut self.services[svc];
        if let Some(c) = s.column_of(facet) {
            return c;
        }
        s.columns.push(Column::new(facet, s.members.len()));
        s.columns.len() - 1
    }

    fn apply_labels(&mut self, svc: ServiceId, slot: MemberSlot, obs: &Observation) {
        if obs.labels.is_empty() && obs.deploy.is_none() {
            return;
        }
        if let Some(d) = &obs.deploy {
            let d = self.syms.intern(d);
            self.services[svc].members[slot].deploy = d;
        }
        if obs.labels.is_empty() {
            return;
        }
        let current = self.services[svc].members[slot].labels;
        let updates: Vec<(Sym, Sym)> = obs
            .labels
            .iter()
            .map(|(k, v)| (self.syms.intern(k), self.syms.intern(v)))
            .collect();
        let id = self.labels.merge(current, updates);
        self.services[svc].members[slot].labels = id;
    }

    /// A member's labels, resolved.
    pub(crate) fn labels_of(&self, id: LabelSetId) -> Vec<(&str, &str)> {
        self.labels
            .get(id)
            .iter()
            .map(|&(k, v)| (self.syms.resolve(k), self.syms.resolve(v)))
            .collect()
    }

    /// Queues a [`Event::Member`] for a member of `svc`.
    pub(crate) fn member_event(
        &mut self,
        svc: ServiceId,
        slot: MemberSlot,
        at: Time,
        change: MemberChange,
    ) {
        let s = &self.services[svc];
        let e = Event::Member {
            service: s.name_str.clone(),
            member: self.syms.resolve(s.members[slot].name).to_string(),
            at,
            change,
        };
        self.events.push_back(e);
    }

    pub(crate) fn push_event(&mut self, e: Event) {
        self.events.push_back(e);
    }

    /// Updates a member's coherent flag and the service's count.
    pub(crate) fn refresh_coherent(&mut self, svc: ServiceId, slot: MemberSlot) {
        let s = &self.services[svc];
        let m = &s.members[slot];
        if m.has(flag::REMOVED) {
            return;
        }
        let now = self.now;
        let coherent = m.is_counting()
            && m.open_divs == 0
            && s.columns.iter().all(|c| match &c.rule {
                Some(r) if r.targeted() => {
                    let v = c.values[slot];
                    v != NONE
                        && matches!(
                            r.classify(v, now),
                            crate::state::Class::AtTarget | crate::state::Class::Converging
                        )
                }
                _ => true,
            });
        if coherent != m.has(flag::COHERENT) {
            let s = &mut self.services[svc];
            s.members[slot].set(flag::COHERENT, coherent);
            if coherent {
                s.coherent += 1
            } else {
                s.coherent -= 1
            }
        }
    }

    pub(crate) fn touch_coherence(&mut self, svc: ServiceId) {
        self.touch_coherence_at(svc, self.now);
    }

    pub(crate) fn touch_coherence_at(&mut self, svc: ServiceId, at: Time) {
        let s = &mut self.services[svc];
        let den = s.coherence_denominator();
        let ratio = (den > 0).then(|| s.coherent as f64 / den as f64);
        s.windows.coherence_changed(at, ratio);
    }
}
