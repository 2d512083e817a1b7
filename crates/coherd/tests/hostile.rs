//! A hostile or careless client against the built binary: every input gets a
//! clear 4xx that names the problem, nothing is stored, and the server stays up.

#![allow(unused_crate_dependencies)] // a test target sees every dev-dependency of its package

mod common;

use std::io::{Read, Write};
use std::time::Duration;

use common::{Server, get_json, post_json, request, request_with_head, temp_dir};
use serde_json::{Value, json};

const ADMIN: &str = "admin-token-0123456789";
const READ: &str = "read-token-0123456789";

fn open_server(name: &str) -> Server {
    Server::start(&temp_dir(name), &[])
}

/// A server whose only tokens come from its config file.
fn server_with_tokens(name: &str) -> Server {
    let dir = temp_dir(name);
    let config = format!(
        "tokens:\n  - {{token: {ADMIN}, scopes: [admin]}}\n  - {{token: {READ}, scopes: [read]}}\n"
    );
    std::fs::write(dir.join("coherd.yaml"), config).unwrap();
    let path = dir.join("coherd.yaml").display().to_string();
    Server::start(&dir, &["--config", &path])
}

fn put_intent(s: &Server, body: &[u8], token: Option<&str>) -> (u16, String) {
    let auth = token.map(|t| format!("Bearer {t}"));
    let mut headers = vec![("Content-Type", "application/yaml")];
    if let Some(a) = &auth {
        headers.push(("Authorization", a.as_str()));
    }
    request("PUT", &format!("{}/v1/intent", s.url), &headers, body).unwrap()
}

fn alive(s: &Server) {
    let (status, _) = request("GET", &format!("{}/healthz", s.url), &[], b"").unwrap();
    assert_eq!(status, 200, "the server must still answer");
}

#[test]
fn yaml_bombs_are_refused_without_harm() {
    let s = open_server("yaml-bombs");
    // 5 000 nested flow mappings, then the same as nested block lists.
    let flow = "services: ".to_string() + &"{a: ".repeat(5000) + &"}".repeat(5000);
    let (status, body) = put_intent(&s, flow.as_bytes(), None);
    assert_eq!(status, 422, "{body}");
    assert!(body.contains("nest more than 64"), "{body}");
    let block = "- ".repeat(200_000) + "x\n";
    let (status, body) = put_intent(&s, block.as_bytes(), None);
    assert_eq!(status, 422, "{body}");
    assert!(body.contains("nest more than 64"), "{body}");
    // An alias bomb of a few hundred bytes.
    let mut bomb = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
    for i in 1..12 {
        let p = format!("*a{}", i - 1);
        let row = [p.as_str(); 10].join(", ");
        bomb.push_str(&format!("a{i}: &a{i} [{row}]\n"));
    }
    let (status, body) = put_intent(&s, bomb.as_bytes(), None);
    assert_eq!(status, 422, "{body}");
    assert!(body.contains("500000 nodes"), "{body}");
    alive(&s);
    let (status, _) = request("GET", &format!("{}/v1/intent", s.url), &[], b"").unwrap();
    assert_eq!(status, 404, "no intent was set");
}

#[test]
fn an_intent_is_one_whole_document() {
    let s = open_server("intent-documents");
    let good = b"services:\n  api: {}\n";
    assert_eq!(put_intent(&s, good, None).0, 200);
    let (status, body) = put_intent(&s, b"services: {}\n---\nservices: {b: {}}\n", None);
    assert_eq!(status, 422, "{body}");
    assert!(body.contains("one document"), "{body}");
    let (status, body) = put_intent(&s, b"", None);
    assert_eq!(status, 422, "{body}");
    assert!(body.contains("services: {}"), "{body}");
    let (status, body) = put_intent(&s, b"services:\n  api: {}\n  api: {}\n", None);
    assert_eq!(status, 422, "{body}");
    assert!(body.contains("duplicate key"), "{body}");
    let intent = get_json(&format!("{}/v1/intent", s.url));
    assert_eq!(
        intent["source"], "services:\n  api: {}\n",
        "the first intent stays"
    );
}

