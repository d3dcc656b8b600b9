//! sandbar-agent: the in-sandbox agent.
//!
//! Runs as PID 1 inside each sandbox (started as `sandbar agent`, see
//! [`sandbar_wire::agent`]) and serves the Daytona toolbox API (`shared/daytona-api.md` §5) as
//! HTTP/1.1 on the inherited unix socket. As init it also reaps every child and forwards
//! SIGTERM/SIGINT to all processes of the sandbox.
//!
//! Owns: the toolbox endpoints (process, sessions, PTY, files, info, git), the child reaper,
//! user resolution from the sandbox's `/etc/passwd`. Must not depend on any Sandbar crate other
//! than `sandbar-wire`, and stays small: one current-thread runtime, no glibc NSS calls, no
//! `tokio::process` (see [`reaper`]).

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::DefaultBodyLimit;
use axum::routing::{any, get, post};
use axum::Router;
use sandbar_wire::agent::{AgentConfig, CONFIG_ENV, LISTEN_FD};
use tokio::net::UnixListener;

mod envelope;
mod files;
mod git;
mod launch;
mod pipe;
mod process;
mod reaper;
mod sys;
mod system;
mod tunnel;
mod user;

use reaper::Reaper;
use user::User;

/// Environment variable with a `tracing` filter for the agent's own log (stderr); default
/// `warn`.
pub const LOG_ENV: &str = "SANDBAR_AGENT_LOG";

