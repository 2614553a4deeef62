//! Lambda `oauth-callback`: wiring only; the handler is `casesync_oauth_callback::Callback`.

use casesync_aws::config::Env;
use casesync_aws::telemetry;
use casesync_oauth_callback::{Callback, Config, interactive_http};
use lambda_runtime::{Error, LambdaEvent, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    telemetry::init();
    // Every missing or invalid variable at once, in the log and in the exit error.
    let config = Config::from_env(Env::new())
        .inspect_err(|e| tracing::error!(error = %e, "cannot start"))?;
    let sdk = aws_config::load_from_env().await;
    let callback = Callback::from_aws(&config, &sdk, &interactive_http())
        .await
        .inspect_err(|e| tracing::error!(error = %e, "cannot start"))?;
    let callback = &callback;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<_>| async move {
        Ok::<_, Error>(callback.handle(event.payload).await)
    }))
    .await
}
