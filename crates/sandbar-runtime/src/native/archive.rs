//! Archiving a stopped sandbox's writable layer (`upper*` directories) into one compressed
//! file, and restoring it before the next start.
//!
//! Format: a tar stream (GNU headers for long names, a PAX `x` header before every entry that
//! carries extended attributes as `SANDBAR.xattr.<name>=<hex value>`: overlayfs values are
//! binary file handles that may hold a newline, which the tar crate's PAX reader splits on)
//! compressed with zstd, stored as
//! `<sandbox dir>/layer.tar.zst`. Everything overlayfs relies on is kept: modes, owners (the
//! sandbox's host uid range), mtimes, symlinks, hard links, fifos, device nodes (whiteouts are
//! character devices 0/0) and `trusted.overlay.*` xattrs (opaque directories). Sockets are
//! skipped (they cannot outlive their process); sparse files are stored dense.
//!
//! The tar crate's own unpacker writes device nodes and fifos as regular files, so extraction
//! is done here entry by entry.
//!
//! Crash safety rests on one rule: **when `layer.tar.zst` exists it is complete and it is the
//! sandbox's layer**; `upper*`/`work*` directories next to it are redundant. Hence:
//! - [`write`]: `layer.tar.zst.tmp` → fsync → rename → fsync of the directory; the layer is
//!   untouched (the caller records the state, then calls [`drop_layer`]);
//! - [`drop_layer`]: removes the layer directories, only when the archive exists;
//! - [`restore`]: extracts into `restore.tmp/`, replaces the layer directories by renames,
//!   fsyncs, and only then deletes the archive;
//! - [`settle`]: removes temporary files of an interrupted write or restore.
//!
//! A kill at any point leaves either the layer or a complete archive (or both).

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::{self, File};
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use nix::sys::stat::{mknod, utimensat, Mode, SFlag, UtimensatFlags};
use nix::sys::time::TimeSpec;
use tar::{EntryType, Header};

/// File name of a complete archive inside the sandbox directory.
pub const ARCHIVE_FILE: &str = "layer.tar.zst";
const ARCHIVE_TMP: &str = "layer.tar.zst.tmp";
const RESTORE_TMP: &str = "restore.tmp";
/// Directories that make up the writable layer (those that exist are archived).
pub const LAYER_DIRS: [&str; 2] = ["upper", "upper-usr"];
/// Overlay work directories: scratch space, dropped with the layer and recreated at start.
const WORK_DIRS: [&str; 2] = ["work", "work-usr"];
const ZSTD_LEVEL: i32 = 3;
const XATTR_PREFIX: &str = "SANDBAR.xattr.";

#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("failed to read {path} for the archive")]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("failed to write the archive {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("failed to read the archive {path}")]
    ReadArchive {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("archive entry {entry:?} is not a relative path inside the layer")]
    BadEntry { entry: String },
    #[error("failed to restore {path}")]
    Extract {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("failed to remove {path}")]
    Remove {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("refusing to drop the layer of {dir}: no complete archive")]
    NoArchive { dir: PathBuf },
}

fn read_err(path: &Path) -> impl FnOnce(io::Error) -> ArchiveError + '_ {
    move |source| ArchiveError::Read {
        path: path.to_owned(),
        source,
    }
}

fn extract_err(path: &Path) -> impl FnOnce(io::Error) -> ArchiveError + '_ {
    move |source| ArchiveError::Extract {
        path: path.to_owned(),
        source,
    }
}

fn nix_io(err: nix::Error) -> io::Error {
    io::Error::from_raw_os_error(err as i32)
}

/// True when a complete archive exists in `dir`.
pub fn exists(dir: &Path) -> bool {
    dir.join(ARCHIVE_FILE).is_file()
}

/// Size in bytes of the complete archive, if any.
pub fn size(dir: &Path) -> Option<u64> {
    fs::metadata(dir.join(ARCHIVE_FILE)).ok().map(|m| m.len())
}

/// Removes what an interrupted [`write`] or [`restore`] left (never the archive itself).
pub fn settle(dir: &Path) -> Result<(), ArchiveError> {
    remove_file_if_exists(&dir.join(ARCHIVE_TMP))?;
    remove_dir_if_exists(&dir.join(RESTORE_TMP))
}

