//! File system endpoints (§5.2). The agent lives in the sandbox's mount namespace, so paths and
//! symlinks resolve inside the sandbox root; relative paths resolve against the user's home.

use std::fs::Metadata;
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::Json;
use sandbar_wire::toolbox::{code, FileInfo};
use serde::Deserialize;

use crate::envelope::DaemonError;
use crate::Agent;

pub mod download;
pub mod mode;
pub mod search;
pub mod upload;

#[derive(Debug, thiserror::Error)]
pub enum FilesError {
    #[error("path must not be empty")]
    EmptyPath,
    #[error("path must not contain NUL bytes")]
    NulByte,
    #[error("{0}: no such file or directory")]
    NotFound(PathBuf, #[source] io::Error),
    #[error("{0}: permission denied")]
    AccessDenied(PathBuf, #[source] io::Error),
    #[error("{0} is a directory")]
    IsDirectory(PathBuf),
    #[error("{0} is not a directory")]
    NotDirectory(PathBuf),
    #[error("{0} is a directory: set recursive=true to delete it")]
    NeedsRecursive(PathBuf),
    #[error("invalid mode {0:?}: expected octal permission bits such as 755")]
    InvalidMode(String),
    #[error("unknown user or group {0:?}")]
    UnknownOwner(String),
    #[error("cannot {op} {path}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot read {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("invalid upload: {0}")]
    Upload(String),
    #[error("background task failed")]
    Task(#[source] tokio::task::JoinError),
}

impl FilesError {
    /// Classifies an I/O error of operation `op` on `path`.
    pub fn io(op: &'static str, path: &Path, source: io::Error) -> FilesError {
        match source.kind() {
            io::ErrorKind::NotFound | io::ErrorKind::NotADirectory => {
                FilesError::NotFound(path.to_owned(), source)
            }
            io::ErrorKind::PermissionDenied => FilesError::AccessDenied(path.to_owned(), source),
            _ if source.raw_os_error() == Some(libc::EPERM) => {
                FilesError::AccessDenied(path.to_owned(), source)
            }
            _ => FilesError::Io {
                op,
                path: path.to_owned(),
                source,
            },
        }
    }

    /// Like [`FilesError::io`], but a generic failure is a read failure.
    pub fn read(path: &Path, source: io::Error) -> FilesError {
        match FilesError::io("read", path, source) {
            FilesError::Io { path, source, .. } => FilesError::Read { path, source },
            other => other,
        }
    }

    pub fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            FilesError::EmptyPath
            | FilesError::NulByte
            | FilesError::IsDirectory(_)
            | FilesError::NotDirectory(_) => (StatusCode::BAD_REQUEST, code::INVALID_FILE_PATH),
            FilesError::NeedsRecursive(_)
            | FilesError::InvalidMode(_)
            | FilesError::UnknownOwner(_)
            | FilesError::Upload(_) => (StatusCode::BAD_REQUEST, code::BAD_REQUEST),
            FilesError::NotFound(..) => (StatusCode::NOT_FOUND, code::FILE_NOT_FOUND),
            FilesError::AccessDenied(..) => (StatusCode::FORBIDDEN, code::FILE_ACCESS_DENIED),
            FilesError::Read { .. } => (StatusCode::INTERNAL_SERVER_ERROR, code::FILE_READ_FAILED),
            FilesError::Io { .. } | FilesError::Task(_) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                code::INTERNAL_SERVER_ERROR,
            ),
        }
    }

    pub fn message(&self) -> String {
        match std::error::Error::source(self) {
            Some(source) => format!("{self}: {source}"),
            None => self.to_string(),
        }
    }
}

impl From<FilesError> for DaemonError {
    fn from(err: FilesError) -> DaemonError {
        let (status, code) = err.status_and_code();
        DaemonError::new(status, code, err.message())
    }
}

/// Runs blocking file system work on the blocking pool.
pub async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, FilesError> + Send + 'static,
) -> Result<T, FilesError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(FilesError::Task)?
}

impl Agent {
    /// Validates a request path and resolves it against the home directory.
    pub fn file_path(&self, raw: Option<&str>) -> Result<PathBuf, FilesError> {
        let raw = raw.unwrap_or_default();
        if raw.is_empty() {
            return Err(FilesError::EmptyPath);
        }
        if raw.contains('\0') {
            return Err(FilesError::NulByte);
        }
        Ok(self.user.home.join(raw))
    }

    /// Gives a file the agent created to the sandbox user (when the agent runs as root).
    pub fn give_to_user(&self, path: &Path) -> Result<(), FilesError> {
        if !self.is_root || self.user.uid == 0 {
            return Ok(());
        }
        std::os::unix::fs::lchown(path, Some(self.user.uid), Some(self.user.gid))
            .map_err(|err| FilesError::io("chown", path, err))
    }

