//! The webhook outbox: each event delivered once per endpoint that wants it.

use keyhaven_store::*;
use serde_json::json;

use crate::support::*;

pub async fn webhook_outbox_delivers_each_event_once_per_endpoint(store: &dyn Store) {
    add_keyspace(store, &keyspace("ks_a", "alpha")).await;
    add_keyspace(store, &keyspace("ks_b", "beta")).await;
    // Stored before any endpoint exists: delivered to none.
    add_key(store, &key(&kid(1), "ks_a", None)).await;
    let mut log = AuditLog::read(store).await;

    // Every event; revocations in ks_a only; a disabled one.
    let all = webhook("wh_all", &["*"], None);
    let revoked_a = webhook("wh_revoked_a", &["key.revoked"], Some("ks_a"));
    let off = Webhook {
        enabled: false,
        ..webhook("wh_off", &["*"], None)
    };
    for hook in [&all, &revoked_a, &off] {
        let audit = event(
            &format!("create_{}", hook.id),
            "webhook.create",
            &hook.id,
            hook.keyspace_id.as_deref(),
            10,
        );
        store
            .create_webhook(hook, Change::audited(&audit))
            .await
            .unwrap();
        log.expect_one(store, &audit).await;
    }
    let stored = store.webhook("wh_all").await.unwrap().unwrap();
    assert_eq!(stored, all);
    assert_eq!(store.webhook("wh_missing").await.unwrap(), None);
    let shown = format!("{stored:?}");
    for secret in [
        format!("{:?}", stored.sealed_secret),
        String::from_utf8(stored.sealed_secret.clone()).unwrap(),
    ] {
        assert!(!shown.contains(&secret), "{shown} shows the sealed secret");
    }
    let hook_ids = |hooks: Vec<Webhook>| hooks.into_iter().map(|h| h.id).collect::<Vec<_>>();
    assert_eq!(
        hook_ids(all_pages(2, |page| store.list_webhooks(None, page)).await),
        ["wh_off", "wh_revoked_a", "wh_all"]
    );
    let only_a = vec!["ks_a".to_owned()];
    assert_eq!(
        hook_ids(all_pages(2, |page| store.list_webhooks(Some(&only_a), page)).await),
        ["wh_revoked_a"]
    );

    // Lifecycle events, each stored with its change: two creations, two revocations;
    // an update stores none.
    add_key(store, &key(&kid(2), "ks_a", None)).await;
    add_key(store, &key(&kid(3), "ks_b", None)).await;
    for (n, ks) in [(1, "ks_a"), (3, "ks_b")] {
        let audit = AuditEvent {
            changes: obj(json!({"reason": "leaked"})),
            ..event(&format!("revoke_{n}"), "key.revoke", &kid(n), Some(ks), 20)
        };
        store
            .revoke_key(&kid(n), at(20), Some("leaked"), Change::audited(&audit))
            .await
            .unwrap();
    }
    let renamed = KeyRecord {
        name: Some("renamed".into()),
        ..key(&kid(2), "ks_a", None)
    };
    store
        .update_key(
            &renamed,
            QuotaWrite::Keep,
            Change::audited(&event("update_2", "key.update", &kid(2), Some("ks_a"), 20)),
        )
        .await
        .unwrap();
    let stored_events = events(store, &EventFilter::default()).await;
    let summary = stored_events
        .iter()
        .map(|e| (e.kind.as_str(), e.key_id.clone(), e.keyspace_id.as_deref()))
        .collect::<Vec<_>>();
    assert_eq!(
        summary,
        [
            ("key.revoked", Some(kid(3)), Some("ks_b")),
            ("key.revoked", Some(kid(1)), Some("ks_a")),
            ("key.created", Some(kid(3)), Some("ks_b")),
            ("key.created", Some(kid(2)), Some("ks_a")),
            ("key.created", Some(kid(1)), Some("ks_a")),
        ]
    );
    let revoked_1 = &stored_events[1];
    assert_eq!(
        (&revoked_1.payload, revoked_1.created_at),
        (
            &obj(json!({
                "key_id": kid(1),
                "keyspace_id": "ks_a",
                "actor": "rk_actor1",
                "reason": "leaked",
            })),
            at(20)
        )
    );
    // An endpoint created after them gets none, though they are not fanned out yet.
    let late = webhook("wh_late", &["*"], None);
    let audit = event("create_wh_late", "webhook.create", "wh_late", None, 30);
    store
        .create_webhook(&late, Change::audited(&audit))
        .await
        .unwrap();

    // The fan-out: each event once, to each endpoint that wants it.
    let t = unix(100) * 1000;
    assert_eq!(
        store.fan_out_events(t, 2).await.unwrap(),
        2,
        "up to the limit"
    );
    assert_eq!(store.fan_out_events(t, 10).await.unwrap(), 3);
    assert_eq!(store.fan_out_events(t, 10).await.unwrap(), 0, "once");
    let deliveries = |webhook_id: &'static str, status: Option<DeliveryStatus>| async move {
        all_pages(3, |page| store.list_deliveries(webhook_id, status, page)).await
    };
    let event_ids = |list: &[Delivery]| list.iter().map(|d| d.event_id.clone()).collect::<Vec<_>>();
    let ids_of = |events: &[&Event]| events.iter().map(|e| e.id.clone()).collect::<Vec<_>>();
    let pending = |hook: &str, event: &Event, id: &str| Delivery {
        id: id.into(),
        webhook_id: hook.into(),
        event_id: event.id.clone(),
        event_type: event.kind.clone(),
        status: DeliveryStatus::Pending,
        attempts: 0,
        next_attempt_ms: t,
        last_status: None,
        last_error: None,
        delivered_at_ms: None,
        created_at: at(100),
    };
    let to_all = deliveries("wh_all", None).await;
    let wanted: Vec<&Event> = stored_events[..4].iter().collect();
    assert_eq!(
        event_ids(&to_all),
        ids_of(&wanted),
        "all but the one stored before it"
    );
    for (delivery, event) in to_all.iter().zip(&wanted) {
        assert_eq!(delivery, &pending("wh_all", event, &delivery.id));
    }
    let to_revoked_a = deliveries("wh_revoked_a", None).await;
    assert_eq!(event_ids(&to_revoked_a), ids_of(&[revoked_1]));
    assert!(deliveries("wh_off", None).await.is_empty(), "disabled");
    assert!(
        deliveries("wh_late", None).await.is_empty(),
        "created later"
    );
    assert_eq!(
        store
            .delivery("wh_all", &to_all[0].id)
            .await
            .unwrap()
            .as_ref(),
        Some(&to_all[0])
    );
    assert_eq!(
        store.delivery("wh_revoked_a", &to_all[0].id).await.unwrap(),
        None,
        "another endpoint's delivery"
    );

    // Claims lease what they take.
    const LEASE: i64 = 30_000;
    let claim = |now_ms: i64, limit: u32| async move {
        store.claim_deliveries(now_ms, LEASE, limit).await.unwrap()
    };
    let sorted_ids = |due: &[DueDelivery]| {
        let mut ids = due.iter().map(|d| d.id.clone()).collect::<Vec<_>>();
        ids.sort();
        ids
    };
    assert!(claim(t - 1, 10).await.is_empty(), "not due yet");
    let first_claim = claim(t, 3).await;
    assert_eq!(first_claim.len(), 3, "up to the limit");
    let second_claim = claim(t + 1000, 10).await;
    let mut every_id = to_all
        .iter()
        .chain(&to_revoked_a)
        .map(|d| d.id.clone())
        .collect::<Vec<_>>();
    every_id.sort();
    let both: Vec<DueDelivery> = first_claim.iter().chain(&second_claim).cloned().collect();
    assert_eq!(sorted_ids(&both), every_id, "the rest, none twice");
    let due = both
        .iter()
        .find(|d| d.webhook_id == "wh_revoked_a")
        .unwrap();
    assert_eq!(
        (
            due.id.as_str(),
            due.url.as_str(),
            &due.sealed_secret,
            &due.event,
            due.attempts,
            due.first_due_ms
        ),
        (
            to_revoked_a[0].id.as_str(),
            revoked_a.url.as_str(),
            &revoked_a.sealed_secret,
            revoked_1,
            0,
            t
        )
    );
    assert!(claim(t + LEASE - 1, 10).await.is_empty(), "all leased");
    // A lapsed lease frees them, to one of two workers claiming at once.
    let (one, other) = tokio::join!(claim(t + LEASE, 10), claim(t + LEASE, 10));
    let both: Vec<DueDelivery> = one.into_iter().chain(other).collect();
    assert_eq!(sorted_ids(&both), sorted_ids(&first_claim));

    // Attempts: a retry then a success, and a give-up.
    let (d1, d2) = (&to_all[0], &to_all[1]);
    let attempt = |d: &Delivery, n: u32, ms: i64, code: Option<u16>, error: Option<&str>| Attempt {
        delivery_id: d.id.clone(),
        attempt: n,
        attempted_ms: ms,
        status_code: code,
        error: error.map(str::to_owned),
        duration_ms: 120,
    };
    let t1 = t + LEASE;
    let retried = attempt(d1, 1, t1, Some(500), Some("HTTP 500"));
    store
        .record_attempt(&retried, AfterAttempt::RetryAt(t1 + 90_000))
        .await
        .unwrap();
    let waiting = Delivery {
        attempts: 1,
        next_attempt_ms: t1 + 90_000,
        last_status: Some(500),
        last_error: Some("HTTP 500".into()),
        ..d1.clone()
    };
    assert_eq!(
        store.delivery("wh_all", &d1.id).await.unwrap(),
        Some(waiting.clone())
    );
    let refused = attempt(d2, 1, t1, None, Some("connection refused"));
    store
        .record_attempt(&refused, AfterAttempt::GiveUp)
        .await
        .unwrap();
    let failed = Delivery {
        status: DeliveryStatus::Failed,
        attempts: 1,
        last_error: Some("connection refused".into()),
        ..d2.clone()
    };
    assert_eq!(
        store.delivery("wh_all", &d2.id).await.unwrap(),
        Some(failed.clone())
    );
    let mut others = vec![
        to_all[2].id.clone(),
        to_all[3].id.clone(),
        to_revoked_a[0].id.clone(),
    ];
    others.sort();
    assert_eq!(
        sorted_ids(&claim(t1 + 89_999, 10).await),
        others,
        "neither the retry before it is due, nor the failed one"
    );
    let retry = claim(t1 + 90_000, 10).await;
    let [retry] = retry.as_slice() else {
        panic!("only the retry is due: {retry:?}")
    };
    assert_eq!(
        (retry.id.as_str(), retry.attempts, retry.first_due_ms),
        (d1.id.as_str(), 1, t)
    );
    let done = attempt(d1, 2, t1 + 90_000, Some(204), None);
    store
        .record_attempt(&done, AfterAttempt::Delivered)
        .await
        .unwrap();
    let delivered = Delivery {
        status: DeliveryStatus::Delivered,
        attempts: 2,
        last_status: Some(204),
        last_error: None,
        delivered_at_ms: Some(t1 + 90_000),
        ..waiting
    };
    assert_eq!(
        store.delivery("wh_all", &d1.id).await.unwrap(),
        Some(delivered.clone())
    );
    // A worker whose lease ran out reports late: logged, but it stays delivered.
    let late_attempt = attempt(d1, 2, t1 + 95_000, None, Some("timeout"));
    store
        .record_attempt(&late_attempt, AfterAttempt::RetryAt(t1 + 200_000))
        .await
        .unwrap();
    assert_eq!(
        store.delivery("wh_all", &d1.id).await.unwrap(),
        Some(delivered.clone())
    );
    assert_eq!(
        store.delivery_attempts(&d1.id).await.unwrap(),
        [retried, done, late_attempt]
    );
    assert_eq!(store.delivery_attempts(&d2.id).await.unwrap(), [refused]);
    assert!(
        store
            .delivery_attempts(&to_all[2].id)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        sorted_ids(&claim(t1 + 1_000_000, 10).await),
        others,
        "delivered and failed ones are never claimed"
    );

    // Listings by status, newest first, across pages.
    assert_eq!(
        deliveries("wh_all", Some(DeliveryStatus::Delivered)).await,
        [delivered]
    );
    assert_eq!(
        deliveries("wh_all", Some(DeliveryStatus::Failed)).await,
        [failed]
    );
    let still_pending = all_pages(1, |page| {
        store.list_deliveries("wh_all", Some(DeliveryStatus::Pending), page)
    })
    .await;
    assert_eq!(still_pending, to_all[2..]);

    // A re-send puts a failed delivery back, due now, with a fresh retry period.
    log = AuditLog::read(store).await;
    let t2 = t + 2_000_000;
    let audit = event("resend", "webhook.resend", "wh_all", None, 200);
    store
        .resend_delivery("wh_all", &d2.id, t2, Change::audited(&audit))
        .await
        .unwrap();
    log.expect_one(store, &audit).await;
    let resent = store.delivery("wh_all", &d2.id).await.unwrap().unwrap();
    assert_eq!(
        (resent.status, resent.next_attempt_ms),
        (DeliveryStatus::Pending, t2)
    );
    let due = claim(t2, 10).await;
    let again = due.iter().find(|d| d.id == d2.id).unwrap();
    assert_eq!((again.attempts, again.first_due_ms), (1, t2));
    let audit = event("resend_2", "webhook.resend", "wh_revoked_a", None, 200);
    not_found(
        store
            .resend_delivery("wh_revoked_a", &d2.id, t2, Change::audited(&audit))
            .await,
    );
    log.expect_none(store, "a re-send via the wrong endpoint")
        .await;

    // Deleting an endpoint deletes its deliveries and their log, nothing else.
    let audit = event("delete_wh_all", "webhook.delete", "wh_all", None, 300);
    store
        .delete_webhook("wh_all", Change::audited(&audit))
        .await
        .unwrap();
    log.expect_one(store, &audit).await;
    assert_eq!(store.webhook("wh_all").await.unwrap(), None);
    assert!(deliveries("wh_all", None).await.is_empty());
    assert_eq!(store.delivery("wh_all", &d1.id).await.unwrap(), None);
    assert!(store.delivery_attempts(&d1.id).await.unwrap().is_empty());
    assert!(store.delivery_attempts(&d2.id).await.unwrap().is_empty());
    assert_eq!(deliveries("wh_revoked_a", None).await, to_revoked_a);
    assert_eq!(
        sorted_ids(&claim(t2 + LEASE, 10).await),
        [to_revoked_a[0].id.clone()]
    );
    let audit = event("delete_again", "webhook.delete", "wh_all", None, 300);
    not_found(
        store
            .delete_webhook("wh_all", Change::audited(&audit))
            .await,
    );
    log.expect_none(store, "deleting a missing endpoint").await;

    // Enabling an endpoint (now for creations only): it gets the events stored from
    // then on, not those that passed while it was off.
    let on = Webhook {
        url: "https://hooks.example.com/on".into(),
        description: None,
        event_types: vec!["key.created".into()],
        enabled: true,
        updated_at: at(400),
        ..off.clone()
    };
    let audit = event("update_wh_off", "webhook.update", "wh_off", None, 400);
    store
        .update_webhook(&on, Change::audited(&audit))
        .await
        .unwrap();
    log.expect_one(store, &audit).await;
    assert_eq!(store.webhook("wh_off").await.unwrap(), Some(on));
    let missing = webhook("wh_missing", &["*"], None);
    let audit = event("update_missing", "webhook.update", "wh_missing", None, 400);
    not_found(
        store
            .update_webhook(&missing, Change::audited(&audit))
            .await,
    );
    log.expect_none(store, "updating a missing endpoint").await;
    add_key(store, &key(&kid(4), "ks_b", None)).await;
    let audit = event("revoke_2", "key.revoke", &kid(2), Some("ks_a"), 500);
    store
        .revoke_key(&kid(2), at(500), None, Change::audited(&audit))
        .await
        .unwrap();
    assert_eq!(store.fan_out_events(t2, 10).await.unwrap(), 2);
    let newest = events(store, &EventFilter::default()).await;
    let (revoked_2, created_4) = (&newest[0], &newest[1]);
    assert_eq!(
        (revoked_2.kind.as_str(), created_4.kind.as_str()),
        ("key.revoked", "key.created")
    );
    assert_eq!(
        event_ids(&deliveries("wh_off", None).await),
        ids_of(&[created_4])
    );
    assert_eq!(
        event_ids(&deliveries("wh_late", None).await),
        ids_of(&[revoked_2, created_4])
    );
    assert_eq!(
        event_ids(&deliveries("wh_revoked_a", None).await),
        ids_of(&[revoked_2, revoked_1])
    );
}
