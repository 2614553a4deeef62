//! [`LocalQueue`]: the in-process work queue of the CLI's worker loop.

use std::collections::{HashSet, VecDeque};
use std::sync::{Mutex, MutexGuard, PoisonError};

use async_trait::async_trait;
use casesync_core::domain::ConnectionId;
use casesync_core::ports::{StoreResult, WorkItem, WorkQueue};
use tokio::sync::Notify;

#[derive(Default)]
struct Inner {
    items: VecDeque<WorkItem>,
    /// Connections with an item in `items`.
    queued: HashSet<ConnectionId>,
}

/// A FIFO of [`WorkItem`]s, at most one per connection.
///
/// `enqueue` (the `WorkQueue` port, used by the scheduler and by a worker that stopped with work
/// left) adds an item only for a connection that has none waiting: a tick for a connection that
/// is already queued adds nothing, whatever the kinds of both items, since either means "sync
/// this connection". Once an item is popped its connection may be queued again; two runs of one
/// connection are kept apart by the store's lease, not by the queue.
///
/// Shared between tasks by reference or `Arc`. Nothing is persisted: the queue lives and dies
/// with the process.
#[derive(Default)]
pub struct LocalQueue {
    inner: Mutex<Inner>,
    notify: Notify,
}

impl LocalQueue {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // The queue's invariants hold between statements, so a panicked holder left it usable.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Adds `item` unless its connection is already queued; `true` if it was added.
    pub fn push(&self, item: WorkItem) -> bool {
        let added = {
            let mut inner = self.lock();
            if inner.queued.insert(item.connection_id.clone()) {
                inner.items.push_back(item);
                true
            } else {
                false
            }
        };
        if added {
            self.notify.notify_one();
        }
        added
    }

    /// The oldest item, if any, without waiting.
    pub fn pop(&self) -> Option<WorkItem> {
        let mut inner = self.lock();
        let item = inner.items.pop_front()?;
        inner.queued.remove(&item.connection_id);
        Some(item)
    }

    /// The oldest item, waiting for one to be enqueued if the queue is empty.
    pub async fn next(&self) -> WorkItem {
        loop {
            let notified = self.notify.notified();
            if let Some(item) = self.pop() {
                return item;
            }
            notified.await;
        }
    }

    /// How many items wait.
    pub fn len(&self) -> usize {
        self.lock().items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.lock().items.is_empty()
    }

    /// Whether an item for `connection` waits.
    pub fn contains(&self, connection: &ConnectionId) -> bool {
        self.lock().queued.contains(connection)
    }

    /// Removes and returns every waiting item, oldest first.
    pub fn drain(&self) -> Vec<WorkItem> {
        let mut inner = self.lock();
        inner.queued.clear();
        inner.items.drain(..).collect()
    }
}

#[async_trait]
impl WorkQueue for LocalQueue {
    /// Adds each item whose connection is not queued yet (see [`LocalQueue`]). Never fails.
    async fn enqueue(&self, items: &[WorkItem]) -> StoreResult<()> {
        for item in items {
            self.push(item.clone());
        }
        Ok(())
    }
}

impl std::fmt::Debug for LocalQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalQueue")
            .field("len", &self.len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use casesync_core::ports::WorkKind;
    use chrono::{TimeZone, Utc};

    fn item(id: &ConnectionId, kind: WorkKind, minute: u32) -> WorkItem {
        WorkItem {
            connection_id: id.clone(),
            kind,
            enqueued_at: Utc.with_ymd_and_hms(2024, 3, 4, 17, minute, 0).unwrap(),
            idle_runs: 0,
            case_ids: Vec::new(),
        }
    }

    #[tokio::test]
    async fn items_come_out_in_the_order_they_went_in() {
        let q = LocalQueue::new();
        let ids: Vec<_> = (0..4).map(|_| ConnectionId::new_random()).collect();
        let items: Vec<_> = ids.iter().map(|id| item(id, WorkKind::Tick, 0)).collect();
        q.enqueue(&items).await.unwrap();
        assert_eq!(q.len(), 4);
        assert!(q.contains(&ids[2]));
        let popped: Vec<_> = std::iter::from_fn(|| q.pop()).collect();
        assert_eq!(popped, items);
        assert!(q.is_empty());
        assert_eq!(q.pop(), None);
    }

    #[tokio::test]
    async fn a_connection_already_waiting_is_not_queued_again() {
        let q = LocalQueue::new();
        let (a, b) = (ConnectionId::new_random(), ConnectionId::new_random());
        q.enqueue(&[item(&a, WorkKind::Tick, 0), item(&a, WorkKind::Tick, 1)])
            .await
            .unwrap();
        q.enqueue(&[
            item(&b, WorkKind::Tick, 2),
            item(&a, WorkKind::Continuation, 3),
        ])
        .await
        .unwrap();
        assert_eq!(q.len(), 2);
        // The first item for a connection is the one kept, in its place.
        assert_eq!(
            q.drain(),
            [item(&a, WorkKind::Tick, 0), item(&b, WorkKind::Tick, 2)]
        );
        assert!(q.is_empty() && !q.contains(&a));
    }

    #[tokio::test]
    async fn once_popped_a_connection_may_be_queued_again() {
        let q = LocalQueue::new();
        let a = ConnectionId::new_random();
        assert!(q.push(item(&a, WorkKind::Tick, 0)));
        assert!(!q.push(item(&a, WorkKind::Tick, 1)));
        assert_eq!(q.pop(), Some(item(&a, WorkKind::Tick, 0)));
        // The run stopped with work left: its continuation is queued.
        assert!(q.push(item(&a, WorkKind::Continuation, 2)));
        assert_eq!(q.pop(), Some(item(&a, WorkKind::Continuation, 2)));
    }

    #[tokio::test]
    async fn next_waits_for_an_item() {
        let q = std::sync::Arc::new(LocalQueue::new());
        let a = ConnectionId::new_random();
        let waiter = tokio::spawn({
            let q = q.clone();
            async move { q.next().await }
        });
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        q.enqueue(&[item(&a, WorkKind::Tick, 0)]).await.unwrap();
        let got = tokio::time::timeout(std::time::Duration::from_secs(5), waiter)
            .await
            .expect("next() woke up")
            .unwrap();
        assert_eq!(got, item(&a, WorkKind::Tick, 0));
        assert!(q.is_empty());
    }
}
