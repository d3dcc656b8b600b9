//! The real server: TCP listener, first-start key, graceful shutdown.

use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::{config, KEY};
use crate::serve_on;
use crate::testing::FakeRuntime;

async fn get(addr: std::net::SocketAddr, path: &str, key: &str) -> String {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\nConnection: close\r\n\r\n");
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut reply = String::new();
    tcp.read_to_string(&mut reply).await.unwrap();
    reply
}

#[tokio::test]
async fn serves_over_tcp_and_shuts_down_gracefully() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = Arc::new(FakeRuntime::new(dir.path().join("sockets")));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(serve_on(
        listener,
        config(dir.path()),
        runtime,
        async move {
            let _ = stopped.await;
        },
    ));

    let reply = get(addr, "/api/sandbox", KEY).await;
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    assert!(reply.contains(r#""items":[]"#), "{reply}");
    assert!(
        reply.to_ascii_lowercase().contains("x-request-id: "),
        "{reply}"
    );
    let reply = get(addr, "/api/sandbox", "nope").await;
    assert!(reply.starts_with("HTTP/1.1 401"), "{reply}");

    stop.send(()).unwrap();
    server.await.unwrap().unwrap();
    assert!(
        TcpStream::connect(addr).await.is_err(),
        "still accepting after shutdown"
    );
}
