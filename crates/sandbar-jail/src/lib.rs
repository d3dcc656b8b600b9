//! The jail: turns a freshly exec'd, single-threaded `sandbar jail` helper into a sandbox.
//!
//! Owns every step that talks to the kernel to isolate a sandbox: the user namespace and its
//! uid range, the mount/pid/net/ipc/uts/cgroup namespaces, the overlay root filesystem over
//! idmapped read-only layers, pivot_root, /proc, a minimal /dev, capability bounding,
//! `no_new_privs` and the seccomp filter, and finally the exec of the agent as PID 1.
//! This is the only crate allowed to use `unsafe` (raw syscalls in [`sys`]).
//!
//! Must not depend on tokio, HTTP or any other Sandbar crate: it runs in a process that must
//! stay single-threaded until it execs, because it forks.
//!
//! Flow of [`run`] (the helper process `H`):
//! 1. bind the agent's listening socket on the host side (the sandbox never sees the path);
//! 2. move itself into the sandbox's cgroups (children inherit them);
//! 3. fork a holder `U` that unshares a user namespace, write its uid/gid maps, keep its
//!    namespace fd; the idmapped mounts and the sandbox itself use that namespace;
//! 4. unshare a pid namespace and fork `S`, PID 1 of the sandbox, which unshares the mount,
//!    network, ipc, uts and cgroup namespaces;
//! 5. `S` builds the root filesystem as real root (so overlayfs keeps trusted xattrs), pivots,
//!    then joins the user namespace, drops privileges, and execs the agent (see [`child`]);
//! 6. `H` waits for `S` to exec (a close-on-exec error pipe), optionally starts slirp4netns,
//!    prints a [`JailResult`] as JSON on stdout and exits.

#![expect(
    unsafe_code,
    reason = "raw syscalls for namespaces and the new mount API, each in sys.rs"
)]

mod capabilities;
mod child;
pub mod config;
mod network;
mod rootfs;
mod seccomp;
pub mod sys;

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixListener;

use nix::sched::CloneFlags;
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::waitpid;
use nix::unistd::{fork, pipe2, ForkResult, Pid};

pub use config::{BindMount, CgroupMount, JailConfig, JailResult, OverlayLayer};

