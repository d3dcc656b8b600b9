//! Per-sandbox activity (`lastActivityAt`) and what keeps a sandbox busy, for auto-stop.
//!
//! Activity (rules in `docs/lifecycle.md`): every API request that acts on a sandbox, every
//! toolbox and preview request, `POST /last-activity`. Reads (`GET /api/sandbox/{id}`, the
//! list) do not count unless the sandbox's [`ACTIVITY_LABEL`] says `read`: the SDKs poll them
//! every second while waiting.
//!
//! Busy (checked only when an idle deadline comes, never on the request path): a toolbox
//! request still in flight (a long `process/execute`), an open upgraded connection (PTY,
//! session logs) unless the label leaves out `connections`, and a session command that has not
//! exited unless the label leaves out `process`.
//!
//! Timestamps are kept in memory and written to the store in batches (every few seconds and
//! at shutdown): activity is not a state change, and an fsync per toolbox call would be
//! costly. Readers merge the pending value with the stored one.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use chrono::{DateTime, Utc};
use http_body_util::BodyExt;
use hyper_util::rt::TokioIo;
use sandbar_core::Sandbox;
use sandbar_store::{SandboxChange, Store};
use tokio::net::UnixStream;
use tracing::warn;
use uuid::Uuid;

use crate::lifecycle::error_chain;
use crate::AppState;

/// Label choosing what counts as activity besides API and toolbox requests: a comma
/// separated list of `read`, `process`, `connections`, or `none`. Default
/// `process,connections`.
pub const ACTIVITY_LABEL: &str = "sandbar.io/activity";

/// How long the scheduler waits for an agent's session list.
const AGENT_TIMEOUT: Duration = Duration::from_secs(3);

/// What counts as activity for one sandbox (from [`ACTIVITY_LABEL`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ActivityPolicy {
    /// `GET` of the sandbox (SDK polling) counts.
    pub read: bool,
    /// A session command still running keeps the sandbox busy.
    pub process: bool,
    /// An open PTY / WebSocket connection keeps the sandbox busy.
    pub connections: bool,
}

impl Default for ActivityPolicy {
    fn default() -> Self {
        Self {
            read: false,
            process: true,
            connections: true,
        }
    }
}

impl ActivityPolicy {
    /// Parses the label value; unknown words are ignored, a missing label is the default.
    pub fn parse(value: Option<&str>) -> Self {
        let Some(value) = value else {
            return Self::default();
        };
        let mut policy = Self {
            read: false,
            process: false,
            connections: false,
        };
        for word in value.split(',').map(str::trim) {
            match word {
                "read" => policy.read = true,
                "process" => policy.process = true,
                "connections" | "pty" => policy.connections = true,
                _ => {}
            }
        }
        policy
    }

    pub fn of(sandbox: &Sandbox) -> Self {
        Self::parse(sandbox.labels.get(ACTIVITY_LABEL).map(String::as_str))
    }
}

#[derive(Debug, Default)]
struct Holds {
    /// Toolbox requests waiting for their response.
    requests: u32,
    /// Open upgraded connections.
    connections: u32,
}

#[derive(Debug, Default)]
pub struct Activity {
    pending: Mutex<HashMap<Uuid, DateTime<Utc>>>,
    holds: Mutex<HashMap<Uuid, Holds>>,
}

/// Kind of [`Activity::hold`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HoldKind {
    Request,
    Connection,
}

/// Keeps a sandbox busy while alive; records activity when dropped.
pub struct Hold<'a> {
    activity: &'a Activity,
    id: Uuid,
    kind: HoldKind,
}

impl Drop for Hold<'_> {
    fn drop(&mut self) {
        self.activity.release(self.id, self.kind);
        self.activity.touch(self.id);
    }
}

impl Activity {
    pub fn touch(&self, id: Uuid) {
        let now = sandbar_core::time::now();
        let mut pending = self
            .pending
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        pending.insert(id, now);
    }

    /// The latest activity not yet written, if any.
    pub fn pending(&self, id: Uuid) -> Option<DateTime<Utc>> {
        let pending = self
            .pending
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        pending.get(&id).copied()
    }

    /// The latest activity: the pending one or `stored`.
    pub fn last(&self, id: Uuid, stored: DateTime<Utc>) -> DateTime<Utc> {
        self.pending(id).map_or(stored, |at| at.max(stored))
    }

