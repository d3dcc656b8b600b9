//! The lifecycle manager: runs create/start/stop/destroy against the runtime, one operation at
//! a time per sandbox, records every state change in the store before answering, watches
//! running sandboxes for unexpected exits, and settles what a crash left behind.
//!
//! Every operation runs in its own task, so a client that disconnects mid-request cannot
//! cancel a half-done start or stop.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex as StdMutex};
use std::time::Duration;

use sandbar_core::lifecycle::{self, Action, Plan};
use sandbar_core::{DesiredState, LaunchedProcess, Sandbox, SandboxState};
use sandbar_runtime::{
    ExitInfo, Launched, Mount, Resources, RuntimeError, SandboxRuntime, SandboxSpec,
};
use sandbar_store::{SandboxChange, Store, StoreError};
use tokio::sync::{Mutex, OwnedMutexGuard};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};
use uuid::Uuid;

/// Reasons recorded in `errorReason`.
pub mod reason {
    pub const OOM: &str = "out of memory (OOM kill)";
    pub const INIT_EXITED: &str = "sandbox init (agent) exited unexpectedly";
    pub const NOT_RUNNING_AFTER_RESTART: &str = "sandbox was not running after server restart";
    pub const CREATE_INTERRUPTED: &str = "sandbox creation was interrupted by a server restart";
    pub const START_INTERRUPTED: &str = "sandbox start was interrupted by a server restart";
    pub const STOP_INTERRUPTED: &str = "sandbox stop was interrupted by a server restart";
}

