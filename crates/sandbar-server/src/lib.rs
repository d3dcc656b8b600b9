//! Sandbar's HTTP server: the Daytona-compatible API (`/api/...`), the toolbox reverse proxy
//! (`/toolbox/{sandboxId}/...` → the sandbox agent's unix socket) and the lifecycle manager
//! that drives a [`SandboxRuntime`].
//!
//! Owns: routing, authentication, the error envelope, the mapping between wire types and
//! domain records, lifecycle orchestration (per-sandbox serialization, exit watching, recovery
//! after a restart) and graceful shutdown. Must not know how a runtime isolates sandboxes:
//! it only calls the [`SandboxRuntime`] trait.
//!
//! Entry points: [`serve`] (binds, recovers, serves until SIGTERM/SIGINT) for the binary, and
//! [`AppState::open`] + [`app`] for in-process tests.

use std::future::{Future, IntoFuture};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use sandbar_core::DEFAULT_SNAPSHOT;
use sandbar_runtime::SandboxRuntime;
use sandbar_store::{Store, StoreError};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower::ServiceBuilder;
use tracing::{info, warn};

mod activity;
mod auth;
mod controllers;
mod error;
mod extract;
mod lifecycle;
mod metrics;
mod middleware;
mod policy;
mod preview;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
#[cfg(test)]
mod tests;

pub use auth::AuthOrg;
pub use error::ApiError;
pub use lifecycle::{reason, Lifecycle, LifecycleError};

use activity::Activity;

/// Environment variable naming an API key to register at start.
pub const API_KEY_ENV: &str = "SANDBAR_API_KEY";

/// How to run the server.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Address to listen on, e.g. `0.0.0.0:3000`.
    pub listen: SocketAddr,
    /// Directory of the database and of volume directories (`<data_dir>/volumes/<id>`).
    pub data_dir: PathBuf,
    /// Base URL clients reach this server at, without trailing slash (e.g.
    /// `http://sandbar.example:3000`). `toolboxProxyUrl` is `{public_url}/toolbox`.
    /// Default: `http://localhost:<port>` (or the listen IP when it is not a wildcard).
    pub public_url: Option<String>,
    /// API key to register for the default organization (from [`API_KEY_ENV`]). When `None`
    /// and the organization has no key yet, one is generated and printed once to stdout.
    pub api_key: Option<String>,
    /// Domain of port preview URLs (`{port}-{sandboxId}.{domain}`), with a port when it is not
    /// the scheme's default. Default: `localhost:<listen port>` (`*.localhost` resolves to
    /// loopback without any DNS set-up). The scheme is the one of `public_url`.
    pub preview_domain: Option<String>,
    /// Snapshot used when a create request names none; must exist in the runtime.
    pub default_snapshot: String,
    /// Other snapshots the runtime provides, registered at start so that create requests may
    /// name them: `(name, image it was made from)`.
    pub snapshots: Vec<(String, Option<String>)>,
    /// Longest wait for a sandbox to start.
    pub start_timeout: Duration,
    /// After SIGTERM/SIGINT: how long in-flight requests may still run.
    pub shutdown_grace: Duration,
    /// Divides every lifecycle interval (auto-stop/archive/delete); **tests only** (from
    /// `SANDBAR_TIME_SCALE`; 1 in production).
    pub time_scale: f64,
    /// At SIGTERM/SIGINT, stop every started sandbox (default: leave them running).
    pub stop_sandboxes_on_exit: bool,
    /// Serve `/metrics` without authentication (default: a key of the default organization).
    pub metrics_public: bool,
}

