//! In-process tests of the HTTP API against [`FakeRuntime`].

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode};
use axum::Router;
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tower::ServiceExt;

use crate::testing::FakeRuntime;
use crate::{app, AppState, ServerConfig};

mod api;
mod lifecycle;
mod proxy;
mod serve;

pub const KEY: &str = "test-key";

pub struct TestApp {
    pub dir: Arc<tempfile::TempDir>,
    pub runtime: Arc<FakeRuntime>,
    pub state: AppState,
    pub router: Router,
}

pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
    pub raw: Vec<u8>,
}

pub fn config(dir: &std::path::Path) -> ServerConfig {
    let mut config = ServerConfig::new("127.0.0.1:3000".parse().unwrap(), dir.to_owned());
    config.api_key = Some(KEY.to_owned());
    config
}

impl TestApp {
    pub async fn new() -> Self {
        let dir = Arc::new(tempfile::tempdir().unwrap());
        let runtime = Arc::new(FakeRuntime::new(dir.path().join("sockets")));
        Self::open(dir, runtime).await
    }

    pub async fn open(dir: Arc<tempfile::TempDir>, runtime: Arc<FakeRuntime>) -> Self {
        let addr: SocketAddr = "127.0.0.1:3000".parse().unwrap();
        let state = AppState::open(&config(dir.path()), runtime.clone(), addr)
            .await
            .unwrap();
        let router = app(state.clone());
        Self {
            dir,
            runtime,
            state,
            router,
        }
    }

    /// Simulates a server restart: shuts this instance down and opens the same data directory
    /// with `runtime` (the same one: processes survived; a new one: they died).
    pub async fn restart(self, runtime: Arc<FakeRuntime>) -> Self {
        self.state.shutdown().await;
        self.state.store().close().await;
        Self::open(self.dir.clone(), runtime).await
    }

    pub async fn send(
        &self,
        method: Method,
        path: &str,
        key: Option<&str>,
        body: Option<Vec<u8>>,
    ) -> Reply {
        let mut request = Request::builder().method(method).uri(path);
        if let Some(key) = key {
            request = request.header("authorization", format!("Bearer {key}"));
        }
        let request = request
            .body(body.map(Body::from).unwrap_or_else(Body::empty))
            .unwrap();
        let response = self.router.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let raw = response
            .into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .to_vec();
        let body = serde_json::from_slice(&raw).unwrap_or(Value::Null);
        Reply {
            status,
            headers,
            body,
            raw,
        }
    }

    pub async fn call(&self, method: Method, path: &str, body: Option<Value>) -> Reply {
        self.send(
            method,
            path,
            Some(KEY),
            body.map(|b| serde_json::to_vec(&b).unwrap()),
        )
        .await
    }

    pub async fn create(&self, body: Value) -> Value {
        let reply = self.call(Method::POST, "/api/sandbox", Some(body)).await;
        assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
        reply.body
    }

    /// Polls `GET /api/sandbox/{id}` until `state` (or panics after 5 s).
    pub async fn wait_state(&self, id: &str, state: &str) -> Value {
        for _ in 0..500 {
            let reply = self
                .call(Method::GET, &format!("/api/sandbox/{id}"), None)
                .await;
            if reply.body["state"] == state {
                return reply.body;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("sandbox {id} never reached {state}");
    }
}

/// Asserts the error envelope shape and returns its message.
pub fn assert_envelope(reply: &Reply, status: u16, path: &str) -> String {
    assert_eq!(reply.status.as_u16(), status, "{:?}", reply.body);
    let ct = reply.headers.get("content-type").unwrap().to_str().unwrap();
    assert!(ct.starts_with("application/json"), "{ct}");
    let body = &reply.body;
    assert_eq!(body["statusCode"], json!(status));
    assert!(body["error"].is_string());
    assert!(body["code"].is_string());
    assert_eq!(body["path"], json!(path));
    assert!(body["timestamp"].is_string());
    assert!(body["source"].is_string());
    body["message"].as_str().unwrap().to_owned()
}
