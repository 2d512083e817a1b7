//! Engine invariants over random logs (DESIGN 7): a replayed log gives the same
//! divergences, duplicates change nothing, and the order of members within one
//! timestamp does not matter.

#![allow(unused_crate_dependencies)] // a test target sees every dev-dependency of its package

mod common;

use coherd_engine::{
    CHECKPOINT_FORMAT, CheckpointError, Divergence, Engine, EngineConfig, Outcome,
};
use coherd_model::{Observation, Time};
use common::{Harness, at, intent, observation};
use proptest::prelude::*;
use serde_json::{Value, json};

const INTENT: &str = "
services:
  web:
    report_interval: 10s
    facets:
      version: {target: \"2\", compatible: [\"1\"], rollout_window: 30s, canary: {max_ratio: 1.5, min_requests: 20, window: 30s}}
      kernel: {uniform: true, rollout_window: 20s}
    phases:
      initial: [starting]
      serving: [ready]
      transitions:
        starting: [ready, stopped]
        ready: [draining, stopped]
        draining: [stopped]
        stopped: [starting]
      agreement_timeout: 5s
      max_flips_per_hour: 2
      hold: 30s
    leases:
      leader: {exclusive: true}
    datasets:
      users: {max_lag: 2}
    dephase:
      jobs:
        cron:x: {period: 30s, max_concurrent: 1}
  lb:
    report_interval: 10s
";

const MEMBERS: [(&str, &str); 5] = [
    ("web", "w1"),
    ("web", "w2"),
    ("web", "w3"),
    ("lb", "lb-1"),
    ("lb", "lb-2"),
];
const VERSIONS: [&str; 4] = ["1", "2", "3", "x"];
const PHASES: [&str; 5] = ["starting", "ready", "draining", "stopped", "odd"];

/// One random report, before it is turned into an observation.
#[derive(Debug, Clone)]
struct Step {
    /// Seconds after the previous step (0: same timestamp).
    dt: u8,
    member: usize,
    /// None: no seq; Some(0): repeat the last seq; Some(n): advance by n.
    seq: Option<u8>,
    version: Option<u8>,
    kernel: Option<u8>,
    phase: Option<u8>,
    view: Option<(u8, u8)>,
    lease: Option<(u8, u8)>,
    checksum: Option<(u8, u8)>,
    requests: Option<u16>,
    /// A run of `cron:x`: (seconds before the report it started, seconds it lasted).
    event: Option<(u8, u8)>,
}

/// Every kind of report.
fn step() -> impl Strategy<Value = Step> {
    any_step(true)
}

/// Reports without views or checksums (see the order property below).
fn step_without_views_or_checksums() -> impl Strategy<Value = Step> {
    any_step(false)
}

fn any_step(views_and_checksums: bool) -> impl Strategy<Value = Step> {
    (
        (
            prop_oneof![3 => Just(0u8), 2 => 1u8..4, 1 => 4u8..25],
            0..MEMBERS.len(),
            prop_oneof![1 => Just(None), 6 => (0u8..3).prop_map(Some)],
            proptest::option::weighted(0.5, 0..VERSIONS.len() as u8),
            proptest::option::weighted(0.2, 0u8..2),
        ),
        (
            proptest::option::weighted(0.5, 0..PHASES.len() as u8),
            proptest::option::weighted(0.4, (0u8..3, 0..PHASES.len() as u8)),
            proptest::option::weighted(0.2, (1u8..4, 1u8..20)),
            proptest::option::weighted(0.3, (0u8..4, 0u8..2)),
            proptest::option::weighted(0.4, 0u16..500),
            proptest::option::weighted(0.3, (0u8..40, 0u8..20)),
        ),
    )
        .prop_map(
            |(
                (dt, member, seq, version, kernel),
                (phase, view, lease, checksum, requests, event),
            )| Step {
                dt,
                member,
                seq,
                version,
                kernel,
                phase,
                view,
                lease,
                checksum,
                requests,
                event,
            },
        )
        .prop_map(move |mut s| {
            if !views_and_checksums {
                s.view = None;
                s.checksum = None;
            }
            s
        })
}

/// Turns steps into a time-ordered log of observations.
fn log(steps: &[Step]) -> Vec<(Time, Observation)> {
    log_with(steps, false)
}

/// With `one_per_service`, a second report of one service at the same
/// timestamp moves time on by a second first.
fn log_with(steps: &[Step], one_per_service: bool) -> Vec<(Time, Observation)> {
    let mut seqs = [0u64; MEMBERS.len()];
    let mut secs = 0u64;
    let mut out = Vec::new();
    let mut here: Vec<usize> = Vec::new();
    for s in steps {
        secs += s.dt as u64;
        if s.dt > 0 {
            here.clear();
        }
        let service = MEMBERS[s.member].0;
        if one_per_service && here.iter().any(|&m| MEMBERS[m].0 == service) {
            secs += 1;
            here.clear();
        }
        here.push(s.member);
        let t = at(&format!("{secs}s"));
        let (service, member) = MEMBERS[s.member];
        let mut v = json!({"service": service, "member": member});
        if let Some(d) = s.seq {
            seqs[s.member] += d as u64;
            v["seq"] = json!(seqs[s.member]);
        }
        let mut facets = serde_json::Map::new();
        if let Some(x) = s.version {
            facets.insert("version".into(), VERSIONS[x as usize].into());
        }
        if let Some(x) = s.kernel {
            facets.insert("kernel".into(), format!("6.{x}").into());
        }
        if let Some(x) = s.phase {
            facets.insert("phase".into(), PHASES[x as usize].into());
        }
        v["facets"] = Value::Object(facets);
        if let Some((target, p)) = s.view {
            v["views"] = json!({format!("web/w{}", target + 1): {"phase": PHASES[p as usize]}});
        }
        if let Some((epoch, ttl)) = s.lease {
            let expires = at(&format!("{}s", secs + ttl as u64)).to_string();
            v["leases"] = json!([{"resource": "leader", "epoch": epoch, "expires": expires}]);
        }
        if let Some((pos, digest)) = s.checksum {
            v["checksums"] =
                json!([{"dataset": "users", "position": pos, "digest": format!("d{digest}")}]);
        }
        if let Some((back, len)) = s.event {
            let start = secs.saturating_sub(back as u64);
            v["events"] = json!([{
                "kind": "cron:x",
                "start": at(&format!("{start}s")).to_string(),
                "end": at(&format!("{}s", start + len as u64)).to_string(),
            }]);
        }
        if let Some(r) = s.requests {
            // Versions 3 and x fail a quarter of their requests, others 2 %.
            let errors = if s.version.is_some_and(|x| x >= 2) {
                r / 4
            } else {
                r / 50
            };
            v["counters"] = json!({"requests": r, "errors": errors});
        }
        out.push((t, observation(&v)));
    }
    out
}

/// Replays a log the way `coherd replay` does and returns every record, with
/// the lazily kept subjects brought up to date.
fn replay(log: &[(Time, Observation)]) -> Vec<Divergence> {
    let mut f = Harness::new(INTENT);
    apply(&mut f, log);
    finish(&mut f, log)
}

fn sorted(mut v: Vec<Divergence>) -> Vec<Divergence> {
    v.sort_by(|a, b| a.opened_at.cmp(&b.opened_at).then_with(|| a.id.cmp(&b.id)));
    v
}

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 96,
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn replaying_a_log_twice_gives_the_same_divergences(steps in prop::collection::vec(step(), 1..60)) {
        let log = log(&steps);
        prop_assert_eq!(replay(&log), replay(&log));
    }

    #[test]
    fn duplicates_change_nothing(
        steps in prop::collection::vec(step(), 1..60),
        picks in prop::collection::vec((any::<prop::sample::Index>(), any::<prop::sample::Index>()), 1..8),
    ) {
        let log = log(&steps);
        // Re-send an earlier report that carried a seq, at the time of the line it follows.
        let mut picks: Vec<(usize, prop::sample::Index)> =
            picks.into_iter().map(|(a, w)| (a.index(log.len()), w)).collect();
        picks.sort_by_key(|p| p.0);
        let mut with_dups = log.clone();
        let mut inserted = 0;
        for (after, which) in picks {
            let earlier: Vec<&Observation> = log[..=after]
                .iter()
                .map(|(_, o)| o)
                .filter(|o| o.seq.is_some())
                .collect();
            if earlier.is_empty() {
                continue;
            }
            let dup = earlier[which.index(earlier.len())].clone();
            let pos = after + 1 + inserted;
            with_dups.insert(pos, (log[after].0, dup));
            inserted += 1;
        }
        let mut f = Harness::new(INTENT);
        let originals = log.len();
        let mut dups = 0;
        for (t, obs) in &with_dups {
            if f.report_obs(*t, obs) == Outcome::Duplicate {
                dups += 1;
            }
        }
        let base_dups = {
            let mut g = Harness::new(INTENT);
            log.iter().filter(|(t, o)| g.report_obs(*t, o) == Outcome::Duplicate).count()
        };
        prop_assert_eq!(dups, base_dups + inserted);
        prop_assert_eq!(with_dups.len(), originals + inserted);
        prop_assert_eq!(replay(&with_dups), replay(&log));
    }

    /// Reports of different services at one timestamp commute (without
    /// views, services do not see each other).
    #[test]
    fn the_order_of_services_within_a_timestamp_does_not_matter(
        steps in prop::collection::vec(step_without_views_or_checksums(), 1..60),
        keys in prop::collection::vec(any::<u32>(), MEMBERS.len()),
    ) {
        let log = log_with(&steps, true);
        let shuffled = shuffle_within_timestamps(&log, &keys);
        prop_assert_eq!(sorted(replay(&shuffled)), sorted(replay(&log)));
    }

    /// DESIGN 7: the reports of one instant are applied as a whole
    /// (`observe_instant`, as replay and the server do), in a canonical order,
    /// and a condition that holds only between two of them leaves no record.
    #[test]
    fn the_order_of_members_within_a_timestamp_does_not_matter(
        steps in prop::collection::vec(step(), 1..60),
        keys in prop::collection::vec(any::<u32>(), MEMBERS.len()),
    ) {
        let log = log(&steps);
        let shuffled = shuffle_within_timestamps(&log, &keys);
        prop_assert_eq!(sorted(replay(&shuffled)), sorted(replay(&log)));
    }
}

