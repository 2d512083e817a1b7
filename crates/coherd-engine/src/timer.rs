//! The deadline queue. Timers are data: a heap of (deadline, what) entries.
//!
//! Entries are never removed when their reason goes away; the handler checks
//! the current state when an entry comes due and ignores stale ones. So a
//! tick costs what expires, never what the fleet holds.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use coherd_model::Time;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::ids::{MemberSlot, ServiceId};
use crate::intern::Sym;

/// What a deadline is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub(crate) enum Timer {
    /// The head of a service's silence list may have gone silent.
    Silence { svc: ServiceId },
    /// A targeted facet's rollout window ends.
    Window { svc: ServiceId, col: u16 },
    /// A uniform facet without target has been mixed for its window.
    UniformMixed { svc: ServiceId, col: u16 },
    /// An illegal transition's hold ends.
    Hold { svc: ServiceId, slot: MemberSlot },
    /// A flip leaves a flapping member's one-hour window.
    Flap { svc: ServiceId, slot: MemberSlot },
    /// A pending phase disagreement reaches its agreement timeout.
    Pair {
        obs_svc: ServiceId,
        obs_slot: MemberSlot,
        tsvc: Sym,
        tmem: Sym,
    },
    /// A lease on a resource expires.
    Lease { svc: ServiceId, resource: Sym },
    /// A member that left is forgotten.
    Forget { svc: ServiceId, slot: MemberSlot },
    /// A run leaves a periodic job's window, or the job has been watched for a period.
    Herd { svc: ServiceId, job: Sym },
}

/// A min-heap of deadlines.
#[derive(Clone, Default)]
pub(crate) struct Timers {
    heap: BinaryHeap<Reverse<(Time, Timer)>>,
}

/// In deadline order, so equal queues encode to equal bytes.
impl Serialize for Timers {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut due: Vec<&(Time, Timer)> = self.heap.iter().map(|Reverse(e)| e).collect();
        due.sort_unstable();
        s.collect_seq(due)
    }
}

impl<'de> Deserialize<'de> for Timers {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Timers, D::Error> {
        let due = Vec::<(Time, Timer)>::deserialize(d)?;
        Ok(Timers {
            heap: due.into_iter().map(Reverse).collect(),
        })
    }
}

impl Timers {
    pub(crate) fn schedule(&mut self, at: Time, timer: Timer) {
        self.heap.push(Reverse((at, timer)));
    }

    /// The earliest deadline.
    pub(crate) fn next(&self) -> Option<Time> {
        self.heap.peek().map(|Reverse((t, _))| *t)
    }

    /// Pops the earliest entry if it is due: before `now`, or at `now` when `inclusive`.
    pub(crate) fn pop_due(&mut self, now: Time, inclusive: bool) -> Option<(Time, Timer)> {
        let &Reverse((t, _)) = self.heap.peek()?;
        if t < now || (inclusive && t == now) {
            self.heap.pop().map(|Reverse(e)| e)
        } else {
            None
        }
    }
}
