//! Divergences: detected losses of coherence, one record per episode.

use coherd_model::{Kind, Severity, Time};
use serde::Serialize;

use crate::intern::Sym;

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
    pub(crate) fn new(kind: Kind, svc: u32, a: Sym, b: Sym, c: Sym) -> DivKey {
        DivKey {
            kind: kind as u8,
            svc,
            a,
            b,
            c,
        }
    }

    pub(crate) fn kind(&self) -> Kind {
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
