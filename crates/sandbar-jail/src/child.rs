//! PID 1 of the new sandbox, between fork and exec: root filesystem, hostname, loopback,
//! then the switch into the user namespace, privilege drop and exec of the agent.

use std::convert::Infallible;
use std::ffi::CString;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};

use nix::sched::CloneFlags;
use nix::unistd::{Gid, Uid};

use crate::config::JailConfig;
use crate::{capabilities, nix_io, rootfs, seccomp, sys, JailError};

/// Descriptor number of the agent's listening socket (`sandbar_wire::agent::LISTEN_FD`).
pub const LISTEN_FD: RawFd = 3;
/// Descriptor number at which the agent finds the slirp4netns keep-alive pipe (if any).
pub const KEEP_ALIVE_FD: RawFd = 4;

pub fn setup_and_exec(
    config: &JailConfig,
    userns: &OwnedFd,
    listener: &OwnedFd,
    keep_alive: Option<RawFd>,
    netns_ready: Option<OwnedFd>,
) -> Result<Infallible, JailError> {
    // The agent binary is opened now, from the host's view, and exec'd by descriptor later.
    // Kept at a high number so passing descriptors 3 and 4 to the agent cannot clobber it.
    let opened = std::fs::File::open(&config.agent_exe)
        .map_err(|e| JailError::sys("open the agent executable", e))?;
    let agent = nix::fcntl::fcntl(
        opened.as_raw_fd(),
        nix::fcntl::FcntlArg::F_DUPFD_CLOEXEC(100),
    )
    .map_err(|e| JailError::sys("keep the agent executable open", nix_io(e)))?;
    drop(opened);

    // The agent's stdio must not keep the helper's pipes to the server open.
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&config.log_path)
        .map_err(|e| JailError::sys("open the agent log", e))?;
    let null = std::fs::File::open("/dev/null").map_err(|e| JailError::sys("open /dev/null", e))?;
    for (from, to) in [
        (null.as_raw_fd(), 0),
        (log.as_raw_fd(), 1),
        (log.as_raw_fd(), 2),
    ] {
        nix::unistd::dup2(from, to)
            .map_err(|e| JailError::sys("redirect the agent's stdio", nix_io(e)))?;
    }
    drop((log, null));

    nix::sched::unshare(
        CloneFlags::CLONE_NEWNS
            | CloneFlags::CLONE_NEWNET
            | CloneFlags::CLONE_NEWIPC
            | CloneFlags::CLONE_NEWUTS
            | CloneFlags::CLONE_NEWCGROUP,
    )
    .map_err(|e| JailError::sys("unshare the sandbox namespaces", nix_io(e)))?;
    // The network namespace exists: the helper starts slirp4netns while we build the root.
    if let Some(ready) = netns_ready {
        let _ = nix::unistd::write(&ready, b"1");
    }
    rootfs::build(config, userns.as_fd())?;

    nix::unistd::sethostname(&config.hostname)
        .map_err(|e| JailError::sys("set the hostname", nix_io(e)))?;
    sys::loopback_up().map_err(|e| JailError::sys("bring up loopback", e))?;
    // The agent should survive a memory-limit OOM: it is exempt where the host grants
    // CAP_SYS_RESOURCE, and the commands it runs get a high score either way.
    let _ = std::fs::write("/proc/self/oom_score_adj", "-1000");

    // From here on we are the sandbox's root: uid 0 inside, `uid_base` on the host, with
    // capabilities only over the sandbox's own user namespace. The mount, network, pid, ipc
    // and uts namespaces stay owned by the host's user namespace, so they cannot be changed.
    nix::sched::setns(userns, CloneFlags::CLONE_NEWUSER)
        .map_err(|e| JailError::sys("join the user namespace", nix_io(e)))?;
    nix::unistd::setgroups(&[Gid::from_raw(0)])
        .map_err(|e| JailError::sys("set groups", nix_io(e)))?;
    nix::unistd::setresgid(Gid::from_raw(0), Gid::from_raw(0), Gid::from_raw(0))
        .map_err(|e| JailError::sys("set gid", nix_io(e)))?;
    nix::unistd::setresuid(Uid::from_raw(0), Uid::from_raw(0), Uid::from_raw(0))
        .map_err(|e| JailError::sys("set uid", nix_io(e)))?;

    capabilities::restrict()?;
    nix::sys::prctl::set_no_new_privs()
        .map_err(|e| JailError::sys("set no_new_privs", nix_io(e)))?;

    // Descriptors the agent inherits: 3 = listening socket, 4 = network keep-alive.
    move_fd(listener.as_raw_fd(), LISTEN_FD)?;
    if let Some(fd) = keep_alive {
        move_fd(fd, KEEP_ALIVE_FD)?;
    }
    sys::cloexec_from(if keep_alive.is_some() { 5 } else { 4 })
        .map_err(|e| JailError::sys("close inherited descriptors", e))?;

    let argv: Vec<CString> = config
        .agent_args
        .iter()
        .map(|a| CString::new(a.as_str()))
        .collect::<Result<_, _>>()
        .map_err(|_| JailError::Child("agent argument contains NUL".into()))?;
    let envp: Vec<CString> = config
        .agent_env
        .iter()
        .map(|(k, v)| CString::new(format!("{k}={v}")))
        .collect::<Result<_, _>>()
        .map_err(|_| JailError::Child("agent environment contains NUL".into()))?;

    // Last step before exec: every syscall from here on is filtered.
    seccomp::install()?;
    let err = nix::unistd::fexecve(agent, &argv, &envp).unwrap_err();
    Err(JailError::sys("exec the agent", nix_io(err)))
}

/// dup2 `from` onto `to` without close-on-exec.
fn move_fd(from: RawFd, to: RawFd) -> Result<(), JailError> {
    if from == to {
        let flags = nix::fcntl::fcntl(from, nix::fcntl::FcntlArg::F_GETFD)
            .map_err(|e| JailError::sys("read descriptor flags", nix_io(e)))?;
        let flags = nix::fcntl::FdFlag::from_bits_truncate(flags) - nix::fcntl::FdFlag::FD_CLOEXEC;
        nix::fcntl::fcntl(from, nix::fcntl::FcntlArg::F_SETFD(flags))
            .map_err(|e| JailError::sys("clear close-on-exec", nix_io(e)))?;
        return Ok(());
    }
    nix::unistd::dup2(from, to)
        .map_err(|e| JailError::sys("pass a descriptor to the agent", nix_io(e)))?;
    Ok(())
}
