//! Property: any stream posted to `coherd serve` over HTTP, in requests that
//! each hold whole instants in any order, gives the divergences `coherd
//! replay` gives on the same stream. Both feed the engine through one driver;
//! this pins that the server's batching and clock policy add nothing.

#![allow(unused_crate_dependencies)] // a test target sees every dev-dependency of its package

mod common;

use common::{Server, replay_divergences, request, temp_dir};
use proptest::prelude::*;
use serde_json::{Value, json};

const INTENT: &str = "
services:
  web:
    report_interval: 10s
    facets:
      version: {target: \"2\", compatible: [\"1\"], rollout_window: 20s}
    phases:
      agreement_timeout: 5s
      max_flips_per_hour: 2
      hold: 30s
    leases:
      leader: {exclusive: true}
  lb:
    report_interval: 10s
";

const MEMBERS: [(&str, &str); 4] = [("web", "w1"), ("web", "w2"), ("web", "w3"), ("lb", "lb1")];
const VERSIONS: [&str; 3] = ["1", "2", "x"];
const PHASES: [&str; 4] = ["starting", "ready", "draining", "stopped"];

/// One random report.
#[derive(Debug, Clone)]
struct Step {
    /// Seconds after the previous step (0: the same instant).
    dt: u8,
    member: usize,
    version: Option<usize>,
    phase: Option<usize>,
    /// The lb's view of a web member's phase; a web member's lease epoch.
    extra: Option<(usize, usize)>,
}

fn step() -> impl Strategy<Value = Step> {
    (
        prop_oneof![Just(0u8), 1u8..4, Just(12u8)],
        0..MEMBERS.len(),
        proptest::option::of(0..VERSIONS.len()),
        proptest::option::of(0..PHASES.len()),
        proptest::option::of((0..3usize, 0..PHASES.len())),
    )
        .prop_map(|(dt, member, version, phase, extra)| Step {
            dt,
            member,
            version,
            phase,
            extra,
        })
}

/// The stream as NDJSON lines with times from `base` (seconds since the epoch).
fn lines(steps: &[Step], base: i64) -> Vec<(i64, String)> {
    let time = |s: i64| jiff::Timestamp::from_second(base + s).unwrap().to_string();
    let mut seq = [0u64; MEMBERS.len()];
    let mut t = 0i64;
    steps
        .iter()
        .map(|s| {
            t += i64::from(s.dt);
            seq[s.member] += 1;
            let (service, member) = MEMBERS[s.member];
            let mut facets = serde_json::Map::new();
            if let Some(v) = s.version {
                facets.insert("version".into(), VERSIONS[v].into());
            }
            if let Some(p) = s.phase {
                facets.insert("phase".into(), PHASES[p].into());
            }
            let mut o = json!({
                "service": service, "member": member, "seq": seq[s.member],
                "time": time(t), "facets": facets,
            });
            match (service, s.extra) {
                ("lb", Some((m, p))) => {
                    o["views"] = json!({format!("web/w{}", m + 1): {"phase": PHASES[p]}});
                }
                ("web", Some((_, epoch))) => {
                    o["leases"] = json!([{"resource": "leader", "epoch": epoch + 1, "expires": time(t + 15)}]);
                }
                _ => {}
            }
            (t, o.to_string())
        })
        .collect()
}

/// What both sides must agree on, per episode.
fn key(d: &Value) -> Value {
    json!([
        d["id"],
        d["severity"],
        d["subjects"],
        d["opened_at"],
        d["resolved_at"],
        d["reopens"]
    ])
}

fn served(steps: &[Step], sizes: &[usize], shuffle: u64) -> (Vec<Value>, Vec<Value>) {
    // Within max_report_age (10m) of now, and never ahead of it: 40 steps of at most 12 s.
    let base = jiff::Timestamp::now().as_second() - 520;
    let mut stream = lines(steps, base);
    // A last report of another service half a second on, so the server's clock
    // moves past the stream's end the way replay's final tick does. Every
    // deadline here falls on a whole second, so none is due at exactly its time.
    let end = stream.last().map_or(0, |l| l.0) + 1;
    let sentinel = json!({"service": "sentinel", "member": "s", "time":
        jiff::Timestamp::from_millisecond((base + end) * 1000 - 500).unwrap().to_string()});
    stream.push((end, sentinel.to_string()));

    let dir = temp_dir("ingest-replay");
    std::fs::write(dir.join("intent.yaml"), INTENT).unwrap();
    std::fs::write(
        dir.join("stream.ndjson"),
        stream
            .iter()
            .map(|l| l.1.clone() + "\n")
            .collect::<String>(),
    )
    .unwrap();
    let intent = dir.join("intent.yaml").display().to_string();
    let server = Server::start(&dir, &["--intent", &intent]);

    // Whole instants per request, a few instants in one, in a shuffled order.
    let instants: Vec<&[(i64, String)]> = stream.chunk_by(|a, b| a.0 == b.0).collect();
    let mut rng = fastrand::Rng::with_seed(shuffle);
    let mut i = 0;
    for &size in sizes.iter().cycle() {
        if i >= instants.len() {
            break;
        }
        let take = size.min(instants.len() - i);
        let mut body: Vec<&str> = instants[i..i + take]
            .iter()
            .flat_map(|inst| inst.iter().map(|l| l.1.as_str()))
            .collect();
        rng.shuffle(&mut body);
        let (status, text) = request(
            "POST",
            &format!("{}/v1/observations", server.url),
            &[("Content-Type", "application/x-ndjson")],
            body.join("\n").as_bytes(),
        )
        .unwrap();
        assert_eq!(status, 200, "{text}");
        i += take;
    }
    let (status, text) = request(
        "GET",
        &format!("{}/v1/divergences?state=all", server.url),
        &[],
        b"",
    )
    .unwrap();
    assert_eq!(status, 200, "{text}");
    let mut served: Vec<Value> = serde_json::from_str::<Value>(&text)
        .unwrap()
        .as_array()
        .unwrap()
        .iter()
        .map(key)
        .collect();

    let mut replayed: Vec<Value> =
        replay_divergences(&dir.join("intent.yaml"), &dir.join("stream.ndjson"))
            .iter()
            .map(key)
            .collect();
    let order = |v: &mut Vec<Value>| v.sort_by_key(|k| (k[3].to_string(), k[0].to_string()));
    order(&mut served);
    order(&mut replayed);
    let _ = std::fs::remove_dir_all(&dir);
    (served, replayed)
}

proptest! {
    // Each case starts a server: a few cases cover the batching; the engine's
    // own property tests cover the detection logic in depth.
    #![proptest_config(ProptestConfig { cases: 6, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn http_ingest_gives_what_replay_gives(
        steps in proptest::collection::vec(step(), 10..40),
        sizes in proptest::collection::vec(1usize..4, 1..4),
        shuffle in any::<u64>(),
    ) {
        let (served, replayed) = served(&steps, &sizes, shuffle);
        prop_assert_eq!(served, replayed);
    }
}
