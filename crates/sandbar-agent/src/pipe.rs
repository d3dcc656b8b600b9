//! Output pipes of commands, read without blocking the runtime, and the capped output buffer.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};

use nix::errno::Errno;
use nix::fcntl::{fcntl, FcntlArg, OFlag};
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

/// The read end of a pipe, registered with the runtime.
#[derive(Debug)]
pub struct PipeReader {
    fd: AsyncFd<OwnedFd>,
}

/// Creates a pipe: the reader (non-blocking, for the agent) and the writer (blocking, for the
/// child). Both ends are close-on-exec; `std::process::Command` dups the writer onto the
/// child's stdio.
pub fn pipe() -> io::Result<(PipeReader, OwnedFd)> {
    let (read, write) = nix::unistd::pipe2(OFlag::O_CLOEXEC)?;
    Ok((PipeReader::new(read)?, write))
}

impl PipeReader {
    /// Wraps a readable fd (a pipe), switching it to non-blocking mode.
    pub fn new(fd: OwnedFd) -> io::Result<Self> {
        Self::register(fd, Interest::READABLE)
    }

    /// Wraps a fd that is also written to (a PTY master).
    pub fn new_duplex(fd: OwnedFd) -> io::Result<Self> {
        Self::register(fd, Interest::READABLE | Interest::WRITABLE)
    }

    fn register(fd: OwnedFd, interest: Interest) -> io::Result<Self> {
        let flags = OFlag::from_bits_truncate(fcntl(fd.as_raw_fd(), FcntlArg::F_GETFL)?);
        fcntl(fd.as_raw_fd(), FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK))?;
        Ok(PipeReader {
            fd: crate::sys::register_fd(fd, interest)?,
        })
    }

    /// Writes all of `data` (for a fd made with [`PipeReader::new_duplex`]).
    pub async fn write_all(&self, mut data: &[u8]) -> io::Result<()> {
        while !data.is_empty() {
            let mut guard = self.fd.writable().await?;
            match guard.try_io(|fd| nix::unistd::write(fd.get_ref(), data).map_err(io::Error::from))
            {
                Ok(Ok(n)) => data = &data[n..],
                Ok(Err(err)) if err.kind() == io::ErrorKind::Interrupted => {}
                Ok(Err(err)) => return Err(err),
                Err(_would_block) => {}
            }
        }
        Ok(())
    }

    /// Reads what is available, waiting for data. `Ok(0)` is end of file.
    pub async fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            let mut guard = self.fd.readable().await?;
            match guard.try_io(|fd| read_fd(fd.get_ref(), buf)) {
                Ok(result) => return result,
                Err(_would_block) => continue,
            }
        }
    }

    /// Reads what is in the pipe right now, never waiting: `Ok(None)` when nothing is there.
    /// Bypasses the runtime's readiness cache, so data written just before a child exited is
    /// seen even if its readiness event has not been processed yet.
    pub fn read_now(&self, buf: &mut [u8]) -> io::Result<Option<usize>> {
        match read_fd(self.fd.get_ref(), buf) {
            Ok(n) => Ok(Some(n)),
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => Ok(None),
            Err(err) => Err(err),
        }
    }

    /// Reads everything already buffered (at most about `limit` bytes), never waiting.
    pub fn drain_now(&self, limit: usize) -> Vec<u8> {
        let mut out = Vec::new();
        let mut buf = [0u8; 8192];
        while out.len() < limit {
            match self.read_now(&mut buf) {
                Ok(Some(0)) | Ok(None) | Err(_) => break,
                Ok(Some(n)) => out.extend_from_slice(&buf[..n]),
            }
        }
        out
    }

    pub fn as_owned_fd(&self) -> &OwnedFd {
        self.fd.get_ref()
    }
}

fn read_fd(fd: &impl AsRawFd, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        match nix::unistd::read(fd.as_raw_fd(), buf) {
            Ok(n) => return Ok(n),
            Err(Errno::EINTR) => continue,
            // A PTY master reports EIO once the slave side is closed: that is end of file.
            Err(Errno::EIO) => return Ok(0),
            Err(err) => return Err(err.into()),
        }
    }
}

/// Output kept up to `cap` bytes; beyond that the oldest bytes are dropped (the tail is what
/// matters for a failing command) and the result says how much was dropped.
#[derive(Debug)]
pub struct TailBuffer {
    data: Vec<u8>,
    cap: usize,
    dropped: u64,
}

impl TailBuffer {
    pub fn new(cap: usize) -> Self {
        TailBuffer {
            data: Vec::new(),
            cap,
            dropped: 0,
        }
    }

    pub fn push(&mut self, bytes: &[u8]) {
        self.data.extend_from_slice(bytes);
        // Trim in batches so the copy is amortised.
        if self.data.len() > self.cap + self.cap / 4 {
            let excess = self.data.len() - self.cap;
            self.data.drain(..excess);
            self.dropped += excess as u64;
        }
    }

    pub fn into_string(mut self) -> String {
        if self.data.len() > self.cap {
            let excess = self.data.len() - self.cap;
            self.data.drain(..excess);
            self.dropped += excess as u64;
        }
        let text = String::from_utf8_lossy(&self.data).into_owned();
        if self.dropped == 0 {
            text
        } else {
            format!(
                "[sandbar: output truncated, first {} bytes dropped]\n{text}",
                self.dropped
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_buffer_keeps_the_tail_and_says_so() {
        let mut buf = TailBuffer::new(10);
        for chunk in [b"0123456789".as_slice(), b"abcdef", b"XYZ"] {
            buf.push(chunk);
        }
        let text = buf.into_string();
        assert!(text.starts_with("[sandbar: output truncated, first 9 bytes dropped]\n"));
        assert!(text.ends_with("9abcdefXYZ"));
    }

    #[test]
    fn tail_buffer_untruncated_is_verbatim() {
        let mut buf = TailBuffer::new(100);
        buf.push(b"hello ");
        buf.push(b"world");
        assert_eq!(buf.into_string(), "hello world");
    }
}
