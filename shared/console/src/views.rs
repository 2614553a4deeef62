//! The page layout and the small pieces every page uses. maud escapes every value it renders:
//! whatever a Case holds arrives in the browser as text.

use casesync_core::domain::{Connection, ConnectionState};
use chrono::{DateTime, Utc};
use maud::{DOCTYPE, Markup, PreEscaped, html};

use crate::Session;

/// A one-line notice at the top of a page, after an action.
#[derive(Debug, Clone)]
pub struct Flash(pub String);

/// Every page: header, navigation, main content.
pub fn page(base: &str, title: &str, session: Option<&Session>, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · casesync" }
                link rel="stylesheet" href={ (base) "/assets/console.css" };
                script src={ (base) "/assets/console.js" } defer {}
            }
            body data-base=(base) {
                header.top {
                    a.brand href={ (base) "/sources" } { "casesync" }
                    nav aria-label="Main" {
                        a href={ (base) "/sources" } { "Sources" }
                    }
                    @if let Some(s) = session {
                        span.user { (s.user) }
                        @if s.can_sign_out {
                            form method="post" action={ (base) "/sign-out" } {
                                input type="hidden" name="csrf" value=(s.csrf);
                                button type="submit" { "Sign out" }
                            }
                        }
                    }
                }
                main id="main" { (body) }
            }
        }
    }
}

/// A page that only says what went wrong.
pub fn error_page(base: &str, title: &str, message: &str) -> Markup {
    page(
        base,
        title,
        None,
        html! {
            h1 { (title) }
            p role="alert" { (message) }
            p { a href={ (base) "/sources" } { "Back to Sources" } }
        },
    )
}

/// The CSRF field every form carries.
pub fn csrf_field(session: &Session) -> Markup {
    html! { input type="hidden" name="csrf" value=(session.csrf); }
}

/// How a source is named: the product it is, and the org's host.
pub fn source_name(c: &Connection) -> String {
    let host = url::Url::parse(c.instance_url.as_str())
        .ok()
        .and_then(|u| {
            u.host_str().map(|h| match u.port() {
                Some(p) => format!("{h}:{p}"),
                None => h.to_owned(),
            })
        })
        .unwrap_or_else(|| c.instance_url.to_string());
    format!("Salesforce ({host})")
}

/// A state in words.
pub fn state_text(state: ConnectionState) -> &'static str {
    match state {
        ConnectionState::Active => "Active",
        ConnectionState::Disconnected => "Disconnected",
        ConnectionState::NeedsReauth => "Needs re-authorization",
        ConnectionState::Pending => "Waiting for its import settings",
    }
}

/// An instant as people read it.
pub fn when(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M UTC").to_string()
}

/// A link target built from text that came from outside: only `https` (and `http`, for the
/// simulator on loopback) URLs become links; anything else (`javascript:`, `data:`, relative
/// paths) is shown as text instead.
pub fn safe_link(raw: &str) -> Option<String> {
    let url = url::Url::parse(raw).ok()?;
    match url.scheme() {
        "https" => Some(url.to_string()),
        "http" if matches!(url.host_str(), Some("127.0.0.1" | "localhost" | "[::1]")) => {
            Some(url.to_string())
        }
        _ => None,
    }
}

/// A notice, if any.
pub fn flash(f: Option<&Flash>) -> Markup {
    html! {
        @if let Some(Flash(text)) = f {
            p.flash role="status" { (text) }
        }
    }
}

/// An inline SVG, already built from numbers only.
pub fn svg(markup: String) -> Markup {
    PreEscaped(markup)
}
