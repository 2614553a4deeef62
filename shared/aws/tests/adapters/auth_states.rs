use std::sync::Arc;

use casesync_aws::DynamoAuthStateStore;
use casesync_core::domain::{
    ApiVersion, BackfillWindow, ChannelName, ConnectionId, LoginUrl, QueueScope,
};
use casesync_core::ports::{AuthStateStore, PendingAuthorization};
use secrecy::{ExposeSecret, SecretString};

use crate::common::*;

fn pending(state: &str) -> PendingAuthorization {
    PendingAuthorization {
        state: state.to_owned(),
        verifier: SecretString::from("verifier-that-must-stay-secret-0123456789abcdef"),
        channel: ChannelName::parse("support").unwrap(),
        login_url: LoginUrl::parse("https://test.salesforce.com").unwrap(),
        redirect_uri: "https://api.example.com/oauth/callback".into(),
        scope: QueueScope::All,
        backfill: BackfillWindow::Days90,
        api_version: ApiVersion::DEFAULT,
        reauthorize: Some(ConnectionId::new_random()),
        pending_setup: false,
        created_at: t("2024-03-05T10:00:00Z"),
        expires_at: t("2024-03-05T10:10:00Z"),
    }
}

/// Everything but the verifier, which has no `PartialEq`, compared through its JSON.
fn same(a: &PendingAuthorization, b: &PendingAuthorization) -> bool {
    serde_json::to_value(a).unwrap() == serde_json::to_value(b).unwrap()
        && a.verifier.expose_secret() == b.verifier.expose_secret()
}

#[tokio::test]
async fn an_auth_state_is_taken_once_and_then_gone() {
    let env = env("auth").await;
    let store = DynamoAuthStateStore::new(env.aws.dynamodb(), &env.names.tables.auth_states);
    let p = pending("state-1");
    store.put_auth_state(&p).await.unwrap();

    // The stored item carries the TTL attribute in epoch seconds
    let raw = env
        .aws
        .dynamodb()
        .get_item()
        .table_name(&env.names.tables.auth_states)
        .key("state", AttributeValue::S("state-1".into()))
        .send()
        .await
        .unwrap()
        .item
        .unwrap();
    assert_eq!(
        raw.get("expires_at"),
        Some(&AttributeValue::N(p.expires_at.timestamp().to_string()))
    );

    let taken = store.take_auth_state("state-1").await.unwrap().unwrap();
    assert!(same(&taken, &p));
    assert!(store.take_auth_state("state-1").await.unwrap().is_none());
    assert!(
        store
            .take_auth_state("never-issued")
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test]
async fn of_two_racing_callbacks_exactly_one_gets_the_flow() {
    let env = env("auth-race").await;
    let store = Arc::new(DynamoAuthStateStore::new(
        env.aws.dynamodb(),
        &env.names.tables.auth_states,
    ));
    for round in 0..5 {
        let state = format!("race-{round}");
        store.put_auth_state(&pending(&state)).await.unwrap();
        let tasks: Vec<_> = (0..6)
            .map(|_| {
                let (store, state) = (store.clone(), state.clone());
                tokio::spawn(async move { store.take_auth_state(&state).await.unwrap() })
            })
            .collect();
        let mut got = 0;
        for task in tasks {
            got += usize::from(task.await.unwrap().is_some());
        }
        assert_eq!(got, 1, "round {round}");
    }
}

#[tokio::test]
async fn the_auth_states_table_expires_items_by_ttl() {
    let env = env("auth-ttl").await;
    let ttl = env
        .aws
        .dynamodb()
        .describe_time_to_live()
        .table_name(&env.names.tables.auth_states)
        .send()
        .await
        .unwrap();
    let desc = ttl.time_to_live_description().unwrap();
    assert_eq!(desc.attribute_name(), Some("expires_at"));
}
