//! The pages: each handler parses what the browser sent, calls one use case, renders. No rule
//! lives here.

pub mod channel;
pub mod connect;
pub mod sources;

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use casesync_core::domain::{ConnectionId, ConnectionState};
use casesync_core::manage::ManageError;
use casesync_core::ports::StoreError;
use serde::Deserialize;

use crate::{Console, Session, csrf_ok, views};

/// Why a page could not be shown, as the person in front of it should read it.
pub struct PageError {
    status: StatusCode,
    title: &'static str,
    message: String,
    base: String,
}

impl PageError {
    pub fn new(
        console: &Console,
        status: StatusCode,
        title: &'static str,
        message: impl Into<String>,
    ) -> Self {
        Self {
            status,
            title,
            message: message.into(),
            base: console.base.clone(),
        }
    }

    pub fn not_found(console: &Console, what: &str) -> Self {
        Self::new(
            console,
            StatusCode::NOT_FOUND,
            "Not found",
            format!("There is no {what} here."),
        )
    }

    pub fn bad(console: &Console, message: impl Into<String>) -> Self {
        Self::new(console, StatusCode::BAD_REQUEST, "Please check", message)
    }

    pub fn from_manage(console: &Console, e: ManageError) -> Self {
        match e {
            ManageError::NotFound(_) => Self::not_found(console, "such source"),
            ManageError::Invalid { message, .. } => Self::bad(console, message),
            ManageError::NothingToChange => Self::bad(console, e.to_string()),
            ManageError::SyncRunning => Self::new(
                console,
                StatusCode::CONFLICT,
                "Still importing",
                e.to_string(),
            ),
            ManageError::Connect(e) => Self::new(
                console,
                StatusCode::BAD_REQUEST,
                "Could not connect",
                e.to_string(),
            ),
            ManageError::Salesforce(e) => Self::new(
                console,
                StatusCode::BAD_GATEWAY,
                "Salesforce did not answer as expected",
                e.to_string(),
            ),
            ManageError::Store(e) => Self::from_store(console, e),
        }
    }

    pub fn from_store(console: &Console, e: StoreError) -> Self {
        tracing::error!(error = %e, "console: store failure");
        Self::new(
            console,
            StatusCode::SERVICE_UNAVAILABLE,
            "Temporarily unavailable",
            "The console could not read its data just now: try again shortly.",
        )
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        (
            self.status,
            views::error_page(&self.base, self.title, &self.message),
        )
            .into_response()
    }
}

pub type PageResult = Result<Response, PageError>;

/// A connection id from the path: malformed is as unknown as missing.
pub fn connection_id(console: &Console, raw: &str) -> Result<ConnectionId, PageError> {
    ConnectionId::parse(raw).map_err(|_| PageError::not_found(console, "such source"))
}

/// A submitted form's fields (repeated names kept, in order), its CSRF token checked.
pub fn form(
    console: &Console,
    session: &Session,
    body: &[u8],
) -> Result<Vec<(String, String)>, PageError> {
    let fields: Vec<(String, String)> = url::form_urlencoded::parse(body)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let token = fields
        .iter()
        .find(|(k, _)| k == "csrf")
        .map_or("", |(_, v)| v.as_str());
    if !csrf_ok(session, token) {
        return Err(PageError::new(
            console,
            StatusCode::FORBIDDEN,
            "Refused",
            "This form is out of date or did not come from the console: open the page again.",
        ));
    }
    Ok(fields)
}

/// The value of a field given once.
/// The OAuth redirect URI for this request (see [`crate::RedirectUri`]).
pub fn redirect_uri(
    console: &Console,
    headers: &axum::http::HeaderMap,
) -> Result<String, PageError> {
    console
        .redirect_uri
        .for_request(headers)
        .ok_or_else(|| PageError::bad(console, "This request names no valid host."))
}

pub fn field<'a>(fields: &'a [(String, String)], name: &str) -> Option<&'a str> {
    fields
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

#[derive(Deserialize)]
pub struct Landing {
    connection: Option<String>,
}

/// `/`: the Sources page, or, back from Salesforce (the AWS callback redirects here with the
/// connection's id), the next step for that connection.
pub async fn root(State(console): State<Arc<Console>>, Query(q): Query<Landing>) -> PageResult {
    if let Some(raw) = q.connection.as_deref() {
        let id = connection_id(&console, raw)?;
        let c = console
            .manager
            .connection(&id)
            .await
            .map_err(|e| PageError::from_manage(&console, e))?;
        if c.state == ConnectionState::Pending {
            return Ok(
                Redirect::to(&console.path(&format!("/sources/{id}/configure"))).into_response(),
            );
        }
    }
    Ok(Redirect::to(&console.path("/sources")).into_response())
}
