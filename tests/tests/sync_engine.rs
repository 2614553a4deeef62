//! The sync engine against the Salesforce simulator over HTTP: every behaviour the core must
//! have, each as a specification.

use std::collections::BTreeSet;
use std::time::Duration;

use casesync_core::data_point::{ContentSource, Direction};
use casesync_core::domain::{BackfillWindow, ConnectionState, QueueScope};
use casesync_core::ports::{ConnectionReader, SecretStore};
use casesync_core::sync::{SyncConfig, SyncOutcome};
use casesync_tests::*;
use chrono::TimeDelta;
use secrecy::ExposeSecret;
use sf_simulator::{FaultKind, FaultRule, FaultTarget, NewCase, NewEmail, Org, SimConfig};

#[tokio::test]
async fn every_field_of_a_case_becomes_its_data_point() {
    // Given a closed queue Case with a contact and a two-way thread
    let (mut org, q) = org_with_queue();
    let contact = org.add_contact("Jane Doe", "jane@example.com");
    let at = minutes_ago(30);
    let case = org.add_case(NewCase {
        subject: Some("Printer on fire".into()),
        status: "Closed".into(),
        priority: Some("High".into()),
        origin: Some("Email".into()),
        case_type: Some("Problem".into()),
        created_date: Some(at - TimeDelta::hours(2)),
        system_modstamp: Some(at),
        description: Some("It burns".into()),
        contact_id: Some(contact),
        owner_id: Some(q.clone()),
        ..NewCase::default()
    });
    let inbound = email(&mut org, &case, at - TimeDelta::minutes(90), true, "Help!");
    let outbound = email(
        &mut org,
        &case,
        at - TimeDelta::minutes(60),
        false,
        "Fixed.",
    );
    let h = Harness::start(SimConfig::default(), org).await;
    let conn = h.connect(QueueScope::All, BackfillWindow::Days7).await;

    // When it syncs
    let report = h.sync(&conn.id).await;

    // Then the data point carries every field of the contract
    assert_eq!(report.outcome, SyncOutcome::Done, "{report:?}");
    let points = h.points();
    assert_eq!(points.len(), 1);
    let p = &points[0];
    let json = serde_json::to_value(p).unwrap();
    let sim_case = h.sim.with_org(|o| o.case(&case).unwrap().clone());
    assert_eq!(json["case_id"], case.as_str());
    assert_eq!(json["case_number"], sim_case.case_number.as_str());
    assert_eq!(json["connection_id"], conn.id.as_str());
    assert_eq!(json["channel"], "support");
    assert_eq!(json["subject"], "Printer on fire");
    assert_eq!(json["status"], "Closed");
    assert_eq!(json["priority"], "High");
    assert_eq!(json["origin"], "Email");
    assert_eq!(json["type"], "Problem");
    assert_eq!(
        json["created_date"],
        casesync_core::data_point::rfc3339::format(&(at - TimeDelta::hours(2)))
    );
    assert_eq!(
        json["system_modstamp"],
        casesync_core::data_point::rfc3339::format(&at)
    );
    assert_eq!(
        json["salesforce_link"],
        format!("{}/lightning/r/Case/{case}/view", h.sim.instance_url())
    );
    assert_eq!(
        json["participant"],
        serde_json::json!({"email": "customer@example.com", "name": "Customer"})
    );
    assert_eq!(json["content_source"], "email_thread");
    assert_eq!(json["conversation"][0]["message_id"], inbound.as_str());
    assert_eq!(json["conversation"][0]["direction"], "inbound");
    assert_eq!(json["conversation"][0]["text"], "Help!");
    assert_eq!(json["conversation"][0]["to_address"], "support@acme.test");
    assert_eq!(json["conversation"][1]["message_id"], outbound.as_str());
    assert_eq!(json["conversation"][1]["direction"], "outbound");
    assert_eq!(json["conversation"][1]["from_name"], "Support");
    assert_eq!(
        json["id"],
        casesync_core::data_point::DataPoint::id_for(&conn.id, &p.case_id)
    );
    // ... read from answers gzip-compressed as Salesforce sends them (the client asks), and
    // nothing was written to Salesforce
    let stats = h.sim.stats();
    assert!(stats.gzip_responses >= stats.queries, "{stats:?}");
    assert_eq!(stats.write_attempts, 0);
}

#[tokio::test]
async fn without_inbound_mail_the_contact_is_the_participant_and_description_only_cases_keep_their_text()
 {
    let (mut org, q) = org_with_queue();
    let contact = org.add_contact("Jo Contact", "jo@example.com");
    let at = minutes_ago(40);
    let outbound_only = org.add_case(NewCase {
        owner_id: Some(q.clone()),
        system_modstamp: Some(at),
        contact_id: Some(contact.clone()),
        ..NewCase::default()
    });
    email(
        &mut org,
        &outbound_only,
        at - TimeDelta::minutes(5),
        false,
        "We fixed it",
    );
    let described = org.add_case(NewCase {
        owner_id: Some(q.clone()),
        system_modstamp: Some(at + TimeDelta::seconds(1)),
        description: Some("Only a description".into()),
        contact_id: Some(contact),
        ..NewCase::default()
    });
    let empty = org.add_case(NewCase {
        owner_id: Some(q.clone()),
        system_modstamp: Some(at + TimeDelta::seconds(2)),
        description: None,
        ..NewCase::default()
    });
    let h = Harness::start(SimConfig::default(), org).await;
    let conn = h.connect(QueueScope::All, BackfillWindow::Days7).await;
    assert_eq!(h.sync(&conn.id).await.outcome, SyncOutcome::Done);

    let by_id = |id: &str| {
        h.points()
            .into_iter()
            .find(|p| p.case_id.as_str() == id)
            .unwrap()
    };
    let p = by_id(&outbound_only);
    assert_eq!(p.participant.email.as_deref(), Some("jo@example.com"));
    assert_eq!(p.participant.name.as_deref(), Some("Jo Contact"));
    let d = by_id(&described);
    assert_eq!(d.content_source, ContentSource::Description);
    assert_eq!(d.conversation.len(), 1);
    assert_eq!(d.conversation[0].text, "Only a description");
    assert_eq!(d.conversation[0].sent_at, d.created_date);
    assert!(d.conversation[0].message_id.is_none() && d.conversation[0].direction.is_none());
    let e = by_id(&empty);
    assert_eq!(e.content_source, ContentSource::None);
    assert!(e.conversation.is_empty());
}

