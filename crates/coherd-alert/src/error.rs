//! Configuration errors.

/// Why an alerting configuration is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// A label matcher is malformed.
    #[error("matcher {0}")]
    Matcher(String),
    /// The document does not fit the schema.
    #[error("{0}")]
    Invalid(String),
}
