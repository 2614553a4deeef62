//! The application layer: every connection use case, written once over the ports, for every
//! shell that offers them (the `casesync` CLI, the management API function, the console).
//! A shell parses its input into domain types, calls one method here and renders the answer;
//! the rules (what a reconfiguration does to the cursor, what Delete removes and in which
//! order, which connections a tick covers, what follows a run) live here and nowhere else.
//!
//! | use case | method |
//! |---|---|
//! | start connecting an org, complete it from the OAuth callback | [`Manager::start_connection`], [`Manager::complete_authorization`] |
//! | connect or re-authorize headless, with a refresh token | [`Manager::connect_with_refresh_token`], [`Manager::reauthorize_with_refresh_token`] |
//! | re-authorize (browser) | [`Manager::start_reauthorization`], then [`Manager::complete_authorization`] |
//! | list and show, with data point counts and recorded failures | [`Manager::list`], [`Manager::get`] |
//! | change queues and backfill | [`Manager::configure`] |
//! | disconnect, delete | [`Manager::disconnect`], [`Manager::delete`] |
//! | diagnose, list the org's queues | [`Manager::diagnose`], [`Manager::queues`] |
//! | which connections a tick covers | [`work::Targets`] |
//! | what follows a run | [`work::follow_up`] |
//!
//! # Delete
//!
//! One policy for every shell, in an order that a retry can always finish:
//!
//! 1. **Disconnect** the connection, so a running sync stops before its next page and no new
//!    one starts.
//! 2. **Take the sync lease** (waiting up to [`Policy::delete_wait`] for a running sync to stop;
//!    [`ManageError::SyncRunning`] if it does not, with nothing deleted), so no run writes data
//!    points while they are deleted. The lease is taken by one holder name shared by every
//!    delete, so a retried delete is not locked out by an earlier attempt.
//! 3. **Revoke the refresh token** at Salesforce. When that fails (Salesforce unreachable, or
//!    it refuses), the delete goes on and the answer says so ([`Revocation::Failed`]), with
//!    what to do: the promise of Delete is that every data point is removed, permanently, and a
//!    third party being down must not keep a user's data; a token that is deleted here is held
//!    by no one, and an administrator can revoke it in Setup.
//! 4. **Delete the secret, every data point, and last the connection**, so that until the very
//!    end the connection is still listed and calling Delete again finishes the job.

pub mod connect;
pub mod work;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use secrecy::SecretString;

use crate::diagnostics::{self, Diagnosis};
use crate::domain::{
    ApiVersion, BackfillWindow, CaseFailure, ChannelName, Connection, ConnectionId,
    ConnectionState, Cursor, LoginUrl, QueueScope,
};
use crate::ports::{
    AuthStateStore, Clock, ConnectionStore, DataPointStore, SecretStore, StoreError,
};
use crate::salesforce::records::QueueRecord;
use crate::salesforce::{OAuthClient, Salesforce, SalesforceError};
use crate::sync::{SyncConfig, SyncLease};

pub use connect::{
    Authorized, CallbackParams, ConnectError, ConnectionSettings, Purpose, STATE_TTL,
    StartedAuthorization,
};

/// The holder name of the lease a delete takes: shared by every delete of a connection, so a
/// retried delete is not locked out by the lease of an earlier attempt.
pub const DELETE_LEASE_HOLDER: &str = "casesync:delete";

/// The channel a `Pending` connection carries until its setup names the real one.
pub const PENDING_CHANNEL: &str = "(not chosen yet)";

