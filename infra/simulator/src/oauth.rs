//! The login host: OAuth endpoints (`/services/oauth2/*`), the identity URL and the `/__sim/`
//! admin API. Data calls get 404 here.

use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use bytes::Bytes;
use hmac::{Hmac, Mac};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, LOCATION};
use hyper::{Method, Request, StatusCode};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::config::{AuthorizeMode, FaultRule, FaultTarget};
use crate::http::{self, Reset, Resp, form, oauth_error, param, pct};
use crate::server::{AuthCode, RefreshState, Shared, fault_response, random_alnum};

const CODE_TTL: Duration = Duration::from_secs(15 * 60);
const MAX_BODY: usize = 1024 * 1024;

const KNOWN_SCOPES: &[&str] = &[
    "api",
    "refresh_token",
    "offline_access",
    "id",
    "web",
    "full",
    "openid",
    "profile",
    "email",
    "address",
    "phone",
    "lightning",
    "visualforce",
    "chatter_api",
    "custom_permissions",
];

async fn read_body(req: Request<Incoming>) -> Option<Bytes> {
    let limited = http_body_util::Limited::new(req.into_body(), MAX_BODY);
    limited.collect().await.ok().map(|c| c.to_bytes())
}

pub(crate) async fn handle(sh: Arc<Shared>, req: Request<Incoming>) -> Result<Resp, Reset> {
    if let Some(r) = http::size_guard(&req) {
        return Ok(r);
    }
    let path = req.uri().path().to_string();
    let method = req.method().clone();
    tracing::debug!(%method, %path, "login host request");
    match path.as_str() {
        "/services/oauth2/authorize" => Ok(authorize(&sh, &req)),
        "/services/oauth2/token" => token(sh, req).await,
        "/services/oauth2/revoke" => revoke(sh, req).await,
        p if p.starts_with("/id/") => Ok(identity(&sh, &req)),
        p if p.starts_with("/__sim/") => Ok(admin(sh, req).await),
        _ => Ok(http::not_found()),
    }
}

fn error_page(error: &str, description: &str) -> Resp {
    http::html(
        StatusCode::BAD_REQUEST,
        format!(
            "<html><head><title>Remote Access Error</title></head><body><h2>Remote Access Error</h2>\
             <p>error={error}&amp;error_description={}</p></body></html>",
            description.replace('&', "&amp;").replace('<', "&lt;")
        ),
    )
}

fn redirect(location: &str) -> Resp {
    let mut r = http::body(StatusCode::FOUND, "", "");
    match HeaderValue::from_str(location) {
        Ok(v) => {
            r.headers_mut().insert(LOCATION, v);
            r
        }
        Err(_) => error_page(
            "redirect_uri_mismatch",
            "redirect_uri must match configuration",
        ),
    }
}

fn with_params(redirect_uri: &str, params: &[(&str, &str)]) -> String {
    let mut out = redirect_uri.to_string();
    let mut sep = if redirect_uri.contains('?') { '&' } else { '?' };
    for (k, v) in params {
        out.push(sep);
        out.push_str(k);
        out.push('=');
        out.push_str(&pct(v));
        sep = '&';
    }
    out
}

fn is_loopback_http(uri: &str) -> bool {
    match url::Url::parse(uri) {
        Ok(u) => {
            u.scheme() == "http"
                && matches!(
                    u.host_str(),
                    Some("127.0.0.1") | Some("localhost") | Some("[::1]")
                )
        }
        Err(_) => false,
    }
}

