//! Usage: counts add up, last use only moves forward, minutes roll up into hours and days.

use keyhaven_store::*;

use crate::support::*;

pub async fn usage_adds_up_and_last_use_only_moves_forward(store: &dyn Store) {
    add_keyspace(store, &keyspace("ks_a", "alpha")).await;
    add_key(store, &key(&kid(1), "ks_a", None)).await;
    add_key(store, &key(&kid(2), "ks_a", None)).await;
    let log = AuditLog::read(store).await;
    assert!(store.usage(&kid(1), 0).await.unwrap().is_empty());
    let count = |key: usize, minute: i64, outcome: &str, count: u64| UsageCount {
        key_id: kid(key),
        minute: unix(minute),
        outcome: outcome.into(),
        count,
    };
    let usage = |key: usize, since: i64| async move {
        let mut rows = store.usage(&kid(key), since).await.unwrap();
        assert!(
            rows.windows(2).all(|w| w[0].minute <= w[1].minute),
            "oldest first"
        );
        rows.sort_by(|a, b| (a.minute, &a.outcome).cmp(&(b.minute, &b.outcome)));
        rows
    };

    store
        .record_usage(&UsageBatch {
            counts: vec![
                count(1, 0, "VALID", 3),
                count(1, 60, "VALID", 1),
                count(2, 0, "VALID", 7),
                count(1, 0, "VALID", 1),
            ],
            last_used: vec![(kid(1), at(70)), (kid(1), at(40))],
        })
        .await
        .unwrap();
    let k = stored_key(store, &kid(1)).await;
    assert_eq!(k.last_used_at, Some(at(70)), "the newest use of a batch");
    assert_eq!(stored_key(store, &kid(2)).await.last_used_at, None);

    store
        .record_usage(&UsageBatch {
            counts: vec![
                count(1, 0, "VALID", 2),
                count(1, 0, "REVOKED", 1),
                count(1, 120, "RATE_LIMITED", 4),
            ],
            last_used: vec![(kid(1), at(30)), (kid(99), at(30))],
        })
        .await
        .unwrap();
    store.record_usage(&UsageBatch::default()).await.unwrap();
    assert_eq!(
        usage(1, 0).await,
        vec![
            count(1, 0, "REVOKED", 1),
            count(1, 0, "VALID", 6),
            count(1, 60, "VALID", 1),
            count(1, 120, "RATE_LIMITED", 4),
        ]
    );
    assert_eq!(usage(2, 0).await, vec![count(2, 0, "VALID", 7)]);
    // since is inclusive, by the minute's start.
    assert_eq!(
        usage(1, unix(60)).await,
        vec![count(1, 60, "VALID", 1), count(1, 120, "RATE_LIMITED", 4)]
    );
    assert_eq!(
        usage(1, unix(61)).await,
        vec![count(1, 120, "RATE_LIMITED", 4)]
    );
    assert!(usage(1, unix(121)).await.is_empty());
    assert!(store.usage(&kid(99), 0).await.unwrap().is_empty());
    assert_eq!(
        stored_key(store, &kid(1)).await.last_used_at,
        Some(at(70)),
        "an older use never lowers last_used_at"
    );

    store
        .record_usage(&UsageBatch {
            counts: Vec::new(),
            last_used: vec![(kid(1), at(90)), (kid(2), at(10))],
        })
        .await
        .unwrap();
    assert_eq!(stored_key(store, &kid(1)).await.last_used_at, Some(at(90)));
    assert_eq!(stored_key(store, &kid(2)).await.last_used_at, Some(at(10)));
    assert_eq!(
        stored_key(store, &kid(1)).await,
        KeyRecord {
            last_used_at: Some(at(90)),
            ..key(&kid(1), "ks_a", None)
        },
        "usage changes nothing else"
    );
    log.expect_none(store, "recording usage").await;
}

