//! The server is a child subreaper: sandbox inits and slirp4netns processes, orphaned when the
//! jail helper exits, are re-parented to it instead of the host's PID 1 (which, in some
//! containers, never reaps). One thread reaps every child and hands exit statuses to whoever
//! waits for a given pid. Nothing else in the process may wait for children (no
//! `tokio::process`), or the two would race for the same statuses.

use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex, OnceLock};

use nix::errno::Errno;
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::Pid;
use tokio::sync::oneshot;

/// Statuses of children nobody waits for are kept this long (count), then dropped.
const UNCLAIMED_LIMIT: usize = 4096;

#[derive(Default)]
struct State {
    waiters: HashMap<i32, oneshot::Sender<i32>>,
    unclaimed: HashMap<i32, i32>,
    /// Bumped after every spawn, so a reaper thread with no children knows to wait again.
    spawned: u64,
}

/// The process-wide reaper. There is one per process: two would steal each other's statuses.
pub struct Reaper {
    state: Mutex<State>,
    children: Condvar,
}

static REAPER: OnceLock<Arc<Reaper>> = OnceLock::new();

impl Reaper {
    /// Makes this process a subreaper and starts the reaping thread, once per process; later
    /// calls return the same reaper.
    pub fn start() -> std::io::Result<Arc<Self>> {
        if let Some(r) = REAPER.get() {
            return Ok(r.clone());
        }
        nix::sys::prctl::set_child_subreaper(true)
            .map_err(|e| std::io::Error::from_raw_os_error(e as i32))?;
        let reaper = REAPER
            .get_or_init(|| {
                Arc::new(Reaper {
                    state: Mutex::new(State::default()),
                    children: Condvar::new(),
                })
            })
            .clone();
        static THREAD: OnceLock<()> = OnceLock::new();
        let mut spawn_error = None;
        THREAD.get_or_init(|| {
            let r = reaper.clone();
            if let Err(e) = std::thread::Builder::new()
                .name("sandbar-reaper".into())
                .spawn(move || r.reap_forever())
            {
                spawn_error = Some(e);
            }
        });
        match spawn_error {
            Some(e) => Err(e),
            None => Ok(reaper),
        }
    }

    /// Blocks in `waitpid(-1)`; with no child at all, sleeps until the next spawn.
    fn reap_forever(&self) {
        let mut seen = 0;
        loop {
            match waitpid(None::<Pid>, None) {
                Ok(WaitStatus::Exited(pid, code)) => self.deliver(pid.as_raw(), code),
                Ok(WaitStatus::Signaled(pid, sig, _)) => {
                    self.deliver(pid.as_raw(), 128 + sig as i32)
                }
                Ok(_) | Err(Errno::EINTR) => {}
                Err(_) => {
                    // ECHILD: nothing to wait for until something is spawned.
                    let mut state = self.state.lock().expect("reaper lock");
                    while state.spawned == seen {
                        state = self.children.wait(state).expect("reaper lock");
                    }
                    seen = state.spawned;
                }
            }
        }
    }

    fn deliver(&self, pid: i32, code: i32) {
        let mut state = self.state.lock().expect("reaper lock");
        match state.waiters.remove(&pid) {
            Some(tx) => {
                let _ = tx.send(code);
            }
            None => {
                if state.unclaimed.len() >= UNCLAIMED_LIMIT {
                    state.unclaimed.clear();
                }
                state.unclaimed.insert(pid, code);
            }
        }
    }

    /// Tells the reaping thread that a child now exists (call right after spawning).
    fn spawned(&self) {
        let mut state = self.state.lock().expect("reaper lock");
        state.spawned += 1;
        self.children.notify_all();
    }

    /// Exit code of child `pid` (128 + signal when killed by a signal).
    pub async fn wait(&self, pid: i32) -> i32 {
        let rx = {
            let mut state = self.state.lock().expect("reaper lock");
            if let Some(code) = state.unclaimed.remove(&pid) {
                return code;
            }
            let (tx, rx) = oneshot::channel();
            state.waiters.insert(pid, tx);
            rx
        };
        rx.await.unwrap_or(-1)
    }
}

/// Output of a host command run through [`Reaper::run`].
#[derive(Debug)]
pub struct CommandOutput {
    pub code: i32,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

impl Reaper {
    /// Runs a host command to completion (stdin: `input`, if any) and collects its output.
    /// Use this instead of `Command::output()`/`status()`, whose own `waitpid` would race the
    /// reaper.
    pub async fn run(
        &self,
        mut cmd: std::process::Command,
        input: Option<Vec<u8>>,
    ) -> std::io::Result<CommandOutput> {
        use std::io::{Read, Write};
        use std::process::Stdio;
        cmd.stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
        let mut child = cmd.spawn()?;
        self.spawned();
        let pid = child.id() as i32;
        let stdin = child.stdin.take();
        let mut stdout = child.stdout.take().expect("piped");
        let mut stderr = child.stderr.take().expect("piped");
        // Reaped by the reaper, never through `child`.
        drop(child);
        let io = tokio::task::spawn_blocking(move || -> std::io::Result<(Vec<u8>, Vec<u8>)> {
            if let (Some(mut stdin), Some(input)) = (stdin, input) {
                stdin.write_all(&input)?;
            }
            let err_thread = std::thread::spawn(move || {
                let mut err = Vec::new();
                stderr.read_to_end(&mut err).map(|_| err)
            });
            let mut out = Vec::new();
            stdout.read_to_end(&mut out)?;
            let err = err_thread
                .join()
                .map_err(|_| std::io::Error::other("stderr reader panicked"))??;
            Ok((out, err))
        });
        let code = self.wait(pid).await;
        let (stdout, stderr) = io.await.map_err(std::io::Error::other)??;
        Ok(CommandOutput {
            code,
            stdout,
            stderr,
        })
    }
}
