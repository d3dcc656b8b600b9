//! `/toolbox/{sandboxId}/{path}`: reverse proxy to the sandbox agent's unix socket
//! (`shared/daytona-api.md` §4). Bodies stream both ways without buffering; HTTP upgrades
//! (WebSocket: PTY, session logs, interpreter) are spliced once both sides switched protocols.

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::header::{self, HeaderMap, HeaderName, HeaderValue};
use axum::http::{StatusCode, Version};
use axum::response::Response;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use sandbar_core::SandboxState;
use tokio::net::UnixStream;
use tracing::debug;
use uuid::Uuid;

use super::sandbox::find;
use crate::auth::AuthOrg;
use crate::error::ApiError;
use crate::extract::PathParams;
use crate::AppState;

/// How often an open upgraded connection records activity.
const UPGRADE_ACTIVITY_PERIOD: std::time::Duration = std::time::Duration::from_secs(60);

/// Headers that belong to one connection, not to the message (RFC 9110 §7.6.1).
const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// Copies `from` minus hop-by-hop headers (and those named by `Connection`). For an upgrade,
/// `Connection: upgrade` and `Upgrade` are kept.
pub(crate) fn end_to_end_headers(from: &HeaderMap, upgrade: bool, drop_auth: bool) -> HeaderMap {
    let named_by_connection: Vec<String> = from
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|v| v.trim().to_ascii_lowercase())
        .collect();
    let mut to = HeaderMap::with_capacity(from.len());
    for (name, value) in from {
        let lower = name.as_str();
        let hop = HOP_BY_HOP.contains(&lower) || named_by_connection.iter().any(|n| n == lower);
        // `Expect: 100-continue` is answered by this server; the body is streamed anyway.
        let local = name == header::HOST || name == header::EXPECT;
        if hop || local || (drop_auth && name == header::AUTHORIZATION) {
            continue;
        }
        to.append(name.clone(), value.clone());
    }
    if upgrade {
        to.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        if let Some(protocol) = from.get(header::UPGRADE) {
            to.insert(header::UPGRADE, protocol.clone());
        }
    }
    to
}

pub(crate) fn is_upgrade(headers: &HeaderMap) -> bool {
    headers.contains_key(header::UPGRADE)
        && headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .any(|v| {
                v.split(',')
                    .any(|token| token.trim().eq_ignore_ascii_case("upgrade"))
            })
}

/// Path and query to send to the agent: the request path without `/toolbox/{id}`.
fn agent_path(uri: &axum::http::Uri) -> String {
    let path = uri.path();
    let rest = path
        .strip_prefix("/toolbox/")
        .and_then(|p| p.find('/').map(|i| &p[i..]))
        .unwrap_or("/");
    match uri.query() {
        Some(query) => format!("{rest}?{query}"),
        None => rest.to_owned(),
    }
}

/// Prefix of the agent's internal paths (the preview tunnel): never reachable through this
/// proxy.
const INTERNAL_PREFIX: &str = "/sandbar/";

/// True when `path` (as the agent would route it, or after decoding) names an internal agent
/// endpoint.
fn is_internal(path: &str) -> bool {
    let decoded = percent_encoding::percent_decode_str(path).decode_utf8_lossy();
    let mut normalized = String::with_capacity(decoded.len());
    for segment in decoded.split('/') {
        if segment.is_empty() || segment == "." {
            continue;
        }
        normalized.push('/');
        normalized.push_str(segment);
    }
    normalized.push('/');
    normalized.to_ascii_lowercase().starts_with(INTERNAL_PREFIX)
}

