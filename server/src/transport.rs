//! Moving a connection's bytes: the inbox that reads whole frames off the
//! socket within the memory budget, and the writer that sends replies in
//! order and counts what is queued.
//!
//! Bounds ([`crate::config::Limits`]): a request frame still unfinished
//! `frame_timeout_s` after its first bytes came closes the connection. The
//! inbox holds only what has arrived (plus a modest chunk to read into),
//! not what a frame header announces. Back-pressure: the writer takes every
//! reply off the channel at once and counts the queued bytes
//! ([`crate::limits::ReplyMeter`]); while they are over the limit, no new
//! request is read. A client that reads none of its replies for
//! `send_timeout_s` is disconnected.
//!
//! Point 4 ([`Reply::op`]): a reply that ends an operation names it; once
//! its last byte is written, the writer watches the socket's
//! `tcpi_bytes_acked` (`TCP_INFO`, read after each write and every
//! [`ACK_POLL`] while acknowledgements are awaited) and reports the
//! operation answered ([`Acked`]) when the client's TCP has acknowledged
//! that byte. A stream that is not a TCP socket reports it once written.
//!
//! File regions ([`FileRegion`]): a reply may end in a region of an open
//! file (a large READ answer on a session that neither signs nor encrypts,
//! [`crate::cmd::read`]). Its frame's bytes announce the whole length; the
//! writer sends the region after them with `sendfile(2)`, so the data goes
//! from the page cache to the socket without a copy through user space. A
//! file that has shrunk below what was announced closes the connection: a
//! frame whose length lies would desynchronise the client. Where `sendfile`
//! cannot be used (a stream that is not a TCP socket, a file system that
//! has no `splice_read`) the region is read and written in chunks.

use std::collections::VecDeque;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, Interest};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::sync::{mpsc, oneshot, Notify};
use tokio::time::Instant;
use tracing::{debug, info, warn};

use crate::alloc::LEASE_FROM;
use crate::limits::{ReplyMeter, SendStats};

/// Largest frame accepted: an 8 MiB write plus headers and a transform.
pub const MAX_FRAME: usize = 8 * 1024 * 1024 + 64 * 1024;
/// Frames waiting in the channel to the writer, which takes them off at
/// once and counts them (see [`Outflow`]).
pub const OUT_QUEUE: usize = 8;
/// The inbox reads in chunks of this size, and reserves no more than has
/// arrived of the frame being read (but at least this).
const READ_CHUNK: usize = 64 * 1024;
/// Sent to the writer instead of a frame: shut the connection down (an
/// answer completed off the connection's task could not be encoded).
pub const CLOSE_FRAME: Bytes = Bytes::new();
/// How often the writer reads `TCP_INFO` while acknowledgements are awaited
/// and nothing is being written.
pub const ACK_POLL: Duration = Duration::from_millis(2);

/// One frame for the writer, and the operation it finishes, if any
/// (`OpId(0)`: none).
pub struct Reply {
    /// The frame's bytes; with a `file`, only its head (NetBIOS header to
    /// the last byte before the file's data), whose length counts the file
    /// region too.
    pub frame: Bytes,
    pub op: ids::OpId,
    /// The rest of the frame, sent from a file after `frame`.
    pub file: Option<FileRegion>,
}

impl Reply {
    pub fn new(frame: Bytes, op: ids::OpId) -> Reply {
        Reply { frame, op, file: None }
    }

    /// Bytes on the wire: the frame's and the file region's.
    fn len(&self) -> usize {
        self.frame.len() + self.file.as_ref().map_or(0, |f| f.len)
    }
}

impl From<Bytes> for Reply {
    fn from(frame: Bytes) -> Reply {
        Reply::new(frame, ids::OpId(0))
    }
}

/// An open file whose bytes a reply sends ([`FileRegion`]).
pub trait FileSource: Send + Sync {
    /// The descriptor to send from; `None` when there is none.
    fn fd(&self) -> Option<BorrowedFd<'_>>;
}

/// Bytes of an open file that end a reply: `len` bytes from `offset`,
/// which the reply's frame has announced (the file's size was checked when
/// the answer was made). Holding `file` keeps the descriptor open until
/// the region is sent, and `lease` the I/O slots of the answer.
pub struct FileRegion {
    pub file: Arc<dyn FileSource>,
    pub offset: u64,
    pub len: usize,
    pub lease: crate::alloc::Lease,
}

/// Told of each operation whose reply the client's TCP acknowledged (point 4).
pub type Acked = Arc<dyn Fn(ids::OpId) + Send + Sync>;

/// Reports the operations whose replies the peer acknowledged (all that
/// were written, on a stream that is not TCP).
fn ack(tcp: Option<std::os::unix::io::RawFd>, base: u64, unacked: &mut VecDeque<(u64, ids::OpId)>, acked: &Acked) {
    if unacked.is_empty() {
        return;
    }
    let upto = match tcp {
        Some(fd) => bytes_acked(fd).map_or(u64::MAX, |a| a.saturating_sub(base)),
        None => u64::MAX,
    };
    while unacked.front().is_some_and(|(end, _)| *end <= upto) {
        if let Some((_, op)) = unacked.pop_front() {
            acked(op);
        }
    }
}

/// `tcpi_bytes_acked` of a TCP socket: the bytes the peer acknowledged.
fn bytes_acked(fd: std::os::unix::io::RawFd) -> Option<u64> {
    let mut info: libc::tcp_info = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into `info`, which is a
    // plain struct of that size; `fd` is the connection's socket, alive as
    // long as the writer holds its write half.
    let r = unsafe { libc::getsockopt(fd, libc::IPPROTO_TCP, libc::TCP_INFO, (&raw mut info).cast(), &mut len) };
    (r == 0 && len as usize >= std::mem::size_of::<libc::tcp_info>()).then_some(info.tcpi_bytes_acked)
}

/// The read half of a connection's byte stream (a TCP socket's, or an
/// in-memory pipe's in tests and the fuzzer).
pub type Reader = Box<dyn AsyncRead + Send + Unpin>;
/// The write half of a connection's byte stream.
pub enum Writer {
    /// A TCP socket's: file regions go out with `sendfile`, and point 4
    /// watches its `TCP_INFO`.
    Tcp(OwnedWriteHalf),
    /// Any other (an in-memory pipe in tests and the fuzzer).
    Stream(Box<dyn AsyncWrite + Send + Unpin>),
}

