//! The data point contract: what one Case becomes in a channel.
//!
//! The CLI's export and the AWS store both emit exactly this shape, and later consumers rely on
//! it, so field names and formats are fixed here and checked by a golden test.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::domain::{CaseId, ChannelName, ConnectionId};

/// Namespace of the name-based (v5) UUIDs that identify data points.
const DATA_POINT_NAMESPACE: uuid::Uuid = uuid::uuid!("6b0c1f3e-5a57-4c5e-9a0e-2f64c1c7d5a1");

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataPoint {
    /// Stable per (connection, Case): see [`DataPoint::id_for`].
    pub id: String,
    pub connection_id: ConnectionId,
    pub channel: ChannelName,
    pub case_id: CaseId,
    pub case_number: String,
    pub subject: Option<String>,
    pub status: String,
    pub priority: Option<String>,
    pub origin: Option<String>,
    #[serde(rename = "type")]
    pub case_type: Option<String>,
    #[serde(with = "rfc3339")]
    pub created_date: DateTime<Utc>,
    #[serde(with = "rfc3339")]
    pub system_modstamp: DateTime<Utc>,
    pub salesforce_link: String,
    pub participant: Participant,
    pub content_source: ContentSource,
    pub conversation: Vec<Message>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Participant {
    pub email: Option<String>,
    pub name: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ContentSource {
    EmailThread,
    Description,
    None,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    Inbound,
    Outbound,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    pub message_id: Option<String>,
    pub direction: Option<Direction>,
    pub from_address: Option<String>,
    pub from_name: Option<String>,
    pub to_address: Option<String>,
    #[serde(with = "rfc3339")]
    pub sent_at: DateTime<Utc>,
    pub subject: Option<String>,
    pub text: String,
}

impl DataPoint {
    /// The data point id of a Case in a connection: a name-based UUID, so every store and every
    /// re-import derives the same id without a lookup.
    pub fn id_for(connection: &ConnectionId, case: &CaseId) -> String {
        let name = format!("{}/{}", connection.as_str(), case.as_str());
        uuid::Uuid::new_v5(&DATA_POINT_NAMESPACE, name.as_bytes()).to_string()
    }

    /// The data point serialised once (the bytes a store keeps) with their digest.
    pub fn encode(&self) -> EncodedDataPoint {
        let json = serde_json::to_vec(self).expect("a data point always serialises");
        let hash = digest(&json);
        EncodedDataPoint { json, hash }
    }

    /// A digest of the whole data point. Stores compare it to skip rewriting an unchanged point.
    pub fn content_hash(&self) -> String {
        self.encode().hash
    }

    /// Whether `self` should replace `stored`: it is newer, or equally new with different content.
    /// Equal content is never rewritten, and an older version never overwrites a newer one.
    pub fn supersedes(&self, stored_modstamp: DateTime<Utc>, stored_hash: &str) -> Supersedes {
        decide(
            self.system_modstamp,
            &self.content_hash(),
            stored_modstamp,
            stored_hash,
        )
    }
}

/// A data point's stored bytes (its contract JSON) and their digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodedDataPoint {
    pub json: Vec<u8>,
    pub hash: String,
}

/// The content digest stores keep beside a data point: BLAKE3 of its JSON, in hex. Fast (SIMD),
/// and collision-resistant, so changed content is never taken for unchanged.
pub fn digest(json: &[u8]) -> String {
    blake3::hash(json).to_hex().to_string()
}

/// What `json` costs inside a JSON string: its length plus one escape byte for each `"` and
/// `\` (a data point's JSON holds no raw control characters: serde_json escaped them). A page
/// of the read API is such a string in the Lambda response, so its size is counted in these.
pub fn escaped_len(json: &[u8]) -> u64 {
    // Counted in byte lanes over chunks of at most 255 bytes, which the compiler vectorises
    // (a byte-wise filter-count was 5 % of a backfill's CPU time).
    let escapes: usize = json
        .chunks(255)
        .map(|chunk| {
            let n = chunk.iter().fold(0u8, |n, &b| {
                n.wrapping_add(u8::from(b == b'"' || b == b'\\'))
            });
            usize::from(n)
        })
        .sum();
    (json.len() + escapes) as u64
}

/// [`DataPoint::supersedes`] with the digest already computed: stale when older, unchanged
/// when the content is equal, an update otherwise.
pub fn decide(
    modstamp: DateTime<Utc>,
    hash: &str,
    stored_modstamp: DateTime<Utc>,
    stored_hash: &str,
) -> Supersedes {
    match modstamp.cmp(&stored_modstamp) {
        std::cmp::Ordering::Less => Supersedes::Stale,
        _ if hash == stored_hash => Supersedes::Unchanged,
        _ => Supersedes::Update,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Supersedes {
    Update,
    Unchanged,
    Stale,
}

/// RFC 3339 in UTC with a `Z`, whole seconds unless the value has a fraction:
/// `2024-03-01T09:15:02Z`.
pub mod rfc3339 {
    use chrono::{DateTime, SecondsFormat, Utc};
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn format(t: &DateTime<Utc>) -> String {
        t.to_rfc3339_opts(SecondsFormat::AutoSi, true)
    }

    pub fn serialize<S: Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format(t))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
        let raw = String::deserialize(d)?;
        DateTime::parse_from_rfc3339(&raw)
            .map(|t| t.with_timezone(&Utc))
            .map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaped_len_counts_each_quote_and_backslash_once() {
        let naive =
            |b: &[u8]| (b.len() + b.iter().filter(|&&c| c == b'"' || c == b'\\').count()) as u64;
        for len in [0, 1, 254, 255, 256, 510, 511, 4_000] {
            for fill in [b'"', b'\\', b'a'] {
                let bytes = vec![fill; len];
                assert_eq!(escaped_len(&bytes), naive(&bytes), "{len} x {fill}");
            }
            let mixed: Vec<u8> = (0..len).map(|i| b"a\"\\b\n"[i % 5]).collect();
            assert_eq!(escaped_len(&mixed), naive(&mixed), "{len} mixed");
        }
        assert_eq!(escaped_len(br#"{"a":"x\"y"}"#), 12 + 6);
    }

    fn sample() -> DataPoint {
        let connection_id = ConnectionId::parse("conn_0123456789abcdef0123456789abcdef").unwrap();
        let case_id = CaseId::parse("500xx000003DHb0AAG").unwrap();
        DataPoint {
            id: DataPoint::id_for(&connection_id, &case_id),
            connection_id,
            channel: ChannelName::parse("support").unwrap(),
            case_id,
            case_number: "00001026".into(),
            subject: Some("Printer on fire".into()),
            status: "Closed".into(),
            priority: Some("High".into()),
            origin: Some("Email".into()),
            case_type: None,
            created_date: "2024-03-01T09:15:02Z".parse().unwrap(),
            system_modstamp: "2024-03-04T17:00:00Z".parse().unwrap(),
            salesforce_link:
                "https://acme.my.salesforce.com/lightning/r/Case/500xx000003DHb0AAG/view".into(),
            participant: Participant {
                email: Some("jane@example.com".into()),
                name: Some("Jane Doe".into()),
            },
            content_source: ContentSource::EmailThread,
            conversation: vec![Message {
                message_id: Some("02sxx0000004CzNAAU".into()),
                direction: Some(Direction::Inbound),
                from_address: Some("jane@example.com".into()),
                from_name: Some("Jane Doe".into()),
                to_address: Some("support@acme.com".into()),
                sent_at: "2024-03-01T09:15:00Z".parse().unwrap(),
                subject: Some("Printer on fire".into()),
                text: "Help!".into(),
            }],
        }
    }

    #[test]
    fn serialises_exactly_as_the_contract_says() {
        let json = serde_json::to_value(sample()).unwrap();
        let expected = serde_json::json!({
            "id": json["id"],
            "connection_id": "conn_0123456789abcdef0123456789abcdef",
            "channel": "support",
            "case_id": "500xx000003DHb0AAG",
            "case_number": "00001026",
            "subject": "Printer on fire",
            "status": "Closed",
            "priority": "High",
            "origin": "Email",
            "type": null,
            "created_date": "2024-03-01T09:15:02Z",
            "system_modstamp": "2024-03-04T17:00:00Z",
            "salesforce_link": "https://acme.my.salesforce.com/lightning/r/Case/500xx000003DHb0AAG/view",
            "participant": {"email": "jane@example.com", "name": "Jane Doe"},
            "content_source": "email_thread",
            "conversation": [{
                "message_id": "02sxx0000004CzNAAU", "direction": "inbound",
                "from_address": "jane@example.com", "from_name": "Jane Doe",
                "to_address": "support@acme.com", "sent_at": "2024-03-01T09:15:00Z",
                "subject": "Printer on fire", "text": "Help!"
            }]
        });
        assert_eq!(json, expected);
        let back: DataPoint = serde_json::from_value(json).unwrap();
        assert_eq!(back, sample());
    }

    #[test]
    fn ids_are_stable_per_connection_and_case() {
        let p = sample();
        assert_eq!(DataPoint::id_for(&p.connection_id, &p.case_id), p.id);
        let other = ConnectionId::parse("conn_ffffffffffffffffffffffffffffffff").unwrap();
        assert_ne!(DataPoint::id_for(&other, &p.case_id), p.id);
    }

    #[test]
    fn only_newer_or_different_content_supersedes() {
        let p = sample();
        let hash = p.content_hash();
        assert_eq!(
            p.supersedes(p.system_modstamp, &hash),
            Supersedes::Unchanged
        );
        assert_eq!(p.supersedes(p.system_modstamp, "other"), Supersedes::Update);
        let later = p.system_modstamp + chrono::TimeDelta::seconds(1);
        assert_eq!(p.supersedes(later, "other"), Supersedes::Stale);
        let earlier = p.system_modstamp - chrono::TimeDelta::seconds(1);
        assert_eq!(p.supersedes(earlier, &hash), Supersedes::Unchanged);
    }
}
