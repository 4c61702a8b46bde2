//! Usage counts: what the API reports equals what was verified, by outcome, across a
//! `kill -9` (after the documented flush bound); keys sorted by last use.

use std::collections::BTreeMap;
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::*;

type Counts = BTreeMap<String, u64>;

/// One planned verification: which key, and how it is presented.
#[derive(Clone, Copy)]
enum Call {
    Plain(usize),
    /// With a required scope the key lacks.
    WrongScope(usize),
    /// The key's id with a wrong secret.
    WrongSecret(usize),
}

async fn run_calls(
    http: &reqwest::Client,
    base: &str,
    root: &str,
    keys: &[String],
    wrong: &[String],
    calls: Vec<Call>,
) -> Vec<BTreeMap<String, u64>> {
    let chunks: Vec<Vec<Call>> = calls
        .chunks(calls.len().div_ceil(8))
        .map(<[Call]>::to_vec)
        .collect();
    let mut tasks = Vec::new();
    for chunk in chunks {
        let (http, base, root, keys, wrong) = (
            http.clone(),
            base.to_owned(),
            root.to_owned(),
            keys.to_vec(),
            wrong.to_vec(),
        );
        tasks.push(tokio::spawn(async move {
            let mut seen = vec![Counts::new(); keys.len()];
            for call in chunk {
                let (i, body) = match call {
                    Call::Plain(i) => (i, json!({"key": keys[i]})),
                    Call::WrongScope(i) => (i, json!({"key": keys[i], "scopes": ["write"]})),
                    Call::WrongSecret(i) => (i, json!({"key": wrong[i]})),
                };
                let answer =
                    post_json(&http, &format!("{base}/v1/keys/verify"), &root, &body).await;
                let outcome = match call {
                    // Whatever the caller was told (NOT_FOUND, or RATE_LIMITED once the
                    // failure budget is spent), the key's usage says WRONG_SECRET.
                    Call::WrongSecret(_) => "WRONG_SECRET".to_owned(),
                    _ => answer["code"].as_str().unwrap().to_owned(),
                };
                *seen[i].entry(outcome).or_default() += 1;
            }
            seen
        }));
    }
    let mut total = vec![Counts::new(); keys.len()];
    for t in tasks {
        for (i, counts) in t.await.unwrap().into_iter().enumerate() {
            for (o, n) in counts {
                *total[i].entry(o).or_default() += n;
            }
        }
    }
    total
}

fn counts_of(v: &Value) -> Counts {
    serde_json::from_value(v.clone()).unwrap()
}

