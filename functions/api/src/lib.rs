//! Lambda `api`: the management API for connections, behind an API Gateway HTTP API with IAM
//! authorization (payload format 2.0). API Gateway checks the caller; this handler still
//! checks every input.
//!
//! | route | body | answer |
//! |---|---|---|
//! | `POST /connections` | `{"channel", "login_url"?, "queues"?, "backfill"?, "api_version"?}` | `201 {"authorize_url", "expires_at"}` |
//! | `GET /connections` | | `200 {"connections": [connection]}` |
//! | `GET /connections/{id}` | | `200 connection + {"last_lookback_at", "data_points", "failures"}` |
//! | `PUT /connections/{id}` | `{"queues"?, "backfill"?}` (at least one) | `200 {"changed", "cursor_restarted_at", "message", "connection"}` |
//! | `GET /connections/{id}/queues` | | `200 {"selected", "queues": [{"id", "name", "developer_name"}]}` |
//! | `GET /connections/{id}/diagnostics` | | `200 {"healthy", "checks": [{"name", "status", "detail", "fix"}], "api_calls"}` |
//! | `POST /connections/{id}/disconnect` | | `200 {"message", "connection"}` |
//! | `POST /connections/{id}/reauthorize` | | `201 {"authorize_url", "expires_at"}` |
//! | `DELETE /connections/{id}` | | `200 {"id", "deleted", "data_points_deleted", "token": {"status", "message"}}` |
//!
//! Defaults of `POST /connections`: `login_url` `https://login.salesforce.com`, `queues`
//! `"all"`, `backfill` `"30d"`, `api_version` `"59.0"`. Errors: see [`error`]. The request
//! and response shapes are in [`views`] and [`input`]; the handlers in [`routes`].
//!
//! The OAuth redirect URI sent to Salesforce is `CALLBACK_URL`, or else
//! `https://<requestContext.domainName>/oauth/callback`: the callback function's route on the
//! same API.

pub mod error;
pub mod input;
pub mod routes;
pub mod views;

use std::sync::Arc;
use std::time::Duration;

use casesync_aws::config::{
    self, AUTH_STATES_TABLE, CALLBACK_URL, CONNECTIONS_TABLE, ClientSecretError, ConfigError,
    DATA_POINTS_TABLE, Env, SALESFORCE_CLIENT_ID, SALESFORCE_CLIENT_SECRET_ARN, SECRET_PREFIX,
};
use casesync_aws::{
    DynamoAuthStateStore, DynamoConnectionStore, DynamoDataPointStore, SecretsManagerStore,
};
use casesync_core::ports::{
    AuthStateStore, Clock, ConnectionStore, DataPointStore, SecretStore, SystemClock,
};
use casesync_core::salesforce::{HttpSettings, OAuthApp, RetryPolicy, Salesforce, SalesforceError};
use casesync_core::sync::SyncConfig;
use chrono::TimeDelta;
use lambda_http::http::{HeaderValue, Method, StatusCode, header};
use lambda_http::request::RequestContext;
use lambda_http::{Body, Request, RequestExt, Response};
use serde::Serialize;

pub use error::ApiError;

/// The function's configuration, read once at start.
#[derive(Debug, Clone)]
pub struct Config {
    pub connections_table: String,
    pub data_points_table: String,
    pub auth_states_table: String,
    pub secret_prefix: String,
    pub client_id: String,
    pub client_secret_arn: String,
    /// The OAuth redirect URI; derived from the request's domain when unset.
    pub callback_url: Option<String>,
}

impl Config {
    /// Reads every variable, reporting every missing or invalid one at once.
    pub fn from_env(mut env: Env) -> Result<Self, ConfigError> {
        let connections_table = env.required(CONNECTIONS_TABLE);
        let data_points_table = env.required(DATA_POINTS_TABLE);
        let auth_states_table = env.required(AUTH_STATES_TABLE);
        let secret_prefix = env.required(SECRET_PREFIX);
        let client_id = env.required(SALESFORCE_CLIENT_ID);
        let client_secret_arn = env.required(SALESFORCE_CLIENT_SECRET_ARN);
        // Optional, but checked when set.
        let callback_url = match env.optional(CALLBACK_URL) {
            Some(_) => env.parsed(CALLBACK_URL, parse_callback_url),
            None => None,
        };
        env.finish()?;
        Ok(Self {
            connections_table,
            data_points_table,
            auth_states_table,
            secret_prefix,
            client_id,
            client_secret_arn,
            callback_url,
        })
    }
}

