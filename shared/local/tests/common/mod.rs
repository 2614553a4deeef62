//! Fixtures shared by the integration tests.
#![allow(dead_code)]

use casesync_core::data_point::{ContentSource, DataPoint, Direction, Message, Participant};
use casesync_core::domain::{
    ApiVersion, BackfillWindow, CaseId, ChannelName, Connection, ConnectionId, InstanceUrl,
    LoginUrl, QueueScope,
};
use casesync_local::SqliteStore;
use chrono::{DateTime, TimeDelta, TimeZone, Utc};

pub fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2024, 3, 4, 17, 0, 0).unwrap()
}

pub fn secs(n: i64) -> DateTime<Utc> {
    t0() + TimeDelta::seconds(n)
}

pub fn connection() -> Connection {
    Connection::new(
        ConnectionId::new_random(),
        ChannelName::parse("support").unwrap(),
        LoginUrl::default(),
        InstanceUrl::parse("https://acme.my.salesforce.com").unwrap(),
        ApiVersion::DEFAULT,
        QueueScope::All,
        BackfillWindow::Days30,
        // Nanoseconds: the store must round-trip them exactly.
        t0() + TimeDelta::nanoseconds(123_456_789),
    )
}

/// The n-th Case id: `500xx` and ten digits, so numeric order is id order.
pub fn case(n: u64) -> CaseId {
    CaseId::parse(&format!("500xx{n:010}")).unwrap()
}

/// A data point of about `size` bytes of JSON, stamped `modstamp`.
pub fn point(
    connection: &ConnectionId,
    case_id: &CaseId,
    modstamp: DateTime<Utc>,
    size: usize,
) -> DataPoint {
    let message = |i: usize, text: String| Message {
        message_id: Some(format!("02sxx00000{i:05}")),
        direction: Some(if i.is_multiple_of(2) {
            Direction::Inbound
        } else {
            Direction::Outbound
        }),
        from_address: Some("jane@example.com".into()),
        from_name: Some("Jane Doe".into()),
        to_address: Some("support@acme.com".into()),
        sent_at: modstamp - TimeDelta::minutes(i as i64),
        subject: Some("Printer on fire".into()),
        text,
    };
    let chunk = 1_000;
    let n = size.div_ceil(chunk).max(1);
    let conversation = (0..n)
        .map(|i| {
            message(
                i,
                format!("Message {i} of Case {case_id}. ")
                    .repeat(chunk / 30)
                    .chars()
                    .take(chunk)
                    .collect(),
            )
        })
        .collect();
    DataPoint {
        id: DataPoint::id_for(connection, case_id),
        connection_id: connection.clone(),
        channel: ChannelName::parse("support").unwrap(),
        case_id: case_id.clone(),
        case_number: "00001026".into(),
        subject: Some("Printer on fire".into()),
        status: "Closed".into(),
        priority: Some("High".into()),
        origin: Some("Email".into()),
        case_type: None,
        created_date: t0() - TimeDelta::days(3),
        system_modstamp: modstamp,
        salesforce_link: format!("https://acme.my.salesforce.com/lightning/r/Case/{case_id}/view"),
        participant: Participant {
            email: Some("jane@example.com".into()),
            name: Some("Jane Doe".into()),
        },
        content_source: ContentSource::EmailThread,
        conversation,
    }
}

pub fn small_point(connection: &ConnectionId, n: u64, modstamp: DateTime<Utc>) -> DataPoint {
    point(connection, &case(n), modstamp, 500)
}

pub fn temp_store() -> (tempfile::TempDir, SqliteStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path().join("casesync.db")).unwrap();
    (dir, store)
}

/// The `revision` column of a data point row (1 when created, +1 per rewrite), read with a
/// connection of its own.
pub fn revision(store: &SqliteStore, connection: &ConnectionId, case_id: &CaseId) -> Option<i64> {
    let db = rusqlite::Connection::open(store.path()).unwrap();
    db.query_row(
        "SELECT revision FROM data_points WHERE connection_id = ?1 AND case_id = ?2",
        [connection.as_str(), case_id.as_str()],
        |r| r.get(0),
    )
    .ok()
}
