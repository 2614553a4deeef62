//! The shared state behind both listeners, and the accept loops.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Instant;

use hyper::StatusCode;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use rand::Rng;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::config::{FaultKind, FaultRule, FaultTarget, SimConfig, Stats};
use crate::http::{self, Resp};
use crate::ids::{IdGen, prefix};
use crate::org::Org;
use crate::soql::Plan;

pub(crate) const SOQL_HISTORY: usize = 1_000;

pub(crate) struct AuthCode {
    pub client_id: String,
    pub redirect_uri: String,
    pub scope: String,
    pub code_challenge: Option<String>,
    pub issued: Instant,
}

pub(crate) struct Grant {
    pub scope: String,
    pub revoked: bool,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum RefreshState {
    Active,
    RotatedOut,
    Revoked,
}

pub(crate) struct RefreshEntry {
    pub grant: usize,
    pub state: RefreshState,
}

pub(crate) struct AccessEntry {
    pub grant: usize,
    pub calls: u64,
    pub active: bool,
}

pub(crate) struct TopCursor {
    pub id: String,
    pub plan: Arc<Plan>,
    pub rows: Arc<Vec<u32>>,
    pub batch: Option<u32>,
    pub last_used: Instant,
}

pub(crate) struct ChildCursor {
    pub id: String,
    /// The parent query's plan; its `child` is the subquery.
    pub plan: Arc<Plan>,
    pub rows: Arc<Vec<u32>>,
    pub last_used: Instant,
}

struct RuleState {
    rule: FaultRule,
    seen: u64,
}

/// Child cursors are kept apart from the 10-per-user limit on query cursors; this bounds them.
pub(crate) const MAX_CHILD_CURSORS: usize = 500;

pub(crate) struct State {
    pub stats: Stats,
    /// Data calls being answered now.
    pub in_flight: u64,
    pub soql: VecDeque<String>,
    faults: Vec<RuleState>,
    pub api_used: u64,
    pub codes: HashMap<String, AuthCode>,
    pub grants: Vec<Grant>,
    pub refresh: HashMap<String, RefreshEntry>,
    pub access: HashMap<String, AccessEntry>,
    pub top: VecDeque<TopCursor>,
    pub child: VecDeque<ChildCursor>,
    locator_ids: IdGen,
    pub page_seq: u64,
}

impl State {
    pub fn new_locator_id(&mut self) -> String {
        self.locator_ids.next(prefix::QUERY_LOCATOR).to_string()
    }

    /// Offers a request to every rule; returns the fault of the first rule whose window
    /// contains it.
    pub fn take_fault(&mut self, targets: &[FaultTarget]) -> Option<FaultKind> {
        let mut chosen = None;
        for rs in &mut self.faults {
            if !targets.contains(&rs.rule.target) {
                continue;
            }
            let n = rs.seen;
            rs.seen += 1;
            let skip = u64::from(rs.rule.skip);
            let in_window =
                n >= skip && (rs.rule.times == u32::MAX || n < skip + u64::from(rs.rule.times));
            if in_window && chosen.is_none() {
                chosen = Some(rs.rule.kind);
            }
        }
        if chosen.is_some() {
            self.stats.faults_served += 1;
        }
        chosen
    }

    pub fn push_soql(&mut self, q: &str) {
        if self.soql.len() >= SOQL_HISTORY {
            self.soql.pop_front();
        }
        self.soql.push_back(q.to_string());
    }

    pub fn snapshot(&self) -> Stats {
        let mut s = self.stats.clone();
        s.soql = self.soql.iter().cloned().collect();
        s
    }

    pub fn revoke_grant(&mut self, grant: usize) {
        if let Some(g) = self.grants.get_mut(grant) {
            g.revoked = true;
        }
        for r in self.refresh.values_mut() {
            if r.grant == grant {
                r.state = RefreshState::Revoked;
            }
        }
        for a in self.access.values_mut() {
            if a.grant == grant {
                a.active = false;
            }
        }
    }

    pub fn refresh_active(&self, token: &str) -> bool {
        self.refresh.get(token).is_some_and(|r| {
            r.state == RefreshState::Active && self.grants.get(r.grant).is_some_and(|g| !g.revoked)
        })
    }

