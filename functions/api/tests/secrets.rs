//! Secrets stay secret: with every log line down to TRACE captured, the whole life of a
//! connection (connect, every route, re-authorize, delete) never shows the refresh tokens, the
//! access tokens, the client secret or an authorization code in a log line, a response, or
//! any DynamoDB item.
//!
//! One test in its own binary: it installs the process-wide log subscriber.

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};

use common::*;

#[derive(Clone, Default)]
struct Buffer(Arc<Mutex<Vec<u8>>>);

impl Write for Buffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Buffer {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap_or_else(|e| e.into_inner())).into_owned()
    }
}

fn param(query: &str, name: &str) -> String {
    url::form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
        .unwrap_or_else(|| panic!("no {name} in the callback"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_reaches_a_log_a_response_or_a_table() {
    let logs = Buffer::default();
    let writer = logs.clone();
    tracing_subscriber::fmt()
        .json()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        // The simulator is the test's Salesforce, not part of the functions: its logs would be
        // Salesforce's.
        .with_env_filter(tracing_subscriber::EnvFilter::new("trace,sf_simulator=off"))
        .init();

    let w = world().await;
    let mut responses = String::new();
    let mut record = |a: &Answer| {
        responses.push_str(&format!(
            "{} {:?} {}\n",
            a.status,
            a.response.headers(),
            a.text
        ));
    };
    let login = w.sim.login_url();

    // Connect through the API and the callback.
    let started = w
        .call(
            "POST",
            "/connections",
            Some(&format!(
                r#"{{"channel":"support","login_url":"{login}","backfill":"6m"}}"#
            )),
        )
        .await;
    record(&started);
    let query = w
        .authorize(started.json["authorize_url"].as_str().unwrap())
        .await;
    let mut codes = vec![param(&query, "code")];
    let done = w.callback(&query).await;
    let mut callback_answers = format!("{done:?}\n");
    let id = url::Url::parse(done.headers["location"].to_str().unwrap())
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "connection")
        .unwrap()
        .1
        .into_owned();
    // The replayed callback, and a tampered one.
    callback_answers.push_str(&format!("{:?}\n", w.callback(&query).await));
    callback_answers.push_str(&format!(
        "{:?}\n",
        w.callback(&format!("{query}&code=x")).await
    ));
    w.seed_points(&casesync_core::domain::ConnectionId::parse(&id).unwrap(), 3)
        .await;

    // Every route.
    for (method, path, body) in [
        ("GET", "/connections".to_owned(), None),
        ("GET", format!("/connections/{id}"), None),
        ("GET", format!("/connections/{id}/queues"), None),
        ("GET", format!("/connections/{id}/diagnostics"), None),
        (
            "PUT",
            format!("/connections/{id}"),
            Some(r#"{"backfill":"90d"}"#),
        ),
        ("POST", format!("/connections/{id}/disconnect"), None),
    ] {
        let a = w.call(method, &path, body).await;
        assert!(a.status < 300, "{method} {path}: {}", a.text);
        record(&a);
    }
    let first_token = w.secret_values().await[0].1.clone();

    // Re-authorize: a second code, a second refresh token.
    let again = w
        .call("POST", &format!("/connections/{id}/reauthorize"), None)
        .await;
    record(&again);
    let query = w
        .authorize(again.json["authorize_url"].as_str().unwrap())
        .await;
    codes.push(param(&query, "code"));
    callback_answers.push_str(&format!("{:?}\n", w.callback(&query).await));
    let second_token = w.secret_values().await[0].1.clone();
    assert_ne!(first_token, second_token);
    let a = w
        .call("GET", &format!("/connections/{id}/queues"), None)
        .await;
    assert_eq!(a.status, 200, "{}", a.text);
    record(&a);
    let items_before_delete = w.all_items().await;

    let deleted = w.call("DELETE", &format!("/connections/{id}"), None).await;
    assert_eq!(deleted.status, 200, "{}", deleted.text);
    record(&deleted);
    let items_after_delete = w.all_items().await;

    // The checks must be able to fail: the secrets were really in play.
    let stats = w.sim.stats();
    assert!(
        stats.token_code >= 2 && stats.token_refresh >= 2,
        "{stats:?}"
    );
    assert!(
        !w.sim.is_token_active(&second_token),
        "revoked by the delete"
    );
    let logs = logs.text();
    assert!(
        logs.contains("connection authorized"),
        "our own logs were captured"
    );
    assert!(
        logs.contains("\"level\":\"TRACE\""),
        "TRACE lines were captured"
    );

    let secrets = [
        ("refresh token", first_token.as_str()),
        ("refresh token", second_token.as_str()),
        ("client secret", "casesync-sim-secret"),
        ("caller's session token", "IQoJb3JpZ2luX2VjEXAMPLE"),
        ("authorization code", codes[0].as_str()),
        ("authorization code", codes[1].as_str()),
    ];
    assert_eq!(w.sim.client_secret(), "casesync-sim-secret");
    let places = [
        ("logs", &logs),
        ("API responses", &responses),
        ("callback responses", &callback_answers),
        ("DynamoDB items", &items_before_delete),
        ("DynamoDB items after the delete", &items_after_delete),
    ];
    for (place, text) in places {
        for (what, secret) in secrets {
            assert!(!secret.is_empty());
            assert_eq!(
                text.matches(secret).count(),
                0,
                "a {what} appears in the {place}"
            );
        }
        assert!(
            !has_access_token(text),
            "an access token (00D...!AR...) appears in the {place}"
        );
    }
}
