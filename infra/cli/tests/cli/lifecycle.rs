//! `casesync disconnect` and `casesync delete`.

use crate::support::*;

#[tokio::test(flavor = "multi_thread")]
async fn a_disconnected_connection_keeps_its_data_and_imports_nothing_new() {
    // Given a synced connection
    let (mut org, queue) = org_with_queue();
    closed_cases(&mut org, &queue, 3, 60);
    let env = TestEnv::start(org).await;
    let id = env.connect(&["--backfill", "7d"]).await;
    env.sync().await.assert_code(0);

    // When it is disconnected
    let out = env.run(&["disconnect", &id]).await;

    // Then it says what happens to the data
    out.assert_code(0);
    assert!(
        out.stdout.contains("no new data will be imported"),
        "{out:?}"
    );
    assert!(
        out.stdout.contains("3 data points already imported stay"),
        "{out:?}"
    );
    assert_eq!(env.status_of(&id).await["state"], "disconnected");

    // And later syncs, of all connections or of this one, import nothing new
    env.sim
        .with_org(|o| closed_case(o, &queue, minutes_ago(30), "after the disconnect"));
    let calls = env.sim.stats().data_calls;
    let all = env.sync().await;
    all.assert_code(0);
    assert!(all.stdout.contains("No active connections"), "{all:?}");
    let named = env.run(&["sync", &id]).await;
    named.assert_code(0);
    assert!(
        named.stdout.contains("not synced: disconnected"),
        "{named:?}"
    );
    assert_eq!(env.sim.stats().data_calls, calls);
    assert_eq!(env.export().await.len(), 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn delete_revokes_the_token_and_removes_the_data_points_and_the_secret() {
    // Given a synced connection and a second one that must survive
    let (mut org, queue) = org_with_queue();
    closed_cases(&mut org, &queue, 3, 60);
    let env = TestEnv::start(org).await;
    let token = env.sim.mint_refresh_token();
    let id = env.connect_with_token(&token, &["--backfill", "7d"]).await;
    let other = env.connect(&["--backfill", "7d"]).await;
    env.sync().await.assert_code(0);
    assert!(env.sim.is_token_active(&token));

    // When deleting without --yes and without a terminal
    let before = env.observable_state().await;
    let refused = env.run(&["delete", &id]).await;

    // Then it refuses, in one line, and changes nothing
    refused.assert_code(2);
    assert_eq!(refused.stderr.trim().lines().count(), 1, "{refused:?}");
    assert!(refused.stderr.contains("--yes"));
    assert_eq!(env.observable_state().await, before);

    // When deleting with --yes
    let out = env.run(&["delete", &id, "--yes"]).await;

    // Then it says it is permanent, the token is revoked at Salesforce and everything is gone
    out.assert_code(0);
    assert!(out.stdout.contains("permanently") && out.stdout.contains("cannot be undone"));
    assert!(out.stdout.contains("3 data points removed"), "{out:?}");
    assert!(!env.sim.is_token_active(&token));
    assert_eq!(env.sim.stats().revokes, 1);
    let status = env.status().await;
    assert_eq!(status.len(), 1);
    assert_eq!(status[0]["id"], other.as_str());
    let points = env.export().await;
    assert!(points.iter().all(|p| p["connection_id"] == other.as_str()));
    assert_eq!(points.len(), 3);
    let gone = env.run(&["export", "--connection", &id]).await;
    gone.assert_code(2);
    let secrets = std::fs::read(env.secrets_file()).unwrap();
    assert_eq!(occurrences(&secrets, id.as_bytes()), 0);
    assert_eq!(occurrences(&secrets, other.as_bytes()), 1);
    for file in files_under(&env.data_dir) {
        let bytes = std::fs::read(&file).unwrap();
        assert_eq!(
            occurrences(&bytes, token.as_bytes()),
            0,
            "{} still holds the deleted token",
            file.display()
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn delete_goes_on_when_salesforce_cannot_revoke_and_says_so() {
    // Given a connection whose login host refuses the revoke (an error that is not retried, to
    // keep the test fast)
    let (mut org, queue) = org_with_queue();
    closed_cases(&mut org, &queue, 2, 60);
    let env = TestEnv::start(org).await;
    let token = env.sim.mint_refresh_token();
    let id = env.connect_with_token(&token, &["--backfill", "7d"]).await;
    env.sync().await.assert_code(0);
    assert_eq!(env.export().await.len(), 2);
    env.sim.inject(sf_simulator::FaultRule::always(
        sf_simulator::FaultTarget::Revoke,
        sf_simulator::FaultKind::InvalidGrant,
    ));

    // When deleting
    let out = env.run(&["delete", &id, "--yes"]).await;

    // Then, by the one delete policy (casesync_core::manage), every data point, the stored
    // token and the connection are gone, and the output says the token may still be valid at
    // Salesforce and where to revoke it
    out.assert_code(0);
    assert!(
        out.stdout.contains("WARNING") && out.stdout.contains("could not be revoked"),
        "{out:?}"
    );
    assert!(out.stdout.contains("Connected Apps OAuth Usage"), "{out:?}");
    assert!(env.status().await.is_empty());
    assert!(env.export().await.is_empty());
    let secrets = std::fs::read(env.secrets_file()).unwrap();
    assert_eq!(occurrences(&secrets, id.as_bytes()), 0);
    assert_eq!(occurrences(&secrets, token.as_bytes()), 0);
    // (the simulator still holds the grant: nobody here does)
    assert!(env.sim.is_token_active(&token));
}
