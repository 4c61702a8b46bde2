//! The hub and its subscriptions, without a server.

use std::sync::atomic::{AtomicBool, Ordering};

use super::*;

/// A follower `key_id` whose key works while `works` is set.
fn follower(key_id: &str, works: Arc<AtomicBool>, until: Option<Duration>) -> Follower {
    Follower {
        key_id: key_id.to_owned(),
        still_allowed: Box::new(move || {
            let standing = if works.load(Ordering::SeqCst) {
                Standing::Works { until }
            } else {
                Standing::Ended
            };
            Box::pin(async move { standing })
        }),
        until,
        every: Duration::from_secs(3600),
    }
}

/// Whether the stream ends (its next is `None`) within 5 s.
async fn ends(s: &mut Subscription) -> bool {
    matches!(
        tokio::time::timeout(Duration::from_secs(5), s.next()).await,
        Ok(None)
    )
}

fn open_as(changes: &Changes, follower: Follower) -> Subscription {
    changes
        .subscribe(Subscribe {
            cursor: None,
            heartbeat: Duration::from_secs(3600),
            vouch: Box::new(|| true),
            hide_key_ids: false,
            follower: Some(follower),
        })
        .unwrap()
}

fn open(changes: &Changes, cursor: Option<&str>) -> Subscription {
    changes
        .subscribe(Subscribe {
            cursor,
            heartbeat: Duration::from_secs(3600),
            vouch: Box::new(|| true),
            hide_key_ids: false,
            follower: None,
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
            follower: None,
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
            follower: None,
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
    let works = Arc::new(AtomicBool::new(true));
    let mut s = changes
        .subscribe(Subscribe {
            cursor: None,
            heartbeat: Duration::from_secs(3600),
            vouch: Box::new(|| true),
            hide_key_ids: true,
            follower: Some(follower("root", works.clone(), None)),
        })
        .unwrap();
    assert_eq!(next(&mut s).await.kind, EventKind::Heartbeat);
    changes.publish(Change::Key("other".into()));
    assert_eq!(next(&mut s).await.kind, EventKind::All);
    works.store(false, Ordering::SeqCst);
    changes.publish(Change::Key("root".into()));
    assert_eq!(next(&mut s).await.kind, EventKind::All);
    assert!(ends(&mut s).await);
    let mut t = open(&changes, None);
    assert_eq!(next(&mut t).await.kind, EventKind::Heartbeat);
    assert_eq!(changes.open_streams(), 2);
    drop(s);
    assert_eq!(changes.open_streams(), 1);
    changes.close();
    assert!(ends(&mut t).await);
}

#[tokio::test]
async fn a_change_its_root_key_still_passes_leaves_the_stream_open() {
    // On PostgreSQL the root key's own creation comes back through the change feed after
    // the stream opened: that echo must not end the stream.
    let changes = Changes::new();
    let works = Arc::new(AtomicBool::new(true));
    let mut s = open_as(&changes, follower("root", works.clone(), None));
    assert_eq!(next(&mut s).await.kind, EventKind::Heartbeat);
    changes.publish(Change::Key("root".into()));
    assert_eq!(next(&mut s).await.kind, EventKind::Key("root".into()));
    changes.publish(Change::Key("other".into()));
    assert_eq!(next(&mut s).await.kind, EventKind::Key("other".into()));

    // Revoked: the event is sent, then the stream ends.
    works.store(false, Ordering::SeqCst);
    changes.publish(Change::Key("root".into()));
    assert_eq!(next(&mut s).await.kind, EventKind::Key("root".into()));
    assert!(ends(&mut s).await);
}

#[tokio::test]
async fn a_reset_may_hide_a_change_to_the_root_key_so_it_is_checked_too() {
    let changes = Changes::new();
    let works = Arc::new(AtomicBool::new(true));
    let mut s = open_as(&changes, follower("root", works.clone(), None));
    assert_eq!(next(&mut s).await.kind, EventKind::Heartbeat);
    changes.publish(Change::Reset);
    assert_eq!(next(&mut s).await.kind, EventKind::Reset);
    changes.publish(Change::All);
    assert_eq!(
        next(&mut s).await.kind,
        EventKind::All,
        "a reset it passes ends nothing"
    );
    // An `all` (owner or keyspace change) cannot change a root key: no check.
    works.store(false, Ordering::SeqCst);
    changes.publish(Change::All);
    assert_eq!(next(&mut s).await.kind, EventKind::All);
    changes.publish(Change::Reset);
    assert_eq!(next(&mut s).await.kind, EventKind::Reset);
    assert!(ends(&mut s).await);
}

#[tokio::test]
async fn the_stream_ends_when_its_root_key_expires() {
    let changes = Changes::new();
    let works = Arc::new(AtomicBool::new(true));
    let mut s = open_as(
        &changes,
        follower("root", works.clone(), Some(Duration::from_millis(300))),
    );
    let opened = tokio::time::Instant::now();
    assert_eq!(next(&mut s).await.kind, EventKind::Heartbeat);
    changes.publish(Change::All);
    assert_eq!(next(&mut s).await.kind, EventKind::All);
    // Expired now, as its record says when asked at the moment it expires.
    works.store(false, Ordering::SeqCst);
    assert!(ends(&mut s).await, "the stream outlived its root key");
    assert!(
        opened.elapsed() >= Duration::from_millis(300),
        "ended before the expiry"
    );
}

#[tokio::test]
async fn a_root_key_refused_by_the_time_it_subscribed_gets_its_first_event_then_the_end() {
    // Authenticated from a cached record, revoked before the subscription: no event will
    // name it, so the stream asks once at the start.
    let changes = Changes::new();
    let mut s = open_as(&changes, follower("root", Arc::default(), None));
    assert_eq!(next(&mut s).await.kind, EventKind::Heartbeat);
    assert!(ends(&mut s).await);
}

#[tokio::test]
async fn the_root_key_is_asked_about_every_so_often_without_any_event() {
    // Another process revoked it in the same SQLite file: no event reaches this hub.
    let changes = Changes::new();
    let works = Arc::new(AtomicBool::new(true));
    let mut f = follower("root", works.clone(), None);
    f.every = Duration::from_millis(200);
    let mut s = open_as(&changes, f);
    assert_eq!(next(&mut s).await.kind, EventKind::Heartbeat);
    let quiet = tokio::time::timeout(Duration::from_millis(500), s.next()).await;
    assert!(
        quiet.is_err(),
        "no event, no end while the key works: {quiet:?}"
    );
    works.store(false, Ordering::SeqCst);
    assert!(ends(&mut s).await);
}
