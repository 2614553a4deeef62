//! The casesync console: connect a Salesforce org, pick its queues and backfill, watch the
//! import, browse the Channel, disconnect or delete, in a browser.
//!
//! One [`axum::Router`] of server-rendered pages over the core's use cases
//! ([`casesync_core::manage::Manager`], [`casesync_core::channel`]), served two ways: by
//! `casesync ui` on loopback, and by the `console` Lambda through `lambda_http`. What differs
//! between the two is who may come in: each runtime puts its *gate* in front of the router (a
//! middleware that admits a request with a [`Session`] in its extensions, or answers it), and
//! adds its own routes (sign-in on AWS). The pages never see a token.
//!
//! Security, for text written by strangers (Case subjects, descriptions, email bodies):
//! * every value is rendered by maud, which escapes it: inert text, never markup;
//! * links are built only from `http(s)` URLs ([`views::safe_link`]);
//! * a Content-Security-Policy without `unsafe-inline` (one script file, one style sheet);
//! * every state-changing request is a `POST` carrying the session's CSRF token, and is refused
//!   when the browser says it comes from another site (`Sec-Fetch-Site`, `Origin`).

mod assets;
mod chart;
pub mod local;
mod pages;
pub mod views;

use std::sync::Arc;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use casesync_core::domain::{ConnectionId, LoginUrl};
use casesync_core::manage::Manager;
use casesync_core::ports::ChangeFeed;

pub use views::Flash;

/// Who is using the console, as the gate admitted them. Inserted in the request's extensions.
#[derive(Debug, Clone)]
pub struct Session {
    /// Shown in the header ("you", locally).
    pub user: String,
    /// What every form must carry back: bound to this session, unknown to other sites.
    pub csrf: String,
    /// A sign-out form is shown (AWS).
    pub can_sign_out: bool,
}

/// What the pages need, built once by the runtime.
pub struct Console {
    /// The connection use cases.
    pub manager: Manager,
    /// The channels' data points.
    pub feed: Arc<dyn ChangeFeed>,
    /// Where the console is mounted: `""` locally, `/console` behind the HTTP API.
    pub base: String,
    /// The OAuth redirect URI Salesforce sends the browser back to.
    pub redirect_uri: RedirectUri,
    /// Login hosts offered on the Connect page besides Production and Sandbox: the simulator
    /// of `casesync ui --demo`, pre-filled as the custom domain.
    pub suggested_login: Option<LoginUrl>,
    /// Signs the Channel page's "older" positions.
    pub cursor_key: Arc<casesync_core::channel::CursorKey>,
    /// Told when a connection starts importing (locally: the background worker syncs it now
    /// rather than at its next tick).
    pub on_import: Option<Arc<dyn Fn(ConnectionId) + Send + Sync>>,
}

/// Where Salesforce sends the browser back after the user approved casesync.
#[derive(Debug, Clone)]
pub enum RedirectUri {
    /// This address (`http://127.0.0.1:PORT/callback` locally, a custom domain's on AWS).
    Fixed(String),
    /// `https://<the request's Host><path>`: the OAuth callback route of the API the console is
    /// served by, which the stack cannot name without a circular reference.
    OnRequestHost { path: &'static str },
}

impl RedirectUri {
    /// The URI for a request with these headers.
    pub fn for_request(&self, headers: &HeaderMap) -> Option<String> {
        match self {
            Self::Fixed(uri) => Some(uri.clone()),
            Self::OnRequestHost { path } => {
                let host = headers.get(header::HOST)?.to_str().ok()?;
                // A host name (and port), nothing else: the value becomes part of a URL.
                let valid = !host.is_empty()
                    && host
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':'));
                valid.then(|| format!("https://{host}{path}"))
            }
        }
    }
}

impl Console {
    /// A path under the console's base.
    pub fn path(&self, rest: &str) -> String {
        format!("{}{rest}", self.base)
    }
}

/// The console's pages and assets. The runtime adds its gate in front (which must insert a
/// [`Session`]) and its own routes, then [`secure`]s the whole.
pub fn router(console: Arc<Console>) -> Router {
    let base = console.base.clone();
    pages(console).merge(assets(&base))
}

/// The pages alone (a gate that lets the sign-in page use the style sheet puts [`assets`]
/// outside itself).
pub fn pages(console: Arc<Console>) -> Router {
    let pages = Router::new()
        .route("/", get(pages::root))
        .route("/sources", get(pages::sources::list))
        .route("/sources/progress", get(pages::sources::progress))
        .route(
            "/connect",
            get(pages::connect::show).post(pages::connect::start),
        )
        .route("/callback", get(pages::connect::callback))
        .route(
            "/sources/{id}/configure",
            get(pages::connect::configure_form).post(pages::connect::configure),
        )
        .route(
            "/sources/{id}/settings",
            get(pages::sources::settings_form).post(pages::sources::settings),
        )
        .route("/sources/{id}/diagnose", get(pages::sources::diagnose))
        .route(
            "/sources/{id}/disconnect",
            get(pages::sources::disconnect_confirm).post(pages::sources::disconnect),
        )
        .route(
            "/sources/{id}/delete",
            get(pages::sources::delete_confirm).post(pages::sources::delete),
        )
        .route(
            "/sources/{id}/reauthorize",
            post(pages::sources::reauthorize),
        )
        .route("/channels/{name}", get(pages::channel::list))
        .route("/channels/{name}/points/{id}", get(pages::channel::point))
        .layer(middleware::from_fn(same_origin_writes))
        .with_state(console.clone());
    if console.base.is_empty() {
        pages
    } else {
        Router::new().nest(&console.base, pages)
    }
}

