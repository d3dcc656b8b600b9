//! Toolbox (`{toolboxProxyUrl}/{sandboxId}/...`) request and response bodies, served by the agent.
//!
//! Field names follow the Daytona daemon (`shared/daytona-api.md` §5): camelCase JSON, except
//! the git requests, which the SDK sends in snake_case.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Value of `source` in every error the agent returns.
pub const ERROR_SOURCE: &str = "DAYTONA_DAEMON";

/// Daemon error codes the SDKs map to precise exception classes (§8).
pub mod code {
    pub const BAD_REQUEST: &str = "BAD_REQUEST";
    pub const INVALID_REQUEST_BODY: &str = "INVALID_REQUEST_BODY";
    pub const UNAUTHORIZED: &str = "UNAUTHORIZED";
    pub const FORBIDDEN: &str = "FORBIDDEN";
    pub const NOT_FOUND: &str = "NOT_FOUND";
    pub const CONFLICT: &str = "CONFLICT";
    pub const REQUEST_TIMEOUT: &str = "REQUEST_TIMEOUT";
    pub const GONE: &str = "GONE";
    pub const UNPROCESSABLE_ENTITY: &str = "UNPROCESSABLE_ENTITY";
    pub const INTERNAL_SERVER_ERROR: &str = "INTERNAL_SERVER_ERROR";
    pub const FILE_NOT_FOUND: &str = "FILE_NOT_FOUND";
    pub const FILE_ACCESS_DENIED: &str = "FILE_ACCESS_DENIED";
    pub const INVALID_FILE_PATH: &str = "INVALID_FILE_PATH";
    pub const FILE_READ_FAILED: &str = "FILE_READ_FAILED";
    pub const PROCESS_EXECUTION_TIMEOUT: &str = "PROCESS_EXECUTION_TIMEOUT";
    pub const PROCESS_NOT_FOUND: &str = "PROCESS_NOT_FOUND";
    pub const SESSION_ENDED: &str = "SESSION_ENDED";
    pub const COMMAND_ALREADY_COMPLETED: &str = "COMMAND_ALREADY_COMPLETED";
    pub const LSP_SERVER_NOT_INITIALIZED: &str = "LSP_SERVER_NOT_INITIALIZED";
    pub const GIT_AUTH_FAILED: &str = "GIT_AUTH_FAILED";
    pub const GIT_REPO_NOT_FOUND: &str = "GIT_REPO_NOT_FOUND";
    pub const GIT_BRANCH_NOT_FOUND: &str = "GIT_BRANCH_NOT_FOUND";
    pub const GIT_BRANCH_EXISTS: &str = "GIT_BRANCH_EXISTS";
    pub const GIT_PUSH_REJECTED: &str = "GIT_PUSH_REJECTED";
    pub const GIT_DIRTY_WORKTREE: &str = "GIT_DIRTY_WORKTREE";
    pub const GIT_MERGE_CONFLICT: &str = "GIT_MERGE_CONFLICT";
    pub const GIT_TRANSPORT_FAILED: &str = "GIT_TRANSPORT_FAILED";
    pub const GIT_REMOTE_REJECTED: &str = "GIT_REMOTE_REJECTED";
}

/// The daemon error envelope (§4): `{"statusCode","message","code","source","timestamp","path","method"}`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ErrorEnvelope {
    pub status_code: u16,
    pub message: String,
    pub code: String,
    pub source: String,
    pub timestamp: String,
    pub path: String,
    pub method: String,
}

// ---------------------------------------------------------------------------------------------
// Process

/// `POST /process/execute`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ExecuteRequest {
    pub command: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cwd: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub envs: Option<BTreeMap<String, String>>,
    /// Seconds; absent or 0 means no timeout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<u64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ExecuteResponse {
    pub exit_code: i32,
    pub result: String,
}

/// `POST /process/code-run`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct CodeRunRequest {
    pub code: String,
    pub language: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub argv: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub envs: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<u64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CodeRunResponse {
    pub exit_code: i32,
    pub result: String,
    pub artifacts: CodeRunArtifacts,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CodeRunArtifacts {
    pub stdout: String,
    pub charts: Vec<serde_json::Value>,
}

/// `POST /process/session`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct CreateSessionRequest {
    pub session_id: String,
}