#[tokio::test]
async fn the_conversation_is_ordered_by_message_date_then_id() {
    let (mut org, q) = org_with_queue();
    let at = minutes_ago(20);
    let case = closed_case(&mut org, &q, at, "order");
    let same = at - TimeDelta::minutes(10);
    let third = email(&mut org, &case, at - TimeDelta::minutes(1), true, "third");
    let a = email(&mut org, &case, same, false, "tie a");
    let b = email(&mut org, &case, same, true, "tie b");
    let first = email(&mut org, &case, at - TimeDelta::minutes(50), true, "first");
    let h = Harness::start(SimConfig::default(), org).await;
    let conn = h.connect(QueueScope::All, BackfillWindow::Days7).await;
    h.sync(&conn.id).await;
    let p = &h.points()[0];
    let ids: Vec<_> = p
        .conversation
        .iter()
        .map(|m| m.message_id.clone().unwrap())
        .collect();
    let mut tie = [a, b];
    tie.sort();
    assert_eq!(
        ids,
        vec![first.clone(), tie[0].clone(), tie[1].clone(), third]
    );
    assert_eq!(p.participant.email.as_deref(), Some("customer@example.com"));
    assert_eq!(p.conversation[0].direction, Some(Direction::Inbound));
}

#[tokio::test]
async fn html_only_mail_becomes_readable_text() {
    let (mut org, q) = org_with_queue();
    let at = minutes_ago(20);
    let case = closed_case(&mut org, &q, at, "html");
    org.add_email(
        &case,
        NewEmail {
            message_date: Some(at - TimeDelta::minutes(3)),
            incoming: true,
            text_body: None,
            html_body: Some(
                "<html><body><p>Dear&nbsp;support,</p><p>My <b>invoice</b> &amp; receipt are \
                 <a href=\"https://billing.example/x\">missing</a>.<br>Thanks</p></body></html>"
                    .into(),
            ),
            ..NewEmail::default()
        },
        false,
    );
    let h = Harness::start(SimConfig::default(), org).await;
    let conn = h.connect(QueueScope::All, BackfillWindow::Days7).await;
    h.sync(&conn.id).await;
    let text = &h.points()[0].conversation[0].text;
    assert!(
        text.contains("My invoice & receipt are missing."),
        "{text:?}"
    );
    assert!(text.contains("\nThanks"), "{text:?}");
    assert!(
        !text.contains('<') && !text.contains("&amp;") && !text.contains("https://"),
        "{text:?}"
    );
}

#[tokio::test]
async fn a_truncated_thread_of_450_emails_arrives_whole() {
    let (mut org, q) = org_with_queue();
    let at = minutes_ago(30);
    let case = closed_case(&mut org, &q, at, "long thread");
    for i in 0..450 {
        email(
            &mut org,
            &case,
            at - TimeDelta::minutes(600) + TimeDelta::seconds(i),
            i % 2 == 0,
            &format!("message {i}"),
        );
    }
    let h = Harness::start(SimConfig::default(), org).await;
    let conn = h.connect(QueueScope::All, BackfillWindow::Days7).await;
    let report = h.sync(&conn.id).await;
    assert_eq!(report.outcome, SyncOutcome::Done);
    let p = &h.points()[0];
    assert_eq!(p.conversation.len(), 450);
    for (i, m) in p.conversation.iter().enumerate() {
        assert_eq!(m.text, format!("message {i}"));
    }
    // The child list was followed (200 inline, then two more chunks), not re-queried per Case.
    let stats = h.sim.stats();
    assert!(stats.child_more >= 2, "{stats:?}");
    assert_eq!(stats.queries, 1);
}

#[tokio::test]
async fn cases_sharing_one_system_modstamp_across_pages_arrive_exactly_once() {
    let (mut org, q) = org_with_queue();
    let tie = minutes_ago(60);
    let mut expected = BTreeSet::new();
    for i in 0..450 {
        expected.insert(closed_case(&mut org, &q, tie, &format!("tie {i}")));
    }
    // Small pages force the tie across many page boundaries and several runs.
    let config = SimConfig {
        page_size_cap: Some(50),
        ..SimConfig::default()
    };
    let h = Harness::start_with(
        config,
        org,
        SyncConfig {
            batch_size: 200,
            ..SyncConfig::default()
        },
        test_http(),
    )
    .await;
    let conn = h.connect(QueueScope::All, BackfillWindow::Days7).await;
    // Stop after roughly every page, resuming from the cursor each time.
    let mut runs = 0;
    loop {
        runs += 1;
        let r = h.sync_for(&conn.id, Duration::from_millis(1)).await;
        if r.outcome == SyncOutcome::Done {
            break;
        }
        assert_eq!(r.outcome, SyncOutcome::MoreWork);
        assert!(runs < 100);
    }
    let got: Vec<String> = h.points().iter().map(|p| p.case_id.to_string()).collect();
    let unique: BTreeSet<String> = got.iter().cloned().collect();
    assert_eq!(got.len(), unique.len(), "no duplicates");
    assert_eq!(unique, expected, "none lost");
    assert!(
        runs > 5,
        "the tie really spanned several resumed runs ({runs})"
    );
}

#[tokio::test]
async fn pages_smaller_than_asked_are_followed_to_the_end() {
    let (mut org, q) = org_with_queue();
    let base = minutes_ago(300);
    for i in 0..777 {
        closed_case(
            &mut org,
            &q,
            base + TimeDelta::seconds(i * 7 / 3),
            &format!("c{i}"),
        );
    }
    let config = SimConfig {
        random_short_pages: true,
        ..SimConfig::default()
    };
    let h = Harness::start(config, org).await;
    let conn = h.connect(QueueScope::All, BackfillWindow::Days7).await;
    let report = h.sync(&conn.id).await;
    assert_eq!(report.outcome, SyncOutcome::Done);
    assert_eq!(h.points().len(), 777);
    assert!(
        report.counts.pages > 777 / 200 + 1,
        "pages were short: {:?}",
        report.counts
    );
    assert_eq!(h.sim.stats().max_batch_size_requested, Some(200));
}

#[tokio::test]
async fn open_user_owned_and_out_of_scope_cases_are_not_imported() {
    let (mut org, q) = org_with_queue();
    let other_q = org.add_queue("Billing", "Billing");
    let user = org.add_user("Agent Smith");
    let at = minutes_ago(30);
    let wanted = closed_case(&mut org, &q, at, "wanted");
    closed_case(&mut org, &other_q, at, "other queue");
    closed_case(&mut org, &user, at, "user owned");
    org.add_case(NewCase {
        status: "Working".into(),
        owner_id: Some(q.clone()),
        system_modstamp: Some(at),
        ..NewCase::default()
    });
    let h = Harness::start(SimConfig::default(), org).await;
    let conn = h
        .connect(QueueScope::parse(&q).unwrap(), BackfillWindow::Days7)
        .await;
    h.sync(&conn.id).await;
    let ids: Vec<_> = h.points().iter().map(|p| p.case_id.to_string()).collect();
    assert_eq!(ids, vec![wanted]);
}

