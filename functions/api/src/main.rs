//! Lambda `api`: wiring only; the handler is `casesync_api::Api`.

use casesync_api::Api;
use casesync_aws::{Env, telemetry};
use lambda_http::{Error, Request, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    telemetry::init();
    let sdk = aws_config::load_from_env().await;
    // Every missing or invalid variable at once, in the log and in the exit error.
    let api = Api::from_env(&sdk, Env::new())
        .await
        .inspect_err(|e| tracing::error!(error = %e, "cannot start"))?;
    let api = &api;
    lambda_http::run(service_fn(move |req: Request| async move {
        Ok::<_, Error>(api.handle(req).await)
    }))
    .await
}
