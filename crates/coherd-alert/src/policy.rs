//! How each kind of divergence alerts: the one table that the built-in rules
//! ([`crate::config::default_rules`]) and the exported Prometheus rules
//! (`coherd rules export`) are both made from, so the two pagers agree.

use std::time::Duration;

use coherd_model::{Kind, Severity};
use serde::{Deserialize, Serialize};

/// `page` or `ticket`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Urgency {
    /// Wake someone.
    Page,
    /// Handle in working hours.
    Ticket,
}

impl Urgency {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Urgency::Page => "page",
            Urgency::Ticket => "ticket",
        }
    }
}

/// How divergences of one kind, at or above one severity, alert.
#[derive(Debug, Clone, Copy)]
pub struct DivergenceAlert {
    /// The kind of divergence.
    pub kind: Kind,
    /// Divergences at or above this severity count.
    pub min_severity: Severity,
    /// The alert name.
    pub alert: &'static str,
    /// Page or ticket.
    pub urgency: Urgency,
    /// How long the divergence must stay open before the alert fires.
    pub for_: Duration,
    /// One line about one divergence; `{service}` is filled in.
    pub summary: &'static str,
    /// What is open, after "N" in a count per service ("members off their target").
    pub what: &'static str,
    /// Why it matters.
    pub why: &'static str,
    /// What to do first; `{service}` is filled in.
    pub runbook: &'static str,
}

impl DivergenceAlert {
    /// Whether a divergence of `kind` at `severity` counts for this alert.
    pub fn matches(&self, kind: Kind, severity: Severity) -> bool {
        self.kind == kind && severity >= self.min_severity
    }

    /// The severities that count, lowest first.
    pub fn severities(&self) -> impl Iterator<Item = Severity> + use<> {
        let min = self.min_severity;
        Severity::ALL.into_iter().filter(move |s| *s >= min)
    }
}

const fn minutes(m: u64) -> Duration {
    Duration::from_secs(m * 60)
}

