//! cgroup limits for sandboxes on cgroup v1, v2 and hybrid hosts.
//!
//! Each sandbox gets `sandbar/<id>` in every hierarchy that carries a controller we use. On a
//! v2-only host that is one directory under the unified mount; on a v1 or hybrid host (limits
//! only work through v1 there) one directory per v1 controller mount.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::{Resources, RuntimeError};

const CFS_PERIOD_US: u64 = 100_000;
const GROUP: &str = "sandbar";

#[derive(Debug, Clone)]
pub enum Cgroups {
    /// Controller name → mount point of its v1 hierarchy.
    V1(BTreeMap<String, PathBuf>),
    /// Mount point of the unified hierarchy.
    V2(PathBuf),
}

fn cg_err(path: &Path) -> impl FnOnce(std::io::Error) -> RuntimeError + '_ {
    move |source| RuntimeError::Cgroup {
        path: path.to_path_buf(),
        source,
    }
}

impl Cgroups {
    /// Detects the host's layout from /proc/self/mountinfo.
    pub fn detect() -> Result<Self, RuntimeError> {
        let info = std::fs::read_to_string("/proc/self/mountinfo")
            .map_err(cg_err(Path::new("/proc/self/mountinfo")))?;
        Ok(Self::from_mountinfo(&info))
    }

    fn from_mountinfo(info: &str) -> Self {
        let mut v1 = BTreeMap::new();
        let mut v2 = None;
        for line in info.lines() {
            let Some((pre, post)) = line.split_once(" - ") else {
                continue;
            };
            let mount_point = pre.split_whitespace().nth(4).unwrap_or_default();
            let mut post = post.split_whitespace();
            let fstype = post.next().unwrap_or_default();
            let super_opts = post.nth(1).unwrap_or_default();
            match fstype {
                "cgroup2" => v2 = Some(PathBuf::from(mount_point)),
                "cgroup" => {
                    for opt in super_opts.split(',') {
                        if ["memory", "pids", "cpu", "cpuacct", "freezer"].contains(&opt) {
                            v1.insert(opt.to_string(), PathBuf::from(mount_point));
                        }
                    }
                }
                _ => {}
            }
        }
        match v2 {
            Some(unified) if !v1.contains_key("memory") => Cgroups::V2(unified),
            _ => Cgroups::V1(v1),
        }
    }

    /// The sandbox's cgroup directories (one per distinct hierarchy).
    pub fn dirs(&self, id: &str) -> Vec<PathBuf> {
        match self {
            Cgroups::V1(map) => {
                let mut dirs: Vec<PathBuf> = map.values().map(|m| m.join(GROUP).join(id)).collect();
                dirs.sort();
                dirs.dedup();
                dirs
            }
            Cgroups::V2(root) => vec![root.join(GROUP).join(id)],
        }
    }

    /// Roots of the hierarchies the sandboxes' cgroups live in.
    pub fn roots(&self) -> Vec<PathBuf> {
        match self {
            Cgroups::V1(map) => {
                let mut roots: Vec<PathBuf> = map.values().cloned().collect();
                roots.sort();
                roots.dedup();
                roots
            }
            Cgroups::V2(root) => vec![root.clone()],
        }
    }

    /// The hierarchies to show inside a sandbox at `/sys/fs/cgroup`: each v1 hierarchy that
    /// carries one of our controllers, with its full option set (a v1 hierarchy can only be
    /// mounted again with the same controllers), or the unified hierarchy.
    pub fn sandbox_mounts(&self) -> Vec<sandbar_jail::CgroupMount> {
        match self {
            Cgroups::V1(map) => {
                let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
                let mut mounts: Vec<sandbar_jail::CgroupMount> = Vec::new();
                for line in info.lines() {
                    let Some((pre, post)) = line.split_once(" - ") else {
                        continue;
                    };
                    let mount_point =
                        PathBuf::from(pre.split_whitespace().nth(4).unwrap_or_default());
                    let mut post = post.split_whitespace();
                    if post.next() != Some("cgroup") || !map.values().any(|m| m == &mount_point) {
                        continue;
                    }
                    let options: Vec<&str> = post
                        .nth(1)
                        .unwrap_or_default()
                        .split(',')
                        .filter(|o| *o != "rw" && *o != "ro")
                        .collect();
                    let Some(name) = mount_point.file_name().and_then(|n| n.to_str()) else {
                        continue;
                    };
                    if mounts.iter().all(|m| m.name != name) {
                        mounts.push(sandbar_jail::CgroupMount {
                            fstype: "cgroup".into(),
                            options: options.join(","),
                            name: name.to_string(),
                        });
                    }
                }
                mounts
            }
            Cgroups::V2(_) => vec![sandbar_jail::CgroupMount {
                fstype: "cgroup2".into(),
                options: String::new(),
                name: String::new(),
            }],
        }
    }

