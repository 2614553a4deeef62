//! A Salesforce simulator speaking the real REST and OAuth wire formats on loopback.
//!
//! Two listeners, like Salesforce: a **login host** (`/services/oauth2/*` and the `/__sim/`
//! admin API) and an **instance host** (`/services/data/*`). It is a test double meant to be
//! strict: a connector bug must surface as a failure, never be papered over.
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! use sf_simulator::{Org, SimConfig, Simulator};
//! let sim = Simulator::start(SimConfig::default(), Org::sample(1, chrono::Utc::now())).await?;
//! let refresh_token = sim.mint_refresh_token();
//! // ... point the connector at sim.login_url() ...
//! assert_eq!(sim.stats().write_attempts, 0);
//! sim.shutdown().await;
//! # Ok(()) }
//! ```

pub mod cdc;
pub mod config;
mod http;
pub mod ids;
pub mod json;
mod oauth;
pub mod org;
mod rest;
mod sample;
pub mod schema;
mod server;
pub mod soql;
pub mod text;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use cdc::ChangeRecord;
pub use config::{AuthorizeMode, FaultKind, FaultRule, FaultTarget, SimConfig, Stats};
pub use ids::SfId;
pub use org::{
    BodyText, CaseRecord, ContactRecord, EmailRecord, NewCase, NewEmail, Org, OrgSpec, Permissions,
    QueueRecord, UserRecord, utc,
};
pub use schema::SObject;

use server::{Host, Shared};

/// Starts simulators.
pub struct Simulator;

impl Simulator {
    /// Binds both listeners on 127.0.0.1 (configured ports, or random ones) and serves `org`.
    pub async fn start(config: SimConfig, org: Org) -> anyhow::Result<SimHandle> {
        let (login_listener, login_addr) = server::bind(config.login_port).await?;
        let (instance_listener, instance_addr) = server::bind(config.instance_port).await?;
        let login_url = format!("http://{login_addr}");
        let instance_url = format!("http://{instance_addr}");
        let shared = Arc::new(Shared::new(
            config,
            org,
            login_url.clone(),
            instance_url.clone(),
        ));
        let (tx, rx) = watch::channel(false);
        let tasks = vec![
            tokio::spawn(server::serve(
                login_listener,
                shared.clone(),
                Host::Login,
                rx.clone(),
            )),
            tokio::spawn(server::serve(
                instance_listener,
                shared.clone(),
                Host::Instance,
                rx,
            )),
        ];
        tracing::info!(%login_url, %instance_url, "Salesforce simulator started");
        Ok(SimHandle {
            shared,
            shutdown: tx,
            tasks,
            login_addr,
            instance_addr,
        })
    }
}

/// A running simulator. Dropping it stops the listeners too; [`SimHandle::shutdown`] also
/// waits for them.
pub struct SimHandle {
    shared: Arc<Shared>,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    login_addr: SocketAddr,
    instance_addr: SocketAddr,
}

pub(crate) fn mint_refresh_token(sh: &Shared) -> String {
    let scope = sh.cfg().default_scope.clone();
    let scope = if scope.split(' ').any(|s| s == "refresh_token") {
        scope
    } else {
        format!("{scope} refresh_token")
    };
    let mut st = sh.state();
    sh.new_grant(&mut st, &scope).1
}

impl SimHandle {
    /// `http://127.0.0.1:PORT` of the login host (OAuth endpoints).
    pub fn login_url(&self) -> String {
        format!("http://{}", self.login_addr)
    }
    /// `http://127.0.0.1:PORT` of the instance host (REST API); what `instance_url` says.
    pub fn instance_url(&self) -> String {
        format!("http://{}", self.instance_addr)
    }
    pub fn client_id(&self) -> String {
        self.shared.cfg().client_id.clone()
    }
    pub fn client_secret(&self) -> String {
        self.shared.cfg().client_secret.clone()
    }
    /// Reads or changes the org (holds its write lock: keep `f` short).
    pub fn with_org<R>(&self, f: impl FnOnce(&mut Org) -> R) -> R {
        f(&mut self.shared.org_mut())
    }
    /// Starts recording a change event for each change to the org from now on.
    pub fn record_changes(&self) {
        self.with_org(|o| o.record_changes(true));
    }

    /// The change events recorded since the last call, oldest first.
    pub fn take_changes(&self) -> Vec<ChangeRecord> {
        self.with_org(|o| o.take_changes())
    }

    /// `events` as Event Relay delivers them to an EventBridge rule's target (JSON).
    pub fn relayed(&self, events: &[ChangeRecord]) -> Vec<String> {
        let org = self.with_org(|o| o.org_id);
        events.iter().map(|e| e.relayed(&org).to_string()).collect()
    }

    pub fn stats(&self) -> Stats {
        self.shared.state().snapshot()
    }
    pub fn reset_stats(&self) {
        let mut st = self.shared.state();
        st.stats = Stats::default();
        st.soql.clear();
    }
    /// Adds a fault rule (see [`FaultRule`] for how requests are counted).
    pub fn inject(&self, rule: FaultRule) {
        self.shared.inject(rule);
    }
    pub fn clear_faults(&self) {
        self.shared.clear_faults();
    }
    pub fn set_latency(&self, d: Duration) {
        self.shared.cfg_mut().latency = d;
    }
    /// Changes the configuration at runtime (ports excepted).
    pub fn update_config(&self, f: impl FnOnce(&mut SimConfig)) {
        f(&mut self.shared.cfg_mut());
    }
    pub fn config(&self) -> SimConfig {
        self.shared.cfg().clone()
    }
    /// A refresh token as if a user had just authorized the app (scope `api refresh_token`).
    pub fn mint_refresh_token(&self) -> String {
        mint_refresh_token(&self.shared)
    }
    /// Every access token issued so far dies (refresh tokens stay valid).
    pub fn expire_access_tokens(&self) {
        for a in self.shared.state().access.values_mut() {
            a.active = false;
        }
    }
    /// Every grant is revoked: refresh and access tokens.
    pub fn revoke_all_tokens(&self) {
        let mut st = self.shared.state();
        for g in 0..st.grants.len() {
            st.revoke_grant(g);
        }
    }
    /// Authorization codes issued so far expire (as after 15 minutes).
    pub fn expire_authorization_codes(&self) {
        self.shared.state().codes.clear();
    }
    /// Whether `token` (refresh or access) is currently usable.
    pub fn is_token_active(&self, token: &str) -> bool {
        let st = self.shared.state();
        st.refresh_active(token) || st.access_active(token)
    }
    /// Sets the API usage (`used` of `Sforce-Limit-Info: api-usage=used/allotment`).
    pub fn set_api_usage(&self, used: u64) {
        self.shared.state().api_used = used;
    }
    /// `(used, allotment)`.
    pub fn api_usage(&self) -> (u64, u64) {
        let allotment = self.shared.cfg().api_allotment;
        (self.shared.state().api_used, allotment)
    }
    /// Number of open top-level query locators and child-list locators.
    pub fn open_locators(&self) -> (usize, usize) {
        let st = self.shared.state();
        (st.top.len(), st.child.len())
    }
    /// Stops both listeners and waits for them.
    pub async fn shutdown(mut self) {
        let _ = self.shutdown.send(true);
        for t in self.tasks.drain(..) {
            let _ = t.await;
        }
    }
}

impl Drop for SimHandle {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
    }
}
