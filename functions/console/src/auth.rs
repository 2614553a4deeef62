//! The console's users: a Cognito user pool the stack creates (no self sign-up). Sign-in with
//! a username and password (`USER_PASSWORD_AUTH`), the first sign-in's new-password challenge,
//! renewal with the refresh token, and global sign-out, all through the AWS SDK; and the
//! verification of the access tokens the session cookie holds (RS256, against the pool's
//! published keys, its issuer, this app client, `token_use = access`, and expiry on the
//! function's clock).

use std::sync::Arc;

use aws_sdk_cognitoidentityprovider::Client;
use aws_sdk_cognitoidentityprovider::error::ProvideErrorMetadata;
use aws_sdk_cognitoidentityprovider::types::{
    AuthFlowType, AuthenticationResultType, ChallengeNameType,
};
use casesync_core::ports::Clock;
use chrono::{DateTime, TimeDelta, Utc};
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use tokio::sync::RwLock;

/// How often at most the pool's keys are fetched again for a token signed by an unknown key.
const KEYS_REFETCH_AFTER: TimeDelta = TimeDelta::minutes(5);

/// Tokens of a signed-in user. `Debug` shows none of them.
pub struct Tokens {
    pub access: SecretString,
    /// Absent when a refresh returns none (Cognito keeps the one it was given).
    pub refresh: Option<SecretString>,
    /// Seconds the access token lives.
    pub expires_in: i64,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokens")
            .field("expires_in", &self.expires_in)
            .finish_non_exhaustive()
    }
}

/// What a sign-in attempt came to.
#[derive(Debug)]
pub enum SignIn {
    Done(Tokens),
    /// The first sign-in with the temporary password: a new one must be chosen. `session` is
    /// Cognito's handle of this challenge (kept in an HttpOnly cookie, never in a page).
    NewPasswordRequired {
        session: SecretString,
    },
}

/// Why Cognito said no, in words for the person signing in.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// Wrong username or password (the pool does not say which: no user enumeration).
    #[error("Incorrect username or password.")]
    Rejected,
    #[error("Your password must be reset: ask your administrator.")]
    PasswordResetRequired,
    /// The new password breaks the pool's policy; Cognito's words.
    #[error("{0}")]
    InvalidPassword(String),
    #[error("The sign-in took too long: start again.")]
    ChallengeExpired,
    #[error("Too many attempts: wait a minute, then try again.")]
    TooManyAttempts,
    /// The session cannot be renewed (signed out elsewhere, or past its lifetime).
    #[error("Your session ended: sign in again.")]
    SessionEnded,
    #[error("Sign-in is unavailable right now ({0}). Try again shortly.")]
    Unavailable(String),
}

impl AuthError {
    fn from_sdk<E: ProvideErrorMetadata>(e: &E) -> Self {
        let message = e.message().unwrap_or("").to_owned();
        match e.code() {
            Some("NotAuthorizedException" | "UserNotFoundException") => Self::Rejected,
            Some("PasswordResetRequiredException") => Self::PasswordResetRequired,
            Some("InvalidPasswordException") => Self::InvalidPassword(message),
            Some("CodeMismatchException" | "ExpiredCodeException") => Self::ChallengeExpired,
            Some("TooManyRequestsException" | "LimitExceededException") => Self::TooManyAttempts,
            Some(code) => Self::Unavailable(code.to_owned()),
            None => Self::Unavailable("no answer from Cognito".into()),
        }
    }
}

/// The claims of a verified access token the console uses.
#[derive(Debug, Clone, Deserialize)]
pub struct Claims {
    pub sub: String,
    pub username: String,
    pub exp: i64,
    client_id: String,
    token_use: String,
    /// The sign-in this token descends from (the same across refreshes).
    #[serde(default)]
    pub origin_jti: Option<String>,
}

/// What a session cookie's token turned out to be.
#[derive(Debug)]
pub enum Verified {
    Valid(Claims),
    /// Signed by the pool for this client, but past its expiry: renew it, or sign in again.
    Expired,
    /// Not a token of this pool and client.
    Invalid,
}