#[tokio::test]
async fn a_resaved_or_reclosed_case_updates_its_data_point_and_unchanged_ones_are_not_rewritten() {
    let (mut org, q) = org_with_queue();
    let at = minutes_ago(120);
    let a = closed_case(&mut org, &q, at, "first version");
    closed_case(&mut org, &q, at + TimeDelta::seconds(1), "other");
    let h = Harness::start(SimConfig::default(), org).await;
    let conn = h.connect(QueueScope::All, BackfillWindow::Days7).await;
    let first = h.sync(&conn.id).await;
    assert_eq!((first.counts.created, first.counts.updated), (2, 0));

    // Reopened, then closed again with a new subject.
    h.sim.with_org(|o| {
        o.reopen_case(&a, minutes_ago(60));
        o.update_case(&a, |c| c.subject = Some("second version".into()));
        o.close_case(&a, minutes_ago(30));
    });
    let second = h.sync(&conn.id).await;
    assert_eq!(
        (second.counts.created, second.counts.updated),
        (0, 1),
        "{second:?}"
    );
    let points = h.points();
    assert_eq!(points.len(), 2);
    let p = points.iter().find(|p| p.case_id.as_str() == a).unwrap();
    assert_eq!(p.subject.as_deref(), Some("second version"));

    // A run with nothing new writes nothing.
    let writes = h
        .store
        .point_writes
        .load(std::sync::atomic::Ordering::Relaxed);
    let third = h.sync(&conn.id).await;
    assert_eq!(third.counts.created + third.counts.updated, 0);
    assert_eq!(
        h.store
            .point_writes
            .load(std::sync::atomic::Ordering::Relaxed),
        writes
    );
}

#[tokio::test]
async fn steady_state_costs_one_query_per_tick() {
    let (mut org, q) = org_with_queue();
    for i in 0..10 {
        closed_case(&mut org, &q, minutes_ago(100 - i), "x");
    }
    let h = Harness::start(SimConfig::default(), org).await;
    let conn = h.connect(QueueScope::All, BackfillWindow::Days7).await;
    h.sync(&conn.id).await;
    h.sim.reset_stats();
    for _ in 0..5 {
        let r = h.sync(&conn.id).await;
        assert_eq!(r.outcome, SyncOutcome::Done);
        assert_eq!(r.counts.api_calls, 1, "{r:?}");
    }
    let stats = h.sim.stats();
    assert_eq!(stats.data_calls, 5);
    // The access token is cached in the process: no token call per tick.
    assert_eq!(stats.token_refresh, 0);
}

#[tokio::test]
async fn a_late_visible_case_inside_the_lookback_is_imported_by_the_sweep() {
    let (mut org, q) = org_with_queue();
    closed_case(&mut org, &q, minutes_ago(30), "early");
    // Stamped before the next Case, but visible only after the cursor has passed it.
    let late = closed_case(&mut org, &q, minutes_ago(25), "late");
    org.set_visible_from(&late, chrono::Utc::now() + TimeDelta::days(1));
    closed_case(&mut org, &q, minutes_ago(20), "after");
    let h = Harness::start_with(
        SimConfig::default(),
        org,
        SyncConfig {
            lookback_every: TimeDelta::zero(),
            ..SyncConfig::default()
        },
        test_http(),
    )
    .await;
    let conn = h.connect(QueueScope::All, BackfillWindow::Days7).await;
    h.sync(&conn.id).await;
    assert_eq!(h.points().len(), 2);
    let cursor = h
        .store
        .get_connection(&conn.id)
        .await
        .unwrap()
        .unwrap()
        .cursor;
    assert!(cursor.system_modstamp > minutes_ago(25));

    h.sim
        .with_org(|o| o.set_visible_from(&late, chrono::Utc::now()));
    let r = h.sync(&conn.id).await;
    assert_eq!(r.outcome, SyncOutcome::Done);
    assert!(
        h.points().iter().any(|p| p.case_id.as_str() == late),
        "the late Case was swept up"
    );
    assert_eq!(r.counts.created, 1);
    // The cursor never moved backwards for the sweep.
    let after = h
        .store
        .get_connection(&conn.id)
        .await
        .unwrap()
        .unwrap()
        .cursor;
    assert!(after >= cursor);
}

#[tokio::test]
async fn the_lookback_sweep_runs_at_most_once_per_interval() {
    let (mut org, q) = org_with_queue();
    closed_case(&mut org, &q, minutes_ago(30), "a");
    let h = Harness::start(SimConfig::default(), org).await;
    let conn = h.connect(QueueScope::All, BackfillWindow::Days7).await;
    h.sync(&conn.id).await;
    for _ in 0..3 {
        h.sync(&conn.id).await;
    }
    let soql = h.sim.stats().soql;
    let cursor = h
        .store
        .get_connection(&conn.id)
        .await
        .unwrap()
        .unwrap()
        .cursor;
    let sweep_start = casesync_core::salesforce::soql::datetime_literal(
        cursor.system_modstamp - TimeDelta::minutes(15),
    );
    assert!(
        soql.iter().all(|q| !q.contains(&sweep_start)),
        "no sweep within the hour"
    );
}

#[tokio::test]
async fn an_expired_session_mid_sync_is_refreshed_once_and_the_request_replayed() {
    let (mut org, q) = org_with_queue();
    for i in 0..500 {
        closed_case(&mut org, &q, minutes_ago(400) + TimeDelta::seconds(i), "c");
    }
    let h = Harness::start(
        SimConfig {
            page_size_cap: Some(100),
            ..SimConfig::default()
        },
        org,
    )
    .await;
    let conn = h.connect(QueueScope::All, BackfillWindow::Days7).await;
    h.sim
        .inject(FaultRule::once(FaultTarget::QueryMore, FaultKind::InvalidSession).after(2));
    let refreshes_before = h.sim.stats().token_refresh;
    let r = h.sync(&conn.id).await;
    assert_eq!(r.outcome, SyncOutcome::Done, "{r:?}");
    assert_eq!(h.points().len(), 500);
    assert_eq!(
        h.sim.stats().token_refresh - refreshes_before,
        2,
        "the first token, then one refresh"
    );
}

