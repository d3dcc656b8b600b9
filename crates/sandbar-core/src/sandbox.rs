//! The sandbox record and the rules on its fields.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::state::{DesiredState, SandboxState};

/// Longest accepted sandbox name.
pub const MAX_NAME_LEN: usize = 255;
/// Default OS user of a sandbox (Daytona's).
pub const DEFAULT_USER: &str = "daytona";
/// Default auto-stop interval in minutes (Daytona's; 0 disables).
pub const DEFAULT_AUTO_STOP_MINUTES: i64 = 15;
/// Default auto-archive interval in minutes (7 days; 0 means the maximum).
pub const DEFAULT_AUTO_ARCHIVE_MINUTES: i64 = 7 * 24 * 60;
/// Default auto-delete interval in minutes (negative disables).
pub const DEFAULT_AUTO_DELETE_MINUTES: i64 = -1;

/// Identity of the running init of a sandbox, as the runtime reported it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LaunchedProcess {
    pub pid: i32,
    pub start_time: u64,
}

/// Resources in Daytona units: cores, GPUs, GiB of memory, GiB of disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SandboxResources {
    pub cpu: i64,
    pub gpu: i64,
    pub memory: i64,
    pub disk: i64,
}

impl Default for SandboxResources {
    fn default() -> Self {
        Self {
            cpu: 1,
            gpu: 0,
            memory: 1,
            disk: 3,
        }
    }
}

impl SandboxResources {
    pub fn validate(&self) -> Result<(), SandboxError> {
        for (field, value) in [
            ("cpu", self.cpu),
            ("memory", self.memory),
            ("disk", self.disk),
        ] {
            if value < 1 {
                return Err(SandboxError::InvalidResource { field, value });
            }
        }
        if self.gpu != 0 {
            return Err(SandboxError::GpuUnsupported);
        }
        Ok(())
    }
}

/// A volume mounted into a sandbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeMount {
    pub volume_id: Uuid,
    pub mount_path: String,
    pub subpath: Option<String>,
}

impl VolumeMount {
    /// Checks the mount path (absolute, no `..`) and the subpath (relative, no `..`).
    pub fn validate(mount_path: &str, subpath: Option<&str>) -> Result<(), SandboxError> {
        let bad_mount = !mount_path.starts_with('/')
            || mount_path == "/"
            || mount_path.split('/').any(|part| part == "..")
            || mount_path.contains('\0');
        if bad_mount {
            return Err(SandboxError::InvalidMountPath(mount_path.to_owned()));
        }
        if let Some(subpath) = subpath {
            let bad_sub = subpath.starts_with('/')
                || subpath.split('/').any(|part| part == ".." || part == ".")
                || subpath.contains('\0');
            if bad_sub {
                return Err(SandboxError::InvalidSubpath(subpath.to_owned()));
            }
        }
        Ok(())
    }
}

/// One sandbox, as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sandbox {
    pub id: Uuid,
    pub organization_id: Uuid,
    pub name: String,
    pub user: String,
    pub env: BTreeMap<String, String>,
    pub labels: BTreeMap<String, String>,
    pub public: bool,
    pub network_block_all: bool,
    pub network_allow_list: Option<String>,
    pub target: String,
    pub resources: SandboxResources,
    pub snapshot: String,
    pub state: SandboxState,
    pub desired_state: DesiredState,
    pub error_reason: Option<String>,
    /// Why the last state change happened when nobody asked for it (auto-stop, OOM kill,
    /// archive, host restart, ...); `None` after a change a user requested.
    pub state_reason: Option<String>,
    /// When the state last changed (the clock of auto-archive and auto-delete).
    pub state_changed_at: DateTime<Utc>,
    /// Minutes of inactivity before the sandbox is stopped; 0 disables.
    pub auto_stop_interval: i64,
    /// Minutes stopped before the sandbox is archived; 0 means the maximum.
    pub auto_archive_interval: i64,
    /// Minutes stopped before the sandbox is deleted; negative disables, 0 deletes on stop.
    pub auto_delete_interval: i64,
    pub volumes: Vec<VolumeMount>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub last_activity_at: DateTime<Utc>,
    /// Set while the sandbox's process tree runs (state `started`).
    pub launched: Option<LaunchedProcess>,
    /// Secret of the sandbox's preview URLs.
    pub preview_token: String,
}

impl Sandbox {
    /// Checks a user supplied name: not empty, at most [`MAX_NAME_LEN`] bytes, no control
    /// characters. Anything else (spaces, `/`) is allowed: the SDKs percent-encode names.
    pub fn validate_name(name: &str) -> Result<(), SandboxError> {
        if name.is_empty() || name.len() > MAX_NAME_LEN || name.chars().any(char::is_control) {
            return Err(SandboxError::InvalidName(name.to_owned()));
        }
        Ok(())
    }

