//! Bad input gets one line naming the problem, a non-zero exit, and changes nothing: it is
//! refused before any write or network call.

use crate::support::*;

const UNKNOWN: &str = "conn_00000000000000000000000000000000";

#[track_caller]
fn assert_refused(out: &Output, mentions: &str) {
    assert_eq!(out.code, 2, "{out:?}");
    let lines: Vec<&str> = out.stderr.trim().lines().collect();
    assert_eq!(lines.len(), 1, "one line: {out:?}");
    assert!(lines[0].starts_with("error:"), "{out:?}");
    assert!(
        lines[0].contains(mentions),
        "the error names {mentions:?}: {out:?}"
    );
    assert!(out.stdout.is_empty(), "{out:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_input_on_an_existing_data_dir_is_refused_and_changes_nothing() {
    // Given a data dir with a synced connection
    let (mut org, queue) = org_with_queue();
    closed_cases(&mut org, &queue, 2, 60);
    let env = TestEnv::start(org).await;
    let id = env.connect(&["--backfill", "7d"]).await;
    env.sync().await.assert_code(0);
    let login = env.sim.login_url();
    let client = env.sim.client_id();
    let token = env.token_file(&env.sim.mint_refresh_token());
    let token = token.to_str().unwrap();
    let empty = env.token_file("");
    let empty = empty.to_str().unwrap();
    let dir = env.tmp.path().to_str().unwrap().to_owned();
    let connect = |extra: &[&str]| -> Vec<String> {
        let mut v: Vec<String> = [
            "connect",
            "--login-url",
            &login,
            "--client-id",
            &client,
            "--refresh-token-file",
            token,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        v.extend(extra.iter().map(|s| s.to_string()));
        v
    };
    let owned = |args: &[&str]| args.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let cases: Vec<(Vec<String>, bool, &str)> = vec![
        (connect(&["--backfill", "14d"]), true, "14d"),
        (
            connect(&["--queues", "00Gxx000000AAAA,00G'x"]),
            true,
            "queue id",
        ),
        (connect(&["--api-version", "5.0"]), true, "API version"),
        (connect(&["--channel", ""]), true, "channel"),
        (
            owned(&[
                "connect",
                "--login-url",
                "http://example.com",
                "--client-id",
                &client,
            ]),
            true,
            "http://example.com",
        ),
        (
            owned(&[
                "connect",
                "--login-url",
                "https://login.salesforce.com.evil.com",
                "--client-id",
                &client,
            ]),
            true,
            "not allowed",
        ),
        (connect(&[]), false, "CASESYNC_CLIENT_SECRET"),
        (
            owned(&[
                "connect",
                "--login-url",
                &login,
                "--client-id",
                &client,
                "--refresh-token-file",
                "/nonexistent/token",
            ]),
            true,
            "/nonexistent/token",
        ),
        (
            owned(&[
                "connect",
                "--login-url",
                &login,
                "--client-id",
                &client,
                "--refresh-token-file",
                &dir,
            ]),
            true,
            "not a file",
        ),
        (
            owned(&[
                "connect",
                "--login-url",
                &login,
                "--client-id",
                &client,
                "--refresh-token-file",
                empty,
            ]),
            true,
            "empty",
        ),
        (
            owned(&[
                "connect",
                "--reauthorize",
                UNKNOWN,
                "--refresh-token-file",
                token,
            ]),
            true,
            UNKNOWN,
        ),
        (
            owned(&["configure", UNKNOWN, "--backfill", "7d"]),
            true,
            UNKNOWN,
        ),
        (owned(&["configure", &id, "--backfill", "1y"]), true, "1y"),
        (
            owned(&["configure", &id, "--queues", "not-a-queue"]),
            true,
            "queue id",
        ),
        (owned(&["configure", &id]), true, "required"),
        (owned(&["sync", UNKNOWN]), true, UNKNOWN),
        (owned(&["sync", "conn_nothex"]), true, "connection id"),
        (owned(&["sync"]), false, "CASESYNC_CLIENT_SECRET"),
        (owned(&["sync", "--run-budget", "0"]), true, "run-budget"),
        (owned(&["sync", "--batch-size", "100"]), true, "batch size"),
        (owned(&["sync", "--slices", "9"]), true, "slices"),
        (
            owned(&["sync", "--batch-size", "5000"]),
            true,
            "200 to 2000",
        ),
        (owned(&["export", "--connection", UNKNOWN]), true, UNKNOWN),
        (owned(&["export", "--format", "xml"]), true, "xml"),
        (owned(&["queues", &id]), false, "CASESYNC_CLIENT_SECRET"),
        (owned(&["doctor", UNKNOWN]), true, UNKNOWN),
        (owned(&["doctor", &id]), false, "CASESYNC_CLIENT_SECRET"),
        (owned(&["disconnect", UNKNOWN]), true, UNKNOWN),
        (owned(&["delete", UNKNOWN, "--yes"]), true, UNKNOWN),
        (owned(&["delete", &id]), true, "--yes"),
        (owned(&["frobnicate"]), true, "frobnicate"),
    ];
    let before = env.observable_state().await;
    let calls_before = env.sim.stats();

    for (args, with_secret, mentions) in &cases {
        // When the command runs
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let cmd = env.casesync(&args);
        let cmd = if *with_secret {
            cmd
        } else {
            cmd.without_secret()
        };
        let out = cmd.output().await;

        // Then it is refused in one line naming the problem
        assert_refused(&out, mentions);
    }

    // And nothing changed: no state, no call to Salesforce
    assert_eq!(env.observable_state().await, before);
    let calls = env.sim.stats();
    assert_eq!(calls.data_calls, calls_before.data_calls);
    assert_eq!(calls.token_refresh, calls_before.token_refresh);
    assert_eq!(calls.revokes, calls_before.revokes);
    assert_eq!(env.status_of(&id).await["state"], "active");
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_input_on_a_fresh_machine_creates_no_data_dir() {
    let (org, _) = org_with_queue();
    let env = TestEnv::start(org).await;
    let login = env.sim.login_url();
    let client = env.sim.client_id();
    let token = env.token_file(&env.sim.mint_refresh_token());
    let token = token.to_str().unwrap();
    let cases: Vec<(Vec<&str>, bool, &str)> = vec![
        (
            vec![
                "connect",
                "--login-url",
                &login,
                "--client-id",
                &client,
                "--refresh-token-file",
                token,
                "--backfill",
                "2w",
            ],
            true,
            "2w",
        ),
        (
            vec![
                "connect",
                "--login-url",
                &login,
                "--client-id",
                &client,
                "--refresh-token-file",
                token,
            ],
            false,
            "CASESYNC_CLIENT_SECRET",
        ),
        (
            vec![
                "connect",
                "--login-url",
                &login,
                "--client-id",
                &client,
                "--refresh-token-file",
                "/nonexistent",
            ],
            true,
            "/nonexistent",
        ),
        (vec!["sync", UNKNOWN], true, UNKNOWN),
        (vec!["export", "--connection", UNKNOWN], true, UNKNOWN),
        (vec!["doctor", UNKNOWN], true, UNKNOWN),
    ];
    for (args, with_secret, mentions) in cases {
        let cmd = env.casesync(&args);
        let cmd = if with_secret {
            cmd
        } else {
            cmd.without_secret()
        };
        assert_refused(&cmd.output().await, mentions);
        assert!(!env.data_dir.exists(), "{args:?} created the data dir");
    }
    assert_eq!(env.sim.stats().token_refresh, 0);
}
