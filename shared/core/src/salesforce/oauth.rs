//! OAuth 2.0 web-server flow with PKCE, refresh and revoke, as Salesforce speaks them.
//!
//! Salesforce's token response has no `expires_in` (the session lives as long as the org's
//! timeout, sliding on use) and carries the org's `instance_url`, which must pass the same host
//! check as the login URL before any token is sent to it. With Refresh Token Rotation on, every
//! refresh returns a new refresh token and invalidates the old one: the caller persists it
//! before using the new access token (see `tokens`).

use std::sync::Arc;

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use url::Url;

use super::error::SalesforceError;
use super::http::{RetryPolicy, summarize_body, transport_error};
use crate::domain::{InstanceUrl, LoginUrl};

/// The scopes casesync asks for: API access and a refresh token for unattended syncs.
pub const SCOPES: &str = "api refresh_token";

/// The Connected App's credentials. The secret is optional: an app may be configured not to
/// require it for the web-server flow with PKCE.
#[derive(Clone)]
pub struct OAuthApp {
    pub client_id: String,
    pub client_secret: Option<SecretString>,
}

impl std::fmt::Debug for OAuthApp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OAuthApp")
            .field("client_id", &self.client_id)
            .field(
                "client_secret",
                &self.client_secret.as_ref().map(|_| "[REDACTED]"),
            )
            .finish()
    }
}

/// A started authorization: send the user to `url`; keep `state` and `verifier` for the
/// callback.
pub struct AuthorizationRequest {
    pub url: Url,
    pub state: String,
    pub verifier: SecretString,
}

/// What the token endpoint granted.
#[derive(Debug)]
pub struct TokenGrant {
    pub access_token: SecretString,
    /// Present after a code exchange, and after a refresh when rotation is on.
    pub refresh_token: Option<SecretString>,
    pub instance_url: InstanceUrl,
    /// The identity URL `https://login.salesforce.com/id/<org>/<user>`.
    pub identity: Option<String>,
    pub scope: Option<String>,
}

impl TokenGrant {
    /// The org, from the identity URL (`.../id/<org id>/<user id>`).
    pub fn org_id(&self) -> Option<crate::domain::OrgId> {
        org_of_identity(self.identity.as_deref()?)
    }
}

/// The org id in an identity URL `https://login.salesforce.com/id/<org id>/<user id>`.
pub fn org_of_identity(identity: &str) -> Option<crate::domain::OrgId> {
    let path = identity.split('?').next()?;
    let mut parts = path.rsplit('/');
    let _user = parts.next()?;
    let org = parts.next()?;
    (parts.next()? == "id")
        .then(|| crate::domain::OrgId::parse(org).ok())
        .flatten()
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    #[serde(default)]
    refresh_token: Option<String>,
    instance_url: String,
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    scope: Option<String>,
}

#[derive(Deserialize)]
struct OAuthErrorBody {
    error: String,
    #[serde(default)]
    error_description: Option<String>,
}

/// Talks to a login host's `/services/oauth2/*` endpoints. Cheap to clone.
#[derive(Clone)]
pub struct OAuthClient {
    http: reqwest::Client,
    app: Arc<OAuthApp>,
    retry: RetryPolicy,
}

impl OAuthClient {
    pub fn new(http: reqwest::Client, app: OAuthApp, retry: RetryPolicy) -> Self {
        Self {
            http,
            app: Arc::new(app),
            retry,
        }
    }

    pub fn app(&self) -> &OAuthApp {
        &self.app
    }

    /// The same client for another Connected App (consumer key), with the same secret.
    pub fn for_client_id(&self, client_id: &str) -> Self {
        if client_id == self.app.client_id {
            return self.clone();
        }
        Self {
            http: self.http.clone(),
            app: Arc::new(OAuthApp {
                client_id: client_id.to_owned(),
                client_secret: self.app.client_secret.clone(),
            }),
            retry: self.retry,
        }
    }

    /// The authorize URL with a fresh single-use `state` and a PKCE S256 challenge.
    pub fn authorize(&self, login: &LoginUrl, redirect_uri: &str) -> AuthorizationRequest {
        let (challenge, verifier) = oauth2::PkceCodeChallenge::new_random_sha256();
        let state = oauth2::CsrfToken::new_random_len(32).secret().clone();
        let mut url = Url::parse(&login.join("/services/oauth2/authorize"))
            .expect("a validated origin plus a fixed path is a URL");
        url.query_pairs_mut()
            .append_pair("response_type", "code")
            .append_pair("client_id", &self.app.client_id)
            .append_pair("redirect_uri", redirect_uri)
            .append_pair("scope", SCOPES)
            .append_pair("state", &state)
            .append_pair("code_challenge", challenge.as_str())
            .append_pair("code_challenge_method", "S256");
        AuthorizationRequest {
            url,
            state,
            verifier: SecretString::from(verifier.secret().clone()),
        }
    }

