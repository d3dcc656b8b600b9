//! `POST /process/execute`: one command through the user's shell, combined output.

use std::ffi::OsStr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use sandbar_wire::toolbox::{code, ExecuteRequest, ExecuteResponse};

use crate::envelope::{DaemonError, JsonBody};
use crate::launch::{run_captured, LaunchError};
use crate::Agent;

/// Runs `shell -c command` as the sandbox user. A non-zero exit is still 200; a command that
/// cannot be started is 200 with exit code -1; a timeout kills the process group and is 408
/// `PROCESS_EXECUTION_TIMEOUT`.
pub async fn execute(
    State(agent): State<Arc<Agent>>,
    JsonBody(request): JsonBody<ExecuteRequest>,
) -> Result<Json<ExecuteResponse>, DaemonError> {
    if request.command.trim().is_empty() {
        return Err(DaemonError::bad_request("command must not be empty"));
    }
    let cwd = agent.resolve_path(request.cwd.as_deref());
    let timeout = request.timeout.filter(|t| *t > 0).map(Duration::from_secs);
    let args = [OsStr::new("-c"), OsStr::new(&request.command)];
    let result = run_captured(
        &agent,
        &agent.shell,
        &args,
        &cwd,
        request.envs.as_ref(),
        timeout,
    )
    .await;
    match result {
        Ok(captured) => Ok(Json(ExecuteResponse {
            exit_code: captured.exit_code,
            result: captured.output,
        })),
        Err(err) => in_band(err).map(|message| {
            Json(ExecuteResponse {
                exit_code: -1,
                result: message,
            })
        }),
    }
}

/// Start-up failures are reported in-band (`exitCode: -1`, the message as `result`), as the
/// daemon does; a timeout is an HTTP 408 `PROCESS_EXECUTION_TIMEOUT`.
pub fn in_band(err: LaunchError) -> Result<String, DaemonError> {
    match err {
        LaunchError::Timeout(seconds) => Err(DaemonError::new(
            StatusCode::REQUEST_TIMEOUT,
            code::PROCESS_EXECUTION_TIMEOUT,
            format!("command execution timed out after {seconds} seconds"),
        )),
        LaunchError::Cwd(_) | LaunchError::Pipe(_) | LaunchError::Spawn { .. } => {
            Ok(err.full_message())
        }
    }
}
