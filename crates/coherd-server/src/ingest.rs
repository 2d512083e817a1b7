//! Turning a request body into validated observations, all or nothing.

use std::time::Duration;

use axum::http::StatusCode;
use coherd_model::{Limits, Observation, Time};

use crate::error::{ApiError, ItemError};

/// How a body is framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Framing {
    /// One JSON object or an array of them.
    Json,
    /// One JSON object a line.
    Ndjson,
}

impl Framing {
    /// From the Content-Type header (absent means JSON).
    pub(crate) fn from_content_type(ct: Option<&str>) -> Result<Framing, ApiError> {
        let ct = ct.map(|c| {
            c.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        });
        match ct.as_deref() {
            None | Some("application/json") => Ok(Framing::Json),
            Some("application/x-ndjson")
            | Some("application/ndjson")
            | Some("application/jsonl") => Ok(Framing::Ndjson),
            Some(other) => Err(ApiError::Request(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                format!(
                    "unsupported Content-Type {other:?}; send application/json (an object or an array) or application/x-ndjson"
                ),
            )),
        }
    }
}

/// The hard time bounds of reports (DESIGN 2.1). Between `max_clock_skew`
/// and `max_future` ahead, a report is applied and the engine flags the skew.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ClockRules {
    /// How far in the future a report's time may be.
    pub max_future: Duration,
    /// How old a report may be.
    pub max_age: Duration,
}

/// A batch that passed validation.
#[derive(Debug)]
pub(crate) struct Parsed {
    /// The items to store, in body order.
    pub observations: Vec<Observation>,
    /// Items refused for their time only; the others are stored.
    pub rejected: Vec<ItemError>,
}

/// Parses and validates a batch. Every item error is collected, and any error
/// of shape, name or limit refuses the whole batch; an item whose time is out
/// of bounds is refused alone (a request of that one item answers 422).
pub(crate) fn parse_batch(
    body: &[u8],
    framing: Framing,
    limits: &Limits,
    clock: ClockRules,
    now: Time,
) -> Result<Parsed, ApiError> {
    let text = std::str::from_utf8(body)
        .map_err(|_| ApiError::Request(StatusCode::BAD_REQUEST, "the body is not UTF-8".into()))?;
    // NDJSON items with their 1-based line numbers, blank lines skipped.
    let items: Vec<(usize, &str)> = match framing {
        Framing::Ndjson => text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
            .map(|(i, l)| (i + 1, l))
            .collect(),
        Framing::Json => Vec::new(),
    };
    let mut errors = Vec::new();
    let mut rejected = Vec::new();
    let mut out = Vec::new();
    let mut check = |index: usize,
                     r: Result<Observation, Vec<coherd_model::FieldError>>,
                     out: &mut Vec<Observation>| match r {
        Ok(obs) => match clock_check(&obs, clock, now) {
            Ok(()) => out.push(obs),
            Err(e) => rejected.push(ItemError {
                index,
                field: "time".into(),
                message: e,
            }),
        },
        Err(es) => errors.extend(es.into_iter().map(|e| ItemError::new(index, e))),
    };
    match framing {
        Framing::Ndjson => {
            if items.len() > limits.batch {
                return Err(too_many(items.len(), limits));
            }
            for (i, &(n, line)) in items.iter().enumerate() {
                let parsed = Observation::from_json(line, limits)
                    .map_err(|errs| errs.into_iter().map(|e| placed(e, Some(n))).collect());
                check(i, parsed, &mut out);
            }
        }
        Framing::Json => {
            // Items are kept as raw text, so that each is parsed by the same
            // strict reader as an NDJSON line (a key given twice included).
            let malformed = |message: String| {
                ApiError::Invalid(
                    StatusCode::BAD_REQUEST,
                    vec![ItemError {
                        index: 0,
                        field: String::new(),
                        message,
                    }],
                )
            };
            match text.trim_start().as_bytes().first() {
                Some(b'[') => {
                    let list: Vec<&serde_json::value::RawValue> = serde_json::from_str(text)
                        .map_err(|e| malformed(format!("malformed JSON: {e}")))?;
                    if list.len() > limits.batch {
                        return Err(too_many(list.len(), limits));
                    }
                    for (i, item) in list.iter().enumerate() {
                        check(i, Observation::from_json(item.get(), limits), &mut out);
                    }
                }
                Some(b'{') => {
                    // One pass: a syntax error is placed in the body like NDJSON's.
                    let parsed = Observation::from_json(text, limits).map_err(|errs| {
                        errs.into_iter()
                            .map(|e| ndjson_hint(placed(e, None), text))
                            .collect()
                    });
                    check(0, parsed, &mut out)
                }
                _ => {
                    return Err(malformed(
                        "expected an observation object or an array of them".into(),
                    ));
                }
            }
        }
    }
    if out.is_empty() && errors.is_empty() && rejected.is_empty() {
        return Err(ApiError::Request(
            StatusCode::BAD_REQUEST,
            "the body holds no observations".into(),
        ));
    }
    if out.is_empty() && errors.is_empty() && rejected.len() == 1 {
        // One item, refused: the request failed.
        return Err(ApiError::Invalid(
            StatusCode::UNPROCESSABLE_ENTITY,
            rejected,
        ));
    }
    if errors.is_empty() {
        Ok(Parsed {
            observations: out,
            rejected,
        })
    } else {
        // The batch is refused: every item's errors, time ones included.
        errors.extend(rejected);
        errors.sort_by_key(|e| e.index);
        let syntax = errors.iter().any(|e| e.message.starts_with("line "));
        Err(ApiError::Invalid(
            if syntax {
                StatusCode::BAD_REQUEST
            } else {
                StatusCode::UNPROCESSABLE_ENTITY
            },
            errors,
        ))
    }
}

