//! Sync leases, on the connection's row: [`LeaseStore`] of [`SqliteStore`].

use async_trait::async_trait;
use casesync_core::domain::ConnectionId;
use casesync_core::ports::*;
use chrono::{DateTime, Utc};
use rusqlite::{OptionalExtension, TransactionBehavior, params};

use super::codec::{RowDecoder, timestamp};
use super::connections::not_found;
use super::{Lease, SqliteStore, sql_error};

#[async_trait]
impl LeaseStore for SqliteStore {
    /// Takes the lease when nobody holds it, `holder` already does, or the holder's lease has
    /// expired (`until <= now`). The lease lives on the connection's row: a connection that
    /// does not exist is `ConnectionNotFound`, as in every store.
    async fn try_acquire_lease(
        &self,
        id: &ConnectionId,
        holder: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> StoreResult<bool> {
        let id = id.clone();
        let holder = holder.to_owned();
        self.write(move |db, _| {
            let err = || sql_error(format!("taking the lease of connection {id}"));
            let tx = db
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(err())?;
            // One conditional update: fixed-width timestamps compare as text.
            let taken = tx
                .execute(
                    "UPDATE connections SET lease_holder = ?2, lease_until = ?3 WHERE id = ?1 \
                     AND (lease_holder IS NULL OR lease_until IS NULL OR lease_holder = ?2 \
                          OR lease_until <= ?4)",
                    params![id.as_str(), holder, timestamp(until), timestamp(now)],
                )
                .map_err(err())?;
            if taken == 1 {
                tx.commit().map_err(err())?;
                return Ok(true);
            }
            let exists = tx
                .query_row(
                    "SELECT 1 FROM connections WHERE id = ?1",
                    [id.as_str()],
                    |_| Ok(()),
                )
                .optional()
                .map_err(err())?
                .is_some();
            if exists {
                Ok(false)
            } else {
                Err(not_found(&id))
            }
        })
        .await
    }

    async fn release_lease(&self, id: &ConnectionId, holder: &str) -> StoreResult<()> {
        let id = id.clone();
        let holder = holder.to_owned();
        self.write(move |db, _| {
            let err = || sql_error(format!("releasing the lease of connection {id}"));
            let tx = db
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(err())?;
            tx.execute(
                "UPDATE connections SET lease_holder = NULL, lease_until = NULL \
                 WHERE id = ?1 AND lease_holder = ?2",
                params![id.as_str(), holder],
            )
            .map_err(err())?;
            tx.commit().map_err(err())
        })
        .await
    }
}

impl SqliteStore {
    /// The current lease of a connection, if someone took one (it may have expired).
    pub async fn lease(&self, id: &ConnectionId) -> StoreResult<Option<Lease>> {
        let id = id.clone();
        self.read(move |db| {
            let row: Option<(Option<String>, Option<String>)> = db
                .query_row(
                    "SELECT lease_holder, lease_until FROM connections WHERE id = ?1",
                    [id.as_str()],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()
                .map_err(sql_error(format!("reading the lease of connection {id}")))?;
            let d = RowDecoder {
                table: "connections",
                key: id.as_str(),
            };
            match row {
                Some((Some(holder), Some(until))) => Ok(Some(Lease {
                    holder,
                    until: d.timestamp("lease_until", &until)?,
                })),
                _ => Ok(None),
            }
        })
        .await
    }
}
