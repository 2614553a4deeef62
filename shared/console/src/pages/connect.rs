//! Connecting a data source: the Salesforce environment, the OAuth web-server flow (PKCE), then
//! Configure import (channel, queues, backfill).

use std::sync::Arc;

use axum::Extension;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect};
use casesync_core::domain::{
    BackfillWindow, ChannelName, ConnectionState, LoginUrl, QueueId, QueueScope,
};
use casesync_core::manage::{CallbackParams, PENDING_CHANNEL};
use casesync_core::salesforce::records::QueueRecord;
use maud::{Markup, html};

use super::sources::backfill_text;
use super::{PageError, PageResult, connection_id, field, form, redirect_uri};
use crate::views::{self, page, source_name};
use crate::{Console, Session};

const PRODUCTION: &str = "https://login.salesforce.com";
const SANDBOX: &str = "https://test.salesforce.com";

/// `GET /connect`: "Connect data source".
pub async fn form_page(console: &Console, session: &Session, error: Option<&str>) -> Markup {
    let base = &console.base;
    let suggested = console
        .suggested_login
        .as_ref()
        .map(|u| u.as_str().to_owned())
        .unwrap_or_default();
    let custom_first = console.suggested_login.is_some();
    page(
        base,
        "Connect data source",
        Some(session),
        html! {
            h1 { "Connect data source" }
            @if let Some(e) = error { p.error role="alert" { (e) } }
            form.stack method="post" action={ (base) "/connect" } {
                (views::csrf_field(session))
                fieldset {
                    legend { "Salesforce environment" }
                    label { input type="radio" name="environment" value="production" checked[!custom_first]; " Production" }
                    label { input type="radio" name="environment" value="sandbox"; " Sandbox" }
                    label { input type="radio" name="environment" value="custom" checked[custom_first]; " Custom domain" }
                    label for="my-domain" { "My Domain URL" }
                    input id="my-domain" type="url" name="my_domain" value=(suggested)
                        placeholder="https://yourcompany.my.salesforce.com" autocomplete="url";
                }
                p.muted { "You will sign in to Salesforce and allow casesync to read Cases and their emails. casesync never writes to Salesforce." }
                div { button type="submit" { "Continue to Salesforce" } " " a.button.secondary href={ (base) "/sources" } { "Cancel" } }
            }
        },
    )
}

pub async fn show(
    State(console): State<Arc<Console>>,
    Extension(session): Extension<Session>,
) -> PageResult {
    Ok(form_page(&console, &session, None).await.into_response())
}

/// `POST /connect`: the environment's login URL, checked by the CLI's rules (https to
/// Salesforce, plain http only on loopback), then to Salesforce's authorize page.
pub async fn start(
    State(console): State<Arc<Console>>,
    Extension(session): Extension<Session>,
    headers: HeaderMap,
    body: Bytes,
) -> PageResult {
    let fields = form(&console, &session, &body)?;
    let login = match field(&fields, "environment") {
        Some("production") => LoginUrl::parse(PRODUCTION),
        Some("sandbox") => LoginUrl::parse(SANDBOX),
        Some("custom") => LoginUrl::parse(field(&fields, "my_domain").unwrap_or("")),
        _ => {
            let page =
                form_page(&console, &session, Some("Choose a Salesforce environment.")).await;
            return Ok((StatusCode::BAD_REQUEST, page).into_response());
        }
    };
    let login = match login {
        Ok(l) => l,
        Err(e) => {
            let page = form_page(&console, &session, Some(&e.to_string())).await;
            return Ok((StatusCode::BAD_REQUEST, page).into_response());
        }
    };
    match console
        .manager
        .start_setup(login, &redirect_uri(&console, &headers)?)
        .await
    {
        Ok(started) => Ok(Redirect::to(started.authorize_url.as_str()).into_response()),
        Err(casesync_core::manage::ManageError::Invalid { message, .. }) => {
            let page = form_page(&console, &session, Some(&message)).await;
            Ok((StatusCode::BAD_REQUEST, page).into_response())
        }
        Err(e) => Err(PageError::from_manage(&console, e)),
    }
}

/// `GET /callback` (locally): Salesforce's redirect after the user approved or declined. The
/// flow's single-use state is consumed whatever happens.
pub async fn callback(
    State(console): State<Arc<Console>>,
    RawQuery(query): RawQuery,
) -> PageResult {
    let params = CallbackParams::parse(query.as_deref().unwrap_or(""))
        .map_err(|e| PageError::bad(&console, e.to_string()))?;
    let authorized = console
        .manager
        .complete_authorization(&params)
        .await
        .map_err(|e| {
            PageError::new(
                &console,
                StatusCode::BAD_REQUEST,
                "Could not connect",
                e.to_string(),
            )
        })?;
    let id = authorized.connection.id;
    let next = if authorized.connection.state == ConnectionState::Pending {
        format!("/sources/{id}/configure")
    } else {
        "/sources".to_owned()
    };
    Ok(Redirect::to(&console.path(&next)).into_response())
}

