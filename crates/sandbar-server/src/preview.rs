//! Port previews (`shared/daytona-api.md` §3.4): `http://{port}-{sandboxId}.{domain}` and
//! `http://{port}-{signedToken}.{domain}` reach whatever listens on that port inside the
//! sandbox, HTTP and WebSocket alike.
//!
//! Requests are routed by their `Host` header before the API routes. The sandbox has its own
//! network namespace, so the server cannot connect to its ports: it opens the agent's unix
//! socket, upgrades it to the agent's TCP tunnel (`GET /sandbar/tunnel/{port}`, see
//! `sandbar_wire::agent::TUNNEL_PATH`) and speaks HTTP/1.1 over the tunnel, forwarding upgrades.
//!
//! Credentials of a private sandbox: the `X-Daytona-Preview-Token` header, the
//! `DAYTONA_SANDBOX_AUTH_KEY` query parameter (both the sandbox's preview token), or an API key
//! of the sandbox's organization as `Authorization: Bearer`. Public sandboxes need none; a
//! signed URL carries its own credential in the host name. Credentials are removed before the
//! request reaches the sandbox.
//!
//! Signed URLs live in memory: a server restart expires them all (the SDK asks for a new one).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use hyper_util::rt::TokioIo;
use rand::distributions::{Alphanumeric, DistString};
use sandbar_core::{Sandbox, SandboxState};
use sandbar_wire::agent::{TUNNEL_PATH, TUNNEL_PROTOCOL};
use tokio::net::UnixStream;
use uuid::Uuid;

use crate::controllers::toolbox::{agent_connection, forward};
use crate::error::ApiError;
use crate::AppState;

/// Header carrying the sandbox's preview token.
pub const TOKEN_HEADER: &str = "x-daytona-preview-token";
/// Query parameter carrying the sandbox's preview token (browsers' WebSockets).
pub const TOKEN_QUERY: &str = "DAYTONA_SANDBOX_AUTH_KEY";
/// Lifetime of a signed preview URL when the request names none.
pub const DEFAULT_SIGNED_TTL: Duration = Duration::from_secs(60);
/// Longest lifetime of a signed preview URL.
pub const MAX_SIGNED_TTL: Duration = Duration::from_secs(24 * 60 * 60);
/// Length of a signed token: lowercase letters and digits, so it fits a DNS label.
const SIGNED_TOKEN_LEN: usize = 40;

/// Where preview URLs point: `{scheme}://{port}-{id}.{domain}`.
#[derive(Debug, Clone)]
pub struct PreviewDomain {
    /// `http` or `https`.
    pub scheme: String,
    /// Domain, with a port when not the scheme's default, e.g. `localhost:3000`.
    pub domain: String,
}

impl PreviewDomain {
    pub fn url(&self, port: u16, label: &str) -> String {
        format!("{}://{port}-{label}.{}", self.scheme, self.domain)
    }

    /// `{scheme}://{{PORT}}-{{sandboxId}}.{domain}` (`GET /api/config`).
    pub fn url_template(&self) -> String {
        format!(
            "{}://{{{{PORT}}}}-{{{{sandboxId}}}}.{}",
            self.scheme, self.domain
        )
    }

    /// The domain's host name, lowercase, without a port.
    fn host_name(&self) -> String {
        strip_port(&self.domain).to_ascii_lowercase()
    }
}

fn strip_port(host: &str) -> &str {
    match host.rsplit_once(':') {
        Some((name, port)) if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    }
}

/// `(port, label)` when `host` (a `Host` header value) is `{port}-{label}.{domain}`. Ports are
/// ignored: the same domain may be reached through a reverse proxy on another port.
pub fn parse_host(host: &str, domain_host: &str) -> Option<(u16, String)> {
    let name = strip_port(host.trim())
        .trim_end_matches('.')
        .to_ascii_lowercase();
    let sub = name.strip_suffix(domain_host)?.strip_suffix('.')?;
    if sub.contains('.') {
        return None;
    }
    let (port, label) = sub.split_once('-')?;
    let port: u16 = port.parse().ok().filter(|p| *p > 0)?;
    (!label.is_empty()).then(|| (port, label.to_owned()))
}

#[derive(Debug, Clone, Copy)]
struct Signed {
    sandbox: Uuid,
    port: u16,
    expires: Instant,
}

/// Signed preview tokens issued by this process.
#[derive(Debug, Default)]
pub struct SignedPreviews {
    tokens: Mutex<HashMap<String, Signed>>,
}

