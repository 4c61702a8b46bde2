//! Roles, plans and credits through their typed handles, checked by what verification
//! then answers.

use keyhaven_client::types::{
    ChangeCredits, CreateKey, CreateOwner, CreatePlan, CreateRole, Quota, RateLimit, UpdatePlan,
    UpdateRole,
};
use keyhaven_client::{VerifyCode, VerifyOptions};

use crate::helpers::{TestServer, keyspace, plain, random_lowercase};

#[tokio::test]
async fn roles_round_trip_and_grant_their_permissions() {
    let server = TestServer::start().await;
    let client = server.client();
    let ks = keyspace(&client).await;
    let roles = client.roles();

    let mut input = CreateRole::new("reader");
    input.description = Some("Reads documents".into());
    input.permissions = vec!["documents.read".into()];
    let created = roles.create(&ks.id, &input).await.unwrap();
    assert_eq!(created.keyspace_id, ks.id);
    assert_eq!(created.name, "reader");
    assert_eq!(created.description.as_deref(), Some("Reads documents"));
    assert_eq!(created.permissions, ["documents.read"]);
    assert_eq!(roles.get(&ks.id, "reader").await.unwrap(), created);
    assert_eq!(
        roles.list(&ks.id).await.unwrap().data,
        vec![created.clone()]
    );

    let mut key = CreateKey::new(ks.id.clone());
    key.roles = vec!["reader".into()];
    let key = client.keys().create(&key).await.unwrap();
    let writes = VerifyOptions::new().permissions("documents.write");
    let refused = client.verify_with(&plain(&key), &writes).await.unwrap();
    assert_eq!(refused.code, VerifyCode::InsufficientPermissions);
    assert_eq!(
        refused.missing_permissions.as_deref(),
        Some(&["documents.write".to_owned()][..])
    );

    let changed = roles
        .update(
            &ks.id,
            "reader",
            &UpdateRole {
                description: Some(None),
                permissions: Some(vec!["documents.read".into(), "documents.write".into()]),
            },
        )
        .await
        .unwrap();
    assert_eq!(changed.description, None);
    assert_eq!(changed.permissions, ["documents.read", "documents.write"]);
    assert_eq!(roles.get(&ks.id, "reader").await.unwrap(), changed);
    // The key holds the role's new permissions.
    let allowed = client.verify_with(&plain(&key), &writes).await.unwrap();
    assert_eq!(allowed.code, VerifyCode::Valid, "{allowed:?}");

    client.keys().delete(&key.view.key_id).await.unwrap();
    roles.delete(&ks.id, "reader").await.unwrap();
    let gone = roles.get(&ks.id, "reader").await.unwrap_err();
    assert_eq!(gone.status(), Some(404), "{gone}");
    assert!(roles.list(&ks.id).await.unwrap().data.is_empty());
}

