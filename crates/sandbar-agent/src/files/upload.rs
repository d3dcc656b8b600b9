//! Uploads: `POST /files/bulk-upload` (multipart `files[i].path` + `files[i].file`),
//! `POST /files/upload-v2?path=` and the legacy `POST /files/upload?path=`.
//!
//! Each file part is streamed to a temporary file next to its destination and renamed into
//! place once complete, so a failed upload never leaves a partial file.

use std::collections::HashMap;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::extract::multipart::Field;
use axum::extract::{Multipart, Query, State};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use sandbar_wire::toolbox::{code, BulkUploadResponse, UploadV2Response, UploadedFile};
use tokio::io::AsyncWriteExt;

use super::{blocking, FilesError, PathQuery};
use crate::envelope::{envelope_response, DaemonError};
use crate::Agent;

/// Which half of a bulk-upload entry a multipart field carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    Path(usize),
    File(usize),
}

/// Parses `files[3].path` / `files[3].file`.
pub fn parse_field_name(name: &str) -> Option<Part> {
    let rest = name.strip_prefix("files[")?;
    let (index, suffix) = rest.split_once("].")?;
    let index: usize = index.parse().ok()?;
    match suffix {
        "path" => Some(Part::Path(index)),
        "file" => Some(Part::File(index)),
        _ => None,
    }
}

fn multipart_error(err: axum::extract::multipart::MultipartError) -> FilesError {
    FilesError::Upload(err.body_text())
}

/// `POST /files/bulk-upload` → 200 `{"files":[{"path","bytes"}]}`, or an error envelope with
/// `errors` listing every failed file.
pub async fn bulk_upload(State(agent): State<Arc<Agent>>, mut multipart: Multipart) -> Response {
    let mut destinations: HashMap<usize, PathBuf> = HashMap::new();
    // File parts that arrived before their path: staged in the temporary directory.
    let mut staged: HashMap<usize, (PathBuf, u64)> = HashMap::new();
    let mut uploaded = Vec::new();
    let mut errors: Vec<FilesError> = Vec::new();
    loop {
        let mut field = match multipart.next_field().await {
            Ok(Some(field)) => field,
            Ok(None) => break,
            Err(err) => {
                errors.push(multipart_error(err));
                break;
            }
        };
        let Some(part) = field.name().and_then(parse_field_name) else {
            continue;
        };
        match part {
            Part::Path(index) => {
                let raw = match field.text().await {
                    Ok(text) => text,
                    Err(err) => {
                        errors.push(multipart_error(err));
                        break;
                    }
                };
                let destination = match agent.file_path(Some(&raw)) {
                    Ok(path) => path,
                    Err(err) => {
                        errors.push(err);
                        continue;
                    }
                };
                if let Some((temp, bytes)) = staged.remove(&index) {
                    match place_staged(&agent, temp, &destination).await {
                        Ok(()) => uploaded.push(UploadedFile {
                            path: destination.to_string_lossy().into_owned(),
                            bytes,
                        }),
                        Err(err) => errors.push(err),
                    }
                } else {
                    destinations.insert(index, destination);
                }
            }
            Part::File(index) => match destinations.remove(&index) {
                Some(destination) => match write_field(&agent, &mut field, &destination).await {
                    Ok(bytes) => uploaded.push(UploadedFile {
                        path: destination.to_string_lossy().into_owned(),
                        bytes,
                    }),
                    Err(err) => errors.push(err),
                },
                None => match stage_field(&mut field).await {
                    Ok(staged_file) => {
                        staged.insert(index, staged_file);
                    }
                    Err(err) => errors.push(err),
                },
            },
        }
    }
    for (index, (temp, _)) in staged {
        let _ = tokio::fs::remove_file(&temp).await;
        errors.push(FilesError::Upload(format!(
            "files[{index}].file has no files[{index}].path"
        )));
    }
    for index in destinations.keys() {
        errors.push(FilesError::Upload(format!(
            "files[{index}].path has no files[{index}].file"
        )));
    }
    if errors.is_empty() {
        return Json(BulkUploadResponse { files: uploaded }).into_response();
    }
    let (status, code) = errors
        .iter()
        .map(FilesError::status_and_code)
        .max_by_key(|(status, _)| status.as_u16())
        .unwrap_or((StatusCode::BAD_REQUEST, code::BAD_REQUEST));
    let messages: Vec<String> = errors.iter().map(FilesError::message).collect();
    let error = DaemonError::new(status, code, messages.join("; "));
    let envelope = error.envelope("/files/bulk-upload", &Method::POST);
    let mut body = serde_json::to_value(&envelope).unwrap_or_default();
    body["errors"] = serde_json::json!(messages);
    let mut response = envelope_response(status, &envelope);
    *response.body_mut() = axum::body::Body::from(body.to_string());
    response
}

