//! What the worker's tests share: moto (DynamoDB, Secrets Manager, SQS FIFO with its DLQ), the
//! Salesforce simulator, and a stand-in for Lambda's SQS event source mapping that receives
//! real messages, hands them to the handler as a real `SqsEvent` payload and deletes the ones
//! the handler did not report failed.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_lambda_events::sqs::{SqsBatchResponse, SqsEvent};
use aws_sdk_sqs::types::{MessageSystemAttributeName, QueueAttributeName};
use casesync_aws::testing::{Moto, ResourceNames, moto};
use casesync_aws::{
    DynamoConnectionStore, DynamoDataPointStore, Metrics, QueueOptions, QueueUrls,
    SecretsManagerStore, SqsWorkQueue, create_queue,
};
use casesync_core::data_point::DataPoint;
use casesync_core::domain::{
    ApiVersion, BackfillWindow, ChannelName, Connection, ConnectionId, LoginUrl, QueueScope,
};
use casesync_core::manage::connect::{self, ConnectionSettings};
use casesync_core::ports::{
    ConnectionReader, DataPointReader, SystemClock, WorkItem, WorkKind, WorkQueue,
};
use casesync_core::salesforce::Salesforce;
use casesync_core::sync::SyncConfig;
use casesync_tests::{closed_case, minutes_ago, salesforce_for, test_http};
use casesync_worker::{Timing, Worker, WorkerParts, handle};
use chrono::{DateTime, Utc};
use lambda_runtime::{Context, LambdaEvent};
use secrecy::SecretString;
use sf_simulator::{Org, SimConfig, SimHandle, Simulator};

pub use casesync_tests::org_with_queue;

/// Quick retries, no visibility delay, and a run margin that leaves `budget` of a `deadline`.
pub fn test_timing() -> Timing {
    Timing {
        run_margin: Duration::ZERO,
        abandon_margin: Duration::ZERO,
        min_budget: Duration::ZERO,
        retry_delay: Duration::ZERO,
        max_retry_delay: Duration::ZERO,
    }
}

pub struct World {
    pub aws: Moto,
    pub names: ResourceNames,
    pub queue: QueueUrls,
    pub sim: SimHandle,
    pub queue_id: String,
    pub connections: Arc<DynamoConnectionStore>,
    pub points: Arc<DynamoDataPointStore>,
    pub secrets: Arc<SecretsManagerStore>,
    pub salesforce: Salesforce,
    /// Counts the data point store's DynamoDB calls (shared by every worker built here).
    pub metrics: Arc<Metrics>,
    /// Every message body the event source stand-in delivered.
    pub delivered: Mutex<Vec<String>>,
    pub invocations: AtomicU64,
}

impl World {
    /// moto resources named after `label`, and a simulator serving `org`.
    pub async fn start(label: &str, config: SimConfig, org: Org, queue_id: &str) -> Self {
        let aws = moto().await;
        let names = aws.tables(label).await;
        let queue = create_queue(&aws.sqs(), &names.queue, &QueueOptions::default())
            .await
            .expect("the queue is created");
        let sim = Simulator::start(config, org)
            .await
            .expect("the simulator starts");
        let metrics = Arc::new(Metrics::new());
        Self {
            connections: Arc::new(DynamoConnectionStore::new(
                aws.dynamodb(),
                &names.tables.connections,
            )),
            points: Arc::new(
                DynamoDataPointStore::new(aws.dynamodb(), &names.tables.data_points)
                    .with_metrics(metrics.clone()),
            ),
            secrets: Arc::new(SecretsManagerStore::new(
                aws.secrets_manager(),
                &names.secret_prefix,
            )),
            salesforce: salesforce_for(&sim, &test_http()),
            metrics,
            aws,
            names,
            queue,
            sim,
            queue_id: queue_id.to_owned(),
            delivered: Mutex::new(Vec::new()),
            invocations: AtomicU64::new(0),
        }
    }

    /// An org with one queue holding `n` closed Cases stamped 10+ minutes ago.
    pub async fn with_cases(label: &str, config: SimConfig, n: usize) -> Self {
        let (mut org, queue) = org_with_queue();
        for i in 0..n {
            closed_case(
                &mut org,
                &queue,
                minutes_ago(10 + i as i64),
                &format!("Case {i}"),
            );
        }
        Self::start(label, config, org, &queue).await
    }

    /// A worker on moto and the simulator.
    pub fn worker(&self, timing: Timing) -> Worker {
        self.worker_with_dynamodb(self.aws.dynamodb(), timing)
    }

