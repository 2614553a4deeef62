//! Starting a connection through the API and finishing it through the callback, re-authorizing,
//! and what the API refuses: invalid input (naming the field), unknown routes and ids, wrong
//! methods, oversized bodies.

mod common;

use casesync_core::domain::{
    BackfillWindow, CaseId, ConnectionState, Cursor, InstanceUrl, LoginUrl, QueueScope,
};
use casesync_core::ports::{ConnectionReader, ConnectionWriter, CursorStore, StateWriter};
use chrono::{DateTime, SubsecRound, TimeDelta, Utc};
use common::*;
use url::Url;

fn close(a: DateTime<Utc>, b: DateTime<Utc>, within: TimeDelta) -> bool {
    (a - b).abs() <= within
}

#[tokio::test]
async fn post_connections_then_salesforce_then_the_callback_creates_the_connection() {
    let w = world().await;
    let body = format!(
        r#"{{"channel":"support-emea","login_url":"{}","queues":"all","backfill":"7d"}}"#,
        w.sim.login_url()
    );

    // Given a started flow
    let started = w.call("POST", "/connections", Some(&body)).await;
    assert_eq!(started.status, 201, "{}", started.text);
    assert_eq!(started.header("content-type"), Some("application/json"));
    let authorize_url = Url::parse(started.json["authorize_url"].as_str().unwrap()).unwrap();
    assert!(
        authorize_url
            .as_str()
            .starts_with(&format!("{}/services/oauth2/authorize?", w.sim.login_url()))
    );
    let pairs: std::collections::HashMap<String, String> =
        authorize_url.query_pairs().into_owned().collect();
    assert_eq!(
        pairs["redirect_uri"],
        callback_url(),
        "derived from the domain"
    );
    assert_eq!(pairs["code_challenge_method"], "S256");
    assert_eq!(pairs["client_id"], w.sim.client_id());
    let expires_at: DateTime<Utc> = started.json["expires_at"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(close(
        expires_at,
        Utc::now() + TimeDelta::minutes(10),
        TimeDelta::seconds(30)
    ));

    // When the user approves in Salesforce and the browser comes back
    let query = w.authorize(authorize_url.as_str()).await;
    let done = w.callback(&query).await;

    // Then the browser goes to the app with the new connection's id
    assert_eq!(done.status_code, 302);
    let location = Url::parse(done.headers["location"].to_str().unwrap()).unwrap();
    assert!(location.as_str().starts_with(APP_URL));
    let connections = w.connections.list_connections().await.unwrap();
    assert_eq!(connections.len(), 1);
    let c = &connections[0];
    assert!(
        location
            .query_pairs()
            .any(|(k, v)| k == "connection" && v == c.id.as_str())
    );
    assert!(
        location
            .query_pairs()
            .any(|(k, v)| k == "status" && v == "connected")
    );
    // the connection is stored with the settings of the start, its cursor at now − 7 days
    assert_eq!(c.channel.as_str(), "support-emea");
    assert_eq!(c.scope, QueueScope::All);
    assert_eq!(c.backfill, BackfillWindow::Days7);
    assert_eq!(c.state, ConnectionState::Active);
    assert!(close(
        c.cursor.system_modstamp,
        Utc::now() - TimeDelta::days(7),
        TimeDelta::seconds(30)
    ));
    assert_eq!(c.instance_url.as_str(), w.sim.instance_url());
    // and the refresh token is in Secrets Manager under the prefix, and live
    let secrets = w.secret_values().await;
    assert_eq!(secrets.len(), 1);
    assert_eq!(secrets[0].0, format!("{}/{}", w.names.secret_prefix, c.id));
    assert!(w.sim.is_token_active(&secrets[0].1));
    // and the API shows it
    let got = w.call("GET", &format!("/connections/{}", c.id), None).await;
    assert_eq!(got.status, 200, "{}", got.text);
    assert_eq!(got.json["state"], "active");
    assert_eq!(got.json["backfill"], "7d");
    assert_eq!(got.json["queues"], "all");
}

#[tokio::test]
async fn the_redirect_uri_is_callback_url_when_it_is_configured() {
    let mut w = world().await;
    w.api.callback_url = Some("https://casesync.example.com/oauth/callback".into());
    let body = format!(
        r#"{{"channel":"support","login_url":"{}"}}"#,
        w.sim.login_url()
    );

    let started = w.call("POST", "/connections", Some(&body)).await;

    assert_eq!(started.status, 201, "{}", started.text);
    let url = Url::parse(started.json["authorize_url"].as_str().unwrap()).unwrap();
    assert!(url.query_pairs().any(|(k, v)| k == "redirect_uri"
        && v == "https://casesync.example.com/oauth/callback"));
}

#[tokio::test]
async fn reauthorizing_gives_a_new_token_and_keeps_the_cursor() {
    let w = world().await;
    let (id, _) = w
        .connect(&format!(
            r#"{{"channel":"support","login_url":"{}","backfill":"90d"}}"#,
            w.sim.login_url()
        ))
        .await;
    let before = w.connections.get_connection(&id).await.unwrap().unwrap();
    // Given a connection that synced for a while and then lost its token
    let moved = Cursor::new(
        (Utc::now() - TimeDelta::days(3)).trunc_subsecs(0),
        CaseId::parse("500xx000003DHb0AAG").unwrap(),
    );
    w.connections
        .commit_cursor(&id, &before.cursor, &moved)
        .await
        .unwrap();
    w.connections
        .set_state(
            &id,
            ConnectionState::NeedsReauth,
            Some("Salesforce refused the refresh token"),
        )
        .await
        .unwrap();
    let old_token = w.secret_values().await[0].1.clone();
    w.sim.revoke_all_tokens();

    // When the user re-authorizes
    let started = w
        .call("POST", &format!("/connections/{id}/reauthorize"), None)
        .await;
    assert_eq!(started.status, 201, "{}", started.text);
    let query = w
        .authorize(started.json["authorize_url"].as_str().unwrap())
        .await;
    let done = w.callback(&query).await;

    // Then the same connection is active again, where it stopped, with a new live token
    assert_eq!(done.status_code, 302);
    let location = done.headers["location"].to_str().unwrap();
    assert!(location.contains(&format!("connection={id}")), "{location}");
    assert!(location.contains("status=reauthorized"), "{location}");
    let after = w.connections.get_connection(&id).await.unwrap().unwrap();
    assert_eq!(after.state, ConnectionState::Active);
    assert_eq!(after.state_reason, None);
    assert_eq!(after.cursor, moved);
    assert_eq!(w.connections.list_connections().await.unwrap().len(), 1);
    let secrets = w.secret_values().await;
    assert_eq!(secrets.len(), 1);
    assert_ne!(secrets[0].1, old_token);
    assert!(w.sim.is_token_active(&secrets[0].1));
}

#[tokio::test]
async fn reauthorizing_revokes_the_superseded_refresh_token_once_the_new_one_is_stored() {
    // Given a connection whose refresh token still works
    let w = world().await;
    let (id, _) = w
        .connect(&format!(
            r#"{{"channel":"support","login_url":"{}"}}"#,
            w.sim.login_url()
        ))
        .await;
    let old_token = w.secret_values().await[0].1.clone();
    assert!(w.sim.is_token_active(&old_token));

    // When the user re-authorizes it
    let started = w
        .call("POST", &format!("/connections/{id}/reauthorize"), None)
        .await;
    let query = w
        .authorize(started.json["authorize_url"].as_str().unwrap())
        .await;
    assert_eq!(w.callback(&query).await.status_code, 302);

    // Then only the new grant is alive at Salesforce, and it is the one stored
    let secrets = w.secret_values().await;
    assert_eq!(secrets.len(), 1);
    assert_ne!(secrets[0].1, old_token);
    assert!(w.sim.is_token_active(&secrets[0].1));
    assert!(
        !w.sim.is_token_active(&old_token),
        "the superseded grant is revoked at Salesforce"
    );
}

#[tokio::test]
async fn reauthorizing_a_deleted_connection_fails_at_the_callback() {
    let w = world().await;
    let (id, _) = w
        .connect(&format!(
            r#"{{"channel":"support","login_url":"{}"}}"#,
            w.sim.login_url()
        ))
        .await;
    let started = w
        .call("POST", &format!("/connections/{id}/reauthorize"), None)
        .await;
    let query = w
        .authorize(started.json["authorize_url"].as_str().unwrap())
        .await;
    assert_eq!(
        w.call("DELETE", &format!("/connections/{id}"), None)
            .await
            .status,
        200
    );

    let done = w.callback(&query).await;

    assert_eq!(done.status_code, 410);
    assert!(w.connections.list_connections().await.unwrap().is_empty());
    assert!(w.secret_values().await.is_empty(), "no token left behind");
}

#[tokio::test]
async fn invalid_input_is_refused_naming_the_field_and_starts_nothing() {
    let w = world().await;
    let login = w.sim.login_url();
    let cases = [
        (r#"{"login_url":"LOGIN"}"#.to_owned(), "channel"),
        (r#"{"channel":""}"#.to_owned(), "channel"),
        (r#"{"channel":42}"#.to_owned(), "channel"),
        (
            r#"{"channel":"support","backfill":"14d"}"#.to_owned(),
            "backfill",
        ),
        (
            r#"{"channel":"support","queues":["00Gxx000000AAAA","005xx000001Sv6QAAS"]}"#.to_owned(),
            "queues[1]",
        ),
        (r#"{"channel":"support","queues":[]}"#.to_owned(), "queues"),
        (r#"{"channel":"support","queues":7}"#.to_owned(), "queues"),
        (
            r#"{"channel":"support","login_url":"https://login.salesforce.com.evil.example"}"#
                .to_owned(),
            "login_url",
        ),
        (
            r#"{"channel":"support","api_version":"5"}"#.to_owned(),
            "api_version",
        ),
        (r#"{"channel":"support","queue":"all"}"#.to_owned(), "queue"),
    ];
    for (body, field) in cases {
        let body = body.replace("LOGIN", &login);
        let r = w.call("POST", "/connections", Some(&body)).await;
        let message = r.error(400, "invalid_request");
        assert_eq!(r.json["field"], field, "{body}: {}", r.text);
        assert!(message.starts_with(&format!("{field}: ")), "{message}");
    }
    for body in ["not json", "[1,2]", "\"x\""] {
        w.call("POST", "/connections", Some(body))
            .await
            .error(400, "invalid_request");
    }
    let scan = w
        .aws
        .dynamodb()
        .scan()
        .table_name(&w.names.tables.auth_states)
        .send()
        .await
        .unwrap();
    assert_eq!(scan.count(), 0, "no flow was started");
}

#[tokio::test]
async fn loopback_login_urls_are_refused_in_production() {
    let mut w = world().await;
    w.api.manager.policy.allow_loopback_login = false;
    let body = format!(
        r#"{{"channel":"support","login_url":"{}"}}"#,
        w.sim.login_url()
    );

    let r = w.call("POST", "/connections", Some(&body)).await;

    r.error(400, "invalid_request");
    assert_eq!(r.json["field"], "login_url");
}

#[tokio::test]
async fn unknown_routes_and_ids_are_404_wrong_methods_405_big_bodies_413() {
    let w = world().await;
    let (id, _) = w
        .connect(&format!(
            r#"{{"channel":"support","login_url":"{}"}}"#,
            w.sim.login_url()
        ))
        .await;

    w.call("GET", "/nope", None).await.error(404, "not_found");
    w.call("GET", "/connections/x/y/z", None)
        .await
        .error(404, "not_found");
    w.call(
        "GET",
        "/connections/conn_00000000000000000000000000000000",
        None,
    )
    .await
    .error(404, "not_found");
    w.call("GET", "/connections/garbage", None)
        .await
        .error(404, "not_found");
    w.call(
        "POST",
        "/connections/conn_00000000000000000000000000000000/disconnect",
        None,
    )
    .await
    .error(404, "not_found");
    w.call(
        "DELETE",
        "/connections/conn_00000000000000000000000000000000",
        None,
    )
    .await
    .error(404, "not_found");

    let r = w.call("PATCH", "/connections", None).await;
    r.error(405, "method_not_allowed");
    assert_eq!(r.header("allow"), Some("GET, POST"));
    let r = w.call("POST", &format!("/connections/{id}"), None).await;
    r.error(405, "method_not_allowed");
    assert_eq!(r.header("allow"), Some("GET, PUT, DELETE"));
    let r = w
        .call("DELETE", &format!("/connections/{id}/queues"), None)
        .await;
    assert_eq!(r.header("allow"), Some("GET"));
    let r = w
        .call("GET", &format!("/connections/{id}/disconnect"), None)
        .await;
    assert_eq!(r.header("allow"), Some("POST"));

    let big = format!(r#"{{"channel":"{}"}}"#, "x".repeat(70 * 1024));
    w.call("POST", "/connections", Some(&big))
        .await
        .error(413, "payload_too_large");
    let big = format!(r#"{{"queues":"{}"}}"#, "x".repeat(70 * 1024));
    w.call("PUT", &format!("/connections/{id}"), Some(&big))
        .await
        .error(413, "payload_too_large");
}

#[tokio::test]
async fn a_named_stage_in_the_path_is_ignored() {
    let w = world().await;
    let event = event("GET", "/prod/connections", None)
        .replace("\"stage\":\"$default\"", "\"stage\":\"prod\"");
    assert!(event.contains("\"stage\":\"prod\""));

    let r = w.call_event(&event).await;

    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json["connections"], serde_json::json!([]));
}

#[tokio::test]
async fn a_moved_instance_is_kept_after_reauthorization() {
    // The callback records the instance URL of the new grant (orgs move between instances).
    let w = world().await;
    let (id, _) = w
        .connect(&format!(
            r#"{{"channel":"support","login_url":"{}"}}"#,
            w.sim.login_url()
        ))
        .await;
    let login = LoginUrl::parse(&w.sim.login_url()).unwrap();
    let elsewhere = InstanceUrl::issued_by("http://127.0.0.1:9", &login).unwrap();
    w.connections.reauthorized(&id, &elsewhere).await.unwrap();
    let started = w
        .call("POST", &format!("/connections/{id}/reauthorize"), None)
        .await;
    let query = w
        .authorize(started.json["authorize_url"].as_str().unwrap())
        .await;

    assert_eq!(w.callback(&query).await.status_code, 302);

    let c = w.connections.get_connection(&id).await.unwrap().unwrap();
    assert_eq!(c.instance_url.as_str(), w.sim.instance_url());
}