impl SignedPreviews {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Signed>> {
        self.tokens
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// A new token for `port` of `sandbox`, valid for `ttl`.
    pub fn issue(&self, sandbox: Uuid, port: u16, ttl: Duration) -> String {
        let token = Alphanumeric
            .sample_string(&mut rand::thread_rng(), SIGNED_TOKEN_LEN)
            .to_ascii_lowercase();
        let now = Instant::now();
        let mut tokens = self.lock();
        tokens.retain(|_, signed| signed.expires > now);
        tokens.insert(
            token.clone(),
            Signed {
                sandbox,
                port,
                expires: now + ttl,
            },
        );
        token
    }

    /// Expires `token` if it was issued for `port` of `sandbox`; true when it was.
    pub fn expire(&self, sandbox: Uuid, port: u16, token: &str) -> bool {
        let mut tokens = self.lock();
        match tokens.get(token) {
            Some(signed) if signed.sandbox == sandbox && signed.port == port => {
                tokens.remove(token);
                true
            }
            _ => false,
        }
    }

    fn check(&self, token: &str, port: u16) -> Option<Uuid> {
        let tokens = self.lock();
        tokens
            .get(token)
            .filter(|signed| signed.port == port && signed.expires > Instant::now())
            .map(|signed| signed.sandbox)
    }
}

/// Middleware in front of the API routes: requests whose host is a preview host go to the
/// sandbox, everything else to the API.
pub async fn by_host(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let host = request
        .headers()
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .or_else(|| request.uri().authority().map(|a| a.to_string()));
    let domain_host = state.preview_domain().host_name();
    match host.and_then(|host| parse_host(&host, &domain_host)) {
        Some((port, label)) => match serve(&state, port, &label, request).await {
            Ok(response) => response,
            Err(err) => axum::response::IntoResponse::into_response(err),
        },
        None => next.run(request).await,
    }
}

/// The query string without the preview token parameter.
fn query_without_token(query: &str) -> String {
    query
        .split('&')
        .filter(|pair| {
            let key = pair.split_once('=').map_or(*pair, |(k, _)| k);
            !pair.is_empty() && key != TOKEN_QUERY
        })
        .collect::<Vec<_>>()
        .join("&")
}

fn query_token(query: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let (key, value) = pair.split_once('=')?;
        (key == TOKEN_QUERY).then(|| {
            percent_encoding::percent_decode_str(value)
                .decode_utf8_lossy()
                .into_owned()
        })
    })
}

/// Constant-time comparison of two tokens.
fn same_token(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// How a preview request was let in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Access {
    /// Preview token (header or query), a signed URL, or a public sandbox.
    Open,
    /// An API key in `Authorization`, which must not reach the sandbox.
    ApiKey,
    Denied,
}

async fn access(
    state: &AppState,
    sandbox: &Sandbox,
    headers: &HeaderMap,
    query: Option<&str>,
) -> Result<Access, ApiError> {
    if let Some(token) = headers.get(TOKEN_HEADER).and_then(|v| v.to_str().ok()) {
        if same_token(token.trim(), &sandbox.preview_token) {
            return Ok(Access::Open);
        }
    }
    if let Some(token) = query.and_then(query_token) {
        if same_token(&token, &sandbox.preview_token) {
            return Ok(Access::Open);
        }
    }
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, key)| key.trim().to_owned());
    if let Some(key) = bearer.filter(|k| !k.is_empty()) {
        if state.store().authenticate(&key).await? == Some(sandbox.organization_id) {
            return Ok(Access::ApiKey);
        }
    }
    Ok(if sandbox.public {
        Access::Open
    } else {
        Access::Denied
    })
}

async fn serve(
    state: &AppState,
    port: u16,
    label: &str,
    request: Request,
) -> Result<Response, ApiError> {
    let (sandbox_id, signed) = match Uuid::parse_str(label) {
        Ok(id) => (id, false),
        Err(_) => match state.previews().check(label, port) {
            Some(id) => (id, true),
            None => return Err(ApiError::PreviewUnauthorized),
        },
    };
    let sandbox = state
        .store()
        .get_sandbox(sandbox_id)
        .await?
        .filter(|s| s.state != SandboxState::Destroyed)
        .ok_or_else(|| ApiError::SandboxNotFound(sandbox_id.to_string()))?;
    let access = if signed {
        Access::Open
    } else {
        let headers = request.headers().clone();
        let query = request.uri().query().map(str::to_owned);
        access(state, &sandbox, &headers, query.as_deref()).await?
    };
    if access == Access::Denied {
        return Err(ApiError::PreviewUnauthorized);
    }
    if sandbox.state != SandboxState::Started {
        return Err(ApiError::SandboxNotStarted {
            id: sandbox.id.to_string(),
            state: sandbox.state.to_string(),
        });
    }
    state.activity().touch(sandbox.id);
    let tunnel = open_tunnel(state, &sandbox, port).await?;
    let path = request.uri().path().to_owned();
    let path_and_query = match request.uri().query().map(query_without_token) {
        Some(query) if !query.is_empty() => format!("{path}?{query}"),
        _ => path,
    };
    let host = request.headers().get(header::HOST).cloned();
    forward(
        state,
        sandbox.id,
        tunnel,
        request,
        path_and_query,
        |headers| {
            headers.remove(TOKEN_HEADER);
            if access == Access::ApiKey {
                headers.remove(header::AUTHORIZATION);
            }
            if let Some(host) = host {
                headers.insert(header::HOST, host);
            }
        },
    )
    .await
}

