//! The Salesforce REST client: `GET` only, under `/services/data`.
//!
//! Each request: take the current access token; send; on 401 INVALID_SESSION_ID refresh once
//! and replay (never for "This session is not valid for use with the REST API", which a
//! refresh cannot fix); retry transient failures (5xx, 420, 429, 406, concurrency limits,
//! transport errors, unreadable bodies) with bounded jittered backoff; never retry
//! REQUEST_LIMIT_EXCEEDED for the daily allotment. Every attempt is counted, and the
//! `Sforce-Limit-Info` header of every response is kept.

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use backon::Retryable;
use secrecy::ExposeSecret;
use serde::Deserialize;
use serde::de::DeserializeOwned;

use super::error::SalesforceError;
use super::http::{RetryPolicy, summarize_body, transport_error};
use super::limits::ApiUsage;
use super::records::{Describe, QueryPage, RecordDecodeError, decode_page};
use super::soql::Soql;
use super::tokens::{AccessToken, AccessTokens};
use crate::domain::{ApiVersion, InstanceUrl};

/// The objects whose describe the doctor reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SObject {
    Case,
    EmailMessage,
}

impl SObject {
    pub fn api_name(self) -> &'static str {
        match self {
            Self::Case => "Case",
            Self::EmailMessage => "EmailMessage",
        }
    }
}

#[derive(Deserialize)]
struct ApiErrorItem {
    #[serde(default)]
    message: String,
    #[serde(rename = "errorCode", default)]
    error_code: String,
}

/// One org, one connection's tokens. Cheap to share (`Arc`).
pub struct OrgApi {
    http: reqwest::Client,
    retry: RetryPolicy,
    instance: InstanceUrl,
    version: ApiVersion,
    tokens: Arc<dyn AccessTokens>,
    calls: AtomicU64,
    usage: Mutex<Option<ApiUsage>>,
}

impl OrgApi {
    pub fn new(
        http: reqwest::Client,
        retry: RetryPolicy,
        instance: InstanceUrl,
        version: ApiVersion,
        tokens: Arc<dyn AccessTokens>,
    ) -> Self {
        Self {
            http,
            retry,
            instance,
            version,
            tokens,
            calls: AtomicU64::new(0),
            usage: Mutex::new(None),
        }
    }

    pub fn instance(&self) -> &InstanceUrl {
        &self.instance
    }

