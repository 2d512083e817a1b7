//! Intent YAML (and JSON, which is YAML): the node reader and the intent
//! reader give a result or errors with a place and a message.

#![no_main]

use coherd_model::{Intent, yaml};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Ok(node) = yaml::parse(&text) {
        // As configuration files and replay lines read it.
        let json = yaml::to_json(&node);
        let _ = Intent::from_json(&json, 1);
    }
    match Intent::from_yaml(&text) {
        Ok(intent) => {
            // `GET /v1/intent` shows the intent as JSON.
            serde_json::to_string(&intent).expect("an intent serializes");
        }
        Err(errors) => {
            assert!(!errors.0.is_empty());
            for e in &errors.0 {
                assert!(e.line >= 1 && e.column >= 1, "{e}");
                assert!(!e.message.trim().is_empty(), "{e}");
            }
        }
    }
});
