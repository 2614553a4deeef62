//! Secrets never leave the 0600 secrets file: not in output, logs (even at trace level), errors,
//! or any other file of the data dir.

use std::os::unix::fs::PermissionsExt;

use sf_simulator::SimConfig;

use crate::support::*;

#[tokio::test(flavor = "multi_thread")]
async fn no_token_or_client_secret_appears_in_output_logs_or_other_files() {
    // Given an org that rotates refresh tokens (so several are issued), and full trace logging
    let (mut org, queue) = org_with_queue();
    closed_cases(&mut org, &queue, 5, 60);
    let env = TestEnv::start_with(
        SimConfig {
            rotate_refresh_tokens: true,
            ..sim_config()
        },
        org,
    )
    .await;
    let minted = env.sim.mint_refresh_token();
    let file = env.token_file(&minted);
    let login = env.sim.login_url();
    let client = env.sim.client_id();
    let trace = |args: &[&str]| env.casesync(args).env("RUST_LOG", "trace");

    // When connecting, syncing, and reading everything back
    let mut outputs = Vec::new();
    let connect = trace(&[
        "connect",
        "--login-url",
        &login,
        "--client-id",
        &client,
        "--refresh-token-file",
        file.to_str().unwrap(),
        "--backfill",
        "7d",
    ])
    .output()
    .await;
    connect.assert_code(0);
    let id = connect.last_stdout_line().to_owned();
    outputs.push(connect);
    // Sessions expire, so every later command refreshes (and rotates) again
    for args in [
        vec!["sync"],
        vec!["status"],
        vec!["status", "--json"],
        vec!["export"],
        vec!["export", "--format", "csv"],
        vec!["doctor", id.as_str()],
        vec!["queues", id.as_str()],
    ] {
        env.sim.expire_access_tokens();
        let out = trace(&args).output().await;
        assert!(out.code == 0, "{args:?}: {out:?}");
        if args == ["export"] {
            // The store keeps data point bodies compressed, so scanning its files below could
            // not find a token written into one; the export decompresses every point, and it
            // is scanned with the rest of the output.
            assert_eq!(
                out.stdout.lines().count(),
                5,
                "every data point is exported"
            );
        }
        outputs.push(out);
    }
    // ... and a refused token, whose error is reported
    env.sim.revoke_all_tokens();
    let refused = trace(&["sync"]).output().await;
    refused.assert_code(3);
    outputs.push(refused);

    // Then the logs were really at trace level
    let all: String = outputs.iter().map(Output::all).collect();
    assert!(
        all.contains("TRACE") || all.contains("DEBUG"),
        "logs were captured"
    );
    // ... and no secret is in any output
    let secrets_path = env.secrets_file();
    let stored = std::fs::read_to_string(&secrets_path).unwrap();
    let stored_tokens: Vec<String> =
        serde_json::from_str::<serde_json::Value>(&stored).unwrap()["refresh_tokens"]
            .as_object()
            .unwrap()
            .values()
            .map(|v| v.as_str().unwrap().to_owned())
            .collect();
    assert_eq!(stored_tokens.len(), 1);
    assert_ne!(stored_tokens[0], minted, "the token was rotated");
    let mut needles: Vec<String> = vec![
        minted.clone(),
        CLIENT_SECRET.to_owned(),
        REFRESH_TOKEN_PREFIX.to_owned(),
        ACCESS_TOKEN_MARK.to_owned(),
    ];
    needles.extend(stored_tokens.iter().cloned());
    for needle in &needles {
        assert_eq!(
            occurrences(all.as_bytes(), needle.as_bytes()),
            0,
            "a secret ({} characters, starting {:?}) appears in the output",
            needle.len(),
            &needle[..4]
        );
    }
    // ... nor in any file of the data dir but the secrets file, which is 0600
    for path in files_under(&env.data_dir) {
        let bytes = std::fs::read(&path).unwrap();
        if path == secrets_path {
            let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
            continue;
        }
        for needle in &needles {
            assert_eq!(
                occurrences(&bytes, needle.as_bytes()),
                0,
                "{} holds a secret starting {:?}",
                path.display(),
                &needle[..4]
            );
        }
    }
}
