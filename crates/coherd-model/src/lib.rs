//! coherd's data model: [`Observation`]s that members report and the
//! [`Intent`] operators declare, parsed and validated with errors that name
//! the field (and, for intent, the line) that is wrong.
//!
//! ```
//! use coherd_model::{Intent, Limits, Observation};
//!
//! let obs = Observation::from_json(
//!     r#"{"service":"checkout","member":"c-1","seq":1,"facets":{"version":"1.4.2"}}"#,
//!     &Limits::default(),
//! ).unwrap();
//! assert_eq!(obs.facets["version"], "1.4.2");
//!
//! let intent = Intent::from_yaml("services:\n  checkout:\n    facets:\n      version: {target: \"1.4.2\"}\n").unwrap();
//! assert!(intent.services["checkout"].facets["version"].is_uniform());
//!
//! let err = Intent::from_yaml("services:\n  checkout:\n    report_interval: soon\n").unwrap_err();
//! assert_eq!(err.0[0].line, 3);
//! ```

pub mod divergence;
pub mod error;
pub mod intent;
pub mod names;
pub mod observation;
pub mod time;
pub mod yaml;

pub use divergence::{Kind, Severity};
pub use error::{FieldError, IntentError, IntentErrors};
pub use intent::{
    CanaryIntent, DatasetIntent, DephaseIntent, FacetIntent, Intent, JobIntent, LeaseIntent,
    MaxLag, PhaseMachine, ServiceIntent, SpreadMode,
};
pub use observation::{Checksum, Lease, Limits, Observation, PeriodicEvent, View, split_view_key};
pub use time::Time;
