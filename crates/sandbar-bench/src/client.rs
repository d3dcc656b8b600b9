//! A minimal HTTP/1.1 client for the calls the Daytona SDKs make, on hyper over one TCP
//! connection per [`Client`] (the SDKs keep pooled keep-alive connections too).
//!
//! Bodies are streamed both ways: a 1 GiB upload is a repeated 1 MiB buffer, a download is
//! counted frame by frame and never held in memory.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use futures_util::stream;
use http::{Method, Request, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};

type Body = BoxBody<Bytes, std::io::Error>;

/// Headers the Python SDK sends on every call.
const SDK_SOURCE: &str = "sdk-python";
const SDK_AGENT: &str = "sdk-python/0.226.1";

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("failed to connect to {addr}")]
    Connect {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("HTTP/1 handshake with {addr} failed")]
    Handshake {
        addr: SocketAddr,
        #[source]
        source: hyper::Error,
    },
    #[error("{method} {path} failed")]
    Request {
        method: Method,
        path: String,
        #[source]
        source: hyper::Error,
    },
    #[error("{method} {path} answered {status}: {body}")]
    Status {
        method: Method,
        path: String,
        status: StatusCode,
        body: String,
    },
    #[error("{method} {path}: unexpected response body: {detail}")]
    Body {
        method: Method,
        path: String,
        detail: String,
    },
    #[error("invalid toolbox URL {0:?} (expected http://host:port/path)")]
    ToolboxUrl(String),
}

/// One keep-alive connection to the server, with the SDK's headers and API key.
pub struct Client {
    addr: SocketAddr,
    host: String,
    api_key: String,
    sender: SendRequest<Body>,
}

/// What the benchmark needs of a created sandbox.
#[derive(Debug, Clone)]
pub struct SandboxHandle {
    pub id: String,
    /// Path prefix of toolbox calls on this server, e.g. `/toolbox/<id>`.
    pub toolbox_prefix: String,
}

/// Result of `POST /process/execute`.
#[derive(Debug, Clone)]
pub struct ExecOutcome {
    pub exit_code: i64,
    pub result: String,
}