    /// Creates `dir` and its missing parents with `mode`, owned by the sandbox user.
    pub fn create_dirs(&self, dir: &Path, mode: u32) -> Result<(), FilesError> {
        // Find the first missing ancestor so that exactly the new directories are chowned.
        let mut missing = Vec::new();
        let mut cursor = Some(dir);
        while let Some(current) = cursor {
            if current.symlink_metadata().is_ok() {
                break;
            }
            missing.push(current.to_owned());
            cursor = current.parent();
        }
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(mode)
            .create(dir)
            .map_err(|err| FilesError::io("create directory", dir, err))?;
        for created in missing.iter().rev() {
            self.give_to_user(created)?;
        }
        Ok(())
    }
}

/// The `FileInfo` of `path` with metadata `meta`.
pub fn file_info(path: &Path, meta: &Metadata, with_path: bool) -> FileInfo {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.to_string_lossy().into_owned());
    let modified = chrono::DateTime::from_timestamp(meta.mtime(), meta.mtime_nsec() as u32)
        .unwrap_or_default();
    FileInfo {
        name,
        is_dir: meta.is_dir(),
        size: meta.len(),
        mode: mode::go_file_mode(meta.mode()),
        permissions: format!("{:04o}", meta.permissions().mode() & 0o777),
        owner: meta.uid().to_string(),
        group: meta.gid().to_string(),
        mod_time: mode::go_time_string(&modified),
        modified_at: modified.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
        path: with_path.then(|| path.to_string_lossy().into_owned()),
    }
}

/// Metadata following symlinks, or of the link itself when it dangles.
fn stat(path: &Path) -> io::Result<Metadata> {
    std::fs::metadata(path).or_else(|err| match path.symlink_metadata() {
        Ok(meta) if meta.file_type().is_symlink() => Ok(meta),
        _ => Err(err),
    })
}

#[derive(Debug, Deserialize)]
pub struct PathQuery {
    pub path: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct ListQuery {
    pub path: Option<String>,
    pub depth: Option<u32>,
}

/// `GET /files?path=&depth=` → 200 `[FileInfo]`.
pub async fn list(
    State(agent): State<Arc<Agent>>,
    Query(query): Query<ListQuery>,
) -> Result<Json<Vec<FileInfo>>, DaemonError> {
    let dir = match query.path.as_deref() {
        None | Some("") => agent.user.home.clone(),
        raw => agent.file_path(raw)?,
    };
    let depth = query.depth.unwrap_or(1).max(1);
    let entries = blocking(move || {
        let meta = std::fs::metadata(&dir).map_err(|err| FilesError::io("list", &dir, err))?;
        if !meta.is_dir() {
            return Err(FilesError::NotDirectory(dir));
        }
        let mut out = Vec::new();
        list_into(&dir, depth, &mut out)?;
        Ok(out)
    })
    .await?;
    Ok(Json(entries))
}

fn list_into(dir: &Path, depth: u32, out: &mut Vec<FileInfo>) -> Result<(), FilesError> {
    let reader = std::fs::read_dir(dir).map_err(|err| FilesError::io("list", dir, err))?;
    let mut paths: Vec<PathBuf> = reader.filter_map(|e| e.ok().map(|e| e.path())).collect();
    paths.sort();
    for path in paths {
        // Entries that vanish or cannot be stat'ed are skipped, as upstream does.
        let Ok(meta) = stat(&path) else { continue };
        let recurse = depth > 1
            && meta.is_dir()
            && !path
                .symlink_metadata()
                .is_ok_and(|m| m.file_type().is_symlink());
        out.push(file_info(&path, &meta, true));
        if recurse {
            // An unreadable subdirectory does not fail the whole listing.
            let _ = list_into(&path, depth - 1, out);
        }
    }
    Ok(())
}

/// `GET /files/info?path=` → 200 `FileInfo`, 404 `FILE_NOT_FOUND`.
pub async fn info(
    State(agent): State<Arc<Agent>>,
    Query(query): Query<PathQuery>,
) -> Result<Json<FileInfo>, DaemonError> {
    let path = agent.file_path(query.path.as_deref())?;
    let meta = stat(&path).map_err(|err| FilesError::io("stat", &path, err))?;
    Ok(Json(file_info(&path, &meta, true)))
}

#[derive(Debug, Deserialize)]
pub struct FolderQuery {
    pub path: Option<String>,
    pub mode: Option<String>,
}

/// `POST /files/folder?path=&mode=` → 201.
pub async fn create_folder(
    State(agent): State<Arc<Agent>>,
    Query(query): Query<FolderQuery>,
) -> Result<StatusCode, DaemonError> {
    let path = agent.file_path(query.path.as_deref())?;
    let mode = match query.mode.as_deref() {
        None | Some("") => 0o755,
        Some(raw) => mode::parse_octal(raw)?,
    };
    blocking(move || agent.create_dirs(&path, mode)).await?;
    Ok(StatusCode::CREATED)
}

#[derive(Debug, Deserialize)]
pub struct DeleteQuery {
    pub path: Option<String>,
    pub recursive: Option<bool>,
}

/// `DELETE /files?path=&recursive=` → 204. A directory needs `recursive=true`.
pub async fn delete(
    State(agent): State<Arc<Agent>>,
    Query(query): Query<DeleteQuery>,
) -> Result<StatusCode, DaemonError> {
    let path = agent.file_path(query.path.as_deref())?;
    let recursive = query.recursive.unwrap_or(false);
    blocking(move || {
        let meta = path
            .symlink_metadata()
            .map_err(|err| FilesError::io("delete", &path, err))?;
        let result = if meta.is_dir() {
            if !recursive {
                return Err(FilesError::NeedsRecursive(path));
            }
            std::fs::remove_dir_all(&path)
        } else {
            std::fs::remove_file(&path)
        };
        result.map_err(|err| FilesError::io("delete", &path, err))
    })
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize)]
pub struct MoveQuery {
    pub source: Option<String>,
    pub destination: Option<String>,
}

