//! [`VolumeFs`]: dav-server's file system interface over one volume's root directory.
//!
//! Every path is opened with `openat2(RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS |
//! RESOLVE_NO_XDEV)` from a descriptor of the root: `..` stops at the root and symlinks (which
//! sandboxes may plant) resolve as they would inside a sandbox that mounts the volume at `/`,
//! so no request reaches a host file outside the volume, whatever races a sandbox runs.
//! Entries are then acted on through descriptors (`mkdirat`, `unlinkat`, `renameat`, `fchown`)
//! relative to their resolved parent, never through host path strings.
//!
//! Files and directories created here are owned by [`VolumeFs::owner`] (the sandbox's default
//! user), so sandboxes can modify them. Only regular files are opened: FIFOs, sockets and
//! devices a sandbox may have created answer 403.

use std::ffi::OsString;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::{Buf, Bytes, BytesMut};
use dav_server::davpath::DavPath;
use dav_server::fs::{
    DavDirEntry, DavFile, DavFileSystem, DavMetaData, DavProp, FsError, FsFuture, FsResult,
    FsStream, OpenOptions, ReadDirMeta,
};
use futures_util::FutureExt;
use http::StatusCode;
use rustix::fs::{AtFlags, Gid, Mode, OFlags, ResolveFlags, Uid};

use crate::props;

/// Resolution of every client path: inside the root, no magic links, no other mounts.
const IN_ROOT: ResolveFlags = ResolveFlags::IN_ROOT
    .union(ResolveFlags::NO_MAGICLINKS)
    .union(ResolveFlags::NO_XDEV);

/// Entries of the volume root that belong to the file system, not to users.
const HIDDEN_AT_ROOT: &[&[u8]] = &[b"lost+found"];

/// One volume's files, rooted at a directory descriptor.
#[derive(Clone)]
pub struct VolumeFs {
    root: Arc<OwnedFd>,
    owner: u32,
}

