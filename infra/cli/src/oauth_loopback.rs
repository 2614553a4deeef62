//! The OAuth web-server flow on one machine: a callback server on `http://127.0.0.1:PORT/callback`
//! and the wait for Salesforce's redirect. Shared by `connect` and `demo` (where the demo plays
//! the browser).
//!
//! The pending flow (its single-use `state` and PKCE verifier) lives in this process only: the
//! process that started the flow is the one waiting for its callback, so the verifier never
//! reaches a file.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use axum::Router;
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::Html;
use axum::routing::get;
use casesync_core::manage::{Authorized, CallbackParams, Manager, StartedAuthorization};
use casesync_core::ports::{AuthStateStore, PendingAuthorization, StoreResult};
use chrono::Utc;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::error::{CliError, failed};

/// One request to `/callback`, waiting for the page to answer it with.
struct Callback {
    query: String,
    reply: oneshot::Sender<(StatusCode, String)>,
}

/// The loopback server Salesforce redirects the browser to.
pub struct CallbackServer {
    addr: SocketAddr,
    requests: mpsc::Receiver<Callback>,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl CallbackServer {
    /// Listens on 127.0.0.1:`port` (0: any free port).
    pub async fn bind(port: u16) -> Result<Self, CliError> {
        let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, port))
            .await
            .map_err(|e| {
                CliError::input(format!(
                    "cannot listen for the OAuth callback on 127.0.0.1:{port} ({e}): pass \
                     --redirect-port with a free port, and register \
                     http://127.0.0.1:PORT/callback as a callback URL of the Connected App"
                ))
            })?;
        let addr = listener
            .local_addr()
            .map_err(|e| failed!("reading the callback server's address: {e}"))?;
        let (tx, requests) = mpsc::channel(8);
        let (shutdown, stop) = oneshot::channel::<()>();
        let app = Router::new()
            .route("/callback", get(callback))
            .fallback(|| async {
                (
                    StatusCode::NOT_FOUND,
                    Html(page("Not found", "Nothing here.")),
                )
            })
            .with_state(tx);
        let task = tokio::spawn(async move {
            let server = axum::serve(listener, app).with_graceful_shutdown(async {
                let _ = stop.await;
            });
            if let Err(e) = server.await {
                tracing::warn!(error = %e, "the OAuth callback server stopped");
            }
        });
        Ok(Self {
            addr,
            requests,
            shutdown: Some(shutdown),
            task: Some(task),
        })
    }

    /// `http://127.0.0.1:PORT/callback`.
    pub fn redirect_uri(&self) -> String {
        format!("http://127.0.0.1:{}/callback", self.addr.port())
    }

    /// Stops listening once the last answer is sent.
    pub async fn shutdown(mut self) {
        if let Some(s) = self.shutdown.take() {
            let _ = s.send(());
        }
        if let Some(mut task) = self.task.take()
            && tokio::time::timeout(Duration::from_secs(2), &mut task)
                .await
                .is_err()
        {
            task.abort();
        }
    }
}

