//! The instance host: the REST API under `/services/data`.

use std::sync::Arc;
use std::time::Instant;

use chrono::Utc;
use hyper::body::Incoming;
use hyper::header::{HeaderMap, HeaderValue};
use hyper::{Method, Request, StatusCode};

use crate::config::{FaultKind, FaultTarget, SimConfig};
use crate::http::{self, Reset, Resp, form, param, sf_error};
use crate::json::{ChildChunk, ListSer, PageRow};
use crate::org::Org;
use crate::schema::SObject;
use crate::server::{
    ChildCursor, MAX_CHILD_CURSORS, Shared, TopCursor, corrupt_body, fault_is_app_level,
    fault_response,
};
use crate::soql::{self, Plan, eval};
use crate::text::{Rng64, mix};

/// The access token of a request (`Authorization: Bearer <t>` or `OAuth <t>`).
pub(crate) fn bearer(headers: &HeaderMap) -> Option<&str> {
    let v = headers.get(hyper::header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.split_once(' ')?;
    if scheme.eq_ignore_ascii_case("Bearer") || scheme.eq_ignore_ascii_case("OAuth") {
        Some(token.trim()).filter(|t| !t.is_empty())
    } else {
        None
    }
}

fn invalid_session() -> Resp {
    sf_error(
        StatusCode::UNAUTHORIZED,
        "INVALID_SESSION_ID",
        "Session expired or invalid",
    )
}

fn invalid_locator() -> Resp {
    sf_error(
        StatusCode::BAD_REQUEST,
        "INVALID_QUERY_LOCATOR",
        "invalid query locator",
    )
}

fn with_limit_info(mut r: Resp, used: u64, allotment: u64) -> Resp {
    if let Ok(v) = HeaderValue::from_str(&format!("api-usage={used}/{allotment}")) {
        r.headers_mut().insert("sforce-limit-info", v);
    }
    r
}

#[derive(Debug, Clone, PartialEq)]
enum Route {
    Resources,
    Query {
        soql: Option<String>,
        all: bool,
    },
    More {
        locator: String,
        offset: Option<usize>,
    },
    Describe(String),
    Limits,
    Unknown,
}

fn valid_version(v: &str) -> bool {
    let Some(num) = v.strip_prefix('v') else {
        return false;
    };
    let Some((major, minor)) = num.split_once('.') else {
        return false;
    };
    minor == "0" && major.parse::<u32>().is_ok_and(|m| (20..=62).contains(&m))
}

fn parse_route(path: &str, query: Option<&str>) -> (String, Route) {
    let rest = path.trim_start_matches("/services/data/");
    let mut segs: Vec<&str> = rest.split('/').collect();
    if segs.last() == Some(&"") {
        segs.pop();
    }
    let Some((&version, tail)) = segs.split_first() else {
        return (String::new(), Route::Unknown);
    };
    if !valid_version(version) {
        return (version.to_string(), Route::Unknown);
    }
    let route = match tail {
        [] => Route::Resources,
        [q] if *q == "query" || *q == "queryAll" => {
            let params = form(query.unwrap_or("").as_bytes());
            Route::Query {
                soql: param(&params, "q").map(str::to_string),
                all: *q == "queryAll",
            }
        }
        [q, loc] if *q == "query" || *q == "queryAll" => match loc.rsplit_once('-') {
            Some((l, off)) => Route::More {
                locator: l.to_string(),
                offset: off.parse().ok(),
            },
            None => Route::More {
                locator: loc.to_string(),
                offset: None,
            },
        },
        ["sobjects", obj, "describe"] => Route::Describe(obj.to_string()),
        ["limits"] => Route::Limits,
        _ => Route::Unknown,
    };
    (version.to_string(), route)
}

/// `Sforce-Query-Options: batchSize=N` (as sent).
fn batch_size(headers: &HeaderMap) -> Option<u32> {
    let v = headers.get("sforce-query-options")?.to_str().ok()?;
    v.split(',').find_map(|kv| {
        let (k, val) = kv.split_once('=')?;
        if k.trim().eq_ignore_ascii_case("batchSize") {
            val.trim().parse().ok()
        } else {
            None
        }
    })
}

fn is_count_query(soql: &str) -> bool {
    soql::parser::parse(soql)
        .is_ok_and(|a| matches!(a.select.as_slice(), [soql::parser::SelItem::Count(_)]))
}

/// Counts a data call as being answered until it is dropped.
struct InFlight(Arc<Shared>);

impl InFlight {
    fn enter(sh: &Arc<Shared>) -> Self {
        let mut st = sh.state();
        st.in_flight += 1;
        st.stats.peak_in_flight = st.stats.peak_in_flight.max(st.in_flight);
        drop(st);
        Self(sh.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let mut st = self.0.state();
        st.in_flight = st.in_flight.saturating_sub(1);
    }
}

pub(crate) async fn handle(sh: Arc<Shared>, req: Request<Incoming>) -> Result<Resp, Reset> {
    if let Some(r) = http::size_guard(&req) {
        return Ok(r);
    }
    let path = req.uri().path().to_string();
    if path != "/services/data" && !path.starts_with("/services/data/") {
        return Ok(http::not_found());
    }
    sh.state().stats.data_calls += 1;
    let method = req.method().clone();
    if method != Method::GET && method != Method::HEAD {
        sh.state().stats.write_attempts += 1;
        tracing::warn!(%method, %path, "write attempt under /services/data");
        return Ok(sf_error(
            StatusCode::METHOD_NOT_ALLOWED,
            "METHOD_NOT_ALLOWED",
            &format!("HTTP Method '{method}' not allowed. Allowed are GET,HEAD"),
        ));
    }
    if path == "/services/data" || path == "/services/data/" {
        return Ok(versions());
    }
    let _in_flight = InFlight::enter(&sh);
    let latency = sh.cfg().latency;
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    let (version, route) = parse_route(&path, req.uri().query());
    let batch = batch_size(req.headers());
    tracing::debug!(%path, ?route, "data call");

    // Count by class (faulted requests included) and find the fault targets.
    let fault = {
        let mut st = sh.state();
        let mut targets = vec![FaultTarget::AnyData];
        match &route {
            Route::Query { soql, .. } => {
                let q = soql.as_deref().unwrap_or("");
                if soql.is_some() {
                    st.push_soql(q);
                }
                if let Some(b) = batch {
                    st.stats.last_batch_size_requested = Some(b);
                    st.stats.max_batch_size_requested =
                        Some(st.stats.max_batch_size_requested.map_or(b, |m| m.max(b)));
                }
                if is_count_query(q) {
                    st.stats.counts += 1;
                    targets.push(FaultTarget::Count);
                } else {
                    st.stats.queries += 1;
                    targets.push(FaultTarget::Query);
                }
            }
            Route::More { locator, .. } => {
                if st.child.iter().any(|c| &c.id == locator) {
                    st.stats.child_more += 1;
                    targets.push(FaultTarget::ChildMore);
                } else {
                    st.stats.query_more += 1;
                    targets.push(FaultTarget::QueryMore);
                }
            }
            Route::Describe(_) => {
                st.stats.describes += 1;
                targets.push(FaultTarget::Describe);
            }
            Route::Limits => {
                st.stats.limits_calls += 1;
                targets.push(FaultTarget::Limits);
            }
            Route::Resources | Route::Unknown => {}
        }
        st.take_fault(&targets)
    };

    let mut body_fault = None;
    if let Some(kind) = fault {
        tracing::debug!(?kind, %path, "serving fault");
        match kind {
            FaultKind::Delay(d) => tokio::time::sleep(d).await,
            FaultKind::MalformedJson | FaultKind::TruncatedJson => body_fault = Some(kind),
            _ => {
                if let Some(r) = fault_response(kind) {
                    let r = r?;
                    if kind == FaultKind::InvalidQueryLocator
                        && let Route::More { locator, .. } = &route
                    {
                        let mut st = sh.state();
                        st.top.retain(|c| &c.id != locator);
                        st.child.retain(|c| &c.id != locator);
                    }
                    if fault_is_app_level(kind) {
                        let allotment = sh.cfg().api_allotment;
                        let mut st = sh.state();
                        if st.api_used < allotment {
                            st.api_used += 1;
                        }
                        return Ok(with_limit_info(r, st.api_used, allotment));
                    }
                    return Ok(r);
                }
            }
        }
    }

    if let Some(r) = authenticate(&sh, req.headers()) {
        sh.state().stats.unauthorized += 1;
        return Ok(r);
    }

    let allotment = sh.cfg().api_allotment;
    let used = {
        let mut st = sh.state();
        if st.api_used >= allotment {
            let used = st.api_used;
            drop(st);
            return Ok(with_limit_info(
                sf_error(
                    StatusCode::FORBIDDEN,
                    "REQUEST_LIMIT_EXCEEDED",
                    "TotalRequests Limit exceeded.",
                ),
                used,
                allotment,
            ));
        }
        st.api_used += 1;
        st.api_used
    };

    let resp = match route {
        Route::Resources => resources(&version),
        Route::Limits => limits(used, allotment),
        Route::Describe(obj) => describe(&sh, &obj),
        Route::Unknown => http::not_found(),
        Route::Query { soql, all } => {
            let sh2 = sh.clone();
            blocking(move || new_query(&sh2, soql.as_deref(), all, &version, batch)).await
        }
        Route::More { locator, offset } => {
            let sh2 = sh.clone();
            blocking(move || more(&sh2, &locator, offset, &version, batch)).await
        }
    };
    let resp = with_limit_info(resp, used, allotment);
    Ok(match body_fault {
        Some(k) => corrupt_body(k, resp).await,
        None => resp,
    })
}

async fn blocking(f: impl FnOnce() -> Resp + Send + 'static) -> Resp {
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r,
        Err(e) => sf_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "UNKNOWN_EXCEPTION",
            &format!("simulator task failed: {e}"),
        ),
    }
}

