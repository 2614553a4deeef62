//! Reading a channel: its data points in the order they last changed, page by page, for the
//! read API, the console and the CLI's export. Written once over the [`ChangeFeed`] port.
//!
//! # Completeness
//!
//! A consumer that keeps the `next` position of every page and asks again later receives every
//! create and every content update, including those written while it was paging:
//!
//! * every write stamps the point with the writer's clock when it is made, and a rewrite moves the
//!   point to a later position;
//! * a write can become visible to the feed at most [`ChangeFeed::visibility_lag`] after its
//!   stamp (the store says how long: the bound covers a write attempt's duration, clock skew
//!   between writers and index propagation);
//! * a page never reads closer to now than that lag ([`read_page`]), so every position below a
//!   page's `next` is final: no write still in flight can land behind a position already handed
//!   out.
//!
//! Deletes do not appear in the change order (the point is gone); consumers learn of them from
//! the change events.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretSlice};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::data_point::DataPoint;
use crate::domain::{ChannelName, ConnectionId};
use crate::ports::{
    ChangeEntry, ChangeFeed, ChangePosition, ChangeQuery, ConnectionReader, DataPointReader,
    StoreResult, StoredJson,
};
use std::collections::HashMap;

/// The most points a page may hold.
pub const MAX_PAGE_LIMIT: usize = 1000;
/// Points per page when the caller does not say.
pub const DEFAULT_PAGE_LIMIT: usize = 100;

/// One channel in the list of channels.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChannelSummary {
    pub name: ChannelName,
    /// Connections feeding it (in any state).
    pub connections: u64,
    pub data_points: u64,
}

/// Every channel a connection feeds, by name, with its connection and data point counts.
pub async fn channels(
    connections: &dyn ConnectionReader,
    points: &dyn DataPointReader,
) -> StoreResult<Vec<ChannelSummary>> {
    let mut out: Vec<ChannelSummary> = Vec::new();
    for c in connections.list_connections().await? {
        let n = points.count_data_points(&c.id).await?;
        match out.iter_mut().find(|s| s.name == c.channel) {
            Some(s) => {
                s.connections += 1;
                s.data_points += n;
            }
            None => out.push(ChannelSummary {
                name: c.channel,
                connections: 1,
                data_points: n,
            }),
        }
    }
    out.sort_by(|a, b| a.name.as_str().cmp(b.name.as_str()));
    Ok(out)
}

/// What a page is asked for.
#[derive(Debug, Clone)]
pub struct PageRequest {
    pub channel: ChannelName,
    pub connection: Option<ConnectionId>,
    /// Changed at or after this instant.
    pub since: Option<DateTime<Utc>>,
    /// Strictly after this position (the previous page's `next`).
    pub after: Option<ChangePosition>,
    pub limit: usize,
    /// The most the page's points may cost inside a JSON string, in bytes (see
    /// [`ChangeEntry::escaped_len`]); `None`: no limit.
    pub budget: Option<u64>,
}

/// A page of a channel's change order.
#[derive(Debug, Clone)]
pub struct Page {
    /// The points, in change order, each its stored contract JSON.
    pub points: Vec<StoredJson>,
    /// Points too large for any page (one alone is over the budget), passed over in place:
    /// fetch each whole by its id.
    pub omitted: Vec<ChangeEntry>,
    /// Where the next page starts: the last position this page covered (points and omitted
    /// ones), or the request's own position when it covered none.
    pub next: Option<ChangePosition>,
}

