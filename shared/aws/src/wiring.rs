//! Wiring a Lambda function: the SDK clients built once from one `SdkConfig`, the adapters the
//! function asks for, its environment read once (every missing or invalid variable reported at
//! once), and the Connected App's client secret read once from Secrets Manager.
//!
//! ```no_run
//! # async fn demo(sdk: &aws_config::SdkConfig) -> Result<(), casesync_aws::StartupError> {
//! use casesync_aws::{Env, Wiring};
//! use casesync_core::salesforce::HttpSettings;
//!
//! let mut wiring = Wiring::new(sdk, Env::new());
//! let connections = wiring.connections(); // reads CONNECTIONS_TABLE
//! let queue = wiring.work_queue(); // reads WORK_QUEUE_URL
//! let salesforce = wiring.finish_with_salesforce(&HttpSettings::default()).await?;
//! # let _ = (connections, queue, salesforce);
//! # Ok(()) }
//! ```
//!
//! An adapter asked for before [`Wiring::finish`] is built with whatever the environment holds;
//! when a variable is missing, `finish` fails and the function does not start, so no adapter
//! with an empty name is ever used.

use std::sync::Arc;

use casesync_core::salesforce::{HttpSettings, OAuthApp, Salesforce, SalesforceError};
use secrecy::SecretString;

use crate::config::{
    AUTH_STATES_TABLE, CONNECTIONS_TABLE, ClientSecretError, ConfigError, DATA_POINTS_TABLE,
    DLQ_URL, EVENT_BUS_NAME, Env, SALESFORCE_CLIENT_ID, SALESFORCE_CLIENT_SECRET_ARN,
    SECRET_PREFIX, WORK_QUEUE_URL, read_client_secret,
};
use crate::{
    DynamoAuthStateStore, DynamoConnectionStore, DynamoDataPointStore, EventBridgePublisher,
    Metrics, SecretsManagerStore, SqsWorkQueue,
};

/// Why a function could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    ClientSecret(#[from] ClientSecretError),
    #[error("could not build the Salesforce HTTP client: {0}")]
    Salesforce(#[from] SalesforceError),
}

/// Builds one function's adapters from one `SdkConfig` and the environment.
pub struct Wiring {
    env: Env,
    dynamodb: aws_sdk_dynamodb::Client,
    secrets_manager: aws_sdk_secretsmanager::Client,
    sqs: aws_sdk_sqs::Client,
    eventbridge: aws_sdk_eventbridge::Client,
    metrics: Arc<Metrics>,
    /// Secrets to read at the finish: (variable, ARN).
    secrets_to_read: Vec<(&'static str, String)>,
}

/// What [`Wiring::finish_with_salesforce`] read from Secrets Manager.
pub struct Started {
    pub salesforce: Salesforce,
    secrets: Vec<(&'static str, SecretString)>,
}

impl Started {
    /// The value of a secret asked for with [`Wiring::secret`].
    pub fn secret(&mut self, var: &'static str) -> Option<SecretString> {
        let i = self.secrets.iter().position(|(v, _)| *v == var)?;
        Some(self.secrets.swap_remove(i).1)
    }
}

impl Wiring {
    pub fn new(sdk: &aws_config::SdkConfig, env: Env) -> Self {
        Self {
            env,
            dynamodb: aws_sdk_dynamodb::Client::new(sdk),
            secrets_manager: aws_sdk_secretsmanager::Client::new(sdk),
            sqs: aws_sdk_sqs::Client::new(sdk),
            eventbridge: aws_sdk_eventbridge::Client::new(sdk),
            metrics: Arc::new(Metrics::new()),
            secrets_to_read: Vec::new(),
        }
    }

    /// The secret whose ARN is in `var`, read once at the finish ([`Started::secret`]).
    pub fn secret(&mut self, var: &'static str) {
        let arn = self.env.required(var);
        self.secrets_to_read.push((var, arn));
    }

    /// Uses this DynamoDB client instead of the one built from the `SdkConfig` (a test routing
    /// DynamoDB through a fault injector).
    pub fn with_dynamodb(mut self, dynamodb: aws_sdk_dynamodb::Client) -> Self {
        self.dynamodb = dynamodb;
        self
    }

    /// The call counters every adapter built here shares.
    pub fn metrics(&self) -> Arc<Metrics> {
        self.metrics.clone()
    }