impl Client {
    pub async fn connect(addr: SocketAddr, api_key: &str) -> Result<Self, ClientError> {
        let stream = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|source| ClientError::Connect { addr, source })?;
        // Small requests: do not wait for Nagle.
        let _ = stream.set_nodelay(true);
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|source| ClientError::Handshake { addr, source })?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(Self {
            addr,
            host: format!("localhost:{}", addr.port()),
            api_key: api_key.to_owned(),
            sender,
        })
    }

    /// Reconnects when the server closed the connection (keep-alive expiry, error).
    async fn ready(&mut self) -> Result<(), ClientError> {
        if self.sender.ready().await.is_err() || self.sender.is_closed() {
            *self = Self::connect(self.addr, &self.api_key).await?;
        }
        Ok(())
    }

    fn request(&self, method: Method, path: &str) -> http::request::Builder {
        Request::builder()
            .method(method)
            .uri(path)
            .header(http::header::HOST, &self.host)
            .header(
                http::header::AUTHORIZATION,
                format!("Bearer {}", self.api_key),
            )
            .header("X-Daytona-Source", SDK_SOURCE)
            .header("X-Daytona-SDK-Version", "0.226.1")
            .header(http::header::USER_AGENT, SDK_AGENT)
    }

    async fn send(
        &mut self,
        method: Method,
        path: &str,
        request: Request<Body>,
    ) -> Result<http::Response<Incoming>, ClientError> {
        self.ready().await?;
        let response =
            self.sender
                .send_request(request)
                .await
                .map_err(|source| ClientError::Request {
                    method: method.clone(),
                    path: path.to_owned(),
                    source,
                })?;
        if !response.status().is_success() {
            let status = response.status();
            let body = response
                .into_body()
                .collect()
                .await
                .map(|b| String::from_utf8_lossy(&b.to_bytes()).into_owned())
                .unwrap_or_default();
            return Err(ClientError::Status {
                method,
                path: path.to_owned(),
                status,
                body,
            });
        }
        Ok(response)
    }

    /// Sends a JSON body (or none) and parses a JSON answer (`Value::Null` when empty).
    async fn json(
        &mut self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, ClientError> {
        let mut builder = self
            .request(method.clone(), path)
            .header(http::header::ACCEPT, "application/json");
        let body = match body {
            Some(value) => {
                builder = builder.header(http::header::CONTENT_TYPE, "application/json");
                full(Bytes::from(value.to_string()))
            }
            None => full(Bytes::new()),
        };
        let request = builder.body(body).expect("static request parts are valid");
        let response = self.send(method.clone(), path, request).await?;
        let bytes = response
            .into_body()
            .collect()
            .await
            .map_err(|source| ClientError::Request {
                method: method.clone(),
                path: path.to_owned(),
                source,
            })?
            .to_bytes();
        if bytes.is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_slice(&bytes).map_err(|e| ClientError::Body {
            method,
            path: path.to_owned(),
            detail: e.to_string(),
        })
    }

    /// `POST /api/sandbox` with the body of `daytona.create()`.
    pub async fn create_sandbox(
        &mut self,
        network_block_all: bool,
    ) -> Result<SandboxHandle, ClientError> {
        let path = "/api/sandbox";
        let mut body = json!({
            "env": {},
            "labels": {"code-toolbox-language": "python"},
            "volumes": [],
        });
        if network_block_all {
            body["networkBlockAll"] = Value::Bool(true);
        }
        let value = self.json(Method::POST, path, Some(body)).await?;
        let field = |name: &str| {
            value
                .get(name)
                .and_then(Value::as_str)
                .map(str::to_owned)
                .ok_or_else(|| ClientError::Body {
                    method: Method::POST,
                    path: path.to_owned(),
                    detail: format!("no string field {name} in {value}"),
                })
        };
        let id = field("id")?;
        let toolbox = field("toolboxProxyUrl")?;
        let state = field("state")?;
        if state != "started" {
            return Err(ClientError::Body {
                method: Method::POST,
                path: path.to_owned(),
                detail: format!("sandbox {id} is {state}, not started"),
            });
        }
        let base = toolbox_path(&toolbox)?;
        Ok(SandboxHandle {
            toolbox_prefix: format!("{base}/{id}"),
            id,
        })
    }

    /// `DELETE /api/sandbox/{id}`.
    pub async fn delete_sandbox(&mut self, id: &str) -> Result<(), ClientError> {
        self.json(Method::DELETE, &format!("/api/sandbox/{id}"), None)
            .await
            .map(drop)
    }

    /// `POST {toolbox}/process/execute` with `{"command": ...}`.
    pub async fn execute(
        &mut self,
        sandbox: &SandboxHandle,
        command: &str,
    ) -> Result<ExecOutcome, ClientError> {
        let path = format!("{}/process/execute", sandbox.toolbox_prefix);
        let value = self
            .json(Method::POST, &path, Some(json!({ "command": command })))
            .await?;
        let exit_code = value.get("exitCode").and_then(Value::as_i64);
        let result = value.get("result").and_then(Value::as_str);
        match (exit_code, result) {
            (Some(exit_code), Some(result)) => Ok(ExecOutcome {
                exit_code,
                result: result.to_owned(),
            }),
            _ => Err(ClientError::Body {
                method: Method::POST,
                path,
                detail: format!("not an execute response: {value}"),
            }),
        }
    }

    /// `POST {toolbox}/files/bulk-upload`: one file of `size` bytes at `remote`, streamed from
    /// `chunk` repeated (the Python SDK's wire format: `files[0].path`, then `files[0].file`).
    pub async fn upload(
        &mut self,
        sandbox: &SandboxHandle,
        remote: &str,
        size: u64,
        chunk: Bytes,
    ) -> Result<(), ClientError> {
        let path = format!("{}/files/bulk-upload", sandbox.toolbox_prefix);
        let boundary = format!("sandbarbench{:016x}", rand::random::<u64>());
        let head = Bytes::from(format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"files[0].path\"\r\n\r\n\
             {remote}\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"files[0].file\"; \
             filename=\"{remote}\"\r\nContent-Type: application/octet-stream\r\n\r\n"
        ));
        let tail = Bytes::from(format!("\r\n--{boundary}--\r\n"));
        let length = head.len() as u64 + size + tail.len() as u64;
        let body = StreamBody::new(stream::iter(
            std::iter::once(head)
                .chain(repeat_bytes(chunk, size))
                .chain(std::iter::once(tail))
                .map(|b| Ok::<_, std::io::Error>(Frame::data(b))),
        ));
        let request = self
            .request(Method::POST, &path)
            .header(
                http::header::CONTENT_TYPE,
                format!("multipart/form-data; boundary={boundary}"),
            )
            .header(http::header::CONTENT_LENGTH, length)
            .header(http::header::ACCEPT, "application/json")
            .body(BodyExt::boxed(body))
            .expect("static request parts are valid");
        let response = self.send(Method::POST, &path, request).await?;
        response
            .into_body()
            .collect()
            .await
            .map_err(|source| ClientError::Request {
                method: Method::POST,
                path,
                source,
            })?;
        Ok(())
    }

    /// `POST {toolbox}/files/bulk-download` of one path; returns the size of the multipart
    /// answer, counted as it streams in (the body is dropped frame by frame).
    pub async fn download(
        &mut self,
        sandbox: &SandboxHandle,
        remote: &str,
    ) -> Result<u64, ClientError> {
        let path = format!("{}/files/bulk-download", sandbox.toolbox_prefix);
        let request = self
            .request(Method::POST, &path)
            .header(http::header::CONTENT_TYPE, "application/json")
            .header(http::header::ACCEPT, "multipart/form-data")
            .body(full(Bytes::from(json!({ "paths": [remote] }).to_string())))
            .expect("static request parts are valid");
        let response = self.send(Method::POST, &path, request).await?;
        let is_multipart = response
            .headers()
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("multipart/form-data"));
        if !is_multipart {
            return Err(ClientError::Body {
                method: Method::POST,
                path,
                detail: "Content-Type is not multipart/form-data".into(),
            });
        }
        let mut body = response.into_body();
        let mut total = 0u64;
        let mut last = Bytes::new();
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|source| ClientError::Request {
                method: Method::POST,
                path: path.clone(),
                source,
            })?;
            if let Ok(data) = frame.into_data() {
                total += data.len() as u64;
                if !data.is_empty() {
                    last = data;
                }
            }
        }
        // The closing boundary ends with `--` and CRLF; an error part would be small.
        let tail = String::from_utf8_lossy(&last[last.len().saturating_sub(64)..]).into_owned();
        if !tail.trim_end().ends_with("--") {
            return Err(ClientError::Body {
                method: Method::POST,
                path,
                detail: format!("no closing boundary (ends with {tail:?})"),
            });
        }
        Ok(total)
    }

    /// A short request that does nothing, to check the server answers.
    pub async fn ping(&mut self) -> Result<(), ClientError> {
        self.json(Method::GET, "/api/sandbox", None).await.map(drop)
    }
}

