//! Creating the tables and the queue, with the key schema the SAM template declares: for tests
//! against moto and for local runs. Production resources come from the template.

use std::time::Duration;

use anyhow::{Context, anyhow};
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection,
    ProjectionType, ScalarAttributeType, StreamSpecification, StreamViewType, TableStatus,
    TimeToLiveSpecification,
};
use aws_sdk_sqs::types::QueueAttributeName;

use crate::TableNames;

#[derive(Debug, thiserror::Error)]
#[error("provisioning {what}: {source:#}")]
pub struct ProvisionError {
    pub what: String,
    #[source]
    pub source: anyhow::Error,
}

fn failed(what: impl Into<String>) -> impl FnOnce(anyhow::Error) -> ProvisionError {
    let what = what.into();
    move |source| ProvisionError { what, source }
}

/// Creates the three tables (on-demand billing) and waits until they are active:
///
/// | table | partition key | sort key | TTL |
/// |---|---|---|---|
/// | `connections` | `connection_id` (S) | | |
/// | `data_points` | `connection_id` (S) | `case_id` (S) | |
/// | `auth_states` | `state` (S) | | `expires_at` |
///
/// `data_points` also has its two global secondary indexes ([`crate::CHANGE_INDEX`]:
/// `channel` (S) / `changed` (S), projecting `body`, `parts`, `part_set` and `escaped_len`;
/// [`crate::ID_INDEX`]: `id` (S), projecting `channel` and `system_modstamp`) and a stream of new and old images (the change
/// events).
pub async fn create_tables(
    client: &aws_sdk_dynamodb::Client,
    names: &TableNames,
) -> Result<(), ProvisionError> {
    create_table(client, &names.connections, "connection_id", None, None).await?;
    create_table(
        client,
        &names.data_points,
        "connection_id",
        Some("case_id"),
        Some(data_point_indexes),
    )
    .await?;
    create_table(client, &names.auth_states, "state", None, None).await?;
    client
        .update_time_to_live()
        .table_name(&names.auth_states)
        .time_to_live_specification(
            TimeToLiveSpecification::builder()
                .enabled(true)
                .attribute_name("expires_at")
                .build()
                .map_err(|e| failed("TTL specification")(e.into()))?,
        )
        .send()
        .await
        .map_err(|e| failed(format!("TTL of {}", names.auth_states))(e.into()))?;
    Ok(())
}

type Builder = aws_sdk_dynamodb::operation::create_table::builders::CreateTableFluentBuilder;

fn s_attribute(name: &str) -> Result<AttributeDefinition, anyhow::Error> {
    Ok(AttributeDefinition::builder()
        .attribute_name(name)
        .attribute_type(ScalarAttributeType::S)
        .build()?)
}

fn key(name: &str, key_type: KeyType) -> Result<KeySchemaElement, anyhow::Error> {
    Ok(KeySchemaElement::builder()
        .attribute_name(name)
        .key_type(key_type)
        .build()?)
}

/// The data points table's indexes and stream, as the SAM template declares them.
fn data_point_indexes(request: Builder) -> Result<Builder, anyhow::Error> {
    let by_change = GlobalSecondaryIndex::builder()
        .index_name(crate::CHANGE_INDEX)
        .key_schema(key("channel", KeyType::Hash)?)
        .key_schema(key("changed", KeyType::Range)?)
        .projection(
            Projection::builder()
                .projection_type(ProjectionType::Include)
                .set_non_key_attributes(Some(
                    ["body", "parts", "part_set", "escaped_len"]
                        .map(str::to_owned)
                        .to_vec(),
                ))
                .build(),
        )
        .build()?;
    let by_id = GlobalSecondaryIndex::builder()
        .index_name(crate::ID_INDEX)
        .key_schema(key("id", KeyType::Hash)?)
        .projection(
            Projection::builder()
                .projection_type(ProjectionType::Include)
                .set_non_key_attributes(Some(
                    ["channel", "system_modstamp"].map(str::to_owned).to_vec(),
                ))
                .build(),
        )
        .build()?;
    Ok(request
        .attribute_definitions(s_attribute("channel")?)
        .attribute_definitions(s_attribute("changed")?)
        .attribute_definitions(s_attribute("id")?)
        .global_secondary_indexes(by_change)
        .global_secondary_indexes(by_id)
        .stream_specification(
            StreamSpecification::builder()
                .stream_enabled(true)
                .stream_view_type(StreamViewType::NewAndOldImages)
                .build()?,
        ))
}

