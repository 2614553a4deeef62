//! Change events from the data points table's stream, published on an EventBridge bus.
//!
//! [`change_event`] reads one stream record (new and old images) into the event it stands for,
//! if any: a head inserted is *created*; a head whose content hash changed is *updated*; a head
//! removed is *deleted*. Part items, and modifications that leave the content alone (a head
//! given its change index attributes, say), stand for no event: an unchanged rewrite emits
//! nothing. [`EventBridgePublisher`] sends events with `PutEvents`, 10 a call.

use std::collections::HashMap;
use std::sync::Arc;

use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_eventbridge::types::PutEventsRequestEntry;
use chrono::{DateTime, Utc};

use casesync_core::events::{ChangeKind, DataPointEvent, SOURCE};
use casesync_core::ports::StoreResult;

use crate::data_points::{
    CASE_ID, CASE_NUMBER, CHANGED, CHANNEL, CONNECTION_ID, CONTENT_HASH, ID, PART_OF,
    SYSTEM_MODSTAMP,
};
use crate::error::corrupt;
use crate::item::{Attrs, Item};
use crate::metrics::Metrics;
use crate::time;

/// Entries per `PutEvents` call (EventBridge's limit).
pub const PUT_EVENTS_BATCH: usize = 10;

/// One change, ready to publish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub kind: ChangeKind,
    pub detail: DataPointEvent,
    /// When the table changed (the stream record's time).
    pub at: DateTime<Utc>,
}

fn is_head(item: &Item) -> bool {
    !item.is_empty() && !item.contains_key(PART_OF)
}

fn detail(image: &Item, version: &str) -> StoreResult<DataPointEvent> {
    let a = Attrs::new(image, "data point image");
    let id = a.s(ID)?.to_owned();
    let modstamp = time::parse("data point image", a.s(SYSTEM_MODSTAMP)?)?;
    let changed_at = match a.opt_s(CHANGED)? {
        Some(changed) if !changed.is_empty() => changed
            .split_once('#')
            .map(|(stamp, _)| time::parse("data point image", stamp))
            .transpose()?,
        _ => None,
    };
    Ok(DataPointEvent {
        path: DataPointEvent::path_of(&id),
        id,
        channel: a.opt_s(CHANNEL)?.unwrap_or_default().to_owned(),
        connection_id: a.s(CONNECTION_ID)?.to_owned(),
        case_id: a.s(CASE_ID)?.to_owned(),
        case_number: a.opt_s(CASE_NUMBER)?.unwrap_or_default().to_owned(),
        system_modstamp: modstamp.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
        version: version.to_owned(),
        changed_at,
    })
}

/// The event a stream record of the data points table stands for, if any. `event_name` is the
/// record's `INSERT`, `MODIFY` or `REMOVE`; `version` its sequence number.
pub fn change_event(
    event_name: &str,
    old: &Item,
    new: &Item,
    version: &str,
    at: DateTime<Utc>,
) -> StoreResult<Option<Change>> {
    let hash = |item: &Item| -> StoreResult<Option<String>> {
        Ok(Attrs::new(item, "data point image")
            .opt_s(CONTENT_HASH)?
            .map(str::to_owned))
    };
    let (kind, image) = match event_name {
        "INSERT" if is_head(new) => (ChangeKind::Created, new),
        "MODIFY" if is_head(new) => {
            if hash(old)? == hash(new)? {
                return Ok(None);
            }
            (ChangeKind::Updated, new)
        }
        "REMOVE" if is_head(old) => (ChangeKind::Deleted, old),
        "INSERT" | "MODIFY" | "REMOVE" => return Ok(None),
        other => {
            return Err(corrupt(
                "stream record",
                format_args!("unknown event name {other:?}"),
            ));
        }
    };
    Ok(Some(Change {
        kind,
        detail: detail(image, version)?,
        at,
    }))
}

/// Publishes change events on one EventBridge bus.
#[derive(Clone)]
pub struct EventBridgePublisher {
    client: aws_sdk_eventbridge::Client,
    bus: String,
    metrics: Arc<Metrics>,
}

impl EventBridgePublisher {
    pub fn new(client: aws_sdk_eventbridge::Client, bus: impl Into<String>) -> Self {
        Self {
            client,
            bus: bus.into(),
            metrics: Arc::new(Metrics::new()),
        }
    }

    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> Self {
        self.metrics = metrics;
        self
    }

    pub fn bus(&self) -> &str {
        &self.bus
    }

    /// Sends `changes` (`PutEvents`, 10 a call); one result per change, in order. A call that
    /// fails fails its ten; an entry EventBridge refuses fails alone.
    pub async fn publish(&self, changes: &[Change]) -> Vec<Result<(), String>> {
        let mut out = Vec::with_capacity(changes.len());
        for chunk in changes.chunks(PUT_EVENTS_BATCH) {
            out.extend(self.put(chunk).await);
        }
        out
    }