/// Writes the layer directories of `dir` into a complete, durable `layer.tar.zst` and returns
/// its size. The layer itself is left in place.
pub fn write(dir: &Path) -> Result<u64, ArchiveError> {
    settle(dir)?;
    let tmp = dir.join(ARCHIVE_TMP);
    let write_err = |source| ArchiveError::Write {
        path: tmp.clone(),
        source,
    };
    let file = File::create(&tmp).map_err(write_err)?;
    let encoder = zstd::Encoder::new(BufWriter::new(file), ZSTD_LEVEL).map_err(write_err)?;
    let mut builder = tar::Builder::new(encoder);
    let mut links = HashMap::new();
    for name in LAYER_DIRS {
        let root = dir.join(name);
        if root.is_dir() {
            append_tree(&mut builder, &root, Path::new(name), &mut links)?;
        }
    }
    let encoder = builder.into_inner().map_err(write_err)?;
    let writer = encoder.finish().map_err(write_err)?;
    let file = writer.into_inner().map_err(|e| write_err(e.into_error()))?;
    file.sync_all().map_err(write_err)?;
    let len = file.metadata().map_err(write_err)?.len();
    drop(file);
    let done = dir.join(ARCHIVE_FILE);
    fs::rename(&tmp, &done).map_err(|source| ArchiveError::Write {
        path: done.clone(),
        source,
    })?;
    sync_dir(dir).map_err(|source| ArchiveError::Write { path: done, source })?;
    Ok(len)
}

/// Removes the layer (and work) directories; only allowed once a complete archive exists.
pub fn drop_layer(dir: &Path) -> Result<(), ArchiveError> {
    if !exists(dir) {
        return Err(ArchiveError::NoArchive {
            dir: dir.to_owned(),
        });
    }
    for name in LAYER_DIRS.iter().chain(WORK_DIRS.iter()) {
        remove_dir_if_exists(&dir.join(name))?;
    }
    Ok(())
}

/// Restores the layer from the archive when there is one (replacing whatever layer
/// directories exist), then deletes the archive. Returns whether anything was restored.
pub fn restore(dir: &Path) -> Result<bool, ArchiveError> {
    settle(dir)?;
    let archive = dir.join(ARCHIVE_FILE);
    if !archive.is_file() {
        return Ok(false);
    }
    let staging = dir.join(RESTORE_TMP);
    fs::create_dir(&staging).map_err(extract_err(&staging))?;
    extract(&archive, &staging)?;
    for name in LAYER_DIRS.iter().chain(WORK_DIRS.iter()) {
        remove_dir_if_exists(&dir.join(name))?;
    }
    for name in LAYER_DIRS {
        let from = staging.join(name);
        if from.exists() {
            let to = dir.join(name);
            fs::rename(&from, &to).map_err(extract_err(&to))?;
        }
    }
    sync_dir(dir).map_err(extract_err(dir))?;
    remove_dir_if_exists(&staging)?;
    remove_file_if_exists(&archive)?;
    sync_dir(dir).map_err(extract_err(dir))?;
    Ok(true)
}

/// Bytes the layer takes on disk: the archive when archived, else the layer directories
/// (allocated blocks, hard links counted once).
pub fn disk_usage(dir: &Path) -> u64 {
    if let Some(size) = size(dir) {
        return size;
    }
    let mut seen = std::collections::HashSet::new();
    let mut total = 0;
    let mut stack: Vec<PathBuf> = LAYER_DIRS.iter().map(|n| dir.join(n)).collect();
    while let Some(path) = stack.pop() {
        let Ok(meta) = fs::symlink_metadata(&path) else {
            continue;
        };
        if meta.nlink() > 1 && !meta.is_dir() && !seen.insert((meta.dev(), meta.ino())) {
            continue;
        }
        total += meta.blocks() * 512;
        if meta.is_dir() {
            if let Ok(entries) = fs::read_dir(&path) {
                stack.extend(entries.filter_map(|e| e.ok()).map(|e| e.path()));
            }
        }
    }
    total
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

fn remove_file_if_exists(path: &Path) -> Result<(), ArchiveError> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(ArchiveError::Remove {
            path: path.to_owned(),
            source: e,
        }),
        _ => Ok(()),
    }
}

fn remove_dir_if_exists(path: &Path) -> Result<(), ArchiveError> {
    match fs::remove_dir_all(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(ArchiveError::Remove {
            path: path.to_owned(),
            source: e,
        }),
        _ => Ok(()),
    }
}

type Links = HashMap<(u64, u64), PathBuf>;

