//! Test support: a Salesforce simulator on loopback and a sync engine wired to it.
//!
//! The engine talks to the simulator over real HTTP; its stores are the core's in-memory
//! adapters (the real adapters have their own tests, and the CLI and Lambda tests run end to
//! end on them).

use std::sync::Arc;
use std::time::Duration;

use casesync_core::data_point::DataPoint;
use casesync_core::domain::{
    ApiVersion, BackfillWindow, ChannelName, Connection, ConnectionId, LoginUrl, QueueScope,
};
use casesync_core::manage::connect::{self, ConnectionSettings};
use casesync_core::memory::MemoryStore;
use casesync_core::ports::{Clock, SystemClock};
use casesync_core::salesforce::{HttpSettings, OAuthApp, RetryPolicy, Salesforce};
use casesync_core::sync::{SyncConfig, SyncEngine, SyncReport};
use chrono::{DateTime, TimeDelta, Utc};
use secrecy::SecretString;
use sf_simulator::{NewCase, NewEmail, Org, SimConfig, SimHandle, Simulator};

/// Quick retries and short timeouts, so fault tests take milliseconds.
pub fn test_http() -> HttpSettings {
    HttpSettings {
        connect_timeout: Duration::from_secs(2),
        request_timeout: Duration::from_secs(5),
        retry: RetryPolicy::fast(),
    }
}

pub fn salesforce_for(sim: &SimHandle, http: &HttpSettings) -> Salesforce {
    Salesforce::new(
        OAuthApp {
            client_id: sim.client_id(),
            client_secret: Some(SecretString::from(sim.client_secret())),
        },
        http,
    )
    .expect("the HTTP client builds")
}

/// A simulator plus an engine over in-memory stores.
pub struct Harness {
    pub sim: SimHandle,
    pub store: Arc<MemoryStore>,
    pub salesforce: Salesforce,
    pub engine: SyncEngine,
}

impl Harness {
    pub async fn start(config: SimConfig, org: Org) -> Self {
        // Salesforce's smallest pages (the scenarios need several pages of a small org), read
        // as one stream (the sliced backfill has its own scenarios).
        let sync = SyncConfig {
            batch_size: 200,
            slices: 1,
            ..SyncConfig::default()
        };
        Self::start_with(config, org, sync, test_http()).await
    }

    pub async fn start_with(
        config: SimConfig,
        org: Org,
        sync: SyncConfig,
        http: HttpSettings,
    ) -> Self {
        Self::start_with_clock(config, org, sync, http, Arc::new(SystemClock)).await
    }

    pub async fn start_with_clock(
        config: SimConfig,
        org: Org,
        sync: SyncConfig,
        http: HttpSettings,
        clock: Arc<dyn Clock>,
    ) -> Self {
        let sim = Simulator::start(config, org)
            .await
            .expect("the simulator starts");
        let store = Arc::new(MemoryStore::new());
        let salesforce = salesforce_for(&sim, &http);
        let engine = SyncEngine::new(
            store.clone(),
            store.clone(),
            store.clone(),
            clock,
            salesforce.clone(),
            sync,
        );
        Self {
            sim,
            store,
            salesforce,
            engine,
        }
    }

    pub fn login_url(&self) -> LoginUrl {
        LoginUrl::parse(&self.sim.login_url()).expect("the simulator's login URL is loopback")
    }

    /// Connects headlessly with a refresh token the simulator minted, as `casesync connect
    /// --refresh-token-file` does.
    pub async fn connect(&self, scope: QueueScope, backfill: BackfillWindow) -> Connection {
        connect::with_refresh_token(
            &self.salesforce.oauth,
            self.store.as_ref(),
            self.store.as_ref(),
            self.login_url(),
            SecretString::from(self.sim.mint_refresh_token()),
            ConnectionSettings {
                channel: ChannelName::parse("support").expect("valid"),
                scope,
                backfill,
                api_version: ApiVersion::DEFAULT,
            },
            Utc::now(),
        )
        .await
        .expect("the headless connect succeeds")
    }

    pub async fn sync(&self, id: &ConnectionId) -> SyncReport {
        self.sync_for(id, Duration::from_secs(60)).await
    }

    pub async fn sync_for(&self, id: &ConnectionId, budget: Duration) -> SyncReport {
        self.engine
            .sync(id, budget, None)
            .await
            .expect("the in-memory store does not fail")
    }

    /// Syncs until the run says `done` (or 50 runs).
    pub async fn sync_to_end(&self, id: &ConnectionId) -> Vec<SyncReport> {
        let mut reports = Vec::new();
        for _ in 0..50 {
            let r = self.sync(id).await;
            let done = r.outcome != casesync_core::sync::SyncOutcome::MoreWork;
            reports.push(r);
            if done {
                break;
            }
        }
        reports
    }

    pub fn points(&self) -> Vec<DataPoint> {
        self.store.all_data_points()
    }
}

/// Minutes ago, in whole seconds (older than the engine's 5-minute lag when `m > 5`).
pub fn minutes_ago(m: i64) -> DateTime<Utc> {
    let t = Utc::now() - TimeDelta::minutes(m);
    t - TimeDelta::nanoseconds(t.timestamp_subsec_nanos() as i64)
}