#[test]
fn bodies_are_not_read_before_auth() {
    let s = server_with_tokens("auth-first");
    // A body far past every limit, announced but never sent: the answer is
    // about the token, at once.
    let host = s.url.strip_prefix("http://").unwrap();
    let mut c = std::net::TcpStream::connect(host).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        c,
        "PUT /v1/intent HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {READ}\r\nContent-Length: 50000000\r\n\r\n"
    )
    .unwrap();
    let mut head = [0u8; 12];
    c.read_exact(&mut head).unwrap();
    assert_eq!(&head[9..12], b"403");
    alive(&s);
}

#[test]
fn an_admin_token_from_the_config_file_reads_and_reports() {
    let s = server_with_tokens("admin-scopes");
    let auth = format!("Bearer {ADMIN}");
    let obs = br#"{"service":"api","member":"a"}"#;
    let headers = [
        ("Content-Type", "application/json"),
        ("Authorization", auth.as_str()),
    ];
    let (status, body) =
        request("POST", &format!("{}/v1/observations", s.url), &headers, obs).unwrap();
    assert_eq!(status, 200, "{body}");
    let (status, body) = request("GET", &format!("{}/v1/services", s.url), &headers, b"").unwrap();
    assert_eq!(status, 200, "{body}");
}

#[test]
fn times_past_what_coherd_holds_are_refused_by_field() {
    let s = open_server("far-times");
    let url = format!("{}/v1/observations", s.url);
    let (status, body) = post_json(
        &url,
        r#"{"service":"api","member":"a","time":"2300-01-01T00:00:00Z"}"#,
    );
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["errors"][0]["field"], "time", "{body}");
    let (status, body) = post_json(
        &url,
        r#"{"service":"api","member":"a","leases":[{"resource":"r","epoch":1,"expires":"2300-01-01T00:00:00Z"}]}"#,
    );
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["errors"][0]["field"], "leases[0].expires", "{body}");
    assert_eq!(get_json(&format!("{}/v1/services", s.url)), json!([]));
}

#[test]
fn a_member_that_sent_the_highest_seq_can_report_again() {
    let s = open_server("seq-max");
    let url = format!("{}/v1/observations", s.url);
    let (status, body) = post_json(
        &url,
        &format!(r#"{{"service":"api","member":"a","seq":{}}}"#, u64::MAX),
    );
    assert_eq!((status, &body["accepted"]), (200, &json!(1)), "{body}");
    let (status, body) = post_json(
        &url,
        r#"{"service":"api","member":"a","seq":1,"facets":{"version":"2"}}"#,
    );
    assert_eq!((status, &body["accepted"]), (200, &json!(1)), "{body}");
    let members = get_json(&format!("{}/v1/services/api/members", s.url));
    assert_eq!(members["members"][0]["seq"], 1, "{members}");
}

#[test]
fn a_batch_the_engine_would_refuse_in_part_stores_nothing() {
    let s = open_server("atomic-batch");
    // 64 facet names fit a service; three reports of 30 new names each do not.
    let report = |member: &str, from: usize| {
        let facets: serde_json::Map<String, Value> = (from..from + 30)
            .map(|i| (format!("f{i}"), json!("v")))
            .collect();
        json!({"service": "api", "member": member, "facets": facets})
    };
    let batch = json!([report("a", 0), report("b", 30), report("c", 60)]);
    let (status, body) = post_json(&format!("{}/v1/observations", s.url), &batch.to_string());
    assert_eq!(status, 422, "{body}");
    assert!(body.to_string().contains("item 2"), "{body}");
    assert_eq!(get_json(&format!("{}/v1/services", s.url)), json!([]));
}

#[test]
fn unknown_methods_fold_into_one_metric_label() {
    let s = open_server("methods");
    for i in 0..40 {
        let _ = request(
            &format!("BREW{i}"),
            &format!("{}/v1/services", s.url),
            &[],
            b"",
        );
    }
    let (_, metrics) = request("GET", &format!("{}/metrics", s.url), &[], b"").unwrap();
    assert!(
        !metrics.contains("BREW"),
        "client methods leaked into labels"
    );
    assert!(metrics.contains("method=\"other\""), "{metrics}");
}

#[test]
fn small_refusals_name_what_is_wrong() {
    let s = open_server("small-refusals");
    let url = format!("{}/v1/observations", s.url);
    // A compressed body is refused by name, not parsed as garbage.
    let (status, body) = request(
        "POST",
        &url,
        &[
            ("Content-Type", "application/json"),
            ("Content-Encoding", "gzip"),
        ],
        b"\x1f\x8b\x08\x00",
    )
    .unwrap();
    assert_eq!(status, 415, "{body}");
    assert!(body.contains("gzip"), "{body}");
    // An NDJSON syntax error names its line.
    let (status, body) = request(
        "POST",
        &url,
        &[("Content-Type", "application/x-ndjson")],
        b"{\"service\":\"api\",\"member\":\"a\"}\n\n{\"service\":\"api\",\"member\":}\n",
    )
    .unwrap();
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("line 3, column"), "{body}");
    // A key given twice.
    let (status, body) = post_json(
        &url,
        r#"{"service":"api","member":"a","facets":{"version":"1","version":"2"}}"#,
    );
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["errors"][0]["field"], "facets", "{body}");
    // A missing member is named.
    let (status, body) = post_json(&url, r#"{"service":"api"}"#);
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["errors"][0]["field"], "member", "{body}");
    // Deleting a member nobody knows.
    let (status, body) = request(
        "DELETE",
        &format!("{}/v1/services/api/members/ghost", s.url),
        &[],
        b"",
    )
    .unwrap();
    assert_eq!(status, 404, "{body}");
    assert_eq!(get_json(&format!("{}/v1/services", s.url)), json!([]));
}

