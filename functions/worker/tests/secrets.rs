//! No secret leaves its store: after a full run (a backfill across continuations, refresh-token
//! rotation, expiring access tokens, a connection whose token is refused, a poison message),
//! with every TRACE line of every crate captured, the refresh tokens, the access tokens and
//! the Connected App's secret appear nowhere: not in the logs, not in an error message, not in
//! any DynamoDB item of any table, not in any SQS message body.
//!
//! Its own test binary: the capturing subscriber is process-wide, so it sees the SDK's,
//! reqwest's and the simulator's threads as well as ours.

mod support;

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use casesync_core::domain::{ConnectionState, LoginUrl};
use casesync_core::ports::{SecretStore, WorkKind};
use casesync_worker::Timing;
use chrono::Utc;
use secrecy::{ExposeSecret, SecretString};
use sf_simulator::SimConfig;
use support::{World, test_timing};

#[derive(Clone, Default)]
struct Buffer(Arc<Mutex<Vec<u8>>>);

impl Write for Buffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Every log line of the process, at TRACE, from every crate.
fn logs() -> &'static Buffer {
    static LOGS: OnceLock<Buffer> = OnceLock::new();
    LOGS.get_or_init(|| {
        let buffer = Buffer::default();
        let writer = buffer.clone();
        tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .init();
        buffer
    })
}

/// Access tokens of the simulator look like Salesforce's: `00D<org>!AR<random>`.
fn access_tokens_in(text: &str) -> usize {
    text.match_indices("!AR")
        .filter(|(i, _)| {
            let start = i.saturating_sub(15);
            text.get(start..*i)
                .is_some_and(|org| org.starts_with("00D"))
        })
        .count()
}

#[tokio::test]
async fn no_token_or_client_secret_reaches_logs_errors_items_or_messages() {
    let logs = logs();

    // Given an org whose refresh tokens rotate and whose access tokens die after 3 calls,
    // a connection with a backfill of 40 Cases, and one whose refresh token is refused
    let config = SimConfig {
        rotate_refresh_tokens: true,
        access_token_ttl_calls: Some(3),
        page_size_cap: Some(5),
        latency: Duration::from_millis(60),
        ..SimConfig::default()
    };
    let w = World::with_cases("wk-secrets", config, 40).await;
    let first_token = w.sim.mint_refresh_token();
    let a = w
        .connect_with(SecretString::from(first_token.clone()))
        .await;
    let b = w.connect().await;
    let refused = "5Aep861RefusedRefreshTokenThatTheSimulatorNeverIssuedXyZ0123456789";
    w.secrets
        .put_refresh_token(&b.id, &SecretString::from(refused))
        .await
        .unwrap();
    let client_secret = w.sim.client_secret();

    // When ticks, a poison message and the continuations they cause are all delivered
    w.send(&a.id, WorkKind::Tick, Utc::now()).await;
    w.send(&b.id, WorkKind::Tick, Utc::now()).await;
    w.send_raw("{\"not\": \"a work item\"}", "poison").await;
    let worker = w.worker(Timing {
        run_margin: Duration::from_secs(2),
        ..test_timing()
    });
    let mut responses = Vec::new();
    for _ in 0..60 {
        match w.deliver(&worker, 10, Duration::from_millis(2300)).await {
            Some(r) => responses.push(format!("{r:?}")),
            None => break,
        }
    }

    // Then the run did what it should (so the haystacks below are full ones)
    w.assert_complete(&a.id).await;
    let b_after = w.connection(&b.id).await;
    assert_eq!(b_after.state, ConnectionState::NeedsReauth);
    let stats = w.sim.stats();
    assert!(stats.token_refresh >= 3, "{stats:?}");
    let last_token = w
        .secrets
        .get_refresh_token(&a.id)
        .await
        .unwrap()
        .expect("A's refresh token");
    let last_token = last_token.expose_secret().to_owned();
    assert_ne!(last_token, first_token, "the token rotated");
    // (a refresh made here shows what an access token looks like)
    let probe = w
        .salesforce
        .oauth
        .refresh(
            &LoginUrl::parse(&w.sim.login_url()).unwrap(),
            &SecretString::from(w.sim.mint_refresh_token()),
        )
        .await
        .unwrap();
    assert_eq!(access_tokens_in(probe.access_token.expose_secret()), 1);

    // The haystacks: every log line; every error the handler returned; every item of every
    // table; every message body delivered from the work queue, and the dead-letter queue's.
    let log_text = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    assert!(
        log_text.contains("sync run finished"),
        "our lines are captured"
    );
    assert!(log_text.contains("TRACE"), "TRACE lines are captured");
    assert!(
        log_text.contains("aws_smithy"),
        "the SDK's lines are captured"
    );
    let errors = responses.join("\n");
    let mut items = String::new();
    let ddb = w.aws.dynamodb();
    for table in [
        &w.names.tables.connections,
        &w.names.tables.data_points,
        &w.names.tables.auth_states,
    ] {
        let scan = ddb.scan().table_name(table).send().await.unwrap();
        for item in scan.items() {
            items.push_str(&format!("{item:?}\n"));
        }
    }
    assert!(items.contains(a.id.as_str()) && items.contains("needs_reauth"));
    let mut bodies = w.delivered.lock().unwrap().join("\n");
    for m in w.receive_from(&w.queue.dead_letter_queue_url, 10).await {
        bodies.push_str(&format!("{m:?}\n"));
    }
    assert!(bodies.contains("continuation") && bodies.contains("not"));

    for (what, haystack) in [
        ("logs", &log_text),
        ("errors", &errors),
        ("DynamoDB items", &items),
        ("SQS messages", &bodies),
    ] {
        for (name, secret) in [
            ("the first refresh token", first_token.as_str()),
            ("the rotated refresh token", last_token.as_str()),
            ("the refused refresh token", refused),
            ("the client secret", client_secret.as_str()),
        ] {
            assert_eq!(
                haystack.matches(secret).count(),
                0,
                "{name} is in the {what}"
            );
        }
        assert_eq!(
            access_tokens_in(haystack),
            0,
            "an access token is in the {what}"
        );
    }
}