    pub fn access_active(&self, token: &str) -> bool {
        self.access
            .get(token)
            .is_some_and(|a| a.active && self.grants.get(a.grant).is_some_and(|g| !g.revoked))
    }
}

/// Everything both listeners share.
pub(crate) struct Shared {
    pub config: RwLock<SimConfig>,
    pub org: RwLock<Org>,
    pub state: Mutex<State>,
    pub login_url: String,
    pub instance_url: String,
}

impl Shared {
    pub fn new(config: SimConfig, org: Org, login_url: String, instance_url: String) -> Shared {
        let used = config.initial_api_usage;
        Shared {
            config: RwLock::new(config),
            org: RwLock::new(org),
            state: Mutex::new(State {
                stats: Stats::default(),
                soql: VecDeque::new(),
                in_flight: 0,
                faults: Vec::new(),
                api_used: used,
                codes: HashMap::new(),
                grants: Vec::new(),
                refresh: HashMap::new(),
                access: HashMap::new(),
                top: VecDeque::new(),
                child: VecDeque::new(),
                locator_ids: IdGen::new(*b"Zq"),
                page_seq: 0,
            }),
            login_url,
            instance_url,
        }
    }

    // Poisoning only happens if a thread panicked while holding a lock; the data is still
    // usable for a test double, so take it.
    pub fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
    pub fn cfg(&self) -> RwLockReadGuard<'_, SimConfig> {
        self.config.read().unwrap_or_else(|e| e.into_inner())
    }
    pub fn cfg_mut(&self) -> RwLockWriteGuard<'_, SimConfig> {
        self.config.write().unwrap_or_else(|e| e.into_inner())
    }
    pub fn org(&self) -> RwLockReadGuard<'_, Org> {
        self.org.read().unwrap_or_else(|e| e.into_inner())
    }
    pub fn org_mut(&self) -> RwLockWriteGuard<'_, Org> {
        self.org.write().unwrap_or_else(|e| e.into_inner())
    }

    pub fn inject(&self, rule: FaultRule) {
        self.state().faults.push(RuleState { rule, seen: 0 });
    }
    pub fn clear_faults(&self) {
        self.state().faults.clear();
    }

    /// Issues a new grant with a refresh token (and no access token yet).
    pub fn new_grant(&self, st: &mut State, scope: &str) -> (usize, String) {
        st.grants.push(Grant {
            scope: scope.to_string(),
            revoked: false,
        });
        let grant = st.grants.len() - 1;
        let token = random_token("5Aep861", 80);
        st.refresh.insert(
            token.clone(),
            RefreshEntry {
                grant,
                state: RefreshState::Active,
            },
        );
        (grant, token)
    }

    pub fn new_access_token(&self, st: &mut State, grant: usize) -> String {
        let org_key = {
            let org = self.org();
            String::from_utf8_lossy(&org.org_id.key()).into_owned()
        };
        let token = format!("{org_key}!AR{}", random_body(96));
        st.access.insert(
            token.clone(),
            AccessEntry {
                grant,
                calls: 0,
                active: true,
            },
        );
        token
    }
}

const TOKEN_CHARS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._";

fn random_body(n: usize) -> String {
    let mut rng = rand::rng();
    (0..n)
        .map(|_| TOKEN_CHARS[rng.random_range(0..TOKEN_CHARS.len())] as char)
        .collect()
}

pub(crate) fn random_token(prefix: &str, n: usize) -> String {
    format!("{prefix}{}", random_body(n))
}

pub(crate) fn random_alnum(n: usize) -> String {
    let mut rng = rand::rng();
    (0..n)
        .map(|_| TOKEN_CHARS[rng.random_range(0..62)] as char)
        .collect()
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Host {
    Login,
    Instance,
}

pub(crate) async fn bind(port: u16) -> std::io::Result<(TcpListener, SocketAddr)> {
    let listener = TcpListener::bind(("127.0.0.1", port)).await?;
    let addr = listener.local_addr()?;
    Ok((listener, addr))
}

pub(crate) async fn serve(
    listener: TcpListener,
    shared: Arc<Shared>,
    host: Host,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, _) = match accepted {
                    Ok(x) => x,
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let sh = shared.clone();
                conns.spawn(async move {
                    let svc = service_fn(move |req| {
                        let sh = sh.clone();
                        async move {
                            match host {
                                Host::Login => crate::oauth::handle(sh, req).await,
                                Host::Instance => {
                                    let gzip = sh.cfg().gzip && http::accepts_gzip(req.headers());
                                    let resp = crate::rest::handle(sh.clone(), req).await?;
                                    if gzip {
                                        sh.state().stats.gzip_responses += 1;
                                        Ok(http::gzip(resp).await)
                                    } else {
                                        Ok(resp)
                                    }
                                }
                            }
                        }
                    });
                    if let Err(e) = http1::Builder::new()
                        .keep_alive(true)
                        .serve_connection(TokioIo::new(stream), svc)
                        .await
                    {
                        tracing::debug!(error = %e, "connection ended with an error");
                    }
                });
                // Reap finished connections so the set does not grow without bound.
                while conns.try_join_next().is_some() {}
            }
            changed = shutdown.changed() => {
                if changed.is_err() || *shutdown.borrow() {
                    break;
                }
            }
        }
    }
    conns.abort_all();
    while conns.join_next().await.is_some() {}
}

