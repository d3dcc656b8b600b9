//! Git endpoints (`shared/daytona-api.md` §5.4), run with the sandbox's own `git` as the sandbox
//! user (so the snapshot needs git; without it every call is a clear 501).
//!
//! git's messages are mapped to the daemon's git error codes (`GIT_REPO_NOT_FOUND`,
//! `GIT_BRANCH_NOT_FOUND`, `GIT_BRANCH_EXISTS`, `GIT_AUTH_FAILED`, `GIT_PUSH_REJECTED`,
//! `GIT_DIRTY_WORKTREE`, `GIT_MERGE_CONFLICT`, `GIT_TRANSPORT_FAILED`). Credentials given in a
//! request travel as a one-off `http.extraHeader`, never written to the repository's config;
//! only `POST /git/credentials` (`dangerously_authenticate`) stores them, in the user's
//! `~/.git-credentials` through git's `store` helper, as its name warns.

use std::ffi::{OsStr, OsString};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::routing::{any, get, post};
use axum::{Json, Router};
use base64::Engine;
use sandbar_wire::toolbox::{
    code, GitAddRemoteRequest, GitAddRequest, GitBranchRequest, GitBranchesResponse,
    GitCheckoutRequest, GitCloneRequest, GitCommitInfo, GitCommitRequest, GitCommitResponse,
    GitConfigResponse, GitConfigureUserRequest, GitCredentialsRequest, GitFileStatus,
    GitInitRequest, GitRemote, GitRemoteRequest, GitRemotesResponse, GitResetRequest,
    GitRestoreRequest, GitSetConfigRequest, GitStatus,
};
use serde::Deserialize;

use crate::envelope::{DaemonError, JsonBody};
use crate::launch::{run_captured, Captured};
use crate::process::code_run::find_program;
use crate::Agent;

/// Longest a git command may run (clones of large repositories included).
const GIT_TIMEOUT: Duration = Duration::from_secs(600);

pub fn routes() -> Router<Arc<Agent>> {
    Router::new()
        .route("/git/clone", post(clone))
        .route("/git/init", post(init))
        .route("/git/status", get(status))
        .route("/git/add", post(add))
        .route("/git/commit", post(commit))
        .route(
            "/git/branches",
            get(branches).post(create_branch).delete(delete_branch),
        )
        .route("/git/checkout", post(checkout))
        .route("/git/push", post(push))
        .route("/git/pull", post(pull))
        .route("/git/history", get(history))
        .route("/git/reset", post(reset))
        .route("/git/restore", post(restore))
        .route("/git/remotes", get(remotes).post(add_remote))
        .route("/git/config", get(get_config).post(set_config))
        .route("/git/config/user", post(configure_user))
        .route("/git/credentials", post(authenticate))
        .route("/git/{*rest}", any(crate::system::not_offered))
}

#[derive(Debug, Deserialize)]
pub struct PathQuery {
    #[serde(default)]
    path: Option<String>,
}

/// Maps git's complaint to the daemon's status and code.
fn classify(output: &str) -> (StatusCode, &'static str) {
    let text = output.to_ascii_lowercase();
    let has = |needle: &str| text.contains(needle);
    if has("not a git repository") || has("does not exist") || has("repository not found") {
        (StatusCode::NOT_FOUND, code::GIT_REPO_NOT_FOUND)
    } else if has("authentication failed") || has("could not read username") || has("403") {
        (StatusCode::UNAUTHORIZED, code::GIT_AUTH_FAILED)
    } else if has("already exists") && has("branch") {
        (StatusCode::CONFLICT, code::GIT_BRANCH_EXISTS)
    } else if has("did not match any")
        || has("invalid reference")
        || (has("branch") && has("not found"))
        || has("couldn't find remote ref")
    {
        (StatusCode::NOT_FOUND, code::GIT_BRANCH_NOT_FOUND)
    } else if has("[rejected]") || has("failed to push") {
        (StatusCode::CONFLICT, code::GIT_PUSH_REJECTED)
    } else if has("would be overwritten") || has("commit your changes or stash") {
        (StatusCode::CONFLICT, code::GIT_DIRTY_WORKTREE)
    } else if has("conflict") {
        (StatusCode::CONFLICT, code::GIT_MERGE_CONFLICT)
    } else if has("could not resolve host")
        || has("unable to access")
        || has("connection refused")
        || has("could not read from remote")
    {
        (StatusCode::BAD_GATEWAY, code::GIT_TRANSPORT_FAILED)
    } else {
        (StatusCode::BAD_REQUEST, code::BAD_REQUEST)
    }
}

