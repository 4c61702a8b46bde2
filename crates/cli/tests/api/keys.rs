use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::*;

#[tokio::test]
async fn newcomer_path_serve_keyspace_key_verify() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = spawn_process(&data, dir.path(), &[]).await;
    let root = server.first_root_key();
    let http = http_client();
    let post = |path: &str, body: Value| {
        http.post(format!("{}{path}", server.base))
            .bearer_auth(&root)
            .header("Content-Type", "application/json")
            .body(body.to_string())
            .send()
    };
    let ks: Value = post(
        "/v1/keyspaces",
        json!({"name": "Acme live", "prefix": "acme_live"}),
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let ks_id = ks["id"].as_str().unwrap();
    let key: Value = post(
        "/v1/keys",
        json!({"keyspace_id": ks_id, "name": "first key"}),
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let plaintext = key["key"].as_str().unwrap();
    assert!(plaintext.starts_with("acme_live_"));
    let verdict: Value = post("/v1/keys/verify", json!({ "key": plaintext }))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(verdict["code"], "VALID");
    assert_eq!(verdict["valid"], true);
    assert_eq!(verdict["keyspace_id"], ks_id);
    // The data dir holds the database (SQLite) and a private pepper file.
    assert_eq!(data.join("keyhaven.db").exists(), !on_postgres());
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(data.join("pepper"))
            .unwrap()
            .permissions(),
    );
    assert_eq!(
        mode & 0o077,
        0,
        "pepper file must not be group/world readable"
    );

    // A second start prints no new root key and the first still works.
    drop(server);
    let again = spawn_process(&data, dir.path(), &[]).await;
    let out = std::fs::read_to_string(&again.stdout_path).unwrap();
    assert!(!out.contains("kh_root_"), "{out}");
    let ok = http_client()
        .get(format!("{}/v1/keys", again.base))
        .bearer_auth(&root)
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), StatusCode::OK);
}

