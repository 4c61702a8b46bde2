//! IP allowlists on keys, owners and keyspaces: a verification must come from an
//! address every one of them admits (FORBIDDEN_IP otherwise, or without `client_ip`),
//! decided only after the secret matched; lists are checked exactly, shown in canonical
//! form, audited, and an edit applies to the next verification.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::gateway::gateway_with;
use crate::gateway_upstream::spawn_upstream;
use crate::helpers::*;

async fn verify_from(app: &TestApp, key: &str, client_ip: Option<&str>) -> Value {
    let mut body = json!({ "key": key });
    if let Some(ip) = client_ip {
        body["client_ip"] = json!(ip);
    }
    let (status, answer) = app.send(Method::POST, "/v1/keys/verify", Some(&body)).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    answer
}

async fn code_from(app: &TestApp, key: &str, client_ip: Option<&str>) -> String {
    verify_from(app, key, client_ip).await["code"]
        .as_str()
        .unwrap()
        .to_owned()
}

async fn patch(app: &TestApp, path: &str, body: Value) -> Value {
    let (status, answer) = app.send(Method::PATCH, path, Some(&body)).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    answer
}

#[tokio::test]
async fn a_verification_must_come_from_an_address_every_allowlist_admits() {
    let app = spawn_app().await;
    let (status, ks) = app
        .send(
            Method::POST,
            "/v1/keyspaces",
            Some(&json!({"name": "ipv", "prefix": "ipv", "ip_allowlist": ["10.0.0.0/8"]})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{ks}");
    let (status, owner) = app
        .send(
            Method::POST,
            "/v1/owners",
            Some(&json!({"external_id": "ip-customer", "ip_allowlist": ["10.1.0.0/16"]})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{owner}");
    let key = app
        .create_key(json!({"keyspace_id": ks["id"], "owner_id": owner["id"],
            "ip_allowlist": ["10.1.2.0/24", "2001:db8::/32"]}))
        .await;
    let k = key.key.as_str();

    for (ip, code) in [
        (Some("10.1.2.3"), "VALID"),
        // IPv4-mapped IPv6, as a dual-stack socket reports an IPv4 client.
        (Some("::ffff:10.1.2.3"), "VALID"),
        // Outside the key's own list, though inside its owner's and keyspace's.
        (Some("10.1.3.1"), "FORBIDDEN_IP"),
        // Outside the owner's list.
        (Some("10.2.2.3"), "FORBIDDEN_IP"),
        // In the key's IPv6 network, but the keyspace and owner admit only IPv4.
        (Some("2001:db8::1"), "FORBIDDEN_IP"),
        (Some("203.0.113.9"), "FORBIDDEN_IP"),
        (None, "FORBIDDEN_IP"),
    ] {
        assert_eq!(code_from(&app, k, ip).await, code, "{ip:?}");
    }
    // A refusal said after the secret matched: it names the key, and is not valid.
    let refused = verify_from(&app, k, Some("203.0.113.9")).await;
    assert_eq!(refused["valid"], false);
    assert_eq!(refused["key_id"], key.record.key_id.as_str());
    // A wrong secret learns nothing about the allowlist.
    let wrong = with_wrong_secret(k, "ipv");
    assert_eq!(
        code_from(&app, &wrong, Some("203.0.113.9")).await,
        "NOT_FOUND"
    );
    assert_eq!(code_from(&app, &wrong, None).await, "NOT_FOUND");

    // Revoked, disabled and expired come first; scopes come after the address.
    let scoped = app
        .create_key(json!({"keyspace_id": ks["id"], "scopes": ["read"]}))
        .await;
    let (status, answer) = app
        .send(
            Method::POST,
            "/v1/keys/verify",
            Some(&json!({"key": scoped.key, "scopes": ["write"], "client_ip": "192.0.2.1"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(answer["code"], "FORBIDDEN_IP");
    let (_, answer) = app
        .send(
            Method::POST,
            "/v1/keys/verify",
            Some(&json!({"key": scoped.key, "scopes": ["write"], "client_ip": "10.9.9.9"})),
        )
        .await;
    assert_eq!(answer["code"], "INSUFFICIENT_SCOPES");
    let path = format!("/v1/keys/{}", scoped.record.key_id);
    patch(&app, &path, json!({"enabled": false})).await;
    assert_eq!(code_from(&app, &scoped.key, None).await, "DISABLED");
    let (status, _) = app
        .send(Method::POST, &format!("{path}/revoke"), Some(&json!({})))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(code_from(&app, &scoped.key, None).await, "REVOKED");

    // A rotation's successor keeps the key's own list.
    let (status, successor) = app
        .send(
            Method::POST,
            &format!("/v1/keys/{}/rotate", key.record.key_id),
            Some(&json!({})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{successor}");
    assert_eq!(
        successor["ip_allowlist"],
        json!(["10.1.2.0/24", "2001:db8::/32"])
    );
    let next = successor["key"].as_str().unwrap();
    assert_eq!(code_from(&app, next, Some("10.1.2.3")).await, "VALID");
    assert_eq!(
        code_from(&app, next, Some("10.1.3.1")).await,
        "FORBIDDEN_IP"
    );

    // A key of a keyspace without lists needs no address.
    let open = app.create_keyspace("open").await;
    let free = app.create_key(json!({"keyspace_id": open.id})).await;
    assert_eq!(code_from(&app, &free.key, None).await, "VALID");
    assert_eq!(code_from(&app, &free.key, Some("192.0.2.1")).await, "VALID");
}

#[tokio::test]
async fn edits_apply_to_the_next_verification_and_an_empty_list_removes_one() {
    let app = spawn_app().await;
    let ks = app.create_keyspace("ipe").await;
    let key = app.create_key(json!({"keyspace_id": ks.id})).await;
    let k = key.key.as_str();
    // Cached as VALID from anywhere...
    assert_eq!(code_from(&app, k, Some("203.0.113.5")).await, "VALID");
    // ...until the keyspace narrows it.
    let ks_path = format!("/v1/keyspaces/{}", ks.id);
    let shown = patch(&app, &ks_path, json!({"ip_allowlist": ["198.51.100.0/24"]})).await;
    assert_eq!(shown["ip_allowlist"], json!(["198.51.100.0/24"]));
    assert_eq!(
        code_from(&app, k, Some("203.0.113.5")).await,
        "FORBIDDEN_IP"
    );
    assert_eq!(code_from(&app, k, Some("198.51.100.5")).await, "VALID");

    // An owner's list applies to its keys from the next verification.
    let (_, owner) = app
        .send(
            Method::POST,
            "/v1/owners",
            Some(&json!({"external_id": "ipe-customer"})),
        )
        .await;
    let owner_path = format!("/v1/owners/{}", owner["id"].as_str().unwrap());
    let key_path = format!("/v1/keys/{}", key.record.key_id);
    patch(&app, &key_path, json!({"owner_id": owner["id"]})).await;
    assert_eq!(code_from(&app, k, Some("198.51.100.5")).await, "VALID");
    let shown = patch(&app, &owner_path, json!({"ip_allowlist": ["198.51.100.7"]})).await;
    assert_eq!(shown["ip_allowlist"], json!(["198.51.100.7/32"]));
    assert_eq!(
        code_from(&app, k, Some("198.51.100.5")).await,
        "FORBIDDEN_IP"
    );
    assert_eq!(code_from(&app, k, Some("198.51.100.7")).await, "VALID");

    // The key's own list, then every list removed with [].
    let shown = patch(&app, &key_path, json!({"ip_allowlist": ["2001:db8::/32"]})).await;
    assert_eq!(shown["ip_allowlist"], json!(["2001:db8::/32"]));
    assert_eq!(
        code_from(&app, k, Some("198.51.100.7")).await,
        "FORBIDDEN_IP"
    );
    for path in [&key_path, &owner_path, &ks_path] {
        let shown = patch(&app, path, json!({"ip_allowlist": []})).await;
        assert_eq!(shown["ip_allowlist"], json!([]), "{path}");
    }
    assert_eq!(code_from(&app, k, None).await, "VALID");

    // Each change is audited, from and to.
    let (_, audit) = app
        .send(
            Method::GET,
            &format!("/v1/audit-events?target_id={}", ks.id),
            None,
        )
        .await;
    let changes: Vec<&Value> = (audit["data"].as_array().unwrap().iter())
        .filter(|e| e["action"] == "keyspace.update")
        .map(|e| &e["changes"]["ip_allowlist"])
        .collect();
    assert!(
        changes.contains(&&json!({"from": null, "to": ["198.51.100.0/24"]})),
        "{audit}"
    );
    assert!(
        changes.contains(&&json!({"from": ["198.51.100.0/24"], "to": null})),
        "{audit}"
    );
    let (_, audit) = app
        .send(
            Method::GET,
            &format!("/v1/audit-events?target_id={}", key.record.key_id),
            None,
        )
        .await;
    assert!(
        (audit["data"].as_array().unwrap().iter()).any(|e| e["action"] == "key.update"
            && e["changes"]["ip_allowlist"] == json!({"from": null, "to": ["2001:db8::/32"]})),
        "{audit}"
    );
}

#[tokio::test]
async fn malformed_allowlists_are_refused_precisely_and_write_nothing() {
    let app = spawn_app().await;
    let ks = app.create_keyspace("ipx").await;
    let key = app
        .create_key(json!({"keyspace_id": ks.id, "ip_allowlist": ["192.0.2.0/24"]}))
        .await;
    let too_many: Vec<String> = (0..101).map(|i| format!("10.0.{i}.0/24")).collect();
    for (list, detail) in [
        (
            json!(["192.0.2.0/24", "10.0.0.0/33"]),
            "ip_allowlist: entry 1 is not an IP address or CIDR network",
        ),
        (
            json!(["203.0.113.7/24"]),
            "ip_allowlist: entry 0 has address bits set beyond its prefix length: write 203.0.113.0/24",
        ),
        (json!(["2001:db8::1/32"]), "write 2001:db8::/32"),
        (json!(["fe80::1%eth0"]), "entry 0 is not an IP address"),
        (json!(["010.0.0.1"]), "entry 0 is not an IP address"),
        (json!(["example.com"]), "entry 0 is not an IP address"),
        (json!(too_many), "ip_allowlist: at most 100 entries"),
    ] {
        for (method, path, body) in [
            (
                Method::POST,
                "/v1/keys".to_owned(),
                json!({"keyspace_id": ks.id, "ip_allowlist": list}),
            ),
            (
                Method::PATCH,
                format!("/v1/keys/{}", key.record.key_id),
                json!({"name": "renamed", "ip_allowlist": list}),
            ),
            (
                Method::POST,
                "/v1/owners".to_owned(),
                json!({"external_id": "never", "ip_allowlist": list}),
            ),
            (
                Method::PATCH,
                format!("/v1/keyspaces/{}", ks.id),
                json!({"ip_allowlist": list}),
            ),
        ] {
            let (status, problem) = app.send(method.clone(), &path, Some(&body)).await;
            assert_eq!(
                status,
                StatusCode::BAD_REQUEST,
                "{method} {path}: {problem}"
            );
            let said = problem["detail"].as_str().unwrap();
            assert!(said.contains(detail), "{method} {path}: {said}");
        }
    }
    for bad in [json!("10.0.0.0/8"), json!([1]), json!([null])] {
        let body = json!({"keyspace_id": ks.id, "ip_allowlist": bad});
        let (status, problem) = app.send(Method::POST, "/v1/keys", Some(&body)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{problem}");
    }
    // Nothing was written: the key kept its name and list, no owner appeared.
    let (_, shown) = app
        .send(
            Method::GET,
            &format!("/v1/keys/{}", key.record.key_id),
            None,
        )
        .await;
    assert_eq!(shown["name"], Value::Null);
    assert_eq!(shown["ip_allowlist"], json!(["192.0.2.0/24"]));
    let (_, owners) = app.send(Method::GET, "/v1/owners", None).await;
    assert_eq!(owners["data"], json!([]), "{owners}");
    let (_, keys) = app
        .send(
            Method::GET,
            &format!("/v1/keys?keyspace_id={}", ks.id),
            None,
        )
        .await;
    assert_eq!(keys["data"].as_array().unwrap().len(), 1, "{keys}");
}

#[tokio::test]
async fn the_gateway_checks_the_address_it_sees() {
    let upstream = spawn_upstream().await;
    let (app, proxy) = gateway_with(&upstream.url(), |_| {}).await;
    let ks = app.create_keyspace("ipg").await;
    let here = app
        .create_key(json!({"keyspace_id": ks.id, "ip_allowlist": ["127.0.0.0/8", "::1"]}))
        .await;
    let elsewhere = app
        .create_key(json!({"keyspace_id": ks.id, "ip_allowlist": ["203.0.113.0/24"]}))
        .await;
    let get = |key: &str| {
        app.http
            .get(format!("{proxy}/echo"))
            .bearer_auth(key)
            .send()
    };
    assert_eq!(get(&here.key).await.unwrap().status(), StatusCode::OK);
    let refused = get(&elsewhere.key).await.unwrap();
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    assert_eq!(
        refused.headers()["content-type"],
        "application/problem+json"
    );
    let problem: Value = refused.json().await.unwrap();
    assert_eq!(problem["code"], "forbidden_ip");
    assert_eq!(upstream.hits(), 1, "the refused request never reached it");
}
