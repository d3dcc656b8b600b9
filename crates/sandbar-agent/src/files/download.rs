//! Downloads: `POST /files/bulk-download` (a `multipart/form-data` response, one part per
//! path) and `GET /files/download?path=` (raw bytes). File bodies are streamed from a blocking
//! thread in small chunks, never read whole into memory.

use std::io::{self, Read};
use std::path::PathBuf;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{Query, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::response::Response;
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use sandbar_wire::toolbox::BulkDownloadRequest;
use tokio::sync::mpsc;

use super::{FilesError, PathQuery};
use crate::envelope::{DaemonError, JsonBody};
use crate::Agent;

const CHUNK: usize = 64 * 1024;

/// RFC 5987 `attr-char`s stay literal in `filename*`; everything else is percent-encoded.
const ATTR_CHAR_ESCAPES: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'!')
    .remove(b'#')
    .remove(b'$')
    .remove(b'&')
    .remove(b'+')
    .remove(b'-')
    .remove(b'.')
    .remove(b'^')
    .remove(b'_')
    .remove(b'`')
    .remove(b'|')
    .remove(b'~');

/// `filename="…"; filename*=utf-8''…` for `name`: the quoted form escapes `\` and `"` (and
/// cannot carry line breaks); the extended form carries the exact bytes.
pub fn disposition_filename(name: &str) -> String {
    let mut quoted = String::with_capacity(name.len());
    for c in name.chars() {
        match c {
            '"' | '\\' => {
                quoted.push('\\');
                quoted.push(c);
            }
            '\r' | '\n' => quoted.push(' '),
            _ => quoted.push(c),
        }
    }
    format!(
        "filename=\"{quoted}\"; filename*=utf-8''{}",
        utf8_percent_encode(name, ATTR_CHAR_ESCAPES)
    )
}

type Sender = mpsc::Sender<Result<Bytes, io::Error>>;

fn body_from(rx: mpsc::Receiver<Result<Bytes, io::Error>>) -> Body {
    Body::from_stream(futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    }))
}

/// `POST /files/bulk-download` `{"paths":[…]}` → 200 `multipart/form-data`.
pub async fn bulk_download(
    State(agent): State<Arc<Agent>>,
    JsonBody(request): JsonBody<BulkDownloadRequest>,
) -> Response {
    let boundary = format!("SANDBAR-FILE-BOUNDARY-{}", uuid::Uuid::new_v4().simple());
    let (tx, rx) = mpsc::channel(2);
    let part_boundary = boundary.clone();
    tokio::task::spawn_blocking(move || {
        for raw in &request.paths {
            let sent = match open_for_download(&agent, raw) {
                Ok((file, len, path)) => send_file_part(&tx, &part_boundary, raw, file, len, &path),
                Err(err) => send_error_part(&tx, &part_boundary, raw, &err),
            };
            if !sent {
                return;
            }
        }
        let _ = tx.blocking_send(Ok(Bytes::from(format!("--{part_boundary}--\r\n"))));
    });
    let mut response = Response::new(body_from(rx));
    if let Ok(value) = HeaderValue::from_str(&format!("multipart/form-data; boundary={boundary}")) {
        response.headers_mut().insert(header::CONTENT_TYPE, value);
    }
    response
}

fn open_for_download(
    agent: &Agent,
    raw: &str,
) -> Result<(std::fs::File, u64, PathBuf), FilesError> {
    let path = agent.file_path(Some(raw))?;
    let file = std::fs::File::open(&path).map_err(|err| FilesError::read(&path, err))?;
    let meta = file
        .metadata()
        .map_err(|err| FilesError::read(&path, err))?;
    if meta.is_dir() {
        return Err(FilesError::IsDirectory(path));
    }
    Ok((file, meta.len(), path))
}

/// Sends one `name="file"` part; false when the client went away (or the file shrank, which
/// makes the declared Content-Length a lie: the response is then aborted).
fn send_file_part(
    tx: &Sender,
    boundary: &str,
    raw: &str,
    file: std::fs::File,
    len: u64,
    path: &std::path::Path,
) -> bool {
    let mime = mime_guess::from_path(path).first_or_octet_stream();
    let head = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; {}\r\nContent-Type: {mime}\r\nContent-Length: {len}\r\n\r\n",
        disposition_filename(raw)
    );
    if tx.blocking_send(Ok(Bytes::from(head))).is_err() {
        return false;
    }
    if !stream_exact(tx, file, len) {
        return false;
    }
    tx.blocking_send(Ok(Bytes::from_static(b"\r\n"))).is_ok()
}

/// Sends exactly `len` bytes of `file` in chunks.
fn stream_exact(tx: &Sender, file: std::fs::File, len: u64) -> bool {
    let mut reader = file.take(len);
    let mut remaining = len;
    while remaining > 0 {
        let mut buf = vec![0u8; CHUNK.min(usize::try_from(remaining).unwrap_or(CHUNK))];
        match reader.read(&mut buf) {
            Ok(0) => {
                let _ = tx.blocking_send(Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "file shrank while being downloaded",
                )));
                return false;
            }
            Ok(n) => {
                buf.truncate(n);
                remaining -= n as u64;
                if tx.blocking_send(Ok(Bytes::from(buf))).is_err() {
                    return false;
                }
            }
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(err) => {
                let _ = tx.blocking_send(Err(err));
                return false;
            }
        }
    }
    true
}

fn send_error_part(tx: &Sender, boundary: &str, raw: &str, err: &FilesError) -> bool {
    let (status, code) = err.status_and_code();
    let envelope = DaemonError::new(status, code, err.message())
        .envelope("/files/bulk-download", &Method::POST);
    let json = serde_json::to_string(&envelope).unwrap_or_default();
    let part = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"error\"; {}\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: {}\r\n\r\n{json}\r\n",
        disposition_filename(raw),
        json.len()
    );
    tx.blocking_send(Ok(Bytes::from(part))).is_ok()
}

/// `GET /files/download?path=` → 200 raw bytes.
pub async fn download(
    State(agent): State<Arc<Agent>>,
    Query(query): Query<PathQuery>,
) -> Result<Response, DaemonError> {
    let raw = query.path.unwrap_or_default();
    let opened = {
        let agent = agent.clone();
        let raw = raw.clone();
        super::blocking(move || open_for_download(&agent, &raw)).await?
    };
    let (file, len, path) = opened;
    let (tx, rx) = mpsc::channel(2);
    tokio::task::spawn_blocking(move || stream_exact(&tx, file, len));
    let mut response = Response::new(body_from(rx));
    *response.status_mut() = StatusCode::OK;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    if let Ok(value) =
        HeaderValue::from_str(&format!("attachment; {}", disposition_filename(&name)))
    {
        headers.insert(header::CONTENT_DISPOSITION, value);
    }
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filename_parameters_escape_and_encode() {
        assert_eq!(
            disposition_filename("/workspace/a b\"c.txt"),
            "filename=\"/workspace/a b\\\"c.txt\"; filename*=utf-8''%2Fworkspace%2Fa%20b%22c.txt"
        );
        assert_eq!(
            disposition_filename("é"),
            "filename=\"é\"; filename*=utf-8''%C3%A9"
        );
    }
}
