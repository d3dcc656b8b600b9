//! sandbar-dav: WebDAV (RFC 4918, classes 1 and 2) access to volumes, straight from the host
//! directory that holds a volume's files, without any sandbox running.
//!
//! Owns: the file system adapter dav-server drives ([`fs::VolumeFs`]: every path resolved
//! inside the volume root with `openat2(RESOLVE_IN_ROOT)`, new entries owned by the sandbox's
//! default user), dead properties in extended attributes ([`props`]), and one in-memory lock
//! table per volume ([`DavService`]). Must not depend on the server, the store or the runtime:
//! the server authenticates, finds the volume and its root directory, and hands the request
//! over with [`DavService::serve`].

use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;

use bytes::Buf;
use dav_server::body::Body;
use dav_server::memls::MemLs;
use dav_server::{DavConfig, DavHandler};
use http::{Request, Response, StatusCode};

pub mod fs;
pub mod props;

pub use fs::VolumeFs;

/// Size of the chunks GET reads from a file.
const READ_CHUNK: usize = 256 * 1024;

/// Serves WebDAV for any number of volumes; cheap to share behind an `Arc`.
pub struct DavService {
    handler: DavHandler,
    /// Lock tables by volume id: locks of one volume never apply to another.
    locks: Mutex<HashMap<String, MemLs>>,
    owner: u32,
}

impl DavService {
    /// New entries (PUT, MKCOL, COPY) will belong to uid and gid `owner`.
    pub fn new(owner: u32) -> Self {
        let handler = DavHandler::builder()
            .read_buf_size(READ_CHUNK)
            .autoindex(false)
            .build_handler();
        Self {
            handler,
            locks: Mutex::new(HashMap::new()),
            owner,
        }
    }

    fn lock_table(&self, volume: &str) -> MemLs {
        let mut locks = self
            .locks
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        (*locks
            .entry(volume.to_owned())
            .or_insert_with(|| *MemLs::new()))
        .clone()
    }

    /// Drops the lock table of a deleted volume.
    pub fn forget(&self, volume: &str) {
        let mut locks = self
            .locks
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        locks.remove(volume);
    }

    /// Serves `request` for volume `volume` (its id: keys the lock table) whose files are in
    /// `root`. `prefix` is the decoded URL path of the volume's root, e.g. `/dav/my-volume`.
    pub async fn serve<B>(
        &self,
        volume: &str,
        root: &Path,
        prefix: &str,
        request: Request<B>,
    ) -> Response<Body>
    where
        B: http_body::Body + Send + 'static,
        B::Data: Buf + Send + 'static,
        B::Error: std::error::Error + Send + Sync + 'static,
    {
        if has_dot_segment(request.uri().path()) {
            return plain(
                StatusCode::BAD_REQUEST,
                "dot segments are not allowed in paths\n",
            );
        }
        let fs = match VolumeFs::open(root, self.owner) {
            Ok(fs) => fs,
            Err(e) => {
                tracing::warn!(volume, root = %root.display(), error = %e, "volume root unavailable");
                return plain(StatusCode::SERVICE_UNAVAILABLE, "volume unavailable\n");
            }
        };
        let config = DavConfig::new()
            .filesystem(Box::new(fs))
            .locksystem(Box::new(self.lock_table(volume)))
            .strip_prefix(prefix.to_owned());
        self.handler.handle_with(config, request).await
    }
}

/// True when a segment of the (percent-encoded) path decodes to `.` or `..`: such requests
/// are refused before dav-server folds them into another path.
fn has_dot_segment(path: &str) -> bool {
    path.split('/').any(|segment| {
        let decoded = percent_encoding::percent_decode_str(segment).collect::<Vec<u8>>();
        decoded == b"." || decoded == b".."
    })
}

fn plain(status: StatusCode, text: &'static str) -> Response<Body> {
    let mut response = Response::new(Body::from(text));
    *response.status_mut() = status;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

#[cfg(test)]
mod tests;
