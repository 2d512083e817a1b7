//! Divergences: detected losses of coherence, one record per episode.

use std::fmt;

use coherd_model::Time;
use serde::Serialize;

use crate::intern::Sym;

/// The kinds of divergence (DESIGN section 3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
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
}

impl Kind {
    /// Every kind, in a stable order.
    pub const ALL: [Kind; 11] = [
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
        )
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How bad a divergence is. It can rise while open, never fall.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
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

/// One episode of a divergence.
///
/// Two records are equal when everything they show is equal; the interned key
/// is left out, so records from different engines compare as they read.
#[derive(Debug, Clone, Serialize)]
pub struct Divergence {
    /// Stable id: kind, service and subject key; the same problem coming back has the same id.
    pub id: String,
    /// The service it belongs to.
    pub service: String,
    /// What kind of loss of coherence.
    pub kind: Kind,
    /// The highest severity reached.
    pub severity: Severity,
    /// Member ids (or `service/member` for observers in other services).
    pub subjects: Vec<String>,
    /// What was seen, kind-specific.
    pub evidence: serde_json::Value,
    /// When the condition started to count (deadline-stamped where it needed time).
    pub opened_at: Time,
    /// The last time the condition was seen to hold.
    pub last_seen_at: Time,
    /// When it stopped holding; `None` while open.
    pub resolved_at: Option<Time>,
    /// How many earlier episodes this id had.
    pub reopens: u32,
    #[serde(skip)]
    pub(crate) key: DivKey,
}

impl PartialEq for Divergence {
    fn eq(&self, other: &Divergence) -> bool {
        let Divergence {
            id,
            service,
            kind,
            severity,
            subjects,
            evidence,
            opened_at,
            last_seen_at,
            resolved_at,
            reopens,
            key: _,
        } = self;
        *id == other.id
            && *service == other.service
            && *kind == other.kind
            && *severity == other.severity
            && *subjects == other.subjects
            && *evidence == other.evidence
            && *opened_at == other.opened_at
            && *last_seen_at == other.last_seen_at
            && *resolved_at == other.resolved_at
            && *reopens == other.reopens
    }
}

impl Divergence {
    /// Whether the divergence is still open.
    pub fn is_open(&self) -> bool {
        self.resolved_at.is_none()
    }
}

/// The identity of a divergence, interned: kind, service index and up to three symbols.
///
/// Member-level kinds always carry the member's symbol in `a`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub(crate) struct DivKey {
    pub kind: u8,
    pub svc: u32,
    pub a: Sym,
    pub b: Sym,
    pub c: Sym,
}

impl DivKey {
    pub fn new(kind: Kind, svc: u32, a: Sym, b: Sym, c: Sym) -> DivKey {
        DivKey {
            kind: kind as u8,
            svc,
            a,
            b,
            c,
        }
    }

    pub fn kind(&self) -> Kind {
        Kind::ALL[self.kind as usize]
    }
}

/// What happened to a divergence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Change {
    /// A new episode began.
    Opened,
    /// Its severity rose.
    Escalated,
    /// It stopped holding.
    Resolved,
}
