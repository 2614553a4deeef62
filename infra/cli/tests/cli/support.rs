//! Test support: a Salesforce simulator in the test process, the `casesync` binary run against it
//! over HTTP, each test in its own temp data dir.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use serde_json::Value;
use sf_simulator::{NewCase, NewEmail, Org, SimConfig, SimHandle, Simulator};
use tokio::process::{Child, Command};

/// A client secret no other string in a test resembles.
pub const CLIENT_SECRET: &str = "cs-test-secret-7f3a9c21e5";
/// Every refresh token the simulator issues starts with this.
pub const REFRESH_TOKEN_PREFIX: &str = "5Aep861";
/// Every access token the simulator issues holds this after the org key.
pub const ACCESS_TOKEN_MARK: &str = "!AR";

const COMMAND_TIMEOUT: Duration = Duration::from_secs(90);

pub struct TestEnv {
    pub sim: SimHandle,
    /// Kept alive for the test's duration; removed when dropped.
    pub tmp: tempfile::TempDir,
    pub data_dir: PathBuf,
}

pub fn sim_config() -> SimConfig {
    SimConfig {
        client_secret: CLIENT_SECRET.into(),
        ..SimConfig::default()
    }
}

impl TestEnv {
    pub async fn start(org: Org) -> Self {
        Self::start_with(sim_config(), org).await
    }

    pub async fn start_with(config: SimConfig, org: Org) -> Self {
        let sim = Simulator::start(config, org)
            .await
            .expect("the simulator starts");
        let tmp = tempfile::tempdir().expect("a temp dir");
        let data_dir = tmp.path().join("data");
        Self { sim, tmp, data_dir }
    }

    /// `casesync --data-dir DIR ARGS...` with the client secret in the environment.
    pub fn casesync(&self, args: &[&str]) -> Casesync {
        Casesync::new(&self.data_dir, args).env("CASESYNC_CLIENT_SECRET", CLIENT_SECRET)
    }

    pub async fn run(&self, args: &[&str]) -> Output {
        self.casesync(args).output().await
    }

    /// A file holding `token`, outside the data dir.
    pub fn token_file(&self, token: &str) -> PathBuf {
        let path = self
            .tmp
            .path()
            .join(format!("token-{}", uuid_like(token.len())));
        std::fs::write(&path, format!("{token}\n")).expect("write the token file");
        path
    }

    /// Connects headlessly with a freshly minted refresh token; returns the connection id.
    pub async fn connect(&self, extra: &[&str]) -> String {
        let token = self.sim.mint_refresh_token();
        self.connect_with_token(&token, extra).await
    }

    pub async fn connect_with_token(&self, token: &str, extra: &[&str]) -> String {
        let file = self.token_file(token);
        let login = self.sim.login_url();
        let client_id = self.sim.client_id();
        let mut args = vec![
            "connect",
            "--login-url",
            &login,
            "--client-id",
            &client_id,
            "--refresh-token-file",
            file.to_str().expect("a UTF-8 path"),
        ];
        args.extend_from_slice(extra);
        let out = self.run(&args).await;
        out.assert_code(0);
        out.last_stdout_line().to_owned()
    }

    pub async fn sync(&self) -> Output {
        self.run(&["sync"]).await
    }

    /// `status --json`.
    pub async fn status(&self) -> Vec<Value> {
        let out = self.run(&["status", "--json"]).await;
        out.assert_code(0);
        serde_json::from_str(&out.stdout).expect("status --json is JSON")
    }

    pub async fn status_of(&self, id: &str) -> Value {
        self.status()
            .await
            .into_iter()
            .find(|c| c["id"] == id)
            .unwrap_or_else(|| panic!("{id} is not in status"))
    }

    /// Every data point, as `export` (JSONL) writes them.
    pub async fn export(&self) -> Vec<Value> {
        let out = self.run(&["export"]).await;
        out.assert_code(0);
        out.stdout
            .lines()
            .map(|l| serde_json::from_str(l).expect("each line is JSON"))
            .collect()
    }

    pub fn secrets_file(&self) -> PathBuf {
        self.data_dir.join("secrets.json")
    }

