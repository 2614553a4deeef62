//! Sources: every connection, its import, and what can be done with it.

use std::sync::Arc;

use axum::Extension;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Json, Redirect};
use casesync_core::diagnostics::CheckStatus;
use casesync_core::domain::{BackfillWindow, Connection, ConnectionState, QueueScope, SyncOutcome};
use casesync_core::manage::{ConnectionView, SettingsChange};
use chrono::Utc;
use maud::{Markup, html};
use serde::Serialize;

use super::connect::{backfill_choice, queue_choice, scope_from};
use super::{PageError, PageResult, connection_id, form};
use crate::views::{self, page, source_name, state_text, when};
use crate::{Console, Session};

/// Whether a connection's import is under way: active, and its last run (if any) stopped with
/// work left.
fn importing(c: &Connection) -> bool {
    c.state == ConnectionState::Active
        && c.last_run
            .as_ref()
            .is_none_or(|r| r.outcome == SyncOutcome::MoreWork)
}

/// How far an import has come in its backfill window: where its cursor stands, or with a
/// sliced backfill under way, how much of the window its slices have read.
fn progress_text(c: &Connection) -> String {
    if c.state == ConnectionState::Pending {
        return "Not started: choose what to import".into();
    }
    if !importing(c) {
        return match &c.last_run {
            Some(_) if c.state == ConnectionState::Active => "Up to date".into(),
            Some(_) => "Stopped".into(),
            None => "Not started".into(),
        };
    }
    let now = Utc::now();
    let start = c.backfill.start(now);
    let span = (now - start).num_seconds().max(1) as f64;
    let done = (c.progress_point() - start).num_seconds().max(0) as f64;
    let pct = (done / span * 100.0).clamp(0.0, 99.0);
    format!("Importing: {pct:.0} %")
}

fn last_sync(c: &Connection) -> String {
    match &c.last_run {
        None => "never".into(),
        Some(r) => format!(
            "{}: {} ({} new, {} updated)",
            when(r.finished_at),
            r.outcome,
            r.counts.created,
            r.counts.updated
        ),
    }
}

fn queues_text(scope: &QueueScope) -> String {
    match scope {
        QueueScope::All => "All queues".into(),
        QueueScope::Specific(ids) if ids.len() == 1 => "1 queue".into(),
        QueueScope::Specific(ids) => format!("{} queues", ids.len()),
    }
}

pub fn backfill_text(b: BackfillWindow) -> &'static str {
    match b {
        BackfillWindow::Days7 => "Last 7 days",
        BackfillWindow::Days30 => "Last 30 days",
        BackfillWindow::Days90 => "Last 90 days",
        BackfillWindow::Months6 => "Last 6 months",
    }
}

fn row(console: &Console, session: &Session, v: &ConnectionView) -> Markup {
    let c = &v.connection;
    let id = c.id.as_str();
    let base = &console.base;
    html! {
        tr {
            td { (source_name(c)) div.muted { (id) } }
            td {
                @if c.state == ConnectionState::Pending { span.muted { "not chosen yet" } }
                @else { a href={ (base) "/channels/" (encode(c.channel.as_str())) } { (c.channel) } }
            }
            td { (state_text(c.state)) }
            td { (queues_text(&c.scope)) }
            td { (backfill_text(c.backfill)) }
            td {
                div data-sync-for=(id) { (last_sync(c)) }
                div { span data-points-for=(id) { (v.data_points) } " data points" }
                div data-progress-for=(id) { (progress_text(c)) }
                div.error data-error-for=(id) { (c.last_error().unwrap_or("")) }
            }
            td {
                details.menu {
                    summary { "More actions" }
                    ul {
                        @if c.state == ConnectionState::Pending {
                            li { a href={ (base) "/sources/" (id) "/configure" } { "Configure import" } }
                        } @else {
                            li { a href={ (base) "/sources/" (id) "/settings" } { "Change queues and backfill" } }
                        }
                        li { a href={ (base) "/sources/" (id) "/diagnose" } { "Diagnose" } }
                        @if c.state == ConnectionState::NeedsReauth {
                            li {
                                form method="post" action={ (base) "/sources/" (id) "/reauthorize" } {
                                    (views::csrf_field(session))
                                    button type="submit" { "Re-authorize" }
                                }
                            }
                        }
                        @if c.state != ConnectionState::Disconnected {
                            li { a href={ (base) "/sources/" (id) "/disconnect" } { "Disconnect" } }
                        }
                        li { a href={ (base) "/sources/" (id) "/delete" } { "Delete" } }
                    }
                }
            }
        }
    }
}

/// A path segment for a channel name.
pub fn encode(name: &str) -> String {
    percent_encoding::utf8_percent_encode(name, percent_encoding::NON_ALPHANUMERIC).to_string()
}