fn full(bytes: Bytes) -> Body {
    Full::new(bytes).map_err(|never| match never {}).boxed()
}

/// `chunk` repeated (the last piece cut) until `size` bytes have been produced.
fn repeat_bytes(chunk: Bytes, size: u64) -> impl Iterator<Item = Bytes> {
    let mut left = size;
    std::iter::from_fn(move || {
        if left == 0 || chunk.is_empty() {
            return None;
        }
        let n = left.min(chunk.len() as u64);
        left -= n;
        Some(chunk.slice(..n as usize))
    })
}

/// The path part of `http://host:port/path` (no trailing slash).
fn toolbox_path(url: &str) -> Result<String, ClientError> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| ClientError::ToolboxUrl(url.to_owned()))?;
    let path = rest.find('/').map(|i| &rest[i..]).unwrap_or("");
    Ok(path.trim_end_matches('/').to_owned())
}

/// How long to keep retrying `ping` while a server starts.
pub const READY_TIMEOUT: Duration = Duration::from_secs(60);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeat_bytes_cuts_the_last_piece() {
        let chunk = Bytes::from_static(b"abcd");
        let pieces: Vec<Bytes> = repeat_bytes(chunk, 10).collect();
        assert_eq!(pieces.iter().map(Bytes::len).sum::<usize>(), 10);
        assert_eq!(pieces.last().unwrap().as_ref(), b"ab");
    }

    #[test]
    fn toolbox_path_strips_host_and_slash() {
        assert_eq!(
            toolbox_path("http://localhost:3000/toolbox/").unwrap(),
            "/toolbox"
        );
        assert_eq!(toolbox_path("http://localhost:3000").unwrap(), "");
        assert!(toolbox_path("https://x/toolbox").is_err());
    }
}
