//! Native Linux backend: each sandbox is a process tree in its own namespaces, started by the
//! `sandbar jail` helper (a fresh single-threaded process, so nothing forks from the server's
//! threads), limited by cgroups, over an overlay of a read-only snapshot.
//!
//! Host layout under the data directory:
//! - `snapshots/<name>/rootfs` — read-only images ([`snapshot`]);
//! - `sandboxes/<id>/` — `upper*`/`work*` (the writable layer), mount points, generated
//!   `etc/` files, `agent.sock` (the agent's socket) and `agent.log`; `layer.tar.zst` instead
//!   of `upper*` while archived ([`archive`]);
//! - cgroups `sandbar/<id>` in each hierarchy ([`cgroup`]);
//! - `volumes/<id>/` — each volume's ext4 image and its host mount point ([`volume`]).
//!
//! Mounts live only in each sandbox's own mount namespace: they vanish with its processes.

pub mod archive;
pub mod cgroup;
mod pidfd;
pub mod reaper;
pub mod snapshot;
pub mod volume;

use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use futures_util::FutureExt;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use sandbar_jail::config::NetworkConfig;
use sandbar_jail::{BindMount, JailConfig, JailResult, OverlayLayer};

use self::cgroup::Cgroups;
use self::pidfd::PidFd;
use self::reaper::Reaper;
use self::snapshot::SnapshotStore;
use self::volume::LoopVolumes;
use crate::{ExitInfo, Launched, Resources, RuntimeError, SandboxRuntime, SandboxSpec, Usage};

/// First host uid of the first sandbox's range; ranges are 65536 ids wide.
const UID_FIRST: u32 = 1 << 20;
const ID_COUNT: u32 = 65536;
const MAX_SLOTS: u32 = 60_000;

#[derive(Debug, Clone)]
pub struct NativeConfig {
    pub data_dir: PathBuf,
    /// The `sandbar` executable (jail helper and agent).
    pub exe: PathBuf,
    /// slirp4netns for outbound network access; `None`: sandboxes get loopback only.
    pub slirp4netns: Option<PathBuf>,
    /// How long `stop` waits after SIGTERM before SIGKILL.
    pub stop_grace: Duration,
    /// Size limit of a volume whose create request names none.
    pub volume_size: u64,
}

impl NativeConfig {
    pub fn new(data_dir: PathBuf, exe: PathBuf) -> Self {
        let slirp4netns = ["/usr/bin/slirp4netns", "/usr/local/bin/slirp4netns"]
            .iter()
            .map(PathBuf::from)
            .find(|p| p.exists());
        Self {
            data_dir,
            exe,
            slirp4netns,
            stop_grace: Duration::from_secs(5),
            volume_size: volume::DEFAULT_VOLUME_SIZE,
        }
    }
}

pub struct NativeRuntime {
    config: NativeConfig,
    sandboxes: PathBuf,
    sandboxes_dir: std::fs::File,
    cgroups: Cgroups,
    /// The hierarchies shown read-only inside sandboxes (computed once).
    cgroup_mounts: Vec<sandbar_jail::CgroupMount>,
    snapshots: SnapshotStore,
    reaper: Arc<Reaper>,
    volumes: Arc<LoopVolumes>,
    /// Serialises uid range allocation.
    slots: tokio::sync::Mutex<()>,
}

fn dir_err(path: &Path) -> impl FnOnce(std::io::Error) -> RuntimeError + '_ {
    move |source| RuntimeError::PrepareDir {
        path: path.to_path_buf(),
        source,
    }
}

