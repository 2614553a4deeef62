//! The REST API over HTTP: page shapes, paging, child lists, errors, limits, faults, guards.

mod common;

use std::time::{Duration, Instant};

use chrono::Duration as Dur;
use common::*;
use reqwest::StatusCode;
use serde_json::Value;
use sf_simulator::{NewCase, NewEmail, Org, SObject, SimConfig, utc};

fn org_with_cases(n: usize, at: chrono::DateTime<chrono::Utc>) -> (Org, Vec<String>) {
    let mut org = Org::new();
    org.add_queue("Tier 1 Support", "Tier_1_Support");
    let ids = (0..n)
        .map(|i| {
            org.add_case(NewCase {
                subject: Some(format!("Case {i}")),
                system_modstamp: Some(at),
                ..NewCase::default()
            })
        })
        .collect();
    (org, ids)
}

#[tokio::test]
async fn golden_case_page_shape() {
    // Given a queue-owned Case with a contact and two emails (one HTML-only), and an open
    // user-owned Case without contact or emails
    let mut org = Org::new();
    let queue = org.add_queue("Tier 1 Support", "Tier_1_Support");
    let user = org.add_user("Maria Lopez");
    let contact = org.add_contact("Jane Doe", "jane@example.com");
    let t = utc(2024, 3, 4, 17, 0, 0);
    let a = org.add_case(NewCase {
        subject: Some("Printer on fire".into()),
        system_modstamp: Some(t),
        contact_id: Some(contact.clone()),
        owner_id: Some(queue.clone()),
        ..NewCase::default()
    });
    let b = org.add_case(NewCase {
        subject: None,
        status: "Working".into(),
        system_modstamp: Some(t + Dur::seconds(1)),
        owner_id: Some(user.clone()),
        ..NewCase::default()
    });
    let e1 = org.add_email(
        &a,
        NewEmail {
            subject: Some("Printer on fire".into()),
            incoming: true,
            text_body: Some("Help!\n\"now\"".into()),
            message_date: Some(utc(2024, 3, 1, 9, 15, 0)),
            ..NewEmail::default()
        },
        false,
    );
    let e2 = org.add_email(
        &a,
        NewEmail {
            subject: Some("RE: Printer on fire".into()),
            incoming: false,
            html_body: Some("<p>Fixed &amp; done</p>".into()),
            message_date: Some(utc(2024, 3, 1, 10, 2, 11)),
            ..NewEmail::default()
        },
        false,
    );
    let ctx = start(SimConfig::default(), org).await;
    // When a query uses odd casing for keywords and fields
    let got = ctx
        .query(
            "select id, casenumber, SUBJECT, IsClosed, systemmodstamp, ClosedDate, contact.name, OWNERID, \
             owner.type, Owner.Name, (select Id, Subject, TextBody, HtmlBody, MessageDate from emailmessages \
             order by MessageDate) from case order by CaseNumber",
            Some(200),
        )
        .await;
    // Then the page has Salesforce's exact shape, keys in SELECT order with canonical casing
    assert_eq!(got.status, StatusCode::OK);
    let u = |o: &str, id: &str| format!("/services/data/v59.0/sobjects/{o}/{id}");
    let expected = format!(
        concat!(
            r#"{{"totalSize":2,"done":true,"records":["#,
            r#"{{"attributes":{{"type":"Case","url":"{ua}"}},"Id":"{a}","CaseNumber":"00001001","Subject":"Printer on fire","IsClosed":true,"#,
            r#""SystemModstamp":"2024-03-04T17:00:00.000+0000","ClosedDate":"2024-03-04T17:00:00.000+0000","#,
            r#""Contact":{{"attributes":{{"type":"Contact","url":"{uc}"}},"Name":"Jane Doe"}},"OwnerId":"{q}","#,
            r#""Owner":{{"attributes":{{"type":"Name","url":"{uq}"}},"Type":"Queue","Name":"Tier 1 Support"}},"#,
            r#""EmailMessages":{{"totalSize":2,"done":true,"records":["#,
            r#"{{"attributes":{{"type":"EmailMessage","url":"{ue1}"}},"Id":"{e1}","Subject":"Printer on fire","TextBody":"Help!\n\"now\"","HtmlBody":null,"MessageDate":"2024-03-01T09:15:00.000+0000"}},"#,
            r#"{{"attributes":{{"type":"EmailMessage","url":"{ue2}"}},"Id":"{e2}","Subject":"RE: Printer on fire","TextBody":null,"HtmlBody":"<p>Fixed &amp; done</p>","MessageDate":"2024-03-01T10:02:11.000+0000"}}]}}}},"#,
            r#"{{"attributes":{{"type":"Case","url":"{ub}"}},"Id":"{b}","CaseNumber":"00001002","Subject":null,"IsClosed":false,"#,
            r#""SystemModstamp":"2024-03-04T17:00:01.000+0000","ClosedDate":null,"Contact":null,"OwnerId":"{user}","#,
            r#""Owner":{{"attributes":{{"type":"Name","url":"{uu}"}},"Type":"User","Name":"Maria Lopez"}},"EmailMessages":null}}]}}"#
        ),
        a = a,
        b = b,
        q = queue,
        user = user,
        e1 = e1,
        e2 = e2,
        ua = u("Case", &a),
        ub = u("Case", &b),
        uc = u("Contact", &contact),
        uq = u("Group", &queue),
        uu = u("User", &user),
        ue1 = u("EmailMessage", &e1),
        ue2 = u("EmailMessage", &e2),
    );
    assert_eq!(got.body, expected);
    assert_eq!(ctx.sim.stats().write_attempts, 0);
}

