//! Lambda `oauth-callback`: `GET /oauth/callback`, where Salesforce sends the user's browser
//! after they approved (or declined) casesync.
//!
//! The flow was started by the management API (`POST /connections` or
//! `POST /connections/{id}/reauthorize`), which stored a single-use `state` bound to the
//! channel, queues, backfill and PKCE verifier. Here [`connect::complete`] consumes that state
//! (first thing, whatever happens next), exchanges the code, stores the refresh token in
//! Secrets Manager and creates (or re-authorizes) the connection. The browser is then
//! redirected (302) to `APP_URL?connection=<id>&status=connected|reauthorized`; every failure
//! answers with a small HTML page instead (see [`page`]).
//!
//! The handler takes the raw [`ApiGatewayV2httpRequest`] rather than a `lambda_http` request:
//! the query string is parsed exactly as the browser sent it (`rawQueryString`), and a query that
//! is not a valid URI cannot make the request conversion fail before the handler runs.
//!
//! Nothing secret (the code, the tokens, the PKCE verifier, the client secret) reaches a
//! response, a log line or an error message: errors are reported by kind, and
//! [`casesync_aws::telemetry::init`] keeps the runtime from logging the raw event (which holds the code)
//! even at TRACE.

pub mod page;

use std::sync::Arc;
use std::time::Duration;

use aws_lambda_events::apigw::{ApiGatewayV2httpRequest, ApiGatewayV2httpResponse};
use aws_lambda_events::http::Method;
use casesync_aws::config::{
    self, APP_URL, AUTH_STATES_TABLE, CONNECTIONS_TABLE, ClientSecretError, ConfigError, Env,
    SALESFORCE_CLIENT_ID, SALESFORCE_CLIENT_SECRET_ARN, SECRET_PREFIX,
};
use casesync_aws::{DynamoAuthStateStore, DynamoConnectionStore, SecretsManagerStore};
use casesync_core::connect::{self, CallbackParams, ConnectError};
use casesync_core::domain::Connection;
use casesync_core::ports::{AuthStateStore, Clock, ConnectionStore, SecretStore, SystemClock};
use casesync_core::salesforce::{
    HttpSettings, OAuthApp, OAuthClient, RetryPolicy, Salesforce, SalesforceError,
};
use chrono::{DateTime, Utc};
use url::Url;

pub use page::Page;

/// The function's configuration, read once at start.
#[derive(Debug, Clone)]
pub struct Config {
    pub connections_table: String,
    pub auth_states_table: String,
    pub secret_prefix: String,
    pub client_id: String,
    pub client_secret_arn: String,
    /// Where the browser goes once connected, and what error pages link back to.
    pub app_url: Url,
}

impl Config {
    /// Reads every variable, reporting every missing or invalid one at once.
    pub fn from_env(mut env: Env) -> Result<Self, ConfigError> {
        let connections_table = env.required(CONNECTIONS_TABLE);
        let auth_states_table = env.required(AUTH_STATES_TABLE);
        let secret_prefix = env.required(SECRET_PREFIX);
        let client_id = env.required(SALESFORCE_CLIENT_ID);
        let client_secret_arn = env.required(SALESFORCE_CLIENT_SECRET_ARN);
        let app_url = env.parsed(APP_URL, parse_app_url);
        env.finish()?;
        Ok(Self {
            connections_table,
            auth_states_table,
            secret_prefix,
            client_id,
            client_secret_arn,
            app_url: app_url.expect("finish() fails when APP_URL is missing or invalid"),
        })
    }
}

/// `APP_URL` must be an absolute http(s) URL: the browser is redirected there.
pub fn parse_app_url(raw: &str) -> Result<Url, String> {
    let url = Url::parse(raw).map_err(|e| format!("{raw:?} is not an absolute URL ({e})"))?;
    match url.scheme() {
        "https" | "http" if url.host().is_some() => Ok(url),
        _ => Err(format!("{raw:?} must be an http(s) URL")),
    }
}

