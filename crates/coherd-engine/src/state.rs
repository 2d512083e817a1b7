//! The in-memory fleet model: services, members and per-facet columns.

use std::collections::{BTreeMap, VecDeque};

use coherd_model::Time;
use hashbrown::HashMap;
use serde::{Deserialize, Serialize};

use crate::ids::{IdVec, LabelSetId, MemberSlot};
use crate::intern::{NONE, Sym};
use crate::sli::Windows;

/// Member flags.
pub(crate) mod flag {
    pub(crate) const LIVE: u8 = 1;
    pub(crate) const TERMINAL: u8 = 2;
    pub(crate) const HAS_SEQ: u8 = 4;
    pub(crate) const COHERENT: u8 = 8;
    pub(crate) const IN_LIST: u8 = 16;
    pub(crate) const REMOVED: u8 = 32;
    pub(crate) const HAS_REQUESTS: u8 = 64;
    /// `clock_skew` is open.
    pub(crate) const SKEWED: u8 = 128;
}

/// One member. Kept small: most of a fleet is quiet members at target.
#[derive(Clone, Serialize, Deserialize)]
pub(crate) struct Member {
    pub name: Sym,
    pub phase: Sym,
    pub labels: LabelSetId,
    pub deploy: Sym,
    pub prev: MemberSlot,
    pub next: MemberSlot,
    pub seq: u64,
    pub last_report: Time,
    pub requests: u64,
    pub errors: u64,
    pub schema_errors: u64,
    pub duplicates: u64,
    pub extra: Option<Box<MemberExtra>>,
    pub open_divs: u16,
    pub flags: u8,
}

impl Member {
    pub(crate) fn new(name: Sym) -> Member {
        Member {
            name,
            phase: NONE,
            labels: LabelSetId::NONE,
            deploy: NONE,
            prev: MemberSlot::NONE,
            next: MemberSlot::NONE,
            seq: 0,
            last_report: Time::EPOCH,
            requests: 0,
            errors: 0,
            schema_errors: 0,
            duplicates: 0,
            extra: None,
            open_divs: 0,
            flags: 0,
        }
    }

    pub(crate) fn has(&self, f: u8) -> bool {
        self.flags & f != 0
    }

    pub(crate) fn set(&mut self, f: u8, on: bool) {
        if on {
            self.flags |= f
        } else {
            self.flags &= !f
        }
    }

    /// Live and not in a terminal phase: counts for drift, mixed, coherence, exposure.
    pub(crate) fn is_counting(&self) -> bool {
        self.flags & (flag::LIVE | flag::TERMINAL) == flag::LIVE
    }

    pub(crate) fn extra(&mut self) -> &mut MemberExtra {
        self.extra.get_or_insert_with(Default::default)
    }
}

/// State few members have: views, leases, flips, holds.
#[derive(Clone, Default, Serialize, Deserialize)]
pub(crate) struct MemberExtra {
    /// Views as last reported, sorted by (service, member).
    pub views: Vec<(Sym, Sym, Sym)>,
    /// Leases as last reported.
    pub leases: Vec<HeldLease>,
    /// The most recent phase changes (at most max_flips_per_hour + 1).
    pub flips: VecDeque<Time>,
    /// When the open illegal transition resolves.
    pub hold_until: Option<Time>,
    pub illegal_count: u32,
    /// When the phase last changed and observers have not all caught up.
    pub phase_changed_at: Option<Time>,
    /// Observers whose view of this member disagrees now.
    pub disagreeing_viewers: u32,
    pub custom_counters: Vec<(Sym, u64)>,
}

#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
pub(crate) struct HeldLease {
    pub resource: Sym,
    pub epoch: u64,
    pub expires: Time,
}

/// A facet's rule, compiled from the intent.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct FacetRule {
    pub target: Sym,
    pub prev: Sym,
    pub compatible: Vec<Sym>,
    pub uniform: bool,
    pub window: i64,
    /// When the latest change started.
    pub tc: Time,
    pub revision: u32,
}

