//! The Channel: its data points newest first, a search, a chart of closed Cases per week, and
//! one data point with its conversation.

use std::sync::Arc;

use axum::Extension;
use axum::extract::{Path, Query, State};
use axum::response::IntoResponse;
use casesync_core::channel::{self, PageCursor};
use casesync_core::data_point::{DataPoint, Direction};
use casesync_core::domain::ChannelName;
use chrono::Utc;
use maud::{Markup, html};
use serde::Deserialize;

use super::sources::encode;
use super::{PageError, PageResult};
use crate::views::{self, page, safe_link, when};
use crate::{Console, Session, chart};

/// Points per page.
const PAGE: usize = 25;
/// Points a search reads per page at most (it says where to go on).
const SEARCH_SCAN: usize = 2_000;
/// Weeks in the chart.
const WEEKS: u32 = 12;

#[derive(Deserialize)]
pub struct ListQuery {
    q: Option<String>,
    before: Option<String>,
}

fn channel_name(console: &Console, raw: &str) -> Result<ChannelName, PageError> {
    ChannelName::parse(raw).map_err(|_| PageError::not_found(console, "such channel"))
}

fn participant(p: &DataPoint) -> String {
    match (&p.participant.name, &p.participant.email) {
        (Some(n), Some(e)) => format!("{n} <{e}>"),
        (Some(n), None) => n.clone(),
        (None, Some(e)) => e.clone(),
        (None, None) => String::new(),
    }
}

/// `GET /channels/{name}?q=&before=`
pub async fn list(
    State(console): State<Arc<Console>>,
    Extension(session): Extension<Session>,
    Path(raw): Path<String>,
    Query(q): Query<ListQuery>,
) -> PageResult {
    let name = channel_name(&console, &raw)?;
    let search = q.q.as_deref().map(str::trim).filter(|s| !s.is_empty());
    let before = match q.before.as_deref() {
        None | Some("") => None,
        Some(raw) => {
            let c = PageCursor::decode(raw, &console.cursor_key)
                .map_err(|e| PageError::bad(&console, e.to_string()))?;
            c.continues(&name, None, None)
                .map_err(|e| PageError::bad(&console, e.to_string()))?;
            c.after
        }
    };
    let now = Utc::now();
    let feed = console.feed.as_ref();
    let page_ = channel::browse(feed, &name, search, before, PAGE, SEARCH_SCAN, now)
        .await
        .map_err(|e| PageError::from_store(&console, e))?;
    let weeks = channel::closed_per_week(feed, &name, WEEKS, now)
        .await
        .map_err(|e| PageError::from_store(&console, e))?;
    let older = page_.next.map(|after| {
        PageCursor {
            channel: name.clone(),
            connection: None,
            since: None,
            after: Some(after),
        }
        .encode(&console.cursor_key)
    });
    let base = &console.base;
    let here = format!("{base}/channels/{}", encode(name.as_str()));
    let body = html! {
        h1 { "Channel: " (name) }
        h2 { "Closed Cases per week" }
        (views::svg(chart::weekly(&weeks)))
        form.search method="get" action=(here) role="search" {
            div {
                label for="q" { "Search" }
                input id="q" type="search" name="q" value=(search.unwrap_or(""))
                    placeholder="Subject, participant or conversation text";
            }
            button type="submit" { "Search" }
        }
        @if let Some(s) = search { p.muted { "Data points matching \u{201c}" (s) "\u{201d}, newest first." } }
        @else { p.muted { "Data points, newest first." } }
        @if page_.points.is_empty() {
            p { "No data point here yet." }
        } @else {
            table {
                thead { tr {
                    th scope="col" { "Case" } th scope="col" { "Subject" } th scope="col" { "Status" }
                    th scope="col" { "Priority" } th scope="col" { "Participant" } th scope="col" { "Last change" }
                } }
                tbody {
                    @for (entry, p) in &page_.points {
                        tr {
                            td { a href={ (here) "/points/" (p.id) } { (p.case_number) } }
                            td { (p.subject.as_deref().unwrap_or("(no subject)")) }
                            td { (p.status) }
                            td { (p.priority.as_deref().unwrap_or("")) }
                            td { (participant(p)) }
                            td { (when(entry.position.changed_at)) }
                        }
                    }
                }
            }
        }
        nav.pager aria-label="Pages" {
            @if q.before.is_some() { a href={ (here) @if let Some(s) = search { "?q=" (encode(s)) } } { "Newest" } }
            @if let Some(older) = older {
                a href={ (here) "?before=" (older) @if let Some(s) = search { "&q=" (encode(s)) } } { "Older" }
            }
        }
    };
    Ok(page(base, name.as_str(), Some(&session), body).into_response())
}