/// Timeouts for a request a person is waiting on, behind API Gateway's 30-second limit.
pub fn interactive_http() -> HttpSettings {
    HttpSettings {
        connect_timeout: Duration::from_secs(5),
        request_timeout: Duration::from_secs(10),
        retry: RetryPolicy {
            max_attempts: 3,
            min_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(2),
            max_total_delay: Duration::from_secs(4),
        },
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    ClientSecret(#[from] ClientSecretError),
    #[error("could not build the Salesforce HTTP client: {0}")]
    Salesforce(#[from] SalesforceError),
}

/// The handler's dependencies, built once per cold start.
#[derive(Clone)]
pub struct Callback {
    pub oauth: OAuthClient,
    pub connections: Arc<dyn ConnectionStore>,
    pub auth_states: Arc<dyn AuthStateStore>,
    pub secrets: Arc<dyn SecretStore>,
    pub app_url: Url,
    pub clock: Arc<dyn Clock>,
}

impl Callback {
    /// Wires the AWS adapters from one `SdkConfig`; reads the client secret once.
    pub async fn from_aws(
        config: &Config,
        sdk: &aws_config::SdkConfig,
        http: &HttpSettings,
    ) -> Result<Self, StartupError> {
        let dynamodb = aws_sdk_dynamodb::Client::new(sdk);
        let secrets_manager = aws_sdk_secretsmanager::Client::new(sdk);
        let client_secret =
            config::read_client_secret(&secrets_manager, &config.client_secret_arn).await?;
        let salesforce = Salesforce::new(
            OAuthApp {
                client_id: config.client_id.clone(),
                client_secret: Some(client_secret),
            },
            http,
        )?;
        Ok(Self {
            oauth: salesforce.oauth,
            connections: Arc::new(DynamoConnectionStore::new(
                dynamodb.clone(),
                &config.connections_table,
            )),
            auth_states: Arc::new(DynamoAuthStateStore::new(
                dynamodb,
                &config.auth_states_table,
            )),
            secrets: Arc::new(SecretsManagerStore::new(
                secrets_manager,
                &config.secret_prefix,
            )),
            app_url: config.app_url.clone(),
            clock: Arc::new(SystemClock),
        })
    }

    /// Handles one API Gateway HTTP API (payload 2.0) event. Never fails: every problem is a
    /// page for the person in front of the browser.
    pub async fn handle(&self, event: ApiGatewayV2httpRequest) -> ApiGatewayV2httpResponse {
        let method = &event.request_context.http.method;
        // Not HEAD: a link checker's HEAD would complete (and so use up) the flow.
        if method != Method::GET {
            return Page::method_not_allowed(&self.app_url).into_response();
        }
        let raw_query = event.raw_query_string.as_deref().unwrap_or("");
        let now = self.clock.now();
        match self.complete(raw_query, now).await {
            Ok(connection) => {
                let reauthorized = connection.created_at != now;
                tracing::info!(
                    connection = %connection.id,
                    channel = %connection.channel,
                    reauthorized,
                    "connection authorized"
                );
                page::redirect(&self.app_url, &connection.id, reauthorized)
            }
            Err(e) => {
                let page = Page::for_error(&e, &self.app_url);
                if page.status >= 500 {
                    tracing::error!(error = %e, status = page.status, "OAuth callback failed");
                } else {
                    tracing::warn!(error = %e, status = page.status, "OAuth callback refused");
                }
                page.into_response()
            }
        }
    }

    async fn complete(
        &self,
        raw_query: &str,
        now: DateTime<Utc>,
    ) -> Result<Connection, ConnectError> {
        let params = match CallbackParams::parse(raw_query) {
            Ok(params) => params,
            Err(e) => {
                // Single use means consumed on first sight: a tampered callback burns its state.
                self.burn_states(raw_query).await;
                return Err(e);
            }
        };
        connect::complete(
            &self.oauth,
            self.auth_states.as_ref(),
            self.connections.as_ref(),
            self.secrets.as_ref(),
            &params,
            now,
        )
        .await
    }

    /// Takes (and drops) the pending flows a malformed callback names, so that the flow it
    /// belonged to cannot be completed later by a cleaner copy of the same link.
    async fn burn_states(&self, raw_query: &str) {
        let states = url::form_urlencoded::parse(raw_query.as_bytes())
            .filter(|(k, v)| k == "state" && !v.is_empty() && v.len() <= 256)
            .map(|(_, v)| v.into_owned())
            .take(4);
        for state in states {
            if let Err(e) = self.auth_states.take_auth_state(&state).await {
                tracing::warn!(error = %e, "could not discard the state of a malformed callback");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(vars: Vec<(&'static str, &'static str)>) -> Env {
        Env::from_pairs(vars)
    }

    fn with_app_url(app_url: &'static str) -> Env {
        env(vec![
            (CONNECTIONS_TABLE, "c"),
            (AUTH_STATES_TABLE, "a"),
            (SECRET_PREFIX, "p"),
            (SALESFORCE_CLIENT_ID, "id"),
            (SALESFORCE_CLIENT_SECRET_ARN, "arn"),
            (APP_URL, app_url),
        ])
    }

    #[test]
    fn every_missing_variable_is_reported_at_once() {
        let err = Config::from_env(env(vec![(CONNECTIONS_TABLE, "c")])).unwrap_err();
        assert_eq!(
            err.missing,
            vec![
                AUTH_STATES_TABLE,
                SECRET_PREFIX,
                SALESFORCE_CLIENT_ID,
                SALESFORCE_CLIENT_SECRET_ARN,
                APP_URL
            ]
        );
    }

    #[test]
    fn app_url_must_be_an_absolute_http_url() {
        let config = Config::from_env(with_app_url("https://app.example.com/x?y=1")).unwrap();
        assert_eq!(config.app_url.as_str(), "https://app.example.com/x?y=1");
        for bad in ["javascript:alert(1)", "/relative", "app.example.com"] {
            let err = Config::from_env(with_app_url(bad)).unwrap_err();
            assert!(err.to_string().contains("APP_URL"), "{bad}: {err}");
        }
    }
}