/// The response of a fault that replaces the real one (`None` for Delay / body faults).
pub(crate) fn fault_response(kind: FaultKind) -> Option<Result<Resp, http::Reset>> {
    use FaultKind::*;
    let r = match kind {
        InvalidSession => http::sf_error(
            StatusCode::UNAUTHORIZED,
            "INVALID_SESSION_ID",
            "Session expired or invalid",
        ),
        SessionNotValidForRest => http::sf_error(
            StatusCode::UNAUTHORIZED,
            "INVALID_SESSION_ID",
            "This session is not valid for use with the REST API",
        ),
        TotalRequestsLimit => http::sf_error(
            StatusCode::FORBIDDEN,
            "REQUEST_LIMIT_EXCEEDED",
            "TotalRequests Limit exceeded.",
        ),
        ConcurrentLongTxn => http::sf_error(
            StatusCode::FORBIDDEN,
            "REQUEST_LIMIT_EXCEEDED",
            "ConcurrentPerOrgLongTxn Limit exceeded.",
        ),
        Status500 => http::sf_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "UNKNOWN_EXCEPTION",
            "An unexpected error occurred. Please include this ErrorId if you contact support: 1871925873-58745 (-1274569421)",
        ),
        Status502Html => http::html(
            StatusCode::BAD_GATEWAY,
            "<html><head><title>502 Bad Gateway</title></head><body><h1>Bad Gateway</h1><p>The proxy server received an invalid response from an upstream server.</p></body></html>",
        ),
        Status503 => http::sf_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "SERVER_UNAVAILABLE",
            "Server is unavailable to handle the request. Typically this issue occurs if the server is down for maintenance or is currently overloaded.",
        ),
        Status420Html => http::html(
            StatusCode::from_u16(420).unwrap_or(StatusCode::BAD_REQUEST),
            "<html><head><title>Salesforce Edge</title></head><body><p>We are setting things up. This can take a few minutes. This page will auto-redirect when it's ready.</p></body></html>",
        ),
        Status406Empty => http::body(StatusCode::NOT_ACCEPTABLE, "", ""),
        ConnectionReset => return Some(Err(http::Reset)),
        InvalidQueryLocator => http::sf_error(
            StatusCode::BAD_REQUEST,
            "INVALID_QUERY_LOCATOR",
            "invalid query locator",
        ),
        QueryTimeout => http::sf_error(
            StatusCode::BAD_REQUEST,
            "QUERY_TIMEOUT",
            "Your query request was running for too long.",
        ),
        InvalidGrant => http::oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_grant",
            "expired access/refresh token",
        ),
        Delay(_) | MalformedJson | TruncatedJson => return None,
    };
    Some(Ok(r))
}

/// Whether a fault's response comes from the API tier (counts toward API usage and carries
/// `Sforce-Limit-Info`) rather than the edge.
pub(crate) fn fault_is_app_level(kind: FaultKind) -> bool {
    !matches!(
        kind,
        FaultKind::Status502Html
            | FaultKind::Status420Html
            | FaultKind::Status406Empty
            | FaultKind::ConnectionReset
            | FaultKind::InvalidSession
            | FaultKind::SessionNotValidForRest
    )
}

/// Applies MalformedJson / TruncatedJson to a finished response.
pub(crate) async fn corrupt_body(kind: FaultKind, resp: Resp) -> Resp {
    use http_body_util::BodyExt;
    let (parts, body) = resp.into_parts();
    let bytes = match body.collect().await {
        Ok(c) => c.to_bytes(),
        Err(never) => match never {},
    };
    let new: bytes::Bytes = match kind {
        FaultKind::MalformedJson => bytes::Bytes::from_static(
            b"<html><body>Upstream returned something that is not JSON {\"records\":</body></html>",
        ),
        FaultKind::TruncatedJson => bytes.slice(..bytes.len() / 2),
        _ => bytes,
    };
    let mut r = hyper::Response::from_parts(parts, http_body_util::Full::new(new));
    *r.status_mut() = StatusCode::OK;
    r.headers_mut().remove(hyper::header::CONTENT_LENGTH);
    r
}