/// Reads one page: up to `limit` points changed after `after` and at least the feed's
/// visibility lag before `now`, cut so that their cost stays within the budget. A page never
/// truncates a point: one that does not fit ends the page (the next page starts with it), and
/// one that could fit no page is listed in [`Page::omitted`].
pub async fn read_page(
    feed: &dyn ChangeFeed,
    request: &PageRequest,
    now: DateTime<Utc>,
) -> StoreResult<Page> {
    let until = now - feed.visibility_lag();
    let empty = Page {
        points: Vec::new(),
        omitted: Vec::new(),
        next: request.after.clone(),
    };
    if request.limit == 0 || request.since.is_some_and(|s| s >= until) {
        return Ok(empty);
    }
    let entries = feed
        .changes(&ChangeQuery {
            channel: request.channel.clone(),
            connection: request.connection.clone(),
            after: request.after.clone(),
            since: request.since,
            until,
            limit: request.limit.min(MAX_PAGE_LIMIT),
            budget: request.budget,
            descending: false,
        })
        .await?;
    let mut chosen = Vec::new();
    let mut omitted = Vec::new();
    let mut spent = 0u64;
    let mut next = request.after.clone();
    for point in entries {
        let entry = &point.entry;
        if let Some(budget) = request.budget {
            if entry.escaped_len > budget {
                next = Some(entry.position.clone());
                omitted.push(point.entry);
                continue;
            }
            if spent + entry.escaped_len > budget {
                break;
            }
        }
        spent += entry.escaped_len;
        next = Some(entry.position.clone());
        chosen.push(point);
    }
    // What did not come with its JSON is read now, in one go.
    let missing: Vec<ChangeEntry> = chosen
        .iter()
        .filter(|p| p.json.is_none())
        .map(|p| p.entry.clone())
        .collect();
    let mut read: HashMap<String, StoredJson> = if missing.is_empty() {
        HashMap::new()
    } else {
        feed.bodies(&missing)
            .await?
            .into_iter()
            .map(|s| (s.entry.position.id.clone(), s))
            .collect()
    };
    let points = chosen
        .into_iter()
        .filter_map(|p| match p.json {
            Some(json) => Some(StoredJson {
                entry: p.entry,
                json,
            }),
            None => read.remove(&p.entry.position.id),
        })
        .collect();
    Ok(Page {
        points,
        omitted,
        next,
    })
}

/// A page of the console's view of a channel: newest first, optionally only the points whose
/// text matches a search.
#[derive(Debug, Clone)]
pub struct Browse {
    pub points: Vec<(ChangeEntry, DataPoint)>,
    /// Where the next (older) page starts; `None` when there is nothing older.
    pub next: Option<ChangePosition>,
}

/// Whether a point's subject, participant or conversation holds `needle` (already lowercase).
fn matches(p: &DataPoint, needle: &str) -> bool {
    let has = |s: &Option<String>| {
        s.as_deref()
            .is_some_and(|s| s.to_lowercase().contains(needle))
    };
    has(&p.subject)
        || has(&p.participant.name)
        || has(&p.participant.email)
        || p.conversation.iter().any(|m| {
            m.text.to_lowercase().contains(needle) || has(&m.from_name) || has(&m.from_address)
        })
}

/// Points of `channel`, newest change first, before `before`: up to `limit` of them, only those
/// matching `search` (case-insensitive, over subject, participant and conversation) when given.
/// A search reads at most `scan` points per call and says where it stopped.
pub async fn browse(
    feed: &dyn ChangeFeed,
    channel: &ChannelName,
    search: Option<&str>,
    before: Option<ChangePosition>,
    limit: usize,
    scan: usize,
    now: DateTime<Utc>,
) -> StoreResult<Browse> {
    let needle = search
        .map(|s| s.trim().to_lowercase())
        .filter(|s| !s.is_empty());
    let mut out = Vec::new();
    let mut next = before;
    let mut scanned = 0usize;
    loop {
        let batch = limit
            .clamp(25, MAX_PAGE_LIMIT)
            .min(scan.saturating_sub(scanned).max(1));
        let listed = feed
            .changes(&ChangeQuery {
                channel: channel.clone(),
                connection: None,
                after: next.clone(),
                since: None,
                until: now - feed.visibility_lag(),
                limit: batch,
                budget: None,
                descending: true,
            })
            .await?;
        let exhausted = listed.len() < batch;
        let missing: Vec<ChangeEntry> = listed
            .iter()
            .filter(|p| p.json.is_none())
            .map(|p| p.entry.clone())
            .collect();
        let mut read: HashMap<String, String> = if missing.is_empty() {
            HashMap::new()
        } else {
            feed.bodies(&missing)
                .await?
                .into_iter()
                .map(|s| (s.entry.position.id, s.json))
                .collect()
        };
        for p in listed {
            next = Some(p.entry.position.clone());
            scanned += 1;
            let Some(json) = p.json.or_else(|| read.remove(&p.entry.position.id)) else {
                continue;
            };
            let Ok(point) = serde_json::from_str::<DataPoint>(&json) else {
                tracing::warn!(id = %p.entry.position.id, "a stored data point does not decode");
                continue;
            };
            if needle.as_deref().is_none_or(|n| matches(&point, n)) {
                out.push((p.entry, point));
                if out.len() >= limit {
                    return Ok(Browse { points: out, next });
                }
            }
        }
        if exhausted {
            return Ok(Browse {
                points: out,
                next: None,
            });
        }
        if scanned >= scan {
            return Ok(Browse { points: out, next });
        }
    }
}

