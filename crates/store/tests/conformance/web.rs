//! Operators, browser sessions, portal links, failed sign-ins, key search and branding.

use keyhaven_store::*;

use crate::support::*;

fn operator(id: &str, email: &str) -> Operator {
    Operator {
        id: id.into(),
        email: email.into(),
        role: OperatorRole::Admin,
        password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into(),
        created_at: T0,
        updated_at: T0,
    }
}

fn session(n: u8, kind: SessionKind, subject: &str, expires: i64) -> WebSession {
    WebSession {
        token_hash: [n; 32],
        kind,
        subject: subject.into(),
        grants: obj(serde_json::json!({"permissions": ["keys:read"]})),
        created_at: T0,
        last_seen_at: T0,
        expires_at: at(expires),
    }
}

pub async fn operators_and_their_sessions(store: &dyn Store) {
    let ann = operator("op_1", "ann@example.com");
    store
        .create_operator(
            &ann,
            Change::audited(&event("1", "operator.create", "op_1", None, 0)),
        )
        .await
        .unwrap();
    let taken = store
        .create_operator(
            &operator("op_2", "ann@example.com"),
            Change::audited(&event("2", "operator.create", "op_2", None, 0)),
        )
        .await;
    assert_eq!(conflict(taken), Conflict::EmailTaken);
    let bob = Operator {
        role: OperatorRole::Viewer,
        ..operator("op_3", "bob@example.com")
    };
    store
        .create_operator(
            &bob,
            Change::audited(&event("3", "operator.create", "op_3", None, 0)),
        )
        .await
        .unwrap();
    assert_eq!(store.operator("op_1").await.unwrap(), Some(ann.clone()));
    assert_eq!(
        store.operator_by_email("bob@example.com").await.unwrap(),
        Some(bob.clone())
    );
    assert_eq!(
        store.operator_by_email("nobody@example.com").await.unwrap(),
        None
    );
    assert_eq!(
        store.list_operators().await.unwrap(),
        vec![ann.clone(), bob.clone()]
    );

    for (n, subject) in [(1, "op_1"), (2, "op_1"), (3, "op_3")] {
        store
            .create_session(
                &session(n, SessionKind::Operator, subject, 3600),
                Change::audited(&event(&format!("s{n}"), "operator.login", subject, None, 0)),
            )
            .await
            .unwrap();
    }
    let one = store
        .session(&[1; 32], SessionKind::Operator)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(one, session(1, SessionKind::Operator, "op_1", 3600));
    assert_eq!(
        store.session(&[1; 32], SessionKind::Portal).await.unwrap(),
        None,
        "kind is part of the lookup"
    );
    store.touch_session(&[1; 32], at(60)).await.unwrap();
    let touched = store
        .session(&[1; 32], SessionKind::Operator)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(touched.last_seen_at, at(60));

    // A new password ends every session of that operator, and only of that operator.
    store
        .set_operator_password(
            "op_1",
            "$argon2id$new",
            at(70),
            Change::audited(&event("p", "operator.reset_password", "op_1", None, 70)),
        )
        .await
        .unwrap();
    assert_eq!(
        store.operator("op_1").await.unwrap().unwrap().password_hash,
        "$argon2id$new"
    );
    assert_eq!(
        store
            .session(&[1; 32], SessionKind::Operator)
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        store
            .session(&[2; 32], SessionKind::Operator)
            .await
            .unwrap(),
        None
    );
    assert!(
        store
            .session(&[3; 32], SessionKind::Operator)
            .await
            .unwrap()
            .is_some()
    );

    // Logging out ends one session; deleting an operator ends the rest.
    store
        .end_session(
            &[3; 32],
            Change::audited(&event("o", "operator.logout", "op_3", None, 80)),
        )
        .await
        .unwrap();
    assert_eq!(
        store
            .session(&[3; 32], SessionKind::Operator)
            .await
            .unwrap(),
        None
    );
    store
        .create_session(
            &session(4, SessionKind::Operator, "op_3", 3600),
            Change::audited(&event("s4", "operator.login", "op_3", None, 0)),
        )
        .await
        .unwrap();
    store
        .delete_operator(
            "op_3",
            Change::audited(&event("d", "operator.delete", "op_3", None, 90)),
        )
        .await
        .unwrap();
    assert_eq!(store.operator("op_3").await.unwrap(), None);
    assert_eq!(
        store
            .session(&[4; 32], SessionKind::Operator)
            .await
            .unwrap(),
        None
    );
    not_found(
        store
            .delete_operator(
                "op_3",
                Change::audited(&event("d2", "operator.delete", "op_3", None, 90)),
            )
            .await,
    );
    not_found(
        store
            .set_operator_password(
                "op_9",
                "x",
                at(1),
                Change::audited(&event("p2", "operator.reset_password", "op_9", None, 1)),
            )
            .await,
    );
    // Every change above was audited; the failed ones were not.
    let actions: Vec<String> = audit_events(store, &AuditFilter::default())
        .await
        .into_iter()
        .map(|e| e.action)
        .collect();
    assert_eq!(
        actions.iter().filter(|a| *a == "operator.create").count(),
        2
    );
    assert_eq!(actions.iter().filter(|a| *a == "operator.login").count(), 4);
    assert_eq!(
        actions.iter().filter(|a| *a == "operator.delete").count(),
        1
    );
    assert_eq!(
        actions
            .iter()
            .filter(|a| *a == "operator.reset_password")
            .count(),
        1
    );
}