/// Streams one multipart field to `destination` (temporary file + rename). Returns the size.
async fn write_field(
    agent: &Arc<Agent>,
    field: &mut Field<'_>,
    destination: &Path,
) -> Result<u64, FilesError> {
    let temp = prepare_destination(agent, destination).await?;
    let result = copy_field(field, &temp).await;
    let bytes = match result {
        Ok(bytes) => bytes,
        Err(err) => {
            let _ = tokio::fs::remove_file(&temp).await;
            return Err(err);
        }
    };
    finish(agent, temp, destination).await?;
    Ok(bytes)
}

/// Creates the parent directories and returns a fresh temporary path next to `destination`.
async fn prepare_destination(
    agent: &Arc<Agent>,
    destination: &Path,
) -> Result<PathBuf, FilesError> {
    let agent = agent.clone();
    let destination = destination.to_owned();
    blocking(move || {
        if destination.is_dir() {
            return Err(FilesError::IsDirectory(destination));
        }
        let parent = destination
            .parent()
            .map(Path::to_owned)
            .unwrap_or_else(|| PathBuf::from("/"));
        agent.create_dirs(&parent, 0o755)?;
        let name = destination
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        Ok(parent.join(format!(
            ".{name}.sandbar-upload-{}",
            uuid::Uuid::new_v4().simple()
        )))
    })
    .await
}

async fn copy_field(field: &mut Field<'_>, temp: &Path) -> Result<u64, FilesError> {
    let std_file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .open(temp)
        .map_err(|err| FilesError::io("create", temp, err))?;
    let mut file = tokio::fs::File::from_std(std_file);
    let mut bytes = 0u64;
    while let Some(chunk) = field.chunk().await.map_err(multipart_error)? {
        file.write_all(&chunk)
            .await
            .map_err(|err| FilesError::io("write", temp, err))?;
        bytes += chunk.len() as u64;
    }
    // tokio's File completes writes in the background: flush before the rename.
    file.flush()
        .await
        .map_err(|err| FilesError::io("write", temp, err))?;
    Ok(bytes)
}

/// Renames the finished temporary file over `destination`, keeping the mode and owner of a
/// file it replaces, or giving a new file to the sandbox user.
async fn finish(agent: &Arc<Agent>, temp: PathBuf, destination: &Path) -> Result<(), FilesError> {
    let agent = agent.clone();
    let destination = destination.to_owned();
    blocking(move || {
        let previous = std::fs::metadata(&destination).ok();
        if let Some(previous) = &previous {
            let _ = std::fs::set_permissions(
                &temp,
                std::fs::Permissions::from_mode(previous.mode() & 0o7777),
            );
            let _ = std::os::unix::fs::chown(&temp, Some(previous.uid()), Some(previous.gid()));
        } else if let Err(err) = agent.give_to_user(&temp) {
            let _ = std::fs::remove_file(&temp);
            return Err(err);
        }
        std::fs::rename(&temp, &destination).map_err(|err| {
            let _ = std::fs::remove_file(&temp);
            FilesError::io("write", &destination, err)
        })
    })
    .await
}