/// Closed Cases per week (weeks start on Monday, UTC) over the last `weeks` weeks, by the
/// `SystemModstamp` of their data points (when they were closed or last saved), oldest first.
pub async fn closed_per_week(
    feed: &dyn ChangeFeed,
    channel: &ChannelName,
    weeks: u32,
    now: DateTime<Utc>,
) -> StoreResult<Vec<(chrono::NaiveDate, u64)>> {
    use chrono::Datelike;
    let this_week =
        now.date_naive() - chrono::TimeDelta::days(i64::from(now.weekday().num_days_from_monday()));
    let first = this_week - chrono::TimeDelta::weeks(i64::from(weeks.saturating_sub(1)));
    let since = first
        .and_hms_opt(0, 0, 0)
        .map(|t| t.and_utc())
        .unwrap_or(now);
    let mut counts: Vec<(chrono::NaiveDate, u64)> = (0..weeks)
        .map(|i| (first + chrono::TimeDelta::weeks(i64::from(i)), 0))
        .collect();
    for t in feed.modstamps(channel, since).await? {
        let day = t.date_naive();
        let week = day - chrono::TimeDelta::days(i64::from(day.weekday().num_days_from_monday()));
        if let Some(slot) = counts.iter_mut().find(|(w, _)| *w == week) {
            slot.1 += 1;
        }
    }
    Ok(counts)
}

/// Why a cursor was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CursorError {
    #[error("the cursor is not one this API issued (it is malformed, corrupted or forged)")]
    Invalid,
    #[error("the cursor belongs to another query: {0}")]
    OtherQuery(&'static str),
}

/// The key that signs cursors: a cursor is `base64url(json).base64url(HMAC-SHA256)`, so it is
/// opaque to read, and one that was altered, corrupted or made up is refused.
pub struct CursorKey(SecretSlice<u8>);

impl CursorKey {
    pub fn new(bytes: Vec<u8>) -> Self {
        Self(SecretSlice::from(bytes))
    }

    fn mac(&self) -> Hmac<Sha256> {
        Hmac::<Sha256>::new_from_slice(self.0.expose_secret())
            .expect("HMAC takes a key of any length")
    }
}

impl fmt::Debug for CursorKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CursorKey([REDACTED])")
    }
}

/// What a cursor remembers: the query it continues and where it stopped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct CursorBody {
    v: u8,
    ch: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    conn: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    since: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    at: Option<ChangePosition>,
}

/// A query and a position in it, as a signed, opaque cursor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageCursor {
    pub channel: ChannelName,
    pub connection: Option<ConnectionId>,
    pub since: Option<DateTime<Utc>>,
    pub after: Option<ChangePosition>,
}

impl PageCursor {
    pub fn encode(&self, key: &CursorKey) -> String {
        let body = CursorBody {
            v: 1,
            ch: self.channel.as_str().to_owned(),
            conn: self.connection.as_ref().map(|c| c.as_str().to_owned()),
            since: self.since,
            at: self.after.clone(),
        };
        let json = serde_json::to_vec(&body).expect("a cursor always serialises");
        let payload = URL_SAFE_NO_PAD.encode(json);
        let mut mac = key.mac();
        mac.update(payload.as_bytes());
        let tag = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
        format!("{payload}.{tag}")
    }

    pub fn decode(raw: &str, key: &CursorKey) -> Result<Self, CursorError> {
        if raw.len() > 2048 {
            return Err(CursorError::Invalid);
        }
        let (payload, tag) = raw.split_once('.').ok_or(CursorError::Invalid)?;
        let tag = URL_SAFE_NO_PAD
            .decode(tag)
            .map_err(|_| CursorError::Invalid)?;
        let mut mac = key.mac();
        mac.update(payload.as_bytes());
        mac.verify_slice(&tag).map_err(|_| CursorError::Invalid)?;
        let json = URL_SAFE_NO_PAD
            .decode(payload)
            .map_err(|_| CursorError::Invalid)?;
        let body: CursorBody = serde_json::from_slice(&json).map_err(|_| CursorError::Invalid)?;
        if body.v != 1 {
            return Err(CursorError::Invalid);
        }
        Ok(Self {
            channel: ChannelName::parse(&body.ch).map_err(|_| CursorError::Invalid)?,
            connection: body
                .conn
                .map(|c| ConnectionId::parse(&c))
                .transpose()
                .map_err(|_| CursorError::Invalid)?,
            since: body.since,
            after: body.at,
        })
    }

