//! Evaluator tests: every operator, AND/OR/NOT grouping, keyset paging over ties, IN lists,
//! the semi-join, literal forms and the error cases.

use chrono::Duration;

use super::*;
use crate::org::{NewCase, NewEmail, Org, utc};
use crate::schema::SObject;

struct Fixture {
    org: Org,
    queue: String,
    other_queue: String,
    user: String,
    cases: Vec<String>,
}

/// Six Cases: three share one SystemModstamp; subjects/statuses vary.
fn fixture() -> Fixture {
    let mut org = Org::new();
    let queue = org.add_queue("Tier 1 Support", "Tier_1_Support");
    let other_queue = org.add_queue("Billing", "Billing");
    org.add_group("Everyone", "Everyone", "Regular");
    let user = org.add_user("Maria Lopez");
    let contact = org.add_contact("Jane Doe", "jane@example.com");
    let t0 = utc(2024, 1, 1, 0, 0, 0);
    let specs: Vec<(&str, &str, i64, &str, Option<&str>)> = vec![
        ("Printer on fire", "Closed", 0, "q", Some("High")),
        ("Invoice twice", "Closed", 60, "q", None),
        ("Login broken", "Closed", 60, "other", Some("Low")),
        ("Refund 100% please", "Working", 60, "q", Some("Medium")),
        ("it's_odd", "Closed", 120, "user", Some("High")),
        ("García's printer", "Closed", 180, "q", Some("low")),
    ];
    let mut cases = Vec::new();
    for (subject, status, offset, owner, priority) in specs {
        let owner_id = match owner {
            "q" => queue.clone(),
            "other" => other_queue.clone(),
            _ => user.clone(),
        };
        let id = org.add_case(NewCase {
            subject: Some(subject.into()),
            status: status.into(),
            priority: priority.map(String::from),
            system_modstamp: Some(t0 + Duration::seconds(offset)),
            contact_id: if subject.starts_with('P') {
                Some(contact.clone())
            } else {
                None
            },
            owner_id: Some(owner_id),
            description: Some("long text".into()),
            ..NewCase::default()
        });
        cases.push(id);
    }
    org.add_email(
        &cases[0],
        NewEmail {
            subject: Some("Help".into()),
            incoming: true,
            text_body: Some("Help!".into()),
            message_date: Some(t0),
            ..NewEmail::default()
        },
        false,
    );
    Fixture {
        org,
        queue,
        other_queue,
        user,
        cases,
    }
}

fn ids(f: &Fixture, soql: &str) -> Vec<String> {
    let plan = prepare(soql, &f.org).unwrap_or_else(|e| panic!("{soql}: {e}"));
    let rows = run(&f.org, &plan, chrono::Utc::now(), false, None).expect("runs");
    rows.iter()
        .map(|&i| match plan.object {
            SObject::Case => f.org.cases()[i as usize].id.to_string(),
            SObject::Group => f.org.groups()[i as usize].id.to_string(),
            SObject::EmailMessage => f.org.emails()[i as usize].id.to_string(),
            _ => String::new(),
        })
        .collect()
}

fn idx(f: &Fixture, soql: &str) -> Vec<usize> {
    ids(f, soql)
        .iter()
        .map(|id| {
            f.cases
                .iter()
                .position(|c| c == id)
                .expect("a fixture case")
        })
        .collect()
}

fn error(f: &Fixture, soql: &str) -> SoqlError {
    match prepare(soql, &f.org) {
        Ok(_) => panic!("{soql} should fail"),
        Err(e) => e,
    }
}

#[test]
fn comparison_operators_on_strings_are_case_insensitive() {
    let f = fixture();
    assert_eq!(
        idx(&f, "SELECT Id FROM Case WHERE Subject = 'printer on FIRE'"),
        vec![0]
    );
    assert_eq!(
        idx(&f, "SELECT Id FROM Case WHERE Status != 'closed'"),
        vec![3]
    );
    assert_eq!(
        idx(&f, "SELECT Id FROM Case WHERE Status <> 'Closed'"),
        vec![3]
    );
    assert_eq!(
        idx(
            &f,
            "SELECT Id FROM Case WHERE Subject < 'J' ORDER BY Subject"
        ),
        vec![5, 1, 4]
    );
    assert_eq!(
        idx(
            &f,
            "SELECT Id FROM Case WHERE Subject <= 'Invoice twice' ORDER BY Subject"
        ),
        vec![5, 1]
    );
    assert_eq!(
        idx(
            &f,
            "SELECT Id FROM Case WHERE Subject > 'Printer' ORDER BY Subject"
        ),
        vec![0, 3]
    );
    assert_eq!(
        idx(
            &f,
            "SELECT Id FROM Case WHERE Subject >= 'Refund 100% please'"
        ),
        vec![3]
    );
}

