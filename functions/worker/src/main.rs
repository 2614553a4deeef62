//! The worker Lambda: configuration, AWS clients and the Connected App's secret once, then one
//! SQS batch per invocation.

use casesync_aws::Env;
use casesync_worker::{Worker, handle};
use lambda_runtime::{Error, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    casesync_aws::telemetry::init();
    let sdk = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let worker = &Worker::from_env(&sdk, Env::new())
        .await
        .inspect_err(|e| tracing::error!(error = %e, "cannot start"))?;
    lambda_runtime::run(service_fn(move |event| handle(worker, event))).await
}
