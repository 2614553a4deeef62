//! The JSON Salesforce sends, as it sends it. Fields stay loosely typed (`Option<String>`)
//! here: validation happens in `mapping`, per Case, so one odd record becomes a recorded
//! failure instead of failing its whole page.

use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::value::RawValue;

/// One page of a query (`/query?q=` or a `nextRecordsUrl`), or an inline child list.
#[derive(Debug, Clone, Deserialize)]
pub struct QueryPage<T> {
    #[serde(rename = "totalSize", default)]
    pub total_size: u64,
    /// Some clients saw `done` missing on empty results; absent means no further page.
    #[serde(default = "yes")]
    pub done: bool,
    #[serde(rename = "nextRecordsUrl", default)]
    pub next_records_url: Option<String>,
    #[serde(default = "Vec::new")]
    pub records: Vec<T>,
}

fn yes() -> bool {
    true
}

impl<T> QueryPage<T> {
    /// The URL of the next page, if Salesforce says there is one.
    pub fn next(&self) -> Option<&str> {
        if self.done {
            None
        } else {
            self.next_records_url.as_deref()
        }
    }
}

/// A page whose records are kept raw, to be decoded one by one.
pub type RawPage = QueryPage<Box<RawValue>>;

/// Decodes a page. The fast path decodes every record at once; if one record does not fit the
/// expected shape, the records are decoded individually so only that one is lost (and reported)
/// while the rest of the page proceeds.
pub fn decode_page<T: DeserializeOwned>(
    body: &[u8],
) -> Result<(QueryPage<T>, Vec<RecordDecodeError>), serde_json::Error> {
    match serde_json::from_slice::<QueryPage<T>>(body) {
        Ok(page) => Ok((page, Vec::new())),
        Err(whole) => {
            // Not even a page? Report the original error.
            let raw: RawPage = serde_json::from_slice(body).map_err(|_| whole)?;
            let mut records = Vec::with_capacity(raw.records.len());
            let mut errors = Vec::new();
            for (index, r) in raw.records.iter().enumerate() {
                match serde_json::from_str::<T>(r.get()) {
                    Ok(rec) => records.push(rec),
                    Err(e) => errors.push(RecordDecodeError {
                        index,
                        id: record_id(r.get()),
                        error: e.to_string(),
                    }),
                }
            }
            Ok((
                QueryPage {
                    total_size: raw.total_size,
                    done: raw.done,
                    next_records_url: raw.next_records_url,
                    records,
                },
                errors,
            ))
        }
    }
}

/// The `Id` of a record that failed to decode, if it has a readable one.
fn record_id(raw: &str) -> Option<String> {
    #[derive(Deserialize)]
    struct IdOnly {
        #[serde(rename = "Id")]
        id: Option<String>,
    }
    serde_json::from_str::<IdOnly>(raw).ok().and_then(|r| r.id)
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordDecodeError {
    pub index: usize,
    pub id: Option<String>,
    pub error: String,
}

/// A `Case` row of the incremental query.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct CaseRecord {
    pub id: Option<String>,
    pub case_number: Option<String>,
    pub subject: Option<String>,
    pub status: Option<String>,
    pub priority: Option<String>,
    pub origin: Option<String>,
    #[serde(rename = "Type")]
    pub case_type: Option<String>,
    pub created_date: Option<String>,
    pub system_modstamp: Option<String>,
    pub description: Option<String>,
    pub contact_email: Option<String>,
    pub contact: Option<ContactRef>,
    pub owner_id: Option<String>,
    pub email_messages: Option<QueryPage<EmailRecord>>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ContactRef {
    pub name: Option<String>,
}

/// An `EmailMessage` row of the child subquery.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct EmailRecord {
    pub id: Option<String>,
    pub message_date: Option<String>,
    pub from_address: Option<String>,
    pub from_name: Option<String>,
    pub to_address: Option<String>,
    pub incoming: Option<bool>,
    pub subject: Option<String>,
    pub text_body: Option<String>,
    pub html_body: Option<String>,
}

/// A queue (`Group` of type `Queue`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, serde::Serialize)]
pub struct QueueRecord {
    #[serde(rename = "Id")]
    pub id: String,
    #[serde(rename = "Name")]
    pub name: String,
    #[serde(rename = "DeveloperName", default)]
    pub developer_name: Option<String>,
}

/// The part of `GET /sobjects/X/describe` the doctor reads.
#[derive(Debug, Clone, Deserialize)]
pub struct Describe {
    pub name: String,
    #[serde(default)]
    pub queryable: bool,
    #[serde(default)]
    pub fields: Vec<DescribeField>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct DescribeField {
    pub name: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_malformed_record_does_not_lose_the_page() {
        let body = br#"{"totalSize":3,"done":true,"records":[
            {"attributes":{"type":"Case"},"Id":"500xx000003DHb0AAG","CaseNumber":"1"},
            {"attributes":{"type":"Case"},"Id":"500xx000003DHb1AAG","CaseNumber":42},
            {"attributes":{"type":"Case"},"Id":"500xx000003DHb2AAG","CaseNumber":"3"}]}"#;
        let (page, errors) = decode_page::<CaseRecord>(body).unwrap();
        assert_eq!(page.records.len(), 2);
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].index, 1);
        assert_eq!(errors[0].id.as_deref(), Some("500xx000003DHb1AAG"));
    }

    #[test]
    fn a_truncated_body_is_an_error() {
        let body = br#"{"totalSize":3,"done":true,"records":[{"Id":"500"#;
        assert!(decode_page::<CaseRecord>(body).is_err());
    }

    #[test]
    fn next_is_only_followed_when_not_done() {
        let p: QueryPage<CaseRecord> = serde_json::from_str(
            r#"{"totalSize":1,"done":true,"nextRecordsUrl":"/x","records":[]}"#,
        )
        .unwrap();
        assert_eq!(p.next(), None);
        let p: QueryPage<CaseRecord> =
            serde_json::from_str(r#"{"totalSize":0,"records":[]}"#).unwrap();
        assert!(p.done);
    }
}