/// A server with small connection limits and a short head deadline.
fn server_with_connection_limits(name: &str) -> Server {
    let dir = temp_dir(name);
    std::fs::write(
        dir.join("coherd.yaml"),
        "max_connections_per_peer: 40\nheader_read_timeout: 2s\nbody_read_timeout: 2s\n",
    )
    .unwrap();
    let path = dir.join("coherd.yaml").display().to_string();
    Server::start(&dir, &["--config", &path])
}

/// A connection from another loopback address, so the server sees another peer.
async fn connect_from(ip: [u8; 4], url: &str) -> std::io::Result<tokio::net::TcpStream> {
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.bind(std::net::SocketAddr::from((ip, 0)))?;
    let addr: std::net::SocketAddr = url.strip_prefix("http://").unwrap().parse().unwrap();
    socket.connect(addr).await
}

/// One report from an ordinary client on 127.0.0.1, off the async threads.
async fn ordinary_report(url: &str) -> (u16, String) {
    let url = url.to_string();
    tokio::task::spawn_blocking(move || {
        request(
            "POST",
            &format!("{url}/v1/observations"),
            &[("Content-Type", "application/json")],
            br#"{"service":"api","member":"a"}"#,
        )
    })
    .await
    .unwrap()
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_and_slowloris_peers_do_not_shut_out_others() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let s = server_with_connection_limits("slowloris");
    // 200 idle sockets from one address: past its cap of 40 each is told 503.
    let mut idle = Vec::new();
    for _ in 0..200 {
        idle.push(connect_from([127, 0, 0, 2], &s.url).await.unwrap());
    }
    let mut refused = 0;
    for c in idle.iter_mut().skip(40) {
        let mut head = [0u8; 12];
        if c.read_exact(&mut head).await.is_ok() && &head[9..12] == b"503" {
            refused += 1;
        }
    }
    assert_eq!(
        refused, 160,
        "every connection past the per-peer cap is refused"
    );
    // 30 slowloris clients from a third address dribble a head a byte at a time.
    let mut slow = Vec::new();
    for _ in 0..30 {
        let mut c = connect_from([127, 0, 0, 3], &s.url).await.unwrap();
        c.write_all(b"GET /v1/services HTTP/1.1\r\nHost: x\r\n")
            .await
            .unwrap();
        slow.push(c);
    }
    // Meanwhile an ordinary client is served.
    let (status, body) = ordinary_report(&s.url).await;
    assert_eq!(status, 200, "{body}");
    // The slow heads are cut off at the deadline: the server closes them.
    for c in &mut slow {
        let mut rest = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(20), c.read_to_end(&mut rest)).await;
        assert!(read.is_ok(), "a slow head was never cut off");
    }
    // And so are the idle sockets within the cap.
    for c in idle.iter_mut().take(40) {
        let mut rest = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(20), c.read_to_end(&mut rest)).await;
        assert!(read.is_ok(), "an idle connection was never closed");
    }
    alive(&s);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_upload_times_out_without_holding_ingest() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let s = server_with_connection_limits("slow-upload");
    // Uploads that announce a body and never finish it.
    let mut slow = Vec::new();
    for _ in 0..20 {
        let mut c = connect_from([127, 0, 0, 4], &s.url).await.unwrap();
        c.write_all(b"POST /v1/observations HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n{\"service\":")
            .await
            .unwrap();
        slow.push(c);
    }
    let (status, body) = ordinary_report(&s.url).await;
    assert_eq!(status, 200, "{body}");
    // Each slow upload is answered 408 once its body deadline passes.
    let mut head = [0u8; 12];
    let read = tokio::time::timeout(Duration::from_secs(20), slow[0].read_exact(&mut head)).await;
    assert!(read.is_ok(), "the slow upload was never answered");
    assert_eq!(&head[9..12], b"408");
}

