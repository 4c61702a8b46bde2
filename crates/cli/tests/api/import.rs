//! Importing keys whose plaintext Keyhaven never saw: each format verifies with its
//! original string and moves to the native verifier on first use.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sha2::{Digest, Sha256, Sha512};

use crate::helpers::*;

const PREFIXED: &str = "myapp_BRTRKFsL_51FwqftsmMDHHbJAMEXXHCgG";
const PREFIXED_HASH: &str = "d70d981d87b449c107327c2a2afbf00d4b58070d6ba571aac35d7ea3e7c79f37";
const DOTTED: &str = "ak_live42.Zk3v9QpLmN2xR7tY";
const PLAIN: &str = "sk-legacy-0123456789abcdefghij";

fn items(ks: &str) -> Value {
    json!([
        {"keyspace_id": ks, "format": "prefixed_sha256", "prefix": "myapp", "short_token": "BRTRKFsL",
         "hash": PREFIXED_HASH, "name": "old prefixed", "scopes": ["read"]},
        {"keyspace_id": ks, "format": "dotted_sha512", "prefix": "ak_live42",
         "hash": format!("sha512$${}", hex::encode(Sha512::digest(DOTTED.as_bytes()))), "meta": {"from": "v1"}},
        {"keyspace_id": ks, "format": "sha256", "hash": hex::encode(Sha256::digest(PLAIN.as_bytes()))},
    ])
}