    fn v1_dir(&self, controller: &str, id: &str) -> Option<PathBuf> {
        match self {
            Cgroups::V1(map) => map.get(controller).map(|m| m.join(GROUP).join(id)),
            Cgroups::V2(_) => None,
        }
    }

    /// Creates the sandbox's cgroups with its limits and returns the directories to join.
    pub fn create(&self, id: &str, res: &Resources) -> Result<Vec<PathBuf>, RuntimeError> {
        let memory = res.memory_mib * 1024 * 1024;
        let quota = u64::from(res.cpu.max(1)) * CFS_PERIOD_US;
        match self {
            Cgroups::V1(_) => {
                for dir in self.dirs(id) {
                    std::fs::create_dir_all(&dir).map_err(cg_err(&dir))?;
                }
                let set =
                    |controller: &str, file: &str, value: String| -> Result<(), RuntimeError> {
                        if let Some(dir) = self.v1_dir(controller, id) {
                            let path = dir.join(file);
                            std::fs::write(&path, value).map_err(cg_err(&path))?;
                        }
                        Ok(())
                    };
                set("memory", "memory.limit_in_bytes", memory.to_string())?;
                // Swap would let a sandbox exceed its limit; ignore hosts without swap accounting.
                if let Some(dir) = self.v1_dir("memory", id) {
                    let _ =
                        std::fs::write(dir.join("memory.memsw.limit_in_bytes"), memory.to_string());
                }
                set("pids", "pids.max", res.pids.to_string())?;
                set("cpu", "cpu.cfs_period_us", CFS_PERIOD_US.to_string())?;
                set("cpu", "cpu.cfs_quota_us", quota.to_string())?;
            }
            Cgroups::V2(root) => {
                let parent = root.join(GROUP);
                std::fs::create_dir_all(&parent).map_err(cg_err(&parent))?;
                let control = parent.join("cgroup.subtree_control");
                std::fs::write(&control, "+memory +pids +cpu").map_err(cg_err(&control))?;
                let dir = parent.join(id);
                std::fs::create_dir_all(&dir).map_err(cg_err(&dir))?;
                for (file, value) in [
                    ("memory.max", memory.to_string()),
                    ("memory.swap.max", "0".to_string()),
                    ("pids.max", res.pids.to_string()),
                    ("cpu.max", format!("{quota} {CFS_PERIOD_US}")),
                ] {
                    let path = dir.join(file);
                    if let Err(e) = std::fs::write(&path, value) {
                        if file != "memory.swap.max" {
                            return Err(cg_err(&path)(e));
                        }
                    }
                }
            }
        }
        Ok(self.dirs(id))
    }

