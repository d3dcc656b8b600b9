//! Volumes as ext4 images: `<dir>/<id>/image.ext4` is a sparse file of the volume's size
//! limit, formatted with its root owned by uid/gid 1000 and loop-mounted at `<dir>/<id>/mnt`
//! (`nosuid`, `nodev`). A full volume answers ENOSPC to whoever writes in it, while the host
//! file system and other volumes keep their space.
//!
//! The host mount belongs to the server while it runs: [`VolumeStorage::ensure_mounted`] is
//! called for every volume at start and [`VolumeStorage::release_all`] unmounts at shutdown.
//! Sandboxes hold their own bind mounts of the file system, which keep the loop device alive
//! across a server restart; mounting again reuses that device (`losetup -j`), because two
//! loop devices over one image would be two independent ext4 instances of the same blocks.
//!
//! Host commands run through the process-wide [`Reaper`].

use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use super::reaper::Reaper;
use crate::volume::{check_id, VolumeError, VolumeStorage, VOLUME_OWNER};

/// Default size limit of a volume.
pub const DEFAULT_VOLUME_SIZE: u64 = 10 << 30;
/// Smallest volume mkfs.ext4 formats comfortably (with a journal).
pub const MIN_VOLUME_SIZE: u64 = 8 << 20;

const IMAGE: &str = "image.ext4";
const MOUNT: &str = "mnt";
/// `noinit_itable`: a fresh sparse image reads as zeros, so the kernel need not zero the
/// inode tables in the background (which would make the image lose its sparseness).
const MOUNT_OPTIONS: &str = "nosuid,nodev,noinit_itable";

pub struct LoopVolumes {
    dir: PathBuf,
    default_size: u64,
    reaper: Arc<Reaper>,
    /// Serialises mounts and unmounts, so two callers never attach one image twice.
    lock: tokio::sync::Mutex<()>,
}

impl LoopVolumes {
    /// `dir` holds one directory per volume; `default_size` applies when a create names none.
    pub fn new(dir: PathBuf, default_size: u64, reaper: Arc<Reaper>) -> Result<Self, VolumeError> {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .map_err(|source| VolumeError::CreateDir {
                path: dir.clone(),
                source,
            })?;
        Ok(Self {
            dir,
            default_size: default_size.max(MIN_VOLUME_SIZE),
            reaper,
            lock: tokio::sync::Mutex::new(()),
        })
    }