    /// What a user could observe of the data dir: status, export and the secrets file.
    pub async fn observable_state(&self) -> (String, String, Option<Vec<u8>>) {
        let status = self.run(&["status", "--json"]).await.stdout;
        let export = self.run(&["export"]).await.stdout;
        let secrets = std::fs::read(self.secrets_file()).ok();
        (status, export, secrets)
    }
}

fn uuid_like(n: usize) -> String {
    format!(
        "{n}-{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default()
    )
}

/// One `casesync` invocation.
pub struct Casesync {
    cmd: Command,
}

impl Casesync {
    pub fn new(data_dir: &Path, args: &[&str]) -> Self {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_casesync"));
        cmd.arg("--data-dir")
            .arg(data_dir)
            .args(args)
            .env_remove("CASESYNC_CLIENT_SECRET")
            .env_remove("CASESYNC_DATA_DIR")
            .env_remove("RUST_LOG")
            .env("CI", "true")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        Self { cmd }
    }

    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.cmd.env(key, value);
        self
    }

    pub fn without_secret(mut self) -> Self {
        self.cmd.env_remove("CASESYNC_CLIENT_SECRET");
        self
    }

    pub fn spawn(mut self) -> Child {
        self.cmd.spawn().expect("casesync starts")
    }

    pub async fn output(self) -> Output {
        let child = self.spawn();
        wait(child).await
    }
}

/// Waits for a spawned `casesync` (at most 90 s) and collects its output.
pub async fn wait(child: Child) -> Output {
    let out = tokio::time::timeout(COMMAND_TIMEOUT, child.wait_with_output())
        .await
        .expect("casesync finished in time")
        .expect("casesync ran");
    Output {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8(out.stdout).expect("stdout is UTF-8"),
        stderr: String::from_utf8(out.stderr).expect("stderr is UTF-8"),
    }
}

#[derive(Debug)]
pub struct Output {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    #[track_caller]
    pub fn assert_code(&self, code: i32) -> &Self {
        assert_eq!(
            self.code, code,
            "exit code\n--- stdout\n{}\n--- stderr\n{}",
            self.stdout, self.stderr
        );
        self
    }

    pub fn last_stdout_line(&self) -> &str {
        self.stdout.lines().last().unwrap_or_default()
    }

    /// Both streams, for searching.
    pub fn all(&self) -> String {
        format!("{}\n{}", self.stdout, self.stderr)
    }
}

/// `m` minutes ago in whole seconds (older than the engine's 5-minute lag when `m > 5`).
pub fn minutes_ago(m: i64) -> DateTime<Utc> {
    let t = Utc::now() - TimeDelta::minutes(m);
    t - TimeDelta::nanoseconds(t.timestamp_subsec_nanos() as i64)
}

/// An org with one queue; returns it and the queue's id.
pub fn org_with_queue() -> (Org, String) {
    let mut org = Org::new();
    let q = org.add_queue("Tier 1 Support", "Tier_1_Support");
    (org, q)
}

/// A closed Case owned by `owner` (a queue or a user), stamped at `at`, with a two-mail thread.
pub fn closed_case(org: &mut Org, owner: &str, at: DateTime<Utc>, subject: &str) -> String {
    let id = org.add_case(NewCase {
        subject: Some(subject.to_owned()),
        status: "Closed".into(),
        priority: Some("High".into()),
        origin: Some("Email".into()),
        owner_id: Some(owner.to_owned()),
        created_date: Some(at - TimeDelta::hours(2)),
        system_modstamp: Some(at),
        closed_date: Some(at),
        description: Some(format!("Description of {subject}")),
        ..NewCase::default()
    });
    for (i, incoming) in [true, false].into_iter().enumerate() {
        org.add_email(
            &id,
            NewEmail {
                message_date: Some(at - TimeDelta::minutes(90 - 30 * i as i64)),
                from_address: Some(
                    if incoming {
                        "jane@example.com"
                    } else {
                        "support@acme.test"
                    }
                    .into(),
                ),
                from_name: Some(if incoming { "Jane Doe" } else { "Support" }.into()),
                to_address: Some("support@acme.test".into()),
                incoming,
                subject: Some(subject.to_owned()),
                text_body: Some(if incoming { "Help, please." } else { "Fixed." }.into()),
                ..NewEmail::default()
            },
            false,
        );
    }
    id
}