    /// Marks the sandbox busy until the returned guard is dropped.
    pub fn hold(&self, id: Uuid, kind: HoldKind) -> Hold<'_> {
        self.touch(id);
        let mut holds = self.holds.lock().unwrap_or_else(|p| p.into_inner());
        let entry = holds.entry(id).or_default();
        match kind {
            HoldKind::Request => entry.requests += 1,
            HoldKind::Connection => entry.connections += 1,
        }
        Hold {
            activity: self,
            id,
            kind,
        }
    }

    fn release(&self, id: Uuid, kind: HoldKind) {
        let mut holds = self.holds.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(entry) = holds.get_mut(&id) {
            match kind {
                HoldKind::Request => entry.requests = entry.requests.saturating_sub(1),
                HoldKind::Connection => entry.connections = entry.connections.saturating_sub(1),
            }
            if entry.requests == 0 && entry.connections == 0 {
                holds.remove(&id);
            }
        }
    }

    /// Why the sandbox counts as busy now, if it does. Asks the agent about session
    /// commands, so only the scheduler calls this, at an idle deadline.
    pub async fn busy(
        &self,
        state: &AppState,
        id: Uuid,
        policy: ActivityPolicy,
    ) -> Option<&'static str> {
        {
            let holds = self.holds.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(entry) = holds.get(&id) {
                if entry.requests > 0 {
                    return Some("a toolbox request is in flight");
                }
                if policy.connections && entry.connections > 0 {
                    return Some("a PTY or streaming connection is open");
                }
            }
        }
        if policy.process {
            let socket = state.lifecycle().runtime().agent_socket(&id.to_string());
            match tokio::time::timeout(AGENT_TIMEOUT, running_session_command(&socket)).await {
                Ok(Ok(true)) => return Some("a session command is running"),
                Ok(Ok(false)) => {}
                Ok(Err(err)) => warn!(sandbox = %id, error = %err, "cannot list sessions"),
                Err(_) => warn!(sandbox = %id, "the agent did not list its sessions in time"),
            }
        }
        None
    }

    /// Writes pending activity to the store.
    pub async fn flush(&self, store: &Store) {
        let batch = {
            let mut pending = self
                .pending
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            std::mem::take(&mut *pending)
        };
        for (id, at) in batch {
            if let Err(err) = store.update_sandbox(id, SandboxChange::Activity(at)).await {
                warn!(sandbox = %id, error = %error_chain(&err), "failed to record activity");
            }
        }
    }
}

/// True when a session of the agent at `socket` has a command without an exit code.
async fn running_session_command(socket: &std::path::Path) -> Result<bool, String> {
    let stream = UnixStream::connect(socket)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    tokio::spawn(connection);
    let request = axum::http::Request::get("/process/session")
        .header(axum::http::header::HOST, "sandbox")
        .body(axum::body::Body::empty())
        .map_err(|e| e.to_string())?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| format!("request: {e}"))?;
    if !response.status().is_success() {
        return Err(format!("status {}", response.status()));
    }
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| format!("body: {e}"))?
        .to_bytes();
    let sessions: serde_json::Value =
        serde_json::from_slice(&body).map_err(|e| format!("json: {e}"))?;
    Ok(sessions
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|session| session.get("commands").and_then(|c| c.as_array()))
        .flatten()
        .any(|command| command.get("exitCode").is_none_or(|code| code.is_null())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_label_replaces_the_default_set() {
        assert_eq!(ActivityPolicy::parse(None), ActivityPolicy::default());
        assert_eq!(
            ActivityPolicy::parse(Some("read, process")),
            ActivityPolicy {
                read: true,
                process: true,
                connections: false
            }
        );
        assert_eq!(
            ActivityPolicy::parse(Some("none")),
            ActivityPolicy {
                read: false,
                process: false,
                connections: false
            }
        );
    }

    #[test]
    fn holds_count_and_release() {
        let activity = Activity::default();
        let id = Uuid::new_v4();
        let hold = activity.hold(id, HoldKind::Connection);
        assert_eq!(
            activity.holds.lock().unwrap().get(&id).unwrap().connections,
            1
        );
        drop(hold);
        assert!(activity.holds.lock().unwrap().get(&id).is_none());
        assert!(activity.pending(id).is_some());
    }
}
