//! The read API: a channel's data points, for the consumers that group them into themes.
//!
//! | route | query | answer |
//! |---|---|---|
//! | `GET /channels` | | `200 {"channels": [{"name", "connections", "data_points"}]}` |
//! | `GET /channels/{channel}/data-points` | `limit` (1–1000, default 100), `cursor`, `changed_since` (RFC 3339), `connection` | `200 {"data_points": [data point], "omitted": [{"id", "connection_id", "case_id", "changed_at", "bytes", "href"}], "next_cursor"}` |
//! | `GET /data-points/{id}` | | `200` data point |
//!
//! * Each element of `data_points` is exactly the data point JSON `casesync export` prints (the
//!   bytes the store keeps), in the order the points last changed, then by id.
//! * `next_cursor` is always there: keep it and ask again later to receive every point created
//!   or updated since, including those written while you were paging. The read never comes
//!   closer to now than the store's visibility lag (a minute on DynamoDB), so no write still in
//!   flight can land behind a cursor already handed out. Cursors are opaque, signed, and
//!   continue only the query that issued them (same channel, `connection`, `changed_since`).
//! * A page is cut by size as well as by `limit`, so that it fits Lambda's 6 MB response with
//!   JSON escaping counted; a point is never truncated. A point too large for any page is
//!   listed in `omitted` (in its place, the cursor moving past it) with the path to fetch it
//!   whole: `GET /data-points/{id}`, which compresses it (gzip) when that is what it takes.
//! * Deleted data points are not in the list: consumers learn of deletes from the change events.
//!
//! Errors: `400 invalid_request` naming the parameter (`limit`, `cursor`, `changed_since`,
//! `connection`, an unknown parameter), `404 not_found` for an unknown channel or data point.

use std::io::Write;

use casesync_core::channel::{self, DEFAULT_PAGE_LIMIT, MAX_PAGE_LIMIT, PageCursor, PageRequest};
use casesync_core::domain::{ChannelName, ConnectionId};
use casesync_core::ports::StoredJson;
use chrono::{DateTime, Utc};
use lambda_http::http::{HeaderValue, StatusCode, header};
use lambda_http::{Body, Request, Response};
use serde::Serialize;
use serde_json::value::RawValue;

use crate::error::ApiError;
use crate::{Api, json};

/// What a synchronous Lambda response may weigh, the JSON envelope API Gateway reads included.
pub const LAMBDA_RESPONSE_LIMIT: u64 = 6 * 1024 * 1024;
/// What a page's points may cost, escaped (see `ChangeEntry::escaped_len`): the limit less room
/// for the envelope, the omitted list and headers.
pub const PAGE_BUDGET: u64 = 5 * 1024 * 1024;

type Answer = Result<Response<Body>, ApiError>;

#[derive(Serialize)]
struct ChannelView {
    name: String,
    connections: u64,
    data_points: u64,
}

#[derive(Serialize)]
struct ChannelList {
    channels: Vec<ChannelView>,
}

#[derive(Serialize)]
struct Omitted {
    id: String,
    connection_id: String,
    case_id: String,
    changed_at: DateTime<Utc>,
    /// The point's size as JSON, escaped.
    bytes: u64,
    href: String,
}

#[derive(Serialize)]
struct PageView<'a> {
    data_points: Vec<&'a RawValue>,
    omitted: Vec<Omitted>,
    next_cursor: String,
}

/// The query parameters of a request, each at most once; unknown ones refused by name.
struct Query(Vec<(String, String)>);

impl Query {
    fn parse(req: &Request, allowed: &[&str]) -> Result<Self, ApiError> {
        let raw = req.uri().query().unwrap_or("");
        let mut seen: Vec<(String, String)> = Vec::new();
        for (k, v) in url::form_urlencoded::parse(raw.as_bytes()) {
            if !allowed.contains(&k.as_ref()) {
                return Err(ApiError::invalid(
                    k.as_ref(),
                    format!(
                        "unknown parameter; the parameters are {}",
                        allowed.join(", ")
                    ),
                ));
            }
            if seen.iter().any(|(s, _)| s == k.as_ref()) {
                return Err(ApiError::invalid(k.as_ref(), "given more than once"));
            }
            seen.push((k.into_owned(), v.into_owned()));
        }
        Ok(Self(seen))
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.is_empty())
    }
}

