//! Connecting an org: the OAuth web-server flow (start, then callback) and the headless
//! variant with a refresh token. The mechanics under [`super::Manager`]'s connect use cases.
//!
//! The `state` parameter is single-use, expires after ten minutes and carries everything the
//! flow was started with (channel, queues, backfill, PKCE verifier), so a callback cannot be
//! replayed, forged, or steered to another channel. The refresh token is stored before the
//! connection that needs it; the access token is not stored at all.

use std::collections::HashMap;

use chrono::{DateTime, TimeDelta, Utc};
use secrecy::{ExposeSecret, SecretString};

use crate::domain::{
    ApiVersion, BackfillWindow, ChannelName, Connection, ConnectionId, ConnectionState, LoginUrl,
    QueueScope,
};
use crate::ports::{
    AuthStateStore, ConnectionReader, ConnectionWriter, PendingAuthorization, SecretStore,
    StateWriter, StoreError,
};
use crate::salesforce::{OAuthClient, SalesforceError, TokenGrant};

use super::Revocation;

/// How long a started flow may wait for its callback.
pub const STATE_TTL: TimeDelta = TimeDelta::minutes(10);
/// Callback parameters longer than this are refused unread.
const MAX_PARAM_LEN: usize = 4096;

/// What a new connection should import.
#[derive(Debug, Clone)]
pub struct ConnectionSettings {
    pub channel: ChannelName,
    pub scope: QueueScope,
    pub backfill: BackfillWindow,
    pub api_version: ApiVersion,
}

#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("the authorization link is unknown or was already used: start connecting again")]
    UnknownState,
    #[error("the authorization took longer than 10 minutes and expired: start connecting again")]
    ExpiredState,
    #[error("you declined access in Salesforce, so nothing was connected")]
    AccessDenied,
    #[error(
        "Salesforce could not approve casesync for this user: the Connected App is not installed \
         or not approved for this org ({0}). Ask a Salesforce administrator to install it (Setup > \
         Connected Apps OAuth Usage > Install) and allow this user's profile, then try again"
    )]
    AppNotApproved(String),
    #[error("Salesforce returned an error instead of an authorization: {error}: {description}")]
    Provider { error: String, description: String },
    #[error("the callback is missing its {0} parameter")]
    MissingParameter(&'static str),
    #[error("the callback's parameters are malformed: {0}")]
    MalformedCallback(String),
    #[error(
        "Salesforce granted no refresh token: add the \"Perform requests at any time \
         (refresh_token, offline_access)\" scope to the Connected App"
    )]
    NoRefreshToken,
    #[error("the connection to re-authorize no longer exists")]
    ConnectionGone,
    #[error(transparent)]
    Salesforce(#[from] SalesforceError),
    #[error("could not store the connection: {0}")]
    Store(#[from] StoreError),
}

/// The query parameters of an OAuth callback, checked.
#[derive(Debug, Clone, Default)]
pub struct CallbackParams {
    pub code: Option<String>,
    pub state: Option<String>,
    pub error: Option<String>,
    pub error_description: Option<String>,
}

impl CallbackParams {
    /// Parses a raw query string. Repeated, oversized or non-UTF-8 parameters are refused.
    pub fn parse(query: &str) -> Result<Self, ConnectError> {
        if query.len() > 4 * MAX_PARAM_LEN {
            return Err(ConnectError::MalformedCallback(
                "the query string is too long".into(),
            ));
        }
        let mut seen: HashMap<String, String> = HashMap::new();
        for (k, v) in url::form_urlencoded::parse(query.as_bytes()) {
            if v.len() > MAX_PARAM_LEN {
                return Err(ConnectError::MalformedCallback(format!("{k} is too long")));
            }
            if v.contains(|c: char| c.is_control()) {
                return Err(ConnectError::MalformedCallback(format!(
                    "{k} holds control characters"
                )));
            }
            if seen.insert(k.to_string(), v.to_string()).is_some() {
                return Err(ConnectError::MalformedCallback(format!(
                    "{k} appears twice"
                )));
            }
        }
        Ok(Self {
            code: seen.remove("code").filter(|s| !s.is_empty()),
            state: seen.remove("state").filter(|s| !s.is_empty()),
            error: seen.remove("error").filter(|s| !s.is_empty()),
            error_description: seen.remove("error_description"),
        })
    }
}

/// A completed authorization: a new connection, or an existing one with a new refresh token.
#[derive(Debug)]
pub struct Authorized {
    pub connection: Connection,
    /// Set when an existing connection was re-authorized.
    pub reauthorized: bool,
    /// On re-authorization: what became of the refresh token the new one replaced (revoked at
    /// Salesforce once the new one was stored). `None` when there was no other token.
    pub superseded: Option<Revocation>,
}

impl Authorized {
    fn created(connection: Connection) -> Self {
        Self {
            connection,
            reauthorized: false,
            superseded: None,
        }
    }
}

/// A flow started: send the user's browser to `authorize_url`.
pub struct StartedAuthorization {
    pub authorize_url: url::Url,
    pub state: String,
    pub expires_at: DateTime<Utc>,
}

/// What a started flow is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Purpose {
    /// A new connection, importing as soon as it is created.
    Create,
    /// A new connection whose channel and import settings are chosen after authorizing: it is
    /// created `Pending`.
    CreatePending,
    /// A new refresh token for an existing connection.
    Reauthorize(ConnectionId),
}