impl NativeRuntime {
    /// Prepares the data directory, detects cgroups, builds the default snapshot if needed and
    /// becomes the reaper of orphaned sandbox processes. Must run inside a tokio runtime.
    pub fn new(config: NativeConfig) -> Result<Self, RuntimeError> {
        let sandboxes = config.data_dir.join("sandboxes");
        for dir in [&config.data_dir, &sandboxes] {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(dir_err(dir))?;
        }
        // Kept open so that socket paths too long for `sun_path` can be reached through
        // `/proc/self/fd/<n>/…` (see `agent_socket`).
        let sandboxes_dir = std::fs::File::open(&sandboxes).map_err(dir_err(&sandboxes))?;
        let snapshots = SnapshotStore::new(config.data_dir.join("snapshots"));
        snapshots.ensure_default()?;
        let cgroups = Cgroups::detect()?;
        let reaper = Reaper::start().map_err(RuntimeError::SpawnJail)?;
        let volumes = LoopVolumes::new(
            config.data_dir.join("volumes"),
            config.volume_size,
            reaper.clone(),
        )
        .map_err(RuntimeError::Volume)?;
        if config.slirp4netns.is_none() {
            tracing::warn!("slirp4netns not found: sandboxes get loopback only");
        }
        Ok(Self {
            config,
            sandboxes,
            sandboxes_dir,
            cgroup_mounts: cgroups.sandbox_mounts(),
            cgroups,
            snapshots,
            reaper,
            volumes: Arc::new(volumes),
            slots: tokio::sync::Mutex::new(()),
        })
    }

    pub fn snapshots(&self) -> &SnapshotStore {
        &self.snapshots
    }

    pub fn cgroups(&self) -> &Cgroups {
        &self.cgroups
    }

    fn sandbox_dir(&self, id: &str) -> PathBuf {
        self.sandboxes.join(id)
    }

    /// The sandbox's host uid base: read back, or allocated on first start.
    async fn uid_base(&self, dir: &Path) -> Result<u32, RuntimeError> {
        let file = dir.join("uid_base");
        if let Ok(s) = std::fs::read_to_string(&file) {
            if let Ok(base) = s.trim().parse() {
                return Ok(base);
            }
        }
        let _guard = self.slots.lock().await;
        let used: std::collections::HashSet<u32> = std::fs::read_dir(&self.sandboxes)
            .map_err(dir_err(&self.sandboxes))?
            .filter_map(|e| e.ok())
            .filter_map(|e| std::fs::read_to_string(e.path().join("uid_base")).ok())
            .filter_map(|s| s.trim().parse().ok())
            .collect();
        let base = (0..MAX_SLOTS)
            .map(|slot| UID_FIRST + slot * ID_COUNT)
            .find(|b| !used.contains(b))
            .ok_or_else(|| RuntimeError::Setup("no free uid range left".into()))?;
        let tmp = dir.join("uid_base.tmp");
        std::fs::write(&tmp, base.to_string()).map_err(dir_err(&tmp))?;
        std::fs::rename(&tmp, &file).map_err(dir_err(&file))?;
        Ok(base)
    }