/// What differs between deployments; [`Policy::default`] is production.
#[derive(Debug, Clone)]
pub struct Policy {
    /// Accept login URLs on loopback (the simulator). The CLI allows it (whoever types the URL
    /// runs both ends); deployed runtimes do not, since the login host receives the client
    /// secret and authorization codes.
    pub allow_loopback_login: bool,
    /// How long Delete waits for a running sync to stop before giving up with nothing deleted.
    pub delete_wait: Duration,
    /// How long Delete holds the sync lease (it releases it with the connection).
    pub delete_lease: TimeDelta,
    /// What diagnostics compare against: the sync engine's settings.
    pub sync: SyncConfig,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            allow_loopback_login: false,
            delete_wait: Duration::from_secs(10),
            delete_lease: TimeDelta::minutes(5),
            sync: SyncConfig::default(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ManageError {
    #[error("no connection {0}")]
    NotFound(ConnectionId),
    #[error("{field}: {message}")]
    Invalid {
        field: &'static str,
        message: String,
    },
    #[error("nothing to change: give the queues, the backfill window or both")]
    NothingToChange,
    #[error(
        "a sync of this connection is still running; it stops at its next page now that the \
         connection is disconnected. Nothing was deleted yet: try again in a minute"
    )]
    SyncRunning,
    #[error(transparent)]
    Connect(#[from] ConnectError),
    #[error(transparent)]
    Salesforce(#[from] SalesforceError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What became of a refresh token Delete or a re-authorization revoked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Revocation {
    /// Revoked at the login host: the grant is gone at Salesforce too.
    Revoked { at: LoginUrl },
    /// No refresh token was stored, so there was nothing to revoke.
    NothingStored,
    /// Salesforce could not be reached, or refused. The token is deleted here all the same.
    Failed { at: LoginUrl, error: String },
}

impl Revocation {
    /// Revokes `token` at `login`; never fails, the outcome is the answer.
    pub async fn attempt(oauth: &OAuthClient, login: &LoginUrl, token: &SecretString) -> Self {
        match oauth.revoke(login, token).await {
            Ok(()) => Self::Revoked { at: login.clone() },
            Err(e) => Self::Failed {
                at: login.clone(),
                error: e.to_string(),
            },
        }
    }

    /// `revoked`, `not_stored` or `failed`: the machine-readable outcome.
    pub fn status(&self) -> &'static str {
        match self {
            Self::Revoked { .. } => "revoked",
            Self::NothingStored => "not_stored",
            Self::Failed { .. } => "failed",
        }
    }
}

impl fmt::Display for Revocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Revoked { at } => write!(f, "the refresh token was revoked at {at}"),
            Self::NothingStored => {
                f.write_str("no refresh token was stored, so there was nothing to revoke")
            }
            Self::Failed { at, error } => write!(
                f,
                "the refresh token could not be revoked at {at} ({error}); it was deleted here \
                 all the same. A Salesforce administrator can revoke it in Setup > Connected \
                 Apps OAuth Usage"
            ),
        }
    }
}

/// A connection with what the stores know about it beyond its record.
#[derive(Debug, Clone)]
pub struct ConnectionView {
    pub connection: Connection,
    pub data_points: u64,
}

impl ConnectionView {
    /// Cases that could not be mapped and are retried on later syncs.
    pub fn failures(&self) -> &[CaseFailure] {
        &self.connection.failures
    }
}

/// What a new connection should import, as a shell collected it.
#[derive(Debug, Clone)]
pub struct NewConnection {
    pub channel: ChannelName,
    pub login_url: LoginUrl,
    pub scope: QueueScope,
    pub backfill: BackfillWindow,
    pub api_version: ApiVersion,
}

/// A change of queues and/or backfill window; at least one must be given.
#[derive(Debug, Clone, Default)]
pub struct SettingsChange {
    pub scope: Option<QueueScope>,
    pub backfill: Option<BackfillWindow>,
}

/// What [`Manager::configure`] did.
#[derive(Debug, Clone)]
pub struct Configured {
    pub before: Connection,
    pub after: Connection,
    /// Where the cursor restarted: the start of the (new) window. `None` when the settings were
    /// already these and nothing changed.
    pub cursor_restarted_at: Option<DateTime<Utc>>,
}

impl Configured {
    pub fn changed(&self) -> bool {
        self.cursor_restarted_at.is_some()
    }
}

/// What [`Manager::disconnect`] did.
#[derive(Debug, Clone)]
pub struct Disconnected {
    pub connection: Connection,
    /// It was disconnected already; nothing changed.
    pub already: bool,
    /// The data points that stay.
    pub data_points: u64,
}

/// What [`Manager::delete`] removed.
#[derive(Debug, Clone)]
pub struct Deleted {
    /// The connection as it was.
    pub connection: Connection,
    pub data_points_deleted: u64,
    pub token: Revocation,
}