/// `n` closed queue Cases a second apart, starting `m` minutes ago.
pub fn closed_cases(org: &mut Org, queue: &str, n: usize, m: i64) -> Vec<String> {
    (0..n)
        .map(|i| {
            closed_case(
                org,
                queue,
                minutes_ago(m) + TimeDelta::seconds(i as i64),
                &format!("Case {i}"),
            )
        })
        .collect()
}

/// A free port on 127.0.0.1 (free when this returns).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Every file under `dir`, recursively.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).expect("readable dir").flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.push(path);
            }
        }
    }
    out
}

/// How often `needle` occurs in `haystack`.
pub fn occurrences(haystack: &[u8], needle: &[u8]) -> usize {
    if needle.is_empty() {
        return 0;
    }
    haystack
        .windows(needle.len())
        .filter(|w| w == &needle)
        .count()
}

/// A `casesync` process running in the background, its output collected line by line.
pub struct Running {
    child: Child,
    stdout: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    stderr: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    readers: Vec<tokio::task::JoinHandle<()>>,
}

impl Running {
    pub fn start(cmd: Casesync) -> Self {
        use tokio::io::{AsyncBufReadExt, BufReader};
        let mut child = cmd.spawn();
        let stdout = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let stderr = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let mut readers = Vec::new();
        if let Some(out) = child.stdout.take() {
            let sink = stdout.clone();
            readers.push(tokio::spawn(async move {
                let mut lines = BufReader::new(out).lines();
                while let Ok(Some(l)) = lines.next_line().await {
                    sink.lock().unwrap().push(l);
                }
            }));
        }
        if let Some(err) = child.stderr.take() {
            let sink = stderr.clone();
            readers.push(tokio::spawn(async move {
                let mut lines = BufReader::new(err).lines();
                while let Ok(Some(l)) = lines.next_line().await {
                    sink.lock().unwrap().push(l);
                }
            }));
        }
        Self {
            child,
            stdout,
            stderr,
            readers,
        }
    }

    pub fn stdout_lines(&self) -> Vec<String> {
        self.stdout.lock().unwrap().clone()
    }

    pub fn stderr_lines(&self) -> Vec<String> {
        self.stderr.lock().unwrap().clone()
    }

    /// Waits (at most 60 s) for a stderr line that `pred` accepts, and returns it.
    pub async fn stderr_line(&self, pred: impl Fn(&str) -> bool) -> String {
        self.line(&self.stderr, pred).await
    }

    /// Waits (at most 60 s) for a stdout line that `pred` accepts, and returns it.
    pub async fn stdout_line(&self, pred: impl Fn(&str) -> bool) -> String {
        self.line(&self.stdout, pred).await
    }

    async fn line(
        &self,
        lines: &std::sync::Mutex<Vec<String>>,
        pred: impl Fn(&str) -> bool,
    ) -> String {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(l) = lines.lock().unwrap().iter().find(|l| pred(l)) {
                return l.clone();
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no such line; stdout: {:?}; stderr: {:?}",
                self.stdout_lines(),
                self.stderr_lines()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Sends SIGINT, as Ctrl-C does.
    pub fn interrupt(&self) {
        self.signal("-INT");
    }

    /// Sends a signal (`kill`'s `-INT`, `-TERM`).
    pub fn signal(&self, which: &str) {
        let pid = self.child.id().expect("still running");
        let status = std::process::Command::new("kill")
            .args([which, &pid.to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success());
    }

    pub async fn finish(mut self) -> Output {
        let status = tokio::time::timeout(COMMAND_TIMEOUT, self.child.wait())
            .await
            .expect("casesync finished in time")
            .expect("casesync ran");
        for r in self.readers.drain(..) {
            let _ = r.await;
        }
        Output {
            code: status.code().unwrap_or(-1),
            stdout: self.stdout_lines().join("\n"),
            stderr: self.stderr_lines().join("\n"),
        }
    }
}
