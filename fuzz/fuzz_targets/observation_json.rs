//! One observation as JSON, read by the model: a clear error or an
//! observation that writes back and reads the same.

#![no_main]

use coherd_model::{Limits, Observation};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let limits = Limits::default();
    match Observation::from_json(&text, &limits) {
        Ok(obs) => {
            let again = serde_json::to_string(&obs).expect("an observation serializes");
            let back = Observation::from_json(&again, &limits).unwrap_or_else(|e| {
                panic!("accepted, but not once written back as {again}: {e:?}")
            });
            assert_eq!(obs, back, "{again}");
        }
        Err(errors) => {
            assert!(!errors.is_empty());
            assert!(
                errors.iter().all(|e| !e.message.trim().is_empty()),
                "{errors:?}"
            );
        }
    }
});
