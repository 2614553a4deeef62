//! Faults on demand: every kind, rule counting (skip/times), targets, and the admin API.

mod common;

use std::time::{Duration, Instant};

use common::*;
use reqwest::StatusCode;
use sf_simulator::{FaultKind, FaultRule, FaultTarget, NewCase, NewEmail, Org, SimConfig, utc};

fn org(n: usize) -> Org {
    let mut org = Org::new();
    org.add_queue("Q", "Q");
    for i in 0..n {
        let c = org.add_case(NewCase {
            subject: Some(format!("Case {i}")),
            system_modstamp: Some(utc(2024, 1, 1, 0, 0, 0)),
            ..NewCase::default()
        });
        if i == 0 {
            for k in 0..5 {
                org.add_email(
                    &c,
                    NewEmail {
                        subject: Some(format!("m{k}")),
                        ..NewEmail::default()
                    },
                    false,
                );
            }
        }
    }
    org
}

const Q: &str = "SELECT Id, Subject FROM Case ORDER BY Id";

#[tokio::test]
async fn every_fault_kind_on_a_query() {
    let ctx = start(SimConfig::default(), org(3)).await;
    let real = ctx.query(Q, None).await;
    assert_eq!(real.status, StatusCode::OK);
    let cases: Vec<(FaultKind, u16, &str)> = vec![
        (
            FaultKind::InvalidSession,
            401,
            r#"[{"message":"Session expired or invalid","errorCode":"INVALID_SESSION_ID"}]"#,
        ),
        (
            FaultKind::SessionNotValidForRest,
            401,
            r#"[{"message":"This session is not valid for use with the REST API","errorCode":"INVALID_SESSION_ID"}]"#,
        ),
        (
            FaultKind::TotalRequestsLimit,
            403,
            r#"[{"message":"TotalRequests Limit exceeded.","errorCode":"REQUEST_LIMIT_EXCEEDED"}]"#,
        ),
        (
            FaultKind::ConcurrentLongTxn,
            403,
            r#"[{"message":"ConcurrentPerOrgLongTxn Limit exceeded.","errorCode":"REQUEST_LIMIT_EXCEEDED"}]"#,
        ),
        (
            FaultKind::InvalidQueryLocator,
            400,
            r#"[{"message":"invalid query locator","errorCode":"INVALID_QUERY_LOCATOR"}]"#,
        ),
        (
            FaultKind::QueryTimeout,
            400,
            r#"[{"message":"Your query request was running for too long.","errorCode":"QUERY_TIMEOUT"}]"#,
        ),
        (FaultKind::Status406Empty, 406, ""),
    ];
    for (kind, status, body) in cases {
        ctx.sim.inject(FaultRule::once(FaultTarget::Query, kind));
        let got = ctx.query(Q, None).await;
        assert_eq!(got.status.as_u16(), status, "{kind:?}");
        assert_eq!(got.body, body, "{kind:?}");
        // Only once: the next request is normal, the session still valid.
        assert_eq!(ctx.query(Q, None).await.body, real.body, "{kind:?}");
    }
    for (kind, status, code) in [
        (FaultKind::Status500, 500, "UNKNOWN_EXCEPTION"),
        (FaultKind::Status503, 503, "SERVER_UNAVAILABLE"),
    ] {
        ctx.sim.inject(FaultRule::once(FaultTarget::Query, kind));
        let got = ctx.query(Q, None).await;
        assert_eq!(got.status.as_u16(), status);
        assert_eq!(got.error_code(), code);
        assert!(
            got.limit_info().is_some(),
            "API-tier errors carry Sforce-Limit-Info"
        );
    }
    for (kind, status) in [
        (FaultKind::Status502Html, 502),
        (FaultKind::Status420Html, 420),
    ] {
        ctx.sim.inject(FaultRule::once(FaultTarget::Query, kind));
        let got = ctx.query(Q, None).await;
        assert_eq!(got.status.as_u16(), status);
        assert!(
            got.headers["content-type"]
                .to_str()
                .expect("ct")
                .starts_with("text/html")
        );
        assert!(serde_json::from_str::<serde_json::Value>(&got.body).is_err());
    }
    // Bodies that break a JSON parser, with status 200.
    ctx.sim.inject(FaultRule::once(
        FaultTarget::Query,
        FaultKind::MalformedJson,
    ));
    let got = ctx.query(Q, None).await;
    assert_eq!(got.status, StatusCode::OK);
    assert!(serde_json::from_str::<serde_json::Value>(&got.body).is_err());
    ctx.sim.inject(FaultRule::once(
        FaultTarget::Query,
        FaultKind::TruncatedJson,
    ));
    let got = ctx.query(Q, None).await;
    assert_eq!(got.status, StatusCode::OK);
    assert_eq!(got.body, real.body[..real.body.len() / 2]);
    // A slow answer, then the normal body.
    ctx.sim.inject(FaultRule::once(
        FaultTarget::Query,
        FaultKind::Delay(Duration::from_millis(300)),
    ));
    let t = Instant::now();
    let got = ctx.query(Q, None).await;
    assert!(t.elapsed() >= Duration::from_millis(300));
    assert_eq!(got.body, real.body);
    // The connection is dropped without a response.
    ctx.sim.inject(FaultRule::once(
        FaultTarget::Query,
        FaultKind::ConnectionReset,
    ));
    let err = ctx
        .http
        .get(format!("{}{V}/query", ctx.sim.instance_url()))
        .query(&[("q", Q)])
        .bearer_auth(&ctx.token)
        .send()
        .await
        .expect_err("no response");
    assert!(!err.is_status(), "{err}");
    assert_eq!(ctx.query(Q, None).await.body, real.body);
    let s = ctx.sim.stats();
    assert_eq!(s.faults_served, 15);
    // 1 real + 7 × (fault + check) + 2 + 2 + 2 + 1 + (reset + check) = 24 queries, faulted
    // ones included.
    assert_eq!(s.queries, 24);
    assert_eq!(s.data_calls, 24);
}