async fn create_table(
    client: &aws_sdk_dynamodb::Client,
    name: &str,
    partition: &str,
    sort: Option<&str>,
    extra: Option<fn(Builder) -> Result<Builder, anyhow::Error>>,
) -> Result<(), ProvisionError> {
    let fail = |e: anyhow::Error| failed(format!("table {name}"))(e);
    let mut request = client
        .create_table()
        .table_name(name)
        .billing_mode(BillingMode::PayPerRequest);
    for (attr, key_type) in [(Some(partition), KeyType::Hash), (sort, KeyType::Range)] {
        let Some(attr) = attr else { continue };
        request = request
            .attribute_definitions(
                AttributeDefinition::builder()
                    .attribute_name(attr)
                    .attribute_type(ScalarAttributeType::S)
                    .build()
                    .map_err(|e| fail(e.into()))?,
            )
            .key_schema(
                KeySchemaElement::builder()
                    .attribute_name(attr)
                    .key_type(key_type)
                    .build()
                    .map_err(|e| fail(e.into()))?,
            );
    }
    if let Some(extra) = extra {
        request = extra(request).map_err(fail)?;
    }
    request.send().await.map_err(|e| fail(e.into()))?;
    for _ in 0..120 {
        let out = client
            .describe_table()
            .table_name(name)
            .send()
            .await
            .map_err(|e| fail(e.into()))?;
        if out.table().and_then(|t| t.table_status()) == Some(&TableStatus::Active) {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    Err(fail(anyhow!("not active after 60 s")))
}

/// Options of [`create_queue`].
#[derive(Debug, Clone)]
pub struct QueueOptions {
    /// How long a received message stays invisible; at least the worker's timeout.
    pub visibility_timeout_secs: u32,
    /// Receives before a message moves to the dead-letter queue.
    pub max_receive_count: u32,
}

impl Default for QueueOptions {
    fn default() -> Self {
        Self {
            visibility_timeout_secs: 900,
            max_receive_count: 5,
        }
    }
}

/// The URLs [`create_queue`] made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueUrls {
    pub queue_url: String,
    pub dead_letter_queue_url: String,
}

/// Creates the FIFO work queue `name` (which must end in `.fifo`, as SQS requires) and its FIFO
/// dead-letter queue `<name without .fifo>-dlq.fifo`, with explicit deduplication ids (no
/// content-based deduplication) and a redrive policy.
pub async fn create_queue(
    client: &aws_sdk_sqs::Client,
    name: &str,
    options: &QueueOptions,
) -> Result<QueueUrls, ProvisionError> {
    let Some(base) = name.strip_suffix(".fifo") else {
        return Err(failed(format!("queue {name}"))(anyhow!(
            "a FIFO queue's name must end in .fifo"
        )));
    };
    let dlq_name = format!("{base}-dlq.fifo");
    let dlq_url = client
        .create_queue()
        .queue_name(&dlq_name)
        .attributes(QueueAttributeName::FifoQueue, "true")
        .attributes(QueueAttributeName::MessageRetentionPeriod, "1209600")
        .send()
        .await
        .map_err(|e| failed(format!("queue {dlq_name}"))(e.into()))?
        .queue_url
        .context("CreateQueue returned no URL")
        .map_err(failed(format!("queue {dlq_name}")))?;
    let dlq_arn = client
        .get_queue_attributes()
        .queue_url(&dlq_url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .map_err(|e| failed(format!("queue {dlq_name}"))(e.into()))?
        .attributes
        .and_then(|mut a| a.remove(&QueueAttributeName::QueueArn))
        .context("GetQueueAttributes returned no QueueArn")
        .map_err(failed(format!("queue {dlq_name}")))?;
    let redrive = serde_json::json!({
        "deadLetterTargetArn": dlq_arn,
        "maxReceiveCount": options.max_receive_count,
    })
    .to_string();
    let queue_url = client
        .create_queue()
        .queue_name(name)
        .attributes(QueueAttributeName::FifoQueue, "true")
        .attributes(QueueAttributeName::ContentBasedDeduplication, "false")
        .attributes(
            QueueAttributeName::VisibilityTimeout,
            options.visibility_timeout_secs.to_string(),
        )
        .attributes(QueueAttributeName::RedrivePolicy, redrive)
        .send()
        .await
        .map_err(|e| failed(format!("queue {name}"))(e.into()))?
        .queue_url
        .context("CreateQueue returned no URL")
        .map_err(failed(format!("queue {name}")))?;
    Ok(QueueUrls {
        queue_url,
        dead_letter_queue_url: dlq_url,
    })
}