    /// A worker whose DynamoDB calls go through `dynamodb` (e.g. a faulty proxy).
    pub fn worker_with_dynamodb(
        &self,
        dynamodb: aws_sdk_dynamodb::Client,
        timing: Timing,
    ) -> Worker {
        self.worker_with(dynamodb, self.queue.dead_letter_queue_url.clone(), timing)
    }

    pub fn worker_with(
        &self,
        dynamodb: aws_sdk_dynamodb::Client,
        dlq_url: String,
        timing: Timing,
    ) -> Worker {
        let sqs = self.aws.sqs();
        Worker::new(WorkerParts {
            connections: Arc::new(DynamoConnectionStore::new(
                dynamodb.clone(),
                &self.names.tables.connections,
            )),
            data_points: Arc::new(
                DynamoDataPointStore::new(dynamodb, &self.names.tables.data_points)
                    .with_metrics(self.metrics.clone()),
            ),
            secrets: self.secrets.clone(),
            queue: Arc::new(
                SqsWorkQueue::new(sqs, &self.queue.queue_url).with_dead_letter_queue(dlq_url),
            ),
            salesforce: self.salesforce.clone(),
            sync: SyncConfig::default(),
            clock: Arc::new(SystemClock),
            timing,
        })
    }

    /// Connects the org headlessly (a refresh token minted by the simulator), scoped to the
    /// queue, into the DynamoDB and Secrets Manager stores.
    pub async fn connect(&self) -> Connection {
        self.connect_with(SecretString::from(self.sim.mint_refresh_token()))
            .await
    }

    pub async fn connect_with(&self, refresh_token: SecretString) -> Connection {
        connect::with_refresh_token(
            &self.salesforce.oauth,
            self.connections.as_ref(),
            self.secrets.as_ref(),
            LoginUrl::parse(&self.sim.login_url()).expect("loopback"),
            refresh_token,
            ConnectionSettings {
                channel: ChannelName::parse("support").expect("valid"),
                scope: QueueScope::parse(&self.queue_id).expect("a queue id"),
                backfill: BackfillWindow::parse("6m").expect("valid"),
                api_version: ApiVersion::DEFAULT,
            },
            Utc::now(),
        )
        .await
        .expect("the headless connect succeeds")
    }

    /// Queues a work item as the scheduler or a worker would.
    pub async fn send(&self, connection: &ConnectionId, kind: WorkKind, at: DateTime<Utc>) {
        SqsWorkQueue::new(self.aws.sqs(), &self.queue.queue_url)
            .enqueue(&[WorkItem {
                connection_id: connection.clone(),
                kind,
                enqueued_at: at,
                idle_runs: 0,
                case_ids: Vec::new(),
            }])
            .await
            .expect("the item is queued");
    }

    /// Sends a raw body (e.g. a poison message) in message group `group`.
    pub async fn send_raw(&self, body: &str, group: &str) {
        self.aws
            .sqs()
            .send_message()
            .queue_url(&self.queue.queue_url)
            .message_body(body)
            .message_group_id(group)
            .message_deduplication_id(format!("raw-{}", uuid_like()))
            .send()
            .await
            .expect("the raw message is sent");
    }

    /// Receives up to `max` messages from `queue_url`, as Lambda's poller does.
    pub async fn receive_from(
        &self,
        queue_url: &str,
        max: i32,
    ) -> Vec<aws_sdk_sqs::types::Message> {
        self.aws
            .sqs()
            .receive_message()
            .queue_url(queue_url)
            .max_number_of_messages(max)
            .visibility_timeout(1800)
            .message_system_attribute_names(MessageSystemAttributeName::All)
            .message_attribute_names("All")
            .send()
            .await
            .expect("receive")
            .messages
            .unwrap_or_default()
    }

    /// The payload Lambda's SQS event source hands the function for `messages`.
    pub fn sqs_event(&self, messages: &[aws_sdk_sqs::types::Message]) -> SqsEvent {
        let records: Vec<serde_json::Value> = messages
            .iter()
            .map(|m| {
                let attributes: BTreeMap<String, String> = m
                    .attributes()
                    .map(|a| {
                        a.iter()
                            .map(|(k, v)| (k.as_str().to_owned(), v.clone()))
                            .collect()
                    })
                    .unwrap_or_default();
                serde_json::json!({
                    "messageId": m.message_id(),
                    "receiptHandle": m.receipt_handle(),
                    "body": m.body(),
                    "attributes": attributes,
                    "messageAttributes": {},
                    "md5OfBody": m.md5_of_body(),
                    "eventSource": "aws:sqs",
                    "eventSourceARN": format!("arn:aws:sqs:us-east-1:123456789012:{}", self.names.queue),
                    "awsRegion": "us-east-1"
                })
            })
            .collect();
        serde_json::from_value(serde_json::json!({ "Records": records }))
            .expect("a valid SQS event")
    }