/// `CALLBACK_URL` must be an absolute https URL (http only on loopback, for local runs).
pub fn parse_callback_url(raw: &str) -> Result<String, String> {
    let url = url::Url::parse(raw).map_err(|e| format!("{raw:?} is not an absolute URL ({e})"))?;
    let loopback = matches!(url.host_str(), Some("127.0.0.1" | "localhost" | "[::1]"));
    match url.scheme() {
        "https" => Ok(url.to_string()),
        "http" if loopback => Ok(url.to_string()),
        _ => Err(format!("{raw:?} must be an https URL")),
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

/// Behaviour that tests change; [`Options::default`] is production.
#[derive(Debug, Clone)]
pub struct Options {
    /// Accept `login_url`s on loopback (the simulator). Off in production: the login host
    /// receives the client secret and the authorization codes.
    pub allow_loopback_login: bool,
    /// What diagnostics compare against (the worker's settings).
    pub sync: SyncConfig,
    /// How long `DELETE` waits for a running sync to stop before answering 409.
    pub delete_wait: Duration,
    /// How long `DELETE` holds the connection's sync lease (keeps workers off while deleting).
    pub delete_lease: TimeDelta,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            allow_loopback_login: false,
            sync: SyncConfig::default(),
            delete_wait: Duration::from_secs(10),
            delete_lease: TimeDelta::minutes(5),
        }
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
pub struct Api {
    pub salesforce: Salesforce,
    pub connections: Arc<dyn ConnectionStore>,
    pub data_points: Arc<dyn DataPointStore>,
    pub auth_states: Arc<dyn AuthStateStore>,
    pub secrets: Arc<dyn SecretStore>,
    pub callback_url: Option<String>,
    pub clock: Arc<dyn Clock>,
    pub options: Options,
}

impl Api {
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
            salesforce,
            connections: Arc::new(DynamoConnectionStore::new(
                dynamodb.clone(),
                &config.connections_table,
            )),
            data_points: Arc::new(DynamoDataPointStore::new(
                dynamodb.clone(),
                &config.data_points_table,
            )),
            auth_states: Arc::new(DynamoAuthStateStore::new(
                dynamodb,
                &config.auth_states_table,
            )),
            secrets: Arc::new(SecretsManagerStore::new(
                secrets_manager,
                &config.secret_prefix,
            )),
            callback_url: config.callback_url.clone(),
            clock: Arc::new(SystemClock),
            options: Options::default(),
        })
    }

    /// Handles one request. Never fails: every error is a JSON answer.
    pub async fn handle(&self, req: Request) -> Response<Body> {
        let method = req.method().clone();
        let path = route_path(&req);
        let result = self.route(&method, &path, &req).await;
        let response = result.unwrap_or_else(|e| error_response(&e));
        let status = response.status().as_u16();
        let caller = caller(&req);
        if status >= 500 {
            tracing::error!(%method, path, caller, status, "request failed");
        } else {
            tracing::info!(%method, path, caller, status, "request");
        }
        response
    }

    async fn route(
        &self,
        method: &Method,
        path: &str,
        req: &Request,
    ) -> Result<Response<Body>, ApiError> {
        let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
        let not_allowed = |allow| Err(ApiError::MethodNotAllowed { allow });
        match segments.as_slice() {
            ["connections"] => match *method {
                Method::GET => self.list_connections().await,
                Method::POST => self.create_connection(req).await,
                _ => not_allowed("GET, POST"),
            },
            ["connections", id] => match *method {
                Method::GET => self.get_connection(id).await,
                Method::PUT => self.update_connection(id, req).await,
                Method::DELETE => self.delete_connection(id).await,
                _ => not_allowed("GET, PUT, DELETE"),
            },
            ["connections", id, "queues"] => match *method {
                Method::GET => self.list_queues(id).await,
                _ => not_allowed("GET"),
            },
            ["connections", id, "diagnostics"] => match *method {
                Method::GET => self.diagnostics(id).await,
                _ => not_allowed("GET"),
            },
            ["connections", id, "disconnect"] => match *method {
                Method::POST => self.disconnect(id).await,
                _ => not_allowed("POST"),
            },
            ["connections", id, "reauthorize"] => match *method {
                Method::POST => self.reauthorize(id, req).await,
                _ => not_allowed("POST"),
            },
            _ => Err(ApiError::route_not_found()),
        }
    }

    /// `CALLBACK_URL`, or the callback route on the domain this request came in on.
    fn redirect_uri(&self, req: &Request) -> Result<String, ApiError> {
        if let Some(url) = &self.callback_url {
            return Ok(url.clone());
        }
        match req.request_context_ref() {
            Some(RequestContext::ApiGatewayV2(ctx)) => match ctx.domain_name.as_deref() {
                Some(domain) if is_host(domain) => Ok(format!("https://{domain}/oauth/callback")),
                _ => Err(ApiError::Internal(
                    "CALLBACK_URL is not set and the request names no usable domain".into(),
                )),
            },
            _ => Err(ApiError::Internal(
                "CALLBACK_URL is not set and the request is not an HTTP API event".into(),
            )),
        }
    }
}

