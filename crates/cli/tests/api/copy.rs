//! `keyhaven copy`: a SQLite deployment moved to PostgreSQL keeps every key, owner,
//! keyspace, audit event and counter, and every key verifies on the new engine with the
//! answer it had before. `KEYHAVEN_COPY_KEYS` sets how many keys (2,000 by default;
//! `bench/migrate.sh` runs this with 100,000 in release mode and prints the figures).

use std::sync::Arc;
use std::time::Instant;

use keyhaven_store::{AuditFilter, KeyFilter, PageRequest, Store};
use serde_json::{Value, json};
use tokio::sync::Semaphore;

use crate::helpers::*;

async fn post(http: &reqwest::Client, base: &str, root: &str, path: &str, body: &Value) -> Value {
    post_json(http, &format!("{base}{path}"), root, body).await
}

/// Every page of keys (root keys excluded) as JSON, for comparing engines.
async fn all_keys(store: &dyn Store) -> Vec<Value> {
    let mut out = Vec::new();
    let mut after = None;
    loop {
        let page = store
            .list_keys(&KeyFilter::default(), PageRequest { after, limit: 1000 })
            .await
            .unwrap();
        out.extend(page.items.iter().map(|k| json!(format!("{k:?}"))));
        match page.next {
            Some(n) => after = Some(n),
            None => return out,
        }
    }
}

