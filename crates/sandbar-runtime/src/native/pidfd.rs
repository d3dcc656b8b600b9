//! Waiting for a process to exit without being its parent: a pidfd becomes readable when the
//! process ends. For the init of a pid namespace that is after every other process of the
//! namespace is gone, which is what stop and destroy wait for.

#![expect(
    unsafe_code,
    reason = "registering an owned descriptor with tokio's reactor"
)]

use std::os::fd::OwnedFd;

use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

/// A registered pidfd.
pub struct PidFd(AsyncFd<OwnedFd>);

impl PidFd {
    pub fn open(pid: i32) -> std::io::Result<Self> {
        let fd = sandbar_jail::sys::pidfd_open(pid)?;
        // SAFETY: the AsyncFd owns `fd` for its whole life, and an OwnedFd always reports
        // the same descriptor, which is what registration requires.
        let afd = unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE) }
            .map_err(|e| e.into_parts().1)?;
        Ok(PidFd(afd))
    }

    /// Resolves when the process has exited.
    pub async fn exited(&self) {
        let _ = self.0.readable().await;
    }
}