/// A flush of many keys is written in several multi-row statements: every row and
/// every last use lands, whichever statement carried it.
pub async fn a_large_usage_batch_lands_whole(store: &dyn Store) {
    const KEYS: usize = 1_203;
    add_keyspace(store, &keyspace("ks_a", "alpha")).await;
    for n in 1..=KEYS {
        add_key(store, &key(&kid(n), "ks_a", None)).await;
    }
    let counts = (1..=KEYS)
        .flat_map(|n| {
            let count = u64::try_from(n).unwrap();
            [
                UsageCount {
                    key_id: kid(n),
                    minute: unix(0),
                    outcome: "VALID".into(),
                    count,
                },
                UsageCount {
                    key_id: kid(n),
                    minute: unix(60),
                    outcome: "NOT_FOUND".into(),
                    count: 1,
                },
            ]
        })
        .collect();
    let last_used = (1..=KEYS)
        .map(|n| (kid(n), at(i64::try_from(n).unwrap())))
        .collect();
    store
        .record_usage(&UsageBatch { counts, last_used })
        .await
        .unwrap();
    for n in [1, 500, 501, 1_000, 1_001, KEYS] {
        let count = u64::try_from(n).unwrap();
        let rows = store.usage(&kid(n), 0).await.unwrap();
        let rows: Vec<_> = rows
            .iter()
            .map(|r| (r.minute, r.outcome.as_str(), r.count))
            .collect();
        assert_eq!(
            rows,
            [(unix(0), "VALID", count), (unix(60), "NOT_FOUND", 1)],
            "key {n}"
        );
        assert_eq!(
            stored_key(store, &kid(n)).await.last_used_at,
            Some(at(i64::try_from(n).unwrap())),
            "key {n}"
        );
    }
    let ids: Vec<String> = (1..=KEYS).map(kid).collect();
    let totals = totals(store, &ids, Granularity::Hour, 0, 3_600).await;
    let valid: u64 = totals
        .iter()
        .filter(|t| t.outcome == "VALID")
        .map(|t| t.count)
        .sum();
    assert_eq!(
        valid,
        (1..=1_203u64).sum::<u64>(),
        "hours roll up every key"
    );
}

