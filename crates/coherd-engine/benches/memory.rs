//! Resident memory per member at 1M members with 5 facets.
//!
//! Reads the process's resident set size before and after building the fleet
//! (the reports themselves are built one at a time and dropped, so they are
//! not counted). Run: `cargo bench -p coherd-engine --bench memory`.

#![allow(unused_crate_dependencies)] // a test target sees every dev-dependency of its package

mod fleet;

use coherd_engine::Engine;
use coherd_model::Intent;

fn rss_bytes() -> usize {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: usize = statm
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

fn main() {
    let members: usize = std::env::var("MEMBERS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000);
    let before = rss_bytes();
    let mut e = Engine::default();
    e.set_intent(fleet::t0(), Intent::from_yaml(fleet::INTENT).unwrap());
    for i in 0..members {
        // Built one at a time and dropped, so reports are not counted.
        e.observe(fleet::t0(), &fleet::report(i)).unwrap();
    }
    while e.poll_event().is_some() {}
    let after = rss_bytes();
    let per = (after.saturating_sub(before)) as f64 / members as f64;
    println!("members: {members}");
    println!(
        "resident bytes per member: {per:.0} (RSS {} MiB -> {} MiB)",
        before >> 20,
        after >> 20
    );
    println!(
        "engine's own estimate of heap bytes per member: {:.0}",
        e.approx_heap_bytes() as f64 / members as f64
    );
    std::hint::black_box(&e);
}
