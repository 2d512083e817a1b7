//! Black-box: `coherd agent` processes beside members, against the built
//! server: what `--once --dry-run` prints, and five agents that keep coherd's
//! view exact through a 30-second outage of coherd.

#![allow(unused_crate_dependencies)] // a test target sees every dev-dependency of its package

mod common;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{Server, get_json, temp_dir, wait_until};
use serde_json::Value;

fn write_config(dir: &std::path::Path, server: &str, member: &str) -> std::path::PathBuf {
    let conf = dir.join(format!("{member}.conf"));
    if !conf.exists() {
        std::fs::write(&conf, "one").unwrap();
    }
    let path = dir.join(format!("{member}.agent.yaml"));
    std::fs::write(
        &path,
        format!(
            "server: {server}\nservice: checkout\nmember: {member}\npoll: 300ms\nreport_interval: 20s\nstate_dir: {}\n\
             facets:\n  config: {{file_sha256: {}}}\n  version: {{command: [sh, -c, 'echo app v2.0.1'], regex: 'v([0-9.]+)'}}\n  owner: {{static: team-a}}\n",
            dir.display(),
            conf.display()
        ),
    )
    .unwrap();
    path
}

fn coherd() -> Command {
    Command::new(env!("CARGO_BIN_EXE_coherd"))
}

#[test]
fn once_dry_run_prints_the_report_it_would_send() {
    let dir = temp_dir("agent-dry");
    let config = write_config(&dir, "http://127.0.0.1:9", "a-1");
    let out = common::succeeded(
        coherd()
            .args(["agent", "--once", "--dry-run", "--config"])
            .arg(&config)
            .output()
            .unwrap(),
    );
    let obs: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(obs["service"], "checkout");
    assert_eq!(obs["member"], "a-1");
    assert_eq!(obs["facets"]["version"], "2.0.1");
    assert_eq!(obs["facets"]["owner"], "team-a");
    assert_eq!(
        obs["facets"]["config"],
        "sha256:7692c3ad3540bb803c020b3aee66cd8887123234ea0c6e7143c0add73ff431ed"
    );
    assert!(obs["seq"].as_u64().unwrap() > 0);
    // A config with a mistake says which, and runs nothing.
    std::fs::write(
        dir.join("bad.yaml"),
        "service: checkout\nfacets:\n  a: {static: x, env: Y}\n",
    )
    .unwrap();
    let out = coherd()
        .args(["agent", "--once", "--dry-run", "--config"])
        .arg(dir.join("bad.yaml"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("facet a: give exactly one"));
}

struct Agents(Vec<Child>);

impl Drop for Agents {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn configs_in_coherd(url: &str, members: &[String]) -> Vec<Option<String>> {
    members
        .iter()
        .map(|m| {
            common::ureq_get(&format!("{url}/v1/services/checkout/members/{m}"))
                .ok()
                .filter(|(s, _)| *s == 200)
                .and_then(|(_, b)| serde_json::from_str::<Value>(&b).ok())
                .and_then(|v| v["facets"]["config"].as_str().map(String::from))
        })
        .collect()
}

#[test]
fn five_agents_keep_coherds_view_and_lose_no_change_while_it_is_down_30s() {
    let dir = temp_dir("agent-outage");
    let mut s = Server::start(&dir, &[]);
    let members: Vec<String> = (1..=5).map(|i| format!("a-{i}")).collect();
    let log = std::fs::File::create(dir.join("agents.log")).unwrap();
    let agents = Agents(
        members
            .iter()
            .map(|m| {
                let config = write_config(&dir, &s.url, m);
                coherd()
                    .args(["agent", "--config"])
                    .arg(&config)
                    .stdout(Stdio::null())
                    .stderr(log.try_clone().unwrap())
                    .spawn()
                    .unwrap()
            })
            .collect(),
    );
    let sha = |t: &str| {
        use sha2::Digest;
        Some(format!("sha256:{:x}", sha2::Sha256::digest(t.as_bytes())))
    };
    wait_until("every agent's first report", 30, || {
        configs_in_coherd(&s.url, &members) == vec![sha("one"); 5]
    });
    // coherd goes away for 30 s; meanwhile every member's config changes twice.
    s.kill9();
    std::thread::sleep(Duration::from_secs(2));
    for m in &members {
        std::fs::write(dir.join(format!("{m}.conf")), "two").unwrap();
    }
    std::thread::sleep(Duration::from_secs(5));
    for m in &members {
        std::fs::write(dir.join(format!("{m}.conf")), "three").unwrap();
    }
    std::thread::sleep(Duration::from_secs(23));
    s.restart();
    wait_until("the buffered reports after the outage", 40, || {
        configs_in_coherd(&s.url, &members) == vec![sha("three"); 5]
    });
    // No change was lost: each member's timeline (written a moment after) holds both, in order.
    let configs = |m: &str| -> Vec<String> {
        let timeline = get_json(&format!(
            "{}/v1/history/timeline?service=checkout&member={m}",
            s.url
        ));
        timeline
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["facet"] == "config")
            .filter_map(|e| e["to"].as_str().map(String::from))
            .collect()
    };
    let want = vec![sha("two").unwrap(), sha("three").unwrap()];
    wait_until("both changes in every timeline", 10, || {
        members.iter().all(|m| configs(m) == want)
    });
    drop(agents);
}
