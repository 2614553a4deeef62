//! `casesync doctor`: a healthy org, and the usual reasons nothing imports.

use crate::support::*;

#[tokio::test(flavor = "multi_thread")]
async fn a_healthy_connection_passes_every_check() {
    // Given closed queue Cases in the window
    let (mut org, queue) = org_with_queue();
    closed_cases(&mut org, &queue, 4, 60);
    let env = TestEnv::start(org).await;
    let id = env.connect(&["--backfill", "7d"]).await;

    // When the doctor runs
    let out = env.run(&["doctor", &id]).await;

    // Then every check passes and says what it found
    out.assert_code(0);
    assert!(out.stdout.contains("[ ok ] refresh token"), "{out:?}");
    assert!(out.stdout.contains("[ ok ] object access"));
    assert!(out.stdout.contains("[ ok ] queues"));
    assert!(out.stdout.contains("4 closed Cases in scope"));
    assert!(out.stdout.contains("[ ok ] API usage"));
    assert!(!out.stdout.contains("[FAIL]"));
}

#[tokio::test(flavor = "multi_thread")]
async fn closed_cases_owned_by_users_are_named_as_the_reason_nothing_imports() {
    // Given an org whose closed Cases all belong to agents, not queues
    let (mut org, _queue) = org_with_queue();
    let agent = org.add_user("Sam Carter");
    closed_cases(&mut org, &agent, 3, 60);
    let env = TestEnv::start(org).await;
    let id = env.connect(&["--backfill", "7d"]).await;

    // When the doctor runs
    let out = env.run(&["doctor", &id]).await;

    // Then the check fails, explaining why and how to fix it
    out.assert_code(1);
    assert!(out.stdout.contains("[FAIL] matching Cases"), "{out:?}");
    assert!(out.stdout.contains("0 closed Cases in scope"));
    assert!(
        out.stdout
            .contains("3 closed Cases in that window are owned by users")
    );
    assert!(
        out.stdout
            .contains("fix: Closed Cases in this org are owned by agents")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_inaccessible_email_message_object_fails_the_access_check() {
    // Given an integration user who cannot read EmailMessage
    let (mut org, queue) = org_with_queue();
    closed_cases(&mut org, &queue, 2, 60);
    org.permissions.email_message_accessible = false;
    let env = TestEnv::start(org).await;
    let id = env.connect(&["--backfill", "7d"]).await;

    // When the doctor runs
    let out = env.run(&["doctor", &id, "--json"]).await;

    // Then the object access check fails, naming EmailMessage
    out.assert_code(1);
    let report: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(report["healthy"], false);
    let access = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "object access")
        .unwrap();
    assert_eq!(access["status"], "failed");
    assert!(access["detail"].as_str().unwrap().contains("EmailMessage"));
    assert!(access["fix"].as_str().unwrap().contains("Email Messages"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_selected_queue_that_does_not_exist_is_reported() {
    // Given a connection configured with a queue id the org does not have
    let (mut org, queue) = org_with_queue();
    closed_cases(&mut org, &queue, 2, 60);
    let env = TestEnv::start(org).await;
    let id = env.connect(&["--backfill", "7d"]).await;
    let missing = "00Gxx000000ZZZZ";
    env.run(&["configure", &id, "--queues", &format!("{queue},{missing}")])
        .await
        .assert_code(0);

    // When the doctor runs
    let out = env.run(&["doctor", &id]).await;

    // Then the queue check names the missing queue and points at `casesync queues`
    out.assert_code(1);
    assert!(out.stdout.contains("[FAIL] queues"), "{out:?}");
    assert!(out.stdout.contains(missing));
    assert!(out.stdout.contains("casesync queues"));
}

#[tokio::test(flavor = "multi_thread")]
async fn queues_lists_what_the_user_can_see() {
    let (mut org, queue) = org_with_queue();
    org.add_queue("Billing", "Billing");
    let env = TestEnv::start(org).await;
    let id = env.connect(&[]).await;

    let out = env.run(&["queues", &id, "--json"]).await;

    out.assert_code(0);
    let queues: Vec<serde_json::Value> = serde_json::from_str(&out.stdout).unwrap();
    let names: Vec<&str> = queues.iter().map(|q| q["name"].as_str().unwrap()).collect();
    assert_eq!(names.len(), 2, "{names:?}");
    assert!(names.contains(&"Tier 1 Support") && names.contains(&"Billing"));
    assert!(
        queues
            .iter()
            .any(|q| q["id"].as_str().unwrap()[..15] == queue[..15])
    );
}
