//! Summing a metric out of a Prometheus text exposition.
//!
//! Only what a counter needs: sample lines `name{label="value",...} value
//! [timestamp]`, with the text format's escapes in label values; comments
//! and other metrics are skipped. A line that cannot be read is skipped too,
//! so one odd series does not hide the others.

use std::collections::BTreeMap;

/// The sum of `metric` over the series whose labels include `want`; `None`
/// when no series matches.
pub fn sum(text: &str, metric: &str, want: &BTreeMap<String, String>) -> Option<f64> {
    let mut total = None;
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((name, labels, value)) = sample(line) else {
            continue;
        };
        if name != metric
            || !want.iter().all(|(k, v)| labels.get(k) == Some(v))
            || !value.is_finite()
        {
            continue;
        }
        *total.get_or_insert(0.0) += value;
    }
    total
}

/// One sample line: its name, labels and value.
fn sample(line: &str) -> Option<(&str, BTreeMap<String, String>, f64)> {
    let end = line.find(|c: char| c == '{' || c.is_whitespace())?;
    let name = &line[..end];
    let mut rest = &line[end..];
    let mut labels = BTreeMap::new();
    if let Some(inner) = rest.strip_prefix('{') {
        let mut chars = inner.char_indices().peekable();
        loop {
            // Label name up to '=', or the closing brace.
            let mut key = String::new();
            loop {
                let (i, c) = chars.next()?;
                match c {
                    '}' if key.trim().is_empty() => {
                        rest = &inner[i + 1..];
                        return finish(name, labels, rest);
                    }
                    '=' => break,
                    ',' if key.trim().is_empty() => {}
                    c => key.push(c),
                }
            }
            if chars.next()?.1 != '"' {
                return None;
            }
            let mut value = String::new();
            loop {
                let (_, c) = chars.next()?;
                match c {
                    '\\' => match chars.next()?.1 {
                        'n' => value.push('\n'),
                        other => value.push(other),
                    },
                    '"' => break,
                    c => value.push(c),
                }
            }
            labels.insert(key.trim().to_string(), value);
        }
    }
    finish(name, labels, rest)
}

fn finish<'a>(
    name: &'a str,
    labels: BTreeMap<String, String>,
    rest: &str,
) -> Option<(&'a str, BTreeMap<String, String>, f64)> {
    let value = rest.split_whitespace().next()?;
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v.parse().ok()?,
    };
    Some((name, labels, value))
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = r#"# HELP http_requests_total Requests.
# TYPE http_requests_total counter
http_requests_total{code="200",path="/a"} 10
http_requests_total{code="200",path="/b,\"c\"}"} 5 1700000000000
http_requests_total{code="500"} 2
http_requests_total_created{code="200"} 1.7e9
other 3
broken{code="200" 9
"#;

    #[test]
    fn sums_the_matching_series_and_skips_the_rest() {
        let want = |pairs: &[(&str, &str)]| {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        assert_eq!(sum(TEXT, "http_requests_total", &want(&[])), Some(17.0));
        assert_eq!(
            sum(TEXT, "http_requests_total", &want(&[("code", "200")])),
            Some(15.0)
        );
        assert_eq!(
            sum(TEXT, "http_requests_total", &want(&[("path", "/b,\"c\"}")])),
            Some(5.0),
            "escapes and commas in values"
        );
        assert_eq!(sum(TEXT, "other", &want(&[])), Some(3.0));
        assert_eq!(
            sum(TEXT, "http_requests_total", &want(&[("code", "404")])),
            None
        );
        assert_eq!(sum(TEXT, "missing", &want(&[])), None);
    }
}