fn direction(d: Option<Direction>) -> (&'static str, &'static str) {
    match d {
        Some(Direction::Inbound) => ("inbound", "Inbound"),
        Some(Direction::Outbound) => ("outbound", "Outbound"),
        None => ("description", "Description"),
    }
}

fn thread(p: &DataPoint) -> Markup {
    html! {
        ol.thread aria-label="Conversation" {
            @for m in &p.conversation {
                @let (class, label) = direction(m.direction);
                li class=(class) {
                    div {
                        span.who {
                            (label) ": "
                            (match (&m.from_name, &m.from_address) {
                                (Some(n), Some(a)) => format!("{n} <{a}>"),
                                (Some(n), None) => n.clone(),
                                (None, Some(a)) => a.clone(),
                                (None, None) => String::new(),
                            })
                        }
                        " " span.muted { time datetime=(m.sent_at.to_rfc3339()) { (when(m.sent_at)) } }
                    }
                    @if let Some(s) = &m.subject { div.muted { (s) } }
                    div.text { (m.text) }
                }
            }
        }
    }
}

/// `GET /channels/{name}/points/{id}`
pub async fn point(
    State(console): State<Arc<Console>>,
    Extension(session): Extension<Session>,
    Path((raw_name, raw_id)): Path<(String, String)>,
) -> PageResult {
    let name = channel_name(&console, &raw_name)?;
    let not_found = || PageError::not_found(&console, "such data point");
    let id = uuid::Uuid::parse_str(&raw_id)
        .map_err(|_| not_found())?
        .hyphenated()
        .to_string();
    let stored = console
        .feed
        .by_id(&id)
        .await
        .map_err(|e| PageError::from_store(&console, e))?
        .ok_or_else(not_found)?;
    let p: DataPoint = serde_json::from_str(&stored.json).map_err(|_| not_found())?;
    if p.channel != name {
        return Err(not_found());
    }
    let base = &console.base;
    let opt = |v: &Option<String>| v.clone().unwrap_or_default();
    let body = html! {
        p { a href={ (base) "/channels/" (encode(name.as_str())) } { "Back to " (name) } }
        h1 { "Case " (p.case_number) ": " (p.subject.as_deref().unwrap_or("(no subject)")) }
        dl.meta {
            dt { "Status" } dd { (p.status) }
            dt { "Priority" } dd { (opt(&p.priority)) }
            dt { "Origin" } dd { (opt(&p.origin)) }
            dt { "Type" } dd { (opt(&p.case_type)) }
            dt { "Created" } dd { (when(p.created_date)) }
            dt { "Last saved in Salesforce" } dd { (when(p.system_modstamp)) }
            dt { "Participant" } dd { (participant(&p)) }
            dt { "Case id" } dd { (p.case_id) }
            dt { "Data point" } dd { (p.id) }
        }
        @if let Some(link) = safe_link(&p.salesforce_link) {
            p { a href=(link) rel="noopener noreferrer" target="_blank" { "Open in Salesforce" } }
        }
        h2 { "Conversation" }
        (thread(&p))
    };
    Ok(page(
        base,
        &format!("Case {}", p.case_number),
        Some(&session),
        body,
    )
    .into_response())
}
