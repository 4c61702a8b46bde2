//! Webhooks, their deliveries and the event log through `client.webhooks()` and
//! `client.events()`, delivering to a receiver on 127.0.0.1 (the server is our own, and
//! allows private targets).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use keyhaven_client::types::{
    CreateWebhook, DeliveryFilter, DeliveryView, EventFilter, Page, UpdateWebhook,
};
use keyhaven_client::{Client, ExposeSecret};

use crate::helpers::{TestServer, key, keyspace};

/// A receiver that accepts every delivery and counts them.
async fn receiver() -> (String, Arc<AtomicUsize>) {
    let received = Arc::new(AtomicUsize::new(0));
    let count = received.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move || {
            let count = count.clone();
            async move {
                count.fetch_add(1, Ordering::SeqCst);
                StatusCode::NO_CONTENT
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}/hook"), received)
}

/// The webhook's only delivery, once it is `delivered`.
async fn delivered(client: &Client, webhook_id: &str) -> DeliveryView {
    let start = Instant::now();
    loop {
        let page = client
            .webhooks()
            .deliveries(webhook_id, &DeliveryFilter::default())
            .await
            .unwrap();
        if let [only] = page.data.as_slice()
            && only.status == "delivered"
        {
            return only.clone();
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "not delivered: {page:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn webhooks_deliver_events_to_their_receiver() {
    let server = TestServer::spawn_with(|c| c.webhook_allow_private_targets = true).await;
    let client = server.client();
    let ks = keyspace(&client).await;
    let (url, received) = receiver().await;
    let webhooks = client.webhooks();

    let mut input = CreateWebhook::new(url.clone());
    input.event_types = Some(vec!["key.created".into()]);
    input.keyspace_id = Some(ks.id.clone());
    input.description = Some("billing".into());
    let created = webhooks.create(&input).await.unwrap();
    assert!(created.secret.expose_secret().starts_with("whsec_"));
    assert!(!format!("{created:?}").contains(created.secret.expose_secret()));
    let hook = created.webhook;
    assert_eq!(
        (hook.url.as_str(), hook.event_types.as_slice(), hook.enabled),
        (url.as_str(), &["key.created".to_owned()][..], true)
    );
    assert_eq!(hook.keyspace_id.as_deref(), Some(ks.id.as_str()));
    assert_eq!(webhooks.get(&hook.id).await.unwrap(), hook);
    assert_eq!(
        webhooks.list(&Page::default()).await.unwrap().data,
        vec![hook.clone()]
    );
    let changed = webhooks
        .update(
            &hook.id,
            &UpdateWebhook {
                description: Some(None),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(changed.description, None);
    assert_eq!(changed.url, hook.url);

    // A key's creation is an event, delivered to the receiver.
    let made = key(&client, &ks, &[]).await;
    let delivery = delivered(&client, &hook.id).await;
    assert_eq!(delivery.webhook_id, hook.id);
    assert_eq!(delivery.event_type, "key.created");
    assert_eq!(delivery.last_status_code, Some(204));
    assert!(delivery.delivered_at.is_some());
    assert_eq!(delivery.attempt_log, None, "only on the delivery itself");
    assert_eq!(received.load(Ordering::SeqCst), 1);
    let full = webhooks.delivery(&hook.id, &delivery.id).await.unwrap();
    let attempts = full.attempt_log.clone().unwrap();
    assert_eq!(attempts.len(), 1);
    assert_eq!(attempts[0].status_code, Some(204));

    let events = client
        .events()
        .list(&EventFilter {
            kind: Some("key.created".into()),
            key_id: Some(made.view.key_id.clone()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(events.data.len(), 1, "{events:?}");
    let event = &events.data[0];
    assert_eq!(event.id, delivery.event_id);
    assert_eq!(event.kind, "key.created");
    assert_eq!(event.keyspace_id.as_deref(), Some(ks.id.as_str()));

    // A resend delivers the same event again.
    let resent = webhooks.resend(&hook.id, &delivery.id).await.unwrap();
    assert_eq!(resent.id, delivery.id);
    let start = Instant::now();
    while received.load(Ordering::SeqCst) < 2 {
        assert!(start.elapsed() < Duration::from_secs(20), "never resent");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let filter = DeliveryFilter {
        status: Some("delivered".into()),
        ..Default::default()
    };
    assert_eq!(
        webhooks
            .deliveries(&hook.id, &filter)
            .await
            .unwrap()
            .data
            .len(),
        1
    );

    webhooks.delete(&hook.id).await.unwrap();
    assert_eq!(
        webhooks.get(&hook.id).await.unwrap_err().status(),
        Some(404)
    );
}