impl ServerConfig {
    /// Defaults, with `api_key` taken from `SANDBAR_API_KEY` when set.
    pub fn new(listen: SocketAddr, data_dir: PathBuf) -> Self {
        Self {
            listen,
            data_dir,
            public_url: None,
            preview_domain: None,
            api_key: std::env::var(API_KEY_ENV)
                .ok()
                .filter(|key| !key.is_empty()),
            default_snapshot: DEFAULT_SNAPSHOT.to_owned(),
            snapshots: Vec::new(),
            start_timeout: Duration::from_secs(120),
            shutdown_grace: Duration::from_secs(30),
            time_scale: policy::time_scale_from_env(),
            stop_sandboxes_on_exit: false,
            metrics_public: false,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("failed to bind {addr}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("failed to serve HTTP")]
    Serve(#[source] std::io::Error),
    #[error("failed to open the state store")]
    Store(#[from] StoreError),
    #[error("failed to recover sandboxes")]
    Recover(#[source] LifecycleError),
}

/// URLs the API hands out.
#[derive(Debug, Clone)]
struct Urls {
    /// `{public_url}/toolbox`, no trailing slash.
    toolbox: String,
    public: String,
    /// Where preview URLs point.
    preview: preview::PreviewDomain,
}

/// Shared state of every handler; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<StateInner>,
}

struct StateInner {
    store: Store,
    lifecycle: Lifecycle,
    activity: Activity,
    dav: Arc<sandbar_dav::DavService>,
    previews: preview::SignedPreviews,
    urls: Urls,
    default_snapshot: String,
    shutdown: CancellationToken,
    /// Wakes the lifecycle scheduler (an interval changed).
    scheduler_wake: tokio::sync::Notify,
    metrics_public: bool,
}

impl AppState {
    /// Opens the store, makes sure the default organization, its key and the default snapshot
    /// exist, and recovers sandboxes left by a previous run. `local_addr` is the address the
    /// listener is bound to (its port is used for default URLs).
    pub async fn open(
        config: &ServerConfig,
        runtime: Arc<dyn SandboxRuntime>,
        local_addr: SocketAddr,
    ) -> Result<Self, ServerError> {
        let store = Store::open(&config.data_dir).await?;
        let org = store.ensure_default_org().await?;
        match &config.api_key {
            Some(key) => {
                store.register_key(org.id, "SANDBAR_API_KEY", key).await?;
            }
            None => {
                if store
                    .list_keys(org.id)
                    .await?
                    .iter()
                    .all(|key| key.revoked_at.is_some())
                {
                    let (_, plaintext) = store.create_key(org.id, "admin").await?;
                    println!("admin API key: {plaintext}");
                }
            }
        }
        store
            .ensure_snapshot(&config.default_snapshot, None)
            .await?;

        let public = config
            .public_url
            .clone()
            .unwrap_or_else(|| default_public_url(local_addr));
        let public = public.trim_end_matches('/').to_owned();
        let preview = preview::PreviewDomain {
            scheme: public
                .split_once("://")
                .map_or("http", |(scheme, _)| scheme)
                .to_owned(),
            domain: config
                .preview_domain
                .clone()
                .filter(|d| !d.is_empty())
                .unwrap_or_else(|| format!("localhost:{}", local_addr.port())),
        };
        let urls = Urls {
            toolbox: format!("{public}/toolbox"),
            public,
            preview,
        };
        let lifecycle = Lifecycle::new(
            store.clone(),
            runtime,
            lifecycle::LifecycleConfig {
                volumes_dir: config.data_dir.join("volumes"),
                start_timeout: config.start_timeout,
            },
            Arc::new(metrics::Metrics::new()),
        );
        mount_volumes(&store, &lifecycle).await?;
        lifecycle.recover().await.map_err(ServerError::Recover)?;
        Ok(Self {
            inner: Arc::new(StateInner {
                store,
                lifecycle,
                activity: Activity::default(),
                dav: Arc::new(sandbar_dav::DavService::new(
                    sandbar_runtime::volume::VOLUME_OWNER,
                )),
                previews: preview::SignedPreviews::default(),
                urls,
                default_snapshot: config.default_snapshot.clone(),
                shutdown: CancellationToken::new(),
                scheduler_wake: tokio::sync::Notify::new(),
                metrics_public: config.metrics_public,
            }),
        })
    }

    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    pub fn lifecycle(&self) -> &Lifecycle {
        &self.inner.lifecycle
    }

    fn dav(&self) -> &sandbar_dav::DavService {
        &self.inner.dav
    }

    fn activity(&self) -> &Activity {
        &self.inner.activity
    }

    fn urls(&self) -> &Urls {
        &self.inner.urls
    }

    fn preview_domain(&self) -> &preview::PreviewDomain {
        &self.inner.urls.preview
    }

    fn previews(&self) -> &preview::SignedPreviews {
        &self.inner.previews
    }

    /// Wakes the lifecycle scheduler to recompute deadlines (after an interval change).
    fn scheduler_wake(&self) -> &tokio::sync::Notify {
        &self.inner.scheduler_wake
    }

    fn shutdown_token(&self) -> &CancellationToken {
        &self.inner.shutdown
    }

    /// Starts the background tasks: activity flushing and the lifecycle scheduler
    /// (auto-stop/archive/delete), with intervals divided by `time_scale`.
    pub fn spawn_background(&self, time_scale: f64) {
        let state = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(5));
            loop {
                tokio::select! {
                    _ = tick.tick() => state.activity().flush(state.store()).await,
                    () = state.inner.shutdown.cancelled() => return,
                }
            }
        });
        policy::spawn(self.clone(), time_scale);
    }

    /// Stops background tasks and exit watchers (sandboxes keep running) and writes pending
    /// activity.
    pub async fn shutdown(&self) {
        self.inner.shutdown.cancel();
        self.inner.lifecycle.shutdown();
        self.inner.activity.flush(&self.inner.store).await;
        self.inner.lifecycle.volumes().release_all().await;
    }
}

/// Makes every volume's files available (mounts them) before sandboxes are recovered. A
/// volume that cannot be mounted is logged and stays unavailable; the server still starts.
async fn mount_volumes(store: &Store, lifecycle: &Lifecycle) -> Result<(), ServerError> {
    for volume in store.list_all_volumes().await? {
        let id = volume.id.to_string();
        if let Err(err) = lifecycle.volumes().ensure_mounted(&id).await {
            warn!(volume = %id, error = %lifecycle::error_chain(&err), "failed to mount volume");
        }
    }
    Ok(())
}

fn default_public_url(addr: SocketAddr) -> String {
    let host = match addr.ip() {
        ip if ip.is_unspecified() || ip.is_loopback() => "localhost".to_owned(),
        IpAddr::V4(ip) => ip.to_string(),
        IpAddr::V6(ip) => format!("[{ip}]"),
    };
    format!("http://{host}:{}", addr.port())
}

/// The whole HTTP application: request ids and logs, error envelopes, slash normalization,
/// then the routes.
pub fn app(state: AppState) -> Router {
    let routes = controllers::router(state.clone()).with_state(state.clone());
    let service = ServiceBuilder::new()
        .layer(axum::middleware::from_fn(middleware::trace_request))
        .layer(axum::middleware::from_fn(error::envelope))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            preview::by_host,
        ))
        .map_request(middleware::normalize_path)
        .service(routes);
    Router::new().fallback_service(service)
}

