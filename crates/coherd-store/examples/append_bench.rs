//! Append throughput of the SQLite store on a real file.
//!
//! Appends batches of 1,000 realistic observations (five facets with phase,
//! labels, counters), one `append` (one transaction, one sync) per batch, as
//! the server's group commit does under load; then reopens and replays the
//! file with `load`. Prints observations per second for both.
//!
//! ```text
//! cargo run --release -p coherd-store --example append_bench
//! BATCHES=1000 cargo run --release -p coherd-store --example append_bench
//! ```

#![allow(unused_crate_dependencies)] // a test target sees every dev-dependency of its package

use std::collections::BTreeMap;
use std::time::Instant;

use coherd_model::{Observation, Time};
use coherd_store::{NewEntry, SqliteStore, Store};

const BATCH: usize = 1_000;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let batches: usize = std::env::var("BATCHES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300);
    let dir = std::env::temp_dir().join(format!("coherd-append-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let path = dir.join("coherd.db");
    let result = run(&path, batches);
    std::fs::remove_dir_all(&dir)?;
    result
}

fn run(path: &std::path::Path, batches: usize) -> Result<(), Box<dyn std::error::Error>> {
    let t0 = Time::from_secs(1_795_000_000);
    // Ten distinct batches (10,000 members), appended in turn.
    let samples: Vec<Vec<Observation>> = (0..10).map(|b| batch(b, t0)).collect();

    let mut store = SqliteStore::open(path)?;
    let start = Instant::now();
    for i in 0..batches {
        let entry = NewEntry::Observations {
            received_at: Time::from_nanos(t0.as_nanos() + i as i64 * 10_000_000),
            observations: samples[i % samples.len()].clone(),
        };
        store.append(std::slice::from_ref(&entry))?;
    }
    let append = start.elapsed().as_secs_f64();
    drop(store);
    let total = (batches * BATCH) as f64;
    let bytes = std::fs::metadata(path)?.len()
        + std::fs::metadata(path.with_extension("db-wal")).map_or(0, |m| m.len());

    let mut store = SqliteStore::open(path)?;
    let start = Instant::now();
    let mut loaded = 0usize;
    store.load(0, &mut |e| {
        if let NewEntry::Observations { observations, .. } = e.body {
            loaded += observations.len();
        }
        Ok(())
    })?;
    let load = start.elapsed().as_secs_f64();
    assert_eq!(loaded, batches * BATCH);

    println!(
        "append: {batches} batches of {BATCH} observations in {append:.2} s: {:.0} observations/s, {:.0} appends/s ({:.0} bytes on disk per observation)",
        total / append,
        batches as f64 / append,
        bytes as f64 / total,
    );
    // How much of an append is encoding (the rest is SQLite and the sync).
    let start = Instant::now();
    let mut encoded = 0;
    for i in 0..batches {
        encoded += serde_json::to_vec(&samples[i % samples.len()])?.len();
    }
    let encode = start.elapsed().as_secs_f64();

    println!(
        "encode: {:.0} observations/s as JSON ({:.0} bytes per observation), {:.0}% of append time",
        total / encode,
        encoded as f64 / total,
        100.0 * encode / append,
    );
    println!(
        "load:   {loaded} observations in {load:.2} s: {:.0} observations/s",
        total / load
    );
    Ok(())
}

fn batch(b: usize, t0: Time) -> Vec<Observation> {
    let phases = ["starting", "ready", "ready", "ready", "draining"];
    (0..BATCH)
        .map(|i| {
            let m = b * BATCH + i;
            let s = |v: &str| v.to_string();
            Observation {
                service: format!("svc-{}", m % 50),
                member: format!("svc-{}-{m:06x}", m % 50),
                seq: Some(1_000 + m as u64),
                time: Some(t0),
                labels: BTreeMap::from([(s("region"), s("eu-west-1")), (s("zone"), s("b"))]),
                deploy: Some(s("rel-2026-11-22.1")),
                facets: BTreeMap::from([
                    (
                        s("version"),
                        s(if m.is_multiple_of(10) {
                            "1.4.1"
                        } else {
                            "1.4.2"
                        }),
                    ),
                    (s("config"), s("sha256:ab12cd34ef56")),
                    (s("schema"), s("42")),
                    (s("flags"), s("new-checkout,fast-path")),
                    (s("phase"), s(phases[m % phases.len()])),
                ]),
                counters: BTreeMap::from([
                    (s("requests"), 1_203_344 + m as u64),
                    (s("errors"), 12),
                    (s("schema_errors"), 0),
                    (s("duplicates"), 0),
                ]),
                ..Observation::default()
            }
        })
        .collect()
}
