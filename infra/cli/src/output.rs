//! Output: what commands print, and how. Results go to stdout (scripts read them); progress,
//! prompts and guidance go to stderr.

use std::time::Duration;

use casesync_core::domain::{Connection, Cursor};
use casesync_core::sync::{SyncCounts, SyncOutcome};
use chrono::{DateTime, Utc};

use crate::worker::ConnectionResult;

/// `println!` that does not panic when stdout is closed (`casesync status | head -n 1`).
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}
pub(crate) use outln;

/// An instant for people: RFC 3339 in UTC, whole seconds.
pub fn instant(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// A cursor as `2024-03-04T17:00:00Z (after Case 500...)`.
pub fn cursor(c: &Cursor) -> String {
    match &c.case_id {
        Some(id) => format!("{} (after Case {id})", instant(c.system_modstamp)),
        None => format!("{} (start)", instant(c.system_modstamp)),
    }
}

/// A short duration: `850 ms`, `12.4 s`, `3 min 05 s`.
pub fn duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1_000 {
        format!("{ms} ms")
    } else if ms < 60_000 {
        format!("{:.1} s", d.as_secs_f64())
    } else {
        format!("{} min {:02} s", d.as_secs() / 60, d.as_secs() % 60)
    }
}

/// `73 Cases imported (73 new, 0 updated, 0 unchanged), 2 pages, 5 API calls`.
pub fn counts(c: &SyncCounts) -> String {
    let mut s = format!(
        "{} new, {} updated, {} unchanged; {} {}, {} API {}",
        c.created,
        c.updated,
        c.unchanged,
        c.pages,
        plural(c.pages, "page", "pages"),
        c.api_calls,
        plural(c.api_calls, "call", "calls"),
    );
    if c.failed > 0 {
        s.push_str(&format!(
            "; {} {} could not be imported (retried on later syncs)",
            c.failed,
            plural(c.failed, "Case", "Cases")
        ));
    }
    s
}

pub fn plural<'a>(n: u64, one: &'a str, many: &'a str) -> &'a str {
    if n == 1 { one } else { many }
}

/// `conn_... (support)`.
pub fn label(c: &Connection) -> String {
    format!("{} ({})", c.id, c.channel)
}

/// One line saying how syncing a connection went, and what to do about it.
pub fn sync_result(r: &ConnectionResult) -> String {
    let who = label(&r.connection);
    let error = r.error.as_deref().unwrap_or("no details");
    let runs = if r.runs > 1 {
        format!(" in {} runs", r.runs)
    } else {
        String::new()
    };
    match r.outcome {
        SyncOutcome::Done | SyncOutcome::MoreWork => format!(
            "{who}: synced{runs} in {}: {}; cursor {}",
            duration(r.elapsed),
            counts(&r.counts),
            instant(r.cursor.system_modstamp)
        ),
        SyncOutcome::Busy => format!(
            "{who}: skipped: it is being synced by another casesync process right now, which \
             imports its Cases ({error})"
        ),
        SyncOutcome::RateLimited => format!(
            "{who}: stopped by Salesforce's API limit after {}: {error}. The cursor is kept; a \
             later sync resumes",
            counts(&r.counts)
        ),
        SyncOutcome::NeedsReauth => format!(
            "{who}: needs re-authorization: {error}. Run: casesync connect --reauthorize {}",
            r.connection.id
        ),
        SyncOutcome::Disconnected => format!("{who}: not synced: disconnected ({error})"),
        SyncOutcome::Failed => format!(
            "{who}: failed after {}: {error}. The cursor holds the last saved page; run \
             `casesync doctor {}` to investigate",
            counts(&r.counts),
            r.connection.id
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_naturally() {
        assert_eq!(duration(Duration::from_millis(850)), "850 ms");
        assert_eq!(duration(Duration::from_millis(12_400)), "12.4 s");
        assert_eq!(duration(Duration::from_secs(185)), "3 min 05 s");
    }
}