#[tokio::test]
async fn imported_keys_verify_and_move_to_the_native_verifier() {
    let app = spawn_app().await;
    let ks = app.create_keyspace("legacy").await;
    // Before any import, a foreign key string is MALFORMED without a lookup.
    assert_eq!(app.verify(PREFIXED).await.code, "MALFORMED");

    let (status, body) = app
        .send(
            Method::POST,
            "/v1/keys/import",
            Some(&json!({"keys": items(&ks.id)})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        (
            body["imported"].as_u64(),
            body["skipped"].as_u64(),
            body["rejected"].as_u64()
        ),
        (Some(3), Some(0), Some(0)),
        "{body}"
    );
    let ids: Vec<String> = body["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["key_id"].as_str().unwrap().to_owned())
        .collect();

    for (key, id) in [PREFIXED, DOTTED, PLAIN].iter().zip(&ids) {
        let v = app.verify(key).await;
        assert_eq!(
            (v.code.as_str(), v.key_id.as_deref()),
            ("VALID", Some(id.as_str())),
            "{key}"
        );
    }
    let v = app.verify(PREFIXED).await;
    assert_eq!(
        (v.name.as_deref(), v.scopes.as_deref()),
        (Some("old prefixed"), Some(&["read".to_owned()][..]))
    );

    // The first verify moved each to the native peppered HMAC of its whole string.
    for (key, id) in [PREFIXED, DOTTED, PLAIN].iter().zip(&ids) {
        let mut upgraded = None;
        for _ in 0..100 {
            let record = app.store.key_for_verify(id).await.unwrap().unwrap().key;
            if record.import.as_ref().unwrap().digest.is_none() {
                upgraded = Some(record);
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        let record = upgraded.unwrap_or_else(|| panic!("{key} was not upgraded"));
        let native = app.peppers.verifier(id, keyhaven_core::SecretStr::new(key));
        assert_eq!(record.verifier, native, "{key}");
        // And it still verifies, now on the native verifier.
        assert_eq!(app.verify(key).await.code, "VALID", "{key}");
    }

    // Wrong secrets under a known lookup are NOT_FOUND; unknown strings MALFORMED.
    assert_eq!(
        app.verify("myapp_BRTRKFsL_51FwqftsmMDHHbJAMEXXHCgH")
            .await
            .code,
        "NOT_FOUND"
    );
    assert_eq!(app.verify("ak_live42.wrong").await.code, "NOT_FOUND");
    assert_eq!(app.verify("sk-legacy-nope").await.code, "MALFORMED");

    // Lifecycle applies: revoke → REVOKED on the next verify.
    app.send(Method::POST, &format!("/v1/keys/{}/revoke", ids[2]), None)
        .await;
    assert_eq!(app.verify(PLAIN).await.code, "REVOKED");
    // Another keyspace's root key does not see them.
    let other = app.create_keyspace("other").await;
    let outsider = app.root_key(&["*"], Some(&[other.id.as_str()])).await;
    assert_eq!(app.verify_as(&outsider, PREFIXED).await.code, "NOT_FOUND");
}

#[tokio::test]
async fn a_second_import_changes_nothing_and_bad_items_are_reported_one_by_one() {
    let app = spawn_app().await;
    let ks = app.create_keyspace("legacy").await;
    let (_, first) = app
        .send(
            Method::POST,
            "/v1/keys/import",
            Some(&json!({"keys": items(&ks.id)})),
        )
        .await;
    assert_eq!(first["imported"], 3);
    let (_, events_before) = app
        .send(Method::GET, "/v1/audit-events?action=key.import", None)
        .await;
    assert_eq!(events_before["data"].as_array().unwrap().len(), 1);
    assert_eq!(events_before["data"][0]["changes"]["imported"], 3);

    let (_, again) = app
        .send(
            Method::POST,
            "/v1/keys/import",
            Some(&json!({"keys": items(&ks.id)})),
        )
        .await;
    assert_eq!(
        (again["imported"].as_u64(), again["skipped"].as_u64()),
        (Some(0), Some(3)),
        "{again}"
    );
    let (_, events_after) = app
        .send(Method::GET, "/v1/audit-events?action=key.import", None)
        .await;
    assert_eq!(
        events_after["data"].as_array().unwrap().len(),
        1,
        "nothing changed, nothing audited"
    );
    let (_, keys) = app.send(Method::GET, "/v1/keys", None).await;
    assert_eq!(keys["data"].as_array().unwrap().len(), 3);

    let mixed = json!([
        {"keyspace_id": ks.id, "format": "sha256", "hash": hex::encode(Sha256::digest(b"fresh-one"))},
        {"keyspace_id": ks.id, "format": "md5", "hash": "00"},
        {"keyspace_id": ks.id, "format": "sha256", "hash": "not hex"},
        {"keyspace_id": ks.id, "format": "prefixed_sha256", "hash": PREFIXED_HASH},
        {"keyspace_id": "ks_nope", "format": "sha256", "hash": hex::encode(Sha256::digest(b"x"))},
        {"keyspace_id": ks.id, "format": "sha256", "hash": hex::encode(Sha256::digest(b"y")), "owner_id": "own_nope"},
        {"keyspace_id": ks.id, "format": "sha256", "hash": hex::encode(Sha256::digest(b"z")), "expires_at": "soon"},
    ]);
    let (status, report) = app
        .send(
            Method::POST,
            "/v1/keys/import",
            Some(&json!({"keys": mixed})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        (report["imported"].as_u64(), report["rejected"].as_u64()),
        (Some(1), Some(6)),
        "{report}"
    );
    for r in &report["results"].as_array().unwrap()[1..] {
        assert_eq!(r["status"], "rejected");
        assert!(r["reason"].as_str().is_some_and(|s| !s.is_empty()), "{r}");
    }
    assert_eq!(app.verify("fresh-one").await.code, "VALID");

    let (status, _) = app
        .send(Method::POST, "/v1/keys/import", Some(&json!({"keys": []})))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

/// Lines of a mixed-format import file for keyspace `ks`, with a bad line every
/// `bad_every` lines; returns the file text, the plaintexts of the good keys, and the
/// numbers of the bad lines.
fn import_file(ks: &str, n: usize, bad_every: usize) -> (String, Vec<String>, Vec<usize>) {
    let (mut text, mut keys, mut bad) = (String::new(), Vec::new(), Vec::new());
    for i in 0..n {
        let line = i + 1;
        if bad_every > 0 && line % bad_every == 0 {
            text.push_str(match i % 3 {
                0 => "{\"keyspace_id\": \"",
                1 => "{\"keyspace_id\": 5}",
                _ => "not json at all",
            });
            text.push('\n');
            bad.push(line);
            continue;
        }
        let item = match i % 3 {
            0 => {
                let short = format!("S{i:07}");
                let long = format!("L{i:015}x");
                keys.push(format!("legacy_{short}_{long}"));
                json!({"keyspace_id": ks, "format": "prefixed_sha256", "prefix": "legacy",
                       "short_token": short, "hash": hex::encode(Sha256::digest(long.as_bytes()))})
            }
            1 => {
                let key = format!("pk{i}.secret-{i}-value");
                keys.push(key.clone());
                json!({"keyspace_id": ks, "format": "dotted_sha512", "prefix": format!("pk{i}"),
                       "hash": format!("sha512$${}", hex::encode(Sha512::digest(key.as_bytes())))})
            }
            _ => {
                let key = format!("tok-{i}-0123456789abcdef");
                keys.push(key.clone());
                json!({"keyspace_id": ks, "format": "sha256", "hash": hex::encode(Sha256::digest(key.as_bytes()))})
            }
        };
        text.push_str(&item.to_string());
        text.push('\n');
    }
    (text, keys, bad)
}

#[tokio::test]
async fn cli_import_reports_bad_lines_and_a_rerun_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = spawn_process(&data, dir.path(), &[]).await;
    let root = server.first_root_key();
    let http = http_client();
    let ks_id = &create_keyspace_process(&server, &root).await;
    let (text, keys, bad) = import_file(ks_id, 2000, 100);
    let file = dir.path().join("keys.jsonl");
    std::fs::write(&file, text).unwrap();
    let report = dir.path().join("report.txt");

    let report_args = ["--report".as_ref(), report.as_os_str()];
    let run = || cli_import(&data, &file, &report_args);
    // Imports while the server runs.
    let (code, stdout, _) = run().await;
    assert_eq!(code, Some(1), "bad lines make the exit status 1: {stdout}");
    assert!(
        stdout.contains("imported 1980, skipped 0 (already present), rejected 20"),
        "{stdout}"
    );
    let reported: Vec<usize> = std::fs::read_to_string(&report)
        .unwrap()
        .lines()
        .map(|l| {
            l.strip_prefix("line ")
                .unwrap()
                .split(':')
                .next()
                .unwrap()
                .parse()
                .unwrap()
        })
        .collect();
    assert_eq!(reported, bad, "each bad line is reported by number");

    let (_, stdout, again_stderr) = run().await;
    assert!(
        stdout.contains("imported 0, skipped 1980 (already present), rejected 20"),
        "{stdout}"
    );

    // The running server picks the imports up within its flush interval (5 s default).
    let verify = |key: String| {
        let http = http.clone();
        let url = format!("{}/v1/keys/verify", server.base);
        let root = root.clone();
        async move {
            let v: Value = http
                .post(url)
                .bearer_auth(root)
                .json(&json!({ "key": key }))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            v["code"].as_str().unwrap().to_owned()
        }
    };
    let mut first = String::new();
    for _ in 0..150 {
        first = verify(keys[0].clone()).await;
        if first == "VALID" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(first, "VALID");
    for key in keys.iter().step_by(97) {
        assert_eq!(verify(key.clone()).await, "VALID", "{key}");
    }
    assert!(
        !again_stderr.contains("secret-"),
        "no key material in CLI output"
    );

    // After a pepper rotation, prefixed and dotted keys imported again are still found
    // under their lookup of the older version and skipped. (Whole-key SHA-256 items are
    // not: their lookup needs a digest that is stored only peppered.)
    drop(server);
    let rotated = keyhaven(&data)
        .await
        .args(["pepper", "rotate", "--data-dir"])
        .arg(&data)
        .output()
        .unwrap();
    assert!(rotated.status.success(), "{rotated:?}");
    let shaped: Vec<String> = std::fs::read_to_string(&file)
        .unwrap()
        .lines()
        .filter(|l| l.contains("prefixed_sha256") || l.contains("dotted_sha512"))
        .map(str::to_owned)
        .collect();
    std::fs::write(&file, shaped.join("\n")).unwrap();
    let (_, stdout, _) = run().await;
    assert!(
        stdout.contains(&format!(
            "imported 0, skipped {} (already present), rejected 0",
            shaped.len()
        )),
        "{stdout}"
    );
}

/// Writes `import` straight into the database as a new key of keyspace `ks`: what
/// someone with write access to the database, and nothing else, can do.
async fn insert_row(app: &TestApp, ks: &str, import: keyhaven_store::Import) -> String {
    insert_row_with(app, ks, import, None).await
}

/// [`insert_row`], on the native verifier of `native_key` (an import already verified once).
async fn insert_row_with(
    app: &TestApp,
    ks: &str,
    import: keyhaven_store::Import,
    native_key: Option<&str>,
) -> String {
    let item: keyhaven_service::import::ImportItem = serde_json::from_value(json!({
        "keyspace_id": ks, "format": "sha256", "hash": "00".repeat(32)
    }))
    .unwrap();
    let mut record =
        keyhaven_service::import::build(&item, &app.peppers, keyhaven_service::clock::now())
            .unwrap();
    record.import = Some(import);
    if let Some(key) = native_key {
        record.verifier = app
            .peppers
            .verifier(&record.key_id, keyhaven_core::SecretStr::new(key));
    }
    let audit = keyhaven_store::AuditEvent {
        id: format!("forged-{}", record.key_id),
        occurred_at: keyhaven_service::clock::now(),
        actor: "db-writer".into(),
        action: "key.import".into(),
        target_type: "key".into(),
        target_id: record.key_id.clone(),
        keyspace_id: Some(ks.to_owned()),
        changes: Default::default(),
        client_ip: None,
    };
    let inserted = app
        .store
        .import_keys(&[record.clone()], &audit)
        .await
        .unwrap();
    assert_eq!(inserted, vec![true]);
    record.key_id
}

/// Rows an attacker with database write access (but no pepper) could insert for a key of
/// their choosing, in each shape imports were ever stored in.
fn forged_rows(pepper_version: u32) -> Vec<(&'static str, keyhaven_store::Import)> {
    let token = "attackerChosenLongToken12345";
    let whole = "imp_Forged99_attackerChosenLongToken12345";
    let row = |format: &str, lookup: String, digest: Vec<u8>| keyhaven_store::Import {
        format: format.to_owned(),
        lookup,
        digest: Some(digest),
        public: None,
    };
    vec![
        (
            whole,
            row(
                "prefixed_sha256",
                "p:imp_Forged99".into(),
                Sha256::digest(token.as_bytes()).to_vec(),
            ),
        ),
        (
            whole,
            row(
                "prefixed_sha256",
                format!("ip{pepper_version}:imp_Forged99"),
                Sha256::digest(token.as_bytes()).to_vec(),
            ),
        ),
        (
            "forged.dotted-secret",
            row(
                "dotted_sha512",
                "d:forged".into(),
                Sha512::digest(b"forged.dotted-secret").to_vec(),
            ),
        ),
    ]
}

#[tokio::test]
async fn rows_written_to_the_database_without_the_pepper_never_verify() {
    // Deployment without imports: the flag is re-read on each flush tick, so rows
    // inserted later open the import path; they must still match nothing.
    let app = spawn_app_with(|c| c.usage_flush_interval_ms = 100).await;
    let ks = app.create_keyspace("imp").await;
    for (key, row) in forged_rows(1) {
        insert_row(&app, &ks.id, row).await;
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        let code = app.verify(key).await.code;
        assert!(
            code == "NOT_FOUND" || code == "MALFORMED",
            "a forged row verified {code} for {key}"
        );
    }

    // Deployment with real imports: the real one verifies, the forged ones do not.
    let app = spawn_app().await;
    let ks = app.create_keyspace("imp").await;
    let (status, body) = app
        .send(
            Method::POST,
            "/v1/keys/import",
            Some(&json!({"keys": items(&ks.id)})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    for (key, row) in forged_rows(1) {
        insert_row(&app, &ks.id, row).await;
        let code = app.verify(key).await.code;
        assert!(code == "NOT_FOUND" || code == "MALFORMED", "{key}: {code}");
    }
    assert_eq!(app.verify(PREFIXED).await.code, "VALID");

    // Nothing stored shows the public id or the old digest.
    let record = app
        .store
        .key_for_verify(body["results"][0]["key_id"].as_str().unwrap())
        .await
        .unwrap()
        .unwrap();
    let import = record.key.import.unwrap();
    assert!(!import.lookup.contains("BRTRKFsL"), "{}", import.lookup);
}

async fn verify_eventually(app: &TestApp, key: &str, want: &str) -> String {
    let mut code = app.verify(key).await.code;
    for _ in 0..50 {
        if code == want {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        code = app.verify(key).await.code;
    }
    code
}

#[tokio::test]
async fn imports_stored_unpeppered_are_converted_and_keep_verifying() {
    // Rows written behind the server's back (as `keyhaven migrate` would) are seen once
    // the flush tick re-reads the "holds imported keys" flag and cached lookups expire.
    let app = spawn_app_with(|c| {
        c.usage_flush_interval_ms = 100;
        c.cache_ttl_ms = 200;
    })
    .await;
    let ks = app.create_keyspace("old").await;
    let old = |lookup: &str, digest: Option<Vec<u8>>| keyhaven_store::Import {
        format: if lookup.starts_with("p:") {
            "prefixed_sha256"
        } else {
            "dotted_sha512"
        }
        .into(),
        lookup: lookup.into(),
        digest,
        public: None,
    };
    // As older versions stored them: one imported key already verified once (native
    // verifier, old lookup), one never verified (plain digest), and the mark the
    // migration leaves for the latter.
    let used = insert_row_with(&app, &ks.id, old("d:ak_live42", None), Some(DOTTED)).await;
    let waiting = insert_row(
        &app,
        &ks.id,
        old(
            "p:myapp_BRTRKFsL",
            Some(hex::decode(PREFIXED_HASH).unwrap()),
        ),
    )
    .await;
    app.execute_sql(
        "INSERT INTO pending_upgrades (name) VALUES ('peppered-imports')",
        "INSERT INTO pending_upgrades (name) VALUES ('peppered-imports')",
    )
    .await;

    // Every start converts the lookups of keys on the native verifier; nothing else.
    let n = keyhaven_service::import::upgrade_stored(app.store.as_ref(), &app.peppers, false)
        .await
        .unwrap();
    assert_eq!(n.converted, 1);
    assert_eq!(verify_eventually(&app, DOTTED, "VALID").await, "VALID");
    let record = app.store.key_for_verify(&used).await.unwrap().unwrap().key;
    let import = record.import.unwrap();
    assert!(import.lookup.starts_with("id1:"), "{}", import.lookup);
    assert_eq!(import.public.as_deref(), Some("ak_live42"));
    let code = app.verify(PREFIXED).await.code;
    assert!(code == "NOT_FOUND" || code == "MALFORMED", "{code}");

    // The key still on its plain digest waits for the operator's explicit upgrade.
    let n = keyhaven_service::import::upgrade_stored(app.store.as_ref(), &app.peppers, true)
        .await
        .unwrap();
    assert_eq!(n.converted, 1);
    let import = app
        .store
        .key_for_verify(&waiting)
        .await
        .unwrap()
        .unwrap()
        .key
        .import
        .unwrap();
    assert!(import.lookup.starts_with("ip1:"), "{}", import.lookup);
    assert_ne!(import.digest, Some(hex::decode(PREFIXED_HASH).unwrap()));
    let (_, body) = app
        .send(Method::GET, &format!("/v1/keys/{waiting}"), None)
        .await;
    assert_eq!(body["start"], "myapp_BRTRKFsL_\u{2026}", "{body}");
    assert_eq!(verify_eventually(&app, PREFIXED, "VALID").await, "VALID");

    // Once done, rows written in the old shape are not converted again: neither one on
    // a plain digest, nor one claiming a native verifier it cannot have.
    let (forged_key, forged) = forged_rows(1).remove(0);
    let forged_id = insert_row(&app, &ks.id, forged).await;
    let fake_native = insert_row_with(
        &app,
        &ks.id,
        old("d:forged", None),
        Some("not.the-key-presented"),
    )
    .await;
    for pending in [false, true] {
        keyhaven_service::import::upgrade_stored(app.store.as_ref(), &app.peppers, pending)
            .await
            .unwrap();
    }
    let still = app.store.key_for_verify(&forged_id).await.unwrap().unwrap();
    assert!(still.key.import.unwrap().lookup.starts_with("p:"));
    let converted = app
        .store
        .key_for_verify(&fake_native)
        .await
        .unwrap()
        .unwrap();
    assert!(converted.key.import.unwrap().lookup.starts_with("id1:"));
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    for key in [forged_key, "forged.dotted-secret"] {
        let code = app.verify(key).await.code;
        assert!(code == "NOT_FOUND" || code == "MALFORMED", "{key}: {code}");
    }
}

#[tokio::test]
async fn migrate_upgrade_imports_converts_waiting_keys_once() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = spawn_process(&data, dir.path(), &[]).await;
    let root = server.first_root_key();
    let ks = post_json(
        &http_client(),
        &format!("{}/v1/keyspaces", server.base),
        &root,
        &json!({"name": "legacy", "prefix": "legacy"}),
    )
    .await;
    drop(server);

    // A key an older version imported and nobody verified since, and the migration's mark.
    let store = store_for(&data).await;
    let (peppers, _) = keyhaven_store::pepper_file::load_or_create(&data, None).unwrap();
    let item: keyhaven_service::import::ImportItem = serde_json::from_value(json!({
        "keyspace_id": ks["id"], "format": "sha256", "hash": "00".repeat(32)
    }))
    .unwrap();
    let mut record =
        keyhaven_service::import::build(&item, &peppers, keyhaven_service::clock::now()).unwrap();
    record.import = Some(keyhaven_store::Import {
        format: "prefixed_sha256".into(),
        lookup: "p:myapp_BRTRKFsL".into(),
        digest: Some(hex::decode(PREFIXED_HASH).unwrap()),
        public: None,
    });
    let audit = keyhaven_store::AuditEvent {
        id: "evt_legacy_import".into(),
        occurred_at: keyhaven_service::clock::now(),
        actor: "cli".into(),
        action: "key.import".into(),
        target_type: "keyspace".into(),
        target_id: ks["id"].as_str().unwrap().into(),
        keyspace_id: Some(ks["id"].as_str().unwrap().into()),
        changes: Default::default(),
        client_ip: None,
    };
    assert_eq!(
        store.import_keys(&[record], &audit).await.unwrap(),
        vec![true]
    );
    drop(store);
    match database_url_for(&data).await {
        Some(url) => {
            let db = sqlx::PgPool::connect(&url).await.unwrap();
            sqlx::query("INSERT INTO pending_upgrades (name) VALUES ('peppered-imports')")
                .execute(&db)
                .await
                .unwrap();
            db.close().await;
        }
        None => {
            let options = sqlx::sqlite::SqliteConnectOptions::new()
                .filename(data.join(keyhaven_store::sqlite::DATABASE_FILE_NAME));
            let db = sqlx::SqlitePool::connect_with(options).await.unwrap();
            sqlx::query("INSERT INTO pending_upgrades (name) VALUES ('peppered-imports')")
                .execute(&db)
                .await
                .unwrap();
            db.close().await;
        }
    }

    let migrate = || async {
        let out = keyhaven(&data)
            .await
            .args(["migrate", "--upgrade-imports", "--data-dir"])
            .arg(&data)
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let first = migrate().await;
    assert!(first.contains("converted 1 imported key(s)"), "{first}");
    let second = migrate().await;
    assert!(second.contains("no imported key waits"), "{second}");

    let server = spawn_process(&data, dir.path(), &[]).await;
    let v = post_json(
        &http_client(),
        &format!("{}/v1/keys/verify", server.base),
        &root,
        &json!({"key": PREFIXED}),
    )
    .await;
    assert_eq!(v["code"], "VALID", "{v}");
}

/// CSV files name their columns in a header row; one without (or with a column that is
/// not a field) is refused before anything is written, saying which columns it needs.
#[tokio::test]
async fn cli_import_of_csv_needs_a_header_row_naming_known_columns() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = spawn_process(&data, dir.path(), &[]).await;
    let root = server.first_root_key();
    let http = http_client();
    let ks = create_keyspace_process(&server, &root).await;
    let digest = hex::encode(Sha256::digest(PLAIN.as_bytes()));
    let import = |name: &'static str, text: String| {
        let file = dir.path().join(name);
        std::fs::write(&file, text).unwrap();
        let data = data.clone();
        async move { cli_import(&data, &file, &[]).await }
    };

    let (code, stdout, stderr) = import("headerless.csv", format!("{ks},sha256,{digest}\n")).await;
    assert_eq!(code, Some(1), "{stdout}{stderr}");
    assert!(
        stderr.contains("no header row (the columns keyspace_id, format, hash are missing)"),
        "{stderr}"
    );
    assert!(
        stderr.contains("keyspace_id,format,hash (required)"),
        "{stderr}"
    );
    assert!(!stderr.contains(&digest), "never echoes a cell: {stderr}");
    assert!(stdout.is_empty(), "nothing imported: {stdout}");

    let (code, _, stderr) = import(
        "typo.csv",
        format!("keyspace_id,format,hash,scope\n{ks},sha256,{digest},read\n"),
    )
    .await;
    assert_eq!(code, Some(1));
    assert!(
        stderr.contains(r#""scope" is not a known column"#),
        "{stderr}"
    );

    let (status, list) = http
        .get(format!("{}/v1/keys?keyspace_id={ks}", server.base))
        .bearer_auth(&root)
        .send()
        .await
        .map(|r| (r.status(), r))
        .unwrap();
    assert_eq!(status, StatusCode::OK);
    let list: Value = list.json().await.unwrap();
    assert_eq!(list["data"], json!([]), "nothing was written");

    let (code, stdout, stderr) = import(
        "good.csv",
        format!("keyspace_id,format,hash,name,scopes\n{ks},sha256,{digest},from csv,read write\n"),
    )
    .await;
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(stdout.contains("imported 1, skipped 0"), "{stdout}");
    let verified = verify_eventually_process(&server.base, &root, PLAIN).await;
    assert_eq!(verified["code"], "VALID", "{verified}");
    assert_eq!(verified["scopes"], json!(["read", "write"]), "{verified}");
}

/// Creates the keyspace `legacy` through a server process as `root`: its id.
async fn create_keyspace_process(server: &ServerProcess, root: &str) -> String {
    let url = format!("{}/v1/keyspaces", server.base);
    let body = json!({"name": "legacy", "prefix": "legacy"});
    let ks = post_json(&http_client(), &url, root, &body).await;
    ks["id"].as_str().unwrap().to_owned()
}

/// `keyhaven import FILE --data-dir DATA` with `extra` arguments: the exit code, stdout
/// and stderr.
async fn cli_import(
    data: &std::path::Path,
    file: &std::path::Path,
    extra: &[&std::ffi::OsStr],
) -> (Option<i32>, String, String) {
    let out = keyhaven(data)
        .await
        .arg("import")
        .arg(file)
        .arg("--data-dir")
        .arg(data)
        .args(extra)
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Verifies `key` through a server process until it is found (a CLI import reaches a
/// running server within its flush interval).
async fn verify_eventually_process(base: &str, root: &str, key: &str) -> Value {
    let http = http_client();
    let mut last = Value::Null;
    for _ in 0..100 {
        last = http
            .post(format!("{base}/v1/keys/verify"))
            .bearer_auth(root)
            .json(&json!({ "key": key }))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if last["code"] == "VALID" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    last
}