    /// Requests sent under `/services/data` so far (retries and replays included).
    pub fn api_calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }

    /// The org these calls go to, as its access token says (after the calls of a run the token
    /// is at hand: no extra call then).
    pub async fn org_id(&self) -> Option<crate::domain::OrgId> {
        self.tokens.current().await.ok()?.org_id
    }

    /// The org's API usage as the latest response reported it.
    pub fn api_usage(&self) -> Option<ApiUsage> {
        *self.usage.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn data_url(&self, rest: &str) -> String {
        self.instance.join(&format!(
            "/services/data/{}{rest}",
            self.version.path_segment()
        ))
    }

    /// The first page of a query. `batch_size` goes in `Sforce-Query-Options`; Salesforce
    /// may return fewer records than asked, so callers follow `next()` until it is `None`.
    pub async fn query<T: DeserializeOwned>(
        &self,
        soql: &Soql,
        batch_size: Option<u32>,
    ) -> Result<(QueryPage<T>, Vec<RecordDecodeError>), SalesforceError> {
        let url = self.data_url("/query");
        self.get(&url, Some(soql.as_str()), batch_size, decode_query_page)
            .await
    }

    /// A further page: a `nextRecordsUrl` of a query or of a truncated child list.
    pub async fn query_more<T: DeserializeOwned>(
        &self,
        next_records_url: &str,
        batch_size: Option<u32>,
    ) -> Result<(QueryPage<T>, Vec<RecordDecodeError>), SalesforceError> {
        let url = self.next_url(next_records_url)?;
        self.get(&url, None, batch_size, decode_query_page).await
    }

    /// `SELECT COUNT() ...`: the answer is the page's `totalSize`.
    pub async fn count(&self, soql: &Soql) -> Result<u64, SalesforceError> {
        let (page, _) = self.query::<serde_json::Value>(soql, None).await?;
        Ok(page.total_size)
    }

    pub async fn describe(&self, object: SObject) -> Result<Describe, SalesforceError> {
        let url = self.data_url(&format!("/sobjects/{}/describe", object.api_name()));
        self.get(&url, None, None, |body| {
            serde_json::from_slice(body).map_err(|e| {
                SalesforceError::Decode(format!("describe {}: {e}", object.api_name()))
            })
        })
        .await
    }

    /// A `nextRecordsUrl` is a path on the instance. Anything else (another host, a path
    /// outside `/services/data/`) is refused: the bearer token must never leave the instance.
    fn next_url(&self, next: &str) -> Result<String, SalesforceError> {
        let ok = next.starts_with("/services/data/")
            && !next.contains("..")
            && next
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'/' | b'.' | b'-' | b'_'));
        if !ok {
            return Err(SalesforceError::BadNextRecordsUrl(
                next.chars().take(200).collect(),
            ));
        }
        Ok(self.instance.join(next))
    }

    /// GETs and decodes, as one attempt: a body that does not decode (malformed, or cut off
    /// by a broken connection) is retried like any other transient failure.
    async fn get<T>(
        &self,
        url: &str,
        soql: Option<&str>,
        batch_size: Option<u32>,
        decode: impl Fn(&[u8]) -> Result<T, SalesforceError>,
    ) -> Result<T, SalesforceError> {
        let attempts = AtomicU64::new(0);
        let attempt = || async {
            attempts.fetch_add(1, Ordering::Relaxed);
            let token = self.tokens.current().await?;
            let body = match self.send(url, soql, batch_size, &token).await {
                Err(SalesforceError::InvalidSession { .. }) => {
                    // Once: if the fresh token is rejected too, the error stands.
                    let fresh = self.tokens.refresh_after(&token).await?;
                    self.send(url, soql, batch_size, &fresh).await
                }
                other => other,
            }?;
            decode(&body)
        };
        attempt
            .retry(self.retry.backoff())
            .when(SalesforceError::is_transient)
            .notify(|e, after| {
                tracing::warn!(error = %e, retry_in = ?after, "Salesforce request failed; retrying")
            })
            .await
            .map_err(|e| {
                let n = attempts.load(Ordering::Relaxed) as u32;
                if n > 1 && e.is_transient() {
                    SalesforceError::RetriesExhausted {
                        attempts: n,
                        last: Box::new(e),
                    }
                } else {
                    e
                }
            })
    }

    async fn send(
        &self,
        url: &str,
        soql: Option<&str>,
        batch_size: Option<u32>,
        token: &AccessToken,
    ) -> Result<bytes::Bytes, SalesforceError> {
        let mut request = self
            .http
            .get(url)
            .bearer_auth(token.token.expose_secret())
            .header(reqwest::header::ACCEPT, "application/json");
        if let Some(q) = soql {
            request = request.query(&[("q", q)]);
        }
        if let Some(n) = batch_size {
            request = request.header("Sforce-Query-Options", format!("batchSize={n}"));
        }
        self.calls.fetch_add(1, Ordering::Relaxed);
        let response = request.send().await.map_err(transport_error)?;
        if let Some(usage) = response
            .headers()
            .get("sforce-limit-info")
            .and_then(|v| v.to_str().ok())
            .and_then(ApiUsage::parse)
        {
            *self.usage.lock().unwrap_or_else(|e| e.into_inner()) = Some(usage);
        }
        let status = response.status();
        let body = response.bytes().await.map_err(transport_error)?;
        if status.is_success() {
            Ok(body)
        } else {
            Err(SalesforceError::from_response(status.as_u16(), &body))
        }
    }
}

fn decode_query_page<T: DeserializeOwned>(
    body: &[u8],
) -> Result<(QueryPage<T>, Vec<RecordDecodeError>), SalesforceError> {
    decode_page(body).map_err(|e| SalesforceError::Decode(format!("query page: {e}")))
}

