//! What the toolbox proxy notes about each request: it keeps the sandbox busy while in flight
//! (auto-stop), times exec and file transfers (metrics), and reports OOM kills of
//! `process/execute` commands.
//!
//! OOM report: the agent only sees a command die of SIGKILL (exit code 137). The proxy reads
//! the sandbox cgroup's OOM-kill counter before and after the command; when it grew and the
//! exit code is 137, the JSON answer `{exitCode, result}` keeps its shape and gains
//! `"oomKilled": true`, and `result` gets one more line saying why (`docs/lifecycle.md`).

use axum::body::Body;
use axum::http::{Method, StatusCode};
use axum::response::Response;
use http_body_util::BodyExt;
use uuid::Uuid;

use crate::activity::{Hold, HoldKind};
use crate::metrics::{Operation, Timer};
use crate::AppState;

/// Largest `process/execute` answer inspected for an OOM kill; larger ones pass untouched.
const MAX_EXEC_BODY: usize = 16 << 20;

/// Line appended to `result` when the command was killed by the memory limit.
pub const OOM_NOTE: &str =
    "[sandbar] command killed: the sandbox ran out of memory (OOM kill at its memory limit)";

/// One toolbox request being proxied.
pub struct Observed<'a> {
    _hold: Hold<'a>,
    timer: Option<Timer<'a>>,
    /// The OOM-kill counter before a `process/execute`.
    oom_before: Option<u64>,
    state: &'a AppState,
    id: Uuid,
}

fn operation(method: &Method, path: &str) -> Option<Operation> {
    let path = path.split('?').next().unwrap_or(path);
    match (method, path.trim_end_matches('/')) {
        (&Method::POST, "/process/execute") => Some(Operation::Exec),
        (&Method::POST, "/files/upload" | "/files/bulk-upload" | "/files/upload-v2") => {
            Some(Operation::FileUpload)
        }
        (&Method::GET, "/files/download") | (&Method::POST, "/files/bulk-download") => {
            Some(Operation::FileDownload)
        }
        _ => None,
    }
}

impl<'a> Observed<'a> {
    /// Starts observing a request for `agent_path` (path and query as sent to the agent).
    pub fn start(state: &'a AppState, id: Uuid, method: &Method, agent_path: &str) -> Self {
        let operation = operation(method, agent_path);
        let oom_before = (operation == Some(Operation::Exec))
            .then(|| state.lifecycle().runtime().oom_kills(&id.to_string()));
        Self {
            _hold: state.activity().hold(id, HoldKind::Request),
            timer: operation.map(|op| state.lifecycle().metrics().timer(op)),
            oom_before,
            state,
            id,
        }
    }

    /// Records the outcome and returns the response to send (rewritten for an OOM kill).
    pub async fn finish(self, response: Response) -> Response {
        let success = response.status().is_success();
        let response = match self.oom_before {
            Some(before) if success => self.report_oom(before, response).await,
            _ => response,
        };
        if let Some(timer) = self.timer {
            timer.finish(success);
        }
        response
    }

    async fn report_oom(&self, before: u64, response: Response) -> Response {
        let (mut parts, body) = response.into_parts();
        let bytes = match http_body_util::Limited::new(body, MAX_EXEC_BODY)
            .collect()
            .await
        {
            Ok(collected) => collected.to_bytes(),
            Err(_) => {
                let mut failed = Response::new(Body::from("agent answer unreadable"));
                *failed.status_mut() = StatusCode::BAD_GATEWAY;
                return failed;
            }
        };
        let after = self
            .state
            .lifecycle()
            .runtime()
            .oom_kills(&self.id.to_string());
        let rebuilt = (after > before)
            .then(|| serde_json::from_slice::<serde_json::Value>(&bytes).ok())
            .flatten()
            .and_then(|mut answer| {
                let object = answer.as_object_mut()?;
                if object.get("exitCode")?.as_i64()? != 137 {
                    return None;
                }
                let result = object
                    .get("result")
                    .and_then(|r| r.as_str())
                    .unwrap_or_default();
                let separator = if result.is_empty() || result.ends_with('\n') {
                    ""
                } else {
                    "\n"
                };
                let result = format!("{result}{separator}{OOM_NOTE}\n");
                object.insert("result".into(), result.into());
                object.insert("oomKilled".into(), true.into());
                serde_json::to_vec(&answer).ok()
            });
        let body = match rebuilt {
            Some(body) => {
                self.state.lifecycle().metrics().oom_killed_command();
                tracing::warn!(sandbox = %self.id, "process/execute command was OOM-killed");
                parts.headers.remove(axum::http::header::CONTENT_LENGTH);
                body.into()
            }
            None => bytes,
        };
        Response::from_parts(parts, Body::from(body))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timed_operations_by_path() {
        assert_eq!(
            operation(&Method::POST, "/process/execute"),
            Some(Operation::Exec)
        );
        assert_eq!(
            operation(&Method::GET, "/files/download?path=%2Ftmp"),
            Some(Operation::FileDownload)
        );
        assert_eq!(
            operation(&Method::POST, "/files/upload?path=x"),
            Some(Operation::FileUpload)
        );
        assert_eq!(operation(&Method::GET, "/process/session"), None);
    }
}
