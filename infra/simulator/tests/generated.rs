//! The benchmark org and the demo org served over HTTP.

mod common;

use std::time::Instant;

use chrono::Duration;
use common::*;
use reqwest::StatusCode;
use sf_simulator::{Org, OrgSpec, SimConfig, utc};

#[test]
fn generated_orgs_follow_the_spec_and_are_deterministic() {
    let end = utc(2024, 6, 1, 0, 0, 0);
    let spec = OrgSpec {
        cases: 20_000,
        seed: 9,
        emails_per_case: 0..=10,
        body_bytes: 500..=8000,
        html_only_share: 0.3,
        tie_share: 0.1,
        start: end - Duration::days(90),
        end,
        ..OrgSpec::default()
    };
    let t = Instant::now();
    let org = Org::generated(spec.clone());
    let built_in = t.elapsed();
    assert_eq!(org.cases().len(), 20_000);
    assert!(built_in.as_secs() < 20, "{built_in:?}");
    assert!(
        org.cases()
            .iter()
            .all(|c| c.is_closed() && c.owner_id.prefix() == "00G")
    );
    assert!(
        org.cases()
            .iter()
            .all(|c| c.system_modstamp >= spec.start && c.system_modstamp < end)
    );
    let per_case: Vec<usize> = org
        .cases()
        .iter()
        .take(500)
        .map(|c| org.emails_of(c.id.as_str()).len())
        .collect();
    assert!(per_case.iter().all(|&n| n <= 10) && per_case.contains(&0) && per_case.contains(&10));
    let html_only = org
        .emails()
        .iter()
        .filter(|e| e.text_body.is_none())
        .count() as f64;
    let share = html_only / org.emails().len() as f64;
    assert!((0.25..0.35).contains(&share), "{share}");
    for e in org.emails().iter().take(200) {
        let body = e
            .html_body
            .as_ref()
            .or(e.text_body.as_ref())
            .expect("a body");
        assert!(body.as_str().len() >= 450, "{}", body.as_str().len());
    }
    let mut stamps: Vec<_> = org.cases().iter().map(|c| c.system_modstamp).collect();
    stamps.sort();
    stamps.dedup();
    assert!(stamps.len() < 19_000, "ties exist: {}", stamps.len());
    let again = Org::generated(spec);
    assert_eq!(again.emails().len(), org.emails().len());
    assert_eq!(
        again.emails()[123]
            .text_body
            .as_ref()
            .map(|b| b.as_str().to_string()),
        org.emails()[123]
            .text_body
            .as_ref()
            .map(|b| b.as_str().to_string())
    );
}

#[tokio::test]
async fn the_sample_org_serves_a_30_day_backfill() {
    let now = chrono::Utc::now();
    let ctx = start(SimConfig::default(), Org::sample(3, now)).await;
    let since = (now - Duration::days(30)).format("%Y-%m-%dT%H:%M:%SZ");
    let soql = format!(
        "SELECT Id, CaseNumber, Subject, Description, Contact.Name, Owner.Type, Owner.Name, \
         (SELECT Id, Incoming, TextBody, HtmlBody FROM EmailMessages ORDER BY MessageDate ASC, Id ASC) \
         FROM Case WHERE Status = 'Closed' AND Owner.Type = 'Queue' AND SystemModstamp >= {since} \
         ORDER BY SystemModstamp ASC, Id ASC"
    );
    let pages = ctx.query_all_pages(&soql, Some(200)).await;
    let total = pages[0]["totalSize"].as_u64().expect("n") as usize;
    let all = ctx.query("SELECT COUNT() FROM Case", None).await.json()["totalSize"]
        .as_u64()
        .expect("n");
    assert!(total > 20 && (total as u64) < all, "{total} of {all}");
    assert_eq!(record_ids(&pages).len(), total);
    let count = ctx
        .query(&format!("SELECT COUNT() FROM Case WHERE Status = 'Closed' AND Owner.Type = 'Queue' AND SystemModstamp >= {since}"), None)
        .await;
    assert_eq!(count.status, StatusCode::OK);
    assert_eq!(count.json()["totalSize"].as_u64(), Some(total as u64));
}
