//! The sandbox's root filesystem, built inside its new mount namespace as real root (so the
//! mounts vanish with the namespace and overlayfs may keep `trusted.*` xattrs):
//! idmapped read-only lower layers, writable overlays, /proc, /dev, /tmp, /sys, the bind
//! mounts, then pivot_root.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Component, Path};

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sys::stat::{Mode, SFlag};

use crate::config::{BindMount, JailConfig, OverlayLayer};
use crate::{nix_io, sys, JailError};

pub fn build(config: &JailConfig, userns: BorrowedFd<'_>) -> Result<(), JailError> {
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .map_err(|e| JailError::sys("make the mount tree private", nix_io(e)))?;

    let root = &config.root.target;
    overlay(&config.root, root, userns)?;
    if let Some(usr) = &config.usr {
        overlay(usr, &root.join("usr"), userns)?;
    }
    let base = config.uid_base;
    let nosuid_nodev = MsFlags::MS_NOSUID | MsFlags::MS_NODEV;

    // /proc of the new pid namespace, with the usual sensitive files masked.
    let proc = root.join("proc");
    ensure_dir(&proc)?;
    mount(
        Some("proc"),
        &proc,
        Some("proc"),
        nosuid_nodev | MsFlags::MS_NOEXEC,
        None::<&str>,
    )
    .map_err(|e| JailError::sys("mount /proc", nix_io(e)))?;

    // A minimal /dev on tmpfs.
    let dev = root.join("dev");
    ensure_dir(&dev)?;
    mount(
        Some("tmpfs"),
        &dev,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
        Some(format!("mode=755,size=64k,uid={base},gid={base}").as_str()),
    )
    .map_err(|e| JailError::sys("mount /dev", nix_io(e)))?;
    for (name, major, minor) in [
        ("null", 1, 3),
        ("zero", 1, 5),
        ("full", 1, 7),
        ("random", 1, 8),
        ("urandom", 1, 9),
        ("tty", 5, 0),
    ] {
        let path = dev.join(name);
        nix::sys::stat::mknod(
            &path,
            SFlag::S_IFCHR,
            Mode::from_bits_truncate(0o666),
            nix::sys::stat::makedev(major, minor),
        )
        .map_err(|e| JailError::sys("create a device node", nix_io(e)))?;
        // mknod honours the umask; the nodes must be usable by every user.
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o666))
            .map_err(|e| JailError::sys("set device node permissions", e))?;
    }
    for (link, target) in [
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
        ("ptmx", "pts/ptmx"),
    ] {
        std::os::unix::fs::symlink(target, dev.join(link))
            .map_err(|e| JailError::sys("create a /dev symlink", e))?;
    }
    for dir in ["pts", "shm"] {
        std::fs::create_dir(dev.join(dir))
            .map_err(|e| JailError::sys("create a /dev directory", e))?;
    }
    mount(
        Some("devpts"),
        &dev.join("pts"),
        Some("devpts"),
        MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
        Some("newinstance,ptmxmode=0666,mode=0620"),
    )
    .map_err(|e| JailError::sys("mount /dev/pts", nix_io(e)))?;
    mount(
        Some("shm"),
        &dev.join("shm"),
        Some("tmpfs"),
        nosuid_nodev,
        Some(format!("mode=1777,uid={base},gid={base},size={}", config.shm_size).as_str()),
    )
    .map_err(|e| JailError::sys("mount /dev/shm", nix_io(e)))?;

    let tmp = root.join("tmp");
    ensure_dir(&tmp)?;
    mount(
        Some("tmpfs"),
        &tmp,
        Some("tmpfs"),
        nosuid_nodev,
        Some(format!("mode=1777,uid={base},gid={base},size={}", config.tmp_size).as_str()),
    )
    .map_err(|e| JailError::sys("mount /tmp", nix_io(e)))?;

    let sysfs = root.join("sys");
    ensure_dir(&sysfs)?;
    mount(
        Some("sysfs"),
        &sysfs,
        Some("sysfs"),
        nosuid_nodev | MsFlags::MS_NOEXEC | MsFlags::MS_RDONLY,
        None::<&str>,
    )
    .map_err(|e| JailError::sys("mount /sys", nix_io(e)))?;
    mount_cgroups(config, &sysfs.join("fs/cgroup"))?;

    let root_dir = open_dir(root)?;
    for bind in &config.binds {
        bind_mount(bind, root_dir.as_fd(), userns, base)?;
    }
    mask_proc(&proc)?;

    // pivot_root(".", ".") stacks the old root under the new one; detaching it leaves only
    // the sandbox's tree.
    std::env::set_current_dir(root).map_err(|e| JailError::sys("enter the new root", e))?;
    nix::unistd::pivot_root(".", ".").map_err(|e| JailError::sys("pivot_root", nix_io(e)))?;
    umount2(".", MntFlags::MNT_DETACH)
        .map_err(|e| JailError::sys("detach the host root", nix_io(e)))?;
    std::env::set_current_dir("/").map_err(|e| JailError::sys("enter /", e))?;
    Ok(())
}