pub async fn proxy(
    State(state): State<AppState>,
    org: AuthOrg,
    PathParams(params): PathParams<Vec<(String, String)>>,
    request: Request,
) -> Result<Response, ApiError> {
    let id_or_name = params
        .into_iter()
        .find(|(k, _)| k == "id")
        .map(|(_, v)| v)
        .unwrap_or_default();
    let path = agent_path(request.uri());
    if is_internal(path.split('?').next().unwrap_or_default()) {
        return Err(ApiError::RouteNotFound {
            method: request.method().to_string(),
            path: request.uri().path().to_owned(),
        });
    }
    let sandbox = find(&state, org, &id_or_name).await?;
    if sandbox.state != SandboxState::Started {
        return Err(ApiError::SandboxNotStarted {
            id: sandbox.id.to_string(),
            state: sandbox.state.to_string(),
        });
    }
    let id = sandbox.id.to_string();
    let socket = state.lifecycle().runtime().agent_socket(&id);
    let stream =
        UnixStream::connect(&socket)
            .await
            .map_err(|source| ApiError::AgentUnavailable {
                id: id.clone(),
                source,
            })?;
    // Busy while in flight, timed, OOM kills of process/execute reported (see `observe`).
    let observed = super::observe::Observed::start(&state, sandbox.id, request.method(), &path);
    let response = forward(&state, sandbox.id, stream, request, path, |headers| {
        headers.remove(header::AUTHORIZATION);
        headers.insert(header::HOST, HeaderValue::from_static("sandbox"));
        if let Ok(forwarded) = HeaderValue::from_str(&id) {
            headers.insert(HeaderName::from_static("x-sandbar-sandbox-id"), forwarded);
        }
    })
    .await?;
    Ok(observed.finish(response).await)
}

/// Sends `request` as HTTP/1.1 over `io` (a connection to the agent, or a tunnel to a port of
/// the sandbox) with `path_and_query`, and streams the answer back. Hop-by-hop headers,
/// and `x-sandbar-*` headers are dropped; `prepare` adds or replaces headers.
/// A `101 Switching Protocols` answer splices both upgraded connections; the request and any
/// open upgraded connection count as activity of `sandbox_id`.
/// An HTTP/1.1 client connection to the agent over `io` (its socket, or a tunnel through it),
/// driven by a background task that also carries upgrades.
pub(crate) async fn agent_connection<T>(
    io: T,
    id: &str,
    what: &'static str,
) -> Result<hyper::client::conn::http1::SendRequest<Body>, ApiError>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .map_err(|source| ApiError::Proxy {
            id: id.to_owned(),
            source,
        })?;
    let conn_id = id.to_owned();
    tokio::spawn(async move {
        if let Err(err) = connection.with_upgrades().await {
            debug!(sandbox = %conn_id, error = %err, "{what} connection ended with an error");
        }
    });
    Ok(sender)
}