/// Starts the web-server flow: a state and PKCE verifier are stored, the authorize URL returned.
pub async fn start(
    oauth: &OAuthClient,
    states: &dyn AuthStateStore,
    login_url: LoginUrl,
    redirect_uri: &str,
    settings: ConnectionSettings,
    purpose: Purpose,
    now: DateTime<Utc>,
) -> Result<StartedAuthorization, ConnectError> {
    let (reauthorize, pending_setup) = match purpose {
        Purpose::Create => (None, false),
        Purpose::CreatePending => (None, true),
        Purpose::Reauthorize(id) => (Some(id), false),
    };
    let request = oauth.authorize(&login_url, redirect_uri);
    let expires_at = now + STATE_TTL;
    states
        .put_auth_state(&PendingAuthorization {
            state: request.state.clone(),
            verifier: request.verifier,
            channel: settings.channel,
            login_url,
            redirect_uri: redirect_uri.to_owned(),
            scope: settings.scope,
            backfill: settings.backfill,
            api_version: settings.api_version,
            reauthorize,
            pending_setup,
            created_at: now,
            expires_at,
        })
        .await?;
    Ok(StartedAuthorization {
        authorize_url: request.url,
        state: request.state,
        expires_at,
    })
}

/// Completes the web-server flow from its callback. The state is consumed first, whatever
/// happens next, so a callback can never be replayed.
pub async fn complete<S>(
    oauth: &OAuthClient,
    states: &dyn AuthStateStore,
    store: &S,
    secrets: &dyn SecretStore,
    callback: &CallbackParams,
    now: DateTime<Utc>,
) -> Result<Authorized, ConnectError>
where
    S: ConnectionReader + ConnectionWriter + StateWriter + ?Sized,
{
    let state = callback
        .state
        .as_deref()
        .ok_or(ConnectError::MissingParameter("state"))?;
    let pending = states
        .take_auth_state(state)
        .await?
        .ok_or(ConnectError::UnknownState)?;
    if now > pending.expires_at {
        return Err(ConnectError::ExpiredState);
    }
    if let Some(error) = &callback.error {
        let description = callback.error_description.clone().unwrap_or_default();
        return Err(match error.as_str() {
            "access_denied" | "access-denied" => ConnectError::AccessDenied,
            "OAUTH_APPROVAL_ERROR_GENERIC" => ConnectError::AppNotApproved(description),
            _ => ConnectError::Provider {
                error: error.clone(),
                description,
            },
        });
    }
    let code = callback
        .code
        .as_deref()
        .ok_or(ConnectError::MissingParameter("code"))?;
    let grant = oauth
        .exchange_code(
            &pending.login_url,
            code,
            &pending.verifier,
            &pending.redirect_uri,
        )
        .await?;
    let settings = ConnectionSettings {
        channel: pending.channel,
        scope: pending.scope,
        backfill: pending.backfill,
        api_version: pending.api_version,
    };
    match pending.reauthorize {
        Some(id) => reauthorize(oauth, store, secrets, &id, grant).await,
        None => {
            let client_id = oauth.app().client_id.clone();
            let state = if pending.pending_setup {
                ConnectionState::Pending
            } else {
                ConnectionState::Active
            };
            create(
                store,
                secrets,
                pending.login_url,
                client_id,
                settings,
                grant,
                now,
                state,
            )
            .await
            .map(Authorized::created)
        }
    }
}

/// Connects with a refresh token obtained elsewhere (headless): the refresh grant proves it
/// and names the instance.
pub async fn with_refresh_token<S>(
    oauth: &OAuthClient,
    store: &S,
    secrets: &dyn SecretStore,
    login_url: LoginUrl,
    refresh_token: SecretString,
    settings: ConnectionSettings,
    now: DateTime<Utc>,
) -> Result<Connection, ConnectError>
where
    S: ConnectionReader + ConnectionWriter + StateWriter + ?Sized,
{
    let mut grant = oauth.refresh(&login_url, &refresh_token).await?;
    // Without rotation the refresh token stays the one given; with it, the new one.
    if grant.refresh_token.is_none() {
        grant.refresh_token = Some(refresh_token);
    }
    let client_id = oauth.app().client_id.clone();
    create(
        store,
        secrets,
        login_url,
        client_id,
        settings,
        grant,
        now,
        ConnectionState::Active,
    )
    .await
}

