//! One alert per divergence kind, from `coherd_divergences_open`.

use coherd_engine::Kind;

use crate::rules::{Rule, RuleGroup, RuleOptions, annotations, matchers};

/// How one kind alerts.
pub(crate) struct KindAlert {
    pub kind: Kind,
    pub alert: &'static str,
    /// `page` or `ticket`.
    pub severity: &'static str,
    /// Divergence severities that count (`""` for all).
    pub severities: &'static str,
    pub for_: &'static str,
    /// What is wrong, after "N ... open in SERVICE:".
    pub what: &'static str,
    pub why: &'static str,
    pub runbook: &'static str,
}

/// Every kind, with what it means and what to do. `drain_violation` has two:
/// a critical one (requests served while draining) pages, a warning one is a ticket.
pub(crate) const KIND_ALERTS: [KindAlert; 12] = [
    KindAlert {
        kind: Kind::Drift,
        alert: "CoherdDrift",
        severity: "ticket",
        severities: "",
        for_: "10m",
        what: "members off their target",
        why: "Members run a version, config, schema or flag set other than the intent's target: lagging past the rollout window (warning) or foreign (critical).",
        runbook: "Run `coherd divergences --service {{ $labels.service }} --kind drift` for the members and facets; redeploy them, or fix the target in the intent if it is the intent that is wrong.",
    },
    KindAlert {
        kind: Kind::Mixed,
        alert: "CoherdMixedState",
        severity: "ticket",
        severities: "warning|critical",
        for_: "15m",
        what: "facets with several values past their rollout window",
        why: "Several values of a uniform facet serve at once and one of them lags or is foreign: a stalled rollout or a partial deploy. Mixed state inside a rollout window is info and does not alert.",
        runbook: "Run `coherd status --service {{ $labels.service }}` for the value distribution; finish or roll back the rollout.",
    },
    KindAlert {
        kind: Kind::Silent,
        alert: "CoherdMembersSilent",
        severity: "ticket",
        severities: "",
        for_: "5m",
        what: "members silent",
        why: "Known members stopped reporting for 3 report intervals without reaching a terminal phase: they died, hang, or lost their reporter.",
        runbook: "Run `coherd divergences --service {{ $labels.service }} --kind silent`; check the members and their reporters; remove members that are gone for good.",
    },
    KindAlert {
        kind: Kind::ReplicaDivergence,
        alert: "CoherdReplicaDivergence",
        severity: "page",
        severities: "",
        for_: "1m",
        what: "datasets whose replicas disagree",
        why: "Replicas reported different digests for the same dataset at the same position: their data differs.",
        runbook: "Run `coherd divergences --service {{ $labels.service }} --kind replica_divergence` for the dataset and the divergent members; stop writes to them and repair from the majority.",
    },
    KindAlert {
        kind: Kind::IllegalTransition,
        alert: "CoherdIllegalTransition",
        severity: "ticket",
        severities: "",
        for_: "1m",
        what: "members that moved along an illegal phase edge",
        why: "A member's phase moved along an edge the phase machine does not allow (for example stopped to ready without starting).",
        runbook: "Run `coherd divergences --service {{ $labels.service }} --kind illegal_transition`; check the members' lifecycle hooks and the phase machine in the intent.",
    },
    KindAlert {
        kind: Kind::PhaseDisagreement,
        alert: "CoherdPhaseDisagreement",
        severity: "ticket",
        severities: "",
        for_: "5m",
        what: "observers that see a member in the wrong phase",
        why: "An observer (a load balancer, a peer) believes a member is in another phase than the member reports, for longer than the agreement timeout.",
        runbook: "Run `coherd divergences --service {{ $labels.service }} --kind phase_disagreement` for the observer and member; check health checks and discovery propagation.",
    },
    KindAlert {
        kind: Kind::DrainViolation,
        alert: "CoherdDrainViolation",
        severity: "page",
        severities: "critical",
        for_: "1m",
        what: "members serving requests while not serving",
        why: "An observer routes to a member that reports a non-serving phase, and the member's request counter grows: traffic reaches a draining or stopped member.",
        runbook: "Run `coherd divergences --service {{ $labels.service }} --kind drain_violation`; take the member out of the observer's pool by hand, then find why deregistration did not happen.",
    },
    KindAlert {
        kind: Kind::DrainViolation,
        alert: "CoherdDrainViolation",
        severity: "ticket",
        severities: "warning",
        for_: "5m",
        what: "members an observer still routes to while not serving",
        why: "An observer believes a member serves while the member reports a non-serving phase; no requests were seen reaching it yet.",
        runbook: "Run `coherd divergences --service {{ $labels.service }} --kind drain_violation`; check the observer's deregistration.",
    },
    KindAlert {
        kind: Kind::Flapping,
        alert: "CoherdFlapping",
        severity: "ticket",
        severities: "",
        for_: "5m",
        what: "members flapping between phases",
        why: "Members changed phase more than max_flips_per_hour times in the last hour: crash loops or flapping health checks.",
        runbook: "Run `coherd divergences --service {{ $labels.service }} --kind flapping`; check the members' restarts and health checks.",
    },
    KindAlert {
        kind: Kind::SplitBrain,
        alert: "CoherdSplitBrain",
        severity: "page",
        severities: "",
        for_: "0s",
        what: "exclusive resources held by two members",
        why: "Two members hold unexpired leases on the same exclusive resource at once: both may act as leader.",
        runbook: "Run `coherd divergences --service {{ $labels.service }} --kind split_brain` for the resource and holders; fence the holder with the lower epoch (stop it) before anything else.",
    },
    KindAlert {
        kind: Kind::StaleEpoch,
        alert: "CoherdStaleEpoch",
        severity: "page",
        severities: "",
        for_: "1m",
        what: "members holding a lease with a stale epoch",
        why: "A member holds an unexpired lease with an epoch lower than the highest seen for the resource: a deposed leader that still acts.",
        runbook: "Run `coherd divergences --service {{ $labels.service }} --kind stale_epoch`; stop the stale holder and check that the resource fences on epochs.",
    },
    KindAlert {
        kind: Kind::Herd,
        alert: "CoherdHerd",
        severity: "ticket",
        severities: "",
        for_: "15m",
        what: "periodic jobs running in lockstep",
        why: "Members run a periodic job at the same moments (order parameter or peak concurrency above the limit): a thundering herd.",
        runbook: "Run `coherd herd` on the job's events or crontabs; spread the job with `coherd splay` or the dephase settings in the intent.",
    },
];

