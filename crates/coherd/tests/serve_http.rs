//! Black-box tests of `coherd serve` over HTTP: shapes, bad input, auth,
//! and durability across SIGKILL.

#![allow(unused_crate_dependencies)] // a test target sees every dev-dependency of its package

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{Server, get_json, post_json, replay_divergences, request, temp_dir};
use serde_json::{Value, json};

const INTENT: &str = "services:\n  checkout:\n    facets:\n      version: {target: \"1.4.2\", compatible: [\"1.4.1\"], rollout_window: 30m}\n    leases:\n      scheduler: {exclusive: true}\n";

fn start_with_intent(name: &str) -> Server {
    let dir = temp_dir(name);
    std::fs::write(dir.join("intent.yaml"), INTENT).unwrap();
    let intent = dir.join("intent.yaml").display().to_string();
    Server::start(&dir, &["--intent", &intent])
}

fn snapshot(s: &Server) -> (Value, Value) {
    (
        get_json(&format!("{}/v1/services", s.url)),
        get_json(&format!(
            "{}/v1/services/checkout/members?limit=1000",
            s.url
        )),
    )
}

#[test]
fn endpoints_answer_with_the_design_shapes() {
    let s = start_with_intent("shapes");
    let (status, body) = post_json(
        &format!("{}/v1/observations", s.url),
        r#"[{"service":"checkout","member":"a","seq":1,"facets":{"version":"1.4.2","phase":"ready"}},
            {"service":"checkout","member":"b","seq":1,"facets":{"version":"0.9.0","phase":"ready"}}]"#,
    );
    assert_eq!(
        (status, body.clone()),
        (200, json!({"accepted": 2, "duplicates": 0, "rejected": []})),
        "{body}"
    );
    let (status, body) = post_json(
        &format!("{}/v1/observations", s.url),
        r#"{"service":"checkout","member":"a","seq":1}"#,
    );
    assert_eq!(
        (status, body),
        (200, json!({"accepted": 0, "duplicates": 1, "rejected": []}))
    );

    let services = get_json(&format!("{}/v1/services", s.url));
    assert_eq!(
        services,
        json!([{"service": "checkout", "members": 2, "live": 2, "coherence": 0.5, "open_divergences": 2}])
    );

    let svc = get_json(&format!("{}/v1/services/checkout", s.url));
    let mut version = svc["facets"]["version"].clone();
    assert!(
        version["target_since"].is_string(),
        "when the target took force: {version}"
    );
    version.as_object_mut().unwrap().remove("target_since");
    assert_eq!(
        version,
        json!({"target": "1.4.2", "values": {"1.4.2": 1, "0.9.0": 1}})
    );
    assert!(svc["slis"]["coherence"].is_number(), "{svc}");
    assert_eq!(svc["open_divergences"].as_array().map(Vec::len), Some(2));

    let members = get_json(&format!(
        "{}/v1/services/checkout/members?state=live",
        s.url
    ));
    assert_eq!(members["total"], 2);
    assert_eq!(members["members"][1]["member"], "b");
    assert_eq!(members["members"][1]["facets"]["version"], "0.9.0");

    let divs = get_json(&format!(
        "{}/v1/divergences?service=checkout&kind=drift&state=open",
        s.url
    ));
    let d = &divs[0];
    for field in [
        "id",
        "service",
        "kind",
        "severity",
        "subjects",
        "evidence",
        "opened_at",
        "last_seen_at",
        "resolved_at",
    ] {
        assert!(d.get(field).is_some(), "{field} missing in {d}");
    }
    assert_eq!(
        (d["kind"].as_str(), d["severity"].as_str(), &d["subjects"]),
        (Some("drift"), Some("critical"), &json!(["b"]))
    );

    let intent = get_json(&format!("{}/v1/intent", s.url));
    assert_eq!(intent["source"], INTENT);
    assert!(
        get_json(&format!("{}/v1/openapi.json", s.url))["paths"]["/v1/observations"].is_object()
    );
    let (status, metrics) = request("GET", &format!("{}/metrics", s.url), &[], b"").unwrap();
    assert_eq!(status, 200);
    assert!(
        metrics.contains("coherd_ingest_observations_total 2"),
        "{metrics}"
    );
    assert!(metrics.contains("coherd_divergences_open{"), "{metrics}");
}

