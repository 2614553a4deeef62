//! What the browser gets back: a redirect to the app, or a small HTML page saying what went
//! wrong and what to do, with a link back to the app.
//!
//! Pages are never cached (`Cache-Control: no-store`) and send no `Referer` onwards
//! (`Referrer-Policy: no-referrer`): the callback URL holds the authorization code. The text is
//! HTML-escaped; only messages written for users are shown, never a store's or Salesforce's
//! internals.

use aws_lambda_events::apigw::ApiGatewayV2httpResponse;
use aws_lambda_events::encodings::Body;
use aws_lambda_events::http::{HeaderMap, HeaderValue, header};
use casesync_core::domain::ConnectionId;
use casesync_core::manage::connect::ConnectError;
use casesync_core::ports::StoreError;
use casesync_core::salesforce::SalesforceError;
use url::Url;

/// Messages longer than this (a provider's description, a long parameter name) are cut.
const MAX_MESSAGE_CHARS: usize = 600;

const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; style-src 'unsafe-inline'; \
     frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

/// An HTML page for a callback that did not connect anything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    pub status: u16,
    pub title: &'static str,
    /// Plain text; escaped when rendered.
    pub message: String,
    app_url: Url,
}

impl Page {
    pub fn new(
        status: u16,
        title: &'static str,
        message: impl Into<String>,
        app_url: &Url,
    ) -> Self {
        let mut message: String = message.into();
        if message.chars().count() > MAX_MESSAGE_CHARS {
            message = message.chars().take(MAX_MESSAGE_CHARS).collect::<String>() + "…";
        }
        Self {
            status,
            title,
            message,
            app_url: app_url.clone(),
        }
    }

    pub fn method_not_allowed(app_url: &Url) -> Self {
        Self::new(
            405,
            "Method not allowed",
            "This address only receives the browser's return from Salesforce (a GET request).",
            app_url,
        )
    }

    /// The page for each way completing the flow can fail, with its status code:
    ///
    /// | status | when |
    /// |---|---|
    /// | 400 | malformed query (repeated, oversized or control-character parameters), missing `state` or `code`, unknown or already used `state`, Salesforce refused the code |
    /// | 403 | the user declined (`access_denied`), the Connected App is not installed or approved (`OAUTH_APPROVAL_ERROR_GENERIC`) |
    /// | 410 | the flow expired (10 minutes), the connection to re-authorize was deleted meanwhile |
    /// | 500 | an unexpected store failure |
    /// | 502 | Salesforce reported another error, granted no refresh token, or could not be reached |
    /// | 503 | DynamoDB or Secrets Manager temporarily unavailable |
    pub fn for_error(e: &ConnectError, app_url: &Url) -> Self {
        let start_again = "Nothing was connected: go back to casesync and start connecting again.";
        let page = |status, title, message: String| Self::new(status, title, message, app_url);
        match e {
            ConnectError::MalformedCallback(_) | ConnectError::MissingParameter(_) => page(
                400,
                "This link is not valid",
                format!("{}. {start_again}", capitalized(&e.to_string())),
            ),
            ConnectError::UnknownState => page(
                400,
                "This link was already used",
                format!("{}.", capitalized(&e.to_string())),
            ),
            ConnectError::ExpiredState => page(
                410,
                "This link has expired",
                format!("{}.", capitalized(&e.to_string())),
            ),
            ConnectError::AccessDenied => page(
                403,
                "Access was declined",
                format!(
                    "{}. To connect, start again and choose Allow in Salesforce.",
                    capitalized(&e.to_string())
                ),
            ),
            ConnectError::AppNotApproved(_) => page(
                403,
                "casesync is not approved in this Salesforce org",
                format!("{}.", capitalized(&e.to_string())),
            ),
            ConnectError::Provider { .. } => page(
                502,
                "Salesforce could not authorize casesync",
                format!("{}. {start_again}", capitalized(&e.to_string())),
            ),
            ConnectError::NoRefreshToken => page(
                502,
                "Salesforce granted no refresh token",
                format!(
                    "{}. Nothing was connected.",
                    capitalized(&e.to_string())
                ),
            ),
            ConnectError::ConnectionGone | ConnectError::Store(StoreError::ConnectionNotFound(_)) => page(
                410,
                "This connection no longer exists",
                "The connection this authorization was for has been deleted. Start a new connection \
                 from casesync instead."
                    .to_owned(),
            ),
            ConnectError::Salesforce(se) if refused_the_code(se) => page(
                400,
                "Salesforce refused the authorization",
                format!(
                    "Salesforce did not accept the authorization code (it may have expired or \
                     already been used). {start_again}"
                ),
            ),
            ConnectError::Salesforce(_) => page(
                502,
                "Salesforce could not be reached",
                format!(
                    "casesync could not finish the authorization with Salesforce: it did not \
                     answer, or answered with an error. {start_again}"
                ),
            ),
            ConnectError::Store(StoreError::Unavailable(_)) => page(
                503,
                "casesync is temporarily unavailable",
                "casesync could not save the connection just now. The authorization was not \
                 completed: go back to casesync and start connecting again in a minute."
                    .to_owned(),
            ),
            ConnectError::Store(_) => page(
                500,
                "Something went wrong",
                "casesync could not save the connection. The authorization was not completed: \
                 go back to casesync and start again, and tell your administrator if it keeps \
                 happening."
                    .to_owned(),
            ),
        }
    }

