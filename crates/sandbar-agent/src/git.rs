//! Git endpoints (`shared/daytona-api.md` §5.4), run with the sandbox's own `git` as the sandbox
//! user (so the snapshot needs git; without it every call is a clear 501).
//!
//! git's messages are mapped to the daemon's git error codes (`GIT_REPO_NOT_FOUND`,
//! `GIT_BRANCH_NOT_FOUND`, `GIT_BRANCH_EXISTS`, `GIT_AUTH_FAILED`, `GIT_PUSH_REJECTED`,
//! `GIT_DIRTY_WORKTREE`, `GIT_MERGE_CONFLICT`, `GIT_TRANSPORT_FAILED`). Credentials given in a
//! request travel as a one-off `http.extraHeader`, never written to the repository's config.
//! Routes not listed in [`routes`] (reset, restore, config, credentials) answer 501.

use std::ffi::{OsStr, OsString};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::routing::{any, get, post};
use axum::{Json, Router};
use base64::Engine;
use sandbar_wire::toolbox::{
    code, GitAddRequest, GitBranchRequest, GitBranchesResponse, GitCheckoutRequest,
    GitCloneRequest, GitCommitInfo, GitCommitRequest, GitCommitResponse, GitFileStatus,
    GitInitRequest, GitRemoteRequest, GitStatus,
};
use serde::Deserialize;

use crate::envelope::{DaemonError, JsonBody};
use crate::launch::run_captured;
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
    let path_var = agent
        .env_snapshot()
        .get("PATH")
        .cloned()
        .unwrap_or_default();
    let Some(program) = find_program(&path_var, &["git"]) else {
        return Err(DaemonError::new(
            StatusCode::NOT_IMPLEMENTED,
            "NOT_IMPLEMENTED",
            "git is not installed in this sandbox",
        ));
    };
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
    let captured = run_captured(agent, &program, &args, &dir, Some(&envs), Some(GIT_TIMEOUT))
        .await
        .map_err(|err| DaemonError::internal(format!("cannot run git: {err}")))?;
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