impl VolumeFs {
    /// Opens `root` (a directory); new entries will belong to uid and gid `owner`.
    pub fn open(root: &Path, owner: u32) -> io::Result<Self> {
        let fd = rustix::fs::open(
            root,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        Ok(Self {
            root: Arc::new(fd),
            owner,
        })
    }

    fn resolve(&self, rel: &Path, flags: OFlags, mode: u32) -> io::Result<OwnedFd> {
        let rel = if rel.as_os_str().is_empty() {
            Path::new(".")
        } else {
            rel
        };
        Ok(rustix::fs::openat2(
            &*self.root,
            rel,
            flags | OFlags::CLOEXEC,
            Mode::from_raw_mode(mode),
            IN_ROOT,
        )?)
    }

    fn metadata_of(&self, rel: &Path, follow: bool) -> io::Result<std::fs::Metadata> {
        let mut flags = OFlags::PATH;
        if !follow {
            flags |= OFlags::NOFOLLOW;
        }
        File::from(self.resolve(rel, flags, 0)?).metadata()
    }

    /// The resolved parent directory of `rel` and the final name. The root has no parent.
    fn parent(&self, rel: &Path) -> io::Result<(OwnedFd, OsString)> {
        let name = rel
            .file_name()
            .ok_or_else(|| io::Error::from_raw_os_error(rustix::io::Errno::PERM.raw_os_error()))?;
        let parent = rel.parent().unwrap_or(Path::new(""));
        let fd = self.resolve(parent, OFlags::PATH | OFlags::DIRECTORY, 0)?;
        Ok((fd, name.to_owned()))
    }

    fn chown_fd(&self, fd: impl AsFd) -> io::Result<()> {
        rustix::fs::fchown(
            fd,
            Some(Uid::from_raw(self.owner)),
            Some(Gid::from_raw(self.owner)),
        )?;
        Ok(())
    }

    fn open_file(&self, rel: &Path, options: &OpenOptions) -> io::Result<File> {
        let mut flags = match (options.read, options.write || options.append) {
            (true, true) => OFlags::RDWR,
            (false, true) => OFlags::WRONLY,
            _ => OFlags::RDONLY,
        };
        if options.append {
            flags |= OFlags::APPEND;
        }
        if options.truncate {
            flags |= OFlags::TRUNC;
        }
        // A FIFO planted by a sandbox must not block the opener.
        flags |= OFlags::NONBLOCK;
        let (fd, created) = if options.create || options.create_new {
            match self.resolve(rel, flags | OFlags::CREATE | OFlags::EXCL, 0o644) {
                Ok(fd) => (fd, true),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists && !options.create_new => {
                    (self.resolve(rel, flags, 0)?, false)
                }
                Err(e) => return Err(e),
            }
        } else {
            (self.resolve(rel, flags, 0)?, false)
        };
        if created {
            self.chown_fd(&fd)?;
        }
        let file = File::from(fd);
        if !file.metadata()?.is_file() {
            return Err(io::Error::from_raw_os_error(
                rustix::io::Errno::ACCESS.raw_os_error(),
            ));
        }
        // Back to blocking reads and writes for the regular file.
        rustix::fs::fcntl_setfl(&file, rustix::fs::fcntl_getfl(&file)? - OFlags::NONBLOCK)?;
        Ok(file)
    }

    fn list(&self, rel: &Path, meta: ReadDirMeta) -> io::Result<Vec<Entry>> {
        let dir = self.resolve(rel, OFlags::RDONLY | OFlags::DIRECTORY, 0)?;
        let mut entries = Vec::new();
        for entry in rustix::fs::Dir::read_from(&dir)? {
            let entry = entry?;
            let name = entry.file_name().to_bytes();
            if name == b"." || name == b".." {
                continue;
            }
            if rel.as_os_str().is_empty() && HIDDEN_AT_ROOT.contains(&name) {
                continue;
            }
            let name = name.to_vec();
            let child = rel.join(std::ffi::OsStr::from_bytes(&name));
            let meta = self.metadata_of(&child, meta == ReadDirMeta::Data);
            entries.push(Entry { name, meta });
        }
        Ok(entries)
    }

    fn mkdir(&self, rel: &Path) -> io::Result<()> {
        let (parent, name) = self.parent(rel)?;
        rustix::fs::mkdirat(&parent, &name, Mode::from_raw_mode(0o755))?;
        rustix::fs::chownat(
            &parent,
            &name,
            Some(Uid::from_raw(self.owner)),
            Some(Gid::from_raw(self.owner)),
            AtFlags::SYMLINK_NOFOLLOW,
        )?;
        Ok(())
    }

    fn unlink(&self, rel: &Path, dir: bool) -> io::Result<()> {
        let (parent, name) = self.parent(rel)?;
        let flags = if dir {
            AtFlags::REMOVEDIR
        } else {
            AtFlags::empty()
        };
        Ok(rustix::fs::unlinkat(&parent, &name, flags)?)
    }

    fn rename_entry(&self, from: &Path, to: &Path) -> io::Result<()> {
        let (from_parent, from_name) = self.parent(from)?;
        let (to_parent, to_name) = self.parent(to)?;
        match rustix::fs::renameat(&from_parent, &from_name, &to_parent, &to_name) {
            Ok(()) => Ok(()),
            // WebDAV allows a collection to replace a file.
            Err(rustix::io::Errno::NOTDIR) => {
                let _ = rustix::fs::unlinkat(&to_parent, &to_name, AtFlags::empty());
                Ok(rustix::fs::renameat(
                    &from_parent,
                    &from_name,
                    &to_parent,
                    &to_name,
                )?)
            }
            Err(e) => Err(e.into()),
        }
    }

    fn copy_file(&self, from: &Path, to: &Path) -> io::Result<()> {
        let read = OpenOptions {
            read: true,
            ..OpenOptions::default()
        };
        let mut source = self.open_file(from, &read)?;
        let write = OpenOptions {
            write: true,
            create: true,
            truncate: true,
            ..OpenOptions::default()
        };
        let mut dest = self.open_file(to, &write)?;
        io::copy(&mut source, &mut dest)?;
        let mode = source.metadata()?.permissions().mode() & 0o777;
        dest.set_permissions(std::fs::Permissions::from_mode(mode))?;
        props::copy(&source, &dest)
    }

    fn proc_path(&self, rel: &Path) -> io::Result<(OwnedFd, PathBuf)> {
        let fd = self.resolve(rel, OFlags::PATH, 0)?;
        let path = props::fd_path(&fd);
        Ok((fd, path))
    }
}

/// Runs blocking file system work without stalling the async workers.
async fn blocking<F, R>(f: F) -> R
where
    F: FnOnce() -> R + Send + 'static,
    R: Send + 'static,
{
    match tokio::runtime::Handle::current().runtime_flavor() {
        tokio::runtime::RuntimeFlavor::MultiThread => tokio::task::block_in_place(f),
        _ => match tokio::task::spawn_blocking(f).await {
            Ok(value) => value,
            Err(e) => std::panic::resume_unwind(e.into_panic()),
        },
    }
}

/// Maps an OS error to the WebDAV status dav-server derives from it.
pub(crate) fn fs_error(e: io::Error) -> FsError {
    use rustix::io::Errno;
    let Some(code) = e.raw_os_error() else {
        return FsError::GeneralFailure;
    };
    match Errno::from_raw_os_error(code) {
        Errno::NOSPC | Errno::DQUOT | Errno::MLINK => FsError::InsufficientStorage,
        Errno::FBIG => FsError::TooLarge,
        Errno::ACCESS | Errno::PERM | Errno::ROFS | Errno::NOTDIR | Errno::ISDIR => {
            FsError::Forbidden
        }
        Errno::XDEV => FsError::Forbidden,
        Errno::NOTEMPTY | Errno::EXIST => FsError::Exists,
        Errno::LOOP => FsError::LoopDetected,
        Errno::NAMETOOLONG => FsError::PathTooLong,
        Errno::NOENT => FsError::NotFound,
        Errno::NOSYS | Errno::OPNOTSUPP => FsError::NotImplemented,
        _ => FsError::GeneralFailure,
    }
}

fn rel(path: &DavPath) -> PathBuf {
    path.as_rel_ospath().to_path_buf()
}

impl DavFileSystem for VolumeFs {
    fn open<'a>(
        &'a self,
        path: &'a DavPath,
        options: OpenOptions,
    ) -> FsFuture<'a, Box<dyn DavFile>> {
        let (fs, rel) = (self.clone(), rel(path));
        async move {
            let file = blocking(move || fs.open_file(&rel, &options))
                .await
                .map_err(fs_error)?;
            Ok(Box::new(VolumeFile {
                file: Arc::new(file),
            }) as Box<dyn DavFile>)
        }
        .boxed()
    }

    fn read_dir<'a>(
        &'a self,
        path: &'a DavPath,
        meta: ReadDirMeta,
    ) -> FsFuture<'a, FsStream<Box<dyn DavDirEntry>>> {
        let (fs, rel) = (self.clone(), rel(path));
        async move {
            let entries = blocking(move || fs.list(&rel, meta))
                .await
                .map_err(fs_error)?;
            let stream = futures_util::stream::iter(
                entries
                    .into_iter()
                    .map(|e| Ok(Box::new(e) as Box<dyn DavDirEntry>)),
            );
            Ok(Box::pin(stream) as FsStream<Box<dyn DavDirEntry>>)
        }
        .boxed()
    }

    fn metadata<'a>(&'a self, path: &'a DavPath) -> FsFuture<'a, Box<dyn DavMetaData>> {
        let (fs, rel) = (self.clone(), rel(path));
        async move {
            let meta = blocking(move || fs.metadata_of(&rel, true))
                .await
                .map_err(fs_error)?;
            Ok(Box::new(Meta(meta)) as Box<dyn DavMetaData>)
        }
        .boxed()
    }

    fn symlink_metadata<'a>(&'a self, path: &'a DavPath) -> FsFuture<'a, Box<dyn DavMetaData>> {
        let (fs, rel) = (self.clone(), rel(path));
        async move {
            let meta = blocking(move || fs.metadata_of(&rel, false))
                .await
                .map_err(fs_error)?;
            Ok(Box::new(Meta(meta)) as Box<dyn DavMetaData>)
        }
        .boxed()
    }

    fn create_dir<'a>(&'a self, path: &'a DavPath) -> FsFuture<'a, ()> {
        let (fs, rel) = (self.clone(), rel(path));
        async move { blocking(move || fs.mkdir(&rel)).await.map_err(fs_error) }.boxed()
    }

    fn remove_dir<'a>(&'a self, path: &'a DavPath) -> FsFuture<'a, ()> {
        let (fs, rel) = (self.clone(), rel(path));
        async move {
            blocking(move || fs.unlink(&rel, true))
                .await
                .map_err(fs_error)
        }
        .boxed()
    }

    fn remove_file<'a>(&'a self, path: &'a DavPath) -> FsFuture<'a, ()> {
        let (fs, rel) = (self.clone(), rel(path));
        async move {
            blocking(move || fs.unlink(&rel, false))
                .await
                .map_err(fs_error)
        }
        .boxed()
    }

    fn rename<'a>(&'a self, from: &'a DavPath, to: &'a DavPath) -> FsFuture<'a, ()> {
        let (fs, from, to) = (self.clone(), rel(from), rel(to));
        async move {
            blocking(move || fs.rename_entry(&from, &to))
                .await
                .map_err(fs_error)
        }
        .boxed()
    }

    fn copy<'a>(&'a self, from: &'a DavPath, to: &'a DavPath) -> FsFuture<'a, ()> {
        let (fs, from, to) = (self.clone(), rel(from), rel(to));
        async move {
            blocking(move || fs.copy_file(&from, &to))
                .await
                .map_err(fs_error)
        }
        .boxed()
    }

    fn have_props<'a>(
        &'a self,
        _path: &'a DavPath,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = bool> + Send + 'a>> {
        Box::pin(std::future::ready(true))
    }

    fn patch_props<'a>(
        &'a self,
        path: &'a DavPath,
        patch: Vec<(bool, DavProp)>,
    ) -> FsFuture<'a, Vec<(StatusCode, DavProp)>> {
        let (fs, rel) = (self.clone(), rel(path));
        async move {
            blocking(move || {
                let (_fd, path) = fs.proc_path(&rel)?;
                props::patch(&path, patch)
            })
            .await
            .map_err(fs_error)
        }
        .boxed()
    }

    fn get_props<'a>(&'a self, path: &'a DavPath, do_content: bool) -> FsFuture<'a, Vec<DavProp>> {
        let (fs, rel) = (self.clone(), rel(path));
        async move {
            blocking(move || {
                let (_fd, path) = fs.proc_path(&rel)?;
                props::list(&path, do_content)
            })
            .await
            .map_err(fs_error)
        }
        .boxed()
    }

    fn get_prop<'a>(&'a self, path: &'a DavPath, prop: DavProp) -> FsFuture<'a, Vec<u8>> {
        let (fs, rel) = (self.clone(), rel(path));
        async move {
            let found = blocking(move || {
                let (_fd, path) = fs.proc_path(&rel)?;
                props::get(&path, &prop)
            })
            .await
            .map_err(fs_error)?;
            found.ok_or(FsError::NotFound)
        }
        .boxed()
    }

    fn get_quota(&self) -> FsFuture<'_, (u64, Option<u64>)> {
        let root = self.root.clone();
        async move {
            let st = rustix::fs::fstatvfs(&*root).map_err(|e| fs_error(e.into()))?;
            let total = st.f_blocks * st.f_frsize;
            let used = (st.f_blocks - st.f_bfree) * st.f_frsize;
            Ok((used, Some(total)))
        }
        .boxed()
    }
}

