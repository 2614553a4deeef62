use casesync_aws::testing::{Moto, ResourceNames};
use casesync_aws::{DYNAMODB_ITEM_LIMIT, DynamoConnectionStore, DynamoDataPointStore};
use casesync_core::data_point::{ContentSource, DataPoint, Direction, Message, Participant};
use casesync_core::domain::{
    ApiVersion, BackfillWindow, CaseId, ChannelName, Connection, ConnectionId, InstanceUrl,
    LoginUrl, QueueScope,
};
use chrono::{DateTime, TimeDelta, Utc};

pub use aws_sdk_dynamodb::types::AttributeValue;

pub struct Env {
    pub aws: Moto,
    pub names: ResourceNames,
}

/// Moto, and fresh tables for one test.
pub async fn env(label: &str) -> Env {
    let aws = casesync_aws::testing::moto().await;
    let names = aws.tables(label).await;
    Env { aws, names }
}

impl Env {
    pub fn connections(&self) -> DynamoConnectionStore {
        DynamoConnectionStore::new(self.aws.dynamodb(), &self.names.tables.connections)
    }

    pub fn data_points(&self) -> DynamoDataPointStore {
        DynamoDataPointStore::new(self.aws.dynamodb(), &self.names.tables.data_points)
    }
}

pub fn t(raw: &str) -> DateTime<Utc> {
    raw.parse().expect("a valid test timestamp")
}

/// The `i`-th Case id of a test: `500xx` + 10 digits, in the order of `i`.
pub fn case(i: usize) -> CaseId {
    CaseId::parse(&format!("500xx{i:010}")).expect("a valid test Case id")
}

pub fn connection(now: DateTime<Utc>) -> Connection {
    Connection::new(
        ConnectionId::new_random(),
        ChannelName::parse("support").unwrap(),
        LoginUrl::parse("https://login.salesforce.com").unwrap(),
        InstanceUrl::parse("https://acme.my.salesforce.com").unwrap(),
        ApiVersion::DEFAULT,
        QueueScope::parse("00Gxx000000AAAA,00Gxx000000BBBB").unwrap(),
        BackfillWindow::Days30,
        now,
    )
}

/// A data point of `case` in `connection`, stamped `modstamp`; `subject` makes versions differ.
pub fn point(connection: &ConnectionId, case: &CaseId, modstamp: &str, subject: &str) -> DataPoint {
    DataPoint {
        id: DataPoint::id_for(connection, case),
        connection_id: connection.clone(),
        channel: ChannelName::parse("support").unwrap(),
        case_id: case.clone(),
        case_number: format!("0000{}", &case.as_str()[5..15]),
        subject: Some(subject.to_owned()),
        status: "Closed".into(),
        priority: Some("High".into()),
        origin: Some("Email".into()),
        case_type: None,
        created_date: t("2024-03-01T09:15:02Z"),
        system_modstamp: t(modstamp),
        salesforce_link: format!(
            "https://acme.my.salesforce.com/lightning/r/Case/{}/view",
            case.as_str()
        ),
        participant: Participant {
            email: Some("jane@example.com".into()),
            name: Some("Jane Doe".into()),
        },
        content_source: ContentSource::EmailThread,
        conversation: vec![message(0, "Help, the printer is on fire.".into())],
    }
}

fn message(i: usize, text: String) -> Message {
    Message {
        message_id: Some(format!("02sxx{i:010}")),
        direction: Some(if i.is_multiple_of(2) {
            Direction::Inbound
        } else {
            Direction::Outbound
        }),
        from_address: Some("jane@example.com".into()),
        from_name: Some("Jane Doe".into()),
        to_address: Some("support@acme.com".into()),
        sent_at: t("2024-03-01T09:15:00Z") + TimeDelta::minutes(i as i64),
        subject: Some("Re: printer".into()),
        text,
    }
}

/// An email thread of about `bytes` bytes of text that compresses poorly (pseudo-random
/// words), so that it cannot hide in one item by compression alone.
pub fn big_thread(bytes: usize, seed: u64) -> Vec<Message> {
    let mut state = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    let mut next = move || {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (state >> 33) as usize
    };
    let per_message = 50_000;
    (0..bytes.div_ceil(per_message))
        .map(|i| {
            let mut text = String::with_capacity(per_message + 16);
            while text.len() < per_message {
                let len = 2 + next() % 9;
                for _ in 0..len {
                    text.push((b'a' + (next() % 26) as u8) as char);
                }
                text.push(if next() % 12 == 0 { '\n' } else { ' ' });
            }
            message(i, text)
        })
        .collect()
}

/// DynamoDB's size of an item: attribute names plus values (strings as UTF-8, binaries raw).
pub fn item_size(item: &std::collections::HashMap<String, AttributeValue>) -> usize {
    fn value(v: &AttributeValue) -> usize {
        match v {
            AttributeValue::S(s) | AttributeValue::N(s) => s.len(),
            AttributeValue::B(b) => b.as_ref().len(),
            AttributeValue::M(m) => {
                3 + m.iter().map(|(k, v)| k.len() + value(v) + 1).sum::<usize>()
            }
            AttributeValue::L(l) => 3 + l.iter().map(|v| value(v) + 1).sum::<usize>(),
            _ => 1,
        }
    }
    item.iter().map(|(k, v)| k.len() + value(v)).sum()
}

/// Every raw item of a connection in the data points table (heads and parts).
pub async fn raw_items(
    env: &Env,
    connection: &ConnectionId,
) -> Vec<std::collections::HashMap<String, AttributeValue>> {
    let client = env.aws.dynamodb();
    let mut out = Vec::new();
    let mut start = None;
    loop {
        let page = client
            .query()
            .table_name(&env.names.tables.data_points)
            .key_condition_expression("connection_id = :c")
            .expression_attribute_values(":c", AttributeValue::S(connection.to_string()))
            .set_exclusive_start_key(start.take())
            .send()
            .await
            .expect("raw query");
        out.extend(page.items.unwrap_or_default());
        match page.last_evaluated_key {
            Some(k) if !k.is_empty() => start = Some(k),
            _ => return out,
        }
    }
}

pub const ITEM_LIMIT: usize = DYNAMODB_ITEM_LIMIT;
