//! Checkpoints: the whole engine as compact, versioned bytes, and back.
//!
//! A checkpoint holds everything the engine knows (members with their `seq`,
//! facets, phases, views, leases, checksum positions, flap windows, pending
//! deadlines, changes and rollouts, divergence episodes, SLI windows, job
//! runs, the interned strings) so that loading it gives an engine that
//! behaves exactly as the one that wrote it. The intent and the
//! [`EngineConfig`] are not in it: the caller keeps the intent's source text
//! beside it and passes both back.
//!
//! The encoding is [postcard](https://docs.rs/postcard) behind a format
//! number; maps are written in key order and the deadline queue in deadline
//! order, so two engines in the same state write the same bytes (which is
//! how the tests compare engines).

use std::borrow::Cow;

use coherd_model::{Intent, Kind, Severity, Time};
use hashbrown::HashMap;
use serde::{Deserialize, Serialize};

use crate::divergence::{DivKey, Divergence, DivergenceTable};
use crate::engine::{Engine, EngineConfig, ReportCounts};
use crate::ids::{IdVec, ServiceId};
use crate::intern::{Interner, Sym};
use crate::labels::LabelSets;
use crate::pairs::Views;
use crate::signals::Signals;
use crate::state::Service;
use crate::timer::Timers;

/// The checkpoint format this engine writes. Raised whenever the encoding of
/// any part changes; an engine reads its own and [`OLDEST_FORMAT_READ`] on.
pub const CHECKPOINT_FORMAT: u32 = 2;

/// Format 1 is format 2 without the signals (canary traffic, replica
/// positions) at the end: it loads with none.
const OLDEST_FORMAT_READ: u32 = 1;

/// Why bytes are not a checkpoint this engine can load.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckpointError {
    /// Written by another version of coherd.
    #[error(
        "checkpoint format {found} is not the format {supported} this coherd reads; \
         run the coherd version that wrote it, or move the checkpoint aside to rebuild from the log"
    )]
    UnknownFormat {
        /// The format number the checkpoint carries.
        found: u32,
        /// The one this engine reads.
        supported: u32,
    },
    /// The bytes do not decode.
    #[error("the checkpoint does not decode: {0}")]
    Corrupt(String),
}

/// Serde helpers for hash maps, written in key order.
pub(crate) mod sorted {
    use std::hash::Hash;

    use hashbrown::HashMap;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub(crate) fn serialize<K, V, S>(map: &HashMap<K, V>, s: S) -> Result<S::Ok, S::Error>
    where
        K: Ord + Serialize,
        V: Serialize,
        S: Serializer,
    {
        let mut entries: Vec<(&K, &V)> = map.iter().collect();
        entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
        s.collect_seq(entries)
    }

    pub(crate) fn deserialize<'de, K, V, D>(d: D) -> Result<HashMap<K, V>, D::Error>
    where
        K: Eq + Hash + Deserialize<'de>,
        V: Deserialize<'de>,
        D: Deserializer<'de>,
    {
        let entries = Vec::<(K, V)>::deserialize(d)?;
        let len = entries.len();
        let map: HashMap<K, V> = entries.into_iter().collect();
        if map.len() != len {
            return Err(serde::de::Error::custom("a map holds the same key twice"));
        }
        Ok(map)
    }
}

/// A divergence record as a checkpoint holds it: the evidence as JSON text
/// (the binary encoding cannot carry free-form JSON), the interned key kept.
#[derive(Serialize, Deserialize)]
struct StoredDivergence<'a> {
    id: Cow<'a, str>,
    service: Cow<'a, str>,
    kind: Kind,
    severity: Severity,
    subjects: Cow<'a, [String]>,
    evidence: String,
    opened_at: Time,
    last_seen_at: Time,
    resolved_at: Option<Time>,
    reopens: u32,
    key: DivKey,
}

