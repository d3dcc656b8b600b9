//! Per-sandbox activity (`lastActivityAt`), recorded on every API and toolbox call.
//!
//! Kept in memory and written to the store in batches (every few seconds and at shutdown):
//! activity is not a state change, and a synchronous fsync per toolbox call would be costly.
//! Readers merge the pending value with the stored one.

use std::collections::HashMap;
use std::sync::Mutex;

use chrono::{DateTime, Utc};
use sandbar_store::{SandboxChange, Store};
use tracing::warn;
use uuid::Uuid;

use crate::lifecycle::error_chain;

#[derive(Debug, Default)]
pub struct Activity {
    pending: Mutex<HashMap<Uuid, DateTime<Utc>>>,
}

impl Activity {
    pub fn touch(&self, id: Uuid) {
        let now = sandbar_core::time::now();
        let mut pending = self
            .pending
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        pending.insert(id, now);
    }

    /// The latest activity not yet written, if any.
    pub fn pending(&self, id: Uuid) -> Option<DateTime<Utc>> {
        let pending = self
            .pending
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        pending.get(&id).copied()
    }

    /// Writes pending activity to the store.
    pub async fn flush(&self, store: &Store) {
        let batch = {
            let mut pending = self
                .pending
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            std::mem::take(&mut *pending)
        };
        for (id, at) in batch {
            if let Err(err) = store.update_sandbox(id, SandboxChange::Activity(at)).await {
                warn!(sandbox = %id, error = %error_chain(&err), "failed to record activity");
            }
        }
    }
}