#[test]
fn services_past_the_bound_are_refused_and_metrics_stay_bounded() {
    let dir = temp_dir("bounded-services");
    std::fs::write(dir.join("coherd.yaml"), "max_services: 1055\n").unwrap();
    let path = dir.join("coherd.yaml").display().to_string();
    let s = Server::start(&dir, &["--config", &path]);
    let url = format!("{}/v1/observations", s.url);
    // 1 050 services: series of their own for the first 1 000 only.
    let batch: String = (0..1050)
        .map(|i| {
            format!(
                "{{\"service\":\"s{i}\",\"member\":\"m\",\"facets\":{{\"phase\":\"ready\"}}}}\n"
            )
        })
        .collect();
    let (status, body) = request(
        "POST",
        &url,
        &[("Content-Type", "application/x-ndjson")],
        batch.as_bytes(),
    )
    .unwrap();
    assert_eq!(status, 200, "{body}");
    let (_, metrics) = request("GET", &format!("{}/metrics", s.url), &[], b"").unwrap();
    let services: std::collections::BTreeSet<&str> = metrics
        .lines()
        .filter(|l| l.starts_with("coherd_members{"))
        .filter_map(|l| l.split("service=\"").nth(1)?.split('"').next())
        .collect();
    assert_eq!(
        services.len(),
        1000,
        "one series set per service up to the bound"
    );
    assert!(
        metrics.contains("coherd_metrics_services_folded 50"),
        "the rest are counted"
    );
    // Past max_services a new service is refused by name, and nothing is stored.
    let more: String = (1050..1060)
        .map(|i| format!("{{\"service\":\"s{i}\",\"member\":\"m\"}}\n"))
        .collect();
    let (status, body) = request(
        "POST",
        &url,
        &[("Content-Type", "application/x-ndjson")],
        more.as_bytes(),
    )
    .unwrap();
    assert_eq!(status, 422, "{body}");
    assert!(body.contains("1055 services"), "{body}");
    let listed = get_json(&format!("{}/v1/services", s.url));
    assert_eq!(listed.as_array().unwrap().len(), 1050);
}

#[test]
fn a_bad_query_string_is_a_json_error_that_names_the_parameter() {
    let s = open_server("bad-query");
    let (status, body) = request(
        "GET",
        &format!("{}/v1/divergences?state=all&stat=open", s.url),
        &[],
        b"",
    )
    .unwrap();
    assert_eq!(status, 400, "{body}");
    let v: Value = serde_json::from_str(&body).expect("a JSON error body");
    assert!(
        v["errors"][0]["message"].as_str().unwrap().contains("stat"),
        "{v}"
    );
    let doc = get_json(&format!("{}/v1/openapi.json", s.url));
    let members = &doc["paths"]["/v1/services/{service}/members"]["get"];
    assert_eq!(
        members["parameters"][0]["name"], "service",
        "path parameters are declared"
    );
    assert!(
        members["responses"]["401"].is_object(),
        "auth errors are documented"
    );
    assert_eq!(
        doc["paths"]["/healthz"]["get"]["security"],
        json!([]),
        "probes need no token"
    );
}