/// A bare host name (API Gateway's `domainName`), nothing that could bend the URL.
fn is_host(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
}

/// The path without the stage prefix API Gateway adds for a named stage.
fn route_path(req: &Request) -> String {
    let raw = match req.raw_http_path() {
        "" => req.uri().path(),
        p => p,
    };
    if let Some(RequestContext::ApiGatewayV2(ctx)) = req.request_context_ref()
        && let Some(stage) = ctx.stage.as_deref()
        && stage != "$default"
        && let Some(rest) = raw.strip_prefix(&format!("/{stage}"))
        && (rest.is_empty() || rest.starts_with('/'))
    {
        return rest.to_owned();
    }
    raw.to_owned()
}

/// Who called (the IAM principal API Gateway authorized), for the log.
fn caller(req: &Request) -> Option<String> {
    match req.request_context_ref() {
        Some(RequestContext::ApiGatewayV2(ctx)) => ctx
            .authorizer
            .as_ref()
            .and_then(|a| a.iam.as_ref())
            .and_then(|iam| iam.user_arn.clone()),
        _ => None,
    }
}

pub(crate) fn json<T: Serialize>(status: StatusCode, body: &T) -> Response<Body> {
    match serde_json::to_string(body) {
        Ok(text) => with_headers(status, text),
        Err(e) => error_response(&ApiError::Internal(format!("encoding the answer: {e}"))),
    }
}

fn with_headers(status: StatusCode, text: String) -> Response<Body> {
    let mut response = Response::new(Body::Text(text));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}

fn error_response(e: &ApiError) -> Response<Body> {
    let status = e.status();
    match e {
        ApiError::Store(inner) if status.is_server_error() => {
            tracing::error!(error = %inner, "store failure")
        }
        ApiError::Internal(detail) => tracing::error!(error = %detail, "internal error"),
        ApiError::Salesforce(inner) => tracing::warn!(error = %inner, "Salesforce failure"),
        _ => {}
    }
    let text = serde_json::to_string(&e.body()).unwrap_or_else(|_| {
        r#"{"code":"internal","message":"something went wrong on our side"}"#.to_owned()
    });
    let mut response = with_headers(status, text);
    if let ApiError::MethodNotAllowed { allow } = e {
        response
            .headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static(allow));
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(vars: Vec<(&'static str, &'static str)>) -> Env {
        Env::from_pairs(vars)
    }

    fn complete() -> Vec<(&'static str, &'static str)> {
        vec![
            (CONNECTIONS_TABLE, "c"),
            (DATA_POINTS_TABLE, "d"),
            (AUTH_STATES_TABLE, "a"),
            (SECRET_PREFIX, "p"),
            (SALESFORCE_CLIENT_ID, "id"),
            (SALESFORCE_CLIENT_SECRET_ARN, "arn"),
        ]
    }

    #[test]
    fn every_missing_variable_is_reported_at_once() {
        let err = Config::from_env(env(vec![(DATA_POINTS_TABLE, "d")])).unwrap_err();
        assert_eq!(
            err.missing,
            vec![
                CONNECTIONS_TABLE,
                AUTH_STATES_TABLE,
                SECRET_PREFIX,
                SALESFORCE_CLIENT_ID,
                SALESFORCE_CLIENT_SECRET_ARN
            ]
        );
    }

    #[test]
    fn callback_url_is_optional_but_checked() {
        assert_eq!(
            Config::from_env(env(complete())).unwrap().callback_url,
            None
        );
        let mut vars = complete();
        vars.push((CALLBACK_URL, "https://casesync.example.com/oauth/callback"));
        assert_eq!(
            Config::from_env(env(vars)).unwrap().callback_url.as_deref(),
            Some("https://casesync.example.com/oauth/callback")
        );
        let mut vars = complete();
        vars.push((CALLBACK_URL, "http://casesync.example.com/oauth/callback"));
        let err = Config::from_env(env(vars)).unwrap_err();
        assert!(err.to_string().contains("CALLBACK_URL"), "{err}");
    }

    #[test]
    fn domain_names_cannot_bend_the_redirect_uri() {
        assert!(is_host("k7x2m9q4ab.execute-api.eu-west-1.amazonaws.com"));
        for bad in ["", "evil.com/x", "a@b", "evil.com?", "x y"] {
            assert!(!is_host(bad), "{bad}");
        }
    }
}