/// Appends `path` (stored as `name`) and, for a directory, everything below it.
fn append_tree<W: Write>(
    builder: &mut tar::Builder<W>,
    path: &Path,
    name: &Path,
    links: &mut Links,
) -> Result<(), ArchiveError> {
    let meta = fs::symlink_metadata(path).map_err(read_err(path))?;
    let kind = meta.file_type();
    if kind.is_socket() {
        return Ok(());
    }
    let xattrs = read_xattrs(path)?;
    if !xattrs.is_empty() {
        append_pax(builder, &xattrs).map_err(read_err(path))?;
    }
    let mut header = Header::new_gnu();
    header.set_mode(meta.mode() & 0o7777);
    header.set_uid(u64::from(meta.uid()));
    header.set_gid(u64::from(meta.gid()));
    header.set_mtime(u64::try_from(meta.mtime()).unwrap_or(0));
    header.set_size(0);
    if !kind.is_dir() && meta.nlink() > 1 {
        let key = (meta.dev(), meta.ino());
        if let Some(first) = links.get(&key) {
            header.set_entry_type(EntryType::Link);
            return builder
                .append_link(&mut header, name, first)
                .map_err(read_err(path));
        }
        links.insert(key, name.to_owned());
    }
    if kind.is_dir() {
        header.set_entry_type(EntryType::Directory);
        builder
            .append_data(&mut header, name, io::empty())
            .map_err(read_err(path))?;
        let mut children: Vec<_> = fs::read_dir(path)
            .map_err(read_err(path))?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<Result<_, _>>()
            .map_err(read_err(path))?;
        children.sort();
        for child in children {
            append_tree(builder, &path.join(&child), &name.join(&child), links)?;
        }
        Ok(())
    } else if kind.is_file() {
        header.set_entry_type(EntryType::Regular);
        header.set_size(meta.len());
        let file = File::open(path).map_err(read_err(path))?;
        builder
            .append_data(&mut header, name, BufReader::new(file).take(meta.len()))
            .map_err(read_err(path))
    } else if kind.is_symlink() {
        header.set_entry_type(EntryType::Symlink);
        let target = fs::read_link(path).map_err(read_err(path))?;
        builder
            .append_link(&mut header, name, target)
            .map_err(read_err(path))
    } else {
        let entry_type = if kind.is_char_device() {
            EntryType::Char
        } else if kind.is_block_device() {
            EntryType::Block
        } else {
            EntryType::Fifo
        };
        header.set_entry_type(entry_type);
        let rdev = meta.rdev();
        header
            .set_device_major(nix::sys::stat::major(rdev) as u32)
            .map_err(read_err(path))?;
        header
            .set_device_minor(nix::sys::stat::minor(rdev) as u32)
            .map_err(read_err(path))?;
        builder
            .append_data(&mut header, name, io::empty())
            .map_err(read_err(path))
    }
}

fn read_xattrs(path: &Path) -> Result<Vec<(String, Vec<u8>)>, ArchiveError> {
    let mut out = Vec::new();
    let names = match xattr::list(path) {
        Ok(names) => names,
        Err(e) if e.raw_os_error() == Some(libc::ENOTSUP) => return Ok(out),
        Err(e) => return Err(read_err(path)(e)),
    };
    for name in names {
        let Some(text) = name.to_str() else { continue };
        if let Some(value) = xattr::get(path, &name).map_err(read_err(path))? {
            out.push((text.to_owned(), value));
        }
    }
    out.sort();
    Ok(out)
}

/// One PAX extended header (`x`) carrying `SCHILY.xattr.*` records for the next entry.
fn append_pax<W: Write>(
    builder: &mut tar::Builder<W>,
    xattrs: &[(String, Vec<u8>)],
) -> io::Result<()> {
    let mut data = Vec::new();
    for (name, value) in xattrs {
        let value = hex_encode(value);
        let body_len = 1 + XATTR_PREFIX.len() + name.len() + 1 + value.len() + 1;
        // The length counts its own digits: find the fixed point.
        let mut len = body_len + 1;
        while len != body_len + len.to_string().len() {
            len = body_len + len.to_string().len();
        }
        data.extend_from_slice(format!("{len} {XATTR_PREFIX}{name}=").as_bytes());
        data.extend_from_slice(value.as_bytes());
        data.push(b'\n');
    }
    let mut header = Header::new_ustar();
    header.set_entry_type(EntryType::XHeader);
    header.set_mode(0o644);
    header.set_size(data.len() as u64);
    builder.append_data(&mut header, "PaxHeaders/xattrs", data.as_slice())
}

fn hex_encode(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn hex_decode(text: &[u8]) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    text.chunks(2)
        .map(|pair| u8::from_str_radix(std::str::from_utf8(pair).ok()?, 16).ok())
        .collect()
}