/// `POST /process/session/{sessionId}/exec`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct SessionExecuteRequest {
    pub command: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_async: Option<bool>,
    /// Deprecated spelling of `runAsync`.
    #[serde(default, rename = "async", skip_serializing_if = "Option::is_none")]
    pub async_: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suppress_input_echo: Option<bool>,
}

impl SessionExecuteRequest {
    pub fn is_async(&self) -> bool {
        self.run_async.or(self.async_).unwrap_or(false)
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct SessionExecuteResponse {
    pub cmd_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stdout: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stderr: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Session {
    pub session_id: String,
    pub commands: Vec<SessionCommand>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct SessionCommand {
    pub id: String,
    pub command: String,
    /// Absent while the command runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct SessionCommandLogs {
    pub output: String,
    pub stdout: String,
    pub stderr: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct SessionInputRequest {
    pub data: String,
}

/// Marker that switches a followed log stream (WebSocket) to stdout.
pub const LOG_STDOUT_MARKER: &[u8] = b"\x01\x01\x01";
/// Marker that switches a followed log stream (WebSocket) to stderr.
pub const LOG_STDERR_MARKER: &[u8] = b"\x02\x02\x02";

/// A PTY session as listed by `GET /process/pty`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct PtySessionInfo {
    pub id: String,
    pub active: bool,
    pub cols: u16,
    pub rows: u16,
    pub cwd: String,
    pub envs: BTreeMap<String, String>,
    pub created_at: String,
    pub lazy_start: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct PtyListResponse {
    pub sessions: Vec<PtySessionInfo>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct PtyResizeRequest {
    pub cols: u16,
    pub rows: u16,
}

/// `POST /process/pty` (REST creation, unused by the SDK's WebSocket path).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct PtyCreateRequest {
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub cwd: Option<String>,
    #[serde(default)]
    pub envs: Option<BTreeMap<String, String>>,
    #[serde(default)]
    pub cols: Option<u16>,
    #[serde(default)]
    pub rows: Option<u16>,
    #[serde(default)]
    pub lazy_start: Option<bool>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct PtyCreateResponse {
    pub session_id: String,
}

/// Text control frame of a PTY WebSocket.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct PtyControl {
    #[serde(rename = "type")]
    pub kind: String,
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

// ---------------------------------------------------------------------------------------------
// Files

/// One file as returned by `GET /files` and `GET /files/info`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct FileInfo {
    pub name: String,
    pub is_dir: bool,
    pub size: u64,
    /// Go `FileMode.String()`, e.g. `-rw-r--r--`, `drwxr-xr-x`.
    pub mode: String,
    /// Permission bits in octal, e.g. `0644`.
    pub permissions: String,
    /// Owner uid as a decimal string.
    pub owner: String,
    /// Group gid as a decimal string.
    pub group: String,
    /// Go `time.Time.String()` (deprecated upstream, still required).
    pub mod_time: String,
    /// RFC 3339.
    pub modified_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
}

/// One hit of `GET /files/find`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Match {
    pub file: String,
    pub line: u64,
    pub content: String,
}

/// `GET /files/search`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct SearchFilesResponse {
    pub files: Vec<String>,
}

/// `POST /files/replace`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ReplaceRequest {
    pub files: Vec<String>,
    pub pattern: String,
    pub new_value: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ReplaceResult {
    pub file: String,
    pub success: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// `POST /files/bulk-download`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct BulkDownloadRequest {
    pub paths: Vec<String>,
}

/// Success body of `POST /files/bulk-upload`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct BulkUploadResponse {
    pub files: Vec<UploadedFile>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct UploadedFile {
    pub path: String,
    pub bytes: u64,
}

/// Failure body of `POST /files/bulk-upload` (the envelope plus the per-file errors).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct BulkUploadErrors {
    pub errors: Vec<String>,
}

/// `POST /files/upload-v2`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct UploadV2Response {
    pub name: String,
    pub path: String,
    #[serde(rename = "type")]
    pub kind: String,
}

// ---------------------------------------------------------------------------------------------
// Info, env, ports, metrics

/// `GET /user-home-dir`, `GET /work-dir`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct DirResponse {
    pub dir: String,
}

