//! Two `casesync sync` processes on one data dir: the lease keeps them apart, the
//! compare-and-swap cursor keeps it valid, no Case is imported twice.

use std::collections::BTreeSet;
use std::time::Duration;

use sf_simulator::SimConfig;

use crate::support::*;

/// The cursor `status --json` shows must be the last Case's position.
async fn assert_cursor_at(env: &TestEnv, id: &str, last_case: &str) {
    let s = env.status_of(id).await;
    let modstamp = env
        .sim
        .with_org(|o| o.case(last_case).unwrap().system_modstamp);
    assert_eq!(
        s["cursor"]["system_modstamp"],
        casesync_core::data_point::rfc3339::format(&modstamp)
    );
    assert_eq!(
        s["cursor"]["case_id"].as_str().unwrap()[..15],
        last_case[..15]
    );
}

fn assert_each_case_once(points: &[serde_json::Value], ids: &[String]) {
    let seen: Vec<&str> = points
        .iter()
        .map(|p| &p["case_id"].as_str().unwrap()[..15])
        .collect();
    let unique: BTreeSet<&str> = seen.iter().copied().collect();
    assert_eq!(seen.len(), unique.len(), "a Case was imported twice");
    let wanted: BTreeSet<&str> = ids.iter().map(|id| &id[..15]).collect();
    assert_eq!(unique, wanted);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_second_sync_while_one_runs_says_it_is_synced_elsewhere() {
    // Given a slow backfill in progress in one process
    let (mut org, queue) = org_with_queue();
    let ids = closed_cases(&mut org, &queue, 200, 600);
    let env = TestEnv::start_with(
        SimConfig {
            latency: Duration::from_millis(200),
            page_size_cap: Some(20),
            ..sim_config()
        },
        org,
    )
    .await;
    let id = env.connect(&["--backfill", "7d"]).await;
    let first = Running::start(env.casesync(&["sync"]));
    first.stderr_line(|l| l.contains("Cases read")).await;

    // When a second process syncs the same data dir
    let second = env.sync().await;

    // Then it says the connection is being synced elsewhere, and succeeds
    second.assert_code(0);
    assert!(
        second
            .stdout
            .contains("being synced by another casesync process"),
        "{second:?}"
    );
    let first = first.finish().await;
    first.assert_code(0);
    assert!(first.stdout.contains("200 new"), "{first:?}");
    assert_each_case_once(&env.export().await, &ids);
    assert_cursor_at(&env, &id, ids.last().unwrap()).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn racing_watchers_with_short_runs_never_import_a_case_twice_and_give_their_leases_back() {
    // Given a backfill that needs many short runs
    let (mut org, queue) = org_with_queue();
    let ids = closed_cases(&mut org, &queue, 150, 600);
    let env = TestEnv::start_with(
        SimConfig {
            latency: Duration::from_millis(60),
            page_size_cap: Some(10),
            ..sim_config()
        },
        org,
    )
    .await;
    let id = env.connect(&["--backfill", "7d"]).await;

    // When three processes keep syncing it, each run handing over after a second
    let racers: Vec<Running> = (0..3)
        .map(|_| {
            Running::start(env.casesync(&[
                "sync",
                "--watch",
                "--interval",
                "1",
                "--run-budget",
                "1",
            ]))
        })
        .collect();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while env.status_of(&id).await["data_points"] != 150 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the backfill did not finish"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // ... and are stopped with Ctrl-C, some of them in the middle of a run
    for r in &racers {
        r.interrupt();
    }
    for r in racers {
        r.finish().await.assert_code(0);
    }

    // Then nothing is duplicated, the cursor ends on the last Case, and no lease was left behind
    assert_each_case_once(&env.export().await, &ids);
    let last = env.sync().await;
    last.assert_code(0);
    assert!(last.stdout.contains("0 new, 0 updated"), "{last:?}");
    assert_cursor_at(&env, &id, ids.last().unwrap()).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_interrupted_sync_gives_its_lease_back_and_the_next_one_resumes() {
    // Given a slow backfill in progress
    let (mut org, queue) = org_with_queue();
    let ids = closed_cases(&mut org, &queue, 200, 600);
    let env = TestEnv::start_with(
        SimConfig {
            latency: Duration::from_millis(200),
            page_size_cap: Some(20),
            ..sim_config()
        },
        org,
    )
    .await;
    let id = env.connect(&["--backfill", "7d"]).await;
    let running = Running::start(env.casesync(&["sync"]));
    running.stderr_line(|l| l.contains("Cases read")).await;

    // When it is interrupted with Ctrl-C
    running.interrupt();
    let out = running.finish().await;

    // Then it exits 130 saying the saved pages stay
    out.assert_code(130);
    assert!(out.stderr.contains("resumes from there"), "{out:?}");
    let saved = env.status_of(&id).await["data_points"].as_u64().unwrap();
    assert!(saved < 200, "interrupted before the end");

    // And the next sync is not locked out: it resumes and finishes
    env.sim.set_latency(Duration::ZERO);
    let next = env.sync().await;
    next.assert_code(0);
    assert!(
        !next.stdout.contains("another casesync process"),
        "{next:?}"
    );
    assert_each_case_once(&env.export().await, &ids);
    assert_cursor_at(&env, &id, ids.last().unwrap()).await;
}
