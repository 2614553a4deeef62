//! The `sf-simulator` binary prints one JSON line and serves until killed.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

#[tokio::test]
async fn the_binary_prints_its_urls_and_serves() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_sf-simulator"))
        .args(["--cases", "50", "--seed", "4", "--rotate"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawns");
    let stdout = child.stdout.take().expect("stdout");
    let line = tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).map(|_| line)
    })
    .await
    .expect("join")
    .expect("a line");
    let info: serde_json::Value = serde_json::from_str(&line).expect("one JSON line");
    let login = info["login_url"].as_str().expect("login_url").to_string();
    let instance = info["instance_url"]
        .as_str()
        .expect("instance_url")
        .to_string();
    assert!(login.starts_with("http://127.0.0.1:") && instance.starts_with("http://127.0.0.1:"));
    assert_ne!(login, instance);

    let http = reqwest::Client::new();
    let rt: serde_json::Value = http
        .post(format!("{login}/__sim/mint-refresh-token"))
        .send()
        .await
        .expect("mint")
        .json()
        .await
        .expect("json");
    let token: serde_json::Value = http
        .post(format!("{login}/services/oauth2/token"))
        .form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", rt["refresh_token"].as_str().expect("rt")),
            ("client_id", info["client_id"].as_str().expect("id")),
            (
                "client_secret",
                info["client_secret"].as_str().expect("secret"),
            ),
        ])
        .send()
        .await
        .expect("token")
        .json()
        .await
        .expect("json");
    assert!(
        token["refresh_token"].is_string(),
        "--rotate enables rotation"
    );
    let count: serde_json::Value = http
        .get(format!("{instance}/services/data/v59.0/query"))
        .query(&[("q", "SELECT COUNT() FROM Case")])
        .bearer_auth(token["access_token"].as_str().expect("at"))
        .send()
        .await
        .expect("query")
        .json()
        .await
        .expect("json");
    assert_eq!(count["totalSize"], 50);
    child.kill().expect("kill our child");
    let _ = child.wait();
}
