//! Outbound network access through slirp4netns, a user-space TCP/IP stack: the sandbox gets
//! a tap device with 10.0.2.100/24, a gateway and a DNS forwarder, and nothing on the host
//! side changes. `--disable-host-loopback` keeps the host's loopback services out of reach.

use std::io::Read;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;
use std::process::{Command, Stdio};

use nix::unistd::Pid;

/// A starting slirp4netns.
pub struct Slirp {
    child: std::process::Child,
    ready: std::fs::File,
}

impl Slirp {
    /// Starts slirp4netns for the network namespace of `pid`. It exits by itself when
    /// `exit_fd`'s write end (held by the sandbox's PID 1) closes. It is moved into `cgroups`
    /// (the host's), so it neither counts against nor is frozen or killed with the sandbox.
    pub fn spawn(
        binary: &Path,
        pid: Pid,
        exit_fd: OwnedFd,
        cgroups: &[std::path::PathBuf],
    ) -> std::io::Result<Self> {
        let (ready_r, ready_w) =
            nix::unistd::pipe().map_err(|e| std::io::Error::from_raw_os_error(e as i32))?;
        let exit_raw = exit_fd.as_raw_fd();
        let ready_raw = ready_w.as_raw_fd();
        clear_cloexec(&exit_fd)?;
        clear_cloexec(&ready_w)?;
        let child = Command::new(binary)
            // --enable-sandbox: slirp4netns pivots into an empty root and drops every capability
            // but CAP_NET_BIND_SERVICE once the tap device is set up; --enable-seccomp narrows
            // its syscalls. It parses the sandbox's packets, so it gets as little as possible.
            .args([
                "--configure",
                "--mtu=65520",
                "--disable-host-loopback",
                "--enable-sandbox",
                "--enable-seccomp",
            ])
            .arg(format!("--exit-fd={exit_raw}"))
            .arg(format!("--ready-fd={ready_raw}"))
            // By path: given a pid, slirp4netns would also join the pid's user namespace, which
            // does not own the sandbox's network namespace (the host's does).
            .arg("--netns-type=path")
            .arg(format!("/proc/{}/ns/net", pid.as_raw()))
            .arg("tap0")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        drop(ready_w);
        drop(exit_fd);
        let slirp = Slirp {
            child,
            ready: std::fs::File::from(ready_r),
        };
        for dir in cgroups {
            std::fs::write(dir.join("cgroup.procs"), slirp.child.id().to_string())?;
        }
        Ok(slirp)
    }

    /// Waits until the tap device is configured in the sandbox.
    pub fn wait_ready(mut self) -> std::io::Result<()> {
        let mut buf = [0u8; 1];
        if self.ready.read(&mut buf)? == 0 {
            let status = self.child.wait()?;
            return Err(std::io::Error::other(format!(
                "slirp4netns exited before it was ready ({status})"
            )));
        }
        // Not waited for: it outlives this helper and is reaped by the server (a subreaper).
        Ok(())
    }
}

fn clear_cloexec(fd: &OwnedFd) -> std::io::Result<()> {
    nix::fcntl::fcntl(
        fd.as_raw_fd(),
        nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::empty()),
    )
    .map(|_| ())
    .map_err(|e| std::io::Error::from_raw_os_error(e as i32))
}
