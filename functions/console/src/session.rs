//! The console's session on AWS: cookies, the gate in front of every console page, and the
//! sign-in, new-password and sign-out pages.
//!
//! * `__Host-casesync-session` holds the Cognito access token (an hour), `__Host-casesync-renew`
//!   the refresh token, `__Host-casesync-challenge` the first sign-in's challenge (three
//!   minutes): all `HttpOnly; Secure; SameSite=Lax; Path=/` (`__Host-`: set by this host
//!   only, over HTTPS). Lax, not Strict: the browser comes back from Salesforce's consent
//!   page through a cross-site redirect and must still be signed in.
//! * Every console page needs a valid access token. An expired one is renewed with the refresh
//!   token when there is one; otherwise a page request goes to sign-in (and comes back after),
//!   and anything else gets 401.
//! * Sign-out signs the user out of Cognito everywhere (the refresh token stops working) and
//!   clears the cookies.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use casesync_console::views::page;
use casesync_console::{Session, is_same_origin};
use hmac::{Hmac, Mac};
use maud::{Markup, html};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use sha2::Sha256;

use crate::auth::{AuthError, Claims, SignIn, Tokens, UserPool, Verified};

pub const SESSION_COOKIE: &str = "__Host-casesync-session";
pub const RENEW_COOKIE: &str = "__Host-casesync-renew";
pub const CHALLENGE_COOKIE: &str = "__Host-casesync-challenge";
/// The refresh token's lifetime, as the template's app client sets it (`RefreshTokenValidity`).
pub const RENEW_MAX_AGE: i64 = 12 * 3600;
/// Cognito's challenge sessions last three minutes.
const CHALLENGE_MAX_AGE: i64 = 180;

/// What the gate and the sign-in pages share.
pub struct Gate {
    pub pool: Arc<UserPool>,
    /// Where the console is mounted (`/console`).
    pub base: String,
    /// Keys the CSRF tokens (derived from a stack secret; never leaves the function).
    pub csrf_key: Vec<u8>,
}

impl Gate {
    fn csrf_for(&self, claims: &Claims) -> String {
        let mut mac = match Hmac::<Sha256>::new_from_slice(&self.csrf_key) {
            Ok(m) => m,
            Err(_) => return String::new(),
        };
        mac.update(b"console-csrf\0");
        mac.update(claims.sub.as_bytes());
        mac.update(b"\0");
        // The same across refreshes of one sign-in; a new sign-in gets a new token.
        mac.update(claims.origin_jti.as_deref().unwrap_or("").as_bytes());
        hex::encode(mac.finalize().into_bytes())
    }

    fn session(&self, claims: &Claims) -> Session {
        Session {
            user: claims.username.clone(),
            csrf: self.csrf_for(claims),
            can_sign_out: true,
        }
    }

    fn sign_in_path(&self) -> String {
        format!("{}/sign-in", self.base)
    }

    /// Where to go after signing in: a console path, nothing else (no open redirect).
    fn safe_next(&self, next: Option<&str>) -> String {
        let fallback = format!("{}/sources", self.base);
        match next {
            Some(n)
                if n.starts_with(&format!("{}/", self.base))
                    && !n.starts_with("//")
                    && !n.contains("\\")
                    && !n.contains("/sign-") =>
            {
                n.to_owned()
            }
            _ => fallback,
        }
    }
}

/// One cookie header value.
fn cookie(name: &str, value: &str, max_age: i64) -> Option<HeaderValue> {
    HeaderValue::from_str(&format!(
        "{name}={value}; Path=/; Max-Age={max_age}; HttpOnly; Secure; SameSite=Lax"
    ))
    .ok()
}

fn clear(name: &str) -> Option<HeaderValue> {
    cookie(name, "", 0)
}

/// A cookie's value from the request.
pub fn read_cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, v)| *k == name && !v.is_empty())
        .map(|(_, v)| v.to_owned())
}

fn set_tokens(headers: &mut HeaderMap, tokens: &Tokens) {
    if let Some(v) = cookie(
        SESSION_COOKIE,
        tokens.access.expose_secret(),
        tokens.expires_in,
    ) {
        headers.append(header::SET_COOKIE, v);
    }
    if let Some(refresh) = &tokens.refresh
        && let Some(v) = cookie(RENEW_COOKIE, refresh.expose_secret(), RENEW_MAX_AGE)
    {
        headers.append(header::SET_COOKIE, v);
    }
}

fn clear_all(headers: &mut HeaderMap) {
    for name in [SESSION_COOKIE, RENEW_COOKIE, CHALLENGE_COOKIE] {
        if let Some(v) = clear(name) {
            headers.append(header::SET_COOKIE, v);
        }
    }
}