/// A directory entry with its metadata read while listing.
struct Entry {
    name: Vec<u8>,
    meta: io::Result<std::fs::Metadata>,
}

impl DavDirEntry for Entry {
    fn name(&self) -> Vec<u8> {
        self.name.clone()
    }

    fn metadata(&self) -> FsFuture<'_, Box<dyn DavMetaData>> {
        let meta = match &self.meta {
            Ok(meta) => Ok(Box::new(Meta(meta.clone())) as Box<dyn DavMetaData>),
            Err(e) => Err(fs_error(io::Error::from_raw_os_error(
                e.raw_os_error()
                    .unwrap_or(rustix::io::Errno::IO.raw_os_error()),
            ))),
        };
        Box::pin(std::future::ready(meta))
    }
}

/// An open regular file. Reads and writes go straight to the file: large bodies stream
/// through in chunks and are never held in memory.
#[derive(Debug)]
struct VolumeFile {
    file: Arc<File>,
}

impl DavFile for VolumeFile {
    fn metadata(&mut self) -> FsFuture<'_, Box<dyn DavMetaData>> {
        let file = self.file.clone();
        async move {
            let meta = blocking(move || file.metadata()).await.map_err(fs_error)?;
            Ok(Box::new(Meta(meta)) as Box<dyn DavMetaData>)
        }
        .boxed()
    }

    fn write_buf(&mut self, mut buf: Box<dyn Buf + Send>) -> FsFuture<'_, ()> {
        let file = self.file.clone();
        async move {
            blocking(move || {
                while buf.has_remaining() {
                    let n = (&*file).write(buf.chunk())?;
                    if n == 0 {
                        return Err(io::ErrorKind::WriteZero.into());
                    }
                    buf.advance(n);
                }
                Ok(())
            })
            .await
            .map_err(fs_error)
        }
        .boxed()
    }

    fn write_bytes(&mut self, buf: Bytes) -> FsFuture<'_, ()> {
        let file = self.file.clone();
        async move {
            blocking(move || (&*file).write_all(&buf))
                .await
                .map_err(fs_error)
        }
        .boxed()
    }

    fn read_bytes(&mut self, count: usize) -> FsFuture<'_, Bytes> {
        let file = self.file.clone();
        async move {
            blocking(move || {
                let mut buf = BytesMut::zeroed(count);
                let n = (&*file).read(&mut buf)?;
                buf.truncate(n);
                Ok(buf.freeze())
            })
            .await
            .map_err(fs_error)
        }
        .boxed()
    }

    fn seek(&mut self, pos: SeekFrom) -> FsFuture<'_, u64> {
        let file = self.file.clone();
        async move { blocking(move || (&*file).seek(pos)).await.map_err(fs_error) }.boxed()
    }

    fn flush(&mut self) -> FsFuture<'_, ()> {
        Box::pin(std::future::ready(Ok(())))
    }
}

