//! Every way a request can fail, and its answer: `{"code", "message"}` (plus `"field"` for
//! invalid input) with the status below. Internals (AWS error details, table names) go to the
//! log, never to the caller; no variant ever holds a secret.
//!
//! | status | code | when |
//! |---|---|---|
//! | 400 | `invalid_request` | a body that is not a JSON object, an unknown field, a field of the wrong type or value (`field` names it) |
//! | 404 | `not_found` | an unknown route, an unknown or malformed connection id, an unknown channel or data point |
//! | 405 | `method_not_allowed` | a known route with another method (`Allow` lists the methods) |
//! | 409 | `sync_running` | delete: a sync still holds the connection (it is now disconnected; try again) |
//! | 409 | `conflict` | the connection changed at the same moment (try again) |
//! | 413 | `payload_too_large` | a body over 64 KiB |
//! | 413 | `too_large` | a data point too large for one response even compressed (or uncompressed, when the client does not take gzip) |
//! | 502 | `needs_reauth` | Salesforce refused the refresh token: re-authorize the connection |
//! | 502 | `salesforce_unavailable` | Salesforce did not answer, or answered 5xx / rate-limited |
//! | 502 | `salesforce_error` | another Salesforce error |
//! | 503 | `store_unavailable` | DynamoDB or Secrets Manager throttled or unreachable |
//! | 500 | `internal` | anything else |

use casesync_core::manage::{ConnectError, ManageError};
use casesync_core::ports::StoreError;
use casesync_core::salesforce::SalesforceError;
use lambda_http::http::StatusCode;
use serde::Serialize;

/// Messages quoting user input are cut to this many characters.
const MAX_MESSAGE_CHARS: usize = 400;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{field}: {message}")]
    Invalid { field: String, message: String },
    #[error("{0}")]
    InvalidBody(String),
    #[error("{0}")]
    NotFound(String),
    #[error("method not allowed")]
    MethodNotAllowed { allow: &'static str },
    #[error("{message}")]
    Conflict { code: &'static str, message: String },
    #[error("the request body is larger than {limit} bytes")]
    PayloadTooLarge { limit: usize },
    /// The answer would not fit a response.
    #[error("{0}")]
    TooLarge(String),
    #[error(transparent)]
    Salesforce(#[from] SalesforceError),
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Logged in full; the caller only learns that something went wrong.
    #[error("{0}")]
    Internal(String),
}

#[derive(Serialize)]
pub struct ErrorBody {
    pub code: &'static str,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

impl ApiError {
    pub fn invalid(field: impl Into<String>, message: impl std::fmt::Display) -> Self {
        Self::Invalid {
            field: field.into(),
            message: cut(&message.to_string()),
        }
    }

    pub fn route_not_found() -> Self {
        Self::NotFound("no such route".into())
    }

    pub fn status(&self) -> StatusCode {
        match self {
            Self::Invalid { .. } | Self::InvalidBody(_) => StatusCode::BAD_REQUEST,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            Self::Conflict { .. } => StatusCode::CONFLICT,
            Self::PayloadTooLarge { .. } | Self::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::Salesforce(_) => StatusCode::BAD_GATEWAY,
            Self::Store(e) => match e {
                StoreError::ConnectionNotFound(_) => StatusCode::NOT_FOUND,
                StoreError::Conflict(_) => StatusCode::CONFLICT,
                StoreError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
                StoreError::Unexpected(_) => StatusCode::INTERNAL_SERVER_ERROR,
            },
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// What the caller sees.
    pub fn body(&self) -> ErrorBody {
        let (code, message, field) = match self {
            Self::Invalid { field, message } => (
                "invalid_request",
                format!("{field}: {message}"),
                Some(field.clone()),
            ),
            Self::InvalidBody(m) => ("invalid_request", cut(m), None),
            Self::NotFound(m) => ("not_found", cut(m), None),
            Self::MethodNotAllowed { allow } => (
                "method_not_allowed",
                format!("this route accepts {allow}"),
                None,
            ),
            Self::Conflict { code, message } => (*code, message.clone(), None),
            Self::PayloadTooLarge { .. } => ("payload_too_large", self.to_string(), None),
            Self::TooLarge(m) => ("too_large", m.clone(), None),
            Self::Salesforce(e) => (salesforce_code(e), e.to_string(), None),
            Self::Store(StoreError::ConnectionNotFound(id)) => {
                ("not_found", format!("no connection {id}"), None)
            }
            Self::Store(StoreError::Conflict(_)) => (
                "conflict",
                "the connection was changed by someone else at the same moment: try again".into(),
                None,
            ),
            Self::Store(StoreError::Unavailable(_)) => (
                "store_unavailable",
                "the connection store is temporarily unavailable: try again shortly".into(),
                None,
            ),
            Self::Store(StoreError::Unexpected(_)) | Self::Internal(_) => (
                "internal",
                "something went wrong on our side; the details are in the function's log".into(),
                None,
            ),
        };
        ErrorBody {
            code,
            message,
            field,
        }
    }
}

fn salesforce_code(e: &SalesforceError) -> &'static str {
    if e.needs_reauth() {
        "needs_reauth"
    } else if e.is_transient() || e.is_rate_limited() {
        "salesforce_unavailable"
    } else {
        "salesforce_error"
    }
}

impl From<ConnectError> for ApiError {
    /// Starting a flow only fails on the store; anything else is a bug.
    fn from(e: ConnectError) -> Self {
        match e {
            ConnectError::Store(e) => Self::Store(e),
            ConnectError::Salesforce(e) => Self::Salesforce(e),
            other => Self::Internal(other.to_string()),
        }
    }
}

impl From<ManageError> for ApiError {
    fn from(e: ManageError) -> Self {
        match e {
            ManageError::NotFound(id) => Self::NotFound(format!("no connection {id}")),
            ManageError::Invalid { field, message } => Self::invalid(field, message),
            ManageError::NothingToChange => {
                Self::InvalidBody("nothing to change: give \"queues\", \"backfill\" or both".into())
            }
            e @ ManageError::SyncRunning => Self::Conflict {
                code: "sync_running",
                message: e.to_string(),
            },
            ManageError::Connect(e) => e.into(),
            ManageError::Salesforce(e) => Self::Salesforce(e),
            ManageError::Store(e) => Self::Store(e),
        }
    }
}

fn cut(s: &str) -> String {
    if s.chars().count() <= MAX_MESSAGE_CHARS {
        s.to_owned()
    } else {
        s.chars().take(MAX_MESSAGE_CHARS).collect::<String>() + "…"
    }
}
