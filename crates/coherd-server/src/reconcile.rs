//! The reconcile loop in the service: the IO around the sans-IO planner.
//!
//! One thread runs rounds, each second or when an outcome comes back. A round
//! acts only while this process holds the `reconciler` lease in the store
//! (each acquisition raises its epoch): it copies the divergences the policy
//! wants out of the engine, lets the planner decide, stores the decisions and
//! the planner's state under the lease's epoch in one transaction, and only
//! then performs the dispatches, spread over `dispatch_spread` so a wave does
//! not fire in one instant. A dispatch checks the pause right before it
//! fires, so an emergency stop takes effect before the next one. Outcomes
//! carry the epoch they were dispatched under; one from an older epoch is
//! refused and audited.

use std::sync::{Arc, Mutex, MutexGuard, mpsc};
use std::time::Duration;

use coherd_model::Time;
use coherd_model::time::wall_now;
use coherd_reconcile::{
    ActionConfig, Decision, Dispatch, Outcome, Phase, Policy, Reconciler, Seen, State, Stored,
};
use coherd_store::{Fence, NewAudit, SqliteStore, StateItem, Store, StoreError};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use serde_json::{Value, json};
use tokio::sync::watch;

use crate::delivery::{Attempt, post};
use crate::pipeline::Shared;

/// The lease the loop holds while it acts.
pub(crate) const LEASE: &str = "reconciler";
/// Bytes of a program's output kept for the audit log.
const OUTPUT_KEPT: usize = 1024;

