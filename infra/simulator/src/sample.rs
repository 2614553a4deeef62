//! The demo org of [`Org::sample`](crate::Org::sample).

use chrono::{DateTime, Duration, DurationRound, Utc};

use crate::org::{NewCase, NewEmail, Org};
use crate::text::{self, Rng64, TOPICS};

fn fill(template: &str, name: &str) -> String {
    let first = name.split(' ').next().unwrap_or(name);
    template.replace("{name}", name).replace("{first}", first)
}

pub(crate) fn build_sample(seed: u64, now: DateTime<Utc>) -> Org {
    let now = now.duration_trunc(Duration::seconds(1)).unwrap_or(now);
    let mut rng = Rng64::new(seed);
    let mut org = Org::new();
    let queues = [
        org.add_queue("Tier 1 Support", "Tier_1_Support"),
        org.add_queue("Billing", "Billing"),
        org.add_queue("Escalations", "Escalations"),
    ];
    org.add_group("All Support Staff", "All_Support_Staff", "Regular");
    let agents = [org.add_user("Maria Lopez"), org.add_user("Sam Carter")];

    let mut contacts = Vec::new();
    for i in 0..30 {
        let first = *rng.pick(text::FIRST_NAMES);
        let last = *rng.pick(text::LAST_NAMES);
        let domain = *rng.pick(text::COMPANIES);
        let name = format!("{first} {last}");
        let local: String = format!("{first}.{last}")
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '.')
            .collect::<String>()
            .to_ascii_lowercase();
        let email = format!("{local}{i}@{domain}");
        let id = org.add_contact(&name, &email);
        contacts.push((id, name, email));
    }

    // One instant shared by several Cases (a bulk update), to exercise keyset tie-breaking.
    let tie_at = now - Duration::days(12) - Duration::hours(3);
    let big_case_slot = 40usize;
    let total = 150usize;
    for i in 0..total {
        let topic_idx = (rng.next_u64() % TOPICS.len() as u64) as usize;
        let topic = &TOPICS[topic_idx];
        let (contact_id, contact_name, contact_email) = if i % 17 == 5 {
            (
                None,
                "Web Visitor".to_string(),
                "visitor@example.org".to_string(),
            )
        } else {
            let c = rng.pick(&contacts).clone();
            (Some(c.0), c.1, c.2)
        };
        let age_s = rng.range(3_600, 60 * 86_400) as i64;
        let mut modstamp = now - Duration::seconds(age_s);
        if (20..26).contains(&i) {
            modstamp = tie_at;
        }
        let created = modstamp - Duration::seconds(rng.range(1_800, 10 * 86_400) as i64);
        let open = i % 10 == 3;
        let user_owned = !open && i % 13 == 7;
        let owner = if user_owned {
            rng.pick(&agents).clone()
        } else {
            queues[topic.queue].clone()
        };
        // Shape of the Case: normal thread, description only, or neither.
        let shape = match i % 15 {
            4 => "description_only",
            9 => "empty",
            _ => "thread",
        };
        let description = match shape {
            "empty" => None,
            _ => Some(fill(topic.customer[0], &contact_name)),
        };
        let case_id = org.add_case(NewCase {
            subject: Some(topic.subject.to_string()),
            status: if open {
                "Working".into()
            } else {
                "Closed".into()
            },
            priority: Some(["Low", "Medium", "High"][i % 3].into()),
            origin: Some(if i % 5 == 0 { "Web" } else { "Email" }.into()),
            case_type: topic.case_type.map(String::from),
            created_date: Some(created),
            last_modified_date: Some(modstamp),
            system_modstamp: Some(modstamp),
            closed_date: if open { None } else { Some(modstamp) },
            description,
            contact_id: contact_id.clone(),
            supplied_email: Some(contact_email.clone()),
            owner_id: Some(owner),
            is_deleted: false,
            visible_from: None,
        });
        if shape != "thread" {
            continue;
        }
        let n = if i == big_case_slot {
            250
        } else {
            rng.range(1, 6) as usize
        };
        let step = ((modstamp - created).num_seconds().max(2) / (n as i64 + 1)).max(1);
        for k in 0..n {
            let incoming = k % 2 == 0;
            let at = created + Duration::seconds(step * (k as i64 + 1));
            let body = if incoming {
                fill(
                    topic.customer[(k / 2) % topic.customer.len()],
                    &contact_name,
                )
            } else {
                fill(topic.agent[(k / 2) % topic.agent.len()], &contact_name)
            };
            let html_only = rng.chance(0.2);
            let with_html = html_only || rng.chance(0.5);
            org.add_email(
                &case_id,
                NewEmail {
                    message_date: Some(at),
                    from_address: Some(if incoming {
                        contact_email.clone()
                    } else {
                        "support@acme.example".into()
                    }),
                    from_name: Some(if incoming {
                        contact_name.clone()
                    } else {
                        "Acme Support".into()
                    }),
                    to_address: Some(if incoming {
                        "support@acme.example".into()
                    } else {
                        contact_email.clone()
                    }),
                    cc_address: if k == 1 && i % 4 == 0 {
                        Some("accounts@acme.example; team-lead@acme.example".into())
                    } else {
                        None
                    },
                    incoming,
                    subject: Some(if k == 0 {
                        topic.subject.to_string()
                    } else {
                        format!("RE: {}", topic.subject)
                    }),
                    status: None,
                    text_body: if html_only { None } else { Some(body.clone()) },
                    html_body: if with_html {
                        Some(text::to_html(&body))
                    } else {
                        None
                    },
                    has_attachment: k == 0 && i % 6 == 0,
                    created_date: Some(at),
                    system_modstamp: Some(at),
                },
                false,
            );
        }
    }
    org
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sample_org_has_the_promised_shapes() {
        let now = crate::org::utc(2024, 6, 1, 12, 0, 0);
        let org = Org::sample(7, now);
        assert_eq!(org.queues().count(), 3);
        assert_eq!(org.cases().len(), 150);
        let emails_per_case: Vec<usize> = org
            .cases()
            .iter()
            .map(|c| org.emails_of(c.id.as_str()).len())
            .collect();
        assert!(emails_per_case.contains(&250));
        assert!(
            org.cases()
                .iter()
                .any(|c| c.description.is_some() && org.emails_of(c.id.as_str()).is_empty())
        );
        assert!(
            org.cases()
                .iter()
                .any(|c| c.description.is_none() && org.emails_of(c.id.as_str()).is_empty())
        );
        assert!(
            org.emails()
                .iter()
                .any(|e| e.text_body.is_none() && e.html_body.is_some())
        );
        assert!(
            org.emails().iter().any(|e| e.incoming) && org.emails().iter().any(|e| !e.incoming)
        );
        assert!(org.cases().iter().any(|c| !c.is_closed()));
        let oldest = org
            .cases()
            .iter()
            .map(|c| c.system_modstamp)
            .min()
            .expect("cases");
        assert!(oldest >= now - Duration::days(61) && oldest < now - Duration::days(30));
        let mut stamps: Vec<_> = org.cases().iter().map(|c| c.system_modstamp).collect();
        stamps.sort();
        assert!(stamps.windows(5).any(|w| w[0] == w[4]), "ties exist");
        // Deterministic for a seed.
        let again = Org::sample(7, now);
        assert_eq!(
            again.cases().iter().map(|c| c.id).collect::<Vec<_>>(),
            org.cases().iter().map(|c| c.id).collect::<Vec<_>>()
        );
    }
}
