//! The agent's only raw system calls: adopting the inherited listening socket, the child-side
//! set-up between fork and exec, and PTY window sizes.
#![expect(
    unsafe_code,
    reason = "adopting an inherited fd, pre_exec hooks and ioctls have no safe wrapper"
)]

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixListener;
use std::os::unix::process::CommandExt;
use std::process::Command;

/// Takes ownership of the inherited listening socket `fd`, marks it close-on-exec (commands must
/// not inherit it) and non-blocking (for tokio).
pub fn adopt_listener(fd: i32) -> io::Result<UnixListener> {
    // SAFETY: F_GETFD only queries the descriptor table; an invalid fd yields EBADF.
    if unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the fd is open (checked above) and, by the start-up contract, nothing else in
    // this process owns it; ownership moves into the OwnedFd exactly once.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    // Why: without FD_CLOEXEC every command the agent starts would hold the toolbox socket.
    nix::fcntl::fcntl(
        owned.as_raw_fd(),
        nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
    )?;
    let listener = UnixListener::from(owned);
    listener.set_nonblocking(true)?;
    Ok(listener)
}

/// Marks every inherited descriptor above `fd` close-on-exec (the network keep-alive pipe the
/// jail passes as fd 4, anything else leaked in): commands must only get their own stdio.
pub fn cloexec_above(fd: i32) {
    // SAFETY: close_range with CLOSE_RANGE_CLOEXEC only sets flags on descriptors.
    let _ = unsafe {
        libc::syscall(
            libc::SYS_close_range,
            fd + 1,
            u32::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        )
    };
}

/// Identity a command switches to before exec.
#[derive(Debug, Clone)]
pub struct Credentials {
    pub uid: u32,
    pub gid: u32,
    pub groups: Vec<u32>,
}

/// Registers the child-side set-up on `cmd`, run between fork and exec:
/// 1. reset `oom_score_adj` to 0 (the agent runs at -1000 so a memory-limit OOM kills the
///    command, not the agent); errors are ignored (not permitted on a host, absent /proc);
/// 2. with `controlling_tty`, start a new session and make stdin (a PTY slave) its terminal;
/// 3. with `fd3`, install that descriptor as the child's fd 3 (a session's command input);
/// 4. with `credentials`, set supplementary groups, gid, then uid.
///
/// Only async-signal-safe calls happen in the child: everything is prepared here.
pub fn prepare_child(
    cmd: &mut Command,
    credentials: Option<Credentials>,
    controlling_tty: bool,
    fd3: Option<OwnedFd>,
) {
    let hook = move || -> io::Result<()> {
        // SAFETY: open/write/close on a static NUL-terminated path with a static buffer are
        // async-signal-safe and touch no memory shared with the parent.
        unsafe {
            let fd = libc::open(
                c"/proc/self/oom_score_adj".as_ptr(),
                libc::O_WRONLY | libc::O_CLOEXEC,
            );
            if fd >= 0 {
                let _ = libc::write(fd, b"0".as_ptr().cast(), 1);
                libc::close(fd);
            }
        }
        if controlling_tty {
            // SAFETY: setsid has no memory effects; the child is not a group leader because
            // no process group was requested for PTY commands.
            if unsafe { libc::setsid() } < 0 {
                return Err(io::Error::last_os_error());
            }
            // SAFETY: TIOCSCTTY on fd 0 (the PTY slave installed by std before this hook)
            // takes an integer argument and writes no memory.
            if unsafe { libc::ioctl(0, libc::TIOCSCTTY, 0) } < 0 {
                return Err(io::Error::last_os_error());
            }
        }
        if let Some(fd) = &fd3 {
            let raw = fd.as_raw_fd();
            if raw == 3 {
                // SAFETY: F_SETFD with an integer flag; dup2 onto itself would keep CLOEXEC.
                if unsafe { libc::fcntl(3, libc::F_SETFD, 0) } < 0 {
                    return Err(io::Error::last_os_error());
                }
            // SAFETY: dup2 of a descriptor the closure owns onto fd 3; the copy has no
            // FD_CLOEXEC, so the exec'd program inherits it.
            } else if unsafe { libc::dup2(raw, 3) } < 0 {
                return Err(io::Error::last_os_error());
            }
        }
        if let Some(creds) = &credentials {
            // SAFETY: the pointer and length describe the Vec owned by this closure, which
            // outlives the call; setgroups only reads it.
            if unsafe { libc::setgroups(creds.groups.len(), creds.groups.as_ptr()) } < 0 {
                return Err(io::Error::last_os_error());
            }
            // SAFETY: setgid/setuid take plain integers; gid first, while still privileged.
            if unsafe { libc::setgid(creds.gid) } < 0 {
                return Err(io::Error::last_os_error());
            }
            // SAFETY: as above.
            if unsafe { libc::setuid(creds.uid) } < 0 {
                return Err(io::Error::last_os_error());
            }
        }
        Ok(())
    };
    // SAFETY: the hook only makes async-signal-safe system calls and does not allocate; all
    // data it reads (the credentials) was prepared before fork and is owned by the closure.
    unsafe {
        cmd.pre_exec(hook);
    }
}

/// Sets the window size of the terminal behind `fd` (a PTY master).
pub fn set_window_size(fd: &impl AsRawFd, cols: u16, rows: u16) -> io::Result<()> {
    let size = libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads a `winsize` from the pointer, which points to a live local.
    if unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCSWINSZ, &size) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Registers an owned descriptor with the runtime's reactor.
pub fn register_fd(
    fd: OwnedFd,
    interest: tokio::io::Interest,
) -> io::Result<tokio::io::unix::AsyncFd<OwnedFd>> {
    // SAFETY: the OwnedFd is open, owned by the AsyncFd for its whole lifetime, and its
    // as_raw_fd always returns the same descriptor.
    unsafe { tokio::io::unix::AsyncFd::register_with_interest(fd, interest) }.map_err(Into::into)
}
