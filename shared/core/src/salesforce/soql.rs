//! SOQL, built by code. Nothing a user or Salesforce typed is ever pasted into a query: ids are
//! parsed types (letters and digits only), datetimes are formatted here, and the only free text
//! is fixed in this file.

use chrono::{DateTime, Utc};

use crate::domain::{CaseId, Cursor, QueueId, QueueScope};

/// A SOQL statement that can only be built by the functions of this module.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Soql(String);

impl Soql {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for Soql {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The Case fields and the email subquery, in the order the data point contract needs them.
const CASE_FIELDS: &str = "Id, CaseNumber, Subject, Status, Priority, Origin, Type, CreatedDate, \
    SystemModstamp, Description, ContactEmail, Contact.Name, OwnerId, \
    (SELECT Id, MessageDate, FromAddress, FromName, ToAddress, Incoming, Subject, TextBody, HtmlBody \
    FROM EmailMessages ORDER BY MessageDate ASC, Id ASC)";

/// Salesforce refuses a request line plus headers over 16,384 bytes (414/431, with an HTML body).
/// Queries are kept to this many bytes of URL, leaving room for the headers.
pub const MAX_URL_BYTES: usize = 14_000;

/// An unquoted UTC datetime literal: `2024-03-04T17:00:00Z`, with milliseconds only when the
/// value has them (SOQL rejects microseconds).
pub fn datetime_literal(t: DateTime<Utc>) -> String {
    if t.timestamp_subsec_millis() == 0 {
        t.format("%Y-%m-%dT%H:%M:%SZ").to_string()
    } else {
        t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
    }
}

/// A quoted string literal for an id. Ids hold only `[0-9A-Za-z]` by construction, so no
/// escaping can be needed; the assertion documents that and guards future id types.
fn id_literal(id: &str) -> String {
    debug_assert!(id.bytes().all(|b| b.is_ascii_alphanumeric()));
    format!("'{id}'")
}

/// Which Cases a query covers by owner: every queue, or one chunk of a specific list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OwnerFilter {
    AnyQueue,
    Queues(Vec<QueueId>),
}

impl OwnerFilter {
    fn clause(&self) -> String {
        match self {
            Self::AnyQueue => "Owner.Type = 'Queue'".to_owned(),
            Self::Queues(ids) => {
                let list: Vec<String> = ids.iter().map(|q| id_literal(q.as_str())).collect();
                format!("OwnerId IN ({})", list.join(", "))
            }
        }
    }
}

/// The bounds of one incremental read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Window {
    /// Read strictly after this position (keyset on `(SystemModstamp, Id)`).
    pub after: Cursor,
    /// Everything at or before this instant is already read (set when a narrowed window
    /// completed; `None` otherwise).
    pub floor: Option<DateTime<Utc>>,
    /// Never read newer than this (now − lag, or a narrowed window's end).
    pub until: DateTime<Utc>,
}

fn keyset(after: &Cursor) -> String {
    let t = datetime_literal(after.system_modstamp);
    match &after.case_id {
        Some(id) => format!(
            "(SystemModstamp > {t} OR (SystemModstamp = {t} AND Id > {}))",
            id_literal(id.as_str())
        ),
        None => format!("SystemModstamp >= {t}"),
    }
}

/// The incremental Case query: closed Cases in scope, after the cursor, not newer than `until`,
/// in keyset order.
pub fn cases(owner: &OwnerFilter, window: &Window) -> Soql {
    let mut q = format!(
        "SELECT {CASE_FIELDS} FROM Case WHERE Status = 'Closed' AND {} AND {}",
        owner.clause(),
        keyset(&window.after)
    );
    if let Some(floor) = window.floor {
        q.push_str(&format!(
            " AND SystemModstamp > {}",
            datetime_literal(floor)
        ));
    }
    q.push_str(&format!(
        " AND SystemModstamp <= {} ORDER BY SystemModstamp ASC, Id ASC",
        datetime_literal(window.until)
    ));
    Soql(q)
}

/// Specific Cases again (those that failed to map earlier), still closed and in scope.
pub fn cases_by_id(owner: &OwnerFilter, ids: &[CaseId], until: DateTime<Utc>) -> Soql {
    let list: Vec<String> = ids.iter().map(|c| id_literal(c.as_str())).collect();
    Soql(format!(
        "SELECT {CASE_FIELDS} FROM Case WHERE Id IN ({}) AND Status = 'Closed' AND {} \
         AND SystemModstamp <= {} ORDER BY SystemModstamp ASC, Id ASC",
        list.join(", "),
        owner.clause(),
        datetime_literal(until)
    ))
}