#[derive(Debug, Clone)]
struct Meta(std::fs::Metadata);

impl DavMetaData for Meta {
    fn len(&self) -> u64 {
        self.0.len()
    }

    fn modified(&self) -> FsResult<SystemTime> {
        self.0.modified().map_err(fs_error)
    }

    fn accessed(&self) -> FsResult<SystemTime> {
        self.0.accessed().map_err(fs_error)
    }

    fn created(&self) -> FsResult<SystemTime> {
        self.0.created().map_err(fs_error)
    }

    fn status_changed(&self) -> FsResult<SystemTime> {
        let secs = u64::try_from(self.0.ctime()).unwrap_or(0);
        Ok(UNIX_EPOCH + Duration::new(secs, 0))
    }

    fn is_dir(&self) -> bool {
        self.0.is_dir()
    }

    fn is_file(&self) -> bool {
        self.0.is_file()
    }

    fn is_symlink(&self) -> bool {
        self.0.file_type().is_symlink()
    }

    fn executable(&self) -> FsResult<bool> {
        if self.0.is_file() {
            Ok(self.0.permissions().mode() & 0o100 != 0)
        } else {
            Err(FsError::NotImplemented)
        }
    }

    /// Apache's format: inode, size (files) and modification time in microseconds.
    fn etag(&self) -> Option<String> {
        let t = self.0.modified().ok()?.duration_since(UNIX_EPOCH).ok()?;
        let t = t.as_secs() * 1_000_000 + u64::from(t.subsec_micros());
        Some(if self.0.is_file() {
            format!("{:x}-{:x}-{:x}", self.0.ino(), self.0.len(), t)
        } else {
            format!("{:x}-{:x}", self.0.ino(), t)
        })
    }
}
