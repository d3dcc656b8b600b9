//! PTY sessions (§5.1): an interactive shell on a pseudo-terminal, driven over a WebSocket.
//!
//! Server → client: binary frames of terminal output, and text control frames
//! `{"type":"control","status":"connected"|"exited",…}`. Client → server: input (binary or
//! text frames). When the shell exits the socket closes with code 1000 and a JSON reason
//! `{"exitCode":n}`.

use std::collections::{BTreeMap, HashMap};
use std::os::fd::{AsRawFd, OwnedFd};
use std::process::Stdio;
use std::sync::{Arc, Mutex, MutexGuard};

use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine;
use bytes::Bytes;
use nix::fcntl::{fcntl, FcntlArg, FdFlag};
use nix::pty::{openpty, Winsize};
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use sandbar_wire::toolbox::{
    code, PtyControl, PtyCreateRequest, PtyCreateResponse, PtyListResponse, PtyResizeRequest,
    PtySessionInfo,
};
use serde::Deserialize;
use tokio::sync::{broadcast, watch};

use crate::envelope::{now_rfc3339, DaemonError, JsonBody};
use crate::pipe::PipeReader;
use crate::Agent;

const EXIT_CONTROL_PROTOCOL: &str = "X-Daytona-Pty-Exit-Control";
const ENVS_PROTOCOL_PREFIX: &str = "X-Daytona-Pty-Envs~";

pub fn routes() -> Router<Arc<Agent>> {
    Router::new()
        .route("/process/pty", get(list).post(create))
        .route("/process/pty/create-connect", get(create_connect))
        .route("/process/pty/{id}", get(info).delete(kill))
        .route("/process/pty/{id}/connect", get(connect))
        .route("/process/pty/{id}/resize", post(resize))
}

#[derive(Debug, Default)]
pub struct Ptys {
    map: Mutex<HashMap<String, Arc<Pty>>>,
}

impl Ptys {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, Arc<Pty>>> {
        self.map
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn get(&self, id: &str) -> Result<Arc<Pty>, DaemonError> {
        self.lock().get(id).cloned().ok_or_else(|| {
            DaemonError::new(
                StatusCode::NOT_FOUND,
                code::PROCESS_NOT_FOUND,
                format!("PTY session {id} not found"),
            )
        })
    }
}

#[derive(Debug)]
struct Pty {
    id: String,
    pid: i32,
    master: PipeReader,
    cwd: String,
    envs: BTreeMap<String, String>,
    created_at: String,
    size: Mutex<(u16, u16)>,
    output: broadcast::Sender<Bytes>,
    /// `Some(exit code)` once the shell has exited.
    exit: watch::Sender<Option<i32>>,
}

impl Pty {
    fn info(&self) -> PtySessionInfo {
        let (cols, rows) = *self
            .size
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        PtySessionInfo {
            id: self.id.clone(),
            active: self.exit.borrow().is_none(),
            cols,
            rows,
            cwd: self.cwd.clone(),
            envs: self.envs.clone(),
            created_at: self.created_at.clone(),
            lazy_start: false,
        }
    }
}

#[derive(Debug, Deserialize)]
struct CreateConnectQuery {
    id: Option<String>,
    cols: Option<u16>,
    rows: Option<u16>,
    cwd: Option<String>,
}

fn start(
    agent: &Arc<Agent>,
    id: String,
    cwd: Option<&str>,
    envs: BTreeMap<String, String>,
    cols: u16,
    rows: u16,
) -> Result<Arc<Pty>, DaemonError> {
    if id.trim().is_empty() {
        return Err(DaemonError::bad_request("PTY session id must not be empty"));
    }
    if agent.ptys.lock().contains_key(&id) {
        return Err(DaemonError::new(
            StatusCode::CONFLICT,
            code::CONFLICT,
            format!("PTY session {id} already exists"),
        ));
    }
    let cwd = agent.resolve_path(cwd);
    if !cwd.is_dir() {
        return Err(DaemonError::bad_request(format!(
            "working directory {} does not exist",
            cwd.display()
        )));
    }
    let failed = |what: &str, err: std::io::Error| {
        DaemonError::internal(format!("cannot start the PTY shell: {what}: {err}"))
    };
    let size = Winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    let pty = openpty(&size, None).map_err(|err| failed("openpty", err.into()))?;
    for fd in [&pty.master, &pty.slave] {
        // openpty does not set close-on-exec; other children must not inherit these.
        fcntl(fd.as_raw_fd(), FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC))
            .map_err(|err| failed("fcntl", err.into()))?;
    }
    let slave: OwnedFd = pty.slave;
    let stdio = |fd: &OwnedFd| {
        fd.try_clone()
            .map(Stdio::from)
            .map_err(|err| failed("dup", err))
    };
    let mut cmd = agent.command_with(&agent.shell, &cwd, Some(&envs), true, None);
    cmd.arg("-l")
        .env("TERM", "xterm-256color")
        .stdin(stdio(&slave)?)
        .stdout(stdio(&slave)?)
        .stderr(stdio(&slave)?);
    let spawned = agent.reaper.spawn(&mut cmd);
    drop(cmd);
    drop(slave);
    let spawned = spawned.map_err(|err| failed("spawn", err))?;
    let master = PipeReader::new_duplex(pty.master).map_err(|err| failed("register", err))?;
    let (output, _) = broadcast::channel(64);
    let pty = Arc::new(Pty {
        id: id.clone(),
        pid: spawned.pid,
        master,
        cwd: cwd.display().to_string(),
        envs,
        created_at: now_rfc3339(),
        size: Mutex::new((cols, rows)),
        output,
        exit: watch::Sender::new(None),
    });
    agent.ptys.lock().insert(id, pty.clone());
    tokio::spawn(pump(pty.clone(), spawned.exit));
    Ok(pty)
}

