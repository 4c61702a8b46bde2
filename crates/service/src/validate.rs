//! The checks every front door's input goes through, and the one way times are written.

use keyhaven_store::Timestamp;
use serde_json::{Map, Value};

use crate::error::{Result, ServiceError};

/// Largest `cost` of one verification.
pub const MAX_COST: u64 = 1_000;
/// Most named limits one verification may ask for.
pub const MAX_NAMED_LIMITS: usize = 32;
/// Most scopes on one key (and required by one verification).
pub const MAX_SCOPES: usize = 64;
/// Largest `meta` object, serialized.
pub const MAX_META_BYTES: usize = 16 * 1024;

/// Up to 64 scopes, each 1-100 characters of `[A-Za-z0-9_:.*/-]`.
pub fn scopes(scopes: &[String]) -> Result<()> {
    if scopes.len() > MAX_SCOPES {
        return Err(ServiceError::invalid(format!(
            "at most {MAX_SCOPES} scopes"
        )));
    }
    let ok = |s: &String| {
        (1..=100).contains(&s.len())
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_:.*/-".contains(&b))
    };
    if !scopes.iter().all(ok) {
        return Err(ServiceError::invalid(
            "each scope must be 1-100 characters of [A-Za-z0-9_:.*/-]",
        ));
    }
    Ok(())
}

/// A revocation reason: at most 500 characters, no control characters.
pub fn reason(reason: Option<&str>) -> Result<()> {
    if reason.is_some_and(|r| r.chars().count() > 500 || r.chars().any(char::is_control)) {
        return Err(ServiceError::invalid(
            "reason must be at most 500 characters without control characters",
        ));
    }
    Ok(())
}

/// A display name: 1–200 characters, no control characters.
pub fn name(field: &str, value: &str) -> Result<()> {
    let len = value.chars().count();
    if len == 0 || len > 200 || value.chars().any(char::is_control) {
        return Err(ServiceError::invalid(format!(
            "{field} must be 1-200 characters without control characters"
        )));
    }
    Ok(())
}

/// A `meta` object of at most [`MAX_META_BYTES`] serialized.
/// A role's or plan's description: at most 500 characters without control characters.
pub fn description(description: Option<&str>) -> Result<()> {
    if description.is_some_and(|d| d.chars().count() > 500 || d.chars().any(char::is_control)) {
        return Err(ServiceError::invalid(
            "description must be at most 500 characters without control characters",
        ));
    }
    Ok(())
}

pub fn meta(meta: &Map<String, Value>) -> Result<()> {
    let size = serde_json::to_vec(meta)
        .map(|v| v.len())
        .unwrap_or(usize::MAX);
    if size > MAX_META_BYTES {
        return Err(ServiceError::invalid(format!(
            "meta must serialize to at most {MAX_META_BYTES} bytes"
        )));
    }
    Ok(())
}

/// An RFC 3339 timestamp, in UTC, to the second.
pub fn time(field: &str, value: &str) -> Result<Timestamp> {
    let t = Timestamp::parse(value, &time::format_description::well_known::Rfc3339)
        .map_err(|_| ServiceError::invalid(format!("{field} must be an RFC 3339 timestamp")))?;
    let t = t
        .checked_to_offset(time::UtcOffset::UTC)
        .ok_or_else(|| ServiceError::invalid(format!("{field} is out of the supported range")))?;
    Ok(t.replace_nanosecond(0).unwrap_or(t))
}

/// An optional RFC 3339 filter of a read (`since`, `from`, …), as given: an answer of
/// code `invalid_query` when it is not one.
pub fn query_time(field: &str, value: Option<&str>) -> Result<Option<Timestamp>> {
    value
        .map(|v| {
            Timestamp::parse(v, &time::format_description::well_known::Rfc3339).map_err(|_| {
                ServiceError::bad_request("invalid_query", format!("{field} must be RFC 3339"))
            })
        })
        .transpose()
}

/// A time as every answer, event and audit entry writes it: RFC 3339, UTC.
pub fn rfc3339(t: Timestamp) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// Replaces every quoted value in a serde message (`"…"`) and every backticked span
/// longer than a field name could reasonably be, so no input value is echoed.
pub fn redact(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while let Some(start) = rest.find(['"', '`']) {
        let (before, from_quote) = rest.split_at(start);
        out.push_str(before);
        let quote = from_quote.chars().next().unwrap_or('"');
        let after_open = &from_quote[quote.len_utf8()..];
        match after_open.find(quote) {
            Some(end) => {
                let inner = &after_open[..end];
                let keep = quote == '`'
                    && inner.len() <= 40
                    && keyhaven_core::parse(inner).is_err()
                    && inner.bytes().all(|b| b.is_ascii_graphic());
                out.push(quote);
                out.push_str(if keep { inner } else { "…" });
                out.push(quote);
                rest = &after_open[end + quote.len_utf8()..];
            }
            None => {
                out.push('…');
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
}

/// An IP allowlist as given (`[]`: none), parsed: up to 100 IPv4/IPv6 networks or
/// addresses, each exact (no bits set past its prefix).
pub fn ip_allowlist(entries: &[String]) -> Result<Option<keyhaven_core::IpAllowlist>> {
    keyhaven_core::IpAllowlist::parse(entries)
        .map_err(|e| ServiceError::invalid(format!("ip_allowlist: {e}")))
}

/// An IP allowlist as audit events show it: its entries, or `null` for none.
pub fn ip_allowlist_audit(list: Option<&keyhaven_core::IpAllowlist>) -> Value {
    list.map_or(Value::Null, |l| Value::from(l.entries()))
}

/// Most roles, and most permissions, given to one key or owner (and in one role).
pub const MAX_GRANTS: usize = 64;

/// Role or permission names as given: up to [`MAX_GRANTS`], each 1-100 characters of
/// `[A-Za-z0-9_.:*/-]` (not `AND` or `OR`); duplicates are dropped, order is kept.
pub fn grant_names(field: &str, names: Vec<String>) -> Result<Vec<String>> {
    if names.len() > MAX_GRANTS {
        return Err(ServiceError::invalid(format!(
            "{field}: at most {MAX_GRANTS} names"
        )));
    }
    if let Some(i) = names
        .iter()
        .position(|n| !keyhaven_core::permissions::valid_name(n))
    {
        return Err(ServiceError::invalid(format!(
            "{field}[{i}] must be 1-100 characters of [A-Za-z0-9_.:*/-], and not AND or OR"
        )));
    }
    let mut out: Vec<String> = Vec::with_capacity(names.len());
    for name in names {
        if !out.contains(&name) {
            out.push(name);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redaction_hides_values_and_keeps_field_names() {
        let m = r#"invalid type: string "acme_live_secretstuff", expected a boolean at line 1"#;
        assert_eq!(
            redact(m),
            r#"invalid type: string "…", expected a boolean at line 1"#
        );
        let m = "unknown field `nmae`, expected one of `name`, `prefix`";
        assert_eq!(redact(m), m);
        let long = format!("unknown field `{}`", "x".repeat(60));
        assert_eq!(redact(&long), "unknown field `…`");
        assert_eq!(redact("unterminated \"abc"), "unterminated …");
    }
}