/// The `coherd-divergences` group.
pub(crate) fn group(opts: &RuleOptions) -> RuleGroup {
    let rules = KIND_ALERTS
        .iter()
        .map(|k| {
            let mut own = format!("kind=\"{}\"", k.kind.as_str());
            if !k.severities.is_empty() {
                own.push_str(&format!(", severity=~\"{}\"", k.severities));
            }
            Rule {
                alert: Some(k.alert.into()),
                expr: format!(
                    "sum by (service) (coherd_divergences_open{}) > 0",
                    matchers(opts, &own)
                ),
                for_: Some(k.for_.into()),
                labels: [
                    ("severity", k.severity),
                    ("divergence_kind", k.kind.as_str()),
                ]
                .into_iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect(),
                annotations: annotations(
                    opts,
                    k.alert,
                    format!(
                        "{{{{ $labels.service }}}}: {{{{ $value }}}} {} ({})",
                        k.what,
                        k.kind.as_str()
                    ),
                    k.why.into(),
                    k.runbook.into(),
                ),
                ..Rule::default()
            }
        })
        .collect();
    RuleGroup {
        name: "coherd-divergences".into(),
        interval: None,
        rules,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_alerts() {
        for kind in Kind::ALL {
            assert!(
                KIND_ALERTS.iter().any(|k| k.kind == kind),
                "no alert for {kind}"
            );
        }
    }

    #[test]
    fn info_mixed_state_does_not_alert() {
        let g = group(&RuleOptions::default());
        let mixed = g
            .rules
            .iter()
            .find(|r| r.alert.as_deref() == Some("CoherdMixedState"))
            .unwrap();
        assert_eq!(
            mixed.expr,
            "sum by (service) (coherd_divergences_open{kind=\"mixed\", severity=~\"warning|critical\"}) > 0"
        );
    }
}
