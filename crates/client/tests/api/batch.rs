//! `Client::verify_batch` against a real server: one answer per item, in order, each
//! what a single verification answers.

use keyhaven_client::types::RevokeKey;
use keyhaven_client::{VerifyCode, VerifyOptions};

use crate::helpers::{TestServer, key, keyspace, limited_key, plain};

#[tokio::test]
async fn a_batch_answers_each_item_in_order() {
    let server = TestServer::start().await;
    let client = server.client();
    let ks = keyspace(&client).await;
    let reader = key(&client, &ks, &["read"]).await;
    let limited = limited_key(&client, &ks).await;
    let revoked = key(&client, &ks, &[]).await;
    client
        .keys()
        .revoke(&revoked.view.key_id, &RevokeKey::default())
        .await
        .unwrap();
    let (reader, limited, revoked) = (plain(&reader), plain(&limited), plain(&revoked));

    let none = VerifyOptions::new();
    let read = VerifyOptions::new().scope("read");
    let admin = VerifyOptions::new().scope("admin");
    let answers = client
        .verify_batch(&[
            (&reader, &read),
            (&reader, &admin),
            (&limited, &none),
            (&limited, &none),
            (&revoked, &none),
            ("not a key", &none),
        ])
        .await
        .unwrap();
    let codes: Vec<VerifyCode> = answers.iter().map(|a| a.code).collect();
    assert_eq!(
        codes,
        [
            VerifyCode::Valid,
            VerifyCode::InsufficientScopes,
            VerifyCode::Valid,
            // The items count against the key's limit one after another.
            VerifyCode::RateLimited,
            VerifyCode::Revoked,
            VerifyCode::Malformed,
        ]
    );
    assert_eq!(answers[0].scopes.as_deref(), Some(&["read".to_owned()][..]));
    assert_eq!(answers[0].keyspace_id.as_deref(), Some(ks.id.as_str()));
    assert!(answers[3].ratelimits[0].exceeded);
    assert_eq!(answers[5].key_id, None);
    assert_eq!(
        client.cache_stats().inserts,
        0,
        "a batch does not fill the cache"
    );

    // An empty batch asks nothing; an oversized one is the server's 400, whose problem
    // names no key.
    assert!(client.verify_batch(&[]).await.unwrap().is_empty());
    let too_many = vec![(reader.as_str(), &none); 101];
    let refused = client.verify_batch(&too_many).await.unwrap_err();
    assert_eq!(refused.status(), Some(400), "{refused}");
    assert!(!refused.to_string().contains(&reader));
}