/// Every kind, with when it alerts, what it means and what to do. What breaks
/// correctness or safety now pages; the rest is a ticket. Drift and drain
/// violations have two rows: the critical ones page, every one is a ticket
/// (a page mutes the ticket about the same divergence).
pub const DIVERGENCE_ALERTS: [DivergenceAlert; 17] = [
    DivergenceAlert {
        kind: Kind::SplitBrain,
        min_severity: Severity::Info,
        alert: "CoherdSplitBrain",
        urgency: Urgency::Page,
        for_: Duration::ZERO,
        summary: "Two members of {service} hold the same exclusive lease",
        what: "exclusive resources held by two members",
        why: "Two members hold unexpired leases on the same exclusive resource at once: both may act as leader.",
        runbook: "Run `coherd divergences --service {service} --kind split_brain` for the resource and holders; fence the holder with the lower epoch (stop it) before anything else.",
    },
    DivergenceAlert {
        kind: Kind::StaleEpoch,
        min_severity: Severity::Info,
        alert: "CoherdStaleEpoch",
        urgency: Urgency::Page,
        for_: Duration::ZERO,
        summary: "A member of {service} acts on a stale lease epoch",
        what: "members holding a lease with a stale epoch",
        why: "A member holds an unexpired lease with an epoch lower than the highest seen for the resource: a deposed leader that still acts.",
        runbook: "Run `coherd divergences --service {service} --kind stale_epoch`; stop the stale holder and check that the resource fences on epochs.",
    },
    DivergenceAlert {
        kind: Kind::ReplicaDivergence,
        min_severity: Severity::Info,
        alert: "CoherdReplicaDivergence",
        urgency: Urgency::Page,
        for_: Duration::ZERO,
        summary: "Replicas of {service} hold different data",
        what: "datasets whose replicas disagree",
        why: "Replicas reported different digests for the same dataset at the same position: their data differs.",
        runbook: "Run `coherd divergences --service {service} --kind replica_divergence` for the dataset and the divergent members; stop writes to them and repair from the majority.",
    },
    DivergenceAlert {
        kind: Kind::CanaryRegression,
        min_severity: Severity::Info,
        alert: "CoherdCanaryRegression",
        urgency: Urgency::Page,
        for_: Duration::ZERO,
        summary: "A new value of a facet of {service} fails more requests",
        what: "facet values failing more requests than the baseline",
        why: "Members running one value of a facet (a new version, config or flag set) fail significantly more requests than the baseline value, past the canary's max_ratio: the change breaks requests.",
        runbook: "Run `coherd divergences --service {service} --kind canary_regression` for both error rates and request counts; pause the rollout and roll the value back.",
    },
    DivergenceAlert {
        kind: Kind::DrainViolation,
        min_severity: Severity::Critical,
        alert: "CoherdDrainViolation",
        urgency: Urgency::Page,
        for_: Duration::ZERO,
        summary: "Traffic reaches a draining member of {service}",
        what: "members serving requests while not serving",
        why: "An observer routes to a member that reports a non-serving phase, and the member's request counter grows: traffic reaches a draining or stopped member.",
        runbook: "Run `coherd divergences --service {service} --kind drain_violation`; take the member out of the observer's pool by hand, then find why deregistration did not happen.",
    },
    DivergenceAlert {
        kind: Kind::DrainViolation,
        min_severity: Severity::Info,
        alert: "CoherdDrainViolation",
        urgency: Urgency::Ticket,
        for_: minutes(2),
        summary: "An observer routes to a draining member of {service}",
        what: "members an observer still routes to while not serving",
        why: "An observer believes a member serves while the member reports a non-serving phase.",
        runbook: "Run `coherd divergences --service {service} --kind drain_violation`; check the observer's deregistration.",
    },
    DivergenceAlert {
        kind: Kind::Drift,
        min_severity: Severity::Critical,
        alert: "CoherdForeignDrift",
        urgency: Urgency::Page,
        for_: minutes(5),
        summary: "Members of {service} run an unexpected value",
        what: "members running a value the intent does not know",
        why: "Members run a version, config, schema or flag set that is neither the target nor a compatible or previous value: something deployed outside the intent.",
        runbook: "Run `coherd divergences --service {service} --kind drift` for the members and facets; roll them back to the target, or fix the target in the intent if it is the intent that is wrong.",
    },
    DivergenceAlert {
        kind: Kind::Drift,
        min_severity: Severity::Info,
        alert: "CoherdDrift",
        urgency: Urgency::Ticket,
        for_: minutes(15),
        summary: "Members of {service} lag behind the target",
        what: "members off their target",
        why: "Members run a version, config, schema or flag set other than the intent's target: lagging past the rollout window (warning) or foreign (critical).",
        runbook: "Run `coherd divergences --service {service} --kind drift` for the members and facets; redeploy them, or fix the target in the intent if it is the intent that is wrong.",
    },
    DivergenceAlert {
        kind: Kind::Mixed,
        min_severity: Severity::Warning,
        alert: "CoherdMixedState",
        urgency: Urgency::Ticket,
        for_: minutes(10),
        summary: "Several values of one facet serve in {service}",
        what: "facets with several values past their rollout window",
        why: "Several values of a uniform facet serve at once and one of them lags or is foreign: a stalled rollout or a partial deploy. Mixed state inside a rollout window is info and does not alert.",
        runbook: "Run `coherd status --service {service}` for the value distribution; finish or roll back the rollout.",
    },
    DivergenceAlert {
        kind: Kind::Silent,
        min_severity: Severity::Info,
        alert: "CoherdSilent",
        urgency: Urgency::Ticket,
        for_: minutes(5),
        summary: "Members of {service} stopped reporting",
        what: "members silent",
        why: "Known members stopped reporting for 3 report intervals without reaching a terminal phase: they died, hang, or lost their reporter.",
        runbook: "Run `coherd divergences --service {service} --kind silent`; check the members and their reporters; remove members that are gone for good.",
    },
    DivergenceAlert {
        kind: Kind::PhaseDisagreement,
        min_severity: Severity::Info,
        alert: "CoherdPhaseDisagreement",
        urgency: Urgency::Ticket,
        for_: minutes(2),
        summary: "Observers disagree about a member's phase in {service}",
        what: "observers that see a member in the wrong phase",
        why: "An observer (a load balancer, a peer) believes a member is in another phase than the member reports, for longer than the agreement timeout.",
        runbook: "Run `coherd divergences --service {service} --kind phase_disagreement` for the observer and member; check health checks and discovery propagation.",
    },
    DivergenceAlert {
        kind: Kind::IllegalTransition,
        min_severity: Severity::Info,
        alert: "CoherdIllegalTransition",
        urgency: Urgency::Ticket,
        for_: Duration::ZERO,
        summary: "A member of {service} made an illegal phase transition",
        what: "members that moved along an illegal phase edge",
        why: "A member's phase moved along an edge the phase machine does not allow (for example stopped to ready without starting).",
        runbook: "Run `coherd divergences --service {service} --kind illegal_transition`; check the members' lifecycle hooks and the phase machine in the intent.",
    },
    DivergenceAlert {
        kind: Kind::Flapping,
        min_severity: Severity::Info,
        alert: "CoherdFlapping",
        urgency: Urgency::Ticket,
        for_: Duration::ZERO,
        summary: "A member of {service} changes phase too often",
        what: "members flapping between phases",
        why: "Members changed phase more than max_flips_per_hour times in the last hour: crash loops or flapping health checks.",
        runbook: "Run `coherd divergences --service {service} --kind flapping`; check the members' restarts and health checks.",
    },
    DivergenceAlert {
        kind: Kind::Herd,
        min_severity: Severity::Critical,
        alert: "CoherdHerd",
        urgency: Urgency::Page,
        for_: Duration::ZERO,
        summary: "Periodic work in {service} runs past its concurrency limit",
        what: "periodic jobs running more at once than they may",
        why: "More runs of a periodic job overlap than its max_concurrent allows: what they share (a database, an API quota) takes the whole fleet's load at once.",
        runbook: "Run `coherd divergences --service {service} --kind herd` for the peak and the members; stop the extra runs, then spread the job with `coherd splay` or the dephase settings in the intent.",
    },
    DivergenceAlert {
        kind: Kind::Herd,
        min_severity: Severity::Info,
        alert: "CoherdHerd",
        urgency: Urgency::Ticket,
        for_: Duration::ZERO,
        summary: "Periodic work in {service} fires in step",
        what: "periodic jobs running in lockstep",
        why: "Members run a periodic job at the same moments (order parameter or peak concurrency above the limit): a thundering herd.",
        runbook: "Run `coherd herd` on the job's events or crontabs; spread the job with `coherd splay` or the dephase settings in the intent.",
    },
    DivergenceAlert {
        kind: Kind::ReplicaLag,
        min_severity: Severity::Info,
        alert: "CoherdReplicaLag",
        urgency: Urgency::Ticket,
        for_: minutes(5),
        summary: "A replica of {service} trails its dataset",
        what: "replicas behind their dataset past max_lag",
        why: "A replica trails the highest position any live member reported for its dataset by more than the dataset's max_lag: reads from it are stale, and a failover to it loses writes.",
        runbook: "Run `coherd divergences --service {service} --kind replica_lag` for the lag and the leader; check the replica's replication stream and load.",
    },
    DivergenceAlert {
        kind: Kind::ClockSkew,
        min_severity: Severity::Info,
        alert: "CoherdClockSkew",
        urgency: Urgency::Ticket,
        for_: minutes(5),
        summary: "A member of {service} reports from a clock that runs ahead",
        what: "members whose clocks run ahead",
        why: "A member's reports carry times further ahead of coherd's clock than max_clock_skew: its clock is off, which misorders events and lines up work meant to be spread apart.",
        runbook: "Run `coherd divergences --service {service} --kind clock_skew` for the offset; check NTP or chrony on the member (`chronyc tracking`).",
    },
];

