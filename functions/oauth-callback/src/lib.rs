//! Lambda `oauth-callback`: `GET /oauth/callback`, where Salesforce sends the user's browser
//! after they approved (or declined) casesync.
//!
//! The flow was started by the management API (`POST /connections` or
//! `POST /connections/{id}/reauthorize`), which stored a single-use `state` bound to the
//! channel, queues, backfill and PKCE verifier. Here [`connect::complete`] consumes that state
//! (first thing, whatever happens next), exchanges the code, stores the refresh token in
//! Secrets Manager and creates (or re-authorizes) the connection. The browser is then
//! redirected (302) to `APP_URL?connection=<id>&status=connected|reauthorized`; every failure
//! answers with a small HTML page instead (see [`page`]). Without `APP_URL`, that is the
//! stack's console on the same API, `https://<domain>/console`: a new source lands on its
//! "Configure import".
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

use aws_lambda_events::apigw::{ApiGatewayV2httpRequest, ApiGatewayV2httpResponse};
use aws_lambda_events::http::Method;
use casesync_aws::config::APP_URL;
use casesync_aws::{Env, StartupError, Wiring};
use casesync_core::manage::connect::{self, Authorized, CallbackParams, ConnectError};
use casesync_core::ports::{AuthStateStore, Clock, ConnectionStore, SecretStore, SystemClock};
use casesync_core::salesforce::{HttpSettings, OAuthClient};
use chrono::{DateTime, Utc};
use url::Url;

pub use page::Page;

/// Where the stack serves its console (the `console` function), on the same API.
pub const CONSOLE_PATH: &str = "/console";

/// `APP_URL` must be an absolute http(s) URL: the browser is redirected there.
pub fn parse_app_url(raw: &str) -> Result<Url, String> {
    let url = Url::parse(raw).map_err(|e| format!("{raw:?} is not an absolute URL ({e})"))?;
    match url.scheme() {
        "https" | "http" if url.host().is_some() => Ok(url),
        _ => Err(format!("{raw:?} must be an http(s) URL")),
    }
}

/// The handler's dependencies, built once per cold start.
#[derive(Clone)]
pub struct Callback {
    pub oauth: OAuthClient,
    pub connections: Arc<dyn ConnectionStore>,
    pub auth_states: Arc<dyn AuthStateStore>,
    pub secrets: Arc<dyn SecretStore>,
    /// `None`: the console on the request's own domain ([`CONSOLE_PATH`]).
    pub app_url: Option<Url>,
    pub clock: Arc<dyn Clock>,
}

impl Callback {
    /// The production wiring: the DynamoDB and Secrets Manager adapters from one `SdkConfig`,
    /// the environment read once (`CONNECTIONS_TABLE`, `AUTH_STATES_TABLE`, `SECRET_PREFIX`,
    /// `SALESFORCE_CLIENT_ID`, `SALESFORCE_CLIENT_SECRET_ARN`, `APP_URL`), the Connected App's
    /// consumer secret read once.
    pub async fn from_env(sdk: &aws_config::SdkConfig, env: Env) -> Result<Self, StartupError> {
        let mut wiring = Wiring::new(sdk, env);
        let connections = wiring.connections();
        let auth_states = wiring.auth_states();
        let secrets = wiring.secrets();
        // Optional: empty or unset means the stack's console.
        let app_url = match wiring.env().optional(APP_URL) {
            Some(raw) if !raw.trim().is_empty() => wiring.env().parsed(APP_URL, parse_app_url),
            _ => None,
        };
        let salesforce = wiring
            .finish_with_salesforce(&HttpSettings::interactive())
            .await?;
        Ok(Self {
            oauth: salesforce.oauth,
            connections,
            auth_states,
            secrets,
            app_url,
            clock: Arc::new(SystemClock),
        })
    }

    /// Handles one API Gateway HTTP API (payload 2.0) event. Never fails: every problem is a
    /// page for the person in front of the browser.
    pub async fn handle(&self, event: ApiGatewayV2httpRequest) -> ApiGatewayV2httpResponse {
        let method = &event.request_context.http.method;
        let app_url = self.app_url_for(&event);
        // Not HEAD: a link checker's HEAD would complete (and so use up) the flow.
        if method != Method::GET {
            return Page::method_not_allowed(&app_url).into_response();
        }
        let raw_query = event.raw_query_string.as_deref().unwrap_or("");
        let now = self.clock.now();
        match self.complete(raw_query, now).await {
            Ok(Authorized {
                connection,
                reauthorized,
                superseded,
            }) => {
                tracing::info!(
                    connection = %connection.id,
                    channel = %connection.channel,
                    reauthorized,
                    superseded_token = superseded.as_ref().map(|r| r.status()),
                    "connection authorized"
                );
                page::redirect(&app_url, &connection.id, reauthorized)
            }
            Err(e) => {
                let page = Page::for_error(&e, &app_url);
                if page.status >= 500 {
                    tracing::error!(error = %e, status = page.status, "OAuth callback failed");
                } else {
                    tracing::warn!(error = %e, status = page.status, "OAuth callback refused");
                }
                page.into_response()
            }
        }
    }

    /// `APP_URL`, or the console on the domain this request came to.
    fn app_url_for(&self, event: &ApiGatewayV2httpRequest) -> Url {
        if let Some(url) = &self.app_url {
            return url.clone();
        }
        let domain = event
            .request_context
            .domain_name
            .as_deref()
            .filter(|d| {
                !d.is_empty()
                    && d.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':'))
            })
            .unwrap_or("localhost");
        Url::parse(&format!("https://{domain}{CONSOLE_PATH}"))
            .unwrap_or_else(|_| Url::parse("https://localhost/console").expect("a valid URL"))
    }

    async fn complete(
        &self,
        raw_query: &str,
        now: DateTime<Utc>,
    ) -> Result<Authorized, ConnectError> {
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

    #[test]
    fn app_url_must_be_an_absolute_http_url() {
        assert_eq!(
            parse_app_url("https://app.example.com/x?y=1")
                .unwrap()
                .as_str(),
            "https://app.example.com/x?y=1"
        );
        for bad in ["javascript:alert(1)", "/relative", "app.example.com"] {
            assert!(parse_app_url(bad).is_err(), "{bad}");
        }
    }
}
