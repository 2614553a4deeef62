use casesync_aws::SecretsManagerStore;
use casesync_core::domain::ConnectionId;
use casesync_core::ports::SecretStore;
use secrecy::{ExposeSecret, SecretString};

#[tokio::test]
async fn refresh_tokens_are_created_updated_read_and_deleted() {
    let aws = casesync_aws::testing::moto().await;
    let names = aws.unique_names("secrets");
    let store = SecretsManagerStore::new(aws.secrets_manager(), &names.secret_prefix);
    let id = ConnectionId::new_random();

    // Not there yet
    assert!(store.get_refresh_token(&id).await.unwrap().is_none());

    // Created on first put, under <prefix>/<connection id>
    store
        .put_refresh_token(&id, &SecretString::from("token-1"))
        .await
        .unwrap();
    let described = aws
        .secrets_manager()
        .describe_secret()
        .secret_id(format!("{}/{id}", names.secret_prefix))
        .send()
        .await
        .unwrap();
    assert_eq!(described.name(), Some(store.secret_name(&id).as_str()));
    assert_eq!(
        store
            .get_refresh_token(&id)
            .await
            .unwrap()
            .unwrap()
            .expose_secret(),
        "token-1"
    );

    // Replaced on the next put
    store
        .put_refresh_token(&id, &SecretString::from("token-2"))
        .await
        .unwrap();
    assert_eq!(
        store
            .get_refresh_token(&id)
            .await
            .unwrap()
            .unwrap()
            .expose_secret(),
        "token-2"
    );

    // Another connection's token is its own
    let other = ConnectionId::new_random();
    assert!(store.get_refresh_token(&other).await.unwrap().is_none());

    // Deleted at once; deleting again is fine
    store.delete_refresh_token(&id).await.unwrap();
    assert!(store.get_refresh_token(&id).await.unwrap().is_none());
    store.delete_refresh_token(&id).await.unwrap();
}
