//! Mapping AWS SDK errors onto [`StoreError`].
//!
//! * `ConditionalCheckFailedException` → [`StoreError::Conflict`] (callers that know better, such
//!   as "the connection does not exist", look again and say so);
//! * throttling, 5xx, timeouts and dispatch failures → [`StoreError::Unavailable`]: trying again
//!   later may succeed;
//! * everything else → [`StoreError::Unexpected`], with what we were doing as context.
//!
//! Messages come from AWS's error metadata, never from request bodies, so no secret value can
//! end up in one.

use std::fmt::Display;

use anyhow::anyhow;
use aws_sdk_dynamodb::config::http::HttpResponse;
use aws_sdk_dynamodb::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use casesync_core::ports::StoreError;

/// Error codes that mean "slow down" or "try again": DynamoDB, SQS and Secrets Manager spellings.
const TRANSIENT_CODES: &[&str] = &[
    "ProvisionedThroughputExceededException",
    "ThrottlingException",
    "Throttling",
    "ThrottlingError",
    "RequestLimitExceeded",
    "RequestThrottled",
    "TooManyRequestsException",
    "TransactionConflictException",
    "TransactionInProgressException",
    "LimitExceededException",
    "InternalServerError",
    "InternalServiceError",
    "InternalFailure",
    "ServiceUnavailable",
];

pub(crate) const CONDITIONAL_CHECK_FAILED: &str = "ConditionalCheckFailedException";

/// How a failed call should be treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ErrorClass {
    ConditionFailed,
    Transient,
    Permanent,
}

pub(crate) fn is_transient_code(code: &str) -> bool {
    TRANSIENT_CODES.contains(&code)
}

pub(crate) fn classify<E: ProvideErrorMetadata>(err: &SdkError<E, HttpResponse>) -> ErrorClass {
    match err {
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) => ErrorClass::Transient,
        SdkError::ResponseError(r) if r.raw().status().is_server_error() => ErrorClass::Transient,
        SdkError::ServiceError(s) => match s.err().code() {
            Some(CONDITIONAL_CHECK_FAILED) => ErrorClass::ConditionFailed,
            Some(code) if is_transient_code(code) => ErrorClass::Transient,
            _ if s.raw().status().is_server_error() => ErrorClass::Transient,
            _ => ErrorClass::Permanent,
        },
        _ => ErrorClass::Permanent,
    }
}

/// The error code AWS sent, if the call got that far.
pub(crate) fn code<E: ProvideErrorMetadata>(err: &SdkError<E, HttpResponse>) -> Option<&str> {
    match err {
        SdkError::ServiceError(s) => s.err().code(),
        _ => None,
    }
}

/// `context` says what was attempted, e.g. "update connection conn_…"; it must not hold secrets.
pub(crate) fn store_error<E>(err: SdkError<E, HttpResponse>, context: impl Display) -> StoreError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let detail = anyhow!("{context}: {}", describe(&err));
    match classify(&err) {
        ErrorClass::ConditionFailed => StoreError::Conflict(format!("{context}: condition failed")),
        ErrorClass::Transient => StoreError::Unavailable(detail),
        ErrorClass::Permanent => StoreError::Unexpected(detail),
    }
}

/// One line a person can act on: the service's code and message, or what went wrong on the
/// way. (The SDK's own rendering includes the raw response: headers and body bytes.)
pub(crate) fn describe<E>(err: &SdkError<E, HttpResponse>) -> String
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    match err {
        SdkError::ServiceError(s) => {
            let e = s.err();
            match (e.code(), e.message()) {
                (Some(code), Some(message)) => format!("{code}: {message}"),
                (Some(code), None) => code.to_owned(),
                _ => format!("HTTP {} from the service", s.raw().status().as_u16()),
            }
        }
        SdkError::TimeoutError(_) => "the request timed out".to_owned(),
        SdkError::DispatchFailure(_) => {
            format!("could not reach the service: {}", DisplayErrorContext(err))
        }
        SdkError::ResponseError(r) => format!(
            "an unreadable response (HTTP {}) from the service",
            r.raw().status().as_u16()
        ),
        _ => DisplayErrorContext(err).to_string(),
    }
}

/// A value stored in AWS that does not parse: the store holds something this code did not write.
pub(crate) fn corrupt(what: impl Display, problem: impl Display) -> StoreError {
    StoreError::Unexpected(anyhow!("{what}: {problem}"))
}
