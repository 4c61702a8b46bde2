//! Anomaly alerts: one event per episode.

use keyhaven_store::*;
use serde_json::json;

use crate::support::*;

pub async fn alerts_start_one_event_per_episode(store: &dyn Store) {
    const QUIET: i64 = 300;
    const SPIKE: &str = "rate_spike";
    const FAILED: &str = "failed_verifications";
    add_keyspace(store, &keyspace("ks_a", "alpha")).await;
    add_keyspace(store, &keyspace("ks_b", "beta")).await;
    add_key(store, &key(&kid(1), "ks_a", None)).await;
    add_key(store, &key(&kid(2), "ks_b", None)).await;
    let log = AuditLog::read(store).await;
    let keyspace_of = |key: usize| if key == 1 { "ks_a" } else { "ks_b" };
    let alert = |key: usize, kind: &'static str, minute: i64| Alert {
        key_id: kid(key),
        keyspace_id: keyspace_of(key).into(),
        kind,
        event_type: "usage.anomaly",
        minute: unix(minute),
        data: obj(json!({"kind": kind, "minute": unix(minute)})),
    };
    // Judged once the minute is over.
    let record = |key: usize, kind: &'static str, minute: i64| {
        let alert = alert(key, kind, minute);
        async move {
            store
                .record_alert(&alert, QUIET, at(minute + 60))
                .await
                .unwrap()
        }
    };

    assert!(
        record(1, SPIKE, 0).await,
        "the first alert starts an episode"
    );
    assert!(
        !record(1, SPIKE, 60).await,
        "the next minute goes on with it"
    );
    assert!(
        !record(1, SPIKE, 60).await,
        "and so does the same minute again"
    );
    assert!(record(1, FAILED, 60).await, "episodes are per kind");
    assert!(record(2, SPIKE, 60).await, "and per key");
    assert!(!record(1, SPIKE, 360).await, "a gap of `quiet` goes on");
    assert!(!record(1, FAILED, 120).await);
    assert!(
        record(1, SPIKE, 720).await,
        "a longer gap starts a new episode"
    );
    assert!(!record(1, SPIKE, 480).await, "a late, older minute goes on");
    assert!(
        !record(1, SPIKE, 1020).await,
        "and never moves the episode's last minute back"
    );
    assert!(record(1, FAILED, 480).await, "each kind has its own gaps");
    log.expect_none(store, "recording alerts").await;

    // Exactly the episodes' first alerts are stored, newest first.
    let stored = |key: usize, kind: &'static str, minute: i64| {
        let a = alert(key, kind, minute);
        Event {
            id: String::new(),
            kind: a.event_type.into(),
            key_id: Some(a.key_id),
            keyspace_id: Some(a.keyspace_id),
            payload: a.data,
            created_at: at(minute + 60),
        }
    };
    let without_ids = |events: Vec<Event>| {
        events
            .into_iter()
            .map(|e| Event {
                id: String::new(),
                ..e
            })
            .collect::<Vec<_>>()
    };
    let anomalies = events(store, &kind("usage.anomaly")).await;
    assert!(anomalies.iter().all(|e| e.id.starts_with("evt_")));
    assert_eq!(
        without_ids(anomalies),
        [
            stored(1, FAILED, 480),
            stored(1, SPIKE, 720),
            stored(2, SPIKE, 60),
            stored(1, FAILED, 60),
            stored(1, SPIKE, 0),
        ]
    );
    let (k1, k2) = (kid(1), kid(2));
    let of_key_1 = EventFilter {
        kind: Some("usage.anomaly"),
        key_id: Some(&k1),
        ..EventFilter::default()
    };
    assert_eq!(
        without_ids(events(store, &of_key_1).await),
        [
            stored(1, FAILED, 480),
            stored(1, SPIKE, 720),
            stored(1, FAILED, 60),
            stored(1, SPIKE, 0),
        ]
    );
    // Every type of key 2's events: its key's creation and its alert.
    let of_key_2 = EventFilter {
        key_id: Some(&k2),
        ..EventFilter::default()
    };
    let types = |events: Vec<Event>| events.into_iter().map(|e| e.kind).collect::<Vec<_>>();
    assert_eq!(
        types(events(store, &of_key_2).await),
        ["usage.anomaly", "key.created"]
    );
    let of_ks_b = EventFilter {
        kind: Some("usage.anomaly"),
        keyspace_id: Some("ks_b"),
        ..EventFilter::default()
    };
    assert_eq!(
        without_ids(events(store, &of_ks_b).await),
        [stored(2, SPIKE, 60)]
    );
    assert_eq!(events(store, &kind("key.created")).await.len(), 2);
    assert!(events(store, &kind("ratelimit.exceeded")).await.is_empty());

    // Two nodes judging at once start one episode between them.
    const BURST: &str = "failed_burst";
    assert!(record(2, BURST, 0).await);
    let (one, other) = tokio::join!(record(2, BURST, 600), record(2, BURST, 660));
    assert!(one != other, "exactly one starts it ({one}, {other})");
    let anomalies_of_2 = EventFilter {
        kind: Some("usage.anomaly"),
        key_id: Some(&k2),
        ..EventFilter::default()
    };
    let kinds = events(store, &anomalies_of_2)
        .await
        .into_iter()
        .map(|e| e.payload["kind"].clone())
        .collect::<Vec<_>>();
    assert_eq!(kinds, [json!(BURST), json!(BURST), json!(SPIKE)]);
}
