//! Runtime backends: how a sandbox's process tree is created, watched, stopped and destroyed.
//!
//! Owns: the [`SandboxRuntime`] trait the server drives, and the native Linux backend
//! ([`native::NativeRuntime`]) which prepares per-sandbox directories, cgroups and the default
//! snapshot, and launches each sandbox through the single-threaded `sandbar jail` helper.
//! Must not depend on the HTTP server or the state store: the server records what this crate
//! returns (the [`Launched`] identity) and hands it back after a restart.

use std::collections::BTreeMap;
use std::path::PathBuf;

use futures_util::future::BoxFuture;
use serde::{Deserialize, Serialize};

pub mod native;
pub mod volume;

pub use volume::{VolumeError, VolumeStorage};

/// Everything a backend needs to run one sandbox.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SandboxSpec {
    /// Sandbox id (UUID); names directories and cgroups.
    pub id: String,
    /// Hostname inside the sandbox (sanitised sandbox name).
    pub hostname: String,
    /// Snapshot (root filesystem image) name.
    pub snapshot: String,
    /// Default user for commands and file operations inside (`daytona` or `root`, or any user of
    /// the snapshot's `/etc/passwd`).
    pub user: String,
    /// Environment given to every process in the sandbox (in addition to the defaults).
    pub env: BTreeMap<String, String>,
    pub resources: Resources,
    /// Only loopback when true; otherwise outbound access through a user-space network stack.
    pub network_block_all: bool,
    /// Host directories (volumes) bind mounted into the sandbox.
    pub mounts: Vec<Mount>,
}

/// Resource limits. `cpu` in cores, `memory_mib` and `disk_gib` as named, `pids` processes.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub struct Resources {
    pub cpu: u32,
    pub memory_mib: u64,
    pub disk_gib: u32,
    pub pids: u32,
}

impl Default for Resources {
    fn default() -> Self {
        Self {
            cpu: 1,
            memory_mib: 1024,
            disk_gib: 3,
            pids: 1024,
        }
    }
}

/// A host directory mounted into the sandbox.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Mount {
    /// A volume's root directory ([`VolumeStorage::root`]).
    pub host_path: PathBuf,
    /// Directory inside `host_path` to mount instead of its root, resolved inside it (symlinks
    /// never lead out) and created, owned by the sandbox's default user, when missing.
    #[serde(default)]
    pub subpath: Option<String>,
    /// Absolute path inside the sandbox.
    pub target: String,
    pub read_only: bool,
}

/// Identity of a running sandbox's init (the agent), stable across server restarts.
/// `start_time` (clock ticks since boot, `/proc/<pid>/stat` field 22) guards against pid reuse.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub struct Launched {
    pub pid: i32,
    pub start_time: u64,
}