    /// Exchanges an authorization code (single use) for tokens.
    pub async fn exchange_code(
        &self,
        login: &LoginUrl,
        code: &str,
        verifier: &SecretString,
        redirect_uri: &str,
    ) -> Result<TokenGrant, SalesforceError> {
        let mut form = vec![
            ("grant_type", "authorization_code".to_owned()),
            ("code", code.to_owned()),
            ("client_id", self.app.client_id.clone()),
            ("redirect_uri", redirect_uri.to_owned()),
            ("code_verifier", verifier.expose_secret().to_owned()),
        ];
        if let Some(secret) = &self.app.client_secret {
            form.push(("client_secret", secret.expose_secret().to_owned()));
        }
        self.token_request(login, &form).await
    }

    /// Gets a new access token for a refresh token. `invalid_grant` means the user must
    /// authorize again.
    pub async fn refresh(
        &self,
        login: &LoginUrl,
        refresh_token: &SecretString,
    ) -> Result<TokenGrant, SalesforceError> {
        let mut form = vec![
            ("grant_type", "refresh_token".to_owned()),
            ("refresh_token", refresh_token.expose_secret().to_owned()),
            ("client_id", self.app.client_id.clone()),
        ];
        if let Some(secret) = &self.app.client_secret {
            form.push(("client_secret", secret.expose_secret().to_owned()));
        }
        self.token_request(login, &form).await
    }

    /// Revokes a refresh token (and the access tokens issued from it). A token Salesforce no
    /// longer knows counts as revoked.
    pub async fn revoke(
        &self,
        login: &LoginUrl,
        token: &SecretString,
    ) -> Result<(), SalesforceError> {
        let url = login.join("/services/oauth2/revoke");
        let form = [("token", token.expose_secret())];
        let response = self.send_form(&url, &form).await?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let body = response.bytes().await.map_err(transport_error)?;
        match oauth_error(status.as_u16(), &body) {
            SalesforceError::OAuth { error, .. } if error == "invalid_token" => Ok(()),
            e => Err(e),
        }
    }

    async fn token_request(
        &self,
        login: &LoginUrl,
        form: &[(&str, String)],
    ) -> Result<TokenGrant, SalesforceError> {
        let url = login.join("/services/oauth2/token");
        let response = self.send_form(&url, form).await?;
        let status = response.status();
        let body = response.bytes().await.map_err(transport_error)?;
        if !status.is_success() {
            return Err(oauth_error(status.as_u16(), &body));
        }
        let parsed: TokenResponse = serde_json::from_slice(&body).map_err(|e| {
            SalesforceError::Decode(format!("token response: {}", e.classify_str()))
        })?;
        Ok(TokenGrant {
            access_token: SecretString::from(parsed.access_token),
            refresh_token: parsed.refresh_token.map(SecretString::from),
            instance_url: InstanceUrl::issued_by(&parsed.instance_url, login)?,
            identity: parsed.id,
            scope: parsed.scope,
        })
    }

    /// POSTs a form, retrying only what cannot have reached Salesforce (connect failures) or
    /// what Salesforce says it did not process (5xx, 420, 429). A response lost after the
    /// request was sent is not retried: the refresh token may already have been rotated or the
    /// code spent, and replaying a rotated-out token makes Salesforce revoke the whole grant.
    async fn send_form<T: serde::Serialize + ?Sized>(
        &self,
        url: &str,
        form: &T,
    ) -> Result<reqwest::Response, SalesforceError> {
        use backon::Retryable;
        let attempt = || async {
            let response = self
                .http
                .post(url)
                .header(reqwest::header::ACCEPT, "application/json")
                .form(form)
                .send()
                .await
                .map_err(|e| (e.is_connect(), transport_error(e)))?;
            let status = response.status().as_u16();
            if status >= 500 || status == 420 || status == 429 {
                let body = response.bytes().await.unwrap_or_default();
                return Err((true, oauth_error(status, &body)));
            }
            Ok(response)
        };
        attempt
            .retry(self.retry.backoff())
            .when(|(retryable, _)| *retryable)
            .notify(|(_, e), after| {
                tracing::warn!(error = %e, retry_in = ?after, "Salesforce OAuth request failed; retrying")
            })
            .await
            .map_err(|(_, e)| e)
    }
}