    /// Ids of every volume stored here.
    pub fn ids(&self) -> Vec<String> {
        std::fs::read_dir(&self.dir)
            .into_iter()
            .flatten()
            .filter_map(|e| e.ok())
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|id| check_id(id).is_ok())
            .collect()
    }

    async fn run(&self, program: &str, args: &[&str]) -> Result<String, VolumeError> {
        let command = format!("{program} {}", args.join(" "));
        let mut cmd = Command::new(program);
        cmd.args(args);
        let out = self
            .reaper
            .run(cmd, None)
            .await
            .map_err(|source| VolumeError::Spawn {
                command: command.clone(),
                source,
            })?;
        if out.code != 0 {
            return Err(VolumeError::Command {
                command,
                code: out.code,
                stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
            });
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    async fn format(&self, id: &str, size: u64) -> Result<(), VolumeError> {
        let vdir = self.dir.join(id);
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&vdir)
            .map_err(|source| VolumeError::CreateDir {
                path: vdir.clone(),
                source,
            })?;
        let image = vdir.join(IMAGE);
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&image)
            .and_then(|f| f.set_len(size))
            .map_err(|source| VolumeError::CreateImage {
                path: image.clone(),
                source,
            })?;
        let owner = format!("root_owner={VOLUME_OWNER}:{VOLUME_OWNER}");
        self.run(
            "mkfs.ext4",
            &["-q", "-F", "-m", "0", "-E", &owner, &path_str(&image)],
        )
        .await?;
        let mnt = vdir.join(MOUNT);
        std::fs::DirBuilder::new()
            .mode(0o755)
            .create(&mnt)
            .map_err(|source| VolumeError::CreateDir { path: mnt, source })
    }

    async fn mount(&self, id: &str) -> Result<(), VolumeError> {
        let vdir = self.dir.join(id);
        let mnt = vdir.join(MOUNT);
        if is_mount_point(&mnt)? {
            return Ok(());
        }
        let image = path_str(&vdir.join(IMAGE));
        let mnt = path_str(&mnt);
        // A loop device still attached to the image (a sandbox kept the file system alive
        // across a server restart) must be reused.
        let attached = self
            .run("losetup", &["-n", "-O", "NAME", "-j", &image])
            .await?;
        if let Some(device) = attached.lines().map(str::trim).find(|l| !l.is_empty()) {
            if self
                .run("mount", &["-t", "ext4", "-o", MOUNT_OPTIONS, device, &mnt])
                .await
                .is_ok()
            {
                return Ok(());
            }
            // The device was released between the two commands: attach a new one.
        }
        let options = format!("loop,{MOUNT_OPTIONS}");
        self.run("mount", &["-t", "ext4", "-o", &options, &image, &mnt])
            .await
            .map(drop)
    }

    async fn unmount(&self, mnt: &Path) -> Result<(), VolumeError> {
        if !is_mount_point(mnt)? {
            return Ok(());
        }
        let target = path_str(mnt);
        if self.run("umount", &[&target]).await.is_err() {
            // Busy (an open file of a request still finishing): detach now, release later.
            self.run("umount", &["-l", &target]).await?;
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl VolumeStorage for LoopVolumes {
    async fn create(&self, id: &str, size_bytes: Option<u64>) -> Result<(), VolumeError> {
        check_id(id)?;
        let size = size_bytes.unwrap_or(self.default_size).max(MIN_VOLUME_SIZE);
        let _guard = self.lock.lock().await;
        let result = match self.format(id, size).await {
            Ok(()) => self.mount(id).await,
            Err(e) => Err(e),
        };
        if result.is_err() {
            let _ = self.unmount(&self.root(id)).await;
            let _ = std::fs::remove_dir_all(self.dir.join(id));
        }
        result
    }

    async fn ensure_mounted(&self, id: &str) -> Result<(), VolumeError> {
        check_id(id)?;
        let _guard = self.lock.lock().await;
        self.mount(id).await
    }

    async fn delete(&self, id: &str) -> Result<(), VolumeError> {
        check_id(id)?;
        let _guard = self.lock.lock().await;
        let vdir = self.dir.join(id);
        if !vdir.exists() {
            return Ok(());
        }
        self.unmount(&vdir.join(MOUNT)).await?;
        std::fs::remove_dir_all(&vdir).map_err(|source| VolumeError::Remove { path: vdir, source })
    }

    async fn release_all(&self) {
        let _guard = self.lock.lock().await;
        for id in self.ids() {
            if let Err(e) = self.unmount(&self.root(&id)).await {
                tracing::warn!(volume = %id, error = %e, "failed to unmount volume");
            }
        }
    }

    fn root(&self, id: &str) -> PathBuf {
        self.dir.join(id).join(MOUNT)
    }
}

fn path_str(path: &Path) -> String {
    path.to_string_lossy().into_owned()
}

/// A mount point is on another device than its parent directory.
fn is_mount_point(path: &Path) -> Result<bool, VolumeError> {
    let inspect = |path: &Path| {
        std::fs::symlink_metadata(path).map_err(|source| VolumeError::Inspect {
            path: path.to_owned(),
            source,
        })
    };
    let parent = path.parent().unwrap_or(Path::new("/"));
    Ok(inspect(path)?.dev() != inspect(parent)?.dev())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usable() -> bool {
        rustix::process::geteuid().is_root()
            && Path::new("/sbin/mkfs.ext4").exists()
            && Path::new("/dev/loop-control").exists()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn create_mount_remount_delete() {
        if !usable() {
            eprintln!("skipped: needs root, mkfs.ext4 and loop devices");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let volumes = LoopVolumes::new(
            dir.path().join("volumes"),
            DEFAULT_VOLUME_SIZE,
            Reaper::start().unwrap(),
        )
        .unwrap();
        let id = "0b3c1a52-8a43-4a6e-9a8e-0f1f2a3b4c5d";
        volumes.create(id, Some(16 << 20)).await.unwrap();
        let root = volumes.root(id);
        let image = dir.path().join("volumes").join(id).join(IMAGE);
        assert_eq!(std::fs::metadata(&image).unwrap().len(), 16 << 20);
        let meta = std::fs::metadata(&root).unwrap();
        assert_eq!((meta.uid(), meta.gid()), (VOLUME_OWNER, VOLUME_OWNER));
        assert!(is_mount_point(&root).unwrap());
        std::fs::write(root.join("kept"), "data").unwrap();

        // Idempotent, then a real remount keeps the data.
        volumes.ensure_mounted(id).await.unwrap();
        volumes.release_all().await;
        assert!(!is_mount_point(&root).unwrap());
        volumes.ensure_mounted(id).await.unwrap();
        assert_eq!(std::fs::read_to_string(root.join("kept")).unwrap(), "data");

        // A full volume is ENOSPC for the writer only.
        let big = vec![0u8; 32 << 20];
        let err = std::fs::write(root.join("big"), &big).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::ENOSPC));

        volumes.delete(id).await.unwrap();
        assert!(!dir.path().join("volumes").join(id).exists());
        volumes.delete(id).await.unwrap();
    }
}