/// How long, after forwarding SIGTERM/SIGINT, the agent (as init) waits for processes to exit
/// before it exits itself (which makes the kernel kill whatever is left in the namespace).
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("environment variable {CONFIG_ENV} is missing")]
    MissingConfig,
    #[error("environment variable {CONFIG_ENV} is not a valid agent configuration")]
    BadConfig(#[source] serde_json::Error),
    #[error("file descriptor {LISTEN_FD} is not a usable listening socket")]
    ListenFd(#[source] io::Error),
    #[error("cannot build the async runtime")]
    Runtime(#[source] io::Error),
    #[error("cannot start the child reaper")]
    Reaper(#[source] reaper::ReaperError),
    #[error("cannot listen for termination signals")]
    Signals(#[source] io::Error),
    #[error("HTTP server failed")]
    Serve(#[source] io::Error),
}

/// Shared state of all handlers.
#[derive(Debug)]
pub(crate) struct Agent {
    /// The default user of commands and owner of created files.
    user: User,
    /// Where `passwd` and `group` live (the sandbox's `/etc`).
    etc: PathBuf,
    /// `/bin/bash` if present, else `/bin/sh`.
    shell: PathBuf,
    /// Whether the agent runs as root and must switch identity for commands and chown files.
    is_root: bool,
    /// Environment of every command: defaults, the sandbox env, then `POST /env` updates.
    env: Mutex<BTreeMap<String, String>>,
    reaper: Arc<Reaper>,
    sessions: process::session::Sessions,
    ptys: process::pty::Ptys,
    cpu: system::CpuSampler,
}

/// Entry point of `sandbar agent`: reads [`CONFIG_ENV`], adopts fd [`LISTEN_FD`], and serves
/// on a current-thread runtime until SIGTERM/SIGINT (as init) or forever.
pub fn run_from_env() -> ExitCode {
    init_logging();
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            let mut message = err.to_string();
            let mut source = std::error::Error::source(&err);
            while let Some(cause) = source {
                message.push_str(": ");
                message.push_str(&cause.to_string());
                source = cause.source();
            }
            eprintln!("sandbar agent: {message}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging() {
    let filter = std::env::var(LOG_ENV).unwrap_or_else(|_| "warn".to_owned());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_writer(io::stderr)
        .try_init();
}

fn run() -> Result<(), AgentError> {
    let raw = std::env::var(CONFIG_ENV).map_err(|_| AgentError::MissingConfig)?;
    let config: AgentConfig = serde_json::from_str(&raw).map_err(AgentError::BadConfig)?;
    // Still single-threaded here, and commands get an explicit environment anyway.
    std::env::remove_var(CONFIG_ENV);
    std::env::remove_var(LOG_ENV);
    let listener = sys::adopt_listener(LISTEN_FD).map_err(AgentError::ListenFd)?;
    sys::cloexec_above(LISTEN_FD);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        // File I/O goes through the blocking pool; keep it small and short-lived.
        .max_blocking_threads(4)
        .thread_keep_alive(Duration::from_secs(5))
        .build()
        .map_err(AgentError::Runtime)?;
    runtime.block_on(async move {
        let listener = UnixListener::from_std(listener).map_err(AgentError::ListenFd)?;
        let init = config.init;
        serve_inner(listener, config, init).await
    })
}

/// Serves the toolbox API on `listener`. With `init`, the agent also acts as PID 1 (reaps
/// orphans, forwards SIGTERM/SIGINT to every process, then returns). Without it, serves until
/// the future is dropped. Errors are logged.
pub async fn serve(listener: UnixListener, config: AgentConfig, init: bool) {
    if let Err(err) = serve_inner(listener, config, init).await {
        tracing::error!(error = %err, "agent stopped");
    }
}

async fn serve_inner(
    listener: UnixListener,
    config: AgentConfig,
    init: bool,
) -> Result<(), AgentError> {
    if init {
        // Why: other users in the sandbox must not ptrace the agent or read its memory.
        if let Err(err) = nix::sys::prctl::set_dumpable(false) {
            tracing::warn!(%err, "cannot clear the dumpable flag");
        }
    }
    let reaper = Reaper::start(init).map_err(AgentError::Reaper)?;
    let agent = Arc::new(Agent::new(&config, Path::new("/etc"), reaper.clone()));
    let app = router(agent.clone());
    let server = axum::serve(listener, app);
    if !init {
        return server.await.map_err(AgentError::Serve);
    }
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).map_err(AgentError::Signals)?;
    let mut int = signal(SignalKind::interrupt()).map_err(AgentError::Signals)?;
    let forwarded = tokio::select! {
        result = server => return result.map_err(AgentError::Serve),
        _ = term.recv() => nix::sys::signal::Signal::SIGTERM,
        _ = int.recv() => nix::sys::signal::Signal::SIGINT,
    };
    // kill(-1) reaches every process the agent may signal except itself.
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(-1), forwarded);
    let _ = tokio::time::timeout(SHUTDOWN_GRACE, reaper.all_exited()).await;
    Ok(())
}

impl Agent {
    fn new(config: &AgentConfig, etc: &Path, reaper: Arc<Reaper>) -> Agent {
        let name = if config.user.is_empty() {
            "root"
        } else {
            config.user.as_str()
        };
        let euid = nix::unistd::geteuid().as_raw();
        let user = user::resolve(etc, name).unwrap_or_else(|err| {
            tracing::warn!(error = %err, "falling back to the agent's own identity");
            let gid = nix::unistd::getegid().as_raw();
            User {
                name: name.to_owned(),
                uid: euid,
                gid,
                home: PathBuf::from("/"),
                groups: vec![gid],
            }
        });
        let shell = if Path::new("/bin/bash").exists() {
            PathBuf::from("/bin/bash")
        } else {
            PathBuf::from("/bin/sh")
        };
        let mut env = BTreeMap::new();
        env.insert(
            "PATH".to_owned(),
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".to_owned(),
        );
        env.insert("HOME".to_owned(), user.home.display().to_string());
        env.insert("USER".to_owned(), user.name.clone());
        env.insert("LOGNAME".to_owned(), user.name.clone());
        env.insert("SHELL".to_owned(), shell.display().to_string());
        env.insert("TERM".to_owned(), "xterm-256color".to_owned());
        env.extend(config.env.clone());
        Agent {
            user,
            etc: etc.to_owned(),
            shell,
            is_root: euid == 0,
            env: Mutex::new(env),
            reaper,
            sessions: process::session::Sessions::default(),
            ptys: process::pty::Ptys::default(),
            cpu: system::CpuSampler::default(),
        }
    }
}

fn router(agent: Arc<Agent>) -> Router {
    let uploads = Router::new()
        .route("/files/bulk-upload", post(files::upload::bulk_upload))
        .route("/files/upload", post(files::upload::upload_legacy))
        .route("/files/upload-v2", post(files::upload::upload_v2))
        .layer(DefaultBodyLimit::disable());
    Router::new()
        .route("/process/execute", post(process::execute::execute))
        .route("/process/code-run", post(process::code_run::code_run))
        .merge(process::session::routes())
        .merge(process::pty::routes())
        .route("/files", get(files::list).delete(files::delete))
        .route("/files/info", get(files::info))
        .route("/files/folder", post(files::create_folder))
        .route("/files/move", post(files::move_file))
        .route("/files/permissions", post(files::set_permissions))
        .route("/files/find", get(files::search::find))
        .route("/files/search", get(files::search::search))
        .route("/files/replace", post(files::search::replace))
        .route("/files/bulk-download", post(files::download::bulk_download))
        .route("/files/download", get(files::download::download))
        .merge(uploads)
        .route("/user-home-dir", get(system::home_dir))
        .route("/work-dir", get(system::work_dir))
        .route("/version", get(system::version))
        .route("/env", post(system::update_env).get(system::get_env))
        .route("/port", get(system::ports))
        .route("/port/{port}/in-use", get(system::port_in_use))
        .route("/system/metrics", get(system::metrics))
        .merge(git::routes())
        .route("/sandbar/tunnel/{port}", get(tunnel::open))
        .route("/lsp/{*rest}", any(system::not_offered))
        .route("/computeruse/{*rest}", any(system::not_offered))
        .fallback(envelope::no_route)
        .layer(axum::middleware::from_fn(envelope::render))
        .with_state(agent)
}
