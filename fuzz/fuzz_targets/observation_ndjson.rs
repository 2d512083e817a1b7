//! NDJSON batches through the real router (`POST /v1/observations`): parse,
//! validate, store and apply, or refuse the whole batch with every error.

#![no_main]

use axum::http::Method;
use coherd_fuzz::{check_reply, server};
use coherd_model::{Limits, Observation};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let r = server().send(
        Method::POST,
        "/v1/observations",
        "application/x-ndjson",
        data.to_vec(),
    );
    check_reply("POST /v1/observations", &r);
    let Ok(text) = std::str::from_utf8(data) else {
        assert_eq!(r.status, 400, "a body that is not UTF-8");
        return;
    };
    // The model's verdict on each line: one bad line refuses the batch.
    let limits = Limits::default();
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let bad = lines
        .iter()
        .any(|l| Observation::from_json(l, &limits).is_err());
    if bad || lines.is_empty() {
        assert!(r.status.is_client_error(), "{}: {text:?}", r.status);
    }
    if r.status.is_success() {
        let v: serde_json::Value = serde_json::from_slice(&r.body).expect("a JSON answer");
        let counted = v["accepted"].as_u64().unwrap_or(0) + v["duplicates"].as_u64().unwrap_or(0);
        assert_eq!(counted, lines.len() as u64, "{v}");
    }
});