/// Mounts `layer` at `target`: the lower directory attached read-only, `nosuid`, through
/// the sandbox's id mapping, under a writable upper directory.
fn overlay(layer: &OverlayLayer, target: &Path, userns: BorrowedFd<'_>) -> Result<(), JailError> {
    let lower = open_dir(&layer.lower)?;
    let tree = sys::clone_tree(lower.as_fd())
        .map_err(|e| JailError::sys("clone the snapshot layer", e))?;
    sys::set_mount_attrs(
        tree.as_fd(),
        sys::MOUNT_ATTR_IDMAP
            | sys::MOUNT_ATTR_RDONLY
            | sys::MOUNT_ATTR_NOSUID
            | sys::MOUNT_ATTR_NODEV,
        Some(userns),
    )
    .map_err(|e| JailError::sys("idmap the snapshot layer", e))?;
    let at = open_dir(&layer.lower_mount)?;
    sys::attach_tree(tree.as_fd(), at.as_fd())
        .map_err(|e| JailError::sys("attach the snapshot layer", e))?;
    let options = format!(
        "lowerdir={},upperdir={},workdir={}",
        layer.lower_mount.display(),
        layer.upper.display(),
        layer.work.display()
    );
    mount(
        Some("overlay"),
        target,
        Some("overlay"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        Some(options.as_str()),
    )
    .map_err(|e| JailError::sys("mount the overlay root", nix_io(e)))
}

fn open_dir(path: &Path) -> Result<OwnedFd, JailError> {
    let dir = std::fs::File::open(path).map_err(|e| JailError::sys("open a directory", e))?;
    Ok(dir.into())
}

fn ensure_dir(path: &Path) -> Result<(), JailError> {
    match std::fs::create_dir(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(JailError::sys("create a mount point", e)),
    }
}

/// Binds a host directory (or a sub-path resolved inside it) at a path resolved inside the
/// sandbox root. Both resolutions are confined (`RESOLVE_IN_ROOT`), so symlinks planted by
/// the sandbox, in its root or in a volume, cannot point a mount at a host path.
fn bind_mount(
    bind: &BindMount,
    root: BorrowedFd<'_>,
    userns: BorrowedFd<'_>,
    base: u32,
) -> Result<(), JailError> {
    let source_root = std::fs::File::open(&bind.source)
        .map_err(|e| JailError::sys("open a bind mount source", e))?;
    let source = match &bind.source_subpath {
        Some(sub) => sys::open_in_root(source_root.as_fd(), Path::new(sub))
            .map_err(|e| JailError::sys("resolve a volume sub-path", e))?,
        None => source_root.into(),
    };
    let is_dir = nix::sys::stat::fstat(std::os::fd::AsRawFd::as_raw_fd(&source))
        .map(|st| SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFDIR)
        .map_err(|e| JailError::sys("inspect a bind mount source", nix_io(e)))?;
    let target = ensure_target(root, &bind.target, is_dir, base)?;
    let tree = sys::clone_tree(source.as_fd())
        .map_err(|e| JailError::sys("clone a bind mount source", e))?;
    let mut attrs = sys::MOUNT_ATTR_NOSUID | sys::MOUNT_ATTR_NODEV;
    if bind.read_only {
        attrs |= sys::MOUNT_ATTR_RDONLY;
    }
    if bind.idmap {
        attrs |= sys::MOUNT_ATTR_IDMAP;
    }
    sys::set_mount_attrs(tree.as_fd(), attrs, bind.idmap.then_some(userns))
        .map_err(|e| JailError::sys("set bind mount attributes", e))?;
    sys::attach_tree(tree.as_fd(), target.as_fd())
        .map_err(|e| JailError::sys("attach a bind mount", e))
}

/// Opens (creating if needed) the mount point `path` inside the sandbox root. Created
/// entries belong to the sandbox's root user.
fn ensure_target(
    root: BorrowedFd<'_>,
    path: &str,
    is_dir: bool,
    base: u32,
) -> Result<OwnedFd, JailError> {
    let rel = Path::new(path);
    if !rel.is_absolute() || rel.components().any(|c| matches!(c, Component::ParentDir)) {
        return Err(JailError::Child(format!(
            "mount path {path} must be absolute and must not contain '..'"
        )));
    }
    let parts: Vec<_> = rel
        .components()
        .filter(|c| matches!(c, Component::Normal(_)))
        .collect();
    let mut current: OwnedFd = sys::open_in_root(root, Path::new("."))
        .map_err(|e| JailError::sys("open the sandbox root", e))?;
    for (i, part) in parts.iter().enumerate() {
        let last = i + 1 == parts.len();
        let name = Path::new(part.as_os_str());
        let next = match sys::open_in_root(root, &rel_from(&parts[..=i])) {
            Ok(fd) => fd,
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                let dir = sys::reopen_dir(current.as_fd())
                    .map_err(|e| JailError::sys("open a mount point's parent", e))?;
                if last && !is_dir {
                    nix::sys::stat::mknodat(
                        Some(std::os::fd::AsRawFd::as_raw_fd(&dir)),
                        name,
                        SFlag::S_IFREG,
                        Mode::from_bits_truncate(0o644),
                        0,
                    )
                    .map_err(|e| JailError::sys("create a mount point file", nix_io(e)))?;
                } else {
                    nix::sys::stat::mkdirat(
                        Some(std::os::fd::AsRawFd::as_raw_fd(&dir)),
                        name,
                        Mode::from_bits_truncate(0o755),
                    )
                    .map_err(|e| JailError::sys("create a mount point directory", nix_io(e)))?;
                }
                nix::unistd::fchownat(
                    Some(std::os::fd::AsRawFd::as_raw_fd(&dir)),
                    name,
                    Some(base.into()),
                    Some(base.into()),
                    nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
                )
                .map_err(|e| JailError::sys("chown a mount point", nix_io(e)))?;
                sys::open_in_root(root, &rel_from(&parts[..=i]))
                    .map_err(|e| JailError::sys("open a mount point", e))?
            }
            Err(e) => return Err(JailError::sys("open a mount point", e)),
        };
        current = next;
    }
    Ok(current)
}

