//! The server's configuration file and its `alerting` section: a config or
//! an error naming the problem; an accepted alerting section then runs.

#![no_main]

use std::time::Duration;

use coherd_alert::{AlertConfig, Alerting};
use coherd_model::Time;
use coherd_server::ServerConfig;
use libfuzzer_sys::fuzz_target;

/// What the server does with an alerting section: rules see SLI samples, time passes.
fn run(config: AlertConfig) {
    let mut alerting = Alerting::new(config);
    let mut now = Time::from_secs(1_700_000_000);
    for coherence in [1.0, 0.5, 0.0, 1.0] {
        alerting.on_sli(now, "checkout", Some(coherence), Some(coherence), 100);
        alerting.handle_timeout(now);
        while alerting.poll_notification().is_some() {}
        let _ = alerting.slo_status(now);
        now = now.add(Duration::from_secs(3600));
    }
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    // As `ServerConfig::from_file` reads it, then what start-up checks.
    match coherd_model::yaml::from_str::<ServerConfig>(&text) {
        Ok(config) => {
            if let Err(e) = config.validate() {
                assert!(!e.to_string().trim().is_empty());
            }
            run(config.alerting);
        }
        Err(e) => assert!(!e.trim().is_empty()),
    }
    match AlertConfig::from_yaml(&text) {
        Ok(config) => run(config),
        Err(e) => assert!(!e.to_string().trim().is_empty()),
    }
});