#[tokio::test]
async fn batch_size_paging_and_next_records_url() {
    let (org, ids) = org_with_cases(450, utc(2024, 1, 1, 0, 0, 0));
    let ctx = start(SimConfig::default(), org).await;
    let pages = ctx
        .query_all_pages("SELECT Id FROM Case ORDER BY Id", Some(200))
        .await;
    assert_eq!(pages.len(), 3);
    for (i, p) in pages.iter().enumerate() {
        assert_eq!(p["totalSize"], 450);
        assert_eq!(p["done"], i == 2);
        assert_eq!(
            p.get("nextRecordsUrl").is_some(),
            i < 2,
            "no nextRecordsUrl key on the last page"
        );
    }
    let first_next = pages[0]["nextRecordsUrl"].as_str().expect("url");
    assert!(
        first_next.starts_with("/services/data/v59.0/query/01g") && first_next.ends_with("-200"),
        "{first_next}"
    );
    assert_eq!(record_ids(&pages), ids);
    let s = ctx.sim.stats();
    assert_eq!((s.queries, s.query_more), (1, 2));
    assert_eq!(s.last_batch_size_requested, Some(200));

    // Default batch is 2000; below 200 is clamped to 200.
    assert_eq!(
        ctx.query_all_pages("SELECT Id FROM Case", None).await.len(),
        1
    );
    assert_eq!(
        ctx.query_all_pages("SELECT Id FROM Case", Some(10))
            .await
            .len(),
        3
    );
    // /query/ with a trailing slash works too.
    let got = ctx
        .get(&format!("{V}/query/?q=SELECT+Id+FROM+Case+LIMIT+1"))
        .await;
    assert_eq!(got.status, StatusCode::OK);
    assert_eq!(got.json()["totalSize"], 1);
}

#[tokio::test]
async fn four_hundred_fifty_ties_page_across_boundaries_with_a_keyset() {
    let t = utc(2024, 2, 1, 12, 0, 0);
    let (mut org, ids) = org_with_cases(450, t);
    // Noise before and after the tie group.
    org.add_case(NewCase {
        system_modstamp: Some(t - Dur::seconds(1)),
        ..NewCase::default()
    });
    let after = org.add_case(NewCase {
        system_modstamp: Some(t + Dur::seconds(1)),
        ..NewCase::default()
    });
    let ctx = start(SimConfig::default(), org).await;
    let lit = "2024-02-01T12:00:00Z";
    let base = "SELECT Id, SystemModstamp FROM Case WHERE IsClosed = true AND ";
    // A first run reads one page of 200, then stops (checkpoint = last row).
    let first = ctx
        .query(
            &format!("{base}SystemModstamp >= {lit} ORDER BY SystemModstamp ASC, Id ASC"),
            Some(200),
        )
        .await
        .json();
    let mut seen: Vec<(String, String)> = Vec::new();
    let rows = |page: &Value| -> Vec<(String, String)> {
        page["records"]
            .as_array()
            .expect("records")
            .iter()
            .map(|r| {
                let stamp = r["SystemModstamp"]
                    .as_str()
                    .expect("stamp")
                    .replace("+0000", "Z");
                (stamp, r["Id"].as_str().expect("id").to_string())
            })
            .collect()
    };
    seen.extend(rows(&first));
    assert_eq!(seen.len(), 200);
    // Later runs resume from the keyset (last stamp, last id), each reading only its first
    // page as a client that crashes after every checkpoint would, until nothing is left.
    for _ in 0..10 {
        let (t, last) = seen.last().expect("some").clone();
        let q = format!(
            "{base}(SystemModstamp > {t} OR (SystemModstamp = {t} AND Id > '{last}')) ORDER BY SystemModstamp ASC, Id ASC"
        );
        let page = ctx.query(&q, Some(200)).await.json();
        let got = rows(&page);
        if got.is_empty() {
            break;
        }
        seen.extend(got);
    }
    let seen: Vec<String> = seen.into_iter().map(|(_, id)| id).collect();
    let mut expected = ids.clone();
    expected.push(after);
    assert_eq!(
        seen, expected,
        "every tie read exactly once, in (SystemModstamp, Id) order"
    );
    let stamps: Vec<&str> = first["records"]
        .as_array()
        .expect("records")
        .iter()
        .map(|r| r["SystemModstamp"].as_str().expect("stamp"))
        .collect();
    assert!(stamps.iter().all(|s| *s == "2024-02-01T12:00:00.000+0000"));
}

