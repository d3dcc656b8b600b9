//! Starting commands as the sandbox user, and running one to completion with its combined output.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::io;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;

use crate::pipe::{self, TailBuffer};
use crate::sys::{self, Credentials};
use crate::Agent;

/// Captured output is capped; the tail is kept.
pub const OUTPUT_CAP: usize = 10 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    #[error("working directory {0} does not exist or is not a directory")]
    Cwd(PathBuf),
    #[error("cannot create the output pipe")]
    Pipe(#[source] io::Error),
    #[error("cannot start {program}")]
    Spawn {
        program: String,
        #[source]
        source: io::Error,
    },
    #[error("command timed out after {0} seconds")]
    Timeout(u64),
}

impl LaunchError {
    /// The message with its cause, for `result` fields.
    pub fn full_message(&self) -> String {
        match std::error::Error::source(self) {
            Some(source) => format!("{self}: {source}"),
            None => self.to_string(),
        }
    }
}

/// Result of [`run_captured`].
#[derive(Debug)]
pub struct Captured {
    pub exit_code: i32,
    pub output: String,
}

impl Agent {
    /// Resolves a request path: empty means the home directory; relative paths are relative to
    /// it.
    pub fn resolve_path(&self, path: Option<&str>) -> PathBuf {
        match path {
            None | Some("") => self.user.home.clone(),
            Some(p) => self.user.home.join(p),
        }
    }

    /// A command for `program` as the sandbox user, with the agent's environment plus `envs`,
    /// in `cwd`, stdin from /dev/null.
    pub fn command(
        &self,
        program: impl AsRef<OsStr>,
        cwd: &Path,
        envs: Option<&BTreeMap<String, String>>,
    ) -> Command {
        self.command_with(program, cwd, envs, false, None)
    }

    /// [`Agent::command`] with a controlling terminal (stdin must be a PTY slave) and/or an
    /// extra descriptor installed as fd 3.
    pub fn command_with(
        &self,
        program: impl AsRef<OsStr>,
        cwd: &Path,
        envs: Option<&BTreeMap<String, String>>,
        controlling_tty: bool,
        fd3: Option<std::os::fd::OwnedFd>,
    ) -> Command {
        let mut cmd = Command::new(program);
        cmd.env_clear()
            .envs(self.env_snapshot())
            .current_dir(cwd)
            .stdin(Stdio::null());
        if let Some(envs) = envs {
            cmd.envs(envs);
        }
        sys::prepare_child(&mut cmd, self.credentials(), controlling_tty, fd3);
        cmd
    }

    /// The identity to switch to, if the agent may and needs to.
    pub fn credentials(&self) -> Option<Credentials> {
        if !self.is_root {
            return None;
        }
        Some(Credentials {
            uid: self.user.uid,
            gid: self.user.gid,
            groups: self.user.groups.clone(),
        })
    }

    pub fn env_snapshot(&self) -> BTreeMap<String, String> {
        self.env
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

/// Runs `program args` in its own process group with stdout and stderr on one pipe, and returns
/// when it exits. Output still buffered in the pipe at exit is drained without waiting, so
/// background children holding the pipe do not delay the answer. On timeout the whole group
/// is killed.
pub async fn run_captured(
    agent: &Agent,
    program: &Path,
    args: &[&OsStr],
    cwd: &Path,
    envs: Option<&BTreeMap<String, String>>,
    timeout: Option<Duration>,
) -> Result<Captured, LaunchError> {
    if !cwd.is_dir() {
        return Err(LaunchError::Cwd(cwd.to_owned()));
    }
    let (reader, writer) = pipe::pipe().map_err(LaunchError::Pipe)?;
    let writer2 = writer.try_clone().map_err(LaunchError::Pipe)?;
    let mut cmd = agent.command(program, cwd, envs);
    cmd.args(args)
        .stdout(Stdio::from(writer))
        .stderr(Stdio::from(writer2))
        .process_group(0);
    let spawned = agent.reaper.spawn(&mut cmd);
    // The Command holds our copies of the pipe's write end: drop them so EOF can happen.
    drop(cmd);
    let spawned = spawned.map_err(|source| LaunchError::Spawn {
        program: program.display().to_string(),
        source,
    })?;
    let pid = spawned.pid;
    let mut exit = spawned.exit;
    let mut output = TailBuffer::new(OUTPUT_CAP);
    let mut buf = vec![0u8; 16 * 1024];
    let deadline = async {
        match timeout {
            Some(limit) => tokio::time::sleep(limit).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(deadline);
    let mut eof = false;
    loop {
        tokio::select! {
            status = &mut exit => {
                output.push(&reader.drain_now(4 * 1024 * 1024));
                let exit_code = status.map(|s| s.code()).unwrap_or(-1);
                return Ok(Captured { exit_code, output: output.into_string() });
            }
            read = reader.read(&mut buf), if !eof => match read {
                Ok(0) | Err(_) => eof = true,
                Ok(n) => output.push(&buf[..n]),
            },
            () = &mut deadline => {
                let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
                let _ = exit.await;
                return Err(LaunchError::Timeout(timeout.map_or(0, |t| t.as_secs())));
            }
        }
    }
}