/// Which side of a threshold is bad.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Threshold {
    /// Fires while the SLI is below this.
    Below(f64),
    /// Fires while the SLI is above this.
    Above(f64),
}

impl Threshold {
    /// Whether `value` is on the bad side.
    pub fn breached(self, value: f64) -> bool {
        match self {
            Threshold::Below(t) => value < t,
            Threshold::Above(t) => value > t,
        }
    }

    /// The PromQL comparison: `< 0.99`.
    pub fn promql(self) -> String {
        match self {
            Threshold::Below(t) => format!("< {t}"),
            Threshold::Above(t) => format!("> {t}"),
        }
    }

    /// `below 0.99`.
    pub fn words(self) -> String {
        match self {
            Threshold::Below(t) => format!("below {t}"),
            Threshold::Above(t) => format!("above {t}"),
        }
    }
}

/// A built-in alert on an SLI's threshold, as the playbooks recommend it.
#[derive(Debug, Clone, Copy)]
pub struct SliAlert {
    /// The alert name.
    pub alert: &'static str,
    /// The SLI, as in [`crate::sli::SLIS`].
    pub sli: &'static str,
    /// When it fires.
    pub threshold: Threshold,
    /// How long the threshold must stay breached.
    pub for_: Duration,
    /// Page or ticket.
    pub urgency: Urgency,
    /// One line; `{service}` is filled in.
    pub summary: &'static str,
    /// Why it matters.
    pub why: &'static str,
    /// What to do first; `{service}` is filled in.
    pub runbook: &'static str,
}