/// A server whose service `api` has `n` members drifted from its target
/// (one open drift divergence each).
fn drifted_fleet(name: &str, n: usize) -> Server {
    let s = open_server(name);
    let intent = "services:\n  api:\n    facets:\n      version: {target: \"2\"}\n";
    let (status, body) = put_intent(&s, intent.as_bytes(), None);
    assert_eq!(status, 200, "{body}");
    let batch: Vec<String> = (0..n)
        .map(|i| format!(r#"{{"service":"api","member":"m{i:04}","facets":{{"version":"1"}}}}"#))
        .collect();
    let (status, body) = post_json(
        &format!("{}/v1/observations", s.url),
        &format!("[{}]", batch.join(",")),
    );
    assert_eq!(status, 200, "{body}");
    s
}

/// Lists are paged: a page never holds more than `limit`, the `Link` header
/// leads to the next page with the same filters, and following it yields
/// every item once, in order.
#[test]
fn lists_come_a_page_at_a_time_and_the_link_leads_through_all() {
    let s = drifted_fleet("paging", 1200);

    let mut seen: Vec<String> = Vec::new();
    let mut next = Some("/v1/divergences?kind=drift&limit=500".to_string());
    let mut pages = 0;
    while let Some(path) = next.take() {
        let (status, head, body) =
            request_with_head("GET", &format!("{}{path}", s.url), &[], b"").unwrap();
        assert_eq!(status, 200, "{body}");
        let page: Vec<Value> = serde_json::from_str(&body).unwrap();
        assert!(page.len() <= 500, "a page over its limit: {}", page.len());
        seen.extend(page.iter().map(|d| d["id"].as_str().unwrap().to_string()));
        next = head
            .lines()
            .find_map(|l| {
                l.strip_prefix("link: ")
                    .or_else(|| l.strip_prefix("Link: "))
            })
            .map(|l| {
                l.split('>')
                    .next()
                    .unwrap()
                    .trim_start_matches('<')
                    .to_string()
            });
        if let Some(n) = &next {
            assert!(n.contains("kind=drift") && n.contains("limit=500"), "{n}");
        }
        pages += 1;
    }
    assert_eq!(pages, 3);
    assert_eq!(seen.len(), 1200, "every divergence once");
    let mut sorted = seen.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), 1200, "no divergence twice");

    for bad in [
        "/v1/divergences?limit=0",
        "/v1/divergences?limit=5000",
        "/v1/divergences?cursor=nonsense",
        "/v1/alerts?cursor=zz",
    ] {
        let (status, body) = request("GET", &format!("{}{bad}", s.url), &[], b"").unwrap();
        assert_eq!(status, 400, "{bad}: {body}");
    }
}

/// NDJSON sent as `application/json`, or flattened by `curl -d`, gets a hint
/// that says how to send it.
#[test]
fn ndjson_under_the_wrong_type_gets_a_hint() {
    let s = open_server("ndjson-hint");
    let url = format!("{}/v1/observations", s.url);
    let lines = "{\"service\":\"a\",\"member\":\"m1\"}\n{\"service\":\"a\",\"member\":\"m2\"}\n";
    let (status, body) = post_json(&url, lines);
    assert_eq!(status, 400, "{body}");
    assert!(body.to_string().contains("application/x-ndjson"), "{body}");
    let (status, body) = post_json(&url, &lines.replace('\n', ""));
    assert_eq!(status, 400, "{body}");
    assert!(body.to_string().contains("--data-binary"), "{body}");
    let (status, body) = post_json(&url, r#"{"service":"a"}"#);
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["errors"][0]["field"], "member", "{body}");
}

/// The CLI lists every page, or the first N with --limit.
#[test]
fn the_divergences_command_follows_pages_and_stops_at_its_limit() {
    let s = drifted_fleet("cli-pages", 1100);
    let list = |extra: &[&str]| -> Vec<Value> {
        let out = common::succeeded(
            std::process::Command::new(env!("CARGO_BIN_EXE_coherd"))
                .args(["divergences", "--json", "--server", &s.url])
                .args(extra)
                .output()
                .unwrap(),
        );
        serde_json::from_slice(&out.stdout).unwrap()
    };
    assert_eq!(list(&[]).len(), 1100, "every page");
    assert_eq!(list(&["--limit", "3"]).len(), 3);

    // `coherd divergences | head -1`: the table outgrows the pipe, the reader
    // hangs up, and the command ends quietly with exit 0.
    let out = common::hang_up_after_first_read(
        std::process::Command::new(env!("CARGO_BIN_EXE_coherd")).args([
            "divergences",
            "--server",
            &s.url,
        ]),
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && !err.contains("panicked"),
        "{:?}: {err}",
        out.status
    );
}