/// The style sheet and the script (nothing secret: they may be served to anyone).
pub fn assets(base: &str) -> Router {
    Router::new()
        .route(&format!("{base}/assets/console.css"), get(assets::css))
        .route(&format!("{base}/assets/console.js"), get(assets::js))
}

/// The security headers on every answer of `app`, the gate's refusals included: apply it
/// last, outermost. `form_action`: extra `form-action` sources of the Content-Security-Policy
/// (the form that starts a connection is answered with a redirect to the login host, which the
/// browser checks against it): `https:` is always allowed; locally, give loopback too (the
/// simulator).
pub fn secure(app: Router, form_action: &str) -> Router {
    let csp = content_security_policy(form_action);
    app.layer(middleware::from_fn_with_state(
        Arc::new(csp),
        security_headers,
    ))
}

fn content_security_policy(form_action: &str) -> String {
    format!(
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
         connect-src 'self'; form-action 'self' https: {form_action}; frame-ancestors 'none'; \
         base-uri 'none'"
    )
}

/// Headers on every answer: the CSP, no sniffing, no framing, no referrer, no caching (pages
/// hold what customers wrote).
async fn security_headers(State(csp): State<Arc<String>>, req: Request, next: Next) -> Response {
    let mut response = next.run(req).await;
    let headers = response.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&csp) {
        headers.insert(header::CONTENT_SECURITY_POLICY, v);
    }
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers
        .entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    response
}

/// A state-changing request from another site is refused before any handler runs: browsers
/// say where a request comes from (`Sec-Fetch-Site`, `Origin`), and a cross-site form post is
/// exactly the forgery to stop. (Each form's CSRF token is checked by its handler as well.)
async fn same_origin_writes(req: Request, next: Next) -> Response {
    if matches!(*req.method(), Method::GET | Method::HEAD) || is_same_origin(req.headers()) {
        return next.run(req).await;
    }
    (
        StatusCode::FORBIDDEN,
        views::error_page(
            "",
            "Refused",
            "This request came from another site, so the console did not act on it.",
        ),
    )
        .into_response()
}

/// Whether the browser's own headers place a request on this site. A request with neither
/// header (an old browser, a script) is judged by its CSRF token alone.
///
/// `Sec-Fetch-Site` decides when present: a page cannot set it, and every current browser
/// sends it. (`Origin` is `null` on the console's own forms, whose pages send no referrer.)
pub fn is_same_origin(headers: &HeaderMap) -> bool {
    if let Some(site) = headers.get("sec-fetch-site") {
        return matches!(site.to_str(), Ok("same-origin" | "none"));
    }
    match (
        headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()),
        headers.get(header::HOST).and_then(|v| v.to_str().ok()),
    ) {
        (Some(origin), Some(host)) => url::Url::parse(origin).is_ok_and(|o| {
            let origin_host = match (o.host_str(), o.port()) {
                (Some(h), Some(p)) => format!("{h}:{p}"),
                (Some(h), None) => h.to_owned(),
                _ => return false,
            };
            origin_host.eq_ignore_ascii_case(host)
        }),
        (Some(_), None) => false,
        (None, _) => true,
    }
}

/// Compares a form's CSRF token with the session's, in constant time.
pub fn csrf_ok(session: &Session, given: &str) -> bool {
    let (a, b) = (session.csrf.as_bytes(), given.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).expect("a header value"));
        }
        h
    }

    #[test]
    fn the_browsers_fetch_site_decides() {
        let host = ("host", "127.0.0.1:8765");
        for ok in ["same-origin", "none"] {
            // The console's own forms: no referrer, so Origin is `null`.
            assert!(is_same_origin(&headers(&[
                host,
                ("sec-fetch-site", ok),
                ("origin", "null")
            ])));
        }
        for refused in ["same-site", "cross-site", "garbage"] {
            assert!(!is_same_origin(&headers(&[
                host,
                ("sec-fetch-site", refused),
                ("origin", "http://127.0.0.1:8765")
            ])));
        }
    }

    #[test]
    fn without_fetch_site_the_origin_must_be_this_host() {
        let host = ("host", "127.0.0.1:8765");
        assert!(is_same_origin(&headers(&[
            host,
            ("origin", "http://127.0.0.1:8765")
        ])));
        assert!(!is_same_origin(&headers(&[
            host,
            ("origin", "http://evil.example")
        ])));
        assert!(!is_same_origin(&headers(&[
            host,
            ("origin", "http://127.0.0.1:9999")
        ])));
        assert!(!is_same_origin(&headers(&[host, ("origin", "null")])));
        // Neither header (a script): left to the CSRF token.
        assert!(is_same_origin(&headers(&[host])));
    }

    #[test]
    fn csrf_tokens_must_match_exactly() {
        let s = Session {
            user: "u".into(),
            csrf: "abc123".into(),
            can_sign_out: false,
        };
        assert!(csrf_ok(&s, "abc123"));
        assert!(!csrf_ok(&s, "abc12"));
        assert!(!csrf_ok(&s, "abc124"));
        assert!(!csrf_ok(&s, ""));
    }
}