#[tokio::test]
async fn verify_answers_carry_the_key_and_owner() {
    let app = spawn_app().await;
    let ks = app.create_keyspace("acme_live").await;
    let (status, owner) = app
        .send(
            Method::POST,
            "/v1/owners",
            Some(&json!({"external_id": "cus_42", "name": "Customer 42"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{owner}");
    let created = app
        .create_key(json!({
            "keyspace_id": ks.id, "owner_id": owner["id"], "name": "ci",
            "scopes": ["read", "write"], "meta": {"plan": "pro"},
            "expires_at": "2999-01-01T00:00:00Z"
        }))
        .await;
    let v = app.verify(&created.key).await;
    assert_eq!(v.code, "VALID");
    assert_eq!(v.key_id.as_deref(), Some(created.record.key_id.as_str()));
    assert_eq!(v.keyspace.as_deref(), Some("acme_live"));
    let o = v.owner.unwrap();
    assert_eq!(
        (o.id.as_str(), o.external_id.as_deref()),
        (owner["id"].as_str().unwrap(), Some("cus_42"))
    );
    assert_eq!(v.name.as_deref(), Some("ci"));
    assert_eq!(v.scopes.unwrap(), vec!["read", "write"]);
    assert_eq!(v.meta.unwrap()["plan"], "pro");
    assert_eq!(v.expires_at.as_deref(), Some("2999-01-01T00:00:00Z"));

    // Required scopes.
    let (_, body) = app
        .send(
            Method::POST,
            "/v1/keys/verify",
            Some(&json!({"key": created.key, "scopes": ["admin"]})),
        )
        .await;
    assert_eq!(body["code"], "INSUFFICIENT_SCOPES");
    assert_eq!(body["valid"], false);

    // Owner lookup by external id.
    let (_, found) = app
        .send(Method::GET, "/v1/owners?external_id=cus_42", None)
        .await;
    assert_eq!(found["data"][0]["id"], owner["id"]);
    let (_, none) = app
        .send(Method::GET, "/v1/owners?external_id=nobody", None)
        .await;
    assert_eq!(none["data"], json!([]));
    // The plaintext is never shown again.
    let (_, got) = app
        .send(
            Method::GET,
            &format!("/v1/keys/{}", created.record.key_id),
            None,
        )
        .await;
    assert!(got.get("key").is_none());
    assert!(
        !got.to_string()
            .contains(&created.key[created.key.len() - 36..created.key.len() - 6])
    );
}

#[tokio::test]
async fn a_revoked_key_answers_revoked_on_the_very_next_verify() {
    let app = spawn_app().await;
    let ks = app.create_keyspace("acme_live").await;
    let created = app.create_key(json!({"keyspace_id": ks.id})).await;
    // Warm the cache.
    for _ in 0..3 {
        assert_eq!(app.verify(&created.key).await.code, "VALID");
    }
    let (status, body) = app
        .send(
            Method::POST,
            &format!("/v1/keys/{}/revoke", created.record.key_id),
            Some(&json!({"reason": "leaked in a gist"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["revoked_reason"], "leaked in a gist");
    assert_eq!(app.verify(&created.key).await.code, "REVOKED");
    let (status, body) = app
        .send(
            Method::POST,
            &format!("/v1/keys/{}/revoke", created.record.key_id),
            None,
        )
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::CONFLICT, Some("already_revoked"))
    );
}

#[tokio::test]
async fn patch_disable_expire_and_delete_take_effect_immediately() {
    let app = spawn_app().await;
    let ks = app.create_keyspace("acme_live").await;
    let k = app
        .create_key(json!({"keyspace_id": ks.id, "name": "a"}))
        .await;
    let path = format!("/v1/keys/{}", k.record.key_id);
    assert_eq!(app.verify(&k.key).await.code, "VALID");

    let (status, body) = app
        .send(Method::PATCH, &path, Some(&json!({"enabled": false})))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(app.verify(&k.key).await.code, "DISABLED");

    let (_, body) = app
        .send(
            Method::PATCH,
            &path,
            Some(&json!({"enabled": true, "expires_at": "2001-01-01T00:00:00Z", "name": null})),
        )
        .await;
    assert_eq!(body["name"], Value::Null);
    assert_eq!(app.verify(&k.key).await.code, "EXPIRED");

    let (_, body) = app
        .send(
            Method::PATCH,
            &path,
            Some(&json!({"expires_at": null, "scopes": ["x"]})),
        )
        .await;
    assert_eq!(body["scopes"], json!(["x"]));
    assert_eq!(app.verify(&k.key).await.code, "VALID");

    let (status, _) = app.send(Method::DELETE, &path, None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(app.verify(&k.key).await.code, "NOT_FOUND");
    let (status, _) = app.send(Method::GET, &path, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn wrong_secret_and_unknown_ids_are_not_found_and_say_nothing_more() {
    let app = spawn_app().await;
    let ks = app.create_keyspace("acme_live").await;
    let k = app.create_key(json!({"keyspace_id": ks.id})).await;
    // Same key id and prefix, another valid-checksum secret.
    let fixed = with_wrong_secret(&k.key, "acme_live");
    let (_, v) = app
        .send(
            Method::POST,
            "/v1/keys/verify",
            Some(&json!({"key": fixed})),
        )
        .await;
    assert_eq!(
        v,
        json!({
            "valid": false, "code": "NOT_FOUND", "key_id": null, "keyspace_id": null,
            "keyspace": null, "owner": null, "name": null, "scopes": null, "meta": null,
            "expires_at": null, "rotation": null, "ratelimits": [], "remaining": null
        })
    );
    // A well-formed key under another prefix with the same id and secret.
    let swapped_body = format!("acme_test{}", &k.key["acme_live".len()..k.key.len() - 6]);
    let swapped = format!(
        "{swapped_body}{}",
        std::str::from_utf8(&keyhaven_core::format::checksum(swapped_body.as_bytes())).unwrap()
    );
    assert_eq!(app.verify(&swapped).await.code, "NOT_FOUND");
}

#[tokio::test]
async fn keys_list_paginates_and_filters() {
    let app = spawn_app().await;
    let a = app.create_keyspace("alpha").await;
    let b = app.create_keyspace("beta").await;
    let mut ids_a = Vec::new();
    for _ in 0..7 {
        ids_a.push(
            app.create_key(json!({"keyspace_id": a.id}))
                .await
                .record
                .key_id,
        );
    }
    app.create_key(json!({"keyspace_id": b.id})).await;
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/v1/keys?keyspace_id={}&limit=3&cursor={c}", a.id),
            None => format!("/v1/keys?keyspace_id={}&limit=3", a.id),
        };
        let (status, page) = app.send(Method::GET, &path, None).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        for item in page["data"].as_array().unwrap() {
            seen.push(item["key_id"].as_str().unwrap().to_owned());
        }
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    ids_a.reverse();
    assert_eq!(seen, ids_a, "newest first, no gaps or repeats");
    let (_, all) = app.send(Method::GET, "/v1/keys", None).await;
    assert_eq!(
        all["data"].as_array().unwrap().len(),
        8,
        "root keys are never listed"
    );
}

#[tokio::test]
async fn idempotency_key_replays_the_same_response_and_rejects_another_body() {
    let app = spawn_app().await;
    let ks = app.create_keyspace("acme_live").await;
    let body = json!({"keyspace_id": ks.id, "name": "once"});
    let send = |b: &Value| {
        app.request(Method::POST, "/v1/keys")
            .header("Idempotency-Key", "create-once-1")
            .json(b)
            .send()
    };
    let first = send(&body).await.unwrap();
    assert_eq!(first.status(), StatusCode::CREATED);
    let first = first.text().await.unwrap();
    let second = send(&body).await.unwrap();
    assert_eq!(second.status(), StatusCode::CREATED);
    assert_eq!(second.headers()["idempotent-replayed"], "true");
    assert_eq!(second.text().await.unwrap(), first, "byte-identical replay");
    let (_, list) = app.send(Method::GET, "/v1/keys", None).await;
    assert_eq!(list["data"].as_array().unwrap().len(), 1, "created once");

    let other = send(&json!({"keyspace_id": ks.id, "name": "twice"}))
        .await
        .unwrap();
    assert_eq!(other.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let p: Value = other.json().await.unwrap();
    assert_eq!(p["code"], "idempotency_key_reused");

    // The replayed key is the real one.
    let created: Value = serde_json::from_str(&first).unwrap();
    assert_eq!(
        app.verify(created["key"].as_str().unwrap()).await.code,
        "VALID"
    );

    // Concurrent twins: exactly one key is created, both get the same answer.
    let body = json!({"keyspace_id": ks.id, "name": "race"});
    let (r1, r2) = tokio::join!(
        app.request(Method::POST, "/v1/keys")
            .header("Idempotency-Key", "race")
            .json(&body)
            .send(),
        app.request(Method::POST, "/v1/keys")
            .header("Idempotency-Key", "race")
            .json(&body)
            .send()
    );
    let (t1, t2) = (
        r1.unwrap().text().await.unwrap(),
        r2.unwrap().text().await.unwrap(),
    );
    assert_eq!(t1, t2);
    let (_, list) = app.send(Method::GET, "/v1/keys", None).await;
    assert_eq!(list["data"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn usage_is_counted_in_memory_and_flushed_in_batches() {
    let app = spawn_app_with(|c| c.usage_flush_interval_ms = 100).await;
    let ks = app.create_keyspace("acme_live").await;
    let k = app.create_key(json!({"keyspace_id": ks.id})).await;
    for _ in 0..5 {
        app.verify(&k.key).await;
    }
    app.send(
        Method::PATCH,
        &format!("/v1/keys/{}", k.record.key_id),
        Some(&json!({"enabled": false})),
    )
    .await;
    app.verify(&k.key).await;
    let mut counts = Vec::new();
    for _ in 0..100 {
        counts = app.store.usage(&k.record.key_id, 0).await.unwrap();
        if counts.iter().map(|c| c.count).sum::<u64>() == 6 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let by = |o: &str| {
        counts
            .iter()
            .filter(|c| c.outcome == o)
            .map(|c| c.count)
            .sum::<u64>()
    };
    assert_eq!((by("VALID"), by("DISABLED")), (5, 1), "{counts:?}");
    let (_, key) = app
        .send(Method::GET, &format!("/v1/keys/{}", k.record.key_id), None)
        .await;
    assert!(key["last_used_at"].is_string(), "{key}");
    // Each flush is timed for operators.
    let metrics = app.metrics().await;
    assert!(
        metrics.contains("keyhaven_usage_flush_duration_seconds_count"),
        "{metrics}"
    );
}

#[tokio::test]
async fn metrics_count_verifications_by_code() {
    let app = spawn_app().await;
    let ks = app.create_keyspace("acme_live").await;
    let k = app.create_key(json!({"keyspace_id": ks.id})).await;
    app.verify(&k.key).await;
    app.verify("not a key").await;
    let text = app.metrics().await;
    assert!(
        text.contains("keyhaven_verifications_total{code=\"VALID\"}"),
        "{text}"
    );
    assert!(
        text.contains("keyhaven_verifications_total{code=\"MALFORMED\"}"),
        "{text}"
    );
    assert!(
        text.contains("keyhaven_http_request_duration_seconds_bucket"),
        "{text}"
    );
    assert!(text.contains("route=\"/v1/keys/verify\""), "{text}");
}

#[tokio::test]
async fn root_key_scopes_are_enforced() {
    let app = spawn_app().await;
    let ks = app.create_keyspace("acme_live").await;
    let k = app.create_key(json!({"keyspace_id": ks.id})).await;
    let verifier_only = app.root_key(&["keys:verify"], None).await;
    assert_eq!(app.verify_as(&verifier_only, &k.key).await.code, "VALID");
    let (status, body) = app
        .send_as(&verifier_only, Method::GET, "/v1/keys", None)
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("insufficient_scope"))
    );
    let (status, _) = app
        .send_as(
            &verifier_only,
            Method::POST,
            "/v1/keys",
            Some(&json!({"keyspace_id": ks.id})),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    // A customer key is not a root key.
    let (status, body) = app.send_as(&k.key, Method::GET, "/v1/keys", None).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("unauthorized"))
    );
    // Nor is a root key a customer key.
    assert_eq!(app.verify(&app.root_key).await.code, "NOT_FOUND");
}

#[tokio::test]
async fn root_key_create_works_while_the_server_runs() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = spawn_process(&data, dir.path(), &[]).await;
    let out = keyhaven(&data)
        .await
        .args([
            "root-key",
            "create",
            "--scopes",
            "keys:read,audit:read",
            "--data-dir",
        ])
        .arg(&data)
        .env_remove("KEYHAVEN_PEPPER")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    let key = stdout.lines().last().unwrap();
    assert!(
        key.starts_with("kh_root_") && !key.contains(' '),
        "{stdout}"
    );
    let http = http_client();
    let list = http
        .get(format!("{}/v1/keys", server.base))
        .bearer_auth(key)
        .send()
        .await
        .unwrap();
    assert_eq!(list.status(), StatusCode::OK);
    let write = http
        .post(format!("{}/v1/keyspaces", server.base))
        .bearer_auth(key)
        .json(&json!({"name": "x", "prefix": "xx"}))
        .send()
        .await
        .unwrap();
    assert_eq!(write.status(), StatusCode::FORBIDDEN);

    // Bad input: a message and a non-zero exit, nothing created.
    for args in [
        vec!["--scopes", "keys:rea"],
        vec!["--keyspace", "ks_doesnotexist"],
        vec!["--scopes", ""],
    ] {
        let out = keyhaven(&data)
            .await
            .args(["root-key", "create", "--data-dir"])
            .arg(&data)
            .args(&args)
            .output()
            .unwrap();
        assert!(!out.status.success(), "{args:?}");
        assert!(!String::from_utf8_lossy(&out.stderr).is_empty());
        assert!(!String::from_utf8_lossy(&out.stdout).contains("kh_root_"));
    }
}

#[tokio::test]
async fn serve_refuses_to_start_without_a_stored_pepper_version() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    drop(spawn_process(&data, dir.path(), &[]).await); // creates pepper v1 and a root key
    let out = keyhaven(&data)
        .await
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(&data)
        .env("KEYHAVEN_PEPPER", format!("2:{}", "ab".repeat(32)))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("pepper version"), "{stderr}");
    assert!(
        !stderr.contains(&"ab".repeat(32)),
        "the pepper itself is never printed"
    );
}

#[tokio::test]
async fn a_patch_racing_a_revoke_never_brings_the_key_back() {
    let app = spawn_app().await;
    let ks = app.create_keyspace("acme_live").await;
    for round in 0..20 {
        let k = app.create_key(json!({"keyspace_id": ks.id})).await;
        let path = format!("/v1/keys/{}", k.record.key_id);
        let revoke_path = format!("{path}/revoke");
        let patches = (0..4).map(|i| {
            app.request(Method::PATCH, &path)
                .json(&json!({"name": format!("r{round}p{i}")}))
                .send()
        });
        let revoke = app
            .request(Method::POST, &revoke_path)
            .json(&json!({}))
            .send();
        let (revoked, _) = tokio::join!(revoke, async {
            for p in patches {
                let _ = p.await;
            }
        });
        assert_eq!(revoked.unwrap().status(), StatusCode::OK);
        assert_eq!(app.verify(&k.key).await.code, "REVOKED", "round {round}");
        let (_, got) = app.send(Method::GET, &path, None).await;
        assert!(got["revoked_at"].is_string(), "round {round}: {got}");
    }
}

#[tokio::test]
async fn a_keyspace_can_ask_for_256_bit_secrets_and_both_lengths_verify() {
    let app = spawn_app().await;
    let (status, ks) = app
        .send(
            Method::POST,
            "/v1/keyspaces",
            Some(&json!({"name": "strong", "prefix": "strong", "secret_bytes": 32})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{ks}");
    assert_eq!(ks["secret_bytes"], 32);
    let ks_id = ks["id"].as_str().unwrap().to_owned();
    let long = app.create_key(json!({"keyspace_id": ks_id})).await;
    assert_eq!(long.key.len(), "strong".len() + 64, "a 44-character secret");
    let parsed = keyhaven_core::parse(&long.key).unwrap();
    assert_eq!(parsed.secret().len(), 44);
    let verify = |key: String| {
        let app = &app;
        async move {
            let (_, answer) = app
                .send(Method::POST, "/v1/keys/verify", Some(&json!({"key": key})))
                .await;
            answer["code"].as_str().unwrap().to_owned()
        }
    };
    assert_eq!(verify(long.key.clone()).await, "VALID");
    // A wrong long secret (with a valid checksum) is NOT_FOUND, as a standard one is.
    let mut body = long.key[..long.key.len() - 6].to_owned();
    let at = "strong_".len() + 12 + 1;
    let swap = if &body[at..=at] == "2" { "3" } else { "2" };
    body.replace_range(at..=at, swap);
    let sum = keyhaven_core::format::checksum(body.as_bytes());
    let forged = format!("{body}{}", std::str::from_utf8(&sum).unwrap());
    assert_eq!(verify(forged).await, "NOT_FOUND");

    // Back to the standard length: new keys and rotations use it; the long key still works.
    let (status, patched) = app
        .send(
            Method::PATCH,
            &format!("/v1/keyspaces/{ks_id}"),
            Some(&json!({"secret_bytes": 22})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{patched}");
    let short = app.create_key(json!({"keyspace_id": ks_id})).await;
    assert_eq!(short.key.len(), "strong".len() + 50);
    assert_eq!(verify(short.key.clone()).await, "VALID");
    assert_eq!(verify(long.key.clone()).await, "VALID");
    let (status, rotated) = app
        .send(
            Method::POST,
            &format!("/v1/keys/{}/rotate", long.record.key_id),
            Some(&json!({})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{rotated}");
    assert_eq!(rotated["key"].as_str().unwrap().len(), "strong".len() + 50);

    for bad in [
        json!({"secret_bytes": 16}),
        json!({"secret_bytes": 300}),
        json!({"secret_bytes": "32"}),
    ] {
        let (status, problem) = app
            .send(Method::PATCH, &format!("/v1/keyspaces/{ks_id}"), Some(&bad))
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {problem}");
    }
    let (_, after) = app
        .send(Method::GET, &format!("/v1/keyspaces/{ks_id}"), None)
        .await;
    assert_eq!(after["secret_bytes"], 22, "nothing changed");
    let (_, audit) = app
        .send(
            Method::GET,
            &format!("/v1/audit-events?target_id={ks_id}&action=keyspace.update"),
            None,
        )
        .await;
    assert_eq!(
        audit["data"][0]["changes"]["secret_bytes"],
        json!({"from": 32, "to": 22})
    );
}
