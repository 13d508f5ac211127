//! A WRITE's data moved from its socket into its file with `splice(2)`
//! (issue 16; smbd calls it "recvfile"): socket to a pipe, pipe to the file
//! at the offset, so the data is copied once (into the page cache) instead
//! of twice (into a user-space buffer, then into the page cache).
//!
//! The socket is the connection's (non-blocking); its bytes are waited for
//! with `poll` until a deadline, on the blocking thread the WRITE runs on.
//! Where the socket or the file system cannot splice (`EINVAL`), the bytes
//! are read into a buffer and written instead. Whatever stops the move
//! part-way reports how many bytes it took off the socket: the caller's
//! frame is then cut short, and its connection must close.

use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::time::Instant;

use super::sys;
use super::FsError;

/// The pipe's size asked for: up to this much is moved per pair of calls.
const PIPE_SIZE: usize = 1 << 20;
/// The buffer of the copying fallback.
const COPY_CHUNK: usize = 256 * 1024;

/// What a move did: bytes spliced, and bytes copied through a buffer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Moved {
    pub spliced: u64,
    pub copied: u64,
}

/// A move that stopped: how many bytes it had taken off the socket (0: the
/// socket still holds them all), and why.
#[derive(Debug)]
pub struct Stopped {
    pub taken: usize,
    pub error: FsError,
}

/// Moves `len` bytes from `sock` into `file` at `offset`. `may_change` is
/// asked before each write into the file ([`super::fence`]); `deadline`
/// bounds the wait for the socket's bytes.
pub(crate) fn socket_to_file(
    sock: BorrowedFd<'_>,
    file: BorrowedFd<'_>,
    offset: u64,
    len: usize,
    deadline: Instant,
    may_change: &dyn Fn() -> Result<(), FsError>,
) -> Result<Moved, Stopped> {
    let mut m = Mover { sock, file, at: offset, len, taken: 0, deadline, moved: Moved::default() };
    match m.run(may_change) {
        Ok(()) => Ok(m.moved),
        Err(error) => Err(Stopped { taken: m.taken, error }),
    }
}

struct Mover<'a> {
    sock: BorrowedFd<'a>,
    file: BorrowedFd<'a>,
    /// Where the next byte goes in the file.
    at: u64,
    len: usize,
    /// Bytes taken off the socket so far.
    taken: usize,
    deadline: Instant,
    moved: Moved,
}

impl Mover<'_> {
    fn run(&mut self, may_change: &dyn Fn() -> Result<(), FsError>) -> Result<(), FsError> {
        let (rd, wr, cap) = sys::pipe(PIPE_SIZE).map_err(super::error::io_err)?;
        let mut in_pipe = 0usize;
        while self.taken < self.len || in_pipe > 0 {
            // Fill the pipe with what the socket has.
            if self.taken < self.len && in_pipe < cap {
                let want = (self.len - self.taken).min(cap - in_pipe);
                match sys::splice(self.sock, wr.as_fd(), None, want, true) {
                    Ok(0) => return Err(peer_gone()),
                    Ok(n) => {
                        self.taken += n;
                        in_pipe += n;
                        continue;
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        if in_pipe == 0 {
                            self.wait()?;
                            continue;
                        }
                    }
                    Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                        return self.copy(rd.as_fd(), in_pipe, may_change);
                    }
                    Err(e) => return Err(super::error::io_err(e)),
                }
            }
            // Empty the pipe into the file.
            may_change()?;
            let mut off = i64::try_from(self.at).map_err(|_| FsError::InvalidParameter)?;
            match sys::splice(rd.as_fd(), self.file, Some(&mut off), in_pipe, false) {
                Ok(0) => return Err(FsError::NoSpace),
                Ok(n) => {
                    in_pipe -= n;
                    self.at += n as u64;
                    self.moved.spliced += n as u64;
                }
                Err(e) if e.raw_os_error() == Some(libc::EINVAL) => return self.copy(rd.as_fd(), in_pipe, may_change),
                Err(e) => return Err(super::error::io_err(e)),
            }
        }
        Ok(())
    }

    /// The fallback: the `in_pipe` bytes left in the pipe, then the rest
    /// of the socket's, read into a buffer and written.
    fn copy(
        &mut self,
        pipe: BorrowedFd<'_>,
        mut in_pipe: usize,
        may_change: &dyn Fn() -> Result<(), FsError>,
    ) -> Result<(), FsError> {
        let mut buf = vec![0u8; COPY_CHUNK];
        while in_pipe > 0 || self.taken < self.len {
            let n = if in_pipe > 0 {
                let n = sys::read(pipe, &mut buf[..in_pipe.min(COPY_CHUNK)]).map_err(super::error::io_err)?;
                in_pipe -= n;
                n
            } else {
                let want = (self.len - self.taken).min(COPY_CHUNK);
                match sys::read(self.sock, &mut buf[..want]) {
                    Ok(0) => return Err(peer_gone()),
                    Ok(n) => {
                        self.taken += n;
                        n
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        self.wait()?;
                        continue;
                    }
                    Err(e) => return Err(super::error::io_err(e)),
                }
            };
            may_change()?;
            let at = i64::try_from(self.at).map_err(|_| FsError::InvalidParameter)?;
            let mut done = 0;
            while done < n {
                match nix::sys::uio::pwrite(self.file, &buf[done..n], at + done as i64) {
                    Ok(0) => return Err(FsError::NoSpace),
                    Ok(k) => done += k,
                    Err(nix::errno::Errno::EINTR) => {}
                    Err(e) => return Err(e.into()),
                }
            }
            self.at += n as u64;
            self.moved.copied += n as u64;
        }
        Ok(())
    }

    /// Waits for the socket to have bytes, until the deadline.
    fn wait(&self) -> Result<(), FsError> {
        loop {
            let left = self.deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(FsError::Io(io::Error::new(io::ErrorKind::TimedOut, "the WRITE's data did not come")));
            }
            if sys::wait_ready(self.sock, left.as_millis().clamp(1, 1000) as i32) {
                return Ok(());
            }
        }
    }
}

fn peer_gone() -> FsError {
    FsError::Io(io::Error::new(io::ErrorKind::UnexpectedEof, "the client went away in the middle of a WRITE's data"))
}