/// [`cases_by_id`] for any number of Cases: as few queries as fit under [`MAX_URL_BYTES`] once
/// URL-encoded behind `base_url_len` bytes, each holding as many ids as fit.
pub fn cases_by_ids(
    owner: &OwnerFilter,
    ids: &[CaseId],
    until: DateTime<Utc>,
    base_url_len: usize,
) -> Vec<Soql> {
    if ids.is_empty() {
        return Vec::new();
    }
    let probe = CaseId::parse("500000000000000AAA").expect("a valid probe id");
    let fixed = base_url_len
        + encoded_query_len(cases_by_id(owner, std::slice::from_ref(&probe), until).as_str());
    // Each further id adds `, '500...'`: 18 + 2 quotes (3 bytes each encoded) + comma (3) + space (1).
    const PER_ID: usize = 18 + 3 + 3 + 3 + 1;
    let per_chunk = 1 + MAX_URL_BYTES.saturating_sub(fixed) / PER_ID;
    ids.chunks(per_chunk)
        .map(|c| cases_by_id(owner, c, until))
        .collect()
}

/// The queues the authorizing user can see.
pub fn queues() -> Soql {
    Soql("SELECT Id, Name, DeveloperName FROM Group WHERE Type = 'Queue' ORDER BY Name".to_owned())
}

/// The given queues, to check that each exists and is visible.
pub fn queues_by_id(ids: &[QueueId]) -> Soql {
    let list: Vec<String> = ids.iter().map(|q| id_literal(q.as_str())).collect();
    Soql(format!(
        "SELECT Id, Name, DeveloperName FROM Group WHERE Type = 'Queue' AND Id IN ({}) ORDER BY Name",
        list.join(", ")
    ))
}

/// How many closed Cases the owner filter matches, stamped in `[since, until]`.
pub fn count_closed(owner: &OwnerFilter, since: DateTime<Utc>, until: DateTime<Utc>) -> Soql {
    Soql(format!(
        "SELECT COUNT() FROM Case WHERE Status = 'Closed' AND {} AND SystemModstamp >= {} \
         AND SystemModstamp <= {}",
        owner.clause(),
        datetime_literal(since),
        datetime_literal(until)
    ))
}

/// How many closed Cases stamped in `[since, until]` are owned by users: no queue filter can
/// import them, which is the usual reason for "authentication works but nothing imports".
pub fn count_closed_user_owned(since: DateTime<Utc>, until: DateTime<Utc>) -> Soql {
    Soql(format!(
        "SELECT COUNT() FROM Case WHERE Status = 'Closed' AND Owner.Type = 'User' \
         AND SystemModstamp >= {} AND SystemModstamp <= {}",
        datetime_literal(since),
        datetime_literal(until)
    ))
}

/// The URL-encoded length of `?q=<soql>` (spaces as `+`, reserved bytes as `%XX`).
pub fn encoded_query_len(soql: &str) -> usize {
    3 + soql
        .bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'*' | b' ' => 1,
            _ => 3,
        })
        .sum::<usize>()
}