/// Forwards terminal output to connected clients until the shell exits.
async fn pump(pty: Arc<Pty>, exit: tokio::sync::oneshot::Receiver<crate::reaper::ExitStatus>) {
    let mut buf = vec![0u8; 8192];
    tokio::pin!(exit);
    let code = loop {
        tokio::select! {
            biased;
            read = pty.master.read(&mut buf) => match read {
                Ok(0) | Err(_) => break (&mut exit).await.map(|s| s.code()).unwrap_or(-1),
                Ok(n) => {
                    let _ = pty.output.send(Bytes::copy_from_slice(&buf[..n]));
                }
            },
            status = &mut exit => {
                let rest = pty.master.drain_now(1024 * 1024);
                if !rest.is_empty() {
                    let _ = pty.output.send(Bytes::from(rest));
                }
                break status.map(|s| s.code()).unwrap_or(-1);
            }
        }
    };
    pty.exit.send_replace(Some(code));
}

fn control(status: &str, exit_code: Option<i32>, error: Option<String>) -> Message {
    let frame = PtyControl {
        kind: "control".to_owned(),
        status: status.to_owned(),
        exit_code,
        exit_reason: None,
        error,
    };
    Message::Text(serde_json::to_string(&frame).unwrap_or_default().into())
}

/// Serves one client of `pty` until it disconnects or the shell exits.
async fn attach(mut socket: WebSocket, pty: Arc<Pty>) {
    let mut output = pty.output.subscribe();
    let mut exit = pty.exit.subscribe();
    if socket.send(control("connected", None, None)).await.is_err() {
        return;
    }
    loop {
        let exited = *exit.borrow_and_update();
        if let Some(code) = exited {
            // Output the shell wrote before exiting may still be queued.
            while let Ok(chunk) = output.try_recv() {
                if socket.send(Message::Binary(chunk)).await.is_err() {
                    return;
                }
            }
            let _ = socket.send(control("exited", Some(code), None)).await;
            let _ = socket
                .send(Message::Close(Some(CloseFrame {
                    code: axum::extract::ws::close_code::NORMAL,
                    reason: format!("{{\"exitCode\":{code}}}").into(),
                })))
                .await;
            return;
        }
        tokio::select! {
            chunk = output.recv() => match chunk {
                Ok(chunk) => {
                    if socket.send(Message::Binary(chunk)).await.is_err() {
                        return;
                    }
                }
                Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => return,
            },
            changed = exit.changed() => if changed.is_err() { return },
            incoming = socket.recv() => match incoming {
                Some(Ok(Message::Binary(data))) => {
                    if pty.master.write_all(&data).await.is_err() {
                        return;
                    }
                }
                Some(Ok(Message::Text(text))) => {
                    if pty.master.write_all(text.as_bytes()).await.is_err() {
                        return;
                    }
                }
                Some(Ok(_)) => {}
                None | Some(Err(_)) => return,
            },
        }
    }
}

