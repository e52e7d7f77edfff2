//! The Secrets whose data changed, from the cache's watches to the rotation controller: a set,
//! so a Secret that changes twice before the controller looks is one entry, and the memory
//! held is bounded by the number of Secrets whatever the controller's pace.

use std::collections::BTreeSet;
use std::sync::{Mutex, PoisonError};

use tokio::sync::Notify;

/// A Secret, by namespace and name.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SecretRef {
    pub namespace: String,
    pub name: String,
}

/// Changed Secrets not yet taken by the controller.
#[derive(Debug, Default)]
pub struct ChangedSecrets {
    pending: Mutex<BTreeSet<SecretRef>>,
    notify: Notify,
}

impl ChangedSecrets {
    /// Records that the data of `namespace/name` changed. Never blocks for long: the watches
    /// call it while applying an event.
    pub fn report(&self, namespace: &str, name: &str) {
        self.pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(SecretRef {
                namespace: namespace.to_owned(),
                name: name.to_owned(),
            });
        self.notify.notify_one();
    }

    /// Waits until at least one Secret changed, and takes every one reported so far.
    pub async fn next(&self) -> BTreeSet<SecretRef> {
        loop {
            let taken =
                std::mem::take(&mut *self.pending.lock().unwrap_or_else(PoisonError::into_inner));
            if !taken.is_empty() {
                return taken;
            }
            // A report between the take and this wait leaves a permit: nothing is missed.
            self.notify.notified().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn reports_before_the_wait_are_taken_once_and_coalesced() {
        let changed = ChangedSecrets::default();
        changed.report("shop", "orders-db");
        changed.report("shop", "orders-db");
        changed.report("billing", "ledger-db");
        let taken = changed.next().await;
        assert_eq!(taken.len(), 2);
        let waited =
            tokio::time::timeout(std::time::Duration::from_millis(50), changed.next()).await;
        assert!(waited.is_err(), "nothing new was reported");
    }
}