#[tokio::test]
async fn plans_round_trip_and_apply_to_their_keys() {
    let server = TestServer::start().await;
    let client = server.client();
    let ks = keyspace(&client).await;
    let plans = client.plans();
    let name = format!("pro-{}", random_lowercase(8));

    let mut input = CreatePlan::new(name.clone());
    input.description = Some("Pro".into());
    input.ratelimits = vec![RateLimit::new("requests", 100, 60_000)];
    input.quota = Some(Quota {
        remaining: 5,
        refill: None,
    });
    input.scopes = vec!["read".into()];
    let created = plans.create(&input).await.unwrap();
    assert_eq!(created.name, name);
    assert_eq!(created.description.as_deref(), Some("Pro"));
    assert_eq!(created.ratelimits, input.ratelimits);
    assert_eq!(created.quota, input.quota);
    assert_eq!(created.scopes, ["read"]);
    assert!(created.roles.is_empty() && created.permissions.is_empty());
    assert_eq!(created.max_key_age_seconds, None);
    assert_eq!(plans.get(&name).await.unwrap(), created);
    let listed = plans.list().await.unwrap();
    assert!(listed.data.contains(&created), "{listed:?}");

    let changed = plans
        .update(
            &name,
            &UpdatePlan {
                description: Some(None),
                scopes: Some(vec!["read".into(), "write".into()]),
                max_key_age_seconds: Some(Some(86_400)),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(changed.description, None);
    assert_eq!(changed.scopes, ["read", "write"]);
    assert_eq!(changed.max_key_age_seconds, Some(86_400));
    assert_eq!(changed.quota, created.quota, "left as it was");
    assert_eq!(plans.get(&name).await.unwrap(), changed);

    // A key on the plan holds its scopes and draws on its quota.
    let mut key = CreateKey::new(ks.id.clone());
    key.plan = Some(name.clone());
    let key = client.keys().create(&key).await.unwrap();
    assert_eq!(key.view.plan.as_deref(), Some(name.as_str()));
    let answer = client
        .verify_with(&plain(&key), &VerifyOptions::new().scope("write"))
        .await
        .unwrap();
    assert_eq!(answer.code, VerifyCode::Valid, "{answer:?}");
    assert_eq!(answer.remaining, Some(4));

    // A plan with keys on it stays; without them it goes.
    let busy = plans.delete(&name).await.unwrap_err();
    assert_eq!(busy.status(), Some(409), "{busy}");
    client.keys().delete(&key.view.key_id).await.unwrap();
    plans.delete(&name).await.unwrap();
    assert_eq!(plans.get(&name).await.unwrap_err().status(), Some(404));
}

#[tokio::test]
async fn credits_change_what_verification_counts() {
    let server = TestServer::start().await;
    let client = server.client();
    let ks = keyspace(&client).await;
    let mut input = CreateKey::new(ks.id.clone());
    input.quota = Some(Quota {
        remaining: 10,
        refill: None,
    });
    let key = client.keys().create(&input).await.unwrap();
    let id = key.view.key_id.as_str();
    let keys = client.keys();

    assert_eq!(
        keys.credits(id, &ChangeCredits::set(3))
            .await
            .unwrap()
            .remaining,
        3
    );
    assert_eq!(
        (keys.credits(id, &ChangeCredits::increment(2)).await)
            .unwrap()
            .remaining,
        5
    );
    assert_eq!(
        (keys.credits(id, &ChangeCredits::decrement(5)).await)
            .unwrap()
            .remaining,
        0
    );
    let short = keys
        .credits(id, &ChangeCredits::decrement(1))
        .await
        .unwrap_err();
    assert_eq!(short.status(), Some(409), "{short}");
    assert_eq!(keys.get(id).await.unwrap().quota.unwrap().remaining, 0);
    let spent = client.verify(&plain(&key)).await.unwrap();
    assert_eq!(spent.code, VerifyCode::UsageExceeded);
    keys.credits(id, &ChangeCredits::increment(1))
        .await
        .unwrap();
    let answer = client.verify(&plain(&key)).await.unwrap();
    assert_eq!(
        (answer.code, answer.remaining),
        (VerifyCode::Valid, Some(0))
    );

    // An owner's credits, and a key without a quota (nothing to change).
    let mut owner = CreateOwner::new(format!("credits-{}", ks.prefix));
    owner.quota = Some(Quota {
        remaining: 1,
        refill: None,
    });
    let owner = client.owners().create(&owner).await.unwrap();
    let set = client
        .owners()
        .credits(&owner.id, &ChangeCredits::set(7))
        .await
        .unwrap();
    assert_eq!(set.remaining, 7);
    let read = client.owners().get(&owner.id).await.unwrap();
    assert_eq!(read.quota.unwrap().remaining, 7);
    let unlimited = client
        .keys()
        .create(&CreateKey::new(ks.id.clone()))
        .await
        .unwrap();
    let none = keys
        .credits(&unlimited.view.key_id, &ChangeCredits::set(1))
        .await
        .unwrap_err();
    assert_eq!(none.status(), Some(409), "{none}");
}
