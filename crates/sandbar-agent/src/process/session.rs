//! Sessions (§5.1): a long-lived shell per session, so state (`export`, `cd`) carries over
//! between commands.
//!
//! The shell reads commands from a pipe on its stdin. Each command is sent as
//! `command eval '<command>' <&3 3<&-` followed by two `printf`s writing an end marker carrying the
//! command id (and, on stdout, the exit status) to stdout and stderr. Fd 3 of the shell is the
//! session's input pipe, so commands read `POST …/input` data on their stdin, never the
//! command stream. One task per session reads both output pipes, splits them at the markers
//! into per-command logs and notices when the shell exits.

use std::collections::{HashMap, VecDeque};
use std::ffi::OsStr;
use std::os::unix::process::CommandExt;
use std::process::Stdio;
use std::sync::{Arc, Mutex, MutexGuard};

use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{FromRequestParts, Path, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use sandbar_wire::toolbox::{
    code, CreateSessionRequest, Session as SessionDto, SessionCommand, SessionCommandLogs,
    SessionExecuteRequest, SessionExecuteResponse, SessionInputRequest, LOG_STDERR_MARKER,
    LOG_STDOUT_MARKER,
};
use tokio::io::AsyncWriteExt;
use tokio::net::unix::pipe;
use tokio::sync::{oneshot, watch};

use crate::envelope::{DaemonError, JsonBody};
use crate::pipe::PipeReader;
use crate::reaper::ExitStatus;
use crate::Agent;

/// Output kept per command (combined stdout and stderr); later output is dropped.
const COMMAND_LOG_CAP: usize = 10 * 1024 * 1024;
/// Start of the end marker; the unit separator makes a held-back partial marker (output
/// ending in a prefix of it) practically never happen.
const MARKER_PREFIX: &str = "\x1fSANDBAR_END_";
/// The same, as written in the `printf` format.
const MARKER_PRINTF: &str = "\\037SANDBAR_END_";
/// Exit code of commands that never ran because their session's shell ended first.
const NEVER_RAN: i32 = -1;

pub fn routes() -> Router<Arc<Agent>> {
    Router::new()
        .route("/process/session", get(list).post(create))
        .route("/process/session/entrypoint", get(entrypoint))
        .route("/process/session/entrypoint/logs", get(entrypoint_logs))
        .route(
            "/process/session/{session}",
            get(get_session).delete(delete),
        )
        .route("/process/session/{session}/exec", post(exec))
        .route(
            "/process/session/{session}/command/{command}",
            get(get_command),
        )
        .route(
            "/process/session/{session}/command/{command}/logs",
            get(command_logs),
        )
        .route(
            "/process/session/{session}/command/{command}/input",
            post(command_input),
        )
}

#[derive(Debug, Default)]
pub struct Sessions {
    map: Mutex<HashMap<String, Arc<Session>>>,
}

impl Sessions {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, Arc<Session>>> {
        self.map
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn get(&self, id: &str) -> Result<Arc<Session>, DaemonError> {
        self.lock().get(id).cloned().ok_or_else(|| {
            DaemonError::new(
                StatusCode::NOT_FOUND,
                code::PROCESS_NOT_FOUND,
                format!("session {id} not found"),
            )
        })
    }
}

#[derive(Debug)]
struct Session {
    id: String,
    /// Pid (and process group) of the shell.
    pid: i32,
    script: tokio::sync::Mutex<pipe::Sender>,
    input: tokio::sync::Mutex<pipe::Sender>,
    state: Mutex<SessionState>,
}

#[derive(Debug, Default)]
struct SessionState {
    commands: Vec<Arc<CommandRecord>>,
    ended: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stream {
    Stdout,
    Stderr,
}

#[derive(Debug)]
struct CommandRecord {
    id: String,
    command: String,
    log: Mutex<CommandLog>,
    /// Bumped on every change of `log`.
    changed: watch::Sender<u64>,
}

#[derive(Debug, Default)]
struct CommandLog {
    /// stdout and stderr interleaved in arrival order.
    combined: Vec<u8>,
    /// Which stream each byte range of `combined` came from (adjacent ranges of one stream
    /// are merged).
    segments: Vec<(Stream, usize, usize)>,
    truncated: bool,
    exit_code: Option<i32>,
    stdout_done: bool,
    stderr_done: bool,
}

impl CommandLog {
    fn done(&self) -> bool {
        self.exit_code.is_some() && self.stdout_done && self.stderr_done
    }

    fn stream(&self, wanted: Stream) -> String {
        let mut out = Vec::new();
        for &(stream, start, end) in &self.segments {
            if stream == wanted {
                out.extend_from_slice(&self.combined[start..end]);
            }
        }
        String::from_utf8_lossy(&out).into_owned()
    }

    fn logs(&self) -> SessionCommandLogs {
        SessionCommandLogs {
            output: String::from_utf8_lossy(&self.combined).into_owned(),
            stdout: self.stream(Stream::Stdout),
            stderr: self.stream(Stream::Stderr),
        }
    }
}

impl CommandRecord {
    fn new(command: &str) -> CommandRecord {
        CommandRecord {
            id: uuid::Uuid::new_v4().to_string(),
            command: command.to_owned(),
            log: Mutex::new(CommandLog::default()),
            changed: watch::Sender::new(0),
        }
    }

    fn update(&self, change: impl FnOnce(&mut CommandLog)) {
        {
            let mut log = self
                .log
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            change(&mut log);
        }
        self.changed.send_modify(|n| *n = n.wrapping_add(1));
    }

    fn read<T>(&self, view: impl FnOnce(&CommandLog) -> T) -> T {
        let log = self
            .log
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        view(&log)
    }

    fn append(&self, stream: Stream, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        self.update(|log| {
            let room = COMMAND_LOG_CAP.saturating_sub(log.combined.len());
            let (kept, dropped) = bytes.split_at(bytes.len().min(room));
            if !kept.is_empty() {
                let start = log.combined.len();
                log.combined.extend_from_slice(kept);
                let end = log.combined.len();
                match log.segments.last_mut() {
                    Some((last, _, last_end)) if *last == stream && *last_end == start => {
                        *last_end = end;
                    }
                    _ => log.segments.push((stream, start, end)),
                }
            }
            if !dropped.is_empty() {
                log.truncated = true;
            }
        });
    }

    fn dto(&self) -> SessionCommand {
        SessionCommand {
            id: self.id.clone(),
            command: self.command.clone(),
            exit_code: self.read(|log| log.done().then_some(log.exit_code).flatten()),
        }
    }

    /// Waits until both end markers were seen (or the shell ended).
    async fn finished(&self) {
        let mut rx = self.changed.subscribe();
        loop {
            if self.read(CommandLog::done) {
                return;
            }
            if rx.changed().await.is_err() {
                return;
            }
        }
    }
}

impl Session {
    fn state(&self) -> MutexGuard<'_, SessionState> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn command(&self, id: &str) -> Result<Arc<CommandRecord>, DaemonError> {
        self.state()
            .commands
            .iter()
            .find(|c| c.id == id)
            .cloned()
            .ok_or_else(|| {
                DaemonError::new(
                    StatusCode::NOT_FOUND,
                    code::PROCESS_NOT_FOUND,
                    format!("command {id} not found in session {}", self.id),
                )
            })
    }

    fn dto(&self) -> SessionDto {
        SessionDto {
            session_id: self.id.clone(),
            commands: self.state().commands.iter().map(|c| c.dto()).collect(),
        }
    }
}

/// Single-quotes `text` for the shell.
fn shell_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

/// The script that runs `command` and then writes its end markers. `command eval` keeps a
/// syntax error from confusing bash's parser or exiting dash/busybox (POSIX: `command`
/// suppresses the special-builtin exit), and still runs in the shell itself, so `export` and
/// `cd` persist.
fn command_script(id: &str, command: &str) -> String {
    format!(
        "command eval {cmd} <&3 3<&-\nprintf '{MARKER_PRINTF}%s:%s\\n' '{id}' \"$?\"; printf '{MARKER_PRINTF}%s\\n' '{id}' >&2\n",
        cmd = shell_quote(command),
    )
}

/// Splits one output stream at the end markers of the session's commands, in order.
#[derive(Debug)]
struct Splitter {
    stream: Stream,
    /// Index (in the session's command list) of the command receiving output.
    cursor: usize,
    pending: Vec<u8>,
}

impl Splitter {
    fn new(stream: Stream) -> Self {
        Splitter {
            stream,
            cursor: 0,
            pending: Vec::new(),
        }
    }

    fn feed(&mut self, session: &Session, bytes: &[u8]) {
        self.pending.extend_from_slice(bytes);
        loop {
            let current = session.state().commands.get(self.cursor).cloned();
            let Some(current) = current else {
                // Output between commands (background jobs) belongs to no command.
                self.pending.clear();
                return;
            };
            let marker = format!("{MARKER_PREFIX}{}", current.id).into_bytes();
            match find(&self.pending, &marker) {
                Some(at) => {
                    let after = at + marker.len();
                    let Some(newline) = self.pending[after..].iter().position(|&b| b == b'\n')
                    else {
                        // The marker's tail has not arrived yet.
                        current.append(self.stream, &self.pending[..at]);
                        self.pending.drain(..at);
                        return;
                    };
                    current.append(self.stream, &self.pending[..at]);
                    let tail =
                        String::from_utf8_lossy(&self.pending[after..after + newline]).into_owned();
                    self.pending.drain(..after + newline + 1);
                    let stream = self.stream;
                    current.update(|log| match stream {
                        Stream::Stdout => {
                            let code = tail.strip_prefix(':').and_then(|c| c.parse().ok());
                            log.exit_code = Some(code.unwrap_or(NEVER_RAN));
                            log.stdout_done = true;
                        }
                        Stream::Stderr => log.stderr_done = true,
                    });
                    self.cursor += 1;
                }
                None => {
                    // Keep a suffix that could be the start of the marker.
                    let keep = partial_suffix(&self.pending, &marker);
                    let emit = self.pending.len() - keep;
                    current.append(self.stream, &self.pending[..emit]);
                    self.pending.drain(..emit);
                    return;
                }
            }
        }
    }
}

impl Splitter {
    /// Hands held-back bytes (a possible marker start) to the current command: used once
    /// the shell has exited and no marker can follow.
    fn flush(&mut self, session: &Session) {
        if let Some(current) = session.state().commands.get(self.cursor).cloned() {
            current.append(self.stream, &self.pending);
        }
        self.pending.clear();
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Length of the longest suffix of `data` that is a proper prefix of `marker`.
fn partial_suffix(data: &[u8], marker: &[u8]) -> usize {
    let max = marker.len().saturating_sub(1).min(data.len());
    (1..=max)
        .rev()
        .find(|&n| data[data.len() - n..] == marker[..n])
        .unwrap_or(0)
}

/// Reads the shell's output until it exits, then finishes every open command.
async fn pump(
    session: Arc<Session>,
    stdout: PipeReader,
    stderr: PipeReader,
    mut exit: oneshot::Receiver<ExitStatus>,
) {
    let mut out = Splitter::new(Stream::Stdout);
    let mut err = Splitter::new(Stream::Stderr);
    let mut out_buf = vec![0u8; 8192];
    let mut err_buf = vec![0u8; 8192];
    let (mut out_eof, mut err_eof) = (false, false);
    let status = loop {
        // Biased: when both pipes are ready, stdout (usually written first) goes first, and
        // output is read before the exit is handled.
        tokio::select! {
            biased;
            read = stdout.read(&mut out_buf), if !out_eof => match read {
                Ok(0) | Err(_) => out_eof = true,
                Ok(n) => out.feed(&session, &out_buf[..n]),
            },
            read = stderr.read(&mut err_buf), if !err_eof => match read {
                Ok(0) | Err(_) => err_eof = true,
                Ok(n) => err.feed(&session, &err_buf[..n]),
            },
            status = &mut exit => break status.map(ExitStatus::code).unwrap_or(NEVER_RAN),
        }
    };
    // Output written before the exit is still in the pipes.
    for (reader, splitter) in [(&stdout, &mut out), (&stderr, &mut err)] {
        let drained = reader.drain_now(COMMAND_LOG_CAP);
        splitter.feed(&session, &drained);
        splitter.flush(&session);
    }
    let commands = {
        let mut state = session.state();
        state.ended = true;
        state.commands.clone()
    };
    // The command that was running when the shell ended (e.g. `exit 3`) gets its status.
    let mut first_open = true;
    for command in commands {
        if command.read(CommandLog::done) {
            continue;
        }
        let code = if first_open { status } else { NEVER_RAN };
        first_open = false;
        command.update(|log| {
            log.exit_code.get_or_insert(code);
            log.stdout_done = true;
            log.stderr_done = true;
        });
    }
}

async fn list(State(agent): State<Arc<Agent>>) -> Json<Vec<SessionDto>> {
    let sessions: Vec<Arc<Session>> = agent.sessions.lock().values().cloned().collect();
    let mut dtos: Vec<SessionDto> = sessions.iter().map(|s| s.dto()).collect();
    dtos.sort_by(|a, b| a.session_id.cmp(&b.session_id));
    Json(dtos)
}

/// `POST /process/session` `{sessionId}` → 201.
async fn create(
    State(agent): State<Arc<Agent>>,
    JsonBody(request): JsonBody<CreateSessionRequest>,
) -> Result<StatusCode, DaemonError> {
    let id = request.session_id;
    if id.trim().is_empty() {
        return Err(DaemonError::bad_request("sessionId must not be empty"));
    }
    if agent.sessions.lock().contains_key(&id) {
        return Err(DaemonError::new(
            StatusCode::CONFLICT,
            code::CONFLICT,
            format!("session {id} already exists"),
        ));
    }
    let session = start_shell(&agent, &id)
        .map_err(|err| DaemonError::internal(format!("cannot start the session shell: {err}")))?;
    let mut sessions = agent.sessions.lock();
    if sessions.contains_key(&id) {
        let _ = killpg(Pid::from_raw(session.pid), Signal::SIGKILL);
        return Err(DaemonError::new(
            StatusCode::CONFLICT,
            code::CONFLICT,
            format!("session {id} already exists"),
        ));
    }
    sessions.insert(id, session);
    Ok(StatusCode::CREATED)
}

fn start_shell(agent: &Arc<Agent>, id: &str) -> std::io::Result<Arc<Session>> {
    let (script_read, script_write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
    let (input_read, input_write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
    let (stdout, stdout_write) = crate::pipe::pipe()?;
    let (stderr, stderr_write) = crate::pipe::pipe()?;
    let home = agent.resolve_path(None);
    let mut cmd = agent.command_with(&agent.shell, &home, None, false, Some(input_read));
    cmd.arg0(agent.shell.file_name().unwrap_or(OsStr::new("sh")))
        .stdin(Stdio::from(script_read))
        .stdout(Stdio::from(stdout_write))
        .stderr(Stdio::from(stderr_write))
        .process_group(0);
    let spawned = agent.reaper.spawn(&mut cmd);
    drop(cmd);
    let spawned = spawned?;
    let session = Arc::new(Session {
        id: id.to_owned(),
        pid: spawned.pid,
        script: tokio::sync::Mutex::new(pipe::Sender::from_owned_fd(script_write)?),
        input: tokio::sync::Mutex::new(pipe::Sender::from_owned_fd(input_write)?),
        state: Mutex::new(SessionState::default()),
    });
    tokio::spawn(pump(session.clone(), stdout, stderr, spawned.exit));
    Ok(session)
}

async fn get_session(
    State(agent): State<Arc<Agent>>,
    Path(id): Path<String>,
) -> Result<Json<SessionDto>, DaemonError> {
    Ok(Json(agent.sessions.get(&id)?.dto()))
}

/// `DELETE /process/session/{id}` → 204; kills the shell and everything it started.
async fn delete(
    State(agent): State<Arc<Agent>>,
    Path(id): Path<String>,
) -> Result<StatusCode, DaemonError> {
    let session = agent.sessions.get(&id)?;
    agent.sessions.lock().remove(&id);
    let _ = killpg(Pid::from_raw(session.pid), Signal::SIGKILL);
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /process/session/{id}/exec` → 200 with the output (sync) or 202 `{cmdId}` (async).
async fn exec(
    State(agent): State<Arc<Agent>>,
    Path(id): Path<String>,
    JsonBody(request): JsonBody<SessionExecuteRequest>,
) -> Result<Response, DaemonError> {
    if request.command.trim().is_empty() {
        return Err(DaemonError::bad_request("command must not be empty"));
    }
    let session = agent.sessions.get(&id)?;
    let record = Arc::new(CommandRecord::new(&request.command));
    {
        let mut state = session.state();
        if state.ended {
            return Err(session_ended(&id));
        }
        // Registered before the shell can print its marker.
        state.commands.push(record.clone());
    }
    let script = command_script(&record.id, &request.command);
    let written = session
        .script
        .lock()
        .await
        .write_all(script.as_bytes())
        .await;
    if written.is_err() {
        record.update(|log| {
            log.exit_code.get_or_insert(NEVER_RAN);
            log.stdout_done = true;
            log.stderr_done = true;
        });
        return Err(session_ended(&id));
    }
    if request.is_async() {
        let body = SessionExecuteResponse {
            cmd_id: record.id.clone(),
            ..SessionExecuteResponse::default()
        };
        return Ok((StatusCode::ACCEPTED, Json(body)).into_response());
    }
    record.finished().await;
    let (logs, exit_code) = record.read(|log| (log.logs(), log.exit_code));
    Ok(Json(SessionExecuteResponse {
        cmd_id: record.id.clone(),
        output: Some(logs.output),
        stdout: Some(logs.stdout),
        stderr: Some(logs.stderr),
        exit_code,
    })
    .into_response())
}

fn session_ended(id: &str) -> DaemonError {
    DaemonError::new(
        StatusCode::GONE,
        code::SESSION_ENDED,
        format!("session {id} has ended"),
    )
}

async fn get_command(
    State(agent): State<Arc<Agent>>,
    Path((id, command)): Path<(String, String)>,
) -> Result<Json<SessionCommand>, DaemonError> {
    Ok(Json(agent.sessions.get(&id)?.command(&command)?.dto()))
}

fn wants_websocket(headers: &HeaderMap) -> bool {
    headers
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"))
}

/// `GET …/command/{cmd}/logs` → `{output,stdout,stderr}`, or with a WebSocket upgrade the
/// output as it comes, `\x01\x01\x01`/`\x02\x02\x02` marking stdout/stderr, closed with code
/// 1000 once the command has finished.
async fn command_logs(
    State(agent): State<Arc<Agent>>,
    Path((id, command)): Path<(String, String)>,
    request: Request,
) -> Result<Response, DaemonError> {
    let record = agent.sessions.get(&id)?.command(&command)?;
    if !wants_websocket(request.headers()) {
        return Ok(Json(record.read(CommandLog::logs)).into_response());
    }
    let (mut parts, _) = request.into_parts();
    let upgrade = WebSocketUpgrade::from_request_parts(&mut parts, &())
        .await
        .map_err(|rejection| DaemonError::bad_request(rejection.body_text()))?;
    Ok(upgrade.on_upgrade(move |socket| follow_logs(socket, record)))
}

async fn follow_logs(mut socket: WebSocket, record: Arc<CommandRecord>) {
    let mut changed = record.changed.subscribe();
    let mut sent_segments = 0usize;
    let mut sent_in_segment = 0usize;
    loop {
        // Collect what is new since the last frame, then send without holding the lock.
        let (frames, done) = record.read(|log| {
            let mut frames = VecDeque::new();
            for (index, &(stream, start, end)) in
                log.segments.iter().enumerate().skip(sent_segments)
            {
                let from = if index == sent_segments {
                    start + sent_in_segment
                } else {
                    start
                };
                if from < end {
                    let marker = match stream {
                        Stream::Stdout => LOG_STDOUT_MARKER,
                        Stream::Stderr => LOG_STDERR_MARKER,
                    };
                    let mut frame = marker.to_vec();
                    frame.extend_from_slice(&log.combined[from..end]);
                    frames.push_back(frame);
                }
            }
            if let Some(&(_, start, end)) = log.segments.last() {
                sent_segments = log.segments.len() - 1;
                sent_in_segment = end - start;
            }
            (frames, log.done())
        });
        for frame in frames {
            if socket.send(Message::Binary(frame.into())).await.is_err() {
                return;
            }
        }
        if done {
            let _ = socket
                .send(Message::Close(Some(CloseFrame {
                    code: axum::extract::ws::close_code::NORMAL,
                    reason: "".into(),
                })))
                .await;
            return;
        }
        tokio::select! {
            changed = changed.changed() => if changed.is_err() { return },
            incoming = socket.recv() => match incoming {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return,
                Some(Ok(_)) => {}
            },
        }
    }
}

/// `POST …/command/{cmd}/input` `{data}` → 204: written to the running command's stdin.
async fn command_input(
    State(agent): State<Arc<Agent>>,
    Path((id, command)): Path<(String, String)>,
    JsonBody(request): JsonBody<SessionInputRequest>,
) -> Result<StatusCode, DaemonError> {
    let session = agent.sessions.get(&id)?;
    let record = session.command(&command)?;
    if record.read(CommandLog::done) {
        return Err(DaemonError::new(
            StatusCode::CONFLICT,
            code::COMMAND_ALREADY_COMPLETED,
            format!("command {command} has already completed"),
        ));
    }
    session
        .input
        .lock()
        .await
        .write_all(request.data.as_bytes())
        .await
        .map_err(|_| session_ended(&id))?;
    Ok(StatusCode::NO_CONTENT)
}

/// The sandbox has no image entrypoint session: an empty one.
async fn entrypoint() -> Json<SessionDto> {
    Json(SessionDto {
        session_id: "entrypoint".to_owned(),
        commands: Vec::new(),
    })
}

async fn entrypoint_logs() -> Json<SessionCommandLogs> {
    Json(SessionCommandLogs::default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_script_prints_the_markers() {
        assert_eq!(
            command_script("ID", "echo hi"),
            "command eval 'echo hi' <&3 3<&-\nprintf '\\037SANDBAR_END_%s:%s\\n' 'ID' \"$?\"; printf '\\037SANDBAR_END_%s\\n' 'ID' >&2\n"
        );
    }

    #[test]
    fn quotes_for_the_shell() {
        assert_eq!(shell_quote("echo 'a'"), r"'echo '\''a'\'''");
    }

    #[test]
    fn partial_suffix_finds_marker_starts() {
        assert_eq!(partial_suffix(b"abc\x1fSAN", b"\x1fSANDBAR"), 4);
        assert_eq!(partial_suffix(b"abc\n", b"\x1fSANDBAR"), 0);
        assert_eq!(partial_suffix(b"abc\x1f", b"\x1fSANDBAR"), 1);
    }
}
