//! The scheduler Lambda: configuration and AWS clients once, then one tick per schedule event.

use casesync_scheduler::{Scheduler, SchedulerConfig, handle};
use lambda_runtime::{Error, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    casesync_aws::telemetry::init();
    let config =
        SchedulerConfig::from_env().inspect_err(|e| tracing::error!(error = %e, "cannot start"))?;
    let sdk = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let scheduler = &Scheduler::from_sdk(&sdk, &config);
    lambda_runtime::run(service_fn(move |event| handle(scheduler, event))).await
}