/// The user pool's app client, and how to check its tokens.
pub struct UserPool {
    client: Client,
    pool_id: String,
    client_id: String,
    issuer: String,
    jwks_url: String,
    http: reqwest::Client,
    clock: Arc<dyn Clock>,
    keys: RwLock<Keys>,
}

#[derive(Default)]
struct Keys {
    set: Option<JwkSet>,
    fetched_at: Option<DateTime<Utc>>,
}

impl std::fmt::Debug for UserPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserPool")
            .field("pool_id", &self.pool_id)
            .field("client_id", &self.client_id)
            .finish_non_exhaustive()
    }
}

impl UserPool {
    /// The pool `pool_id` (`<region>_<id>`) and its app client. The keys are published at
    /// `<endpoint>/<pool id>/.well-known/jwks.json`: the SDK's endpoint override when set
    /// (a local stand-in), else Cognito's regional endpoint; the issuer is always Cognito's
    /// regional URL.
    pub fn new(
        sdk: &aws_config::SdkConfig,
        pool_id: &str,
        client_id: &str,
        clock: Arc<dyn Clock>,
    ) -> Self {
        let region = pool_id.split('_').next().unwrap_or("us-east-1");
        let cognito = format!("https://cognito-idp.{region}.amazonaws.com");
        let endpoint = sdk
            .endpoint_url()
            .map(|u| u.trim_end_matches('/').to_owned())
            .unwrap_or_else(|| cognito.clone());
        Self {
            client: Client::new(sdk),
            pool_id: pool_id.to_owned(),
            client_id: client_id.to_owned(),
            issuer: format!("{cognito}/{pool_id}"),
            jwks_url: format!("{endpoint}/{pool_id}/.well-known/jwks.json"),
            http: reqwest::Client::builder()
                .timeout(std::time::Duration::from_secs(5))
                .build()
                .unwrap_or_default(),
            clock,
            keys: RwLock::new(Keys::default()),
        }
    }

    fn tokens(result: Option<&AuthenticationResultType>) -> Result<Tokens, AuthError> {
        let result = result.ok_or_else(|| AuthError::Unavailable("no tokens".into()))?;
        let access = result
            .access_token()
            .ok_or_else(|| AuthError::Unavailable("no access token".into()))?;
        Ok(Tokens {
            access: SecretString::from(access.to_owned()),
            refresh: result
                .refresh_token()
                .map(|t| SecretString::from(t.to_owned())),
            expires_in: i64::from(result.expires_in()).max(60),
        })
    }

    /// Signs in with a username and password.
    pub async fn sign_in(&self, username: &str, password: &str) -> Result<SignIn, AuthError> {
        let out = self
            .client
            .initiate_auth()
            .client_id(&self.client_id)
            .auth_flow(AuthFlowType::UserPasswordAuth)
            .auth_parameters("USERNAME", username)
            .auth_parameters("PASSWORD", password)
            .send()
            .await
            .map_err(|e| AuthError::from_sdk(&e))?;
        match out.challenge_name() {
            None => Ok(SignIn::Done(Self::tokens(out.authentication_result())?)),
            Some(ChallengeNameType::NewPasswordRequired) => Ok(SignIn::NewPasswordRequired {
                session: SecretString::from(out.session().unwrap_or_default().to_owned()),
            }),
            Some(other) => Err(AuthError::Unavailable(format!(
                "the {other} challenge is not supported by the console"
            ))),
        }
    }

    /// Answers the new-password challenge of a first sign-in.
    pub async fn choose_password(
        &self,
        username: &str,
        new_password: &str,
        session: &SecretString,
    ) -> Result<Tokens, AuthError> {
        let out = self
            .client
            .respond_to_auth_challenge()
            .client_id(&self.client_id)
            .challenge_name(ChallengeNameType::NewPasswordRequired)
            .session(session.expose_secret())
            .challenge_responses("USERNAME", username)
            .challenge_responses("NEW_PASSWORD", new_password)
            .send()
            .await
            .map_err(|e| AuthError::from_sdk(&e))?;
        Self::tokens(out.authentication_result())
    }