/// A relative path of the archive, made of normal components only.
fn safe_relative(bytes: &[u8]) -> Result<PathBuf, ArchiveError> {
    let path = Path::new(OsStr::from_bytes(bytes));
    let bad = || ArchiveError::BadEntry {
        entry: String::from_utf8_lossy(bytes).into_owned(),
    };
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::Normal(part) => out.push(part),
            Component::CurDir => {}
            _ => return Err(bad()),
        }
    }
    if out.as_os_str().is_empty() {
        return Err(bad());
    }
    Ok(out)
}

/// Extracts `archive` into the empty directory `into`.
fn extract(archive: &Path, into: &Path) -> Result<(), ArchiveError> {
    let archive_err = |source| ArchiveError::ReadArchive {
        path: archive.to_owned(),
        source,
    };
    let file = File::open(archive).map_err(archive_err)?;
    let decoder = zstd::Decoder::new(file).map_err(archive_err)?;
    let mut tar = tar::Archive::new(decoder);
    // Directory times are set last: creating children changes them.
    let mut dir_times = Vec::new();
    for entry in tar.entries().map_err(archive_err)? {
        let mut entry = entry.map_err(archive_err)?;
        let relative = safe_relative(&entry.path_bytes())?;
        let dst = into.join(&relative);
        let mut xattrs = Vec::new();
        if let Some(extensions) = entry.pax_extensions().map_err(archive_err)? {
            for extension in extensions {
                let extension = extension.map_err(archive_err)?;
                if let Some(name) = extension.key_bytes().strip_prefix(XATTR_PREFIX.as_bytes()) {
                    let value = hex_decode(extension.value_bytes()).ok_or_else(|| {
                        ArchiveError::BadEntry {
                            entry: relative.display().to_string(),
                        }
                    })?;
                    xattrs.push((OsStr::from_bytes(name).to_owned(), value));
                }
            }
        }
        let header = entry.header().clone();
        let mode = header.mode().map_err(archive_err)? & 0o7777;
        let uid = header.uid().map_err(archive_err)? as u32;
        let gid = header.gid().map_err(archive_err)? as u32;
        let mtime = header.mtime().map_err(archive_err)? as i64;
        let kind = header.entry_type();
        let err = extract_err(&dst);
        match kind {
            EntryType::Directory => {
                fs::create_dir(&dst).map_err(err)?;
                dir_times.push((dst.clone(), mtime));
            }
            EntryType::Regular | EntryType::Continuous => {
                let mut out = fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .open(&dst)
                    .map_err(extract_err(&dst))?;
                io::copy(&mut entry, &mut out).map_err(extract_err(&dst))?;
            }
            EntryType::Symlink => {
                let target = entry
                    .link_name_bytes()
                    .ok_or_else(|| ArchiveError::BadEntry {
                        entry: relative.display().to_string(),
                    })?;
                std::os::unix::fs::symlink(OsStr::from_bytes(&target), &dst).map_err(err)?;
            }
            EntryType::Link => {
                let target = entry
                    .link_name_bytes()
                    .ok_or_else(|| ArchiveError::BadEntry {
                        entry: relative.display().to_string(),
                    })?;
                let target = into.join(safe_relative(&target)?);
                fs::hard_link(&target, &dst).map_err(err)?;
                // Metadata belongs to the inode, already restored with the first name.
                continue;
            }
            EntryType::Char | EntryType::Block | EntryType::Fifo => {
                let flag = match kind {
                    EntryType::Char => SFlag::S_IFCHR,
                    EntryType::Block => SFlag::S_IFBLK,
                    _ => SFlag::S_IFIFO,
                };
                let major = header.device_major().map_err(archive_err)?.unwrap_or(0);
                let minor = header.device_minor().map_err(archive_err)?.unwrap_or(0);
                let dev = nix::sys::stat::makedev(u64::from(major), u64::from(minor));
                mknod(&dst, flag, Mode::from_bits_truncate(mode), dev)
                    .map_err(|e| extract_err(&dst)(nix_io(e)))?;
            }
            // PAX/GNU extension headers are consumed by the reader; nothing else is written.
            _ => continue,
        }
        let err = extract_err(&dst);
        std::os::unix::fs::lchown(&dst, Some(uid), Some(gid)).map_err(err)?;
        if kind != EntryType::Symlink {
            // After chown, which clears set-id bits.
            fs::set_permissions(&dst, fs::Permissions::from_mode(mode))
                .map_err(extract_err(&dst))?;
        }
        for (name, value) in &xattrs {
            xattr::set(&dst, name, value).map_err(extract_err(&dst))?;
        }
        if kind != EntryType::Directory {
            set_mtime(&dst, mtime).map_err(extract_err(&dst))?;
        }
    }
    for (dir, mtime) in dir_times.iter().rev() {
        set_mtime(dir, *mtime).map_err(extract_err(dir))?;
    }
    Ok(())
}

