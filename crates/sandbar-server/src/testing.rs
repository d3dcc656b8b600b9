//! [`FakeRuntime`]: an in-memory [`SandboxRuntime`] for tests. It records every call, keeps
//! "processes" alive until stopped, and lets a test end a sandbox (optionally as an OOM kill)
//! to exercise exit watching.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Mutex;

use futures_util::future::BoxFuture;
use sandbar_runtime::{
    ExitInfo, Launched, Resources, RuntimeError, SandboxRuntime, SandboxSpec, Usage,
};
use tokio::sync::watch;

/// One call the server made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    Start(String),
    Stop { id: String, force: bool },
    Destroy(String),
    Archive(String),
    Resize { id: String, resources: Resources },
}

#[derive(Default)]
struct FakeState {
    calls: Vec<Call>,
    specs: HashMap<String, SandboxSpec>,
    /// Running sandboxes: their init and the channel that reports its end.
    running: HashMap<String, (Launched, watch::Sender<Option<ExitInfo>>)>,
    /// Sandboxes with state on the host (started at least once, not destroyed).
    host: HashSet<String>,
    next_pid: i32,
    fail_next_start: Option<String>,
    /// Sandboxes whose layer is archived (restored by the next start).
    archived: HashSet<String>,
    /// Memory in use per sandbox (bytes), as [`SandboxRuntime::usage`] reports it.
    memory_bytes: HashMap<String, u64>,
    /// Limits in force per running sandbox: the start's, then each live resize's.
    limits: HashMap<String, Resources>,
}

pub struct FakeRuntime {
    state: Mutex<FakeState>,
    socket_dir: PathBuf,
    /// When set, every sandbox's agent is this one socket (one real agent shared by all).
    shared_socket: Option<PathBuf>,
}

impl FakeRuntime {
    /// `socket_dir` is where [`SandboxRuntime::agent_socket`] points (`<dir>/<id>.sock`).
    pub fn new(socket_dir: PathBuf) -> Self {
        Self {
            state: Mutex::new(FakeState {
                next_pid: 1000,
                ..FakeState::default()
            }),
            socket_dir,
            shared_socket: None,
        }
    }

    /// Points every sandbox's agent socket at `socket` (e.g. one real `sandbar agent`).
    pub fn with_shared_agent_socket(mut self, socket: PathBuf) -> Self {
        self.shared_socket = Some(socket);
        self
    }

    fn with<T>(&self, f: impl FnOnce(&mut FakeState) -> T) -> T {
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        f(&mut state)
    }

    pub fn calls(&self) -> Vec<Call> {
        self.with(|s| s.calls.clone())
    }

    /// The spec of the last start of `id`.
    pub fn spec(&self, id: &str) -> Option<SandboxSpec> {
        self.with(|s| s.specs.get(id).cloned())
    }

    /// The limits in force on running sandbox `id` (start's spec, then live resizes).
    pub fn limits(&self, id: &str) -> Option<Resources> {
        self.with(|s| s.limits.get(id).copied())
    }

    /// Makes [`SandboxRuntime::usage`] report `bytes` of memory in use by `id`.
    pub fn set_memory_usage(&self, id: &str, bytes: u64) {
        self.with(|s| s.memory_bytes.insert(id.to_owned(), bytes));
    }

    pub fn is_running(&self, id: &str) -> bool {
        self.with(|s| s.running.contains_key(id))
    }

    /// Makes the next `start` fail with this message.
    pub fn fail_next_start(&self, message: &str) {
        self.with(|s| s.fail_next_start = Some(message.to_owned()));
    }

    /// Ends a running sandbox as if its init died (an OOM kill when `oom_killed`).
    pub fn crash(&self, id: &str, oom_killed: bool) {
        self.with(|s| {
            if let Some((_, exit)) = s.running.remove(id) {
                let _ = exit.send(Some(ExitInfo { oom_killed }));
            }
        });
    }

    /// Pretends a sandbox has state on the host without any record (an orphan), or a process
    /// that survived a server restart when `launched` is given.
    pub fn adopt(&self, id: &str, launched: Option<Launched>) {
        self.with(|s| {
            s.host.insert(id.to_owned());
            if let Some(launched) = launched {
                let (tx, _) = watch::channel(None);
                s.running.insert(id.to_owned(), (launched, tx));
            }
        });
    }

    /// Where the agent of `id` listens (same as [`SandboxRuntime::agent_socket`]).
    pub fn agent_socket_path(&self, id: &str) -> PathBuf {
        match &self.shared_socket {
            Some(socket) => socket.clone(),
            None => self.socket_dir.join(format!("{id}.sock")),
        }
    }

