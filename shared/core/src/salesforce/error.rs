//! What can go wrong talking to Salesforce, classified by what the caller should do about it.

use crate::domain::UrlError;
use crate::ports::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum SalesforceError {
    /// 401 INVALID_SESSION_ID: the access token expired or was revoked. Refresh once and replay.
    #[error("Salesforce rejected the access token: {message}")]
    InvalidSession { message: String },
    /// 401 that a refresh cannot fix: the token lacks the `api` scope or the user lacks API access.
    #[error(
        "Salesforce says this session cannot use the REST API ({message}): give the Connected App \
         the 'api' scope and the user the 'API Enabled' permission, then authorize again"
    )]
    SessionNotValidForRest { message: String },
    /// 403 REQUEST_LIMIT_EXCEEDED (TotalRequests): the org's rolling 24-hour allotment is spent.
    /// Retrying only burns quota other integrations need: stop and resume on a later tick.
    #[error(
        "Salesforce's daily API request limit is exhausted ({message}); syncing resumes on a later run"
    )]
    DailyLimitExceeded { message: String },
    /// 403 REQUEST_LIMIT_EXCEEDED (ConcurrentPerOrgLongTxn): too many long requests right now.
    #[error("Salesforce refused the request for now: {message}")]
    ConcurrencyLimited { message: String },
    /// 400 INVALID_QUERY_LOCATOR: the `nextRecordsUrl` expired or was evicted. Re-query.
    #[error("Salesforce's query locator expired ({message})")]
    InvalidQueryLocator { message: String },
    /// 400 QUERY_TIMEOUT: the query ran too long. Narrow the window.
    #[error("Salesforce timed out running the query ({message})")]
    QueryTimeout { message: String },
    /// Another JSON error from the REST API (`[{"message","errorCode"}]`).
    #[error("Salesforce answered {status} {code}: {message}")]
    Api {
        status: u16,
        code: String,
        message: String,
    },
    /// A non-JSON error body (HTML from the edge: 414, 431, 420, 502...).
    #[error("Salesforce answered {status}: {summary}")]
    Http { status: u16, summary: String },
    /// Connect, TLS, reset or timeout.
    #[error("could not reach Salesforce: {0}")]
    Transport(String),
    /// A 2xx body that is not what the API documents (malformed or truncated JSON).
    #[error("Salesforce sent a response casesync cannot read: {0}")]
    Decode(String),
    /// The token endpoint refused the refresh token (revoked, expired, rotated out).
    #[error(
        "Salesforce refused the refresh token ({description}): the connection must be authorized again"
    )]
    InvalidGrant { description: String },
    /// Another OAuth error from the token or revoke endpoint (`{"error","error_description"}`).
    #[error("Salesforce OAuth error {error}: {description}")]
    OAuth {
        status: u16,
        error: String,
        description: String,
    },
    /// The token response named an instance that is not a Salesforce host.
    #[error("Salesforce returned an unacceptable instance_url: {0}")]
    InstanceUrl(#[from] UrlError),
    /// `nextRecordsUrl` was not a path under `/services/data/`.
    #[error("Salesforce returned an unexpected nextRecordsUrl {0:?}")]
    BadNextRecordsUrl(String),
    /// Persisting a (rotated) refresh token or reading it failed.
    #[error("could not use the stored refresh token: {0}")]
    Secrets(#[from] StoreError),
    /// No refresh token is stored for the connection.
    #[error("no refresh token is stored for this connection: authorize it again")]
    MissingRefreshToken,
    #[error("{last} (gave up after {attempts} attempts)")]
    RetriesExhausted {
        attempts: u32,
        last: Box<SalesforceError>,
    },
}

impl SalesforceError {
    /// Errors worth retrying after a backoff: 5xx, 420, 429, 406, concurrency limits,
    /// transport failures and unreadable 2xx bodies.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Api { status, .. } | Self::Http { status, .. } => {
                *status >= 500 || matches!(status, 406 | 420 | 429)
            }
            Self::OAuth { status, .. } => *status >= 500 || matches!(status, 420 | 429),
            Self::ConcurrencyLimited { .. } | Self::Transport(_) | Self::Decode(_) => true,
            Self::Secrets(e) => e.is_transient(),
            _ => false,
        }
    }

    /// The user must authorize the connection again.
    pub fn needs_reauth(&self) -> bool {
        match self {
            Self::InvalidGrant { .. }
            | Self::MissingRefreshToken
            | Self::SessionNotValidForRest { .. } => true,
            Self::RetriesExhausted { last, .. } => last.needs_reauth(),
            _ => false,
        }
    }

    pub fn is_rate_limited(&self) -> bool {
        match self {
            Self::DailyLimitExceeded { .. } => true,
            Self::RetriesExhausted { last, .. } => last.is_rate_limited(),
            _ => false,
        }
    }

    /// The innermost error (unwrapping `RetriesExhausted`).
    pub fn root(&self) -> &SalesforceError {
        match self {
            Self::RetriesExhausted { last, .. } => last.root(),
            other => other,
        }
    }
}