    pub fn html(&self) -> String {
        format!(
            "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
             <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
             <meta name=\"robots\" content=\"noindex\">\
             <title>{title} · casesync</title>\
             <style>body{{font-family:system-ui,sans-serif;max-width:38rem;margin:4rem auto;\
             padding:0 1rem;line-height:1.5;color:#222}}a{{color:#0b5cad}}</style></head>\n\
             <body><h1>{title}</h1>\n<p>{message}</p>\n<p><a href=\"{href}\">Back to casesync</a></p>\
             </body></html>\n",
            title = escape(self.title),
            message = escape(&self.message),
            href = escape(self.app_url.as_str()),
        )
    }

    pub fn into_response(self) -> ApiGatewayV2httpResponse {
        let mut headers = private_headers();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/html; charset=utf-8"),
        );
        headers.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CONTENT_SECURITY_POLICY),
        );
        headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
        if self.status == 405 {
            headers.insert(header::ALLOW, HeaderValue::from_static("GET"));
        }
        response(self.status, headers, Some(self.html()))
    }
}

/// `302` to the app: `APP_URL` with `connection=<id>&status=connected|reauthorized` added to
/// whatever query it already has.
pub fn redirect(app_url: &Url, id: &ConnectionId, reauthorized: bool) -> ApiGatewayV2httpResponse {
    let mut location = app_url.clone();
    location
        .query_pairs_mut()
        .append_pair("connection", id.as_str())
        .append_pair(
            "status",
            if reauthorized {
                "reauthorized"
            } else {
                "connected"
            },
        );
    let mut headers = private_headers();
    match HeaderValue::from_str(location.as_str()) {
        Ok(v) => {
            headers.insert(header::LOCATION, v);
        }
        Err(_) => unreachable!("a serialised URL is visible ASCII, a valid header value"),
    }
    response(302, headers, None)
}

/// Headers every answer carries: never cached, no `Referer` to the next page.
fn private_headers() -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers
}

fn response(status: u16, headers: HeaderMap, body: Option<String>) -> ApiGatewayV2httpResponse {
    let mut r = ApiGatewayV2httpResponse::default();
    r.status_code = i64::from(status);
    r.headers = headers;
    r.body = body.map(Body::Text);
    r.is_base64_encoded = false;
    r
}

/// Salesforce looked at the code and said no (expired, used, wrong verifier or redirect URI),
/// as opposed to not answering properly.
fn refused_the_code(e: &SalesforceError) -> bool {
    match e.root() {
        SalesforceError::InvalidGrant { .. } => true,
        SalesforceError::OAuth { status, .. } => (400..500).contains(status) && !e.is_transient(),
        _ => false,
    }
}

fn capitalized(s: &str) -> String {
    let mut chars = s.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// Escapes text for HTML element content and quoted attribute values.
pub fn escape(s: &str) -> String {
    html_escape::encode_quoted_attribute(s).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app() -> Url {
        Url::parse("https://app.example.com/settings?tab=salesforce").unwrap()
    }

    #[test]
    fn text_is_escaped() {
        let page = Page::new(400, "Title", "<script>alert('x')</script> & \"q\"", &app());
        let html = page.html();
        assert!(!html.contains("<script>"), "{html}");
        assert!(
            html.contains("&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt; &amp; &quot;q&quot;")
        );
        assert!(html.contains("href=\"https://app.example.com/settings?tab=salesforce\""));
    }

    #[test]
    fn long_messages_are_cut() {
        let page = Page::new(400, "T", "x".repeat(5000), &app());
        assert!(page.message.chars().count() <= MAX_MESSAGE_CHARS + 1);
    }

    #[test]
    fn the_redirect_keeps_the_app_urls_query() {
        let id = ConnectionId::parse("conn_0123456789abcdef0123456789abcdef").unwrap();
        let r = redirect(&app(), &id, false);
        assert_eq!(r.status_code, 302);
        assert_eq!(
            r.headers[header::LOCATION],
            "https://app.example.com/settings?tab=salesforce&connection=conn_0123456789abcdef0123456789abcdef&status=connected"
        );
        assert_eq!(r.headers[header::CACHE_CONTROL], "no-store");
        assert_eq!(r.headers[header::REFERRER_POLICY], "no-referrer");
    }

    #[test]
    fn each_failure_has_its_status() {
        let cases: Vec<(ConnectError, u16)> = vec![
            (
                ConnectError::MalformedCallback("code appears twice".into()),
                400,
            ),
            (ConnectError::MissingParameter("state"), 400),
            (ConnectError::UnknownState, 400),
            (ConnectError::ExpiredState, 410),
            (ConnectError::AccessDenied, 403),
            (ConnectError::AppNotApproved("x".into()), 403),
            (ConnectError::NoRefreshToken, 502),
            (ConnectError::ConnectionGone, 410),
            (
                ConnectError::Salesforce(SalesforceError::InvalidGrant {
                    description: "expired authorization code".into(),
                }),
                400,
            ),
            (
                ConnectError::Salesforce(SalesforceError::Transport("timed out".into())),
                502,
            ),
            (
                ConnectError::Store(StoreError::Unavailable(anyhow::anyhow!("throttled"))),
                503,
            ),
            (
                ConnectError::Store(StoreError::Unexpected(anyhow::anyhow!(
                    "table casesync-prod-connections: AccessDeniedException"
                ))),
                500,
            ),
        ];
        for (e, status) in cases {
            let page = Page::for_error(&e, &app());
            assert_eq!(page.status, status, "{e}");
            assert!(!page.html().contains("AccessDeniedException"));
            assert!(!page.html().contains("throttled"));
        }
    }
}