fn rel_from(parts: &[Component<'_>]) -> std::path::PathBuf {
    parts.iter().map(|c| c.as_os_str()).collect()
}

/// Shows the sandbox's own cgroups (read-only) at `/sys/fs/cgroup`, as container runtimes do:
/// runtimes such as the JVM, Node.js or Go read their memory and CPU limits there.
fn mount_cgroups(config: &JailConfig, dir: &Path) -> Result<(), JailError> {
    if config.cgroup_mounts.is_empty() || !dir.is_dir() {
        return Ok(());
    }
    let ro = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC | MsFlags::MS_RDONLY;
    let single_v2 = config.cgroup_mounts.len() == 1 && config.cgroup_mounts[0].name.is_empty();
    if !single_v2 {
        mount(
            Some("cgroup"),
            dir,
            Some("tmpfs"),
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
            Some("mode=755"),
        )
        .map_err(|e| JailError::sys("mount /sys/fs/cgroup", nix_io(e)))?;
    }
    for m in &config.cgroup_mounts {
        let target = if m.name.is_empty() {
            dir.to_path_buf()
        } else {
            dir.join(&m.name)
        };
        ensure_dir(&target)?;
        let data = (!m.options.is_empty()).then_some(m.options.as_str());
        // Informational only: a hierarchy that cannot be shown is left out, not fatal.
        let _ = mount(Some("cgroup"), &target, Some(m.fstype.as_str()), ro, data);
    }
    if !single_v2 {
        mount(
            None::<&str>,
            dir,
            None::<&str>,
            MsFlags::MS_REMOUNT | ro,
            Some("mode=755"),
        )
        .map_err(|e| JailError::sys("make /sys/fs/cgroup read-only", nix_io(e)))?;
    }
    Ok(())
}

/// Hides kernel interfaces that leak host information or allow host-wide actions.
fn mask_proc(proc: &Path) -> Result<(), JailError> {
    for file in [
        "kcore",
        "keys",
        "timer_list",
        "sysrq-trigger",
        "latency_stats",
        "sched_debug",
    ] {
        let path = proc.join(file);
        if path.exists() {
            mount(
                Some("/dev/null"),
                &path,
                None::<&str>,
                MsFlags::MS_BIND,
                None::<&str>,
            )
            .map_err(|e| JailError::sys("mask a /proc file", nix_io(e)))?;
        }
    }
    for dir in ["sys", "irq", "bus", "fs", "acpi", "scsi"] {
        let path = proc.join(dir);
        if path.exists() {
            mount(
                Some(&path),
                &path,
                None::<&str>,
                MsFlags::MS_BIND | MsFlags::MS_REC,
                None::<&str>,
            )
            .map_err(|e| JailError::sys("bind a /proc directory", nix_io(e)))?;
            mount(
                None::<&str>,
                &path,
                None::<&str>,
                MsFlags::MS_BIND
                    | MsFlags::MS_REMOUNT
                    | MsFlags::MS_RDONLY
                    | MsFlags::MS_NOSUID
                    | MsFlags::MS_NODEV
                    | MsFlags::MS_NOEXEC,
                None::<&str>,
            )
            .map_err(|e| JailError::sys("make a /proc directory read-only", nix_io(e)))?;
        }
    }
    Ok(())
}