/// Streams a field whose destination is not known yet to the temporary directory.
async fn stage_field(field: &mut Field<'_>) -> Result<(PathBuf, u64), FilesError> {
    let temp =
        std::env::temp_dir().join(format!(".sandbar-upload-{}", uuid::Uuid::new_v4().simple()));
    match copy_field(field, &temp).await {
        Ok(bytes) => Ok((temp, bytes)),
        Err(err) => {
            let _ = tokio::fs::remove_file(&temp).await;
            Err(err)
        }
    }
}

/// Moves a staged file to its destination (copying when it is on another file system).
async fn place_staged(
    agent: &Arc<Agent>,
    staged: PathBuf,
    destination: &Path,
) -> Result<(), FilesError> {
    let temp = prepare_destination(agent, destination).await?;
    let moved = {
        let staged = staged.clone();
        let temp = temp.clone();
        blocking(move || {
            if std::fs::rename(&staged, &temp).is_ok() {
                return Ok(());
            }
            std::fs::copy(&staged, &temp)
                .map(|_| ())
                .map_err(|err| FilesError::io("write", &temp, err))
        })
        .await
    };
    let _ = tokio::fs::remove_file(&staged).await;
    if let Err(err) = moved {
        let _ = tokio::fs::remove_file(&temp).await;
        return Err(err);
    }
    finish(agent, temp, destination).await
}

/// Receives the single `file` field of the simple upload endpoints into `destination` (a
/// directory receives the file under its part file name).
async fn upload_single(
    agent: &Arc<Agent>,
    raw: Option<&str>,
    multipart: &mut Multipart,
) -> Result<(PathBuf, String), FilesError> {
    let target = agent.file_path(raw)?;
    while let Some(mut field) = multipart.next_field().await.map_err(multipart_error)? {
        if field.name() != Some("file") {
            continue;
        }
        let file_name = field.file_name().map(str::to_owned);
        let content_type = field
            .content_type()
            .map(str::to_owned)
            .unwrap_or_else(|| "application/octet-stream".to_owned());
        let destination = match (target.is_dir(), file_name) {
            (true, Some(name)) => target.join(
                Path::new(&name)
                    .file_name()
                    .ok_or(FilesError::IsDirectory(target.clone()))?,
            ),
            (true, None) => return Err(FilesError::IsDirectory(target)),
            (false, _) => target.clone(),
        };
        write_field(agent, &mut field, &destination).await?;
        return Ok((destination, content_type));
    }
    Err(FilesError::Upload(
        "missing multipart field \"file\"".to_owned(),
    ))
}

/// `POST /files/upload-v2?path=` (signed-URL uploads) → 200 `{name,path,type}`.
pub async fn upload_v2(
    State(agent): State<Arc<Agent>>,
    Query(query): Query<PathQuery>,
    mut multipart: Multipart,
) -> Result<Json<UploadV2Response>, DaemonError> {
    let (destination, content_type) =
        upload_single(&agent, query.path.as_deref(), &mut multipart).await?;
    Ok(Json(UploadV2Response {
        name: destination
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        path: destination.to_string_lossy().into_owned(),
        kind: content_type,
    }))
}

/// `POST /files/upload?path=` (SDKs before bulk upload) → 200.
pub async fn upload_legacy(
    State(agent): State<Arc<Agent>>,
    Query(query): Query<PathQuery>,
    mut multipart: Multipart,
) -> Result<StatusCode, DaemonError> {
    upload_single(&agent, query.path.as_deref(), &mut multipart).await?;
    Ok(StatusCode::OK)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_bulk_upload_field_names() {
        assert_eq!(parse_field_name("files[0].path"), Some(Part::Path(0)));
        assert_eq!(parse_field_name("files[12].file"), Some(Part::File(12)));
        assert_eq!(parse_field_name("files[x].file"), None);
        assert_eq!(parse_field_name("files[1].other"), None);
        assert_eq!(parse_field_name("file"), None);
    }
}
