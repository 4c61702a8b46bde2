//! Signed tokens end to end: minted with the key as its credential or by a root key,
//! verified by `POST /v1/keys/verify` (`token: true`) and offline against the served
//! JWKS, refused when the key stops working, narrowed offline, and kept valid across a
//! signing key rotation.

use keyhaven_core::token::{self, Expect, PublicSigningKey, VerifyingKeys, attenuable};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::*;

async fn mint(app: &TestApp, bearer: &str, body: Value) -> (StatusCode, Value) {
    app.send_as(bearer, Method::POST, "/v1/tokens", Some(&body))
        .await
}

async fn verify_with(app: &TestApp, body: Value) -> Value {
    let (status, answer) = app.send(Method::POST, "/v1/keys/verify", Some(&body)).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    answer
}

/// The served JWKS as a verifier would read it.
async fn jwks(base: &str) -> VerifyingKeys {
    let doc: Value = http_client()
        .get(format!("{base}/.well-known/jwks.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let biscuit = doc["keyhaven_biscuit_keys"].as_array().unwrap();
    let keys = doc["keys"].as_array().unwrap();
    assert_eq!(keys.len(), biscuit.len(), "{doc}");
    VerifyingKeys::new(
        keys.iter()
            .zip(biscuit)
            .map(|(jwk, b)| {
                assert_eq!(
                    (jwk["kty"].as_str(), jwk["alg"].as_str()),
                    (Some("OKP"), Some("EdDSA"))
                );
                let version = u32::try_from(b["root_key_id"].as_u64().unwrap()).unwrap();
                let key = PublicSigningKey::from_published(
                    version,
                    jwk["x"].as_str().unwrap(),
                    b["public_key"].as_str().unwrap(),
                )
                .unwrap();
                assert_eq!(jwk["kid"].as_str(), Some(key.kid.as_str()));
                key
            })
            .collect(),
    )
}

#[tokio::test]
async fn a_key_mints_a_token_that_verifies_online_and_offline_with_the_tokens_scopes() {
    let app = spawn_app().await;
    let ks = app.create_keyspace("tok").await;
    let key = app
        .create_key(json!({"keyspace_id": ks.id, "scopes": ["read", "write"]}))
        .await;

    let (status, minted) = mint(
        &app,
        &key.key,
        json!({"scopes": ["read"], "ttl_seconds": 60}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{minted}");
    let token = minted["token"].as_str().unwrap();
    assert_eq!(minted["format"], "jws");
    assert_eq!(minted["key_id"], key.record.key_id.as_str());
    assert_eq!(minted["scopes"], json!(["read"]));
    assert!(
        !token.contains(&key.key),
        "the token does not carry the key"
    );

    let answer = verify_with(&app, json!({"key": token})).await;
    assert_eq!(answer["code"], "VALID", "{answer}");
    assert_eq!(answer["token"], true);
    assert_eq!(answer["key_id"], key.record.key_id.as_str());
    assert_eq!(
        answer["scopes"],
        json!(["read"]),
        "the token's scopes, not the key's"
    );
    assert_eq!(answer["expires_at"], minted["expires_at"]);
    let answer = verify_with(&app, json!({"key": token, "scopes": ["write"]})).await;
    assert_eq!(answer["code"], "INSUFFICIENT_SCOPES", "{answer}");
    // The key itself still answers as a key.
    let answer = verify_with(&app, json!({"key": key.key})).await;
    assert_eq!(
        (answer["code"].as_str(), answer.get("token")),
        (Some("VALID"), None)
    );

    // Offline, against the served JWKS only.
    let keys = jwks(&app.base).await;
    let now = app.clock.now().unix_timestamp();
    let expect = Expect {
        now,
        audience: None,
        scopes: &[],
    };
    let (_, claims) = token::verify(token, &keys, expect).unwrap();
    assert_eq!(claims.sub, key.record.key_id);
    assert_eq!(claims.ks, ks.id);
    assert_eq!(claims.exp - claims.iat, 60);

    // Past its expiry: EXPIRED, though the key is fine.
    app.clock.advance(61);
    let answer = verify_with(&app, json!({"key": token})).await;
    assert_eq!(answer["code"], "EXPIRED", "{answer}");
}

#[tokio::test]
async fn minting_refuses_scopes_the_key_lacks_long_lifetimes_tokens_and_wrong_keys() {
    let app = spawn_app().await;
    let ks = app.create_keyspace("tok").await;
    let key = app
        .create_key(json!({"keyspace_id": ks.id, "scopes": ["read"]}))
        .await;
    let (status, problem) = mint(&app, &key.key, json!({"scopes": ["read", "admin"]})).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{problem}");
    assert_eq!(problem["code"], "scopes_not_held");
    assert!(
        problem["detail"].as_str().unwrap().contains("admin"),
        "{problem}"
    );

    // The default maximum is 15 minutes; the keyspace can change it.
    let (status, problem) = mint(&app, &key.key, json!({"ttl_seconds": 901})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{problem}");
    let (status, minted) = mint(&app, &key.key, json!({})).await;
    assert_eq!(status, StatusCode::CREATED, "{minted}");
    let (status, body) = app
        .send(
            Method::PATCH,
            &format!("/v1/keyspaces/{}", ks.id),
            Some(&json!({"token_max_ttl_seconds": 3600})),
        )
        .await;
    assert_eq!(
        (status, &body["token_max_ttl_seconds"]),
        (StatusCode::OK, &json!(3600))
    );
    let (status, _) = mint(&app, &key.key, json!({"ttl_seconds": 3600})).await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, problem) = app
        .send(
            Method::PATCH,
            &format!("/v1/keyspaces/{}", ks.id),
            Some(&json!({"token_max_ttl_seconds": 86401})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{problem}");

    // A token never mints another (its lifetime would have no end).
    let token = minted["token"].as_str().unwrap();
    let (status, problem) = mint(&app, token, json!({})).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{problem}");
    for body in [
        json!({"format": "paseto"}),
        json!({"key_id": key.record.key_id}),
        json!({"extra": 1}),
    ] {
        let (status, problem) = mint(&app, &key.key, body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{problem}");
    }

    // Wrong keys answer 401 and count as failed verifications, then 429.
    let wrong = with_wrong_secret(&key.key, "tok");
    let mut statuses = Vec::new();
    for _ in 0..12 {
        let (status, _) = mint(&app, &wrong, json!({})).await;
        statuses.push(status.as_u16());
    }
    assert_eq!(statuses[..10], [401; 10]);
    assert_eq!(statuses[10..], [429; 2]);
}

#[tokio::test]
async fn a_revoked_key_cannot_mint_and_its_tokens_stop_verifying_at_once() {
    let app = spawn_app().await;
    let ks = app.create_keyspace("tok").await;
    let key = app.create_key(json!({"keyspace_id": ks.id})).await;
    let (_, minted) = mint(&app, &key.key, json!({})).await;
    let token = minted["token"].as_str().unwrap();
    assert_eq!(
        verify_with(&app, json!({"key": token})).await["code"],
        "VALID"
    );
    let (status, body) = app
        .send(
            Method::POST,
            &format!("/v1/keys/{}/revoke", key.record.key_id),
            Some(&json!({})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        verify_with(&app, json!({"key": token})).await["code"],
        "REVOKED"
    );
    let (status, problem) = mint(&app, &key.key, json!({})).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{problem}");
}

#[tokio::test]
async fn a_root_key_with_tokens_write_mints_for_a_key_it_can_see() {
    let app = spawn_app().await;
    let ks = app.create_keyspace("tok").await;
    let other = app.create_keyspace("oth").await;
    let key = app
        .create_key(json!({"keyspace_id": ks.id, "scopes": ["read"]}))
        .await;
    let hidden = app.create_key(json!({"keyspace_id": other.id})).await;
    let reader = app.root_key(&["keys:read"], None).await;
    let minter = app
        .root_key(&["tokens:write"], Some(&[ks.id.as_str()]))
        .await;

    let for_key = json!({"key_id": key.record.key_id, "audience": "billing"});
    let (status, problem) = mint(&app, &reader, for_key.clone()).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{problem}");
    let (status, minted) = mint(&app, &minter, for_key).await;
    assert_eq!(status, StatusCode::CREATED, "{minted}");
    assert_eq!(minted["audience"], "billing");
    // Audited, by the root key, without the token.
    let (_, audit) = app
        .send(
            Method::GET,
            &format!("/v1/audit-events?target_id={}", key.record.key_id),
            None,
        )
        .await;
    let entry = audit["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["action"] == "token.mint")
        .unwrap_or_else(|| panic!("{audit}"));
    assert_eq!(entry["changes"]["token_id"], minted["token_id"], "{entry}");
    assert!(
        !audit
            .to_string()
            .contains(minted["token"].as_str().unwrap())
    );
    let (status, _) = mint(&app, &minter, json!({"key_id": hidden.record.key_id})).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, problem) = mint(&app, &minter, json!({})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{problem}");

    // A token for an audience verifies only for that audience.
    let token = minted["token"].as_str().unwrap();
    let answer = verify_with(&app, json!({"key": token})).await;
    assert_eq!(answer["code"], "NOT_FOUND", "{answer}");
    let answer = verify_with(&app, json!({"key": token, "audience": "search"})).await;
    assert_eq!(answer["code"], "NOT_FOUND", "{answer}");
    let answer = verify_with(&app, json!({"key": token, "audience": "billing"})).await;
    assert_eq!(answer["code"], "VALID", "{answer}");

    // A disabled key: the root key cannot mint for it.
    let (status, _) = app
        .send(
            Method::PATCH,
            &format!("/v1/keys/{}", key.record.key_id),
            Some(&json!({"enabled": false})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, problem) = mint(&app, &minter, json!({"key_id": key.record.key_id})).await;
    assert_eq!(status, StatusCode::CONFLICT, "{problem}");
    assert_eq!(
        verify_with(&app, json!({"key": token, "audience": "billing"})).await["code"],
        "DISABLED"
    );
}

#[tokio::test]
async fn a_biscuit_narrowed_offline_verifies_narrower_and_cannot_be_widened_back() {
    let app = spawn_app().await;
    let ks = app.create_keyspace("tok").await;
    let key = app
        .create_key(json!({"keyspace_id": ks.id, "scopes": ["read", "write", "admin"]}))
        .await;
    let (status, minted) = mint(&app, &key.key, json!({"format": "biscuit"})).await;
    assert_eq!(status, StatusCode::CREATED, "{minted}");
    let biscuit = minted["token"].as_str().unwrap();
    let answer = verify_with(&app, json!({"key": biscuit, "scopes": ["admin"]})).await;
    assert_eq!(
        (answer["code"].as_str(), &answer["token"]),
        (Some("VALID"), &json!(true))
    );

    // The holder narrows it with no key and no call to Keyhaven.
    let now = app.clock.now().unix_timestamp();
    let narrowed = attenuable::attenuate(
        biscuit,
        &attenuable::Narrowing {
            scopes: Some(vec!["read".into()]),
            expires_at: Some(now + 30),
            audience: None,
        },
    )
    .unwrap();
    let answer = verify_with(&app, json!({"key": narrowed, "scopes": ["read"]})).await;
    assert_eq!(answer["code"], "VALID", "{answer}");
    assert_eq!(answer["scopes"], json!(["read"]));
    let answer = verify_with(&app, json!({"key": narrowed, "scopes": ["write"]})).await;
    assert_eq!(answer["code"], "INSUFFICIENT_SCOPES", "{answer}");
    let widened = attenuable::attenuate(
        &narrowed,
        &attenuable::Narrowing {
            scopes: Some(vec!["read".into(), "write".into(), "admin".into()]),
            ..Default::default()
        },
    )
    .unwrap();
    let answer = verify_with(&app, json!({"key": widened, "scopes": ["write"]})).await;
    assert_eq!(answer["code"], "INSUFFICIENT_SCOPES", "{answer}");
    // Offline too, and the narrowed expiry holds.
    let keys = jwks(&app.base).await;
    let (_, claims) = token::verify(
        &widened,
        &keys,
        Expect {
            now,
            audience: None,
            scopes: &[],
        },
    )
    .unwrap();
    assert_eq!(
        (claims.scopes, claims.exp),
        (vec!["read".to_owned()], now + 30)
    );
    app.clock.advance(31);
    let answer = verify_with(&app, json!({"key": narrowed})).await;
    assert_eq!(answer["code"], "EXPIRED", "{answer}");
    assert_eq!(
        verify_with(&app, json!({"key": biscuit})).await["code"],
        "VALID"
    );
}

#[tokio::test]
async fn a_signing_key_rotation_keeps_old_tokens_valid_until_the_old_key_is_retired() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = spawn_process(&data, dir.path(), &[]).await;
    let root = server.first_root_key();
    let ks = post_to(
        &server.base,
        &root,
        "/v1/keyspaces",
        json!({"name": "t", "prefix": "tok"}),
    )
    .await;
    let key = post_to(
        &server.base,
        &root,
        "/v1/keys",
        json!({"keyspace_id": ks["id"]}),
    )
    .await;
    let key = key["key"].as_str().unwrap().to_owned();
    let old = post_to(&server.base, &key, "/v1/tokens", json!({})).await;
    let old_token = old["token"].as_str().unwrap().to_owned();
    assert_eq!(old["signing_key"], 1, "{old}");
    drop(server);

    let (ok, stdout, stderr) = run_keyhaven(&data, &["signing-key", "rotate"]).await;
    assert!(ok, "{stderr}");
    assert!(stdout.contains("signing key version 2"), "{stdout}");
    let server = spawn_process(&data, dir.path(), &[]).await;
    let new = post_to(&server.base, &key, "/v1/tokens", json!({})).await;
    assert_eq!(new["signing_key"], 2, "{new}");
    assert_ne!(new["kid"], old["kid"]);
    let keys = jwks(&server.base).await;
    assert_eq!(keys.iter().count(), 2, "the old key stays in the JWKS");
    for token in [&old_token, new["token"].as_str().unwrap()] {
        let answer = post_to(
            &server.base,
            &root,
            "/v1/keys/verify",
            json!({"key": token}),
        )
        .await;
        assert_eq!(answer["code"], "VALID", "{answer}");
    }
    let (_, status, _) = run_keyhaven(&data, &["signing-key", "status"]).await;
    assert!(status.contains("(signs)"), "{status}");
    drop(server);

    // Its tokens may still be unexpired: retiring needs --now.
    let (ok, _, stderr) = run_keyhaven(&data, &["signing-key", "retire", "1"]).await;
    assert!(!ok && stderr.contains("--now"), "{stderr}");
    let (ok, _, stderr) = run_keyhaven(&data, &["signing-key", "retire", "2", "--now"]).await;
    assert!(!ok && stderr.contains("newest"), "{stderr}");
    let (ok, _, stderr) = run_keyhaven(&data, &["signing-key", "retire", "1", "--now"]).await;
    assert!(ok, "{stderr}");
    let server = spawn_process(&data, dir.path(), &[]).await;
    let answer = post_to(
        &server.base,
        &root,
        "/v1/keys/verify",
        json!({"key": old_token}),
    )
    .await;
    assert_eq!(answer["code"], "NOT_FOUND", "{answer}");
    assert_eq!(jwks(&server.base).await.iter().count(), 1);
}

#[tokio::test]
async fn forward_auth_admits_a_token_as_it_admits_its_key() {
    let app = spawn_app_with(|c| c.gateway.token_audience = Some("orders-api".into())).await;
    let ks = app.create_keyspace("tok").await;
    let key = app
        .create_key(json!({"keyspace_id": ks.id, "scopes": ["read"]}))
        .await;
    let (_, minted) = mint(&app, &key.key, json!({})).await;
    let token = minted["token"].as_str().unwrap();
    let auth = |bearer: String| app.http.get(app.url("/v1/auth")).bearer_auth(bearer).send();
    let admitted = auth(token.to_owned()).await.unwrap();
    assert_eq!(admitted.status(), StatusCode::OK);
    assert_eq!(
        admitted.headers()["x-keyhaven-key-id"].to_str().unwrap(),
        key.record.key_id
    );
    let last = if token.ends_with('A') { "B" } else { "A" };
    let tampered = format!("{}{last}", &token[..token.len() - 1]);
    assert_eq!(
        auth(tampered).await.unwrap().status(),
        StatusCode::UNAUTHORIZED
    );
    // The gateway is the audience `orders-api`: tokens for it pass, tokens for others not.
    for (audience, status) in [
        ("orders-api", StatusCode::OK),
        ("billing", StatusCode::UNAUTHORIZED),
    ] {
        let (_, minted) = mint(&app, &key.key, json!({"audience": audience})).await;
        let answer = auth(minted["token"].as_str().unwrap().to_owned())
            .await
            .unwrap();
        assert_eq!(answer.status(), status, "{audience}");
    }
}