pub async fn portal_links_are_single_use(store: &dyn Store) {
    let link = session(9, SessionKind::PortalLink, "own_1", 600);
    store
        .create_session(
            &link,
            Change::audited(&event("l", "portal.link", "own_1", None, 0)),
        )
        .await
        .unwrap();
    assert_eq!(
        store
            .take_session(&[9; 32], SessionKind::Portal)
            .await
            .unwrap(),
        None,
        "only links are taken as links"
    );
    let (a, b) = tokio::join!(
        store.take_session(&[9; 32], SessionKind::PortalLink),
        store.take_session(&[9; 32], SessionKind::PortalLink)
    );
    let taken: Vec<WebSession> = [a.unwrap(), b.unwrap()].into_iter().flatten().collect();
    assert_eq!(taken, vec![link], "exactly one taker gets the link");
    assert_eq!(
        store
            .take_session(&[9; 32], SessionKind::PortalLink)
            .await
            .unwrap(),
        None
    );

    // Purging removes what is past its absolute expiry and nothing else.
    store
        .create_session(
            &session(10, SessionKind::Portal, "own_1", 100),
            Change::audited(&event("p1", "portal.start", "own_1", None, 0)),
        )
        .await
        .unwrap();
    store
        .create_session(
            &session(11, SessionKind::Portal, "own_1", 1000),
            Change::audited(&event("p2", "portal.start", "own_1", None, 0)),
        )
        .await
        .unwrap();
    assert_eq!(store.purge_web(at(100), at(0)).await.unwrap(), 1);
    assert_eq!(
        store.session(&[10; 32], SessionKind::Portal).await.unwrap(),
        None
    );
    assert!(
        store
            .session(&[11; 32], SessionKind::Portal)
            .await
            .unwrap()
            .is_some()
    );
}

pub async fn failed_sign_ins_are_counted_per_bucket(store: &dyn Store) {
    let email = "email:ann@example.com".to_owned();
    let ip = "ip:127.0.0.1".to_owned();
    for t in 0..5 {
        store
            .record_login_failure(&format!("a{t}"), &[email.clone(), ip.clone()], at(t * 60))
            .await
            .unwrap();
    }
    store
        .record_login_failure("a5", std::slice::from_ref(&ip), at(300))
        .await
        .unwrap();
    // A forgotten attempt leaves every bucket it was noted in.
    store
        .record_login_failure("ok", &[email.clone(), ip.clone()], at(301))
        .await
        .unwrap();
    assert_eq!(store.login_failures(&ip, at(0)).await.unwrap(), 7);
    store.forget_login_attempt("ok").await.unwrap();
    assert_eq!(store.login_failures(&email, at(0)).await.unwrap(), 5);
    assert_eq!(
        store.login_failures(&email, at(120)).await.unwrap(),
        3,
        "a sliding window"
    );
    assert_eq!(store.login_failures(&ip, at(0)).await.unwrap(), 6);
    store.clear_login_failures(&email).await.unwrap();
    assert_eq!(store.login_failures(&email, at(0)).await.unwrap(), 0);
    assert_eq!(
        store.login_failures(&ip, at(0)).await.unwrap(),
        6,
        "other buckets stay"
    );
    assert_eq!(store.purge_web(at(0), at(240)).await.unwrap(), 4);
    assert_eq!(store.login_failures(&ip, at(0)).await.unwrap(), 2);
}

