//! Change Data Capture: the change events Salesforce publishes for the org's changes, and the
//! form Event Relay delivers them in to an Amazon EventBridge partner event bus.
//!
//! Shapes, from Salesforce's documentation ("Change Event Message Structure", "Change Event
//! Header Fields", "Gap Events", "Overflow Events") and Event Relay's ("Event Relay Event
//! Format"): the event's fields and its `ChangeEventHeader` (`entityName`, `recordIds`,
//! `changeType`, `changeOrigin`, `transactionKey`, `sequenceNumber`, `commitTimestamp` in epoch
//! milliseconds, `commitNumber`, `commitUser`, `changedFields`, `diffFields`, `nulledFields`)
//! sit under `detail.payload`; the partner event source is
//! `aws.partner/salesforce.com/<org id>/<channel id>`; the detail type is the event's API name.
//!
//! The org records changes only when asked ([`crate::Org::record_changes`]): a large org staged
//! for a benchmark keeps no log. What Salesforce does beyond one event per change, tests ask
//! for explicitly: [`merged`] (one event naming several records, as for the same change made
//! to many records in one transaction), [`gap`] and [`overflow`] events, and duplicates and
//! reordering (send an event twice, or out of order).

use serde_json::{Map, Value, json};

use crate::ids::SfId;

/// The channel id the simulated relay uses (`0YL` is the key prefix of a platform event
/// channel).
pub const CHANNEL_ID: &str = "0YLDn0000000001GAA";

/// One change event.
#[derive(Clone, Debug, PartialEq)]
pub struct ChangeRecord {
    /// `Case`, `EmailMessage`.
    pub entity: &'static str,
    /// `CREATE`, `UPDATE`, `DELETE`, `UNDELETE`, `GAP_*`, `GAP_OVERFLOW`.
    pub change_type: String,
    pub record_ids: Vec<String>,
    pub changed_fields: Vec<String>,
    /// The changed fields' new values (all fields for a create).
    pub fields: Map<String, Value>,
    /// Epoch milliseconds, on the simulator's (the test's) clock.
    pub commit_timestamp: i64,
    pub transaction_key: String,
    pub sequence_number: u64,
    pub commit_number: u64,
    pub commit_user: String,
}

impl ChangeRecord {
    /// The change event's payload: its fields and its `ChangeEventHeader`.
    pub fn payload(&self) -> Value {
        let mut payload = self.fields.clone();
        payload.insert(
            "ChangeEventHeader".into(),
            json!({
                "entityName": self.entity,
                "recordIds": self.record_ids,
                "changeType": self.change_type,
                "changeOrigin": "com/salesforce/api/rest/59.0",
                "transactionKey": self.transaction_key,
                "sequenceNumber": self.sequence_number,
                "commitTimestamp": self.commit_timestamp,
                "commitNumber": self.commit_number,
                "commitUser": self.commit_user,
                "changedFields": self.changed_fields,
                "diffFields": [],
                "nulledFields": [],
            }),
        );
        Value::Object(payload)
    }

    /// The event as an EventBridge rule hands it to its target: Event Relay's envelope, the
    /// change event under `detail.payload`.
    pub fn relayed(&self, org_id: &SfId) -> Value {
        json!({
            "version": "0",
            "id": format!("{:08x}-{:04x}-4000-8000-{:012x}", self.commit_number, self.sequence_number, self.commit_timestamp),
            "detail-type": format!("{}ChangeEvent", self.entity),
            "source": format!("aws.partner/salesforce.com/{org_id}/{CHANNEL_ID}"),
            "account": "123456789012",
            "time": chrono::DateTime::from_timestamp_millis(self.commit_timestamp)
                .map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string())
                .unwrap_or_default(),
            "region": "us-east-1",
            "resources": [],
            "detail": {
                "payload": self.payload(),
                "schemaId": "IeRuaY6cbI_HsV8Rv1Mc5g",
                "id": format!("{}", self.commit_number),
            }
        })
    }

    /// The same event with its header directly in `detail` (the older AppFlow layout).
    pub fn flat(&self, org_id: &SfId) -> Value {
        let mut event = self.relayed(org_id);
        let mut payload = event["detail"]["payload"].take();
        payload["ChangeEventHeader"]["organizationId"] = Value::String(org_id.to_string());
        event["detail"] = payload;
        event
    }
}

/// One event for the same change to several records (Salesforce merges them): the first
/// record's fields and header, every record's id.
pub fn merged(records: &[ChangeRecord]) -> Option<ChangeRecord> {
    let first = records.first()?;
    let mut out = first.clone();
    out.record_ids = records
        .iter()
        .flat_map(|r| r.record_ids.iter().cloned())
        .collect();
    out.commit_timestamp = records.iter().map(|r| r.commit_timestamp).max()?;
    Some(out)
}

/// The gap event Salesforce sends instead when it cannot produce the change's fields:
/// `GAP_<type>`, the record ids, no fields.
pub fn gap(record: &ChangeRecord) -> ChangeRecord {
    ChangeRecord {
        change_type: format!("GAP_{}", record.change_type.trim_start_matches("GAP_")),
        changed_fields: Vec::new(),
        fields: Map::new(),
        ..record.clone()
    }
}

/// The overflow event Salesforce sends when a transaction changes more records than it can
/// report: `GAP_OVERFLOW` with the all-zero id as its record id.
pub fn overflow(entity: &'static str, after: &ChangeRecord) -> ChangeRecord {
    ChangeRecord {
        entity,
        change_type: "GAP_OVERFLOW".into(),
        record_ids: vec!["000000000000000AAA".into()],
        changed_fields: Vec::new(),
        fields: Map::new(),
        sequence_number: after.sequence_number + 1,
        ..after.clone()
    }
}