/// A server started with `config` as its config file.
fn start_with_config(name: &str, config: &str) -> Server {
    let dir = temp_dir(name);
    std::fs::write(dir.join("coherd.yaml"), config).unwrap();
    let path = dir.join("coherd.yaml").display().to_string();
    Server::start(&dir, &["--config", &path])
}

/// Posts an observation body with a bearer token.
fn post_with_token(s: &Server, token: &str, body: &str) -> (u16, String) {
    let auth = format!("Bearer {token}");
    request(
        "POST",
        &format!("{}/v1/observations", s.url),
        &[
            ("Content-Type", "application/json"),
            ("Authorization", &auth),
        ],
        body.as_bytes(),
    )
    .unwrap()
}

/// A report token bound to services speaks for those only: a batch naming
/// another service is refused whole, naming it, and nothing is stored.
#[test]
fn a_token_bound_to_services_cannot_report_for_another() {
    let config = "tokens:\n  - {token: web-reporter-0123456789, scopes: [report], services: [web]}\n  - {token: read-token-0123456789, scopes: [read]}\n";
    let s = start_with_config("token-services", config);
    let post = |body: &str| post_with_token(&s, "web-reporter-0123456789", body);
    let (status, body) = post(r#"{"service":"web","member":"w1"}"#);
    assert_eq!(status, 200, "{body}");
    let (status, body) =
        post(r#"[{"service":"web","member":"w2"},{"service":"db","member":"d1"}]"#);
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("db") && body.contains("web only"), "{body}");
    let (_, listed) = request(
        "GET",
        &format!("{}/v1/services", s.url),
        &[("Authorization", "Bearer read-token-0123456789")],
        b"",
    )
    .unwrap();
    let listed: Value = serde_json::from_str(&listed).unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 1, "only web: {listed}");
    assert_eq!(listed[0]["members"], 1, "w2 was not stored: {listed}");
}

