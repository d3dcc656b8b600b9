//! The lifecycle manager: runs create/start/stop/destroy against the runtime, one operation at
//! a time per sandbox, records every state change in the store before answering, watches
//! running sandboxes for unexpected exits, and settles what a crash left behind.
//!
//! Every operation runs in its own task, so a client that disconnects mid-request cannot
//! cancel a half-done start or stop.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex as StdMutex};
use std::time::Duration;

use sandbar_core::lifecycle::{self, Action, Plan};
use sandbar_core::{DesiredState, LaunchedProcess, Sandbox, SandboxResources, SandboxState};
use sandbar_runtime::volume::DirVolumes;
use sandbar_runtime::{
    ExitInfo, Launched, Mount, Resources, RuntimeError, SandboxRuntime, SandboxSpec, VolumeStorage,
};
use sandbar_store::{SandboxChange, Store, StoreError};
use tokio::sync::{broadcast, Mutex, OwnedMutexGuard};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};
use uuid::Uuid;

/// Reasons recorded in `errorReason` (errors) and `stateReason` (every state change nobody
/// asked for). See `docs/lifecycle.md`.
pub mod reason {
    pub const OOM: &str = "out of memory (OOM kill)";
    pub const INIT_EXITED: &str = "sandbox init (agent) exited unexpectedly";
    pub const NOT_RUNNING_AFTER_RESTART: &str = "sandbox was not running after server restart";
    pub const CREATE_INTERRUPTED: &str = "sandbox creation was interrupted by a server restart";
    pub const START_INTERRUPTED: &str = "sandbox start was interrupted by a server restart";
    pub const STOP_INTERRUPTED: &str = "sandbox stop was interrupted by a server restart";
    pub const ARCHIVE_INTERRUPTED: &str =
        "archive was interrupted by a server restart; the writable layer was kept";
    pub const ARCHIVE_FINISHED_AFTER_RESTART: &str = "archive completed after a server restart";
    pub const SERVER_SHUTDOWN: &str = "stopped by server shutdown (--stop-sandboxes-on-exit)";

    /// Auto-stop after `minutes` without activity.
    pub fn idle(minutes: i64) -> String {
        format!("auto-stop: no activity for {minutes} minutes")
    }

    /// Auto-archive after `minutes` stopped.
    pub fn archived(minutes: i64) -> String {
        format!("auto-archive: stopped for {minutes} minutes")
    }

    /// Auto-delete after `minutes` stopped (0: ephemeral, deleted on stop).
    pub fn deleted(minutes: i64) -> String {
        if minutes == 0 {
            "auto-delete: ephemeral sandbox stopped".to_owned()
        } else {
            format!("auto-delete: stopped for {minutes} minutes")
        }
    }

    /// A user's archive request.
    pub const ARCHIVE_FAILED: &str = "archive failed; the writable layer was kept";
}

/// One recorded state change, published to event listeners (the scheduler, Socket.IO).
#[derive(Debug, Clone)]
pub struct StateChange {
    pub sandbox: Sandbox,
    pub old_state: SandboxState,
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
    #[error("sandbox operation task failed")]
    Task(#[source] tokio::task::JoinError),
    #[error("cannot resize sandbox {id}: {reason}")]
    ResizeRejected { id: Uuid, reason: String },
}

impl From<StoreError> for LifecycleError {
    fn from(source: StoreError) -> Self {
        Self::Store(source)
    }
}

/// Settings of the lifecycle manager.
#[derive(Debug, Clone)]
pub struct LifecycleConfig {
    /// Host directory holding one directory per volume (`<volumes_dir>/<volume id>`), used
    /// when the runtime has no volume storage of its own.
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
    volumes: Arc<dyn VolumeStorage>,
    config: LifecycleConfig,
    locks: StdMutex<HashMap<Uuid, Arc<Mutex<()>>>>,
    /// Cancelled at shutdown: watchers stop watching, sandboxes keep running.
    shutdown: CancellationToken,
    /// Every recorded state change (and `destroyed` for deleted rows).
    events: broadcast::Sender<StateChange>,
    metrics: Arc<crate::metrics::Metrics>,
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
    pub fn new(
        store: Store,
        runtime: Arc<dyn SandboxRuntime>,
        config: LifecycleConfig,
        metrics: Arc<crate::metrics::Metrics>,
    ) -> Self {
        let volumes = runtime
            .volume_storage()
            .unwrap_or_else(|| Arc::new(DirVolumes::new(config.volumes_dir.clone())));
        Self {
            inner: Arc::new(Inner {
                store,
                runtime,
                volumes,
                config,
                locks: StdMutex::new(HashMap::new()),
                shutdown: CancellationToken::new(),
                events: broadcast::channel(1024).0,
                metrics,
            }),
        }
    }