pub async fn key_lists_search_and_filter_by_state(store: &dyn Store) {
    let mut ks = keyspace("ks_a", "alpha");
    ks.policy.max_key_age = Some(1000);
    add_keyspace(store, &ks).await;
    add_owner(store, &owner("own_1", "cus_1")).await;
    let mut named = key(&kid(0), "ks_a", Some("own_1"));
    named.name = Some("Billing 100% Worker".into());
    add_key(store, &named).await;
    let mut disabled = key(&kid(1), "ks_a", None);
    disabled.enabled = false;
    disabled.verifier = verifier(1);
    add_key(store, &disabled).await;
    let mut expired = key(&kid(2), "ks_a", None);
    expired.expires_at = Some(at(50));
    expired.verifier = verifier(2);
    add_key(store, &expired).await;
    let mut revoked = key(&kid(3), "ks_a", None);
    revoked.verifier = verifier(3);
    add_key(store, &revoked).await;
    store
        .revoke_key(
            &kid(3),
            at(10),
            None,
            Change::audited(&event("r", "key.revoke", &kid(3), Some("ks_a"), 10)),
        )
        .await
        .unwrap();

    let state = |s: KeyStateFilter, now: i64| KeyFilter {
        state: Some((s, unix(now))),
        ..Default::default()
    };
    assert_eq!(
        key_ids(store, &state(KeyStateFilter::Active, 100), 10).await,
        vec![kid(0)]
    );
    assert_eq!(
        key_ids(store, &state(KeyStateFilter::Disabled, 100), 10).await,
        vec![kid(1)]
    );
    assert_eq!(
        key_ids(store, &state(KeyStateFilter::Expired, 100), 10).await,
        vec![kid(2)]
    );
    assert_eq!(
        key_ids(store, &state(KeyStateFilter::Revoked, 100), 10).await,
        vec![kid(3)]
    );
    assert_eq!(
        key_ids(store, &state(KeyStateFilter::Active, 10), 10).await,
        vec![kid(2), kid(0)],
        "not expired yet"
    );
    // The keyspace's maximum age expires every key at T0 + 1000.
    assert_eq!(
        key_ids(store, &state(KeyStateFilter::Active, 1000), 10).await,
        Vec::<String>::new()
    );

    fn search(text: &str) -> KeyFilter<'_> {
        KeyFilter {
            search: Some(text),
            ..Default::default()
        }
    }
    assert_eq!(
        key_ids(store, &search("billing"), 10).await,
        vec![kid(0)],
        "name, any case"
    );
    assert_eq!(key_ids(store, &search("100%"), 10).await, vec![kid(0)]);
    assert_eq!(
        key_ids(store, &search("1_0"), 10).await,
        Vec::<String>::new(),
        "wildcards are literal"
    );
    assert_eq!(
        key_ids(store, &search(&kid(2)[..8]), 10).await.len(),
        4,
        "key id prefix"
    );
    assert_eq!(
        key_ids(store, &search("cus_1"), 10).await,
        vec![kid(0)],
        "owner external id"
    );
    assert_eq!(
        key_ids(store, &search("cus_"), 10).await,
        Vec::<String>::new(),
        "external ids match whole"
    );
}

pub async fn keyspace_branding_round_trips(store: &dyn Store) {
    let mut ks = keyspace("ks_a", "alpha");
    ks.branding = Branding {
        name: Some("Acme".into()),
        logo_url: Some("https://acme.example/logo.png".into()),
        accent_color: Some("#112233".into()),
    };
    add_keyspace(store, &ks).await;
    assert_eq!(store.keyspace("ks_a").await.unwrap(), Some(ks.clone()));
    ks.branding = Branding::default();
    store
        .update_keyspace(
            &ks,
            Change::audited(&event("u", "keyspace.update", "ks_a", Some("ks_a"), 1)),
        )
        .await
        .unwrap();
    assert_eq!(store.keyspace("ks_a").await.unwrap(), Some(ks));
}
