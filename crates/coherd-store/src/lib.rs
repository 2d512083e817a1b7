//! coherd's durable storage: an append-only log of entries behind the [`Store`] trait.
//!
//! Everything coherd must not forget goes through one log: batches of
//! observations, each intent as the operator sent it, and member deletions.
//! The store issues each entry an id, strictly increasing across the whole
//! store; replaying the log in id order rebuilds the engine.
//!
//! The trait is made for a **group-commit writer**: one thread owns the store,
//! drains its request queue, calls [`Store::append`] once for everything that
//! is pending (one transaction, one flush to disk), applies the entries to the
//! engine in the order of the returned ids, and only then acknowledges the
//! requests. On `Ok` the entries survive `kill -9` and power loss; on `Err`
//! none of them is stored. At start the same thread calls [`Store::load`] and
//! feeds every entry to the engine.
//!
//! The log stays short. The engine is checkpointed now and then
//! ([`Store::save_checkpoint`]): its whole state as opaque bytes, with the id
//! of the last entry it includes. A restart loads the newest intact
//! checkpoint and replays only the entries after it
//! ([`Store::load`] with `after`). Once a newer checkpoint is saved,
//! [`Store::truncate`] deletes the entries and checkpoints the one before it
//! covers: the store keeps the two newest checkpoints and the log since the
//! older one, so a damaged newest checkpoint falls back to the one before
//! plus the log. Intents are never truncated.
//!
//! Beside the log, the store keeps history: what people look back at, not
//! every report. Divergence episodes are recorded as they change
//! ([`Store::record_episodes`]) and read by time window
//! ([`Store::episodes`]); member events (joins, facet changes, silences,
//! departures) are recorded as they happen ([`Store::record_member_events`])
//! and read as a member's timeline ([`Store::member_events`]); each
//! service's SLIs are kept per minute ([`Store::record_sli`],
//! [`Store::sli_minutes`]). All are pruned after their retention
//! ([`Store::prune_history`]).
//!
//! Controllers that act on the fleet (the reconciler) hold a **fencing
//! lease** in the store ([`Store::acquire_lease`]): each acquisition raises
//! the lease's epoch, and a controller records its decisions and state
//! ([`Store::record_fenced`]) only under the epoch it holds, checked in the
//! same transaction, so a controller that lost its lease cannot record an
//! outcome over its successor's. The decisions form an append-only audit log
//! ([`Store::audit`]), pruned after its retention ([`Store::prune_audit`]).
//!
//! The trait is synchronous and says nothing about SQL: ids are plain `u64`
//! sequence numbers, checkpoints are bytes, and errors are [`StoreError`]s
//! that carry their cause as an opaque source. [`SqliteStore`] (one file, the
//! default) implements it now; a PostgreSQL implementation, where several
//! coherd processes share one sequence, fits behind the same trait later.
//! Each thread that writes opens its own store on the same database: the
//! writer appends while another thread saves a checkpoint.
//!
//! ```
//! use coherd_model::{Limits, Observation, Time};
//! use coherd_store::{Entry, NewEntry, SqliteStore, Store};
//!
//! let mut store = SqliteStore::open_in_memory()?;
//! let t0: Time = "2026-11-22T08:00:00Z".parse().unwrap();
//! let obs = Observation::from_json(
//!     r#"{"service":"checkout","member":"c-1","seq":1,"facets":{"version":"1.4.2"}}"#,
//!     &Limits::default(),
//! ).unwrap();
//!
//! // One call, one transaction: both entries are stored, or neither.
//! let ids = store.append(&[
//!     NewEntry::Intent { at: t0, source: "services: {}\n".into() },
//!     NewEntry::Observations { received_at: t0, observations: vec![obs] },
//! ])?;
//! assert!(ids[0] < ids[1]);
//!
//! // Replay in id order, as the server does at start.
//! let mut replayed = Vec::new();
//! store.load(0, &mut |entry: Entry| {
//!     replayed.push(entry.id);
//!     Ok(())
//! })?;
//! assert_eq!(replayed, ids);
//! assert_eq!(store.latest_intent()?, Some((t0, "services: {}\n".to_string())));
//! # Ok::<(), coherd_store::StoreError>(())
//! ```

