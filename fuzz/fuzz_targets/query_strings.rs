//! Query strings (and path parameters) through the real router's GET routes.
//!
//! Input: one byte picks the route (`'0'..='7'` are routes 0 to 7), then
//! `PARAM\nQUERY`, or just `QUERY` with PARAM `shop` (`shop/cron:backup` for
//! the dephase route). Bytes a URI cannot hold
//! are percent-encoded, so the server is tested rather than the URI parser;
//! `%`, `&`, `=` and `+` stay as given.

#![no_main]

use std::fmt::Write;
use std::sync::Once;

use axum::http::Method;
use coherd_fuzz::{Server, check_reply, server};
use libfuzzer_sys::fuzz_target;

const ROUTES: [&str; 8] = [
    "/v1/divergences",
    "/v1/services/{}/members",
    "/v1/dephase/{}",
    "/v1/alerts",
    "/v1/services/{}",
    "/v1/silences",
    "/v1/slos",
    "/v1/services",
];

/// Percent-encodes every byte outside `keep` (and outside ASCII letters and digits).
fn encode(bytes: &[u8], keep: &[u8]) -> String {
    let mut out = String::new();
    for &b in bytes {
        if b.is_ascii_alphanumeric() || keep.contains(&b) {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// A service with members, an intent with a job, a divergence and a silence to query.
fn populate(s: &Server) {
    let intent = "services:\n  shop:\n    facets:\n      version: {target: \"1.4.2\"}\n    leases:\n      scheduler: {exclusive: true}\n    dephase:\n      jobs:\n        cron:backup: {period: 1h}\n";
    s.must(Method::PUT, "/v1/intent", "application/yaml", intent);
    let expires = serde_json::to_string(
        &coherd_model::time::wall_now().add(std::time::Duration::from_secs(86_400)),
    )
    .expect("a time");
    let mut batch = String::new();
    for (i, version) in ["1.4.2", "1.4.2", "1.4.1", "9.9.9"].iter().enumerate() {
        let _ = writeln!(
            batch,
            r#"{{"service":"shop","member":"s-{i}","seq":1,"facets":{{"version":"{version}","phase":"ready"}},"leases":[{{"resource":"scheduler","epoch":1,"expires":{expires}}}]}}"#
        );
    }
    s.must(
        Method::POST,
        "/v1/observations",
        "application/x-ndjson",
        &batch,
    );
    let silence = r#"{"matchers":["kind=drift","service=~shop|cart"],"duration":"1h","comment":"fuzz","created_by":"fuzz"}"#;
    s.must(Method::POST, "/v1/silences", "application/json", silence);
}

fuzz_target!(|data: &[u8]| {
    static SETUP: Once = Once::new();
    SETUP.call_once(|| populate(server()));
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    let route = ROUTES[usize::from(pick) % ROUTES.len()];
    // `/` splits the dephase route's service and job; elsewhere it is encoded.
    let dephase = route.starts_with("/v1/dephase");
    let (param, query) = match rest.iter().position(|&b| b == b'\n') {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None if dephase => (&b"shop/cron:backup"[..], rest),
        None => (&b"shop"[..], rest),
    };
    let param_keep: &[u8] = if dephase { b"-._~/" } else { b"-._~" };
    let path = route.replace("{}", &encode(param, param_keep));
    let uri = format!("{path}?{}", encode(query, b"-._~!$&'()*+,;=:@/?%"));
    let r = server().send(Method::GET, &uri, "application/json", Vec::new());
    check_reply(&format!("GET {uri}"), &r);
});
