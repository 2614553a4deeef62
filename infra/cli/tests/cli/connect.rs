//! `casesync connect`: headless with a refresh token, and the browser flow on loopback.

use std::os::unix::fs::PermissionsExt;

use crate::support::*;

#[tokio::test(flavor = "multi_thread")]
async fn a_headless_connect_exchanges_the_refresh_token_and_prints_the_connection_id() {
    // Given an org and a refresh token obtained elsewhere
    let (org, queue) = org_with_queue();
    let env = TestEnv::start(org).await;
    let token = env.sim.mint_refresh_token();

    // When connecting with it
    let file = env.token_file(&token);
    let out = env
        .run(&[
            "connect",
            "--login-url",
            &env.sim.login_url(),
            "--client-id",
            &env.sim.client_id(),
            "--refresh-token-file",
            file.to_str().unwrap(),
            "--channel",
            "support-eu",
            "--queues",
            &queue,
            "--backfill",
            "90d",
        ])
        .await;

    // Then the new connection's id is alone on the last line of stdout
    out.assert_code(0);
    let id = out.last_stdout_line();
    assert!(id.starts_with("conn_") && id.len() == 37, "{out:?}");
    // ... it took the instance URL from the token endpoint's answer
    assert_eq!(env.sim.stats().token_refresh, 1);
    let s = env.status_of(id).await;
    assert_eq!(s["state"], "active");
    assert_eq!(s["channel"], "support-eu");
    assert_eq!(s["backfill"], "90d");
    assert_eq!(s["instance_url"], env.sim.instance_url());
    assert_eq!(s["queues"].as_str().unwrap()[..15], queue[..15]);
    // ... and the token sits in the 0600 secrets file
    let secrets = env.secrets_file();
    let mode = std::fs::metadata(&secrets).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    assert_eq!(
        occurrences(&std::fs::read(&secrets).unwrap(), token.as_bytes()),
        1
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_browser_flow_uses_pkce_and_refuses_a_callback_whose_state_is_forged() {
    // Given `casesync connect` waiting for its callback on a loopback port
    let (org, _) = org_with_queue();
    let env = TestEnv::start(org).await;
    let port = free_port();
    let running = Running::start(env.casesync(&[
        "connect",
        "--login-url",
        &env.sim.login_url(),
        "--client-id",
        &env.sim.client_id(),
        "--redirect-port",
        &port.to_string(),
        "--backfill",
        "7d",
    ]));
    let line = running
        .stderr_line(|l| l.contains("/services/oauth2/authorize?"))
        .await;
    let authorize = url::Url::parse(line.trim()).expect("the authorize URL");
    let param = |k: &str| {
        authorize
            .query_pairs()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.into_owned())
    };
    assert_eq!(
        param("redirect_uri").as_deref(),
        Some(format!("http://127.0.0.1:{port}/callback").as_str())
    );
    assert_eq!(param("code_challenge_method").as_deref(), Some("S256"));
    assert!(param("code_challenge").is_some_and(|c| c.len() >= 43));
    assert!(param("state").is_some_and(|s| s.len() >= 32));

    // When a callback with a forged state arrives first
    let forged = reqwest::get(format!(
        "http://127.0.0.1:{port}/callback?code=stolen-code&state=forged-state"
    ))
    .await
    .unwrap();

    // Then it gets an error page, and casesync keeps waiting
    assert_eq!(forged.status(), 400);
    assert!(forged.text().await.unwrap().contains("does not match"));
    running
        .stderr_line(|l| l.contains("state does not match"))
        .await;

    // When the user's browser follows the authorize URL (the simulator approves and redirects)
    let page = reqwest::get(authorize.as_str()).await.unwrap();

    // Then the callback completes the flow
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains("connected"));
    let out = running.finish().await;
    out.assert_code(0);
    let id = out.last_stdout_line();
    assert!(id.starts_with("conn_"), "{out:?}");
    // Only the real code was exchanged: the forged one never reached Salesforce
    assert_eq!(env.sim.stats().token_code, 1);
    let s = env.status_of(id).await;
    assert_eq!(s["state"], "active");
    assert_eq!(s["backfill"], "7d");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_declined_authorization_connects_nothing() {
    // Given a user who declines access in Salesforce
    let (org, _) = org_with_queue();
    let env = TestEnv::start_with(
        sf_simulator::SimConfig {
            authorize_mode: sf_simulator::AuthorizeMode::Deny,
            ..sim_config()
        },
        org,
    )
    .await;
    let port = free_port();
    let running = Running::start(env.casesync(&[
        "connect",
        "--login-url",
        &env.sim.login_url(),
        "--client-id",
        &env.sim.client_id(),
        "--redirect-port",
        &port.to_string(),
    ]));
    let line = running
        .stderr_line(|l| l.contains("/services/oauth2/authorize?"))
        .await;

    // When the browser comes back with access_denied
    let page = reqwest::get(line.trim()).await.unwrap();

    // Then the page and the command say so, and no connection exists
    assert_eq!(page.status(), 400);
    let out = running.finish().await;
    out.assert_code(1);
    assert!(out.stderr.contains("declined"), "{out:?}");
    assert!(env.status().await.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn re_authorizing_revokes_the_superseded_refresh_token() {
    // Given a connection whose refresh token still works
    let (org, _) = org_with_queue();
    let env = TestEnv::start(org).await;
    let old = env.sim.mint_refresh_token();
    let id = env.connect_with_token(&old, &["--backfill", "7d"]).await;
    assert!(env.sim.is_token_active(&old));

    // When it is re-authorized with a new refresh token
    let new = env.sim.mint_refresh_token();
    let file = env.token_file(&new);
    let out = env
        .run(&[
            "connect",
            "--reauthorize",
            &id,
            "--refresh-token-file",
            file.to_str().unwrap(),
        ])
        .await;

    // Then the old grant is revoked at Salesforce and only the new one is stored
    out.assert_code(0);
    assert!(
        out.stderr.contains("previous refresh token was revoked"),
        "{out:?}"
    );
    assert!(
        !env.sim.is_token_active(&old),
        "the superseded grant is revoked"
    );
    assert!(env.sim.is_token_active(&new));
    let secrets = std::fs::read(env.secrets_file()).unwrap();
    assert_eq!(occurrences(&secrets, old.as_bytes()), 0);
    assert_eq!(occurrences(&secrets, new.as_bytes()), 1);
}