impl Serialize for DivergenceTable {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let records: Vec<StoredDivergence<'_>> = self
            .records
            .iter()
            .map(|d| StoredDivergence {
                id: Cow::Borrowed(&d.id),
                service: Cow::Borrowed(&d.service),
                kind: d.kind,
                severity: d.severity,
                subjects: Cow::Borrowed(&d.subjects),
                evidence: d.evidence.to_string(),
                opened_at: d.opened_at,
                last_seen_at: d.last_seen_at,
                resolved_at: d.resolved_at,
                reopens: d.reopens,
                key: d.key,
            })
            .collect();
        let mut latest: Vec<(DivKey, u32)> = self.latest.iter().map(|(k, i)| (*k, *i)).collect();
        latest.sort_unstable();
        (records, latest).serialize(s)
    }
}

impl<'de> Deserialize<'de> for DivergenceTable {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<DivergenceTable, D::Error> {
        use serde::de::Error;
        let (stored, latest) = <(Vec<StoredDivergence<'de>>, Vec<(DivKey, u32)>)>::deserialize(d)?;
        let mut records = Vec::with_capacity(stored.len());
        for r in stored {
            let evidence = serde_json::from_str(&r.evidence)
                .map_err(|e| D::Error::custom(format!("divergence {}: evidence: {e}", r.id)))?;
            records.push(Divergence {
                id: r.id.into_owned(),
                service: r.service.into_owned(),
                kind: r.kind,
                severity: r.severity,
                subjects: r.subjects.into_owned(),
                evidence,
                opened_at: r.opened_at,
                last_seen_at: r.last_seen_at,
                resolved_at: r.resolved_at,
                reopens: r.reopens,
                deploy: None,
                labels: Default::default(),
                key: r.key,
            });
        }
        if let Some((_, i)) = latest.iter().find(|(_, i)| *i as usize >= records.len()) {
            return Err(D::Error::custom(format!(
                "the latest episode {i} is past the {} records",
                records.len()
            )));
        }
        let len = latest.len();
        let latest: HashMap<DivKey, u32> = latest.into_iter().collect();
        if latest.len() != len {
            return Err(D::Error::custom("a divergence key has two latest episodes"));
        }
        Ok(DivergenceTable { records, latest })
    }
}

/// The engine's state, borrowed, in the order a checkpoint holds it.
#[derive(Serialize)]
struct EngineRef<'a> {
    syms: &'a Interner,
    services: &'a IdVec<ServiceId, Service>,
    #[serde(serialize_with = "sorted::serialize")]
    service_index: &'a HashMap<Sym, ServiceId>,
    timers: &'a Timers,
    table: &'a DivergenceTable,
    views: &'a Views,
    labels: &'a LabelSets,
    now: Time,
    clock: Time,
    counts: ReportCounts,
    next_prune: Time,
    /// Last: format 1 ends before it.
    signals: &'a Signals,
}

/// A copy of the engine's state, taken in the time a copy takes, to be
/// encoded elsewhere ([`Snapshot::encode`]) while the engine goes on.
pub struct Snapshot(EngineState, Signals);

impl Snapshot {
    /// The checkpoint bytes, as [`Engine::checkpoint`] writes them.
    pub fn encode(&self) -> Vec<u8> {
        let s = &self.0;
        encode(&EngineRef {
            syms: &s.syms,
            services: &s.services,
            service_index: &s.service_index,
            timers: &s.timers,
            table: &s.table,
            views: &s.views,
            labels: &s.labels,
            now: s.now,
            clock: s.clock,
            counts: s.counts,
            next_prune: s.next_prune,
            signals: &self.1,
        })
    }
}

fn encode(state: &EngineRef<'_>) -> Vec<u8> {
    let out = postcard::to_extend(&CHECKPOINT_FORMAT, Vec::new())
        .and_then(|out| postcard::to_extend(state, out));
    // Every part is plain data; encoding into a vector cannot fail.
    out.expect("an engine always encodes")
}

/// The engine's state, as loaded or copied.
#[derive(Deserialize)]
struct EngineState {
    syms: Interner,
    services: IdVec<ServiceId, Service>,
    #[serde(deserialize_with = "sorted::deserialize")]
    service_index: HashMap<Sym, ServiceId>,
    timers: Timers,
    table: DivergenceTable,
    views: Views,
    labels: LabelSets,
    now: Time,
    clock: Time,
    counts: ReportCounts,
    next_prune: Time,
}