#[tokio::test]
async fn a_session_not_valid_for_rest_is_not_refreshed_in_a_loop() {
    let (mut org, q) = org_with_queue();
    closed_case(&mut org, &q, minutes_ago(30), "c");
    let h = Harness::start(SimConfig::default(), org).await;
    let conn = h.connect(QueueScope::All, BackfillWindow::Days7).await;
    h.sim.inject(FaultRule::always(
        FaultTarget::AnyData,
        FaultKind::SessionNotValidForRest,
    ));
    let r = h.sync(&conn.id).await;
    assert_eq!(r.outcome, SyncOutcome::NeedsReauth);
    assert_eq!(h.sim.stats().data_calls, 1, "one call, no refresh loop");
    assert!(r.error.unwrap().contains("'api' scope"));
}

#[tokio::test]
async fn the_daily_limit_stops_the_run_cleanly_with_the_cursor_kept() {
    let (mut org, q) = org_with_queue();
    for i in 0..600 {
        closed_case(&mut org, &q, minutes_ago(400) + TimeDelta::seconds(i), "c");
    }
    let h = Harness::start(SimConfig::default(), org).await;
    let conn = h.connect(QueueScope::All, BackfillWindow::Days7).await;
    h.sim
        .inject(FaultRule::always(FaultTarget::QueryMore, FaultKind::TotalRequestsLimit).after(1));
    let r = h.sync(&conn.id).await;
    assert_eq!(r.outcome, SyncOutcome::RateLimited, "{r:?}");
    let calls = h.sim.stats().data_calls;
    // First page, second page; the third call is refused once and not retried.
    assert!(calls <= 3, "no retry storm: {calls} calls");
    let kept = h
        .store
        .get_connection(&conn.id)
        .await
        .unwrap()
        .unwrap()
        .cursor;
    assert_eq!(kept, r.cursor_after);
    assert_eq!(h.points().len() as u64, r.counts.created);

    // A later tick resumes from the kept cursor and finishes.
    h.sim.clear_faults();
    let done = h.sync(&conn.id).await;
    assert_eq!(done.outcome, SyncOutcome::Done);
    assert_eq!(h.points().len(), 600);
}

#[tokio::test]
async fn usage_above_the_configured_share_stops_the_run_and_a_later_tick_resumes() {
    let (mut org, q) = org_with_queue();
    for i in 0..500 {
        closed_case(&mut org, &q, minutes_ago(400) + TimeDelta::seconds(i), "c");
    }
    let h = Harness::start(
        SimConfig {
            api_allotment: 1000,
            initial_api_usage: 850,
            ..SimConfig::default()
        },
        org,
    )
    .await;
    let conn = h.connect(QueueScope::All, BackfillWindow::Days7).await;
    let r = h.sync(&conn.id).await;
    assert_eq!(r.outcome, SyncOutcome::RateLimited);
    assert!(r.error.as_deref().unwrap().contains("80 %"), "{r:?}");
    assert_eq!(r.counts.api_calls, 1);
    h.sim.set_api_usage(100);
    assert_eq!(
        h.sync_to_end(&conn.id).await.last().unwrap().outcome,
        SyncOutcome::Done
    );
    assert_eq!(h.points().len(), 500);
}

#[tokio::test]
async fn server_errors_html_bodies_and_resets_are_retried() {
    let (mut org, q) = org_with_queue();
    for i in 0..450 {
        closed_case(&mut org, &q, minutes_ago(400) + TimeDelta::seconds(i), "c");
    }
    let h = Harness::start(SimConfig::default(), org).await;
    let conn = h.connect(QueueScope::All, BackfillWindow::Days7).await;
    h.sim
        .inject(FaultRule::once(FaultTarget::Query, FaultKind::Status503));
    h.sim.inject(FaultRule::once(
        FaultTarget::QueryMore,
        FaultKind::Status502Html,
    ));
    h.sim
        .inject(FaultRule::once(FaultTarget::QueryMore, FaultKind::Status500).after(1));
    h.sim
        .inject(FaultRule::once(FaultTarget::QueryMore, FaultKind::ConnectionReset).after(2));
    h.sim
        .inject(FaultRule::once(FaultTarget::QueryMore, FaultKind::Status420Html).after(3));
    let r = h.sync(&conn.id).await;
    assert_eq!(r.outcome, SyncOutcome::Done, "{r:?}");
    assert_eq!(h.points().len(), 450);
    assert_eq!(h.sim.stats().faults_served, 5);
}

#[tokio::test]
async fn a_persistent_server_error_fails_the_run_after_bounded_retries_and_loses_nothing() {
    let (mut org, q) = org_with_queue();
    for i in 0..450 {
        closed_case(&mut org, &q, minutes_ago(400) + TimeDelta::seconds(i), "c");
    }
    let h = Harness::start(SimConfig::default(), org).await;
    let conn = h.connect(QueueScope::All, BackfillWindow::Days7).await;
    h.sim.inject(FaultRule::always(
        FaultTarget::QueryMore,
        FaultKind::Status502Html,
    ));
    let r = h.sync(&conn.id).await;
    assert_eq!(r.outcome, SyncOutcome::Failed);
    assert!(r.error.as_deref().unwrap().contains("502"), "{r:?}");
    assert_eq!(h.sim.stats().query_more, 5, "five attempts, then stop");
    h.sim.clear_faults();
    h.sync_to_end(&conn.id).await;
    assert_eq!(h.points().len(), 450);
}

#[tokio::test]
async fn a_refused_refresh_token_marks_the_connection_needs_reauth() {
    let (mut org, q) = org_with_queue();
    closed_case(&mut org, &q, minutes_ago(30), "c");
    let h = Harness::start(SimConfig::default(), org).await;
    let conn = h.connect(QueueScope::All, BackfillWindow::Days7).await;
    h.sim.revoke_all_tokens();
    let r = h.sync(&conn.id).await;
    assert_eq!(r.outcome, SyncOutcome::NeedsReauth, "{r:?}");
    let c = h.store.get_connection(&conn.id).await.unwrap().unwrap();
    assert_eq!(c.state, ConnectionState::NeedsReauth);
    assert!(c.state_reason.unwrap().contains("authorized again"));
    // A needs_reauth connection is not synced (no calls) until re-authorized.
    let calls = h.sim.stats().data_calls;
    assert_eq!(h.sync(&conn.id).await.outcome, SyncOutcome::NeedsReauth);
    assert_eq!(h.sim.stats().data_calls, calls);
}