// Unit tests compile with the dev-dependencies that only benches and integration tests use.
#![cfg_attr(test, allow(unused_crate_dependencies))]

mod entry;
mod error;
mod sqlite;

pub use entry::{
    AuditQuery, AuditRecord, CheckpointInfo, Entry, Episode, EpisodeQuery, Fence, IntentRevision,
    LeaseInfo, MemberEvent, NewAudit, NewEntry, SliMinute, StateItem, TimelineQuery, TruncateStats,
};
pub use error::StoreError;
pub use sqlite::SqliteStore;

use coherd_model::Time;

/// Durable, append-only storage of coherd's entries, and checkpoints of
/// the engine.
///
/// A driver calls [`checkpoints`](Store::checkpoints) and
/// [`load`](Store::load) once at start, then [`append`](Store::append) for
/// every group commit; another thread, with its own store on the same
/// database, calls [`save_checkpoint`](Store::save_checkpoint) and
/// [`truncate`](Store::truncate) now and then. One thread owns a store; it
/// is `Send` so that thread can be spawned with it, but not shared.
pub trait Store: Send {
    /// Appends `entries` atomically and durably, and returns one id per
    /// entry, in order.
    ///
    /// All or nothing: on `Ok` every entry survives `kill -9` and power
    /// loss; on `Err` none of them is stored. Ids are strictly increasing
    /// across calls and never reused, even after truncation. An empty slice
    /// stores nothing and returns no ids.
    fn append(&mut self, entries: &[NewEntry]) -> Result<Vec<u64>, StoreError>;

    /// Calls `visit` for every entry the store holds with an id above
    /// `after`, in id order, and stops at the first error `visit` returns
    /// (which `load` then returns). `after` is 0 without a checkpoint, or the
    /// [`covers`](CheckpointInfo::covers) of the checkpoint the engine was
    /// loaded from.
    ///
    /// A database an older coherd pruned also holds member states it kept
    /// from pruned batches; they come as [`NewEntry::Observations`] under the
    /// pruned batch's id and receive time, in that batch's place in the id order.
    fn load(
        &mut self,
        after: u64,
        visit: &mut dyn FnMut(Entry) -> Result<(), StoreError>,
    ) -> Result<(), StoreError>;

    /// The latest intent: when it took force and its source text as the
    /// operator sent it.
    fn latest_intent(&mut self) -> Result<Option<(Time, String)>, StoreError>;

    /// Stores a checkpoint that includes every entry up to `covers`, taken
    /// at engine time `at`, and returns its id.
    ///
    /// Atomic: a checkpoint interrupted by a crash is never listed, and is
    /// deleted by the next [`truncate`](Store::truncate). The bytes are
    /// written in bounded pieces, so appends wait for at most one piece.
    fn save_checkpoint(&mut self, covers: u64, at: Time, bytes: &[u8]) -> Result<u64, StoreError>;

    /// The complete checkpoints, newest first.
    fn checkpoints(&mut self) -> Result<Vec<CheckpointInfo>, StoreError>;

    /// The bytes of checkpoint `id`, checked against the checksum they were
    /// saved with: [`StoreError::Corrupt`] when they do not match.
    fn read_checkpoint(&mut self, id: u64) -> Result<Vec<u8>, StoreError>;

    /// Deletes what checkpoint `keep` makes unneeded: log entries up to its
    /// `covers` (intents excepted, and observation batches received at or
    /// after `keep_raw_since`, which raw capture keeps for replay), every
    /// checkpoint older than `keep`, and checkpoints never completed. Works
    /// in bounded chunks, each its own transaction.
    fn truncate(
        &mut self,
        keep: u64,
        keep_raw_since: Option<Time>,
    ) -> Result<TruncateStats, StoreError>;