fn authorize(sh: &Shared, req: &Request<Incoming>) -> Resp {
    let params = form(req.uri().query().unwrap_or("").as_bytes());
    sh.state().stats.authorizes += 1;
    let cfg = sh.cfg().clone();
    if param(&params, "client_id") != Some(cfg.client_id.as_str()) {
        return error_page("invalid_client_id", "client identifier invalid");
    }
    let Some(redirect_uri) = param(&params, "redirect_uri").filter(|r| !r.is_empty()) else {
        return error_page("redirect_uri_missing", "redirect_uri must be provided");
    };
    let allowed = match &cfg.allowed_redirect_uris {
        Some(list) => list.iter().any(|u| u == redirect_uri),
        None => is_loopback_http(redirect_uri),
    };
    if !allowed {
        return error_page(
            "redirect_uri_mismatch",
            "redirect_uri must match configuration",
        );
    }
    let state = param(&params, "state");
    let fail = |error: &str, description: &str| {
        let mut p = vec![("error", error), ("error_description", description)];
        if let Some(s) = state {
            p.push(("state", s));
        }
        redirect(&with_params(redirect_uri, &p))
    };
    if param(&params, "response_type") != Some("code") {
        return fail("unsupported_response_type", "response type not supported");
    }
    let scope = param(&params, "scope")
        .map(|s| s.split_whitespace().collect::<Vec<_>>().join(" "))
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| cfg.default_scope.clone());
    if scope.split(' ').any(|s| !KNOWN_SCOPES.contains(&s)) {
        return fail(
            "invalid_scope",
            "the requested scope is invalid, unknown, or malformed",
        );
    }
    let challenge = param(&params, "code_challenge").map(str::to_string);
    if let Some(m) = param(&params, "code_challenge_method")
        && m != "S256"
    {
        return fail("invalid_request", "unsupported code_challenge_method");
    }
    match cfg.authorize_mode {
        AuthorizeMode::Deny => fail("access_denied", "end-user denied authorization"),
        AuthorizeMode::AppNotInstalled => fail(
            "OAUTH_APPROVAL_ERROR_GENERIC",
            "An unexpected error has occured during authentication. Please try again.",
        ),
        AuthorizeMode::AutoApprove => {
            let code = format!("aPrx{}==", random_alnum(56));
            sh.state().codes.insert(
                code.clone(),
                AuthCode {
                    client_id: cfg.client_id.clone(),
                    redirect_uri: redirect_uri.to_string(),
                    scope,
                    code_challenge: challenge,
                    issued: Instant::now(),
                },
            );
            let mut p = vec![("code", code.as_str())];
            if let Some(s) = state {
                p.push(("state", s));
            }
            redirect(&with_params(redirect_uri, &p))
        }
    }
}

#[derive(Serialize)]
struct TokenResponse {
    access_token: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    refresh_token: Option<String>,
    signature: String,
    scope: String,
    instance_url: String,
    id: String,
    token_type: &'static str,
    issued_at: String,
}

fn success(sh: &Shared, access: String, refresh: Option<String>, scope: String) -> Resp {
    let (org_id, user_id) = {
        let org = sh.org();
        (org.org_id, org.api_user_id)
    };
    let id = format!("{}/id/{org_id}/{user_id}", sh.login_url);
    let issued_at = chrono::Utc::now().timestamp_millis().to_string();
    let secret = sh.cfg().client_secret.clone();
    let signature = match Hmac::<Sha256>::new_from_slice(secret.as_bytes()) {
        Ok(mut mac) => {
            mac.update(id.as_bytes());
            mac.update(issued_at.as_bytes());
            base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
        }
        Err(_) => String::new(),
    };
    http::json(
        StatusCode::OK,
        &TokenResponse {
            access_token: access,
            refresh_token: refresh,
            signature,
            scope,
            instance_url: sh.instance_url.clone(),
            id,
            token_type: "Bearer",
            issued_at,
        },
    )
}

/// Delay faults wait here; other faults replace the response. Body-corrupting faults do not
/// apply to OAuth endpoints (they answer normally).
async fn apply_fault(fault: Option<crate::config::FaultKind>) -> Option<Result<Resp, Reset>> {
    let kind = fault?;
    if let crate::config::FaultKind::Delay(d) = kind {
        tokio::time::sleep(d).await;
        return None;
    }
    fault_response(kind)
}

fn grants_refresh(scope: &str) -> bool {
    scope
        .split(' ')
        .any(|s| s == "refresh_token" || s == "offline_access")
}

async fn token(sh: Arc<Shared>, req: Request<Incoming>) -> Result<Resp, Reset> {
    let is_post = req.method() == Method::POST;
    let body = if is_post { read_body(req).await } else { None };
    let params = body.map(|b| form(&b)).unwrap_or_default();
    let grant_type = param(&params, "grant_type").map(str::to_string);
    let fault = {
        let mut st = sh.state();
        match grant_type.as_deref() {
            Some("authorization_code") if is_post => st.stats.token_code += 1,
            Some("refresh_token") if is_post => st.stats.token_refresh += 1,
            _ => st.stats.token_other += 1,
        }
        st.take_fault(&[FaultTarget::Token])
    };
    if let Some(r) = apply_fault(fault).await {
        return r;
    }
    let resp = token_logic(&sh, is_post, grant_type, &params);
    Ok(match fault {
        Some(
            k @ (crate::config::FaultKind::MalformedJson | crate::config::FaultKind::TruncatedJson),
        ) => crate::server::corrupt_body(k, resp).await,
        _ => resp,
    })
}