#[test]
fn bad_inputs_get_a_clear_4xx_and_store_nothing() {
    let s = start_with_intent("bad");
    let url = format!("{}/v1/observations", s.url);
    let (status, _) = post_json(
        &url,
        r#"{"service":"checkout","member":"a","seq":5,"facets":{"version":"1.4.2"}}"#,
    );
    assert_eq!(status, 200);
    let before = snapshot(&s);

    let future = jiff::Timestamp::now()
        .checked_add(jiff::SignedDuration::from_secs(2 * 86_400))
        .unwrap()
        .to_string();
    // (what, headers, body, status, words in the message)
    type Case<'a> = (&'a str, Vec<(&'a str, &'a str)>, String, u16, &'a str);
    let cases: Vec<Case> = vec![
        ("malformed JSON", vec![("Content-Type", "application/json")], "{\"service\":".into(), 400, "malformed JSON"),
        ("wrong content type", vec![("Content-Type", "text/csv")], "a,b".into(), 415, "Content-Type"),
        ("unknown field", vec![("Content-Type", "application/json")], r#"{"service":"checkout","member":"a","facet":{}}"#.into(), 422, "unknown field `facet`"),
        (
            "one bad item makes the batch atomic",
            vec![("Content-Type", "application/x-ndjson")],
            "{\"service\":\"checkout\",\"member\":\"z\",\"seq\":9}\n{\"service\":\"Bad Name\",\"member\":\"y\"}\n".into(),
            422,
            "invalid service name",
        ),
        ("beyond max_future", vec![("Content-Type", "application/json")], format!(r#"{{"service":"checkout","member":"a","seq":6,"time":"{future}"}}"#), 422, "ahead of the server's clock"),
        ("too old", vec![("Content-Type", "application/json")], r#"{"service":"checkout","member":"a","seq":6,"time":"2020-01-01T00:00:00Z"}"#.into(), 422, "too old"),
        ("too large", vec![("Content-Type", "application/json")], format!("[{}]", vec![r#"{"service":"checkout","member":"a"}"#; 40_000].join(",")), 413, "larger than"),
        ("empty", vec![("Content-Type", "application/json")], "[]".into(), 400, "no observations"),
    ];
    for (what, headers, body, want, needle) in cases {
        let (status, text) = request("POST", &url, &headers, body.as_bytes()).unwrap();
        assert_eq!(status, want, "{what}: {text}");
        assert!(text.contains(needle), "{what}: {text}");
    }
    let (status, text) = request("POST", &url, &[("Content-Type", "application/x-ndjson")], b"{\"service\":\"checkout\",\"member\":\"z\"}\n{\"service\":\"Bad Name\",\"member\":\"y\"}\n").unwrap();
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        (status, &v["errors"][0]["index"], &v["errors"][0]["field"]),
        (422, &json!(1), &json!("service"))
    );

    let (status, text) = request("GET", &format!("{}/v1/services/nope", s.url), &[], b"").unwrap();
    assert_eq!(status, 404, "{text}");
    assert!(text.contains("unknown service"));
    let (status, text) = request(
        "GET",
        &format!("{}/v1/divergences?kind=meteor", s.url),
        &[],
        b"",
    )
    .unwrap();
    assert_eq!(status, 400, "{text}");
    let (status, text) = request(
        "PUT",
        &format!("{}/v1/intent", s.url),
        &[],
        b"services:\n  checkout:\n    facetz: {}\n",
    )
    .unwrap();
    assert_eq!(status, 409, "{text}");
    assert!(text.contains("managed by the file"), "{text}");
    let log = std::fs::read_to_string(s.dir.join("serve.log")).unwrap();
    assert!(
        log.contains("PUT /v1/intent refused"),
        "the refusal is logged"
    );
    assert_eq!(
        get_json(&format!("{}/v1/intent", s.url))["source"],
        INTENT,
        "the old intent stays in force"
    );

    assert_eq!(snapshot(&s), before, "bad input changed the stored state");
    let (status, body) = post_json(&url, r#"{"service":"checkout","member":"a","seq":6}"#);
    assert_eq!(
        (status, body),
        (200, json!({"accepted": 1, "duplicates": 0, "rejected": []})),
        "the server still works"
    );
}

/// Clock trouble is a signal (DESIGN 2.1): a skewed item is applied at its
/// receive time and opens `clock_skew`; an item beyond the hard bounds is
/// refused alone; the rest of the batch is stored.
#[test]
fn a_batch_with_a_skewed_item_is_stored_and_the_skew_opens_clock_skew() {
    let s = start_with_intent("skew");
    let url = format!("{}/v1/observations", s.url);
    let ahead = |secs: i64| {
        jiff::Timestamp::now()
            .checked_add(jiff::SignedDuration::from_secs(secs))
            .unwrap()
            .to_string()
    };
    let body = format!(
        "{{\"service\":\"checkout\",\"member\":\"a\",\"seq\":1,\"facets\":{{\"version\":\"1.4.2\"}}}}\n\
         {{\"service\":\"checkout\",\"member\":\"b\",\"seq\":1,\"time\":\"{}\",\"facets\":{{\"version\":\"1.4.2\"}}}}\n\
         {{\"service\":\"checkout\",\"member\":\"c\",\"seq\":1,\"time\":\"{}\"}}\n",
        ahead(300),
        ahead(3 * 86_400)
    );
    let (status, text) = request(
        "POST",
        &url,
        &[("Content-Type", "application/x-ndjson")],
        body.as_bytes(),
    )
    .unwrap();
    assert_eq!(status, 200, "{text}");
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["accepted"], 2, "{v}");
    assert_eq!(v["rejected"].as_array().unwrap().len(), 1, "{v}");
    assert_eq!(v["rejected"][0]["index"], 2);
    assert_eq!(v["rejected"][0]["field"], "time");
    assert!(
        v["rejected"][0]["message"]
            .as_str()
            .unwrap()
            .contains("max_future"),
        "{v}"
    );

    let members = get_json(&format!("{}/v1/services/checkout/members", s.url));
    let names: Vec<&str> = members["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["member"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["a", "b"], "{members}");
    let skew = get_json(&format!("{}/v1/divergences?kind=clock_skew", s.url));
    let list = skew.as_array().unwrap();
    assert_eq!(list.len(), 1, "{skew}");
    assert_eq!(list[0]["id"], "clock_skew:checkout:b");
    assert_eq!(list[0]["severity"], "warning");
    let offset = list[0]["evidence"]["offset_s"].as_f64().unwrap();
    assert!((290.0..=301.0).contains(&offset), "{offset}");
    // Applied at its receive time: the member is live and its last report is now.
    let b = &members["members"][1];
    assert_eq!(b["state"], "live", "{b}");
    assert_eq!(b["open_divergences"], 1, "{b}");

    // The member's clock is fixed: its next report resolves the skew.
    let (status, _) = post_json(&url, r#"{"service":"checkout","member":"b","seq":2}"#);
    assert_eq!(status, 200);
    let skew = get_json(&format!(
        "{}/v1/divergences?kind=clock_skew&state=open",
        s.url
    ));
    assert_eq!(skew.as_array().unwrap().len(), 0, "{skew}");
}

#[test]
fn tokens_are_enforced_by_scope() {
    let dir = temp_dir("tokens");
    std::fs::write(
        dir.join("coherd.yaml"),
        "tokens:\n  - {token: reporter-token-0123456789, scopes: [report]}\n  - {token: reader-token-0123456789, scopes: [read]}\n",
    )
    .unwrap();
    let config = dir.join("coherd.yaml").display().to_string();
    let s = Server::start(&dir, &["--config", &config]);
    let obs = br#"{"service":"checkout","member":"a"}"#;
    let url = format!("{}/v1/observations", s.url);
    let ct = ("Content-Type", "application/json");
    assert_eq!(request("POST", &url, &[ct], obs).unwrap().0, 401);
    assert_eq!(
        request(
            "POST",
            &url,
            &[ct, ("Authorization", "Bearer wrong-token-0123456789")],
            obs
        )
        .unwrap()
        .0,
        401
    );
    assert_eq!(
        request(
            "POST",
            &url,
            &[ct, ("Authorization", "Bearer reader-token-0123456789")],
            obs
        )
        .unwrap()
        .0,
        403
    );
    assert_eq!(
        request(
            "POST",
            &url,
            &[ct, ("Authorization", "Bearer reporter-token-0123456789")],
            obs
        )
        .unwrap()
        .0,
        200
    );
    let services = format!("{}/v1/services", s.url);
    assert_eq!(request("GET", &services, &[], b"").unwrap().0, 401);
    assert_eq!(
        request(
            "GET",
            &services,
            &[("Authorization", "Bearer reporter-token-0123456789")],
            b""
        )
        .unwrap()
        .0,
        403
    );
    assert_eq!(
        request(
            "GET",
            &services,
            &[("Authorization", "Bearer reader-token-0123456789")],
            b""
        )
        .unwrap()
        .0,
        200
    );
    let log = std::fs::read_to_string(dir.join("serve.log")).unwrap();
    assert!(!log.contains("token-0123456789"), "a token reached the log");
}

#[test]
fn no_tokens_means_loopback_only() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_coherd"))
        .args(["serve", "--listen", "0.0.0.0:0", "--db"])
        .arg(temp_dir("open").join("c.db"))
        .env_remove("COHERD_TOKEN_ADMIN")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("without tokens"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Several clients post batches; SIGKILL lands at a random moment; after a
/// restart every acknowledged observation is there, and the open divergences
/// are the same as before a second SIGKILL.
#[test]
fn sigkill_loses_no_acknowledged_observation() {
    let mut s = start_with_intent("kill");
    let url = format!("{}/v1/observations", s.url);
    let acked: Arc<Mutex<BTreeMap<String, u64>>> = Arc::default();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let clients: Vec<_> = (0..4)
        .map(|c| {
            let (url, acked, stop) = (url.clone(), acked.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut seq = 0u64;
                while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                    seq += 1;
                    let version = if c == 3 && seq.is_multiple_of(2) { "0.9.0" } else { "1.4.2" };
                    let body: Vec<String> = (0..25)
                        .map(|m| format!(r#"{{"service":"checkout","member":"c{c}-m{m}","seq":{seq},"facets":{{"version":"{version}","phase":"ready"}}}}"#))
                        .collect();
                    match request("POST", &url, &[("Content-Type", "application/x-ndjson")], body.join("\n").as_bytes()) {
                        Ok((200, _)) => {
                            let mut a = acked.lock().unwrap();
                            for m in 0..25 {
                                a.insert(format!("c{c}-m{m}"), seq);
                            }
                        }
                        _ => std::thread::sleep(Duration::from_millis(5)),
                    }
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(fastrand::u64(300..1500)));
    s.kill9();
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    for c in clients {
        c.join().unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    assert!(
        !acked.is_empty(),
        "no batch was acknowledged before the kill"
    );
    s.kill_and_restart();
    let members = get_json(&format!(
        "{}/v1/services/checkout/members?limit=1000",
        s.url
    ));
    let stored: BTreeMap<String, u64> = members["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["member"].as_str().unwrap().to_string(),
                m["seq"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    for (member, seq) in &acked {
        assert!(
            stored.get(member).is_some_and(|s| s >= seq),
            "{member}: acknowledged seq {seq}, stored {:?}",
            stored.get(member)
        );
    }

    // Quiet now: what is open survives another SIGKILL.
    let (status, _) = post_json(
        &url,
        r#"{"service":"checkout","member":"rogue","facets":{"version":"0.1.0"},"leases":[{"resource":"scheduler","epoch":1,"expires":"2099-01-01T00:00:00Z"}]}"#,
    );
    assert_eq!(status, 200);
    let open = |s: &Server| {
        let v = get_json(&format!("{}/v1/divergences?state=open", s.url));
        let mut ids: Vec<(String, String)> = v
            .as_array()
            .unwrap()
            .iter()
            .map(|d| {
                (
                    d["id"].as_str().unwrap().to_string(),
                    d["opened_at"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        ids.sort();
        ids
    };
    let before = open(&s);
    assert!(
        before
            .iter()
            .any(|(id, _)| id == "drift:checkout:rogue:version"),
        "{before:?}"
    );
    s.kill_and_restart();
    assert_eq!(open(&s), before);
}

/// What a server applied, exported with `coherd capture export`, replays to
/// the divergences the server gave: every kind the stream raises, at the
/// instants the server's clock gave them.
#[test]
fn an_exported_capture_replays_to_what_the_server_gave() {
    let intent = format!("{INTENT}    phases:\n      agreement_timeout: 1s\n  lb: {{}}\n");
    let expires = (jiff::Timestamp::now() + jiff::SignedDuration::from_hours(1)).to_string();
    let requests = [
        vec![
            r#"{"service":"checkout","member":"a","seq":1,"facets":{"version":"1.4.2","phase":"ready"},"counters":{"requests":1}}"#.to_string(),
            r#"{"service":"checkout","member":"b","seq":1,"facets":{"version":"1.4.2","phase":"ready"}}"#.into(),
            r#"{"service":"checkout","member":"c","seq":1,"facets":{"version":"0.9.0","phase":"ready"}}"#.into(),
            r#"{"service":"lb","member":"lb1","seq":1,"views":{"checkout/a":{"phase":"ready"}}}"#.into(),
        ],
        vec![r#"{"service":"checkout","member":"a","seq":2,"facets":{"phase":"draining"},"counters":{"requests":5}}"#.into()],
        // After the agreement timeout: the balancer still routes to a draining member.
        vec![r#"{"service":"lb","member":"lb1","seq":2,"views":{"checkout/a":{"phase":"ready"}}}"#.into()],
        vec![
            format!(r#"{{"service":"checkout","member":"a","seq":3,"counters":{{"requests":9}},"leases":[{{"resource":"scheduler","epoch":2,"expires":"{expires}"}}]}}"#),
            format!(r#"{{"service":"checkout","member":"b","seq":2,"leases":[{{"resource":"scheduler","epoch":1,"expires":"{expires}"}}]}}"#),
        ],
        vec![r#"{"service":"checkout","member":"c","seq":2,"facets":{"version":"1.4.2"}}"#.into()],
        vec![
            r#"{"service":"checkout","member":"a","seq":4,"facets":{"phase":"stopped"}}"#.into(),
            r#"{"service":"checkout","member":"b","seq":3,"facets":{"phase":"starting"}}"#.into(),
        ],
    ];
    let dir = temp_dir("capture-replay");
    std::fs::write(dir.join("intent.yaml"), intent).unwrap();
    let path = dir.join("intent.yaml").display().to_string();
    let s = Server::start(&dir, &["--intent", &path]);
    for (i, body) in requests.iter().enumerate() {
        if i == 2 {
            std::thread::sleep(Duration::from_millis(1500));
        }
        let (status, text) = request(
            "POST",
            &format!("{}/v1/observations", s.url),
            &[("Content-Type", "application/x-ndjson")],
            body.join("\n").as_bytes(),
        )
        .unwrap();
        assert_eq!(status, 200, "{text}");
    }
    let key = |d: &Value| {
        (
            d["opened_at"].as_str().unwrap().to_string(),
            d["id"].as_str().unwrap().to_string(),
            d["severity"].clone(),
            d["subjects"].clone(),
            d["resolved_at"].clone(),
        )
    };
    let served: Vec<_> = get_json(&format!("{}/v1/divergences?state=all", s.url))
        .as_array()
        .unwrap()
        .iter()
        .map(key)
        .collect();
    let export = dir.join("export.ndjson");
    common::export_capture(&dir, &export);
    let replayed: Vec<_> = replay_divergences(None, &export).iter().map(key).collect();
    let kinds: Vec<&str> = replayed
        .iter()
        .map(|k| k.1.split(':').next().unwrap())
        .collect();
    for kind in [
        "drift",
        "mixed",
        "drain_violation",
        "split_brain",
        "stale_epoch",
        "illegal_transition",
    ] {
        assert!(
            kinds.contains(&kind),
            "the stream should raise {kind}: {replayed:?}"
        );
    }
    assert_eq!(served, replayed);
}

/// When the whole fleet stops reporting at once, the wall clock still moves
/// the server's: every member is `silent` 3 x `report_interval` after its last
/// report, not after a grace period.
#[test]
fn a_fleet_that_stops_at_once_goes_silent_on_the_wall_clock() {
    let dir = temp_dir("wall-silent");
    std::fs::write(
        dir.join("intent.yaml"),
        "services:\n  api:\n    report_interval: 1s\n",
    )
    .unwrap();
    let path = dir.join("intent.yaml").display().to_string();
    let s = Server::start(&dir, &["--intent", &path]);
    let body = (1..=3)
        .map(|i| format!(r#"{{"service":"api","member":"m{i}","seq":1}}"#))
        .collect::<Vec<_>>()
        .join("\n");
    let (status, text) = request(
        "POST",
        &format!("{}/v1/observations", s.url),
        &[("Content-Type", "application/x-ndjson")],
        body.as_bytes(),
    )
    .unwrap();
    assert_eq!(status, 200, "{text}");
    // Nothing else reports. Silence is due 3 s on; wait up to 30 s for it.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let silent = loop {
        let open = get_json(&format!("{}/v1/divergences?kind=silent", s.url));
        let members: Vec<String> = open
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["subjects"][0].as_str().unwrap_or("").to_string())
            .collect();
        if members.len() == 3 || std::time::Instant::now() > deadline {
            break members;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let mut silent = silent;
    silent.sort();
    assert_eq!(silent, ["m1", "m2", "m3"], "every member should be silent");
}

/// SIGTERM ends open event streams and the server exits, rather than
/// waiting for every watcher to hang up.
#[test]
fn sigterm_with_a_watcher_connected_exits_promptly() {
    use std::io::{Read, Write};
    let mut s = start_with_intent("sigterm");
    let host = s.url.trim_start_matches("http://").to_string();
    let mut watcher = std::net::TcpStream::connect(&host).unwrap();
    write!(watcher, "GET /v1/stream HTTP/1.1\r\nHost: {host}\r\n\r\n").unwrap();
    let mut head = [0u8; 12];
    watcher.read_exact(&mut head).unwrap();
    assert_eq!(&head[9..12], b"200");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(s.child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = s.child.try_wait().unwrap() {
            break status;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "coherd serve did not exit after SIGTERM with a watcher connected"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "exit status {status}");
}

/// A changed intent file is reloaded; an invalid one is refused and the old
/// intent stays in force; SIGHUP reloads at once.
#[test]
fn intent_file_reloads_on_change_and_sighup() {
    let s = start_with_intent("reload");
    let path = s.dir.join("intent.yaml");
    let wait_for = |want: &str| {
        let deadline = std::time::Instant::now() + Duration::from_secs(15);
        loop {
            let got = get_json(&format!("{}/v1/intent", s.url))["source"]
                .as_str()
                .unwrap_or("")
                .to_string();
            if got == want {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "intent not reloaded; still {got:?}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    };
    std::thread::sleep(Duration::from_millis(1100)); // a new modification time
    std::fs::write(&path, "services:\n  checkout:\n    facetz: {}\n").unwrap();
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        get_json(&format!("{}/v1/intent", s.url))["source"],
        INTENT,
        "an invalid file replaced the intent"
    );
    let log = std::fs::read_to_string(s.dir.join("serve.log")).unwrap();
    assert!(log.contains("facetz"), "the refusal names the error: {log}");
    let next = "services:\n  checkout:\n    facets:\n      version: {target: \"1.5.0\"}\n";
    std::fs::write(&path, next).unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(s.child.id() as i32),
        nix::sys::signal::Signal::SIGHUP,
    )
    .unwrap();
    wait_for(next);
}

/// One server per database: a second one refuses to start and names the
/// process that holds it; once that process is killed, the lock is gone.
#[test]
fn a_second_server_on_a_database_in_use_refuses_to_start() {
    let dir = temp_dir("db-lock");
    let mut first = Server::start(&dir, &[]);
    let second = std::process::Command::new(env!("CARGO_BIN_EXE_coherd"))
        .args(["serve", "--listen", "127.0.0.1:0", "--db"])
        .arg(dir.join("coherd.db"))
        .output()
        .unwrap();
    assert!(!second.status.success());
    let err = String::from_utf8_lossy(&second.stderr);
    assert!(
        err.contains("in use by process") && err.contains(&first.child.id().to_string()),
        "{err}"
    );
    // SIGKILL leaves no stale lock: the same server starts again.
    first.kill_and_restart();
    let listed = get_json(&format!("{}/v1/services", first.url));
    assert!(listed.is_array());
}

/// Every intent change has a revision and an origin; with an intent file the
/// API may change it only when the server was started to accept that, and an
/// invalid one is refused with its line.
#[test]
fn intent_changes_carry_a_revision_and_where_they_came_from() {
    let dir = temp_dir("intent-origin");
    std::fs::write(dir.join("intent.yaml"), INTENT).unwrap();
    std::fs::write(dir.join("coherd.yaml"), "intent_api: true\n").unwrap();
    let intent = dir.join("intent.yaml").display().to_string();
    let config = dir.join("coherd.yaml").display().to_string();
    let mut s = Server::start(&dir, &["--intent", &intent, "--config", &config]);
    let first = get_json(&format!("{}/v1/intent", s.url));
    assert_eq!(first["revision"], 1);
    assert!(
        first["origin"].as_str().unwrap().starts_with("file "),
        "{first}"
    );

    let put = |body: &[u8]| request("PUT", &format!("{}/v1/intent", s.url), &[], body).unwrap();
    let (status, text) = put(b"services:\n  checkout:\n    facetz: {}\n");
    assert_eq!(status, 422, "{text}");
    assert!(text.contains("\"line\":3"), "{text}");
    let (status, text) = put(b"services:\n  checkout: {}\n");
    assert_eq!(status, 200, "{text}");
    let second = get_json(&format!("{}/v1/intent", s.url));
    assert_eq!(second["revision"], 2);
    assert!(
        second["origin"]
            .as_str()
            .unwrap()
            .starts_with("PUT /v1/intent"),
        "{second}"
    );

    // At a restart the file is in force again, and the revision counts on
    // from what the database holds.
    s.kill_and_restart();
    let restored = get_json(&format!("{}/v1/intent", s.url));
    assert_eq!(restored["source"], INTENT);
    assert_eq!(restored["revision"], 3);
    assert!(
        restored["origin"].as_str().unwrap().starts_with("file "),
        "{restored}"
    );
    let log = std::fs::read_to_string(dir.join("serve.log")).unwrap();
    assert!(log.contains("intent changed"), "intent changes are logged");
}

/// An operator can delete a whole service: it and its members are gone, also
/// after a restart, until a member reports again; a service the intent names
/// cannot be deleted, an unknown one is 404.
#[test]
fn a_service_can_be_deleted_and_stays_deleted_across_a_restart() {
    let mut s = start_with_intent("delete-service");
    let url = format!("{}/v1/observations", s.url);
    let (status, body) = post_json(
        &url,
        r#"[{"service":"old","member":"a","seq":1},{"service":"old","member":"b","seq":1}]"#,
    );
    assert_eq!(status, 200, "{body}");
    let delete = |s: &Server, name: &str| {
        request("DELETE", &format!("{}/v1/services/{name}", s.url), &[], b"").unwrap()
    };
    let listed = |s: &Server| -> Vec<String> {
        get_json(&format!("{}/v1/services", s.url))
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x["service"].as_str().unwrap().to_string())
            .collect()
    };
    assert!(listed(&s).contains(&"old".to_string()));
    assert_eq!(delete(&s, "old").0, 204);
    assert!(!listed(&s).contains(&"old".to_string()));
    let (status, _) = request("GET", &format!("{}/v1/services/old", s.url), &[], b"").unwrap();
    assert_eq!(status, 404);
    s.kill_and_restart();
    assert!(!listed(&s).contains(&"old".to_string()), "deleted for good");
    let (status, text) = delete(&s, "checkout");
    assert_eq!(status, 409, "{text}");
    assert!(text.contains("intent names"), "{text}");
    assert_eq!(delete(&s, "never").0, 404);
    // A member reporting again brings the service back, with that member only.
    let (status, body) = post_json(&url, r#"{"service":"old","member":"c","seq":1}"#);
    assert_eq!(status, 200, "{body}");
    let summary = get_json(&format!("{}/v1/services/old", s.url));
    assert_eq!(summary["members"], 1, "{summary}");
}
