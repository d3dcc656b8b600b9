//! Test harness: an agent serving on a temporary unix socket, driven over HTTP/1.1 with hyper.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::path::PathBuf;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Frame;
use hyper::header::HeaderValue;
use hyper::{HeaderMap, Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use sandbar_wire::agent::AgentConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

pub struct TestAgent {
    pub socket: PathBuf,
    /// A scratch directory for the test's files.
    pub dir: tempfile::TempDir,
}

pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|err| {
            panic!(
                "body is not JSON ({err}): {}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    /// Asserts the daemon error envelope.
    pub fn assert_error(&self, status: u16, code: &str, path: &str, method: &str) {
        assert_eq!(self.status.as_u16(), status, "body: {:?}", self.body);
        let json = self.json();
        assert_eq!(json["statusCode"], status);
        assert_eq!(json["code"], code, "{json}");
        assert_eq!(json["source"], "DAYTONA_DAEMON");
        assert_eq!(json["path"], path);
        assert_eq!(json["method"], method);
        assert!(json["message"].as_str().is_some_and(|m| !m.is_empty()));
        assert!(json["timestamp"].as_str().is_some());
        let content_type = self.headers["content-type"].to_str().unwrap();
        assert!(
            content_type.starts_with("application/json"),
            "{content_type}"
        );
    }
}

pub type Body = BoxBody<Bytes, Infallible>;

pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into()).boxed()
}

/// A body sent with chunked transfer encoding (no Content-Length).
pub fn chunked(chunks: Vec<Vec<u8>>) -> Body {
    let frames = chunks
        .into_iter()
        .map(|c| Ok::<_, Infallible>(Frame::data(Bytes::from(c))));
    StreamBody::new(futures_util::stream::iter(frames)).boxed()
}

impl TestAgent {
    pub async fn start() -> TestAgent {
        Self::start_with_env(BTreeMap::from([(
            "SANDBAR_TEST_ENV".to_owned(),
            "from-config".to_owned(),
        )]))
        .await
    }

    pub async fn start_with_env(env: BTreeMap<String, String>) -> TestAgent {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("agent.sock");
        let listener = tokio::net::UnixListener::bind(&socket).unwrap();
        let config = AgentConfig {
            user: "root".to_owned(),
            env,
            init: false,
        };
        tokio::spawn(sandbar_agent::serve(listener, config, false));
        TestAgent { socket, dir }
    }

    pub fn path(&self, name: &str) -> String {
        self.dir.path().join(name).to_string_lossy().into_owned()
    }

    pub async fn send(&self, request: Request<Body>) -> Reply {
        let stream = tokio::net::UnixStream::connect(&self.socket).await.unwrap();
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .unwrap();
        tokio::spawn(conn);
        let response = sender.send_request(request).await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        Reply {
            status,
            headers,
            body,
        }
    }

    pub async fn call(&self, method: Method, uri: &str, body: Option<serde_json::Value>) -> Reply {
        let mut builder = Request::builder()
            .method(method)
            .uri(uri)
            .header("host", "agent");
        let body = match body {
            Some(json) => {
                builder = builder.header("content-type", "application/json");
                full(serde_json::to_vec(&json).unwrap())
            }
            None => full(Bytes::new()),
        };
        self.send(builder.body(body).unwrap()).await
    }

    pub async fn get(&self, uri: &str) -> Reply {
        self.call(Method::GET, uri, None).await
    }

    pub async fn post(&self, uri: &str, body: serde_json::Value) -> Reply {
        self.call(Method::POST, uri, Some(body)).await
    }

    /// Opens a WebSocket on `uri` and returns every data frame until the close frame, plus
    /// the close code.
    pub async fn websocket_frames(&self, uri: &str) -> (Vec<Vec<u8>>, Option<u16>) {
        let (frames, close, _) = self.websocket(uri, &[], None).await;
        (frames, close)
    }