/// Envs passed as the `X-Daytona-Pty-Envs~<base64url(JSON)>` subprotocol.
fn envs_from_protocols(headers: &HeaderMap) -> BTreeMap<String, String> {
    headers
        .get_all("sec-websocket-protocol")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|p| p.trim().strip_prefix(ENVS_PROTOCOL_PREFIX))
        .filter_map(|encoded| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(encoded.trim_end_matches('='))
                .ok()
        })
        .filter_map(|json| serde_json::from_slice::<BTreeMap<String, String>>(&json).ok())
        .next()
        .unwrap_or_default()
}

/// `GET /process/pty/create-connect?id=&cols=&rows=&cwd=` (WebSocket).
async fn create_connect(
    State(agent): State<Arc<Agent>>,
    Query(query): Query<CreateConnectQuery>,
    headers: HeaderMap,
    upgrade: WebSocketUpgrade,
) -> Result<Response, DaemonError> {
    let envs = envs_from_protocols(&headers);
    let id = query.id.unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let pty = start(
        &agent,
        id,
        query.cwd.as_deref(),
        envs,
        query.cols.unwrap_or(80),
        query.rows.unwrap_or(24),
    )?;
    Ok(upgrade
        .protocols([EXIT_CONTROL_PROTOCOL])
        .on_upgrade(move |socket| attach(socket, pty)))
}

/// `GET /process/pty/{id}/connect` (WebSocket).
async fn connect(
    State(agent): State<Arc<Agent>>,
    Path(id): Path<String>,
    upgrade: WebSocketUpgrade,
) -> Result<Response, DaemonError> {
    let pty = agent.ptys.get(&id)?;
    Ok(upgrade
        .protocols([EXIT_CONTROL_PROTOCOL])
        .on_upgrade(move |socket| attach(socket, pty)))
}

/// `POST /process/pty` → 201 `{sessionId}`.
async fn create(
    State(agent): State<Arc<Agent>>,
    JsonBody(request): JsonBody<PtyCreateRequest>,
) -> Result<(StatusCode, Json<PtyCreateResponse>), DaemonError> {
    let id = request
        .id
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let pty = start(
        &agent,
        id,
        request.cwd.as_deref(),
        request.envs.unwrap_or_default(),
        request.cols.unwrap_or(80),
        request.rows.unwrap_or(24),
    )?;
    Ok((
        StatusCode::CREATED,
        Json(PtyCreateResponse {
            session_id: pty.id.clone(),
        }),
    ))
}

async fn list(State(agent): State<Arc<Agent>>) -> Json<PtyListResponse> {
    let mut sessions: Vec<PtySessionInfo> = agent.ptys.lock().values().map(|p| p.info()).collect();
    sessions.sort_by(|a, b| a.id.cmp(&b.id));
    Json(PtyListResponse { sessions })
}

async fn info(
    State(agent): State<Arc<Agent>>,
    Path(id): Path<String>,
) -> Result<Json<PtySessionInfo>, DaemonError> {
    Ok(Json(agent.ptys.get(&id)?.info()))
}

/// `DELETE /process/pty/{id}` → 200 `{}`.
async fn kill(
    State(agent): State<Arc<Agent>>,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, DaemonError> {
    let pty = agent.ptys.get(&id)?;
    agent.ptys.lock().remove(&id);
    let _ = killpg(Pid::from_raw(pty.pid), Signal::SIGKILL);
    Ok(Json(serde_json::json!({})))
}

/// `POST /process/pty/{id}/resize` `{cols, rows}` → `PtySessionInfo`.
async fn resize(
    State(agent): State<Arc<Agent>>,
    Path(id): Path<String>,
    JsonBody(request): JsonBody<PtyResizeRequest>,
) -> Result<Json<PtySessionInfo>, DaemonError> {
    let pty = agent.ptys.get(&id)?;
    crate::sys::set_window_size(pty.master.as_owned_fd(), request.cols, request.rows)
        .map_err(|err| DaemonError::internal(format!("cannot resize the terminal: {err}")))?;
    *pty.size
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner) = (request.cols, request.rows);
    Ok(Json(pty.info()))
}