/// Applies `log` to `f`, one instant at a time.
fn apply(f: &mut Harness, log: &[(Time, Observation)]) {
    for instant in log.chunk_by(|a, b| a.0 == b.0) {
        let batch: Vec<&Observation> = instant.iter().map(|(_, o)| o).collect();
        f.report_instant(instant[0].0, &batch);
    }
}

/// Lets two hours pass and returns every record, subjects brought up to date.
fn finish(f: &mut Harness, log: &[(Time, Observation)]) -> Vec<Divergence> {
    let end = log.last().map_or(at("0s"), |(t, _)| *t);
    f.driver.tick(end.add(std::time::Duration::from_secs(7200)));
    f.engine_mut().refresh_open_subjects();
    f.engine().divergences().to_vec()
}

/// Writes a checkpoint of `f` and loads it back into a new harness.
fn restart_from_checkpoint(f: &Harness) -> Harness {
    let bytes = f.engine().checkpoint();
    // A copy encoded elsewhere (as the server does) writes the same bytes.
    assert!(
        f.engine().snapshot().encode() == bytes,
        "a snapshot encodes as the engine"
    );
    let engine = Engine::from_checkpoint(EngineConfig::default(), &bytes, Some(intent(INTENT)))
        .unwrap_or_else(|e| panic!("{e}"));
    // Loading and writing again gives the same bytes: nothing was lost.
    let again = engine.checkpoint();
    if let Some(i) = (0..again.len().min(bytes.len())).find(|&i| again[i] != bytes[i]) {
        panic!(
            "a loaded checkpoint writes other bytes from offset {i} of {}: {:?} vs {:?}",
            bytes.len(),
            &bytes[i.saturating_sub(40)..(i + 20).min(bytes.len())],
            &again[i.saturating_sub(40)..(i + 20).min(again.len())]
        );
    }
    assert_eq!(
        again.len(),
        bytes.len(),
        "a loaded checkpoint writes as many bytes"
    );
    Harness::with_engine(engine)
}