/// A report token bound to member patterns speaks as those members only
/// (one member's token cannot report as its neighbour); an invalid pattern
/// keeps the server from starting, naming it.
#[test]
fn a_token_bound_to_member_patterns_cannot_report_as_another_member() {
    let config = "tokens:\n  - {token: web-0-reporter-0123456789, scopes: [report], services: [\"web*\"], members: [\"web-0*\", \"*.canary\"]}\n";
    let s = start_with_config("token-members", config);
    let post = |body: &str| post_with_token(&s, "web-0-reporter-0123456789", body);
    for ok in [
        r#"{"service":"web","member":"web-01"}"#,
        r#"{"service":"web-eu","member":"web-07"}"#,
        r#"{"service":"web","member":"w9.canary"}"#,
    ] {
        let (status, body) = post(ok);
        assert_eq!(status, 200, "{ok}: {body}");
    }
    let message = |body: &str| -> String {
        let v: Value = serde_json::from_str(body).expect("JSON errors");
        v["errors"][0]["message"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    };
    let (status, body) =
        post(r#"[{"service":"web","member":"web-02"},{"service":"web","member":"web-11"}]"#);
    assert_eq!(status, 403, "{body}");
    let m = message(&body);
    assert!(m.contains("\"web-11\"") && m.contains("web-0*"), "{m}");
    let (status, body) = post(r#"{"service":"db","member":"web-01"}"#);
    assert_eq!(status, 403, "{body}");
    assert!(message(&body).contains("\"db\""), "{body}");
    drop(s);

    let bad = temp_dir("token-members-bad");
    std::fs::write(
        bad.join("coherd.yaml"),
        "tokens:\n  - {token: web-0-reporter-0123456789, scopes: [report], members: [\"web-[0\"]}\n",
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_coherd"))
        .args(["serve", "--listen", "127.0.0.1:0", "--config"])
        .arg(bad.join("coherd.yaml"))
        .arg("--db")
        .arg(bad.join("c.db"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("\"web-[0\""), "{err}");
}

/// The reconcile controls: admin only, bodies bounded and strict, an
/// outcome under a made-up key or epoch changes nothing, and the audit's
/// paging refuses what it did not give.
#[test]
fn reconcile_controls_refuse_what_is_wrong_and_stay_up() {
    let s = start_with_config(
        "hostile-reconcile",
        &format!(
            "tokens:\n  - {{token: {ADMIN}, scopes: [admin]}}\n  - {{token: {READ}, scopes: [read]}}\n\
             reconcile:\n  lease_ttl: 2s\n  actions:\n    - name: fix\n      match: {{kind: drift}}\n      \
             webhook: {{url: \"http://127.0.0.1:9/fix\"}}\n"
        ),
    );
    let send = |path: &str, token: &str, body: &[u8]| {
        let auth = format!("Bearer {token}");
        request(
            "POST",
            &format!("{}{path}", s.url),
            &[
                ("Content-Type", "application/json"),
                ("Authorization", &auth),
            ],
            body,
        )
        .unwrap()
    };
    let (status, body) = send("/v1/reconcile/pause", READ, b"{}");
    assert_eq!(status, 403, "a read token cannot stop the loop: {body}");
    let huge = format!("{{\"service\": \"{}\"}}", "x".repeat(20 << 10));
    assert_eq!(send("/v1/reconcile/pause", ADMIN, huge.as_bytes()).0, 413);
    let (status, body) = send("/v1/reconcile/pause", ADMIN, b"{\"servic\": \"a\"}");
    assert_eq!(status, 400);
    assert!(body.contains("servic"), "{body}");
    let (status, body) = send("/v1/reconcile/resume", ADMIN, b"[[[[[[[[[[[[");
    assert_eq!(status, 400, "{body}");
    let long_key =
        json!({"idempotency_key": "k".repeat(200), "fencing_epoch": 1, "outcome": "failed"});
    assert_eq!(
        send(
            "/v1/reconcile/outcome",
            ADMIN,
            long_key.to_string().as_bytes()
        )
        .0,
        422
    );
    let bad_outcome = json!({"idempotency_key": "k", "fencing_epoch": 1, "outcome": "maybe"});
    assert_eq!(
        send(
            "/v1/reconcile/outcome",
            ADMIN,
            bad_outcome.to_string().as_bytes()
        )
        .0,
        400
    );
    let huge_epoch = br#"{"idempotency_key": "k", "fencing_epoch": 99999999999999999999999, "outcome": "failed"}"#;
    assert_eq!(send("/v1/reconcile/outcome", ADMIN, huge_epoch).0, 400);
    // Once the loop runs: an unknown key is 404, an old epoch 409 (and audited).
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let auth = format!("Bearer {READ}");
        let (_, body) = request(
            "GET",
            &format!("{}/v1/reconcile", s.url),
            &[("Authorization", &auth)],
            b"",
        )
        .unwrap();
        if serde_json::from_str::<Value>(&body).unwrap()["running"] == true {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the loop did not start: {body}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let unknown = json!({"idempotency_key": "nope", "fencing_epoch": 1, "outcome": "failed"});
    assert_eq!(
        send(
            "/v1/reconcile/outcome",
            ADMIN,
            unknown.to_string().as_bytes()
        )
        .0,
        404
    );
    let stale = json!({"idempotency_key": "nope", "fencing_epoch": 0, "outcome": "succeeded"});
    assert_eq!(
        send("/v1/reconcile/outcome", ADMIN, stale.to_string().as_bytes()).0,
        409
    );
    let release = json!({"divergence_id": "drift:x:y:z"});
    assert_eq!(
        send(
            "/v1/reconcile/release",
            ADMIN,
            release.to_string().as_bytes()
        )
        .0,
        404
    );
    let auth = format!("Bearer {READ}");
    for query in ["cursor=abc", "limit=0", "limit=5000", "colour=red"] {
        let (status, body) = request(
            "GET",
            &format!("{}/v1/audit?{query}", s.url),
            &[("Authorization", &auth)],
            b"",
        )
        .unwrap();
        assert_eq!(status, 400, "{query}: {body}");
    }
    let (status, body) = request(
        "GET",
        &format!("{}/v1/audit", s.url),
        &[("Authorization", &auth)],
        b"",
    )
    .unwrap();
    assert_eq!(status, 200);
    let audit: Vec<Value> = serde_json::from_str(&body).unwrap();
    assert!(
        audit
            .iter()
            .any(|d| d["decision"] == "refused" && d["epoch"] == 0),
        "{audit:?}"
    );
    alive(&s);
}