/// Opens the agent's TCP tunnel to `port` and returns the upgraded connection.
async fn open_tunnel(
    state: &AppState,
    sandbox: &Sandbox,
    port: u16,
) -> Result<TokioIo<hyper::upgrade::Upgraded>, ApiError> {
    let id = sandbox.id.to_string();
    let socket = state.lifecycle().runtime().agent_socket(&id);
    let stream =
        UnixStream::connect(&socket)
            .await
            .map_err(|source| ApiError::AgentUnavailable {
                id: id.clone(),
                source,
            })?;
    let mut sender = agent_connection(stream, &id, "tunnel").await?;
    let request = axum::http::Request::builder()
        .method("GET")
        .uri(format!("{TUNNEL_PATH}/{port}"))
        .header(header::HOST, "sandbox")
        .header(header::CONNECTION, "upgrade")
        .header(header::UPGRADE, HeaderValue::from_static(TUNNEL_PROTOCOL))
        .body(Body::empty())
        .map_err(|err| ApiError::InvalidParameter {
            name: "port",
            message: err.to_string(),
        })?;
    let mut response = sender
        .send_request(request)
        .await
        .map_err(|source| ApiError::Proxy {
            id: id.clone(),
            source,
        })?;
    if response.status() != StatusCode::SWITCHING_PROTOCOLS {
        let status = response.status();
        let body = http_body_util::BodyExt::collect(response.into_body())
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        let message = serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v.get("message").and_then(|m| m.as_str()).map(str::to_owned))
            .unwrap_or_else(|| format!("the agent answered {status}"));
        return Err(ApiError::PortUnreachable { port, message });
    }
    hyper::upgrade::on(&mut response)
        .await
        .map(TokioIo::new)
        .map_err(|source| ApiError::Proxy { id, source })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_are_parsed_with_or_without_ports() {
        let id = "0b7e5a43-1d2c-4d8e-9f00-1a2b3c4d5e6f";
        assert_eq!(
            parse_host(&format!("8080-{id}.localhost:3000"), "localhost"),
            Some((8080, id.to_owned()))
        );
        assert_eq!(
            parse_host("3000-AbC.Preview.Example.com", "preview.example.com"),
            Some((3000, "abc".to_owned()))
        );
        assert_eq!(parse_host("localhost:3000", "localhost"), None);
        assert_eq!(parse_host("8080-x.y.localhost", "localhost"), None);
        assert_eq!(parse_host("0-x.localhost", "localhost"), None);
        assert_eq!(parse_host("99999-x.localhost", "localhost"), None);
        assert_eq!(parse_host("8080-.localhost", "localhost"), None);
        assert_eq!(parse_host("8080-xlocalhost", "localhost"), None);
        assert_eq!(parse_host("8080-x.notlocalhost", "localhost"), None);
    }

    #[test]
    fn token_query_parameter_is_read_and_removed() {
        let q = "a=1&DAYTONA_SANDBOX_AUTH_KEY=t%2Bk&b=2";
        assert_eq!(query_token(q).as_deref(), Some("t+k"));
        assert_eq!(query_without_token(q), "a=1&b=2");
        assert_eq!(query_without_token("DAYTONA_SANDBOX_AUTH_KEY=x"), "");
    }

    #[test]
    fn signed_tokens_expire_and_are_bound_to_a_port() {
        let previews = SignedPreviews::default();
        let sandbox = Uuid::new_v4();
        let token = previews.issue(sandbox, 8080, Duration::from_secs(60));
        assert_eq!(token.len(), SIGNED_TOKEN_LEN);
        assert!(token
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()));
        assert_eq!(previews.check(&token, 8080), Some(sandbox));
        assert_eq!(previews.check(&token, 8081), None);
        assert!(!previews.expire(Uuid::new_v4(), 8080, &token));
        assert!(previews.expire(sandbox, 8080, &token));
        assert_eq!(previews.check(&token, 8080), None);
        let short = previews.issue(sandbox, 1, Duration::ZERO);
        assert_eq!(previews.check(&short, 1), None);
    }

    #[test]
    fn tokens_compare_exactly() {
        assert!(same_token("abc", "abc"));
        assert!(!same_token("abc", "abd"));
        assert!(!same_token("abc", "abcd"));
    }
}
