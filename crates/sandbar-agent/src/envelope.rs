//! The daemon error envelope: every error response of the agent is
//! `{"statusCode","message","code","source":"DAYTONA_DAEMON","timestamp","path","method"}`.
//!
//! Handlers return [`DaemonError`] (status, code, message); the [`render`] middleware adds the
//! request path and method. Responses that did not come from a `DaemonError` (axum's own
//! rejections, unknown routes) are wrapped into the envelope too, with a code derived from the
//! status.

use axum::body::Body;
use axum::extract::{FromRequest, Request};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sandbar_wire::toolbox::{code, ErrorEnvelope, ERROR_SOURCE};
use serde::de::DeserializeOwned;

/// An error as the daemon reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DaemonError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

impl DaemonError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        DaemonError {
            status,
            code,
            message: message.into(),
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code::BAD_REQUEST, message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, code::NOT_FOUND, message)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            code::INTERNAL_SERVER_ERROR,
            message,
        )
    }

    /// The JSON envelope for a request to `path` with `method`.
    pub fn envelope(&self, path: &str, method: &Method) -> ErrorEnvelope {
        ErrorEnvelope {
            status_code: self.status.as_u16(),
            message: self.message.clone(),
            code: self.code.to_owned(),
            source: ERROR_SOURCE.to_owned(),
            timestamp: now_rfc3339(),
            path: path.to_owned(),
            method: method.as_str().to_owned(),
        }
    }
}

impl IntoResponse for DaemonError {
    fn into_response(self) -> Response {
        let mut response = self.status.into_response();
        response.extensions_mut().insert(self);
        response
    }
}

pub fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// Renders a JSON envelope as a response.
pub fn envelope_response(status: StatusCode, envelope: &ErrorEnvelope) -> Response {
    let body = serde_json::to_vec(envelope).unwrap_or_default();
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    response
}

fn code_for_status(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 => code::BAD_REQUEST,
        401 => code::UNAUTHORIZED,
        403 => code::FORBIDDEN,
        404 => code::NOT_FOUND,
        408 => code::REQUEST_TIMEOUT,
        409 => code::CONFLICT,
        410 => code::GONE,
        // axum rejects undecodable query strings and bodies with 422/415.
        415 | 422 => code::INVALID_REQUEST_BODY,
        _ if status.is_client_error() => code::BAD_REQUEST,
        _ => code::INTERNAL_SERVER_ERROR,
    }
}

/// Middleware: turns every error response into the daemon envelope.
pub async fn render(request: Request, next: Next) -> Response {
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let mut response = next.run(request).await;
    if let Some(error) = response.extensions_mut().remove::<DaemonError>() {
        return envelope_response(error.status, &error.envelope(&path, &method));
    }
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("json"));
    if is_json {
        return response;
    }
    let body = axum::body::to_bytes(response.into_body(), 64 * 1024)
        .await
        .unwrap_or_default();
    let text = String::from_utf8_lossy(&body).trim().to_owned();
    let message = if text.is_empty() {
        status.canonical_reason().unwrap_or("error").to_owned()
    } else {
        text
    };
    let error = DaemonError::new(status, code_for_status(status), message);
    envelope_response(status, &error.envelope(&path, &method))
}

/// Fallback for unknown routes.
pub async fn no_route(method: Method, uri: axum::http::Uri) -> DaemonError {
    DaemonError::not_found(format!(
        "{method} {} is not served by this agent",
        uri.path()
    ))
}

/// A JSON request body, parsed whatever the Content-Type (the SDK sends `POST /env` without
/// one), with decoding errors reported as 400 `INVALID_REQUEST_BODY`.
#[derive(Debug)]
pub struct JsonBody<T>(pub T);

impl<S, T> FromRequest<S> for JsonBody<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = DaemonError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = axum::body::Bytes::from_request(request, state)
            .await
            .map_err(|rejection| {
                DaemonError::new(
                    rejection.status(),
                    code::INVALID_REQUEST_BODY,
                    rejection.body_text(),
                )
            })?;
        serde_json::from_slice(&bytes).map(JsonBody).map_err(|err| {
            DaemonError::new(
                StatusCode::BAD_REQUEST,
                code::INVALID_REQUEST_BODY,
                format!("invalid request body: {err}"),
            )
        })
    }
}
