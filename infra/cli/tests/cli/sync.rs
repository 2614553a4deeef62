//! `casesync sync`: what it imports, incrementally; continuations; re-authorization; --watch.

use std::collections::BTreeSet;
use std::time::Duration;

use chrono::TimeDelta;
use sf_simulator::{NewCase, SimConfig};

use crate::support::*;

fn case_ids(points: &[serde_json::Value]) -> BTreeSet<String> {
    points
        .iter()
        .map(|p| p["case_id"].as_str().unwrap()[..15].to_owned())
        .collect()
}

fn short(ids: &[String]) -> BTreeSet<String> {
    ids.iter().map(|id| id[..15].to_owned()).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sync_imports_each_closed_queue_case_of_the_window_once() {
    // Given closed queue Cases in the window, and Cases that must not be imported
    let (mut org, queue) = org_with_queue();
    let agent = org.add_user("Maria Lopez");
    let wanted = closed_cases(&mut org, &queue, 5, 60);
    closed_case(&mut org, &agent, minutes_ago(50), "owned by an agent");
    closed_case(
        &mut org,
        &queue,
        minutes_ago(60 * 24 * 10),
        "before the window",
    );
    org.add_case(NewCase {
        status: "Working".into(),
        owner_id: Some(queue.clone()),
        system_modstamp: Some(minutes_ago(40)),
        ..NewCase::default()
    });
    let env = TestEnv::start(org).await;
    let id = env.connect(&["--backfill", "7d"]).await;

    // When it syncs
    let out = env.sync().await;

    // Then exactly the closed queue Cases of the last 7 days are data points
    out.assert_code(0);
    assert!(
        out.stdout.contains(&id) && out.stdout.contains("5 new"),
        "{out:?}"
    );
    let points = env.export().await;
    assert_eq!(points.len(), 5);
    assert_eq!(case_ids(&points), short(&wanted));
    let s = env.status_of(&id).await;
    assert_eq!(s["data_points"], 5);
    assert_eq!(s["last_sync"]["outcome"], "done");

    // And a second sync finds nothing new and writes nothing
    let again = env.sync().await;
    again.assert_code(0);
    assert!(again.stdout.contains("0 new, 0 updated"), "{again:?}");
    assert_eq!(env.export().await.len(), 5);
    assert_eq!(env.sim.stats().write_attempts, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reclosed_and_an_edited_case_are_updated_not_duplicated_and_unchanged_ones_are_not_rewritten()
 {
    // Given two imported Cases
    let (mut org, queue) = org_with_queue();
    let a = closed_case(&mut org, &queue, minutes_ago(120), "first version");
    let b = closed_case(
        &mut org,
        &queue,
        minutes_ago(120) + TimeDelta::seconds(1),
        "b",
    );
    let c = closed_case(
        &mut org,
        &queue,
        minutes_ago(120) + TimeDelta::seconds(2),
        "c",
    );
    let env = TestEnv::start(org).await;
    let id = env.connect(&["--backfill", "7d"]).await;
    env.sync().await.assert_code(0);
    assert_eq!(env.export().await.len(), 3);

    // When one is reopened and closed again with a new subject, and another is edited
    env.sim.with_org(|o| {
        o.reopen_case(&a, minutes_ago(60));
        o.update_case(&a, |c| c.subject = Some("second version".into()));
        o.close_case(&a, minutes_ago(30));
        o.update_case(&b, |c| {
            c.priority = Some("Low".into());
            c.system_modstamp = minutes_ago(20);
        });
    });
    let out = env.sync().await;

    // Then both data points are updated in place, none added, the third untouched
    out.assert_code(0);
    let s = env.status_of(&id).await;
    let counts = &s["last_sync"]["counts"];
    assert_eq!(
        (counts["created"].as_u64(), counts["updated"].as_u64()),
        (Some(0), Some(2)),
        "{s}"
    );
    let points = env.export().await;
    assert_eq!(points.len(), 3);
    let by_id = |case: &str| {
        points
            .iter()
            .find(|p| p["case_id"].as_str().unwrap().starts_with(&case[..15]))
            .unwrap()
            .clone()
    };
    assert_eq!(by_id(&a)["subject"], "second version");
    assert_eq!(by_id(&b)["priority"], "Low");
    assert_eq!(by_id(&c)["subject"], "c");

    // When the backfill widens (configure restarts the cursor at the new window's start)
    let configured = env.run(&["configure", &id, "--backfill", "90d"]).await;
    configured.assert_code(0);
    assert!(
        configured.stdout.contains("not rewritten"),
        "{configured:?}"
    );
    let out = env.sync().await;

    // Then every Case is read again and none is rewritten
    out.assert_code(0);
    let s = env.status_of(&id).await;
    let counts = &s["last_sync"]["counts"];
    assert_eq!(counts["fetched"], 3, "{s}");
    assert_eq!(counts["unchanged"], 3, "{s}");
    assert_eq!(
        counts["created"].as_u64().unwrap() + counts["updated"].as_u64().unwrap(),
        0
    );
    assert_eq!(env.export().await, points);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_backfill_longer_than_the_run_budget_continues_in_new_runs() {
    // Given a slow org with more pages than one run's budget allows
    let (mut org, queue) = org_with_queue();
    let ids = closed_cases(&mut org, &queue, 100, 300);
    let env = TestEnv::start_with(
        SimConfig {
            latency: Duration::from_millis(300),
            page_size_cap: Some(20),
            ..sim_config()
        },
        org,
    )
    .await;
    env.connect(&["--backfill", "7d"]).await;

    // When it syncs with a one-second budget per run
    let out = env.run(&["sync", "--run-budget", "1"]).await;

    // Then continuation runs finish the backfill, each Case once
    out.assert_code(0);
    assert!(out.stdout.contains(" runs "), "{out:?}");
    let points = env.export().await;
    assert_eq!(points.len(), 100);
    assert_eq!(case_ids(&points), short(&ids));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_refused_token_exits_3_and_re_authorizing_resumes_from_the_kept_cursor() {
    // Given a synced connection, new Cases, and then every token revoked in Salesforce
    let (mut org, queue) = org_with_queue();
    closed_cases(&mut org, &queue, 3, 120);
    let env = TestEnv::start(org).await;
    let id = env.connect(&["--backfill", "7d"]).await;
    env.sync().await.assert_code(0);
    let cursor = env.status_of(&id).await["cursor"].clone();
    let new = env.sim.with_org(|o| closed_cases(o, &queue, 2, 30));
    env.sim.revoke_all_tokens();

    // When it syncs
    let out = env.sync().await;

    // Then it exits 3, says how to fix it, and keeps the cursor
    out.assert_code(3);
    assert!(out.stdout.contains("needs re-authorization"), "{out:?}");
    assert!(
        out.stdout
            .contains(&format!("casesync connect --reauthorize {id}"))
    );
    let s = env.status_of(&id).await;
    assert_eq!(s["state"], "needs_reauth");
    assert_eq!(s["cursor"], cursor);
    assert!(
        s["last_error"]
            .as_str()
            .unwrap()
            .contains("authorized again"),
        "{s}"
    );
    // ... and keeps exiting 3 without calling Salesforce until it is fixed
    let calls = env.sim.stats().data_calls;
    env.sync().await.assert_code(3);
    assert_eq!(env.sim.stats().data_calls, calls);

    // When the connection is re-authorized with a new refresh token
    let token = env.sim.mint_refresh_token();
    let file = env.token_file(&token);
    let re = env
        .run(&[
            "connect",
            "--reauthorize",
            &id,
            "--refresh-token-file",
            file.to_str().unwrap(),
        ])
        .await;
    re.assert_code(0);
    assert_eq!(re.last_stdout_line(), id);

    // Then the next sync resumes from the kept cursor and imports only the new Cases
    let out = env.sync().await;
    out.assert_code(0);
    let s = env.status_of(&id).await;
    assert_eq!(s["state"], "active");
    assert_eq!(
        s["last_sync"]["cursor_before"]["system_modstamp"],
        cursor["system_modstamp"]
    );
    assert_eq!(s["last_sync"]["counts"]["created"], 2, "{s}");
    let points = env.export().await;
    assert_eq!(points.len(), 5);
    assert!(short(&new).is_subset(&case_ids(&points)));
}

#[tokio::test(flavor = "multi_thread")]
async fn watch_keeps_syncing_until_interrupted() {
    // Given a connection synced every second
    let (mut org, queue) = org_with_queue();
    closed_cases(&mut org, &queue, 2, 60);
    let env = TestEnv::start(org).await;
    env.connect(&["--backfill", "7d"]).await;
    let running = Running::start(env.casesync(&["sync", "--watch", "--interval", "1"]));
    running.stdout_line(|l| l.contains("2 new")).await;

    // When a Case closes between two ticks
    env.sim
        .with_org(|o| closed_case(o, &queue, minutes_ago(30), "later"));

    // Then a later tick imports it
    running.stdout_line(|l| l.contains("1 new")).await;

    // And Ctrl-C stops it cleanly
    running.interrupt();
    let out = running.finish().await;
    out.assert_code(0);
    assert_eq!(env.export().await.len(), 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_org_near_its_api_limit_exits_1_and_a_later_sync_resumes() {
    // Given an org that has used 90 % of its daily API allotment (casesync stops above 80 %)
    let (mut org, queue) = org_with_queue();
    closed_cases(&mut org, &queue, 3, 60);
    let env = TestEnv::start_with(
        SimConfig {
            page_size_cap: Some(1),
            ..sim_config()
        },
        org,
    )
    .await;
    let id = env.connect(&["--backfill", "7d"]).await;
    env.sim.set_api_usage(90_000);

    // When it syncs
    let out = env.sync().await;

    // Then it stops, exits 1 (the contract's "another failure") and says a later sync resumes
    out.assert_code(1);
    assert!(
        out.stdout.contains("stopped by Salesforce's API limit"),
        "{out:?}"
    );
    assert!(out.stdout.contains("a later sync resumes"));
    let s = env.status_of(&id).await;
    assert_eq!(s["last_sync"]["outcome"], "rate_limited");
    assert_eq!(s["data_points"], 1, "one page, then it stopped: {s}");

    // And once usage falls, the next sync imports everything
    env.sim.set_api_usage(0);
    env.sync().await.assert_code(0);
    assert_eq!(env.export().await.len(), 3);
}