fn token_logic(
    sh: &Shared,
    is_post: bool,
    grant_type: Option<String>,
    params: &[(String, String)],
) -> Resp {
    if !is_post {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "must use HTTP POST",
        );
    }
    let cfg = sh.cfg().clone();
    let Some(grant_type) = grant_type else {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "grant type is missing",
        );
    };
    if grant_type != "authorization_code" && grant_type != "refresh_token" {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            "grant type not supported",
        );
    }
    if param(params, "client_id") != Some(cfg.client_id.as_str()) {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_client_id",
            "client identifier invalid",
        );
    }
    if param(params, "client_secret") != Some(cfg.client_secret.as_str()) {
        return oauth_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "invalid client credentials",
        );
    }
    if grant_type == "authorization_code" {
        code_grant(sh, params)
    } else {
        refresh_grant(sh, params, cfg.rotate_refresh_tokens)
    }
}

fn code_grant(sh: &Shared, params: &[(String, String)]) -> Resp {
    let invalid_code = || {
        oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_grant",
            "expired authorization code",
        )
    };
    let Some(code) = param(params, "code") else {
        return invalid_code();
    };
    let mut st = sh.state();
    // Single use: any redemption attempt consumes the code.
    let Some(entry) = st.codes.remove(code) else {
        return invalid_code();
    };
    if entry.issued.elapsed() > CODE_TTL || param(params, "client_id") != Some(&entry.client_id) {
        return invalid_code();
    }
    if param(params, "redirect_uri") != Some(entry.redirect_uri.as_str()) {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "redirect_uri_mismatch",
            "redirect_uri must match configuration",
        );
    }
    let verifier = param(params, "code_verifier");
    match (&entry.code_challenge, verifier) {
        (Some(_), None) => {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "invalid_grant",
                "code_verifier is required",
            );
        }
        (Some(challenge), Some(v)) => {
            let computed = base64::engine::general_purpose::URL_SAFE_NO_PAD
                .encode(Sha256::digest(v.as_bytes()));
            if &computed != challenge {
                return oauth_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_request",
                    "invalid code verifier",
                );
            }
        }
        (None, Some(_)) => {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "code_verifier given but the authorization request had no code_challenge",
            );
        }
        (None, None) => {}
    }
    let scope = entry.scope.clone();
    let (grant, refresh) = sh.new_grant(&mut st, &scope);
    let access = sh.new_access_token(&mut st, grant);
    let refresh = if grants_refresh(&scope) {
        Some(refresh)
    } else {
        // No refresh_token scope: the grant has no usable refresh token.
        if let Some(r) = st.refresh.get_mut(&refresh) {
            r.state = RefreshState::Revoked;
        }
        None
    };
    drop(st);
    success(sh, access, refresh, scope)
}

fn refresh_grant(sh: &Shared, params: &[(String, String)], rotate: bool) -> Resp {
    let expired = || {
        oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_grant",
            "expired access/refresh token",
        )
    };
    let Some(token) = param(params, "refresh_token") else {
        return expired();
    };
    let mut st = sh.state();
    let Some((grant, state)) = st.refresh.get(token).map(|r| (r.grant, r.state)) else {
        return expired();
    };
    match state {
        RefreshState::Revoked => return expired(),
        RefreshState::RotatedOut => {
            // Reuse detection: revoke the whole token family.
            st.revoke_grant(grant);
            return expired();
        }
        RefreshState::Active => {}
    }
    if st.grants.get(grant).is_none_or(|g| g.revoked) {
        return expired();
    }
    let scope = st.grants[grant].scope.clone();
    let access = sh.new_access_token(&mut st, grant);
    let new_refresh = if rotate {
        if let Some(r) = st.refresh.get_mut(token) {
            r.state = RefreshState::RotatedOut;
        }
        let t = crate::server::random_token("5Aep861", 80);
        st.refresh.insert(
            t.clone(),
            crate::server::RefreshEntry {
                grant,
                state: RefreshState::Active,
            },
        );
        Some(t)
    } else {
        None
    };
    drop(st);
    success(sh, access, new_refresh, scope)
}