/// Runs `git args...` in `cwd` (a request path); returns its output when it succeeded.
async fn git(
    agent: &Agent,
    cwd: Option<&str>,
    args: &[OsString],
    credentials: Option<(&str, &str)>,
) -> Result<String, DaemonError> {
    let captured = run_git(agent, cwd, args, credentials).await?;
    if captured.exit_code == 0 {
        return Ok(captured.output);
    }
    let (status, code) = classify(&captured.output);
    Err(DaemonError::new(
        status,
        code,
        captured.output.trim().to_owned(),
    ))
}

/// The `git` of the sandbox's `PATH`; 501 when the snapshot has none.
fn git_program(agent: &Agent) -> Result<std::path::PathBuf, DaemonError> {
    let path_var = agent
        .env_snapshot()
        .get("PATH")
        .cloned()
        .unwrap_or_default();
    find_program(&path_var, &["git"]).ok_or_else(|| {
        DaemonError::new(
            StatusCode::NOT_IMPLEMENTED,
            "NOT_IMPLEMENTED",
            "git is not installed in this sandbox",
        )
    })
}

/// Runs `git args...` in `cwd` and returns how it ended, whatever its exit code.
async fn run_git(
    agent: &Agent,
    cwd: Option<&str>,
    args: &[OsString],
    credentials: Option<(&str, &str)>,
) -> Result<Captured, DaemonError> {
    let program = git_program(agent)?;
    let mut full: Vec<OsString> = Vec::new();
    if let Some((user, password)) = credentials {
        let basic = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        full.push("-c".into());
        full.push(format!("http.extraHeader=Authorization: Basic {basic}").into());
    }
    full.extend(args.iter().cloned());
    let args: Vec<&OsStr> = full.iter().map(OsString::as_os_str).collect();
    let dir = agent.resolve_path(cwd);
    if !dir.is_dir() {
        return Err(DaemonError::new(
            StatusCode::NOT_FOUND,
            code::GIT_REPO_NOT_FOUND,
            format!("{} is not a directory", dir.display()),
        ));
    }
    let mut envs = std::collections::BTreeMap::new();
    envs.insert("GIT_TERMINAL_PROMPT".to_owned(), "0".to_owned());
    envs.insert("LC_ALL".to_owned(), "C".to_owned());
    run_captured(agent, &program, &args, &dir, Some(&envs), Some(GIT_TIMEOUT))
        .await
        .map_err(|err| DaemonError::internal(format!("cannot run git: {err}")))
}

fn os(args: &[&str]) -> Vec<OsString> {
    args.iter().map(OsString::from).collect()
}

fn creds<'a>(user: &'a Option<String>, password: &'a Option<String>) -> Option<(&'a str, &'a str)> {
    match (user.as_deref(), password.as_deref()) {
        (Some(u), Some(p)) if !u.is_empty() => Some((u, p)),
        _ => None,
    }
}

async fn clone(
    State(agent): State<Arc<Agent>>,
    JsonBody(r): JsonBody<GitCloneRequest>,
) -> Result<StatusCode, DaemonError> {
    let mut args = os(&["clone", "--quiet"]);
    if let Some(branch) = r.branch.as_deref().filter(|b| !b.is_empty()) {
        args.extend(os(&["--branch", branch]));
    }
    if let Some(depth) = r.depth.filter(|d| *d > 0) {
        args.push(format!("--depth={depth}").into());
    }
    if r.insecure_skip_tls == Some(true) {
        args.splice(0..0, os(&["-c", "http.sslVerify=false"]));
    }
    args.extend(os(&["--", &r.url]));
    args.push(agent.resolve_path(Some(&r.path)).into_os_string());
    git(&agent, None, &args, creds(&r.username, &r.password)).await?;
    if let Some(commit) = r.commit_id.as_deref().filter(|c| !c.is_empty()) {
        git(
            &agent,
            Some(&r.path),
            &os(&["checkout", "--quiet", commit]),
            None,
        )
        .await?;
    }
    Ok(StatusCode::OK)
}