/// The gate as an axum middleware: admits a request with a valid (or renewable) session and
/// puts its [`Session`] in the request's extensions.
pub async fn gate(State(g): State<Arc<Gate>>, mut req: Request, next: Next) -> Response {
    let headers = req.headers();
    let mut renewed: Option<Tokens> = None;
    let mut claims = match read_cookie(headers, SESSION_COOKIE) {
        Some(token) => match g.pool.verify(&token).await {
            Verified::Valid(c) => Some(c),
            Verified::Expired | Verified::Invalid => None,
        },
        None => None,
    };
    let mut ended = false;
    if claims.is_none()
        && let Some(refresh) = read_cookie(headers, RENEW_COOKIE)
    {
        match g.pool.refresh(&SecretString::from(refresh)).await {
            Ok(tokens) => {
                if let Verified::Valid(c) = g.pool.verify(tokens.access.expose_secret()).await {
                    claims = Some(c);
                    renewed = Some(tokens);
                }
            }
            Err(AuthError::SessionEnded) => ended = true,
            Err(e) => tracing::warn!(error = %e, "console: could not renew a session"),
        }
    }
    let Some(claims) = claims else {
        return refuse(&g, &req, ended);
    };
    req.extensions_mut().insert(g.session(&claims));
    let mut response = next.run(req).await;
    if let Some(tokens) = renewed {
        set_tokens(response.headers_mut(), &tokens);
    }
    response
}

/// No session: a page goes to sign-in and comes back; anything else is told 401.
fn refuse(g: &Gate, req: &Request, ended: bool) -> Response {
    let page_request = req.method() == Method::GET
        && !req.uri().path().ends_with("/progress")
        && !req.uri().path().contains("/assets/");
    let mut response = if page_request {
        let here = req.uri().path_and_query().map(|p| p.as_str()).unwrap_or("");
        let next: String = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("next", here)
            .append_pair("reason", if ended { "ended" } else { "required" })
            .finish();
        Redirect::to(&format!("{}?{next}", g.sign_in_path())).into_response()
    } else {
        (
            StatusCode::UNAUTHORIZED,
            casesync_console::views::error_page(
                &g.base,
                "Sign in",
                "Your session ended: sign in again.",
            ),
        )
            .into_response()
    };
    // Whatever was there is no good: drop it.
    if read_cookie(req.headers(), SESSION_COOKIE).is_some() || ended {
        clear_all(response.headers_mut());
    }
    response
}

#[derive(Deserialize, Default)]
pub struct SignInQuery {
    next: Option<String>,
    reason: Option<String>,
}

fn sign_in_page(g: &Gate, next: &str, notice: Option<&str>, error: Option<&str>) -> Markup {
    let base = &g.base;
    page(
        base,
        "Sign in",
        None,
        html! {
            section.narrow {
                h1 { "Sign in to casesync" }
                @if let Some(n) = notice { p role="status" { (n) } }
                @if let Some(e) = error { p.error role="alert" { (e) } }
                form.stack method="post" action={ (base) "/sign-in" } {
                    input type="hidden" name="next" value=(next);
                    div {
                        label for="username" { "Username" }
                        input id="username" type="text" name="username" required autocomplete="username" autofocus;
                    }
                    div {
                        label for="password" { "Password" }
                        input id="password" type="password" name="password" required autocomplete="current-password";
                    }
                    div { button type="submit" { "Sign in" } }
                }
                p.muted { "Your administrator adds users; there is no sign-up." }
            }
        },
    )
}

fn new_password_page(g: &Gate, username: &str, next: &str, error: Option<&str>) -> Markup {
    let base = &g.base;
    page(
        base,
        "Choose a new password",
        None,
        html! {
            section.narrow {
                h1 { "Choose a new password" }
                p { "This is your first sign-in: replace the temporary password." }
                @if let Some(e) = error { p.error role="alert" { (e) } }
                form.stack method="post" action={ (base) "/new-password" } {
                    input type="hidden" name="username" value=(username);
                    input type="hidden" name="next" value=(next);
                    div {
                        label for="new-password" { "New password" }
                        input id="new-password" type="password" name="new_password" required autocomplete="new-password";
                    }
                    div {
                        label for="confirm-password" { "Confirm new password" }
                        input id="confirm-password" type="password" name="confirm_password" required autocomplete="new-password";
                    }
                    div { button type="submit" { "Set password and sign in" } }
                }
            }
        },
    )
}

fn fields(body: &Bytes) -> Vec<(String, String)> {
    url::form_urlencoded::parse(body)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

fn field<'a>(fields: &'a [(String, String)], name: &str) -> &'a str {
    fields
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
        .unwrap_or("")
}

fn cross_site(g: &Gate) -> Response {
    (
        StatusCode::FORBIDDEN,
        casesync_console::views::error_page(
            &g.base,
            "Refused",
            "This request came from another site, so the console did not act on it.",
        ),
    )
        .into_response()
}

async fn show_sign_in(State(g): State<Arc<Gate>>, Query(q): Query<SignInQuery>) -> Response {
    let notice = match q.reason.as_deref() {
        Some("ended") => Some("Your session ended: sign in again."),
        Some("signed-out") => Some("You are signed out."),
        _ => None,
    };
    let next = g.safe_next(q.next.as_deref());
    sign_in_page(&g, &next, notice, None).into_response()
}