/// `GET /sources`
pub async fn list(
    State(console): State<Arc<Console>>,
    Extension(session): Extension<Session>,
) -> PageResult {
    let views_ = console
        .manager
        .list()
        .await
        .map_err(|e| PageError::from_manage(&console, e))?;
    let base = &console.base;
    let body = html! {
        h1 { "Sources" }
        p { a.button href={ (base) "/connect" } { "Connect data source" } }
        @if views_.is_empty() {
            p.muted { "No source is connected yet." }
        } @else {
            table {
                thead { tr {
                    th scope="col" { "Source" } th scope="col" { "Channel" } th scope="col" { "State" }
                    th scope="col" { "Queues" } th scope="col" { "Backfill" } th scope="col" { "Last sync" }
                    th scope="col" { span.visually-hidden { "Actions" } }
                } }
                tbody { @for v in &views_ { (row(&console, &session, v)) } }
            }
        }
    };
    Ok(page(base, "Sources", Some(&session), body).into_response())
}

#[derive(Serialize)]
struct Progress {
    id: String,
    progress: String,
    importing: bool,
    data_points: u64,
    last_sync: String,
    last_error: String,
}

#[derive(Serialize)]
struct ProgressList {
    sources: Vec<Progress>,
}

/// `GET /sources/progress`: what the Sources page refreshes by itself.
async fn progress_json(console: &Console) -> Result<ProgressList, PageError> {
    let views_ = console
        .manager
        .list()
        .await
        .map_err(|e| PageError::from_manage(console, e))?;
    Ok(ProgressList {
        sources: views_
            .iter()
            .map(|v| Progress {
                id: v.connection.id.to_string(),
                progress: progress_text(&v.connection),
                importing: importing(&v.connection),
                data_points: v.data_points,
                last_sync: last_sync(&v.connection),
                last_error: v.connection.last_error().unwrap_or("").to_owned(),
            })
            .collect(),
    })
}

pub async fn progress(State(console): State<Arc<Console>>) -> PageResult {
    Ok(Json(progress_json(&console).await?).into_response())
}

/// `GET /sources/{id}/settings`: "Change queues and backfill".
pub async fn settings_form(
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
    let base = &console.base;
    let body = html! {
        h1 { "Change queues and backfill" }
        p { (source_name(&c)) ", channel " strong { (c.channel) } }
        form.stack method="post" action={ (base) "/sources/" (c.id.as_str()) "/settings" } {
            (views::csrf_field(&session))
            (queue_choice(&queues, &c.scope))
            (backfill_choice(c.backfill))
            p.muted { "Changing them re-reads closed Cases from the start of the window: Cases newly in scope are imported, unchanged ones are not rewritten." }
            div { button type="submit" { "Save" } " " a.button.secondary href={ (base) "/sources" } { "Cancel" } }
        }
    };
    Ok(page(base, "Change queues and backfill", Some(&session), body).into_response())
}

/// `POST /sources/{id}/settings`
pub async fn settings(
    State(console): State<Arc<Console>>,
    Extension(session): Extension<Session>,
    Path(raw): Path<String>,
    body: Bytes,
) -> PageResult {
    let id = connection_id(&console, &raw)?;
    let fields = form(&console, &session, &body)?;
    let (scope, backfill) = scope_from(&console, &fields)?;
    console
        .manager
        .configure(
            &id,
            SettingsChange {
                scope: Some(scope),
                backfill: Some(backfill),
            },
        )
        .await
        .map_err(|e| PageError::from_manage(&console, e))?;
    if let Some(notify) = &console.on_import {
        notify(id);
    }
    Ok(Redirect::to(&console.path("/sources")).into_response())
}

/// `GET /sources/{id}/diagnose`: the checks of `casesync doctor`.
pub async fn diagnose(
    State(console): State<Arc<Console>>,
    Extension(session): Extension<Session>,
    Path(raw): Path<String>,
) -> PageResult {
    let id = connection_id(&console, &raw)?;
    let (c, d) = console
        .manager
        .diagnose(&id)
        .await
        .map_err(|e| PageError::from_manage(&console, e))?;
    let base = &console.base;
    let body = html! {
        h1 { "Diagnose" }
        p { (source_name(&c)) ", channel " strong { (c.channel) } }
        p { @if d.healthy() { span.ok { "Everything casesync needs is in place." } }
            @else { span.error { "Something needs fixing: see below." } } }
        table.checks {
            thead { tr { th scope="col" { "Check" } th scope="col" { "Result" } th scope="col" { "What was found" } th scope="col" { "Fix" } } }
            tbody {
                @for check in &d.checks {
                    tr {
                        td { (check.name) }
                        td.status { (match check.status {
                            CheckStatus::Ok => "OK", CheckStatus::Warning => "Warning",
                            CheckStatus::Failed => "Failed", CheckStatus::Skipped => "Skipped" }) }
                        td { (check.detail) }
                        td { (check.fix.as_deref().unwrap_or("")) }
                    }
                }
            }
        }
        p.muted { (d.api_calls) " Salesforce API calls." }
        p { a href={ (base) "/sources" } { "Back to Sources" } }
    };
    Ok(page(base, "Diagnose", Some(&session), body).into_response())
}

