//! What a gateway asks of each request: per-route rules from the configuration (path
//! prefix and methods → public, or required scopes, cost and named limits), where the key
//! is read from, and which address the request came from.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::validate::{self, MAX_COST, MAX_NAMED_LIMITS};

/// One route rule: requests whose path starts with `path` (segment-wise) and whose
/// method is in `methods` (any, when empty).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteRule {
    /// Path prefix, matched segment-wise: `/admin` matches `/admin` and `/admin/users`,
    /// never `/administrator`. `/` matches everything.
    pub path: String,
    /// Upper-case methods (`GET`, `POST`); empty: every method.
    #[serde(default)]
    pub methods: Vec<String>,
    /// No key needed: the request is forwarded as it is (client `X-Keyhaven-*` headers
    /// still stripped).
    #[serde(default)]
    pub public: bool,
    /// Scopes the key must hold.
    #[serde(default)]
    pub scopes: Vec<String>,
    /// Units the request takes from the key's rate limits and quota (default 1).
    #[serde(default)]
    pub cost: Option<u64>,
    /// Check only these named limits, each at its own cost (default: every limit).
    #[serde(default)]
    pub ratelimits: Option<Vec<RouteLimit>>,
    /// A permission query the key must satisfy, such as
    /// `documents.read AND (documents.write OR admin)` (403 `insufficient_permissions`
    /// otherwise).
    #[serde(default)]
    pub permissions: Option<String>,
}

/// A named limit a route takes from, at its own cost.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteLimit {
    pub name: String,
    #[serde(default)]
    pub cost: Option<u64>,
}

/// How a gateway reads requests: where the key is, which keys it accepts, how it finds
/// the client's address, and the route rules.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Rules {
    /// A header holding the key, looked at before `Authorization: Bearer` and
    /// `X-API-Key`. Never the URL: a key in a query string ends up in access logs.
    pub key_header: Option<String>,
    /// Proxies in front of this one that append to `X-Forwarded-For` and are trusted: the
    /// client's address is the one this many hops from the right. 0: the socket's address.
    pub trusted_proxy_hops: u32,
    /// Accept only keys of this keyspace (others are answered as unknown keys).
    pub keyspace_id: Option<String>,
    /// The audience this gateway is for signed tokens: a token naming another (or any,
    /// when this is unset) is refused as an unknown key.
    pub token_audience: Option<String>,
    /// The route rules; the longest matching `path` wins, and the first of equals. A
    /// request no rule matches needs a valid key, with no scope and cost 1.
    pub routes: Vec<RouteRule>,
}

/// What one request must present, from its matching rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Access<'r> {
    pub public: bool,
    pub scopes: &'r [String],
    pub cost: u64,
    pub ratelimits: Option<&'r [RouteLimit]>,
    pub permissions: Option<&'r str>,
    /// The gateway's audience, for signed tokens ([`Rules::token_audience`]).
    pub audience: Option<&'r str>,
}

/// Headers that can carry a key, in the order they are looked at after `key_header`.
pub const BEARER_HEADER: &str = "authorization";
pub const API_KEY_HEADER: &str = "x-api-key";