    async fn put(&self, chunk: &[Change]) -> Vec<Result<(), String>> {
        let mut entries = Vec::with_capacity(chunk.len());
        for c in chunk {
            match serde_json::to_string(&c.detail) {
                Ok(detail) => entries.push(
                    PutEventsRequestEntry::builder()
                        .source(SOURCE)
                        .detail_type(c.kind.detail_type())
                        .detail(detail)
                        .event_bus_name(&self.bus)
                        .time(aws_smithy_types::DateTime::from_millis(
                            c.at.timestamp_millis(),
                        ))
                        .build(),
                ),
                Err(e) => return vec![Err(format!("encoding an event: {e}")); chunk.len()],
            }
        }
        self.metrics.put_events();
        match self
            .client
            .put_events()
            .set_entries(Some(entries))
            .send()
            .await
        {
            Err(e) => {
                let e = aws_sdk_eventbridge::error::DisplayErrorContext(e).to_string();
                vec![Err(e); chunk.len()]
            }
            Ok(out) => {
                let results = out.entries();
                (0..chunk.len())
                    .map(|i| match results.get(i) {
                        Some(r) if r.error_code().is_none() && r.event_id().is_some() => Ok(()),
                        Some(r) => Err(format!(
                            "{}: {}",
                            r.error_code().unwrap_or("no event id"),
                            r.error_message().unwrap_or("")
                        )),
                        None => Err("EventBridge returned fewer results than entries".into()),
                    })
                    .collect()
            }
        }
    }
}

/// An image of the Lambda stream event (serde_dynamo) as the SDK's attribute values.
pub fn image(item: serde_dynamo::Item) -> Item {
    let map: HashMap<String, AttributeValue> = item.into();
    map
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::item::{n, s};

    fn head(hash: &str) -> Item {
        Item::from([
            (
                CONNECTION_ID.to_owned(),
                s("conn_0123456789abcdef0123456789abcdef"),
            ),
            (CASE_ID.to_owned(), s("500xx000003DHb0AAG")),
            (ID.to_owned(), s("6b0c1f3e-5a57-4c5e-9a0e-2f64c1c7d5a1")),
            (CHANNEL.to_owned(), s("Support")),
            (CASE_NUMBER.to_owned(), s("00001026")),
            (SYSTEM_MODSTAMP.to_owned(), s("2024-03-04T17:00:00.000Z")),
            (CONTENT_HASH.to_owned(), s(hash)),
            ("escaped_len".to_owned(), n(100)),
            (
                CHANGED.to_owned(),
                s("2024-03-04T17:05:00.123456Z#6b0c1f3e-5a57-4c5e-9a0e-2f64c1c7d5a1"),
            ),
        ])
    }

    fn part() -> Item {
        Item::from([
            (
                CONNECTION_ID.to_owned(),
                s("conn_0123456789abcdef0123456789abcdef"),
            ),
            (CASE_ID.to_owned(), s("500xx000003DHb0AAG#ab#0000")),
            (PART_OF.to_owned(), s("500xx000003DHb0AAG")),
        ])
    }

    #[test]
    fn heads_make_events_and_parts_and_unchanged_content_do_not() {
        let none = Item::new();
        let at = Utc::now();
        let created = change_event("INSERT", &none, &head("a"), "11", at)
            .unwrap()
            .unwrap();
        assert_eq!(created.kind, ChangeKind::Created);
        assert_eq!(created.detail.case_number, "00001026");
        assert_eq!(created.detail.version, "11");
        assert_eq!(
            created.detail.path,
            "/data-points/6b0c1f3e-5a57-4c5e-9a0e-2f64c1c7d5a1"
        );
        assert_eq!(created.detail.system_modstamp, "2024-03-04T17:00:00Z");
        assert!(created.detail.changed_at.is_some());
        let updated = change_event("MODIFY", &head("a"), &head("b"), "12", at)
            .unwrap()
            .unwrap();
        assert_eq!(updated.kind, ChangeKind::Updated);
        assert_eq!(
            change_event("MODIFY", &head("a"), &head("a"), "13", at).unwrap(),
            None,
            "same content: no event"
        );
        let deleted = change_event("REMOVE", &head("b"), &none, "14", at)
            .unwrap()
            .unwrap();
        assert_eq!(deleted.kind, ChangeKind::Deleted);
        for name in ["INSERT", "MODIFY"] {
            assert_eq!(change_event(name, &none, &part(), "15", at).unwrap(), None);
        }
        assert_eq!(
            change_event("REMOVE", &part(), &none, "16", at).unwrap(),
            None
        );
        assert!(change_event("TRUNCATE", &none, &head("a"), "17", at).is_err());
    }
}