fn limit(raw: Option<&str>) -> Result<usize, ApiError> {
    let Some(raw) = raw else {
        return Ok(DEFAULT_PAGE_LIMIT);
    };
    match raw.parse::<usize>() {
        Ok(n) if (1..=MAX_PAGE_LIMIT).contains(&n) => Ok(n),
        _ => Err(ApiError::invalid(
            "limit",
            format!("a whole number from 1 to {MAX_PAGE_LIMIT}"),
        )),
    }
}

fn changed_since(raw: Option<&str>, now: DateTime<Utc>) -> Result<Option<DateTime<Utc>>, ApiError> {
    let Some(raw) = raw else { return Ok(None) };
    let at = DateTime::parse_from_rfc3339(raw)
        .map_err(|_| {
            ApiError::invalid(
                "changed_since",
                "an RFC 3339 timestamp, e.g. 2024-03-04T17:00:00Z",
            )
        })?
        .with_timezone(&Utc);
    if at > now {
        return Err(ApiError::invalid("changed_since", "is in the future"));
    }
    Ok(Some(at))
}

/// A path segment as the client meant it (API Gateway passes it percent-encoded).
fn decoded(segment: &str) -> Result<String, ApiError> {
    percent_encoding::percent_decode_str(segment)
        .decode_utf8()
        .map(|s| s.into_owned())
        .map_err(|_| ApiError::NotFound("no such channel".into()))
}

/// Whether the client takes a gzip body.
fn accepts_gzip(req: &Request) -> bool {
    req.headers()
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|coding| {
            let mut parts = coding.trim().split(';');
            let name = parts.next().unwrap_or("").trim();
            let refused = parts.any(|p| p.trim().replace(' ', "") == "q=0");
            (name.eq_ignore_ascii_case("gzip") || name == "*") && !refused
        })
}

/// A JSON body: as text when it fits the response as a JSON string; gzip-compressed (sent as
/// base64) when the client takes gzip and the text would not fit, or is large enough to be
/// worth it; 413 when neither fits.
fn json_body(req: &Request, text: String, escaped_len: u64) -> Answer {
    const WORTH_COMPRESSING: u64 = 256 * 1024;
    let gzip = accepts_gzip(req);
    let fits_as_text = escaped_len + 64 * 1024 <= LAMBDA_RESPONSE_LIMIT;
    if !gzip || escaped_len < WORTH_COMPRESSING {
        if !fits_as_text {
            return Err(ApiError::TooLarge(
                "this data point is too large to send uncompressed: ask again with \
                 Accept-Encoding: gzip"
                    .into(),
            ));
        }
        return Ok(with_type(Response::new(Body::Text(text)), false));
    }
    let mut encoder = flate2::write::GzEncoder::new(
        Vec::with_capacity(text.len() / 4),
        flate2::Compression::best(),
    );
    encoder
        .write_all(text.as_bytes())
        .map_err(|e| ApiError::Internal(format!("compressing the answer: {e}")))?;
    let compressed = encoder
        .finish()
        .map_err(|e| ApiError::Internal(format!("compressing the answer: {e}")))?;
    // Lambda sends a binary body base64-encoded: 4 bytes for every 3.
    let on_the_wire = (compressed.len() as u64).div_ceil(3) * 4;
    if on_the_wire + 64 * 1024 > LAMBDA_RESPONSE_LIMIT {
        return Err(ApiError::TooLarge(format!(
            "this data point is {} bytes of JSON; even compressed it exceeds what one \
             response can carry",
            text.len()
        )));
    }
    Ok(with_type(Response::new(Body::Binary(compressed)), true))
}

fn with_type(mut response: Response<Body>, gzip: bool) -> Response<Body> {
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::VARY, HeaderValue::from_static("Accept-Encoding"));
    if gzip {
        headers.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    }
    response
}