async fn revoke(sh: Arc<Shared>, req: Request<Incoming>) -> Result<Resp, Reset> {
    let query = form(req.uri().query().unwrap_or("").as_bytes());
    let token = if req.method() == Method::POST {
        let body = read_body(req).await.unwrap_or_default();
        param(&form(&body), "token")
            .map(str::to_string)
            .or_else(|| param(&query, "token").map(str::to_string))
    } else {
        param(&query, "token").map(str::to_string)
    };
    let fault = {
        let mut st = sh.state();
        st.stats.revokes += 1;
        st.take_fault(&[FaultTarget::Revoke])
    };
    if let Some(r) = apply_fault(fault).await {
        return r;
    }
    let Some(token) = token.filter(|t| !t.is_empty()) else {
        return Ok(oauth_error(
            StatusCode::BAD_REQUEST,
            "unsupported_token_type",
            "this token type is not supported",
        ));
    };
    let mut st = sh.state();
    if st.refresh_active(&token) {
        let grant = st.refresh[&token].grant;
        st.revoke_grant(grant);
        return Ok(http::body(StatusCode::OK, "", ""));
    }
    if st.access_active(&token) {
        if let Some(a) = st.access.get_mut(&token) {
            a.active = false;
        }
        return Ok(http::body(StatusCode::OK, "", ""));
    }
    Ok(oauth_error(
        StatusCode::BAD_REQUEST,
        "invalid_token",
        "invalid token",
    ))
}

fn identity(sh: &Shared, req: &Request<Incoming>) -> Resp {
    let token = crate::rest::bearer(req.headers());
    let active = token.is_some_and(|t| sh.state().access_active(t));
    if !active {
        return http::body(StatusCode::FORBIDDEN, "text/plain", "Bad_OAuth_Token");
    }
    let org = sh.org();
    let user = org
        .user_by_id(&org.api_user_id)
        .map(|u| u.name.clone())
        .unwrap_or_default();
    http::json(
        StatusCode::OK,
        &serde_json::json!({
            "id": format!("{}/id/{}/{}", sh.login_url, org.org_id, org.api_user_id),
            "user_id": org.api_user_id,
            "organization_id": org.org_id,
            "username": "integration@casesync-sim.example",
            "display_name": user,
            "active": true,
            "user_type": "STANDARD",
            "urls": {
                "rest": format!("{}/services/data/v{{version}}/", sh.instance_url),
                "query": format!("{}/services/data/v{{version}}/query/", sh.instance_url),
            }
        }),
    )
}

#[derive(serde::Deserialize)]
struct LatencyBody {
    ms: u64,
}

async fn admin(sh: Arc<Shared>, req: Request<Incoming>) -> Resp {
    let path = req.uri().path().to_string();
    let method = req.method().clone();
    let body = read_body(req).await.unwrap_or_default();
    let ok = || http::json(StatusCode::OK, &serde_json::json!({"ok": true}));
    match (method, path.as_str()) {
        (Method::GET, "/__sim/stats") => {
            let (stats, used) = {
                let st = sh.state();
                (st.snapshot(), st.api_used)
            };
            let mut v = serde_json::to_value(stats).unwrap_or_default();
            if let Some(m) = v.as_object_mut() {
                m.insert("api_usage".into(), used.into());
                m.insert("api_allotment".into(), sh.cfg().api_allotment.into());
            }
            http::json(StatusCode::OK, &v)
        }
        (Method::POST, "/__sim/faults") => match serde_json::from_slice::<FaultRule>(&body) {
            Ok(rule) => {
                sh.inject(rule);
                ok()
            }
            Err(e) => http::json(
                StatusCode::BAD_REQUEST,
                &serde_json::json!({"error": format!("invalid FaultRule: {e}")}),
            ),
        },
        (Method::POST, "/__sim/faults/clear") => {
            sh.clear_faults();
            ok()
        }
        (Method::POST, "/__sim/reset") => {
            let mut st = sh.state();
            st.stats = Default::default();
            st.soql.clear();
            ok()
        }
        (Method::POST, "/__sim/latency") => match serde_json::from_slice::<LatencyBody>(&body) {
            Ok(l) => {
                sh.cfg_mut().latency = Duration::from_millis(l.ms);
                ok()
            }
            Err(e) => http::json(
                StatusCode::BAD_REQUEST,
                &serde_json::json!({"error": format!("expected {{\"ms\": N}}: {e}")}),
            ),
        },
        (Method::POST, "/__sim/expire-access-tokens") => {
            for a in sh.state().access.values_mut() {
                a.active = false;
            }
            ok()
        }
        (Method::POST, "/__sim/mint-refresh-token") => {
            let token = crate::mint_refresh_token(&sh);
            http::json(StatusCode::OK, &serde_json::json!({"refresh_token": token}))
        }
        _ => http::not_found(),
    }
}