    /// Creates the sandbox's directories (idempotent) and returns its uid base.
    async fn prepare(
        &self,
        spec: &SandboxSpec,
        host_usr: bool,
        network: bool,
    ) -> Result<u32, RuntimeError> {
        let dir = self.sandbox_dir(&spec.id);
        std::fs::DirBuilder::new()
            .mode(0o700)
            .recursive(true)
            .create(&dir)
            .map_err(dir_err(&dir))?;
        let base = self.uid_base(&dir).await?;
        let mut dirs = vec![
            ("upper", true),
            ("work", false),
            ("lower", false),
            ("rootfs", false),
            ("etc", false),
        ];
        if host_usr {
            dirs.extend([
                ("upper-usr", true),
                ("work-usr", false),
                ("lower-usr", false),
            ]);
        }
        for (name, sandbox_owned) in dirs {
            let path = dir.join(name);
            match std::fs::DirBuilder::new().mode(0o755).create(&path) {
                Ok(()) => {
                    if sandbox_owned {
                        std::os::unix::fs::chown(&path, Some(base), Some(base))
                            .map_err(dir_err(&path))?;
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(dir_err(&path)(e)),
            }
        }
        let hostname = sanitize_hostname(&spec.hostname, &spec.id);
        let resolv = if network { "nameserver 10.0.2.3\n" } else { "" };
        for (file, content) in [
            ("hosts", format!("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n127.0.1.1\t{hostname}\n")),
            ("hostname", format!("{hostname}\n")),
            ("resolv.conf", resolv.to_string()),
        ] {
            let path = dir.join("etc").join(file);
            std::fs::write(&path, content).map_err(dir_err(&path))?;
            std::os::unix::fs::chown(&path, Some(base), Some(base)).map_err(dir_err(&path))?;
        }
        for mount in &spec.mounts {
            if let Some(subpath) = &mount.subpath {
                crate::volume::create_subpath(&mount.host_path, subpath)
                    .map_err(RuntimeError::Volume)?;
            }
        }
        Ok(base)
    }

    fn jail_config(
        &self,
        spec: &SandboxSpec,
        base: u32,
        host_usr: bool,
        rootfs: &Path,
        cgroups: Vec<PathBuf>,
        network: bool,
    ) -> JailConfig {
        let dir = self.sandbox_dir(&spec.id);
        let agent = sandbar_wire_config(spec);
        let mut binds: Vec<BindMount> = ["hosts", "hostname", "resolv.conf"]
            .iter()
            .map(|f| BindMount {
                source: dir.join("etc").join(f),
                source_subpath: None,
                target: format!("/etc/{f}"),
                read_only: false,
                idmap: false,
            })
            .collect();
        binds.extend(spec.mounts.iter().map(|m| BindMount {
            source: m.host_path.clone(),
            source_subpath: m.subpath.clone(),
            target: m.target.clone(),
            read_only: m.read_only,
            idmap: true,
        }));
        JailConfig {
            hostname: sanitize_hostname(&spec.hostname, &spec.id),
            uid_base: base,
            id_count: ID_COUNT,
            root: OverlayLayer {
                lower: rootfs.to_path_buf(),
                lower_mount: dir.join("lower"),
                upper: dir.join("upper"),
                work: dir.join("work"),
                target: dir.join("rootfs"),
            },
            usr: host_usr.then(|| OverlayLayer {
                lower: PathBuf::from("/usr"),
                lower_mount: dir.join("lower-usr"),
                upper: dir.join("upper-usr"),
                work: dir.join("work-usr"),
                target: PathBuf::from("/usr"),
            }),
            binds,
            cgroups,
            host_cgroups: self.cgroups.roots(),
            cgroup_mounts: self.cgroup_mounts.clone(),
            socket_path: self.sandbox_dir(&spec.id).join("agent.sock"),
            agent_exe: self.config.exe.clone(),
            agent_args: vec!["sandbar".into(), "agent".into()],
            agent_env: vec![
                (
                    "PATH".into(),
                    "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into(),
                ),
                ("SANDBAR_AGENT_CONFIG".into(), agent),
            ],
            log_path: dir.join("agent.log"),
            // Half of the memory limit for /tmp and a quarter for /dev/shm: filling both still
            // leaves the sandbox's processes a quarter.
            tmp_size: spec.resources.memory_mib * 1024 * 1024 / 2,
            shm_size: spec.resources.memory_mib * 1024 * 1024 / 4,
            network: NetworkConfig {
                block_all: !network,
                slirp4netns: if network {
                    self.config.slirp4netns.clone()
                } else {
                    None
                },
            },
        }
    }

    /// Runs `sandbar jail` with `config` on its stdin and returns what it printed.
    async fn run_jail(&self, config: &JailConfig) -> Result<JailResult, RuntimeError> {
        let input = serde_json::to_vec(config)
            .map_err(|e| RuntimeError::Setup(format!("encode the jail configuration: {e}")))?;
        let mut cmd = Command::new(&self.config.exe);
        cmd.arg("jail");
        let out = self
            .reaper
            .run(cmd, Some(input))
            .await
            .map_err(RuntimeError::SpawnJail)?;
        if out.code != 0 {
            let message = String::from_utf8_lossy(&out.stderr).trim().to_string();
            return Err(RuntimeError::Setup(if message.is_empty() {
                format!("jail helper exited with {}", out.code)
            } else {
                message
            }));
        }
        serde_json::from_slice(&out.stdout)
            .map_err(|e| RuntimeError::Setup(format!("unreadable jail result: {e}")))
    }

    /// The process-wide reaper, for running host commands.
    pub fn reaper(&self) -> &Arc<Reaper> {
        &self.reaper
    }

    /// SIGKILLs every process left in the sandbox's cgroups and waits until they are gone.
    async fn kill_cgroup(&self, id: &str) {
        for _ in 0..3 {
            let pids = self.cgroups.procs(id);
            if pids.is_empty() {
                return;
            }
            for pid in pids {
                if let Ok(fd) = PidFd::open(pid) {
                    let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
                    fd.exited().await;
                }
            }
        }
    }

    async fn terminate(&self, launched: Launched, force: bool) -> Result<(), RuntimeError> {
        let Ok(afd) = PidFd::open(launched.pid) else {
            return Ok(());
        };
        if !self.is_alive(launched) {
            return Ok(());
        }
        let pid = Pid::from_raw(launched.pid);
        if !force {
            // The agent forwards SIGTERM to every process and exits; PID 1's exit then
            // kills whatever is left in the pid namespace.
            let _ = kill(pid, Signal::SIGTERM);
            if tokio::time::timeout(self.config.stop_grace, afd.exited())
                .await
                .is_ok()
            {
                return Ok(());
            }
        }
        kill(pid, Signal::SIGKILL)
            .map_err(|e| RuntimeError::Signal {
                pid: launched.pid,
                source: std::io::Error::from_raw_os_error(e as i32),
            })
            .or_else(|e| {
                if self.is_alive(launched) {
                    Err(e)
                } else {
                    Ok(())
                }
            })?;
        afd.exited().await;
        Ok(())
    }
}

impl NativeRuntime {
    /// Runs one blocking archive step on the sandbox's directory off the async threads.
    async fn archive_step<T: Send + 'static>(
        &self,
        id: &str,
        action: &'static str,
        step: fn(&Path) -> Result<T, archive::ArchiveError>,
    ) -> Result<T, RuntimeError> {
        let dir = self.sandbox_dir(id);
        tokio::task::spawn_blocking(move || step(&dir))
            .await
            .map_err(|source| RuntimeError::Task {
                id: id.to_owned(),
                source,
            })?
            .map_err(|source| RuntimeError::Archive {
                action,
                id: id.to_owned(),
                source,
            })
    }
}

fn sandbar_wire_config(spec: &SandboxSpec) -> String {
    serde_json::json!({ "user": spec.user, "env": spec.env, "init": true }).to_string()
}

/// A valid hostname (RFC 1123 label characters, at most 63) from the sandbox name.
fn sanitize_hostname(name: &str, id: &str) -> String {
    let cleaned: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '-'
            }
        })
        .take(63)
        .collect();
    let cleaned = cleaned.trim_matches('-').to_string();
    if cleaned.is_empty() {
        id.chars().take(63).collect()
    } else {
        cleaned
    }
}

