//! The process-wide Salesforce clients: built once at start, shared by every connection.

use std::sync::Arc;

use super::http::{HttpSettings, RetryPolicy, build_client};
use super::oauth::{OAuthApp, OAuthClient};
use super::tokens::{RefreshingTokens, TokenCache};
use super::{OrgApi, SalesforceError};
use crate::domain::Connection;
use crate::ports::SecretStore;

#[derive(Clone)]
pub struct Salesforce {
    pub http: reqwest::Client,
    pub oauth: OAuthClient,
    pub retry: RetryPolicy,
    pub tokens: Arc<TokenCache>,
}

impl Salesforce {
    pub fn new(app: OAuthApp, settings: &HttpSettings) -> Result<Self, SalesforceError> {
        let http = build_client(settings)?;
        Ok(Self {
            oauth: OAuthClient::new(http.clone(), app, settings.retry),
            http,
            retry: settings.retry,
            tokens: TokenCache::new(),
        })
    }

    /// A REST client for one connection, with tokens from its stored refresh token.
    pub fn org(&self, connection: &Connection, secrets: Arc<dyn SecretStore>) -> Arc<OrgApi> {
        let oauth = match &connection.client_id {
            Some(id) => self.oauth.for_client_id(id),
            None => self.oauth.clone(),
        };
        let tokens = Arc::new(RefreshingTokens::new(
            oauth,
            connection.login_url.clone(),
            connection.id.clone(),
            secrets,
            self.tokens.clone(),
        ));
        Arc::new(OrgApi::new(
            self.http.clone(),
            self.retry,
            connection.instance_url.clone(),
            connection.api_version,
            tokens,
        ))
    }
}
