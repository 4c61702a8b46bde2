//! Anomaly alerts with the server's clock moved by hand: steady traffic raises nothing,
//! a 50x spike raises one `usage.anomaly` for its whole episode, and uses of a revoked
//! key and bursts of wrong secrets raise one event each.

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::*;

async fn events(app: &TestApp, kind: &str) -> Vec<Value> {
    let (_, page) = app
        .send(
            Method::GET,
            &format!("/v1/events?type={kind}&limit=500"),
            None,
        )
        .await;
    page["data"].as_array().unwrap().clone()
}

async fn verify_n(app: &TestApp, key: &str, n: usize) {
    for _ in 0..n {
        app.verify(key).await;
    }
}

#[tokio::test]
async fn a_spike_raises_one_anomaly_per_episode_and_steady_traffic_none() {
    let app = spawn_app_with(|c| c.usage_flush_interval_ms = 50).await;
    let ks = app.create_keyspace("anom").await;
    let steady = app.create_key(json!({"keyspace_id": ks.id})).await;
    let spiky = app.create_key(json!({"keyspace_id": ks.id})).await;
    let revoked = app.create_key(json!({"keyspace_id": ks.id})).await;
    let guessed = app.create_key(json!({"keyspace_id": ks.id})).await;

    // An hour and five minutes of 5 verifications a minute on both keys (the baseline
    // window is 60 minutes; younger keys are not judged for spikes).
    for _ in 0..65 {
        verify_n(&app, &steady.key, 5).await;
        verify_n(&app, &spiky.key, 5).await;
        app.clock.advance(60);
    }
    // Three minutes at 50x on one key; the other keeps its pace.
    for _ in 0..3 {
        verify_n(&app, &steady.key, 5).await;
        verify_n(&app, &spiky.key, 250).await;
        app.clock.advance(60);
    }
    // A revoked key tried across two minutes, and 25 wrong secrets for one key id.
    let (status, _) = app
        .send(
            Method::POST,
            &format!("/v1/keys/{}/revoke", revoked.record.key_id),
            Some(&json!({})),
        )
        .await;
    assert!(status.is_success());
    verify_n(&app, &revoked.key, 2).await;
    let wrong = with_wrong_secret(&guessed.key, "anom");
    for _ in 0..25 {
        let (status, _) = app
            .send(
                Method::POST,
                "/v1/keys/verify",
                Some(&json!({"key": wrong})),
            )
            .await;
        assert!(status.is_success());
    }
    app.clock.advance(60);
    verify_n(&app, &revoked.key, 1).await;
    // Back to normal for a few minutes; then let the judge catch up.
    for _ in 0..4 {
        verify_n(&app, &steady.key, 5).await;
        verify_n(&app, &spiky.key, 5).await;
        app.clock.advance(60);
    }
    tokio::time::sleep(Duration::from_millis(1_500)).await;

    let anomalies = events(&app, "usage.anomaly").await;
    let of = |key_id: &str, kind: &str| {
        anomalies
            .iter()
            .filter(|e| e["key_id"] == key_id && e["payload"]["kind"] == kind)
            .count()
    };
    assert_eq!(of(&spiky.record.key_id, "rate_spike"), 1, "{anomalies:#?}");
    assert_eq!(of(&steady.record.key_id, "rate_spike"), 0, "{anomalies:#?}");
    assert_eq!(
        of(&guessed.record.key_id, "failed_verifications"),
        1,
        "{anomalies:#?}"
    );
    assert_eq!(anomalies.len(), 2, "{anomalies:#?}");
    let spike = anomalies
        .iter()
        .find(|e| e["payload"]["kind"] == "rate_spike")
        .unwrap();
    assert_eq!(spike["payload"]["count"], 250);
    assert_eq!(spike["keyspace_id"], ks.id.as_str());
    let used = events(&app, "verify.revoked_key_used").await;
    assert_eq!(used.len(), 1, "{used:#?}");
    assert_eq!(used[0]["key_id"], revoked.record.key_id.as_str());

    // A new spike after a quiet spell is a new episode.
    for _ in 0..12 {
        verify_n(&app, &spiky.key, 5).await;
        app.clock.advance(60);
    }
    verify_n(&app, &spiky.key, 500).await;
    app.clock.advance(180);
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let anomalies = events(&app, "usage.anomaly").await;
    assert_eq!(
        anomalies
            .iter()
            .filter(|e| e["key_id"] == spiky.record.key_id.as_str())
            .count(),
        2,
        "{anomalies:#?}"
    );
}