#[async_trait::async_trait]
impl SandboxRuntime for NativeRuntime {
    async fn start(&self, spec: &SandboxSpec) -> Result<Launched, RuntimeError> {
        let snap = self.snapshots.get(&spec.snapshot)?;
        // An archived layer comes back before anything else touches the directory.
        if self
            .archive_step(&spec.id, "restore", archive::restore)
            .await?
        {
            tracing::info!(sandbox = %spec.id, "restored the archived writable layer");
        }
        let network = !spec.network_block_all && self.config.slirp4netns.is_some();
        let base = self.prepare(spec, snap.meta.host_usr, network).await?;
        // Leftovers of an earlier run (a crash) would make the new tree share a cgroup.
        self.kill_cgroup(&spec.id).await;
        let cgroups = self.cgroups.create(&spec.id, &spec.resources)?;
        let config = self.jail_config(
            spec,
            base,
            snap.meta.host_usr,
            &snap.rootfs,
            cgroups,
            network,
        );
        match self.run_jail(&config).await {
            Ok(r) => Ok(Launched {
                pid: r.pid,
                start_time: r.start_time,
            }),
            Err(e) => {
                self.kill_cgroup(&spec.id).await;
                let _ = self.cgroups.remove(&spec.id).await;
                Err(e)
            }
        }
    }

    async fn stop(
        &self,
        id: &str,
        launched: Option<Launched>,
        force: bool,
    ) -> Result<(), RuntimeError> {
        if let Some(l) = launched {
            self.terminate(l, force).await?;
        }
        self.kill_cgroup(id).await;
        self.cgroups.remove(id).await?;
        let _ = std::fs::remove_file(self.sandbox_dir(id).join("agent.sock"));
        Ok(())
    }