/// A closed, queue-owned Case stamped at `at`, with a description.
pub fn closed_case(org: &mut Org, queue: &str, at: DateTime<Utc>, subject: &str) -> String {
    org.add_case(NewCase {
        subject: Some(subject.to_owned()),
        status: "Closed".into(),
        owner_id: Some(queue.to_owned()),
        created_date: Some(at - TimeDelta::hours(1)),
        system_modstamp: Some(at),
        closed_date: Some(at),
        description: Some(format!("Description of {subject}")),
        ..NewCase::default()
    })
}

/// An inbound or outbound plain-text email on a Case, not bumping its SystemModstamp.
pub fn email(org: &mut Org, case: &str, at: DateTime<Utc>, incoming: bool, text: &str) -> String {
    org.add_email(
        case,
        NewEmail {
            message_date: Some(at),
            from_address: Some(
                if incoming {
                    "customer@example.com"
                } else {
                    "support@acme.test"
                }
                .into(),
            ),
            from_name: Some(if incoming { "Customer" } else { "Support" }.into()),
            to_address: Some(
                if incoming {
                    "support@acme.test"
                } else {
                    "customer@example.com"
                }
                .into(),
            ),
            incoming,
            subject: Some("Re: help".into()),
            text_body: Some(text.to_owned()),
            ..NewEmail::default()
        },
        false,
    )
}

/// An org with one queue; returns it and the queue id.
pub fn org_with_queue() -> (Org, String) {
    let mut org = Org::new();
    let q = org.add_queue("Tier 1 Support", "Tier_1_Support");
    (org, q)
}

pub use casesync_core;
pub use sf_simulator;

/// One row of the reliability suite: what was tried, how often, and what was lost.
#[derive(Debug, Default, Clone)]
pub struct Figures {
    pub row: String,
    pub trials: u64,
    pub lost: u64,
    pub duplicated: u64,
    pub stale: u64,
}

impl Figures {
    pub fn new(row: impl Into<String>) -> Self {
        Self {
            row: row.into(),
            ..Self::default()
        }
    }

    /// Prints the row for the README's Reliability table (`--nocapture` shows it) and asserts
    /// that nothing was lost, duplicated or left stale.
    pub fn report(&self) {
        println!(
            "RELIABILITY | {} | {} trials | lost {} | duplicated {} | stale {}",
            self.row, self.trials, self.lost, self.duplicated, self.stale
        );
        assert!(self.trials > 0, "{}: no trial ran", self.row);
        assert_eq!(
            (self.lost, self.duplicated, self.stale),
            (0, 0, 0),
            "{}: data was lost, duplicated or stale",
            self.row
        );
    }

    /// Compares the stored data points with the org's closed Cases owned by `queue`.
    pub fn check(&mut self, h: &Harness, queue: &str) {
        self.trials += 1;
        let expected: std::collections::BTreeMap<String, DateTime<Utc>> = h.sim.with_org(|o| {
            o.cases()
                .iter()
                .filter(|c| c.is_closed() && c.owner_id.as_str() == queue)
                .map(|c| (c.id.as_str().to_owned(), c.system_modstamp))
                .collect()
        });
        let points = h.points();
        let mut seen = std::collections::BTreeSet::new();
        for p in &points {
            if !seen.insert(p.case_id.to_string()) {
                self.duplicated += 1;
            }
            match expected.get(p.case_id.as_str()) {
                Some(at) if *at != p.system_modstamp => self.stale += 1,
                _ => {}
            }
        }
        self.lost += expected.keys().filter(|k| !seen.contains(*k)).count() as u64;
    }
}

/// A minimal fake Salesforce on loopback for what the simulator cannot produce (a record
/// Salesforce should never send): the token endpoint, and every query answered with `page`.
/// Returns its base URL (login host and instance at once).
pub async fn fake_salesforce(page: String) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind loopback");
    let base = format!("http://{}", listener.local_addr().expect("local addr"));
    let instance = base.clone();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let page = page.clone();
            let instance = instance.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                // Read the head and any body (token requests are small forms).
                loop {
                    let Ok(n) = socket.read(&mut chunk).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&buf[..end]).to_lowercase();
                        let len = head
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length:"))
                            .and_then(|v| v.trim().parse::<usize>().ok())
                            .unwrap_or(0);
                        if buf.len() >= end + 4 + len {
                            break;
                        }
                    }
                }
                let head = String::from_utf8_lossy(&buf);
                let body = if head.starts_with("POST /services/oauth2/token") {
                    format!(
                        r#"{{"access_token":"00Dfake0000000001!ARfake","instance_url":"{instance}","id":"{instance}/id/00D000000000001AAA/005000000000001AAA","token_type":"Bearer","issued_at":"1700000000000","signature":"x"}}"#
                    )
                } else {
                    page
                };
                let response = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nsforce-limit-info: api-usage=1/15000\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = socket.write_all(response.as_bytes()).await;
            });
        }
    });
    base
}
