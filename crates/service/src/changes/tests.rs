//! The hub and its subscriptions, without a server.

use super::*;

fn open(changes: &Changes, cursor: Option<&str>) -> Subscription {
    changes
        .subscribe(Subscribe {
            cursor,
            heartbeat: Duration::from_secs(3600),
            vouch: Box::new(|| true),
            hide_key_ids: false,
            end_on_key: None,
        })
        .unwrap()
}

async fn next(s: &mut Subscription) -> Event {
    tokio::time::timeout(Duration::from_secs(5), s.next())
        .await
        .unwrap()
        .unwrap()
}

#[tokio::test]
async fn fresh_stream_starts_with_a_heartbeat_naming_the_newest_cursor() {
    let changes = Changes::new();
    changes.publish(Change::All);
    let mut s = open(&changes, None);
    let first = next(&mut s).await;
    assert_eq!(first.kind, EventKind::Heartbeat);
    assert_eq!(first.id, changes.cursor());
    changes.publish(Change::Key("abc".into()));
    let e = next(&mut s).await;
    assert_eq!(e.kind, EventKind::Key("abc".into()));
    assert_eq!(e.id, changes.cursor());
}

#[tokio::test]
async fn resume_sends_exactly_what_was_missed() {
    let changes = Changes::new();
    changes.publish(Change::Key("a".into()));
    let cursor = changes.cursor();
    changes.publish(Change::Key("b".into()));
    changes.publish(Change::All);
    let mut s = open(&changes, Some(&cursor));
    assert_eq!(next(&mut s).await.kind, EventKind::Key("b".into()));
    assert_eq!(next(&mut s).await.kind, EventKind::All);
    changes.publish(Change::Key("c".into()));
    assert_eq!(next(&mut s).await.kind, EventKind::Key("c".into()));
}

#[tokio::test]
async fn unusable_cursors_reset_and_garbage_is_refused() {
    let changes = Changes::new();
    changes.publish(Change::Key("a".into()));
    let foreign = format!("{}-1", "1".repeat(EPOCH_CHARS));
    let future = format!("{}-99", changes.0.epoch);
    for cursor in [foreign, future] {
        let mut s = open(&changes, Some(&cursor));
        assert_eq!(next(&mut s).await.kind, EventKind::Reset, "{cursor}");
    }
    for bad in [
        "",
        "x",
        "abc-1",
        "111111111111-",
        "111111111111-x",
        "0OIl00000000-1",
    ] {
        let how = Subscribe {
            cursor: Some(bad),
            heartbeat: Duration::from_secs(1),
            vouch: Box::new(|| true),
            hide_key_ids: false,
            end_on_key: None,
        };
        assert_eq!(
            changes.subscribe(how).err(),
            Some(SubscribeError::MalformedCursor),
            "{bad}"
        );
    }
}

#[tokio::test]
async fn a_cursor_older_than_the_ring_resets() {
    let changes = Changes::new();
    let cursor = changes.cursor();
    for i in 0..=RING_CAPACITY {
        changes.publish(Change::Key(i.to_string()));
    }
    let mut s = open(&changes, Some(&cursor));
    assert_eq!(next(&mut s).await.kind, EventKind::Reset);
}

#[tokio::test]
async fn a_lagging_stream_gets_reset_and_then_only_newer_events() {
    let changes = Changes::new();
    let mut s = open(&changes, None);
    assert_eq!(next(&mut s).await.kind, EventKind::Heartbeat);
    for i in 0..BROADCAST_CAPACITY * 2 {
        changes.publish(Change::Key(i.to_string()));
    }
    let reset = next(&mut s).await;
    assert_eq!(reset.kind, EventKind::Reset);
    assert_eq!(reset.id, changes.cursor());
    changes.publish(Change::Key("new".into()));
    assert_eq!(next(&mut s).await.kind, EventKind::Key("new".into()));
}

#[tokio::test]
async fn heartbeats_stop_while_the_node_cannot_vouch_and_recovery_resets() {
    let changes = Changes::new();
    let live = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let flag = live.clone();
    let mut s = changes
        .subscribe(Subscribe {
            cursor: None,
            heartbeat: Duration::from_millis(20),
            vouch: Box::new(move || flag.load(std::sync::atomic::Ordering::SeqCst)),
            hide_key_ids: false,
            end_on_key: None,
        })
        .unwrap();
    assert_eq!(next(&mut s).await.kind, EventKind::Heartbeat);
    assert_eq!(next(&mut s).await.kind, EventKind::Heartbeat);
    live.store(false, std::sync::atomic::Ordering::SeqCst);
    let silent = tokio::time::timeout(Duration::from_millis(200), s.next()).await;
    assert!(silent.is_err(), "a heartbeat while unvouched: {silent:?}");
    live.store(true, std::sync::atomic::Ordering::SeqCst);
    assert_eq!(next(&mut s).await.kind, EventKind::Reset);
    assert_eq!(next(&mut s).await.kind, EventKind::Heartbeat);
}

#[tokio::test]
async fn close_ends_streams_and_restricted_followers_see_no_key_ids() {
    let changes = Changes::new();
    let mut s = changes
        .subscribe(Subscribe {
            cursor: None,
            heartbeat: Duration::from_secs(3600),
            vouch: Box::new(|| true),
            hide_key_ids: true,
            end_on_key: Some("root".into()),
        })
        .unwrap();
    assert_eq!(next(&mut s).await.kind, EventKind::Heartbeat);
    changes.publish(Change::Key("other".into()));
    assert_eq!(next(&mut s).await.kind, EventKind::All);
    changes.publish(Change::Key("root".into()));
    assert_eq!(next(&mut s).await.kind, EventKind::All);
    assert_eq!(s.next().await, None);
    let mut t = open(&changes, None);
    assert_eq!(next(&mut t).await.kind, EventKind::Heartbeat);
    assert_eq!(changes.open_streams(), 2);
    drop(s);
    assert_eq!(changes.open_streams(), 1);
    changes.close();
    assert_eq!(t.next().await, None);
}