    pub fn is_archived(&self, id: &str) -> bool {
        self.with(|s| s.archived.contains(id))
    }

    pub fn has_host_state(&self, id: &str) -> bool {
        self.with(|s| s.host.contains(id))
    }

    fn end(state: &mut FakeState, id: &str) {
        state.limits.remove(id);
        if let Some((_, exit)) = state.running.remove(id) {
            let _ = exit.send(Some(ExitInfo { oom_killed: false }));
        }
    }
}

#[async_trait::async_trait]
impl SandboxRuntime for FakeRuntime {
    async fn start(&self, spec: &SandboxSpec) -> Result<Launched, RuntimeError> {
        // Yield once, as a real start would.
        tokio::task::yield_now().await;
        self.with(|s| {
            s.calls.push(Call::Start(spec.id.clone()));
            s.specs.insert(spec.id.clone(), spec.clone());
            s.host.insert(spec.id.clone());
            s.archived.remove(&spec.id);
            if let Some(message) = s.fail_next_start.take() {
                return Err(RuntimeError::Setup(message));
            }
            if s.running.contains_key(&spec.id) {
                return Err(RuntimeError::Setup("already running".to_owned()));
            }
            s.next_pid += 1;
            let launched = Launched {
                pid: s.next_pid,
                start_time: 4242,
            };
            let (tx, _) = watch::channel(None);
            s.running.insert(spec.id.clone(), (launched, tx));
            s.limits.insert(spec.id.clone(), spec.resources);
            Ok(launched)
        })
    }

    async fn stop(
        &self,
        id: &str,
        _launched: Option<Launched>,
        force: bool,
    ) -> Result<(), RuntimeError> {
        self.with(|s| {
            s.calls.push(Call::Stop {
                id: id.to_owned(),
                force,
            });
            Self::end(s, id);
        });
        Ok(())
    }

    async fn destroy(&self, id: &str, _launched: Option<Launched>) -> Result<(), RuntimeError> {
        self.with(|s| {
            s.calls.push(Call::Destroy(id.to_owned()));
            Self::end(s, id);
            s.host.remove(id);
            s.archived.remove(id);
        });
        Ok(())
    }

    async fn archive(&self, id: &str) -> Result<u64, RuntimeError> {
        self.with(|s| {
            s.calls.push(Call::Archive(id.to_owned()));
            if s.running.contains_key(id) {
                return Err(RuntimeError::Setup(format!("sandbox {id} is running")));
            }
            s.archived.insert(id.to_owned());
            Ok(1)
        })
    }

    async fn drop_layer(&self, id: &str) -> Result<(), RuntimeError> {
        if self.is_archived(id) {
            Ok(())
        } else {
            Err(RuntimeError::Setup(format!("sandbox {id} has no archive")))
        }
    }

    fn is_archived(&self, id: &str) -> bool {
        FakeRuntime::is_archived(self, id)
    }

    async fn resize(&self, id: &str, resources: Resources) -> Result<(), RuntimeError> {
        self.with(|s| {
            s.calls.push(Call::Resize {
                id: id.to_owned(),
                resources,
            });
            if !s.running.contains_key(id) {
                return Err(RuntimeError::Resize {
                    id: id.to_owned(),
                    reason: "the sandbox is not running".to_owned(),
                });
            }
            s.limits.insert(id.to_owned(), resources);
            Ok(())
        })
    }

    fn usage(&self, id: &str) -> Usage {
        Usage {
            memory_bytes: self.with(|s| s.memory_bytes.get(id).copied().unwrap_or(0)),
            ..Usage::default()
        }
    }

    fn is_alive(&self, launched: Launched) -> bool {
        self.with(|s| s.running.values().any(|(l, _)| *l == launched))
    }

    fn wait_exit(
        &self,
        id: &str,
        launched: Launched,
    ) -> Result<BoxFuture<'static, ExitInfo>, RuntimeError> {
        let mut exit = self.with(|s| match s.running.get(id) {
            Some((running, tx)) if *running == launched => Ok(tx.subscribe()),
            _ => Err(RuntimeError::Setup(format!("sandbox {id} is not running"))),
        })?;
        Ok(Box::pin(async move {
            match exit.wait_for(Option::is_some).await {
                Ok(info) => info.clone().unwrap_or(ExitInfo { oom_killed: false }),
                Err(_) => ExitInfo { oom_killed: false },
            }
        }))
    }

    fn agent_socket(&self, id: &str) -> PathBuf {
        self.agent_socket_path(id)
    }

    fn list_host_sandboxes(&self) -> Vec<String> {
        self.with(|s| s.host.iter().cloned().collect())
    }
}