#[test]
fn null_semantics() {
    let f = fixture();
    assert_eq!(
        idx(&f, "SELECT Id FROM Case WHERE Priority = null"),
        vec![1]
    );
    assert_eq!(
        idx(&f, "SELECT Id FROM Case WHERE Priority != null"),
        vec![0, 2, 3, 4, 5]
    );
    // A null field is "not equal" to any value, and never matches an ordering comparison.
    assert_eq!(
        idx(&f, "SELECT Id FROM Case WHERE Priority != 'High'"),
        vec![1, 2, 3, 5]
    );
    assert_eq!(
        idx(&f, "SELECT Id FROM Case WHERE Priority > 'I'"),
        vec![2, 3, 5]
    );
    assert_eq!(
        idx(&f, "SELECT Id FROM Case WHERE Contact.Name = null"),
        vec![1, 2, 3, 4, 5]
    );
}

#[test]
fn like_wildcards_and_escapes() {
    let f = fixture();
    assert_eq!(
        idx(&f, "SELECT Id FROM Case WHERE Subject LIKE '%printer%'"),
        vec![0, 5]
    );
    assert_eq!(
        idx(&f, "SELECT Id FROM Case WHERE Subject LIKE 'L_gin%'"),
        vec![2]
    );
    assert_eq!(
        idx(&f, r"SELECT Id FROM Case WHERE Subject LIKE '%100\%%'"),
        vec![3]
    );
    assert_eq!(
        idx(&f, r"SELECT Id FROM Case WHERE Subject LIKE 'it\'s\_%'"),
        vec![4]
    );
    assert_eq!(
        idx(&f, "SELECT Id FROM Case WHERE Subject LIKE 'garcía%'"),
        vec![5]
    );
    assert!(idx(&f, "SELECT Id FROM Case WHERE Subject LIKE 'printer'").is_empty());
}

#[test]
fn boolean_derived_is_closed_and_datetimes() {
    let f = fixture();
    assert_eq!(
        idx(&f, "SELECT Id FROM Case WHERE IsClosed = false"),
        vec![3]
    );
    assert_eq!(
        idx(&f, "SELECT Id FROM Case WHERE IsClosed = TRUE").len(),
        5
    );
    assert_eq!(
        idx(
            &f,
            "SELECT Id FROM Case WHERE SystemModstamp = 2024-01-01T00:01:00Z"
        ),
        vec![1, 2, 3]
    );
    assert_eq!(
        idx(
            &f,
            "SELECT Id FROM Case WHERE SystemModstamp = 2024-01-01T01:01:00+01:00"
        ),
        vec![1, 2, 3]
    );
    assert_eq!(
        idx(
            &f,
            "SELECT Id FROM Case WHERE SystemModstamp > 2024-01-01T00:01:00.000Z"
        ),
        vec![4, 5]
    );
    assert_eq!(
        idx(
            &f,
            "SELECT Id FROM Case WHERE SystemModstamp >= 2024-01-01T00:02:00Z"
        ),
        vec![4, 5]
    );
    assert_eq!(
        idx(
            &f,
            "SELECT Id FROM Case WHERE SystemModstamp < 2023-12-31T19:01:00-05:00"
        ),
        vec![0]
    );
    assert_eq!(
        idx(
            &f,
            "SELECT Id FROM Case WHERE SystemModstamp <= 2024-01-01T00:01:00Z"
        )
        .len(),
        4
    );
}

