//! Response helpers shared by both hosts.

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{
    ACCEPT_ENCODING, CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_TYPE, HeaderMap, HeaderValue, VARY,
};
use hyper::{Response, StatusCode};
use serde::Serialize;

pub type Resp = Response<Full<Bytes>>;

/// Returned by a handler to make hyper drop the connection without any response.
#[derive(Debug)]
pub struct Reset;

impl std::fmt::Display for Reset {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("simulated connection reset")
    }
}

impl std::error::Error for Reset {}

pub fn body(status: StatusCode, content_type: &'static str, body: impl Into<Bytes>) -> Resp {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    if !content_type.is_empty() {
        r.headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    }
    r
}

/// Whether an `Accept-Encoding` header admits gzip: `gzip`, `x-gzip` or `*`, unless its
/// q-value is 0.
pub fn accepts_gzip(headers: &HeaderMap) -> bool {
    headers
        .get_all(ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|item| {
            let mut parts = item.split(';');
            let coding = parts.next().unwrap_or_default().trim();
            let refused = parts.any(|p| {
                p.trim()
                    .strip_prefix("q=")
                    .and_then(|q| q.trim().parse::<f32>().ok())
                    .is_some_and(|q| q <= 0.0)
            });
            ["gzip", "x-gzip", "*"]
                .iter()
                .any(|c| coding.eq_ignore_ascii_case(c))
                && !refused
        })
}

/// `resp` with its body gzip-compressed (at the fastest level: the simulator shares its machine
/// with the client it serves), or unchanged when it has no body.
pub async fn gzip(resp: Resp) -> Resp {
    use http_body_util::BodyExt;
    use std::io::Write;
    let (mut parts, body) = resp.into_parts();
    let Ok(collected) = body.collect().await;
    let bytes = collected.to_bytes();
    if bytes.is_empty() {
        return Response::from_parts(parts, Full::new(bytes));
    }
    let mut encoder = flate2::write::GzEncoder::new(
        Vec::with_capacity(bytes.len() / 4),
        flate2::Compression::fast(),
    );
    let compressed = encoder.write_all(&bytes).and_then(|()| encoder.finish());
    match compressed {
        Ok(gz) => {
            parts
                .headers
                .insert(CONTENT_ENCODING, HeaderValue::from_static("gzip"));
            parts
                .headers
                .insert(VARY, HeaderValue::from_static("Accept-Encoding"));
            parts.headers.remove(CONTENT_LENGTH);
            Response::from_parts(parts, Full::new(Bytes::from(gz)))
        }
        // Writing into memory does not fail; if it did, the answer goes out as it was.
        Err(_) => Response::from_parts(parts, Full::new(bytes)),
    }
}

pub fn json(status: StatusCode, value: &impl Serialize) -> Resp {
    match serde_json::to_vec(value) {
        Ok(v) => body(status, "application/json;charset=UTF-8", v),
        Err(e) => body(
            StatusCode::INTERNAL_SERVER_ERROR,
            "text/plain",
            format!("simulator failed to serialise: {e}"),
        ),
    }
}

/// A REST error: a JSON array `[{"message": ..., "errorCode": ...}]`.
pub fn sf_error(status: StatusCode, code: &str, message: &str) -> Resp {
    // A struct, not `json!`, to keep Salesforce's key order: message, then errorCode.
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct SfError<'a> {
        message: &'a str,
        error_code: &'a str,
    }
    json(
        status,
        &[SfError {
            message,
            error_code: code,
        }],
    )
}

/// An OAuth error: a JSON object `{"error": ..., "error_description": ...}`.
pub fn oauth_error(status: StatusCode, error: &str, description: &str) -> Resp {
    json(
        status,
        &serde_json::json!({ "error": error, "error_description": description }),
    )
}

pub fn html(status: StatusCode, html: impl Into<Bytes>) -> Resp {
    body(status, "text/html;charset=UTF-8", html)
}

pub fn not_found() -> Resp {
    sf_error(
        StatusCode::NOT_FOUND,
        "NOT_FOUND",
        "The requested resource does not exist",
    )
}

/// Percent-encodes everything but RFC 3986 unreserved characters (spaces become `%20`).
pub fn pct(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Form-decodes a query string or body (`+` is a space, like Salesforce).
pub fn form(s: &[u8]) -> Vec<(String, String)> {
    url::form_urlencoded::parse(s).into_owned().collect()
}

pub fn param<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// The edge's size limits: URI over 16,384 bytes → 414, URI + headers over it → 431.
pub fn size_guard<B>(req: &hyper::Request<B>) -> Option<Resp> {
    const LIMIT: usize = 16_384;
    let uri_len = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str().len())
        .unwrap_or(0);
    if uri_len > LIMIT {
        return Some(html(
            StatusCode::URI_TOO_LONG,
            "<h1>Bad Message 414</h1><pre>reason: URI Too Long</pre>",
        ));
    }
    let headers_len: usize = req
        .headers()
        .iter()
        .map(|(k, v)| k.as_str().len() + v.len() + 4)
        .sum();
    if uri_len + headers_len > LIMIT {
        return Some(html(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "<h1>Bad Message 431</h1><pre>reason: Request Header Fields Too Large</pre>",
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pct_encodes_like_salesforce_redirects() {
        assert_eq!(
            pct("end-user denied authorization"),
            "end-user%20denied%20authorization"
        );
        assert_eq!(pct("a+b=c/d"), "a%2Bb%3Dc%2Fd");
    }
}
