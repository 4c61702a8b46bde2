//! A key's life beyond create/update/rotate/revoke, through the typed handles: expiry
//! warnings, reveal, self-revocation, leak reports, imports, and portal links.

use keyhaven_client::types::{
    CreateKey, CreateKeyspace, CreateOwner, CreatePortalSession, ExpiringFilter, ImportItem,
    ImportRequest, LeakLabel, ReportLeaks, SelfRevoke,
};
use keyhaven_client::{ExposeSecret, VerifyCode};
use sha2::{Digest, Sha256};
use time::format_description::well_known::Rfc3339;
use time::{Duration, OffsetDateTime};

use crate::helpers::{TestServer, key, keyspace, plain, random_lowercase};

fn in_days(days: i64) -> String {
    (OffsetDateTime::now_utc() + Duration::days(days))
        .format(&Rfc3339)
        .unwrap()
}

#[tokio::test]
async fn expiring_keys_are_listed_soonest_first() {
    let server = TestServer::start().await;
    let client = server.client();
    let prefix = format!("t_{}", random_lowercase(10));
    let mut input = CreateKeyspace::new(prefix.clone(), prefix);
    input.expiry_warning_seconds = Some(7 * 86_400);
    let ks = client.keyspaces().create(&input).await.unwrap();
    let mut ids = Vec::new();
    for days in [2, 1, 30] {
        let mut key = CreateKey::new(ks.id.clone());
        key.expires_at = Some(in_days(days));
        ids.push(client.keys().create(&key).await.unwrap().view.key_id);
    }
    key(&client, &ks, &[]).await;

    let filter = ExpiringFilter {
        keyspace_id: Some(ks.id.clone()),
        limit: None,
    };
    let expiring = client.keys().expiring(&filter).await.unwrap();
    let listed: Vec<&str> = expiring
        .data
        .iter()
        .map(|e| e.key.key_id.as_str())
        .collect();
    // Within the week's warning, soonest first; the 30-day key and the unexpiring one
    // are not listed.
    assert_eq!(listed, [ids[1].as_str(), ids[0].as_str()]);
    for e in &expiring.data {
        assert_eq!(Some(&e.expires), e.key.expires_at.as_ref());
    }
    let first = ExpiringFilter {
        limit: Some(1),
        ..filter
    };
    let page = client.keys().expiring(&first).await.unwrap();
    assert_eq!(page.data.len(), 1);
    assert_eq!(page.data[0].key.key_id, ids[1]);
}