proptest! {
    #![proptest_config(config())]

    /// A checkpoint written at any point, loaded, and fed the rest of the
    /// log, is the same engine (byte for byte) with the same divergences as
    /// one that took the whole log.
    #[test]
    fn a_checkpoint_and_the_rest_of_the_log_give_the_same_engine(
        steps in prop::collection::vec(step(), 1..60),
        cut in any::<prop::sample::Index>(),
    ) {
        let log = log(&steps);
        // Cut between instants (the server checkpoints between batches).
        let mut cut = cut.index(log.len() + 1);
        while cut > 0 && cut < log.len() && log[cut - 1].0 == log[cut].0 {
            cut -= 1;
        }
        let mut whole = Harness::new(INTENT);
        apply(&mut whole, &log);

        let mut before = Harness::new(INTENT);
        apply(&mut before, &log[..cut]);
        let mut after = restart_from_checkpoint(&before);
        apply(&mut after, &log[cut..]);

        prop_assert!(after.engine().checkpoint() == whole.engine().checkpoint(), "the engines differ");
        prop_assert_eq!(finish(&mut after, &log), finish(&mut whole, &log));
        prop_assert!(after.engine().checkpoint() == whole.engine().checkpoint(), "the engines differ after two hours");
    }

    /// After a restart from a checkpoint, re-sending a member's last `seq`
    /// is still a duplicate.
    #[test]
    fn a_resent_seq_is_a_duplicate_after_a_checkpoint(steps in prop::collection::vec(step(), 1..60)) {
        let log = log(&steps);
        let mut f = Harness::new(INTENT);
        apply(&mut f, &log);
        let mut restored = restart_from_checkpoint(&f);
        let last = log.iter().rev().find(|(_, o)| o.seq.is_some()).cloned();
        if let Some((t, obs)) = last {
            prop_assert_eq!(restored.report_obs(t, &obs), Outcome::Duplicate);
        }
    }
}