/// How a value stands against a targeted facet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Class {
    AtTarget,
    Converging,
    Lagging,
    Foreign,
}

impl Class {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Class::AtTarget => "at_target",
            Class::Converging => "converging",
            Class::Lagging => "lagging",
            Class::Foreign => "foreign",
        }
    }
}

impl FacetRule {
    pub(crate) fn targeted(&self) -> bool {
        self.target != NONE
    }

    pub(crate) fn window_end(&self) -> Time {
        Time::from_nanos(self.tc.as_nanos().saturating_add(self.window))
    }

    /// Whether `v` is the previous target or compatible.
    pub(crate) fn is_old(&self, v: Sym) -> bool {
        (v == self.prev && v != NONE) || self.compatible.contains(&v)
    }

    pub(crate) fn classify(&self, v: Sym, now: Time) -> Class {
        if v == self.target {
            Class::AtTarget
        } else if self.is_old(v) {
            if now < self.window_end() {
                Class::Converging
            } else {
                Class::Lagging
            }
        } else {
            Class::Foreign
        }
    }
}

/// One facet of one service: every member's value, and counts among counting members.
#[derive(Clone, Serialize, Deserialize)]
pub(crate) struct Column {
    pub facet: Sym,
    pub values: IdVec<MemberSlot, Sym>,
    #[serde(with = "crate::checkpoint::sorted")]
    pub counts: HashMap<Sym, u32>,
    pub rule: Option<FacetRule>,
    /// For a uniform facet without target: when it became mixed.
    pub mixed_since: Option<Time>,
    /// Convergence of the latest change: (95 %, 100 %) reached at.
    pub converged: (Option<Time>, Option<Time>),
}

impl Column {
    pub(crate) fn new(facet: Sym, members: usize) -> Column {
        Column {
            facet,
            values: IdVec::filled(NONE, members),
            counts: HashMap::new(),
            rule: None,
            mixed_since: None,
            converged: (None, None),
        }
    }

    pub(crate) fn add(&mut self, v: Sym) {
        *self.counts.entry(v).or_insert(0) += 1;
    }

    pub(crate) fn remove(&mut self, v: Sym) {
        if let Some(c) = self.counts.get_mut(&v) {
            *c -= 1;
            if *c == 0 {
                self.counts.remove(&v);
            }
        }
    }

    pub(crate) fn count(&self, v: Sym) -> u32 {
        self.counts.get(&v).copied().unwrap_or(0)
    }
}

/// A service's compiled intent.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct ServiceCfg {
    pub report_interval: i64,
    pub expect_members: Option<u32>,
    pub serving: Vec<Sym>,
    pub terminal: Vec<Sym>,
    pub phases: Vec<Sym>,
    pub transitions: Vec<(Sym, Vec<Sym>)>,
    pub agreement_timeout: i64,
    pub max_flips: u32,
    pub hold: i64,
    pub exclusive: Vec<Sym>,
}

impl ServiceCfg {
    pub(crate) fn silence_after(&self) -> i64 {
        self.report_interval.saturating_mul(3)
    }

    pub(crate) fn is_serving(&self, p: Sym) -> bool {
        self.serving.contains(&p)
    }

    pub(crate) fn is_terminal(&self, p: Sym) -> bool {
        self.terminal.contains(&p)
    }

    pub(crate) fn is_known(&self, p: Sym) -> bool {
        self.phases.contains(&p)
    }

    pub(crate) fn allows(&self, from: Sym, to: Sym) -> bool {
        self.transitions
            .iter()
            .any(|(f, tos)| *f == from && tos.contains(&to))
    }
}

