//! Salesforce change events (Change Data Capture), relayed by Salesforce's Event Relay to an
//! Amazon EventBridge partner event bus: what one says, and the work a batch of them makes.
//!
//! A `CaseChangeEvent` names the Cases a transaction changed (`ChangeEventHeader.recordIds`;
//! one event can name many: Salesforce merges changes). casesync does not trust an event's
//! field values (an event holds only the changed fields, and may arrive twice or out of order):
//! it fetches the named Cases, with the same query a sync uses, and upserts them under the
//! usual version check ([`crate::sync::SyncEngine::fetch_changes`]). So a duplicate costs at
//! most a query, an out-of-order event cannot bring back an older version, and an event for a
//! Case that is open, out of scope, deleted or invisible to the user changes nothing.
//!
//! Gap events (`GAP_*`: Salesforce could not produce the event's fields) and overflow events
//! (`GAP_OVERFLOW`: too many changes in one transaction to list) ask for the connection to be
//! synced now, through its keyset cursor, as a tick does; a gap event's Cases (it still names
//! them) are fetched too.
//!
//! `EmailMessageChangeEvent` (when the org relays it): a new email on a Case names the Case
//! through the event's `ParentId`, so a reply added to a closed Case refreshes its thread.
//!
//! Two envelope layouts are seen in the wild; both are read: the change event under
//! `detail.payload` (Event Relay), and its fields with `ChangeEventHeader` directly in
//! `detail`. The org is the third segment of the partner event source
//! (`aws.partner/salesforce.com/<org id>/<channel id>`), or the payload's header when the
//! source does not carry it.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::domain::{CaseId, Connection, ConnectionId, ConnectionState, OrgId};
use crate::ports::{WorkItem, WorkKind};

/// The partner event sources of Salesforce start with this.
pub const PARTNER_SOURCE_PREFIX: &str = "aws.partner/salesforce.com/";
/// Cases named by one work item at most: about what one query's URL holds (with the "any
/// queue" filter), so that an item costs one query and its pages.
pub const MAX_CASES_PER_ITEM: usize = 400;

/// What a change event did to its records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeType {
    Create,
    Update,
    Delete,
    Undelete,
    /// `GAP_CREATE`, `GAP_UPDATE`, `GAP_DELETE`, `GAP_UNDELETE`: the records changed, but the
    /// event holds none of their fields.
    Gap,
    /// `GAP_OVERFLOW`: more changes than one event can carry; `recordIds` is empty.
    Overflow,
}

impl ChangeType {
    pub fn parse(raw: &str) -> Option<Self> {
        Some(match raw {
            "CREATE" => Self::Create,
            "UPDATE" => Self::Update,
            "DELETE" => Self::Delete,
            "UNDELETE" => Self::Undelete,
            "GAP_OVERFLOW" => Self::Overflow,
            r if r.starts_with("GAP_") => Self::Gap,
            _ => return None,
        })
    }
}

/// One change event, as much of it as casesync uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangeEvent {
    pub org_id: OrgId,
    /// `Case`, `EmailMessage`, ...
    pub entity: String,
    pub change: ChangeType,
    /// `ChangeEventHeader.recordIds`, as sent (record ids of `entity`).
    pub record_ids: Vec<String>,
    /// An `EmailMessage` event's `ParentId` when it carries one (creates always do).
    pub parent_id: Option<String>,
    /// `ChangeEventHeader.commitTimestamp`.
    pub committed_at: Option<DateTime<Utc>>,
}

/// Why an EventBridge event is not a change event casesync can use.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventError {
    #[error("not a JSON object")]
    NotJson,
    #[error("no ChangeEventHeader in detail.payload or detail")]
    NoHeader,
    #[error("no Salesforce org id in the event source {event_source:?} or its header")]
    NoOrg { event_source: String },
    #[error("unknown changeType {0:?}")]
    UnknownChangeType(String),
    #[error("the header has no {0}")]
    Missing(&'static str),
}