#[tokio::test]
async fn a_rotated_refresh_token_is_stored_before_it_is_needed_again() {
    let (mut org, q) = org_with_queue();
    closed_case(&mut org, &q, minutes_ago(30), "c");
    let h = Harness::start(
        SimConfig {
            rotate_refresh_tokens: true,
            ..SimConfig::default()
        },
        org,
    )
    .await;
    let conn = h.connect(QueueScope::All, BackfillWindow::Days7).await;
    let stored_at_connect = h.store.get_refresh_token(&conn.id).await.unwrap().unwrap();
    h.sync(&conn.id).await;
    let after_first = h.store.get_refresh_token(&conn.id).await.unwrap().unwrap();
    assert_ne!(
        stored_at_connect.expose_secret(),
        after_first.expose_secret(),
        "rotation stored"
    );
    assert!(!h.sim.is_token_active(stored_at_connect.expose_secret()));
    // Force refreshes on the following runs: each uses the latest stored token.
    for _ in 0..3 {
        h.sim.expire_access_tokens();
        closed_case_now(&h);
        let r = h.sync(&conn.id).await;
        assert_eq!(r.outcome, SyncOutcome::Done, "{r:?}");
    }
    assert_eq!(
        h.store
            .get_connection(&conn.id)
            .await
            .unwrap()
            .unwrap()
            .state,
        ConnectionState::Active
    );
}

fn closed_case_now(h: &Harness) {
    h.sim.with_org(|o| {
        let q = o.queues().next().unwrap().id.as_str().to_owned();
        closed_case(o, &q, minutes_ago(10), "new");
    });
}

#[tokio::test]
async fn a_queue_id_with_a_quote_is_rejected_before_any_request() {
    let (org, _) = org_with_queue();
    let h = Harness::start(SimConfig::default(), org).await;
    assert!(QueueScope::parse("00Gxx000000AB'D").is_err());
    assert!(QueueScope::parse("00Gxx000000ABCD' OR Id != '").is_err());
    assert!(QueueScope::parse("00Gxx000000AB\\D").is_err());
    let stats = h.sim.stats();
    assert_eq!(stats.data_calls + stats.token_refresh + stats.token_code, 0);
}

#[tokio::test]
async fn a_query_timeout_narrows_the_window_and_completes() {
    let (mut org, q) = org_with_queue();
    for i in 0..400 {
        closed_case(
            &mut org,
            &q,
            minutes_ago(3000) + TimeDelta::minutes(i * 7),
            "c",
        );
    }
    let h = Harness::start(
        SimConfig {
            query_timeout_rows: Some(120),
            ..SimConfig::default()
        },
        org,
    )
    .await;
    let conn = h.connect(QueueScope::All, BackfillWindow::Days7).await;
    let r = h.sync(&conn.id).await;
    assert_eq!(r.outcome, SyncOutcome::Done, "{r:?}");
    assert_eq!(h.points().len(), 400);
    let windows = h.sim.stats().queries;
    assert!(
        windows > 4,
        "the window was narrowed and walked forward: {windows} queries"
    );
    assert!(
        windows < 40,
        "without re-bisecting every window from scratch: {windows} queries"
    );
}

#[tokio::test]
async fn an_expired_query_locator_is_replaced_by_a_fresh_query_from_the_cursor() {
    let (mut org, q) = org_with_queue();
    for i in 0..450 {
        closed_case(&mut org, &q, minutes_ago(400) + TimeDelta::seconds(i), "c");
    }
    let h = Harness::start(SimConfig::default(), org).await;
    let conn = h.connect(QueueScope::All, BackfillWindow::Days7).await;
    h.sim.inject(FaultRule::once(
        FaultTarget::QueryMore,
        FaultKind::InvalidQueryLocator,
    ));
    let r = h.sync(&conn.id).await;
    assert_eq!(r.outcome, SyncOutcome::Done, "{r:?}");
    assert_eq!(h.points().len(), 450);
    assert_eq!(h.sim.stats().queries, 2);
}

#[tokio::test]
async fn disconnecting_during_a_run_stops_ingestion_before_the_next_page() {
    let (mut org, q) = org_with_queue();
    for i in 0..1000 {
        closed_case(&mut org, &q, minutes_ago(400) + TimeDelta::seconds(i), "c");
    }
    let h = Harness::start(
        SimConfig {
            latency: Duration::from_millis(30),
            ..SimConfig::default()
        },
        org,
    )
    .await;
    let conn = h.connect(QueueScope::All, BackfillWindow::Days7).await;
    let store = h.store.clone();
    let id = conn.id.clone();
    let disconnect = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(100)).await;
        use casesync_core::ports::StateWriter;
        store
            .set_state(&id, ConnectionState::Disconnected, Some("by the user"))
            .await
            .unwrap();
    });
    let r = h.sync(&conn.id).await;
    disconnect.await.unwrap();
    assert_eq!(r.outcome, SyncOutcome::Disconnected, "{r:?}");
    assert!(h.points().len() < 1000);
}

#[tokio::test]
async fn many_specific_queues_are_split_into_several_queries_and_merged_in_order() {
    let mut org = Org::new();
    let queues: Vec<String> = (0..700)
        .map(|i| org.add_queue(&format!("Q{i}"), &format!("Q{i}")))
        .collect();
    let mut expected = BTreeSet::new();
    for (i, q) in queues.iter().enumerate().step_by(7) {
        // Ties across the chunks too.
        expected.insert(closed_case(
            &mut org,
            q,
            minutes_ago(300) + TimeDelta::seconds((i % 3) as i64),
            "c",
        ));
    }
    let h = Harness::start(SimConfig::default(), org).await;
    let scope = QueueScope::parse(&queues.join(",")).unwrap();
    let conn = h.connect(scope, BackfillWindow::Days7).await;
    let r = h.sync(&conn.id).await;
    assert_eq!(r.outcome, SyncOutcome::Done, "{r:?}");
    let got: BTreeSet<String> = h.points().iter().map(|p| p.case_id.to_string()).collect();
    assert_eq!(got, expected);
    let stats = h.sim.stats();
    assert!(stats.queries >= 2, "split into several queries");
    assert!(stats.soql.iter().all(|q| q.len() < 14_000));
}

/// A page of three closed Cases; the middle one has a CreatedDate no Salesforce would send.
fn page_with_an_unmappable_case(at: &str) -> String {
    let case = |id: &str, number: &str, created: &str| {
        format!(
            r#"{{"attributes":{{"type":"Case","url":"/services/data/v59.0/sobjects/Case/{id}"}},"Id":"{id}","CaseNumber":"{number}","Subject":"s","Status":"Closed","Priority":null,"Origin":null,"Type":null,"CreatedDate":"{created}","SystemModstamp":"{at}","Description":"d","ContactEmail":null,"Contact":null,"OwnerId":"00Gxx000000ABCDEA4","EmailMessages":null}}"#
        )
    };
    format!(
        r#"{{"totalSize":3,"done":true,"records":[{},{},{}]}}"#,
        case("500xx000003DHb0AAG", "1", "2024-03-01T09:15:02.000+0000"),
        case("500xx000003DHb1AAG", "2", "yesterday"),
        case("500xx000003DHb2AAG", "3", "2024-03-01T09:15:02.000+0000"),
    )
}