#[test]
fn and_or_not_grouping() {
    let f = fixture();
    let q =
        "SELECT Id FROM Case WHERE Status = 'Closed' AND (Priority = 'High' OR Priority = null)";
    assert_eq!(idx(&f, q), vec![0, 1, 4]);
    let q =
        "SELECT Id FROM Case WHERE (Status = 'Closed' AND Priority = 'High') OR Priority = null";
    assert_eq!(idx(&f, q), vec![0, 1, 4]);
    let q = "SELECT Id FROM Case WHERE (Status = 'Working' AND Priority = 'High') OR Subject = 'Login broken'";
    assert_eq!(idx(&f, q), vec![2]);
    let q = "SELECT Id FROM Case WHERE NOT Status = 'Closed'";
    assert_eq!(idx(&f, q), vec![3]);
    let q = "SELECT Id FROM Case WHERE IsClosed = true AND (NOT (Priority = 'High' OR Priority = 'Low'))";
    assert_eq!(idx(&f, q), vec![1]);
    let q =
        "SELECT Id FROM Case WHERE Subject = 'a' OR Subject = 'Invoice twice' OR Subject = 'it''s'";
    assert!(prepare(q, &f.org).is_err(), "'' is not an escape in SOQL");
    let q = "SELECT Id FROM Case WHERE Subject = 'a' OR Subject = 'Invoice twice' OR Subject = 'b'";
    assert_eq!(idx(&f, q), vec![1]);
}

#[test]
fn keyset_predicate_pages_through_ties_exactly_once() {
    let f = fixture();
    let mut seen = Vec::new();
    let mut cursor: Option<(String, String)> = None;
    loop {
        let where_ = match &cursor {
            None => "Status = 'Closed'".to_string(),
            Some((t, id)) => format!(
                "Status = 'Closed' AND (SystemModstamp > {t} OR (SystemModstamp = {t} AND Id > '{id}'))"
            ),
        };
        let q = format!(
            "SELECT Id, SystemModstamp FROM Case WHERE {where_} ORDER BY SystemModstamp ASC, Id ASC LIMIT 2"
        );
        let page = idx(&f, &q);
        if page.is_empty() {
            break;
        }
        let last = *page.last().expect("non-empty");
        let c = &f.org.cases()[last];
        cursor = Some((
            c.system_modstamp.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
            c.id.to_string(),
        ));
        seen.extend(page);
    }
    assert_eq!(seen, vec![0, 1, 2, 4, 5]);
}

#[test]
fn ids_compare_in_their_15_character_form() {
    let f = fixture();
    let id18 = &f.cases[2];
    let id15 = &id18[..15];
    let lower18 = id18.to_ascii_lowercase();
    for lit in [id18.as_str(), id15, lower18.as_str()] {
        assert_eq!(
            idx(&f, &format!("SELECT Id FROM Case WHERE Id = '{lit}'")),
            vec![2]
        );
        assert_eq!(
            idx(
                &f,
                &format!("SELECT Id FROM Case WHERE Id > '{lit}' ORDER BY Id")
            ),
            vec![3, 4, 5]
        );
    }
    // A 15-character id is case-sensitive: changing the case names another record.
    let swapped: String = id15
        .chars()
        .map(|c| {
            if c.is_ascii_uppercase() {
                c.to_ascii_lowercase()
            } else {
                c.to_ascii_uppercase()
            }
        })
        .collect();
    assert!(idx(&f, &format!("SELECT Id FROM Case WHERE Id = '{swapped}'")).is_empty());
    let e = error(&f, "SELECT Id FROM Case WHERE Id = 'nonsense'");
    assert_eq!(e.code, INVALID_QUERY_FILTER_OPERATOR);
    assert!(e.message.contains("invalid ID field: nonsense"));
}

#[test]
fn in_lists_and_not_in() {
    let f = fixture();
    let q = format!(
        "SELECT Id FROM Case WHERE OwnerId IN ('{}', '{}')",
        f.queue, f.user
    );
    assert_eq!(idx(&f, &q), vec![0, 1, 3, 4, 5]);
    let q = format!("SELECT Id FROM Case WHERE OwnerId NOT IN ('{}')", f.queue);
    assert_eq!(idx(&f, &q), vec![2, 4]);
    let q = "SELECT Id FROM Case WHERE Priority IN ('high', 'LOW')";
    assert_eq!(idx(&f, q), vec![0, 2, 4, 5]);
    let q = "SELECT Id FROM Case WHERE Priority NOT IN ('High')";
    assert_eq!(idx(&f, q), vec![1, 2, 3, 5]);
}

