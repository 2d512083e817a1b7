//! Errors that name the field and the rule broken.

use std::fmt;

/// A problem with one field of an observation.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct FieldError {
    /// Dotted path to the field, such as `leases[0].epoch`; empty for the whole document.
    pub field: String,
    /// What is wrong, in a sentence a person can act on.
    pub message: String,
}

impl FieldError {
    /// A new error at `field`.
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> FieldError {
        FieldError {
            field: field.into(),
            message: message.into(),
        }
    }

    /// From a serde error that knows its path.
    pub fn from_serde(e: &serde_path_to_error::Error<serde_json::Error>) -> FieldError {
        let path = e.path().to_string();
        let mut field = if path == "." { String::new() } else { path };
        let mut message = e.inner().to_string();
        // A missing field is named by the message only: put it in the path.
        if let Some(name) = message
            .strip_prefix("missing field `")
            .and_then(|rest| rest.split('`').next())
        {
            field = if field.is_empty() {
                name.to_string()
            } else {
                format!("{field}.{name}")
            };
        }
        // serde_json appends " at line L column C" — keep it only for syntax
        // errors (a body cut short included).
        if !(e.inner().is_syntax() || e.inner().is_eof())
            && let Some(i) = message.rfind(" at line ")
        {
            message.truncate(i);
        }
        FieldError { field, message }
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.field.is_empty() {
            write!(f, "{}", self.message)
        } else {
            write!(f, "{}: {}", self.field, self.message)
        }
    }
}

/// A problem in an intent document, with its place.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct IntentError {
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub column: usize,
    /// Dotted path to the key, such as `services.checkout.facets.version.rollout_window`.
    pub path: String,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for IntentError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}, column {}: ", self.line, self.column)?;
        if !self.path.is_empty() {
            write!(f, "{}: ", self.path)?;
        }
        f.write_str(&self.message)
    }
}

/// Every problem found in an intent document.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct IntentErrors(pub Vec<IntentError>);

impl fmt::Display for IntentErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the intent is invalid ({} error{}):",
            self.0.len(),
            if self.0.len() == 1 { "" } else { "s" }
        )?;
        for e in &self.0 {
            write!(f, "\n  {e}")?;
        }
        Ok(())
    }
}
