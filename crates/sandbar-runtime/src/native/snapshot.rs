//! Snapshots: read-only root filesystem images stored under `<data>/snapshots/<name>/rootfs`,
//! with files owned by their ids *as seen inside* a sandbox (0 for root, 1000 for `daytona`);
//! every sandbox sees them through its own id mapping.
//!
//! The default snapshot, `sandbar-default`, is made from the host itself with zero downloads:
//! a small root (curated `/etc`, the merged-usr symlinks, a home for `daytona`) plus the host's
//! `/usr` as a second read-only lower layer mounted at `/usr`.

use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::RuntimeError;

pub const DEFAULT_SNAPSHOT: &str = "sandbar-default";
/// uid/gid of the default user inside a sandbox.
pub const DAYTONA_ID: u32 = 1000;

/// Host `/etc` entries copied into the default snapshot: configuration programs need, none
/// of it secret (no shadow files, keys, credentials or machine identity).
const ETC_ALLOWLIST: &[&str] = &[
    "alternatives",
    "bash.bashrc",
    "bash_completion.d",
    "ca-certificates",
    "ca-certificates.conf",
    "debian_version",
    "environment",
    "gai.conf",
    "host.conf",
    "inputrc",
    "issue",
    "ld.so.cache",
    "ld.so.conf",
    "ld.so.conf.d",
    "localtime",
    "login.defs",
    "magic",
    "magic.mime",
    "mime.types",
    "os-release",
    "perl",
    "profile",
    "profile.d",
    "protocols",
    "python3",
    "python3.11",
    "rpc",
    "services",
    "shells",
    "skel",
    "ssl/certs",
    "ssl/openssl.cnf",
    "terminfo",
    "timezone",
    "vim",
    "java-17-openjdk",
];

/// Directories every root filesystem needs as mount points or for programs to work.
const ROOT_DIRS: &[(&str, u32)] = &[
    ("proc", 0o555),
    ("sys", 0o555),
    ("dev", 0o755),
    ("tmp", 0o1777),
    ("run", 0o755),
    ("etc", 0o755),
    ("root", 0o700),
    ("home", 0o755),
    ("mnt", 0o755),
    ("opt", 0o755),
    ("srv", 0o755),
    ("media", 0o755),
    ("var", 0o755),
    ("var/tmp", 0o1777),
    ("var/log", 0o755),
    ("var/lib", 0o755),
    ("var/cache", 0o755),
];

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SnapshotMeta {
    /// Mount the host's `/usr` as a second lower layer at `/usr`.
    pub host_usr: bool,
}

pub struct Snapshot {
    pub rootfs: PathBuf,
    pub meta: SnapshotMeta,
}

fn snap_err(name: &str) -> impl FnOnce(io::Error) -> RuntimeError + '_ {
    move |source| RuntimeError::Snapshot {
        name: name.to_string(),
        source,
    }
}

pub struct SnapshotStore {
    dir: PathBuf,
}

impl SnapshotStore {
    pub fn new(dir: PathBuf) -> Self {
        Self { dir }
    }

    pub fn get(&self, name: &str) -> Result<Snapshot, RuntimeError> {
        if !valid_name(name) {
            return Err(RuntimeError::SnapshotNotFound(name.to_string()));
        }
        let dir = self.dir.join(name);
        let meta = std::fs::read(dir.join("snapshot.json"))
            .map_err(|_| RuntimeError::SnapshotNotFound(name.to_string()))?;
        let meta: SnapshotMeta = serde_json::from_slice(&meta)
            .map_err(|e| snap_err(name)(io::Error::new(io::ErrorKind::InvalidData, e)))?;
        Ok(Snapshot {
            rootfs: dir.join("rootfs"),
            meta,
        })
    }

    pub fn list(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(&self.dir)
            .into_iter()
            .flatten()
            .filter_map(|e| e.ok())
            .filter(|e| e.path().join("snapshot.json").exists())
            .filter_map(|e| e.file_name().into_string().ok())
            .collect();
        names.sort();
        names
    }