    async fn destroy(&self, id: &str, launched: Option<Launched>) -> Result<(), RuntimeError> {
        self.stop(id, launched, true).await?;
        let dir = self.sandbox_dir(id);
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(RuntimeError::Remove { path: dir, source }),
        }
    }

    fn is_alive(&self, launched: Launched) -> bool {
        sandbar_jail::sys::process_is_running(launched.pid, launched.start_time)
    }

    fn wait_exit(
        &self,
        id: &str,
        launched: Launched,
    ) -> Result<BoxFuture<'static, ExitInfo>, RuntimeError> {
        let fd = PidFd::open(launched.pid).map_err(|source| RuntimeError::Signal {
            pid: launched.pid,
            source,
        })?;
        // Checked after opening the pidfd: the descriptor now pins this very process.
        if !self.is_alive(launched) {
            return Err(RuntimeError::Setup(format!("sandbox {id} is not running")));
        }
        let cgroups = self.cgroups.clone();
        let id = id.to_string();
        Ok(async move {
            fd.exited().await;
            ExitInfo {
                oom_killed: cgroups.oom_kills(&id) > 0,
            }
        }
        .boxed())
    }

    fn agent_socket(&self, id: &str) -> PathBuf {
        let path = self.sandbox_dir(id).join("agent.sock");
        if path.as_os_str().len() <= sandbar_jail::sys::MAX_SOCKET_PATH {
            return path;
        }
        use std::os::fd::AsRawFd;
        PathBuf::from(format!(
            "/proc/self/fd/{}/{id}/agent.sock",
            self.sandboxes_dir.as_raw_fd()
        ))
    }

    async fn archive(&self, id: &str) -> Result<u64, RuntimeError> {
        if !self.cgroups.procs(id).is_empty() {
            return Err(RuntimeError::Setup(format!(
                "sandbox {id} still has processes; stop it before archiving"
            )));
        }
        self.archive_step(id, "archive", archive::write).await
    }

    async fn drop_layer(&self, id: &str) -> Result<(), RuntimeError> {
        self.archive_step(id, "free", archive::drop_layer).await
    }

    fn is_archived(&self, id: &str) -> bool {
        archive::exists(&self.sandbox_dir(id))
    }

    async fn settle_archive(&self, id: &str) -> Result<(), RuntimeError> {
        self.archive_step(id, "settle", archive::settle).await
    }

    async fn resize(&self, id: &str, resources: Resources) -> Result<(), RuntimeError> {
        self.cgroups.resize(id, &resources)
    }

    fn usage(&self, id: &str) -> Usage {
        let (memory_bytes, cpu_ns) = self.cgroups.usage(id);
        Usage {
            cpu_ns,
            memory_bytes,
            disk_bytes: archive::disk_usage(&self.sandbox_dir(id)),
        }
    }

    fn oom_kills(&self, id: &str) -> u64 {
        self.cgroups.oom_kills(id)
    }

    /// Sandboxes with a directory in this data directory. cgroups are not listed: the
    /// hierarchy is shared by every Sandbar data directory on the host, and a sandbox's
    /// directory is created before and removed after its cgroups.
    fn list_host_sandboxes(&self) -> Vec<String> {
        let mut ids: Vec<String> = std::fs::read_dir(&self.sandboxes)
            .into_iter()
            .flatten()
            .filter_map(|e| e.ok())
            .filter_map(|e| e.file_name().into_string().ok())
            .collect();
        ids.sort();
        ids
    }

    fn volume_storage(&self) -> Option<Arc<dyn crate::VolumeStorage>> {
        Some(self.volumes.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::sanitize_hostname;

    #[test]
    fn hostnames_are_valid_labels() {
        assert_eq!(sanitize_hostname("my sandbox/x", "id"), "my-sandbox-x");
        assert_eq!(sanitize_hostname("---", "abc"), "abc");
        assert_eq!(sanitize_hostname(&"a".repeat(100), "id").len(), 63);
    }
}
