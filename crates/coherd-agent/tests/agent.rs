//! The agent's probes and loop against real sockets: a small HTTP endpoint
//! for health and metrics, and a real coherd server in the same process.

#![allow(unused_crate_dependencies)] // a test target sees every dev-dependency of its package

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use coherd_agent::{Agent, AgentConfig};
use coherd_model::Time;
use serde_json::{Value, json};

/// Serves `/health` and `/metrics` from what the test sets.
async fn endpoint(health: Arc<Mutex<String>>) -> String {
    let health2 = health.clone();
    let app = axum::Router::new()
        .route("/health", axum::routing::get(move || async move { health2.lock().unwrap().clone() }))
        .route("/huge", axum::routing::get(|| async { "x".repeat(2 << 20) }))
        .route(
            "/metrics",
            axum::routing::get(|| async {
                "# TYPE req counter\nreq{code=\"200\"} 40\nreq{code=\"500\"} 2\nreq{code=\"200\",path=\"/b\"} 2\n"
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    url
}

fn config(
    server: &str,
    member: &str,
    dir: &std::path::Path,
    facets: Value,
    counters: Value,
) -> AgentConfig {
    serde_json::from_value(json!({
        "server": server, "service": "checkout", "member": member, "poll": "200ms", "report_interval": "30s",
        "state_dir": dir, "timeout": "2s", "facets": facets, "counters": counters,
    }))
    .unwrap()
}

fn temp(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "coherd-agent-{name}-{}-{}",
        std::process::id(),
        fastrand_u64()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn fastrand_u64() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

#[tokio::test]
async fn every_probe_reads_its_source() {
    let health = Arc::new(Mutex::new(
        r#"{"status":"UP","build":{"version":"v1.4.2"}}"#.to_string(),
    ));
    let url = endpoint(health.clone()).await;
    let dir = temp("probes");
    std::fs::write(dir.join("app.conf"), "listen 8080\n").unwrap();
    // SAFETY: set before any thread of this test reads the environment.
    unsafe { std::env::set_var("COHERD_AGENT_TEST_REGION", "eu-west-1") };
    let facets = json!({
        "config": {"file_sha256": dir.join("app.conf")},
        "version": {"command": ["sh", "-c", "echo checkout version v2.0.1 built today"], "regex": "v([0-9.]+)"},
        "region": {"env": "COHERD_AGENT_TEST_REGION"},
        "unset": {"env": "COHERD_AGENT_TEST_NOT_SET"},
        "phase": {"http": format!("{url}/health"), "json_pointer": "/status", "map": {"UP": "ready", "DOWN": "draining"}},
        "build": {"http": format!("{url}/health"), "json_pointer": "/build/version", "regex": "v(.*)"},
        "owner": {"static": "team-a"},
    });
    let counters = json!({"requests": {"prometheus": format!("{url}/metrics"), "metric": "req", "labels": {"code": "200"}}});
    let mut agent =
        Agent::new(config("http://127.0.0.1:9", "c-1", &dir, facets, counters)).unwrap();
    let r = agent.read().await;
    let want: BTreeMap<String, String> = [
        (
            "config",
            "sha256:0083dacc561dfd01081d8554269e201f4b60fe597ab9892977bfde81da46ef60",
        ),
        ("version", "2.0.1"),
        ("region", "eu-west-1"),
        ("phase", "ready"),
        ("build", "1.4.2"),
        ("owner", "team-a"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    assert_eq!(
        r.facets, want,
        "the file's hash as sha256sum gives it; an unset variable is left out"
    );
    assert_eq!(r.counters["requests"], 42.0);
    // Bounded: a body or an output past 1 MiB is refused, and only that facet is left out.
    let bounded = Agent::new(config(
        "http://127.0.0.1:9",
        "c-2",
        &dir,
        json!({"body": {"http": format!("{url}/huge")}, "out": {"command": ["sh", "-c", "head -c 3000000 /dev/zero"]}, "ok": {"static": "y"}}),
        json!({}),
    ))
    .unwrap();
    assert_eq!(
        bounded.read().await.facets,
        BTreeMap::from([("ok".to_string(), "y".to_string())])
    );
    *health.lock().unwrap() = r#"{"status":"DOWN"}"#.into();
    assert_eq!(agent.read().await.facets["phase"], "draining");
    // The observation is one coherd takes, and seq only grows.
    let first = agent.observation(&r, Time::from_secs(1_800_000_000));
    let second = agent.observation(&r, Time::from_secs(1_800_000_001));
    assert!(second["seq"].as_u64() > first["seq"].as_u64());
    coherd_model::Observation::from_json(&first.to_string(), &coherd_model::Limits::default())
        .unwrap();
    // A restart resumes above the last seq.
    let again = Agent::new(config(
        "http://127.0.0.1:9",
        "c-1",
        &dir,
        json!({}),
        json!({}),
    ))
    .unwrap();
    let mut again = again;
    let third = again.observation(&r, Time::from_secs(1_800_000_002));
    assert!(third["seq"].as_u64() > second["seq"].as_u64());
}

#[test]
fn a_config_with_mistakes_is_refused_with_each_named() {
    let c: AgentConfig = serde_json::from_value(json!({
        "service": "Bad Service", "server": "ftp://x", "poll": "10ms",
        "facets": {"a": {"env": "X", "static": "y"}, "b": {"static": "y", "regex": "("}}
    }))
    .unwrap();
    let err = c.check().unwrap_err();
    for part in [
        "service",
        "server",
        "poll",
        "facet a: give exactly one",
        "facet b: regex",
    ] {
        assert!(err.contains(part), "{part} not in {err}");
    }
    assert!(serde_json::from_value::<AgentConfig>(json!({"service": "a", "surprise": 1})).is_err());
}

/// A real coherd in this process, on a free port of loopback.
async fn coherd(dir: &std::path::Path) -> String {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let config = coherd_server::ServerConfig {
        db: dir.join("coherd.db"),
        ..coherd_server::ServerConfig::default()
    };
    tokio::spawn(coherd_server::serve_on(
        listener,
        config,
        std::future::pending(),
    ));
    let client = reqwest::Client::new();
    for _ in 0..100 {
        if client
            .get(format!("{url}/readyz"))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            return url;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("coherd did not start");
}

async fn facet_of(server: &str, member: &str) -> Option<String> {
    let r = reqwest::get(format!("{server}/v1/services/checkout/members/{member}"))
        .await
        .ok()?;
    let v: Value = r.json().await.ok()?;
    v["facets"]["config"].as_str().map(String::from)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_agents_keep_coherds_view_exact() {
    let dir = temp("hundred");
    let server = coherd(&dir).await;
    let file = |i: usize| dir.join(format!("m-{i:03}.conf"));
    let hash = |text: &str| {
        use sha2::Digest;
        format!("sha256:{:x}", sha2::Sha256::digest(text.as_bytes()))
    };
    let mut agents: Vec<Agent> = (0..100)
        .map(|i| {
            std::fs::write(file(i), "c1").unwrap();
            let facets = json!({"config": {"file_sha256": file(i)}, "zone": {"static": format!("z{}", i % 3)}});
            Agent::new(config(&server, &format!("m-{i:03}"), &dir, facets, json!({}))).unwrap()
        })
        .collect();
    let now = coherd_model::time::wall_now();
    for a in &mut agents {
        assert!(a.poll(now).await, "the first poll reports");
        assert_eq!(a.pending(), 0, "delivered");
    }
    // Half the fleet changes: those report at once, the rest stay quiet.
    for i in (0..100).step_by(2) {
        std::fs::write(file(i), "c2").unwrap();
    }
    // The same instant: no member's periodic report is due, so only changes go out.
    for (i, a) in agents.iter_mut().enumerate() {
        assert_eq!(
            a.poll(now).await,
            i % 2 == 0,
            "m-{i:03}: report only on a change"
        );
        assert_eq!(a.pending(), 0);
    }
    for i in 0..100 {
        let want = hash(if i % 2 == 0 { "c2" } else { "c1" });
        assert_eq!(
            facet_of(&server, &format!("m-{i:03}")).await,
            Some(want),
            "m-{i:03}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reports_wait_while_coherd_is_unreachable_and_arrive_in_order() {
    let dir = temp("buffer");
    // Nothing listens here yet.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let server = format!("http://127.0.0.1:{port}");
    let file = dir.join("app.conf");
    std::fs::write(&file, "one").unwrap();
    let facets = json!({"config": {"file_sha256": file}});
    let mut agent = Agent::new(config(&server, "b-1", &dir, facets, json!({}))).unwrap();
    let t0 = coherd_model::time::wall_now();
    agent.poll(t0).await;
    std::fs::write(&file, "two").unwrap();
    agent.poll(t0.add(Duration::from_secs(1))).await;
    assert_eq!(agent.pending(), 2, "both changes wait");
    // coherd comes up on that port; the next poll past the backoff delivers both.
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .unwrap();
    let cfg = coherd_server::ServerConfig {
        db: dir.join("coherd.db"),
        ..coherd_server::ServerConfig::default()
    };
    tokio::spawn(coherd_server::serve_on(
        listener,
        cfg,
        std::future::pending(),
    ));
    tokio::time::sleep(Duration::from_millis(500)).await;
    agent.poll(t0.add(Duration::from_secs(60))).await;
    assert_eq!(agent.pending(), 0);
    let two = "sha256:3fc4ccfe745870e2c0d99f71f30ff0656c8dedd41cc1d7d3d376b0dbe685e2f3";
    assert_eq!(facet_of(&server, "b-1").await.as_deref(), Some(two));
}

#[test]
fn the_small_binary_is_the_same_agent() {
    let dir = temp("bin");
    std::fs::write(
        dir.join("agent.yaml"),
        format!(
            "service: checkout\nmember: s-1\nstate_dir: {}\nfacets:\n  owner: {{static: team-a}}\n",
            dir.display()
        ),
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_coherd-agent"))
        .args(["--once", "--dry-run", "--config"])
        .arg(dir.join("agent.yaml"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let obs: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(obs["facets"]["owner"], "team-a");
    let help = std::process::Command::new(env!("CARGO_BIN_EXE_coherd-agent"))
        .arg("--help")
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&help.stdout)
            .contains("coherd agent --config agent.yaml --once --dry-run")
    );
}