impl Rules {
    /// What a `method` request for `path` (without its query, as sent) must present.
    /// Rules match the path as the API behind will read it ([`route_path`]): `None` for
    /// a path that could be read two ways (dot segments, an encoded `/`, `\` or `.`,
    /// bad percent-encoding), which front doors refuse with 400 rather than guess.
    pub fn access(&self, method: &str, path: &str) -> Option<Access<'_>> {
        let path = route_path(path)?;
        let path = path.as_str();
        let mut best: Option<&RouteRule> = None;
        for rule in &self.routes {
            // HEAD is a GET without its body (and frameworks route it to GET's handler):
            // a rule for GET covers it.
            let method_ok = rule.methods.is_empty()
                || rule.methods.iter().any(|m| {
                    m.eq_ignore_ascii_case(method)
                        || m == "GET" && method.eq_ignore_ascii_case("HEAD")
                });
            if method_ok
                && prefix_matches(&rule.path, path)
                && best.is_none_or(|b| rule.path.len() > b.path.len())
            {
                best = Some(rule);
            }
        }
        Some(match best {
            Some(rule) => Access {
                public: rule.public,
                scopes: &rule.scopes,
                cost: rule.cost.unwrap_or(1),
                ratelimits: rule.ratelimits.as_deref(),
                permissions: rule.permissions.as_deref(),
                audience: self.token_audience.as_deref(),
            },
            None => Access {
                public: false,
                scopes: &[],
                cost: 1,
                ratelimits: None,
                permissions: None,
                audience: self.token_audience.as_deref(),
            },
        })
    }

    /// The key a request presents and the header it came in (lower case), looked for in
    /// `key_header`, then `Authorization: Bearer`, then `X-API-Key`. `header` gives a
    /// header's value by its lower-case name.
    pub fn presented_key<'h>(
        &self,
        header: impl Fn(&str) -> Option<&'h str>,
    ) -> Option<(&'h str, String)> {
        let own = self.key_header.as_deref().map(str::to_ascii_lowercase);
        if let Some(name) = own
            && let Some(value) = header(&name)
        {
            let value = value.trim();
            return (!value.is_empty()).then_some((value, name));
        }
        if let Some(token) = header(BEARER_HEADER).and_then(bearer_token) {
            return Some((token, BEARER_HEADER.to_owned()));
        }
        header(API_KEY_HEADER)
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(|v| (v, API_KEY_HEADER.to_owned()))
    }

    /// The client's address: the socket's, or with trusted proxies in front the one
    /// `trusted_proxy_hops` entries from the right of `X-Forwarded-For` (all its values
    /// joined with commas). A list too short or unreadable gives no address, never the
    /// socket's: that is a proxy's, and an IP allowlist admitting the proxy's network
    /// would otherwise admit every client behind it.
    pub fn client_ip(&self, socket: Option<IpAddr>, forwarded_for: Option<&str>) -> Option<IpAddr> {
        let hops = usize::try_from(self.trusted_proxy_hops).unwrap_or(usize::MAX);
        if hops == 0 {
            return socket;
        }
        forwarded_for
            .and_then(|list| list.rsplit(',').nth(hops - 1))
            .and_then(|hop| hop.trim().parse().ok())
    }

    /// Every rule within bounds; the error names the field.
    pub fn check(&self, at: &str) -> Result<(), String> {
        if let Some(name) = &self.key_header
            && !is_token(name)
        {
            return Err(format!("{at}.key_header must be a header name"));
        }
        if let Some(id) = &self.keyspace_id
            && id.trim().is_empty()
        {
            return Err(format!("{at}.keyspace_id must not be empty"));
        }
        for (i, rule) in self.routes.iter().enumerate() {
            let at = format!("{at}.routes[{i}]");
            if !rule.path.starts_with('/') || rule.path.chars().any(char::is_control) {
                return Err(format!("{at}.path must start with /"));
            }
            if let Some(bad) = rule
                .methods
                .iter()
                .find(|m| !is_token(m) || m.bytes().any(|b| b.is_ascii_lowercase()))
            {
                return Err(format!("{at}.methods: {bad:?} is not an upper-case method"));
            }
            validate::scopes(&rule.scopes).map_err(|e| format!("{at}.scopes: {e}"))?;
            let named = rule.ratelimits.as_deref().unwrap_or_default();
            if named.len() > MAX_NAMED_LIMITS {
                return Err(format!("{at}.ratelimits: at most {MAX_NAMED_LIMITS}"));
            }
            let costs = std::iter::once(rule.cost).chain(named.iter().map(|n| n.cost));
            if costs.flatten().any(|c| c > MAX_COST) {
                return Err(format!("{at}: a cost must be at most {MAX_COST}"));
            }
            if let Some(query) = &rule.permissions {
                keyhaven_core::permissions::Query::parse(query)
                    .map_err(|e| format!("{at}.permissions: the query {e}"))?;
            }
            if rule.public
                && (!rule.scopes.is_empty()
                    || rule.ratelimits.is_some()
                    || rule.permissions.is_some())
            {
                return Err(format!(
                    "{at}: a public route takes no scopes, permissions or limits"
                ));
            }
        }
        Ok(())
    }
}