/// Objects after the first in a JSON body are NDJSON sent under the wrong
/// type, or NDJSON whose newlines `curl -d` stripped: say which.
fn ndjson_hint(mut e: coherd_model::FieldError, text: &str) -> coherd_model::FieldError {
    if !e.message.contains("trailing characters") {
        return e;
    }
    let rest = text.trim_start();
    if rest.contains("}\n") && rest.lines().filter(|l| !l.trim().is_empty()).count() > 1 {
        e.message.push_str(
            "; one object per line is NDJSON: send it with Content-Type: application/x-ndjson",
        );
    } else if rest.contains("}{") {
        e.message.push_str(
            "; objects back to back look like NDJSON whose newlines were stripped (curl -d does that): send the file with --data-binary and Content-Type: application/x-ndjson",
        );
    }
    e
}

/// Places a JSON syntax error the way every body's errors are placed:
/// `line L, column C: malformed JSON: ...`. `line` is the line of the body
/// when serde saw only that line (NDJSON); otherwise serde's own line stands.
fn placed(e: coherd_model::FieldError, line: Option<usize>) -> coherd_model::FieldError {
    let Some(i) = e.message.rfind(" at line ") else {
        return e;
    };
    let (seen_line, column) = e.message[i + " at line ".len()..]
        .split_once(" column ")
        .unwrap_or(("?", "?"));
    let line = line.map_or(seen_line.to_string(), |n| n.to_string());
    let message = format!(
        "line {line}, column {column}: malformed JSON: {}",
        &e.message[..i]
    );
    coherd_model::FieldError::new(e.field, message)
}

fn too_many(n: usize, limits: &Limits) -> ApiError {
    ApiError::Request(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!(
            "{n} observations in one request; at most {} are allowed: split the batch",
            limits.batch
        ),
    )
}

