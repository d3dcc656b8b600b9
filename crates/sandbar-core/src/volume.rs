//! Volumes: named, organization-scoped directories mounted into sandboxes.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VolumeState {
    Creating,
    Ready,
    PendingCreate,
    PendingDelete,
    Deleting,
    Deleted,
    Error,
}

impl VolumeState {
    pub const ALL: [VolumeState; 7] = [
        Self::Creating,
        Self::Ready,
        Self::PendingCreate,
        Self::PendingDelete,
        Self::Deleting,
        Self::Deleted,
        Self::Error,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Creating => "creating",
            Self::Ready => "ready",
            Self::PendingCreate => "pending_create",
            Self::PendingDelete => "pending_delete",
            Self::Deleting => "deleting",
            Self::Deleted => "deleted",
            Self::Error => "error",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|state| state.as_str() == text)
    }
}

impl fmt::Display for VolumeState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Volume {
    pub id: Uuid,
    pub organization_id: Uuid,
    pub name: String,
    pub state: VolumeState,
    pub error_reason: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub last_used_at: Option<DateTime<Utc>>,
}

impl Volume {
    /// Checks a volume name: 1 to 255 bytes, no `/`, no control characters, not `.` or `..`.
    pub fn validate_name(name: &str) -> Result<(), VolumeError> {
        let bad = name.is_empty()
            || name.len() > 255
            || name == "."
            || name == ".."
            || name.contains('/')
            || name.chars().any(char::is_control);
        if bad {
            Err(VolumeError::InvalidName(name.to_owned()))
        } else {
            Ok(())
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VolumeError {
    #[error("invalid volume name {0:?}")]
    InvalidName(String),
    #[error("volume {name} is {state}, not ready")]
    NotReady { name: String, state: VolumeState },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn volume_names() {
        assert!(Volume::validate_name("seed-vol").is_ok());
        assert!(Volume::validate_name("a/b").is_err());
        assert!(Volume::validate_name("..").is_err());
        for state in VolumeState::ALL {
            assert_eq!(VolumeState::parse(state.as_str()), Some(state));
        }
    }
}