#[derive(Debug, thiserror::Error)]
pub enum JailError {
    #[error("failed to read the jail configuration")]
    ReadConfig(#[source] std::io::Error),
    #[error("invalid jail configuration")]
    ParseConfig(#[source] serde_json::Error),
    #[error("failed to bind the agent socket {path}")]
    BindSocket {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("failed to join cgroup {path}")]
    JoinCgroup {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("failed to {step}")]
    Sys {
        step: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("sandbox setup failed: {0}")]
    Child(String),
    #[error("failed to start the user-space network")]
    Network(#[source] std::io::Error),
}

impl JailError {
    pub(crate) fn sys(step: &'static str, source: impl Into<std::io::Error>) -> Self {
        JailError::Sys {
            step,
            source: source.into(),
        }
    }
}

fn nix_io(e: nix::Error) -> std::io::Error {
    std::io::Error::from_raw_os_error(e as i32)
}

/// Entry point of `sandbar jail`: reads a [`JailConfig`] as JSON on stdin, starts the sandbox,
/// prints a [`JailResult`] as JSON on stdout. Must be called in a single-threaded process.
pub fn run_from_stdin() -> Result<JailResult, JailError> {
    let mut raw = Vec::new();
    std::io::stdin()
        .read_to_end(&mut raw)
        .map_err(JailError::ReadConfig)?;
    let config: JailConfig = serde_json::from_slice(&raw).map_err(JailError::ParseConfig)?;
    run(&config)
}

/// Starts the sandbox described by `config`. See the crate documentation for the steps.
pub fn run(config: &JailConfig) -> Result<JailResult, JailError> {
    // 1. The agent's socket, created on the host side before the sandbox exists.
    let _ = std::fs::remove_file(&config.socket_path);
    let listener = bind_socket(&config.socket_path).map_err(|source| JailError::BindSocket {
        path: config.socket_path.clone(),
        source,
    })?;
    let listener: OwnedFd = listener.into();

    // 2. Join the sandbox's cgroups: everything forked from here on is accounted there.
    let me = std::process::id().to_string();
    for dir in &config.cgroups {
        std::fs::write(dir.join("cgroup.procs"), &me).map_err(|source| JailError::JoinCgroup {
            path: dir.clone(),
            source,
        })?;
    }

    // 3. A user namespace with the sandbox's uid range.
    let userns = user_namespace(config.uid_base, config.id_count)?;

    // Keep-alive pipe for slirp4netns: it exits when the sandbox's PID 1 (holding the write
    // end) is gone.
    let netpipe = if config.network.slirp4netns.is_some() && !config.network.block_all {
        Some(
            pipe2(nix::fcntl::OFlag::O_CLOEXEC)
                .map_err(|e| JailError::sys("create a pipe", nix_io(e)))?,
        )
    } else {
        None
    };

    // 4. A pid namespace for the next child, which becomes its PID 1. The helper itself
    // stays in the host's other namespaces (slirp4netns must start in the host's network
    // namespace, and pivot_root must not move the helper's root): the child unshares those.
    nix::sched::unshare(CloneFlags::CLONE_NEWPID)
        .map_err(|e| JailError::sys("unshare the pid namespace", nix_io(e)))?;

    let (err_r, err_w) = pipe2(nix::fcntl::OFlag::O_CLOEXEC)
        .map_err(|e| JailError::sys("create a pipe", nix_io(e)))?;
    // Tells the helper the sandbox's network namespace exists, so slirp4netns starts while
    // the root filesystem is being built instead of after it.
    let netns_ready = match netpipe {
        Some(_) => Some(
            pipe2(nix::fcntl::OFlag::O_CLOEXEC)
                .map_err(|e| JailError::sys("create a pipe", nix_io(e)))?,
        ),
        None => None,
    };

    // SAFETY: this process is single-threaded (a freshly exec'd helper), so the child may run
    // arbitrary code after fork.
    match unsafe { fork() }.map_err(|e| JailError::sys("fork the sandbox init", nix_io(e)))? {
        ForkResult::Child => {
            drop(err_r);
            let keep_alive = netpipe.as_ref().map(|(_, w)| w.as_raw_fd());
            let ready = netns_ready.map(|(r, w)| {
                drop(r);
                w
            });
            let message = match child::setup_and_exec(config, &userns, &listener, keep_alive, ready)
            {
                Ok(never) => match never {},
                Err(e) => error_chain(&e),
            };
            let mut w = std::fs::File::from(err_w);
            let _ = w.write_all(message.as_bytes());
            drop(w);
            // SAFETY: _exit is async-signal-safe and skips destructors of the parent's state.
            unsafe { libc::_exit(1) }
        }
        ForkResult::Parent { child } => {
            drop(err_w);
            drop(userns);
            drop(listener);
            // Start slirp4netns as soon as the network namespace exists.
            let mut slirp = None;
            if let (Some((net_r, net_w)), Some((ready_r, ready_w))) = (netpipe, netns_ready) {
                drop(net_w);
                drop(ready_w);
                let mut byte = [0u8; 1];
                if nix::unistd::read(ready_r.as_raw_fd(), &mut byte) == Ok(1) {
                    let binary = config.network.slirp4netns.as_ref().expect("checked above");
                    match network::Slirp::spawn(binary, child, net_r, &config.host_cgroups) {
                        Ok(s) => slirp = Some(s),
                        Err(e) => {
                            let _ = kill(child, Signal::SIGKILL);
                            let _ = waitpid(child, None);
                            return Err(JailError::Network(e));
                        }
                    }
                }
            }
            let mut message = String::new();
            let _ = std::fs::File::from(err_r).read_to_string(&mut message);
            if !message.is_empty() {
                let _ = kill(child, Signal::SIGKILL);
                let _ = waitpid(child, None);
                return Err(JailError::Child(message));
            }
            let start_time = sys::process_start_time(child.as_raw())
                .map_err(|source| JailError::sys("read the sandbox init's start time", source))?;
            if let Some(slirp) = slirp {
                if let Err(e) = slirp.wait_ready() {
                    let _ = kill(child, Signal::SIGKILL);
                    return Err(JailError::Network(e));
                }
            }
            Ok(JailResult {
                pid: child.as_raw(),
                start_time,
            })
        }
    }
}

/// Binds a unix socket at `path`, through `/proc/self/fd/<dir>/<name>` when the path is
/// longer than `sun_path` allows.
fn bind_socket(path: &std::path::Path) -> std::io::Result<UnixListener> {
    if path.as_os_str().len() <= sys::MAX_SOCKET_PATH {
        return UnixListener::bind(path);
    }
    let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
        return Err(std::io::Error::from_raw_os_error(libc::ENAMETOOLONG));
    };
    let dir = std::fs::File::open(parent)?;
    let short = std::path::Path::new("/proc/self/fd")
        .join(dir.as_raw_fd().to_string())
        .join(name);
    UnixListener::bind(short)
}

/// Forks a holder process into a new user namespace, maps `id_count` ids from `uid_base`
/// onto 0.. inside, and returns a descriptor of that namespace. The holder exits at once:
/// the descriptor keeps the namespace alive.
fn user_namespace(uid_base: u32, id_count: u32) -> Result<OwnedFd, JailError> {
    let (ready_r, ready_w) = pipe2(nix::fcntl::OFlag::O_CLOEXEC)
        .map_err(|e| JailError::sys("create a pipe", nix_io(e)))?;
    let (go_r, go_w) = pipe2(nix::fcntl::OFlag::O_CLOEXEC)
        .map_err(|e| JailError::sys("create a pipe", nix_io(e)))?;
    // SAFETY: single-threaded process (see `run`).
    match unsafe { fork() }
        .map_err(|e| JailError::sys("fork the user namespace holder", nix_io(e)))?
    {
        ForkResult::Child => {
            drop(ready_r);
            drop(go_w);
            let ok = nix::sched::unshare(CloneFlags::CLONE_NEWUSER).is_ok();
            let _ = nix::unistd::write(&ready_w, if ok { b"1" } else { b"0" });
            let mut buf = [0u8; 1];
            let _ = nix::unistd::read(go_r.as_raw_fd(), &mut buf);
            // SAFETY: _exit is async-signal-safe.
            unsafe { libc::_exit(0) }
        }
        ForkResult::Parent { child } => {
            drop(ready_w);
            drop(go_r);
            let result = map_user_namespace(child, ready_r, uid_base, id_count);
            drop(go_w);
            let _ = waitpid(child, None);
            result
        }
    }
}

fn map_user_namespace(
    holder: Pid,
    ready: OwnedFd,
    uid_base: u32,
    id_count: u32,
) -> Result<OwnedFd, JailError> {
    let mut buf = [0u8; 1];
    let n = nix::unistd::read(ready.as_raw_fd(), &mut buf)
        .map_err(|e| JailError::sys("wait for the user namespace", nix_io(e)))?;
    if n != 1 || buf[0] != b'1' {
        return Err(JailError::sys(
            "create a user namespace",
            std::io::Error::other("unshare(CLONE_NEWUSER) failed in the holder process"),
        ));
    }
    let map = format!("0 {uid_base} {id_count}\n");
    let proc = format!("/proc/{}", holder.as_raw());
    std::fs::write(format!("{proc}/uid_map"), &map)
        .map_err(|e| JailError::sys("write the uid map", e))?;
    std::fs::write(format!("{proc}/gid_map"), &map)
        .map_err(|e| JailError::sys("write the gid map", e))?;
    let ns = std::fs::File::open(format!("{proc}/ns/user"))
        .map_err(|e| JailError::sys("open the user namespace", e))?;
    Ok(ns.into())
}

/// The error and its sources on one line (for the error pipe and the helper's stderr).
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        out.push_str(": ");
        out.push_str(&s.to_string());
        cur = s.source();
    }
    out
}