/// The path rules are matched against: percent-decoded, with empty segments (`//`)
/// dropped, as web servers and frameworks read it. `None` when decoding could change
/// where the path leads (`.` or `..` segments, an encoded `/`, `\\` anywhere) or is not
/// UTF-8: such a path would be matched one way here and served another way behind.
pub fn route_path(raw: &str) -> Option<String> {
    if !raw.starts_with('/') {
        return None;
    }
    let bytes = raw.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            let value = u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?;
            if value == b'/' {
                return None;
            }
            decoded.push(value);
            i += 3;
        } else {
            decoded.push(b);
            i += 1;
        }
    }
    let decoded = String::from_utf8(decoded).ok()?;
    if decoded.contains('\\') || decoded.chars().any(char::is_control) {
        return None;
    }
    let mut out = String::with_capacity(decoded.len() + 1);
    for segment in decoded.split('/').filter(|s| !s.is_empty()) {
        if segment == "." || segment == ".." {
            return None;
        }
        out.push('/');
        out.push_str(segment);
    }
    if out.is_empty() || decoded.ends_with('/') {
        out.push('/');
    }
    Some(out)
}

/// `prefix` matches `path` segment-wise.
fn prefix_matches(prefix: &str, path: &str) -> bool {
    let prefix = prefix.trim_end_matches('/');
    match path.strip_prefix(prefix) {
        Some(rest) => rest.is_empty() || rest.starts_with('/'),
        None => false,
    }
}

/// An `Authorization` value's bearer token: the `Bearer` scheme in any case.
pub fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