/// Re-authorizes an existing connection with a refresh token obtained elsewhere; the cursor is
/// kept, so syncing resumes where it stopped.
pub async fn reauthorize_with_refresh_token<S>(
    oauth: &OAuthClient,
    store: &S,
    secrets: &dyn SecretStore,
    id: &ConnectionId,
    refresh_token: SecretString,
) -> Result<Authorized, ConnectError>
where
    S: ConnectionReader + ConnectionWriter + StateWriter + ?Sized,
{
    let connection = store
        .get_connection(id)
        .await?
        .ok_or(ConnectError::ConnectionGone)?;
    let oauth = match &connection.client_id {
        Some(client_id) => oauth.for_client_id(client_id),
        None => oauth.clone(),
    };
    let mut grant = oauth.refresh(&connection.login_url, &refresh_token).await?;
    if grant.refresh_token.is_none() {
        grant.refresh_token = Some(refresh_token);
    }
    reauthorize(&oauth, store, secrets, id, grant).await
}

#[allow(clippy::too_many_arguments)]
async fn create<S>(
    store: &S,
    secrets: &dyn SecretStore,
    login_url: LoginUrl,
    client_id: String,
    settings: ConnectionSettings,
    grant: TokenGrant,
    now: DateTime<Utc>,
    state: ConnectionState,
) -> Result<Connection, ConnectError>
where
    S: ConnectionReader + ConnectionWriter + StateWriter + ?Sized,
{
    let org_id = grant.org_id();
    let refresh_token = grant.refresh_token.ok_or(ConnectError::NoRefreshToken)?;
    let mut connection = Connection::new(
        ConnectionId::new_random(),
        settings.channel,
        login_url,
        grant.instance_url,
        settings.api_version,
        settings.scope,
        settings.backfill,
        now,
    )
    .with_client_id(client_id);
    connection.org_id = org_id;
    if state == ConnectionState::Pending {
        connection.state = state;
        connection.state_reason =
            Some("authorized: choose its channel, queues and backfill to start importing".into());
    }
    // The token first: a connection without its token would fail its first sync.
    secrets
        .put_refresh_token(&connection.id, &refresh_token)
        .await?;
    if let Err(e) = store.insert_connection(&connection).await {
        if let Err(cleanup) = secrets.delete_refresh_token(&connection.id).await {
            tracing::warn!(connection = %connection.id, error = %cleanup, "could not remove the refresh token of a connection that failed to be created");
        }
        return Err(e.into());
    }
    Ok(connection)
}

/// Stores the new refresh token of an existing connection, makes it active again (cursor
/// kept), then revokes the token it replaced: once the new one is stored, the old grant only
/// widens what a leaked copy could do, and Salesforce keeps at most five per user and app.
async fn reauthorize<S>(
    oauth: &OAuthClient,
    store: &S,
    secrets: &dyn SecretStore,
    id: &ConnectionId,
    grant: TokenGrant,
) -> Result<Authorized, ConnectError>
where
    S: ConnectionReader + ConnectionWriter + StateWriter + ?Sized,
{
    let org_id = grant.org_id();
    let refresh_token = grant.refresh_token.ok_or(ConnectError::NoRefreshToken)?;
    let Some(before) = store.get_connection(id).await? else {
        return Err(ConnectError::ConnectionGone);
    };
    let superseded = secrets.get_refresh_token(id).await?;
    secrets.put_refresh_token(id, &refresh_token).await?;
    store.reauthorized(id, &grant.instance_url).await?;
    if let Some(org) = org_id
        && before.org_id.as_ref() != Some(&org)
    {
        store.set_org_id(id, &org).await?;
    }
    let connection = store
        .get_connection(id)
        .await?
        .ok_or(ConnectError::ConnectionGone)?;
    let superseded = match superseded {
        Some(old) if old.expose_secret() != refresh_token.expose_secret() => {
            let app = match &before.client_id {
                Some(client_id) => oauth.for_client_id(client_id),
                None => oauth.clone(),
            };
            Some(Revocation::attempt(&app, &before.login_url, &old).await)
        }
        // The same token (a headless re-authorization with the stored one), or none stored.
        _ => None,
    };
    if let Some(r @ Revocation::Failed { .. }) = &superseded {
        tracing::warn!(connection = %id, outcome = %r, "could not revoke the superseded refresh token");
    }
    Ok(Authorized {
        connection,
        reauthorized: true,
        superseded,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn callback_parameters_are_checked() {
        let p = CallbackParams::parse("code=aPrx%3D%3D&state=abc").unwrap();
        assert_eq!(p.code.as_deref(), Some("aPrx=="));
        assert_eq!(p.state.as_deref(), Some("abc"));
        let e = CallbackParams::parse(
            "error=access_denied&error_description=end-user%20denied%20authorization&state=s",
        )
        .unwrap();
        assert_eq!(e.error.as_deref(), Some("access_denied"));
        assert!(matches!(
            CallbackParams::parse("state=a&state=b"),
            Err(ConnectError::MalformedCallback(_))
        ));
        assert!(matches!(
            CallbackParams::parse(&format!("code={}", "x".repeat(5000))),
            Err(ConnectError::MalformedCallback(_))
        ));
        assert!(matches!(
            CallbackParams::parse("code=a%00b&state=s"),
            Err(ConnectError::MalformedCallback(_))
        ));
        assert!(CallbackParams::parse("").unwrap().state.is_none());
    }
}