fn clock_check(obs: &Observation, clock: ClockRules, now: Time) -> Result<(), String> {
    let Some(t) = obs.time else { return Ok(()) };
    if t > now.add(clock.max_future) {
        return Err(format!(
            "time {t} is {:.0}s ahead of the server's clock (max_future is {}s): the member's clock is wrong; fix it (NTP) or send no time",
            t.seconds_since(now),
            clock.max_future.as_secs()
        ));
    }
    if t < now.sub(clock.max_age) {
        return Err(format!(
            "time {t} is {:.0}s old (max_report_age is {}s): the report is too old to apply",
            now.seconds_since(t),
            clock.max_age.as_secs()
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> Time {
        "2026-11-22T08:00:00Z".parse().unwrap()
    }

    fn rules() -> ClockRules {
        ClockRules {
            max_future: Duration::from_secs(86_400),
            max_age: Duration::from_secs(600),
        }
    }

    #[test]
    fn every_item_error_is_reported_with_its_index() {
        let body = br#"[{"service":"a","member":"m"},{"service":"A","member":"m"},{"service":"a","member":"m","time":"2026-11-24T09:00:00Z"}]"#;
        let Err(ApiError::Invalid(status, errs)) =
            parse_batch(body, Framing::Json, &Limits::default(), rules(), now())
        else {
            panic!()
        };
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(
            errs.iter()
                .map(|e| (e.index, e.field.as_str()))
                .collect::<Vec<_>>(),
            [(1, "service"), (2, "time")]
        );
    }

    #[test]
    fn an_ndjson_syntax_error_names_its_line_and_column() {
        let body = b"{\"service\":\"a\",\"member\":\"m\"}\n\n{\"service\":\"a\",\"member\": }\n";
        let Err(ApiError::Invalid(status, errs)) =
            parse_batch(body, Framing::Ndjson, &Limits::default(), rules(), now())
        else {
            panic!()
        };
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(errs[0].index, 1);
        assert!(
            errs[0].message.starts_with("line 3, column "),
            "{}",
            errs[0].message
        );
    }

    #[test]
    fn ndjson_and_content_types() {
        let body =
            b"{\"service\":\"a\",\"member\":\"m\"}\n\n{\"service\":\"a\",\"member\":\"n\"}\n";
        assert_eq!(
            parse_batch(body, Framing::Ndjson, &Limits::default(), rules(), now())
                .unwrap()
                .observations
                .len(),
            2
        );
        assert!(Framing::from_content_type(Some("text/plain")).is_err());
        assert_eq!(
            Framing::from_content_type(Some("application/x-ndjson; charset=utf-8")).unwrap(),
            Framing::Ndjson
        );
    }

    #[test]
    fn an_item_out_of_time_bounds_is_refused_alone() {
        let body = br#"[{"service":"a","member":"m"},{"service":"a","member":"n","time":"2026-11-22T09:00:00Z"},{"service":"a","member":"o","time":"2026-11-24T08:00:00Z"},{"service":"a","member":"p","time":"2026-11-22T07:00:00Z"}]"#;
        let parsed = parse_batch(body, Framing::Json, &Limits::default(), rules(), now()).unwrap();
        // An hour ahead is skew (applied, flagged by the engine); two days
        // ahead and an hour old are out of bounds.
        let members: Vec<&str> = parsed
            .observations
            .iter()
            .map(|o| o.member.as_str())
            .collect();
        assert_eq!(members, ["m", "n"]);
        let rejected: Vec<(usize, &str)> = parsed
            .rejected
            .iter()
            .map(|e| (e.index, e.field.as_str()))
            .collect();
        assert_eq!(rejected, [(2, "time"), (3, "time")]);
        assert!(parsed.rejected[0].message.contains("max_future"));
        assert!(parsed.rejected[1].message.contains("max_report_age"));

        let one = br#"{"service":"a","member":"o","time":"2026-11-24T08:00:00Z"}"#;
        let Err(ApiError::Invalid(status, errs)) =
            parse_batch(one, Framing::Json, &Limits::default(), rules(), now())
        else {
            panic!("a request of one refused item fails")
        };
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(errs[0].field, "time");
    }
}
