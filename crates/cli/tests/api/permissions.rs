//! Permissions and roles: verify answers a permission query (`a AND (b OR c)`) from the
//! key's own permissions, its owner's, and those of the roles either names; refusals
//! name what is missing and consume nothing; role edits reach every key on the next
//! verification, on every node within a second.

use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::*;
use crate::multinode::{database, keyspace, two_nodes};

async fn post(app: &TestApp, path: &str, body: Value) -> Value {
    let (status, answer) = app.send(Method::POST, path, Some(&body)).await;
    assert!(status.is_success(), "{path}: {status} {answer}");
    answer
}

async fn ask(app: &TestApp, key: &str, query: &str) -> Value {
    let (status, answer) = app
        .send(
            Method::POST,
            "/v1/keys/verify",
            Some(&json!({"key": key, "permissions": query})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{query}: {answer}");
    answer
}

#[tokio::test]
async fn queries_are_answered_from_direct_grants_roles_and_owners() {
    let app = spawn_app().await;
    let ks = app.create_keyspace("perm").await;
    let roles = format!("/v1/keyspaces/{}/roles", ks.id);
    let reader = post(
        &app,
        &roles,
        json!({"name": "reader", "permissions": ["documents.read"]}),
    )
    .await;
    assert_eq!(reader["permissions"], json!(["documents.read"]));
    post(
        &app,
        &roles,
        json!({"name": "editor", "description": "Edits documents",
            "permissions": ["documents.read", "documents.write"]}),
    )
    .await;
    let owner = post(
        &app,
        "/v1/owners",
        json!({"external_id": "perm-customer", "roles": ["reader"], "permissions": ["billing.view"]}),
    )
    .await;
    assert_eq!(owner["roles"], json!(["reader"]));
    let key = app
        .create_key(json!({"keyspace_id": ks.id, "owner_id": owner["id"],
            "roles": ["editor"], "permissions": ["admin"], "scopes": ["api"],
            "ratelimits": [{"name": "calls", "limit": 1, "duration_ms": 60000}]}))
        .await;
    let (_, view) = app
        .send(
            Method::GET,
            &format!("/v1/keys/{}", key.record.key_id),
            None,
        )
        .await;
    assert_eq!(
        (view["roles"].clone(), view["permissions"].clone()),
        (json!(["editor"]), json!(["admin"]))
    );
    let k = key.key.as_str();

    for (query, missing) in [
        ("documents.delete", json!(["documents.delete"])),
        (
            "documents.delete OR super",
            json!(["documents.delete", "super"]),
        ),
        (
            "admin AND (super OR root) AND super",
            json!(["super", "root"]),
        ),
    ] {
        let answer = ask(&app, k, query).await;
        assert_eq!(answer["code"], "INSUFFICIENT_PERMISSIONS", "{query}");
        assert_eq!(answer["valid"], false);
        assert_eq!(answer["missing_permissions"], missing, "{query}");
        assert_eq!(
            answer["ratelimits"],
            json!([]),
            "a refusal consumes nothing"
        );
    }
    // Precedence: scopes are decided before permissions.
    let (_, answer) = app
        .send(
            Method::POST,
            "/v1/keys/verify",
            Some(&json!({"key": k, "scopes": ["other"], "permissions": "nothing"})),
        )
        .await;
    assert_eq!(answer["code"], "INSUFFICIENT_SCOPES");
    assert!(answer.get("missing_permissions").is_none(), "{answer}");
    // Held: its role's, its own, its owner's direct and its owner's role's. The one
    // admitted call takes the key's only unit; its answer names nothing missing.
    let answer = ask(
        &app,
        k,
        "documents.read AND (documents.write OR admin) AND billing.view AND admin",
    )
    .await;
    assert_eq!(answer["code"], "VALID", "{answer}");
    assert!(answer.get("missing_permissions").is_none());
    assert_eq!(ask(&app, k, "documents.read").await["code"], "RATE_LIMITED");

    // A key without an owner holds only its own and its roles'.
    let solo = app
        .create_key(json!({"keyspace_id": ks.id, "roles": ["reader"]}))
        .await;
    let answer = ask(&app, &solo.key, "documents.read AND documents.write").await;
    assert_eq!(answer["missing_permissions"], json!(["documents.write"]));
    assert_eq!(
        ask(&app, &solo.key, "documents.read").await["code"],
        "VALID"
    );
    // Without a query, permissions are not asked about.
    assert_eq!(app.verify(&solo.key).await.code, "VALID");

    // Batch verify answers each item as a single verify does.
    let (status, batch) = app
        .send(
            Method::POST,
            "/v1/keys/verify/batch",
            Some(&json!({"items": [
                {"key": solo.key, "permissions": "documents.read"},
                {"key": solo.key, "permissions": "documents.write OR admin"},
            ]})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{batch}");
    assert_eq!(batch["results"][0]["code"], "VALID");
    assert_eq!(
        batch["results"][1]["missing_permissions"],
        json!(["documents.write", "admin"])
    );
}

#[tokio::test]
async fn bad_queries_roles_and_names_are_refused_precisely() {
    let app = spawn_app().await;
    let ks = app.create_keyspace("permx").await;
    let key = app.create_key(json!({"keyspace_id": ks.id})).await;
    let long = vec!["p"; 65].join(" OR ");
    for (query, detail) in [
        (
            "a AND",
            "permissions: the query expected a permission or `(` at byte 5",
        ),
        ("(a OR b", "never closed"),
        ("a b", "expected AND, OR or `)` at byte 2"),
        ("a and b", "expected AND, OR or `)` at byte 2"),
        ("a;b", "at byte 1 that no permission name may hold"),
        ("", "is empty"),
        (long.as_str(), "more than 64 permissions"),
    ] {
        let (status, problem) = app
            .send(
                Method::POST,
                "/v1/keys/verify",
                Some(&json!({"key": key.key, "permissions": query})),
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}: {problem}");
        let said = problem["detail"].as_str().unwrap();
        assert!(said.contains(detail), "{query}: {said}");
        assert!(!query.is_empty() && !said.contains(query) || query.len() < 4);
    }
    let roles = format!("/v1/keyspaces/{}/roles", ks.id);
    for (body, status, detail) in [
        (
            json!({"name": "AND"}),
            StatusCode::BAD_REQUEST,
            "name must be",
        ),
        (
            json!({"name": "has space"}),
            StatusCode::BAD_REQUEST,
            "name must be",
        ),
        (
            json!({"name": "r", "permissions": ["ok", "not ok"]}),
            StatusCode::BAD_REQUEST,
            "permissions[1]",
        ),
        (
            json!({"name": "r", "extra": 1}),
            StatusCode::BAD_REQUEST,
            "extra",
        ),
    ] {
        let (got, problem) = app.send(Method::POST, &roles, Some(&body)).await;
        assert_eq!(got, status, "{body}: {problem}");
        assert!(
            problem["detail"].as_str().unwrap().contains(detail),
            "{problem}"
        );
    }
    post(&app, &roles, json!({"name": "r"})).await;
    let (status, problem) = app
        .send(Method::POST, &roles, Some(&json!({"name": "r"})))
        .await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (StatusCode::CONFLICT, Some("role_taken"))
    );
    // A key names only roles of its own keyspace.
    let other = app.create_keyspace("permy").await;
    post(
        &app,
        &format!("/v1/keyspaces/{}/roles", other.id),
        json!({"name": "elsewhere"}),
    )
    .await;
    let (status, problem) = app
        .send(
            Method::POST,
            "/v1/keys",
            Some(&json!({"keyspace_id": ks.id, "roles": ["r", "elsewhere"]})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("`elsewhere` is not a role of this keyspace")
    );
    let (status, _) = app
        .send(
            Method::PATCH,
            &format!("/v1/keys/{}", key.record.key_id),
            Some(&json!({"roles": ["elsewhere"]})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    // Unknown roles and keyspaces are 404.
    let (status, _) = app
        .send(Method::GET, &format!("{roles}/missing"), None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = app
        .send(Method::GET, "/v1/keyspaces/ks_AAAAAAAAAAAAAAAA/roles", None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // A root key limited to another keyspace sees none of these roles.
    let limited = app
        .root_key(&["keyspaces:*"], Some(&[other.id.as_str()]))
        .await;
    let (status, _) = app.send_as(&limited, Method::GET, &roles, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn role_edits_reach_every_key_on_the_next_verification() {
    let app = spawn_app().await;
    let ks = app.create_keyspace("perme").await;
    let roles = format!("/v1/keyspaces/{}/roles", ks.id);
    post(
        &app,
        &roles,
        json!({"name": "viewer", "permissions": ["a"]}),
    )
    .await;
    let one = app
        .create_key(json!({"keyspace_id": ks.id, "roles": ["viewer"]}))
        .await;
    let two = app
        .create_key(json!({"keyspace_id": ks.id, "roles": ["viewer"]}))
        .await;
    for k in [&one.key, &two.key] {
        assert_eq!(ask(&app, k, "a").await["code"], "VALID");
        assert_eq!(ask(&app, k, "b").await["code"], "INSUFFICIENT_PERMISSIONS");
    }
    let (status, role) = app
        .send(
            Method::PATCH,
            &format!("{roles}/viewer"),
            Some(&json!({"permissions": ["b"]})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{role}");
    for k in [&one.key, &two.key] {
        assert_eq!(ask(&app, k, "b").await["code"], "VALID");
        assert_eq!(ask(&app, k, "a").await["code"], "INSUFFICIENT_PERMISSIONS");
    }
    let (status, _) = app
        .send(Method::DELETE, &format!("{roles}/viewer"), None)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(
        ask(&app, &one.key, "b").await["code"],
        "INSUFFICIENT_PERMISSIONS"
    );
    let (_, listed) = app.send(Method::GET, &roles, None).await;
    assert_eq!(listed["data"], json!([]));
    // Audited: created, changed from and to, deleted.
    let (_, audit) = app
        .send(
            Method::GET,
            &format!("/v1/audit-events?target_id={}/viewer", ks.id),
            None,
        )
        .await;
    let actions: Vec<&str> = (audit["data"].as_array().unwrap().iter())
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        ["role.delete", "role.update", "role.create"],
        "{audit}"
    );
    assert_eq!(
        audit["data"][1]["changes"]["permissions"],
        json!({"from": ["a"], "to": ["b"]})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_role_edit_on_one_node_reaches_the_other_within_a_second() {
    let Some(url) = database().await else { return };
    let dir = tempfile::tempdir().unwrap();
    let (a, b, root) = two_nodes(dir.path(), dir.path(), &url, &url).await;
    let http = http_client();
    let ks = keyspace(&http, &a.base, &root).await;
    let roles = format!("/v1/keyspaces/{ks}/roles");
    let (status, _) = try_post(
        &http,
        &a.base,
        &root,
        &roles,
        &json!({"name": "ops", "permissions": ["deploy"]}),
    )
    .await;
    assert_eq!(status, 201);
    let (status, key) = try_post(
        &http,
        &a.base,
        &root,
        "/v1/keys",
        &json!({"keyspace_id": ks, "roles": ["ops"]}),
    )
    .await;
    assert_eq!(status, 201, "{key}");
    let plain = key["key"].as_str().unwrap().to_owned();
    let code = |base: String| {
        let (http, root, plain) = (http.clone(), root.clone(), plain.clone());
        async move {
            try_post(
                &http,
                &base,
                &root,
                "/v1/keys/verify",
                &json!({"key": plain, "permissions": "deploy"}),
            )
            .await
            .1["code"]
                .as_str()
                .unwrap()
                .to_owned()
        }
    };
    // Node B caches the key as holding `deploy`.
    assert_eq!(code(b.base.clone()).await, "VALID");
    assert_eq!(code(b.base.clone()).await, "VALID");
    let since = Instant::now();
    let changed = http
        .patch(format!("{}{roles}/ops", a.base))
        .bearer_auth(&root)
        .json(&json!({"permissions": ["read"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(changed.status(), 200);
    while code(b.base.clone()).await != "INSUFFICIENT_PERMISSIONS" {
        assert!(
            since.elapsed() < Duration::from_secs(1),
            "node B still grants `deploy`"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    println!("role edit reached node B after {:?}", since.elapsed());
}

#[tokio::test]
async fn the_gateway_asks_a_routes_permission_query() {
    let upstream = crate::gateway_upstream::spawn_upstream().await;
    let (app, proxy) = crate::gateway::gateway_with(&upstream.url(), |p| {
        let mut rule: keyhaven_service::gateway::RouteRule =
            serde_json::from_value(json!({"path": "/echo/reports"})).unwrap();
        rule.permissions = Some("reports.read AND (reports.write OR admin)".into());
        p.routes = vec![rule];
    })
    .await;
    let ks = app.create_keyspace("permg").await;
    let roles = format!("/v1/keyspaces/{}/roles", ks.id);
    post(
        &app,
        &roles,
        json!({"name": "analyst", "permissions": ["reports.read"]}),
    )
    .await;
    let analyst = app
        .create_key(json!({"keyspace_id": ks.id, "roles": ["analyst"]}))
        .await;
    let admin = app
        .create_key(json!({"keyspace_id": ks.id, "roles": ["analyst"], "permissions": ["admin"]}))
        .await;
    let get = |key: &str, path: &str| {
        app.http
            .get(format!("{proxy}{path}"))
            .bearer_auth(key)
            .send()
    };
    assert_eq!(
        get(&analyst.key, "/echo").await.unwrap().status(),
        StatusCode::OK
    );
    let refused = get(&analyst.key, "/echo/reports").await.unwrap();
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    let problem: Value = refused.json().await.unwrap();
    assert_eq!(problem["code"], "insufficient_permissions");
    assert_eq!(
        get(&admin.key, "/echo/reports").await.unwrap().status(),
        StatusCode::OK
    );
    assert_eq!(
        upstream.hits(),
        2,
        "the refused request never reached the upstream"
    );
}