/// After signing in: the cookies, and on to where the user was going.
fn signed_in(g: &Gate, tokens: &Tokens, next: &str) -> Response {
    let mut response = Redirect::to(&g.safe_next(Some(next))).into_response();
    set_tokens(response.headers_mut(), tokens);
    if let Some(v) = clear(CHALLENGE_COOKIE) {
        response.headers_mut().append(header::SET_COOKIE, v);
    }
    response
}

fn auth_failed(e: &AuthError) -> StatusCode {
    match e {
        AuthError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        AuthError::TooManyAttempts => StatusCode::TOO_MANY_REQUESTS,
        _ => StatusCode::UNAUTHORIZED,
    }
}

async fn sign_in(State(g): State<Arc<Gate>>, headers: HeaderMap, body: Bytes) -> Response {
    if !is_same_origin(&headers) {
        return cross_site(&g);
    }
    let f = fields(&body);
    let (username, password) = (field(&f, "username").trim(), field(&f, "password"));
    let next = g.safe_next(Some(field(&f, "next")));
    if username.is_empty() || password.is_empty() {
        let page = sign_in_page(&g, &next, None, Some("Enter your username and password."));
        return (StatusCode::BAD_REQUEST, page).into_response();
    }
    match g.pool.sign_in(username, password).await {
        Ok(SignIn::Done(tokens)) => {
            tracing::info!(user = username, "console: signed in");
            signed_in(&g, &tokens, &next)
        }
        Ok(SignIn::NewPasswordRequired { session }) => {
            let mut response = new_password_page(&g, username, &next, None).into_response();
            if let Some(v) = cookie(CHALLENGE_COOKIE, session.expose_secret(), CHALLENGE_MAX_AGE) {
                response.headers_mut().append(header::SET_COOKIE, v);
            }
            response
        }
        Err(e) => {
            tracing::warn!(user = username, error = %e, "console: sign-in refused");
            let page = sign_in_page(&g, &next, None, Some(&e.to_string()));
            (auth_failed(&e), page).into_response()
        }
    }
}

async fn new_password(State(g): State<Arc<Gate>>, headers: HeaderMap, body: Bytes) -> Response {
    if !is_same_origin(&headers) {
        return cross_site(&g);
    }
    let f = fields(&body);
    let username = field(&f, "username").trim();
    let next = g.safe_next(Some(field(&f, "next")));
    let (new, confirm) = (field(&f, "new_password"), field(&f, "confirm_password"));
    let Some(challenge) = read_cookie(&headers, CHALLENGE_COOKIE) else {
        let page = sign_in_page(
            &g,
            &next,
            None,
            Some(&AuthError::ChallengeExpired.to_string()),
        );
        return (StatusCode::UNAUTHORIZED, page).into_response();
    };
    if new.is_empty() || new != confirm {
        let page = new_password_page(&g, username, &next, Some("The two passwords differ."));
        return (StatusCode::BAD_REQUEST, page).into_response();
    }
    match g
        .pool
        .choose_password(username, new, &SecretString::from(challenge))
        .await
    {
        Ok(tokens) => {
            tracing::info!(user = username, "console: new password set, signed in");
            signed_in(&g, &tokens, &next)
        }
        Err(e @ AuthError::InvalidPassword(_)) => {
            let page = new_password_page(&g, username, &next, Some(&e.to_string()));
            (StatusCode::BAD_REQUEST, page).into_response()
        }
        Err(e) => {
            let page = sign_in_page(&g, &next, None, Some(&e.to_string()));
            (auth_failed(&e), page).into_response()
        }
    }
}

/// `POST /sign-out` (behind the gate): out of Cognito everywhere, cookies cleared.
pub async fn sign_out(
    State(g): State<Arc<Gate>>,
    axum::Extension(session): axum::Extension<Session>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let f = fields(&body);
    if !casesync_console::csrf_ok(&session, field(&f, "csrf")) {
        return cross_site(&g);
    }
    if let Some(access) = read_cookie(&headers, SESSION_COOKIE)
        && let Err(e) = g.pool.sign_out(&SecretString::from(access)).await
    {
        tracing::warn!(error = %e, "console: Cognito sign-out failed; cookies cleared anyway");
    }
    tracing::info!(user = session.user, "console: signed out");
    let mut response =
        Redirect::to(&format!("{}?reason=signed-out", g.sign_in_path())).into_response();
    clear_all(response.headers_mut());
    response
}

/// The routes anyone may reach: sign-in and the first sign-in's new password.
pub fn public_routes(gate: Arc<Gate>) -> Router {
    let base = gate.base.clone();
    Router::new()
        .route(&format!("{base}/sign-in"), get(show_sign_in).post(sign_in))
        .route(&format!("{base}/new-password"), post(new_password))
        .with_state(gate)
}