/// `POST /env` (sent without a Content-Type header).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct EnvUpdateRequest {
    #[serde(default)]
    pub set: Option<BTreeMap<String, String>>,
    #[serde(default)]
    pub unset: Option<Vec<String>>,
}

/// `GET /port`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct PortsResponse {
    pub ports: Vec<u16>,
}

/// `GET /port/{port}/in-use`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct PortInUseResponse {
    pub is_in_use: bool,
}

/// `GET /system/metrics`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SystemMetrics {
    pub cpu_count: u32,
    pub cpu_used_pct: f64,
    pub mem_total: u64,
    pub mem_used: u64,
    pub mem_cache: u64,
    pub disk_total: u64,
    pub disk_used: u64,
    pub disk_free: u64,
    pub timestamp: String,
    pub timestamp_unix: i64,
}

// ---------------------------------------------------------------------------------------------
// Git (snake_case request keys, as the SDK sends them)

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct GitCloneRequest {
    pub url: String,
    pub path: String,
    #[serde(default)]
    pub branch: Option<String>,
    #[serde(default)]
    pub commit_id: Option<String>,
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub password: Option<String>,
    #[serde(default)]
    pub depth: Option<u32>,
    #[serde(default)]
    pub insecure_skip_tls: Option<bool>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct GitAddRequest {
    pub path: String,
    pub files: Vec<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct GitCommitRequest {
    pub path: String,
    pub message: String,
    pub author: String,
    pub email: String,
    #[serde(default)]
    pub allow_empty: Option<bool>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct GitCommitResponse {
    pub hash: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct GitRemoteRequest {
    pub path: String,
    #[serde(default)]
    pub remote: Option<String>,
    #[serde(default)]
    pub branch: Option<String>,
    #[serde(default)]
    pub set_upstream: Option<bool>,
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub password: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct GitBranchRequest {
    pub path: String,
    pub name: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct GitCheckoutRequest {
    pub path: String,
    pub branch: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct GitInitRequest {
    pub path: String,
    #[serde(default)]
    pub bare: Option<bool>,
    #[serde(default)]
    pub initial_branch: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct GitBranchesResponse {
    pub branches: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct GitFileStatus {
    pub name: String,
    pub staging: String,
    pub worktree: String,
    pub extra: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct GitStatus {
    pub current_branch: String,
    pub file_status: Vec<GitFileStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ahead: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub behind: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub branch_published: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detached: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct GitCommitInfo {
    pub hash: String,
    pub author: String,
    pub email: String,
    pub message: String,
    pub timestamp: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct GitResetRequest {
    pub path: String,
    /// `soft`, `mixed` (default), `hard`, `merge` or `keep`.
    #[serde(default)]
    pub mode: Option<String>,
    /// Revision to reset to (default `HEAD`).
    #[serde(default)]
    pub target: Option<String>,
    /// Limits the reset to these paths (index only).
    #[serde(default)]
    pub files: Option<Vec<String>>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct GitRestoreRequest {
    pub path: String,
    pub files: Vec<String>,
    #[serde(default)]
    pub source: Option<String>,
    #[serde(default)]
    pub staged: Option<bool>,
    #[serde(default)]
    pub worktree: Option<bool>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct GitAddRemoteRequest {
    pub path: String,
    pub name: String,
    pub url: String,
    #[serde(default)]
    pub fetch: Option<bool>,
    #[serde(default)]
    pub overwrite: Option<bool>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct GitRemote {
    pub name: String,
    pub url: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct GitRemotesResponse {
    pub remotes: Vec<GitRemote>,
}

/// Answer of `GET /git/config`: `value` is null when the key is not set.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct GitConfigResponse {
    pub value: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct GitSetConfigRequest {
    pub key: String,
    pub value: String,
    #[serde(default)]
    pub path: Option<String>,
    /// `global` (default), `local` (needs `path`) or `system`.
    #[serde(default)]
    pub scope: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct GitConfigureUserRequest {
    pub name: String,
    pub email: String,
    #[serde(default)]
    pub path: Option<String>,
    #[serde(default)]
    pub scope: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct GitCredentialsRequest {
    pub username: String,
    pub password: String,
    /// Default `github.com`.
    #[serde(default)]
    pub host: Option<String>,
    /// Default `https`.
    #[serde(default)]
    pub protocol: Option<String>,
}