#[tokio::test]
async fn skip_and_times_count_matching_requests_only() {
    let ctx = start(SimConfig::default(), org(1)).await;
    ctx.sim.inject(
        FaultRule::once(FaultTarget::Query, FaultKind::Status503)
            .after(2)
            .times(2),
    );
    let mut statuses = Vec::new();
    for i in 0..6 {
        // Non-matching requests in between do not count.
        assert_eq!(
            ctx.get(&format!("{V}/limits")).await.status,
            StatusCode::OK,
            "{i}"
        );
        statuses.push(ctx.query(Q, None).await.status.as_u16());
    }
    assert_eq!(statuses, vec![200, 200, 503, 503, 200, 200]);
    // Forever, until cleared.
    ctx.sim.inject(FaultRule::always(
        FaultTarget::AnyData,
        FaultKind::Status500,
    ));
    for _ in 0..3 {
        assert_eq!(ctx.get(&format!("{V}/limits")).await.status.as_u16(), 500);
    }
    ctx.sim.clear_faults();
    assert_eq!(ctx.get(&format!("{V}/limits")).await.status, StatusCode::OK);
}

#[tokio::test]
async fn targets_select_the_right_requests() {
    let ctx = start(
        SimConfig {
            child_inline_limit: 2,
            ..SimConfig::default()
        },
        org(450),
    )
    .await;
    let soql = "SELECT Id, (SELECT Id FROM EmailMessages) FROM Case ORDER BY Id";
    // QueryMore faults a locator page but not the first page, and invalidates the locator.
    ctx.sim.inject(FaultRule::once(
        FaultTarget::QueryMore,
        FaultKind::InvalidQueryLocator,
    ));
    let first = ctx.query(soql, Some(200)).await.json();
    let next = first["nextRecordsUrl"].as_str().expect("more").to_string();
    assert_eq!(ctx.get(&next).await.error_code(), "INVALID_QUERY_LOCATOR");
    assert_eq!(
        ctx.get(&next).await.error_code(),
        "INVALID_QUERY_LOCATOR",
        "really invalid"
    );
    // ChildMore faults a child page only.
    ctx.sim.inject(FaultRule::once(
        FaultTarget::ChildMore,
        FaultKind::Status503,
    ));
    let first = ctx.query(soql, Some(200)).await.json();
    let child = first["records"][0]["EmailMessages"]["nextRecordsUrl"]
        .as_str()
        .expect("child")
        .to_string();
    let next = first["nextRecordsUrl"].as_str().expect("more").to_string();
    assert_eq!(ctx.get(&next).await.status, StatusCode::OK);
    assert_eq!(ctx.get(&child).await.status.as_u16(), 503);
    assert_eq!(ctx.get(&child).await.status, StatusCode::OK);
    // Count, Describe, Limits.
    ctx.sim
        .inject(FaultRule::once(FaultTarget::Count, FaultKind::QueryTimeout));
    assert_eq!(
        ctx.query("SELECT Id FROM Case LIMIT 1", None).await.status,
        StatusCode::OK
    );
    assert_eq!(
        ctx.query("SELECT COUNT() FROM Case", None)
            .await
            .error_code(),
        "QUERY_TIMEOUT"
    );
    ctx.sim
        .inject(FaultRule::once(FaultTarget::Describe, FaultKind::Status500));
    assert_eq!(ctx.get(&format!("{V}/limits")).await.status, StatusCode::OK);
    assert_eq!(
        ctx.get(&format!("{V}/sobjects/Case/describe"))
            .await
            .status
            .as_u16(),
        500
    );
    ctx.sim
        .inject(FaultRule::once(FaultTarget::Limits, FaultKind::Status500));
    assert_eq!(
        ctx.get(&format!("{V}/sobjects/Case/describe")).await.status,
        StatusCode::OK
    );
    assert_eq!(ctx.get(&format!("{V}/limits")).await.status.as_u16(), 500);
    let s = ctx.sim.stats();
    assert_eq!(
        (s.queries, s.counts, s.describes, s.limits_calls),
        (3, 1, 2, 2)
    );
    assert_eq!((s.query_more, s.child_more), (3, 2));
}

