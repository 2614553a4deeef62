//! Lambda `console`: wiring only; the pages are `casesync_console`, the sign-in
//! `casesync_console_fn::session`.

use casesync_aws::{Env, telemetry};
use casesync_console_fn::ConsoleFn;
use lambda_http::Error;

#[tokio::main]
async fn main() -> Result<(), Error> {
    telemetry::init();
    let sdk = aws_config::load_from_env().await;
    // Every missing or invalid variable at once, in the log and in the exit error.
    let console = ConsoleFn::from_env(&sdk, Env::new())
        .await
        .inspect_err(|e| tracing::error!(error = %e, "cannot start"))?;
    lambda_http::run(console.router()).await
}