/// `Some(rejection)` when the request's access token is not usable for the REST API.
fn authenticate(sh: &Shared, headers: &HeaderMap) -> Option<Resp> {
    let Some(token) = bearer(headers) else {
        return Some(invalid_session());
    };
    let ttl = sh.cfg().access_token_ttl_calls;
    let mut st = sh.state();
    if !st.access_active(token) {
        return Some(invalid_session());
    }
    let Some(entry) = st.access.get_mut(token) else {
        return Some(invalid_session());
    };
    if let Some(n) = ttl
        && entry.calls >= n
    {
        entry.active = false;
        return Some(invalid_session());
    }
    entry.calls += 1;
    let grant = entry.grant;
    let api = st
        .grants
        .get(grant)
        .is_some_and(|g| g.scope.split(' ').any(|s| s == "api" || s == "full"));
    if !api {
        return Some(sf_error(
            StatusCode::UNAUTHORIZED,
            "INVALID_SESSION_ID",
            "This session is not valid for use with the REST API",
        ));
    }
    None
}

fn versions() -> Resp {
    let list: Vec<serde_json::Value> = [
        ("57.0", "Spring '23"),
        ("58.0", "Summer '23"),
        ("59.0", "Winter '24"),
        ("60.0", "Spring '24"),
        ("61.0", "Summer '24"),
        ("62.0", "Winter '25"),
    ]
    .iter()
    .map(|(v, l)| serde_json::json!({"label": l, "url": format!("/services/data/v{v}"), "version": v}))
    .collect();
    http::json(StatusCode::OK, &list)
}