    /// The environment, for the function's own variables.
    pub fn env(&mut self) -> &mut Env {
        &mut self.env
    }

    /// `CONNECTIONS_TABLE`.
    pub fn connections(&mut self) -> Arc<DynamoConnectionStore> {
        let table = self.env.required(CONNECTIONS_TABLE);
        Arc::new(DynamoConnectionStore::new(self.dynamodb.clone(), &table))
    }

    /// `DATA_POINTS_TABLE`.
    pub fn data_points(&mut self) -> Arc<DynamoDataPointStore> {
        let table = self.env.required(DATA_POINTS_TABLE);
        Arc::new(
            DynamoDataPointStore::new(self.dynamodb.clone(), &table)
                .with_metrics(self.metrics.clone()),
        )
    }

    /// `AUTH_STATES_TABLE`.
    pub fn auth_states(&mut self) -> Arc<DynamoAuthStateStore> {
        let table = self.env.required(AUTH_STATES_TABLE);
        Arc::new(DynamoAuthStateStore::new(self.dynamodb.clone(), &table))
    }

    /// `SECRET_PREFIX`: refresh tokens live at `<prefix>/<connection id>`.
    pub fn secrets(&mut self) -> Arc<SecretsManagerStore> {
        let prefix = self.env.required(SECRET_PREFIX);
        Arc::new(SecretsManagerStore::new(
            self.secrets_manager.clone(),
            &prefix,
        ))
    }

    /// `WORK_QUEUE_URL`: the FIFO work queue, to send work items.
    pub fn work_queue(&mut self) -> Arc<SqsWorkQueue> {
        let url = self.env.required(WORK_QUEUE_URL);
        Arc::new(SqsWorkQueue::new(self.sqs.clone(), url).with_metrics(self.metrics.clone()))
    }

    /// `WORK_QUEUE_URL` and `DLQ_URL`: the work queue as its consumer uses it, able to move
    /// poison messages to the dead-letter queue and to delay redeliveries.
    pub fn consumed_work_queue(&mut self) -> Arc<SqsWorkQueue> {
        let url = self.env.required(WORK_QUEUE_URL);
        let dlq = self.env.required(DLQ_URL);
        Arc::new(
            SqsWorkQueue::new(self.sqs.clone(), url)
                .with_dead_letter_queue(dlq)
                .with_metrics(self.metrics.clone()),
        )
    }

    /// `EVENT_BUS_NAME`: where the data point change events go.
    pub fn event_bus(&mut self) -> EventBridgePublisher {
        let bus = self.env.required(EVENT_BUS_NAME);
        EventBridgePublisher::new(self.eventbridge.clone(), bus).with_metrics(self.metrics.clone())
    }

    /// Checks the environment: every missing or invalid variable at once.
    pub fn finish(self) -> Result<(), StartupError> {
        self.env.finish()?;
        Ok(())
    }

    /// Checks the environment, then reads the Connected App's client secret
    /// (`SALESFORCE_CLIENT_SECRET_ARN`) once and builds the process-wide Salesforce clients for
    /// `SALESFORCE_CLIENT_ID`.
    pub async fn finish_with_salesforce(
        self,
        http: &HttpSettings,
    ) -> Result<Salesforce, StartupError> {
        Ok(self.start_with_salesforce(http).await?.salesforce)
    }

    /// [`Wiring::finish_with_salesforce`], also reading the secrets asked for with
    /// [`Wiring::secret`].
    pub async fn start_with_salesforce(
        mut self,
        http: &HttpSettings,
    ) -> Result<Started, StartupError> {
        let client_id = self.env.required(SALESFORCE_CLIENT_ID);
        let client_secret_arn = self.env.required(SALESFORCE_CLIENT_SECRET_ARN);
        self.env.finish()?;
        let client_secret = read_client_secret(&self.secrets_manager, &client_secret_arn).await?;
        let mut secrets = Vec::with_capacity(self.secrets_to_read.len());
        for (var, arn) in &self.secrets_to_read {
            secrets.push((*var, read_client_secret(&self.secrets_manager, arn).await?));
        }
        Ok(Started {
            salesforce: Salesforce::new(
                OAuthApp {
                    client_id,
                    client_secret: Some(client_secret),
                },
                http,
            )?,
            secrets,
        })
    }
}