#[derive(Debug, thiserror::Error)]
pub enum LifecycleError {
    #[error("sandbox {0} not found")]
    NotFound(Uuid),
    #[error(transparent)]
    Transition(#[from] lifecycle::LifecycleError),
    #[error("state store failed")]
    Store(#[source] StoreError),
    #[error("runtime failed to {action} sandbox {id}")]
    Runtime {
        action: &'static str,
        id: Uuid,
        #[source]
        source: RuntimeError,
    },
    #[error("failed to prepare volume directory {path}")]
    VolumeDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("sandbox operation task failed")]
    Task(#[source] tokio::task::JoinError),
}

impl From<StoreError> for LifecycleError {
    fn from(source: StoreError) -> Self {
        Self::Store(source)
    }
}

/// Settings of the lifecycle manager.
#[derive(Debug, Clone)]
pub struct LifecycleConfig {
    /// Host directory holding one directory per volume (`<volumes_dir>/<volume id>`).
    pub volumes_dir: PathBuf,
    /// Longest wait for `runtime.start` before the start counts as failed.
    pub start_timeout: Duration,
}

#[derive(Clone)]
pub struct Lifecycle {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    runtime: Arc<dyn SandboxRuntime>,
    config: LifecycleConfig,
    locks: StdMutex<HashMap<Uuid, Arc<Mutex<()>>>>,
    /// Cancelled at shutdown: watchers stop watching, sandboxes keep running.
    shutdown: CancellationToken,
}

/// Renders an error and its sources as `a: b: c` (for `errorReason` and logs).
pub fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

fn to_launched(process: LaunchedProcess) -> Launched {
    Launched {
        pid: process.pid,
        start_time: process.start_time,
    }
}

fn from_launched(launched: Launched) -> LaunchedProcess {
    LaunchedProcess {
        pid: launched.pid,
        start_time: launched.start_time,
    }
}

impl Lifecycle {
    pub fn new(store: Store, runtime: Arc<dyn SandboxRuntime>, config: LifecycleConfig) -> Self {
        Self {
            inner: Arc::new(Inner {
                store,
                runtime,
                config,
                locks: StdMutex::new(HashMap::new()),
                shutdown: CancellationToken::new(),
            }),
        }
    }

    pub fn runtime(&self) -> &Arc<dyn SandboxRuntime> {
        &self.inner.runtime
    }

    /// Stops watching sandboxes (they keep running; the next server re-adopts them).
    pub fn shutdown(&self) {
        self.inner.shutdown.cancel();
    }

    /// Host directory of a volume.
    pub fn volume_dir(&self, volume: Uuid) -> PathBuf {
        self.inner.config.volumes_dir.join(volume.to_string())
    }

    async fn lock(&self, id: Uuid) -> OwnedMutexGuard<()> {
        let lock = {
            let mut locks = self
                .inner
                .locks
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            locks.entry(id).or_default().clone()
        };
        lock.lock_owned().await
    }

    fn forget_lock(&self, id: Uuid) {
        let mut locks = self
            .inner
            .locks
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        locks.remove(&id);
    }

    /// Runs `op` in its own task so that dropping the caller (a disconnected client) does not
    /// cancel it halfway.
    async fn detached<T, F>(&self, op: F) -> Result<T, LifecycleError>
    where
        T: Send + 'static,
        F: std::future::Future<Output = Result<T, LifecycleError>> + Send + 'static,
    {
        tokio::spawn(op).await.map_err(LifecycleError::Task)?
    }

    async fn set_state(
        &self,
        id: Uuid,
        state: SandboxState,
        desired_state: DesiredState,
        error_reason: Option<String>,
        launched: Option<LaunchedProcess>,
    ) -> Result<Sandbox, LifecycleError> {
        self.inner
            .store
            .update_sandbox(
                id,
                SandboxChange::State {
                    state,
                    desired_state,
                    error_reason,
                    launched,
                },
            )
            .await?
            .ok_or(LifecycleError::NotFound(id))
    }

    fn spec(&self, sandbox: &Sandbox) -> Result<SandboxSpec, LifecycleError> {
        let mut mounts = Vec::with_capacity(sandbox.volumes.len());
        for volume in &sandbox.volumes {
            let mut host_path = self.volume_dir(volume.volume_id);
            if let Some(subpath) = &volume.subpath {
                host_path.push(subpath);
            }
            create_dir(&host_path)?;
            mounts.push(Mount {
                host_path,
                target: volume.mount_path.clone(),
                read_only: false,
            });
        }
        let clamp = |value: i64| u32::try_from(value.max(1)).unwrap_or(u32::MAX);
        Ok(SandboxSpec {
            id: sandbox.id.to_string(),
            hostname: sandbox.hostname(),
            snapshot: sandbox.snapshot.clone(),
            user: sandbox.user.clone(),
            env: sandbox.env.clone(),
            resources: Resources {
                cpu: clamp(sandbox.resources.cpu),
                memory_mib: u64::from(clamp(sandbox.resources.memory)) * 1024,
                disk_gib: clamp(sandbox.resources.disk),
                ..Resources::default()
            },
            network_block_all: sandbox.network_block_all,
            mounts,
        })
    }

    /// Launches the sandbox's process tree; the caller holds the lock and has recorded the
    /// transitional state. Records `started` (and watches it) or `error` with the reason.
    /// A failure that left processes behind is cleaned up with `cleanup`.
    async fn launch(&self, sandbox: &Sandbox) -> Result<Sandbox, LifecycleError> {
        let id = sandbox.id;
        let runtime = &self.inner.runtime;
        let started = match self.spec(sandbox) {
            Ok(spec) => {
                match tokio::time::timeout(self.inner.config.start_timeout, runtime.start(&spec))
                    .await
                {
                    Ok(Ok(launched)) => Ok(launched),
                    Ok(Err(err)) => Err(error_chain(&err)),
                    Err(_) => Err(format!(
                        "sandbox did not start within {} seconds",
                        self.inner.config.start_timeout.as_secs()
                    )),
                }
            }
            Err(err) => Err(error_chain(&err)),
        };
        match started {
            Ok(launched) => {
                let launched = from_launched(launched);
                for volume in &sandbox.volumes {
                    if let Err(err) = self.inner.store.touch_volume(volume.volume_id).await {
                        warn!(volume = %volume.volume_id, error = %error_chain(&err), "failed to record volume use");
                    }
                }
                let sandbox = self
                    .set_state(
                        id,
                        SandboxState::Started,
                        DesiredState::Started,
                        None,
                        Some(launched),
                    )
                    .await?;
                self.watch(id, launched);
                info!(sandbox = %id, pid = launched.pid, "sandbox started");
                Ok(sandbox)
            }
            Err(reason) => {
                warn!(sandbox = %id, %reason, "sandbox failed to start");
                // Leave nothing running; keep the writable layer for a later start.
                if let Err(err) = runtime.stop(&id.to_string(), None, true).await {
                    warn!(sandbox = %id, error = %error_chain(&err), "cleanup after failed start failed");
                }
                self.set_state(
                    id,
                    SandboxState::Error,
                    DesiredState::Started,
                    Some(reason),
                    None,
                )
                .await
            }
        }
    }

    /// Inserts `sandbox` (state `creating`) and starts it. A runtime failure is not an error
    /// of this call: the sandbox is returned in state `error` with the reason, as Daytona does.
    /// Fails with [`StoreError::NameConflict`] when the name is taken.
    pub async fn create(&self, mut sandbox: Sandbox) -> Result<Sandbox, LifecycleError> {
        let this = self.clone();
        self.detached(async move {
            let _guard = this.lock(sandbox.id).await;
            sandbox.state = SandboxState::Creating;
            sandbox.desired_state = DesiredState::Started;
            this.inner.store.insert_sandbox(&sandbox).await?;
            info!(sandbox = %sandbox.id, name = %sandbox.name, "creating sandbox");
            this.launch(&sandbox).await
        })
        .await
    }

    /// Starts a stopped, archived or errored sandbox (no-op when started).
    pub async fn start(&self, id: Uuid) -> Result<Sandbox, LifecycleError> {
        let this = self.clone();
        self.detached(async move {
            let _guard = this.lock(id).await;
            let sandbox = this
                .inner
                .store
                .get_sandbox(id)
                .await?
                .ok_or(LifecycleError::NotFound(id))?;
            match lifecycle::plan(sandbox.state, Action::Start)? {
                Plan::Nothing => Ok(sandbox),
                Plan::Transition { through, .. } => {
                    let sandbox = this
                        .set_state(id, through, DesiredState::Started, None, None)
                        .await?;
                    this.launch(&sandbox).await
                }
            }
        })
        .await
    }

    /// Stops a started (or errored) sandbox, keeping its writable layer. A sandbox whose
    /// auto-delete interval is 0 (ephemeral) is destroyed right after; the returned record then
    /// has state `destroyed`.
    pub async fn stop(&self, id: Uuid, force: bool) -> Result<Sandbox, LifecycleError> {
        let this = self.clone();
        self.detached(async move {
            let guard = this.lock(id).await;
            let sandbox = this
                .inner
                .store
                .get_sandbox(id)
                .await?
                .ok_or(LifecycleError::NotFound(id))?;
            let stopped = match lifecycle::plan(sandbox.state, Action::Stop)? {
                Plan::Nothing => return Ok(sandbox),
                Plan::Transition { through, target } => {
                    this.set_state(id, through, DesiredState::Stopped, None, sandbox.launched)
                        .await?;
                    let launched = sandbox.launched.map(to_launched);
                    if let Err(source) = this
                        .inner
                        .runtime
                        .stop(&id.to_string(), launched, force)
                        .await
                    {
                        let reason = error_chain(&source);
                        this.set_state(
                            id,
                            SandboxState::Error,
                            DesiredState::Stopped,
                            Some(reason),
                            sandbox.launched,
                        )
                        .await?;
                        return Err(LifecycleError::Runtime {
                            action: "stop",
                            id,
                            source,
                        });
                    }
                    info!(sandbox = %id, force, "sandbox stopped");
                    this.set_state(id, target, DesiredState::Stopped, None, None)
                        .await?
                }
            };
            if stopped.auto_delete_interval == 0 {
                drop(guard);
                return this.destroy_locked(id).await;
            }
            Ok(stopped)
        })
        .await
    }

    /// Marks a stopped sandbox archived (Sandbar keeps its layer on local disk either way).
    pub async fn archive(&self, id: Uuid) -> Result<Sandbox, LifecycleError> {
        let this = self.clone();
        self.detached(async move {
            let _guard = this.lock(id).await;
            let sandbox = this
                .inner
                .store
                .get_sandbox(id)
                .await?
                .ok_or(LifecycleError::NotFound(id))?;
            match lifecycle::plan(sandbox.state, Action::Archive)? {
                Plan::Nothing => Ok(sandbox),
                Plan::Transition { target, .. } => {
                    this.set_state(id, target, DesiredState::Archived, None, None)
                        .await
                }
            }
        })
        .await
    }

    /// Destroys a sandbox in any state: stops it, removes everything it owns on the host and
    /// deletes its row. Returns the last record with state `destroyed`.
    pub async fn destroy(&self, id: Uuid) -> Result<Sandbox, LifecycleError> {
        let this = self.clone();
        self.detached(async move { this.destroy_locked(id).await })
            .await
    }

    async fn destroy_locked(&self, id: Uuid) -> Result<Sandbox, LifecycleError> {
        let _guard = self.lock(id).await;
        let sandbox = self
            .inner
            .store
            .get_sandbox(id)
            .await?
            .ok_or(LifecycleError::NotFound(id))?;
        let Plan::Transition { through, target } = lifecycle::plan(sandbox.state, Action::Destroy)?
        else {
            return Ok(sandbox);
        };
        self.set_state(id, through, DesiredState::Destroyed, None, sandbox.launched)
            .await?;
        if let Err(source) = self
            .inner
            .runtime
            .destroy(&id.to_string(), sandbox.launched.map(to_launched))
            .await
        {
            let reason = error_chain(&source);
            self.set_state(
                id,
                SandboxState::Error,
                DesiredState::Destroyed,
                Some(reason),
                sandbox.launched,
            )
            .await?;
            return Err(LifecycleError::Runtime {
                action: "destroy",
                id,
                source,
            });
        }
        self.inner.store.delete_sandbox(id).await?;
        self.forget_lock(id);
        info!(sandbox = %id, "sandbox destroyed");
        let mut gone = sandbox;
        gone.state = target;
        gone.desired_state = DesiredState::Destroyed;
        gone.launched = None;
        gone.updated_at = sandbar_core::time::now();
        Ok(gone)
    }

    /// Watches a started sandbox; when its process tree ends while still recorded as started
    /// with this `launched`, records `error` with the reason.
    fn watch(&self, id: Uuid, launched: LaunchedProcess) {
        let exit = self
            .inner
            .runtime
            .wait_exit(&id.to_string(), to_launched(launched));
        let this = self.clone();
        tokio::spawn(async move {
            let info = match exit {
                Ok(exit) => tokio::select! {
                    info = exit => info,
                    () = this.inner.shutdown.cancelled() => return,
                },
                Err(err) => {
                    warn!(sandbox = %id, error = %error_chain(&err), "cannot watch sandbox; treating it as exited");
                    ExitInfo { oom_killed: false }
                }
            };
            if let Err(err) = this.on_exit(id, launched, info).await {
                warn!(sandbox = %id, error = %error_chain(&err), "failed to record sandbox exit");
            }
        });
    }

    async fn on_exit(
        &self,
        id: Uuid,
        launched: LaunchedProcess,
        info: ExitInfo,
    ) -> Result<(), LifecycleError> {
        let _guard = self.lock(id).await;
        let Some(sandbox) = self.inner.store.get_sandbox(id).await? else {
            return Ok(());
        };
        if sandbox.state != SandboxState::Started || sandbox.launched != Some(launched) {
            // Stopped, destroyed or restarted on purpose meanwhile.
            return Ok(());
        }
        let reason = if info.oom_killed {
            reason::OOM
        } else {
            reason::INIT_EXITED
        };
        warn!(sandbox = %id, %reason, "sandbox ended unexpectedly");
        if let Err(err) = self.inner.runtime.stop(&id.to_string(), None, true).await {
            warn!(sandbox = %id, error = %error_chain(&err), "cleanup after exit failed");
        }
        self.set_state(
            id,
            SandboxState::Error,
            DesiredState::Started,
            Some(reason.to_owned()),
            None,
        )
        .await?;
        Ok(())
    }

    /// Settles the store and the host after a restart or a crash: re-adopts running sandboxes,
    /// marks dead ones `error`, finishes or undoes interrupted operations, and destroys host
    /// state that no row owns. Run before serving requests.
    pub async fn recover(&self) -> Result<(), LifecycleError> {
        let runtime = self.inner.runtime.clone();
        let sandboxes = self.inner.store.all_sandboxes().await?;
        let known: HashSet<String> = sandboxes.iter().map(|s| s.id.to_string()).collect();
        for sandbox in sandboxes {
            let id = sandbox.id;
            let key = id.to_string();
            let _guard = self.lock(id).await;
            let launched = sandbox.launched.map(to_launched);
            match sandbox.state {
                SandboxState::Started => match sandbox.launched {
                    Some(process) if runtime.is_alive(to_launched(process)) => {
                        info!(sandbox = %id, pid = process.pid, "re-adopted running sandbox");
                        self.watch(id, process);
                    }
                    _ => {
                        warn!(sandbox = %id, "sandbox was not running after restart");
                        cleanup(runtime.stop(&key, launched, true).await, id, "stop");
                        let reason = Some(reason::NOT_RUNNING_AFTER_RESTART.to_owned());
                        self.set_state(
                            id,
                            SandboxState::Error,
                            sandbox.desired_state,
                            reason,
                            None,
                        )
                        .await?;
                    }
                },
                SandboxState::Creating => {
                    warn!(sandbox = %id, "cleaning up interrupted create");
                    cleanup(runtime.destroy(&key, launched).await, id, "destroy");
                    let reason = Some(reason::CREATE_INTERRUPTED.to_owned());
                    self.set_state(id, SandboxState::Error, DesiredState::Started, reason, None)
                        .await?;
                }
                SandboxState::Starting => {
                    warn!(sandbox = %id, "cleaning up interrupted start");
                    cleanup(runtime.stop(&key, launched, true).await, id, "stop");
                    let reason = Some(reason::START_INTERRUPTED.to_owned());
                    self.set_state(id, SandboxState::Error, DesiredState::Started, reason, None)
                        .await?;
                }
                SandboxState::Stopping => {
                    warn!(sandbox = %id, "finishing interrupted stop");
                    match runtime.stop(&key, launched, true).await {
                        Ok(()) => {
                            self.set_state(
                                id,
                                SandboxState::Stopped,
                                DesiredState::Stopped,
                                None,
                                None,
                            )
                            .await?;
                        }
                        Err(err) => {
                            let reason =
                                format!("{}: {}", reason::STOP_INTERRUPTED, error_chain(&err));
                            self.set_state(
                                id,
                                SandboxState::Error,
                                DesiredState::Stopped,
                                Some(reason),
                                None,
                            )
                            .await?;
                        }
                    }
                }
                SandboxState::Destroying => {
                    warn!(sandbox = %id, "finishing interrupted destroy");
                    match runtime.destroy(&key, launched).await {
                        Ok(()) => {
                            self.inner.store.delete_sandbox(id).await?;
                        }
                        Err(err) => {
                            let reason = error_chain(&err);
                            self.set_state(
                                id,
                                SandboxState::Error,
                                DesiredState::Destroyed,
                                Some(reason),
                                None,
                            )
                            .await?;
                        }
                    }
                }
                SandboxState::Destroyed => {
                    cleanup(runtime.destroy(&key, None).await, id, "destroy");
                    self.inner.store.delete_sandbox(id).await?;
                }
                _ => {}
            }
        }
        for orphan in runtime.list_host_sandboxes() {
            if !known.contains(&orphan) {
                warn!(sandbox = %orphan, "destroying host state that no sandbox owns");
                if let Err(err) = runtime.destroy(&orphan, None).await {
                    warn!(sandbox = %orphan, error = %error_chain(&err), "orphan cleanup failed");
                }
            }
        }
        Ok(())
    }
}

fn cleanup(result: Result<(), RuntimeError>, id: Uuid, action: &str) {
    if let Err(err) = result {
        warn!(sandbox = %id, action, error = %error_chain(&err), "cleanup failed");
    }
}

fn create_dir(path: &Path) -> Result<(), LifecycleError> {
    std::fs::create_dir_all(path).map_err(|source| LifecycleError::VolumeDir {
        path: path.to_owned(),
        source,
    })
}