async fn init(
    State(agent): State<Arc<Agent>>,
    JsonBody(r): JsonBody<GitInitRequest>,
) -> Result<StatusCode, DaemonError> {
    // git creates the directory itself, as the sandbox user.
    let mut args = os(&["init", "--quiet"]);
    if r.bare == Some(true) {
        args.push("--bare".into());
    }
    if let Some(branch) = r.initial_branch.as_deref().filter(|b| !b.is_empty()) {
        args.push(format!("--initial-branch={branch}").into());
    }
    args.push("--".into());
    args.push(agent.resolve_path(Some(&r.path)).into_os_string());
    git(&agent, None, &args, None).await?;
    Ok(StatusCode::CREATED)
}

fn status_name(c: char) -> &'static str {
    match c {
        'M' => "Modified",
        'A' => "Added",
        'D' => "Deleted",
        'R' => "Renamed",
        'C' => "Copied",
        'U' => "Updated but unmerged",
        '?' => "Untracked",
        _ => "Unmodified",
    }
}

/// Parses `git status --porcelain=v1 --branch` output.
fn parse_status(output: &str) -> GitStatus {
    let mut status = GitStatus {
        current_branch: String::new(),
        file_status: Vec::new(),
        ahead: None,
        behind: None,
        branch_published: Some(false),
        detached: Some(false),
        upstream: None,
    };
    for line in output.lines() {
        if let Some(head) = line.strip_prefix("## ") {
            let (names, tracking) = match head.split_once(" [") {
                Some((names, rest)) => (names, rest.trim_end_matches(']')),
                None => (head, ""),
            };
            let names = names
                .strip_prefix("No commits yet on ")
                .or_else(|| names.strip_prefix("Initial commit on "))
                .unwrap_or(names);
            if names.starts_with("HEAD (no branch)") {
                status.detached = Some(true);
                status.current_branch = "HEAD".to_owned();
            } else if let Some((branch, upstream)) = names.split_once("...") {
                status.current_branch = branch.to_owned();
                status.upstream = Some(upstream.to_owned());
                status.branch_published = Some(true);
            } else {
                status.current_branch = names.to_owned();
            }
            for part in tracking.split(", ") {
                if let Some(n) = part.strip_prefix("ahead ") {
                    status.ahead = n.parse().ok();
                } else if let Some(n) = part.strip_prefix("behind ") {
                    status.behind = n.parse().ok();
                }
            }
            continue;
        }
        let mut chars = line.chars();
        let (Some(x), Some(y)) = (chars.next(), chars.next()) else {
            continue;
        };
        let rest = line.get(3..).unwrap_or_default();
        let (name, extra) = match rest.split_once(" -> ") {
            Some((from, to)) => (to.to_owned(), from.to_owned()),
            None => (rest.to_owned(), String::new()),
        };
        status.file_status.push(GitFileStatus {
            name: name.trim_matches('"').to_owned(),
            staging: status_name(x).to_owned(),
            worktree: status_name(y).to_owned(),
            extra,
        });
    }
    status
}

async fn status(
    State(agent): State<Arc<Agent>>,
    Query(q): Query<PathQuery>,
) -> Result<Json<GitStatus>, DaemonError> {
    let output = git(
        &agent,
        q.path.as_deref(),
        &os(&[
            "status",
            "--porcelain=v1",
            "--branch",
            "--untracked-files=all",
        ]),
        None,
    )
    .await?;
    Ok(Json(parse_status(&output)))
}

