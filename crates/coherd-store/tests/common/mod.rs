//! Helpers shared by the store's integration tests.

#![allow(dead_code)]

use std::path::{Path, PathBuf};

use coherd_model::{Limits, Observation, Time};
use coherd_store::{Entry, NewEntry, Store};

/// A directory under the system temp dir, removed when dropped.
pub(crate) struct TempDir(PathBuf);

impl TempDir {
    pub(crate) fn new(tag: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!(
            "coherd-store-{tag}-{}-{}",
            std::process::id(),
            fastrand::u64(..)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    pub(crate) fn path(&self) -> &Path {
        &self.0
    }

    pub(crate) fn db(&self) -> PathBuf {
        self.0.join("coherd.db")
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub(crate) fn t(secs: i64) -> Time {
    Time::from_secs(1_795_000_000 + secs)
}

/// A realistic report: five facets with phase, labels and counters.
pub(crate) fn obs(service: &str, member: &str, seq: u64, version: &str) -> Observation {
    let json = format!(
        r#"{{"service":"{service}","member":"{member}","seq":{seq},"time":"2026-11-22T08:00:00Z",
            "labels":{{"region":"eu-west-1","zone":"b"}},"deploy":"rel-2026-11-22.1",
            "facets":{{"version":"{version}","config":"sha256:ab12","schema":"42","flags":"f1,f2","phase":"ready"}},
            "counters":{{"requests":{req},"errors":12}}}}"#,
        req = seq * 100
    );
    Observation::from_json(&json, &Limits::default()).unwrap()
}

pub(crate) fn observations(at: Time, obs: Vec<Observation>) -> NewEntry {
    NewEntry::Observations {
        received_at: at,
        observations: obs,
    }
}

pub(crate) fn load_all(store: &mut dyn Store) -> Vec<Entry> {
    let mut out = Vec::new();
    store
        .load(0, &mut |e| {
            out.push(e);
            Ok(())
        })
        .unwrap();
    out
}