impl Engine {
    /// The whole engine as checkpoint bytes (format [`CHECKPOINT_FORMAT`]).
    ///
    /// Call it between inputs, with the events drained (a [`Driver`](crate::Driver)
    /// always is): events waiting to be polled are not in the checkpoint.
    pub fn checkpoint(&self) -> Vec<u8> {
        debug_assert!(
            self.events.is_empty(),
            "events are drained before a checkpoint"
        );
        encode(&EngineRef {
            syms: &self.syms,
            services: &self.services,
            service_index: &self.service_index,
            timers: &self.timers,
            table: &self.table,
            views: &self.views,
            labels: &self.labels,
            now: self.now,
            clock: self.clock,
            counts: self.counts,
            next_prune: self.next_prune,
            signals: &self.signals,
        })
    }

    /// A copy of the engine's state to encode elsewhere: what a server holds
    /// the engine for is the copy (a few times faster than encoding), not the
    /// encoding. Same preconditions as [`checkpoint`](Engine::checkpoint).
    pub fn snapshot(&self) -> Snapshot {
        debug_assert!(
            self.events.is_empty(),
            "events are drained before a checkpoint"
        );
        Snapshot(
            EngineState {
                syms: self.syms.clone(),
                services: self.services.clone(),
                service_index: self.service_index.clone(),
                timers: self.timers.clone(),
                table: self.table.clone(),
                views: self.views.clone(),
                labels: self.labels.clone(),
                now: self.now,
                clock: self.clock,
                counts: self.counts,
                next_prune: self.next_prune,
            },
            self.signals.clone(),
        )
    }

    /// An engine loaded from [`checkpoint`](Engine::checkpoint) bytes, with
    /// the intent that was in force when they were written (its source text
    /// is the caller's to keep) and today's settings.
    pub fn from_checkpoint(
        config: EngineConfig,
        bytes: &[u8],
        intent: Option<Intent>,
    ) -> Result<Engine, CheckpointError> {
        let corrupt = |e: postcard::Error| CheckpointError::Corrupt(e.to_string());
        let (format, rest) = postcard::take_from_bytes::<u32>(bytes).map_err(corrupt)?;
        if !(OLDEST_FORMAT_READ..=CHECKPOINT_FORMAT).contains(&format) {
            return Err(CheckpointError::UnknownFormat {
                found: format,
                supported: CHECKPOINT_FORMAT,
            });
        }
        let (state, rest) = postcard::take_from_bytes::<EngineState>(rest).map_err(corrupt)?;
        let (signals, rest) = if format >= 2 {
            postcard::take_from_bytes::<Signals>(rest).map_err(corrupt)?
        } else {
            (Signals::default(), rest)
        };
        if !rest.is_empty() {
            return Err(CheckpointError::Corrupt(format!(
                "{} bytes follow the engine's state",
                rest.len()
            )));
        }
        let EngineState {
            syms,
            services,
            service_index,
            timers,
            table,
            views,
            labels,
            now,
            clock,
            counts,
            next_prune,
        } = state;
        let mut engine = Engine {
            config,
            syms,
            services,
            service_index,
            intent,
            timers,
            table,
            views,
            labels,
            events: Default::default(),
            now,
            clock,
            counts,
            facet_scratch: Vec::new(),
            next_prune,
            signals,
        };
        if format < 2 {
            // Format 1 had no signals: their rules come from the intent
            // (nothing is judged yet, so nothing is raised).
            let services: Vec<_> = engine
                .intent
                .iter()
                .flat_map(|i| i.services.iter())
                .map(|(name, si)| (name.clone(), si.clone()))
                .collect();
            let now = engine.now;
            for (name, si) in services {
                if let Some(svc) = engine.svc(&name) {
                    engine.apply_signal_rules(svc, &si, now);
                }
            }
        }
        // Deploys and breakdown labels are not kept: they follow the members.
        engine.refresh_contexts();
        Ok(engine)
    }
}
