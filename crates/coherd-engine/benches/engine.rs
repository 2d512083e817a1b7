//! Engine hot paths: `observe` on a large fleet, and `handle_timeout` when
//! nothing expires (which must not grow with the fleet), and checkpoints.

#![allow(unused_crate_dependencies)] // a test target sees every dev-dependency of its package

mod fleet;

use std::hint::black_box;
use std::time::Duration;

use coherd_engine::{Engine, EngineConfig};
use coherd_model::Time;
use criterion::{Criterion, criterion_group, criterion_main};

fn observe(c: &mut Criterion) {
    let members = 100_000;
    let reports = fleet::reports(members);
    let mut engine = fleet::engine(&reports);
    // Every member reports every 10 s: advance the clock 10 s / members per report.
    let step = 10_000_000_000 / members as i64;
    let mut i = 0usize;
    let mut now = fleet::t0();
    c.bench_function("observe/100k members, 5 facets, at target", |b| {
        b.iter(|| {
            i = (i + 1) % members;
            now = Time::from_nanos(now.as_nanos() + step);
            black_box(engine.observe(now, &reports[i]).unwrap());
        })
    });
    while engine.poll_event().is_some() {}
}

fn handle_timeout_idle(c: &mut Criterion) {
    let mut group = c.benchmark_group("handle_timeout/nothing expiring");
    for members in [1_000usize, 1_000_000] {
        let mut engine = fleet::engine(&fleet::reports(members));
        let now = fleet::t0().add(Duration::from_secs(1));
        group.bench_function(format!("{members} members"), |b| {
            b.iter(|| {
                engine.handle_timeout(black_box(now));
                black_box(engine.poll_timeout())
            })
        });
    }
    group.finish();
}

/// A checkpoint of a 100 000-member fleet: writing it (the engine time a
/// checkpoint costs the server) and loading it (most of a restart).
fn checkpoint(c: &mut Criterion) {
    let mut engine = fleet::engine(&fleet::reports(100_000));
    while engine.poll_event().is_some() {}
    let bytes = engine.checkpoint();
    println!("checkpoint of 100k members: {} bytes", bytes.len());
    let mut group = c.benchmark_group("checkpoint/100k members");
    group.sample_size(10);
    group.bench_function("write", |b| b.iter(|| black_box(engine.checkpoint())));
    group.bench_function("snapshot (copy)", |b| {
        b.iter(|| black_box(engine.snapshot()))
    });
    group.bench_function("load", |b| {
        b.iter(|| {
            Engine::from_checkpoint(EngineConfig::default(), black_box(&bytes), None)
                .expect("loads")
        })
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(50).measurement_time(Duration::from_secs(5));
    targets = observe, handle_timeout_idle, checkpoint
}
criterion_main!(benches);
