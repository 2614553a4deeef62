//! Configuration, fault rules and statistics: the simulator's public knobs.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// What `GET /services/oauth2/authorize` does once the request is valid.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum AuthorizeMode {
    /// The user approves: `302 <redirect_uri>?code=...&state=...`.
    #[default]
    AutoApprove,
    /// The user denies: `?error=access_denied&error_description=end-user%20denied%20authorization`.
    Deny,
    /// The admin has not installed/approved the app: `?error=OAUTH_APPROVAL_ERROR_GENERIC`.
    AppNotInstalled,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SimConfig {
    pub client_id: String,
    pub client_secret: String,
    /// Refresh Token Rotation: each refresh returns a new refresh token and invalidates the
    /// old one; replaying a rotated-out token revokes the whole token family.
    pub rotate_refresh_tokens: bool,
    /// Allowed callback URLs; `None` = any `http` loopback URI.
    pub allowed_redirect_uris: Option<Vec<String>>,
    pub authorize_mode: AuthorizeMode,
    /// Added to every call under `/services/data`.
    pub latency: Duration,
    /// Pages hold at most this many rows (parents + inline children), whatever batchSize says.
    pub page_size_cap: Option<u32>,
    /// Pages are randomly (seeded) smaller than the batch size.
    pub random_short_pages: bool,
    /// At most this many child records inline per parent; the rest via a child locator.
    pub child_inline_limit: usize,
    /// Daily API request allotment (`Sforce-Limit-Info: api-usage=used/allotment`).
    pub api_allotment: u64,
    /// Starting API usage.
    pub initial_api_usage: u64,
    /// An access token dies after this many data calls.
    pub access_token_ttl_calls: Option<u64>,
    /// QUERY_TIMEOUT when a query matches more rows than this.
    pub query_timeout_rows: Option<usize>,
    /// Query locators expire after this long unused.
    pub locator_idle_timeout: Duration,
    /// Open top-level query locators per user; opening one more invalidates the oldest.
    pub max_open_locators: usize,
    /// 0 = a random free port.
    pub login_port: u16,
    pub instance_port: u16,
    /// Seed of everything random (tokens excepted): short pages, ids of locators.
    pub seed: u64,
    /// Scopes granted when the authorize request names none.
    pub default_scope: String,
    /// Answers under `/services/data` are gzip-compressed when the request accepts gzip, as
    /// Salesforce does ("it isn't required to compress the response ... but it normally does").
    #[serde(default = "yes")]
    pub gzip: bool,
}

fn yes() -> bool {
    true
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            client_id: "casesync-sim-client".into(),
            client_secret: "casesync-sim-secret".into(),
            rotate_refresh_tokens: false,
            allowed_redirect_uris: None,
            authorize_mode: AuthorizeMode::AutoApprove,
            latency: Duration::ZERO,
            page_size_cap: None,
            random_short_pages: false,
            child_inline_limit: 200,
            api_allotment: 100_000,
            initial_api_usage: 0,
            access_token_ttl_calls: None,
            query_timeout_rows: None,
            locator_idle_timeout: Duration::from_secs(15 * 60),
            max_open_locators: 10,
            login_port: 0,
            instance_port: 0,
            seed: 1,
            default_scope: "api refresh_token".into(),
            gzip: true,
        }
    }
}

/// Which requests a [`FaultRule`] applies to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum FaultTarget {
    /// Every call under `/services/data` (except the unauthenticated versions list).
    AnyData,
    /// A new query (`/query?q=` or `/queryAll?q=`) that is not `SELECT COUNT()`.
    Query,
    /// A top-level locator page (`/query/<locator>-<offset>`).
    QueryMore,
    /// A child-list locator page (an `EmailMessages.nextRecordsUrl`).
    ChildMore,
    /// A `SELECT COUNT() ...` query.
    Count,
    /// `/sobjects/<Object>/describe`.
    Describe,
    /// `/limits`.
    Limits,
    /// `POST /services/oauth2/token` (any grant).
    Token,
    /// `/services/oauth2/revoke`.
    Revoke,
}

