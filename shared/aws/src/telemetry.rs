//! Logs for the Lambda functions: what `lambda_runtime::tracing::init_default_subscriber()`
//! sets up (JSON when `AWS_LAMBDA_LOG_FORMAT=JSON`, the level from `AWS_LAMBDA_LOG_LEVEL`, else
//! `RUST_LOG`, else INFO), with one difference: the runtime's TRACE line that prints every raw
//! event is never written. The callback's events hold the OAuth authorization code in their
//! query string, and API Gateway forwards the caller's `Authorization` (SigV4) and
//! `X-Amz-Security-Token` headers in the api's; the scheduler's and the worker's hold no secret,
//! but one rule for all four functions is one less thing to get wrong.

use tracing_subscriber::filter::{EnvFilter, LevelFilter};
use tracing_subscriber::fmt::MakeWriter;

/// Where `lambda_runtime` logs each raw invocation payload at TRACE.
pub const RAW_EVENT_TARGET: &str = "lambda_runtime::layers::api_response";

/// Installs the global subscriber, writing to stdout. Call it first thing in `main`.
pub fn init() {
    init_with_writer(std::io::stdout);
}

pub fn init_with_writer<W>(writer: W)
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let level = std::env::var("AWS_LAMBDA_LOG_LEVEL")
        .or_else(|_| std::env::var("RUST_LOG"))
        .ok();
    let directives = std::env::var("RUST_LOG").ok();
    let json = std::env::var("AWS_LAMBDA_LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("json"));
    let builder = tracing_subscriber::fmt()
        .with_target(false)
        .without_time()
        .with_env_filter(filter(level.as_deref(), directives.as_deref()))
        .with_writer(writer);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

/// The level (`TRACE`, `info`, ...; INFO when absent or unreadable) and `RUST_LOG`-style
/// directives (which, when present, replace the level, as in the runtime's default), with the
/// raw-event line of the runtime held at DEBUG whatever they say.
pub fn filter(level: Option<&str>, directives: Option<&str>) -> EnvFilter {
    let level = level
        .and_then(|l| l.parse::<LevelFilter>().ok())
        .unwrap_or(LevelFilter::INFO);
    EnvFilter::builder()
        .with_default_directive(level.into())
        .parse_lossy(directives.unwrap_or_default())
        .add_directive(
            format!("{RAW_EVENT_TARGET}=debug")
                .parse()
                .expect("a module path and a level form a directive"),
        )
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    use super::*;

    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl Write for Buffer {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn logged_with(level: &str, directives: Option<&str>) -> String {
        let buffer = Buffer::default();
        let writer = buffer.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_env_filter(filter(Some(level), directives))
            .with_writer(move || writer.clone())
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            tracing::trace!(target: "lambda_runtime::layers::api_response", body = "code=aPrxSECRET&x-amz-security-token=aPrxSECRET", "raw JSON event received from Lambda");
            tracing::trace!(target: "casesync_oauth_callback", "a trace line of ours");
        });
        let out = buffer.0.lock().unwrap().clone();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn the_raw_event_is_never_logged_even_at_trace() {
        for (level, directives) in [
            ("TRACE", None),
            ("info", Some("trace")),
            (
                "info",
                Some("info,lambda_runtime=trace,casesync_oauth_callback=trace"),
            ),
            (
                "info",
                Some("trace,lambda_runtime::layers::api_response=trace"),
            ),
        ] {
            let out = logged_with(level, directives);
            assert!(!out.contains("aPrxSECRET"), "{level} {directives:?}: {out}");
            assert!(
                out.contains("a trace line of ours"),
                "{level} {directives:?}: {out}"
            );
        }
    }

    #[test]
    fn the_level_applies_when_there_are_no_directives() {
        let out = logged_with("info", None);
        assert!(!out.contains("a trace line of ours"), "{out}");
    }
}
