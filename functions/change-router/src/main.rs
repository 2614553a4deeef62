//! The change-router Lambda: configuration and clients once, then one batch of relayed
//! Salesforce change events per invocation.

use casesync_aws::Env;
use casesync_change_router::Router;
use lambda_runtime::{Error, LambdaEvent, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    casesync_aws::telemetry::init();
    let sdk = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let router = &Router::from_env(&sdk, Env::new())
        .inspect_err(|e| tracing::error!(error = %e, "cannot start"))?;
    lambda_runtime::run(service_fn(
        move |event: LambdaEvent<aws_lambda_events::sqs::SqsEvent>| async move {
            Ok::<_, Error>(router.process(&event.payload.records).await)
        },
    ))
    .await
}
