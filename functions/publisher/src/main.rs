//! The publisher Lambda: configuration and the EventBridge client once, then one batch of the
//! data points table's stream records per invocation.

use casesync_aws::Env;
use casesync_publisher::{Publisher, handle};
use lambda_runtime::{Error, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    casesync_aws::telemetry::init();
    let sdk = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let publisher = &Publisher::from_env(&sdk, Env::new())
        .inspect_err(|e| tracing::error!(error = %e, "cannot start"))?;
    lambda_runtime::run(service_fn(move |event| handle(publisher, event))).await
}