#[test]
fn owner_type_and_the_queue_semi_join() {
    let f = fixture();
    assert_eq!(
        idx(&f, "SELECT Id FROM Case WHERE Owner.Type = 'Queue'"),
        vec![0, 1, 2, 3, 5]
    );
    assert_eq!(
        idx(&f, "SELECT Id FROM Case WHERE Owner.Type = 'User'"),
        vec![4]
    );
    let q = "SELECT Id FROM Case WHERE OwnerId IN (SELECT Id FROM Group WHERE Type = 'Queue')";
    assert_eq!(idx(&f, q), vec![0, 1, 2, 3, 5]);
    let q = "SELECT Id FROM Case WHERE OwnerId NOT IN (SELECT Id FROM Group WHERE Type = 'Queue')";
    assert_eq!(idx(&f, q), vec![4]);
    let q = "SELECT Id FROM Case WHERE OwnerId IN (SELECT Id FROM Group WHERE DeveloperName = 'Billing')";
    assert_eq!(idx(&f, q), vec![2]);
    let q = "SELECT Id FROM Case WHERE Id IN (SELECT ParentId FROM EmailMessage)";
    assert_eq!(idx(&f, q), vec![0]);
    let groups = ids(
        &f,
        "SELECT Id FROM Group WHERE Type = 'Queue' ORDER BY Name",
    );
    assert_eq!(groups, vec![f.other_queue.clone(), f.queue.clone()]);
    // Restrictions.
    let e = error(
        &f,
        "SELECT Id FROM Case WHERE Status = 'New' OR OwnerId IN (SELECT Id FROM Group)",
    );
    assert_eq!(e.code, MALFORMED_QUERY);
    let e = error(
        &f,
        "SELECT Id FROM Case WHERE OwnerId IN (SELECT Name FROM Group)",
    );
    assert_eq!(e.code, MALFORMED_QUERY);
    let e = error(
        &f,
        "SELECT Id FROM Case WHERE Subject IN (SELECT Id FROM Group)",
    );
    assert_eq!(e.code, INVALID_FIELD);
}

#[test]
fn order_by_directions_and_nulls() {
    let f = fixture();
    assert_eq!(
        idx(&f, "SELECT Id FROM Case ORDER BY Priority"),
        vec![1, 0, 4, 2, 5, 3]
    );
    assert_eq!(
        idx(&f, "SELECT Id FROM Case ORDER BY Priority ASC NULLS LAST"),
        vec![0, 4, 2, 5, 3, 1]
    );
    assert_eq!(
        idx(&f, "SELECT Id FROM Case ORDER BY Priority DESC"),
        vec![3, 2, 5, 0, 4, 1]
    );
    assert_eq!(
        idx(
            &f,
            "SELECT Id FROM Case ORDER BY Priority DESC NULLS FIRST, Id DESC"
        ),
        vec![1, 3, 5, 2, 4, 0]
    );
    assert_eq!(
        idx(
            &f,
            "SELECT Id FROM Case ORDER BY SystemModstamp DESC, Id ASC LIMIT 3"
        ),
        vec![5, 4, 1]
    );
    assert_eq!(idx(&f, "SELECT Id FROM Case LIMIT 2"), vec![0, 1]);
}

#[test]
fn count_and_limit() {
    let f = fixture();
    let plan = prepare("SELECT COUNT() FROM Case WHERE IsClosed = true", &f.org).expect("ok");
    assert!(plan.count_only);
    assert_eq!(
        run(&f.org, &plan, chrono::Utc::now(), false, None)
            .expect("runs")
            .len(),
        5
    );
    assert_eq!(
        error(&f, "SELECT COUNT(), Id FROM Case").code,
        MALFORMED_QUERY
    );
}

