//! What the store holds: entries as appended and as loaded, and prune counts.

use coherd_model::{Observation, Time};

/// One thing to append to the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NewEntry {
    /// Observations received together (one HTTP request), applied at one instant.
    Observations {
        /// The instant the server applied them at: its clock when it took them.
        received_at: Time,
        /// The observations, already validated, in the order received.
        observations: Vec<Observation>,
    },
    /// The intent as the operator sent it (YAML or JSON text), in force from `at`.
    Intent {
        /// When the intent took force.
        at: Time,
        /// The text exactly as sent, so it can be shown and parsed again.
        source: String,
    },
    /// An operator deleted a whole service (its members with it).
    DeleteService {
        /// When the service was deleted.
        at: Time,
        /// The service.
        service: String,
    },
    /// An operator deleted a member.
    DeleteMember {
        /// When the member was deleted.
        at: Time,
        /// The member's service.
        service: String,
        /// The member's id in its service.
        member: String,
    },
}

impl NewEntry {
    /// When the entry happened: the receive time of observations, the time
    /// an intent took force or a member was deleted.
    pub fn time(&self) -> Time {
        match self {
            NewEntry::Observations { received_at, .. } => *received_at,
            NewEntry::Intent { at, .. }
            | NewEntry::DeleteMember { at, .. }
            | NewEntry::DeleteService { at, .. } => *at,
        }
    }
}

/// An entry as [`Store::load`](crate::Store::load) yields it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Issued by the store when the entry was appended; strictly increasing.
    pub id: u64,
    /// What was appended (for kept member states, the part of the batch that was kept).
    pub body: NewEntry,
}

/// What one [`Store::prune`](crate::Store::prune) did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PruneStats {
    /// Observation batches deleted.
    pub batches_deleted: u64,
    /// Observations those batches held.
    pub observations_deleted: u64,
    /// Member states written to the kept latest-state table (a member whose
    /// state was replaced counts once per prune).
    pub member_states_kept: u64,
    /// Member deletions folded in (and then deleted): the deleted member's
    /// kept state goes with them.
    pub deletions_folded: u64,
    /// Intents deleted because a later intent replaced them.
    pub intents_deleted: u64,
}