async fn all_audit(store: &dyn Store) -> Vec<String> {
    let mut out = Vec::new();
    let mut after = None;
    loop {
        let page = store
            .list_audit_events(&AuditFilter::default(), PageRequest { after, limit: 1000 })
            .await
            .unwrap();
        out.extend(page.items.iter().map(|e| format!("{e:?}")));
        match page.next {
            Some(n) => after = Some(n),
            None => return out,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sqlite_deployment_copied_to_postgres_verifies_every_key_the_same() {
    if on_postgres() {
        return; // the source must be SQLite; the SQLite pass runs this
    }
    let Some(admin) = keyhaven_store::postgres::testing::admin_url() else {
        return;
    };
    let count: usize = std::env::var("KEYHAVEN_COPY_KEYS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(2000);
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let sqlite = spawn_process(&data, dir.path(), &[]).await;
    let root = sqlite.first_root_key();
    let http = http_client();
    let base = sqlite.base.clone();
    let ks = post(
        &http,
        &base,
        &root,
        "/v1/keyspaces",
        &json!({"name": "m", "prefix": "move"}),
    )
    .await;
    let ks = ks["id"].as_str().unwrap().to_owned();
    let owner = post(
        &http,
        &base,
        &root,
        "/v1/owners",
        &json!({"external_id": "cus_1", "quota": {"remaining": 10_000_000}}),
    )
    .await;
    let owner_id = owner["id"].as_str().unwrap().to_owned();
    // A plan and a key on it, and a standalone limit's override: copied as well.
    post(
        &http,
        &base,
        &root,
        "/v1/plans",
        &json!({"name": "moved", "scopes": ["plan.scope"]}),
    )
    .await;
    let on_plan = post(
        &http,
        &base,
        &root,
        "/v1/keys",
        &json!({"keyspace_id": ks, "plan": "moved"}),
    )
    .await["key"]
        .as_str()
        .unwrap()
        .to_owned();
    let overridden = http
        .put(format!("{base}/v1/ratelimits/overrides"))
        .bearer_auth(&root)
        .json(
            &json!({"namespace": "login", "identifier": "*@moved.com", "limit": 1,
            "duration_ms": 60_000}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(overridden.status(), 200);

    let started = Instant::now();
    let limit = Arc::new(Semaphore::new(32));
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..count {
        let (http, base, root, ks, owner_id, limit) = (
            http.clone(),
            base.clone(),
            root.clone(),
            ks.clone(),
            owner_id.clone(),
            limit.clone(),
        );
        tasks.spawn(async move {
            let _permit = limit.acquire().await.unwrap();
            let body = if i % 10 == 0 {
                json!({"keyspace_id": ks, "owner_id": owner_id, "scopes": ["read"]})
            } else {
                json!({"keyspace_id": ks})
            };
            let k = post(&http, &base, &root, "/v1/keys", &body).await;
            (
                k["key_id"].as_str().unwrap().to_owned(),
                k["key"].as_str().unwrap().to_owned(),
            )
        });
    }
    let keys = tasks.join_all().await;
    let created = started.elapsed();
    // Some history: revocations, a rotation, uses of the owner's quota.
    let mut expected: Vec<(String, &str)> = Vec::with_capacity(keys.len() + 1);
    for (i, (id, key)) in keys.iter().enumerate() {
        if i % 7 == 3 {
            post(
                &http,
                &base,
                &root,
                &format!("/v1/keys/{id}/revoke"),
                &json!({}),
            )
            .await;
            expected.push((key.clone(), "REVOKED"));
        } else {
            expected.push((key.clone(), "VALID"));
        }
    }
    let (rotated_id, _) = &keys[1];
    let successor = post(
        &http,
        &base,
        &root,
        &format!("/v1/keys/{rotated_id}/rotate"),
        &json!({"grace_period_seconds": 3600}),
    )
    .await;
    expected.push((successor["key"].as_str().unwrap().to_owned(), "VALID"));
    for (key, _) in expected.iter().take(50) {
        post(
            &http,
            &base,
            &root,
            "/v1/keys/verify",
            &json!({ "key": key }),
        )
        .await;
    }
    // A clean stop writes usage and quota counters.
    let pid = sqlite.child.id().to_string();
    std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    let mut sqlite = sqlite;
    sqlite.child.wait().unwrap();
    // An operator of the dashboard moves with the rest.
    keyhaven_service::operators::create(
        store_for(&data).await.as_ref(),
        &keyhaven_service::Actor::local("cli"),
        "ann@example.com",
        keyhaven_store::OperatorRole::Admin,
        secrecy::SecretString::from("correct horse battery"),
        keyhaven_service::clock::now(),
    )
    .await
    .unwrap();

    let url = keyhaven_store::postgres::testing::fresh_database(&admin)
        .await
        .unwrap();
    let copy = || async {
        keyhaven(&data)
            .await
            .args(["copy", "--to", &url, "--data-dir"])
            .arg(&data)
            .output()
            .unwrap()
    };
    let copy_started = Instant::now();
    let out = copy().await;
    let copied = copy_started.elapsed();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        stdout.contains(&format!("keys: {} rows", count + 3)),
        "{stdout}"
    ); // + root key, successor, the key on the plan
    // A second copy into the same (now full) database is refused and changes nothing.
    let again = copy().await;
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("not empty"));

    // The stored state is the same, record for record.
    let from = store_for(&data).await;
    let to: Arc<dyn Store> = Arc::new(
        keyhaven_store::PgStore::open(&url, &keyhaven_store::PgOptions::default())
            .await
            .unwrap(),
    );
    assert_eq!(all_keys(from.as_ref()).await, all_keys(to.as_ref()).await);
    assert_eq!(all_audit(from.as_ref()).await, all_audit(to.as_ref()).await);
    let operators = from.list_operators().await.unwrap();
    assert_eq!(operators.len(), 1);
    assert_eq!(operators, to.list_operators().await.unwrap());
    let used = &keys[0].0; // verified above, owned, with the owner's quota
    assert_eq!(
        from.usage(used, 0).await.unwrap(),
        to.usage(used, 0).await.unwrap()
    );
    assert!(!to.usage(used, 0).await.unwrap().is_empty());
    assert_eq!(
        format!("{:?}", from.owner(&owner_id).await.unwrap()),
        format!("{:?}", to.owner(&owner_id).await.unwrap())
    );

    // Every key verifies on a PostgreSQL node as it did before (and the root key, copied
    // too, authenticates every call).
    let pg = spawn_process(&data, dir.path(), &[("KEYHAVEN_DATABASE_URL", &url)]).await;
    let verify_started = Instant::now();
    let limit = Arc::new(Semaphore::new(32));
    let mut tasks = tokio::task::JoinSet::new();
    for (key, want) in expected {
        let (http, base, root, limit) =
            (http.clone(), pg.base.clone(), root.clone(), limit.clone());
        tasks.spawn(async move {
            let _permit = limit.acquire().await.unwrap();
            let v = post(
                &http,
                &base,
                &root,
                "/v1/keys/verify",
                &json!({ "key": key }),
            )
            .await;
            assert_eq!(v["code"], want, "{key}");
        });
    }
    let verified = tasks.join_all().await.len();
    let verify_time = verify_started.elapsed();
    println!(
        "copy: {count} keys created on SQLite in {created:?}; `keyhaven copy` took {copied:?}; \
         {verified} keys verified on PostgreSQL, each with its old answer, in {verify_time:?} \
         ({:.0}/s)",
        verified as f64 / verify_time.as_secs_f64().max(1e-9)
    );
    assert_eq!(verified, count + 1);
    let v = post(
        &http,
        &pg.base,
        &root,
        "/v1/keys/verify",
        &json!({"key": on_plan, "scopes": ["plan.scope"]}),
    )
    .await;
    assert_eq!(v["code"], "VALID", "the plan came along: {v}");
    let listed: Value = http
        .get(format!(
            "{}/v1/ratelimits/overrides?namespace=login",
            pg.base
        ))
        .bearer_auth(&root)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listed["data"][0]["identifier"], "*@moved.com", "{listed}");
}