#[test]
fn field_errors() {
    let f = fixture();
    let e = error(&f, "SELECT Id, Foo FROM Case");
    assert_eq!(e.code, INVALID_FIELD);
    assert_eq!(
        e.message,
        "\nSELECT Id, Foo FROM Case\n           ^\nERROR at Row:1:Column:12\nNo such column 'Foo' on entity 'Case'. If you are attempting to use a custom field, be sure to append the '__c' after the custom field name. Please reference your WSDL or the describe call for the appropriate names."
    );
    assert_eq!(
        error(&f, "SELECT Id FROM Case WHERE Foo = 'x'").code,
        INVALID_FIELD
    );
    assert_eq!(
        error(&f, "SELECT Id FROM Case ORDER BY Foo").code,
        INVALID_FIELD
    );
    assert_eq!(
        error(&f, "SELECT Contact.Phone FROM Case").code,
        INVALID_FIELD
    );
    let e = error(&f, "SELECT Account.Name FROM Case");
    assert!(
        e.message
            .contains("Didn't understand relationship 'Account' in field path")
    );
    assert_eq!(error(&f, "SELECT Owner FROM Case").code, INVALID_FIELD);
    assert_eq!(error(&f, "SELECT Id FROM Account").code, INVALID_TYPE);
    let e = error(&f, "SELECT Id, (SELECT Id FROM Comments) FROM Case");
    assert_eq!(e.code, INVALID_FIELD);
    let e = error(
        &f,
        "SELECT Id, (SELECT Id, Foo FROM EmailMessages) FROM Case",
    );
    assert!(
        e.message
            .contains("No such column 'Foo' on entity 'EmailMessage'")
    );
    assert_eq!(error(&f, "SELECT Id, Id FROM Case").code, MALFORMED_QUERY);
}

#[test]
fn literal_type_errors() {
    let f = fixture();
    let e = error(
        &f,
        "SELECT Id FROM Case WHERE SystemModstamp > '2024-01-01T00:00:00Z'",
    );
    assert_eq!(e.code, INVALID_FIELD);
    assert!(
        e.message.ends_with(
            "value of filter criterion for field 'SystemModstamp' must be of type dateTime and should not be enclosed in quotes"
        ),
        "{}",
        e.message
    );
    let e = error(&f, "SELECT Id FROM Case WHERE SystemModstamp > 2024-01-01");
    assert_eq!(e.code, INVALID_FIELD);
    let e = error(&f, "SELECT Id FROM Case WHERE IsClosed = 'true'");
    assert!(
        e.message
            .contains("must be of type boolean and should not be enclosed in quotes")
    );
    let e = error(&f, "SELECT Id FROM Case WHERE Subject = 42");
    assert!(
        e.message
            .contains("must be of type string and should be enclosed in quotes")
    );
    assert_eq!(
        error(&f, "SELECT Id FROM Case WHERE IsClosed > true").code,
        INVALID_QUERY_FILTER_OPERATOR
    );
    assert_eq!(
        error(&f, "SELECT Id FROM Case WHERE Id LIKE '500%'").code,
        INVALID_QUERY_FILTER_OPERATOR
    );
}

#[test]
fn textarea_fields_cannot_be_filtered_or_sorted() {
    let f = fixture();
    for q in [
        "SELECT Id FROM Case WHERE Description = 'x'",
        "SELECT Id FROM Case WHERE Description LIKE '%x%'",
        "SELECT Id FROM EmailMessage WHERE TextBody LIKE '%x%'",
        "SELECT Id, (SELECT Id FROM EmailMessages WHERE HtmlBody != null) FROM Case",
        "SELECT Id FROM Case ORDER BY Description",
    ] {
        let e = error(&f, q);
        assert_eq!(e.code, INVALID_FIELD, "{q}");
        assert!(e.message.contains("can not be"), "{q}: {}", e.message);
    }
    // Selecting them is fine.
    assert!(prepare("SELECT Description FROM Case", &f.org).is_ok());
}

#[test]
fn statements_over_100000_characters_are_rejected() {
    let f = fixture();
    let long = format!(
        "SELECT Id FROM Case WHERE Subject = '{}'",
        "x".repeat(100_000)
    );
    let e = error(&f, &long);
    assert_eq!(e.code, MALFORMED_QUERY);
    assert!(e.message.contains("100000"));
}