    /// Changes the CPU quota, memory limit and process limit of a running sandbox's cgroups.
    /// Fails with [`RuntimeError::Resize`] when the sandbox has no cgroups (not running) or
    /// when the kernel cannot bring memory use under a lower limit (v1 answers EBUSY).
    pub fn resize(&self, id: &str, res: &Resources) -> Result<(), RuntimeError> {
        let memory = res.memory_mib * 1024 * 1024;
        let quota = u64::from(res.cpu.max(1)) * CFS_PERIOD_US;
        let rejected = |reason: String| RuntimeError::Resize {
            id: id.to_owned(),
            reason,
        };
        if self.dirs(id).iter().any(|dir| !dir.is_dir()) {
            return Err(rejected("the sandbox is not running".to_owned()));
        }
        let write = |path: PathBuf, value: String| -> Result<(), RuntimeError> {
            std::fs::write(&path, value).map_err(|source| {
                if source.raw_os_error() == Some(libc::EBUSY) {
                    rejected(format!(
                        "the sandbox uses more memory than the new limit of {} MiB",
                        res.memory_mib
                    ))
                } else {
                    cg_err(&path)(source)
                }
            })
        };
        match self {
            Cgroups::V1(_) => {
                if let Some(dir) = self.v1_dir("memory", id) {
                    let current = std::fs::read_to_string(dir.join("memory.limit_in_bytes"))
                        .ok()
                        .and_then(|s| s.trim().parse::<u64>().ok())
                        .unwrap_or(u64::MAX);
                    // memory+swap must stay >= memory: raise it first, lower it last. Hosts
                    // without swap accounting have no such file.
                    let memsw = dir.join("memory.memsw.limit_in_bytes");
                    if memory >= current {
                        let _ = std::fs::write(&memsw, memory.to_string());
                        write(dir.join("memory.limit_in_bytes"), memory.to_string())?;
                    } else {
                        write(dir.join("memory.limit_in_bytes"), memory.to_string())?;
                        let _ = std::fs::write(&memsw, memory.to_string());
                    }
                }
                if let Some(dir) = self.v1_dir("cpu", id) {
                    write(dir.join("cpu.cfs_quota_us"), quota.to_string())?;
                }
                if let Some(dir) = self.v1_dir("pids", id) {
                    write(dir.join("pids.max"), res.pids.to_string())?;
                }
            }
            Cgroups::V2(root) => {
                let dir = root.join(GROUP).join(id);
                write(dir.join("memory.max"), memory.to_string())?;
                write(dir.join("cpu.max"), format!("{quota} {CFS_PERIOD_US}"))?;
                write(dir.join("pids.max"), res.pids.to_string())?;
            }
        }
        Ok(())
    }

    /// Pids of every process in the sandbox's cgroups.
    pub fn procs(&self, id: &str) -> Vec<i32> {
        let mut pids: Vec<i32> = self
            .dirs(id)
            .iter()
            .filter_map(|d| std::fs::read_to_string(d.join("cgroup.procs")).ok())
            .flat_map(|s| {
                s.lines()
                    .filter_map(|l| l.trim().parse().ok())
                    .collect::<Vec<_>>()
            })
            .collect();
        pids.sort_unstable();
        pids.dedup();
        pids
    }

