//! Tokens never leak: a full run (connect, sync with a forced refresh and rotation, a refused
//! token, errors) with every log event at TRACE captured — casesync's and its dependencies' —
//! and the Debug and Display output of every value and error near a token. The refresh tokens
//! and access tokens appear in none of it.

use std::io::Write;
use std::sync::{Arc, Mutex};

use casesync_core::domain::{BackfillWindow, QueueScope};
use casesync_core::manage::connect::CallbackParams;
use casesync_core::ports::{ConnectionReader, SecretStore};
use casesync_core::sync::SyncOutcome;
use casesync_tests::*;
use chrono::TimeDelta;
use secrecy::ExposeSecret;
use sf_simulator::{FaultKind, FaultRule, FaultTarget, SimConfig};

#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_token_appears_in_logs_errors_or_debug_output_at_any_level() {
    let capture = Capture::default();
    let writer = capture.clone();
    // Global: the engine's prefetch tasks run on other threads.
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .init();

    let (mut org, q) = org_with_queue();
    for i in 0..250 {
        let id = closed_case(&mut org, &q, minutes_ago(300) + TimeDelta::seconds(i), "c");
        if i % 50 == 0 {
            for e in 0..5 {
                email(&mut org, &id, minutes_ago(400), e % 2 == 0, "thread");
            }
        }
    }
    let h = Harness::start(
        SimConfig {
            rotate_refresh_tokens: true,
            page_size_cap: Some(60),
            child_inline_limit: 2,
            access_token_ttl_calls: Some(3),
            ..SimConfig::default()
        },
        org,
    )
    .await;
    let conn = h.connect(QueueScope::All, BackfillWindow::Days7).await;
    let mut refresh_tokens = vec![h.store.get_refresh_token(&conn.id).await.unwrap().unwrap()];

    // A full backfill with access tokens dying every 3 calls (refreshes, rotations), faults
    // retried, and an expired session replayed.
    h.sim.inject(FaultRule::once(
        FaultTarget::QueryMore,
        FaultKind::Status502Html,
    ));
    h.sim
        .inject(FaultRule::once(FaultTarget::AnyData, FaultKind::InvalidSession).after(2));
    let reports = h.sync_to_end(&conn.id).await;
    assert_eq!(reports.last().unwrap().outcome, SyncOutcome::Done);
    refresh_tokens.push(h.store.get_refresh_token(&conn.id).await.unwrap().unwrap());

    // Access tokens as the app would see them: ask for some with the stored refresh token.
    let grant = h
        .salesforce
        .oauth
        .refresh(&h.login_url(), refresh_tokens.last().unwrap())
        .await
        .unwrap();
    let access = grant.access_token.expose_secret().to_owned();
    if let Some(rotated) = &grant.refresh_token {
        h.store.put_refresh_token(&conn.id, rotated).await.unwrap();
        refresh_tokens.push(rotated.clone());
    }

    // Errors with tokens nearby: a refused refresh token, a callback with junk.
    h.sim.revoke_all_tokens();
    let refused = h
        .salesforce
        .oauth
        .refresh(&h.login_url(), refresh_tokens.last().unwrap())
        .await
        .unwrap_err();
    h.sim.expire_access_tokens();
    h.sim.with_org(|o| {
        closed_case(o, &q, minutes_ago(10), "after revoke");
    });
    let r = h.sync(&conn.id).await;
    assert_eq!(r.outcome, SyncOutcome::NeedsReauth);
    let connection = h.store.get_connection(&conn.id).await.unwrap().unwrap();

    let mut surfaces = String::from_utf8(capture.0.lock().unwrap().clone()).unwrap();
    for text in [
        format!("{refused}"),
        format!("{refused:?}"),
        format!("{grant:?}"),
        format!("{:?}", h.salesforce.oauth.app()),
        format!("{connection:?}"),
        serde_json::to_string(&connection).unwrap(),
        format!("{r:?}"),
        format!("{reports:?}"),
        format!("{:?}", CallbackParams::parse("code=abc&state=def")),
        format!("{:?}", refresh_tokens),
    ] {
        surfaces.push_str(&text);
        surfaces.push('\n');
    }
    let trace_events = surfaces.matches(" TRACE ").count();
    assert!(
        trace_events > 50,
        "TRACE was captured ({trace_events} events)"
    );
    assert!(
        surfaces.contains("TRACE hyper_util"),
        "dependencies' events too"
    );
    assert!(surfaces.contains("casesync_core"), "casesync's events");
    for token in refresh_tokens
        .iter()
        .map(|t| t.expose_secret().to_owned())
        .chain([access.clone()])
    {
        assert!(token.len() > 20);
        assert_eq!(surfaces.matches(&token).count(), 0, "a token leaked");
    }
    // Every access token the simulator issued has Salesforce's shape, `00D...!AR...`.
    assert_eq!(surfaces.matches("!AR").count(), 0, "an access token leaked");
    assert!(
        !surfaces.contains(&h.sim.client_secret()),
        "the client secret leaked"
    );
}
