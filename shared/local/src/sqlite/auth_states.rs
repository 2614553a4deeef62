//! Pending OAuth flows in the `auth_states` table: [`AuthStateStore`] of [`SqliteStore`].

use async_trait::async_trait;
use casesync_core::ports::*;
use chrono::TimeDelta;
use rusqlite::{OptionalExtension, TransactionBehavior, params};

use super::codec::{CorruptRow, json, json_error_position, timestamp};
use super::{SqliteStore, sql_error};

/// Pending flows this long past their expiry are removed when a new flow is stored.
const AUTH_STATE_RETENTION: TimeDelta = TimeDelta::days(1);

#[async_trait]
impl AuthStateStore for SqliteStore {
    /// Stores the flow (replacing one with the same state) and removes flows that expired more
    /// than a day before this one was created.
    async fn put_auth_state(&self, pending: &PendingAuthorization) -> StoreResult<()> {
        let state = pending.state.clone();
        let expires_at = timestamp(pending.expires_at);
        let prune_before = timestamp(pending.created_at - AUTH_STATE_RETENTION);
        let body = json("a pending authorization", pending)?;
        self.write(move |db, _| {
            let err = || sql_error("storing a pending authorization");
            let tx = db
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(err())?;
            tx.execute(
                "DELETE FROM auth_states WHERE expires_at < ?1",
                [prune_before],
            )
            .map_err(err())?;
            tx.execute(
                "INSERT OR REPLACE INTO auth_states (state, expires_at, body) VALUES (?1, ?2, ?3)",
                params![state, expires_at, body],
            )
            .map_err(err())?;
            tx.commit().map_err(err())
        })
        .await
    }

    /// Deletes and returns the flow in one statement: of two concurrent takes, one gets `None`.
    async fn take_auth_state(&self, state: &str) -> StoreResult<Option<PendingAuthorization>> {
        let state = state.to_owned();
        self.write(move |db, _| {
            let err = || sql_error("taking a pending authorization");
            let tx = db
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(err())?;
            let body: Option<String> = tx
                .query_row(
                    "DELETE FROM auth_states WHERE state = ?1 RETURNING body",
                    [&state],
                    |r| r.get(0),
                )
                .optional()
                .map_err(err())?;
            let Some(body) = body else {
                return Ok(None);
            };
            // The key is the secret `state` itself: the error names neither it nor the body.
            let pending = serde_json::from_str(&body).map_err(|e| CorruptRow {
                table: "auth_states",
                key: "[REDACTED]".into(),
                column: "body",
                reason: json_error_position(&e),
            })?;
            tx.commit().map_err(err())?;
            Ok(Some(pending))
        })
        .await
    }
}
