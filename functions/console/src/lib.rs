//! Lambda `console`: the casesync console (`casesync_console`) behind the stack's HTTP API at
//! `/console`, for the users of the stack's Cognito user pool.
//!
//! The pages are the same router `casesync ui` serves locally, over the same use cases, wired
//! here to DynamoDB and Secrets Manager. What differs is who gets in ([`session`]: Cognito
//! sign-in, HttpOnly cookies, renewal, sign-out) and where Salesforce sends the browser back:
//! the stack's `oauth-callback` function, which then redirects to the console
//! (`/console?connection=<id>`), landing on "Configure import" for a new source.
//!
//! The import itself is the scheduler's and the worker's: a source configured here is synced
//! at the next tick (every minute by default).

pub mod auth;
pub mod session;

use std::sync::Arc;

use axum::Router;
use axum::middleware;
use axum::routing::post;
use casesync_aws::config::{CALLBACK_URL, CURSOR_SECRET_ARN, USER_POOL_CLIENT_ID, USER_POOL_ID};
use casesync_aws::{Env, StartupError, Wiring};
use casesync_console::{Console, RedirectUri, assets, pages, secure};
use casesync_core::channel::CursorKey;
use casesync_core::manage::{Manager, Policy};
use casesync_core::ports::{Clock, SystemClock};
use casesync_core::salesforce::HttpSettings;
use hmac::{Hmac, Mac};
use secrecy::ExposeSecret;
use sha2::Sha256;

use auth::UserPool;
use session::Gate;

/// Where the console is mounted on the HTTP API.
pub const BASE: &str = "/console";
/// The OAuth callback route of the stack's HTTP API.
pub const CALLBACK_PATH: &str = "/oauth/callback";

/// `CALLBACK_URL`, when set, must be an absolute https URL.
pub fn parse_callback_url(raw: &str) -> Result<String, String> {
    let url = url::Url::parse(raw).map_err(|e| format!("{raw:?} is not an absolute URL ({e})"))?;
    match url.scheme() {
        "https" => Ok(url.to_string()),
        _ => Err(format!("{raw:?} must be an https URL")),
    }
}

/// A user pool id: `<region>_<id>`.
pub fn parse_user_pool_id(raw: &str) -> Result<String, String> {
    match raw.split_once('_') {
        Some((region, id))
            if !region.is_empty()
                && !id.is_empty()
                && raw
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-') =>
        {
            Ok(raw.to_owned())
        }
        _ => Err(format!("{raw:?} is not a user pool id (<region>_<id>)")),
    }
}

/// The console's dependencies, built once per cold start.
pub struct ConsoleFn {
    pub console: Arc<Console>,
    pub gate: Arc<Gate>,
}

impl ConsoleFn {
    /// The production wiring: the stores from one `SdkConfig`, the environment read once
    /// (`CONNECTIONS_TABLE`, `DATA_POINTS_TABLE`, `AUTH_STATES_TABLE`, `SECRET_PREFIX`,
    /// `SALESFORCE_CLIENT_ID`, `SALESFORCE_CLIENT_SECRET_ARN`, `CURSOR_SECRET_ARN`,
    /// `USER_POOL_ID`, `USER_POOL_CLIENT_ID`, optionally `CALLBACK_URL`), the secrets read once.
    pub async fn from_env(sdk: &aws_config::SdkConfig, env: Env) -> Result<Self, StartupError> {
        Self::from_env_with_clock(sdk, env, Arc::new(SystemClock)).await
    }

    /// [`Self::from_env`] on another clock (tests: expired sessions).
    pub async fn from_env_with_clock(
        sdk: &aws_config::SdkConfig,
        env: Env,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, StartupError> {
        let mut wiring = Wiring::new(sdk, env);
        let connections = wiring.connections();
        let data_points = wiring.data_points();
        let auth_states = wiring.auth_states();
        let secrets = wiring.secrets();
        wiring.secret(CURSOR_SECRET_ARN);
        let pool_id = wiring.env().parsed(USER_POOL_ID, parse_user_pool_id);
        let client_id = wiring.env().required(USER_POOL_CLIENT_ID);
        let redirect_uri = match wiring.env().optional(CALLBACK_URL) {
            Some(_) => wiring
                .env()
                .parsed(CALLBACK_URL, parse_callback_url)
                .map(RedirectUri::Fixed),
            None => Some(RedirectUri::OnRequestHost {
                path: CALLBACK_PATH,
            }),
        };
        let mut started = wiring
            .start_with_salesforce(&HttpSettings::interactive())
            .await?;
        let key = started
            .secret(CURSOR_SECRET_ARN)
            .expect("every secret asked for is read at the start");
        let derive = |purpose: &[u8]| {
            let mut mac = Hmac::<Sha256>::new_from_slice(key.expose_secret().as_bytes())
                .expect("HMAC takes keys of any length");
            mac.update(purpose);
            mac.finalize().into_bytes().to_vec()
        };
        let pool = UserPool::new(
            sdk,
            &pool_id.expect("start fails when USER_POOL_ID is missing or invalid"),
            &client_id,
            clock.clone(),
        );
        let console = Console {
            manager: Manager {
                connections,
                data_points: data_points.clone(),
                auth_states,
                secrets,
                salesforce: started.salesforce,
                clock,
                policy: Policy::default(),
                actor: "the console",
            },
            feed: data_points,
            base: BASE.to_owned(),
            redirect_uri: redirect_uri.expect("start fails when CALLBACK_URL is invalid"),
            suggested_login: None,
            // One key per purpose, both from the stack's cursor secret.
            cursor_key: Arc::new(CursorKey::new(derive(b"casesync console cursors"))),
            on_import: None,
        };
        Ok(Self {
            console: Arc::new(console),
            gate: Arc::new(Gate {
                pool: Arc::new(pool),
                base: BASE.to_owned(),
                csrf_key: derive(b"casesync console csrf"),
            }),
        })
    }

    /// Every route: sign-in (public), the console's pages and sign-out (behind the gate),
    /// with the security headers on all of them.
    pub fn router(&self) -> Router {
        let gated = pages(self.console.clone())
            .merge(
                Router::new()
                    .route(&format!("{BASE}/sign-out"), post(session::sign_out))
                    .with_state(self.gate.clone()),
            )
            .layer(middleware::from_fn_with_state(
                self.gate.clone(),
                session::gate,
            ));
        let public = session::public_routes(self.gate.clone()).merge(assets(BASE));
        secure(public.merge(gated), "")
    }
}
