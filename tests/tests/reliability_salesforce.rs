//! The Salesforce rows of the fault matrix: each fault at every call position of a multi-page
//! sync with truncated email lists, each trial ending with nothing lost, duplicated or stale.
//! Run with `--nocapture` to see the figures (`RELIABILITY | row | trials | lost ...`).

use std::time::Duration;

use casesync_core::domain::{BackfillWindow, ConnectionState, QueueScope};
use casesync_core::manage::connect;
use casesync_core::ports::{ConnectionReader, SecretStore};
use casesync_core::salesforce::{HttpSettings, RetryPolicy};
use casesync_core::sync::{SyncConfig, SyncOutcome};
use casesync_tests::*;
use chrono::TimeDelta;
use secrecy::{ExposeSecret, SecretString};
use sf_simulator::{FaultKind, FaultRule, FaultTarget, NewCase, Org, SimConfig};

/// ~300 closed Cases (with ties) and a few long threads: several pages, several child-list
/// pages, so a fault can land on a first query, a next page or a child page.
fn dataset() -> (Org, String) {
    let (mut org, q) = org_with_queue();
    let base = minutes_ago(600);
    for i in 0..300 {
        let id = closed_case(
            &mut org,
            &q,
            base + TimeDelta::seconds(i / 4),
            &format!("c{i}"),
        );
        if i % 97 == 0 {
            for e in 0..7 {
                email(
                    &mut org,
                    &id,
                    base - TimeDelta::minutes(60 - e),
                    e % 2 == 0,
                    "long thread",
                );
            }
        }
    }
    // Noise that must not import.
    let user = org.add_user("Agent");
    closed_case(&mut org, &user, base, "user owned");
    (org, q)
}

fn sim_config() -> SimConfig {
    SimConfig {
        page_size_cap: Some(60),
        child_inline_limit: 3,
        ..SimConfig::default()
    }
}

/// How many data calls a clean sync of the dataset makes.
async fn clean_calls() -> u64 {
    let (org, _) = dataset();
    let h = Harness::start(sim_config(), org).await;
    let conn = h.connect(QueueScope::All, BackfillWindow::Days7).await;
    h.sim.reset_stats();
    h.sync_to_end(&conn.id).await;
    h.sim.stats().data_calls
}

/// Injects `kind` once at data call `k`, for every k of a clean sync; syncs to the end.
async fn at_every_position(row: &str, kind: FaultKind, http: HttpSettings) -> Figures {
    let mut figures = Figures::new(row);
    let calls = clean_calls().await;
    assert!(
        calls >= 8,
        "the dataset spans several pages ({calls} calls)"
    );
    for k in 0..calls {
        let (org, q) = dataset();
        let h = Harness::start_with(sim_config(), org, SyncConfig::default(), http.clone()).await;
        let conn = h.connect(QueueScope::All, BackfillWindow::Days7).await;
        h.sim
            .inject(FaultRule::once(FaultTarget::AnyData, kind).after(k as u32));
        let reports = h.sync_to_end(&conn.id).await;
        let last = reports.last().unwrap();
        assert_eq!(
            last.outcome,
            SyncOutcome::Done,
            "{row} at call {k}: {last:?}"
        );
        assert_eq!(h.sim.stats().write_attempts, 0);
        figures.check(&h, &q);
    }
    figures
}

#[tokio::test]
async fn server_errors_at_every_position_are_retried() {
    for (row, kind) in [
        (
            "Salesforce 500 UNKNOWN_EXCEPTION at every call",
            FaultKind::Status500,
        ),
        (
            "Salesforce 502 with an HTML body at every call",
            FaultKind::Status502Html,
        ),
        (
            "Salesforce 503 SERVER_UNAVAILABLE at every call",
            FaultKind::Status503,
        ),
        (
            "Salesforce 420 (edge, HTML) at every call",
            FaultKind::Status420Html,
        ),
        (
            "Salesforce 406 with an empty body at every call",
            FaultKind::Status406Empty,
        ),
        ("connection reset at every call", FaultKind::ConnectionReset),
        (
            "malformed JSON (200) at every call",
            FaultKind::MalformedJson,
        ),
        (
            "truncated JSON (200) at every call",
            FaultKind::TruncatedJson,
        ),
        (
            "403 ConcurrentPerOrgLongTxn at every call (backs off)",
            FaultKind::ConcurrentLongTxn,
        ),
    ] {
        at_every_position(row, kind, test_http()).await.report();
    }
}

