//! The one HTTP error type. Every failure of a handler becomes an [`ApiError`], and every
//! [`ApiError`] becomes the Daytona error envelope (`shared/daytona-api.md` §8):
//! `{"statusCode","error","message","code","source","path","timestamp"}`.

use std::sync::Arc;

use axum::extract::Request;
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sandbar_store::StoreError;
use sandbar_wire::api::{ErrorBody, ERROR_SOURCE, PROXY_ERROR_SOURCE};
use tracing::error;

use crate::lifecycle::{error_chain, LifecycleError};

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("missing or invalid API key")]
    Unauthorized,
    #[error("Cannot {method} {path}")]
    RouteNotFound { method: String, path: String },
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("invalid request body: {0}")]
    InvalidBody(String),
    #[error("invalid {name}: {message}")]
    InvalidParameter { name: &'static str, message: String },
    #[error("Sandbox with ID or name {0} not found")]
    SandboxNotFound(String),
    #[error("Volume with ID or name {0} not found")]
    VolumeNotFound(String),
    #[error("Snapshot {0} not found")]
    SnapshotNotFound(String),
    #[error("Volume {0} is not in a ready state")]
    VolumeNotReady(String),
    #[error("Volume {0} is in use by a sandbox")]
    VolumeInUse(String),
    #[error("Sandbox {id} is {state}, not started: start it first")]
    SandboxNotStarted { id: String, state: String },
    #[error("building sandboxes from images is not supported; create the sandbox from a snapshot")]
    ImageBuildUnsupported,
    #[error("sandbox {id} agent is unreachable")]
    AgentUnavailable {
        id: String,
        #[source]
        source: std::io::Error,
    },
    #[error("toolbox request to sandbox {id} failed")]
    Proxy {
        id: String,
        #[source]
        source: hyper::Error,
    },
    #[error("a preview token, a signed preview URL or an API key of the sandbox's organization is required")]
    PreviewUnauthorized,
    #[error("port {port} of the sandbox is unreachable: {message}")]
    PortUnreachable { port: u16, message: String },
    #[error("volume storage failed")]
    VolumeStorage(#[source] sandbar_runtime::VolumeError),
    #[error(transparent)]
    Lifecycle(#[from] LifecycleError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Sandbox(#[from] sandbar_core::SandboxError),
    #[error(transparent)]
    Volume(#[from] sandbar_core::VolumeError),
}

/// What the envelope middleware needs to render an error: attached to the response.
#[derive(Debug, Clone)]
pub struct ErrorDetails {
    pub status: StatusCode,
    pub code: &'static str,
    pub source: &'static str,
    pub message: String,
}

fn store_status(err: &StoreError) -> (StatusCode, &'static str) {
    match err {
        StoreError::NameConflict { .. } => (StatusCode::CONFLICT, "CONFLICT"),
        StoreError::InvalidCursor => (StatusCode::BAD_REQUEST, "BAD_REQUEST"),
        StoreError::CreateDir { .. }
        | StoreError::MigrationLock { .. }
        | StoreError::Open { .. }
        | StoreError::Migrate { .. }
        | StoreError::Query { .. }
        | StoreError::Corrupt { .. } => {
            (StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL_SERVER_ERROR")
        }
    }
}

impl ApiError {
    /// Status and code of the error. Exhaustive on purpose: a new variant anywhere below
    /// forces a decision here.
    pub fn status_and_code(&self) -> (StatusCode, &'static str) {
        use sandbar_core::lifecycle::LifecycleError as Transition;
        use sandbar_runtime::RuntimeError;
        const BAD: (StatusCode, &str) = (StatusCode::BAD_REQUEST, "BAD_REQUEST");
        const NOT_FOUND: (StatusCode, &str) = (StatusCode::NOT_FOUND, "NOT_FOUND");
        const CONFLICT: (StatusCode, &str) = (StatusCode::CONFLICT, "CONFLICT");
        const INTERNAL: (StatusCode, &str) =
            (StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL_SERVER_ERROR");
        match self {
            Self::Unauthorized => (StatusCode::UNAUTHORIZED, "UNAUTHORIZED"),
            Self::RouteNotFound { .. }
            | Self::SandboxNotFound(_)
            | Self::VolumeNotFound(_)
            | Self::SnapshotNotFound(_) => NOT_FOUND,
            Self::MethodNotAllowed => (StatusCode::METHOD_NOT_ALLOWED, "METHOD_NOT_ALLOWED"),
            Self::InvalidBody(_) => (StatusCode::BAD_REQUEST, "INVALID_REQUEST_BODY"),
            Self::InvalidParameter { .. }
            | Self::VolumeNotReady(_)
            | Self::ImageBuildUnsupported => BAD,
            Self::VolumeInUse(_) => CONFLICT,
            Self::SandboxNotStarted { .. } => (StatusCode::CONFLICT, "SANDBOX_NOT_STARTED"),
            Self::AgentUnavailable { .. } | Self::Proxy { .. } => {
                (StatusCode::BAD_GATEWAY, "BAD_GATEWAY")
            }
            Self::PreviewUnauthorized => (StatusCode::UNAUTHORIZED, "UNAUTHORIZED"),
            Self::PortUnreachable { .. } => (StatusCode::BAD_GATEWAY, "BAD_GATEWAY"),
            Self::VolumeStorage(_) => INTERNAL,
            Self::Store(err) => store_status(err),
            Self::Sandbox(_) | Self::Volume(_) => BAD,
            Self::Lifecycle(err) => match err {
                LifecycleError::NotFound(_) => NOT_FOUND,
                LifecycleError::Transition(
                    Transition::Busy { .. } | Transition::NotAllowed { .. },
                ) => CONFLICT,
                LifecycleError::Store(err) => store_status(err),
                LifecycleError::Runtime { source, .. } => match source {
                    RuntimeError::SnapshotNotFound(_) => NOT_FOUND,
                    RuntimeError::PrepareDir { .. }
                    | RuntimeError::Cgroup { .. }
                    | RuntimeError::SpawnJail(_)
                    | RuntimeError::Setup(_)
                    | RuntimeError::Signal { .. }
                    | RuntimeError::Remove { .. }
                    | RuntimeError::Volume(_)
                    | RuntimeError::Snapshot { .. }
                    | RuntimeError::Archive { .. }
                    | RuntimeError::Task { .. } => INTERNAL,
                    // What this runtime cannot do, or refuses to (a resize it cannot apply).
                    RuntimeError::Unsupported(_) | RuntimeError::Resize { .. } => BAD,
                },
                LifecycleError::Task(_) => INTERNAL,
                LifecycleError::ResizeRejected { .. } => BAD,
            },
        }
    }

    fn source_name(&self) -> &'static str {
        match self {
            Self::SandboxNotStarted { .. }
            | Self::AgentUnavailable { .. }
            | Self::Proxy { .. }
            | Self::PreviewUnauthorized
            | Self::PortUnreachable { .. } => PROXY_ERROR_SOURCE,
            _ => ERROR_SOURCE,
        }
    }

    pub fn details(&self) -> ErrorDetails {
        let (status, code) = self.status_and_code();
        let message = match self {
            // Conflicts on names read better in Daytona's words.
            Self::Store(StoreError::NameConflict { kind, name })
            | Self::Lifecycle(LifecycleError::Store(StoreError::NameConflict { kind, name })) => {
                let mut kind = kind.to_string();
                if let Some(first) = kind.get_mut(0..1) {
                    first.make_ascii_uppercase();
                }
                format!("{kind} with name {name} already exists")
            }
            _ => error_chain(self),
        };
        ErrorDetails {
            status,
            code,
            source: self.source_name(),
            message,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let details = self.details();
        if details.status.is_server_error() {
            error!(status = details.status.as_u16(), error = %details.message, "request failed");
        }
        render(&details, "")
    }
}

/// Builds the envelope response; `path` is filled by [`envelope`] when empty here.
pub fn render(details: &ErrorDetails, path: &str) -> Response {
    let body = ErrorBody {
        status_code: details.status.as_u16(),
        error: details
            .status
            .canonical_reason()
            .unwrap_or("Error")
            .to_owned(),
        message: details.message.clone(),
        code: details.code.to_owned(),
        source: details.source.to_owned(),
        path: path.to_owned(),
        timestamp: sandbar_core::time::format(sandbar_core::time::now()),
    };
    let json = serde_json::to_vec(&body).unwrap_or_default();
    let mut response = (details.status, json).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    response.extensions_mut().insert(Arc::new(details.clone()));
    response
}

/// Middleware: re-renders error envelopes with the request path (the original one, before any
/// normalization).
pub async fn envelope(request: Request, next: Next) -> Response {
    let path = request.uri().path().to_owned();
    let response = next.run(request).await;
    match response.extensions().get::<Arc<ErrorDetails>>().cloned() {
        Some(details) => {
            let mut rendered = render(&details, &path);
            for (name, value) in response.headers() {
                if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
                    rendered.headers_mut().insert(name.clone(), value.clone());
                }
            }
            rendered
        }
        None => response,
    }
}