/// Serves until SIGTERM or SIGINT. See [`serve_with_shutdown`].
pub async fn serve(
    config: ServerConfig,
    runtime: Arc<dyn SandboxRuntime>,
) -> Result<(), ServerError> {
    serve_with_shutdown(config, runtime, shutdown_signal()).await
}

/// Binds `config.listen` and serves on it; see [`serve_on`].
pub async fn serve_with_shutdown(
    config: ServerConfig,
    runtime: Arc<dyn SandboxRuntime>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    let listener = TcpListener::bind(config.listen)
        .await
        .map_err(|source| ServerError::Bind {
            addr: config.listen,
            source,
        })?;
    serve_on(listener, config, runtime, shutdown).await
}

/// Recovers sandboxes, serves on `listener` until `shutdown` resolves, then stops accepting
/// connections and lets in-flight requests finish (at most `shutdown_grace`). Sandboxes keep
/// running; the next start re-adopts them. `config.listen` is ignored.
pub async fn serve_on(
    listener: TcpListener,
    config: ServerConfig,
    runtime: Arc<dyn SandboxRuntime>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    let local_addr = listener.local_addr().map_err(ServerError::Serve)?;
    let state = AppState::open(&config, runtime, local_addr).await?;
    state.spawn_background(config.time_scale);
    info!(addr = %local_addr, toolbox = %state.urls().toolbox, "sandbar listening");

    let stopping = CancellationToken::new();
    let signalled = stopping.clone();
    tokio::spawn(async move {
        shutdown.await;
        signalled.cancel();
    });
    let graceful = stopping.clone();
    // Small responses (exec results, JSON) must not wait for Nagle's algorithm.
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp: &mut tokio::net::TcpStream| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "could not set TCP_NODELAY");
        }
    });
    let server = axum::serve(listener, app(state.clone()).into_make_service())
        .with_graceful_shutdown(async move { graceful.cancelled().await })
        .into_future();
    tokio::pin!(server);
    let result = tokio::select! {
        result = &mut server => result,
        () = async {
            stopping.cancelled().await;
            tokio::time::sleep(config.shutdown_grace).await;
        } => {
            warn!("in-flight requests did not finish within the shutdown grace period");
            Ok(())
        }
    };
    if config.stop_sandboxes_on_exit {
        info!("shutting down; stopping every started sandbox");
        state
            .lifecycle()
            .stop_all(lifecycle::reason::SERVER_SHUTDOWN)
            .await;
    } else {
        info!("shutting down; sandboxes keep running");
    }
    state.shutdown().await;
    state.store().close().await;
    result.map_err(ServerError::Serve)
}

/// Resolves on SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let term = signal(SignalKind::terminate());
    let int = signal(SignalKind::interrupt());
    match (term, int) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => info!("SIGTERM received"),
                _ = int.recv() => info!("SIGINT received"),
            }
        }
        _ => {
            warn!("cannot install signal handlers; waiting for ctrl-c");
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// Listen address used when none is configured.
pub const DEFAULT_LISTEN: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 3000);