    /// Checks a user name the agent will look up in the sandbox's `/etc/passwd`.
    pub fn validate_user(user: &str) -> Result<(), SandboxError> {
        let ok = !user.is_empty()
            && user.len() <= 32
            && user
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
        if ok {
            Ok(())
        } else {
            Err(SandboxError::InvalidUser(user.to_owned()))
        }
    }

    /// The hostname inside the sandbox: the name lowercased, reduced to `[a-z0-9-]`, at most 63
    /// bytes, never starting or ending with `-`; `sandbox` when nothing is left.
    pub fn hostname(&self) -> String {
        let mut host = String::with_capacity(self.name.len().min(63));
        for c in self.name.chars() {
            let c = c.to_ascii_lowercase();
            let c = if c.is_ascii_alphanumeric() { c } else { '-' };
            if c == '-' && (host.is_empty() || host.ends_with('-')) {
                continue;
            }
            host.push(c);
            if host.len() == 63 {
                break;
            }
        }
        while host.ends_with('-') {
            host.pop();
        }
        if host.is_empty() {
            host.push_str("sandbox");
        }
        host
    }

    /// True when an errored sandbox can be started again.
    pub fn recoverable(&self) -> bool {
        self.state == SandboxState::Error
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SandboxError {
    #[error(
        "invalid sandbox name {0:?}: it must be 1 to 255 characters without control characters"
    )]
    InvalidName(String),
    #[error("invalid user {0:?}")]
    InvalidUser(String),
    #[error("invalid {field} {value}: it must be a positive integer")]
    InvalidResource { field: &'static str, value: i64 },
    #[error("GPUs are not supported")]
    GpuUnsupported,
    #[error("invalid mount path {0:?}: it must be absolute, not / and without ..")]
    InvalidMountPath(String),
    #[error("invalid volume subpath {0:?}: it must be relative and without . or ..")]
    InvalidSubpath(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_name(name: &str) -> Sandbox {
        let now = crate::time::now();
        Sandbox {
            id: Uuid::new_v4(),
            organization_id: Uuid::new_v4(),
            name: name.into(),
            user: DEFAULT_USER.into(),
            env: BTreeMap::new(),
            labels: BTreeMap::new(),
            public: false,
            network_block_all: false,
            network_allow_list: None,
            target: "local".into(),
            resources: SandboxResources::default(),
            snapshot: "sandbar-default".into(),
            state: SandboxState::Creating,
            desired_state: DesiredState::Started,
            error_reason: None,
            state_reason: None,
            state_changed_at: now,
            auto_stop_interval: 15,
            auto_archive_interval: 0,
            auto_delete_interval: -1,
            volumes: vec![],
            created_at: now,
            updated_at: now,
            last_activity_at: now,
            launched: None,
            preview_token: String::new(),
        }
    }

    #[test]
    fn hostname_is_sanitised() {
        assert_eq!(with_name("My Sandbox/x").hostname(), "my-sandbox-x");
        assert_eq!(with_name("--").hostname(), "sandbox");
        assert_eq!(with_name(&"a".repeat(100)).hostname().len(), 63);
        assert_eq!(with_name("ünï").hostname(), "n");
    }

    #[test]
    fn names_users_and_mounts_are_checked() {
        assert!(Sandbox::validate_name("my sandbox/x").is_ok());
        assert!(Sandbox::validate_name("").is_err());
        assert!(Sandbox::validate_name("a\nb").is_err());
        assert!(Sandbox::validate_user("daytona").is_ok());
        assert!(Sandbox::validate_user("root;rm").is_err());
        assert!(VolumeMount::validate("/workspace", Some("a/b")).is_ok());
        assert!(VolumeMount::validate("workspace", None).is_err());
        assert!(VolumeMount::validate("/a/../b", None).is_err());
        assert!(VolumeMount::validate("/w", Some("../x")).is_err());
        assert!(VolumeMount::validate("/w", Some("/x")).is_err());
    }

    #[test]
    fn resources_are_checked() {
        assert!(SandboxResources::default().validate().is_ok());
        let zero_cpu = SandboxResources {
            cpu: 0,
            ..SandboxResources::default()
        };
        assert!(matches!(
            zero_cpu.validate(),
            Err(SandboxError::InvalidResource { field: "cpu", .. })
        ));
        let gpu = SandboxResources {
            gpu: 1,
            ..SandboxResources::default()
        };
        assert_eq!(gpu.validate(), Err(SandboxError::GpuUnsupported));
    }
}
