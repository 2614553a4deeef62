//! Pending OAuth flows in the `auth_states` table.

use anyhow::anyhow;
use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::ReturnValue;

use casesync_core::ports::{AuthStateStore, PendingAuthorization, StoreError, StoreResult};

use crate::error::{corrupt, store_error};
use crate::item::{Attrs, Item, n, s};

const STATE: &str = "state";
const PENDING: &str = "pending";
const EXPIRES_AT: &str = "expires_at";

/// The `auth_states` table: [`AuthStateStore`].
///
/// Item: `state` (partition key), `pending` (the [`PendingAuthorization`] as JSON, PKCE
/// verifier included: this table is its store) and `expires_at` (epoch seconds, the table's TTL
/// attribute, so DynamoDB drops abandoned flows by itself; TTL deletion lags, which is why
/// checking expiry stays the caller's job).
#[derive(Debug, Clone)]
pub struct DynamoAuthStateStore {
    client: Client,
    table: String,
}

impl DynamoAuthStateStore {
    /// `table` is the `auth_states` table's name (see [`crate::TableNames`]).
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }

    pub fn table(&self) -> &str {
        &self.table
    }
}

#[async_trait]
impl AuthStateStore for DynamoAuthStateStore {
    async fn put_auth_state(&self, pending: &PendingAuthorization) -> StoreResult<()> {
        // serde_json cannot fail on this type; the error says nothing of its content anyway.
        let json = serde_json::to_string(pending)
            .map_err(|_| StoreError::Unexpected(anyhow!("encode pending authorization")))?;
        let item = Item::from([
            (STATE.to_owned(), s(&pending.state)),
            (PENDING.to_owned(), s(json)),
            (EXPIRES_AT.to_owned(), n(pending.expires_at.timestamp())),
        ]);
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .send()
            .await
            .map_err(|e| store_error(e, "store pending authorization"))?;
        Ok(())
    }

    /// One `DeleteItem` with `ReturnValues: ALL_OLD`: DynamoDB returns the item only to the one
    /// call that deleted it, so of two racing callbacks exactly one gets the flow.
    async fn take_auth_state(&self, state: &str) -> StoreResult<Option<PendingAuthorization>> {
        let out = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key(STATE, s(state))
            .return_values(ReturnValue::AllOld)
            .send()
            .await
            .map_err(|e| store_error(e, "take pending authorization"))?;
        let Some(item) = out.attributes.filter(|a| !a.is_empty()) else {
            return Ok(None);
        };
        let json = Attrs::new(&item, "pending authorization").s(PENDING)?;
        // serde's message could quote a field's value, and the verifier is one: report only where.
        serde_json::from_str(json).map(Some).map_err(|e| {
            corrupt(
                "pending authorization",
                format_args!(
                    "not a pending authorization ({:?} error at line {} column {})",
                    e.classify(),
                    e.line(),
                    e.column()
                ),
            )
        })
    }
}
