//! Ingest capacity shared fairly between reporters: at most `total` ingest
//! requests at once. A reporter (a token, or a peer address when tokens are
//! off) may use more than its share of a quarter only while a quarter of the
//! slots stays free for everyone else, so one noisy or slow client cannot
//! starve the rest, and a lone busy one still gets the capacity nobody uses.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

/// Who a request comes from, for fairness.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum Reporter {
    /// The position of its token in the configuration.
    Token(usize),
    /// Its address, when tokens are off.
    Peer(IpAddr),
}

/// The peer address of a connection, put on each of its requests.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PeerAddr(pub IpAddr);

#[derive(Default)]
struct Held {
    total: usize,
    by: HashMap<Reporter, usize>,
}

/// The ingest slots.
pub(crate) struct IngestSlots {
    total: usize,
    per_reporter: usize,
    held: Mutex<Held>,
}

/// A slot, given back when dropped.
pub(crate) struct Slot {
    slots: Arc<IngestSlots>,
    reporter: Reporter,
}

impl IngestSlots {
    /// `total` slots; a quarter (at least one) is every reporter's share, and
    /// as many are kept for others once a reporter goes past its share.
    pub(crate) fn new(total: usize) -> Arc<IngestSlots> {
        Arc::new(IngestSlots {
            total,
            per_reporter: (total / 4).max(1),
            held: Mutex::new(Held::default()),
        })
    }

    /// A slot for `reporter`, or `None` when all are taken or it holds its share.
    pub(crate) fn try_acquire(self: &Arc<Self>, reporter: Reporter) -> Option<Slot> {
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        if held.total >= self.total {
            return None;
        }
        let free = self.total - held.total;
        let mine = held.by.entry(reporter.clone()).or_insert(0);
        if *mine >= self.per_reporter && free <= self.per_reporter {
            return None;
        }
        *mine += 1;
        held.total += 1;
        Some(Slot {
            slots: self.clone(),
            reporter,
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut held = self.slots.held.lock().unwrap_or_else(|e| e.into_inner());
        held.total -= 1;
        if let Some(n) = held.by.get_mut(&self.reporter) {
            *n -= 1;
            if *n == 0 {
                held.by.remove(&self.reporter);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_reporter_cannot_take_every_slot() {
        let slots = IngestSlots::new(8);
        let noisy = Reporter::Peer([127, 0, 0, 2].into());
        let held: Vec<Slot> = (0..8)
            .filter_map(|_| slots.try_acquire(noisy.clone()))
            .collect();
        assert_eq!(held.len(), 6, "all but the quarter kept for others");
        let quiet = Reporter::Token(3);
        let mine = slots.try_acquire(quiet.clone());
        assert!(mine.is_some(), "another reporter still gets one");
        let second = slots.try_acquire(quiet.clone());
        assert!(second.is_some(), "and its whole share");
        assert!(
            slots.try_acquire(Reporter::Token(4)).is_none(),
            "now every slot is taken"
        );
        drop(second);
        drop(held);
        assert_eq!(slots.held.lock().unwrap().by.len(), 1);
        drop(mine);
        assert_eq!(slots.held.lock().unwrap().total, 0);
    }

    #[test]
    fn the_total_is_a_bound_too() {
        let slots = IngestSlots::new(4);
        let held: Vec<Slot> = (0..10u8)
            .filter_map(|i| slots.try_acquire(Reporter::Peer([127, 0, 0, i].into())))
            .collect();
        assert_eq!(held.len(), 4);
    }
}