/// The thresholds the playbooks give for the fleet's SLIs: telemetry
/// completeness above 99 %, unapproved mixed-state exposure under 1 %, phase
/// mismatch under 0.1 %, drain failures under 0.5 %, schema errors under
/// 0.1 %, duplicates under 0.01 %, and fewer than 2 phase changes per member
/// an hour. Each opens a ticket; what breaks safety pages through its
/// divergence. Two more watch the reconcile loop: a halted rollout and a
/// quarantined subject each need a person.
pub const SLI_ALERTS: [SliAlert; 9] = [
    SliAlert {
        alert: "CoherdTelemetryIncomplete",
        sli: "telemetry_completeness",
        threshold: Threshold::Below(0.99),
        for_: minutes(15),
        urgency: Urgency::Ticket,
        summary: "Fewer than 99% of the members of {service} report",
        why: "Fewer than 99% of the expected members report: coherence is measured on part of the fleet only.",
        runbook: "Run `coherd divergences --service {service} --kind silent`; check the members' reporters and `expect_members` in the intent.",
    },
    SliAlert {
        alert: "CoherdUnapprovedExposure",
        sli: "exposure_unapproved",
        threshold: Threshold::Above(0.01),
        for_: minutes(10),
        urgency: Urgency::Ticket,
        summary: "Over 1% of the requests of {service} reach a lagging or foreign value",
        why: "More than 1% of requests are served by members whose facet is neither the target nor converging inside its rollout window: users meet mixed state nobody approved.",
        runbook: "Run `coherd status --service {service}` for the value distribution and `coherd divergences --service {service} --kind drift`; finish or roll back the rollout.",
    },
    SliAlert {
        alert: "CoherdPhaseMismatch",
        sli: "phase_mismatch_rate",
        threshold: Threshold::Above(0.001),
        for_: minutes(10),
        urgency: Urgency::Ticket,
        summary: "Observers of {service} disagree with its members' phases",
        why: "More than 0.1% of observer and member pairs disagree about the member's phase: routing and discovery act on stale lifecycle state.",
        runbook: "Run `coherd divergences --service {service} --kind phase_disagreement`; check health checks and discovery propagation.",
    },
    SliAlert {
        alert: "CoherdDrainFailureRate",
        sli: "drain_failure_rate",
        threshold: Threshold::Above(0.005),
        for_: minutes(5),
        urgency: Urgency::Ticket,
        summary: "Over 0.5% of the requests of {service} reach non-serving members",
        why: "More than 0.5% of requests were served by members in a non-serving phase: drains do not deregister members in time.",
        runbook: "Run `coherd divergences --service {service} --kind drain_violation`; lengthen preStop or fix deregistration in the balancer.",
    },
    SliAlert {
        alert: "CoherdSchemaErrors",
        sli: "schema_error_rate",
        threshold: Threshold::Above(0.001),
        for_: minutes(10),
        urgency: Urgency::Ticket,
        summary: "Over 0.1% of the requests of {service} fail on schema",
        why: "More than 0.1% of requests fail to serialise or parse: a schema change is not compatible with what still runs.",
        runbook: "Run `coherd status --service {service}` for the schema values; roll back the incompatible schema or add a compatibility layer.",
    },
    SliAlert {
        alert: "CoherdDuplicates",
        sli: "duplicate_rate",
        threshold: Threshold::Above(0.0001),
        for_: minutes(10),
        urgency: Urgency::Ticket,
        summary: "{service} processes work twice",
        why: "More than 0.01% of requests are duplicates: two members, or a retry and the original, both do the same work.",
        runbook: "Run `coherd divergences --service {service} --kind split_brain` and check idempotency keys and leases.",
    },
    SliAlert {
        alert: "CoherdFlapFrequency",
        sli: "flap_frequency",
        threshold: Threshold::Above(2.0),
        for_: minutes(15),
        urgency: Urgency::Ticket,
        summary: "Members of {service} change phase too often",
        why: "Members changed phase more than twice an hour on average: crash loops, restarts or flapping health checks across the fleet.",
        runbook: "Run `coherd divergences --service {service} --kind flapping`; check restarts and health checks.",
    },
    SliAlert {
        alert: "CoherdReconcileHalted",
        sli: "reconcile_halted",
        threshold: Threshold::Above(0.0),
        for_: minutes(0),
        urgency: Urgency::Ticket,
        summary: "Repairs of {service} halted",
        why: "A repair did not hold (its divergence stayed open after the action succeeded) or an action gave up: the next waves wait, so a bad repair does not spread across the fleet.",
        runbook: "Run `coherd reconcile status` and `coherd audit --service {service}`; fix the cause, then `coherd reconcile resume --service {service}`.",
    },
    SliAlert {
        alert: "CoherdReconcileQuarantined",
        sli: "reconcile_quarantined",
        threshold: Threshold::Above(0.0),
        for_: minutes(0),
        urgency: Urgency::Ticket,
        summary: "Repairs of {service} keep being undone",
        why: "A subject reopened again and again after repair: another controller (a deploy tool, a GitOps loop, a person) undoes it, and the two would fight; coherd stopped acting on it.",
        runbook: "Run `coherd reconcile status` for the quarantined ids and `coherd audit --service {service}`; find the other writer, then `coherd reconcile release ID`.",
    },
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_alerts_and_every_severity_has_one_row_per_urgency() {
        for kind in Kind::ALL {
            for severity in Severity::ALL {
                for urgency in [Urgency::Page, Urgency::Ticket] {
                    let rows = DIVERGENCE_ALERTS
                        .iter()
                        .filter(|a| a.urgency == urgency && a.matches(kind, severity))
                        .count();
                    assert!(rows <= 1, "{kind} {severity}: {rows} {urgency:?} rows");
                }
            }
            assert!(
                DIVERGENCE_ALERTS
                    .iter()
                    .any(|a| a.matches(kind, Severity::Critical)),
                "no alert for {kind}"
            );
        }
    }

    #[test]
    fn every_sli_alert_watches_a_known_sli() {
        for a in SLI_ALERTS {
            assert!(
                crate::sli::lookup(a.sli).is_some(),
                "{}: {}",
                a.alert,
                a.sli
            );
        }
    }

    #[test]
    fn info_mixed_state_does_not_alert() {
        assert!(
            !DIVERGENCE_ALERTS
                .iter()
                .any(|a| a.matches(Kind::Mixed, Severity::Info))
        );
    }
}
