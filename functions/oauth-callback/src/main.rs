//! Lambda `oauth-callback`: wiring only; the handler is `casesync_oauth_callback::Callback`.

use casesync_aws::{Env, telemetry};
use casesync_oauth_callback::Callback;
use lambda_runtime::{Error, LambdaEvent, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    telemetry::init();
    let sdk = aws_config::load_from_env().await;
    // Every missing or invalid variable at once, in the log and in the exit error.
    let callback = Callback::from_env(&sdk, Env::new())
        .await
        .inspect_err(|e| tracing::error!(error = %e, "cannot start"))?;
    let callback = &callback;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<_>| async move {
        Ok::<_, Error>(callback.handle(event.payload).await)
    }))
    .await
}
