//! A Case record becomes a data point. The rules are the data point contract's:
//! - conversation: the EmailMessages by MessageDate ascending, then Id; `text` is TextBody, or
//!   HtmlBody as plain text when TextBody is empty; inbound when `Incoming` is true;
//! - no email but a Description: one entry with the Description, sent at the Case's creation;
//!   neither: an empty conversation (the Case still becomes a data point);
//! - participant: the first inbound email's sender, else the Case's contact.
//!
//! NUL characters are removed from text: they carry nothing and break many consumers.

mod html;

use chrono::{DateTime, Utc};

use crate::data_point::{ContentSource, DataPoint, Direction, Message, Participant};
use crate::domain::{CaseId, ChannelName, ConnectionId, InstanceUrl};
use crate::salesforce::records::{CaseRecord, EmailRecord};

/// Where the data points of a connection go.
#[derive(Debug, Clone)]
pub struct MappingContext {
    pub connection_id: ConnectionId,
    pub channel: ChannelName,
    pub instance_url: InstanceUrl,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MappingError {
    #[error("the Case has no {0}")]
    Missing(&'static str),
    #[error("the Case's {field} {value:?} is not a Salesforce datetime")]
    BadDatetime { field: &'static str, value: String },
    #[error("the Case's Id {0:?} is not a Case id")]
    BadId(String),
    #[error("email {id} has a MessageDate {value:?} that is not a Salesforce datetime")]
    BadEmailDate { id: String, value: String },
}

/// Parses Salesforce's datetime format, `2024-03-01T09:15:02.000+0000` (also RFC 3339).
pub fn parse_datetime(raw: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_str(raw, "%Y-%m-%dT%H:%M:%S%.f%z")
        .or_else(|_| DateTime::parse_from_rfc3339(raw))
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// The cursor position of a record: its `(SystemModstamp, Id)`, if both parse.
pub fn position(record: &CaseRecord) -> Option<(DateTime<Utc>, CaseId)> {
    let ts = parse_datetime(record.system_modstamp.as_deref()?)?;
    let id = CaseId::parse(record.id.as_deref()?).ok()?;
    Some((ts, id))
}

fn clean(s: Option<String>) -> Option<String> {
    s.map(|s| {
        if s.contains('\0') {
            s.replace('\0', "")
        } else {
            s
        }
    })
}

fn non_empty(s: &Option<String>) -> bool {
    s.as_deref().is_some_and(|s| !s.trim().is_empty())
}

/// HTML to plain text for analysis: the text a reader sees, one line per block (paragraphs
/// apart by a blank line), `<br>` as a line break, table cells separated by a tab, entities
/// resolved, whitespace collapsed outside `<pre>`, nothing from scripts, styles, the head or
/// comments, links as their text only. Never panics, whatever the input (the `html` module
/// has the rules).
pub fn html_to_text(html: &str) -> String {
    html::to_text(html)
}

pub fn map_case(ctx: &MappingContext, record: CaseRecord) -> Result<DataPoint, MappingError> {
    let raw_id = record.id.ok_or(MappingError::Missing("Id"))?;
    let case_id = CaseId::parse(&raw_id).map_err(|_| MappingError::BadId(raw_id.clone()))?;
    let case_number = record
        .case_number
        .ok_or(MappingError::Missing("CaseNumber"))?;
    let status = record.status.ok_or(MappingError::Missing("Status"))?;
    let datetime = |field: &'static str, raw: Option<String>| {
        let raw = raw.ok_or(MappingError::Missing(field))?;
        parse_datetime(&raw).ok_or(MappingError::BadDatetime { field, value: raw })
    };
    let created_date = datetime("CreatedDate", record.created_date)?;
    let system_modstamp = datetime("SystemModstamp", record.system_modstamp)?;
    let subject = clean(record.subject);

    let mut emails: Vec<(Option<DateTime<Utc>>, EmailRecord)> = Vec::new();
    for email in record
        .email_messages
        .map(|page| page.records)
        .unwrap_or_default()
    {
        let date = match &email.message_date {
            None => None,
            Some(raw) => Some(
                parse_datetime(raw).ok_or_else(|| MappingError::BadEmailDate {
                    id: email.id.clone().unwrap_or_default(),
                    value: raw.clone(),
                })?,
            ),
        };
        emails.push((date, email));
    }
    // Salesforce already orders the subquery; sorting again keeps the contract when a child
    // list arrived in several chunks. Emails without a MessageDate sort first, as SOQL's
    // `ORDER BY ... ASC` puts nulls first.
    emails.sort_by(|(da, a), (db, b)| da.cmp(db).then_with(|| a.id.cmp(&b.id)));

    let participant = emails
        .iter()
        .find(|(_, e)| e.incoming == Some(true))
        .map(|(_, e)| Participant {
            email: clean(e.from_address.clone()),
            name: clean(e.from_name.clone()),
        })
        .unwrap_or_else(|| Participant {
            email: clean(record.contact_email),
            name: clean(record.contact.and_then(|c| c.name)),
        });

    let (content_source, conversation) = if !emails.is_empty() {
        let messages = emails
            .into_iter()
            .map(|(date, e)| {
                let text = if non_empty(&e.text_body) {
                    clean(e.text_body).unwrap_or_default()
                } else {
                    e.html_body
                        .as_deref()
                        .map(html_to_text)
                        .map(|t| t.replace('\0', ""))
                        .unwrap_or_default()
                };
                Message {
                    message_id: e.id,
                    direction: e.incoming.map(|i| {
                        if i {
                            Direction::Inbound
                        } else {
                            Direction::Outbound
                        }
                    }),
                    from_address: clean(e.from_address),
                    from_name: clean(e.from_name),
                    to_address: clean(e.to_address),
                    sent_at: date.unwrap_or(created_date),
                    subject: clean(e.subject),
                    text,
                }
            })
            .collect();
        (ContentSource::EmailThread, messages)
    } else if non_empty(&record.description) {
        let message = Message {
            message_id: None,
            direction: None,
            from_address: None,
            from_name: None,
            to_address: None,
            sent_at: created_date,
            subject: subject.clone(),
            text: clean(record.description).unwrap_or_default(),
        };
        (ContentSource::Description, vec![message])
    } else {
        (ContentSource::None, Vec::new())
    };

    Ok(DataPoint {
        id: DataPoint::id_for(&ctx.connection_id, &case_id),
        connection_id: ctx.connection_id.clone(),
        channel: ctx.channel.clone(),
        salesforce_link: ctx
            .instance_url
            .join(&format!("/lightning/r/Case/{case_id}/view")),
        case_id,
        case_number,
        subject,
        status,
        priority: clean(record.priority),
        origin: clean(record.origin),
        case_type: clean(record.case_type),
        created_date,
        system_modstamp,
        participant,
        content_source,
        conversation,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::salesforce::records::{ContactRef, QueryPage};

    fn ctx() -> MappingContext {
        MappingContext {
            connection_id: ConnectionId::parse("conn_0123456789abcdef0123456789abcdef").unwrap(),
            channel: ChannelName::parse("support").unwrap(),
            instance_url: InstanceUrl::parse("https://acme.my.salesforce.com").unwrap(),
        }
    }

    fn case() -> CaseRecord {
        CaseRecord {
            id: Some("500xx000003DHb0AAG".into()),
            case_number: Some("00001026".into()),
            subject: Some("Printer on fire".into()),
            status: Some("Closed".into()),
            priority: Some("High".into()),
            origin: Some("Email".into()),
            case_type: None,
            created_date: Some("2024-03-01T09:15:02.000+0000".into()),
            system_modstamp: Some("2024-03-04T17:00:00.000+0000".into()),
            description: Some("Described".into()),
            contact_email: Some("contact@example.com".into()),
            contact: Some(ContactRef {
                name: Some("Contact Person".into()),
            }),
            owner_id: Some("00Gxx000000ABCDEA4".into()),
            email_messages: None,
        }
    }

    fn email(id: &str, date: Option<&str>, incoming: bool) -> EmailRecord {
        EmailRecord {
            id: Some(id.into()),
            message_date: date.map(str::to_owned),
            from_address: Some(format!("{id}@example.com")),
            from_name: Some(format!("From {id}")),
            to_address: Some("support@acme.com".into()),
            incoming: Some(incoming),
            subject: Some("s".into()),
            text_body: Some(format!("body {id}")),
            html_body: None,
        }
    }

    fn with_emails(emails: Vec<EmailRecord>) -> CaseRecord {
        CaseRecord {
            email_messages: Some(QueryPage {
                total_size: emails.len() as u64,
                done: true,
                next_records_url: None,
                records: emails,
            }),
            ..case()
        }
    }

    #[test]
    fn the_thread_is_ordered_by_date_then_id_and_the_first_inbound_sender_is_the_participant() {
        let p = map_case(
            &ctx(),
            with_emails(vec![
                email("02s3", Some("2024-03-02T00:00:00.000+0000"), true),
                email("02s2", Some("2024-03-01T00:00:00.000+0000"), false),
                email("02s1", Some("2024-03-02T00:00:00.000+0000"), true),
            ]),
        )
        .unwrap();
        let ids: Vec<_> = p
            .conversation
            .iter()
            .map(|m| m.message_id.clone().unwrap())
            .collect();
        assert_eq!(ids, ["02s2", "02s1", "02s3"]);
        assert_eq!(p.conversation[0].direction, Some(Direction::Outbound));
        assert_eq!(p.participant.email.as_deref(), Some("02s1@example.com"));
        assert_eq!(p.content_source, ContentSource::EmailThread);
        assert_eq!(
            p.salesforce_link,
            "https://acme.my.salesforce.com/lightning/r/Case/500xx000003DHb0AAG/view"
        );
    }

    #[test]
    fn without_inbound_mail_the_contact_is_the_participant() {
        let p = map_case(&ctx(), with_emails(vec![email("02s1", None, false)])).unwrap();
        assert_eq!(p.participant.email.as_deref(), Some("contact@example.com"));
        assert_eq!(p.participant.name.as_deref(), Some("Contact Person"));
        // No MessageDate: the Case's creation stands in.
        assert_eq!(p.conversation[0].sent_at, p.created_date);
    }

    #[test]
    fn a_description_only_case_has_one_entry_and_an_empty_case_none() {
        let p = map_case(&ctx(), case()).unwrap();
        assert_eq!(p.content_source, ContentSource::Description);
        assert_eq!(p.conversation.len(), 1);
        let m = &p.conversation[0];
        assert_eq!(
            (m.message_id.as_ref(), m.direction, m.from_address.as_ref()),
            (None, None, None)
        );
        assert_eq!(m.sent_at, p.created_date);
        assert_eq!(m.text, "Described");

        let empty = map_case(
            &ctx(),
            CaseRecord {
                description: Some("  ".into()),
                ..case()
            },
        )
        .unwrap();
        assert_eq!(empty.content_source, ContentSource::None);
        assert!(empty.conversation.is_empty());
    }

    #[test]
    fn html_only_mail_becomes_readable_text() {
        let mut e = email("02s1", None, true);
        e.text_body = Some("   ".into());
        e.html_body = Some(
            "<html><head><style>p{color:red}</style></head><body><p>Hello&nbsp;team,</p>\
             <p>The <b>invoice</b> &amp; receipt<br>are <a href=\"https://x.example\">here</a>.</p>\
             <script>alert(1)</script></body></html>"
                .into(),
        );
        let p = map_case(&ctx(), with_emails(vec![e])).unwrap();
        let text = &p.conversation[0].text;
        assert!(
            text.contains("Hello\u{a0}team,") || text.contains("Hello team,"),
            "{text:?}"
        );
        assert!(
            text.contains("The invoice & receipt\nare here."),
            "{text:?}"
        );
        assert!(
            !text.contains('<') && !text.contains("alert") && !text.contains("color"),
            "{text:?}"
        );
    }

    #[test]
    fn nul_bytes_are_removed_and_unicode_kept() {
        let mut r = case();
        r.subject = Some("Zürich \u{0}☃ 日本".into());
        let p = map_case(&ctx(), r).unwrap();
        assert_eq!(p.subject.as_deref(), Some("Zürich ☃ 日本"));
    }

    #[test]
    fn unmappable_cases_say_why() {
        let e = |r| map_case(&ctx(), r).unwrap_err();
        assert_eq!(
            e(CaseRecord {
                case_number: None,
                ..case()
            }),
            MappingError::Missing("CaseNumber")
        );
        assert!(matches!(
            e(CaseRecord {
                created_date: Some("yesterday".into()),
                ..case()
            }),
            MappingError::BadDatetime {
                field: "CreatedDate",
                ..
            }
        ));
        assert!(matches!(
            e(CaseRecord {
                id: Some("001xx000003DHb0AAG".into()),
                ..case()
            }),
            MappingError::BadId(_)
        ));
    }

    #[test]
    fn salesforce_datetimes_parse() {
        assert_eq!(
            parse_datetime("2024-03-01T09:15:02.000+0000")
                .unwrap()
                .to_rfc3339(),
            "2024-03-01T09:15:02+00:00"
        );
        assert_eq!(
            parse_datetime("2024-03-01T10:15:02.000+0100")
                .unwrap()
                .to_rfc3339(),
            "2024-03-01T09:15:02+00:00"
        );
        assert!(parse_datetime("2024-03-01").is_none());
    }
}
