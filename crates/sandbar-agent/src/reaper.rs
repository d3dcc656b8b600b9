//! The single child reaper.
//!
//! On every SIGCHLD the reaper collects exit statuses with `waitpid(.., WNOHANG)` and hands each
//! one to the waiter registered for that pid. As PID 1 (`init`) it waits for any pid, so orphans
//! re-parented to the agent are reaped too; otherwise (tests on a host) it only waits for the
//! pids it started, so it never steals other children of the hosting process.
//!
//! `tokio::process` is not used anywhere: its own reaping would race a `waitpid(-1)` loop.
//! Children are started with `std::process::Command` through [`Reaper::spawn`], which registers
//! the pid before the reaper can run again (both happen on the runtime's only thread, under one
//! lock), so a status can never arrive for a pid that is ours but not yet registered; statuses of
//! pids nobody registered are orphans and are dropped.

use std::collections::HashMap;
use std::io;
use std::process::Command;
use std::sync::{Arc, Mutex, MutexGuard};

use nix::errno::Errno;
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::{oneshot, watch};

/// How a child ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    Exited(i32),
    Signaled(i32),
}

impl ExitStatus {
    /// Shell convention: the exit code, or 128 + signal number.
    pub fn code(self) -> i32 {
        match self {
            ExitStatus::Exited(code) => code,
            ExitStatus::Signaled(signal) => 128 + signal,
        }
    }
}

/// A started child: its pid and the receiver of its exit status.
#[derive(Debug)]
pub struct Spawned {
    pub pid: i32,
    pub exit: oneshot::Receiver<ExitStatus>,
}

#[derive(Debug, thiserror::Error)]
pub enum ReaperError {
    #[error("cannot listen for SIGCHLD")]
    Signal(#[source] io::Error),
}

#[derive(Debug)]
pub struct Reaper {
    init: bool,
    waiters: Mutex<HashMap<i32, oneshot::Sender<ExitStatus>>>,
    /// True while the agent (as init) still has children; updated after each reap.
    children: watch::Sender<bool>,
}

impl Reaper {
    /// Starts the reaper task on the current runtime.
    pub fn start(init: bool) -> Result<Arc<Self>, ReaperError> {
        let mut sigchld = signal(SignalKind::child()).map_err(ReaperError::Signal)?;
        let reaper = Arc::new(Reaper {
            init,
            waiters: Mutex::new(HashMap::new()),
            children: watch::Sender::new(true),
        });
        let task_reaper = Arc::downgrade(&reaper);
        tokio::spawn(async move {
            while sigchld.recv().await.is_some() {
                let Some(reaper) = task_reaper.upgrade() else {
                    break;
                };
                reaper.reap();
            }
        });
        // Children may have exited before the handler existed (orphans inherited at start-up).
        reaper.reap();
        Ok(reaper)
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<i32, oneshot::Sender<ExitStatus>>> {
        self.waiters
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Spawns `cmd` and registers its pid. The `Child` handle is dropped without waiting:
    /// the exit status arrives through [`Spawned::exit`].
    ///
    /// Must be called on the runtime thread (never from `spawn_blocking`), see the module doc.
    pub fn spawn(&self, cmd: &mut Command) -> io::Result<Spawned> {
        let mut waiters = self.lock();
        let child = cmd.spawn()?;
        let pid = i32::try_from(child.id()).map_err(io::Error::other)?;
        drop(child);
        let (tx, rx) = oneshot::channel();
        waiters.insert(pid, tx);
        drop(waiters);
        self.children.send_replace(true);
        Ok(Spawned { pid, exit: rx })
    }

    /// Collects every exit status available now.
    pub fn reap(&self) {
        let mut waiters = self.lock();
        if self.init {
            loop {
                match waitpid(None::<Pid>, Some(WaitPidFlag::WNOHANG)) {
                    Ok(WaitStatus::StillAlive) => break,
                    Ok(status) => deliver(&mut waiters, status),
                    Err(Errno::EINTR) => continue,
                    Err(Errno::ECHILD) => {
                        self.children.send_replace(false);
                        break;
                    }
                    Err(err) => {
                        tracing::warn!(%err, "waitpid failed");
                        break;
                    }
                }
            }
        } else {
            let pids: Vec<i32> = waiters.keys().copied().collect();
            for pid in pids {
                match waitpid(Pid::from_raw(pid), Some(WaitPidFlag::WNOHANG)) {
                    Ok(WaitStatus::StillAlive) => {}
                    Ok(status) => deliver(&mut waiters, status),
                    Err(Errno::EINTR) => {}
                    Err(err) => {
                        // Not our child (ECHILD): the waiter sees a closed channel.
                        tracing::warn!(pid, %err, "waitpid failed");
                        waiters.remove(&pid);
                    }
                }
            }
        }
    }

    /// As init: waits until no child is left (used at shutdown, bounded by the caller).
    pub async fn all_exited(&self) {
        let mut rx = self.children.subscribe();
        self.reap();
        let _ = rx.wait_for(|remaining| !remaining).await;
    }
}

fn deliver(waiters: &mut HashMap<i32, oneshot::Sender<ExitStatus>>, status: WaitStatus) {
    let (pid, exit) = match status {
        WaitStatus::Exited(pid, code) => (pid, ExitStatus::Exited(code)),
        WaitStatus::Signaled(pid, signal, _) => (pid, ExitStatus::Signaled(signal as i32)),
        _ => return,
    };
    if let Some(tx) = waiters.remove(&pid.as_raw()) {
        let _ = tx.send(exit);
    }
}