    /// Invokes the handler with `messages` and a deadline `time_left` from now, then deletes
    /// what it acknowledged (as the event source mapping does).
    pub async fn invoke(
        &self,
        worker: &Worker,
        messages: &[aws_sdk_sqs::types::Message],
        time_left: Duration,
    ) -> SqsBatchResponse {
        let response = self.handle_only(worker, messages, time_left).await;
        let failed: Vec<&str> = response
            .batch_item_failures
            .iter()
            .map(|f| f.item_identifier.as_str())
            .collect();
        for m in messages {
            if !failed.contains(&m.message_id().unwrap_or("")) {
                // A message delivered twice at once is deleted twice: the second may be refused.
                let _ = self
                    .aws
                    .sqs()
                    .delete_message()
                    .queue_url(&self.queue.queue_url)
                    .receipt_handle(m.receipt_handle().unwrap_or(""))
                    .send()
                    .await;
            }
        }
        response
    }

    /// Invokes the handler with `messages` (a redelivery: nothing is deleted).
    pub async fn handle_only(
        &self,
        worker: &Worker,
        messages: &[aws_sdk_sqs::types::Message],
        time_left: Duration,
    ) -> SqsBatchResponse {
        {
            let mut delivered = self.delivered.lock().unwrap();
            delivered.extend(messages.iter().filter_map(|m| m.body().map(str::to_owned)));
        }
        self.invocations.fetch_add(1, Ordering::Relaxed);
        handle(
            worker,
            LambdaEvent::new(self.sqs_event(messages), context(time_left)),
        )
        .await
        .expect("the handler answers")
    }

    /// One poll of the event source with batch size `batch`: `None` when the queue is empty.
    pub async fn deliver(
        &self,
        worker: &Worker,
        batch: i32,
        time_left: Duration,
    ) -> Option<SqsBatchResponse> {
        let messages = self.receive_from(&self.queue.queue_url, batch).await;
        if messages.is_empty() {
            return None;
        }
        Some(self.invoke(worker, &messages, time_left).await)
    }

    /// Delivers until the queue is empty (at most `max` invocations); returns how many ran.
    pub async fn drain(&self, worker: &Worker, time_left: Duration, max: usize) -> usize {
        for n in 0..max {
            if self.deliver(worker, 1, time_left).await.is_none() {
                return n;
            }
        }
        panic!("the queue was not empty after {max} invocations");
    }

    pub async fn queue_depth(&self, queue_url: &str) -> u64 {
        let attrs = self
            .aws
            .sqs()
            .get_queue_attributes()
            .queue_url(queue_url)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
            .send()
            .await
            .expect("queue attributes")
            .attributes
            .unwrap_or_default();
        [
            QueueAttributeName::ApproximateNumberOfMessages,
            QueueAttributeName::ApproximateNumberOfMessagesNotVisible,
        ]
        .iter()
        .filter_map(|k| attrs.get(k).and_then(|v| v.parse::<u64>().ok()))
        .sum()
    }

    pub async fn connection(&self, id: &ConnectionId) -> Connection {
        self.connections
            .get_connection(id)
            .await
            .expect("read")
            .expect("the connection exists")
    }

    pub async fn stored(&self, id: &ConnectionId) -> Vec<DataPoint> {
        self.points
            .list_data_points(id, None, 10_000)
            .await
            .expect("list data points")
    }

    /// The org's closed Cases in the queue: id → SystemModstamp.
    pub fn expected(&self) -> BTreeMap<String, DateTime<Utc>> {
        self.sim.with_org(|o| {
            o.cases()
                .iter()
                .filter(|c| c.is_closed() && c.owner_id.as_str() == self.queue_id)
                .map(|c| (c.id.as_str().to_owned(), c.system_modstamp))
                .collect()
        })
    }

    /// Asserts that the stored points are exactly the expected Cases, each once, current.
    pub async fn assert_complete(&self, id: &ConnectionId) {
        let expected = self.expected();
        let points = self.stored(id).await;
        let stored: BTreeMap<String, DateTime<Utc>> = points
            .iter()
            .map(|p| (p.case_id.to_string(), p.system_modstamp))
            .collect();
        assert_eq!(stored.len(), points.len(), "a Case is stored twice");
        assert_eq!(stored, expected, "stored data points differ from the org");
    }
}

/// A Lambda context whose deadline is `time_left` from now.
pub fn context(time_left: Duration) -> Context {
    let deadline = SystemTime::now() + time_left;
    let mut context = Context::default();
    context.request_id = format!("req-{}", uuid_like());
    context.deadline = deadline
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    context
}