#[tokio::test]
async fn child_rows_count_toward_the_batch_and_long_child_lists_are_truncated() {
    let t0 = utc(2024, 1, 1, 0, 0, 0);
    let mut org = Org::new();
    org.add_queue("Q", "Q");
    let big = org.add_case(NewCase::default());
    for k in 0..450 {
        org.add_email(
            &big,
            NewEmail {
                message_date: Some(t0 + Dur::seconds(k)),
                subject: Some(format!("m{k}")),
                ..NewEmail::default()
            },
            false,
        );
    }
    let mut small = Vec::new();
    for _ in 0..10 {
        let c = org.add_case(NewCase::default());
        for k in 0..50 {
            org.add_email(
                &c,
                NewEmail {
                    message_date: Some(t0 + Dur::seconds(k)),
                    ..NewEmail::default()
                },
                false,
            );
        }
        small.push(c);
    }
    let ctx = start(SimConfig::default(), org).await;
    let soql = "SELECT Id, (SELECT Id, Subject FROM EmailMessages ORDER BY MessageDate) FROM Case ORDER BY Id";
    let pages = ctx.query_all_pages(soql, Some(200)).await;
    // The big Case is alone on its page; then 3 Cases of 1 + 50 rows fit in 200.
    let sizes: Vec<usize> = pages
        .iter()
        .map(|p| p["records"].as_array().expect("r").len())
        .collect();
    assert_eq!(sizes, vec![1, 3, 3, 3, 1]);
    let first = &pages[0]["records"][0]["EmailMessages"];
    assert_eq!(first["totalSize"], 450);
    assert_eq!(first["done"], false);
    assert_eq!(first["records"].as_array().expect("r").len(), 200);
    let mut subjects: Vec<String> = first["records"]
        .as_array()
        .expect("r")
        .iter()
        .map(|r| r["Subject"].as_str().expect("s").to_string())
        .collect();
    let mut next = first["nextRecordsUrl"]
        .as_str()
        .expect("child locator")
        .to_string();
    assert!(
        next.starts_with("/services/data/v59.0/query/01g") && next.ends_with("-200"),
        "{next}"
    );
    let mut chunks = 0;
    loop {
        let got = ctx.get(&next).await;
        assert_eq!(got.status, StatusCode::OK, "{}", got.body);
        let v = got.json();
        chunks += 1;
        assert_eq!(v["totalSize"], 450);
        for r in v["records"].as_array().expect("r") {
            assert_eq!(r["attributes"]["type"], "EmailMessage");
            subjects.push(r["Subject"].as_str().expect("s").to_string());
        }
        match v.get("nextRecordsUrl").and_then(Value::as_str) {
            Some(n) => next = n.to_string(),
            None => {
                assert_eq!(v["done"], true);
                break;
            }
        }
    }
    assert_eq!(chunks, 2);
    assert_eq!(
        subjects,
        (0..450).map(|k| format!("m{k}")).collect::<Vec<_>>()
    );
    let s = ctx.sim.stats();
    assert_eq!((s.child_more, s.query_more), (2, 4));
}

