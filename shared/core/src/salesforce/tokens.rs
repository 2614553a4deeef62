//! Access tokens for one connection: obtained from its refresh token, cached for the process,
//! refreshed once when Salesforce rejects them.
//!
//! Two rules keep the refresh token alive:
//! - refreshes are single-flight: when several requests see a 401 at once, one refresh runs and
//!   the others use its result (each extra refresh would spend a rotated token);
//! - a rotated refresh token is persisted *before* the new access token is used: if persisting
//!   fails, the old token is already dead, and the user must know now, not at the next run.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use secrecy::SecretString;

use super::error::SalesforceError;
use super::oauth::OAuthClient;
use crate::domain::{ConnectionId, LoginUrl};
use crate::ports::SecretStore;

/// An access token and the generation it belongs to (bumped by each refresh).
#[derive(Clone, Debug)]
pub struct AccessToken {
    pub token: SecretString,
    pub generation: u64,
    /// The org the token belongs to, when the token endpoint said (its identity URL).
    pub org_id: Option<crate::domain::OrgId>,
}

#[async_trait]
pub trait AccessTokens: Send + Sync {
    /// The current access token, refreshing first if there is none yet.
    async fn current(&self) -> Result<AccessToken, SalesforceError>;
    /// `rejected` got a 401: returns a newer token, refreshing unless another caller already did.
    async fn refresh_after(&self, rejected: &AccessToken) -> Result<AccessToken, SalesforceError>;
}

/// Access tokens kept between runs in one process (a warm Lambda, a `--watch` loop), so a
/// steady-state tick costs no token call. Never written anywhere.
#[derive(Default)]
pub struct TokenCache {
    tokens: Mutex<HashMap<ConnectionId, AccessToken>>,
}

impl TokenCache {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    fn get(&self, id: &ConnectionId) -> Option<AccessToken> {
        self.tokens
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(id)
            .cloned()
    }

    fn put(&self, id: &ConnectionId, token: AccessToken) {
        self.tokens
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id.clone(), token);
    }

    /// Forgets a connection's token (after a disconnect or delete).
    pub fn forget(&self, id: &ConnectionId) {
        self.tokens
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(id);
    }
}

/// Access tokens from the refresh token in a [`SecretStore`].
pub struct RefreshingTokens {
    oauth: OAuthClient,
    login: LoginUrl,
    connection: ConnectionId,
    secrets: Arc<dyn SecretStore>,
    cache: Arc<TokenCache>,
    refreshing: tokio::sync::Mutex<()>,
    refreshes: std::sync::atomic::AtomicU64,
}

impl RefreshingTokens {
    pub fn new(
        oauth: OAuthClient,
        login: LoginUrl,
        connection: ConnectionId,
        secrets: Arc<dyn SecretStore>,
        cache: Arc<TokenCache>,
    ) -> Self {
        Self {
            oauth,
            login,
            connection,
            secrets,
            cache,
            refreshing: tokio::sync::Mutex::new(()),
            refreshes: Default::default(),
        }
    }

    /// How many refresh grants this instance made.
    pub fn refreshes(&self) -> u64 {
        self.refreshes.load(std::sync::atomic::Ordering::Relaxed)
    }

    async fn refresh(&self, previous_generation: u64) -> Result<AccessToken, SalesforceError> {
        let refresh_token = self
            .secrets
            .get_refresh_token(&self.connection)
            .await?
            .ok_or(SalesforceError::MissingRefreshToken)?;
        self.refreshes
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let grant = self.oauth.refresh(&self.login, &refresh_token).await?;
        if let Some(rotated) = &grant.refresh_token {
            // Rotation: the old refresh token is now dead. Persist the new one first.
            self.secrets
                .put_refresh_token(&self.connection, rotated)
                .await?;
            tracing::debug!(connection = %self.connection, "stored a rotated refresh token");
        }
        let token = AccessToken {
            org_id: grant.org_id(),
            token: grant.access_token,
            generation: previous_generation + 1,
        };
        self.cache.put(&self.connection, token.clone());
        Ok(token)
    }
}

#[async_trait]
impl AccessTokens for RefreshingTokens {
    async fn current(&self) -> Result<AccessToken, SalesforceError> {
        if let Some(t) = self.cache.get(&self.connection) {
            return Ok(t);
        }
        let _guard = self.refreshing.lock().await;
        match self.cache.get(&self.connection) {
            Some(t) => Ok(t),
            None => self.refresh(0).await,
        }
    }

    async fn refresh_after(&self, rejected: &AccessToken) -> Result<AccessToken, SalesforceError> {
        let _guard = self.refreshing.lock().await;
        match self.cache.get(&self.connection) {
            Some(t) if t.generation > rejected.generation => Ok(t),
            _ => self.refresh(rejected.generation).await,
        }
    }
}

/// A fixed access token, for a one-off call right after an OAuth exchange.
pub struct StaticToken(pub SecretString);

#[async_trait]
impl AccessTokens for StaticToken {
    async fn current(&self) -> Result<AccessToken, SalesforceError> {
        Ok(AccessToken {
            token: self.0.clone(),
            generation: 0,
            org_id: None,
        })
    }

    async fn refresh_after(&self, _: &AccessToken) -> Result<AccessToken, SalesforceError> {
        Err(SalesforceError::InvalidSession {
            message: "the access token from the authorization was rejected".into(),
        })
    }
}
