//! The naming rules of DESIGN 2, each returning a sentence on failure.

/// Service names: `[a-z0-9][a-z0-9._-]{0,62}`.
pub fn service(s: &str) -> Result<(), String> {
    let ok = !s.is_empty()
        && s.len() <= 63
        && s.bytes().enumerate().all(|(i, b)| {
            b.is_ascii_lowercase()
                || b.is_ascii_digit()
                || (i > 0 && matches!(b, b'.' | b'_' | b'-'))
        });
    if ok {
        Ok(())
    } else {
        Err(format!(
            "invalid service name {:?}: use 1-63 of a-z 0-9 . _ - starting with a letter or digit",
            trunc(s)
        ))
    }
}

/// Member ids: 1-253 characters of `[A-Za-z0-9._:/-]`.
pub fn member(s: &str) -> Result<(), String> {
    let ok = !s.is_empty()
        && s.len() <= 253
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'/' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "invalid member id {:?}: use 1-253 of A-Z a-z 0-9 . _ : / -",
            trunc(s)
        ))
    }
}

/// Facet names: 1-64 characters of `[A-Za-z0-9._:-]`, starting with a letter.
pub fn facet(s: &str) -> Result<(), String> {
    name(s).map_err(|_| {
        format!(
            "invalid facet name {:?}: use 1-64 of A-Z a-z 0-9 . _ : - starting with a letter",
            trunc(s)
        )
    })
}

/// Names of resources, datasets, counters, jobs: like facets.
pub fn name(s: &str) -> Result<(), String> {
    let ok = !s.is_empty()
        && s.len() <= 64
        && s.as_bytes()[0].is_ascii_alphabetic()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "invalid name {:?}: use 1-64 of A-Z a-z 0-9 . _ : - starting with a letter",
            trunc(s)
        ))
    }
}

/// Label keys: Prometheus style `[A-Za-z_][A-Za-z0-9_]*`, at most 63.
pub fn label_key(s: &str) -> Result<(), String> {
    let ok = !s.is_empty()
        && s.len() <= 63
        && (s.as_bytes()[0].is_ascii_alphabetic() || s.as_bytes()[0] == b'_')
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "invalid label name {:?}: use 1-63 of A-Z a-z 0-9 _ not starting with a digit",
            trunc(s)
        ))
    }
}

/// Opaque values: at most `max` bytes, no control characters.
pub fn value(s: &str, max: usize) -> Result<(), String> {
    if s.len() > max {
        return Err(format!(
            "value is {} bytes; at most {max} are allowed",
            s.len()
        ));
    }
    if s.chars().any(char::is_control) {
        return Err("value contains a control character".into());
    }
    Ok(())
}

/// View keys: `service/member` or a bare member of the reporter's service.
pub fn view_key(k: &str) -> Result<(), String> {
    match k.split_once('/') {
        Some((s, m)) => service(s)
            .and_then(|()| member(m))
            .map_err(|e| format!("view key must be service/member: {e}")),
        None => member(k),
    }
}

/// A list no longer than `max`.
pub fn count(n: usize, max: usize, what: &str) -> Result<(), String> {
    if n > max {
        Err(format!(
            "{n} {what} given; at most {max} are allowed per observation"
        ))
    } else {
        Ok(())
    }
}

fn trunc(s: &str) -> String {
    s.chars().take(80).collect()
}