#[tokio::test]
async fn a_batch_creates_every_key_in_order_or_none() {
    let server = TestServer::start().await;
    let client = server.client();
    let ks = keyspace(&client).await;
    let inputs: Vec<CreateKey> = (0..3)
        .map(|i| {
            let mut key = CreateKey::new(ks.id.clone());
            key.name = Some(format!("batch {i}"));
            key
        })
        .collect();
    let created = client.keys().create_batch(&inputs).await.unwrap();
    let names: Vec<_> = created.iter().map(|k| k.view.name.clone()).collect();
    assert_eq!(
        names,
        inputs.iter().map(|k| k.name.clone()).collect::<Vec<_>>()
    );
    for key in &created {
        let answer = client.verify(key.key.expose_secret()).await.unwrap();
        assert_eq!(answer.code, VerifyCode::Valid);
    }
    let mut bad = inputs.clone();
    bad[2].keyspace_id = "ks_none".into();
    let error = client.keys().create_batch(&bad).await.unwrap_err();
    assert_eq!(error.code(), Some("validation_failed"), "{error:?}");
    match error {
        keyhaven_client::Error::Api { problem } => {
            assert!(problem.detail.starts_with("keys[2]: "), "{problem:?}");
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn recoverable_keys_are_revealed() {
    let server = TestServer::start().await;
    let client = server.client();
    let ks = keyspace(&client).await;
    let mut input = CreateKey::new(ks.id.clone());
    input.recoverable = Some(true);
    let created = client.keys().create(&input).await.unwrap();
    assert!(created.view.recoverable);

    let revealed = client.keys().reveal(&created.view.key_id).await.unwrap();
    assert_eq!(revealed.key_id, created.view.key_id);
    assert_eq!(revealed.key.expose_secret(), plain(&created));
    assert!(!format!("{revealed:?}").contains(&plain(&created)));

    let other = key(&client, &ks, &[]).await;
    let refused = client.keys().reveal(&other.view.key_id).await.unwrap_err();
    assert_eq!(refused.code(), Some("not_recoverable"), "{refused}");
}

#[tokio::test]
async fn keys_revoke_themselves() {
    let server = TestServer::start().await;
    let client = server.client();
    let ks = keyspace(&client).await;
    let created = key(&client, &ks, &[]).await;
    let why = SelfRevoke {
        reason: Some("found in a public repository".into()),
    };

    let revoked = client
        .keys()
        .self_revoke(&plain(&created), &why)
        .await
        .unwrap();
    assert_eq!(revoked.key_id, created.view.key_id);
    assert!(!revoked.already_revoked);
    let record = client.keys().get(&created.view.key_id).await.unwrap();
    assert_eq!(
        record.revoked_at.as_deref(),
        Some(revoked.revoked_at.as_str())
    );
    assert_eq!(record.revoked_reason, why.reason);
    assert_eq!(
        client.verify(&plain(&created)).await.unwrap().code,
        VerifyCode::Revoked
    );
    let again = (client
        .keys()
        .self_revoke(&plain(&created), &SelfRevoke::default()))
    .await
    .unwrap();
    assert!(again.already_revoked);
    assert_eq!(again.revoked_at, revoked.revoked_at);

    // A key that does not work is refused, and the error does not repeat it.
    let unknown = keyhaven_client::keys::generate(&ks.prefix).unwrap();
    let unknown = unknown.key().expose_secret();
    let refused = (client.keys().self_revoke(unknown, &SelfRevoke::default()))
        .await
        .unwrap_err();
    assert_eq!(refused.status(), Some(401), "{refused}");
    assert!(!format!("{refused} {refused:?}").contains(unknown));
}

#[tokio::test]
async fn leak_reports_act_on_working_keys_only() {
    let server = TestServer::start().await;
    let client = server.client();
    let ks = keyspace(&client).await;
    let leaked = key(&client, &ks, &[]).await;
    let mut report = ReportLeaks::new([plain(&leaked), format!("{}_nothing", ks.prefix)]);
    report.source = Some("ci-scanner".into());
    report.url = Some("https://example.com/paste/1".into());
    assert!(!format!("{report:?}").contains(&plain(&leaked)));

    let results = client.leaks().report(&report).await.unwrap().results;
    assert_eq!(results.len(), 2);
    assert_eq!(results[0].label, LeakLabel::TruePositive);
    assert_eq!(results[0].key_id, Some(leaked.view.key_id.clone()));
    assert_eq!(results[0].action.as_deref(), Some("revoked"));
    assert_eq!(results[1].label, LeakLabel::FalsePositive);
    assert_eq!(
        (results[1].key_id.as_deref(), results[1].action.as_deref()),
        (None, None)
    );
    assert_eq!(
        client.verify(&plain(&leaked)).await.unwrap().code,
        VerifyCode::Revoked
    );
    let again = client.leaks().report(&report).await.unwrap().results;
    assert_eq!(again[0].action.as_deref(), Some("already_reported"));
}

#[tokio::test]
async fn imported_keys_verify_with_their_old_strings() {
    let server = TestServer::start().await;
    let client = server.client();
    let ks = keyspace(&client).await;
    let old = format!("sk-legacy-{}", random_lowercase(24));
    let digest: String = Sha256::digest(old.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let mut item = ImportItem::new(ks.id.clone(), "sha256", digest);
    item.name = Some("from the old system".into());
    item.scopes = vec!["read".into()];
    let request = ImportRequest {
        keys: vec![item.clone(), ImportItem::new(ks.id.clone(), "md5", "00")],
    };

    let answer = client.keys().import(&request).await.unwrap();
    assert_eq!(
        (answer.imported, answer.skipped, answer.rejected),
        (1, 0, 1),
        "{answer:?}"
    );
    assert_eq!(
        (answer.results[0].index, answer.results[0].status.as_str()),
        (0, "imported")
    );
    assert_eq!(
        (answer.results[1].index, answer.results[1].status.as_str()),
        (1, "rejected")
    );
    assert!(answer.results[1].reason.is_some());
    let key_id = answer.results[0].key_id.clone().unwrap();
    let record = client.keys().get(&key_id).await.unwrap();
    assert_eq!(record.import_format.as_deref(), Some("sha256"));
    assert_eq!(record.name, item.name);

    let verified = client.verify(&old).await.unwrap();
    assert_eq!(verified.code, VerifyCode::Valid, "{verified:?}");
    assert_eq!(verified.key_id.as_deref(), Some(key_id.as_str()));
    let again = (client.keys())
        .import(&ImportRequest { keys: vec![item] })
        .await
        .unwrap();
    assert_eq!((again.imported, again.skipped), (0, 1), "{again:?}");
}

#[tokio::test]
async fn portal_links_are_made_for_an_owner() {
    let server = TestServer::start().await;
    let client = server.client();
    let ks = keyspace(&client).await;
    let owner = client
        .owners()
        .create(&CreateOwner::new(format!("portal-{}", ks.prefix)))
        .await
        .unwrap();
    let mut input = CreatePortalSession::new(owner.id.clone());
    input.keyspace_ids = Some(vec![ks.id.clone()]);
    input.permissions = Some(vec!["keys:read".into()]);
    input.ttl_seconds = Some(120);
    let link = client.portal().create_session(&input).await.unwrap();
    let url = link.url.expose_secret();
    assert!(url.contains("/portal/start/"), "{url}");
    assert!(!format!("{link:?}").contains(url));
    let expires = OffsetDateTime::parse(&link.expires_at, &Rfc3339).unwrap();
    let ahead = expires - OffsetDateTime::now_utc();
    assert!(
        ahead > Duration::seconds(60) && ahead <= Duration::seconds(120),
        "{ahead}"
    );

    let nobody = CreatePortalSession::new("own_nobody");
    let refused = client.portal().create_session(&nobody).await.unwrap_err();
    assert_eq!(refused.status(), Some(400), "{refused}");
}