/// How much of a file region is read at a time where it cannot be sent
/// with `sendfile`.
const COPY_CHUNK: usize = 256 * 1024;

impl Writer {
    /// The TCP socket's descriptor.
    fn tcp(&self) -> Option<std::os::unix::io::RawFd> {
        match self {
            Writer::Tcp(w) => Some(w.as_ref().as_raw_fd()),
            Writer::Stream(_) => None,
        }
    }

    async fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        match self {
            Writer::Tcp(w) => w.write(b).await,
            Writer::Stream(w) => w.write(b).await,
        }
    }

    async fn shutdown(&mut self) -> io::Result<()> {
        match self {
            Writer::Tcp(w) => w.shutdown().await,
            Writer::Stream(w) => w.shutdown().await,
        }
    }

    /// Sends some of `len` bytes of `file` from `offset`; the bytes sent,
    /// 0 when the file ends before `offset`. With `sendfile` on a TCP
    /// socket; else (or once `sendfile` has failed as unsupported, which
    /// sets `copy`) read into a buffer and written.
    async fn send_file(
        &mut self,
        file: BorrowedFd<'_>,
        offset: u64,
        len: usize,
        copy: &mut bool,
        stats: &SendStats,
    ) -> io::Result<usize> {
        if let (Writer::Tcp(w), false) = (&*self, *copy) {
            let sock: &tokio::net::TcpStream = w.as_ref();
            loop {
                sock.writable().await?;
                match sock.try_io(Interest::WRITABLE, || sendfile(sock.as_fd(), file, offset, len)) {
                    Ok(n) => {
                        stats.sendfile_bytes.fetch_add(n as u64, Ordering::Relaxed);
                        return Ok(n);
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) if matches!(e.raw_os_error(), Some(libc::EINVAL | libc::ENOSYS | libc::EOPNOTSUPP)) => {
                        debug!("sendfile: {e}: file data is copied on this connection");
                        *copy = true;
                        break;
                    }
                    Err(e) => return Err(e),
                }
            }
        }
        let mut buf = vec![0u8; len.min(COPY_CHUNK)];
        let at = libc::off_t::try_from(offset).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
        let n = loop {
            match nix::sys::uio::pread(file, &mut buf, at) {
                Err(nix::errno::Errno::EINTR) => {}
                r => break r?,
            }
        };
        if n == 0 {
            return Ok(0);
        }
        let n = self.write(&buf[..n]).await?;
        stats.copied_bytes.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

/// `sendfile(sock, file, offset, len)`: up to `len` bytes of `file` from
/// `offset` onto the socket, without a copy through user space. The bytes
/// sent, 0 when `offset` is at or past the end of the file; `WouldBlock`
/// when the (non-blocking) socket has no room.
fn sendfile(sock: BorrowedFd<'_>, file: BorrowedFd<'_>, offset: u64, len: usize) -> io::Result<usize> {
    let mut off = libc::off_t::try_from(offset).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    loop {
        // SAFETY: both descriptors are borrowed, so open for the call; `off`
        // is an off_t on the stack, which the kernel reads and advances.
        let r = unsafe { libc::sendfile(sock.as_raw_fd(), file.as_raw_fd(), &mut off, len) };
        if r >= 0 {
            return Ok(r as usize);
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// A piece of the writer's queue: a frame's bytes, or a file region that
/// ends a frame.
enum Chunk {
    Bytes(Bytes),
    File(FileRegion),
}

impl Chunk {
    /// What the writer writes next: a cheap copy of the front of the
    /// queue, so that the queue may grow while it is being written.
    fn front(&self) -> Front {
        match self {
            Chunk::Bytes(b) => Front::Bytes(b.clone()),
            Chunk::File(f) => Front::File(f.file.clone(), f.offset, f.len),
        }
    }

    /// Takes `n` written bytes off; true when none are left.
    fn advance(&mut self, n: usize) -> bool {
        match self {
            Chunk::Bytes(b) => {
                b.advance(n);
                b.is_empty()
            }
            Chunk::File(f) => {
                f.offset += n as u64;
                f.len -= n;
                f.len == 0
            }
        }
    }
}

enum Front {
    Bytes(Bytes),
    File(Arc<dyn FileSource>, u64, usize),
}

/// Writes some of `front`: the bytes written, 0 when nothing more can be
/// (for a file region: the file ended before the bytes announced).
async fn write_front(wr: &mut Writer, front: &Front, copy: &mut bool, stats: &SendStats) -> io::Result<usize> {
    match front {
        Front::Bytes(b) => wr.write(b).await,
        Front::File(file, offset, len) => {
            let Some(fd) = file.fd() else {
                return Ok(0);
            };
            wr.send_file(fd, *offset, *len, copy, stats).await
        }
    }
}

/// The replies queued for a connection's writer: counted by the writer,
/// watched by the inbox (back-pressure).
pub struct Outflow {
    meter: ReplyMeter,
    /// What the writer sent from files (shared by the server's writers).
    stats: Arc<SendStats>,
    /// Woken when the queue shrinks and when the writer stops.
    changed: Notify,
    /// The writer has stopped: nothing more will be sent.
    stopped: AtomicBool,
}

impl Outflow {
    pub fn new(meter: ReplyMeter, stats: Arc<SendStats>) -> Outflow {
        Outflow { meter, stats, changed: Notify::new(), stopped: AtomicBool::new(false) }
    }

    /// Bytes queued and not yet written.
    pub fn queued(&self) -> usize {
        self.meter.queued()
    }

    /// Waits until another request may be read; false once the writer has
    /// stopped.
    async fn room(&self) -> bool {
        loop {
            if self.stopped.load(Ordering::Acquire) {
                return false;
            }
            if self.meter.has_room() {
                return true;
            }
            self.changed.notified().await;
        }
    }

    /// Resolves once the writer has stopped.
    async fn stopped(&self) {
        while !self.stopped.load(Ordering::Acquire) {
            self.changed.notified().await;
        }
    }

    fn stop(&self) {
        self.stopped.store(true, Ordering::Release);
        self.changed.notify_one();
    }
}

/// The connection's incoming side: the socket's read half and the bytes
/// read but not yet framed.
pub struct Inbox {
    rd: Option<Reader>,
    buf: BytesMut,
    /// Replies not yet written; no request is read while too many are.
    outflow: Option<Arc<Outflow>>,
    /// How long a frame may take to arrive once its first bytes have.
    frame_timeout: Duration,
    /// When the inbox started waiting for the rest of the frame it holds
    /// part of.
    frame_started: Option<Instant>,
    /// The I/O budget taken for the large frame being read.
    lease: Option<crate::alloc::Lease>,
    /// The lease of the frame last returned, until the pipeline takes it
    /// (a deferred WRITE holds its frame until written) or the next frame
    /// is asked for.
    last: Option<crate::alloc::Lease>,
    /// The TCP socket's descriptor (a duplicate): a large WRITE's data may
    /// be left in it for the WRITE to move into its file ([`WriteHead`]).
    sock: Option<Arc<OwnedFd>>,
    /// The rest of a frame is lent out ([`Inbox::lend`]): nothing is read
    /// until the borrower says how it left the socket.
    hold: Option<oneshot::Receiver<Returned>>,
    /// Bytes of a frame still in the socket that nobody wants: read and
    /// dropped before the next frame ([`Inbox::skip`]).
    skip: usize,
}

/// What comes off a connection: a whole frame, or the head of a large
/// WRITE whose data is still (mostly) in the socket.
pub enum Incoming {
    Frame(BytesMut),
    Head(WriteHead),
}

/// A large WRITE alone in its frame, read as far as its fixed part
/// ([`WRITE_HEAD`] bytes: the SMB2 header and the 48 bytes before the
/// data, which runs to the end of the frame). The pipeline either has its
/// data moved from the socket into the file ([`Inbox::lend`]), or reads
/// the rest of the frame ([`Inbox::complete`]).
pub struct WriteHead {
    /// The SMB2 header and the WRITE's fixed part.
    pub head: BytesMut,
    pub data: DataInSocket,
}

/// A WRITE's data: the bytes read already, and how many more the socket
/// holds.
#[derive(Debug)]
pub struct DataInSocket {
    pub pre: Bytes,
    pub rest: usize,
    /// Its place among the server's moves from sockets
    /// ([`crate::limits::MAX_SPLICING`]), given back when the data is dropped.
    pub slot: Option<tokio::sync::OwnedSemaphorePermit>,
}

impl DataInSocket {
    pub fn len(&self) -> usize {
        self.pre.len() + self.rest
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// How a lent frame's rest left the socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Returned {
    /// All of it was taken.
    Taken,
    /// None of it: these bytes are to be read and dropped.
    Untouched(usize),
}

/// The rest of a frame, lent by the inbox to whoever moves it off the
/// socket ([`Inbox::lend`]). Dropped without [`Loan::taken`] or
/// [`Loan::untouched`] (the move failed part-way, or never ran), it closes
/// the connection: the frame cannot be found the end of.
pub struct Loan {
    sock: Arc<OwnedFd>,
    /// By when the bytes must have come (the frame time-out).
    pub deadline: std::time::Instant,
    done: Option<oneshot::Sender<Returned>>,
}

impl Loan {
    /// The socket to read the bytes from.
    pub fn sock(&self) -> BorrowedFd<'_> {
        self.sock.as_fd()
    }

    /// Every byte lent was taken off the socket.
    pub fn taken(mut self) {
        if let Some(d) = self.done.take() {
            let _ = d.send(Returned::Taken);
        }
    }

    /// None were: the inbox drops the `n` bytes before the next frame.
    pub fn untouched(mut self, n: usize) {
        if let Some(d) = self.done.take() {
            let _ = d.send(Returned::Untouched(n));
        }
    }
}

/// The bytes of a WRITE's head: the SMB2 header and the fixed part
/// ([MS-SMB2] 2.2.21), 0x70.
pub const WRITE_HEAD: usize = protocol::header::HEADER_LEN + 48;
/// A WRITE with at least this much data, alone in its frame, may have its
/// data moved from the socket into its file.
pub const RECV_FILE_FROM: usize = 64 * 1024;

/// Whether `head` (the first [`WRITE_HEAD`] bytes of a frame of `len`
/// bytes) is a WRITE whose data may be left in the socket: SMB2, not part
/// of a compound, neither signed nor a replay nor async, its data right
/// after its fixed part and running to the frame's end, at least
/// [`RECV_FILE_FROM`] of it, and no channel information (not RDMA). The
/// rest (session, signing, the open) is the pipeline's to judge.
fn is_write_head(head: &[u8], len: usize) -> bool {
    use protocol::header::flags;
    let Ok(h) = protocol::header::Header::parse(head) else {
        return false;
    };
    let body = &head[protocol::header::HEADER_LEN..];
    let u16_at = |at: usize| u16::from_le_bytes([body[at], body[at + 1]]);
    let u32_at = |at: usize| u32::from_le_bytes([body[at], body[at + 1], body[at + 2], body[at + 3]]);
    head.len() == WRITE_HEAD
        && head[..4] == [0xFE, b'S', b'M', b'B']
        && h.command == protocol::header::Command::Write as u16
        && h.next_command == 0
        && h.flags & (flags::SIGNED | flags::RELATED_OPERATIONS | flags::REPLAY_OPERATION | flags::ASYNC_COMMAND) == 0
        && u16_at(0) == 49
        && usize::from(u16_at(2)) == WRITE_HEAD
        && u32_at(4) as usize == len - WRITE_HEAD
        && len - WRITE_HEAD >= RECV_FILE_FROM
        && u32_at(32) == 0
        && u16_at(40) == 0
        && u16_at(42) == 0
}

impl Inbox {
    pub fn new(rd: Option<Reader>) -> Inbox {
        let frame_timeout = Duration::from_secs(crate::config::Limits::default().frame_timeout_s);
        Inbox {
            rd,
            buf: BytesMut::new(),
            outflow: None,
            frame_timeout,
            frame_started: None,
            lease: None,
            last: None,
            sock: None,
            hold: None,
            skip: 0,
        }
    }

    /// Lets a large WRITE's data be left in the TCP socket `sock` (a
    /// duplicate of the connection's descriptor) for its WRITE to move
    /// ([`Inbox::next_request`]).
    pub fn with_socket(mut self, sock: OwnedFd) -> Inbox {
        self.sock = Some(Arc::new(sock));
        self
    }

    /// Lends the rest of the frame whose head was last returned: the
    /// borrower moves it off the socket, and nothing is read until it says
    /// how ([`Loan`]). `None` on a stream that is not a TCP socket.
    pub fn lend(&mut self) -> Option<Loan> {
        let sock = self.sock.clone()?;
        let (tx, rx) = oneshot::channel();
        self.hold = Some(rx);
        let deadline = std::time::Instant::now() + self.frame_timeout;
        Some(Loan { sock, deadline, done: Some(tx) })
    }

    /// Drops the next `n` bytes of the stream (the data of a WRITE that was
    /// answered without it) before reading the next frame.
    pub fn skip(&mut self, n: usize) {
        self.skip += n;
    }

    /// The whole frame of `h`: the rest of its data read off the socket.
    pub async fn complete(&mut self, h: WriteHead) -> Option<BytesMut> {
        let len = h.head.len() + h.data.len();
        let mut buf = BytesMut::with_capacity(4 + h.head.len() + h.data.pre.len() + self.buf.len());
        buf.put_u8(0);
        buf.put_u8((len >> 16) as u8);
        buf.put_u8((len >> 8) as u8);
        buf.put_u8(len as u8);
        buf.extend_from_slice(&h.head);
        buf.extend_from_slice(&h.data.pre);
        buf.extend_from_slice(&self.buf);
        self.buf = buf;
        match self.next(false).await? {
            Incoming::Frame(f) => Some(f),
            Incoming::Head(_) => None,
        }
    }

    /// An inbox that waits for `outflow` to have room before each request
    /// and closes the connection on a frame unfinished after
    /// `frame_timeout`.
    pub fn bounded(rd: Reader, outflow: Arc<Outflow>, frame_timeout: Duration) -> Inbox {
        Inbox { outflow: Some(outflow), frame_timeout, ..Inbox::new(Some(rd)) }
    }

    /// The length of the frame whose header is at the front, if any.
    fn pending_len(&self) -> Option<usize> {
        match self.buf.get(..4) {
            Some(h) if h[0] == 0 => Some((usize::from(h[1]) << 16) | (usize::from(h[2]) << 8) | usize::from(h[3])),
            _ => None,
        }
    }

    /// The I/O budget of the frame last returned by [`Inbox::next_frame`],
    /// for the operation that keeps the frame beyond its request.
    pub fn take_lease(&mut self) -> Option<crate::alloc::Lease> {
        self.last.take()
    }

    /// The next whole frame; `None` once the peer is gone, sent something
    /// that is not a NetBIOS session message, left a frame unfinished too
    /// long, or the writer stopped. Cancel-safe: a frame read halfway stays
    /// in the buffer.
    ///
    /// A large frame whose header is in is read, when the server's I/O
    /// budget has room for it ([`crate::alloc`]), into one buffer of its
    /// size class and no further than its end, so it is neither copied as
    /// its buffer grows nor sharing that buffer with what follows; its
    /// lease goes with it ([`Inbox::take_lease`]). Without room, it is read
    /// as any other frame, its buffer growing only as its bytes arrive.
    pub async fn next_frame(&mut self) -> Option<BytesMut> {
        match self.next(false).await? {
            Incoming::Frame(f) => Some(f),
            Incoming::Head(_) => None,
        }
    }

    /// [`Inbox::next_frame`], or, on a TCP socket ([`Inbox::with_socket`]),
    /// the head of a large WRITE whose data is still in the socket
    /// ([`is_write_head`]): it is not read further, and the pipeline takes
    /// its data ([`Inbox::lend`], [`Inbox::skip`]) or the rest of the frame
    /// ([`Inbox::complete`]). Cancel-safe as `next_frame`.
    pub async fn next_request(&mut self) -> Option<Incoming> {
        self.next(true).await
    }

    async fn next(&mut self, heads: bool) -> Option<Incoming> {
        // The last frame's request is done, unless it took its lease.
        self.last = None;
        if let Some(rx) = &mut self.hold {
            let r = rx.await;
            self.hold = None;
            match r {
                Ok(Returned::Taken) => {}
                Ok(Returned::Untouched(n)) => self.skip += n,
                Err(_) => {
                    debug!("closing: a WRITE's data was cut short in the socket");
                    return None;
                }
            }
        }
        loop {
            if self.skip > 0 {
                self.drop_skipped().await?;
                continue;
            }
            if let Some(out) = &self.outflow {
                if !out.room().await {
                    return None;
                }
            }
            // A large WRITE's head: returned as soon as it is in, before a
            // buffer is taken for its frame.
            let head = heads && self.sock.is_some();
            let recv = self.pending_len().filter(|&len| {
                head && (WRITE_HEAD + RECV_FILE_FROM..=MAX_FRAME).contains(&len) && self.buf.len() < 4 + len
            });
            if let Some(len) = recv {
                if self.buf.len() >= 4 + WRITE_HEAD && is_write_head(&self.buf[4..4 + WRITE_HEAD], len) {
                    self.frame_started = None;
                    let mut head = self.buf.split_to(4 + WRITE_HEAD);
                    head.advance(4);
                    let pre = self.buf.split().freeze();
                    let rest = len - WRITE_HEAD - pre.len();
                    return Some(Incoming::Head(WriteHead { head, data: DataInSocket { pre, rest, slot: None } }));
                }
            }
            // Until a possible head is in, it is read in small pieces.
            let small = recv.is_some() && self.buf.len() < 4 + WRITE_HEAD;
            let big = self.pending_len().filter(|len| !small && (LEASE_FROM..=MAX_FRAME).contains(len));
            if let (Some(len), None) = (big, &self.lease) {
                self.lease = crate::alloc::try_lease(len);
            }
            let leased = big.filter(|_| self.lease.is_some());
            if let Some(len) = leased {
                let want = crate::alloc::size_class(4 + len);
                if self.buf.capacity() < want {
                    // Not `reserve`: it may double a buffer it owns alone.
                    let mut fresh = BytesMut::with_capacity(want);
                    fresh.extend_from_slice(&self.buf);
                    self.buf = fresh;
                }
            }
            match protocol::netbios::decode(&mut self.buf, MAX_FRAME) {
                Ok(Some(frame)) => {
                    self.frame_started = None;
                    self.last = self.lease.take();
                    if frame.len() >= LEASE_FROM {
                        // The large buffer leaves with its frame; what was
                        // read past it goes to a buffer of its own.
                        self.buf = BytesMut::from(&self.buf[..]);
                    }
                    return Some(Incoming::Frame(frame));
                }
                Ok(None) => {}
                Err(e) => {
                    warn!("closing: {e}");
                    return None;
                }
            }
            // Only time spent waiting for the peer counts, not the time
            // the connection spent on requests before it came back here.
            if !self.buf.is_empty() && self.frame_started.is_none() {
                self.frame_started = Some(Instant::now());
            }
            let deadline = self.frame_started.map(|t| t + self.frame_timeout);
            let rd = self.rd.as_mut()?;
            let buf = &mut self.buf;
            // An empty inbox reads into a small buffer of its own first, so
            // that an idle connection holds no buffer at all.
            let mut first = [0u8; 4096];
            let read = async {
                if let Some(len) = leased {
                    // No further than the frame's end.
                    let left = 4 + len - buf.len();
                    rd.read_buf(&mut buf.limit(left)).await
                } else if buf.is_empty() || small {
                    let want = if small { 4 + WRITE_HEAD - buf.len() } else { first.len() };
                    let n = rd.read(&mut first[..want]).await?;
                    buf.extend_from_slice(&first[..n]);
                    Ok(n)
                } else {
                    reserve_chunk(buf);
                    rd.read_buf(buf).await
                }
            };
            tokio::select! {
                r = read => match r {
                    Ok(0) => return None,
                    Ok(_) => {}
                    Err(e) => {
                        debug!("read: {e}");
                        return None;
                    }
                },
                _ = tokio::time::sleep_until(deadline.unwrap_or_else(far_future)), if deadline.is_some() => {
                    info!(held = self.buf.len(), "closing: a frame left unfinished for {:?}", self.frame_timeout);
                    return None;
                }
                _ = stopped(&self.outflow) => return None,
            }
        }
    }
}

impl Inbox {
    /// Reads and drops the bytes [`Inbox::skip`] asked for (those in the
    /// buffer first), within the frame time-out; `None` when the stream
    /// ended or the time ran out.
    async fn drop_skipped(&mut self) -> Option<()> {
        let k = self.skip.min(self.buf.len());
        self.buf.advance(k);
        self.skip -= k;
        if self.skip == 0 {
            return Some(());
        }
        let started = *self.frame_started.get_or_insert_with(Instant::now);
        let rd = self.rd.as_mut()?;
        let mut scratch = vec![0u8; self.skip.min(READ_CHUNK)];
        while self.skip > 0 {
            let want = self.skip.min(scratch.len());
            tokio::select! {
                r = rd.read(&mut scratch[..want]) => match r {
                    Ok(0) | Err(_) => return None,
                    Ok(n) => self.skip -= n,
                },
                _ = tokio::time::sleep_until(started + self.frame_timeout) => {
                    info!("closing: a WRITE's data left unfinished for {:?}", self.frame_timeout);
                    return None;
                }
            }
        }
        self.frame_started = None;
        Some(())
    }
}

/// Makes room in `buf` for the next read: what is left of the frame being
/// read, but never more than has arrived of it already (nor less than
/// [`READ_CHUNK`]), so a header announcing 8 MiB pins nothing until the
/// bytes come.
fn reserve_chunk(buf: &mut BytesMut) {
    let total = (buf.len() >= 4 && buf[0] == 0)
        .then(|| 4 + ((buf[1] as usize) << 16 | (buf[2] as usize) << 8 | buf[3] as usize));
    let wanted = match total {
        Some(total) => total.saturating_sub(buf.len()).clamp(1, READ_CHUNK.max(buf.len())),
        None => READ_CHUNK,
    };
    if buf.capacity() - buf.len() < wanted.min(READ_CHUNK) {
        if total.is_some_and(|t| t >= LEASE_FROM) {
            // Exactly that much more: `reserve` may double a buffer it owns
            // alone, and an 8 MiB frame would end in a 16 MiB buffer.
            let mut fresh = BytesMut::with_capacity(buf.len() + wanted);
            fresh.extend_from_slice(buf);
            *buf = fresh;
        } else {
            buf.reserve(wanted);
        }
    }
}

/// A deadline that never comes, for a disabled `select!` branch.
pub fn far_future() -> Instant {
    Instant::now() + Duration::from_secs(86400 * 365)
}

/// Resolves when the writer behind `outflow` stops; never without one.
async fn stopped(outflow: &Option<Arc<Outflow>>) {
    match outflow {
        Some(o) => o.stopped().await,
        None => std::future::pending().await,
    }
}

/// The writer: takes replies off the channel as they come, so that the
/// bytes queued are known (and senders never wait), and writes them in
/// order, file regions included. Stops when every sender is gone (or a
/// [`CLOSE_FRAME`] came) and all is written, on a write error, when a file
/// region's file has shrunk below what its frame announced, or when the
/// client has read nothing for `stall`.
pub async fn write_replies(
    mut wr: Writer,
    mut rx: mpsc::Receiver<Reply>,
    out: Arc<Outflow>,
    stall: Duration,
    acked: Acked,
) {
    let tcp = wr.tcp();
    let mut queue: VecDeque<Chunk> = VecDeque::new();
    // The operation each queued frame finishes, by the frame's end in the
    // stream; and those written, awaiting the client's acknowledgement.
    let mut finishes: VecDeque<(u64, ids::OpId)> = VecDeque::new();
    let mut unacked: VecDeque<(u64, ids::OpId)> = VecDeque::new();
    let (mut queued_end, mut written) = (0u64, 0u64);
    // tcpi_bytes_acked counts from the connection's start, the handshake
    // excluded; what was written before the first reply is not ours.
    let acked_base = tcp.and_then(bytes_acked).unwrap_or(0);
    fn enqueue(queue: &mut VecDeque<Chunk>, finishes: &mut VecDeque<(u64, ids::OpId)>, end: &mut u64, r: Reply) {
        *end += r.len() as u64;
        if r.op != ids::OpId(0) {
            finishes.push_back((*end, r.op));
        }
        queue.push_back(Chunk::Bytes(r.frame));
        if let Some(f) = r.file.filter(|f| f.len > 0) {
            queue.push_back(Chunk::File(f));
        }
    }
    // `sendfile` failed as unsupported: file regions are copied from now on.
    let mut copy = false;
    let mut open = true;
    // The last time the client took any bytes (or the queue was empty).
    let mut progress = Instant::now();
    loop {
        let Some(front) = queue.front().map(Chunk::front) else {
            if !open {
                break;
            }
            let r = if unacked.is_empty() {
                rx.recv().await
            } else {
                tokio::select! {
                    r = rx.recv() => r,
                    _ = tokio::time::sleep(ACK_POLL) => {
                        ack(tcp, acked_base, &mut unacked, &acked);
                        continue;
                    }
                }
            };
            match r {
                Some(r) if r.frame.is_empty() => {
                    debug!("closing: an answer could not be sent");
                    break;
                }
                Some(r) => {
                    out.meter.add(r.len());
                    enqueue(&mut queue, &mut finishes, &mut queued_end, r);
                    progress = Instant::now();
                }
                None => break,
            }
            continue;
        };
        tokio::select! {
            biased;
            f = rx.recv(), if open => match f {
                // CLOSE_FRAME: what is queued before it goes out, then the
                // connection is shut down.
                Some(r) if r.frame.is_empty() => {
                    debug!("closing: an answer could not be sent");
                    open = false;
                }
                Some(r) => {
                    out.meter.add(r.len());
                    enqueue(&mut queue, &mut finishes, &mut queued_end, r);
                }
                None => open = false,
            },
            r = write_front(&mut wr, &front, &mut copy, &out.stats) => match r {
                Ok(n) if n > 0 => {
                    progress = Instant::now();
                    out.meter.sub(n);
                    written += n as u64;
                    while finishes.front().is_some_and(|(end, _)| *end <= written) {
                        unacked.extend(finishes.pop_front());
                    }
                    ack(tcp, acked_base, &mut unacked, &acked);
                    if let Some(f) = queue.front_mut() {
                        if f.advance(n) {
                            if let Some(Chunk::File(_)) = queue.pop_front() {
                                out.stats.regions.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    }
                    out.changed.notify_one();
                }
                Ok(_) => {
                    if let Front::File(..) = front {
                        // Its frame announced more than the file now has:
                        // what was sent cannot be taken back.
                        warn!("closing: a file shrank under the READ answer being sent from it");
                    }
                    break;
                }
                Err(e) => {
                    debug!("write: {e}");
                    break;
                }
            },
            _ = tokio::time::sleep_until(progress + stall) => {
                info!(queued = out.queued(), "closing: the client has read no reply for {stall:?}");
                break;
            }
        }
    }
    // The last acknowledgements, while the socket is still ours (briefly:
    // a peer that went away acknowledges nothing more).
    let until = Instant::now() + Duration::from_millis(200);
    while !unacked.is_empty() && Instant::now() < until {
        ack(tcp, acked_base, &mut unacked, &acked);
        if !unacked.is_empty() {
            tokio::time::sleep(ACK_POLL).await;
        }
    }
    out.stop();
    // Replies still queued are dropped here (with the I/O slots they hold).
    drop(queue);
    drop(rx);
    let _ = wr.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::{TcpListener, TcpStream};

    async fn pair() -> (Inbox, tokio::net::tcp::OwnedWriteHalf) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let client = TcpStream::connect(addr).await.expect("connect");
        let (server, _) = listener.accept().await.expect("accept");
        let (rd, _) = server.into_split();
        let (_, wr) = client.into_split();
        (Inbox::new(Some(Box::new(rd))), wr)
    }

    /// [`pair`] whose inbox may leave a large WRITE's data in its socket.
    async fn pair_with_socket() -> (Inbox, tokio::net::tcp::OwnedWriteHalf) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let client = TcpStream::connect(listener.local_addr().expect("addr")).await.expect("connect");
        let (server, _) = listener.accept().await.expect("accept");
        let dup = server.as_fd().try_clone_to_owned().expect("dup");
        let (rd, _) = server.into_split();
        let (_, wr) = client.into_split();
        (Inbox::new(Some(Box::new(rd))).with_socket(dup), wr)
    }

    /// A framed WRITE of `data` (plain, alone), as a client sends it.
    fn write_frame(data: &[u8]) -> Vec<u8> {
        let mut m = BytesMut::new();
        protocol::header::Header { command: protocol::header::Command::Write as u16, ..Default::default() }
            .encode(&mut m);
        protocol::msg::write::WriteRequest {
            offset: 0,
            file_id: protocol::msg::FileId { persistent: 1, volatile: 2 },
            channel: 0,
            remaining_bytes: 0,
            flags: 0,
            data,
            write_channel_info: &[],
        }
        .encode(&mut m);
        let mut f = vec![0, (m.len() >> 16) as u8, (m.len() >> 8) as u8, m.len() as u8];
        f.extend_from_slice(&m);
        f
    }

    /// Reads `n` bytes off the loan's socket (as a WRITE's move does, on a
    /// blocking thread) and gives the loan back.
    async fn take(loan: Loan, n: usize) -> Vec<u8> {
        tokio::task::spawn_blocking(move || {
            let mut got = Vec::new();
            let mut buf = vec![0u8; 65536];
            while got.len() < n {
                let want = (n - got.len()).min(buf.len());
                // SAFETY: `buf` is writable for `want` bytes; the loan keeps the socket open.
                let r = unsafe { libc::read(loan.sock().as_raw_fd(), buf.as_mut_ptr().cast(), want) };
                if r > 0 {
                    got.extend_from_slice(&buf[..r as usize]);
                } else {
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
            loan.taken();
            got
        })
        .await
        .expect("take")
    }

    /// A large WRITE's head comes alone, its data left in the socket: lent
    /// out and taken, the next frame is read after it; left untouched, it
    /// is dropped off the socket; asked for whole, it is read.
    #[tokio::test]
    async fn a_write_head_comes_alone_and_its_data_stays_in_the_socket() {
        let (mut inbox, mut wr) = pair_with_socket().await;
        let data: Vec<u8> = (0..300_000u32).map(|i| (i % 241) as u8).collect();
        let mut wire = write_frame(&data);
        wire.extend(frame(70, 3));
        wire.extend(write_frame(&data));
        wire.extend(frame(71, 4));
        wire.extend(write_frame(&data));
        wire.extend(frame(72, 5));
        // A WRITE too small to leave in the socket comes whole.
        wire.extend(write_frame(&data[..RECV_FILE_FROM - 1]));
        let writer = tokio::spawn(async move {
            for piece in wire.chunks(77_777) {
                wr.write_all(piece).await.expect("write");
            }
            wr
        });
        let Some(Incoming::Head(h)) = inbox.next_request().await else { panic!("a head") };
        assert_eq!(h.head.len(), WRITE_HEAD);
        assert_eq!(h.data.len(), data.len());
        let loan = inbox.lend().expect("a TCP socket's inbox lends");
        let mut got = h.data.pre.to_vec();
        got.extend(take(loan, h.data.rest).await);
        assert!(got == data, "the data off the socket");
        let Some(Incoming::Frame(f)) = inbox.next_request().await else { panic!("a frame") };
        assert_eq!((f.len(), f[0]), (70, 3));

        let Some(Incoming::Head(h)) = inbox.next_request().await else { panic!("a head") };
        inbox.lend().expect("loan").untouched(h.data.rest);
        let Some(Incoming::Frame(f)) = inbox.next_request().await else { panic!("a frame") };
        assert_eq!((f.len(), f[0]), (71, 4), "the untouched data was dropped");

        let Some(Incoming::Head(h)) = inbox.next_request().await else { panic!("a head") };
        let f = inbox.complete(h).await.expect("the whole frame");
        assert!(f[..] == write_frame(&data)[4..], "completed as sent");
        let Some(Incoming::Frame(f)) = inbox.next_request().await else { panic!("a frame") };
        assert_eq!((f.len(), f[0]), (72, 5));
        let Some(Incoming::Frame(f)) = inbox.next_request().await else { panic!("a small WRITE") };
        assert_eq!(f.len(), WRITE_HEAD + RECV_FILE_FROM - 1);
        drop(writer.await.expect("writer"));
    }

    /// A loan dropped without being given back (its move stopped part-way)
    /// ends the stream: where the frame ends is lost.
    #[tokio::test]
    async fn a_loan_not_given_back_closes_the_inbox() {
        let (mut inbox, mut wr) = pair_with_socket().await;
        let data = vec![9u8; 200_000];
        let mut wire = write_frame(&data);
        wire.extend(frame(70, 3));
        let writer = tokio::spawn(async move {
            wr.write_all(&wire).await.expect("write");
            wr
        });
        let Some(Incoming::Head(_)) = inbox.next_request().await else { panic!("a head") };
        drop(inbox.lend().expect("loan"));
        assert!(inbox.next_request().await.is_none());
        drop(writer.await.expect("writer"));
    }

    /// `next_frame`, and an inbox without a socket, never stop at a head.
    #[tokio::test]
    async fn without_a_socket_a_write_comes_whole() {
        let (mut inbox, mut wr) = pair().await;
        let data = vec![7u8; 200_000];
        let wire = write_frame(&data);
        let writer = tokio::spawn(async move {
            wr.write_all(&wire).await.expect("write");
            wr
        });
        let Some(Incoming::Frame(f)) = inbox.next_request().await else { panic!("a whole frame") };
        assert_eq!(f.len(), WRITE_HEAD + data.len());
        drop(writer.await.expect("writer"));
    }

    fn frame(len: usize, fill: u8) -> Vec<u8> {
        let mut f = vec![0, (len >> 16) as u8, (len >> 8) as u8, len as u8];
        f.resize(4 + len, fill);
        f
    }

    /// A large frame and the small ones around it come out whole and in
    /// order, each in a buffer of its own: the large one's reads stop at
    /// its end, and the next frame is read into a small buffer.
    #[tokio::test]
    async fn large_and_small_frames_in_one_stream() {
        let (mut inbox, mut wr) = pair().await;
        let big = 8 << 20;
        let mut wire = frame(100, 1);
        wire.extend(frame(big, 2));
        wire.extend(frame(70, 3));
        wire.extend(frame(LEASE_FROM, 4));
        let writer = tokio::spawn(async move {
            // In pieces that split headers and bodies.
            for piece in wire.chunks(77_777) {
                wr.write_all(piece).await.expect("write");
            }
            wr
        });
        let f = inbox.next_frame().await.expect("small");
        assert_eq!((f.len(), f[0]), (100, 1));
        assert!(inbox.take_lease().is_none(), "small frames take no budget");
        let f = inbox.next_frame().await.expect("big");
        assert_eq!(f.len(), big);
        assert!(f.iter().all(|&b| b == 2));
        assert!(inbox.take_lease().is_some(), "a large frame comes with its lease");
        assert!(inbox.buf.capacity() < 1 << 20, "the large buffer left with its frame");
        let f = inbox.next_frame().await.expect("small after big");
        assert_eq!((f.len(), f[0], f[69]), (70, 3, 3));
        let f = inbox.next_frame().await.expect("threshold");
        assert_eq!((f.len(), f[0]), (LEASE_FROM, 4));
        drop(writer.await.expect("writer"));
        assert!(inbox.next_frame().await.is_none(), "end of stream");
    }

    /// With the server's I/O budget spent, a large frame is still read
    /// (nothing waits for the budget), only without a lease.
    #[tokio::test]
    async fn a_large_frame_without_budget_is_read_all_the_same() {
        let (mut inbox, mut wr) = pair().await;
        let all = crate::alloc::budget()
            .clone()
            .acquire_many_owned((crate::alloc::IO_BUDGET / (64 * 1024)) as u32)
            .await
            .expect("the whole budget");
        let len = 4 << 20;
        let writer = tokio::spawn(async move {
            let _ = wr.write_all(&frame(len, 9)).await;
            wr
        });
        let f = inbox.next_frame().await.expect("frame");
        assert_eq!(f.len(), len);
        assert!(f.iter().all(|&b| b == 9));
        assert!(inbox.take_lease().is_none());
        drop(all);
        drop(writer.await.expect("writer"));
    }

    /// A file the tests send regions of.
    struct TestFile(std::fs::File);

    impl FileSource for TestFile {
        fn fd(&self) -> Option<BorrowedFd<'_>> {
            Some(self.0.as_fd())
        }
    }

    fn test_file(bytes: &[u8]) -> (tempfile::TempDir, Arc<TestFile>) {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("f");
        std::fs::write(&path, bytes).expect("write");
        (dir, Arc::new(TestFile(std::fs::File::open(&path).expect("open"))))
    }

    /// The operations a test writer reported acknowledged.
    type AckedOps = Arc<std::sync::Mutex<Vec<ids::OpId>>>;

    /// A writer on `wr` fed by the returned sender; the operations it
    /// reports acknowledged land in the returned list.
    fn writer(wr: Writer) -> (mpsc::Sender<Reply>, AckedOps, Arc<SendStats>, tokio::task::JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(OUT_QUEUE);
        let stats = Arc::new(SendStats::default());
        let meter = crate::limits::Resources::new(&crate::config::Limits::default(), 1 << 20).reply_meter();
        let out = Arc::new(Outflow::new(meter, stats.clone()));
        let done = Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen = done.clone();
        let acked: Acked = Arc::new(move |op| seen.lock().expect("lock").push(op));
        let task = tokio::spawn(write_replies(wr, rx, out, Duration::from_secs(30), acked));
        (tx, done, stats, task)
    }

    /// A reply of a frame head and `len` bytes of `file` from `offset`.
    fn region_reply(file: &Arc<TestFile>, offset: u64, len: usize, op: u64) -> Reply {
        let n = len + 3;
        let head = Bytes::from(vec![0, (n >> 16) as u8, (n >> 8) as u8, n as u8, 0xAA, 0xBB, 0xCC]);
        let file: Arc<dyn FileSource> = file.clone();
        Reply {
            frame: head,
            op: ids::OpId(op),
            file: Some(FileRegion { file, offset, len, lease: Default::default() }),
        }
    }

    /// Over TCP the region goes out with sendfile right after its head, the
    /// frames around it in order, and its operation is acknowledged (point
    /// 4) once the client has all of it.
    #[tokio::test]
    async fn a_file_region_follows_its_head_with_sendfile_on_tcp() {
        let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 253) as u8).collect();
        let (_dir, file) = test_file(&data);
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let mut client = TcpStream::connect(listener.local_addr().expect("addr")).await.expect("connect");
        let (server, _) = listener.accept().await.expect("accept");
        let (_rd, wr) = server.into_split();
        let (tx, acked, stats, task) = writer(Writer::Tcp(wr));
        tx.send(Reply::new(Bytes::from_static(b"before"), ids::OpId(0))).await.expect("send");
        tx.send(region_reply(&file, 1000, 2_500_000, 7)).await.expect("send");
        tx.send(Reply::new(Bytes::from_static(b"after"), ids::OpId(8))).await.expect("send");
        drop(tx);
        let mut got = Vec::new();
        client.read_to_end(&mut got).await.expect("read");
        task.await.expect("writer");
        let mut want = b"before".to_vec();
        want.extend_from_slice(&region_reply(&file, 1000, 2_500_000, 7).frame);
        want.extend_from_slice(&data[1000..2_501_000]);
        want.extend_from_slice(b"after");
        assert!(got == want, "{} bytes received, {} expected", got.len(), want.len());
        assert_eq!(*acked.lock().expect("lock"), vec![ids::OpId(7), ids::OpId(8)]);
        assert_eq!(stats.regions.load(Ordering::Relaxed), 1);
        assert_eq!(stats.sendfile_bytes.load(Ordering::Relaxed), 2_500_000);
        assert_eq!(stats.copied_bytes.load(Ordering::Relaxed), 0);
    }

    /// On a stream that is not a socket the region is read and written.
    #[tokio::test]
    async fn a_file_region_is_copied_on_another_stream() {
        let data: Vec<u8> = (0..700_000u32).map(|i| (i % 251) as u8).collect();
        let (_dir, file) = test_file(&data);
        let (mine, mut theirs) = tokio::io::duplex(64 * 1024);
        let (tx, acked, stats, task) = writer(Writer::Stream(Box::new(mine)));
        tx.send(region_reply(&file, 5, 600_000, 3)).await.expect("send");
        drop(tx);
        let mut got = Vec::new();
        theirs.read_to_end(&mut got).await.expect("read");
        task.await.expect("writer");
        assert_eq!(got.len(), 7 + 600_000);
        assert!(got[7..] == data[5..600_005]);
        assert_eq!(*acked.lock().expect("lock"), vec![ids::OpId(3)]);
        assert_eq!(stats.copied_bytes.load(Ordering::Relaxed), 600_000);
        assert_eq!(stats.sendfile_bytes.load(Ordering::Relaxed), 0);
    }

    /// A region longer than its file now is (the file shrank after the
    /// head announced it): the writer sends what there is and stops, the
    /// frames after it are not sent, and the operation is not reported
    /// answered.
    #[tokio::test]
    async fn a_region_past_the_end_of_its_file_ends_the_connection() {
        let data = vec![7u8; 100_000];
        let (_dir, file) = test_file(&data);
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let mut client = TcpStream::connect(listener.local_addr().expect("addr")).await.expect("connect");
        let (server, _) = listener.accept().await.expect("accept");
        let (_rd, wr) = server.into_split();
        let (tx, acked, stats, task) = writer(Writer::Tcp(wr));
        tx.send(region_reply(&file, 0, 300_000, 5)).await.expect("send");
        tx.send(Reply::new(Bytes::from_static(b"never"), ids::OpId(6))).await.expect("send");
        let mut got = Vec::new();
        client.read_to_end(&mut got).await.expect("read");
        task.await.expect("writer");
        assert_eq!(got.len(), 7 + 100_000, "the head and the bytes the file has, then the end");
        assert!(acked.lock().expect("lock").is_empty());
        assert_eq!(stats.regions.load(Ordering::Relaxed), 0);
        drop(tx);
    }
}