    /// Subscribes to state changes (lagging receivers lose the oldest).
    pub fn subscribe(&self) -> broadcast::Receiver<StateChange> {
        self.inner.events.subscribe()
    }

    pub fn metrics(&self) -> &Arc<crate::metrics::Metrics> {
        &self.inner.metrics
    }

    fn publish(&self, sandbox: Sandbox, old_state: SandboxState) {
        if sandbox.state != old_state {
            // No receiver is fine.
            let _ = self.inner.events.send(StateChange { sandbox, old_state });
        }
    }

    pub fn runtime(&self) -> &Arc<dyn SandboxRuntime> {
        &self.inner.runtime
    }

    /// Stops watching sandboxes (they keep running; the next server re-adopts them).
    pub fn shutdown(&self) {
        self.inner.shutdown.cancel();
    }

    /// Where volumes are stored.
    pub fn volumes(&self) -> &Arc<dyn VolumeStorage> {
        &self.inner.volumes
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

    /// Records a state change. An error's reason is also its `stateReason`.
    async fn set_state(
        &self,
        id: Uuid,
        state: SandboxState,
        desired_state: DesiredState,
        error_reason: Option<String>,
        launched: Option<LaunchedProcess>,
    ) -> Result<Sandbox, LifecycleError> {
        let reason = error_reason.clone();
        self.record(id, state, desired_state, error_reason, reason, launched)
            .await
    }

    /// Records a state change with the reason it happened (`None`: a user asked).
    async fn record(
        &self,
        id: Uuid,
        state: SandboxState,
        desired_state: DesiredState,
        error_reason: Option<String>,
        reason: Option<String>,
        launched: Option<LaunchedProcess>,
    ) -> Result<Sandbox, LifecycleError> {
        let old_state = self
            .inner
            .store
            .get_sandbox(id)
            .await?
            .map(|s| s.state)
            .unwrap_or(SandboxState::Unknown);
        if state == SandboxState::Error {
            let why = error_reason.as_deref().unwrap_or("unknown");
            self.inner.metrics.failure(old_state, why);
        }
        let sandbox = self
            .inner
            .store
            .update_sandbox(
                id,
                SandboxChange::State {
                    state,
                    desired_state,
                    error_reason,
                    reason,
                    launched,
                },
            )
            .await?
            .ok_or(LifecycleError::NotFound(id))?;
        self.publish(sandbox.clone(), old_state);
        Ok(sandbox)
    }

    fn spec(&self, sandbox: &Sandbox) -> Result<SandboxSpec, LifecycleError> {
        let mut mounts = Vec::with_capacity(sandbox.volumes.len());
        for volume in &sandbox.volumes {
            mounts.push(Mount {
                host_path: self.inner.volumes.root(&volume.volume_id.to_string()),
                subpath: volume.subpath.clone(),
                target: volume.mount_path.clone(),
                read_only: false,
            });
        }
        Ok(SandboxSpec {
            id: sandbox.id.to_string(),
            hostname: sandbox.hostname(),
            snapshot: sandbox.snapshot.clone(),
            user: sandbox.user.clone(),
            env: sandbox.env.clone(),
            resources: runtime_resources(&sandbox.resources),
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
            let timer = this.inner.metrics.timer(crate::metrics::Operation::Create);
            sandbox.state = SandboxState::Creating;
            sandbox.desired_state = DesiredState::Started;
            this.inner.store.insert_sandbox(&sandbox).await?;
            info!(sandbox = %sandbox.id, name = %sandbox.name, "creating sandbox");
            this.publish(sandbox.clone(), SandboxState::Unknown);
            let created = this.launch(&sandbox).await;
            timer.finish(matches!(&created, Ok(s) if s.state == SandboxState::Started));
            created
        })
        .await
    }

    /// Starts a stopped, archived or errored sandbox (no-op when started). An archived
    /// sandbox passes through `restoring` while the runtime unpacks its layer.
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
                    let timer = this.inner.metrics.timer(crate::metrics::Operation::Start);
                    let sandbox = this
                        .set_state(id, through, DesiredState::Started, None, None)
                        .await?;
                    // A start is activity: an old `lastActivityAt` must not stop it at once.
                    this.inner
                        .store
                        .update_sandbox(id, SandboxChange::Activity(sandbar_core::time::now()))
                        .await?;
                    let started = this.launch(&sandbox).await;
                    timer.finish(matches!(&started, Ok(s) if s.state == SandboxState::Started));
                    started
                }
            }
        })
        .await
    }

    /// Stops a started (or errored) sandbox, keeping its writable layer. A sandbox whose
    /// auto-delete interval is 0 (ephemeral) is destroyed right after; the returned record then
    /// has state `destroyed`.
    pub async fn stop(&self, id: Uuid, force: bool) -> Result<Sandbox, LifecycleError> {
        self.stop_because(id, force, None).await
    }

    /// [`Lifecycle::stop`] that nobody asked for: `reason` is recorded in `stateReason`.
    pub async fn stop_because(
        &self,
        id: Uuid,
        force: bool,
        reason: Option<String>,
    ) -> Result<Sandbox, LifecycleError> {
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
                    let timer = this.inner.metrics.timer(crate::metrics::Operation::Stop);
                    this.record(
                        id,
                        through,
                        DesiredState::Stopped,
                        None,
                        reason.clone(),
                        sandbox.launched,
                    )
                    .await?;
                    let launched = sandbox.launched.map(to_launched);
                    if let Err(source) = this
                        .inner
                        .runtime
                        .stop(&id.to_string(), launched, force)
                        .await
                    {
                        timer.finish(false);
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
                    timer.finish(true);
                    info!(sandbox = %id, force, reason = reason.as_deref().unwrap_or("requested"), "sandbox stopped");
                    this.record(id, target, DesiredState::Stopped, None, reason, None)
                        .await?
                }
            };
            if stopped.auto_delete_interval == 0 {
                drop(guard);
                return this
                    .destroy_locked(id, Some(reason::deleted(0)))
                    .await;
            }
            Ok(stopped)
        })
        .await
    }

    /// Archives a stopped sandbox: its writable layer is packed into one compressed file and
    /// the layer's disk space freed. Crash-safe: the state says `archiving` while the archive
    /// is written; `archived` is recorded once it is complete and durable, and only then is
    /// the layer deleted (see [`Lifecycle::recover`]).
    pub async fn archive(&self, id: Uuid) -> Result<Sandbox, LifecycleError> {
        self.archive_because(id, None).await
    }

    /// [`Lifecycle::archive`] that nobody asked for: `reason` goes to `stateReason`.
    pub async fn archive_because(
        &self,
        id: Uuid,
        reason: Option<String>,
    ) -> Result<Sandbox, LifecycleError> {
        let this = self.clone();
        self.detached(async move {
            let _guard = this.lock(id).await;
            let sandbox = this
                .inner
                .store
                .get_sandbox(id)
                .await?
                .ok_or(LifecycleError::NotFound(id))?;
            let Plan::Transition { through, target } =
                lifecycle::plan(sandbox.state, Action::Archive)?
            else {
                return Ok(sandbox);
            };
            let timer = this.inner.metrics.timer(crate::metrics::Operation::Archive);
            this.record(id, through, DesiredState::Archived, None, reason.clone(), None)
                .await?;
            let key = id.to_string();
            let runtime = &this.inner.runtime;
            let bytes = match runtime.archive(&key).await {
                Ok(bytes) => bytes,
                Err(source) => {
                    timer.finish(false);
                    let why = format!("{}: {}", reason::ARCHIVE_FAILED, error_chain(&source));
                    warn!(sandbox = %id, reason = %why, "archive failed");
                    this.inner.metrics.failure(SandboxState::Archiving, &why);
                    this.record(id, SandboxState::Stopped, DesiredState::Stopped, None, Some(why), None)
                        .await?;
                    return Err(LifecycleError::Runtime {
                        action: "archive",
                        id,
                        source,
                    });
                }
            };
            let archived = this
                .record(id, target, DesiredState::Archived, None, reason, None)
                .await?;
            if let Err(err) = runtime.drop_layer(&key).await {
                // The archive is complete and authoritative; the next recovery retries.
                warn!(sandbox = %id, error = %error_chain(&err), "failed to free the archived layer");
            }
            timer.finish(true);
            info!(sandbox = %id, bytes, "sandbox archived");
            Ok(archived)
        })
        .await
    }

    /// Gives a sandbox a new CPU, memory and disk allocation and records it. A started sandbox
    /// gets the new CPU and memory limits live (a memory limit below what it uses now is
    /// refused); a stopped, archived or errored one picks them up at its next start. The
    /// caller has checked the values; disk is only recorded (no backend enforces it live).
    pub async fn resize(
        &self,
        id: Uuid,
        resources: SandboxResources,
    ) -> Result<Sandbox, LifecycleError> {
        let this = self.clone();
        self.detached(async move {
            let _guard = this.lock(id).await;
            let sandbox = this
                .inner
                .store
                .get_sandbox(id)
                .await?
                .ok_or(LifecycleError::NotFound(id))?;
            let rejected = |reason: String| LifecycleError::ResizeRejected { id, reason };
            match sandbox.state {
                SandboxState::Started => {
                    let key = id.to_string();
                    let limits = runtime_resources(&resources);
                    let in_use = this.inner.runtime.usage(&key).memory_bytes;
                    if in_use > limits.memory_mib * 1024 * 1024 {
                        return Err(rejected(format!(
                            "it uses {} MiB of memory now, more than the new limit of {} GiB",
                            in_use.div_ceil(1024 * 1024),
                            resources.memory
                        )));
                    }
                    this.inner.runtime.resize(&key, limits).await.map_err(
                        |source| match source {
                            RuntimeError::Resize { reason, .. } => rejected(reason),
                            source => LifecycleError::Runtime {
                                action: "resize",
                                id,
                                source,
                            },
                        },
                    )?;
                }
                SandboxState::Stopped | SandboxState::Archived | SandboxState::Error => {}
                state => {
                    return Err(rejected(format!(
                        "it is {}; resize a started or stopped sandbox",
                        state.as_str()
                    )))
                }
            }
            let resized = this
                .inner
                .store
                .update_sandbox(
                    id,
                    SandboxChange::Resources {
                        cpu: resources.cpu,
                        memory: resources.memory,
                        disk: resources.disk,
                    },
                )
                .await?
                .ok_or(LifecycleError::NotFound(id))?;
            info!(
                sandbox = %id,
                cpu = resources.cpu,
                memory_gib = resources.memory,
                disk_gib = resources.disk,
                live = sandbox.state == SandboxState::Started,
                "sandbox resized"
            );
            Ok(resized)
        })
        .await
    }

    /// Destroys a sandbox in any state: stops it, removes everything it owns on the host and
    /// deletes its row. Returns the last record with state `destroyed`.
    pub async fn destroy(&self, id: Uuid) -> Result<Sandbox, LifecycleError> {
        let this = self.clone();
        self.detached(async move { this.destroy_locked(id, None).await })
            .await
    }

    /// [`Lifecycle::destroy`] that nobody asked for (auto-delete).
    pub async fn destroy_because(
        &self,
        id: Uuid,
        reason: String,
    ) -> Result<Sandbox, LifecycleError> {
        let this = self.clone();
        self.detached(async move { this.destroy_locked(id, Some(reason)).await })
            .await
    }

    async fn destroy_locked(
        &self,
        id: Uuid,
        reason: Option<String>,
    ) -> Result<Sandbox, LifecycleError> {
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
        self.record(
            id,
            through,
            DesiredState::Destroyed,
            None,
            reason.clone(),
            sandbox.launched,
        )
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
        info!(sandbox = %id, reason = reason.as_deref().unwrap_or("requested"), "sandbox destroyed");
        let mut gone = sandbox;
        gone.state = target;
        gone.desired_state = DesiredState::Destroyed;
        gone.launched = None;
        gone.state_reason = reason;
        gone.updated_at = sandbar_core::time::now();
        gone.state_changed_at = gone.updated_at;
        self.publish(gone.clone(), through);
        Ok(gone)
    }

    /// Stops every started sandbox (server shutdown with `--stop-sandboxes-on-exit`).
    pub async fn stop_all(&self, reason: &str) {
        let sandboxes = match self.inner.store.all_sandboxes().await {
            Ok(sandboxes) => sandboxes,
            Err(err) => {
                warn!(error = %error_chain(&err), "cannot list sandboxes to stop");
                return;
            }
        };
        let stops = sandboxes
            .into_iter()
            .filter(|s| s.state == SandboxState::Started)
            .map(|s| {
                let this = self.clone();
                let reason = reason.to_owned();
                async move {
                    if let Err(err) = this.stop_because(s.id, false, Some(reason)).await {
                        warn!(sandbox = %s.id, error = %error_chain(&err), "stop at shutdown failed");
                    }
                }
            });
        futures_util::future::join_all(stops).await;
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
                SandboxState::Archiving => {
                    cleanup(runtime.settle_archive(&key).await, id, "settle archive");
                    if runtime.is_archived(&key) {
                        // The archive is complete and durable: finish the job.
                        info!(sandbox = %id, "finishing interrupted archive");
                        let reason = Some(reason::ARCHIVE_FINISHED_AFTER_RESTART.to_owned());
                        self.record(
                            id,
                            SandboxState::Archived,
                            DesiredState::Archived,
                            None,
                            reason,
                            None,
                        )
                        .await?;
                        cleanup(runtime.drop_layer(&key).await, id, "free archived layer");
                    } else {
                        warn!(sandbox = %id, "undoing interrupted archive; the layer is intact");
                        let reason = Some(reason::ARCHIVE_INTERRUPTED.to_owned());
                        self.record(
                            id,
                            SandboxState::Stopped,
                            DesiredState::Stopped,
                            None,
                            reason,
                            None,
                        )
                        .await?;
                    }
                }
                SandboxState::Archived => {
                    cleanup(runtime.settle_archive(&key).await, id, "settle archive");
                    if runtime.is_archived(&key) {
                        // A crash between recording `archived` and freeing the layer.
                        cleanup(runtime.drop_layer(&key).await, id, "free archived layer");
                    }
                }
                SandboxState::Stopped | SandboxState::Error => {
                    cleanup(runtime.settle_archive(&key).await, id, "settle archive");
                }
                SandboxState::Starting | SandboxState::Restoring => {
                    // An interrupted restore keeps its complete archive: the next start
                    // restores again.
                    cleanup(runtime.settle_archive(&key).await, id, "settle archive");
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

/// The runtime's limits for a sandbox's allocation (`memory` and `disk` in GiB).
fn runtime_resources(resources: &SandboxResources) -> Resources {
    let clamp = |value: i64| u32::try_from(value.max(1)).unwrap_or(u32::MAX);
    Resources {
        cpu: clamp(resources.cpu),
        memory_mib: u64::from(clamp(resources.memory)) * 1024,
        disk_gib: clamp(resources.disk),
        ..Resources::default()
    }
}

fn cleanup(result: Result<(), RuntimeError>, id: Uuid, action: &str) {
    if let Err(err) = result {
        warn!(sandbox = %id, action, error = %error_chain(&err), "cleanup failed");
    }
}