/// `POST /files/move?source=&destination=` → 200.
pub async fn move_file(
    State(agent): State<Arc<Agent>>,
    Query(query): Query<MoveQuery>,
) -> Result<StatusCode, DaemonError> {
    let source = agent.file_path(query.source.as_deref())?;
    let destination = agent.file_path(query.destination.as_deref())?;
    blocking(move || {
        source
            .symlink_metadata()
            .map_err(|err| FilesError::io("move", &source, err))?;
        match std::fs::rename(&source, &destination) {
            Ok(()) => Ok(()),
            Err(err) if err.raw_os_error() == Some(libc::EXDEV) => {
                move_across_devices(&source, &destination)
            }
            Err(err) => Err(FilesError::io("move", &destination, err)),
        }
    })
    .await?;
    Ok(StatusCode::OK)
}

/// `rename` cannot cross mounts (a volume and the root): copy, then remove the source.
fn move_across_devices(source: &Path, destination: &Path) -> Result<(), FilesError> {
    copy_tree(source, destination)?;
    let meta = source
        .symlink_metadata()
        .map_err(|err| FilesError::io("move", source, err))?;
    let removed = if meta.is_dir() {
        std::fs::remove_dir_all(source)
    } else {
        std::fs::remove_file(source)
    };
    removed.map_err(|err| FilesError::io("remove", source, err))
}

fn copy_tree(source: &Path, destination: &Path) -> Result<(), FilesError> {
    let meta = source
        .symlink_metadata()
        .map_err(|err| FilesError::io("copy", source, err))?;
    let kind = meta.file_type();
    if kind.is_symlink() {
        let target =
            std::fs::read_link(source).map_err(|err| FilesError::io("copy", source, err))?;
        std::os::unix::fs::symlink(target, destination)
            .map_err(|err| FilesError::io("copy", destination, err))?;
    } else if kind.is_dir() {
        std::fs::DirBuilder::new()
            .mode(meta.mode() & 0o7777)
            .create(destination)
            .map_err(|err| FilesError::io("copy", destination, err))?;
        let entries =
            std::fs::read_dir(source).map_err(|err| FilesError::io("copy", source, err))?;
        for entry in entries {
            let entry = entry.map_err(|err| FilesError::io("copy", source, err))?;
            copy_tree(&entry.path(), &destination.join(entry.file_name()))?;
        }
    } else {
        std::fs::copy(source, destination)
            .map_err(|err| FilesError::io("copy", destination, err))?;
    }
    let _ = std::os::unix::fs::lchown(destination, Some(meta.uid()), Some(meta.gid()));
    Ok(())
}

#[derive(Debug, Deserialize)]
pub struct PermissionsQuery {
    pub path: Option<String>,
    pub owner: Option<String>,
    pub group: Option<String>,
    pub mode: Option<String>,
}

/// `POST /files/permissions?path=&owner=&group=&mode=` → 200.
pub async fn set_permissions(
    State(agent): State<Arc<Agent>>,
    Query(query): Query<PermissionsQuery>,
) -> Result<StatusCode, DaemonError> {
    let path = agent.file_path(query.path.as_deref())?;
    let mode = match query.mode.as_deref() {
        None | Some("") => None,
        Some(raw) => Some(mode::parse_octal(raw)?),
    };
    let owner = non_empty(query.owner);
    let group = non_empty(query.group);
    blocking(move || {
        std::fs::metadata(&path).map_err(|err| FilesError::io("stat", &path, err))?;
        if let Some(mode) = mode {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))
                .map_err(|err| FilesError::io("chmod", &path, err))?;
        }
        if owner.is_some() || group.is_some() {
            let uid = owner
                .map(|o| {
                    crate::user::lookup_id(&agent.etc, "passwd", &o)
                        .ok_or(FilesError::UnknownOwner(o))
                })
                .transpose()?;
            let gid = group
                .map(|g| {
                    crate::user::lookup_id(&agent.etc, "group", &g)
                        .ok_or(FilesError::UnknownOwner(g))
                })
                .transpose()?;
            std::os::unix::fs::chown(&path, uid, gid)
                .map_err(|err| FilesError::io("chown", &path, err))?;
        }
        Ok(())
    })
    .await?;
    Ok(StatusCode::OK)
}

fn non_empty(value: Option<String>) -> Option<String> {
    value.filter(|v| !v.is_empty())
}