    /// Builds the default snapshot from the host if it does not exist yet.
    pub fn ensure_default(&self) -> Result<(), RuntimeError> {
        if self
            .dir
            .join(DEFAULT_SNAPSHOT)
            .join("snapshot.json")
            .exists()
        {
            return Ok(());
        }
        let name = DEFAULT_SNAPSHOT;
        self.build_atomically(name, SnapshotMeta { host_usr: true }, |root| {
            build_host_root(root)
        })
    }

    /// Registers a copy of the root filesystem at `source` as snapshot `name`.
    pub fn import(&self, name: &str, source: &Path) -> Result<(), RuntimeError> {
        if !valid_name(name) {
            return Err(snap_err(name)(io::Error::new(
                io::ErrorKind::InvalidInput,
                "invalid snapshot name",
            )));
        }
        if self.dir.join(name).exists() {
            return Err(snap_err(name)(io::Error::new(
                io::ErrorKind::AlreadyExists,
                "snapshot exists",
            )));
        }
        self.build_atomically(name, SnapshotMeta { host_usr: false }, |root| {
            copy_tree(source, root)?;
            for (dir, mode) in ROOT_DIRS {
                ensure_dir(&root.join(dir), *mode, 0)?;
            }
            let passwd = root.join("etc/passwd");
            if !passwd.exists() {
                let shell = if root.join("bin/bash").exists() {
                    "/bin/bash"
                } else {
                    "/bin/sh"
                };
                write_users(root, shell)?;
            }
            Ok(())
        })
    }

    /// Builds into a temporary directory and renames it into place, so a crash never leaves
    /// a half-built snapshot under its real name.
    fn build_atomically(
        &self,
        name: &str,
        meta: SnapshotMeta,
        build: impl FnOnce(&Path) -> io::Result<()>,
    ) -> Result<(), RuntimeError> {
        std::fs::create_dir_all(&self.dir).map_err(snap_err(name))?;
        let tmp = self
            .dir
            .join(format!(".build-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&tmp);
        let result = (|| {
            std::fs::DirBuilder::new().mode(0o755).create(&tmp)?;
            let root = tmp.join("rootfs");
            std::fs::DirBuilder::new().mode(0o755).create(&root)?;
            build(&root)?;
            std::fs::write(
                tmp.join("snapshot.json"),
                serde_json::to_vec(&meta).map_err(io::Error::other)?,
            )?;
            std::fs::rename(&tmp, self.dir.join(name))
        })();
        if result.is_err() {
            let _ = std::fs::remove_dir_all(&tmp);
        }
        result.map_err(snap_err(name))
    }
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':'))
}

fn ensure_dir(path: &Path, mode: u32, owner: u32) -> io::Result<()> {
    match std::fs::DirBuilder::new().mode(mode).create(path) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Ok(()),
        Err(e) => return Err(e),
    }
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
    std::os::unix::fs::chown(path, Some(owner), Some(owner))
}

/// The small root of the default snapshot.
fn build_host_root(root: &Path) -> io::Result<()> {
    for (dir, mode) in ROOT_DIRS {
        ensure_dir(&root.join(dir), *mode, 0)?;
    }
    ensure_dir(&root.join("usr"), 0o755, 0)?;
    // The merged-usr symlinks (/bin -> usr/bin, …), as the host has them.
    for entry in std::fs::read_dir("/")? {
        let entry = entry?;
        if entry.file_type()?.is_symlink() {
            let target = std::fs::read_link(entry.path())?;
            if target.starts_with("usr") || target.starts_with("/usr") {
                std::os::unix::fs::symlink(&target, root.join(entry.file_name()))?;
            }
        }
    }
    let etc = root.join("etc");
    for name in ETC_ALLOWLIST {
        let src = Path::new("/etc").join(name);
        if std::fs::symlink_metadata(&src).is_ok() {
            if let Some(parent) = Path::new(name).parent() {
                std::fs::create_dir_all(etc.join(parent))?;
            }
            copy_tree(&src, &etc.join(name))?;
        }
    }
    let shell = if Path::new("/usr/bin/bash").exists() {
        "/bin/bash"
    } else {
        "/bin/sh"
    };
    write_users(root, shell)?;
    std::fs::write(
        etc.join("nsswitch.conf"),
        "passwd: files\ngroup: files\nshadow: files\nhosts: files dns\n",
    )?;
    let home = root.join("home/daytona");
    ensure_dir(&home, 0o755, DAYTONA_ID)?;
    for (file, content) in [
        (
            ".bashrc",
            "export PS1='\\u@\\h:\\w\\$ '\n[ -f /etc/bash.bashrc ] && . /etc/bash.bashrc\n",
        ),
        (
            ".profile",
            "[ -n \"$BASH_VERSION\" ] && [ -f ~/.bashrc ] && . ~/.bashrc\n",
        ),
    ] {
        let path = home.join(file);
        std::fs::write(&path, content)?;
        std::os::unix::fs::chown(&path, Some(DAYTONA_ID), Some(DAYTONA_ID))?;
    }
    Ok(())
}