fn resources(version: &str) -> Resp {
    let base = format!("/services/data/{version}");
    http::json(
        StatusCode::OK,
        &serde_json::json!({
            "limits": format!("{base}/limits"),
            "query": format!("{base}/query"),
            "queryAll": format!("{base}/queryAll"),
            "sobjects": format!("{base}/sobjects"),
        }),
    )
}

fn limits(used: u64, allotment: u64) -> Resp {
    let remaining = allotment.saturating_sub(used);
    http::json(
        StatusCode::OK,
        &serde_json::json!({
            "ConcurrentAsyncGetReportInstances": {"Max": 200, "Remaining": 200},
            "DailyApiRequests": {"Max": allotment, "Remaining": remaining},
            "DailyAsyncApexExecutions": {"Max": 250000, "Remaining": 250000},
            "DailyBulkApiBatches": {"Max": 15000, "Remaining": 15000},
            "DailyBulkV2QueryFileStorageMB": {"Max": 976562, "Remaining": 976562},
            "DailyBulkV2QueryJobs": {"Max": 10000, "Remaining": 10000},
            "DataStorageMB": {"Max": 1024, "Remaining": 1000},
            "FileStorageMB": {"Max": 1024, "Remaining": 1024},
        }),
    )
}

fn describe(sh: &Shared, obj: &str) -> Resp {
    let org = sh.org();
    match SObject::queryable_by_name(obj) {
        Some(o) if org.is_object_accessible(o) => {
            http::json(StatusCode::OK, &crate::json::describe(&org, o))
        }
        _ => http::not_found(),
    }
}

/// Rows (parents + inline children) a page may hold.
fn page_budget(cfg: &SimConfig, batch: Option<u32>, salt: u64) -> usize {
    let mut b = batch.unwrap_or(2000).clamp(200, 2000) as usize;
    if let Some(cap) = cfg.page_size_cap {
        b = b.min(cap.max(1) as usize);
    }
    if cfg.random_short_pages {
        let mut r = Rng64::new(mix(&[cfg.seed, salt]));
        b = r.range((b / 4).max(1) as u64, b as u64) as usize;
    }
    b
}

