//! The management routes on a connected org (the simulator's sample org: 3 queues, 150 Cases).

mod common;

use casesync_core::domain::{CaseFailure, CaseId, ConnectionId, ConnectionState, QueueScope};
use casesync_core::ports::{
    ConnectionReader, DataPointReader, LeaseStore, RunRecord, RunRecorder, SecretStore,
};
use casesync_core::sync::{SyncCounts, SyncOutcome, SyncReport};
use chrono::{DateTime, TimeDelta, Utc};
use common::*;
use sf_simulator::{FaultKind, FaultRule, FaultTarget};

async fn connected(w: &World, extra: &str) -> ConnectionId {
    w.connect(&format!(
        r#"{{"channel":"support","login_url":"{}"{extra}}}"#,
        w.sim.login_url()
    ))
    .await
    .0
}

fn queue_ids(w: &World) -> Vec<String> {
    w.sim
        .with_org(|o| o.queues().map(|q| q.id.to_string()).collect())
}

fn at(v: &serde_json::Value) -> DateTime<Utc> {
    v.as_str().expect("a timestamp").parse().expect("RFC 3339")
}

#[tokio::test]
async fn list_and_get_show_state_settings_cursor_last_run_counts_and_failures() {
    let w = world().await;
    let queues = queue_ids(&w);
    let a = connected(&w, r#","backfill":"90d""#).await;
    let b = connected(&w, &format!(r#","queues":["{}"]"#, queues[0])).await;
    w.seed_points(&a, 3).await;
    let c = w.connections.get_connection(&a).await.unwrap().unwrap();
    let now = Utc::now();
    let report = SyncReport {
        outcome: SyncOutcome::Done,
        counts: SyncCounts {
            fetched: 3,
            created: 3,
            pages: 1,
            api_calls: 4,
            ..SyncCounts::default()
        },
        cursor_before: c.cursor.clone(),
        cursor_after: c.cursor.clone(),
        started_at: now - TimeDelta::seconds(5),
        finished_at: now,
        error: None,
    };
    let failure = CaseFailure {
        case_id: CaseId::parse("500xx000009ZZZZ").unwrap(),
        error: "the Case has no CaseNumber".into(),
        first_seen: now,
        attempts: 2,
    };
    w.connections
        .record_run(
            &a,
            &RunRecord {
                report,
                failures: vec![failure],
                lookback_swept_at: None,
            },
        )
        .await
        .unwrap();

    let list = w.call("GET", "/connections", None).await;

    assert_eq!(list.status, 200, "{}", list.text);
    let items = list.json["connections"].as_array().unwrap();
    assert_eq!(items.len(), 2);
    let ids: Vec<&str> = items.iter().map(|c| c["id"].as_str().unwrap()).collect();
    assert!(ids.contains(&a.as_str()) && ids.contains(&b.as_str()));
    let listed_b = items.iter().find(|c| c["id"] == b.as_str()).unwrap();
    assert_eq!(listed_b["queues"], serde_json::json!([queues[0]]));
    assert_eq!(listed_b["state"], "active");

    let got = w.call("GET", &format!("/connections/{a}"), None).await;

    assert_eq!(got.status, 200, "{}", got.text);
    let j = &got.json;
    assert_eq!(j["id"], a.as_str());
    assert_eq!(j["channel"], "support");
    assert_eq!(j["state"], "active");
    assert_eq!(j["state_reason"], serde_json::Value::Null);
    assert_eq!(j["queues"], "all");
    assert_eq!(j["backfill"], "90d");
    assert_eq!(j["api_version"], "59.0");
    assert_eq!(j["instance_url"], w.sim.instance_url());
    assert_eq!(
        at(&j["cursor"]["system_modstamp"]),
        c.cursor.system_modstamp
    );
    assert_eq!(at(&j["progress_point"]), c.cursor.system_modstamp);
    assert_eq!(j["backfill_slices_left"], 0);
    assert_eq!(j["data_points"], 3);
    assert_eq!(j["last_run"]["outcome"], "done");
    assert_eq!(j["last_run"]["counts"]["created"], 3);
    assert_eq!(j["last_run"]["counts"]["api_calls"], 4);
    assert_eq!(j["last_run"]["error"], serde_json::Value::Null);
    assert_eq!(j["failing_cases"], 1);
    assert_eq!(
        j["failures"][0]["case_id"],
        CaseId::parse("500xx000009ZZZZ").unwrap().as_str()
    );
    assert_eq!(j["failures"][0]["error"], "the Case has no CaseNumber");
    assert_eq!(j["failures"][0]["attempts"], 2);
}

#[tokio::test]
async fn put_changes_the_settings_and_restarts_the_cursor_at_the_new_window() {
    let w = world().await;
    let queues = queue_ids(&w);
    let id = connected(&w, r#","backfill":"90d""#).await;
    let body = format!(
        r#"{{"queues":["{}","{}"],"backfill":"7d"}}"#,
        queues[1], queues[0]
    );

    let r = w
        .call("PUT", &format!("/connections/{id}"), Some(&body))
        .await;

    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json["changed"], true);
    let restarted = at(&r.json["cursor_restarted_at"]);
    assert!((restarted - (Utc::now() - TimeDelta::days(7))).abs() < TimeDelta::seconds(30));
    assert!(
        r.json["message"]
            .as_str()
            .unwrap()
            .contains("cursor restarted")
    );
    assert_eq!(r.json["connection"]["backfill"], "7d");
    let c = w.connections.get_connection(&id).await.unwrap().unwrap();
    let mut expected = queues[..2].to_vec();
    expected.sort();
    assert_eq!(
        c.scope,
        QueueScope::parse(&expected.join(",")).unwrap(),
        "stored sorted"
    );
    assert_eq!(c.cursor.system_modstamp, restarted);

    // The same settings again change nothing, the cursor included.
    let again = w
        .call("PUT", &format!("/connections/{id}"), Some(&body))
        .await;
    assert_eq!(again.status, 200, "{}", again.text);
    assert_eq!(again.json["changed"], false);
    assert_eq!(again.json["cursor_restarted_at"], serde_json::Value::Null);
    let same = w.connections.get_connection(&id).await.unwrap().unwrap();
    assert_eq!(same.cursor, c.cursor);

    // Only the backfill
    let r = w
        .call(
            "PUT",
            &format!("/connections/{id}"),
            Some(r#"{"backfill":"6m"}"#),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json["connection"]["backfill"], "6m");
    assert_eq!(r.json["connection"]["queues"].as_array().unwrap().len(), 2);

    // Refusals
    w.call("PUT", &format!("/connections/{id}"), Some("{}"))
        .await
        .error(400, "invalid_request");
    let r = w
        .call(
            "PUT",
            &format!("/connections/{id}"),
            Some(r#"{"backfill":3}"#),
        )
        .await;
    r.error(400, "invalid_request");
    assert_eq!(r.json["field"], "backfill");
    let r = w
        .call(
            "PUT",
            &format!("/connections/{id}"),
            Some(r#"{"channel":"other"}"#),
        )
        .await;
    assert_eq!(r.json["field"], "channel", "channel cannot be changed here");
    w.call(
        "PUT",
        "/connections/conn_00000000000000000000000000000000",
        Some(r#"{"backfill":"7d"}"#),
    )
    .await
    .error(404, "not_found");
}

#[tokio::test]
async fn queues_lists_what_the_authorizing_user_can_see() {
    let w = world().await;
    let id = connected(&w, "").await;

    let r = w
        .call("GET", &format!("/connections/{id}/queues"), None)
        .await;

    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json["selected"], "all");
    let mut got: Vec<(String, String)> = r.json["queues"]
        .as_array()
        .unwrap()
        .iter()
        .map(|q| {
            (
                q["id"].as_str().unwrap().to_owned(),
                q["name"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let mut expected: Vec<(String, String)> = w.sim.with_org(|o| {
        o.queues()
            .map(|q| (q.id.to_string(), q.name.clone()))
            .collect()
    });
    got.sort();
    expected.sort();
    assert_eq!(got, expected);
    assert_eq!(got.len(), 3);
}

#[tokio::test]
async fn salesforce_refusing_the_token_is_a_502_that_says_to_reauthorize() {
    let w = world().await;
    let id = connected(&w, "").await;
    w.sim.revoke_all_tokens();

    let r = w
        .call("GET", &format!("/connections/{id}/queues"), None)
        .await;

    let message = r.error(502, "needs_reauth");
    assert!(message.contains("authorized again"), "{message}");
}

#[tokio::test]
async fn diagnostics_runs_the_doctors_checks() {
    let w = world().await;
    let id = connected(&w, r#","backfill":"6m""#).await;

    let r = w
        .call("GET", &format!("/connections/{id}/diagnostics"), None)
        .await;

    assert_eq!(r.status, 200, "{}", r.text);
    let names: Vec<&str> = r.json["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "refresh token",
            "object access",
            "queues",
            "matching Cases",
            "API usage"
        ]
    );
    assert_eq!(r.json["checks"][0]["status"], "ok");
    assert_eq!(r.json["healthy"], true, "{}", r.text);
    assert!(r.json["api_calls"].as_u64().unwrap() > 0);

    // A revoked token fails the first check, skips the rest, and is still a 200.
    w.sim.revoke_all_tokens();
    let r = w
        .call("GET", &format!("/connections/{id}/diagnostics"), None)
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json["healthy"], false);
    assert_eq!(r.json["checks"][0]["status"], "failed");
    assert_eq!(r.json["checks"][1]["status"], "skipped");
}

#[tokio::test]
async fn disconnect_stops_syncing_and_keeps_the_data() {
    let w = world().await;
    let id = connected(&w, "").await;
    w.seed_points(&id, 4).await;

    let r = w
        .call("POST", &format!("/connections/{id}/disconnect"), None)
        .await;

    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json["connection"]["state"], "disconnected");
    let c = w.connections.get_connection(&id).await.unwrap().unwrap();
    assert_eq!(c.state, ConnectionState::Disconnected);
    assert!(c.state_reason.unwrap().contains("disconnected"));
    assert_eq!(w.data_points.count_data_points(&id).await.unwrap(), 4);
    assert!(w.secrets.get_refresh_token(&id).await.unwrap().is_some());
    // Idempotent
    assert_eq!(
        w.call("POST", &format!("/connections/{id}/disconnect"), None)
            .await
            .status,
        200
    );
}

#[tokio::test]
async fn delete_removes_every_data_point_the_secret_and_the_connection_and_revokes_the_token() {
    let w = world().await;
    let id = connected(&w, "").await;
    let other = connected(&w, "").await;
    w.seed_points(&id, 60).await;
    w.seed_points(&other, 2).await;
    let token = w.secret_values().await;
    let token = token
        .iter()
        .find(|(name, _)| name.ends_with(id.as_str()))
        .unwrap()
        .1
        .clone();
    assert!(w.sim.is_token_active(&token));
    // An access token issued from it, too.
    assert_eq!(
        w.call("GET", &format!("/connections/{id}/queues"), None)
            .await
            .status,
        200
    );

    let r = w.call("DELETE", &format!("/connections/{id}"), None).await;

    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json["deleted"], true);
    assert_eq!(r.json["data_points_deleted"], 60);
    assert_eq!(r.json["token"]["status"], "revoked");
    // Every data point is gone (not only counted away): no item of the connection is left.
    let left = w
        .aws
        .dynamodb()
        .query()
        .table_name(&w.names.tables.data_points)
        .key_condition_expression("connection_id = :c")
        .expression_attribute_values(
            ":c",
            aws_sdk_dynamodb::types::AttributeValue::S(id.to_string()),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(left.count(), 0);
    assert!(w.secrets.get_refresh_token(&id).await.unwrap().is_none());
    assert!(w.connections.get_connection(&id).await.unwrap().is_none());
    assert!(!w.sim.is_token_active(&token), "revoked at Salesforce");
    w.call("GET", &format!("/connections/{id}"), None)
        .await
        .error(404, "not_found");
    // The other connection is untouched.
    assert_eq!(w.data_points.count_data_points(&other).await.unwrap(), 2);
    assert!(w.secrets.get_refresh_token(&other).await.unwrap().is_some());
    // Deleting again: 404.
    w.call("DELETE", &format!("/connections/{id}"), None)
        .await
        .error(404, "not_found");
}

#[tokio::test]
async fn delete_when_salesforce_is_unreachable_still_deletes_here_and_says_so() {
    let w = world().await;
    let id = connected(&w, "").await;
    w.seed_points(&id, 3).await;
    let token = w.secret_values().await[0].1.clone();
    w.sim.inject(FaultRule::always(
        FaultTarget::Revoke,
        FaultKind::ConnectionReset,
    ));

    let r = w.call("DELETE", &format!("/connections/{id}"), None).await;

    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json["token"]["status"], "failed");
    let message = r.json["token"]["message"].as_str().unwrap();
    assert!(message.contains("could not be revoked"), "{message}");
    assert!(message.contains("Connected Apps OAuth Usage"), "{message}");
    assert!(!message.contains(&token));
    assert_eq!(w.data_points.count_data_points(&id).await.unwrap(), 0);
    assert!(w.secrets.get_refresh_token(&id).await.unwrap().is_none());
    assert!(w.connections.get_connection(&id).await.unwrap().is_none());
}

#[tokio::test]
async fn delete_waits_for_a_running_sync_and_deletes_nothing_while_it_runs() {
    let w = world().await;
    let id = connected(&w, "").await;
    w.seed_points(&id, 3).await;
    // A worker holds the sync lease.
    let now = Utc::now();
    assert!(
        w.connections
            .try_acquire_lease(&id, "worker-1", now, now + TimeDelta::minutes(10))
            .await
            .unwrap()
    );

    let r = w.call("DELETE", &format!("/connections/{id}"), None).await;

    r.error(409, "sync_running");
    let c = w.connections.get_connection(&id).await.unwrap().unwrap();
    assert_eq!(c.state, ConnectionState::Disconnected, "so the sync stops");
    assert_eq!(w.data_points.count_data_points(&id).await.unwrap(), 3);
    assert!(w.secrets.get_refresh_token(&id).await.unwrap().is_some());

    // Once the worker lets go, the delete goes through.
    w.connections.release_lease(&id, "worker-1").await.unwrap();
    let r = w.call("DELETE", &format!("/connections/{id}"), None).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(w.connections.get_connection(&id).await.unwrap().is_none());
}