async fn get(http: &reqwest::Client, base: &str, root: &str, path: &str) -> Value {
    let r = http
        .get(format!("{base}{path}"))
        .bearer_auth(root)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK, "{path}");
    r.json().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_equals_the_verifications_made_by_outcome_across_a_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let logs = tempfile::tempdir().unwrap();
    let envs = [("KEYHAVEN_USAGE_FLUSH_INTERVAL_MS", "200")];
    let server = spawn_process(dir.path(), logs.path(), &envs).await;
    let root = server.first_root_key();
    let http = http_client();
    let base = server.base.clone();
    let post = |path: &str, body: Value| {
        let (http, url, root) = (http.clone(), format!("{base}{path}"), root.clone());
        async move { post_json(&http, &url, &root, &body).await }
    };
    let ks = post("/v1/keyspaces", json!({"name": "Use", "prefix": "use"})).await;
    let ks_id = ks["id"].as_str().unwrap().to_owned();
    let owner = post("/v1/owners", json!({"external_id": "cus_usage"})).await;
    let owner_id = owner["id"].as_str().unwrap().to_owned();
    // 0: valid until its limit (600 an hour) runs out; 1: revoked; 2: disabled;
    // 3: scoped to `read` (asked for `write`).
    let bodies = [
        json!({"keyspace_id": ks_id, "owner_id": owner_id,
               "ratelimits": [{"name": "requests", "limit": 600, "duration_ms": 3_600_000}]}),
        json!({"keyspace_id": ks_id}),
        json!({"keyspace_id": ks_id}),
        json!({"keyspace_id": ks_id, "scopes": ["read"]}),
    ];
    let mut keys = Vec::new();
    let mut ids = Vec::new();
    for body in bodies {
        let k = post("/v1/keys", body).await;
        keys.push(k["key"].as_str().unwrap().to_owned());
        ids.push(k["key_id"].as_str().unwrap().to_owned());
    }
    post(&format!("/v1/keys/{}/revoke", ids[1]), json!({})).await;
    let r = http
        .patch(format!("{base}/v1/keys/{}", ids[2]))
        .bearer_auth(&root)
        .json(&json!({"enabled": false}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let wrong: Vec<String> = keys.iter().map(|k| with_wrong_secret(k, "use")).collect();

    // 5,000 verifications before the kill and 5,000 after: per 10, six of key 0, one
    // each of keys 1 and 2, key 3 with a scope it lacks, and key 0's id with a wrong
    // secret.
    let cycle = [
        Call::Plain(0),
        Call::Plain(0),
        Call::Plain(0),
        Call::Plain(1),
        Call::Plain(0),
        Call::Plain(2),
        Call::Plain(0),
        Call::WrongScope(3),
        Call::Plain(0),
        Call::WrongSecret(0),
    ];
    let plan: Vec<Call> = cycle.iter().copied().cycle().take(5_000).collect();
    let first = run_calls(&http, &base, &root, &keys, &wrong, plan.clone()).await;
    // The documented bound: counts reach the database within one flush interval.
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    let mut server = server;
    server.child.kill().unwrap();
    server.child.wait().unwrap();
    let server = spawn_process(dir.path(), logs.path(), &envs).await;
    let base = server.base.clone();
    let second = run_calls(&http, &base, &root, &keys, &wrong, plan).await;
    tokio::time::sleep(Duration::from_millis(1_000)).await;

    let mut expected = vec![Counts::new(); keys.len()];
    for (i, e) in expected.iter_mut().enumerate() {
        for c in [&first[i], &second[i]] {
            for (o, n) in c {
                *e.entry(o.clone()).or_default() += n;
            }
        }
    }
    let all: u64 = expected.iter().flat_map(|c| c.values()).sum();
    assert_eq!(all, 10_000);
    for (outcome, key) in [
        ("VALID", 0),
        ("RATE_LIMITED", 0),
        ("WRONG_SECRET", 0),
        ("REVOKED", 1),
        ("DISABLED", 2),
        ("INSUFFICIENT_SCOPES", 3),
    ] {
        assert!(
            expected[key].get(outcome).is_some_and(|n| *n > 0),
            "the mix should include {outcome}: {expected:?}"
        );
    }

    // Per key, at every granularity.
    for (i, id) in ids.iter().enumerate() {
        for g in ["minute", "hour", "day"] {
            let from = if g == "minute" { "&from=" } else { "" };
            let from = if from.is_empty() {
                String::new()
            } else {
                let t = time::OffsetDateTime::now_utc() - time::Duration::minutes(30);
                format!(
                    "{from}{}",
                    t.format(&time::format_description::well_known::Rfc3339)
                        .unwrap()
                )
            };
            let series = get(
                &http,
                &base,
                &root,
                &format!("/v1/keys/{id}/usage?granularity={g}{from}"),
            )
            .await;
            assert_eq!(counts_of(&series["totals"]), expected[i], "key {i} by {g}");
        }
    }
    // Many keys in one call.
    let totals = get(
        &http,
        &base,
        &root,
        &format!("/v1/keys/usage?key_ids={}", ids.join(",")),
    )
    .await;
    let data = totals["data"].as_array().unwrap();
    assert_eq!(data.len(), 4);
    for row in data {
        let i = ids
            .iter()
            .position(|id| row["key_id"] == id.as_str())
            .unwrap();
        assert_eq!(counts_of(&row["counts"]), expected[i], "totals of key {i}");
    }
    assert!(
        data.iter()
            .any(|r| r["key_id"] == ids[0].as_str() && r["last_used_at"].is_string())
    );
    // Per owner (key 0 only) and per keyspace (all four).
    let owner_usage = get(&http, &base, &root, &format!("/v1/owners/{owner_id}/usage")).await;
    assert_eq!(counts_of(&owner_usage["totals"]), expected[0]);
    let ks_usage = get(
        &http,
        &base,
        &root,
        &format!("/v1/keyspaces/{ks_id}/usage?granularity=day"),
    )
    .await;
    assert_eq!(ks_usage["total"], 10_000);

    // Most recently used first: only key 0 was ever VALID.
    let mut order = Vec::new();
    let mut cursor = String::new();
    loop {
        let page = get(
            &http,
            &base,
            &root,
            &format!("/v1/keys?keyspace_id={ks_id}&sort=last_used&limit=1{cursor}"),
        )
        .await;
        order.push(page["data"][0]["key_id"].as_str().unwrap().to_owned());
        match page["next_cursor"].as_str() {
            Some(c) => cursor = format!("&cursor={c}"),
            None => break,
        }
    }
    assert_eq!(
        order,
        vec![
            ids[0].clone(),
            ids[3].clone(),
            ids[2].clone(),
            ids[1].clone()
        ]
    );
}

#[tokio::test]
async fn usage_queries_refuse_bad_input_and_other_tenants() {
    let app = spawn_app().await;
    let ks = app.create_keyspace("uq").await;
    let k = app.create_key(json!({"keyspace_id": ks.id})).await;
    let id = &k.record.key_id;
    for path in [
        format!("/v1/keys/{id}/usage?granularity=week"),
        format!("/v1/keys/{id}/usage?from=yesterday"),
        format!("/v1/keys/{id}/usage?granularity=minute&from=2020-01-01T00:00:00Z"),
        format!("/v1/keys/{id}/usage?from=2026-11-23T10:00:00Z&to=2026-11-23T09:00:00Z"),
        format!("/v1/keys/{id}/usage?bogus=1"),
        "/v1/keys/usage".to_owned(),
        format!(
            "/v1/keys/usage?key_ids={}",
            (0..101)
                .map(|i| format!("id{i}"))
                .collect::<Vec<_>>()
                .join(",")
        ),
        "/v1/keys?sort=name".to_owned(),
        "/v1/events?type=key.nope".to_owned(),
    ] {
        let (status, problem) = app.send(Method::GET, &path, None).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path}: {problem}");
        assert!(problem["code"].is_string(), "{path}: {problem}");
    }
    // Another keyspace's root key: the key is missing, and totals leave it out.
    let other = app.create_keyspace("uq_other").await;
    let outsider = app.root_key(&["*"], Some(&[other.id.as_str()])).await;
    let (status, _) = app
        .send_as(
            &outsider,
            Method::GET,
            &format!("/v1/keys/{id}/usage"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, totals) = app
        .send_as(
            &outsider,
            Method::GET,
            &format!("/v1/keys/usage?key_ids={id},use_nope"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(totals["data"], json!([]));
    let (status, _) = app
        .send_as(
            &outsider,
            Method::GET,
            &format!("/v1/keyspaces/{}/usage", ks.id),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn the_bulk_usage_call_reports_the_same_last_use_as_the_key() {
    let app = crate::helpers::spawn_app_with(|c| c.usage_flush_interval_ms = 100).await;
    let ks = app.create_keyspace("acme").await;
    let key = app
        .create_key(serde_json::json!({"keyspace_id": ks.id}))
        .await;
    let id = &key.record.key_id;
    // Verified once: its record is now in the verify cache, from before this use.
    assert_eq!(app.verify(&key.key).await.code, "VALID");
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let (_, one) = app
        .send(reqwest::Method::GET, &format!("/v1/keys/{id}"), None)
        .await;
    let (_, bulk) = app
        .send(
            reqwest::Method::GET,
            &format!("/v1/keys/usage?key_ids={id}"),
            None,
        )
        .await;
    assert!(one["last_used_at"].is_string(), "{one}");
    assert_eq!(
        bulk["data"][0]["last_used_at"], one["last_used_at"],
        "{bulk}"
    );
}