async fn add(
    State(agent): State<Arc<Agent>>,
    JsonBody(r): JsonBody<GitAddRequest>,
) -> Result<StatusCode, DaemonError> {
    let mut args = os(&["add", "--"]);
    args.extend(r.files.iter().map(OsString::from));
    git(&agent, Some(&r.path), &args, None).await?;
    Ok(StatusCode::OK)
}

async fn commit(
    State(agent): State<Arc<Agent>>,
    JsonBody(r): JsonBody<GitCommitRequest>,
) -> Result<Json<GitCommitResponse>, DaemonError> {
    let mut args: Vec<OsString> = vec![
        "-c".into(),
        format!("user.name={}", r.author).into(),
        "-c".into(),
        format!("user.email={}", r.email).into(),
        "commit".into(),
        "--quiet".into(),
        "-m".into(),
        r.message.clone().into(),
    ];
    if r.allow_empty == Some(true) {
        args.push("--allow-empty".into());
    }
    git(&agent, Some(&r.path), &args, None).await?;
    let hash = git(&agent, Some(&r.path), &os(&["rev-parse", "HEAD"]), None).await?;
    Ok(Json(GitCommitResponse {
        hash: hash.trim().to_owned(),
    }))
}

async fn branches(
    State(agent): State<Arc<Agent>>,
    Query(q): Query<PathQuery>,
) -> Result<Json<GitBranchesResponse>, DaemonError> {
    let output = git(
        &agent,
        q.path.as_deref(),
        &os(&["branch", "--list", "--format=%(HEAD) %(refname:short)"]),
        None,
    )
    .await?;
    let mut current = None;
    let mut names = Vec::new();
    for line in output.lines() {
        // `%(HEAD)` is `*` or a space, then one space, then the name.
        let (Some(marker), Some(name)) = (line.get(..1), line.get(2..)) else {
            continue;
        };
        if name.is_empty() {
            continue;
        }
        if marker == "*" {
            current = Some(name.to_owned());
        }
        names.push(name.to_owned());
    }
    Ok(Json(GitBranchesResponse {
        branches: names,
        current,
    }))
}

async fn create_branch(
    State(agent): State<Arc<Agent>>,
    JsonBody(r): JsonBody<GitBranchRequest>,
) -> Result<StatusCode, DaemonError> {
    git(&agent, Some(&r.path), &os(&["branch", "--", &r.name]), None).await?;
    Ok(StatusCode::CREATED)
}