#[tokio::test]
async fn a_case_that_cannot_be_mapped_is_recorded_before_the_cursor_passes_it_and_does_not_fail_the_page()
 {
    use casesync_core::domain::{ChannelName, LoginUrl};
    use casesync_core::manage::connect::{self, ConnectionSettings};
    use casesync_core::memory::MemoryStore;
    use casesync_core::ports::SystemClock;
    use casesync_core::sync::SyncEngine;
    use std::sync::Arc;

    // Given a page whose middle Case cannot be mapped
    let at = casesync_core::data_point::rfc3339::format(&minutes_ago(30)).replace('Z', ".000+0000");
    let base = fake_salesforce(page_with_an_unmappable_case(&at)).await;
    // When a run dies after n store writes, for the first n at which its cursor has already
    // passed the page (so the run record, written last, is lost)
    for n in 1..=10 {
        let store = Arc::new(MemoryStore::new());
        let salesforce = casesync_core::salesforce::Salesforce::new(
            casesync_core::salesforce::OAuthApp {
                client_id: "cid".into(),
                client_secret: None,
            },
            &test_http(),
        )
        .unwrap();
        let conn = connect::with_refresh_token(
            &salesforce.oauth,
            store.as_ref(),
            store.as_ref(),
            LoginUrl::parse(&base).unwrap(),
            secrecy::SecretString::from("5Aepfake".to_owned()),
            ConnectionSettings {
                channel: ChannelName::parse("support").unwrap(),
                scope: QueueScope::All,
                backfill: BackfillWindow::Days7,
                api_version: Default::default(),
            },
            chrono::Utc::now(),
        )
        .await
        .unwrap();
        let engine = SyncEngine::new(
            store.clone(),
            store.clone(),
            store.clone(),
            Arc::new(SystemClock),
            salesforce,
            SyncConfig::default(),
        );
        store.crash_after_writes(n);
        let _ = engine.sync(&conn.id, Duration::from_secs(30), None).await;
        store.heal();
        let c = store.get_connection(&conn.id).await.unwrap().unwrap();
        if c.cursor.case_id.as_ref().map(|c| c.as_str()) != Some("500xx000003DHb2AAG") {
            continue;
        }
        // Then the other two Cases are stored, and the failure is recorded with its reason,
        // so a later run retries it
        let stored: Vec<String> = store
            .all_data_points()
            .iter()
            .map(|p| p.case_id.to_string())
            .collect();
        assert_eq!(stored, ["500xx000003DHb0AAG", "500xx000003DHb2AAG"]);
        assert!(c.last_run.is_none(), "the run record was lost in the crash");
        assert_eq!(
            c.failures.len(),
            1,
            "crash after {n} writes: {:?}",
            c.failures
        );
        assert_eq!(c.failures[0].case_id.as_str(), "500xx000003DHb1AAG");
        assert!(
            c.failures[0].error.contains("CreatedDate"),
            "{:?}",
            c.failures[0]
        );
        return;
    }
    panic!("no crash point let the cursor pass the page");
}

// ---------------------------------------------------------------------------------------------
// A backfill read as parallel slices

fn sliced(readers: usize) -> SyncConfig {
    SyncConfig {
        batch_size: 200 * readers as u32,
        slices: readers,
        // These orgs are small: slice them anyway.
        slice_min_cases: 0,
        ..SyncConfig::default()
    }
}

/// Case id and SystemModstamp, of each closed queue Case or stored data point.
type Versions = BTreeSet<(String, chrono::DateTime<chrono::Utc>)>;

/// The org's closed Cases in the queue.
fn org_cases(h: &Harness, queue: &str) -> Versions {
    h.sim.with_org(|o| {
        o.cases()
            .iter()
            .filter(|c| c.is_closed() && c.owner_id.as_str() == queue)
            .map(|c| (c.id.as_str().to_owned(), c.system_modstamp))
            .collect()
    })
}

/// The stored points of one connection, or of all; each Case once.
fn stored(h: &Harness, connection: Option<&casesync_core::domain::ConnectionId>) -> Versions {
    let points: Vec<_> = h
        .points()
        .into_iter()
        .filter(|p| connection.is_none_or(|c| &p.connection_id == c))
        .collect();
    let got: Versions = points
        .iter()
        .map(|p| (p.case_id.to_string(), p.system_modstamp))
        .collect();
    assert_eq!(got.len(), points.len(), "a Case is stored twice");
    got
}

/// The org's closed Cases in the queue, and the stored points alike.
fn org_and_points(h: &Harness, queue: &str) -> (Versions, Versions) {
    (org_cases(h, queue), stored(h, None))
}

/// A harness with 4 readers over an org of `cases` closed Cases a minute apart from 6 days
/// ago, answering each call after `latency`; and the Cases' queue.
async fn sliced_org(cases: i64, latency: Duration) -> (Harness, String) {
    let (mut org, q) = org_with_queue();
    for i in 0..cases {
        closed_case(&mut org, &q, minutes_ago(6 * 24 * 60 - i), "c");
    }
    let h = Harness::start_with(
        SimConfig {
            latency,
            ..SimConfig::default()
        },
        org,
        sliced(4),
        test_http(),
    )
    .await;
    (h, q)
}

