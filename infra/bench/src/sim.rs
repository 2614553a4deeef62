//! The simulator as a separate process, so its CPU and memory stay out of casesync's figures.

use std::path::PathBuf;
use std::process::Stdio;

use anyhow::{Context, bail};
use serde::Deserialize;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

#[derive(Debug, Clone, Deserialize)]
pub struct SimInfo {
    pub login_url: String,
    pub client_id: String,
    pub client_secret: String,
}

pub struct SimProcess {
    pub info: SimInfo,
    child: Child,
    http: reqwest::Client,
}

/// `sf-simulator` beside this executable (both are built by `infra/scripts/bench.sh`).
pub fn simulator_binary() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("locating the benchmark executable")?;
    let path = exe.with_file_name("sf-simulator");
    if !path.exists() {
        bail!(
            "{} not found: build it with `cargo build --release -p sf-simulator -p casesync-bench` \
             (infra/scripts/bench.sh does)",
            path.display()
        );
    }
    Ok(path)
}

pub struct OrgShape {
    pub cases: usize,
    pub emails: (u32, u32),
    pub body_bytes: (u32, u32),
    pub latency_ms: u64,
    /// Whether the simulator gzips its answers, as Salesforce does when asked. Off for the
    /// figures measured before it could, so their rows stay comparable.
    pub gzip: bool,
}

impl SimProcess {
    pub async fn start(shape: &OrgShape) -> anyhow::Result<Self> {
        let mut child = Command::new(simulator_binary()?)
            .args([
                "--cases",
                &shape.cases.to_string(),
                "--emails-per-case",
                &format!("{}-{}", shape.emails.0, shape.emails.1),
                "--body-bytes",
                &format!("{}-{}", shape.body_bytes.0, shape.body_bytes.1),
                "--latency-ms",
                &shape.latency_ms.to_string(),
            ])
            .args((!shape.gzip).then_some("--no-gzip"))
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .context("starting sf-simulator")?;
        let stdout = child.stdout.take().context("simulator stdout")?;
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .await
            .context("reading the simulator's first line")?;
        let info: SimInfo = serde_json::from_str(line.trim())
            .with_context(|| format!("the simulator printed {line:?}"))?;
        Ok(Self {
            info,
            child,
            http: reqwest::Client::new(),
        })
    }

    async fn admin(&self, path: &str) -> anyhow::Result<serde_json::Value> {
        let url = format!("{}/__sim/{path}", self.info.login_url);
        let resp = if path == "stats" {
            self.http.get(&url).send().await?
        } else {
            self.http.post(&url).send().await?
        };
        let resp = resp.error_for_status()?;
        Ok(resp.json().await.unwrap_or(serde_json::Value::Null))
    }

    /// The simulator's counters (`Stats` as JSON).
    pub async fn stats(&self) -> anyhow::Result<serde_json::Value> {
        self.admin("stats").await
    }

    /// Another client of the same user: signs in with its own refresh token, then opens a new
    /// query cursor (a query of 2,000 rows, read no further) every `every`, as a report or an
    /// export tool would. Salesforce keeps 10 open cursors per user and invalidates the oldest
    /// when an 11th opens. Runs until the task is aborted; counts the cursors it opened.
    pub async fn other_client(
        &self,
        every: std::time::Duration,
        opened: std::sync::Arc<std::sync::atomic::AtomicU64>,
    ) -> anyhow::Result<tokio::task::JoinHandle<()>> {
        let refresh = self.mint_refresh_token().await?;
        let token: serde_json::Value = self
            .http
            .post(format!("{}/services/oauth2/token", self.info.login_url))
            .form(&[
                ("grant_type", "refresh_token"),
                ("refresh_token", refresh.as_str()),
                ("client_id", self.info.client_id.as_str()),
                ("client_secret", self.info.client_secret.as_str()),
            ])
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        let access = token["access_token"]
            .as_str()
            .context("no access_token for the other client")?
            .to_owned();
        let instance = token["instance_url"]
            .as_str()
            .context("no instance_url for the other client")?
            .to_owned();
        let http = self.http.clone();
        Ok(tokio::spawn(async move {
            let url = format!("{instance}/services/data/v59.0/query?q=SELECT+Id+FROM+Case");
            loop {
                let sent = http
                    .get(&url)
                    .bearer_auth(&access)
                    .header("Sforce-Query-Options", "batchSize=2000")
                    .send()
                    .await;
                if sent.is_ok_and(|r| r.status().is_success()) {
                    opened.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
                tokio::time::sleep(every).await;
            }
        }))
    }

    pub async fn mint_refresh_token(&self) -> anyhow::Result<String> {
        let v = self.admin("mint-refresh-token").await?;
        v["refresh_token"]
            .as_str()
            .map(str::to_owned)
            .context("no refresh_token in the simulator's answer")
    }

    pub async fn stop(mut self) {
        let _ = self.child.kill().await;
    }
}
