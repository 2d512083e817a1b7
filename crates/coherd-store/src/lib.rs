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
//! The log does not grow without bound: [`Store::prune`] deletes observation
//! batches older than a cutoff but first folds each member's latest
//! observation among them into a latest-state table, so a member that went
//! quiet keeps its state across restarts. The latest intent is never pruned.
//!
//! The trait is synchronous and says nothing about SQL: ids are plain `u64`
//! sequence numbers and errors are [`StoreError`]s that carry their cause as
//! an opaque source. [`SqliteStore`] (one file, the default) implements it
//! now; a PostgreSQL implementation, where several coherd processes share one
//! sequence, fits behind the same trait later.
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
//! store.load(&mut |entry: Entry| {
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

pub use entry::{Entry, NewEntry, PruneStats};
pub use error::StoreError;
pub use sqlite::SqliteStore;

use coherd_model::Time;

/// Durable, append-only storage of coherd's entries.
///
/// A driver calls [`load`](Store::load) once at start, then
/// [`append`](Store::append) for every group commit, and
/// [`prune`](Store::prune) now and then. One thread owns a store; it is
/// `Send` so that thread can be spawned with it, but not shared.
pub trait Store: Send {
    /// Appends `entries` atomically and durably, and returns one id per
    /// entry, in order.
    ///
    /// All or nothing: on `Ok` every entry survives `kill -9` and power
    /// loss; on `Err` none of them is stored. Ids are strictly increasing
    /// across calls and never reused, even after pruning. An empty slice
    /// stores nothing and returns no ids.
    fn append(&mut self, entries: &[NewEntry]) -> Result<Vec<u64>, StoreError>;

    /// Calls `visit` for every entry the store holds, in id order, and stops
    /// at the first error `visit` returns (which `load` then returns).
    ///
    /// Member states kept by [`prune`](Store::prune) come as
    /// [`NewEntry::Observations`], one entry per pruned batch that held a
    /// member's latest applied report, under that batch's id and receive
    /// time, in the batch's order. They take the pruned batch's place in the
    /// id order, so ids stay strictly increasing and the engine sees the
    /// kept states, retained intents and deletions in the order they
    /// happened. Before any pruning, load yields exactly what was appended.
    fn load(
        &mut self,
        visit: &mut dyn FnMut(Entry) -> Result<(), StoreError>,
    ) -> Result<(), StoreError>;

    /// Deletes the observation batches received before `before`, first
    /// folding each member's reports among them into its kept state (so a
    /// member that went quiet keeps its latest state), and returns counts.
    ///
    /// The fold applies reports as the engine does: a duplicate `seq`
    /// changes nothing, labels, facets and counters merge by key, the rest is
    /// the last report's. Member deletions before `before` are folded too
    /// (the deleted member's kept state goes) and deleted. Intents in force
    /// before `before` that a later intent replaced are deleted; the latest
    /// intent never is. Nothing received at or after `before` is touched.
    ///
    /// Works in bounded chunks, each its own transaction: an interrupted
    /// prune leaves a consistent store from which `load` rebuilds the same
    /// member states.
    fn prune(&mut self, before: Time) -> Result<PruneStats, StoreError>;

    /// The latest intent: when it took force and its source text as the
    /// operator sent it.
    fn latest_intent(&mut self) -> Result<Option<(Time, String)>, StoreError>;
}