    /// Opens a WebSocket offering `protocols`, sends `input` as one binary frame, and
    /// collects frames until the close frame: (frames, close code, close reason).
    pub async fn websocket(
        &self,
        uri: &str,
        protocols: &[&str],
        input: Option<&[u8]>,
    ) -> (Vec<Vec<u8>>, Option<u16>, String) {
        let stream = tokio::net::UnixStream::connect(&self.socket).await.unwrap();
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .unwrap();
        tokio::spawn(conn.with_upgrades());
        let mut request = Request::builder().uri(uri);
        if !protocols.is_empty() {
            request = request.header("sec-websocket-protocol", protocols.join(", "));
        }
        let request = request
            .header("host", "agent")
            .header("connection", "upgrade")
            .header("upgrade", "websocket")
            .header("sec-websocket-version", "13")
            .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
            .body(full(Bytes::new()))
            .unwrap();
        let response = sender.send_request(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::SWITCHING_PROTOCOLS);
        let upgraded = hyper::upgrade::on(response).await.unwrap();
        let mut io = TokioIo::new(upgraded);
        if let Some(input) = input {
            // One masked binary frame (mask 0 keeps the payload as is).
            let mut frame = vec![0x82];
            if input.len() < 126 {
                frame.push(0x80 | u8::try_from(input.len()).unwrap());
            } else {
                frame.push(0x80 | 126);
                frame.extend_from_slice(&u16::try_from(input.len()).unwrap().to_be_bytes());
            }
            frame.extend_from_slice(&[0, 0, 0, 0]);
            frame.extend_from_slice(input);
            io.write_all(&frame).await.unwrap();
        }
        let mut frames = Vec::new();
        loop {
            let mut head = [0u8; 2];
            if io.read_exact(&mut head).await.is_err() {
                return (frames, None, String::new());
            }
            let opcode = head[0] & 0x0f;
            assert_eq!(head[1] & 0x80, 0, "server frames are not masked");
            let len = match head[1] & 0x7f {
                126 => {
                    let mut ext = [0u8; 2];
                    io.read_exact(&mut ext).await.unwrap();
                    u64::from(u16::from_be_bytes(ext))
                }
                127 => {
                    let mut ext = [0u8; 8];
                    io.read_exact(&mut ext).await.unwrap();
                    u64::from_be_bytes(ext)
                }
                n => u64::from(n),
            };
            let mut payload = vec![0u8; usize::try_from(len).unwrap()];
            io.read_exact(&mut payload).await.unwrap();
            match opcode {
                0x0..=0x2 => frames.push(payload),
                0x8 => {
                    let code =
                        (payload.len() >= 2).then(|| u16::from_be_bytes([payload[0], payload[1]]));
                    let reason =
                        String::from_utf8_lossy(payload.get(2..).unwrap_or_default()).into_owned();
                    // Answer the close as a polite client would.
                    let _ = io.write_all(&[0x88, 0x80, 0, 0, 0, 0]).await;
                    return (frames, code, reason);
                }
                _ => {}
            }
        }
    }
}

/// A `multipart/form-data` body.
pub struct Multipart {
    pub boundary: String,
    pub body: Vec<u8>,
}

impl Multipart {
    pub fn new() -> Self {
        Multipart {
            boundary: "test-boundary-7d3f".to_owned(),
            body: Vec::new(),
        }
    }

    pub fn text(mut self, name: &str, value: &str) -> Self {
        self.body.extend_from_slice(
            format!(
                "--{}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n",
                self.boundary
            )
            .as_bytes(),
        );
        self
    }

    pub fn file(mut self, name: &str, filename: &str, bytes: &[u8]) -> Self {
        self.body.extend_from_slice(
            format!(
                "--{}\r\nContent-Disposition: form-data; name=\"{name}\"; filename=\"{filename}\"\r\nContent-Type: application/octet-stream\r\n\r\n",
                self.boundary
            )
            .as_bytes(),
        );
        self.body.extend_from_slice(bytes);
        self.body.extend_from_slice(b"\r\n");
        self
    }

    pub fn finish(mut self) -> (HeaderValue, Vec<u8>) {
        self.body
            .extend_from_slice(format!("--{}--\r\n", self.boundary).as_bytes());
        (
            HeaderValue::from_str(&format!("multipart/form-data; boundary={}", self.boundary))
                .unwrap(),
            self.body,
        )
    }
}

/// One part of a multipart response.
#[derive(Debug)]
pub struct Part {
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Part {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

fn find(haystack: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    haystack[from..]
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|p| p + from)
}

/// Parses a multipart body strictly: every part must end in CRLF before the next delimiter,
/// Content-Length (when present) must match, and the closing delimiter must be present.
pub fn parse_multipart(body: &[u8], boundary: &str) -> Vec<Part> {
    let delimiter = format!("--{boundary}").into_bytes();
    assert!(
        body.starts_with(&delimiter),
        "body starts with the boundary"
    );
    let mut parts = Vec::new();
    let mut pos = delimiter.len();
    loop {
        if body[pos..].starts_with(b"--") {
            assert_eq!(&body[pos..], b"--\r\n", "closing delimiter ends the body");
            return parts;
        }
        assert!(body[pos..].starts_with(b"\r\n"));
        pos += 2;
        let head_end = find(body, b"\r\n\r\n", pos).expect("part headers end");
        let headers: Vec<(String, String)> = String::from_utf8(body[pos..head_end].to_vec())
            .unwrap()
            .split("\r\n")
            .map(|line| {
                let (k, v) = line.split_once(": ").unwrap();
                (k.to_owned(), v.to_owned())
            })
            .collect();
        pos = head_end + 4;
        let mut next_delimiter = b"\r\n".to_vec();
        next_delimiter.extend_from_slice(&delimiter);
        let end = find(body, &next_delimiter, pos).expect("closing delimiter is present");
        let part = Part {
            headers,
            body: body[pos..end].to_vec(),
        };
        if let Some(len) = part.header("Content-Length") {
            assert_eq!(len.parse::<usize>().unwrap(), part.body.len());
        }
        parts.push(part);
        pos = end + next_delimiter.len();
    }
}