fn raw(point: &StoredJson) -> Result<&RawValue, ApiError> {
    serde_json::from_str::<&RawValue>(&point.json)
        .map_err(|e| ApiError::Internal(format!("a stored data point is not JSON: {e}")))
}

impl Api {
    /// `GET /channels`
    pub(crate) async fn list_channels(&self, req: &Request) -> Answer {
        Query::parse(req, &[])?;
        let m = &self.manager;
        let channels = channel::channels(m.connections.as_ref(), m.data_points.as_ref()).await?;
        Ok(json(
            StatusCode::OK,
            &ChannelList {
                channels: channels
                    .into_iter()
                    .map(|c| ChannelView {
                        name: c.name.to_string(),
                        connections: c.connections,
                        data_points: c.data_points,
                    })
                    .collect(),
            },
        ))
    }

    /// `GET /channels/{channel}/data-points`
    pub(crate) async fn channel_data_points(&self, raw_channel: &str, req: &Request) -> Answer {
        let name = decoded(raw_channel)?;
        let channel = ChannelName::parse(&name)
            .map_err(|_| ApiError::NotFound(format!("no channel {name:?}")))?;
        let q = Query::parse(req, &["limit", "cursor", "changed_since", "connection"])?;
        let now = self.manager.clock.now();
        let limit = limit(q.get("limit"))?;
        let since = changed_since(q.get("changed_since"), now)?;
        let connection = q
            .get("connection")
            .map(ConnectionId::parse)
            .transpose()
            .map_err(|e| ApiError::invalid("connection", e))?;
        let cursor = q
            .get("cursor")
            .map(|raw| PageCursor::decode(raw, &self.cursor_key))
            .transpose()
            .map_err(|e| ApiError::invalid("cursor", e))?;
        if let Some(c) = &cursor {
            c.continues(&channel, connection.as_ref(), since)
                .map_err(|e| ApiError::invalid("cursor", e))?;
        }
        let (connection, since, after) = match cursor {
            Some(c) => (c.connection, c.since, c.after),
            None => (connection, since, None),
        };
        let page = channel::read_page(
            self.feed.as_ref(),
            &PageRequest {
                channel: channel.clone(),
                connection: connection.clone(),
                since,
                after: after.clone(),
                limit,
                budget: Some(PAGE_BUDGET),
            },
            now,
        )
        .await?;
        // An empty first page may mean the channel does not exist: only then is it looked up.
        if page.points.is_empty() && page.omitted.is_empty() && after.is_none() {
            let known = self
                .manager
                .connections
                .list_connections()
                .await?
                .iter()
                .any(|c| c.channel == channel);
            if !known {
                return Err(ApiError::NotFound(format!(
                    "no channel {name:?}: GET /channels lists them"
                )));
            }
        }
        let next_cursor = PageCursor {
            channel,
            connection,
            since,
            after: page.next.clone(),
        }
        .encode(&self.cursor_key);
        let view = PageView {
            data_points: page.points.iter().map(raw).collect::<Result<_, _>>()?,
            omitted: page
                .omitted
                .iter()
                .map(|e| Omitted {
                    id: e.position.id.clone(),
                    connection_id: e.connection_id.to_string(),
                    case_id: e.case_id.to_string(),
                    changed_at: e.position.changed_at,
                    bytes: e.escaped_len,
                    href: format!("/data-points/{}", e.position.id),
                })
                .collect(),
            next_cursor,
        };
        let text = serde_json::to_string(&view)
            .map_err(|e| ApiError::Internal(format!("encoding the page: {e}")))?;
        let escaped = casesync_core::data_point::escaped_len(text.as_bytes());
        json_body(req, text, escaped)
    }

    /// `GET /data-points/{id}`
    pub(crate) async fn data_point(&self, raw_id: &str, req: &Request) -> Answer {
        Query::parse(req, &[])?;
        let not_found = || ApiError::NotFound("no such data point".into());
        let id = uuid::Uuid::parse_str(raw_id)
            .map_err(|_| not_found())?
            .hyphenated()
            .to_string();
        let point = self.feed.by_id(&id).await?.ok_or_else(not_found)?;
        let escaped = point.entry.escaped_len;
        json_body(req, point.json, escaped)
    }
}
