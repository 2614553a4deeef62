//! The one HTTP client casesync uses for Salesforce, and how it retries.

use std::time::Duration;

use backon::ExponentialBuilder;

use super::error::SalesforceError;

#[derive(Debug, Clone)]
pub struct HttpSettings {
    pub connect_timeout: Duration,
    /// Whole-request timeout. Salesforce may take long on a large query page; past this the
    /// request is treated as a transport failure and retried.
    pub request_timeout: Duration,
    pub retry: RetryPolicy,
}

impl Default for HttpSettings {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(120),
            retry: RetryPolicy::default(),
        }
    }
}

impl HttpSettings {
    /// For a request a person is waiting on (an API call, a console page, an OAuth callback):
    /// short timeouts and few retries, all of it well behind API Gateway's 30-second limit.
    pub fn interactive() -> Self {
        Self {
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(10),
            retry: RetryPolicy {
                max_attempts: 3,
                min_delay: Duration::from_millis(200),
                max_delay: Duration::from_secs(2),
                max_total_delay: Duration::from_secs(4),
            },
        }
    }
}

/// Bounded, jittered exponential backoff for transient failures.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Attempts in all, the first included.
    pub max_attempts: u32,
    pub min_delay: Duration,
    pub max_delay: Duration,
    /// No new attempt starts once this much time has been spent sleeping.
    pub max_total_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 5,
            min_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(20),
            max_total_delay: Duration::from_secs(60),
        }
    }
}

impl RetryPolicy {
    /// Fast retries for tests: same number of attempts, millisecond delays.
    pub fn fast() -> Self {
        Self {
            max_attempts: 5,
            min_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(5),
            max_total_delay: Duration::from_secs(1),
        }
    }

    pub(crate) fn backoff(&self) -> ExponentialBuilder {
        ExponentialBuilder::default()
            .with_jitter()
            .with_factor(2.0)
            .with_min_delay(self.min_delay)
            .with_max_delay(self.max_delay)
            .with_max_times(self.max_attempts.saturating_sub(1) as usize)
            .with_total_delay(Some(self.max_total_delay))
    }
}

/// Builds the process-wide HTTP client: timeouts, gzip, no redirects (a redirect could carry
/// the bearer token to another host), a user agent naming casesync.
pub fn build_client(settings: &HttpSettings) -> Result<reqwest::Client, SalesforceError> {
    reqwest::Client::builder()
        .connect_timeout(settings.connect_timeout)
        .timeout(settings.request_timeout)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("casesync/", env!("CARGO_PKG_VERSION")))
        .gzip(true)
        .pool_idle_timeout(Duration::from_secs(60))
        .build()
        .map_err(|e| SalesforceError::Transport(error_chain(&e)))
}

/// A transport error in words, without the request URL (it can hold a whole SOQL statement)
/// and never with headers (they hold the token).
pub(crate) fn transport_error(e: reqwest::Error) -> SalesforceError {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "could not connect"
    } else if e.is_body() || e.is_decode() {
        "the response broke off"
    } else {
        "the request failed"
    };
    let path = e.url().map(|u| u.path().to_owned());
    let detail = error_chain(&e.without_url());
    SalesforceError::Transport(match path {
        Some(p) => format!("{kind} ({p}): {detail}"),
        None => format!("{kind}: {detail}"),
    })
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

/// A readable one-line summary of an error body that is not JSON (Salesforce's edge answers
/// 414, 431, 420 and 502 with HTML): tags stripped, whitespace collapsed, 200 characters at most.
pub(crate) fn summarize_body(body: &[u8]) -> String {
    let out = strip_tags(&body[..body.len().min(16 * 1024)], 200);
    if out.is_empty() {
        "(empty body)".to_owned()
    } else {
        out
    }
}

fn strip_tags(body: &[u8], max_chars: usize) -> String {
    let text = String::from_utf8_lossy(body);
    let mut out = String::new();
    let mut in_tag = false;
    let mut last_space = true;
    for c in text.chars() {
        match c {
            '<' => in_tag = true,
            '>' if in_tag => {
                in_tag = false;
                if !last_space {
                    out.push(' ');
                    last_space = true;
                }
            }
            _ if in_tag => {}
            c if c.is_whitespace() => {
                if !last_space {
                    out.push(' ');
                    last_space = true;
                }
            }
            c if c.is_control() => {}
            c => {
                out.push(c);
                last_space = false;
            }
        }
        if max_chars != usize::MAX && out.chars().count() >= max_chars {
            break;
        }
    }
    out.trim().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn html_bodies_become_one_readable_line() {
        assert_eq!(
            summarize_body(b"<h1>Bad Message 414</h1><pre>reason: URI Too Long</pre>"),
            "Bad Message 414 reason: URI Too Long"
        );
        assert_eq!(summarize_body(b""), "(empty body)");
        assert!(summarize_body(&[b'x'; 5000]).chars().count() <= 200);
    }
}