    /// How many processes the memory controller killed for exceeding the limit.
    pub fn oom_kills(&self, id: &str) -> u64 {
        let (dir, file, key) = match self {
            Cgroups::V1(_) => match self.v1_dir("memory", id) {
                Some(d) => (d, "memory.oom_control", "oom_kill"),
                None => return 0,
            },
            Cgroups::V2(root) => (root.join(GROUP).join(id), "memory.events", "oom_kill"),
        };
        std::fs::read_to_string(dir.join(file))
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix(key).and_then(|v| v.trim().parse().ok()))
            })
            .unwrap_or(0)
    }

    /// Memory in use (bytes) and CPU time used (nanoseconds), for metrics.
    pub fn usage(&self, id: &str) -> (u64, u64) {
        let read = |path: PathBuf| std::fs::read_to_string(path).ok();
        match self {
            Cgroups::V1(_) => {
                let mem = self
                    .v1_dir("memory", id)
                    .and_then(|d| read(d.join("memory.usage_in_bytes")))
                    .and_then(|s| s.trim().parse().ok())
                    .unwrap_or(0);
                let cpu = self
                    .v1_dir("cpuacct", id)
                    .and_then(|d| read(d.join("cpuacct.usage")))
                    .and_then(|s| s.trim().parse().ok())
                    .unwrap_or(0);
                (mem, cpu)
            }
            Cgroups::V2(root) => {
                let dir = root.join(GROUP).join(id);
                let mem = read(dir.join("memory.current"))
                    .and_then(|s| s.trim().parse().ok())
                    .unwrap_or(0);
                let cpu = read(dir.join("cpu.stat"))
                    .and_then(|s| {
                        s.lines().find_map(|l| {
                            l.strip_prefix("usage_usec ")
                                .and_then(|v| v.trim().parse::<u64>().ok())
                        })
                    })
                    .map(|us| us * 1000)
                    .unwrap_or(0);
                (mem, cpu)
            }
        }
    }

    /// Removes the sandbox's cgroups. The caller has made sure no process is left; a cgroup
    /// whose last task is still being torn down reports EBUSY for a moment, so retry briefly.
    pub async fn remove(&self, id: &str) -> Result<(), RuntimeError> {
        for dir in self.dirs(id) {
            let mut attempts = 0;
            loop {
                match std::fs::remove_dir(&dir) {
                    Ok(()) => break,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => break,
                    Err(e) if e.raw_os_error() == Some(libc::EBUSY) && attempts < 200 => {
                        attempts += 1;
                        for pid in self.procs(id) {
                            let _ = nix::sys::signal::kill(
                                nix::unistd::Pid::from_raw(pid),
                                nix::sys::signal::Signal::SIGKILL,
                            );
                        }
                        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                    }
                    Err(e) => return Err(cg_err(&dir)(e)),
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID: &str = "\
30 25 0:26 / /sys/fs/cgroup/memory rw,relatime shared:10 - cgroup cgroup rw,memory
31 25 0:27 / /sys/fs/cgroup/pids rw,relatime shared:11 - cgroup cgroup rw,pids
32 25 0:28 / /sys/fs/cgroup/cpu,cpuacct rw,relatime shared:12 - cgroup cgroup rw,cpu,cpuacct
33 25 0:29 / /sys/fs/cgroup/unified rw,relatime shared:13 - cgroup2 cgroup2 rw
";
    const V2: &str = "29 23 0:26 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n";

    #[test]
    fn hybrid_hosts_use_the_v1_controllers() {
        let cg = Cgroups::from_mountinfo(HYBRID);
        let dirs = cg.dirs("abc");
        assert_eq!(
            dirs,
            vec![
                PathBuf::from("/sys/fs/cgroup/cpu,cpuacct/sandbar/abc"),
                PathBuf::from("/sys/fs/cgroup/memory/sandbar/abc"),
                PathBuf::from("/sys/fs/cgroup/pids/sandbar/abc"),
            ],
            "cpu and cpuacct share one hierarchy and are joined once"
        );
    }

    #[test]
    fn resize_rewrites_the_limits_of_existing_cgroups() {
        let root = tempfile::tempdir().unwrap();
        let mut map = BTreeMap::new();
        for controller in ["memory", "pids", "cpu"] {
            map.insert(controller.to_string(), root.path().join(controller));
        }
        let v1 = Cgroups::V1(map);
        let read = |path: &str| std::fs::read_to_string(root.path().join(path)).unwrap();
        let small = Resources {
            cpu: 1,
            memory_mib: 1024,
            ..Resources::default()
        };
        assert!(
            matches!(v1.resize("abc", &small), Err(RuntimeError::Resize { .. })),
            "no cgroups: not running"
        );
        v1.create("abc", &small).unwrap();
        let big = Resources {
            cpu: 2,
            memory_mib: 3072,
            pids: 50,
            ..Resources::default()
        };
        v1.resize("abc", &big).unwrap();
        assert_eq!(
            read("memory/sandbar/abc/memory.limit_in_bytes"),
            "3221225472"
        );
        assert_eq!(
            read("memory/sandbar/abc/memory.memsw.limit_in_bytes"),
            "3221225472"
        );
        assert_eq!(read("cpu/sandbar/abc/cpu.cfs_quota_us"), "200000");
        assert_eq!(read("pids/sandbar/abc/pids.max"), "50");
        v1.resize("abc", &small).unwrap();
        assert_eq!(
            read("memory/sandbar/abc/memory.limit_in_bytes"),
            "1073741824"
        );
        assert_eq!(
            read("memory/sandbar/abc/memory.memsw.limit_in_bytes"),
            "1073741824"
        );

        let v2 = Cgroups::V2(root.path().join("unified"));
        std::fs::create_dir_all(root.path().join("unified/sandbar/xyz")).unwrap();
        v2.resize("xyz", &big).unwrap();
        assert_eq!(read("unified/sandbar/xyz/memory.max"), "3221225472");
        assert_eq!(read("unified/sandbar/xyz/cpu.max"), "200000 100000");
    }

    #[test]
    fn v2_only_hosts_use_one_directory() {
        let cg = Cgroups::from_mountinfo(V2);
        assert_eq!(
            cg.dirs("abc"),
            vec![PathBuf::from("/sys/fs/cgroup/sandbar/abc")]
        );
    }
}