/// Every connection use case, over the ports. Built once per process (per command in the CLI)
/// and shared.
#[derive(Clone)]
pub struct Manager {
    pub connections: Arc<dyn ConnectionStore>,
    pub data_points: Arc<dyn DataPointStore>,
    pub auth_states: Arc<dyn AuthStateStore>,
    pub secrets: Arc<dyn SecretStore>,
    pub salesforce: Salesforce,
    pub clock: Arc<dyn Clock>,
    pub policy: Policy,
    /// Who acts, in the words state reasons use: "the management API", "`casesync`", ...
    pub actor: &'static str,
}

impl Manager {
    /// The connection `id`, or [`ManageError::NotFound`].
    pub async fn connection(&self, id: &ConnectionId) -> Result<Connection, ManageError> {
        self.connections
            .get_connection(id)
            .await?
            .ok_or_else(|| ManageError::NotFound(id.clone()))
    }

    /// Every connection, ordered by id, with its data point count.
    pub async fn list(&self) -> Result<Vec<ConnectionView>, ManageError> {
        let connections = self.connections.list_connections().await?;
        let mut views = Vec::with_capacity(connections.len());
        for connection in connections {
            let data_points = self.data_points.count_data_points(&connection.id).await?;
            views.push(ConnectionView {
                connection,
                data_points,
            });
        }
        Ok(views)
    }

    /// One connection with its data point count and recorded failures.
    pub async fn get(&self, id: &ConnectionId) -> Result<ConnectionView, ManageError> {
        let connection = self.connection(id).await?;
        let data_points = self.data_points.count_data_points(id).await?;
        Ok(ConnectionView {
            connection,
            data_points,
        })
    }

    /// Starts connecting an org: a single-use state (ten minutes) bound to these settings, and
    /// the Salesforce authorize URL (PKCE S256) for the user's browser.
    pub async fn start_connection(
        &self,
        request: NewConnection,
        redirect_uri: &str,
    ) -> Result<StartedAuthorization, ManageError> {
        self.check_login_url(&request.login_url)?;
        let started = connect::start(
            &self.salesforce.oauth,
            self.auth_states.as_ref(),
            request.login_url,
            redirect_uri,
            ConnectionSettings {
                channel: request.channel,
                scope: request.scope,
                backfill: request.backfill,
                api_version: request.api_version,
            },
            Purpose::Create,
            self.clock.now(),
        )
        .await?;
        Ok(started)
    }

    /// Starts connecting an org whose channel and import settings are chosen after authorizing
    /// (the console: the org's queues can be listed only then). The callback creates the
    /// connection `Pending`; [`Manager::complete_setup`] makes it import.
    pub async fn start_setup(
        &self,
        login_url: LoginUrl,
        redirect_uri: &str,
    ) -> Result<StartedAuthorization, ManageError> {
        self.check_login_url(&login_url)?;
        let started = connect::start(
            &self.salesforce.oauth,
            self.auth_states.as_ref(),
            login_url,
            redirect_uri,
            ConnectionSettings {
                channel: ChannelName::parse(PENDING_CHANNEL).expect("a valid channel name"),
                scope: QueueScope::All,
                backfill: BackfillWindow::Days30,
                api_version: ApiVersion::DEFAULT,
            },
            Purpose::CreatePending,
            self.clock.now(),
        )
        .await?;
        Ok(started)
    }

    /// Chooses a pending connection's channel, queues and backfill; it starts importing (the
    /// cursor at the start of the backfill window).
    pub async fn complete_setup(
        &self,
        id: &ConnectionId,
        channel: ChannelName,
        scope: QueueScope,
        backfill: BackfillWindow,
    ) -> Result<Connection, ManageError> {
        let c = self.connection(id).await?;
        if c.state != ConnectionState::Pending {
            return Err(ManageError::Invalid {
                field: "connection",
                message: format!("{id} is already set up: change its queues and backfill instead"),
            });
        }
        let cursor = Cursor::backfill_start(backfill, self.clock.now());
        self.connections
            .complete_setup(id, &channel, &scope, backfill, &cursor)
            .await?;
        self.connection(id).await
    }