/// A token or revoke endpoint error: `{"error","error_description"}`, or an HTML page.
fn oauth_error(status: u16, body: &[u8]) -> SalesforceError {
    match serde_json::from_slice::<OAuthErrorBody>(body) {
        Ok(e) => {
            let description = e.error_description.unwrap_or_default();
            if e.error == "invalid_grant" {
                SalesforceError::InvalidGrant { description }
            } else {
                SalesforceError::OAuth {
                    status,
                    error: e.error,
                    description,
                }
            }
        }
        Err(_) => SalesforceError::Http {
            status,
            summary: summarize_body(body),
        },
    }
}

/// serde_json errors name a line and column, which say nothing to a user; keep the category.
trait ClassifyStr {
    fn classify_str(&self) -> &'static str;
}

impl ClassifyStr for serde_json::Error {
    fn classify_str(&self) -> &'static str {
        match self.classify() {
            serde_json::error::Category::Io => "could not be read",
            serde_json::error::Category::Syntax => "is not valid JSON",
            serde_json::error::Category::Data => "lacks required fields",
            serde_json::error::Category::Eof => "is truncated",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client() -> OAuthClient {
        OAuthClient::new(
            reqwest::Client::new(),
            OAuthApp {
                client_id: "cid".into(),
                client_secret: Some("s3cr3t".to_owned().into()),
            },
            RetryPolicy::fast(),
        )
    }

    #[test]
    fn the_authorize_url_carries_pkce_state_and_scopes() {
        let login = LoginUrl::parse("https://login.salesforce.com").unwrap();
        let req = client().authorize(&login, "http://127.0.0.1:8765/callback");
        let pairs: std::collections::HashMap<_, _> = req.url.query_pairs().into_owned().collect();
        assert_eq!(req.url.path(), "/services/oauth2/authorize");
        assert_eq!(pairs["response_type"], "code");
        assert_eq!(pairs["client_id"], "cid");
        assert_eq!(pairs["redirect_uri"], "http://127.0.0.1:8765/callback");
        assert_eq!(pairs["scope"], "api refresh_token");
        assert_eq!(pairs["state"], req.state);
        assert_eq!(pairs["code_challenge_method"], "S256");
        // The challenge is base64url(SHA-256(verifier)) without padding.
        use base64ct_free::encode_sha256_b64url;
        assert_eq!(
            pairs["code_challenge"],
            encode_sha256_b64url(req.verifier.expose_secret())
        );
        assert!(!req.url.as_str().contains(req.verifier.expose_secret()));
        assert!(req.state.len() >= 40, "state has 32 random bytes");
        let again = client().authorize(&login, "http://127.0.0.1:8765/callback");
        assert_ne!(again.state, req.state);
    }

    #[test]
    fn oauth_errors_are_typed() {
        assert!(matches!(
            oauth_error(400, br#"{"error":"invalid_grant","error_description":"expired access/refresh token"}"#),
            SalesforceError::InvalidGrant { description } if description == "expired access/refresh token"
        ));
        assert!(matches!(
            oauth_error(400, br#"{"error":"invalid_client","error_description":"invalid client credentials"}"#),
            SalesforceError::OAuth { error, .. } if error == "invalid_client"
        ));
        assert!(matches!(
            oauth_error(502, b"<html><h1>Bad Gateway</h1></html>"),
            SalesforceError::Http { status: 502, summary } if summary == "Bad Gateway"
        ));
    }

    #[test]
    fn debug_output_never_shows_the_client_secret() {
        let app = client();
        assert!(!format!("{:?}", app.app()).contains("s3cr3t"));
    }

    /// A tiny independent S256 implementation for the test (sha2 + manual base64url).
    mod base64ct_free {
        use sha2::{Digest, Sha256};
        pub fn encode_sha256_b64url(input: &str) -> String {
            const A: &[u8; 64] =
                b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
            let d = Sha256::digest(input.as_bytes());
            let mut out = String::new();
            for chunk in d.chunks(3) {
                let b = [
                    chunk[0],
                    *chunk.get(1).unwrap_or(&0),
                    *chunk.get(2).unwrap_or(&0),
                ];
                let n = (b[0] as u32) << 16 | (b[1] as u32) << 8 | b[2] as u32;
                let chars = chunk.len() + 1;
                for i in 0..chars {
                    out.push(A[((n >> (18 - 6 * i)) & 63) as usize] as char);
                }
            }
            out
        }
    }
}
