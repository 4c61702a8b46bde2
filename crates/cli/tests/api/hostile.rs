//! A corpus of hostile inputs: each gets its documented verify code or a 4xx
//! problem+json, never a 5xx, and the server stays healthy.

use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue};
use reqwest::{Method, StatusCode};
use secrecy::ExposeSecret;
use serde_json::{Value, json};

use crate::helpers::*;

#[derive(Debug)]
enum Expect {
    Code(&'static str),
    Status(u16),
}

struct Case {
    name: String,
    method: Method,
    path: String,
    auth: Option<Vec<u8>>,
    content_type: Option<&'static str>,
    body: Vec<u8>,
    expect: Expect,
}

fn case(name: &str, method: Method, path: &str, body: Vec<u8>, expect: Expect) -> Case {
    Case {
        name: name.to_owned(),
        method,
        path: path.to_owned(),
        auth: None,
        content_type: Some("application/json"),
        body,
        expect,
    }
}

fn verify_key(name: &str, key: &str, code: &'static str) -> Case {
    let body = serde_json::to_vec(&json!({ "key": key })).unwrap();
    case(
        name,
        Method::POST,
        "/v1/keys/verify",
        body,
        Expect::Code(code),
    )
}

fn verify_body(name: &str, body: &[u8], status: u16) -> Case {
    case(
        name,
        Method::POST,
        "/v1/keys/verify",
        body.to_vec(),
        Expect::Status(status),
    )
}

fn with_checksum(body: &str) -> String {
    format!(
        "{body}{}",
        std::str::from_utf8(&keyhaven_core::format::checksum(body.as_bytes())).unwrap()
    )
}

#[tokio::test]
async fn hostile_inputs_get_precise_answers_and_no_5xx() {
    let app = spawn_app().await;
    let ks = app.create_keyspace("acme_live").await;
    let good = app.create_key(json!({"keyspace_id": ks.id})).await;
    let key = good.key.clone();
    let body = &key[..key.len() - 6];
    let key_id = good.record.key_id.clone();

    let mut cases = vec![
        verify_key("empty key", "", "MALFORMED"),
        verify_key(
            "NUL inside",
            &format!("{}\0{}", &key[..20], &key[21..]),
            "MALFORMED",
        ),
        verify_key("NUL appended", &format!("{key}\0"), "MALFORMED"),
        verify_key("CRLF appended", &format!("{key}\r\n"), "MALFORMED"),
        verify_key(
            "CRLF header injection",
            &format!("{key}\r\nX-Evil: 1"),
            "MALFORMED",
        ),
        verify_key("leading space", &format!(" {key}"), "MALFORMED"),
        verify_key("tab inside", &key.replacen('_', "\t", 1), "MALFORMED"),
        verify_key(
            "cyrillic a in prefix",
            &key.replacen('a', "\u{0430}", 1),
            "MALFORMED",
        ),
        verify_key(
            "fullwidth digit",
            &format!("{}\u{FF11}", &key[..key.len() - 1]),
            "MALFORMED",
        ),
        verify_key(
            "zero-width space",
            &format!("{}\u{200B}{}", &key[..10], &key[10..]),
            "MALFORMED",
        ),
        verify_key("RTL override", &format!("\u{202E}{key}"), "MALFORMED"),
        verify_key(
            "emoji",
            &format!("{}🔑", &key[..key.len() - 4]),
            "MALFORMED",
        ),
        verify_key(
            "extra underscore in id",
            &with_checksum(&body.replacen(
                &key_id,
                &format!("{}_{}", &key_id[..6], &key_id[7..]),
                1,
            )),
            "MALFORMED",
        ),
        verify_key(
            "double underscore",
            &key.replacen("live_", "live__", 1),
            "MALFORMED",
        ),
        verify_key(
            "wrong checksum",
            &format!(
                "{}{}",
                &key[..key.len() - 1],
                if key.ends_with('2') { '3' } else { '2' }
            ),
            "MALFORMED",
        ),
        verify_key("lowercased", &key.to_lowercase(), "MALFORMED"),
        verify_key("uppercased", &key.to_uppercase(), "MALFORMED"),
        verify_key("truncated", &key[..key.len() - 1], "MALFORMED"),
        verify_key("one char more", &format!("{key}a"), "MALFORMED"),
        verify_key(
            "zero in secret",
            &with_checksum(&format!("{}0", &body[..body.len() - 1])),
            "MALFORMED",
        ),
        verify_key(
            "capital O in secret",
            &with_checksum(&format!("{}O", &body[..body.len() - 1])),
            "MALFORMED",
        ),
        verify_key(
            "lowercase l in secret",
            &with_checksum(&format!("{}l", &body[..body.len() - 1])),
            "MALFORMED",
        ),
        verify_key("percent-encoded", &key.replacen('_', "%5F", 1), "MALFORMED"),
        verify_key("prefix only", "acme_live", "MALFORMED"),
        verify_key("70 letters", &"a".repeat(70), "MALFORMED"),
        verify_key("10 KB key", &"a".repeat(10_000), "MALFORMED"),
        verify_key(
            "uppercase prefix",
            &with_checksum(&body.replacen("acme", "ACME", 1)),
            "MALFORMED",
        ),
        verify_key(
            "unknown id, valid checksum",
            &with_checksum(&body.replacen(&key_id, "111111111111", 1)),
            "NOT_FOUND",
        ),
        verify_key(
            "wrong secret, valid checksum",
            &with_checksum(&format!(
                "{}{}",
                &body[..body.len() - 1],
                if body.ends_with('z') { 'y' } else { 'z' }
            )),
            "NOT_FOUND",
        ),
        verify_key("a root key", &app.root_key, "NOT_FOUND"),
        verify_key(
            "a generated key never stored",
            keyhaven_core::generate(&keyhaven_core::Prefix::new("acme_live").unwrap())
                .unwrap()
                .key()
                .expose_secret(),
            "NOT_FOUND",
        ),
        verify_body(
            "1 MB key",
            &serde_json::to_vec(&json!({"key": "a".repeat(1 << 20)})).unwrap(),
            413,
        ),
        verify_body("2 MB body of spaces", &vec![b' '; 2 << 20], 413),
        verify_body("key is a number", br#"{"key": 5}"#, 400),
        verify_body("key is null", br#"{"key": null}"#, 400),
        verify_body("key is an array", br#"{"key": ["a"]}"#, 400),
        verify_body("key is an object", br#"{"key": {"a": 1}}"#, 400),
        verify_body("key is a bool", br#"{"key": true}"#, 400),
        verify_body("missing key", br#"{"scopes": []}"#, 400),
        verify_body("empty body", b"", 400),
        verify_body("unknown field", br#"{"key": "x", "kee": 1}"#, 400),
        verify_body(
            "scopes is a string",
            br#"{"key": "x", "scopes": "read"}"#,
            400,
        ),
        verify_body(
            "1000 scopes",
            &serde_json::to_vec(&json!({"key": "x", "scopes": vec!["s"; 1000]})).unwrap(),
            400,
        ),
        verify_body(
            "scope with newline",
            br#"{"key": "x", "scopes": ["a\nb"]}"#,
            400,
        ),
        verify_body(
            "deep nesting",
            format!("{{\"key\": {}{}}}", "[".repeat(10_000), "]".repeat(10_000)).as_bytes(),
            400,
        ),
        verify_body("truncated JSON", br#"{"key": "acme"#, 400),
        verify_body("invalid UTF-8", b"{\"key\": \"\xff\xfe\"}", 400),
        verify_body("top-level array", br#"[{"key": "x"}]"#, 400),
        verify_body("top-level string", br#""key""#, 400),
        verify_body("duplicate field", br#"{"key": "a", "key": "b"}"#, 400),
        verify_body("BOM prefix", b"\xef\xbb\xbf{\"key\": \"x\"}", 400),
        verify_body("NaN literal", br#"{"key": NaN}"#, 400),
        // Admin endpoints.
        case(
            "prefix uppercase",
            Method::POST,
            "/v1/keyspaces",
            br#"{"name":"n","prefix":"Acme"}"#.to_vec(),
            Expect::Status(400),
        ),
        case(
            "prefix too long",
            Method::POST,
            "/v1/keyspaces",
            serde_json::to_vec(&json!({"name":"n","prefix":"a".repeat(21)})).unwrap(),
            Expect::Status(400),
        ),
        case(
            "reserved prefix",
            Method::POST,
            "/v1/keyspaces",
            br#"{"name":"n","prefix":"kh_root"}"#.to_vec(),
            Expect::Status(400),
        ),
        case(
            "duplicate prefix",
            Method::POST,
            "/v1/keyspaces",
            br#"{"name":"n","prefix":"acme_live"}"#.to_vec(),
            Expect::Status(409),
        ),
        case(
            "name with control char",
            Method::POST,
            "/v1/keyspaces",
            br#"{"name":"a\u0007b","prefix":"abc"}"#.to_vec(),
            Expect::Status(400),
        ),
        case(
            "name of 10k chars",
            Method::POST,
            "/v1/keyspaces",
            serde_json::to_vec(&json!({"name":"n".repeat(10_000),"prefix":"abc"})).unwrap(),
            Expect::Status(400),
        ),
        case(
            "keyspace_id a number",
            Method::POST,
            "/v1/keys",
            br#"{"keyspace_id": 7}"#.to_vec(),
            Expect::Status(400),
        ),
        case(
            "keyspace_id unknown",
            Method::POST,
            "/v1/keys",
            br#"{"keyspace_id": "ks_nope"}"#.to_vec(),
            Expect::Status(400),
        ),
        case(
            "expires_at not a time",
            Method::POST,
            "/v1/keys",
            serde_json::to_vec(&json!({"keyspace_id": ks.id, "expires_at": "tomorrow"})).unwrap(),
            Expect::Status(400),
        ),
        case(
            "expires_at in the past",
            Method::POST,
            "/v1/keys",
            serde_json::to_vec(
                &json!({"keyspace_id": ks.id, "expires_at": "2001-01-01T00:00:00Z"}),
            )
            .unwrap(),
            Expect::Status(400),
        ),
        case(
            "meta an array",
            Method::POST,
            "/v1/keys",
            serde_json::to_vec(&json!({"keyspace_id": ks.id, "meta": [1]})).unwrap(),
            Expect::Status(400),
        ),
        case(
            "meta 40 KB",
            Method::POST,
            "/v1/keys",
            serde_json::to_vec(&json!({"keyspace_id": ks.id, "meta": {"x": "y".repeat(40_000)}}))
                .unwrap(),
            Expect::Status(400),
        ),
        case(
            "meta deeply nested",
            Method::POST,
            "/v1/keys",
            format!(
                "{{\"keyspace_id\":\"{}\",\"meta\":{{\"a\":{}{}}}}}",
                ks.id,
                "[".repeat(5000),
                "]".repeat(5000)
            )
            .into_bytes(),
            Expect::Status(400),
        ),
        case(
            "owner unknown",
            Method::POST,
            "/v1/keys",
            serde_json::to_vec(&json!({"keyspace_id": ks.id, "owner_id": "own_nope"})).unwrap(),
            Expect::Status(400),
        ),
        case(
            "owner external_id empty",
            Method::POST,
            "/v1/owners",
            br#"{"external_id": ""}"#.to_vec(),
            Expect::Status(400),
        ),
        case(
            "patch scopes 1000",
            Method::PATCH,
            &format!("/v1/keys/{key_id}"),
            serde_json::to_vec(&json!({"scopes": vec!["s"; 1000]})).unwrap(),
            Expect::Status(400),
        ),
        case(
            "patch enabled a string",
            Method::PATCH,
            &format!("/v1/keys/{key_id}"),
            br#"{"enabled": "no"}"#.to_vec(),
            Expect::Status(400),
        ),
        case(
            "revoke reason 10k",
            Method::POST,
            &format!("/v1/keys/{key_id}/revoke"),
            serde_json::to_vec(&json!({"reason": "r".repeat(10_000)})).unwrap(),
            Expect::Status(400),
        ),
        case(
            "path traversal",
            Method::GET,
            "/v1/keys/..%2F..%2Fetc%2Fpasswd",
            vec![],
            Expect::Status(404),
        ),
        case(
            "NUL in path",
            Method::GET,
            "/v1/keys/%00",
            vec![],
            Expect::Status(404),
        ),
        case(
            "invalid UTF-8 in path",
            Method::GET,
            "/v1/keys/%FF%FE",
            vec![],
            Expect::Status(404),
        ),
        case(
            "negative limit",
            Method::GET,
            "/v1/keys?limit=-1",
            vec![],
            Expect::Status(400),
        ),
        case(
            "limit not a number",
            Method::GET,
            "/v1/keys?limit=abc",
            vec![],
            Expect::Status(400),
        ),
        case(
            "limit too big",
            Method::GET,
            "/v1/keys?limit=100000",
            vec![],
            Expect::Status(400),
        ),
        case(
            "garbage cursor",
            Method::GET,
            "/v1/keys?cursor=%27%20OR%201%3D1",
            vec![],
            Expect::Status(400),
        ),
        case(
            "unknown query parameter",
            Method::GET,
            "/v1/keys?keyspace=x",
            vec![],
            Expect::Status(400),
        ),
        case(
            "audit since not a time",
            Method::GET,
            "/v1/audit-events?since=yesterday",
            vec![],
            Expect::Status(400),
        ),
        case(
            "SQL in keyspace id",
            Method::GET,
            "/v1/keyspaces/ks_'%20OR%201=1--",
            vec![],
            Expect::Status(404),
        ),
        case(
            "wrong method",
            Method::GET,
            "/v1/keys/verify",
            vec![],
            Expect::Status(405),
        ),
        case(
            "unknown path",
            Method::GET,
            "/v1/nothing",
            vec![],
            Expect::Status(404),
        ),
    ];
    let mut text_plain = verify_body("text/plain body", br#"{"key":"x"}"#, 415);
    text_plain.content_type = Some("text/plain");
    cases.push(text_plain);
    let mut long_idem = case(
        "1000-char Idempotency-Key",
        Method::POST,
        "/v1/owners",
        br#"{"external_id":"x"}"#.to_vec(),
        Expect::Status(400),
    );
    long_idem.name = "idem".into();
    cases.push(long_idem);
    for (name, auth) in [
        ("no auth", None),
        ("bearer garbage", Some(b"Bearer garbage".to_vec())),
        ("basic auth", Some(b"Basic dXNlcjpwYXNz".to_vec())),
        (
            "bearer 10 KB",
            Some(format!("Bearer {}", "a".repeat(10_000)).into_bytes()),
        ),
        (
            "bearer non-ASCII bytes",
            Some(b"Bearer \xff\xfe\x80".to_vec()),
        ),
        (
            "customer key as root key",
            Some(format!("Bearer {key}").into_bytes()),
        ),
        (
            "root key with wrong checksum",
            // Another last character than the key's own, so the checksum is wrong.
            Some({
                let (body, last) = app.root_key.split_at(app.root_key.len() - 1);
                let other = if last == "x" { 'y' } else { 'x' };
                format!("Bearer {body}{other}").into_bytes()
            }),
        ),
    ] {
        let mut c = verify_key(name, &key, "VALID");
        c.auth = Some(auth.unwrap_or_default());
        c.expect = Expect::Status(401);
        cases.push(c);
    }
    assert!(cases.len() >= 50, "corpus has {} cases", cases.len());

    for c in &cases {
        let mut req = app
            .http
            .request(c.method.clone(), app.url(&c.path))
            .body(c.body.clone());
        match &c.auth {
            Some(raw) if raw.is_empty() => {}
            Some(raw) => req = req.header(AUTHORIZATION, HeaderValue::from_bytes(raw).unwrap()),
            None => req = req.bearer_auth(&app.root_key),
        }
        if let Some(ct) = c.content_type {
            req = req.header(CONTENT_TYPE, ct);
        }
        if c.name == "idem" {
            req = req.header("Idempotency-Key", "k".repeat(1000));
        }
        let response = req.send().await.unwrap();
        let status = response.status();
        let content_type = response
            .headers()
            .get(CONTENT_TYPE)
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        let text = response.text().await.unwrap();
        assert!(!status.is_server_error(), "{}: {status} {text}", c.name);
        match c.expect {
            Expect::Code(code) => {
                assert_eq!(status, StatusCode::OK, "{}: {text}", c.name);
                let v: Value = serde_json::from_str(&text).unwrap();
                assert_eq!(v["code"], code, "{}: {text}", c.name);
            }
            Expect::Status(expected) => {
                assert_eq!(status.as_u16(), expected, "{}: {text}", c.name);
                assert_eq!(content_type, "application/problem+json", "{}", c.name);
                let p: Value = serde_json::from_str(&text).unwrap();
                assert_eq!(p["status"], expected, "{}", c.name);
                assert!(
                    p["code"].as_str().is_some_and(|s| !s.is_empty()),
                    "{}",
                    c.name
                );
                assert!(
                    p["type"]
                        .as_str()
                        .unwrap()
                        .starts_with("urn:keyhaven:problem:")
                );
                // No error echoes the key's secret.
                assert!(
                    !text.contains(&key[23..key.len() - 6]),
                    "{}: {text}",
                    c.name
                );
            }
        }
    }
    // Still healthy, still verifying, and no hostile input wrote anything.
    assert!(app.healthy().await);
    assert_eq!(app.verify(&key).await.code, "VALID");
    let (_, keys) = app.send(Method::GET, "/v1/keys", None).await;
    assert_eq!(keys["data"].as_array().unwrap().len(), 1);
    let (_, keyspaces) = app.send(Method::GET, "/v1/keyspaces", None).await;
    assert_eq!(keyspaces["data"].as_array().unwrap().len(), 1);
    let (_, owners) = app.send(Method::GET, "/v1/owners", None).await;
    assert_eq!(owners["data"], json!([]));
}
