//! Inputs the fuzz targets in `fuzz/` found, at the model level: each is
//! answered with an error that names the problem and its place.

#![allow(unused_crate_dependencies)] // a test target sees every dev-dependency of its package

use std::time::{Duration, Instant};

/// config_yaml, `timeout-54446d53...`: runs of `&` (anchors named `&&&...`)
/// inside flow mappings with a broken indentation. Under a loaded machine the
/// fuzzer waited 16 s on it; alone it takes well under a millisecond. It must
/// stay a quick syntax error with its line, as configuration and intent.
const CONFIG_ANCHOR_RUNS: &[u8] = b"listen: 1\xba7.0.0*1%70/etc/c10000}\n\
    maroute: {&&&&&&&&&&&&&&&&&&&&&&&&&&&&&&&&route: {g'oup_by:,&&&&&&\xab\xab\xab\xab\xab\xab\xab\xab\xab\xab\xab\xab\xab\xab\xab&&&`&&x_clock_-skew: 60s\n\
    mix_report_=age: 10mcl\n\
    ock_grace: 10m\n\
    reroute: {&&&&&&&&&&&&&&&&&&&&&&&&&,&&&e: {&&&&|||||||||||&&&&&&&&&&&&&&&z&&&&&&&&&&&route: {g'oup_by:,&&&&&&&&&`&&&&&&&&e: {&&&&&&&&&&&&&&&&&oup_by:,&&&&&&&&&&&&&route: {g'oup_by:,&&&&&&\xab\xab\xab\xab\xab\xab\xab\xab\xab\xab\xab\xab\xab\xab\xab&&&`&&&&,&&&e: {&&&&|||||||||||&&&&&&&&&&&&&&&z&&&&&&&route: {gg'oup_by&&&&rouee:&\x13\x13\x13\x13\x13\x13\x13\x13\x93\x13\x13\x13&&\xab\xab\xab\xab\xab\xab\xab\xab\xab\xab\xab\xab\xab\xab\xab&&&`&&&&,&&&e: {route: {gvoup_by: [service],og rup_wait: 0s}\n\
    ruhgs:\n\
    \x20\x20: tel-s:\n\
    \x20\x20: tewait: 0s}\n\
    ruhes:\n\
    \x20\x20: &&&&|||||||||||&&&&&&&&&&&&&&&z&&&&&&&&&[&route: {g'oup_by:,&&&tel-s:\n\
    \x20\x20: tel-met&&r";

#[test]
fn anchor_runs_in_flow_mappings_are_a_quick_syntax_error_with_a_line() {
    let text = String::from_utf8_lossy(CONFIG_ANCHOR_RUNS);
    let started = Instant::now();
    let e = coherd_model::yaml::from_str::<serde_json::Value>(&text).unwrap_err();
    assert!(
        e.starts_with("line 6, column 1: not valid YAML") && e.contains("indentation"),
        "{e}"
    );
    let e = coherd_model::Intent::from_yaml(&text).unwrap_err();
    assert_eq!((e.0[0].line, e.0[0].column), (6, 1), "{e}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}