/// Splits a queue scope into owner filters whose Case query stays under [`MAX_URL_BYTES`] once
/// URL-encoded behind `base_url_len` bytes of `https://host/services/data/vXX.X/query`.
pub fn owner_filters(scope: &QueueScope, base_url_len: usize) -> Vec<OwnerFilter> {
    let ids = match scope {
        QueueScope::All => return vec![OwnerFilter::AnyQueue],
        QueueScope::Specific(ids) => ids,
    };
    // The longest query a chunk can be part of: a keyset with an id and a floor.
    let probe_window = Window {
        after: Cursor::new(
            DateTime::<Utc>::MAX_UTC,
            CaseId::parse("500000000000000AAA").expect("a valid probe id"),
        ),
        floor: Some(DateTime::<Utc>::MAX_UTC),
        until: DateTime::<Utc>::MAX_UTC,
    };
    let fixed = base_url_len
        + encoded_query_len(cases(&OwnerFilter::Queues(Vec::new()), &probe_window).as_str());
    // Each id adds `'00G...', ` = 18 + 2 quotes (3 bytes each encoded) + comma (3) + space (1).
    const PER_ID: usize = 18 + 3 + 3 + 3 + 1;
    let per_chunk = (MAX_URL_BYTES.saturating_sub(fixed) / PER_ID).max(1);
    ids.chunks(per_chunk)
        .map(|c| OwnerFilter::Queues(c.to_vec()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn the_incremental_query_is_exactly_the_documented_shape() {
        let window = Window {
            after: Cursor::new(
                t("2024-03-04T17:00:00Z"),
                CaseId::parse("500xx000003DHb0AAG").unwrap(),
            ),
            floor: None,
            until: t("2024-03-05T09:55:00Z"),
        };
        assert_eq!(
            cases(&OwnerFilter::AnyQueue, &window).as_str(),
            "SELECT Id, CaseNumber, Subject, Status, Priority, Origin, Type, CreatedDate, \
             SystemModstamp, Description, ContactEmail, Contact.Name, OwnerId, \
             (SELECT Id, MessageDate, FromAddress, FromName, ToAddress, Incoming, Subject, \
             TextBody, HtmlBody FROM EmailMessages ORDER BY MessageDate ASC, Id ASC) \
             FROM Case WHERE Status = 'Closed' AND Owner.Type = 'Queue' AND \
             (SystemModstamp > 2024-03-04T17:00:00Z OR (SystemModstamp = 2024-03-04T17:00:00Z \
             AND Id > '500xx000003DHb0AAG')) AND SystemModstamp <= 2024-03-05T09:55:00Z \
             ORDER BY SystemModstamp ASC, Id ASC"
        );
    }

    #[test]
    fn a_fresh_cursor_reads_from_its_instant_inclusive_and_a_floor_is_exclusive() {
        let window = Window {
            after: Cursor::at(t("2024-01-01T00:00:00Z")),
            floor: Some(t("2024-01-02T00:00:00Z")),
            until: t("2024-01-03T00:00:00Z"),
        };
        let q = cases(
            &OwnerFilter::Queues(vec![QueueId::parse("00Gxx000000ABCD").unwrap()]),
            &window,
        );
        assert!(
            q.as_str().contains(
                "OwnerId IN ('00Gxx000000ABCDEA4') AND SystemModstamp >= 2024-01-01T00:00:00Z \
             AND SystemModstamp > 2024-01-02T00:00:00Z AND SystemModstamp <= 2024-01-03T00:00:00Z"
            ),
            "{q}"
        );
    }

    #[test]
    fn datetimes_are_unquoted_utc_with_milliseconds_only_when_present() {
        let whole = Utc.with_ymd_and_hms(2024, 1, 2, 3, 4, 5).unwrap();
        assert_eq!(datetime_literal(whole), "2024-01-02T03:04:05Z");
        let ms = whole + chrono::TimeDelta::milliseconds(7);
        assert_eq!(datetime_literal(ms), "2024-01-02T03:04:05.007Z");
        let micros = whole + chrono::TimeDelta::microseconds(7_123);
        assert_eq!(datetime_literal(micros), "2024-01-02T03:04:05.007Z");
    }

    #[test]
    fn long_queue_lists_are_split_so_every_request_stays_under_the_limit() {
        let ids: Vec<QueueId> = (0..2_000)
            .map(|i| QueueId::parse(&format!("00G{:012}", i)).unwrap())
            .collect();
        let base = "https://acme.my.salesforce.com/services/data/v59.0/query".len();
        let filters = owner_filters(&QueueScope::specific(ids.clone()).unwrap(), base);
        assert!(filters.len() > 1);
        let mut seen = 0;
        for f in &filters {
            let OwnerFilter::Queues(chunk) = f else {
                panic!("specific scope")
            };
            seen += chunk.len();
            let window = Window {
                after: Cursor::new(
                    Utc.with_ymd_and_hms(2024, 1, 1, 0, 0, 0).unwrap(),
                    CaseId::parse("500xx000003DHb0AAG").unwrap(),
                ),
                floor: Some(Utc.with_ymd_and_hms(2024, 1, 1, 0, 0, 0).unwrap()),
                until: Utc.with_ymd_and_hms(2024, 1, 1, 0, 0, 0).unwrap(),
            };
            let len = base + encoded_query_len(cases(f, &window).as_str());
            assert!(len <= MAX_URL_BYTES, "{len}");
        }
        assert_eq!(seen, 2_000);
        assert_eq!(
            owner_filters(&QueueScope::All, base),
            vec![OwnerFilter::AnyQueue]
        );
    }

    #[test]
    fn cases_by_ids_fill_each_query_up_to_the_url_limit() {
        let ids: Vec<CaseId> = (0..2_000)
            .map(|i| CaseId::parse(&format!("500xx{i:010}")).unwrap())
            .collect();
        let base = "https://acme.my.salesforce.com/services/data/v59.0/query".len();
        let until = t("2024-03-04T17:00:00Z");
        let queries = cases_by_ids(&OwnerFilter::AnyQueue, &ids, until, base);
        assert!(queries.len() > 1 && queries.len() < 10, "{}", queries.len());
        let mut seen = 0;
        for q in &queries {
            assert!(base + encoded_query_len(q.as_str()) <= MAX_URL_BYTES);
            seen += q.as_str().matches("'500xx").count();
        }
        assert_eq!(seen, ids.len(), "every id in exactly one query");
        // All but the last are full: one more id would not fit.
        let first = &queries[0];
        assert!(base + encoded_query_len(first.as_str()) + 28 > MAX_URL_BYTES);
        assert!(cases_by_ids(&OwnerFilter::AnyQueue, &[], until, base).is_empty());
    }

    #[test]
    fn encoded_length_matches_form_encoding() {
        let soql =
            "SELECT Id FROM Case WHERE SystemModstamp > 2024-01-01T00:00:00+00:00 AND Id = 'x'";
        let encoded = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("q", soql)
            .finish();
        assert_eq!(encoded_query_len(soql), encoded.len() + 1);
    }
}
