//! The toolbox reverse proxy against a fake agent on a unix socket, over a real TCP listener.

use std::convert::Infallible;

use axum::body::Body;
use axum::http::{Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UnixListener};

use super::{TestApp, KEY};
use crate::app;

/// Agent: echoes method, path, selected headers and the body as JSON; `/ws` upgrades to a
/// byte echo.
async fn agent(request: Request<hyper::body::Incoming>) -> Result<Response<Body>, Infallible> {
    if request.uri().path() == "/ws" {
        let upgrade = hyper::upgrade::on(request);
        tokio::spawn(async move {
            if let Ok(upgraded) = upgrade.await {
                let mut io = TokioIo::new(upgraded);
                let mut buf = [0u8; 64];
                while let Ok(n) = io.read(&mut buf).await {
                    if n == 0 || io.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            }
        });
        let response = Response::builder()
            .status(StatusCode::SWITCHING_PROTOCOLS)
            .header("connection", "upgrade")
            .header("upgrade", "echo")
            .body(Body::empty())
            .unwrap();
        return Ok(response);
    }
    let method = request.method().to_string();
    let path = request.uri().to_string();
    let auth = request.headers().get("authorization").is_some();
    let source = request
        .headers()
        .get("x-daytona-source")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let body = request.into_body().collect().await.unwrap().to_bytes();
    let reply = json!({"method": method, "path": path, "auth": auth, "source": source, "body": String::from_utf8_lossy(&body)});
    Ok(Response::builder()
        .status(StatusCode::ACCEPTED)
        .header("content-type", "application/json")
        .body(Body::from(reply.to_string()))
        .unwrap())
}

fn spawn_agent(socket: std::path::PathBuf) {
    std::fs::create_dir_all(socket.parent().unwrap()).unwrap();
    let listener = UnixListener::bind(&socket).unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service_fn(agent))
                    .with_upgrades()
                    .await;
            });
        }
    });
}

async fn serve(app_state: &TestApp) -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let router = app(app_state.state.clone());
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    addr
}

#[tokio::test]
async fn proxies_requests_and_upgrades_to_the_agent() {
    let app = TestApp::new().await;
    let sb = app.create(json!({})).await;
    let id = sb["id"].as_str().unwrap().to_owned();
    spawn_agent(app.runtime.agent_socket_path(&id));

    // In process: method, path, query, headers and body are forwarded; Authorization is not.
    let request = Request::builder()
        .method(Method::POST)
        .uri(format!("/toolbox/{id}/process/execute?x=%2Fa+b"))
        .header("authorization", format!("Bearer {KEY}"))
        .header("x-daytona-source", "sdk-python")
        .body(Body::from(r#"{"command":"echo hello"}"#))
        .unwrap();
    let response = tower::ServiceExt::oneshot(app.router.clone(), request)
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let body: serde_json::Value =
        serde_json::from_slice(&response.into_body().collect().await.unwrap().to_bytes()).unwrap();
    assert_eq!(body["method"], "POST");
    assert_eq!(body["path"], "/process/execute?x=%2Fa+b");
    assert_eq!(body["auth"], false);
    assert_eq!(body["source"], "sdk-python");
    assert_eq!(body["body"], r#"{"command":"echo hello"}"#);

    // Over TCP: an upgrade is spliced both ways.
    let addr = serve(&app).await;
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "GET /toolbox/{id}/ws HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {KEY}\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n"
    );
    tcp.write_all(head.as_bytes()).await.unwrap();
    let mut buf = vec![0u8; 1024];
    let mut got = Vec::new();
    while !got.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = tcp.read(&mut buf).await.unwrap();
        assert!(
            n > 0,
            "connection closed: {}",
            String::from_utf8_lossy(&got)
        );
        got.extend_from_slice(&buf[..n]);
    }
    let head = String::from_utf8_lossy(&got).to_lowercase();
    assert!(head.starts_with("http/1.1 101"), "{head}");
    assert!(head.contains("upgrade: echo"), "{head}");
    tcp.write_all(b"ping").await.unwrap();
    let mut echoed = [0u8; 4];
    tcp.read_exact(&mut echoed).await.unwrap();
    assert_eq!(&echoed, b"ping");
}

#[tokio::test]
async fn stopped_sandboxes_and_dead_agents_get_envelopes() {
    let app = TestApp::new().await;
    let sb = app.create(json!({})).await;
    let id = sb["id"].as_str().unwrap().to_owned();
    // No agent listening: 502.
    let reply = app
        .call(Method::GET, &format!("/toolbox/{id}/files?path=/"), None)
        .await;
    super::assert_envelope(&reply, 502, &format!("/toolbox/{id}/files"));
    app.call(Method::POST, &format!("/api/sandbox/{id}/stop"), None)
        .await;
    let reply = app
        .call(
            Method::POST,
            &format!("/toolbox/{id}/process/execute"),
            None,
        )
        .await;
    let message = super::assert_envelope(&reply, 409, &format!("/toolbox/{id}/process/execute"));
    assert!(message.contains("stopped"), "{message}");
}