fn write_users(root: &Path, shell: &str) -> io::Result<()> {
    let etc = root.join("etc");
    std::fs::create_dir_all(&etc)?;
    std::fs::write(
        etc.join("passwd"),
        format!(
            "root:x:0:0:root:/root:{shell}\ndaytona:x:{DAYTONA_ID}:{DAYTONA_ID}:Daytona:/home/daytona:{shell}\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n"
        ),
    )?;
    std::fs::write(
        etc.join("group"),
        format!("root:x:0:\ndaytona:x:{DAYTONA_ID}:\nnogroup:x:65534:\n"),
    )?;
    ensure_dir(&root.join("home"), 0o755, 0)?;
    ensure_dir(&root.join("home/daytona"), 0o755, DAYTONA_ID)
}

/// Copies a tree preserving modes, owners and symlinks (never following them).
pub fn copy_tree(src: &Path, dst: &Path) -> io::Result<()> {
    let meta = std::fs::symlink_metadata(src)?;
    let ft = meta.file_type();
    if ft.is_symlink() {
        std::os::unix::fs::symlink(std::fs::read_link(src)?, dst)?;
        return std::os::unix::fs::lchown(dst, Some(meta.uid()), Some(meta.gid()));
    }
    if ft.is_dir() {
        match std::fs::create_dir(dst) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
        for entry in std::fs::read_dir(src)? {
            let entry = entry?;
            copy_tree(&entry.path(), &dst.join(entry.file_name()))?;
        }
    } else if ft.is_file() {
        std::fs::copy(src, dst)?;
    } else {
        // Device nodes, sockets and fifos are not part of an image.
        return Ok(());
    }
    std::os::unix::fs::chown(dst, Some(meta.uid()), Some(meta.gid()))?;
    std::fs::set_permissions(dst, std::fs::Permissions::from_mode(meta.mode() & 0o7777))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_names_cannot_escape_the_store() {
        for bad in ["", "..", "../x", "a/b", ".hidden", "a b"] {
            assert!(!valid_name(bad), "{bad:?} must be rejected");
        }
        for good in ["sandbar-default", "busybox", "python_3.12:slim"] {
            assert!(valid_name(good), "{good:?} must be accepted");
        }
    }

    #[test]
    fn import_adds_users_and_mount_points_to_a_bare_root() {
        let tmp = tempfile_dir();
        let src = tmp.join("src");
        std::fs::create_dir_all(src.join("bin")).unwrap();
        std::fs::write(src.join("bin/sh"), "#!").unwrap();
        let store = SnapshotStore::new(tmp.join("store"));
        store.import("bare", &src).unwrap();
        let snap = store.get("bare").unwrap();
        assert!(!snap.meta.host_usr);
        let passwd = std::fs::read_to_string(snap.rootfs.join("etc/passwd")).unwrap();
        assert!(passwd.contains("daytona:x:1000:1000"));
        assert!(snap.rootfs.join("proc").is_dir() && snap.rootfs.join("tmp").is_dir());
        assert!(
            store.import("bare", &src).is_err(),
            "a snapshot is never overwritten"
        );
        std::fs::remove_dir_all(&tmp).unwrap();
    }

    fn tempfile_dir() -> PathBuf {
        let dir = std::env::temp_dir().join(format!("sandbar-snap-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }
}
