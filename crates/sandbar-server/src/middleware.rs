//! Request-wide middleware: request ids and logs, and path normalization.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use axum::extract::Request;
use axum::http::{HeaderValue, Uri};
use axum::middleware::Next;
use axum::response::Response;
use tracing::{info, info_span, Instrument};

/// Header carrying the request id back to the client.
pub const REQUEST_ID_HEADER: &str = "x-request-id";

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// Gives each request an id (a process-wide counter), runs it in a span with that id and logs
/// one line when the response head is ready.
pub async fn trace_request(mut request: Request, next: Next) -> Response {
    let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    request.extensions_mut().insert(RequestId(id));
    let span = info_span!("request", id, %method, %path);
    async move {
        let started = Instant::now();
        let mut response = next.run(request).await;
        let status = response.status().as_u16();
        info!(
            status,
            elapsed_ms = started.elapsed().as_secs_f64() * 1e3,
            "request"
        );
        if let Ok(value) = HeaderValue::from_str(&id.to_string()) {
            response.headers_mut().insert(REQUEST_ID_HEADER, value);
        }
        response
    }
    .instrument(span)
    .await
}

/// Id of the current request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestId(pub u64);

/// Collapses repeated slashes in the path (`/api//sandbox` → `/api/sandbox`): the SDKs produce
/// them when a base URL ends with `/`. Under `/api`, a trailing slash is dropped too. Toolbox
/// paths keep it (the agent decides what it means). Percent-encoded characters are left alone.
pub fn normalize_path(mut request: Request) -> Request {
    let uri = request.uri();
    let trailing =
        uri.path().len() > 1 && uri.path().ends_with('/') && uri.path().starts_with("/api/");
    if !uri.path().contains("//") && !trailing {
        return request;
    }
    let mut path = String::with_capacity(uri.path().len());
    for c in uri.path().chars() {
        if c == '/' && path.ends_with('/') {
            continue;
        }
        path.push(c);
    }
    if path.len() > 1 && path.starts_with("/api/") {
        while path.ends_with('/') {
            path.pop();
        }
    }
    let path_and_query = match uri.query() {
        Some(query) => format!("{path}?{query}"),
        None => path,
    };
    let mut parts = uri.clone().into_parts();
    if let Ok(pq) = path_and_query.parse() {
        parts.path_and_query = Some(pq);
        if let Ok(normalized) = Uri::from_parts(parts) {
            *request.uri_mut() = normalized;
        }
    }
    request
}