#[test]
fn permissions_hide_objects_relationships_and_fields() {
    let mut f = fixture();
    f.org.set_object_accessible(SObject::EmailMessage, false);
    let e = error(&f, "SELECT Id, (SELECT Id FROM EmailMessages) FROM Case");
    assert_eq!(e.code, INVALID_FIELD);
    assert!(
        e.message
            .contains("Didn't understand relationship 'EmailMessages'")
    );
    assert_eq!(error(&f, "SELECT Id FROM EmailMessage").code, INVALID_TYPE);
    f.org.set_object_accessible(SObject::EmailMessage, true);
    f.org.set_object_accessible(SObject::Case, false);
    assert_eq!(error(&f, "SELECT Id FROM Case").code, INVALID_TYPE);
    f.org.set_object_accessible(SObject::Case, true);
    f.org.hide_field(SObject::Case, "Description");
    assert_eq!(
        error(&f, "SELECT Description FROM Case").code,
        INVALID_FIELD
    );
}

#[test]
fn child_subquery_filters_orders_and_limits() {
    let mut f = fixture();
    let t0 = utc(2024, 1, 1, 0, 0, 0);
    for k in 1..=4 {
        f.org.add_email(
            &f.cases[0].clone(),
            NewEmail {
                incoming: k % 2 == 0,
                message_date: Some(t0 - Duration::minutes(k)),
                ..NewEmail::default()
            },
            false,
        );
    }
    let plan = prepare(
        "SELECT Id, (SELECT Id, MessageDate FROM EmailMessages WHERE Incoming = false ORDER BY MessageDate ASC LIMIT 1) FROM Case",
        &f.org,
    )
    .expect("ok");
    let child = plan.child.as_deref().expect("child plan");
    let rows = eval::child_rows(&f.org, child, 0);
    assert_eq!(rows.len(), 1);
    let e = &f.org.emails()[rows[0] as usize];
    assert!(!e.incoming);
    assert_eq!(e.message_date, Some(t0 - Duration::minutes(3)));
}

#[test]
fn deleted_and_not_yet_visible_cases_are_hidden() {
    let mut f = fixture();
    let now = chrono::Utc::now();
    f.org.delete_case(&f.cases[1].clone(), now);
    f.org
        .set_visible_from(&f.cases[2].clone(), now + Duration::hours(1));
    let plan = prepare(
        "SELECT Id FROM Case WHERE Subject IN ('Invoice twice', 'Login broken')",
        &f.org,
    )
    .expect("ok");
    assert!(
        run(&f.org, &plan, now, false, None)
            .expect("runs")
            .is_empty()
    );
    assert_eq!(run(&f.org, &plan, now, true, None).expect("runs").len(), 1);
    assert_eq!(
        run(&f.org, &plan, now + Duration::hours(2), false, None)
            .expect("runs")
            .len(),
        1
    );
    let all = prepare("SELECT Id FROM Case", &f.org).expect("ok");
    let e = run(&f.org, &all, now, false, Some(3)).expect_err("too many rows");
    assert_eq!(e.code, QUERY_TIMEOUT);
}

#[test]
fn mangled_queries_never_panic() {
    let f = fixture();
    let base = "SELECT Id, Contact.Name, Owner.Type, (SELECT Id, TextBody FROM EmailMessages ORDER BY MessageDate LIMIT 5) \
                FROM Case WHERE IsClosed = true AND (SystemModstamp > 2024-01-01T00:00:00.000+01:00 OR \
                (SystemModstamp = 2024-01-01T00:00:00Z AND Id > '500000000000001')) AND Subject LIKE 'a\\%b%' \
                AND OwnerId IN (SELECT Id FROM Group WHERE Type = 'Queue') ORDER BY SystemModstamp DESC NULLS LAST, Id LIMIT 10";
    let alphabet: Vec<char> = "()',.=<>!%_\\ -+:TZé0159aZ\n\"".chars().collect();
    let mut rng = crate::text::Rng64::new(77);
    for _ in 0..5_000 {
        let mut chars: Vec<char> = base.chars().collect();
        for _ in 0..rng.range(1, 4) {
            let pos = rng.range(0, chars.len() as u64 - 1) as usize;
            match rng.range(0, 2) {
                0 => {
                    chars.remove(pos);
                }
                1 => chars.insert(pos, *rng.pick(&alphabet)),
                _ => chars[pos] = *rng.pick(&alphabet),
            }
        }
        let q: String = chars.into_iter().collect();
        if let Ok(plan) = prepare(&q, &f.org) {
            let _ = run(&f.org, &plan, chrono::Utc::now(), false, None);
        }
    }
}
