//! Volume storage: where a volume's files live on the host, and how that storage is created,
//! made available and removed. The native backend stores each volume in its own ext4 image
//! ([`crate::native::volume::LoopVolumes`]); [`DirVolumes`] keeps plain directories (no size
//! limit) for runtimes without loop devices and for tests.
//!
//! Files are stored with the ids they have *inside* a sandbox (uid/gid 1000 is the default
//! user `daytona`): sandboxes attach volumes through an idmapped bind mount.

use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use rustix::fs::{Mode, OFlags, ResolveFlags};

/// Owner of a volume's root and of everything Sandbar creates in it: the sandbox's default
/// user (`daytona`, uid and gid 1000).
pub const VOLUME_OWNER: u32 = 1000;

#[derive(Debug, thiserror::Error)]
pub enum VolumeError {
    #[error("invalid volume id {0:?}")]
    InvalidId(String),
    #[error("failed to create {path}")]
    CreateDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("failed to create the volume image {path}")]
    CreateImage {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("failed to run {command}")]
    Spawn {
        command: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{command} exited with status {code}: {stderr}")]
    Command {
        command: String,
        code: i32,
        stderr: String,
    },
    #[error("failed to inspect {path}")]
    Inspect {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("failed to remove {path}")]
    Remove {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("failed to create sub-path {subpath:?} inside the volume")]
    Subpath {
        subpath: String,
        #[source]
        source: std::io::Error,
    },
}

/// How a runtime stores volumes. Every method is idempotent.
#[async_trait::async_trait]
pub trait VolumeStorage: Send + Sync + 'static {
    /// Creates the storage of volume `id`, with room for `size_bytes` (`None`: the backend's
    /// default), and makes it available at [`VolumeStorage::root`].
    async fn create(&self, id: &str, size_bytes: Option<u64>) -> Result<(), VolumeError>;

    /// Makes an existing volume available at its root (after a restart, a crash, a shutdown).
    async fn ensure_mounted(&self, id: &str) -> Result<(), VolumeError>;

    /// Removes the volume and its data.
    async fn delete(&self, id: &str) -> Result<(), VolumeError>;

    /// Releases host resources of every volume (unmounts), at server shutdown. Sandboxes that
    /// still run keep their own view of their volumes.
    async fn release_all(&self);

    /// The directory holding the volume's files (what sandboxes and WebDAV see as `/`).
    fn root(&self, id: &str) -> PathBuf;
}

/// Volume ids name host directories: only UUID characters are accepted.
pub fn check_id(id: &str) -> Result<(), VolumeError> {
    if id.is_empty() || id.len() > 64 || !id.chars().all(|c| c.is_ascii_hexdigit() || c == '-') {
        return Err(VolumeError::InvalidId(id.to_owned()));
    }
    Ok(())
}

/// Plain directories `<dir>/<id>/mnt`, without a size limit.
#[derive(Debug, Clone)]
pub struct DirVolumes {
    dir: PathBuf,
}

impl DirVolumes {
    pub fn new(dir: PathBuf) -> Self {
        Self { dir }
    }
}

#[async_trait::async_trait]
impl VolumeStorage for DirVolumes {
    async fn create(&self, id: &str, _size_bytes: Option<u64>) -> Result<(), VolumeError> {
        self.ensure_mounted(id).await
    }

    async fn ensure_mounted(&self, id: &str) -> Result<(), VolumeError> {
        check_id(id)?;
        let root = self.root(id);
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(&root)
            .and_then(|()| {
                std::os::unix::fs::chown(&root, Some(VOLUME_OWNER), Some(VOLUME_OWNER))
                    .or_else(permission_is_fine)
            })
            .map_err(|source| VolumeError::CreateDir { path: root, source })
    }

    async fn delete(&self, id: &str) -> Result<(), VolumeError> {
        check_id(id)?;
        let path = self.dir.join(id);
        match std::fs::remove_dir_all(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(VolumeError::Remove { path, source: e })
            }
            _ => Ok(()),
        }
    }

    async fn release_all(&self) {}

    fn root(&self, id: &str) -> PathBuf {
        self.dir.join(id).join("mnt")
    }
}

