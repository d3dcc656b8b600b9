//! `POST /process/code-run`: a snippet of Python, JavaScript, TypeScript or shell.

use std::ffi::{OsStr, OsString};
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::Json;
use sandbar_wire::toolbox::{CodeRunArtifacts, CodeRunRequest, CodeRunResponse};

use crate::envelope::{DaemonError, JsonBody};
use crate::launch::run_captured;
use crate::process::execute::in_band;
use crate::Agent;

pub async fn code_run(
    State(agent): State<Arc<Agent>>,
    JsonBody(request): JsonBody<CodeRunRequest>,
) -> Result<Json<CodeRunResponse>, DaemonError> {
    let argv = request.argv.clone().unwrap_or_default();
    let path_var = agent
        .env_snapshot()
        .get("PATH")
        .cloned()
        .unwrap_or_default();
    let runner = match request.language.to_ascii_lowercase().as_str() {
        "python" | "python3" | "" => find_program(&path_var, &["python3", "python"])
            .map(|p| (p, vec!["-c".into(), request.code.clone().into()])),
        "javascript" | "js" | "node" => find_program(&path_var, &["node"])
            .map(|p| (p, vec!["-e".into(), request.code.clone().into()])),
        "typescript" | "ts" => find_program(&path_var, &["tsx", "ts-node"])
            .map(|p| (p, vec!["-e".into(), request.code.clone().into()])),
        "bash" | "sh" | "shell" => Some((
            agent.shell.clone(),
            vec!["-c".into(), request.code.clone().into(), "code-run".into()],
        )),
        other => {
            return Err(DaemonError::bad_request(format!(
                "unsupported language {other:?}: expected python, typescript, javascript or bash"
            )))
        }
    };
    let Some((program, mut args)) = runner else {
        let message = format!(
            "no interpreter for {} found in PATH ({path_var})",
            request.language
        );
        return Ok(Json(response(-1, message)));
    };
    args.extend(argv.into_iter().map(OsString::from));
    let args: Vec<&OsStr> = args.iter().map(OsString::as_os_str).collect();
    let cwd = agent.resolve_path(None);
    let timeout = request.timeout.filter(|t| *t > 0).map(Duration::from_secs);
    match run_captured(
        &agent,
        &program,
        &args,
        &cwd,
        request.envs.as_ref(),
        timeout,
    )
    .await
    {
        Ok(captured) => Ok(Json(response(captured.exit_code, captured.output))),
        Err(err) => in_band(err).map(|message| Json(response(-1, message))),
    }
}

fn response(exit_code: i32, result: String) -> CodeRunResponse {
    CodeRunResponse {
        exit_code,
        artifacts: CodeRunArtifacts {
            stdout: result.clone(),
            charts: Vec::new(),
        },
        result,
    }
}

/// The first of `names` that is an executable file in one of the `PATH` directories.
pub fn find_program(path_var: &str, names: &[&str]) -> Option<PathBuf> {
    names.iter().find_map(|name| {
        path_var
            .split(':')
            .filter(|dir| !dir.is_empty())
            .map(|dir| PathBuf::from(dir).join(name))
            .find(|candidate| {
                std::fs::metadata(candidate)
                    .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
            })
    })
}
