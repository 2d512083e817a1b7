//! Divergences: detected losses of coherence, one record per episode.

use coherd_model::{Kind, Severity, Time};
use hashbrown::HashMap;
use serde::{Deserialize, Serialize};

use crate::ids::ServiceId;
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
    /// The member's `deploy`, for member-level divergences.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deploy: Option<String>,
    /// The member's values of its service's breakdown labels.
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub labels: std::collections::BTreeMap<String, String>,
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
            // Context follows the member as it is now; not part of the record's identity.
            deploy: _,
            labels: _,
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

/// What a divergence is about (DESIGN 3.1, "Subjects and keys"), interned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub(crate) enum Subject {
    /// `silent`, `illegal_transition`, `flapping`: one member.
    Member(Sym),
    /// `drift`: one facet of one member.
    MemberFacet { member: Sym, facet: Sym },
    /// `mixed`: a facet.
    Facet(Sym),
    /// `phase_disagreement`, `drain_violation`: a member as one observer
    /// (possibly of another service) sees it.
    Pair {
        member: Sym,
        observer_service: ServiceId,
        observer: Sym,
    },
    /// `replica_divergence`: a dataset.
    Dataset(Sym),
    /// `split_brain`: an exclusive resource.
    Resource(Sym),
    /// `stale_epoch`: a member's lease on a resource.
    MemberLease { member: Sym, resource: Sym },
    /// `herd`: a periodic job, by its event kind.
    Job(Sym),
    /// `canary_regression`: one value of a facet.
    FacetValue { facet: Sym, value: Sym },
    /// `replica_lag`: a member's replica of a dataset.
    MemberDataset { member: Sym, dataset: Sym },
}

/// The identity of a divergence: its kind, its service and its subject.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub(crate) struct DivKey {
    pub kind: Kind,
    pub svc: ServiceId,
    pub subject: Subject,
}

impl DivKey {
    /// `silent`, `illegal_transition` or `flapping` of a member.
    pub(crate) fn member(kind: Kind, svc: ServiceId, member: Sym) -> DivKey {
        DivKey {
            kind,
            svc,
            subject: Subject::Member(member),
        }
    }

    /// `drift` of one facet of a member.
    pub(crate) fn drift(svc: ServiceId, member: Sym, facet: Sym) -> DivKey {
        DivKey {
            kind: Kind::Drift,
            svc,
            subject: Subject::MemberFacet { member, facet },
        }
    }

    /// `mixed` values of a facet.
    pub(crate) fn mixed(svc: ServiceId, facet: Sym) -> DivKey {
        DivKey {
            kind: Kind::Mixed,
            svc,
            subject: Subject::Facet(facet),
        }
    }

    /// `phase_disagreement` or `drain_violation` between an observer and a member of `svc`.
    pub(crate) fn pair(
        kind: Kind,
        svc: ServiceId,
        member: Sym,
        observer_service: ServiceId,
        observer: Sym,
    ) -> DivKey {
        DivKey {
            kind,
            svc,
            subject: Subject::Pair {
                member,
                observer_service,
                observer,
            },
        }
    }

    /// `replica_divergence` of a dataset.
    pub(crate) fn replica(svc: ServiceId, dataset: Sym) -> DivKey {
        DivKey {
            kind: Kind::ReplicaDivergence,
            svc,
            subject: Subject::Dataset(dataset),
        }
    }

    /// `split_brain` on a resource.
    pub(crate) fn split_brain(svc: ServiceId, resource: Sym) -> DivKey {
        DivKey {
            kind: Kind::SplitBrain,
            svc,
            subject: Subject::Resource(resource),
        }
    }

    /// `stale_epoch` of a member's lease on a resource.
    pub(crate) fn stale_epoch(svc: ServiceId, member: Sym, resource: Sym) -> DivKey {
        DivKey {
            kind: Kind::StaleEpoch,
            svc,
            subject: Subject::MemberLease { member, resource },
        }
    }

    /// `herd` of a periodic job.
    pub(crate) fn herd(svc: ServiceId, job: Sym) -> DivKey {
        DivKey {
            kind: Kind::Herd,
            svc,
            subject: Subject::Job(job),
        }
    }

    /// `canary_regression` of one value of a facet.
    pub(crate) fn canary(svc: ServiceId, facet: Sym, value: Sym) -> DivKey {
        DivKey {
            kind: Kind::CanaryRegression,
            svc,
            subject: Subject::FacetValue { facet, value },
        }
    }

    /// `replica_lag` of a member's replica of a dataset.
    pub(crate) fn replica_lag(svc: ServiceId, member: Sym, dataset: Sym) -> DivKey {
        DivKey {
            kind: Kind::ReplicaLag,
            svc,
            subject: Subject::MemberDataset { member, dataset },
        }
    }

    /// The facet a divergence is about, if it is about one.
    pub(crate) fn facet_of(&self) -> Option<Sym> {
        match self.subject {
            Subject::Facet(facet)
            | Subject::MemberFacet { facet, .. }
            | Subject::FacetValue { facet, .. } => Some(facet),
            _ => None,
        }
    }

    /// The member a member-level divergence is about.
    pub(crate) fn member_of(&self) -> Option<Sym> {
        match self.subject {
            Subject::Member(member)
            | Subject::MemberFacet { member, .. }
            | Subject::Pair { member, .. }
            | Subject::MemberLease { member, .. }
            | Subject::MemberDataset { member, .. } => Some(member),
            Subject::Facet(_)
            | Subject::Dataset(_)
            | Subject::Resource(_)
            | Subject::Job(_)
            | Subject::FacetValue { .. } => None,
        }
    }
}

/// Every divergence record, one per episode in the order they opened, and
/// the latest episode of each key.
#[derive(Clone, Default)]
pub(crate) struct DivergenceTable {
    pub records: Vec<Divergence>,
    pub latest: HashMap<DivKey, u32>,
}

impl DivergenceTable {
    /// The latest episode of `key`, with its index.
    pub(crate) fn latest(&self, key: &DivKey) -> Option<(usize, &Divergence)> {
        let i = *self.latest.get(key)? as usize;
        Some((i, &self.records[i]))
    }

    /// Whether `key` is open, and at which severity.
    pub(crate) fn open_severity(&self, key: &DivKey) -> Option<Severity> {
        let (_, r) = self.latest(key)?;
        r.is_open().then_some(r.severity)
    }

    /// The latest episode of every key that is open now, with its key.
    pub(crate) fn open(&self) -> impl Iterator<Item = (&DivKey, usize, &Divergence)> {
        self.latest
            .iter()
            .map(|(k, &i)| (k, i as usize, &self.records[i as usize]))
            .filter(|(_, _, r)| r.is_open())
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
