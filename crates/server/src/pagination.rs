//! Pagination of list answers: `limit` and `cursor` query parameters in, `{data,
//! next_cursor}` out. A cursor is opaque to clients (`v1:<seq>` or `v1:<value>:<seq>`,
//! base64url); one this server did not return is refused.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use keyhaven_store::PageRequest;
use serde::{Deserialize, Serialize};

use crate::error::ApiError;

pub const DEFAULT_PAGE: u32 = 50;
pub const MAX_PAGE: u32 = 500;

/// Turns `limit` and `cursor` query parameters into a page request.
pub fn page_request(limit: Option<u32>, cursor: Option<&str>) -> Result<PageRequest, ApiError> {
    let (sort, page) = sorted_page_request(limit, cursor)?;
    if sort.is_some() {
        return Err(invalid_cursor());
    }
    Ok(page)
}

/// As [`page_request`], for lists ordered by a value before the sequence number: the
/// cursor then also carries the last row's value.
pub fn sorted_page_request(
    limit: Option<u32>,
    cursor: Option<&str>,
) -> Result<(Option<i64>, PageRequest), ApiError> {
    let limit = limit.unwrap_or(DEFAULT_PAGE);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(ApiError::bad_request(
            "invalid_limit",
            format!("limit must be between 1 and {MAX_PAGE}"),
        ));
    }
    let (sort, after) = match cursor.map(decode_cursor).transpose()? {
        Some((sort, seq)) => (sort, Some(seq)),
        None => (None, None),
    };
    Ok((sort, PageRequest { limit, after }))
}

pub fn encode_cursor(seq: i64) -> String {
    URL_SAFE_NO_PAD.encode(format!("v1:{seq}"))
}

/// The cursor of a list ordered by `value`, then sequence number.
pub fn encode_sorted_cursor(value: i64, seq: i64) -> String {
    URL_SAFE_NO_PAD.encode(format!("v1:{value}:{seq}"))
}

fn invalid_cursor() -> ApiError {
    ApiError::bad_request(
        "invalid_cursor",
        "cursor is not one this server returned; pass next_cursor back unchanged",
    )
}

fn decode_cursor(cursor: &str) -> Result<(Option<i64>, i64), ApiError> {
    let invalid = invalid_cursor;
    if cursor.len() > 64 {
        return Err(invalid());
    }
    let bytes = URL_SAFE_NO_PAD.decode(cursor).map_err(|_| invalid())?;
    let text = std::str::from_utf8(&bytes).map_err(|_| invalid())?;
    let rest = text.strip_prefix("v1:").ok_or_else(invalid)?;
    let (sort, seq) = match rest.split_once(':') {
        Some((value, seq)) => (
            Some(
                value
                    .parse::<i64>()
                    .ok()
                    .filter(|v| *v >= 0)
                    .ok_or_else(invalid)?,
            ),
            seq,
        ),
        None => (None, rest),
    };
    let seq = seq
        .parse::<i64>()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(invalid)?;
    Ok((sort, seq))
}

/// `{data: [...], next_cursor}`.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct List<T> {
    pub data: Vec<T>,
    /// Pass as `cursor` to get the next page; `null` on the last page.
    pub next_cursor: Option<String>,
}

impl<T> List<T> {
    pub fn new(data: Vec<T>, next: Option<i64>) -> Self {
        Self {
            data,
            next_cursor: next.map(encode_cursor),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_garbage_is_rejected() {
        assert_eq!(decode_cursor(&encode_cursor(42)).unwrap(), (None, 42));
        assert_eq!(
            decode_cursor(&encode_sorted_cursor(1_700_000_000, 42)).unwrap(),
            (Some(1_700_000_000), 42)
        );
        let sorted = encode_sorted_cursor(7, 3);
        assert!(
            page_request(None, Some(&sorted)).is_err(),
            "a sorted list's cursor is refused by an unsorted list"
        );
        assert!(decode_cursor(&URL_SAFE_NO_PAD.encode("v1:-1:5")).is_err());
        for bad in ["", "xyz", "djE6", "djE6LTE", &"a".repeat(100), "v1:5"] {
            assert!(decode_cursor(bad).is_err(), "{bad}");
        }
        assert!(page_request(Some(0), None).is_err());
        assert!(page_request(Some(MAX_PAGE + 1), None).is_err());
        assert_eq!(page_request(None, None).unwrap().limit, DEFAULT_PAGE);
    }
}