    /// Starts re-authorizing `id`: its callback gives the connection a new refresh token and
    /// makes it active again, keeping its cursor.
    pub async fn start_reauthorization(
        &self,
        id: &ConnectionId,
        redirect_uri: &str,
    ) -> Result<StartedAuthorization, ManageError> {
        let c = self.connection(id).await?;
        let started = connect::start(
            &self.oauth_of(&c),
            self.auth_states.as_ref(),
            c.login_url.clone(),
            redirect_uri,
            ConnectionSettings {
                channel: c.channel.clone(),
                scope: c.scope.clone(),
                backfill: c.backfill,
                api_version: c.api_version,
            },
            Purpose::Reauthorize(c.id.clone()),
            self.clock.now(),
        )
        .await?;
        Ok(started)
    }

    /// Completes a flow from its OAuth callback: a new connection, or a re-authorized one whose
    /// superseded refresh token is revoked once the new one is stored. The state is consumed
    /// first, whatever happens next.
    pub async fn complete_authorization(
        &self,
        callback: &CallbackParams,
    ) -> Result<Authorized, ConnectError> {
        let authorized = connect::complete(
            &self.salesforce.oauth,
            self.auth_states.as_ref(),
            self.connections.as_ref(),
            self.secrets.as_ref(),
            callback,
            self.clock.now(),
        )
        .await?;
        if authorized.reauthorized {
            // A cached access token belongs to the old grant.
            self.salesforce.tokens.forget(&authorized.connection.id);
        }
        Ok(authorized)
    }

    /// Connects with a refresh token obtained elsewhere (headless).
    pub async fn connect_with_refresh_token(
        &self,
        request: NewConnection,
        refresh_token: SecretString,
    ) -> Result<Connection, ManageError> {
        self.check_login_url(&request.login_url)?;
        let connection = connect::with_refresh_token(
            &self.salesforce.oauth,
            self.connections.as_ref(),
            self.secrets.as_ref(),
            request.login_url,
            refresh_token,
            ConnectionSettings {
                channel: request.channel,
                scope: request.scope,
                backfill: request.backfill,
                api_version: request.api_version,
            },
            self.clock.now(),
        )
        .await?;
        Ok(connection)
    }

    /// Re-authorizes `id` with a refresh token obtained elsewhere; the superseded one is
    /// revoked, the cursor kept.
    pub async fn reauthorize_with_refresh_token(
        &self,
        id: &ConnectionId,
        refresh_token: SecretString,
    ) -> Result<Authorized, ManageError> {
        let authorized = connect::reauthorize_with_refresh_token(
            &self.salesforce.oauth,
            self.connections.as_ref(),
            self.secrets.as_ref(),
            id,
            refresh_token,
        )
        .await?;
        self.salesforce.tokens.forget(id);
        Ok(authorized)
    }

    /// Changes queues and/or backfill. When anything changes, the cursor restarts at the start
    /// of the (new) window, so Cases newly in scope are imported; unchanged data points are not
    /// rewritten, and those of Cases no longer in scope stay until the connection is deleted.
    pub async fn configure(
        &self,
        id: &ConnectionId,
        change: SettingsChange,
    ) -> Result<Configured, ManageError> {
        if change.scope.is_none() && change.backfill.is_none() {
            return Err(ManageError::NothingToChange);
        }
        let before = self.connection(id).await?;
        let scope = change.scope.unwrap_or_else(|| before.scope.clone());
        let backfill = change.backfill.unwrap_or(before.backfill);
        if scope == before.scope && backfill == before.backfill {
            return Ok(Configured {
                after: before.clone(),
                before,
                cursor_restarted_at: None,
            });
        }
        let cursor = Cursor::backfill_start(backfill, self.clock.now());
        self.connections
            .update_settings(id, &scope, backfill, &cursor)
            .await?;
        let after = self.connection(id).await?;
        Ok(Configured {
            before,
            after,
            cursor_restarted_at: Some(cursor.system_modstamp),
        })
    }