fn set_mtime(path: &Path, mtime: i64) -> io::Result<()> {
    let time = TimeSpec::new(mtime, 0);
    utimensat(None, path, &time, &time, UtimensatFlags::NoFollowSymlink).map_err(nix_io)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn tree(dir: &Path) -> Vec<(String, u32, u32, u32, String)> {
        let mut out = Vec::new();
        let mut stack = vec![dir.to_owned()];
        while let Some(path) = stack.pop() {
            let meta = fs::symlink_metadata(&path).unwrap();
            let content = if meta.is_file() {
                String::from_utf8_lossy(&fs::read(&path).unwrap()).into_owned()
            } else if meta.file_type().is_symlink() {
                fs::read_link(&path).unwrap().display().to_string()
            } else if meta.is_dir() {
                stack.extend(fs::read_dir(&path).unwrap().map(|e| e.unwrap().path()));
                String::new()
            } else {
                format!("dev {}", meta.rdev())
            };
            let name = path.strip_prefix(dir).unwrap().display().to_string();
            out.push((name, meta.mode(), meta.uid(), meta.nlink() as u32, content));
        }
        out.sort();
        out
    }

    #[test]
    fn round_trip_keeps_files_links_modes_and_special_files() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let upper = dir.join("upper");
        fs::create_dir_all(upper.join("a/empty")).unwrap();
        fs::write(upper.join("a/file"), "hello").unwrap();
        fs::set_permissions(upper.join("a/file"), fs::Permissions::from_mode(0o4751)).unwrap();
        fs::hard_link(upper.join("a/file"), upper.join("hard")).unwrap();
        symlink("a/file", upper.join("link")).unwrap();
        let long = "x".repeat(120);
        fs::write(upper.join(&long), "long name").unwrap();
        let fifo_ok = mknod(
            &upper.join("fifo"),
            SFlag::S_IFIFO,
            Mode::from_bits_truncate(0o600),
            0,
        )
        .is_ok();
        let root = nix::unistd::geteuid().is_root();
        if root {
            mknod(
                &upper.join("whiteout"),
                SFlag::S_IFCHR,
                Mode::from_bits_truncate(0o000),
                0,
            )
            .unwrap();
            std::os::unix::fs::chown(upper.join("a"), Some(1 << 20), Some(1 << 20)).unwrap();
            xattr::set(upper.join("a"), "trusted.overlay.opaque", b"y").unwrap();
            // Binary values (overlay file handles) may hold newlines and NULs.
            xattr::set(
                upper.join("a/file"),
                "trusted.overlay.origin",
                b"\x00\n=\xff\n",
            )
            .unwrap();
        }
        let before = tree(&upper);
        assert!(fifo_ok || !root);

        let size = write(dir).unwrap();
        assert!(size > 0);
        drop_layer(dir).unwrap();
        assert!(!upper.exists());
        assert!(restore(dir).unwrap());
        assert!(!exists(dir));
        assert_eq!(tree(&upper), before);
        if root {
            assert_eq!(
                xattr::get(upper.join("a"), "trusted.overlay.opaque").unwrap(),
                Some(b"y".to_vec())
            );
            assert_eq!(
                xattr::get(upper.join("a/file"), "trusted.overlay.origin").unwrap(),
                Some(b"\x00\n=\xff\n".to_vec())
            );
        }
    }

    #[test]
    fn drop_layer_needs_an_archive_and_settle_removes_partial_files() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        fs::create_dir(dir.join("upper")).unwrap();
        assert!(matches!(
            drop_layer(dir),
            Err(ArchiveError::NoArchive { .. })
        ));
        fs::write(dir.join(ARCHIVE_TMP), "partial").unwrap();
        fs::create_dir(dir.join(RESTORE_TMP)).unwrap();
        settle(dir).unwrap();
        assert!(!dir.join(ARCHIVE_TMP).exists() && !dir.join(RESTORE_TMP).exists());
        assert!(dir.join("upper").exists());
        assert!(!restore(dir).unwrap());
    }

    #[test]
    fn traversal_is_refused() {
        assert!(safe_relative(b"../x").is_err());
        assert!(safe_relative(b"/etc/passwd").is_err());
        assert_eq!(safe_relative(b"upper/a").unwrap(), PathBuf::from("upper/a"));
    }
}
