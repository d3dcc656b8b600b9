//! `GET /sandbar/tunnel/{port}` (internal): a raw TCP tunnel to a port of the sandbox's own
//! loopback, for the server's preview proxy.
//!
//! The sandbox has its own network namespace, so the host cannot connect to its ports; the agent
//! runs inside that namespace. The server upgrades a connection on the agent's socket with
//! `Upgrade: sandbar-tunnel`; the agent connects to `127.0.0.1:{port}` (then `[::1]:{port}`)
//! first, so a closed port is an ordinary 502 error envelope, and only then answers
//! `101 Switching Protocols` and copies bytes both ways until either side closes.
//!
//! The server's public toolbox proxy refuses this path: only the preview proxy, which checks
//! preview credentials, reaches it.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};

use axum::body::Body;
use axum::extract::{Path, Request};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::Response;
use hyper_util::rt::TokioIo;
use sandbar_wire::agent::TUNNEL_PROTOCOL;
use tokio::net::TcpStream;

use crate::envelope::DaemonError;

/// Connects to `port` on the sandbox's loopback, IPv4 first.
async fn connect(port: u16) -> std::io::Result<TcpStream> {
    let v4 = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    match TcpStream::connect(v4).await {
        Ok(stream) => Ok(stream),
        Err(v4_err) => TcpStream::connect(SocketAddr::from((Ipv6Addr::LOCALHOST, port)))
            .await
            .map_err(|_| v4_err),
    }
}

fn asks_for_tunnel(request: &Request) -> bool {
    request
        .headers()
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case(TUNNEL_PROTOCOL))
}

pub async fn open(Path(port): Path<String>, mut request: Request) -> Result<Response, DaemonError> {
    let port: u16 = port
        .parse()
        .ok()
        .filter(|p| *p > 0)
        .ok_or_else(|| DaemonError::bad_request(format!("{port:?} is not a TCP port")))?;
    if !asks_for_tunnel(&request) {
        return Err(DaemonError::bad_request(format!(
            "the tunnel needs `Connection: upgrade` and `Upgrade: {TUNNEL_PROTOCOL}`"
        )));
    }
    let Some(on_upgrade) = request
        .extensions_mut()
        .remove::<hyper::upgrade::OnUpgrade>()
    else {
        return Err(DaemonError::bad_request(
            "this connection cannot be upgraded",
        ));
    };
    let mut upstream = connect(port).await.map_err(|err| {
        DaemonError::new(
            StatusCode::BAD_GATEWAY,
            "BAD_GATEWAY",
            format!("nothing accepts connections on port {port} in the sandbox: {err}"),
        )
    })?;
    tokio::spawn(async move {
        match on_upgrade.await {
            Ok(upgraded) => {
                let mut client = TokioIo::new(upgraded);
                if let Err(err) = tokio::io::copy_bidirectional(&mut client, &mut upstream).await {
                    tracing::debug!(port, error = %err, "tunnel closed with an error");
                }
            }
            Err(err) => tracing::debug!(port, error = %err, "tunnel upgrade failed"),
        }
    });
    let mut response = Response::new(Body::empty());
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    response
        .headers_mut()
        .insert(header::UPGRADE, HeaderValue::from_static(TUNNEL_PROTOCOL));
    Ok(response)
}
