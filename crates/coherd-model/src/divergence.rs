//! The words for what coherd detects: the [`Kind`]s of divergence (DESIGN 3)
//! and their [`Severity`]. The engine raises them; alerting, exports and
//! clients read them.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The kinds of divergence (DESIGN section 3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// A live member's targeted facet is lagging or foreign.
    Drift,
    /// More than one value of a uniform facet among live members.
    Mixed,
    /// No report from a known member for 3 x `report_interval`.
    Silent,
    /// Two members report different digests for a dataset at one position.
    ReplicaDivergence,
    /// A phase moved along an edge the machine does not allow.
    IllegalTransition,
    /// An observer's view of a member's phase differs from the member's own.
    PhaseDisagreement,
    /// An observer believes a member serves while it reports a non-serving phase.
    DrainViolation,
    /// Too many phase changes in the last hour.
    Flapping,
    /// Two members hold unexpired leases on one exclusive resource.
    SplitBrain,
    /// A member holds a lease older than the highest epoch seen.
    StaleEpoch,
    /// Periodic events are synchronised across the fleet.
    Herd,
    /// A member's reports carry a time further ahead than `max_clock_skew`.
    ClockSkew,
    /// A value of a facet fails significantly more requests than the baseline value.
    CanaryRegression,
    /// A replica trails the highest live position of its dataset past `max_lag`.
    ReplicaLag,
}

impl Kind {
    /// Every kind, in a stable order.
    pub const ALL: [Kind; 14] = [
        Kind::Drift,
        Kind::Mixed,
        Kind::Silent,
        Kind::ReplicaDivergence,
        Kind::IllegalTransition,
        Kind::PhaseDisagreement,
        Kind::DrainViolation,
        Kind::Flapping,
        Kind::SplitBrain,
        Kind::StaleEpoch,
        Kind::Herd,
        Kind::ClockSkew,
        Kind::CanaryRegression,
        Kind::ReplicaLag,
    ];

    /// The name used in ids, the API and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Drift => "drift",
            Kind::Mixed => "mixed",
            Kind::Silent => "silent",
            Kind::ReplicaDivergence => "replica_divergence",
            Kind::IllegalTransition => "illegal_transition",
            Kind::PhaseDisagreement => "phase_disagreement",
            Kind::DrainViolation => "drain_violation",
            Kind::Flapping => "flapping",
            Kind::SplitBrain => "split_brain",
            Kind::StaleEpoch => "stale_epoch",
            Kind::Herd => "herd",
            Kind::ClockSkew => "clock_skew",
            Kind::CanaryRegression => "canary_regression",
            Kind::ReplicaLag => "replica_lag",
        }
    }

    /// The stable id of a divergence of this kind: `kind:service:subject`, where
    /// `subject` is the member (drift: `member:facet`; stale_epoch: `member:resource`;
    /// phase pairs: `member:service/observer`), facet, dataset or resource.
    pub fn id(self, service: &str, subject: &str) -> String {
        format!("{}:{service}:{subject}", self.as_str())
    }

    /// Parses a kind name.
    pub fn parse(s: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// Whether a divergence of this kind is about one member (and so makes it incoherent).
    pub fn is_member_level(self) -> bool {
        matches!(
            self,
            Kind::Drift
                | Kind::Silent
                | Kind::IllegalTransition
                | Kind::PhaseDisagreement
                | Kind::DrainViolation
                | Kind::Flapping
                | Kind::StaleEpoch
                | Kind::ClockSkew
                | Kind::ReplicaLag
        )
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How bad a divergence is. It can rise while open, never fall.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// Expected during change; worth seeing.
    Info,
    /// Needs attention.
    Warning,
    /// Breaks correctness or safety now.
    Critical,
}

impl Severity {
    /// Every severity, lowest first.
    pub const ALL: [Severity; 3] = [Severity::Info, Severity::Warning, Severity::Critical];

    /// Parses a severity name.
    pub fn parse(s: &str) -> Option<Severity> {
        Severity::ALL.into_iter().find(|v| v.as_str() == s)
    }

    /// The name used in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
