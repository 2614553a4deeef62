//! A connection's sync lease as a value: taken once, held while a run (or a delete) works on
//! the connection, given back by whoever holds it, even after the work was cancelled.

use std::sync::Arc;

use chrono::{DateTime, Utc};

use crate::domain::ConnectionId;
use crate::ports::{LeaseStore, StoreResult};

/// Proof that this process holds a connection's sync lease. Give it back with
/// [`SyncLease::release`]; one that is dropped instead expires by itself at its `until`.
pub struct SyncLease {
    id: ConnectionId,
    holder: String,
    leases: Arc<dyn LeaseStore>,
}

impl SyncLease {
    /// Takes the lease of `id` for `holder` until `until`; `None` when someone else holds an
    /// unexpired one.
    pub async fn acquire(
        leases: Arc<dyn LeaseStore>,
        id: &ConnectionId,
        holder: impl Into<String>,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> StoreResult<Option<Self>> {
        let holder = holder.into();
        if leases.try_acquire_lease(id, &holder, now, until).await? {
            Ok(Some(Self {
                id: id.clone(),
                holder,
                leases,
            }))
        } else {
            Ok(None)
        }
    }

    pub fn connection_id(&self) -> &ConnectionId {
        &self.id
    }

    pub fn holder(&self) -> &str {
        &self.holder
    }

    /// Gives the lease back. A failure is logged: the lease then expires by itself.
    pub async fn release(self) {
        if let Err(e) = self.leases.release_lease(&self.id, &self.holder).await {
            tracing::warn!(connection = %self.id, error = %e, "could not release the sync lease; it expires by itself");
        }
    }
}

impl std::fmt::Debug for SyncLease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SyncLease")
            .field("connection", &self.id)
            .field("holder", &self.holder)
            .finish_non_exhaustive()
    }
}