/// Checksums of one dataset in one service.
#[derive(Clone, Default, Serialize, Deserialize)]
pub(crate) struct Dataset {
    /// position -> (member, digest) reports at that position.
    pub positions: BTreeMap<u64, Vec<(Sym, Sym)>>,
    /// Members that have reported this dataset.
    pub reporters: Vec<Sym>,
    /// Highest divergent position while the divergence is open.
    pub divergent_max: Option<u64>,
    /// Members off the majority during the open episode.
    pub culprits: Vec<Sym>,
    pub divergent_positions: Vec<u64>,
}

/// A member listing a lease in its latest report: (member, epoch, expires).
pub(crate) type Holder = (Sym, u64, Time);

/// Holders of one exclusive resource.
#[derive(Clone, Default, Serialize, Deserialize)]
pub(crate) struct Resource {
    pub max_epoch: u64,
    /// Members listing a lease in their latest report.
    pub holders: Vec<Holder>,
    /// The highest epoch and holders the open split brain's record shows:
    /// the record is rewritten when any of them changes (a renewal included).
    pub last_split: Option<(u64, Vec<Holder>)>,
}

/// A service: its members, columns, rules and windows.
#[derive(Clone, Serialize, Deserialize)]
pub(crate) struct Service {
    pub name: Sym,
    pub name_str: String,
    pub cfg: ServiceCfg,
    pub members: IdVec<MemberSlot, Member>,
    pub free: Vec<MemberSlot>,
    #[serde(with = "crate::checkpoint::sorted")]
    pub by_name: HashMap<Sym, MemberSlot>,
    pub columns: Vec<Column>,
    /// Silence list: members ordered by last report (head = earliest).
    pub head: MemberSlot,
    pub tail: MemberSlot,
    pub known: u32,
    pub live: u32,
    pub terminal: u32,
    /// Live members not in a terminal phase.
    pub counting: u32,
    pub coherent: u32,
    #[serde(with = "crate::checkpoint::sorted")]
    pub datasets: HashMap<Sym, Dataset>,
    #[serde(with = "crate::checkpoint::sorted")]
    pub resources: HashMap<Sym, Resource>,
    /// Runs of periodic jobs by event kind.
    #[serde(with = "crate::checkpoint::sorted")]
    pub jobs: HashMap<Sym, crate::jobs::Job>,
    pub windows: Windows,
    /// Deleted by an operator: not listed until a member reports again or an
    /// intent names it.
    pub forgotten: bool,
}

impl Service {
    pub(crate) fn column_of(&self, facet: Sym) -> Option<usize> {
        self.columns.iter().position(|c| c.facet == facet)
    }

    pub(crate) fn slot_of(&self, member: Sym) -> Option<MemberSlot> {
        self.by_name.get(&member).copied()
    }

    /// Unlinks a member from the silence list.
    pub(crate) fn unlink(&mut self, slot: MemberSlot) {
        let m = &mut self.members[slot];
        if !m.has(flag::IN_LIST) {
            return;
        }
        let (prev, next) = (m.prev, m.next);
        m.set(flag::IN_LIST, false);
        m.prev = MemberSlot::NONE;
        m.next = MemberSlot::NONE;
        if prev.is_none() {
            self.head = next
        } else {
            self.members[prev].next = next
        }
        if next.is_none() {
            self.tail = prev
        } else {
            self.members[next].prev = prev
        }
    }

    /// Appends a member at the tail of the silence list.
    pub(crate) fn push_back(&mut self, slot: MemberSlot) {
        let tail = self.tail;
        let m = &mut self.members[slot];
        m.set(flag::IN_LIST, true);
        m.prev = tail;
        m.next = MemberSlot::NONE;
        if tail.is_none() {
            self.head = slot
        } else {
            self.members[tail].next = slot
        }
        self.tail = slot;
    }

    pub(crate) fn live_counting(&self) -> u32 {
        self.counting
    }

    /// Non-terminal known members: the denominator of coherence.
    pub(crate) fn coherence_denominator(&self) -> u32 {
        self.known - self.terminal
    }
}