#[tokio::test]
async fn responses_slower_than_the_client_timeout_are_retried() {
    let http = HttpSettings {
        connect_timeout: Duration::from_secs(2),
        request_timeout: Duration::from_millis(400),
        retry: RetryPolicy::fast(),
    };
    at_every_position(
        "a response slower than the client timeout at every call",
        FaultKind::Delay(Duration::from_millis(1500)),
        http,
    )
    .await
    .report();
}

#[tokio::test]
async fn an_expired_session_at_every_position_is_refreshed_and_replayed() {
    at_every_position(
        "401 INVALID_SESSION_ID at every call",
        FaultKind::InvalidSession,
        test_http(),
    )
    .await
    .report();
}

#[tokio::test]
async fn an_expired_locator_at_every_next_page_is_re_queried() {
    let mut figures = Figures::new("INVALID_QUERY_LOCATOR at every next page");
    for k in 0..6 {
        let (org, q) = dataset();
        let h = Harness::start(sim_config(), org).await;
        let conn = h.connect(QueueScope::All, BackfillWindow::Days7).await;
        h.sim.inject(
            FaultRule::once(FaultTarget::QueryMore, FaultKind::InvalidQueryLocator).after(k),
        );
        let last = h.sync_to_end(&conn.id).await.pop().unwrap();
        assert_eq!(last.outcome, SyncOutcome::Done, "{last:?}");
        figures.check(&h, &q);
    }
    figures.report();
}

#[tokio::test]
async fn the_daily_limit_at_every_position_stops_the_run_without_more_calls_and_a_later_run_completes()
 {
    let mut figures = Figures::new("403 REQUEST_LIMIT_EXCEEDED TotalRequests at every call");
    let calls = clean_calls().await;
    for k in 0..calls {
        let (org, q) = dataset();
        let h = Harness::start(sim_config(), org).await;
        let conn = h.connect(QueueScope::All, BackfillWindow::Days7).await;
        h.sim.inject(
            FaultRule::always(FaultTarget::AnyData, FaultKind::TotalRequestsLimit).after(k as u32),
        );
        let r = h.sync(&conn.id).await;
        assert_eq!(r.outcome, SyncOutcome::RateLimited, "at call {k}: {r:?}");
        // Not one call after the refusal: concurrent child-list fetches may each see it once.
        assert!(
            h.sim.stats().data_calls <= k + 4,
            "no retry storm at call {k}"
        );
        let kept = h
            .store
            .get_connection(&conn.id)
            .await
            .unwrap()
            .unwrap()
            .cursor;
        assert_eq!(kept, r.cursor_after);
        h.sim.clear_faults();
        let last = h.sync_to_end(&conn.id).await.pop().unwrap();
        assert_eq!(last.outcome, SyncOutcome::Done);
        figures.check(&h, &q);
    }
    figures.report();
}

#[tokio::test]
async fn refused_refresh_token_then_reauthorization_resumes_from_the_kept_cursor() {
    let mut figures =
        Figures::new("invalid_grant → needs_reauth, re-authorized, resumed from the kept cursor");
    for cut in [4u32, 7, 10] {
        let (org, q) = dataset();
        let h = Harness::start(sim_config(), org).await;
        let conn = h.connect(QueueScope::All, BackfillWindow::Days7).await;
        // Part of the backfill, then the grant is revoked and the access token dies.
        h.sim
            .inject(FaultRule::always(FaultTarget::AnyData, FaultKind::InvalidSession).after(cut));
        // The run's first refresh succeeds; the one after the 401s is refused.
        h.sim
            .inject(FaultRule::always(FaultTarget::Token, FaultKind::InvalidGrant).after(1));
        let r = h.sync(&conn.id).await;
        assert_eq!(r.outcome, SyncOutcome::NeedsReauth, "{r:?}");
        let c = h.store.get_connection(&conn.id).await.unwrap().unwrap();
        assert_eq!(c.state, ConnectionState::NeedsReauth);
        let kept = c.cursor.clone();
        assert!(
            !h.points().is_empty(),
            "part of the backfill landed before the cut"
        );

        h.sim.clear_faults();
        h.sim.revoke_all_tokens();
        let fresh = SecretString::from(h.sim.mint_refresh_token());
        connect::reauthorize_with_refresh_token(
            &h.salesforce.oauth,
            h.store.as_ref(),
            h.store.as_ref(),
            &conn.id,
            fresh,
        )
        .await
        .unwrap();
        let before = h.points().len() as u64;
        let resumed = h.sync_to_end(&conn.id).await;
        let first = &resumed[0];
        assert_eq!(first.cursor_before, kept, "resumed from the kept cursor");
        let created: u64 = resumed.iter().map(|r| r.counts.created).sum();
        let expected_total = h.sim.with_org(|o| {
            o.cases()
                .iter()
                .filter(|c| c.owner_id.as_str() == q)
                .count()
        }) as u64;
        assert_eq!(before + created, expected_total, "nothing imported twice");
        figures.check(&h, &q);
    }
    figures.report();
}

