//! Root keys through `client.root_keys()`: made, listed, used, rotated and revoked.

use keyhaven_client::types::{
    CreateKeyspace, CreateRootKey, KeyFilter, Page, RevokeRootKey, RootKeyView, RotateRootKey,
};
use keyhaven_client::{Client, ExposeSecret};

use crate::helpers::{TestServer, keyspace, random_lowercase};

/// Every root key, following the cursor.
async fn all_root_keys(client: &Client) -> Vec<RootKeyView> {
    let mut all = Vec::new();
    let mut page = Page {
        limit: Some(500),
        cursor: None,
    };
    loop {
        let list = client.root_keys().list(&page).await.unwrap();
        all.extend(list.data);
        match list.next_cursor {
            Some(next) => page.cursor = Some(next),
            None => return all,
        }
    }
}

#[tokio::test]
async fn root_keys_are_made_listed_rotated_and_revoked() {
    let server = TestServer::start().await;
    let client = server.client();
    let ks = keyspace(&client).await;
    let root_keys = client.root_keys();

    let mut input = CreateRootKey::new(["keys:read"]);
    input.name = Some("ci reader".into());
    input.keyspace_ids = Some(vec![ks.id.clone()]);
    let created = root_keys.create(&input).await.unwrap();
    let plaintext = created.key.expose_secret().to_owned();
    assert!(!format!("{created:?}").contains(&plaintext));
    assert!(plaintext.starts_with("kh_root_"));
    assert_eq!(created.view.scopes, ["keys:read"]);
    assert_eq!(created.view.name.as_deref(), Some("ci reader"));
    assert_eq!(created.view.keyspace_ids, input.keyspace_ids);
    assert_eq!(created.view.revoked_at, None);
    let id = created.view.key_id.clone();
    assert_eq!(root_keys.get(&id).await.unwrap(), created.view);
    assert!(all_root_keys(&client).await.contains(&created.view));

    // The new key does what its scopes allow, in its keyspace only.
    let reader = Client::new(server.url.clone(), plaintext.clone()).unwrap();
    let filter = KeyFilter {
        keyspace_id: Some(ks.id.clone()),
        ..Default::default()
    };
    reader.keys().list(&filter).await.unwrap();
    let prefix = format!("t_{}", random_lowercase(10));
    let denied = reader
        .keyspaces()
        .create(&CreateKeyspace::new(prefix.clone(), prefix))
        .await
        .unwrap_err();
    assert_eq!(denied.status(), Some(403), "{denied}");

    // Rotation: a successor with the same grants; the old key works through its grace.
    let rotated = root_keys
        .rotate(
            &id,
            &RotateRootKey {
                grace_period_seconds: Some(300),
            },
        )
        .await
        .unwrap();
    let successor = rotated.view.key_id.clone();
    assert_ne!(rotated.key.expose_secret(), plaintext);
    assert_eq!(rotated.view.rotated_from.as_deref(), Some(id.as_str()));
    assert_eq!(rotated.view.scopes, created.view.scopes);
    assert_eq!(rotated.view.keyspace_ids, created.view.keyspace_ids);
    let old = root_keys.get(&id).await.unwrap();
    assert_eq!(old.rotated_to.as_deref(), Some(successor.as_str()));
    assert!(old.grace_until.is_some());
    reader.keys().list(&filter).await.unwrap();

    // Revocation: at once.
    let revoked = root_keys
        .revoke(
            &successor,
            &RevokeRootKey {
                reason: Some("leaked".into()),
            },
        )
        .await
        .unwrap();
    assert!(revoked.revoked_at.is_some());
    assert_eq!(revoked.revoked_reason.as_deref(), Some("leaked"));
    let successor_client =
        Client::new(server.url.clone(), rotated.key.expose_secret().to_owned()).unwrap();
    let refused = successor_client.keys().list(&filter).await.unwrap_err();
    assert_eq!(refused.status(), Some(401), "{refused}");
}