impl Drop for CallbackServer {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

async fn callback(
    State(tx): State<mpsc::Sender<Callback>>,
    RawQuery(query): RawQuery,
) -> (StatusCode, Html<String>) {
    let gone = || {
        (
            StatusCode::GONE,
            Html(page(
                "casesync is not waiting",
                "This sign-in is no longer awaited by casesync. Start it again.",
            )),
        )
    };
    let (reply, answer) = oneshot::channel();
    let request = Callback {
        query: query.unwrap_or_default(),
        reply,
    };
    if tx.send(request).await.is_err() {
        return gone();
    }
    match answer.await {
        Ok((status, html)) => (status, Html(html)),
        Err(_) => gone(),
    }
}

/// Waits for the callback of `started` (until it expires, 10 minutes) and completes the flow
/// through `manager` (whose auth state store holds the pending flow). A callback whose `state`
/// is not this flow's is refused with an error page, and the wait goes on: it may be an old
/// browser tab, or a forged request.
pub async fn await_callback(
    server: &mut CallbackServer,
    started: &StartedAuthorization,
    manager: &Manager,
) -> Result<Authorized, CliError> {
    let left = (started.expires_at - Utc::now())
        .to_std()
        .unwrap_or(Duration::ZERO);
    let deadline = tokio::time::Instant::now() + left;
    loop {
        let request = match tokio::time::timeout_at(deadline, server.requests.recv()).await {
            Ok(Some(r)) => r,
            Ok(None) => return Err(failed!("the OAuth callback server stopped")),
            Err(_) => {
                return Err(failed!(
                    "no authorization arrived within 10 minutes; nothing was connected: run \
                     the command again"
                ));
            }
        };
        let params = match CallbackParams::parse(&request.query) {
            Ok(p) => p,
            Err(e) => {
                eprintln!("Refused a malformed callback ({e}); still waiting.");
                let _ = request.reply.send((
                    StatusCode::BAD_REQUEST,
                    page("casesync refused this callback", &e.to_string()),
                ));
                continue;
            }
        };
        let state_matches = params
            .state
            .as_deref()
            .is_some_and(|s| constant_time_eq(s.as_bytes(), started.state.as_bytes()));
        if !state_matches {
            eprintln!(
                "Refused a callback whose state does not match this sign-in (an old browser tab, \
                 or a forged request); still waiting."
            );
            let _ = request.reply.send((
                StatusCode::BAD_REQUEST,
                page(
                    "casesync refused this callback",
                    "Its state does not match the sign-in casesync is waiting for, so it was \
                     ignored. If you started casesync connect again, use the newest link.",
                ),
            ));
            continue;
        }
        let result = manager.complete_authorization(&params).await;
        let answer = match &result {
            Ok(_) => (
                StatusCode::OK,
                page(
                    "casesync is connected",
                    "Salesforce authorized casesync. You can close this tab and return to the terminal.",
                ),
            ),
            Err(e) => (
                StatusCode::BAD_REQUEST,
                page("casesync could not connect", &e.to_string()),
            ),
        };
        let _ = request.reply.send(answer);
        return result.map_err(|e| failed!("{e}"));
    }
}

/// Opens `url` in the user's browser when there is one to open: not under CI, and on Linux only
/// with a display. `false` when nothing was opened.
pub fn open_browser(url: &str) -> bool {
    if std::env::var_os("CI").is_some() {
        return false;
    }
    let has_display = cfg!(any(target_os = "macos", windows))
        || std::env::var_os("DISPLAY").is_some()
        || std::env::var_os("WAYLAND_DISPLAY").is_some();
    has_display && open::that_detached(url).is_ok()
}

/// Pending OAuth flows of this process: their state and PKCE verifier stay in memory.
#[derive(Default)]
pub struct PendingFlows {
    flows: Mutex<HashMap<String, PendingAuthorization>>,
}

impl PendingFlows {
    pub fn new() -> Self {
        Self::default()
    }
}

#[async_trait]
impl AuthStateStore for PendingFlows {
    async fn put_auth_state(&self, pending: &PendingAuthorization) -> StoreResult<()> {
        self.flows
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(pending.state.clone(), pending.clone());
        Ok(())
    }

    async fn take_auth_state(&self, state: &str) -> StoreResult<Option<PendingAuthorization>> {
        Ok(self
            .flows
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(state))
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn page(title: &str, message: &str) -> String {
    format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>{t}</title></head>\
         <body style=\"font-family: sans-serif; margin: 3em\"><h1>{t}</h1><p>{m}</p></body></html>",
        t = escape_html(title),
        m = escape_html(message)
    )
}

fn escape_html(s: &str) -> String {
    html_escape::encode_quoted_attribute(s).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_escape_what_they_show() {
        let html = page("t", "<script>alert('x')</script> & more");
        assert!(!html.contains("<script>"));
        assert!(html.contains("&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt; &amp; more"));
    }

    #[test]
    fn states_compare_whole() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
        assert!(!constant_time_eq(b"", b"a"));
    }

    #[tokio::test]
    async fn the_server_answers_only_on_loopback_callback() {
        let mut server = CallbackServer::bind(0).await.unwrap();
        let uri = server.redirect_uri();
        assert!(uri.starts_with("http://127.0.0.1:") && uri.ends_with("/callback"));
        let client = reqwest::Client::new();
        let other = client
            .get(uri.replace("/callback", "/other"))
            .send()
            .await
            .unwrap();
        assert_eq!(other.status(), 404);
        let pending = tokio::spawn(async move { client.get(format!("{uri}?a=1")).send().await });
        let request = server.requests.recv().await.unwrap();
        assert_eq!(request.query, "a=1");
        request
            .reply
            .send((StatusCode::OK, page("ok", "ok")))
            .unwrap();
        assert_eq!(pending.await.unwrap().unwrap().status(), 200);
        server.shutdown().await;
    }
}