/// The queue checkboxes: "All queues", and one per queue named by its Name.
pub fn queue_choice(queues: &[QueueRecord], selected: &QueueScope) -> Markup {
    let all = matches!(selected, QueueScope::All);
    let chosen = |id: &str| match selected {
        QueueScope::All => false,
        QueueScope::Specific(ids) => ids.iter().any(|q| q.as_str() == id),
    };
    html! {
        fieldset {
            legend { "Queues" }
            label { input type="checkbox" name="all_queues" value="yes" checked[all]; " All queues" }
            @for q in queues {
                label { input type="checkbox" name="queue" value=(q.id) checked[chosen(&q.id)]; " " (q.name) }
            }
            @if queues.is_empty() { p.muted { "This Salesforce user can see no queues." } }
        }
    }
}

/// The backfill choice.
pub fn backfill_choice(selected: BackfillWindow) -> Markup {
    html! {
        fieldset {
            legend { "Backfill" }
            @for b in [BackfillWindow::Days7, BackfillWindow::Days30, BackfillWindow::Days90, BackfillWindow::Months6] {
                label { input type="radio" name="backfill" value=(b.as_str()) checked[b == selected]; " " (backfill_text(b)) }
            }
        }
    }
}

/// Queues and backfill from a submitted form.
pub fn scope_from(
    console: &Console,
    fields: &[(String, String)],
) -> Result<(QueueScope, BackfillWindow), PageError> {
    let scope = if field(fields, "all_queues") == Some("yes") {
        QueueScope::All
    } else {
        let ids = fields
            .iter()
            .filter(|(k, _)| k == "queue")
            .map(|(_, v)| QueueId::parse(v))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| PageError::bad(console, e.to_string()))?;
        if ids.is_empty() {
            return Err(PageError::bad(
                console,
                "Choose All queues, or at least one queue.",
            ));
        }
        QueueScope::parse(
            &ids.iter()
                .map(|q| q.as_str().to_owned())
                .collect::<Vec<_>>()
                .join(","),
        )
        .map_err(|e| PageError::bad(console, e.to_string()))?
    };
    let backfill = BackfillWindow::parse(field(fields, "backfill").unwrap_or(""))
        .map_err(|_| PageError::bad(console, "Choose a backfill window."))?;
    Ok((scope, backfill))
}

/// `GET /sources/{id}/configure`: "Configure import".
pub async fn configure_form(
    State(console): State<Arc<Console>>,
    Extension(session): Extension<Session>,
    Path(raw): Path<String>,
) -> PageResult {
    let id = connection_id(&console, &raw)?;
    let (c, queues) = console
        .manager
        .queues(&id)
        .await
        .map_err(|e| PageError::from_manage(&console, e))?;
    if c.state != ConnectionState::Pending {
        return Ok(Redirect::to(&console.path(&format!("/sources/{id}/settings"))).into_response());
    }
    let base = &console.base;
    let channel = if c.channel.as_str() == PENDING_CHANNEL {
        "Support"
    } else {
        c.channel.as_str()
    };
    let body = html! {
        h1 { "Configure import" }
        p { "Connected to " (source_name(&c)) ". Choose what to import." }
        form.stack method="post" action={ (base) "/sources/" (c.id.as_str()) "/configure" } {
            (views::csrf_field(&session))
            div {
                label for="channel" { "Channel" }
                input id="channel" type="text" name="channel" value=(channel) required maxlength="100";
            }
            (queue_choice(&queues, &QueueScope::All))
            (backfill_choice(BackfillWindow::Days30))
            div { button type="submit" { "Import" } }
        }
    };
    Ok(page(base, "Configure import", Some(&session), body).into_response())
}

/// `POST /sources/{id}/configure`: the connection starts importing.
pub async fn configure(
    State(console): State<Arc<Console>>,
    Extension(session): Extension<Session>,
    Path(raw): Path<String>,
    body: Bytes,
) -> PageResult {
    let id = connection_id(&console, &raw)?;
    let fields = form(&console, &session, &body)?;
    let channel = ChannelName::parse(field(&fields, "channel").unwrap_or(""))
        .map_err(|e| PageError::bad(&console, e.to_string()))?;
    let (scope, backfill) = scope_from(&console, &fields)?;
    console
        .manager
        .complete_setup(&id, channel, scope, backfill)
        .await
        .map_err(|e| PageError::from_manage(&console, e))?;
    if let Some(notify) = &console.on_import {
        notify(id);
    }
    Ok(Redirect::to(&console.path("/sources")).into_response())
}