/// An HTTP token (RFC 9110 §5.6.2), as header names and methods are.
fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(path: &str, methods: &[&str], scope: &str) -> RouteRule {
        RouteRule {
            path: path.into(),
            methods: methods.iter().map(|m| (*m).to_owned()).collect(),
            public: false,
            scopes: vec![scope.into()],
            cost: None,
            ratelimits: None,
            permissions: None,
        }
    }

    #[test]
    fn the_longest_matching_prefix_with_a_matching_method_wins() {
        let rules = Rules {
            routes: vec![
                rule("/", &[], "any"),
                rule("/docs", &["GET"], "docs:read"),
                rule("/docs/", &["POST", "PUT"], "docs:write"),
                rule("/docs/admin", &[], "admin"),
            ],
            ..Rules::default()
        };
        let scope = |m: &str, p: &str| rules.access(m, p).unwrap().scopes.first().cloned();
        assert_eq!(scope("GET", "/docs"), Some("docs:read".into()));
        assert_eq!(
            scope("HEAD", "/docs/1"),
            Some("docs:read".into()),
            "HEAD is GET"
        );
        assert_eq!(scope("get", "/docs/1"), Some("docs:read".into()));
        assert_eq!(scope("POST", "/docs/1"), Some("docs:write".into()));
        assert_eq!(scope("DELETE", "/docs/1"), Some("any".into()));
        assert_eq!(scope("GET", "/docsx"), Some("any".into()));
        assert_eq!(scope("GET", "/docs/admin/x"), Some("admin".into()));
        assert_eq!(
            scope("GET", "/docs/administrator"),
            Some("docs:read".into())
        );
        let none = Rules::default();
        let plain = none.access("GET", "/x").unwrap();
        assert_eq!(plain.scopes, &[] as &[String]);
        assert_eq!(plain.cost, 1);
        assert!(!plain.public);
        // Matched as the API behind reads the path, or not at all.
        assert_eq!(scope("GET", "/%64ocs/admin/x"), Some("admin".into()));
        assert_eq!(scope("GET", "//docs//admin"), Some("admin".into()));
        for two_ways in [
            "/public/../docs/admin",
            "/docs/./admin",
            "/docs%2fadmin",
            "/docs%2Fadmin",
            "/docs/%2e%2e/x",
            "/docs\\admin",
            "/docs/%zz",
            "/docs/%c3",
            "/docs%00",
            "docs/admin",
            "*",
        ] {
            assert!(rules.access("GET", two_ways).is_none(), "{two_ways}");
        }
    }

    #[test]
    fn the_key_comes_from_the_own_header_then_bearer_then_x_api_key() {
        let rules = Rules {
            key_header: Some("X-Acme-Key".into()),
            ..Rules::default()
        };
        let headers = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| pairs.iter().find(|(n, _)| *n == name).map(|(_, v)| *v)
        };
        let all = headers(&[
            ("x-acme-key", "own"),
            ("authorization", "Bearer b"),
            ("x-api-key", "x"),
        ]);
        assert_eq!(rules.presented_key(all), Some(("own", "x-acme-key".into())));
        let two = headers(&[("authorization", "bearer  b "), ("x-api-key", "x")]);
        assert_eq!(
            rules.presented_key(two),
            Some(("b", "authorization".into()))
        );
        let basic = headers(&[("authorization", "Basic dTpw"), ("x-api-key", "x")]);
        assert_eq!(rules.presented_key(basic), Some(("x", "x-api-key".into())));
        assert_eq!(
            rules.presented_key(headers(&[("authorization", "Bearer ")])),
            None
        );
        assert_eq!(rules.presented_key(headers(&[])), None);
    }

    #[test]
    fn the_client_address_is_the_trusted_hop_or_the_socket_without_proxies() {
        let socket: Option<IpAddr> = "10.0.0.9".parse().ok();
        let at = |hops: u32, xff: Option<&str>| {
            let rules = Rules {
                trusted_proxy_hops: hops,
                ..Rules::default()
            };
            rules.client_ip(socket, xff).map(|ip| ip.to_string())
        };
        let xff = Some("203.0.113.7, 198.51.100.1 ,10.1.1.1");
        assert_eq!(at(0, xff).as_deref(), Some("10.0.0.9"));
        assert_eq!(at(1, xff).as_deref(), Some("10.1.1.1"));
        assert_eq!(at(2, xff).as_deref(), Some("198.51.100.1"));
        assert_eq!(at(3, xff).as_deref(), Some("203.0.113.7"));
        // Behind proxies, an unreadable hop is no address (never the proxy's own).
        assert_eq!(at(4, xff).as_deref(), None);
        assert_eq!(at(1, Some("junk")).as_deref(), None);
        assert_eq!(at(1, Some("203.0.113.7:5555")).as_deref(), None);
        assert_eq!(at(1, Some("2001:db8::1")).as_deref(), Some("2001:db8::1"));
        assert_eq!(at(1, None).as_deref(), None);
    }

    #[test]
    fn bad_rules_are_refused_by_name() {
        let bad = |r: RouteRule| {
            Rules {
                routes: vec![r],
                ..Rules::default()
            }
            .check("proxy[0]")
            .unwrap_err()
        };
        assert!(bad(rule("docs", &[], "a")).contains("proxy[0].routes[0].path"));
        assert!(bad(rule("/d", &["get"], "a")).contains("methods"));
        assert!(bad(rule("/d", &[], "bad scope")).contains("scopes"));
        let costly = RouteRule {
            cost: Some(MAX_COST + 1),
            ..rule("/d", &[], "a")
        };
        assert!(bad(costly).contains("cost"));
        let public = RouteRule {
            public: true,
            ..rule("/d", &[], "a")
        };
        assert!(bad(public).contains("public"));
        let bad_query = RouteRule {
            permissions: Some("a AND".into()),
            ..rule("/d", &[], "a")
        };
        assert!(bad(bad_query).contains("proxy[0].routes[0].permissions: the query expected"));
        let public_query = RouteRule {
            public: true,
            scopes: vec![],
            permissions: Some("a".into()),
            ..rule("/d", &[], "a")
        };
        assert!(bad(public_query).contains("public"));
        let header = Rules {
            key_header: Some("bad header".into()),
            ..Rules::default()
        };
        assert!(header.check("gateway").unwrap_err().contains("key_header"));
    }
}