    /// Checks that the cursor continues the query a request names (parameters a request
    /// leaves out are taken from the cursor).
    pub fn continues(
        &self,
        channel: &ChannelName,
        connection: Option<&ConnectionId>,
        since: Option<DateTime<Utc>>,
    ) -> Result<(), CursorError> {
        if &self.channel != channel {
            return Err(CursorError::OtherQuery("another channel"));
        }
        if connection.is_some() && connection != self.connection.as_ref() {
            return Err(CursorError::OtherQuery("another connection filter"));
        }
        if since.is_some() && since != self.since {
            return Err(CursorError::OtherQuery("another changed_since"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data_point::{ContentSource, Message, Participant};
    use crate::domain::CaseId;
    use crate::memory::MemoryStore;
    use crate::ports::DataPointWriter;

    fn point(i: usize, subject: &str, text: &str) -> DataPoint {
        let connection = ConnectionId::parse("conn_0123456789abcdef0123456789abcdef").unwrap();
        let case = CaseId::parse(&format!("500xx{i:010}")).unwrap();
        let at: DateTime<Utc> = "2024-03-04T17:00:00Z".parse().unwrap();
        DataPoint {
            id: DataPoint::id_for(&connection, &case),
            connection_id: connection,
            channel: ChannelName::parse("Support").unwrap(),
            case_id: case,
            case_number: format!("{i:08}"),
            subject: Some(subject.into()),
            status: "Closed".into(),
            priority: None,
            origin: None,
            case_type: None,
            created_date: at,
            system_modstamp: at + chrono::TimeDelta::weeks(i as i64 % 3),
            salesforce_link: "https://acme.my.salesforce.com/x".into(),
            participant: Participant {
                email: Some(format!("person{i}@example.com")),
                name: None,
            },
            content_source: ContentSource::EmailThread,
            conversation: vec![Message {
                message_id: None,
                direction: None,
                from_address: None,
                from_name: None,
                to_address: None,
                sent_at: at,
                subject: None,
                text: text.into(),
            }],
        }
    }

    async fn store() -> MemoryStore {
        let s = MemoryStore::new();
        for i in 0..30 {
            let text = if i % 10 == 3 {
                "The PRINTER jammed"
            } else {
                "all good"
            };
            s.upsert_data_points(&[point(i, &format!("Case {i}"), text)])
                .await
                .unwrap();
        }
        s
    }

    #[tokio::test]
    async fn browsing_goes_newest_first_page_by_page() {
        let s = store().await;
        let channel = ChannelName::parse("Support").unwrap();
        let later = Utc::now() + chrono::TimeDelta::minutes(1);
        let first = browse(&s, &channel, None, None, 12, 1000, later)
            .await
            .unwrap();
        let numbers: Vec<&str> = first
            .points
            .iter()
            .map(|(_, p)| p.case_number.as_str())
            .collect();
        assert_eq!(numbers[0], "00000029", "the newest first");
        assert_eq!(numbers.len(), 12);
        let mut seen = numbers.len();
        let mut next = first.next;
        while let Some(before) = next {
            let page = browse(&s, &channel, None, Some(before), 12, 1000, later)
                .await
                .unwrap();
            seen += page.points.len();
            next = page.next;
        }
        assert_eq!(seen, 30);
    }

    #[tokio::test]
    async fn a_search_matches_subject_participant_and_text_case_insensitively() {
        let s = store().await;
        let channel = ChannelName::parse("Support").unwrap();
        let later = Utc::now() + chrono::TimeDelta::minutes(1);
        let printer = browse(&s, &channel, Some("printer"), None, 50, 1000, later)
            .await
            .unwrap();
        let mut cases: Vec<&str> = printer
            .points
            .iter()
            .map(|(_, p)| p.case_number.as_str())
            .collect();
        cases.sort();
        assert_eq!(cases, vec!["00000003", "00000013", "00000023"]);
        let by_email = browse(&s, &channel, Some("PERSON7@"), None, 50, 1000, later)
            .await
            .unwrap();
        assert_eq!(by_email.points.len(), 1);
        let by_subject = browse(&s, &channel, Some("case 2"), None, 50, 1000, later)
            .await
            .unwrap();
        assert_eq!(by_subject.points.len(), 11, "Case 2 and Case 20-29");
        // A bounded scan says where to go on.
        let partial = browse(&s, &channel, Some("printer"), None, 50, 5, later)
            .await
            .unwrap();
        assert!(partial.next.is_some());
    }

    #[tokio::test]
    async fn cases_are_counted_per_week() {
        let s = store().await;
        let channel = ChannelName::parse("Support").unwrap();
        let now: DateTime<Utc> = "2024-03-20T12:00:00Z".parse().unwrap();
        let weeks = closed_per_week(&s, &channel, 4, now).await.unwrap();
        assert_eq!(weeks.len(), 4);
        assert_eq!(
            weeks[3].0.to_string(),
            "2024-03-18",
            "this week starts on Monday"
        );
        let counts: Vec<u64> = weeks.iter().map(|(_, n)| *n).collect();
        // Weeks of 02-26, 03-04, 03-11, 03-18; the points are stamped 03-04, 03-11, 03-18.
        assert_eq!(counts, vec![0, 10, 10, 10]);
    }

    fn key() -> CursorKey {
        CursorKey::new(b"0123456789abcdef0123456789abcdef".to_vec())
    }

    fn cursor() -> PageCursor {
        PageCursor {
            channel: ChannelName::parse("Support / EMEA").unwrap(),
            connection: Some(ConnectionId::new_random()),
            since: Some("2024-03-01T00:00:00Z".parse().unwrap()),
            after: Some(ChangePosition {
                changed_at: "2024-03-04T17:00:00.123456Z".parse().unwrap(),
                id: "6b0c1f3e-5a57-4c5e-9a0e-2f64c1c7d5a1".into(),
            }),
        }
    }

    #[test]
    fn a_cursor_round_trips_and_reveals_nothing_in_plain_text() {
        let c = cursor();
        let raw = c.encode(&key());
        assert!(!raw.contains("Support"), "{raw}");
        assert!(
            raw.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        );
        assert_eq!(PageCursor::decode(&raw, &key()), Ok(c));
    }

    #[test]
    fn an_altered_or_forged_cursor_is_refused() {
        let raw = cursor().encode(&key());
        let (payload, tag) = raw.split_once('.').unwrap();
        // Another key, a flipped character, a payload from elsewhere, garbage.
        let other = CursorKey::new(b"another key entirely".to_vec());
        assert_eq!(PageCursor::decode(&raw, &other), Err(CursorError::Invalid));
        let mut flipped = payload.to_owned().into_bytes();
        flipped[3] = if flipped[3] == b'A' { b'B' } else { b'A' };
        let flipped = format!("{}.{tag}", String::from_utf8(flipped).unwrap());
        assert_eq!(
            PageCursor::decode(&flipped, &key()),
            Err(CursorError::Invalid)
        );
        let forged_payload = URL_SAFE_NO_PAD.encode(br#"{"v":1,"ch":"Support"}"#);
        assert_eq!(
            PageCursor::decode(&format!("{forged_payload}.{tag}"), &key()),
            Err(CursorError::Invalid)
        );
        for junk in ["", ".", "abc", "abc.def", "%%%.%%%", &"x".repeat(5000)] {
            assert_eq!(
                PageCursor::decode(junk, &key()),
                Err(CursorError::Invalid),
                "{junk}"
            );
        }
    }

    #[test]
    fn a_cursor_only_continues_its_own_query() {
        let c = cursor();
        assert_eq!(c.continues(&c.channel, None, None), Ok(()));
        assert_eq!(
            c.continues(&c.channel, c.connection.as_ref(), c.since),
            Ok(())
        );
        let other = ChannelName::parse("Billing").unwrap();
        assert!(c.continues(&other, None, None).is_err());
        assert!(
            c.continues(&c.channel, Some(&ConnectionId::new_random()), None)
                .is_err()
        );
        assert!(c.continues(&c.channel, None, Some(Utc::now())).is_err());
    }
}