impl SalesforceError {
    /// Turns an error response of the REST API into the error that says what to do about it:
    /// a JSON array `[{"message","errorCode"}]`, or any other body (HTML from the edge).
    pub fn from_response(status: u16, body: &[u8]) -> SalesforceError {
        classify(status, body)
    }
}

fn classify(status: u16, body: &[u8]) -> SalesforceError {
    let item = serde_json::from_slice::<Vec<ApiErrorItem>>(body)
        .ok()
        .and_then(|v| v.into_iter().next());
    let Some(ApiErrorItem {
        message,
        error_code,
    }) = item
    else {
        return SalesforceError::Http {
            status,
            summary: summarize_body(body),
        };
    };
    match (status, error_code.as_str()) {
        (401, "INVALID_SESSION_ID") if message.contains("not valid for use with the REST API") => {
            SalesforceError::SessionNotValidForRest { message }
        }
        (401, _) => SalesforceError::InvalidSession { message },
        (403, "REQUEST_LIMIT_EXCEEDED") if message.contains("ConcurrentPerOrgLongTxn") => {
            SalesforceError::ConcurrencyLimited { message }
        }
        (403, "REQUEST_LIMIT_EXCEEDED") => SalesforceError::DailyLimitExceeded { message },
        (_, "INVALID_QUERY_LOCATOR") => SalesforceError::InvalidQueryLocator { message },
        (_, "QUERY_TIMEOUT") => SalesforceError::QueryTimeout { message },
        _ => SalesforceError::Api {
            status,
            code: error_code,
            message,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_bodies_are_classified_by_what_to_do() {
        let e = |s, b: &str| classify(s, b.as_bytes());
        assert!(matches!(
            e(
                401,
                r#"[{"message":"Session expired or invalid","errorCode":"INVALID_SESSION_ID"}]"#
            ),
            SalesforceError::InvalidSession { .. }
        ));
        assert!(matches!(
            e(
                401,
                r#"[{"message":"This session is not valid for use with the REST API","errorCode":"INVALID_SESSION_ID"}]"#
            ),
            SalesforceError::SessionNotValidForRest { .. }
        ));
        let daily = e(
            403,
            r#"[{"message":"TotalRequests Limit exceeded.","errorCode":"REQUEST_LIMIT_EXCEEDED"}]"#,
        );
        assert!(daily.is_rate_limited() && !daily.is_transient());
        let conc = e(
            403,
            r#"[{"message":"ConcurrentPerOrgLongTxn Limit exceeded.","errorCode":"REQUEST_LIMIT_EXCEEDED"}]"#,
        );
        assert!(conc.is_transient() && !conc.is_rate_limited());
        assert!(e(503, r#"[{"message":"x","errorCode":"SERVER_UNAVAILABLE"}]"#).is_transient());
        assert!(e(500, r#"[{"message":"x","errorCode":"UNKNOWN_EXCEPTION"}]"#).is_transient());
        let html = e(502, "<html><body><h1>502 Bad Gateway</h1></body></html>");
        assert!(
            matches!(&html, SalesforceError::Http { status: 502, summary } if summary == "502 Bad Gateway")
        );
        assert!(html.is_transient());
        let uri = e(
            414,
            "<h1>Bad Message 414</h1><pre>reason: URI Too Long</pre>",
        );
        assert!(matches!(uri, SalesforceError::Http { status: 414, .. }) && !uri.is_transient());
        assert!(e(420, "<html>edge</html>").is_transient());
        assert!(matches!(
            e(
                400,
                r#"[{"message":"invalid query locator","errorCode":"INVALID_QUERY_LOCATOR"}]"#
            ),
            SalesforceError::InvalidQueryLocator { .. }
        ));
        assert!(matches!(
            e(
                400,
                r#"[{"message":"Your query request was running for too long.","errorCode":"QUERY_TIMEOUT"}]"#
            ),
            SalesforceError::QueryTimeout { .. }
        ));
        assert!(matches!(
            e(400, r#"[{"message":"No such column 'Foo' on entity 'Case'","errorCode":"INVALID_FIELD"}]"#),
            SalesforceError::Api { status: 400, code, .. } if code == "INVALID_FIELD"
        ));
    }
}