#[tokio::test]
async fn a_sliced_backfill_reads_every_case_once_ties_on_the_bounds_included() {
    // Given Cases over the whole week, growing towards its end, and a tie of 30 Cases on each
    // bound between the 4 slices the window is cut into
    let (mut org, q) = org_with_queue();
    let now = minutes_ago(0);
    for i in 0..1_200i64 {
        // Quadratic: three quarters of the Cases in the last half of the week.
        let back = (7 * 24 * 60 - 10) * (1_200 - i) * (1_200 - i) / (1_200 * 1_200);
        closed_case(&mut org, &q, now - TimeDelta::minutes(back + 6), "c");
    }
    let h = Harness::start_with(SimConfig::default(), Org::new(), sliced(4), test_http()).await;
    h.sim.with_org(|o| *o = org.clone());
    let conn = h.connect(QueueScope::All, BackfillWindow::Days7).await;
    let until = casesync_core::domain::Cursor::at(now - TimeDelta::minutes(5)).system_modstamp;
    let plan = casesync_core::domain::BackfillPlan::new(&conn.cursor, until, 4);
    h.sim.with_org(|o| {
        for s in &plan.slices[..3] {
            for _ in 0..30 {
                closed_case(o, &q, s.upper, "on the bound");
            }
        }
    });

    // When the first sync runs
    let runs = h.sync_to_end(&conn.id).await;

    // Then every Case is there once, at its version; the plan is gone; the cursor stands on
    // the last Case, as after a single stream
    assert_eq!(runs.last().map(|r| r.outcome), Some(SyncOutcome::Done));
    let (expected, got) = org_and_points(&h, &q);
    assert_eq!(got, expected);
    let c = h.store.get_connection(&conn.id).await.unwrap().unwrap();
    assert_eq!(c.backfill_plan, None);
    let last = expected.iter().map(|(_, t)| *t).max().unwrap();
    assert_eq!(c.cursor.system_modstamp, last);
    // Slices were balanced by splitting the busy ones: more queries than readers, but few.
    let queries = h.sim.stats().queries;
    assert!((4..=16 + 1).contains(&queries), "{queries} queries");
    assert_eq!(h.sim.stats().write_attempts, 0);
}

#[tokio::test]
async fn a_sliced_backfill_cut_short_resumes_every_slice_where_it_stopped() {
    // 8,000 Cases in pages of 200 are at least 40 pages; four readers at 60 ms a page need at
    // least 600 ms, so a run given 300 ms cannot finish, however fast the machine.
    let (h, q) = sliced_org(8_000, Duration::from_millis(60)).await;
    let conn = h.connect(QueueScope::All, BackfillWindow::Days7).await;

    // A run out of time leaves its plan, each slice at its own position
    let first = h.sync_for(&conn.id, Duration::from_millis(300)).await;
    assert_eq!(first.outcome, SyncOutcome::MoreWork, "{first:?}");
    let c = h.store.get_connection(&conn.id).await.unwrap().unwrap();
    let plan = c.backfill_plan.expect("a stored plan");
    assert!(
        plan.slices
            .iter()
            .filter(|s| s.position.case_id.is_some())
            .count()
            >= 2
    );

    // The next runs take each slice up at its position: a keyset query from the last Case it
    // wrote, so nothing read before is served again except where a tail slice is split (at most
    // a page per split, which a new query of its own pays for).
    let read_before = h.points().len();
    assert!(read_before > 0 && read_before < 8_000, "{read_before}");
    h.sim.reset_stats();
    let runs = h.sync_to_end(&conn.id).await;
    assert_eq!(runs.last().map(|r| r.outcome), Some(SyncOutcome::Done));
    let (expected, got) = org_and_points(&h, &q);
    assert_eq!(got, expected);
    let stats = h.sim.stats();
    for s in plan.slices.iter().filter(|s| !s.done) {
        let Some(id) = &s.position.case_id else {
            continue;
        };
        let keyset = format!("AND Id > '{id}'");
        assert!(
            stats.soql.iter().any(|q| q.contains(&keyset)),
            "the slice at {:?} was not resumed from its position {id}",
            s.lower
        );
    }
    let resumed = plan.slices.iter().filter(|s| !s.done).count() as u64;
    let splits = stats.queries.saturating_sub(resumed);
    let unread = (8_000 - read_before) as u64;
    assert!(
        stats.records_served <= unread + 200 * splits,
        "{} rows served for {unread} Cases left, with {splits} splits: rows read before were \
         read again",
        stats.records_served
    );
}

/// Every page's progress: the committed position and the progress point.
#[derive(Default)]
struct Pages(std::sync::Mutex<Vec<(chrono::DateTime<chrono::Utc>, chrono::DateTime<chrono::Utc>)>>);

impl casesync_core::sync::ProgressObserver for Pages {
    fn on_page(&self, p: &casesync_core::sync::Progress) {
        let mut pages = self.0.lock().unwrap();
        pages.push((p.position.system_modstamp, p.progress_point));
    }
}

#[tokio::test]
async fn a_sliced_backfill_reports_the_progress_of_every_slice() {
    // Given 4 readers over 8,000 Cases a minute apart (the first slice takes many pages)
    let (h, q) = sliced_org(8_000, Duration::from_millis(5)).await;
    let conn = h.connect(QueueScope::All, BackfillWindow::Days7).await;

    // When the backfill runs with an observer
    let pages = Pages::default();
    let r = h
        .engine
        .sync(&conn.id, Duration::from_secs(60), Some(&pages))
        .await
        .unwrap();
    assert_eq!(r.outcome, SyncOutcome::Done, "{r:?}");
    assert_eq!(stored(&h, None), org_cases(&h, &q));

    // Then progress moves with each page, although the cursor stays in the first slice until
    // that slice is done
    let pages = pages.0.into_inner().unwrap();
    assert!(pages.len() >= 8, "{} pages", pages.len());
    assert!(
        pages.windows(2).all(|w| w[0].1 <= w[1].1),
        "progress never goes back"
    );
    let ahead = pages
        .iter()
        .filter(|(cursor, point)| point > cursor)
        .count();
    assert!(ahead * 2 > pages.len(), "{ahead} of {} pages", pages.len());
    let last = pages.last().unwrap();
    assert!(last.1 >= last.0);
}

#[tokio::test]
async fn backfills_of_one_org_share_its_readers() {
    // Given an org with 6,000 closed Cases, two connections to it, and 4 readers per org:
    // each slice is at least 3 pages of 600 at 100 ms, so no run given 150 ms can finish
    let (h, q) = sliced_org(6_000, Duration::from_millis(100)).await;
    let a = h.connect(QueueScope::All, BackfillWindow::Days7).await;
    let b = h.connect(QueueScope::All, BackfillWindow::Days7).await;
    assert!(a.org_id.is_some() && a.org_id == b.org_id, "{a:?}");
    let readers = |id: &casesync_core::domain::ConnectionId| {
        let h = &h;
        let id = id.clone();
        async move {
            let c = h.store.get_connection(&id).await.unwrap().unwrap();
            c.backfill_plan.map(|p| p.readers)
        }
    };

    // When A's backfill starts alone, it takes the org's 4 readers
    let first = h.sync_for(&a.id, Duration::from_millis(150)).await;
    assert_eq!(first.outcome, SyncOutcome::MoreWork, "{first:?}");
    assert_eq!(h.sim.stats().peak_in_flight, 4);
    assert_eq!(readers(&a.id).await, Some(4));

    // B's, while A's is unfinished, gets one
    h.sim.reset_stats();
    let second = h.sync_for(&b.id, Duration::from_millis(150)).await;
    assert_eq!(second.outcome, SyncOutcome::MoreWork, "{second:?}");
    assert_eq!(h.sim.stats().peak_in_flight, 1);
    assert_eq!(readers(&b.id).await, Some(1));

    // Run at once to the end, they never ask Salesforce more than 4 things at a time, and
    // each connection gets every Case once
    h.sim.reset_stats();
    let (ra, rb) = tokio::join!(h.sync_to_end(&a.id), h.sync_to_end(&b.id));
    assert_eq!(ra.last().map(|r| r.outcome), Some(SyncOutcome::Done));
    assert_eq!(rb.last().map(|r| r.outcome), Some(SyncOutcome::Done));
    let peak = h.sim.stats().peak_in_flight;
    assert!((2..=4).contains(&peak), "{peak} requests at once");
    let expected = org_cases(&h, &q);
    for c in [&a, &b] {
        assert_eq!(stored(&h, Some(&c.id)), expected);
    }
}