async fn delete_branch(
    State(agent): State<Arc<Agent>>,
    JsonBody(r): JsonBody<GitBranchRequest>,
) -> Result<StatusCode, DaemonError> {
    git(
        &agent,
        Some(&r.path),
        &os(&["branch", "-D", "--", &r.name]),
        None,
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn checkout(
    State(agent): State<Arc<Agent>>,
    JsonBody(r): JsonBody<GitCheckoutRequest>,
) -> Result<StatusCode, DaemonError> {
    let exists = git(
        &agent,
        Some(&r.path),
        &os(&[
            "rev-parse",
            "--verify",
            "--quiet",
            &format!("{}^{{commit}}", r.branch),
        ]),
        None,
    )
    .await
    .is_ok();
    if !exists {
        // `git checkout <remote branch name>` also creates a tracking branch: let git decide,
        // but report an unknown name as GIT_BRANCH_NOT_FOUND.
        return match git(
            &agent,
            Some(&r.path),
            &os(&["checkout", "--quiet", &r.branch]),
            None,
        )
        .await
        {
            Ok(_) => Ok(StatusCode::OK),
            Err(err) if err.code == code::GIT_REPO_NOT_FOUND => Err(err),
            Err(err) => Err(DaemonError::new(
                StatusCode::NOT_FOUND,
                code::GIT_BRANCH_NOT_FOUND,
                err.message,
            )),
        };
    }
    git(
        &agent,
        Some(&r.path),
        &os(&["checkout", "--quiet", &r.branch]),
        None,
    )
    .await?;
    Ok(StatusCode::OK)
}

async fn push(
    State(agent): State<Arc<Agent>>,
    JsonBody(r): JsonBody<GitRemoteRequest>,
) -> Result<StatusCode, DaemonError> {
    let mut args = os(&["push", "--quiet"]);
    if r.set_upstream == Some(true) {
        args.push("--set-upstream".into());
    }
    args.push(
        r.remote
            .clone()
            .unwrap_or_else(|| "origin".to_owned())
            .into(),
    );
    if let Some(branch) = r.branch.as_deref().filter(|b| !b.is_empty()) {
        args.push(branch.into());
    }
    git(
        &agent,
        Some(&r.path),
        &args,
        creds(&r.username, &r.password),
    )
    .await?;
    Ok(StatusCode::OK)
}

async fn pull(
    State(agent): State<Arc<Agent>>,
    JsonBody(r): JsonBody<GitRemoteRequest>,
) -> Result<StatusCode, DaemonError> {
    let mut args = os(&["pull", "--quiet", "--no-rebase"]);
    if let Some(remote) = r.remote.as_deref().filter(|b| !b.is_empty()) {
        args.push(remote.into());
        if let Some(branch) = r.branch.as_deref().filter(|b| !b.is_empty()) {
            args.push(branch.into());
        }
    }
    git(
        &agent,
        Some(&r.path),
        &args,
        creds(&r.username, &r.password),
    )
    .await?;
    Ok(StatusCode::OK)
}

async fn history(
    State(agent): State<Arc<Agent>>,
    Query(q): Query<PathQuery>,
) -> Result<Json<Vec<GitCommitInfo>>, DaemonError> {
    let output = git(
        &agent,
        q.path.as_deref(),
        &os(&["log", "--format=%H%x1f%an%x1f%ae%x1f%aI%x1f%s%x1e"]),
        None,
    )
    .await?;
    let commits = output
        .split('\x1e')
        .filter_map(|record| {
            let mut fields = record.trim_start_matches('\n').split('\x1f');
            Some(GitCommitInfo {
                hash: fields.next().filter(|h| !h.is_empty())?.to_owned(),
                author: fields.next()?.to_owned(),
                email: fields.next()?.to_owned(),
                timestamp: fields.next()?.to_owned(),
                message: fields.next()?.to_owned(),
            })
        })
        .collect();
    Ok(Json(commits))
}

/// A pathspec that matches nothing names a missing file, not a missing branch.
fn pathspec_is_file(err: DaemonError) -> DaemonError {
    if err.code == code::GIT_BRANCH_NOT_FOUND && err.message.contains("pathspec") {
        DaemonError::new(StatusCode::NOT_FOUND, code::FILE_NOT_FOUND, err.message)
    } else {
        err
    }
}

/// Refuses values git would read as options.
fn plain(name: &str, value: &str) -> Result<(), DaemonError> {
    if value.is_empty() || value.starts_with('-') {
        return Err(DaemonError::bad_request(format!(
            "{name} must be non-empty and must not start with '-': {value:?}"
        )));
    }
    Ok(())
}

async fn reset(
    State(agent): State<Arc<Agent>>,
    JsonBody(r): JsonBody<GitResetRequest>,
) -> Result<StatusCode, DaemonError> {
    let mode = r.mode.as_deref().filter(|m| !m.is_empty());
    if let Some(mode) = mode {
        if !["soft", "mixed", "hard", "merge", "keep"].contains(&mode) {
            return Err(DaemonError::bad_request(format!(
                "unknown reset mode {mode:?}: expected soft, mixed, hard, merge or keep"
            )));
        }
    }
    let target = r.target.as_deref().filter(|t| !t.is_empty());
    if let Some(target) = target {
        plain("target", target)?;
    }
    let files = r.files.unwrap_or_default();
    let mut args = os(&["reset", "--quiet"]);
    if files.is_empty() {
        args.push(format!("--{}", mode.unwrap_or("mixed")).into());
        args.extend(target.map(OsString::from));
        args.push("--".into());
    } else {
        // A reset of paths only touches the index.
        if mode.is_some_and(|m| m != "mixed") {
            return Err(DaemonError::bad_request(
                "a reset limited to files only changes the index: mode must be mixed",
            ));
        }
        args.extend(target.map(OsString::from));
        args.push("--".into());
        args.extend(files.iter().map(OsString::from));
    }
    git(&agent, Some(&r.path), &args, None)
        .await
        .map_err(pathspec_is_file)?;
    Ok(StatusCode::OK)
}

async fn restore(
    State(agent): State<Arc<Agent>>,
    JsonBody(r): JsonBody<GitRestoreRequest>,
) -> Result<StatusCode, DaemonError> {
    if r.files.is_empty() {
        return Err(DaemonError::bad_request(
            "files must name at least one path",
        ));
    }
    let mut args = os(&["restore"]);
    if let Some(source) = r.source.as_deref().filter(|s| !s.is_empty()) {
        args.push(format!("--source={source}").into());
    }
    // git's default (the working tree) when neither is asked for.
    if r.staged == Some(true) {
        args.push("--staged".into());
    }
    if r.worktree == Some(true) {
        args.push("--worktree".into());
    }
    args.push("--".into());
    args.extend(r.files.iter().map(OsString::from));
    git(&agent, Some(&r.path), &args, None)
        .await
        .map_err(pathspec_is_file)?;
    Ok(StatusCode::OK)
}

/// Parses `git remote -v`: one `name<TAB>url (fetch)` line per remote.
fn parse_remotes(output: &str) -> Vec<GitRemote> {
    output
        .lines()
        .filter_map(|line| {
            let (name, rest) = line.split_once('\t')?;
            let url = rest.strip_suffix(" (fetch)")?;
            Some(GitRemote {
                name: name.to_owned(),
                url: url.to_owned(),
            })
        })
        .collect()
}

async fn remotes(
    State(agent): State<Arc<Agent>>,
    Query(q): Query<PathQuery>,
) -> Result<Json<GitRemotesResponse>, DaemonError> {
    let output = git(&agent, q.path.as_deref(), &os(&["remote", "-v"]), None).await?;
    Ok(Json(GitRemotesResponse {
        remotes: parse_remotes(&output),
    }))
}

async fn add_remote(
    State(agent): State<Arc<Agent>>,
    JsonBody(r): JsonBody<GitAddRemoteRequest>,
) -> Result<StatusCode, DaemonError> {
    plain("name", &r.name)?;
    plain("url", &r.url)?;
    let existing = git(&agent, Some(&r.path), &os(&["remote"]), None).await?;
    if existing.lines().any(|name| name == r.name) {
        if r.overwrite != Some(true) {
            return Err(DaemonError::new(
                StatusCode::CONFLICT,
                code::CONFLICT,
                format!(
                    "remote {} already exists (pass overwrite to replace it)",
                    r.name
                ),
            ));
        }
        git(
            &agent,
            Some(&r.path),
            &os(&["remote", "set-url", &r.name, &r.url]),
            None,
        )
        .await?;
    } else {
        git(
            &agent,
            Some(&r.path),
            &os(&["remote", "add", &r.name, &r.url]),
            None,
        )
        .await?;
    }
    if r.fetch == Some(true) {
        git(
            &agent,
            Some(&r.path),
            &os(&["fetch", "--quiet", &r.name]),
            None,
        )
        .await?;
    }
    Ok(StatusCode::CREATED)
}

/// The `git config` scope flag and the directory to run in: a local scope needs `path`.
fn config_scope<'a>(
    scope: Option<&str>,
    path: Option<&'a str>,
) -> Result<(&'static str, Option<&'a str>), DaemonError> {
    let path = path.filter(|p| !p.is_empty());
    match scope.filter(|s| !s.is_empty()).unwrap_or("global") {
        "global" => Ok(("--global", path)),
        "system" => Ok(("--system", path)),
        "local" => match path {
            Some(path) => Ok(("--local", Some(path))),
            None => Err(DaemonError::bad_request(
                "path is required when scope is local",
            )),
        },
        other => Err(DaemonError::bad_request(format!(
            "unknown config scope {other:?}: expected global, local or system"
        ))),
    }
}

#[derive(Debug, Deserialize)]
pub struct ConfigQuery {
    key: String,
    #[serde(default)]
    path: Option<String>,
    #[serde(default)]
    scope: Option<String>,
}

async fn get_config(
    State(agent): State<Arc<Agent>>,
    Query(q): Query<ConfigQuery>,
) -> Result<Json<GitConfigResponse>, DaemonError> {
    plain("key", &q.key)?;
    let (flag, cwd) = config_scope(q.scope.as_deref(), q.path.as_deref())?;
    let args = os(&["config", flag, "--get", &q.key]);
    let captured = run_git(&agent, cwd, &args, None).await?;
    match captured.exit_code {
        0 => Ok(Json(GitConfigResponse {
            value: Some(captured.output.trim_end_matches('\n').to_owned()),
        })),
        // Exit 1 without a word: the key is not set.
        1 if captured.output.trim().is_empty() => Ok(Json(GitConfigResponse { value: None })),
        _ => {
            let (status, code) = classify(&captured.output);
            Err(DaemonError::new(
                status,
                code,
                captured.output.trim().to_owned(),
            ))
        }
    }
}

async fn set_config(
    State(agent): State<Arc<Agent>>,
    JsonBody(r): JsonBody<GitSetConfigRequest>,
) -> Result<StatusCode, DaemonError> {
    plain("key", &r.key)?;
    let (flag, cwd) = config_scope(r.scope.as_deref(), r.path.as_deref())?;
    git(&agent, cwd, &os(&["config", flag, &r.key, &r.value]), None).await?;
    Ok(StatusCode::OK)
}

async fn configure_user(
    State(agent): State<Arc<Agent>>,
    JsonBody(r): JsonBody<GitConfigureUserRequest>,
) -> Result<StatusCode, DaemonError> {
    let (flag, cwd) = config_scope(r.scope.as_deref(), r.path.as_deref())?;
    git(
        &agent,
        cwd,
        &os(&["config", flag, "user.name", &r.name]),
        None,
    )
    .await?;
    git(
        &agent,
        cwd,
        &os(&["config", flag, "user.email", &r.email]),
        None,
    )
    .await?;
    Ok(StatusCode::OK)
}

/// Stores credentials for `protocol://host` with git's `store` helper (`~/.git-credentials`,
/// plain text) and makes that helper the user's global one.
async fn authenticate(
    State(agent): State<Arc<Agent>>,
    JsonBody(r): JsonBody<GitCredentialsRequest>,
) -> Result<StatusCode, DaemonError> {
    let host = r
        .host
        .as_deref()
        .filter(|h| !h.is_empty())
        .unwrap_or("github.com");
    let protocol = r
        .protocol
        .as_deref()
        .filter(|p| !p.is_empty())
        .unwrap_or("https");
    for (name, value) in [
        ("username", r.username.as_str()),
        ("password", r.password.as_str()),
        ("host", host),
        ("protocol", protocol),
    ] {
        if value.is_empty() || value.contains(['\n', '\0']) {
            return Err(DaemonError::bad_request(format!(
                "{name} must be non-empty and on one line"
            )));
        }
    }
    git(
        &agent,
        None,
        &os(&["config", "--global", "credential.helper", "store"]),
        None,
    )
    .await?;
    // `git credential approve` reads the credential on stdin: hand it over through the
    // environment of a shell, never on a command line.
    let program = git_program(&agent)?;
    let credential = format!(
        "protocol={protocol}\nhost={host}\nusername={}\npassword={}\n\n",
        r.username, r.password
    );
    let mut envs = std::collections::BTreeMap::new();
    envs.insert("SANDBAR_GIT_CREDENTIAL".to_owned(), credential);
    envs.insert("SANDBAR_GIT".to_owned(), program.display().to_string());
    envs.insert("GIT_TERMINAL_PROMPT".to_owned(), "0".to_owned());
    let script = r#"printf '%s' "$SANDBAR_GIT_CREDENTIAL" | "$SANDBAR_GIT" credential approve"#;
    let args: [&OsStr; 2] = ["-c".as_ref(), script.as_ref()];
    let cwd = agent.resolve_path(None);
    let captured = run_captured(
        &agent,
        &agent.shell,
        &args,
        &cwd,
        Some(&envs),
        Some(GIT_TIMEOUT),
    )
    .await
    .map_err(|err| DaemonError::internal(format!("cannot run git: {err}")))?;
    if captured.exit_code != 0 {
        return Err(DaemonError::internal(format!(
            "git credential approve failed: {}",
            captured.output.trim()
        )));
    }
    Ok(StatusCode::OK)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_lines_are_parsed() {
        let s = parse_status(
            "## main...origin/main [ahead 2, behind 1]\nA  new.txt\n M changed.txt\n?? loose.txt\nR  old.txt -> renamed.txt\n",
        );
        assert_eq!(s.current_branch, "main");
        assert_eq!(s.upstream.as_deref(), Some("origin/main"));
        assert_eq!((s.ahead, s.behind), (Some(2), Some(1)));
        let got: Vec<(&str, &str, &str)> = s
            .file_status
            .iter()
            .map(|f| (f.name.as_str(), f.staging.as_str(), f.worktree.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                ("new.txt", "Added", "Unmodified"),
                ("changed.txt", "Unmodified", "Modified"),
                ("loose.txt", "Untracked", "Untracked"),
                ("renamed.txt", "Renamed", "Unmodified"),
            ]
        );
        assert_eq!(
            parse_status("## No commits yet on trunk\n").current_branch,
            "trunk"
        );
        assert_eq!(parse_status("## HEAD (no branch)\n").detached, Some(true));
    }

    #[test]
    fn remotes_are_parsed_from_fetch_lines() {
        let remotes = parse_remotes(
            "origin\thttps://example.com/a.git (fetch)\norigin\thttps://example.com/a.git (push)\nup\t/srv/b.git (fetch)\nup\tssh://push/b (push)\n",
        );
        assert_eq!(
            remotes,
            [
                GitRemote {
                    name: "origin".into(),
                    url: "https://example.com/a.git".into()
                },
                GitRemote {
                    name: "up".into(),
                    url: "/srv/b.git".into()
                },
            ]
        );
    }

    #[test]
    fn config_scopes() {
        assert_eq!(config_scope(None, None).unwrap(), ("--global", None));
        assert_eq!(
            config_scope(Some("local"), Some("repo")).unwrap(),
            ("--local", Some("repo"))
        );
        assert!(config_scope(Some("local"), None).is_err());
        assert!(config_scope(Some("worktree"), None).is_err());
    }

    #[test]
    fn git_messages_map_to_daemon_codes() {
        let cases = [
            (
                "fatal: not a git repository (or any of the parent directories): .git",
                code::GIT_REPO_NOT_FOUND,
            ),
            (
                "fatal: A branch named 'main' already exists.",
                code::GIT_BRANCH_EXISTS,
            ),
            (
                "error: pathspec 'nope' did not match any file(s) known to git",
                code::GIT_BRANCH_NOT_FOUND,
            ),
            (
                "fatal: Authentication failed for 'https://x/'",
                code::GIT_AUTH_FAILED,
            ),
            (
                " ! [rejected]        main -> main (fetch first)\nerror: failed to push some refs",
                code::GIT_PUSH_REJECTED,
            ),
            (
                "error: Your local changes to the following files would be overwritten by checkout",
                code::GIT_DIRTY_WORKTREE,
            ),
            (
                "CONFLICT (content): Merge conflict in a.txt",
                code::GIT_MERGE_CONFLICT,
            ),
            (
                "fatal: unable to access 'https://x/': Could not resolve host: x",
                code::GIT_TRANSPORT_FAILED,
            ),
            (
                "fatal: repository '/tmp/nope' does not exist",
                code::GIT_REPO_NOT_FOUND,
            ),
        ];
        for (message, want) in cases {
            assert_eq!(classify(message).1, want, "{message}");
        }
    }
}
