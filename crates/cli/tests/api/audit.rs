//! Every successful admin mutation writes exactly one audit event, in the same
//! transaction: a failed audit write undoes the mutation.

use keyhaven_store::{AuditFilter, PageRequest};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::*;

/// A small deterministic generator (xorshift64*), so a failing sequence can be replayed
/// from the printed seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn pick<'a>(&mut self, v: &'a [String]) -> Option<&'a String> {
        (!v.is_empty()).then(|| &v[self.below(v.len())])
    }
}

async fn all_events(app: &TestApp) -> Vec<keyhaven_store::AuditEvent> {
    let mut events = Vec::new();
    let mut after = None;
    loop {
        let page = app
            .store
            .list_audit_events(&AuditFilter::default(), PageRequest { limit: 500, after })
            .await
            .unwrap();
        events.extend(page.items);
        match page.next {
            Some(n) => after = Some(n),
            None => return events,
        }
    }
}

#[tokio::test]
async fn audit_rows_equal_successful_mutations_in_a_random_sequence() {
    let seed = std::env::var("KEYHAVEN_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5EED_2026_u64);
    println!("seed {seed}");
    let mut rng = Rng(seed);
    let app = spawn_app().await;
    let baseline = all_events(&app).await.len();
    let (mut keyspaces, mut owners, mut keys) = (
        Vec::<String>::new(),
        Vec::<String>::new(),
        Vec::<String>::new(),
    );
    let mut successes = 0usize;
    let mut by_status = std::collections::BTreeMap::<u16, usize>::new();
    for _ in 0..1000 {
        let (method, path, body): (Method, String, Option<Value>) = match rng.below(11) {
            0 => (
                Method::POST,
                "/v1/keyspaces".into(),
                Some(json!({"name": "ks", "prefix": format!("p{}", rng.below(12))})),
            ),
            1 => (
                Method::POST,
                "/v1/owners".into(),
                Some(json!({"external_id": format!("cus_{}", rng.below(15))})),
            ),
            2 | 3 => match rng.pick(&keyspaces) {
                Some(ks) => {
                    let owner = if rng.below(2) == 0 {
                        rng.pick(&owners).cloned()
                    } else {
                        None
                    };
                    (
                        Method::POST,
                        "/v1/keys".into(),
                        Some(json!({"keyspace_id": ks, "owner_id": owner, "name": "k"})),
                    )
                }
                None => (
                    Method::POST,
                    "/v1/keys".into(),
                    Some(json!({"keyspace_id": "ks_none"})),
                ),
            },
            4 => (
                Method::PATCH,
                format!(
                    "/v1/keys/{}",
                    rng.pick(&keys).cloned().unwrap_or("111111111111".into())
                ),
                Some(json!({"name": format!("n{}", rng.below(3)), "enabled": rng.below(2) == 0})),
            ),
            5 => (
                Method::POST,
                format!(
                    "/v1/keys/{}/revoke",
                    rng.pick(&keys).cloned().unwrap_or("111111111111".into())
                ),
                Some(json!({"reason": "test"})),
            ),
            6 => (
                Method::DELETE,
                format!(
                    "/v1/keys/{}",
                    rng.pick(&keys).cloned().unwrap_or("111111111111".into())
                ),
                None,
            ),
            7 => (
                Method::PATCH,
                format!(
                    "/v1/keyspaces/{}",
                    rng.pick(&keyspaces).cloned().unwrap_or("ks_none".into())
                ),
                Some(json!({"name": format!("n{}", rng.below(3))})),
            ),
            8 => (
                Method::DELETE,
                format!(
                    "/v1/owners/{}",
                    rng.pick(&owners).cloned().unwrap_or("own_none".into())
                ),
                None,
            ),
            9 => (
                Method::DELETE,
                format!(
                    "/v1/keyspaces/{}",
                    rng.pick(&keyspaces).cloned().unwrap_or("ks_none".into())
                ),
                None,
            ),
            _ => (
                Method::POST,
                format!(
                    "/v1/keys/{}/rotate",
                    rng.pick(&keys).cloned().unwrap_or("111111111111".into())
                ),
                Some(json!({"grace_period_seconds": 60})),
            ),
        };
        let (status, response) = app.send(method.clone(), &path, body.as_ref()).await;
        assert!(
            !status.is_server_error(),
            "{method} {path}: {status} {response}"
        );
        *by_status.entry(status.as_u16()).or_default() += 1;
        if !status.is_success() {
            continue;
        }
        successes += 1;
        match (method.as_str(), path.as_str()) {
            ("POST", "/v1/keyspaces") => {
                keyspaces.push(response["id"].as_str().unwrap().to_owned())
            }
            ("POST", "/v1/owners") => owners.push(response["id"].as_str().unwrap().to_owned()),
            ("POST", "/v1/keys") => keys.push(response["key_id"].as_str().unwrap().to_owned()),
            ("POST", p) if p.ends_with("/rotate") => {
                keys.push(response["key_id"].as_str().unwrap().to_owned())
            }
            ("DELETE", p) if p.starts_with("/v1/keys/") => {
                keys.retain(|k| !p.ends_with(k.as_str()))
            }
            ("DELETE", p) if p.starts_with("/v1/owners/") => {
                owners.retain(|o| !p.ends_with(o.as_str()))
            }
            ("DELETE", p) if p.starts_with("/v1/keyspaces/") => {
                keyspaces.retain(|k| !p.ends_with(k.as_str()))
            }
            _ => {}
        }
    }
    println!("statuses: {by_status:?}");
    assert!(
        successes > 300,
        "the sequence should mostly succeed: {by_status:?}"
    );
    assert!(
        by_status.len() > 2,
        "the sequence should also hit conflicts and 404s: {by_status:?}"
    );
    let events = all_events(&app).await;
    assert_eq!(events.len() - baseline, successes);
    // The audit log names the actor, the client and never holds a verifier.
    let root_id = &app.root_key["kh_root_".len().."kh_root_".len() + 12];
    for e in &events[..events.len() - baseline] {
        assert_eq!(e.actor, *root_id);
        assert_eq!(e.client_ip.as_deref(), Some("127.0.0.1"));
        assert!(!e.changes.contains_key("verifier"));
    }
}

#[tokio::test]
async fn a_failed_audit_write_undoes_the_mutation() {
    let app = spawn_app().await;
    let ks = app.create_keyspace("acme_live").await;
    let key = app
        .create_key(json!({"keyspace_id": ks.id, "name": "before"}))
        .await;
    let before = all_events(&app).await.len();

    // Make every audit insert fail, from outside the server, in the real database.
    app.execute_sql(
        "CREATE TRIGGER refuse_audit BEFORE INSERT ON audit_events \
         BEGIN SELECT RAISE(ABORT, 'audit log unavailable'); END",
        "CREATE FUNCTION refuse_audit() RETURNS trigger LANGUAGE plpgsql AS \
         $$ BEGIN RAISE EXCEPTION 'audit log unavailable'; END $$; \
         CREATE TRIGGER refuse_audit BEFORE INSERT ON audit_events \
         FOR EACH ROW EXECUTE FUNCTION refuse_audit();",
    )
    .await;

    let key_path = format!("/v1/keys/{}", key.record.key_id);
    let attempts: Vec<(Method, String, Option<Value>)> = vec![
        (
            Method::POST,
            "/v1/keys".into(),
            Some(json!({"keyspace_id": ks.id})),
        ),
        (
            Method::POST,
            "/v1/keyspaces".into(),
            Some(json!({"name": "x", "prefix": "other"})),
        ),
        (
            Method::POST,
            "/v1/owners".into(),
            Some(json!({"external_id": "cus_1"})),
        ),
        (
            Method::PATCH,
            key_path.clone(),
            Some(json!({"name": "after", "enabled": false})),
        ),
        (Method::POST, format!("{key_path}/revoke"), None),
        (Method::DELETE, key_path.clone(), None),
        (
            Method::PATCH,
            format!("/v1/keyspaces/{}", ks.id),
            Some(json!({"name": "renamed"})),
        ),
    ];
    for (method, path, body) in &attempts {
        let (status, problem) = app.send(method.clone(), path, body.as_ref()).await;
        assert_eq!(
            status,
            StatusCode::INTERNAL_SERVER_ERROR,
            "{method} {path}: {problem}"
        );
        assert_eq!(problem["code"], "internal");
        assert!(
            !problem.to_string().contains("audit log unavailable"),
            "cause stays in the log"
        );
    }
    // Nothing changed.
    let (_, keys) = app.send(Method::GET, "/v1/keys", None).await;
    assert_eq!(keys["data"].as_array().unwrap().len(), 1);
    let (_, k) = app.send(Method::GET, &key_path, None).await;
    assert_eq!(
        (k["name"].as_str(), k["enabled"].as_bool(), &k["revoked_at"]),
        (Some("before"), Some(true), &Value::Null)
    );
    assert_eq!(app.verify(&key.key).await.code, "VALID");
    let (_, spaces) = app.send(Method::GET, "/v1/keyspaces", None).await;
    assert_eq!(spaces["data"].as_array().unwrap().len(), 1);
    assert_eq!(spaces["data"][0]["name"], "acme_live");
    let (_, owners) = app.send(Method::GET, "/v1/owners", None).await;
    assert_eq!(owners["data"], json!([]));

    app.execute_sql(
        "DROP TRIGGER refuse_audit",
        "DROP TRIGGER refuse_audit ON audit_events",
    )
    .await;
    let (status, _) = app
        .send(Method::POST, &format!("{key_path}/revoke"), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(all_events(&app).await.len(), before + 1);
}