#[tokio::test]
async fn rotated_refresh_tokens_survive_and_a_replayed_old_one_needs_reauthorization() {
    let mut figures = Figures::new("refresh token rotation on every refresh; replayed old token");
    let (org, q) = dataset();
    let h = Harness::start(
        SimConfig {
            rotate_refresh_tokens: true,
            ..sim_config()
        },
        org,
    )
    .await;
    let conn = h.connect(QueueScope::All, BackfillWindow::Days7).await;
    let original = h.store.get_refresh_token(&conn.id).await.unwrap().unwrap();
    // Every few calls the access token expires: many refreshes, many rotations.
    h.sim.update_config(|c| c.access_token_ttl_calls = Some(3));
    let last = h.sync_to_end(&conn.id).await.pop().unwrap();
    assert_eq!(last.outcome, SyncOutcome::Done, "{last:?}");
    assert!(h.sim.stats().token_refresh >= 3);
    figures.check(&h, &q);

    // Someone replays the first (rotated-out) refresh token: Salesforce revokes the family.
    let replay = h.salesforce.oauth.refresh(&h.login_url(), &original).await;
    assert!(replay.is_err());
    h.sim.expire_access_tokens();
    h.sim.with_org(|o| {
        closed_case(o, &q, minutes_ago(10), "after replay");
    });
    let r = h.sync(&conn.id).await;
    assert_eq!(r.outcome, SyncOutcome::NeedsReauth, "{r:?}");
    let stored = h.store.get_refresh_token(&conn.id).await.unwrap().unwrap();
    assert_ne!(stored.expose_secret(), original.expose_secret());
    figures.report();
}

#[tokio::test]
async fn a_token_response_naming_a_foreign_instance_is_refused_and_nothing_is_stored() {
    // A fake token endpoint that answers with an attacker's instance_url.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        while let Ok((mut s, _)) = listener.accept().await {
            let mut buf = vec![0; 8192];
            let _ = s.read(&mut buf).await;
            let body = r#"{"access_token":"00Dfake!tok","refresh_token":"5Aepfake","instance_url":"https://evil.example.com","id":"x","token_type":"Bearer","issued_at":"1"}"#;
            let resp = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = s.write_all(resp.as_bytes()).await;
        }
    });
    let (org, _) = org_with_queue();
    let h = Harness::start(SimConfig::default(), org).await;
    let login = casesync_core::domain::LoginUrl::parse(&format!("http://{addr}")).unwrap();
    let result = connect::with_refresh_token(
        &h.salesforce.oauth,
        h.store.as_ref(),
        h.store.as_ref(),
        login,
        SecretString::from("5Aeporiginal".to_owned()),
        connect::ConnectionSettings {
            channel: casesync_core::domain::ChannelName::parse("x").unwrap(),
            scope: QueueScope::All,
            backfill: BackfillWindow::Days7,
            api_version: Default::default(),
        },
        chrono::Utc::now(),
    )
    .await;
    let err = result.unwrap_err().to_string();
    assert!(
        err.contains("instance_url") && err.contains("evil.example.com"),
        "{err}"
    );
    assert!(
        h.store.list_connections().await.unwrap().is_empty(),
        "nothing stored"
    );
}

#[tokio::test]
async fn huge_and_strange_text_round_trips() {
    let (mut org, q) = org_with_queue();
    let at = minutes_ago(30);
    let weird =
        "Zürich ☃ 日本語 \u{1F600} \"quotes\" 'single' \\back\\slash <tag> & \u{0} nul \u{202E}rtl";
    let huge = "x".repeat(200_000);
    let id = org.add_case(NewCase {
        subject: Some(format!("{weird} {}", "s".repeat(5_000))),
        owner_id: Some(q.clone()),
        system_modstamp: Some(at),
        description: Some(format!("{weird}{huge}")),
        ..NewCase::default()
    });
    let h = Harness::start(SimConfig::default(), org).await;
    let conn = h.connect(QueueScope::All, BackfillWindow::Days7).await;
    assert_eq!(h.sync(&conn.id).await.outcome, SyncOutcome::Done);
    let p = h
        .points()
        .into_iter()
        .find(|p| p.case_id.as_str() == id)
        .unwrap();
    let text = &p.conversation[0].text;
    assert!(text.starts_with(&weird.replace('\u{0}', "")));
    assert_eq!(text.len(), weird.len() - 1 + huge.len());
    assert!(!p.subject.unwrap().contains('\u{0}'));
}