/// A confirmation dialog: the product's text, the confirming button, "Cancel".
fn confirm(
    console: &Console,
    session: &Session,
    c: &Connection,
    action: &str,
    verb: &str,
    text: String,
) -> Markup {
    let base = &console.base;
    page(
        base,
        verb,
        Some(session),
        html! {
            section.dialog role="alertdialog" aria-modal="true" aria-labelledby="dialog-title" aria-describedby="dialog-text" {
                h1 id="dialog-title" { (verb) " " (source_name(c)) }
                p id="dialog-text" { (text) }
                form method="post" action={ (base) "/sources/" (c.id.as_str()) "/" (action) } {
                    (views::csrf_field(session))
                    div.actions {
                        button.danger type="submit" { (verb) }
                        a.button.secondary href={ (base) "/sources" } { "Cancel" }
                    }
                }
            }
        },
    )
}

/// The disconnect confirmation's text, exactly as the product words it.
pub fn disconnect_text(c: &Connection) -> String {
    format!(
        "Are you sure you want to disconnect {} from {}? This will immediately stop the Channel \
         from ingesting any new data. Any data already imported from this source will remain in \
         the Channel.",
        source_name(c),
        c.channel
    )
}

/// The delete confirmation's text, exactly as the product words it.
pub fn delete_text(c: &Connection) -> String {
    format!(
        "Are you sure you want to delete {} from {}? This will delete all associated data \
         points. This is permanent and cannot be undone.",
        source_name(c),
        c.channel
    )
}

pub async fn disconnect_confirm(
    State(console): State<Arc<Console>>,
    Extension(session): Extension<Session>,
    Path(raw): Path<String>,
) -> PageResult {
    let id = connection_id(&console, &raw)?;
    let c = console
        .manager
        .connection(&id)
        .await
        .map_err(|e| PageError::from_manage(&console, e))?;
    let text = disconnect_text(&c);
    Ok(confirm(&console, &session, &c, "disconnect", "Disconnect", text).into_response())
}

pub async fn disconnect(
    State(console): State<Arc<Console>>,
    Extension(session): Extension<Session>,
    Path(raw): Path<String>,
    body: Bytes,
) -> PageResult {
    let id = connection_id(&console, &raw)?;
    form(&console, &session, &body)?;
    console
        .manager
        .disconnect(&id)
        .await
        .map_err(|e| PageError::from_manage(&console, e))?;
    Ok(Redirect::to(&console.path("/sources")).into_response())
}

pub async fn delete_confirm(
    State(console): State<Arc<Console>>,
    Extension(session): Extension<Session>,
    Path(raw): Path<String>,
) -> PageResult {
    let id = connection_id(&console, &raw)?;
    let c = console
        .manager
        .connection(&id)
        .await
        .map_err(|e| PageError::from_manage(&console, e))?;
    let text = delete_text(&c);
    Ok(confirm(&console, &session, &c, "delete", "Delete", text).into_response())
}

pub async fn delete(
    State(console): State<Arc<Console>>,
    Extension(session): Extension<Session>,
    Path(raw): Path<String>,
    body: Bytes,
) -> PageResult {
    let id = connection_id(&console, &raw)?;
    form(&console, &session, &body)?;
    let deleted = console
        .manager
        .delete(&id)
        .await
        .map_err(|e| PageError::from_manage(&console, e))?;
    let base = &console.base;
    let body = html! {
        h1 { "Deleted" }
        p role="status" {
            (source_name(&deleted.connection)) " was deleted from " (deleted.connection.channel)
            ": " (deleted.data_points_deleted) " data points removed; " (deleted.token) "."
        }
        p { a href={ (base) "/sources" } { "Back to Sources" } }
    };
    Ok((StatusCode::OK, page(base, "Deleted", Some(&session), body)).into_response())
}

/// `POST /sources/{id}/reauthorize`: to Salesforce, and back to this connection.
pub async fn reauthorize(
    State(console): State<Arc<Console>>,
    Extension(session): Extension<Session>,
    Path(raw): Path<String>,
    headers: axum::http::HeaderMap,
    body: Bytes,
) -> PageResult {
    let id = connection_id(&console, &raw)?;
    form(&console, &session, &body)?;
    let started = console
        .manager
        .start_reauthorization(&id, &super::redirect_uri(&console, &headers)?)
        .await
        .map_err(|e| PageError::from_manage(&console, e))?;
    Ok(Redirect::to(started.authorize_url.as_str()).into_response())
}
