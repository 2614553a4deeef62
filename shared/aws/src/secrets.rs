//! Refresh tokens in AWS Secrets Manager.

use async_trait::async_trait;
use aws_sdk_secretsmanager::Client;
use secrecy::{ExposeSecret, SecretString};

use casesync_core::domain::ConnectionId;
use casesync_core::ports::{SecretStore, StoreResult};

use crate::error::{code, store_error};

/// [`SecretStore`] on Secrets Manager: one secret per connection, named
/// `<prefix>/<connection id>`, whose `SecretString` is the refresh token.
///
/// Errors and logs name the secret, never its value.
#[derive(Debug, Clone)]
pub struct SecretsManagerStore {
    client: Client,
    prefix: String,
}

impl SecretsManagerStore {
    /// `prefix` is e.g. `casesync-prod/refresh-tokens` (no trailing `/`).
    pub fn new(client: Client, prefix: impl Into<String>) -> Self {
        Self {
            client,
            prefix: prefix.into().trim_end_matches('/').to_owned(),
        }
    }

    /// The secret name of a connection's refresh token.
    pub fn secret_name(&self, id: &ConnectionId) -> String {
        format!("{}/{}", self.prefix, id)
    }
}

const NOT_FOUND: &str = "ResourceNotFoundException";
const EXISTS: &str = "ResourceExistsException";

#[async_trait]
impl SecretStore for SecretsManagerStore {
    /// `None` when the secret does not exist.
    async fn get_refresh_token(&self, id: &ConnectionId) -> StoreResult<Option<SecretString>> {
        let name = self.secret_name(id);
        match self.client.get_secret_value().secret_id(&name).send().await {
            Ok(out) => Ok(out.secret_string.map(SecretString::from)),
            Err(e) if code(&e) == Some(NOT_FOUND) => Ok(None),
            Err(e) => Err(store_error(e, format_args!("read secret {name}"))),
        }
    }

    /// `PutSecretValue` (a new version of an existing secret), or `CreateSecret` the first time.
    async fn put_refresh_token(&self, id: &ConnectionId, token: &SecretString) -> StoreResult<()> {
        let name = self.secret_name(id);
        let put = || {
            self.client
                .put_secret_value()
                .secret_id(&name)
                .secret_string(token.expose_secret())
                .send()
        };
        match put().await {
            Ok(_) => return Ok(()),
            Err(e) if code(&e) == Some(NOT_FOUND) => {}
            Err(e) => return Err(store_error(e, format_args!("update secret {name}"))),
        }
        let created = self
            .client
            .create_secret()
            .name(&name)
            .description("casesync: Salesforce refresh token of one connection")
            .secret_string(token.expose_secret())
            .send()
            .await;
        match created {
            Ok(_) => Ok(()),
            // Created by someone else in between: ours becomes the current version.
            Err(e) if code(&e) == Some(EXISTS) => put()
                .await
                .map(drop)
                .map_err(|e| store_error(e, format_args!("update secret {name}"))),
            Err(e) => Err(store_error(e, format_args!("create secret {name}"))),
        }
    }

    /// Deletes at once (`ForceDeleteWithoutRecovery`); a missing secret is fine.
    async fn delete_refresh_token(&self, id: &ConnectionId) -> StoreResult<()> {
        let name = self.secret_name(id);
        let result = self
            .client
            .delete_secret()
            .secret_id(&name)
            .force_delete_without_recovery(true)
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(e) if code(&e) == Some(NOT_FOUND) => Ok(()),
            Err(e) => Err(store_error(e, format_args!("delete secret {name}"))),
        }
    }
}
