//! The Channel's figures, on moto: DynamoDB read calls per page of the read API, change events
//! per data point change, and how long a consumer of the read API takes to catch up.

use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_lambda_events::dynamodb::Event;
use casesync_aws::testing::http_api_event;
use casesync_aws::{
    DynamoAuthStateStore, DynamoConnectionStore, DynamoDataPointStore, EventBridgePublisher,
    Metrics, SecretsManagerStore,
};
use casesync_core::channel::{self, CursorKey, PageRequest};
use casesync_core::data_point::DataPoint;
use casesync_core::domain::ChannelName;
use casesync_core::manage::{Manager, Policy};
use casesync_core::memory::MemoryStore;
use casesync_core::ports::{DataPointWriter, SystemClock};
use casesync_core::sync::{SyncConfig, SyncEngine, SyncOutcome};
use chrono::{TimeDelta, Utc};
use sf_simulator::{Org, OrgSpec, SimConfig, Simulator};

use crate::figures::{BODY_BYTES, EMAILS, Row, Verdict};

/// Points updated (and as many rewritten unchanged) for the events figure.
const CHANGES: usize = 100;

pub async fn figures(cases: usize) -> anyhow::Result<Vec<Row>> {
    let aws = casesync_aws::testing::try_moto()
        .await
        .map_err(|e| anyhow::anyhow!("moto is needed for these figures: {e}"))?;
    let names = aws.tables("bench-channel").await;
    let ddb = aws.dynamodb();
    let metrics = Arc::new(Metrics::new());
    let points = Arc::new(
        DynamoDataPointStore::new(ddb.clone(), &names.tables.data_points)
            .with_metrics(metrics.clone())
            .with_visibility_lag(TimeDelta::zero()),
    );
    let connections = Arc::new(DynamoConnectionStore::new(
        ddb.clone(),
        &names.tables.connections,
    ));
    let bus = format!("{}-bus", names.tables.data_points);
    let consumer_queue = aws
        .bus_to_queue(&bus, &serde_json::json!({"source": ["casesync"]}))
        .await;
    let mut stream = aws.stream(&names.tables.data_points).await;

    // A backfill of the benchmark org into DynamoDB.
    let org = Org::generated(OrgSpec {
        cases,
        emails_per_case: EMAILS.0..=EMAILS.1,
        body_bytes: BODY_BYTES.0..=BODY_BYTES.1,
        ..OrgSpec::default()
    });
    let sim = Simulator::start(SimConfig::default(), org).await?;
    let secrets = Arc::new(MemoryStore::new());
    let (salesforce, connection) =
        crate::figures::connect_to(&sim, connections.as_ref(), secrets.as_ref(), Utc::now())
            .await?;
    let engine = SyncEngine::new(
        connections.clone(),
        points.clone(),
        secrets,
        Arc::new(SystemClock),
        salesforce.clone(),
        SyncConfig {
            lag: TimeDelta::zero(),
            ..SyncConfig::default()
        },
    );
    let r = engine
        .sync(&connection.id, Duration::from_secs(3600), None)
        .await?;
    anyhow::ensure!(r.outcome == SyncOutcome::Done, "{r:?}");
    sim.shutdown().await;
    let channel = ChannelName::parse("bench")?;

    // Read calls per page of 100.
    let mut request = PageRequest {
        channel: channel.clone(),
        connection: None,
        since: None,
        after: None,
        limit: 100,
        budget: Some(casesync_api::read::PAGE_BUDGET),
    };
    let mut pages = 0u64;
    let mut worst = 0u64;
    let (mut queries, mut gets) = (0u64, 0u64);
    let mut read: Vec<DataPoint> = Vec::new();
    loop {
        let start = metrics.snapshot();
        let page = channel::read_page(points.as_ref(), &request, Utc::now()).await?;
        if page.points.is_empty() && page.omitted.is_empty() {
            break;
        }
        let used = metrics.snapshot() - start;
        worst = worst.max(used.query_calls + used.get_item_calls);
        queries += used.query_calls;
        gets += used.get_item_calls;
        pages += 1;
        for p in &page.points {
            read.push(serde_json::from_str(&p.json)?);
        }
        request.after = page.next;
    }
    let per_page = (queries + gets) as f64 / pages.max(1) as f64;
    anyhow::ensure!(
        read.len() as u64 == r.counts.created,
        "every point was read"
    );
    let mut rows = vec![Row {
        figure: format!(
            "DynamoDB read calls per API page of 100 points ({} points, {pages} pages)",
            read.len()
        ),
        measured: format!(
            "{per_page:.2} per page (worst {worst}; {queries} Query + {gets} GetItem in all)"
        ),
        limit: "one Query on the change index per page".into(),
        target: "<= 2 + 1 per split body".into(),
        verdict: Verdict::of(worst <= 2),
    }];

    // Events per change: every create, then CHANGES updates and CHANGES unchanged rewrites.
    let publisher = casesync_publisher::Publisher::new(
        EventBridgePublisher::new(aws.eventbridge(), &bus).with_metrics(metrics.clone()),
    );
    let mut publish = async || -> anyhow::Result<()> {
        // A few batches of stream records at most (1,000 a batch); a stream that never ends
        // would hang the benchmark, so it is an error.
        let mut batches = 0;
        while let Some(event) = stream.next_event().await {
            batches += 1;
            anyhow::ensure!(
                batches <= 100,
                "the table's stream handed on more than 100 batches for a few hundred writes"
            );
            let event: Event = serde_json::from_value(event)?;
            let response = publisher.process(event).await;
            anyhow::ensure!(response.batch_item_failures.is_empty(), "{response:?}");
        }
        Ok(())
    };
    publish().await?;
    let created_events = aws.drain_queue(&consumer_queue).await.len();
    let updated: Vec<DataPoint> = read
        .iter()
        .take(CHANGES)
        .map(|p| {
            let mut p = p.clone();
            p.subject = Some(format!("{} (edited)", p.subject.unwrap_or_default()));
            p.system_modstamp += TimeDelta::seconds(1);
            p
        })
        .collect();
    let unchanged: Vec<DataPoint> = read.iter().skip(CHANGES).take(CHANGES).cloned().collect();
    points.upsert_data_points(&updated).await?;
    points.upsert_data_points(&unchanged).await?;
    publish().await?;
    let change_events = aws.drain_queue(&consumer_queue).await;
    let updates = change_events
        .iter()
        .filter(|e| e["detail-type"] == "Data Point Updated")
        .count();
    let per_change = (created_events + updates) as f64 / (read.len() + updated.len()) as f64;
    let others = change_events.len() - updates;
    rows.push(Row {
        figure: format!(
            "events per data point change ({} creates, {} updates, {} unchanged rewrites)",
            read.len(),
            updated.len(),
            unchanged.len()
        ),
        measured: format!(
            "{per_change:.2} per change; {others} for the unchanged rewrites ({} PutEvents calls)",
            metrics.snapshot().put_events_calls
        ),
        limit: "one event per change".into(),
        target: "exactly 1, and 0 per unchanged rewrite".into(),
        verdict: Verdict::of(
            created_events == read.len() && updates == updated.len() && others == 0,
        ),
    });

    // A consumer of the read API catching up on the whole channel, page by page.
    let manager = Manager {
        connections: connections.clone(),
        data_points: points.clone(),
        auth_states: Arc::new(DynamoAuthStateStore::new(ddb, &names.tables.auth_states)),
        secrets: Arc::new(SecretsManagerStore::new(
            aws.secrets_manager(),
            &names.secret_prefix,
        )),
        salesforce,
        clock: Arc::new(SystemClock),
        policy: Policy::default(),
        actor: "the benchmark",
    };
    let api = casesync_api::Api {
        manager,
        callback_url: None,
        feed: points.clone(),
        cursor_key: Arc::new(CursorKey::new(b"bench".to_vec())),
    };
    let started = Instant::now();
    let mut cursor: Option<String> = None;
    let mut mirrored = 0usize;
    loop {
        let path = match &cursor {
            Some(c) => format!("/channels/bench/data-points?limit=100&cursor={c}"),
            None => "/channels/bench/data-points?limit=100".to_owned(),
        };
        let req = lambda_http::request::from_str(&http_api_event("GET", &path, None, &[]))?;
        let response = api.handle(req).await;
        let lambda_http::Body::Text(text) = response.body() else {
            anyhow::bail!("the page is not text: {}", response.status());
        };
        let page: serde_json::Value = serde_json::from_str(text)?;
        let n = page["data_points"].as_array().map_or(0, Vec::len);
        if n == 0 {
            break;
        }
        mirrored += n;
        cursor = page["next_cursor"].as_str().map(str::to_owned);
    }
    let took = started.elapsed();
    rows.push(Row {
        figure: format!("mirror consumer catching up on {mirrored} points (read API, moto)"),
        measured: format!(
            "{:.1} s ({:.0} points/s)",
            took.as_secs_f64(),
            mirrored as f64 / took.as_secs_f64()
        ),
        limit: "pages of 100, one after the other".into(),
        target: "report".into(),
        verdict: Verdict::Info,
    });
    Ok(rows)
}
