//! The jail's input and output, exchanged with the runtime as JSON.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Everything the jail helper needs to start one sandbox. Paths are host paths unless noted.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JailConfig {
    pub hostname: String,
    /// First host uid/gid of the sandbox's range; uid 0 inside is `uid_base` outside.
    pub uid_base: u32,
    pub id_count: u32,
    /// Root filesystem: an overlay of `root` with, optionally, a second overlay at `/usr`.
    pub root: OverlayLayer,
    pub usr: Option<OverlayLayer>,
    /// Size limits (bytes) of the tmpfs at `/tmp` and `/dev/shm`. tmpfs pages are charged to
    /// the sandbox's memory cgroup: without a cap, filling `/tmp` would OOM-kill the sandbox
    /// instead of failing the write with ENOSPC.
    pub tmp_size: u64,
    pub shm_size: u64,
    /// Bind mounts applied inside the new root after the overlays (files or directories).
    pub binds: Vec<BindMount>,
    /// cgroup directories (one per v1 controller, or the single v2 directory) to join.
    pub cgroups: Vec<PathBuf>,
    /// cgroup directories for host-side helpers of the sandbox (slirp4netns): the hierarchy
    /// roots, so they are not accounted to, frozen or killed with the sandbox.
    pub host_cgroups: Vec<PathBuf>,
    /// cgroup hierarchies to show read-only at `/sys/fs/cgroup` inside (through the new cgroup
    /// namespace, the sandbox's own cgroup is their root), so programs can read their limits.
    pub cgroup_mounts: Vec<CgroupMount>,
    /// Where to create the agent's listening socket (host side, never visible inside).
    pub socket_path: PathBuf,
    /// The executable to run as PID 1 (this very binary), opened before pivot_root.
    pub agent_exe: PathBuf,
    pub agent_args: Vec<String>,
    pub agent_env: Vec<(String, String)>,
    /// Host file receiving the agent's own stdout and stderr (its log); stdin is /dev/null.
    pub log_path: PathBuf,
    pub network: NetworkConfig,
}

/// One overlay mount: a read-only lower directory (mounted idmapped into the sandbox's uid
/// range, `nosuid`), a per-sandbox upper and work directory, and the mount point.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OverlayLayer {
    pub lower: PathBuf,
    /// An empty directory where the idmapped view of `lower` is attached.
    pub lower_mount: PathBuf,
    pub upper: PathBuf,
    pub work: PathBuf,
    /// Root overlay: a host directory. `/usr` overlay: ignored (mounted at `<root>/usr`).
    pub target: PathBuf,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BindMount {
    /// Host path of the source; when `source_subpath` is set, the source is that path
    /// resolved *inside* `source` (never leaving it, whatever symlinks it contains).
    pub source: PathBuf,
    pub source_subpath: Option<String>,
    /// Absolute path inside the sandbox, resolved inside the new root.
    pub target: String,
    pub read_only: bool,
    /// Attach the source through the sandbox's id mapping, so files stored on disk with
    /// uid n appear as uid n inside (and the sandbox's writes are stored as n). Volumes and
    /// snapshot layers are stored this way, independent of any sandbox's host uid range.
    pub idmap: bool,
}

/// One cgroup hierarchy mounted read-only under `/sys/fs/cgroup`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CgroupMount {
    /// `cgroup` (v1) or `cgroup2`.
    pub fstype: String,
    /// v1: the controllers of the hierarchy (e.g. `cpu,cpuacct`); v2: empty.
    pub options: String,
    /// Directory under `/sys/fs/cgroup` (empty: `/sys/fs/cgroup` itself).
    pub name: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct NetworkConfig {
    /// Loopback only.
    pub block_all: bool,
    /// Path of slirp4netns for outbound access (ignored when `block_all`).
    pub slirp4netns: Option<PathBuf>,
}

/// What the jail prints on success.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct JailResult {
    pub pid: i32,
    pub start_time: u64,
}
