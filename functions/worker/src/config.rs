//! The worker's environment: the contract of [`casesync_aws::config`] plus `DLQ_URL`.

use casesync_aws::config::{
    CONNECTIONS_TABLE, ConfigError, DATA_POINTS_TABLE, Env, SALESFORCE_CLIENT_ID,
    SALESFORCE_CLIENT_SECRET_ARN, SECRET_PREFIX, WORK_QUEUE_URL,
};

/// The work queue's FIFO dead-letter queue: where the worker moves a message whose body can
/// never be processed (the redrive policy moves the ones that keep failing).
pub const DLQ_URL: &str = "DLQ_URL";

/// What the worker reads from its environment, once at start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerConfig {
    pub connections_table: String,
    pub data_points_table: String,
    pub work_queue_url: String,
    pub dlq_url: String,
    /// Refresh tokens live at `<prefix>/<connection id>`.
    pub secret_prefix: String,
    pub client_id: String,
    /// The secret holding the Connected App's consumer secret (read once at cold start).
    pub client_secret_arn: String,
}

impl WorkerConfig {
    /// Reads the process environment; every missing variable is reported at once.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::read(Env::new())
    }

    pub fn read(mut env: Env) -> Result<Self, ConfigError> {
        let config = Self {
            connections_table: env.required(CONNECTIONS_TABLE),
            data_points_table: env.required(DATA_POINTS_TABLE),
            work_queue_url: env.required(WORK_QUEUE_URL),
            dlq_url: env.required(DLQ_URL),
            secret_prefix: env.required(SECRET_PREFIX),
            client_id: env.required(SALESFORCE_CLIENT_ID),
            client_secret_arn: env.required(SALESFORCE_CLIENT_SECRET_ARN),
        };
        env.finish().map(|()| config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_missing_variable_is_reported_at_once() {
        let err = WorkerConfig::read(Env::from_fn(|name| {
            (name == WORK_QUEUE_URL).then(|| "https://sqs.example/q.fifo".to_owned())
        }))
        .unwrap_err();
        assert_eq!(
            err.missing,
            vec![
                CONNECTIONS_TABLE,
                DATA_POINTS_TABLE,
                DLQ_URL,
                SECRET_PREFIX,
                SALESFORCE_CLIENT_ID,
                SALESFORCE_CLIENT_SECRET_ARN
            ]
        );
    }
}