fn uuid_like() -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    format!(
        "{}-{}",
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// A DynamoDB endpoint in front of moto that answers `ThrottlingException` while told to.
pub struct FaultyDynamo {
    pub url: String,
    rule: Arc<Mutex<Fault>>,
    pub faulted: Arc<AtomicU64>,
}

/// Which requests the proxy throttles.
#[derive(Debug, Clone)]
pub enum Fault {
    None,
    All,
    /// Requests whose `X-Amz-Target` ends with this operation (e.g. `BatchWriteItem`).
    Operation(String),
    /// Requests whose body mentions this text (e.g. a connection id).
    Mentioning(String),
    /// The first `n` requests whose body mentions this text; the later ones pass.
    MentioningFirst(String, u64),
    /// Lets `skip` requests through, throttles the next `times`, then lets all through.
    Window {
        skip: u64,
        times: u64,
    },
}

impl FaultyDynamo {
    pub async fn start(upstream: &str) -> Self {
        let rule = Arc::new(Mutex::new(Fault::None));
        let faulted = Arc::new(AtomicU64::new(0));
        let state = ProxyState {
            upstream: upstream.trim_end_matches('/').to_owned(),
            client: reqwest::Client::new(),
            rule: rule.clone(),
            faulted: faulted.clone(),
        };
        let app = axum::Router::new()
            .fallback(forward)
            .with_state(Arc::new(state));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the proxy");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { url, rule, faulted }
    }

    pub fn set(&self, fault: Fault) {
        *self.rule.lock().unwrap() = fault;
    }

    /// With `Fault::Window { skip: from, .. }` set, how many requests have passed since.
    pub fn remaining_skip(&self, from: u64) -> u64 {
        match &*self.rule.lock().unwrap() {
            Fault::Window { skip, .. } => from - skip,
            _ => 0,
        }
    }

    /// A DynamoDB client through this proxy, with quick SDK retries (2 attempts).
    pub fn client(&self, aws: &Moto) -> aws_sdk_dynamodb::Client {
        let config = aws_sdk_dynamodb::config::Builder::from(aws.sdk_config())
            .endpoint_url(&self.url)
            .retry_config(
                aws_sdk_dynamodb::config::retry::RetryConfig::standard()
                    .with_max_attempts(2)
                    .with_initial_backoff(Duration::from_millis(5)),
            )
            .build();
        aws_sdk_dynamodb::Client::from_conf(config)
    }
}

struct ProxyState {
    upstream: String,
    client: reqwest::Client,
    rule: Arc<Mutex<Fault>>,
    faulted: Arc<AtomicU64>,
}

async fn forward(
    axum::extract::State(state): axum::extract::State<Arc<ProxyState>>,
    request: axum::extract::Request,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let (parts, body) = request.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, usize::MAX).await else {
        return axum::http::StatusCode::BAD_REQUEST.into_response();
    };
    let target = parts
        .headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let fault = match &mut *state.rule.lock().unwrap() {
        Fault::None => false,
        Fault::All => true,
        Fault::Operation(op) => target.ends_with(&format!(".{op}")),
        Fault::Mentioning(text) => String::from_utf8_lossy(&bytes).contains(text.as_str()),
        Fault::Window { skip, times } => {
            if *skip > 0 {
                *skip -= 1;
                false
            } else if *times > 0 {
                *times -= 1;
                true
            } else {
                false
            }
        }
        Fault::MentioningFirst(text, left) => {
            let hit = *left > 0 && String::from_utf8_lossy(&bytes).contains(text.as_str());
            if hit {
                *left -= 1;
            }
            hit
        }
    };
    if fault {
        state.faulted.fetch_add(1, Ordering::Relaxed);
        return (
            axum::http::StatusCode::BAD_REQUEST,
            [("content-type", "application/x-amz-json-1.0")],
            r#"{"__type":"com.amazonaws.dynamodb.v20120810#ThrottlingException","message":"Rate of requests exceeds the allowed throughput."}"#,
        )
            .into_response();
    }
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let mut upstream = state
        .client
        .request(parts.method.clone(), format!("{}{path}", state.upstream))
        .body(bytes);
    for (name, value) in &parts.headers {
        if name != "host" && name != "content-length" {
            upstream = upstream.header(name, value);
        }
    }
    match upstream.send().await {
        Ok(response) => {
            let status = response.status();
            let headers = response.headers().clone();
            let body = response.bytes().await.unwrap_or_default();
            let mut out = (status, body).into_response();
            for (name, value) in &headers {
                if name != "content-length" && name != "transfer-encoding" {
                    out.headers_mut().insert(name, value.clone());
                }
            }
            out
        }
        Err(_) => axum::http::StatusCode::BAD_GATEWAY.into_response(),
    }
}