fn fnv(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

fn prune(st: &mut crate::server::State, timeout: std::time::Duration) {
    st.top.retain(|c| c.last_used.elapsed() <= timeout);
    st.child.retain(|c| c.last_used.elapsed() <= timeout);
}

/// Fills a page from `rows[offset..]` within `budget`; registers child cursors for truncated
/// child lists. Returns the page and the offset after it.
#[allow(clippy::too_many_arguments)]
fn build_page(
    sh: &Shared,
    org: &Org,
    plan: &Arc<Plan>,
    rows: &[u32],
    offset: usize,
    budget: usize,
    cfg: &SimConfig,
    version: &str,
) -> (Vec<PageRow>, usize) {
    let mut page = Vec::new();
    let mut used = 0usize;
    let mut i = offset;
    let child_limit = cfg.child_inline_limit.max(1);
    while i < rows.len() {
        let idx = rows[i];
        let children = match (&plan.child, plan.object) {
            (Some(child_plan), SObject::Case) => {
                Some(eval::child_rows(org, child_plan, idx as usize))
            }
            _ => None,
        };
        let inline = children.as_ref().map_or(0, |c| c.len().min(child_limit));
        let cost = 1 + inline;
        if !page.is_empty() && used + cost > budget {
            break;
        }
        used += cost;
        let child = children.map(|all| {
            let total = all.len();
            if total > child_limit {
                let inline_rows = all[..child_limit].to_vec();
                let id = {
                    let mut st = sh.state();
                    let id = st.new_locator_id();
                    if st.child.len() >= MAX_CHILD_CURSORS {
                        st.child.pop_front();
                    }
                    st.child.push_back(ChildCursor {
                        id: id.clone(),
                        plan: plan.clone(),
                        rows: Arc::new(all),
                        last_used: Instant::now(),
                    });
                    id
                };
                ChildChunk {
                    total,
                    rows: inline_rows,
                    next_url: Some(format!("/services/data/{version}/query/{id}-{child_limit}")),
                }
            } else {
                ChildChunk {
                    total,
                    rows: all,
                    next_url: None,
                }
            }
        });
        page.push(PageRow { idx, child });
        i += 1;
    }
    (page, i)
}

fn serialize(sh: &Shared, value: &ListSer<'_>) -> Resp {
    match serde_json::to_vec(value) {
        Ok(v) => {
            sh.state().stats.page_bytes_served += v.len() as u64;
            http::body(StatusCode::OK, "application/json;charset=UTF-8", v)
        }
        Err(e) => sf_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "UNKNOWN_EXCEPTION",
            &format!("simulator failed to serialise: {e}"),
        ),
    }
}

