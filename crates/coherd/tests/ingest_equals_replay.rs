//! Property: whatever is posted to `coherd serve` over HTTP, in requests of
//! any size and order, the divergences the server gives are the ones `coherd
//! replay` gives on `coherd capture export` of its database, and the ones the
//! server gives again after a restart rebuilt it from that database. All three
//! feed the engine through one driver at the instants the server stamped;
//! this pins that the server's batching and clock add nothing.

#![allow(unused_crate_dependencies)] // a test target sees every dev-dependency of its package

mod common;

use common::{Server, replay_divergences, request, temp_dir};
use proptest::prelude::*;
use serde_json::{Value, json};

// Every timeout is far longer than a case takes, so no deadline falls between
// the last report and the reads that are compared.
const INTENT: &str = "
services:
  web:
    report_interval: 60s
    facets:
      version: {target: \"2\", compatible: [\"1\"], rollout_window: 5m}
    phases:
      agreement_timeout: 5m
      max_flips_per_hour: 2
      hold: 5m
    leases:
      leader: {exclusive: true}
  lb:
    report_interval: 60s
";

const MEMBERS: [(&str, &str); 4] = [("web", "w1"), ("web", "w2"), ("web", "w3"), ("lb", "lb1")];
const VERSIONS: [&str; 3] = ["1", "2", "x"];
const PHASES: [&str; 4] = ["starting", "ready", "draining", "stopped"];

/// One random report.
#[derive(Debug, Clone)]
struct Step {
    member: usize,
    version: Option<usize>,
    phase: Option<usize>,
    /// The lb's view of a web member's phase; a web member's lease epoch.
    extra: Option<(usize, usize)>,
}

fn step() -> impl Strategy<Value = Step> {
    (
        0..MEMBERS.len(),
        proptest::option::of(0..VERSIONS.len()),
        proptest::option::of(0..PHASES.len()),
        proptest::option::of((0..3usize, 0..PHASES.len())),
    )
        .prop_map(|(member, version, phase, extra)| Step {
            member,
            version,
            phase,
            extra,
        })
}

/// The stream as NDJSON lines; lease expiries an hour on, so leases are held.
fn lines(steps: &[Step]) -> Vec<String> {
    let expires = (jiff::Timestamp::now() + jiff::SignedDuration::from_hours(1)).to_string();
    let mut seq = [0u64; MEMBERS.len()];
    steps
        .iter()
        .map(|s| {
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
                "service": service, "member": member, "seq": seq[s.member], "facets": facets,
            });
            match (service, s.extra) {
                ("lb", Some((m, p))) => {
                    o["views"] = json!({format!("web/w{}", m + 1): {"phase": PHASES[p]}});
                }
                ("web", Some((_, epoch))) => {
                    o["leases"] =
                        json!([{"resource": "leader", "epoch": epoch + 1, "expires": expires}]);
                }
                _ => {}
            }
            o.to_string()
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

/// Every episode the server gives, ordered.
fn divergences(server: &Server) -> Vec<Value> {
    let (status, text) = request(
        "GET",
        &format!("{}/v1/divergences?state=all", server.url),
        &[],
        b"",
    )
    .unwrap();
    assert_eq!(status, 200, "{text}");
    ordered(
        serde_json::from_str::<Value>(&text)
            .unwrap()
            .as_array()
            .unwrap(),
    )
}

fn ordered(list: &[Value]) -> Vec<Value> {
    let mut keys: Vec<Value> = list.iter().map(key).collect();
    keys.sort_by_key(|k| (k[3].to_string(), k[0].to_string()));
    keys
}

/// (served, served after a restart, replayed from the export).
fn served(steps: &[Step], sizes: &[usize], shuffle: u64) -> (Vec<Value>, Vec<Value>, Vec<Value>) {
    let stream = lines(steps);
    let dir = temp_dir("ingest-replay");
    std::fs::write(dir.join("intent.yaml"), INTENT).unwrap();
    let intent = dir.join("intent.yaml").display().to_string();
    let mut server = Server::start(&dir, &["--intent", &intent]);

    // Requests of a few reports each, shuffled within the request.
    let mut rng = fastrand::Rng::with_seed(shuffle);
    let mut i = 0;
    for &size in sizes.iter().cycle() {
        if i >= stream.len() {
            break;
        }
        let take = size.min(stream.len() - i);
        let mut body: Vec<&str> = stream[i..i + take].iter().map(String::as_str).collect();
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
    let served = divergences(&server);
    server.kill_and_restart();
    let restarted = divergences(&server);
    drop(server);

    let export = dir.join("export.ndjson");
    common::export_capture(&dir, &export);
    let replayed = ordered(&replay_divergences(None, &export));
    let _ = std::fs::remove_dir_all(&dir);
    (served, restarted, replayed)
}

proptest! {
    // Each case starts a server: a few cases cover the batching; the engine's
    // own property tests cover the detection logic in depth.
    #![proptest_config(ProptestConfig { cases: 6, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn http_ingest_gives_what_replay_gives(
        steps in proptest::collection::vec(step(), 10..40),
        sizes in proptest::collection::vec(1usize..6, 1..4),
        shuffle in any::<u64>(),
    ) {
        let (served, restarted, replayed) = served(&steps, &sizes, shuffle);
        prop_assert_eq!(&served, &restarted);
        prop_assert_eq!(served, replayed);
    }
}
