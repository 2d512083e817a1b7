//! Cursor paging for list endpoints: a page holds at most `limit` items after
//! `cursor`, and when more follow, the answer's `Link: <...>; rel="next"`
//! header gives the same request with the cursor of the next page. The body
//! stays a plain JSON array.

use axum::http::{StatusCode, Uri, header};
use axum::response::{IntoResponse, Json, Response};
use serde::Serialize;

use crate::error::ApiError;

/// Items a page holds unless `limit` says otherwise.
pub(crate) const DEFAULT_LIMIT: u16 = 500;
/// The most items a page holds.
pub(crate) const MAX_LIMIT: u16 = 1000;

/// The page size asked for, checked.
pub(crate) fn limit(asked: Option<u16>) -> Result<usize, ApiError> {
    match asked.unwrap_or(DEFAULT_LIMIT) {
        0 => Err(bad("limit=0: ask for at least one item")),
        n if n > MAX_LIMIT => Err(bad(&format!(
            "limit={n}: a page holds at most {MAX_LIMIT} items; follow the Link header for more"
        ))),
        n => Ok(usize::from(n)),
    }
}

/// The `k` smallest of `items`, sorted, picked in one pass that never holds
/// more than `k` of them: a page costs the page, not the list.
pub(crate) fn smallest<T: Ord>(items: impl IntoIterator<Item = T>, k: usize) -> Vec<T> {
    let mut kept = std::collections::BinaryHeap::with_capacity(k.min(4096));
    for item in items {
        if kept.len() < k {
            kept.push(item);
        } else if kept.peek().is_some_and(|largest| item < *largest) {
            kept.pop();
            kept.push(item);
        }
    }
    kept.into_sorted_vec()
}

/// A query-string mistake in paging.
pub(crate) fn bad(message: &str) -> ApiError {
    ApiError::Request(StatusCode::BAD_REQUEST, message.to_string())
}

/// A cursor this server did not give.
pub(crate) fn bad_cursor() -> ApiError {
    bad("cursor: not one this server gave; start again without it")
}

/// Answers with up to `limit` of `items` (given in order, at most one more
/// than `limit`), and a `Link` to the next page when there is one; `cursor`
/// gives the cursor that continues after an item.
pub(crate) fn respond<T: Serialize>(
    uri: &Uri,
    mut items: Vec<T>,
    limit: usize,
    cursor: impl Fn(&T) -> String,
) -> Response {
    let next = if items.len() > limit {
        items.truncate(limit);
        items.last().map(cursor)
    } else {
        None
    };
    with_next(uri, Json(items).into_response(), next)
}

/// Adds the `Link` to the page after `next`, when there is one.
pub(crate) fn with_next(uri: &Uri, mut response: Response, next: Option<String>) -> Response {
    if let Some(next) = next
        && let Ok(value) = format!("<{}>; rel=\"next\"", with_cursor(uri, &next)).parse()
    {
        response.headers_mut().insert(header::LINK, value);
    }
    response
}

/// The request's path and query with `cursor` set.
fn with_cursor(uri: &Uri, cursor: &str) -> String {
    let mut pairs: Vec<(String, String)> = uri
        .query()
        .and_then(|q| serde_urlencoded::from_str(q).ok())
        .unwrap_or_default();
    pairs.retain(|(k, _)| k != "cursor");
    pairs.push(("cursor".into(), cursor.into()));
    let query = serde_urlencoded::to_string(&pairs).unwrap_or_default();
    format!("{}?{query}", uri.path())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_next_link_keeps_the_filters_and_replaces_the_cursor() {
        let uri: Uri = "/v1/divergences?state=all&cursor=old&kind=drift"
            .parse()
            .unwrap();
        assert_eq!(
            with_cursor(&uri, "12.drift:a b"),
            "/v1/divergences?state=all&kind=drift&cursor=12.drift%3Aa+b"
        );
    }

    #[test]
    fn smallest_keeps_the_k_least_in_order() {
        assert_eq!(smallest([5, 1, 4, 2, 3], 3), [1, 2, 3]);
        assert_eq!(smallest([2, 1], 5), [1, 2]);
        assert!(smallest([1, 2], 0).is_empty());
    }

    #[test]
    fn limits_outside_one_to_the_maximum_are_refused() {
        assert_eq!(limit(None).unwrap(), 500);
        assert_eq!(limit(Some(1000)).unwrap(), 1000);
        assert!(limit(Some(0)).is_err());
        assert!(limit(Some(1001)).is_err());
    }
}
