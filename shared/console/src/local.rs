//! Who may use the console on one machine (`casesync ui`): only a browser that was given this
//! launch's secret, talking to the loopback address the console listens on.
//!
//! * A request whose `Host` is not `127.0.0.1:PORT` or `localhost:PORT` is refused (421): a web
//!   page that points its own domain name at 127.0.0.1 (DNS rebinding) gets nothing.
//! * The address `casesync ui` prints holds a per-launch secret (`?launch=...`). Opening it
//!   sets an `HttpOnly`, `SameSite=Lax` cookie holding a session token (not the secret) and
//!   redirects to the same page without the secret, so it stays out of the history and of
//!   every page. Every other request needs that cookie (401 otherwise).
//! * Forms carry a CSRF token bound to the launch (see [`crate::csrf_ok`]).

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::{Session, views};

const COOKIE: &str = "casesync_console";

/// The local gate: one launch's secret and session.
#[derive(Clone)]
pub struct LocalGate {
    port: u16,
    launch_secret: String,
    session_token: String,
    csrf: String,
}

impl std::fmt::Debug for LocalGate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalGate")
            .field("port", &self.port)
            .finish_non_exhaustive()
    }
}

fn random() -> String {
    format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    )
}

fn same(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl LocalGate {
    /// A new launch on `port`, with fresh secrets.
    pub fn new(port: u16) -> Self {
        Self {
            port,
            launch_secret: random(),
            session_token: random(),
            csrf: random(),
        }
    }

    /// The address to open: the console's root with this launch's secret.
    pub fn launch_url(&self) -> String {
        format!(
            "http://127.0.0.1:{}/?launch={}",
            self.port, self.launch_secret
        )
    }

    fn host_is_ours(&self, host: Option<&str>) -> bool {
        let Some(host) = host else { return false };
        host == format!("127.0.0.1:{}", self.port) || host == format!("localhost:{}", self.port)
    }

    fn has_session(&self, req: &Request) -> bool {
        req.headers()
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|c| c.trim().split_once('='))
            .any(|(k, v)| k == COOKIE && same(v, &self.session_token))
    }
}

fn refuse(status: StatusCode, message: &str) -> Response {
    (status, views::error_page("", "Refused", message)).into_response()
}

/// The gate as an axum middleware (`axum::middleware::from_fn_with_state`).
pub async fn gate(State(g): State<Arc<LocalGate>>, mut req: Request, next: Next) -> Response {
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok());
    if !g.host_is_ours(host) {
        return refuse(
            StatusCode::MISDIRECTED_REQUEST,
            "The console answers only on its own loopback address.",
        );
    }
    // The launch secret, once: exchanged for the session cookie, then out of the address.
    let query = req.uri().query().unwrap_or("").to_owned();
    let pairs: Vec<(String, String)> = url::form_urlencoded::parse(query.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    if let Some((_, secret)) = pairs.iter().find(|(k, _)| k == "launch") {
        if !same(secret, &g.launch_secret) {
            return refuse(
                StatusCode::FORBIDDEN,
                "This address is not the one `casesync ui` printed for this launch.",
            );
        }
        let rest: Vec<String> = pairs
            .iter()
            .filter(|(k, _)| k != "launch")
            .map(|(k, v)| {
                url::form_urlencoded::Serializer::new(String::new())
                    .append_pair(k, v)
                    .finish()
            })
            .collect();
        let location = if rest.is_empty() {
            req.uri().path().to_owned()
        } else {
            format!("{}?{}", req.uri().path(), rest.join("&"))
        };
        let mut response = StatusCode::SEE_OTHER.into_response();
        let cookie = format!(
            "{COOKIE}={}; Path=/; HttpOnly; SameSite=Lax",
            g.session_token
        );
        if let (Ok(loc), Ok(cookie)) = (
            HeaderValue::from_str(&location),
            HeaderValue::from_str(&cookie),
        ) {
            response.headers_mut().insert(header::LOCATION, loc);
            response.headers_mut().insert(header::SET_COOKIE, cookie);
        }
        return response;
    }
    if !g.has_session(&req) {
        return refuse(
            StatusCode::UNAUTHORIZED,
            "Open the console with the address `casesync ui` printed: it holds this launch's \
             secret.",
        );
    }
    req.extensions_mut().insert(Session {
        user: "this computer".into(),
        csrf: g.csrf.clone(),
        can_sign_out: false,
    });
    next.run(req).await
}