pub(crate) async fn forward<T>(
    state: &AppState,
    sandbox_id: Uuid,
    io: T,
    mut request: Request,
    path_and_query: String,
    prepare: impl FnOnce(&mut HeaderMap),
) -> Result<Response, ApiError>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let id = sandbox_id.to_string();
    let mut sender = agent_connection(io, &id, "agent").await?;

    let upgrade = is_upgrade(request.headers());
    let client_upgrade = if upgrade {
        request.extensions_mut().remove::<OnUpgrade>()
    } else {
        None
    };
    let (parts, body) = request.into_parts();
    let mut outgoing = axum::http::Request::builder()
        .method(parts.method)
        .uri(path_and_query)
        .version(Version::HTTP_11)
        .body(body)
        .map_err(|err| ApiError::InvalidParameter {
            name: "path",
            message: err.to_string(),
        })?;
    let mut headers = end_to_end_headers(&parts.headers, upgrade, false);
    let internal: Vec<HeaderName> = headers
        .keys()
        .filter(|name| name.as_str().starts_with("x-sandbar-"))
        .cloned()
        .collect();
    for name in internal {
        headers.remove(name);
    }
    prepare(&mut headers);
    *outgoing.headers_mut() = headers;

    let mut response = sender
        .send_request(outgoing)
        .await
        .map_err(|source| ApiError::Proxy {
            id: id.clone(),
            source,
        })?;
    state.activity().touch(sandbox_id);

    if response.status() == StatusCode::SWITCHING_PROTOCOLS {
        let agent_upgrade = hyper::upgrade::on(&mut response);
        let headers = end_to_end_headers(response.headers(), true, false);
        let Some(client_upgrade) = client_upgrade else {
            return Err(ApiError::InvalidParameter {
                name: "upgrade",
                message: "the agent switched protocols on a request that did not ask to".to_owned(),
            });
        };
        let state = state.clone();
        tokio::spawn(async move {
            let (client, agent) = tokio::join!(client_upgrade, agent_upgrade);
            match (client, agent) {
                (Ok(client), Ok(agent)) => {
                    // An open PTY or stream keeps the sandbox busy (auto-stop).
                    let _hold = state
                        .activity()
                        .hold(sandbox_id, crate::activity::HoldKind::Connection);
                    let (mut client, mut agent) = (TokioIo::new(client), TokioIo::new(agent));
                    let splice = tokio::io::copy_bidirectional(&mut client, &mut agent);
                    tokio::pin!(splice);
                    // An open terminal or log stream counts as activity (auto-stop).
                    let mut keepalive = tokio::time::interval(UPGRADE_ACTIVITY_PERIOD);
                    let result = loop {
                        tokio::select! {
                            result = &mut splice => break result,
                            _ = keepalive.tick() => state.activity().touch(sandbox_id),
                        }
                    };
                    state.activity().touch(sandbox_id);
                    if let Err(err) = result {
                        debug!(sandbox = %id, error = %err, "upgraded connection ended with an error");
                    }
                }
                (client, agent) => {
                    debug!(sandbox = %id, client = client.is_ok(), agent = agent.is_ok(), "upgrade failed");
                }
            }
        });
        let mut switched = Response::new(Body::empty());
        *switched.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        *switched.headers_mut() = headers;
        return Ok(switched);
    }

    let (parts, incoming) = response.into_parts();
    let mut forwarded = Response::new(Body::new(incoming));
    *forwarded.status_mut() = parts.status;
    *forwarded.headers_mut() = end_to_end_headers(&parts.headers, false, false);
    Ok(forwarded)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agent_path_strips_prefix_and_keeps_query() {
        let uri: axum::http::Uri = "/toolbox/abc/files/info?path=%2Ftmp%2Fa+b".parse().unwrap();
        assert_eq!(agent_path(&uri), "/files/info?path=%2Ftmp%2Fa+b");
        let uri: axum::http::Uri = "/toolbox/abc".parse().unwrap();
        assert_eq!(agent_path(&uri), "/");
    }

    #[test]
    fn internal_agent_paths_are_recognized_however_spelled() {
        for path in [
            "/sandbar/tunnel/8080",
            "//sandbar/tunnel/8080",
            "/./sandbar/tunnel/1",
            "/%73andbar/tunnel/1",
            "/sandbar%2Ftunnel/1",
            "/SANDBAR/tunnel/1",
            "/sandbar",
        ] {
            assert!(is_internal(path), "{path}");
        }
        for path in ["/files", "/process/execute", "/sandbarx/tunnel", "/"] {
            assert!(!is_internal(path), "{path}");
        }
    }

    #[test]
    fn hop_by_hop_and_auth_are_dropped() {
        let mut headers = HeaderMap::new();
        headers.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer x"));
        headers.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, x-private"),
        );
        headers.insert("x-private", HeaderValue::from_static("1"));
        headers.insert(
            header::TRANSFER_ENCODING,
            HeaderValue::from_static("chunked"),
        );
        headers.insert("x-daytona-source", HeaderValue::from_static("sdk-python"));
        let out = end_to_end_headers(&headers, false, true);
        assert_eq!(out.len(), 1);
        assert!(out.contains_key("x-daytona-source"));
    }
}
