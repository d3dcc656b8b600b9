//! Sandbox states, named exactly as Daytona names them (`shared/daytona-api.md` §2.2).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The observed state of a sandbox. Sandbar uses `creating`, `starting`, `started`,
/// `stopping`, `stopped`, `archived`, `destroying`, `destroyed` and `error`; the other Daytona
/// values exist so that filters naming them parse.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SandboxState {
    Creating,
    Restoring,
    Destroyed,
    Destroying,
    Started,
    Stopped,
    Starting,
    Stopping,
    Error,
    BuildFailed,
    PendingBuild,
    BuildingSnapshot,
    Unknown,
    PullingSnapshot,
    Archived,
    Archiving,
    Resizing,
    Snapshotting,
    Forking,
    Pausing,
    Paused,
    Resuming,
}

impl SandboxState {
    pub const ALL: [SandboxState; 22] = [
        Self::Creating,
        Self::Restoring,
        Self::Destroyed,
        Self::Destroying,
        Self::Started,
        Self::Stopped,
        Self::Starting,
        Self::Stopping,
        Self::Error,
        Self::BuildFailed,
        Self::PendingBuild,
        Self::BuildingSnapshot,
        Self::Unknown,
        Self::PullingSnapshot,
        Self::Archived,
        Self::Archiving,
        Self::Resizing,
        Self::Snapshotting,
        Self::Forking,
        Self::Pausing,
        Self::Paused,
        Self::Resuming,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Creating => "creating",
            Self::Restoring => "restoring",
            Self::Destroyed => "destroyed",
            Self::Destroying => "destroying",
            Self::Started => "started",
            Self::Stopped => "stopped",
            Self::Starting => "starting",
            Self::Stopping => "stopping",
            Self::Error => "error",
            Self::BuildFailed => "build_failed",
            Self::PendingBuild => "pending_build",
            Self::BuildingSnapshot => "building_snapshot",
            Self::Unknown => "unknown",
            Self::PullingSnapshot => "pulling_snapshot",
            Self::Archived => "archived",
            Self::Archiving => "archiving",
            Self::Resizing => "resizing",
            Self::Snapshotting => "snapshotting",
            Self::Forking => "forking",
            Self::Pausing => "pausing",
            Self::Paused => "paused",
            Self::Resuming => "resuming",
        }
    }

    /// True for the states an operation passes through; a sandbox found in one of them after
    /// a server restart was interrupted by the crash.
    pub fn is_transitional(self) -> bool {
        matches!(
            self,
            Self::Creating
                | Self::Starting
                | Self::Stopping
                | Self::Destroying
                | Self::Archiving
                | Self::Restoring
        )
    }
}

impl fmt::Display for SandboxState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown state {0:?}")]
pub struct StateParseError(pub String);

impl FromStr for SandboxState {
    type Err = StateParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|state| state.as_str() == s)
            .ok_or_else(|| StateParseError(s.to_owned()))
    }
}

/// The state the user asked for (`SandboxDesiredState`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DesiredState {
    Destroyed,
    Started,
    Stopped,
    Resized,
    Archived,
    Paused,
}

impl DesiredState {
    pub const ALL: [DesiredState; 6] = [
        Self::Destroyed,
        Self::Started,
        Self::Stopped,
        Self::Resized,
        Self::Archived,
        Self::Paused,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Destroyed => "destroyed",
            Self::Started => "started",
            Self::Stopped => "stopped",
            Self::Resized => "resized",
            Self::Archived => "archived",
            Self::Paused => "paused",
        }
    }
}

impl fmt::Display for DesiredState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for DesiredState {
    type Err = StateParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|state| state.as_str() == s)
            .ok_or_else(|| StateParseError(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_round_trip_through_strings_and_serde() {
        for state in SandboxState::ALL {
            assert_eq!(state.as_str().parse::<SandboxState>(), Ok(state));
            assert_eq!(
                serde_json::to_value(state).unwrap(),
                serde_json::json!(state.as_str())
            );
        }
        for state in DesiredState::ALL {
            assert_eq!(state.as_str().parse::<DesiredState>(), Ok(state));
            assert_eq!(
                serde_json::to_value(state).unwrap(),
                serde_json::json!(state.as_str())
            );
        }
        assert!("bogus".parse::<SandboxState>().is_err());
    }
}
