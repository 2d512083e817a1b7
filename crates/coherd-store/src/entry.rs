//! What the store holds: entries as appended and as loaded, checkpoints, and truncation counts.

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

/// A checkpoint the store holds, complete and intact as far as its row says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckpointInfo {
    /// Issued by the store; strictly increasing.
    pub id: u64,
    /// The last log entry the checkpoint includes: a restart from it
    /// replays the entries after this one.
    pub covers: u64,
    /// The engine time it was taken at.
    pub at: Time,
    /// Its size before compression.
    pub bytes: u64,
}

/// What one [`Store::truncate`](crate::Store::truncate) deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TruncateStats {
    /// Observation batches and deletions deleted from the log.
    pub entries_deleted: u64,
    /// Checkpoints deleted (older ones, and ones never completed).
    pub checkpoints_deleted: u64,
    /// Member states kept by an older coherd, now covered by a checkpoint.
    pub legacy_states_deleted: u64,
}

/// One divergence episode as it stands after its latest change (opened,
/// escalated or resolved), for the history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Episode {
    /// The divergence's id (its kind, service and subject).
    pub id: String,
    /// Its service.
    pub service: String,
    /// Its kind, as the API names it.
    pub kind: String,
    /// When it opened: with `id`, what identifies the episode.
    pub opened_at: Time,
    /// When it resolved; `None` while open.
    pub resolved_at: Option<Time>,
    /// The whole record as the API shows it (JSON).
    pub record: String,
}

/// Which episodes [`Store::episodes`](crate::Store::episodes) returns: those
/// open at some point in `[since, until)`, in order of `(opened_at, id)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EpisodeQuery {
    /// The window's start.
    pub since: Time,
    /// The window's end (excluded).
    pub until: Time,
    /// Only this service.
    pub service: Option<String>,
    /// Only this kind.
    pub kind: Option<String>,
    /// Only open (`Some(true)`) or resolved (`Some(false)`) episodes.
    pub open: Option<bool>,
    /// Only episodes after this `(opened_at, id)`: where the last page ended.
    pub after: Option<(Time, String)>,
    /// At most this many.
    pub limit: usize,
}

/// One event of a member's timeline, for the history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberEvent {
    /// The member's service.
    pub service: String,
    /// The member.
    pub member: String,
    /// When it happened.
    pub at: Time,
    /// What happened, with the facet for a change (`joined`,
    /// `changed:version:1.4.2`...): with the member and `at`, what identifies it.
    pub what: String,
    /// The event as the API shows it (JSON).
    pub record: String,
}

/// Which events of one member [`Store::member_events`](crate::Store::member_events)
/// returns: those in `[since, until)`, in order of `(at, what)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimelineQuery {
    /// The member's service.
    pub service: String,
    /// The member.
    pub member: String,
    /// The window's start.
    pub since: Time,
    /// The window's end (excluded).
    pub until: Time,
    /// Only events after this `(at, what)`: where the last page ended.
    pub after: Option<(Time, String)>,
    /// At most this many.
    pub limit: usize,
}

/// A service's SLIs over one minute, for the history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SliMinute {
    /// The service.
    pub service: String,
    /// The minute's start.
    pub minute: Time,
    /// The SLIs as the API shows them (JSON).
    pub record: String,
}

/// An intent as the history shows it: one revision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IntentRevision {
    /// Its entry in the log: strictly increasing with revisions.
    pub id: u64,
    /// When it took force.
    pub at: Time,
    /// How many intents the store holds that came after it (0: the one in force).
    pub newer: u64,
    /// Its source text as the operator sent it.
    pub source: String,
}

/// A controller's claim to act: it holds lease `name` as `holder` with
/// fencing `epoch`. Writes made under a fence are refused once another
/// acquisition raised the epoch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fence {
    /// The lease, such as `reconciler`.
    pub name: String,
    /// Who holds it (host, process and a random part).
    pub holder: String,
    /// The epoch its acquisition was given.
    pub epoch: u64,
}

/// One item of a controller's state: written when `value` is `Some`,
/// deleted when `None`. A controller keeps its state as many items so a
/// change writes only what changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateItem {
    /// The item's key, unique within the controller.
    pub key: String,
    /// Its bytes; `None` deletes it.
    pub value: Option<Vec<u8>>,
}

/// A lease as the store holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseInfo {
    /// Who holds (or last held) it.
    pub holder: String,
    /// The epoch of the latest acquisition.
    pub epoch: u64,
    /// When it lapses unless renewed.
    pub expires_at: Time,
}

/// One decision to append to the audit log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewAudit {
    /// When it was decided.
    pub at: Time,
    /// The fencing epoch it was decided under (0: outside any lease).
    pub epoch: u64,
    /// The action (empty for decisions about the whole loop, such as a pause).
    pub action: String,
    /// The service (empty for the whole fleet).
    pub service: String,
    /// The member, when the decision is about one.
    pub member: Option<String>,
    /// What was decided: `planned`, `dispatched`, `verified`...
    pub decision: String,
    /// The whole record as the API shows it, JSON.
    pub record: String,
}

/// A decision as the audit log holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRecord {
    /// Issued by the store; strictly increasing.
    pub id: u64,
    /// What was appended.
    pub entry: NewAudit,
}

/// Which audit records to read: newest first, below `before` (an id), at most `limit`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditQuery {
    /// Only this service's.
    pub service: Option<String>,
    /// Only this member's.
    pub member: Option<String>,
    /// Only this action's.
    pub action: Option<String>,
    /// Only records with an id below this (the page cursor); `None`: from the newest.
    pub before: Option<u64>,
    /// At most this many.
    pub limit: usize,
}