fn new_query(
    sh: &Shared,
    soql: Option<&str>,
    all: bool,
    version: &str,
    batch: Option<u32>,
) -> Resp {
    let Some(soql) = soql.filter(|q| !q.trim().is_empty()) else {
        return sf_error(
            StatusCode::BAD_REQUEST,
            "MALFORMED_QUERY",
            "A query string has to be specified",
        );
    };
    let cfg = sh.cfg().clone();
    let org = sh.org();
    let plan = match soql::prepare(soql, &org) {
        Ok(p) => p,
        Err(e) => return sf_error(StatusCode::BAD_REQUEST, e.code, &e.message),
    };
    let rows = match soql::run(&org, &plan, Utc::now(), all, cfg.query_timeout_rows) {
        Ok(r) => r,
        Err(e) => return sf_error(StatusCode::BAD_REQUEST, e.code, &e.message),
    };
    if plan.count_only {
        return http::body(
            StatusCode::OK,
            "application/json;charset=UTF-8",
            format!(r#"{{"totalSize":{},"done":true,"records":[]}}"#, rows.len()),
        );
    }
    let plan = Arc::new(plan);
    let rows = Arc::new(rows);
    let salt = {
        let mut st = sh.state();
        st.page_seq += 1;
        st.page_seq
    };
    let budget = page_budget(&cfg, batch, mix(&[salt, fnv(soql)]));
    let (page, end) = build_page(sh, &org, &plan, &rows, 0, budget, &cfg, version);
    let next_url = if end < rows.len() {
        let mut st = sh.state();
        prune(&mut st, cfg.locator_idle_timeout);
        let id = st.new_locator_id();
        st.top.push_back(TopCursor {
            id: id.clone(),
            plan: plan.clone(),
            rows: rows.clone(),
            batch,
            last_used: Instant::now(),
        });
        while st.top.len() > cfg.max_open_locators.max(1) {
            st.top.pop_front();
        }
        Some(format!("/services/data/{version}/query/{id}-{end}"))
    } else {
        None
    };
    {
        let mut st = sh.state();
        st.stats.pages_served += 1;
        st.stats.records_served += page.len() as u64;
    }
    serialize(
        sh,
        &ListSer::page(&org, &plan, rows.len(), next_url.as_deref(), &page, version),
    )
}

enum Found {
    Top(Arc<Plan>, Arc<Vec<u32>>, Option<u32>),
    Child(Arc<Plan>, Arc<Vec<u32>>),
}

fn more(
    sh: &Shared,
    locator: &str,
    offset: Option<usize>,
    version: &str,
    batch: Option<u32>,
) -> Resp {
    let cfg = sh.cfg().clone();
    let found = {
        let mut st = sh.state();
        prune(&mut st, cfg.locator_idle_timeout);
        if let Some(c) = st.top.iter_mut().find(|c| c.id == locator) {
            c.last_used = Instant::now();
            Some(Found::Top(c.plan.clone(), c.rows.clone(), c.batch))
        } else if let Some(c) = st.child.iter_mut().find(|c| c.id == locator) {
            c.last_used = Instant::now();
            Some(Found::Child(c.plan.clone(), c.rows.clone()))
        } else {
            None
        }
    };
    let (Some(found), Some(offset)) = (found, offset) else {
        return invalid_locator();
    };
    match found {
        Found::Top(plan, rows, opened_batch) => {
            if offset > rows.len() {
                return invalid_locator();
            }
            let org = sh.org();
            let batch = batch.or(opened_batch);
            let budget = page_budget(&cfg, batch, mix(&[fnv(locator), offset as u64]));
            let (page, end) = build_page(sh, &org, &plan, &rows, offset, budget, &cfg, version);
            let next_url = (end < rows.len())
                .then(|| format!("/services/data/{version}/query/{locator}-{end}"));
            {
                let mut st = sh.state();
                st.stats.pages_served += 1;
                st.stats.records_served += page.len() as u64;
            }
            serialize(
                sh,
                &ListSer::page(&org, &plan, rows.len(), next_url.as_deref(), &page, version),
            )
        }
        Found::Child(plan, rows) => {
            let Some(child_plan) = plan.child.as_deref() else {
                return invalid_locator();
            };
            if offset > rows.len() {
                return invalid_locator();
            }
            let chunk = cfg.child_inline_limit.max(1);
            let end = (offset + chunk).min(rows.len());
            let next_url = (end < rows.len())
                .then(|| format!("/services/data/{version}/query/{locator}-{end}"));
            let org = sh.org();
            serialize(
                sh,
                &ListSer::children(
                    &org,
                    child_plan,
                    rows.len(),
                    next_url.as_deref(),
                    &rows[offset..end],
                    version,
                ),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        assert_eq!(
            parse_route("/services/data/v59.0/query", Some("q=SELECT+Id+FROM+Case")).1,
            Route::Query {
                soql: Some("SELECT Id FROM Case".into()),
                all: false
            }
        );
        assert_eq!(
            parse_route("/services/data/v59.0/query/", Some("q=a%2Bb+c")).1,
            Route::Query {
                soql: Some("a+b c".into()),
                all: false
            }
        );
        assert_eq!(
            parse_route("/services/data/v59.0/query/01gXX-200", None).1,
            Route::More {
                locator: "01gXX".into(),
                offset: Some(200)
            }
        );
        assert_eq!(
            parse_route("/services/data/v59.0/sobjects/Case/describe/", None).1,
            Route::Describe("Case".into())
        );
        assert_eq!(
            parse_route("/services/data/v99.0/limits", None).1,
            Route::Unknown
        );
        assert_eq!(
            parse_route("/services/data/v59.0/limits", None).1,
            Route::Limits
        );
    }

    #[test]
    fn batch_sizes_are_clamped_and_capped() {
        let cfg = SimConfig::default();
        assert_eq!(page_budget(&cfg, None, 0), 2000);
        assert_eq!(page_budget(&cfg, Some(50), 0), 200);
        assert_eq!(page_budget(&cfg, Some(5000), 0), 2000);
        assert_eq!(page_budget(&cfg, Some(500), 0), 500);
        let capped = SimConfig {
            page_size_cap: Some(7),
            ..SimConfig::default()
        };
        assert_eq!(page_budget(&capped, Some(200), 0), 7);
        let short = SimConfig {
            random_short_pages: true,
            ..SimConfig::default()
        };
        let sizes: Vec<usize> = (0..20).map(|s| page_budget(&short, Some(200), s)).collect();
        assert!(sizes.iter().all(|&s| (50..=200).contains(&s)));
        assert!(sizes.iter().any(|&s| s < 200));
    }
}