pub async fn usage_rolls_up_into_hours_and_days(store: &dyn Store) {
    use Granularity::{Day, Hour, Minute};
    // T0 is 10:00 UTC: hours start at offsets 0, 3600, …; T0's day at DAY0 and the
    // next day at DAY1 (offsets from T0, as for `unix`).
    const DAY0: i64 = -36_000;
    const DAY1: i64 = 50_400;
    const END: i64 = DAY1 + 86_400;
    let mut ks_a = keyspace("ks_a", "alpha");
    ks_a.alerts = AlertThresholds {
        spike_factor: Some(5),
        spike_min_per_minute: Some(100),
        failed_per_minute: Some(20),
    };
    add_keyspace(store, &ks_a).await;
    add_keyspace(store, &keyspace("ks_b", "beta")).await;
    add_owner(store, &owner("own_1", "ext_1")).await;
    // The owner's keys are 1 (in ks_a) and 2 (in ks_b); key 3 (in ks_a) has no owner.
    add_key(store, &key(&kid(1), "ks_a", Some("own_1"))).await;
    add_key(store, &key(&kid(2), "ks_b", Some("own_1"))).await;
    add_key(store, &key(&kid(3), "ks_a", None)).await;
    let log = AuditLog::read(store).await;
    let count = |key: usize, minute: i64, outcome: &str, count: u64| UsageCount {
        key_id: kid(key),
        minute: unix(minute),
        outcome: outcome.into(),
        count,
    };
    let row = usage_row;
    let total = usage_total;

    // Minutes on both sides of an hour (11:00) and of a day (midnight), in two
    // batches, the second adding to buckets the first wrote.
    store
        .record_usage(&UsageBatch {
            counts: vec![
                count(1, 0, "VALID", 3),
                count(1, 60, "VALID", 2),
                count(1, 3540, "WRONG_SECRET", 1),
                count(1, 3540, "VALID", 1),
                count(2, 0, "VALID", 5),
                count(3, 3600, "VALID", 4),
            ],
            last_used: Vec::new(),
        })
        .await
        .unwrap();
    store
        .record_usage(&UsageBatch {
            counts: vec![
                count(1, 0, "VALID", 1),
                count(1, 3600, "VALID", 10),
                count(1, 50_340, "RATE_LIMITED", 2),
                count(1, 50_340, "USAGE_EXCEEDED", 3),
                count(1, 50_400, "VALID", 7),
                count(2, 50_400, "REVOKED", 1),
                count(3, 60, "EXPIRED", 2),
                count(3, 60, "REVOKED", 1),
            ],
            last_used: Vec::new(),
        })
        .await
        .unwrap();

    let (k1, k2, k3, k99) = (kid(1), kid(2), kid(3), kid(99));
    let (key_1, owner_1) = (UsageTarget::Key(&k1), UsageTarget::Owner("own_1"));
    let (in_ks_a, in_ks_b) = (UsageTarget::Keyspace("ks_a"), UsageTarget::Keyspace("ks_b"));
    // One key, at each granularity; `from` is inclusive, `to` exclusive.
    assert_eq!(
        series(store, key_1, Minute, 60, 3600).await,
        [
            row(60, "VALID", 2),
            row(3540, "VALID", 1),
            row(3540, "WRONG_SECRET", 1),
        ]
    );
    assert_eq!(
        series(store, key_1, Hour, DAY0, END).await,
        [
            row(0, "VALID", 7),
            row(0, "WRONG_SECRET", 1),
            row(3600, "VALID", 10),
            row(46_800, "RATE_LIMITED", 2),
            row(46_800, "USAGE_EXCEEDED", 3),
            row(50_400, "VALID", 7),
        ]
    );
    assert_eq!(
        series(store, key_1, Day, DAY0, END).await,
        [
            row(DAY0, "RATE_LIMITED", 2),
            row(DAY0, "USAGE_EXCEEDED", 3),
            row(DAY0, "VALID", 17),
            row(DAY0, "WRONG_SECRET", 1),
            row(DAY1, "VALID", 7),
        ]
    );
    // An owner's keys (1 and 2), across keyspaces.
    assert_eq!(
        series(store, owner_1, Hour, 0, 50_400).await,
        [
            row(0, "VALID", 12),
            row(0, "WRONG_SECRET", 1),
            row(3600, "VALID", 10),
            row(46_800, "RATE_LIMITED", 2),
            row(46_800, "USAGE_EXCEEDED", 3),
        ]
    );
    assert_eq!(
        series(store, owner_1, Day, DAY0, END).await,
        [
            row(DAY0, "RATE_LIMITED", 2),
            row(DAY0, "USAGE_EXCEEDED", 3),
            row(DAY0, "VALID", 22),
            row(DAY0, "WRONG_SECRET", 1),
            row(DAY1, "REVOKED", 1),
            row(DAY1, "VALID", 7),
        ]
    );
    // A keyspace's keys (1 and 3), with or without an owner.
    assert_eq!(
        series(store, in_ks_a, Minute, 0, 3660).await,
        [
            row(0, "VALID", 4),
            row(60, "EXPIRED", 2),
            row(60, "REVOKED", 1),
            row(60, "VALID", 2),
            row(3540, "VALID", 1),
            row(3540, "WRONG_SECRET", 1),
            row(3600, "VALID", 14),
        ]
    );
    assert_eq!(
        series(store, in_ks_a, Hour, DAY0, END).await,
        [
            row(0, "EXPIRED", 2),
            row(0, "REVOKED", 1),
            row(0, "VALID", 7),
            row(0, "WRONG_SECRET", 1),
            row(3600, "VALID", 14),
            row(46_800, "RATE_LIMITED", 2),
            row(46_800, "USAGE_EXCEEDED", 3),
            row(50_400, "VALID", 7),
        ]
    );
    assert_eq!(
        series(store, in_ks_b, Day, DAY0, END).await,
        [row(DAY0, "VALID", 5), row(DAY1, "REVOKED", 1)]
    );
    for target in [
        UsageTarget::Key(&k99),
        UsageTarget::Owner("own_none"),
        UsageTarget::Keyspace("ks_none"),
    ] {
        assert!(series(store, target, Day, DAY0, END).await.is_empty());
    }

    // Totals per key: over a range, and over everything at each granularity (the
    // three tables agree).
    assert_eq!(
        totals(store, &[k1.clone(), k2.clone(), k99], Hour, 0, 50_400).await,
        [
            total(1, "RATE_LIMITED", 2),
            total(1, "USAGE_EXCEEDED", 3),
            total(1, "VALID", 17),
            total(1, "WRONG_SECRET", 1),
            total(2, "VALID", 5),
        ]
    );
    let everything = [
        total(1, "RATE_LIMITED", 2),
        total(1, "USAGE_EXCEEDED", 3),
        total(1, "VALID", 24),
        total(1, "WRONG_SECRET", 1),
        total(2, "REVOKED", 1),
        total(2, "VALID", 5),
        total(3, "EXPIRED", 2),
        total(3, "REVOKED", 1),
        total(3, "VALID", 4),
    ];
    let keys = [k3.clone(), k1.clone(), k2.clone()];
    for granularity in Granularity::ALL {
        assert_eq!(
            totals(store, &keys, granularity, DAY0, END).await,
            everything,
            "{granularity:?}"
        );
    }
    assert!(totals(store, &[], Day, DAY0, END).await.is_empty());

    // What the anomaly judge reads: minutes in (after, through], per key.
    let activity = |key: usize, minute: i64, [total, failed, dead, limited]: [u64; 4]| {
        let (keyspace_id, thresholds) = match key {
            2 => ("ks_b", AlertThresholds::default()),
            _ => ("ks_a", ks_a.alerts),
        };
        MinuteActivity {
            key_id: kid(key),
            keyspace_id: keyspace_id.into(),
            key_created_at: T0,
            thresholds,
            minute: unix(minute),
            total,
            failed,
            dead_key_uses: dead,
            limited,
        }
    };
    let minutes_over = |after: i64, through: i64, floor: AlertFloor| async move {
        let mut rows = store
            .minute_activity(unix(after), unix(through), floor)
            .await
            .unwrap();
        assert!(
            rows.windows(2).all(|w| w[0].minute <= w[1].minute),
            "by minute"
        );
        rows.sort_by(|a, b| (a.minute, &a.key_id).cmp(&(b.minute, &b.key_id)));
        rows
    };
    // Only minutes that could alert: at or above the keyspace's own thresholds (ks_a:
    // 100 verifications, 20 failures) or else the floor, or with a dead-key use or a
    // limited answer. Key 1's minutes of 2 to 10 verifications stay out.
    let minutes = |after, through| minutes_over(after, through, AlertFloor::default());
    assert_eq!(minutes(0, 3600).await, [activity(3, 60, [3, 0, 3, 0])]);
    assert_eq!(
        minutes(50_280, 50_400).await,
        [
            activity(1, 50_340, [5, 0, 0, 5]),
            activity(2, 50_400, [1, 0, 1, 0]),
        ]
    );
    assert!(minutes(3600, 50_280).await.is_empty());
    // Key 2's keyspace has no thresholds of its own: the floor decides its quiet minute.
    let floor = |spike_min_per_minute| AlertFloor {
        spike_min_per_minute,
        failed_per_minute: 20,
    };
    assert_eq!(
        minutes_over(-60, 0, floor(5)).await,
        [activity(2, 0, [5, 0, 0, 0])]
    );
    assert!(minutes_over(-60, 0, floor(6)).await.is_empty());
    let sum = |key_id: &str, from: i64, to: i64| {
        let key_id = key_id.to_owned();
        async move {
            store
                .usage_sum(&key_id, unix(from), unix(to))
                .await
                .unwrap()
        }
    };
    assert_eq!(sum(&k1, 0, 3600).await, 8);
    assert_eq!(sum(&k1, 0, 3660).await, 18);
    assert_eq!(sum(&k1, 60, 50_400).await, 19);
    assert_eq!(sum(&k2, DAY0, END).await, 6);
    assert_eq!(sum("Key_missing", DAY0, END).await, 0);

    // Purging one granularity leaves the others alone.
    assert_eq!(store.purge_usage(Minute, unix(3600)).await.unwrap(), 7);
    assert_eq!(store.purge_usage(Minute, unix(3600)).await.unwrap(), 0);
    assert_eq!(
        series(store, key_1, Minute, DAY0, END).await,
        [
            row(3600, "VALID", 10),
            row(50_340, "RATE_LIMITED", 2),
            row(50_340, "USAGE_EXCEEDED", 3),
            row(50_400, "VALID", 7),
        ]
    );
    assert_eq!(
        store.purge_usage(Hour, unix(0)).await.unwrap(),
        0,
        "a bucket starting at `before` stays"
    );
    assert_eq!(store.purge_usage(Day, unix(DAY1)).await.unwrap(), 8);
    assert_eq!(
        series(store, key_1, Day, DAY0, END).await,
        [row(DAY1, "VALID", 7)]
    );
    assert_eq!(totals(store, &keys, Hour, DAY0, END).await, everything);
    log.expect_none(store, "recording and purging usage").await;

    // A deleted key no longer counts for its owner.
    store
        .delete_key(
            &k2,
            Change::audited(&event("delete_2", "key.delete", &k2, Some("ks_b"), 5)),
        )
        .await
        .unwrap();
    assert_eq!(
        series(store, owner_1, Hour, DAY0, END).await,
        series(store, key_1, Hour, DAY0, END).await
    );
}