/// Why a sandbox's process tree ended, as far as the host can tell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExitInfo {
    /// The cgroup recorded an OOM kill during the sandbox's life.
    pub oom_killed: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("snapshot {0} not found")]
    SnapshotNotFound(String),
    #[error("failed to prepare sandbox directory {path}")]
    PrepareDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cgroup operation on {path} failed")]
    Cgroup {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("failed to spawn the jail helper")]
    SpawnJail(#[source] std::io::Error),
    #[error("sandbox setup failed: {0}")]
    Setup(String),
    #[error("failed to signal sandbox process {pid}")]
    Signal {
        pid: i32,
        #[source]
        source: std::io::Error,
    },
    #[error("failed to remove {path}")]
    Remove {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("volume storage failed")]
    Volume(#[source] VolumeError),
    #[error("failed to build snapshot {name}")]
    Snapshot {
        name: String,
        #[source]
        source: std::io::Error,
    },
    #[error("failed to {action} the writable layer of sandbox {id}")]
    Archive {
        action: &'static str,
        id: String,
        #[source]
        source: native::archive::ArchiveError,
    },
    #[error("the {0} operation is not supported by this runtime")]
    Unsupported(&'static str),
    #[error("cannot resize sandbox {id}: {reason}")]
    Resize { id: String, reason: String },
    #[error("background task of sandbox {id} failed")]
    Task {
        id: String,
        #[source]
        source: tokio::task::JoinError,
    },
}

/// What a sandbox uses now, for metrics. Zero where a backend cannot tell.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// CPU time used by the current (or last) run, in nanoseconds.
    pub cpu_ns: u64,
    /// Memory in use, in bytes (page cache included, as the cgroup counts it).
    pub memory_bytes: u64,
    /// Bytes the writable layer (or its archive) takes on disk.
    pub disk_bytes: u64,
}

/// A backend that runs sandboxes. The native backend is the default; others (Kubernetes,
/// microVMs) implement the same trait behind features.
#[async_trait::async_trait]
pub trait SandboxRuntime: Send + Sync + 'static {
    /// Starts the sandbox's process tree over its (possibly existing) writable layer.
    /// Creates the layer on first start. Returns once the agent's socket accepts connections.
    async fn start(&self, spec: &SandboxSpec) -> Result<Launched, RuntimeError>;

    /// Stops the process tree (SIGTERM to every process, SIGKILL after `grace` unless `force`),
    /// keeping the writable layer. Returns when no process of the sandbox remains.
    async fn stop(
        &self,
        id: &str,
        launched: Option<Launched>,
        force: bool,
    ) -> Result<(), RuntimeError>;

    /// Stops (if needed) and removes everything the sandbox owns on the host: processes,
    /// cgroups, directories. Idempotent: used for cleanup after a crash too.
    async fn destroy(&self, id: &str, launched: Option<Launched>) -> Result<(), RuntimeError>;

    /// True when `launched` still names the live init of sandbox `id`.
    fn is_alive(&self, launched: Launched) -> bool;

    /// Resolves when the sandbox's process tree has ended. Errors if it is not running.
    fn wait_exit(
        &self,
        id: &str,
        launched: Launched,
    ) -> Result<BoxFuture<'static, ExitInfo>, RuntimeError>;

    /// Path of the unix socket on which the sandbox's agent serves the toolbox API (HTTP/1.1).
    fn agent_socket(&self, id: &str) -> PathBuf;

    /// Ids of sandboxes that have state on the host (directories or cgroups), for orphan cleanup.
    fn list_host_sandboxes(&self) -> Vec<String>;

    /// How this backend stores volumes; `None`: the server keeps plain directories
    /// ([`volume::DirVolumes`]).
    fn volume_storage(&self) -> Option<std::sync::Arc<dyn VolumeStorage>> {
        None
    }

    /// Packs the writable layer of a stopped sandbox into a complete, durable archive and
    /// returns its size in bytes. The layer stays until [`SandboxRuntime::drop_layer`], so the
    /// caller can record the new state in between; [`SandboxRuntime::start`] restores an
    /// archived layer transparently.
    async fn archive(&self, id: &str) -> Result<u64, RuntimeError> {
        let _ = id;
        Err(RuntimeError::Unsupported("archive"))
    }

    /// Frees the disk space of an archived sandbox's layer. Fails unless a complete archive
    /// exists. Idempotent.
    async fn drop_layer(&self, id: &str) -> Result<(), RuntimeError> {
        let _ = id;
        Err(RuntimeError::Unsupported("archive"))
    }

    /// True when a complete archive of the sandbox's layer exists.
    fn is_archived(&self, id: &str) -> bool {
        let _ = id;
        false
    }

    /// Removes what an archive or restore interrupted by a crash left behind (temporary
    /// files); a complete archive and the layer are kept. Run at recovery.
    async fn settle_archive(&self, id: &str) -> Result<(), RuntimeError> {
        let _ = id;
        Ok(())
    }

    /// Applies new CPU, memory and process limits to a running sandbox, live. A stopped
    /// sandbox needs no call: [`SandboxRuntime::start`] applies the spec's limits. Disk is not
    /// part of it (no backend has a per-sandbox disk quota).
    async fn resize(&self, id: &str, resources: Resources) -> Result<(), RuntimeError> {
        let _ = (id, resources);
        Err(RuntimeError::Unsupported("resize"))
    }

    /// Current resource use of a sandbox.
    fn usage(&self, id: &str) -> Usage {
        let _ = id;
        Usage::default()
    }

    /// How many processes of the sandbox were killed for exceeding its memory limit since it
    /// started (its cgroup's OOM-kill counter).
    fn oom_kills(&self, id: &str) -> u64 {
        let _ = id;
        0
    }
}