/// Unprivileged test runs cannot chown; the directory still works for them.
fn permission_is_fine(e: std::io::Error) -> std::io::Result<()> {
    if e.kind() == std::io::ErrorKind::PermissionDenied {
        Ok(())
    } else {
        Err(e)
    }
}

/// Resolution flags for every path taken from a client or a sandbox: symlinks are followed as
/// if `root` were `/` (the way a sandbox sees them), never above it, never through
/// `/proc`-style magic links or onto another mount.
pub const IN_ROOT: ResolveFlags = ResolveFlags::IN_ROOT
    .union(ResolveFlags::NO_MAGICLINKS)
    .union(ResolveFlags::NO_XDEV);

/// Opens `rel` (relative, `/`-separated) inside the directory `root`, see [`IN_ROOT`].
pub fn open_in_root(root: impl AsFd, rel: &Path, flags: OFlags) -> std::io::Result<OwnedFd> {
    let rel = if rel.as_os_str().is_empty() {
        Path::new(".")
    } else {
        rel
    };
    rustix::fs::openat2(root, rel, flags | OFlags::CLOEXEC, Mode::empty(), IN_ROOT)
        .map_err(std::io::Error::from)
}

/// Creates the directory `subpath` (relative, validated by the caller) inside the volume root
/// `root`, each missing component owned by [`VOLUME_OWNER`]. Symlinks met on the way are
/// resolved inside the volume, so the result can never be a host directory outside it.
pub fn create_subpath(root: &Path, subpath: &str) -> Result<(), VolumeError> {
    let err = |source: std::io::Error| VolumeError::Subpath {
        subpath: subpath.to_owned(),
        source,
    };
    let root_fd = rustix::fs::open(
        root,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| err(e.into()))?;
    let mut done = PathBuf::new();
    for part in subpath.split('/').filter(|p| !p.is_empty()) {
        let parent =
            open_in_root(&root_fd, &done, OFlags::PATH | OFlags::DIRECTORY).map_err(err)?;
        done.push(part);
        match open_in_root(&root_fd, &done, OFlags::PATH | OFlags::DIRECTORY) {
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(err(e)),
        }
        match rustix::fs::mkdirat(&parent, part, Mode::from_raw_mode(0o755)) {
            Ok(()) => rustix::fs::chownat(
                &parent,
                part,
                Some(rustix::fs::Uid::from_raw(VOLUME_OWNER)),
                Some(rustix::fs::Gid::from_raw(VOLUME_OWNER)),
                rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
            )
            .map_err(|e| err(e.into()))?,
            Err(rustix::io::Errno::EXIST) => {}
            Err(e) => return Err(err(e.into())),
        }
        // A dangling symlink in the way makes this fail instead of creating anything.
        open_in_root(&root_fd, &done, OFlags::PATH | OFlags::DIRECTORY).map_err(err)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_uuid_characters() {
        assert!(check_id("0b3c1a52-8a43-4a6e-9a8e-0f1f2a3b4c5d").is_ok());
        for bad in ["", "..", "a/b", "x y", "../etc"] {
            assert!(check_id(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn subpaths_stay_inside_the_volume() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("vol");
        let outside = dir.path().join("outside");
        std::fs::create_dir_all(&root).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        std::os::unix::fs::symlink(&outside, root.join("escape")).unwrap();
        std::os::unix::fs::symlink("/../../..", root.join("up")).unwrap();

        create_subpath(&root, "a/b/c").unwrap();
        assert!(root.join("a/b/c").is_dir());

        // `escape` points at an absolute host path: resolved inside the volume, where it
        // does not exist, so nothing is created outside.
        let _ = create_subpath(&root, "escape/x");
        assert!(!outside.join("x").exists());

        // `up` climbs above `/`: it stays at the volume root.
        create_subpath(&root, "up/y").unwrap();
        assert!(root.join("y").is_dir());
        assert!(!dir.path().join("y").exists());
    }
}
