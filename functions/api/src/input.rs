//! Request bodies: a JSON object whose fields are checked one by one, so every refusal names
//! its field. Values are parsed into the core's domain types here, at the edge.

use casesync_core::domain::{
    ApiVersion, BackfillWindow, ChannelName, LoginUrl, QueueId, QueueScope,
};
use lambda_http::Body;
use serde_json::{Map, Value};

use crate::error::ApiError;

/// Bodies larger than this are refused (413) unread.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// The bytes of a body, size-checked. API Gateway has already decoded base64 bodies into
/// `Body::Binary`.
pub fn bytes(body: &Body) -> Result<&[u8], ApiError> {
    let bytes: &[u8] = match body {
        Body::Empty => &[],
        Body::Text(t) => t.as_bytes(),
        Body::Binary(b) => b,
        _ => &[],
    };
    if bytes.len() > MAX_BODY_BYTES {
        return Err(ApiError::PayloadTooLarge {
            limit: MAX_BODY_BYTES,
        });
    }
    Ok(bytes)
}

/// A body's fields, taken one at a time; what is left at the end is an unknown field.
pub struct Fields(Map<String, Value>);

impl Fields {
    /// A JSON object with only `allowed` keys. An empty body counts as `{}`.
    pub fn parse(body: &Body, allowed: &[&str]) -> Result<Self, ApiError> {
        let bytes = bytes(body)?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(Self(Map::new()));
        }
        let value: Value = serde_json::from_slice(bytes)
            .map_err(|e| ApiError::InvalidBody(format!("the body is not valid JSON: {e}")))?;
        let Value::Object(map) = value else {
            return Err(ApiError::InvalidBody(
                "the body must be a JSON object".into(),
            ));
        };
        let mut unknown: Vec<&String> = map
            .keys()
            .filter(|k| !allowed.contains(&k.as_str()))
            .collect();
        unknown.sort();
        if let Some(first) = unknown.first() {
            return Err(ApiError::invalid(
                first.as_str(),
                format!("unknown field; the fields are {}", allowed.join(", ")),
            ));
        }
        Ok(Self(map))
    }

    /// A string field; `null` counts as absent.
    pub fn string(&mut self, name: &str) -> Result<Option<String>, ApiError> {
        match self.0.remove(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(other) => Err(ApiError::invalid(
                name,
                format!("expected a string, got {}", kind(&other)),
            )),
        }
    }

    pub fn channel(&mut self) -> Result<ChannelName, ApiError> {
        let raw = self
            .string("channel")?
            .ok_or_else(|| ApiError::invalid("channel", "required"))?;
        ChannelName::parse(&raw).map_err(|e| ApiError::invalid("channel", e))
    }

    pub fn login_url(&mut self) -> Result<Option<LoginUrl>, ApiError> {
        self.string("login_url")?
            .map(|raw| LoginUrl::parse(&raw).map_err(|e| ApiError::invalid("login_url", e)))
            .transpose()
    }

    pub fn backfill(&mut self) -> Result<Option<BackfillWindow>, ApiError> {
        self.string("backfill")?
            .map(|raw| BackfillWindow::parse(&raw).map_err(|e| ApiError::invalid("backfill", e)))
            .transpose()
    }

    pub fn api_version(&mut self) -> Result<Option<ApiVersion>, ApiError> {
        self.string("api_version")?
            .map(|raw| ApiVersion::parse(&raw).map_err(|e| ApiError::invalid("api_version", e)))
            .transpose()
    }

    /// `"all"`, or an array of 15- or 18-character queue ids (a comma-separated string of ids
    /// is accepted too, as the CLI takes them).
    pub fn queues(&mut self) -> Result<Option<QueueScope>, ApiError> {
        match self.0.remove("queues") {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => QueueScope::parse(&s)
                .map(Some)
                .map_err(|e| ApiError::invalid("queues", e)),
            Some(Value::Array(items)) => {
                let mut ids = Vec::with_capacity(items.len());
                for (i, item) in items.iter().enumerate() {
                    let field = format!("queues[{i}]");
                    let Value::String(raw) = item else {
                        return Err(ApiError::invalid(
                            field,
                            format!("expected a queue id string, got {}", kind(item)),
                        ));
                    };
                    ids.push(QueueId::parse(raw).map_err(|e| ApiError::invalid(field, e))?);
                }
                QueueScope::specific(ids)
                    .map(Some)
                    .map_err(|e| ApiError::invalid("queues", e))
            }
            Some(other) => Err(ApiError::invalid(
                "queues",
                format!(
                    "expected \"all\" or an array of queue ids, got {}",
                    kind(&other)
                ),
            )),
        }
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(json: &str, allowed: &[&str]) -> Result<Fields, ApiError> {
        Fields::parse(&Body::Text(json.into()), allowed)
    }

    fn field_of(e: ApiError) -> String {
        match e {
            ApiError::Invalid { field, .. } => field,
            other => panic!("not a field error: {other}"),
        }
    }

    #[test]
    fn unknown_fields_and_wrong_types_are_named() {
        assert_eq!(
            field_of(
                fields(r#"{"channel":"x","queue":"all"}"#, &["channel", "queues"])
                    .err()
                    .unwrap()
            ),
            "queue"
        );
        let mut f = fields(r#"{"channel":5}"#, &["channel"]).unwrap();
        assert_eq!(field_of(f.channel().unwrap_err()), "channel");
        let mut f = fields(r#"{"queues":["00Gxx000000AAAA", 7]}"#, &["queues"]).unwrap();
        assert_eq!(field_of(f.queues().unwrap_err()), "queues[1]");
        let mut f = fields(r#"{"queues":[]}"#, &["queues"]).unwrap();
        assert_eq!(field_of(f.queues().unwrap_err()), "queues");
        let mut f = fields(r#"{"backfill":"14d"}"#, &["backfill"]).unwrap();
        assert_eq!(field_of(f.backfill().unwrap_err()), "backfill");
        assert!(matches!(
            fields("[1]", &[]).err().unwrap(),
            ApiError::InvalidBody(_)
        ));
        assert!(matches!(
            fields("{", &[]).err().unwrap(),
            ApiError::InvalidBody(_)
        ));
    }

    #[test]
    fn queues_parse_to_a_scope() {
        let mut f = fields(r#"{"queues":"ALL"}"#, &["queues"]).unwrap();
        assert_eq!(f.queues().unwrap(), Some(QueueScope::All));
        let mut f = fields(
            r#"{"queues":["00Gxx000000BBBB","00Gxx000000AAAA","00Gxx000000BBBB"]}"#,
            &["queues"],
        )
        .unwrap();
        assert_eq!(f.queues().unwrap().unwrap().queue_ids().len(), 2);
    }

    #[test]
    fn oversized_bodies_are_refused() {
        let big = Body::Text(format!(
            "{{\"channel\":\"{}\"}}",
            "x".repeat(MAX_BODY_BYTES)
        ));
        assert!(matches!(
            Fields::parse(&big, &["channel"]),
            Err(ApiError::PayloadTooLarge { .. })
        ));
    }
}