#[tokio::test]
async fn another_client_holding_query_cursors_costs_re_queries_never_a_case() {
    let (mut org, q) = org_with_queue();
    for i in 0..2_000i64 {
        closed_case(&mut org, &q, minutes_ago(6 * 24 * 60 - i * 4), "c");
    }
    // Six open cursors at most for the user; another tool of the same user keeps opening some.
    let h = Harness::start_with(
        SimConfig {
            max_open_locators: 6,
            latency: Duration::from_millis(5),
            ..SimConfig::default()
        },
        org,
        sliced(4),
        test_http(),
    )
    .await;
    let conn = h.connect(QueueScope::All, BackfillWindow::Days7).await;
    // Five cursors lost for certain, whatever the timing: every third page's.
    for k in 0..5 {
        h.sim.inject(
            FaultRule::once(FaultTarget::QueryMore, FaultKind::InvalidQueryLocator)
                .after(2 + 3 * k),
        );
    }
    let other = other_client(&h).await;
    let pressure = tokio::spawn(async move {
        loop {
            other.open_cursor().await;
            tokio::time::sleep(Duration::from_millis(30)).await;
        }
    });
    let runs = h.sync_to_end(&conn.id).await;
    pressure.abort();
    // Each slice's first query (at least 4), and one more for each lost cursor (at least the
    // five injected ones; the other client's take more, depending on timing).
    let queries = h.sim.stats().queries;
    assert!(
        queries >= 4 + 5,
        "{queries} queries: lost cursors were not queried again"
    );
    assert_eq!(
        runs.last().map(|r| r.outcome),
        Some(SyncOutcome::Done),
        "{runs:?}"
    );
    let (expected, got) = org_and_points(&h, &q);
    assert_eq!(got, expected);
}

/// Another tool of the same integration user, opening query cursors (a query with more rows
/// than a page leaves a cursor open).
struct OtherClient {
    http: reqwest::Client,
    url: String,
    token: String,
}

async fn other_client(h: &Harness) -> OtherClient {
    let http = reqwest::Client::new();
    let token: serde_json::Value = http
        .post(format!("{}/services/oauth2/token", h.sim.login_url()))
        .form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", &h.sim.mint_refresh_token()),
            ("client_id", &h.sim.client_id()),
            ("client_secret", &h.sim.client_secret()),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    OtherClient {
        http,
        url: format!(
            "{}/services/data/v59.0/query?q=SELECT+Id+FROM+Case",
            h.sim.instance_url()
        ),
        token: token["access_token"].as_str().unwrap().to_owned(),
    }
}

impl OtherClient {
    async fn open_cursor(&self) {
        let _ = self
            .http
            .get(&self.url)
            .bearer_auth(&self.token)
            .header("Sforce-Query-Options", "batchSize=200")
            .send()
            .await;
    }
}

#[tokio::test]
async fn a_small_backfill_is_read_as_one_stream_after_one_count() {
    let (mut org, q) = org_with_queue();
    for i in 0..300i64 {
        closed_case(&mut org, &q, minutes_ago(6 * 24 * 60 - i * 20), "c");
    }
    let h = Harness::start_with(
        SimConfig::default(),
        org,
        SyncConfig {
            slices: 4,
            ..SyncConfig::default()
        },
        test_http(),
    )
    .await;
    let conn = h.connect(QueueScope::All, BackfillWindow::Days7).await;
    let r = h.sync(&conn.id).await;
    assert_eq!(r.outcome, SyncOutcome::Done);
    assert_eq!(h.points().len(), 300);
    let stats = h.sim.stats();
    // One COUNT() to decide, then one query and its pages: no slices for 300 Cases.
    assert_eq!((stats.counts, stats.queries), (1, 1), "{stats:?}");
}

#[tokio::test]
async fn a_sliced_backfill_halves_a_slice_that_times_out_and_stops_cleanly_at_the_daily_limit() {
    let (mut org, q) = org_with_queue();
    for i in 0..1_800i64 {
        closed_case(&mut org, &q, minutes_ago(6 * 24 * 60 - i * 4), "c");
    }
    // A query over more than 500 Cases times out.
    let h = Harness::start_with(
        SimConfig {
            query_timeout_rows: Some(500),
            ..SimConfig::default()
        },
        org,
        sliced(2),
        test_http(),
    )
    .await;
    let conn = h.connect(QueueScope::All, BackfillWindow::Days7).await;

    // The daily limit, after a few pages: the run stops, the plan and every page kept.
    h.sim
        .inject(FaultRule::once(FaultTarget::AnyData, FaultKind::TotalRequestsLimit).after(4));
    let first = h.sync(&conn.id).await;
    assert_eq!(first.outcome, SyncOutcome::RateLimited, "{first:?}");
    let c = h.store.get_connection(&conn.id).await.unwrap().unwrap();
    assert!(
        c.backfill_plan.is_some(),
        "the plan is kept for the next run"
    );
    let kept = h.points().len();
    assert!(kept > 0);

    // Later: timed-out slices are halved until their queries pass, and nothing is lost.
    let runs = h.sync_to_end(&conn.id).await;
    assert_eq!(
        runs.last().map(|r| r.outcome),
        Some(SyncOutcome::Done),
        "{runs:?}"
    );
    let (expected, got) = org_and_points(&h, &q);
    assert_eq!(got, expected);
    let c = h.store.get_connection(&conn.id).await.unwrap().unwrap();
    assert!(c.backfill_plan.is_none());
    assert!(
        h.sim.stats().queries > 4,
        "slices were halved after timing out"
    );
}