#[tokio::test]
async fn short_pages_still_cover_everything() {
    let (org, ids) = org_with_cases(300, utc(2024, 1, 1, 0, 0, 0));
    let ctx = start(
        SimConfig {
            page_size_cap: Some(7),
            ..SimConfig::default()
        },
        org,
    )
    .await;
    let pages = ctx.query_all_pages("SELECT Id FROM Case", Some(2000)).await;
    assert!(
        pages
            .iter()
            .all(|p| p["records"].as_array().expect("r").len() <= 7)
    );
    assert_eq!(record_ids(&pages), ids);

    ctx.sim.update_config(|c| {
        c.page_size_cap = None;
        c.random_short_pages = true;
    });
    let pages = ctx.query_all_pages("SELECT Id FROM Case", Some(200)).await;
    assert!(pages.len() > 2, "random pages are smaller than 200");
    assert!(
        pages
            .iter()
            .any(|p| p["records"].as_array().expect("r").len() < 200)
    );
    assert_eq!(record_ids(&pages), ids);
}

#[tokio::test]
async fn query_errors_are_salesforce_shaped() {
    let (org, _) = org_with_cases(3, utc(2024, 1, 1, 0, 0, 0));
    let ctx = start(SimConfig::default(), org).await;
    // An unencoded '+' in the URL becomes a space: MALFORMED_QUERY.
    let raw = format!(
        "{V}/query?q=SELECT+Id+FROM+Case+WHERE+SystemModstamp+%3E+2024-01-01T00:00:00.000+0000"
    );
    let got = ctx.get(&raw).await;
    assert_eq!(got.status, StatusCode::BAD_REQUEST);
    assert_eq!(got.error_code(), "MALFORMED_QUERY");
    // Properly encoded, the same literal is fine.
    let got = ctx
        .query(
            "SELECT Id FROM Case WHERE SystemModstamp > 2024-01-01T00:00:00.000+0000",
            None,
        )
        .await;
    assert_eq!(got.status, StatusCode::OK, "{}", got.body);
    assert_eq!(got.json()["totalSize"], 0);
    // Unknown field.
    let got = ctx.query("SELECT Id, Foo FROM Case", None).await;
    assert_eq!(got.status, StatusCode::BAD_REQUEST);
    assert_eq!(got.error_code(), "INVALID_FIELD");
    assert!(
        got.json()[0]["message"]
            .as_str()
            .expect("m")
            .contains("No such column 'Foo' on entity 'Case'")
    );
    // Quoted datetime.
    let got = ctx
        .query(
            "SELECT Id FROM Case WHERE SystemModstamp > '2024-01-01T00:00:00Z'",
            None,
        )
        .await;
    assert_eq!(got.error_code(), "INVALID_FIELD");
    // Missing q.
    assert_eq!(
        ctx.get(&format!("{V}/query")).await.error_code(),
        "MALFORMED_QUERY"
    );
    // QUERY_TIMEOUT when too many rows match.
    ctx.sim.update_config(|c| c.query_timeout_rows = Some(2));
    let got = ctx.query("SELECT Id FROM Case", None).await;
    assert_eq!(got.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        got.body,
        r#"[{"message":"Your query request was running for too long.","errorCode":"QUERY_TIMEOUT"}]"#
    );
    assert_eq!(
        ctx.query("SELECT Id FROM Case LIMIT 1", None).await.status,
        StatusCode::BAD_REQUEST
    );
    ctx.sim.update_config(|c| c.query_timeout_rows = None);
    // Unknown resources.
    assert_eq!(
        ctx.get(&format!("{V}/sobjects/Case/500000000000000"))
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        ctx.get("/services/data/v99.0/limits").await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(ctx.sim.stats().soql.len(), 6);
}

#[tokio::test]
async fn count_describe_and_permissions() {
    let (org, _) = org_with_cases(5, utc(2024, 1, 1, 0, 0, 0));
    let ctx = start(SimConfig::default(), org).await;
    let got = ctx
        .query("SELECT COUNT() FROM Case WHERE IsClosed = true", None)
        .await;
    assert_eq!(got.body, r#"{"totalSize":5,"done":true,"records":[]}"#);
    let s = ctx.sim.stats();
    assert_eq!((s.counts, s.queries), (1, 0));

    let d = ctx.get(&format!("{V}/sobjects/Case/describe")).await.json();
    assert_eq!(d["name"], "Case");
    assert_eq!(d["queryable"], true);
    let field = |name: &str| {
        d["fields"]
            .as_array()
            .expect("fields")
            .iter()
            .find(|f| f["name"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("{name}"))
    };
    assert_eq!(field("SystemModstamp")["type"], "datetime");
    assert_eq!(field("SystemModstamp")["filterable"], true);
    assert_eq!(field("Description")["filterable"], false);
    assert_eq!(
        field("OwnerId")["referenceTo"],
        serde_json::json!(["Group", "User"])
    );
    assert_eq!(
        d["childRelationships"][0]["relationshipName"],
        "EmailMessages"
    );
    assert_eq!(
        ctx.get(&format!("{V}/sobjects/EmailMessage/describe"))
            .await
            .status,
        StatusCode::OK
    );

    ctx.sim
        .with_org(|o| o.set_object_accessible(SObject::EmailMessage, false));
    let got = ctx
        .get(&format!("{V}/sobjects/EmailMessage/describe"))
        .await;
    assert_eq!(got.status, StatusCode::NOT_FOUND);
    assert_eq!(
        got.body,
        r#"[{"message":"The requested resource does not exist","errorCode":"NOT_FOUND"}]"#
    );
    let got = ctx
        .query("SELECT Id, (SELECT Id FROM EmailMessages) FROM Case", None)
        .await;
    assert_eq!(got.error_code(), "INVALID_FIELD");
    assert!(
        got.body
            .contains("Didn't understand relationship 'EmailMessages'")
    );
    ctx.sim
        .with_org(|o| o.set_object_accessible(SObject::Case, false));
    assert_eq!(
        ctx.query("SELECT Id FROM Case", None).await.error_code(),
        "INVALID_TYPE"
    );
    assert_eq!(ctx.sim.stats().describes, 3);
}

#[tokio::test]
async fn late_visibility_hides_a_case_until_its_instant() {
    let t = utc(2024, 1, 1, 0, 0, 0);
    let (org, ids) = org_with_cases(2, t);
    let ctx = start(SimConfig::default(), org).await;
    let hidden = ids[0].clone();
    ctx.sim
        .with_org(|o| o.set_visible_from(&hidden, chrono::Utc::now() + Dur::milliseconds(300)));
    let soql = "SELECT Id FROM Case WHERE SystemModstamp >= 2024-01-01T00:00:00Z";
    assert_eq!(
        record_ids(&ctx.query_all_pages(soql, None).await),
        vec![ids[1].clone()]
    );
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(record_ids(&ctx.query_all_pages(soql, None).await), ids);
}

#[tokio::test]
async fn limit_info_counts_and_the_allotment_is_enforced() {
    let (org, _) = org_with_cases(1, utc(2024, 1, 1, 0, 0, 0));
    let ctx = start(
        SimConfig {
            api_allotment: 50,
            initial_api_usage: 10,
            ..SimConfig::default()
        },
        org,
    )
    .await;
    // start() made no data call; the first one is the 11th.
    let got = ctx.query("SELECT Id FROM Case", None).await;
    assert_eq!(got.limit_info().as_deref(), Some("api-usage=11/50"));
    let got = ctx.get(&format!("{V}/limits")).await;
    assert_eq!(got.limit_info().as_deref(), Some("api-usage=12/50"));
    assert_eq!(
        got.json()["DailyApiRequests"],
        serde_json::json!({"Max": 50, "Remaining": 38})
    );
    // The versions list needs no session and carries no header.
    let versions = collect(
        ctx.http
            .get(format!("{}/services/data/", ctx.sim.instance_url()))
            .send()
            .await
            .expect("v"),
    )
    .await;
    assert_eq!(versions.status, StatusCode::OK);
    assert!(versions.limit_info().is_none());
    assert!(
        versions
            .json()
            .as_array()
            .expect("list")
            .iter()
            .any(|v| v["version"] == "59.0")
    );

    ctx.sim.set_api_usage(49);
    let got = ctx.get(&format!("{V}/limits")).await;
    assert_eq!(got.status, StatusCode::OK);
    assert_eq!(got.limit_info().as_deref(), Some("api-usage=50/50"));
    let got = ctx.query("SELECT Id FROM Case", None).await;
    assert_eq!(got.status, StatusCode::FORBIDDEN);
    assert_eq!(
        got.body,
        r#"[{"message":"TotalRequests Limit exceeded.","errorCode":"REQUEST_LIMIT_EXCEEDED"}]"#
    );
    assert_eq!(got.limit_info().as_deref(), Some("api-usage=50/50"));
    assert_eq!(ctx.sim.api_usage(), (50, 50));
}

#[tokio::test]
async fn access_tokens_die_after_the_configured_number_of_calls() {
    let ctx = start(
        SimConfig {
            access_token_ttl_calls: Some(3),
            ..SimConfig::default()
        },
        Org::new(),
    )
    .await;
    for _ in 0..3 {
        assert_eq!(ctx.get(&format!("{V}/limits")).await.status, StatusCode::OK);
    }
    let got = ctx.get(&format!("{V}/limits")).await;
    assert_eq!(got.status, StatusCode::UNAUTHORIZED);
    assert_eq!(got.error_code(), "INVALID_SESSION_ID");
    assert_eq!(ctx.sim.stats().unauthorized, 1);
    // A refreshed token works again.
    let fresh = refresh(&ctx.sim, &ctx.http, &ctx.refresh_token).await;
    let ok = ctx
        .http
        .get(format!("{}{V}/limits", ctx.sim.instance_url()))
        .bearer_auth(fresh["access_token"].as_str().expect("at"))
        .send()
        .await
        .expect("call");
    assert_eq!(ok.status(), StatusCode::OK);
    // No token at all.
    let none = ctx
        .http
        .get(format!("{}{V}/limits", ctx.sim.instance_url()))
        .send()
        .await
        .expect("call");
    assert_eq!(none.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn the_write_guard_refuses_and_counts_writes() {
    let ctx = start(SimConfig::default(), Org::new()).await;
    let url = format!("{}{V}/sobjects/Case", ctx.sim.instance_url());
    for method in [
        reqwest::Method::POST,
        reqwest::Method::PATCH,
        reqwest::Method::PUT,
        reqwest::Method::DELETE,
    ] {
        let r = ctx
            .http
            .request(method, &url)
            .bearer_auth(&ctx.token)
            .body("{}")
            .send()
            .await
            .expect("send");
        assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
    }
    let s = ctx.sim.stats();
    assert_eq!(s.write_attempts, 4);
    assert_eq!(s.data_calls, 4);
}

#[tokio::test]
async fn oversized_requests_get_html_414_and_431() {
    let ctx = start(SimConfig::default(), Org::new()).await;
    let long = format!(
        "SELECT Id FROM Case WHERE Subject = '{}'",
        "x".repeat(17_000)
    );
    let got = ctx.query(&long, None).await;
    assert_eq!(got.status, StatusCode::URI_TOO_LONG);
    assert_eq!(
        got.body,
        "<h1>Bad Message 414</h1><pre>reason: URI Too Long</pre>"
    );
    assert!(
        got.headers["content-type"]
            .to_str()
            .expect("ct")
            .starts_with("text/html")
    );
    let medium = format!(
        "SELECT Id FROM Case WHERE Subject = '{}'",
        "x".repeat(10_000)
    );
    let got = ctx
        .get_with(
            &format!("{V}/query?q={}", medium.replace(' ', "+")),
            &[("X-Padding", &"p".repeat(7_000))],
        )
        .await;
    assert_eq!(got.status, StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
    assert_eq!(
        got.body,
        "<h1>Bad Message 431</h1><pre>reason: Request Header Fields Too Large</pre>"
    );
    // Just under the limit is fine.
    let ok = format!(
        "SELECT Id FROM Case WHERE Subject = '{}'",
        "x".repeat(15_000)
    );
    assert_eq!(ctx.query(&ok, None).await.status, StatusCode::OK);
}

#[tokio::test]
async fn locators_are_limited_to_ten_and_expire_when_idle() {
    let (org, _) = org_with_cases(250, utc(2024, 1, 1, 0, 0, 0));
    let ctx = start(SimConfig::default(), org).await;
    let mut nexts = Vec::new();
    for _ in 0..11 {
        let got = ctx.query("SELECT Id FROM Case", Some(200)).await.json();
        nexts.push(got["nextRecordsUrl"].as_str().expect("more").to_string());
    }
    assert_eq!(ctx.sim.open_locators().0, 10);
    // The oldest was invalidated by the 11th.
    let got = ctx.get(&nexts[0]).await;
    assert_eq!(got.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        got.body,
        r#"[{"message":"invalid query locator","errorCode":"INVALID_QUERY_LOCATOR"}]"#
    );
    assert_eq!(ctx.get(&nexts[1]).await.status, StatusCode::OK);
    // A page can be fetched again (a retry after a network error).
    assert_eq!(ctx.get(&nexts[1]).await.status, StatusCode::OK);
    // Bad offsets and made-up locators.
    let base = nexts[2].rsplit_once('-').expect("offset").0.to_string();
    assert_eq!(
        ctx.get(&format!("{base}-999")).await.error_code(),
        "INVALID_QUERY_LOCATOR"
    );
    assert_eq!(
        ctx.get(&format!("{base}-x")).await.error_code(),
        "INVALID_QUERY_LOCATOR"
    );
    assert_eq!(
        ctx.get(&format!("{V}/query/01gNOPE-200"))
            .await
            .error_code(),
        "INVALID_QUERY_LOCATOR"
    );
    // Idle locators expire.
    ctx.sim
        .update_config(|c| c.locator_idle_timeout = Duration::from_millis(100));
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        ctx.get(&nexts[3]).await.error_code(),
        "INVALID_QUERY_LOCATOR"
    );
}

#[tokio::test]
async fn latency_applies_to_data_calls() {
    let ctx = start(SimConfig::default(), Org::new()).await;
    ctx.sim.set_latency(Duration::from_millis(150));
    let t = Instant::now();
    assert_eq!(ctx.get(&format!("{V}/limits")).await.status, StatusCode::OK);
    assert!(t.elapsed() >= Duration::from_millis(150));
}

#[tokio::test]
async fn answers_are_gzip_compressed_when_the_client_accepts_it_as_salesforce_does() {
    let (org, _) = org_with_cases(30, utc(2024, 3, 4, 17, 0, 0));
    let ctx = start(SimConfig::default(), org).await;
    // A client that neither asks for compression nor undoes it, so the wire is seen as is.
    let raw = reqwest::Client::builder().no_gzip().build().unwrap();
    let url = format!(
        "{}{V}/query?q=SELECT+Id,Subject+FROM+Case",
        ctx.sim.instance_url()
    );
    let get = |accept: Option<&'static str>, url: String| {
        let mut req = raw.get(url).bearer_auth(&ctx.token);
        if let Some(a) = accept {
            req = req.header("Accept-Encoding", a);
        }
        async move {
            let r = req.send().await.unwrap();
            let encoding = r
                .headers()
                .get("content-encoding")
                .map(|v| v.to_str().unwrap().to_owned());
            (r.status(), encoding, r.bytes().await.unwrap().to_vec())
        }
    };
    let gunzip = |bytes: &[u8]| {
        let mut out = String::new();
        std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(bytes), &mut out)
            .expect("a gzip stream");
        out
    };

    let (status, encoding, plain) = get(None, url.clone()).await;
    assert_eq!((status, encoding), (StatusCode::OK, None));
    let (status, encoding, gz) = get(Some("gzip, deflate"), url.clone()).await;
    assert_eq!(
        (status, encoding.as_deref()),
        (StatusCode::OK, Some("gzip"))
    );
    assert!(gz.len() < plain.len());
    let (a, b): (Value, Value) = (
        serde_json::from_slice(&plain).unwrap(),
        serde_json::from_str(&gunzip(&gz)).unwrap(),
    );
    // The same page (each new query gets its own locator, the rest is equal).
    assert_eq!(a["records"], b["records"]);
    assert_eq!(a["totalSize"], 30);

    // Refused by a zero q-value: not compressed
    let (_, encoding, _) = get(Some("gzip;q=0, identity"), url.clone()).await;
    assert_eq!(encoding, None);
    // Errors are compressed alike
    let bad = format!(
        "{}{V}/query?q=SELECT+Nope+FROM+Case",
        ctx.sim.instance_url()
    );
    let (status, encoding, body) = get(Some("gzip"), bad).await;
    assert_eq!(
        (status, encoding.as_deref()),
        (StatusCode::BAD_REQUEST, Some("gzip"))
    );
    assert!(gunzip(&body).contains("INVALID_FIELD"), "{}", gunzip(&body));
    assert_eq!(ctx.sim.stats().gzip_responses, 2);

    // Turned off, nothing is compressed
    ctx.sim.update_config(|c| c.gzip = false);
    let (_, encoding, _) = get(Some("gzip"), url).await;
    assert_eq!(encoding, None);
}
