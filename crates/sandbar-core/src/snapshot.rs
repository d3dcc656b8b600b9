//! Snapshots: the root filesystem images sandboxes start from. The runtime provides them;
//! the store only keeps their names so the API can list and validate them.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The snapshot used when a create request names none.
pub const DEFAULT_SNAPSHOT: &str = "sandbar-default";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    pub id: Uuid,
    pub name: String,
    /// Image reference the snapshot was made from, when known (matched against a
    /// `FROM <image>` build request).
    pub image_name: Option<String>,
    pub created_at: DateTime<Utc>,
}