    /// Records divergence episodes in the history, in one transaction: an
    /// episode already there (same id and `opened_at`) is replaced by the
    /// newer state, so recording the same change twice changes nothing.
    fn record_episodes(&mut self, episodes: &[Episode]) -> Result<(), StoreError>;

    /// Episodes of the history that `query` selects, through an index on
    /// the time they opened.
    fn episodes(&mut self, query: &EpisodeQuery) -> Result<Vec<Episode>, StoreError>;

    /// Records member events in the history, in one transaction; an event
    /// already there (same member, time and `what`) is kept as it was.
    fn record_member_events(&mut self, events: &[MemberEvent]) -> Result<(), StoreError>;

    /// One member's events that `query` selects (its timeline).
    fn member_events(&mut self, query: &TimelineQuery) -> Result<Vec<MemberEvent>, StoreError>;

    /// Records services' SLIs per minute; a minute already there is replaced.
    fn record_sli(&mut self, minutes: &[SliMinute]) -> Result<(), StoreError>;

    /// A service's SLI minutes in `[since, until)`, oldest first, at most `limit`.
    fn sli_minutes(
        &mut self,
        service: &str,
        since: Time,
        until: Time,
        limit: usize,
    ) -> Result<Vec<SliMinute>, StoreError>;

    /// The intents that took force in `[since, until)`, after entry `after`,
    /// oldest first, at most `limit`.
    fn intents(
        &mut self,
        since: Time,
        until: Time,
        after: u64,
        limit: usize,
    ) -> Result<Vec<IntentRevision>, StoreError>;

    /// Takes lease `name` for `holder` until `now + ttl`, when it is free,
    /// lapsed or already `holder`'s, and returns the new epoch (one more than
    /// the last acquisition's); `None` while another holder's is unexpired.
    fn acquire_lease(
        &mut self,
        name: &str,
        holder: &str,
        now: Time,
        ttl: std::time::Duration,
    ) -> Result<Option<u64>, StoreError>;

    /// Extends the lease `fence` holds to `now + ttl`; [`StoreError::Fenced`]
    /// when the fence is no longer current.
    fn renew_lease(
        &mut self,
        fence: &Fence,
        now: Time,
        ttl: std::time::Duration,
    ) -> Result<(), StoreError>;

    /// Lets the lease `fence` holds lapse now (a clean stop), so a successor
    /// need not wait out its time to live; nothing when the fence is stale.
    fn release_lease(&mut self, fence: &Fence) -> Result<(), StoreError>;

    /// Lease `name` as stored, held or lapsed.
    fn lease(&mut self, name: &str) -> Result<Option<LeaseInfo>, StoreError>;

    /// In one transaction: checks that `fence` is current, appends `audit`
    /// and writes or deletes the controller's `state` items. Returns the
    /// audit records' ids. [`StoreError::Fenced`] (and nothing stored) when
    /// another acquisition raised the lease's epoch.
    fn record_fenced(
        &mut self,
        fence: &Fence,
        audit: &[NewAudit],
        state: &[StateItem],
    ) -> Result<Vec<u64>, StoreError>;

    /// Appends `audit` without a fence: for records of what was refused.
    fn append_audit(&mut self, audit: &[NewAudit]) -> Result<Vec<u64>, StoreError>;

    /// The state items controller `name` recorded, by key.
    fn controller_state(&mut self, name: &str) -> Result<Vec<(String, Vec<u8>)>, StoreError>;

    /// The audit records `query` selects, newest first.
    fn audit(&mut self, query: &AuditQuery) -> Result<Vec<AuditRecord>, StoreError>;

    /// Deletes audit records from before `before`; returns how many. Works in bounded chunks.
    fn prune_audit(&mut self, before: Time) -> Result<u64, StoreError>;

    /// Deletes history older than `before`: episodes resolved before it,
    /// member events and SLI minutes from before it, and intents replaced
    /// before it (never the one in force, nor one a restart would still
    /// replay). Returns how many rows went. Works in bounded chunks.
    fn prune_history(&mut self, before: Time) -> Result<u64, StoreError>;
}