fn org_from_source(source: &str) -> Option<OrgId> {
    let rest = source.strip_prefix(PARTNER_SOURCE_PREFIX)?;
    OrgId::parse(rest.split('/').next()?).ok()
}

/// Reads one EventBridge event (the JSON an EventBridge rule delivers to its target).
pub fn parse_event(raw: &str) -> Result<ChangeEvent, EventError> {
    let event: Value = serde_json::from_str(raw).map_err(|_| EventError::NotJson)?;
    let detail = event.get("detail").ok_or(EventError::NoHeader)?;
    // The fields and their header: under `payload` (Event Relay), or directly in `detail`.
    let fields = match detail.get("payload") {
        Some(p) if p.get("ChangeEventHeader").is_some() => p,
        _ => detail,
    };
    let header = fields
        .get("ChangeEventHeader")
        .filter(|h| h.is_object())
        .ok_or(EventError::NoHeader)?;
    let source = event.get("source").and_then(Value::as_str).unwrap_or("");
    let org_id = org_from_source(source)
        .or_else(|| {
            ["organizationId", "orgId"]
                .iter()
                .find_map(|k| header.get(*k).and_then(Value::as_str))
                .and_then(|o| OrgId::parse(o).ok())
        })
        .ok_or_else(|| EventError::NoOrg {
            event_source: source.chars().take(200).collect(),
        })?;
    let entity = header
        .get("entityName")
        .and_then(Value::as_str)
        .ok_or(EventError::Missing("entityName"))?
        .to_owned();
    let raw_type = header
        .get("changeType")
        .and_then(Value::as_str)
        .ok_or(EventError::Missing("changeType"))?;
    let change = ChangeType::parse(raw_type)
        .ok_or_else(|| EventError::UnknownChangeType(raw_type.chars().take(50).collect()))?;
    let record_ids = header
        .get("recordIds")
        .and_then(Value::as_array)
        .map(|ids| {
            ids.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    let committed_at = header
        .get("commitTimestamp")
        .and_then(Value::as_i64)
        .and_then(DateTime::from_timestamp_millis);
    let parent_id = fields
        .get("ParentId")
        .and_then(Value::as_str)
        .map(str::to_owned);
    Ok(ChangeEvent {
        org_id,
        entity,
        change,
        record_ids,
        parent_id,
        committed_at,
    })
}

/// What to do for one connection.
#[derive(Debug, Default)]
struct Wanted {
    cases: BTreeSet<CaseId>,
    resync: bool,
    latest: Option<DateTime<Utc>>,
}

/// The work a batch of change events makes, and what could not be routed.
#[derive(Debug, Default)]
pub struct Routed {
    /// At most one resync per connection, and its changed Cases in items of at most
    /// [`MAX_CASES_PER_ITEM`], each Case once.
    pub items: Vec<WorkItem>,
    /// Events of orgs no active connection belongs to, by org: nothing to do for them (a
    /// disconnected connection, or one whose org is not recorded yet: its next sync records
    /// it, and the polling sync covers the meanwhile).
    pub unrouted: BTreeMap<OrgId, usize>,
    /// Events about other objects, deleted records, or record ids that are not Cases.
    pub ignored: usize,
}

/// Routes a batch of change events to the active connections of their orgs (several
/// connections may import one org, e.g. into two channels).
///
/// Coalescing is what keeps a burst cheap: the Cases of every event in the batch are merged
/// per connection, so 10,000 changes in a minute become a few work items and a few queries,
/// not 10,000. Each item is stamped with the latest commit time among its events (or `at`), so
/// the same events delivered twice make the same item, which the FIFO queue's deduplication
/// drops.
pub fn route(events: &[ChangeEvent], connections: &[Connection], at: DateTime<Utc>) -> Routed {
    let mut routed = Routed::default();
    let mut by_org: BTreeMap<&OrgId, Vec<&ConnectionId>> = BTreeMap::new();
    for c in connections {
        if c.state == ConnectionState::Active
            && let Some(org) = &c.org_id
        {
            by_org.entry(org).or_default().push(&c.id);
        }
    }
    let mut wanted: BTreeMap<&ConnectionId, Wanted> = BTreeMap::new();
    for event in events {
        let Some(targets) = by_org.get(&event.org_id) else {
            *routed.unrouted.entry(event.org_id.clone()).or_default() += 1;
            continue;
        };
        // `500*`: every record of the object changed (a field type conversion).
        let wildcard = event.record_ids.iter().any(|r| r.ends_with('*'));
        if matches!(event.entity.as_str(), "Case" | "EmailMessage")
            && (wildcard || matches!(event.change, ChangeType::Gap | ChangeType::Overflow))
        {
            for id in targets {
                let w = wanted.entry(id).or_default();
                w.resync = true;
                w.latest = w.latest.max(event.committed_at);
            }
        }
        let cases: Vec<CaseId> = match (event.entity.as_str(), event.change) {
            // Too many to list: the resync covers them.
            (_, ChangeType::Overflow) => continue,
            // A deleted Case is no longer in Salesforce's query results; nothing to fetch.
            ("Case", ChangeType::Delete) => Vec::new(),
            ("Case", _) => event
                .record_ids
                .iter()
                .filter_map(|r| CaseId::parse(r).ok())
                .collect(),
            // A gap event's ids are emails', and its fields (the parent) are gone: the resync
            // covers it.
            ("EmailMessage", ChangeType::Gap) => continue,
            // A new (or changed) email: its Case's thread changed.
            ("EmailMessage", _) => event
                .parent_id
                .as_deref()
                .and_then(|p| CaseId::parse(p).ok())
                .into_iter()
                .collect(),
            _ => Vec::new(),
        };
        if cases.is_empty() {
            routed.ignored += 1;
            continue;
        }
        for id in targets {
            let w = wanted.entry(id).or_default();
            w.cases.extend(cases.iter().cloned());
            w.latest = w.latest.max(event.committed_at);
        }
    }
    for (id, w) in wanted {
        let stamp = w.latest.unwrap_or(at);
        if w.resync {
            routed.items.push(WorkItem {
                kind: WorkKind::Resync,
                ..WorkItem::tick(id.clone(), stamp)
            });
        }
        let cases: Vec<CaseId> = w.cases.into_iter().collect();
        for chunk in cases.chunks(MAX_CASES_PER_ITEM) {
            routed
                .items
                .push(WorkItem::changes(id.clone(), chunk.to_vec(), stamp));
        }
    }
    routed
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{
        ApiVersion, BackfillWindow, ChannelName, InstanceUrl, LoginUrl, QueueScope,
    };

    // 15-character ids: they parse to their 18-character form.
    const ORG: &str = "00D5e000000ABCD";
    const OTHER_ORG: &str = "00D5e000000ZZZZ";

    fn case(n: u32) -> String {
        CaseId::parse(&format!("5005e{n:010}"))
            .unwrap()
            .as_str()
            .to_owned()
    }

    fn relayed(org: &str, change: &str, ids: &[String]) -> String {
        serde_json::json!({
            "version": "0",
            "id": "6e6a6a3e-0000-4000-8000-000000000001",
            "detail-type": "CaseChangeEvent",
            "source": format!("aws.partner/salesforce.com/{org}/0YLbm0000000001GAA"),
            "account": "123456789012",
            "time": "2026-12-06T10:00:00Z",
            "region": "us-east-1",
            "resources": [],
            "detail": {
                "payload": {
                    "ChangeEventHeader": {
                        "entityName": "Case",
                        "recordIds": ids,
                        "changeType": change,
                        "changeOrigin": "com/salesforce/api/rest/59.0",
                        "transactionKey": "00051c9b-5f5e-4e2a-8b80-b2a6e2f3f1a1",
                        "sequenceNumber": 1,
                        "commitTimestamp": 1_796_551_200_000i64,
                        "commitNumber": 11_753_000_000u64,
                        "commitUser": "0055e000001AbCdAAK",
                        "changedFields": ["Status", "LastModifiedDate"],
                        "diffFields": [],
                        "nulledFields": []
                    },
                    "Status": "Closed",
                    "LastModifiedDate": "2026-12-06T10:00:00.000Z"
                },
                "schemaId": "IeRuaY6cbI_HsV8Rv1Mc5g",
                "id": "c6e5b0d7-0000-4000-8000-000000000001"
            }
        })
        .to_string()
    }

    fn connection(org: Option<&str>, state: ConnectionState) -> Connection {
        let mut c = Connection::new(
            ConnectionId::new_random(),
            ChannelName::parse("Support").unwrap(),
            LoginUrl::default(),
            InstanceUrl::parse("https://acme.my.salesforce.com").unwrap(),
            ApiVersion::DEFAULT,
            QueueScope::All,
            BackfillWindow::Days30,
            Utc::now(),
        );
        c.org_id = org.map(|o| OrgId::parse(o).unwrap());
        c.state = state;
        c
    }

    #[test]
    fn both_envelope_layouts_are_read() {
        let ids = vec![case(1), case(2)];
        let relayed = parse_event(&relayed(ORG, "UPDATE", &ids)).unwrap();
        assert_eq!(relayed.org_id, OrgId::parse(ORG).unwrap());
        assert_eq!(relayed.entity, "Case");
        assert_eq!(relayed.change, ChangeType::Update);
        assert_eq!(relayed.record_ids, ids);
        assert_eq!(
            relayed.committed_at,
            DateTime::from_timestamp_millis(1_796_551_200_000)
        );

        // The header directly in `detail`, the org only in the header.
        let mut flat: Value = serde_json::from_str(&self::relayed(ORG, "UPDATE", &ids)).unwrap();
        let mut payload = flat["detail"]["payload"].take();
        payload["ChangeEventHeader"]["organizationId"] = ORG.into();
        flat["detail"] = payload;
        flat["source"] = "salesforce.custom".into();
        assert_eq!(parse_event(&flat.to_string()).unwrap(), relayed);
    }

    #[test]
    fn what_is_not_a_change_event_says_why() {
        assert_eq!(parse_event("[1, 2"), Err(EventError::NotJson));
        assert_eq!(
            parse_event(r#"{"source": "aws.partner/salesforce.com/x/y", "detail": {}}"#),
            Err(EventError::NoHeader)
        );
        let ids = vec![case(1)];
        let unknown = relayed(ORG, "TRUNCATE", &ids);
        assert_eq!(
            parse_event(&unknown),
            Err(EventError::UnknownChangeType("TRUNCATE".into()))
        );
        let mut no_org: Value = serde_json::from_str(&relayed(ORG, "UPDATE", &ids)).unwrap();
        no_org["source"] = "aws.partner/salesforce.com/not-an-org/x".into();
        assert!(matches!(
            parse_event(&no_org.to_string()),
            Err(EventError::NoOrg { .. })
        ));
        assert_eq!(ChangeType::parse("GAP_UPDATE"), Some(ChangeType::Gap));
        assert_eq!(
            ChangeType::parse("GAP_OVERFLOW"),
            Some(ChangeType::Overflow)
        );
    }

    #[test]
    fn a_burst_is_coalesced_per_connection_into_few_items() {
        let active = connection(Some(ORG), ConnectionState::Active);
        let second_channel = connection(Some(ORG), ConnectionState::Active);
        let disconnected = connection(Some(ORG), ConnectionState::Disconnected);
        let other = connection(Some(OTHER_ORG), ConnectionState::Active);
        let events: Vec<ChangeEvent> = (0..1_200u32)
            .map(|i| {
                // Merged events of 3 Cases, overlapping, some twice.
                let ids = vec![
                    case(i % 1_000),
                    case((i + 1) % 1_000),
                    case((i + 2) % 1_000),
                ];
                parse_event(&relayed(ORG, "UPDATE", &ids)).unwrap()
            })
            .collect();
        let at = Utc::now();
        let routed = route(
            &events,
            &[
                active.clone(),
                second_channel.clone(),
                disconnected.clone(),
                other.clone(),
            ],
            at,
        );
        // 1,000 distinct Cases → items of 400, 400 and 200 for each of the two active
        // connections.
        assert_eq!(routed.items.len(), 6);
        for c in [&active, &second_channel] {
            let mine: Vec<&WorkItem> = routed
                .items
                .iter()
                .filter(|w| w.connection_id == c.id)
                .collect();
            assert_eq!(mine.len(), 3);
            let all: BTreeSet<&CaseId> = mine.iter().flat_map(|w| &w.case_ids).collect();
            assert_eq!(all.len(), 1_000);
            assert!(mine.iter().all(|w| w.kind == WorkKind::Changes
                && w.case_ids.len() <= MAX_CASES_PER_ITEM
                && w.enqueued_at == DateTime::from_timestamp_millis(1_796_551_200_000).unwrap()));
        }
        assert!(routed.unrouted.is_empty());
    }

    #[test]
    fn gaps_resync_deletes_and_strangers_are_left_alone() {
        let c = connection(Some(ORG), ConnectionState::Active);
        let events = [
            parse_event(&relayed(ORG, "GAP_UPDATE", &[case(1)])).unwrap(),
            parse_event(&relayed(ORG, "GAP_OVERFLOW", &[])).unwrap(),
            parse_event(&relayed(ORG, "DELETE", &[case(2)])).unwrap(),
            parse_event(&relayed(ORG, "UPDATE", &["not-an-id".into()])).unwrap(),
            parse_event(&relayed(OTHER_ORG, "UPDATE", &[case(3)])).unwrap(),
        ];
        let wildcard = parse_event(&relayed(ORG, "UPDATE", &["500*".into()])).unwrap();
        let routed = route(
            std::slice::from_ref(&wildcard),
            std::slice::from_ref(&c),
            Utc::now(),
        );
        assert_eq!(routed.items.len(), 1);
        assert_eq!(routed.items[0].kind, WorkKind::Resync, "every Case changed");
        let routed = route(&events, std::slice::from_ref(&c), Utc::now());
        // One resync (for the gap and the overflow), and the gap's Case fetched.
        assert_eq!(routed.items.len(), 2, "{:?}", routed.items);
        assert_eq!(routed.items[0].kind, WorkKind::Resync);
        assert_eq!(routed.items[1].kind, WorkKind::Changes);
        assert_eq!(routed.items[1].case_ids[0].as_str(), case(1));
        assert_eq!(routed.ignored, 2);
        assert_eq!(
            routed.unrouted.get(&OrgId::parse(OTHER_ORG).unwrap()),
            Some(&1)
        );
    }

    #[test]
    fn a_new_email_names_its_case() {
        let c = connection(Some(ORG), ConnectionState::Active);
        let mut event: Value =
            serde_json::from_str(&relayed(ORG, "CREATE", &["02s5e00000AbCdEAAV".into()])).unwrap();
        event["detail"]["payload"]["ChangeEventHeader"]["entityName"] = "EmailMessage".into();
        event["detail"]["payload"]["ParentId"] = case(7).into();
        let parsed = parse_event(&event.to_string()).unwrap();
        let routed = route(&[parsed], &[c], Utc::now());
        assert_eq!(routed.items.len(), 1);
        assert_eq!(routed.items[0].case_ids[0].as_str(), case(7));
    }

    #[test]
    fn the_same_events_make_the_same_items() {
        let c = connection(Some(ORG), ConnectionState::Active);
        let events = [parse_event(&relayed(ORG, "UPDATE", &[case(1)])).unwrap()];
        let a = route(&events, std::slice::from_ref(&c), Utc::now());
        let b = route(&events, std::slice::from_ref(&c), Utc::now());
        assert_eq!(a.items, b.items);
    }
}