#[test]
fn a_checkpoint_of_another_format_is_refused_with_its_number() {
    let f = Harness::new(INTENT);
    let mut bytes = f.engine().checkpoint();
    bytes[0] = 99;
    let err = Engine::from_checkpoint(EngineConfig::default(), &bytes, None)
        .err()
        .expect("refused");
    assert_eq!(
        err,
        CheckpointError::UnknownFormat {
            found: 99,
            supported: CHECKPOINT_FORMAT
        }
    );
    assert!(err.to_string().contains("format 99"), "{err}");
    let truncated = &f.engine().checkpoint()[..3];
    assert!(matches!(
        Engine::from_checkpoint(EngineConfig::default(), truncated, None),
        Err(CheckpointError::Corrupt(_))
    ));
}

/// Reorders members inside each timestamp by `keys`; one member's own reports
/// keep their order.
fn shuffle_within_timestamps(
    log: &[(Time, Observation)],
    keys: &[u32],
) -> Vec<(Time, Observation)> {
    let mut shuffled = Vec::with_capacity(log.len());
    let mut i = 0;
    while i < log.len() {
        let mut j = i;
        while j < log.len() && log[j].0 == log[i].0 {
            j += 1;
        }
        let mut group: Vec<_> = log[i..j].to_vec();
        group.sort_by_key(|(_, o)| {
            let m = MEMBERS
                .iter()
                .position(|(s, m)| *s == o.service && *m == o.member)
                .unwrap_or(0);
            keys[m]
        });
        shuffled.extend(group);
        i = j;
    }
    shuffled
}

/// Format 1 ends where format 2's signals (canary traffic, replica
/// positions) begin: it loads, with none.
#[test]
fn a_checkpoint_of_format_one_still_loads() {
    let mut f = Harness::bare();
    f.report(
        "0s",
        json!({"service": "web", "member": "w1", "seq": 1, "facets": {"version": "1"}}),
    );
    f.report(
        "5s",
        json!({"service": "web", "member": "w2", "seq": 1, "facets": {"version": "2"}}),
    );
    let bytes = f.engine().checkpoint();
    assert_eq!(bytes[0], 2, "format 2 is one varint byte");
    // The signals: canaries, replicas, unapproved exposure, breakdowns; none.
    const EMPTY_SIGNALS: usize = 4;
    assert_eq!(&bytes[bytes.len() - EMPTY_SIGNALS..], [0; EMPTY_SIGNALS]);
    let mut v1 = vec![1u8];
    v1.extend_from_slice(&bytes[1..bytes.len() - EMPTY_SIGNALS]);
    let engine = Engine::from_checkpoint(EngineConfig::default(), &v1, None)
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        engine.checkpoint() == bytes,
        "format 1 loads as the same engine"
    );
}