    /// A new access token from the refresh token.
    pub async fn refresh(&self, refresh: &SecretString) -> Result<Tokens, AuthError> {
        let out = self
            .client
            .initiate_auth()
            .client_id(&self.client_id)
            .auth_flow(AuthFlowType::RefreshTokenAuth)
            .auth_parameters("REFRESH_TOKEN", refresh.expose_secret())
            .send()
            .await
            .map_err(|e| match AuthError::from_sdk(&e) {
                AuthError::Rejected => AuthError::SessionEnded,
                other => other,
            })?;
        Self::tokens(out.authentication_result())
    }

    /// Signs the user out everywhere: their refresh tokens stop working.
    pub async fn sign_out(&self, access: &SecretString) -> Result<(), AuthError> {
        self.client
            .global_sign_out()
            .access_token(access.expose_secret())
            .send()
            .await
            .map_err(|e| AuthError::from_sdk(&e))?;
        Ok(())
    }

    /// Checks an access token: signature (by a key of the pool), issuer, client, use, expiry.
    pub async fn verify(&self, token: &str) -> Verified {
        let Ok(header) = jsonwebtoken::decode_header(token) else {
            return Verified::Invalid;
        };
        if header.alg != Algorithm::RS256 {
            return Verified::Invalid;
        }
        let Some(kid) = header.kid else {
            return Verified::Invalid;
        };
        let Some(key) = self.key(&kid).await else {
            return Verified::Invalid;
        };
        let mut validation = Validation::new(Algorithm::RS256);
        validation.set_issuer(&[&self.issuer]);
        // Access tokens carry no audience; the client is checked below. Expiry is checked on
        // the function's clock.
        validation.validate_aud = false;
        validation.validate_exp = false;
        validation.required_spec_claims = ["exp", "iss", "sub"]
            .into_iter()
            .map(String::from)
            .collect();
        let Ok(data) = jsonwebtoken::decode::<Claims>(token, &key, &validation) else {
            return Verified::Invalid;
        };
        let claims = data.claims;
        if claims.token_use != "access" || claims.client_id != self.client_id {
            return Verified::Invalid;
        }
        if claims.exp <= self.clock.now().timestamp() {
            return Verified::Expired;
        }
        Verified::Valid(claims)
    }

    /// The pool's key `kid`, fetching the key set when it is not known (at most every few
    /// minutes: Cognito rotates keys rarely, and a forged `kid` must not cost a fetch each).
    async fn key(&self, kid: &str) -> Option<DecodingKey> {
        {
            let keys = self.keys.read().await;
            if let Some(jwk) = keys.set.as_ref().and_then(|s| s.find(kid)) {
                return DecodingKey::from_jwk(jwk).ok();
            }
        }
        let mut keys = self.keys.write().await;
        let now = self.clock.now();
        let stale = keys
            .fetched_at
            .is_none_or(|at| now - at >= KEYS_REFETCH_AFTER);
        if stale || keys.set.is_none() {
            match self.fetch_keys().await {
                Ok(set) => {
                    keys.set = Some(set);
                    keys.fetched_at = Some(now);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "could not fetch the user pool's keys");
                    // Without any key nobody is in: try again on the next request.
                    if keys.set.is_some() {
                        keys.fetched_at = Some(now);
                    }
                }
            }
        }
        keys.set
            .as_ref()
            .and_then(|s| s.find(kid))
            .and_then(|jwk| DecodingKey::from_jwk(jwk).ok())
    }

    async fn fetch_keys(&self) -> Result<JwkSet, reqwest::Error> {
        self.http
            .get(&self.jwks_url)
            .send()
            .await?
            .error_for_status()?
            .json::<JwkSet>()
            .await
    }
}