    /// Stops importing: no new sync starts, a running one stops before its next page. The
    /// data points stay; re-authorizing resumes from the cursor.
    pub async fn disconnect(&self, id: &ConnectionId) -> Result<Disconnected, ManageError> {
        let c = self.connection(id).await?;
        let data_points = self.data_points.count_data_points(id).await?;
        if c.state == ConnectionState::Disconnected {
            return Ok(Disconnected {
                connection: c,
                already: true,
                data_points,
            });
        }
        let reason = format!(
            "disconnected through {} on {}",
            self.actor,
            self.clock.now().format("%Y-%m-%d %H:%M UTC")
        );
        self.connections
            .set_state(id, ConnectionState::Disconnected, Some(&reason))
            .await?;
        self.salesforce.tokens.forget(id);
        Ok(Disconnected {
            connection: self.connection(id).await?,
            already: false,
            data_points,
        })
    }

    /// Deletes the connection, its refresh token (revoked at Salesforce) and every data point,
    /// permanently. The policy is in the module documentation.
    pub async fn delete(&self, id: &ConnectionId) -> Result<Deleted, ManageError> {
        let c = self.connection(id).await?;
        let reason = format!("being deleted through {}", self.actor);
        self.connections
            .set_state(id, ConnectionState::Disconnected, Some(&reason))
            .await?;
        let lease = self.wait_for_lease(id).await?;
        let token = match self.secrets.get_refresh_token(id).await? {
            None => Revocation::NothingStored,
            Some(token) => Revocation::attempt(&self.oauth_of(&c), &c.login_url, &token).await,
        };
        if let Revocation::Failed { error, .. } = &token {
            tracing::warn!(connection = %id, %error, "could not revoke the refresh token; deleting it anyway");
        }
        self.secrets.delete_refresh_token(id).await?;
        let data_points_deleted = self.data_points.delete_data_points(id).await?;
        self.connections.delete_connection(id).await?;
        // Gone with the connection's record; releasing a lease of a deleted connection is a
        // no-op, kept so a store that keeps leases apart is not left with a stale one.
        lease.release().await;
        self.salesforce.tokens.forget(id);
        tracing::info!(
            connection = %id,
            data_points_deleted,
            token = token.status(),
            "connection deleted"
        );
        Ok(Deleted {
            connection: c,
            data_points_deleted,
            token,
        })
    }

    async fn wait_for_lease(&self, id: &ConnectionId) -> Result<SyncLease, ManageError> {
        let deadline = tokio::time::Instant::now() + self.policy.delete_wait;
        loop {
            let now = self.clock.now();
            let leases: Arc<dyn crate::ports::LeaseStore> = self.connections.clone();
            if let Some(lease) = SyncLease::acquire(
                leases,
                id,
                DELETE_LEASE_HOLDER,
                now,
                now + self.policy.delete_lease,
            )
            .await?
            {
                return Ok(lease);
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(ManageError::SyncRunning);
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Runs the checks of "authentication succeeds, but no Cases import". A failing check is
    /// part of the answer, not an error.
    pub async fn diagnose(
        &self,
        id: &ConnectionId,
    ) -> Result<(Connection, Diagnosis), ManageError> {
        let c = self.connection(id).await?;
        let diagnosis = diagnostics::diagnose(
            &self.salesforce,
            self.secrets.clone(),
            &c,
            &self.policy.sync,
            self.clock.now(),
        )
        .await;
        Ok((c, diagnosis))
    }

    /// The queues the connection's authorizing user can see in Salesforce.
    pub async fn queues(
        &self,
        id: &ConnectionId,
    ) -> Result<(Connection, Vec<QueueRecord>), ManageError> {
        let c = self.connection(id).await?;
        let api = self.salesforce.org(&c, self.secrets.clone());
        let queues = diagnostics::list_queues(&api).await?;
        Ok((c, queues))
    }

    fn check_login_url(&self, login_url: &LoginUrl) -> Result<(), ManageError> {
        if login_url.is_loopback() && !self.policy.allow_loopback_login {
            return Err(ManageError::Invalid {
                field: "login_url",
                message: "loopback login URLs are for local testing only: use \
                          https://login.salesforce.com, https://test.salesforce.com or \
                          https://<MyDomain>.my.salesforce.com"
                    .into(),
            });
        }
        Ok(())
    }

    /// The OAuth client of the Connected App that issued `c`'s refresh token.
    fn oauth_of(&self, c: &Connection) -> OAuthClient {
        match &c.client_id {
            Some(client_id) => self.salesforce.oauth.for_client_id(client_id),
            None => self.salesforce.oauth.clone(),
        }
    }
}