/// What a faulted request gets.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum FaultKind {
    /// 401 `INVALID_SESSION_ID` "Session expired or invalid" (the token stays valid).
    InvalidSession,
    /// 401 `INVALID_SESSION_ID` "This session is not valid for use with the REST API".
    SessionNotValidForRest,
    /// 403 `REQUEST_LIMIT_EXCEEDED` "TotalRequests Limit exceeded.".
    TotalRequestsLimit,
    /// 403 `REQUEST_LIMIT_EXCEEDED` "ConcurrentPerOrgLongTxn Limit exceeded.".
    ConcurrentLongTxn,
    /// 500 `UNKNOWN_EXCEPTION` (JSON).
    Status500,
    /// 502 with an HTML body.
    Status502Html,
    /// 503 `SERVER_UNAVAILABLE` (JSON).
    Status503,
    /// 420 with an HTML body (Salesforce Edge).
    Status420Html,
    /// 406 with an empty body.
    Status406Empty,
    /// The TCP connection is closed without any response.
    ConnectionReset,
    /// Waits, then responds normally.
    Delay(Duration),
    /// 400 `INVALID_QUERY_LOCATOR`; on a locator page the locator is really invalidated.
    InvalidQueryLocator,
    /// 400 `QUERY_TIMEOUT`.
    QueryTimeout,
    /// 200 with a body that is not JSON.
    MalformedJson,
    /// 200 with the real body cut in half.
    TruncatedJson,
    /// Token endpoint: 400 `invalid_grant` "expired access/refresh token" (tokens stay valid).
    InvalidGrant,
}

/// Lets `skip` matching requests through, then faults the next `times` ones
/// (`u32::MAX` = forever).
///
/// Counting: every rule counts every request its target matches, whether or not another rule
/// faulted it; a request is faulted by the first rule (in injection order) whose window
/// `[skip, skip + times)` contains it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FaultRule {
    pub target: FaultTarget,
    pub kind: FaultKind,
    pub skip: u32,
    pub times: u32,
}

impl FaultRule {
    /// Faults the very next matching request.
    pub fn once(target: FaultTarget, kind: FaultKind) -> FaultRule {
        FaultRule {
            target,
            kind,
            skip: 0,
            times: 1,
        }
    }
    /// Faults every matching request from now on.
    pub fn always(target: FaultTarget, kind: FaultKind) -> FaultRule {
        FaultRule {
            target,
            kind,
            skip: 0,
            times: u32::MAX,
        }
    }
    pub fn after(mut self, skip: u32) -> FaultRule {
        self.skip = skip;
        self
    }
    pub fn times(mut self, times: u32) -> FaultRule {
        self.times = times;
        self
    }
}

/// Counters since start (or the last [`reset_stats`](crate::SimHandle::reset_stats)).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stats {
    /// Every request under `/services/data` on the instance host (writes, faulted, rejected
    /// and unauthenticated ones included).
    pub data_calls: u64,
    /// New queries (`?q=`), COUNT() excluded.
    pub queries: u64,
    /// New `SELECT COUNT()` queries.
    pub counts: u64,
    /// Top-level locator pages.
    pub query_more: u64,
    /// Child-list locator pages.
    pub child_more: u64,
    pub describes: u64,
    pub limits_calls: u64,
    /// Token requests with `grant_type=authorization_code`.
    pub token_code: u64,
    /// Token requests with `grant_type=refresh_token`.
    pub token_refresh: u64,
    /// Token requests with any other or no grant type.
    pub token_other: u64,
    pub revokes: u64,
    pub authorizes: u64,
    /// Non-GET/HEAD requests under `/services/data` (must stay 0: the connector never writes).
    pub write_attempts: u64,
    pub faults_served: u64,
    /// Data calls answered 401 (unknown, expired or revoked token).
    pub unauthorized: u64,
    /// batchSize of the last/largest `Sforce-Query-Options` header seen (as sent, unclamped).
    pub last_batch_size_requested: Option<u32>,
    pub max_batch_size_requested: Option<u32>,
    /// Pages served (new queries and locator pages) and rows in them (parents only).
    pub pages_served: u64,
    pub records_served: u64,
    /// Bytes of JSON in the query pages and child-list pages served.
    pub page_bytes_served: u64,
    /// Answers under `/services/data` sent gzip-compressed.
    pub gzip_responses: u64,
    /// The SOQL received (last 1,000).
    pub soql: Vec<String>,
    /// The most data calls being answered at once (the configured latency included): how
    /// many readers a client ran in parallel.
    pub peak_in_flight: u64,
}