type Labels = Vec<(&'static str, String)>;

/// The loop's metrics.
#[derive(Clone)]
pub(crate) struct ReconcileMetrics {
    /// Decisions by action and decision (`dispatched`, `verified`...).
    pub decisions: Family<Labels, Counter>,
    /// Actions in flight.
    pub in_flight: Gauge,
    /// Subjects quarantined, by service (only services with some).
    pub quarantined: Family<Labels, Gauge>,
    /// Rollouts halted, by service (only services with some).
    pub halted: Family<Labels, Gauge>,
    /// 1 while the emergency stop is on.
    pub paused: Gauge,
    /// The fencing epoch held; 0 while not holding the lease.
    pub epoch: Gauge,
    /// Divergence open to repair verified, by action.
    pub repair_seconds: Family<Labels, Histogram, fn() -> Histogram>,
}

fn repair_histogram() -> Histogram {
    Histogram::new(exponential_buckets(1.0, 2.5, 14))
}

impl Default for ReconcileMetrics {
    fn default() -> ReconcileMetrics {
        ReconcileMetrics {
            decisions: Family::default(),
            in_flight: Gauge::default(),
            quarantined: Family::default(),
            halted: Family::default(),
            paused: Gauge::default(),
            epoch: Gauge::default(),
            repair_seconds: Family::new_with_constructor(repair_histogram),
        }
    }
}

/// The planner while this process holds the lease.
struct Held {
    fence: Fence,
    reconciler: Reconciler,
    renewed_at: Time,
    /// The state as last stored, so a round stores only what changed.
    stored: Stored,
}

struct Inner {
    policy: Arc<Policy>,
    held: Option<Held>,
}

/// The reconcile loop's state, shared by its thread and the API.
pub(crate) struct Control {
    inner: Mutex<Inner>,
    store: Mutex<SqliteStore>,
    holder: String,
    pub(crate) metrics: ReconcileMetrics,
}

/// How an attempt ended, and under which epoch it was dispatched.
struct Reported {
    epoch: u64,
    key: String,
    attempt: u32,
    outcome: Outcome,
}

/// Why a control request could not be applied.
pub(crate) enum ControlError {
    /// The loop does not hold its lease (starting, or another coherd holds it).
    NotHolding(String),
    /// An outcome or request under an epoch that is not the current one.
    Stale { epoch: u64, current: u64 },
    /// No task has this key.
    Unknown(String),
    /// The store failed.
    Store(StoreError),
}

impl Control {
    /// The loop's state with `policy`, storing in `store`.
    pub(crate) fn new(
        policy: Policy,
        store: SqliteStore,
        metrics: ReconcileMetrics,
    ) -> Arc<Control> {
        let host = nix::unistd::gethostname()
            .map(|h| h.to_string_lossy().into_owned())
            .unwrap_or_default();
        Arc::new(Control {
            inner: Mutex::new(Inner {
                policy: Arc::new(policy),
                held: None,
            }),
            store: Mutex::new(store),
            holder: format!("{host}:{}:{:08x}", std::process::id(), fastrand::u32(..)),
            metrics,
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn store(&self) -> MutexGuard<'_, SqliteStore> {
        self.store.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The policy in force.
    pub(crate) fn policy(&self) -> Arc<Policy> {
        self.lock().policy.clone()
    }

    /// Puts a new policy in force (a config reload).
    pub(crate) fn set_policy(&self, policy: Policy) {
        self.lock().policy = Arc::new(policy);
    }

    /// Whether a dispatch to `service` must not fire now.
    fn paused(&self, service: &str) -> bool {
        self.lock()
            .held
            .as_ref()
            .is_none_or(|h| h.reconciler.state.is_paused(service))
    }

    /// Stores `decisions` and what changed of the state under the held fence.
    fn record(&self, held: &mut Held, decisions: &[Decision], now: Time) -> Result<(), StoreError> {
        let items = held.reconciler.state.changes(&held.stored);
        if decisions.is_empty() && items.is_empty() {
            return Ok(());
        }
        let audit = audit_entries(decisions, held.fence.epoch);
        let state: Vec<StateItem> = items
            .iter()
            .map(|(key, value)| StateItem {
                key: key.clone(),
                value: value.clone(),
            })
            .collect();
        self.store().record_fenced(&held.fence, &audit, &state)?;
        held.stored.commit(&held.reconciler.state, &items);
        self.count(decisions, &held.reconciler.state, now);
        Ok(())
    }

    fn count(&self, decisions: &[Decision], state: &State, now: Time) {
        for d in decisions {
            self.metrics
                .decisions
                .get_or_create(&vec![
                    ("action", d.action.clone()),
                    ("decision", d.decision.to_string()),
                ])
                .inc();
            if d.decision == "verified"
                && let Some(t) = d.idempotency_key.as_ref().and_then(|k| state.tasks.get(k))
            {
                self.metrics
                    .repair_seconds
                    .get_or_create(&vec![("action", d.action.clone())])
                    .observe(now.since(t.seen.opened_at).as_secs_f64());
            }
        }
    }

    /// Applies a control request (pause, resume, release) to the held
    /// planner and stores it under the fence.
    pub(crate) fn command(
        &self,
        apply: impl FnOnce(&mut Reconciler, Time) -> Vec<Decision>,
    ) -> Result<Value, ControlError> {
        let now = wall_now();
        let mut inner = self.lock();
        let Some(held) = inner.held.as_mut() else {
            return Err(ControlError::NotHolding(self.not_holding()));
        };
        let before = held.reconciler.state.clone();
        let decisions = apply(&mut held.reconciler, now);
        if let Err(e) = self.record(held, &decisions, now) {
            held.reconciler.state = before;
            return Err(ControlError::Store(e));
        }
        Ok(serde_json::to_value(&decisions).unwrap_or_default())
    }

    fn not_holding(&self) -> String {
        match self.store().lease(LEASE) {
            Ok(Some(l)) if l.holder != self.holder => format!(
                "the reconciler lease is held by {} (epoch {}) until {}; act there, or wait for it to lapse",
                l.holder, l.epoch, l.expires_at
            ),
            _ => "the reconcile loop is not running: configure reconcile.actions, or wait a few seconds for it to take its lease".into(),
        }
    }

    /// An outcome reported from outside (an executor that answered 202 and
    /// acted later): refused and audited unless under the current epoch.
    pub(crate) fn report(
        &self,
        key: &str,
        epoch: u64,
        outcome: Outcome,
    ) -> Result<Value, ControlError> {
        let now = wall_now();
        let mut inner = self.lock();
        let policy = inner.policy.clone();
        let Some(held) = inner.held.as_mut() else {
            return Err(ControlError::NotHolding(self.not_holding()));
        };
        if epoch != held.fence.epoch {
            let current = held.fence.epoch;
            let stale = Reported {
                epoch,
                key: key.to_string(),
                attempt: 0,
                outcome,
            };
            let audit = refusal(&held.reconciler.state, &stale, current, now);
            self.store()
                .append_audit(&[audit])
                .map_err(ControlError::Store)?;
            return Err(ControlError::Stale { epoch, current });
        }
        let Some(attempt) = held.reconciler.state.tasks.get(key).map(|t| t.attempts) else {
            return Err(ControlError::Unknown(key.to_string()));
        };
        let decisions = held.reconciler.report(&policy, key, attempt, outcome, now);
        self.record(held, &decisions, now)
            .map_err(ControlError::Store)?;
        Ok(serde_json::to_value(&decisions).unwrap_or_default())
    }

    /// `GET /v1/reconcile`: the lease, the pause, each action's rollouts and SLIs, the quarantine.
    pub(crate) fn status(&self) -> Value {
        let inner = self.lock();
        let lease = self.store().lease(LEASE).ok().flatten();
        let lease = lease.map(|l| json!({"holder": l.holder, "epoch": l.epoch, "expires_at": l.expires_at, "held_here": l.holder == self.holder}));
        let Some(held) = inner.held.as_ref() else {
            return json!({"running": false, "lease": lease, "actions": inner.policy.actions().iter().map(|a| json!({"name": a.name})).collect::<Vec<_>>()});
        };
        let state = &held.reconciler.state;
        let actions: Vec<Value> = inner
            .policy
            .actions()
            .iter()
            .map(|a| action_status(a, state))
            .collect();
        let quarantined: Vec<Value> = state
            .subjects
            .iter()
            .filter_map(|(id, e)| e.quarantine.as_ref().map(|q| json!({"divergence_id": id, "since": q.since, "action": q.action, "reopens": q.reopens})))
            .collect();
        json!({
            "running": true,
            "lease": lease,
            "fencing_epoch": held.fence.epoch,
            "paused": state.paused,
            "paused_services": state.paused_services,
            "in_flight": state.tasks.values().filter(|t| t.phase == Phase::InFlight).count(),
            "actions": actions,
            "quarantined": quarantined,
        })
    }

    /// One round: lease, outcomes, planning, storing, dispatching.
    fn step(&self, shared: &Shared, outcomes: Vec<Reported>, dispatcher: &Dispatcher) {
        let now = wall_now();
        let mut inner = self.lock();
        let policy = inner.policy.clone();
        if policy.actions().is_empty() && inner.held.is_none() {
            return;
        }
        let mut decisions = Vec::new();
        if inner.held.is_none() {
            match self.acquire(now, policy.config.lease_ttl) {
                Ok(Some((held, restored))) => {
                    decisions = restored;
                    inner.held = Some(held);
                }
                Ok(None) => return,
                Err(e) => {
                    tracing::error!(error = %e, "cannot take the reconciler lease");
                    return;
                }
            }
        }
        let held = inner.held.as_mut().expect("held above");
        let ttl = policy.config.lease_ttl;
        if now.since(held.renewed_at) >= ttl / 3 {
            match self.store().renew_lease(&held.fence, now, ttl) {
                Ok(()) => held.renewed_at = now,
                Err(e) => {
                    tracing::error!(error = %e, "the reconciler lost its lease; it stops acting until it takes it again");
                    self.lose(&mut inner);
                    return;
                }
            }
        }
        let mut refused = Vec::new();
        for r in outcomes {
            if r.epoch != held.fence.epoch {
                refused.push(refusal(&held.reconciler.state, &r, held.fence.epoch, now));
                continue;
            }
            decisions.extend(
                held.reconciler
                    .outcome(&policy, &r.key, r.attempt, r.outcome, now),
            );
        }
        if !refused.is_empty() {
            let _ = self.store().append_audit(&refused);
        }
        let seen = snapshot(shared, &policy, &held.reconciler.state);
        let mut round = held.reconciler.round(&policy, &seen, now);
        decisions.extend(round.decisions);
        attach_records(shared, &mut decisions, &mut round.dispatch);
        match self.record(held, &decisions, now) {
            Ok(()) => {
                let epoch = held.fence.epoch;
                for d in round.dispatch {
                    let action = policy.actions()[d.action].clone();
                    dispatcher.send(action, d, epoch, policy.config.dispatch_spread);
                }
            }
            Err(StoreError::Fenced { .. }) => {
                tracing::error!(
                    "the reconciler's lease moved on; nothing of this round was stored or dispatched"
                );
                self.lose(&mut inner);
                return;
            }
            Err(e) => {
                // Nothing was stored: nothing is dispatched, and the next round decides again.
                tracing::error!(error = %e, "cannot store the reconcile round; its dispatches wait for the next round");
                for d in &round.dispatch {
                    held.reconciler
                        .outcome(&policy, &d.key, d.attempt, Outcome::NotSent, now);
                }
            }
        }
        self.gauges(held);
    }

    fn acquire(
        &self,
        now: Time,
        ttl: Duration,
    ) -> Result<Option<(Held, Vec<Decision>)>, StoreError> {
        let mut store = self.store();
        let Some(epoch) = store.acquire_lease(LEASE, &self.holder, now, ttl)? else {
            return Ok(None);
        };
        let (state, stored) = State::from_items(store.controller_state(LEASE)?).unwrap_or_else(|e| {
            tracing::error!(error = %e, "the stored reconcile state cannot be read; starting from nothing");
            (State::default(), Stored::default())
        });
        drop(store);
        let (reconciler, mut decisions) = Reconciler::restore(state, now);
        decisions.insert(
            0,
            Decision::control(
                now,
                "acquired",
                "",
                "",
                Some(format!("the reconciler lease, fencing epoch {epoch}")),
            ),
        );
        tracing::info!(epoch, "took the reconciler lease");
        Ok(Some((
            Held {
                fence: Fence {
                    name: LEASE.into(),
                    holder: self.holder.clone(),
                    epoch,
                },
                reconciler,
                renewed_at: now,
                stored,
            },
            decisions,
        )))
    }

    fn lose(&self, inner: &mut Inner) {
        inner.held = None;
        self.metrics.epoch.set(0);
    }

    fn gauges(&self, held: &Held) {
        let state = &held.reconciler.state;
        let m = &self.metrics;
        m.in_flight.set(
            state
                .tasks
                .values()
                .filter(|t| t.phase == Phase::InFlight)
                .count() as i64,
        );
        m.halted.clear();
        m.quarantined.clear();
        for (service, (halted, quarantined)) in state.troubles() {
            let labels = vec![("service", service)];
            if halted > 0 {
                m.halted.get_or_create(&labels).set(i64::from(halted));
            }
            if quarantined > 0 {
                m.quarantined
                    .get_or_create(&labels)
                    .set(i64::from(quarantined));
            }
        }
        m.paused.set(i64::from(state.paused));
        m.epoch.set(held.fence.epoch as i64);
    }

    /// What the on-call page shows of the loop: remediations under way and
    /// the quarantine; `None` while the loop does not run here.
    pub(crate) fn work(
        &self,
    ) -> Option<(
        Vec<coherd_web::RemediationRow>,
        Vec<coherd_web::QuarantineRow>,
    )> {
        let inner = self.lock();
        let state = &inner.held.as_ref()?.reconciler.state;
        let under_way = state
            .tasks
            .values()
            .filter_map(|t| {
                let phase = match t.phase {
                    Phase::Planned => "planned",
                    Phase::InFlight => "in flight",
                    Phase::Succeeded(_) => "awaiting verification",
                    _ => return None,
                };
                Some(coherd_web::RemediationRow {
                    action: t.action.clone(),
                    service: t.seen.service.clone(),
                    member: t.seen.member.clone(),
                    divergence_id: t.seen.id.clone(),
                    phase: phase.to_string(),
                    attempts: t.attempts,
                    wave: t.wave.map(|w| w + 1),
                })
            })
            .collect();
        let quarantined = state
            .subjects
            .iter()
            .filter_map(|(id, e)| {
                let q = e.quarantine.as_ref()?;
                Some(coherd_web::QuarantineRow {
                    divergence_id: id.clone(),
                    service: q.service.clone(),
                    action: q.action.clone(),
                    since: q.since,
                })
            })
            .collect();
        Some((under_way, quarantined))
    }

    /// Per service: rollouts halted and subjects quarantined, for the alerts.
    pub(crate) fn troubles(&self) -> std::collections::BTreeMap<String, (u32, u32)> {
        self.lock()
            .held
            .as_ref()
            .map(|h| h.reconciler.state.troubles())
            .unwrap_or_default()
    }

    /// A clean stop: lets the lease lapse now, so the next start acts at once.
    fn stop(&self) {
        let mut inner = self.lock();
        if let Some(held) = inner.held.take() {
            if let Err(e) = self.store().release_lease(&held.fence) {
                tracing::warn!(error = %e, "cannot release the reconciler lease; a successor waits for it to lapse");
            }
            self.metrics.epoch.set(0);
        }
    }

    /// Deletes audit records past their retention.
    fn prune(&self) {
        let retention = self.policy().config.audit_retention;
        let before = wall_now().sub(retention);
        match self.store().prune_audit(before) {
            Ok(0) => {}
            Ok(n) => tracing::info!(deleted = n, "pruned the audit log"),
            Err(e) => tracing::error!(error = %e, "cannot prune the audit log"),
        }
    }

    /// Reads the audit log for the API.
    pub(crate) fn audit(
        &self,
        query: &coherd_store::AuditQuery,
    ) -> Result<Vec<coherd_store::AuditRecord>, StoreError> {
        self.store().audit(query)
    }
}

/// The audit record of an outcome refused because it carries epoch
/// `r.epoch`, not the `current` one: stamped with the epoch it carried.
fn refusal(state: &State, r: &Reported, current: u64, now: Time) -> NewAudit {
    let task = state.tasks.get(&r.key);
    let mut d = Decision::control(
        now,
        "refused",
        task.map_or("", |t| t.action.as_str()),
        task.map_or("", |t| t.seen.service.as_str()),
        Some(format!(
            "outcome {:?} under fencing epoch {}; the reconciler is at epoch {current}",
            r.outcome, r.epoch
        )),
    );
    d.idempotency_key = Some(r.key.clone());
    d.attempt = r.attempt;
    d.member = task.and_then(|t| t.seen.member.clone());
    d.divergence_id = task.map(|t| t.seen.id.clone());
    audit_entries(&[d], r.epoch).remove(0)
}

fn action_status(a: &ActionConfig, state: &State) -> Value {
    let stats = state.stats.get(&a.name).cloned().unwrap_or_default();
    let rollouts = state.rollouts.get(&a.name);
    let mut services: std::collections::BTreeMap<&str, Value> = std::collections::BTreeMap::new();
    for t in state.tasks.values().filter(|t| t.action == a.name) {
        let e = services.entry(t.seen.service.as_str()).or_insert_with(|| {
            let r = rollouts.and_then(|m| m.get(&t.seen.service)).cloned().unwrap_or_default();
            json!({"service": t.seen.service, "rollout": r.id, "wave": r.wave.map(|w| w + 1), "waves": a.waves.len(),
                   "next_wave_at": r.gate_at, "halted": r.halted, "waiting": 0, "planned": 0, "in_flight": 0, "awaiting_verification": 0})
        });
        let field = match t.phase {
            Phase::Waiting => "waiting",
            Phase::Planned => "planned",
            Phase::InFlight => "in_flight",
            Phase::Succeeded(_) => "awaiting_verification",
            _ => continue,
        };
        e[field] = json!(e[field].as_u64().unwrap_or(0) + 1);
    }
    json!({
        "name": a.name,
        "kind": if a.webhook.is_some() { "webhook" } else { "exec" },
        "dry_run": a.dry_run,
        "services": services.into_values().collect::<Vec<_>>(),
        "stats": stats,
        "sli": {"success_rate": stats.success_rate(), "mean_time_to_repair_seconds": stats.mean_time_to_repair(), "actions_per_repair": stats.cost()},
    })
}

/// The audit rows of `decisions`, each stamped with the epoch it was decided under.
fn audit_entries(decisions: &[Decision], epoch: u64) -> Vec<NewAudit> {
    decisions
        .iter()
        .map(|d| {
            let mut record = serde_json::to_value(d).unwrap_or_default();
            record["epoch"] = json!(epoch);
            NewAudit {
                at: d.at,
                epoch,
                action: d.action.clone(),
                service: d.service.clone(),
                member: d.member.clone(),
                decision: d.decision.to_string(),
                record: record.to_string(),
            }
        })
        .collect()
}

/// The divergences the policy wants, open, and the latest record of every
/// divergence a task waits on; copied out under the engine's lock.
fn snapshot(shared: &Shared, policy: &Policy, state: &State) -> Vec<Seen> {
    let watched: std::collections::BTreeSet<&str> = state
        .tasks
        .values()
        .filter(|t| !t.phase.is_terminal())
        .map(|t| t.seen.id.as_str())
        .collect();
    let engine = shared.engine();
    let mut seen: Vec<Seen> = engine
        .open_divergences()
        .filter(|d| policy.wants(d.kind, &d.service) || watched.contains(d.id.as_str()))
        .map(to_seen)
        .collect();
    let open: std::collections::BTreeSet<&str> = seen.iter().map(|s| s.id.as_str()).collect();
    if watched.iter().any(|id| !open.contains(id)) {
        let mut latest: std::collections::BTreeMap<&str, &coherd_engine::Divergence> =
            std::collections::BTreeMap::new();
        for d in engine.divergences() {
            if !d.is_open() && watched.contains(d.id.as_str()) && !open.contains(d.id.as_str()) {
                latest.insert(&d.id, d);
            }
        }
        let closed: Vec<Seen> = latest.into_values().map(to_seen).collect();
        seen.extend(closed);
    }
    seen
}

/// The divergence as the planner sees it, without its record: most rounds
/// need none, and copying every one would hold the engine long
/// ([`attach_records`] copies the few a round needs).
fn to_seen(d: &coherd_engine::Divergence) -> Seen {
    let text = |k: &str| {
        d.evidence
            .get(k)
            .and_then(Value::as_str)
            .map(str::to_string)
    };
    Seen {
        id: d.id.clone(),
        service: d.service.clone(),
        kind: d.kind,
        severity: d.severity,
        member: if d.kind.is_member_level() {
            d.subjects.first().cloned()
        } else {
            None
        },
        facet: text("facet"),
        target: text("target"),
        opened_at: d.opened_at,
        resolved_at: d.resolved_at,
        record: Value::Null,
    }
}

/// Copies from the engine the records that `decisions` (as evidence) and
/// `dispatch` (for the body) need: the open episode, or the latest one.
fn attach_records(shared: &Shared, decisions: &mut [Decision], dispatch: &mut [Dispatch]) {
    use coherd_reconcile::Evidence;
    let wanted: std::collections::HashSet<String> = decisions
        .iter()
        .filter(|d| d.evidence != Evidence::None)
        .filter_map(|d| d.divergence_id.clone())
        .chain(dispatch.iter().map(|d| d.seen.id.clone()))
        .collect();
    if wanted.is_empty() {
        return;
    }
    let mut records: std::collections::HashMap<&str, Value> = std::collections::HashMap::new();
    let engine = shared.engine();
    // Open episodes first; for the rest, the latest record (scanning back from the newest).
    let open = engine.open_divergences();
    for d in open.chain(engine.divergences().iter().rev()) {
        if let Some(id) = wanted.get(&d.id)
            && !records.contains_key(id.as_str())
        {
            records.insert(id, serde_json::to_value(d).unwrap_or_default());
            if records.len() == wanted.len() {
                break;
            }
        }
    }
    drop(engine);
    for d in decisions.iter_mut() {
        if let Some(r) = d.divergence_id.as_deref().and_then(|id| records.get(id)) {
            d.attach(r.clone());
        }
    }
    for d in dispatch.iter_mut() {
        if let Some(r) = records.get(d.seen.id.as_str()) {
            d.seen.record = r.clone();
        }
    }
}

/// Performs dispatches on the runtime and reports their outcomes to the loop.
struct Dispatcher {
    control: Arc<Control>,
    runtime: tokio::runtime::Handle,
    client: reqwest::Client,
    outcomes: mpsc::Sender<Reported>,
}

impl Dispatcher {
    fn send(&self, action: ActionConfig, d: Dispatch, epoch: u64, spread: Duration) {
        let control = self.control.clone();
        let client = self.client.clone();
        let outcomes = self.outcomes.clone();
        let delay = if spread.is_zero() {
            Duration::ZERO
        } else {
            coherd_dephase::stable_offset(&d.key, &action.name, spread)
        };
        self.runtime.spawn(async move {
            tokio::time::sleep(delay).await;
            let outcome = if control.paused(&d.seen.service) {
                Outcome::NotSent
            } else {
                perform(&client, &action, &d, epoch).await
            };
            let _ = outcomes.send(Reported {
                epoch,
                key: d.key,
                attempt: d.attempt,
                outcome,
            });
        });
    }
}

/// The webhook's body (and an exec's standard input).
fn body(action: &ActionConfig, d: &Dispatch, epoch: u64) -> Value {
    json!({
        "action": action.name, "service": d.seen.service, "member": d.seen.member, "facet": d.seen.facet,
        "kind": d.seen.kind, "target": d.seen.target, "divergence_id": d.seen.id, "attempt": d.attempt,
        "idempotency_key": d.key, "fencing_epoch": epoch, "divergence": d.seen.record,
    })
}

async fn perform(
    client: &reqwest::Client,
    action: &ActionConfig,
    d: &Dispatch,
    epoch: u64,
) -> Outcome {
    let body = body(action, d, epoch);
    if let Some(w) = &action.webhook {
        let mut headers: Vec<(String, String)> = w
            .headers
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        headers.push(("Idempotency-Key".into(), d.key.clone()));
        headers.push(("Coherd-Fencing-Token".into(), epoch.to_string()));
        return match post(client, &w.url, &headers, &body, w.timeout).await {
            Attempt::Delivered => Outcome::Succeeded,
            Attempt::Refused(status) => Outcome::Failed {
                retry: false,
                detail: format!("the webhook answered {status}"),
            },
            Attempt::Failed(why) => Outcome::Failed {
                retry: true,
                detail: format!("the webhook {why}"),
            },
        };
    }
    let Some(e) = &action.exec else {
        return Outcome::Failed {
            retry: false,
            detail: "the action has neither webhook nor exec".into(),
        };
    };
    exec(e, &body, d, epoch).await
}

/// Runs the program with `{placeholders}` filled in and the body on standard input.
async fn exec(e: &coherd_reconcile::ExecConfig, body: &Value, d: &Dispatch, epoch: u64) -> Outcome {
    use tokio::io::AsyncWriteExt;
    let fill = |arg: &str| {
        let s = |v: &Option<String>| v.clone().unwrap_or_default();
        arg.replace("{service}", &d.seen.service)
            .replace("{member}", &s(&d.seen.member))
            .replace("{facet}", &s(&d.seen.facet))
            .replace("{target}", &s(&d.seen.target))
            .replace("{kind}", d.seen.kind.as_str())
            .replace("{divergence_id}", &d.seen.id)
            .replace("{action}", body["action"].as_str().unwrap_or_default())
            .replace("{idempotency_key}", &d.key)
            .replace("{fencing_epoch}", &epoch.to_string())
    };
    let argv: Vec<String> = e.argv.iter().map(|a| fill(a)).collect();
    let child = tokio::process::Command::new(&argv[0])
        .args(&argv[1..])
        .env("COHERD_IDEMPOTENCY_KEY", &d.key)
        .env("COHERD_FENCING_EPOCH", epoch.to_string())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(err) => {
            return Outcome::Failed {
                retry: false,
                detail: format!("cannot run {}: {err}", argv[0]),
            };
        }
    };
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(body.to_string().as_bytes()).await;
    }
    match tokio::time::timeout(e.timeout, child.wait_with_output()).await {
        Err(_) => Outcome::Failed {
            retry: true,
            detail: format!(
                "{} did not finish within {}; it was killed",
                argv[0],
                coherd_model::time::format_duration(e.timeout)
            ),
        },
        Ok(Err(err)) => Outcome::Failed {
            retry: true,
            detail: format!("{}: {err}", argv[0]),
        },
        Ok(Ok(out)) if out.status.success() => Outcome::Succeeded,
        Ok(Ok(out)) => {
            let stderr = String::from_utf8_lossy(&out.stderr[..out.stderr.len().min(OUTPUT_KEPT)])
                .trim()
                .to_string();
            Outcome::Failed {
                retry: true,
                detail: format!("{} exited with {}: {stderr}", argv[0], out.status),
            }
        }
    }
}

/// Starts the loop's thread; it ends when `stop` turns true.
pub(crate) fn start(
    control: Arc<Control>,
    shared: Arc<Shared>,
    stop: watch::Receiver<bool>,
) -> std::thread::JoinHandle<()> {
    let runtime = tokio::runtime::Handle::current();
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(5))
        .build()
        .unwrap_or_default();
    std::thread::Builder::new()
        .name("coherd-reconcile".into())
        .spawn(move || {
            let (tx, rx) = mpsc::channel();
            let dispatcher = Dispatcher {
                control: control.clone(),
                runtime,
                client,
                outcomes: tx,
            };
            let mut last_prune = std::time::Instant::now();
            control.prune();
            loop {
                let mut outcomes: Vec<Reported> = rx
                    .recv_timeout(Duration::from_secs(1))
                    .into_iter()
                    .collect();
                outcomes.extend(rx.try_iter());
                if *stop.borrow() {
                    control.stop();
                    return;
                }
                control.step(&shared, outcomes, &dispatcher);
                if last_prune.elapsed() >= Duration::from_secs(3600) {
                    last_prune = std::time::Instant::now();
                    control.prune();
                }
            }
        })
        .expect("a thread can be spawned")
}
