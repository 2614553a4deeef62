//! Lambda `api`: the management API for connections, behind an API Gateway HTTP API with IAM
//! authorization (payload format 2.0). API Gateway checks the caller; this handler still
//! checks every input.
//!
//! | route | body | answer |
//! |---|---|---|
//! | `POST /connections` | `{"channel", "login_url"?, "queues"?, "backfill"?, "api_version"?}` | `201 {"authorize_url", "expires_at"}` |
//! | `GET /connections` | | `200 {"connections": [connection]}` (a connection has `progress_point` and `backfill_slices_left`: how far a sliced backfill has read in all) |
//! | `GET /connections/{id}` | | `200 connection + {"last_lookback_at", "data_points", "failures"}` |
//! | `PUT /connections/{id}` | `{"queues"?, "backfill"?}` (at least one) | `200 {"changed", "cursor_restarted_at", "message", "connection"}` |
//! | `GET /connections/{id}/queues` | | `200 {"selected", "queues": [{"id", "name", "developer_name"}]}` |
//! | `GET /connections/{id}/diagnostics` | | `200 {"healthy", "checks": [{"name", "status", "detail", "fix"}], "api_calls"}` |
//! | `POST /connections/{id}/disconnect` | | `200 {"message", "connection"}` |
//! | `POST /connections/{id}/reauthorize` | | `201 {"authorize_url", "expires_at"}` |
//! | `DELETE /connections/{id}` | | `200 {"id", "deleted", "data_points_deleted", "token": {"status", "message"}}` |
//! | `GET /channels` | | `200 {"channels": [{"name", "connections", "data_points"}]}` |
//! | `GET /channels/{channel}/data-points` | query `limit`, `cursor`, `changed_since`, `connection` | `200 {"data_points", "omitted", "next_cursor"}` (see [`read`]) |
//! | `GET /data-points/{id}` | | `200` one data point (see [`read`]) |
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
pub mod read;
pub mod routes;
pub mod views;

use casesync_aws::config::{CALLBACK_URL, CURSOR_SECRET_ARN};
use casesync_aws::{Env, StartupError, Wiring};
use casesync_core::channel::CursorKey;
use casesync_core::manage::{Manager, Policy};
use casesync_core::ports::{ChangeFeed, SystemClock};
use casesync_core::salesforce::HttpSettings;
use lambda_http::http::{HeaderValue, Method, StatusCode, header};
use lambda_http::request::RequestContext;
use lambda_http::{Body, Request, RequestExt, Response};
use secrecy::ExposeSecret;
use serde::Serialize;
use std::sync::Arc;

pub use error::ApiError;

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

/// The handler's dependencies, built once per cold start.
#[derive(Clone)]
pub struct Api {
    /// The use cases every route calls.
    pub manager: Manager,
    /// The OAuth redirect URI; derived from the request's domain when unset.
    pub callback_url: Option<String>,
    /// The channels' data points in the order they last changed (the read routes).
    pub feed: Arc<dyn ChangeFeed>,
    /// Signs the read routes' page cursors.
    pub cursor_key: Arc<CursorKey>,
}

impl Api {
    /// The production wiring: the DynamoDB and Secrets Manager adapters from one `SdkConfig`,
    /// the environment read once (`CONNECTIONS_TABLE`, `DATA_POINTS_TABLE`,
    /// `AUTH_STATES_TABLE`, `SECRET_PREFIX`, `SALESFORCE_CLIENT_ID`,
    /// `SALESFORCE_CLIENT_SECRET_ARN`, `CURSOR_SECRET_ARN`, and optionally `CALLBACK_URL`),
    /// the Connected App's consumer secret and the cursor key read once.
    pub async fn from_env(sdk: &aws_config::SdkConfig, env: Env) -> Result<Self, StartupError> {
        let mut wiring = Wiring::new(sdk, env);
        let connections = wiring.connections();
        let data_points = wiring.data_points();
        let auth_states = wiring.auth_states();
        let secrets = wiring.secrets();
        wiring.secret(CURSOR_SECRET_ARN);
        // Optional, but checked when set.
        let callback_url = match wiring.env().optional(CALLBACK_URL) {
            Some(_) => wiring.env().parsed(CALLBACK_URL, parse_callback_url),
            None => None,
        };
        let mut started = wiring
            .start_with_salesforce(&HttpSettings::interactive())
            .await?;
        let cursor_key = started
            .secret(CURSOR_SECRET_ARN)
            .map(|k| CursorKey::new(k.expose_secret().as_bytes().to_vec()))
            .expect("every secret asked for is read at the start");
        Ok(Self {
            manager: Manager {
                connections,
                data_points: data_points.clone(),
                auth_states,
                secrets,
                salesforce: started.salesforce,
                clock: Arc::new(SystemClock),
                policy: Policy::default(),
                actor: "the management API",
            },
            callback_url,
            feed: data_points,
            cursor_key: Arc::new(cursor_key),
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
            ["channels"] => match *method {
                Method::GET => self.list_channels(req).await,
                _ => not_allowed("GET"),
            },
            ["channels", channel, "data-points"] => match *method {
                Method::GET => self.channel_data_points(channel, req).await,
                _ => not_allowed("GET"),
            },
            ["data-points", id] => match *method {
                Method::GET => self.data_point(id, req).await,
                _ => not_allowed("GET"),
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

    #[test]
    fn callback_url_must_be_https_or_loopback() {
        assert_eq!(
            parse_callback_url("https://casesync.example.com/oauth/callback").as_deref(),
            Ok("https://casesync.example.com/oauth/callback")
        );
        assert!(parse_callback_url("http://127.0.0.1:9/oauth/callback").is_ok());
        for bad in [
            "http://casesync.example.com/oauth/callback",
            "/oauth/callback",
            "javascript:alert(1)",
        ] {
            assert!(parse_callback_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn domain_names_cannot_bend_the_redirect_uri() {
        assert!(is_host("k7x2m9q4ab.execute-api.eu-west-1.amazonaws.com"));
        for bad in ["", "evil.com/x", "a@b", "evil.com?", "x y"] {
            assert!(!is_host(bad), "{bad}");
        }
    }
}