#[tokio::test]
async fn token_and_revoke_faults() {
    let ctx = start(SimConfig::default(), org(1)).await;
    ctx.sim
        .inject(FaultRule::once(FaultTarget::Token, FaultKind::InvalidGrant));
    let form = [
        ("grant_type", "refresh_token"),
        ("refresh_token", ctx.refresh_token.as_str()),
        ("client_id", "casesync-sim-client"),
        ("client_secret", "casesync-sim-secret"),
    ];
    let (status, body) = token_request(&ctx.sim, &ctx.http, &form).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error_description"], "expired access/refresh token");
    assert!(
        ctx.sim.is_token_active(&ctx.refresh_token),
        "a fault does not revoke anything"
    );
    ctx.sim
        .inject(FaultRule::once(FaultTarget::Token, FaultKind::Status503));
    let r = ctx
        .http
        .post(format!("{}/services/oauth2/token", ctx.sim.login_url()))
        .form(&form)
        .send()
        .await
        .expect("send");
    assert_eq!(r.status().as_u16(), 503);
    ctx.sim.inject(FaultRule::once(
        FaultTarget::Token,
        FaultKind::TruncatedJson,
    ));
    let r = ctx
        .http
        .post(format!("{}/services/oauth2/token", ctx.sim.login_url()))
        .form(&form)
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.json::<serde_json::Value>().await.is_err());
    ctx.sim.inject(FaultRule::once(
        FaultTarget::Revoke,
        FaultKind::ConnectionReset,
    ));
    let r = ctx
        .http
        .post(format!("{}/services/oauth2/revoke", ctx.sim.login_url()))
        .form(&[("token", &ctx.refresh_token)])
        .send()
        .await;
    assert!(r.is_err());
    assert!(ctx.sim.is_token_active(&ctx.refresh_token));
    let s = ctx.sim.stats();
    assert_eq!((s.token_refresh, s.revokes, s.faults_served), (3, 1, 4));
}

#[tokio::test]
async fn the_admin_api_drives_an_out_of_process_simulator() {
    let ctx = start(SimConfig::default(), org(1)).await;
    let login = ctx.sim.login_url();
    let rule = FaultRule::once(
        FaultTarget::Query,
        FaultKind::Delay(Duration::from_millis(10)),
    );
    let r = ctx
        .http
        .post(format!("{login}/__sim/faults"))
        .json(&rule)
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), StatusCode::OK);
    let r = ctx
        .http
        .post(format!("{login}/__sim/faults"))
        .body(r#"{"target":"Query","kind":"Status503","skip":0,"times":1}"#)
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), StatusCode::OK);
    let r = ctx
        .http
        .post(format!("{login}/__sim/faults"))
        .body("{nonsense")
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    // Both rules see the query; the first in order wins.
    assert_eq!(ctx.query(Q, None).await.status, StatusCode::OK);
    assert_eq!(ctx.query(Q, None).await.status, StatusCode::OK);
    let stats: serde_json::Value = ctx
        .http
        .get(format!("{login}/__sim/stats"))
        .send()
        .await
        .expect("s")
        .json()
        .await
        .expect("json");
    assert_eq!(stats["queries"], 2);
    assert_eq!(stats["faults_served"], 1);
    assert_eq!(stats["soql"][0], Q);
    assert_eq!(stats["api_usage"], 2);
    let rt: serde_json::Value = ctx
        .http
        .post(format!("{login}/__sim/mint-refresh-token"))
        .send()
        .await
        .expect("m")
        .json()
        .await
        .expect("json");
    let rt = rt["refresh_token"].as_str().expect("token");
    assert!(ctx.sim.is_token_active(rt));
    let r = ctx
        .http
        .post(format!("{login}/__sim/latency"))
        .body(r#"{"ms":5}"#)
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(ctx.sim.config().latency, Duration::from_millis(5));
    let r = ctx
        .http
        .post(format!("{login}/__sim/reset"))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(ctx.sim.stats().queries, 0);
}
