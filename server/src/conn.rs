//! One task per TCP connection: read frames, hand each to the pipeline,
//! and write what comes back. A second task writes, so that async
//! completions (CHANGE_NOTIFY, blocking locks) can be sent at any time.
//!
//! Bounds ([`crate::config::Limits`]): a connection that has no
//! authenticated session within `handshake_timeout_s` is closed, and so
//! is one whose request frame is still unfinished `frame_timeout_s`
//! after its first bytes came. The inbox holds only what has arrived (plus
//! a modest chunk to read into), not what a frame header announces.
//! Back-pressure: the writer takes every reply off the channel at once and
//! counts the queued bytes ([`crate::limits::ReplyMeter`]); while they are
//! over the limit, no new request is read. A client that reads none of its
//! replies for `send_timeout_s` is disconnected.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use protocol::credit::SequenceWindow;
use protocol::crypto::preauth::PreauthHash;
use protocol::crypto::signing::SigningAlgorithm;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, Notify};
use tokio::time::Instant;
use tracing::{debug, info, warn};

use crate::alloc::LEASE_FROM;
use crate::limits::ReplyMeter;
use crate::pipeline::{self, Flow};
use crate::state::session::{AuthState, SessionCrypto};
use crate::state::{lock, Server, Session};

/// Largest frame accepted: an 8 MiB write plus headers and a transform.
pub const MAX_FRAME: usize = 8 * 1024 * 1024 + 64 * 1024;
/// Large READs and WRITEs in flight per connection (each holds up to
/// [`MAX_IO`] bytes).
pub const MAX_DEFERRED: usize = 4;
/// Frames waiting in the channel to the writer, which takes them off at
/// once and counts them (see [`Outflow`]).
const OUT_QUEUE: usize = 8;
/// The inbox reads in chunks of this size, and reserves no more than has
/// arrived of the frame being read (but at least this).
const READ_CHUNK: usize = 64 * 1024;
/// Largest READ/WRITE/transact size the server offers.
pub const MAX_IO: u32 = 8 * 1024 * 1024;
/// Sent to the writer instead of a frame: shut the connection down (an
/// answer completed off the connection's task could not be encoded).
pub const CLOSE_FRAME: Bytes = Bytes::new();

/// An async operation waiting to complete, for CANCEL.
pub struct PendingOp {
    pub message_id: u64,
    pub session_id: u64,
    pub cancel: tokio::sync::oneshot::Sender<()>,
}

/// A binding of an existing session to this connection that is still
/// authenticating ([MS-SMB2] 3.3.5.5.2).
pub struct Binding {
    /// The session being bound.
    pub session: Arc<Session>,
    /// The binding's own authentication: a session object that is never
    /// registered, whose [`AuthState::InProgress`] carries the NTLM exchange
    /// and the binding's preauth hash (3.1.1), so the pipeline updates that
    /// hash with each response as it does for a new session.
    pub auth: Arc<Session>,
}

/// The per-connection state ([MS-SMB2] 3.3.1.7).
pub struct ConnState {
    pub id: u64,
    pub peer: SocketAddr,
    /// The server's address the connection arrived on.
    pub local: Option<SocketAddr>,
    pub server: Arc<Server>,
    /// The door out: whole frames (NetBIOS header included) to the writer.
    pub tx: mpsc::Sender<Bytes>,
    /// The negotiated dialect; 0 before NEGOTIATE.
    pub dialect: u16,
    pub client_guid: [u8; 16],
    pub client_capabilities: u32,
    pub client_security_mode: u16,
    pub client_dialects: Vec<u16>,
    pub server_capabilities: u32,
    pub server_security_mode: u16,
    /// Connection.PreauthIntegrityHashValue (3.1.1).
    pub preauth: PreauthHash,
    /// Negotiated cipher id; 0 when none.
    pub cipher: u16,
    pub signing_alg: SigningAlgorithm,
    /// Sessions set up (or being set up) on this connection, and sessions
    /// bound to it as a channel (Connection.SessionTable).
    pub sessions: HashMap<u64, Arc<Session>>,
    /// Per-channel keys of the sessions bound to this connection: the
    /// session's crypto with Channel.SigningKey and this connection's
    /// signing algorithm ([MS-SMB2] 3.3.5.5.3). Sessions established here
    /// sign with the session's own keys and have no entry.
    pub channels: HashMap<u64, Arc<SessionCrypto>>,
    /// Bindings still authenticating, by session id.
    pub bindings: HashMap<u64, Binding>,
    /// Async operations by async id.
    pub pending: Arc<Mutex<HashMap<u64, PendingOp>>>,
    /// Connection.CommandSequenceWindow: the message ids granted and not
    /// yet used ([MS-SMB2] 3.3.1.1); its span is the most credits the client
    /// may hold.
    pub window: SequenceWindow,
    /// Slots for deferred (large I/O) operations in flight.
    pub io_slots: Arc<tokio::sync::Semaphore>,
    /// Where requests come from.
    pub inbox: Inbox,
    /// A request served while another waited (see [`serve_while`]) asked
    /// to close the connection.
    pub closing: bool,
    /// Failed logons on this connection (`Limits::login_failures_per_connection`).
    pub login_failures: u32,
}

/// The read half of a connection's byte stream (a TCP socket's, or an
/// in-memory pipe's in tests and the fuzzer).
pub type Reader = Box<dyn AsyncRead + Send + Unpin>;
/// The write half of a connection's byte stream.
pub type Writer = Box<dyn AsyncWrite + Send + Unpin>;

/// The replies queued for a connection's writer: counted by the writer,
/// watched by the inbox (back-pressure).
pub struct Outflow {
    meter: ReplyMeter,
    /// Woken when the queue shrinks and when the writer stops.
    changed: Notify,
    /// The writer has stopped: nothing more will be sent.
    stopped: AtomicBool,
}

impl Outflow {
    pub fn new(meter: ReplyMeter) -> Outflow {
        Outflow { meter, changed: Notify::new(), stopped: AtomicBool::new(false) }
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
}

impl Inbox {
    pub fn new(rd: Option<Reader>) -> Inbox {
        let frame_timeout = Duration::from_secs(crate::config::Limits::default().frame_timeout_s);
        Inbox { rd, buf: BytesMut::new(), outflow: None, frame_timeout, frame_started: None, lease: None, last: None }
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
        // The last frame's request is done, unless it took its lease.
        self.last = None;
        loop {
            if let Some(out) = &self.outflow {
                if !out.room().await {
                    return None;
                }
            }
            let big = self.pending_len().filter(|len| (LEASE_FROM..=MAX_FRAME).contains(len));
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
                    return Some(frame);
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
                } else if buf.is_empty() {
                    let n = rd.read(&mut first).await?;
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

/// Makes room in `buf` for the next read: what is left of the frame being
/// read, but never more than has arrived of it already (nor less than
/// [`READ_CHUNK`]), so a header announcing 8 MiB pins nothing until the
/// bytes come.
fn reserve_chunk(buf: &mut BytesMut) {
    let total = (buf.len() >= 4 && buf[0] == 0).then(|| 4 + ((buf[1] as usize) << 16 | (buf[2] as usize) << 8 | buf[3] as usize));
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

/// Resolves when the writer behind `outflow` stops; never without one.
async fn stopped(outflow: &Option<Arc<Outflow>>) {
    match outflow {
        Some(o) => o.stopped().await,
        None => std::future::pending().await,
    }
}

/// A deadline that never comes, for a disabled `select!` branch.
fn far_future() -> Instant {
    Instant::now() + Duration::from_secs(86400 * 365)
}

/// Waits for `done` while serving the connection's other requests, as
/// they come. A request that must wait in the middle of a compound (a
/// CREATE waiting for an oplock break) uses this, so that the break's
/// acknowledgement, which may come from this very connection, is read and
/// handled meanwhile.
pub fn serve_while<'a>(
    conn: &'a mut ConnState,
    done: Pin<Box<dyn Future<Output = ()> + Send + 'a>>,
) -> Pin<Box<dyn Future<Output = ()> + Send + 'a>> {
    // Boxed both ways: the pipeline runs inside this future, which runs
    // inside the pipeline.
    Box::pin(async move {
        let mut done = done;
        loop {
            let frame = tokio::select! {
                biased;
                _ = &mut done => return,
                f = conn.inbox.next_frame(), if !conn.closing => f,
            };
            match frame {
                Some(frame) => {
                    if let Flow::Close = pipeline::handle(conn, frame).await {
                        conn.closing = true;
                    }
                }
                None => conn.closing = true,
            }
        }
    })
}

impl ConnState {
    pub fn new(server: Arc<Server>, peer: SocketAddr, id: u64, tx: mpsc::Sender<Bytes>, inbox: Inbox) -> ConnState {
        ConnState {
            window: SequenceWindow::new(server.cfg.max_credits),
            id,
            peer,
            local: None,
            server,
            tx,
            dialect: 0,
            client_guid: [0; 16],
            client_capabilities: 0,
            client_security_mode: 0,
            client_dialects: Vec::new(),
            server_capabilities: 0,
            server_security_mode: 0,
            preauth: PreauthHash::new(),
            cipher: 0,
            signing_alg: SigningAlgorithm::HmacSha256,
            sessions: HashMap::new(),
            channels: HashMap::new(),
            bindings: HashMap::new(),
            pending: Arc::new(Mutex::new(HashMap::new())),
            io_slots: Arc::new(tokio::sync::Semaphore::new(MAX_DEFERRED)),
            inbox,
            closing: false,
            login_failures: 0,
        }
    }

    pub fn negotiated(&self) -> bool {
        self.dialect != 0
    }

    /// Connection.SupportsMultiCredit ([MS-SMB2] 3.3.5.4): SMB 2.1 and
    /// later over TCP, where the server offers SMB2_GLOBAL_CAP_LARGE_MTU.
    pub fn multi_credit(&self) -> bool {
        self.dialect >= protocol::msg::negotiate::dialect::SMB2_1 && self.dialect != protocol::msg::negotiate::dialect::SMB2_WILDCARD
    }

    /// The MaxReadSize, MaxWriteSize and MaxTransactSize the server offers
    /// (and offered, once negotiated; [MS-SMB2] 3.3.5.4): [`MAX_IO`] with
    /// multi-credit requests, as far as the most credits a client may hold
    /// pay for (64 KiB each); 64 KiB without ([MS-SMB2] 3.3.5.4: a 2.0.2
    /// message carries 64 KiB at most).
    pub fn max_io(&self) -> u32 {
        if self.multi_credit() {
            MAX_IO.min(self.window.max() * protocol::credit::CREDIT_SIZE)
        } else {
            protocol::credit::CREDIT_SIZE
        }
    }

    /// A session reachable from this connection: established on it or bound
    /// to it. Only Connection.SessionTable is looked in ([MS-SMB2]
    /// 3.3.5.2.9); another connection's session is reached by binding, and a
    /// previous session by PreviousSessionId, both in SESSION_SETUP. A
    /// session logged off on another channel is gone here too.
    pub fn session(&self, id: u64) -> Option<Arc<Session>> {
        let s = self.sessions.get(&id)?;
        if matches!(lock(&s.inner).auth, AuthState::Expired) {
            return None;
        }
        Some(s.clone())
    }

    /// The keys that verify and sign a session's messages on this
    /// connection: the channel's for a session bound here ([MS-SMB2]
    /// 3.3.5.2.4, 3.3.4.1.1), else the session's. Encryption always uses the
    /// session's keys.
    pub fn signing_crypto(&self, session: &Session) -> Option<Arc<SessionCrypto>> {
        match self.channels.get(&session.id) {
            Some(c) => Some(c.clone()),
            None => session.crypto(),
        }
    }
}

/// Serves one TCP connection until the peer goes away or sends garbage.
pub async fn serve(server: Arc<Server>, sock: TcpStream, peer: SocketAddr, id: u64) {
    let local = sock.local_addr().ok();
    let (rd, wr) = sock.into_split();
    serve_stream(server, Box::new(rd), Box::new(wr), peer, local, id).await
}

/// Serves one connection over any byte stream: [`serve`] for TCP, an
/// in-memory pipe for the fuzzer ([`crate::fuzzing`]).
pub async fn serve_stream(server: Arc<Server>, rd: Reader, wr: Writer, peer: SocketAddr, local: Option<SocketAddr>, id: u64) {
    debug!("connected");
    let limits = &server.cfg.limits;
    let (tx, rx) = mpsc::channel::<Bytes>(OUT_QUEUE);
    let outflow = Arc::new(Outflow::new(server.resources.reply_meter()));
    let writer = tokio::spawn(write_replies(wr, rx, outflow.clone(), Duration::from_secs(limits.send_timeout_s)));
    let inbox = Inbox::bounded(rd, outflow, Duration::from_secs(limits.frame_timeout_s));
    let mut conn = ConnState::new(server.clone(), peer, id, tx, inbox);
    conn.local = local;
    let handshake = Duration::from_secs(limits.handshake_timeout_s);
    // Since when the connection has had no authenticated session.
    let mut unauthenticated = Some(Instant::now());
    while !conn.closing {
        let deadline = unauthenticated.map(|t| t + handshake);
        let frame = tokio::select! {
            f = conn.inbox.next_frame() => f,
            _ = tokio::time::sleep_until(deadline.unwrap_or_else(far_future)), if deadline.is_some() => {
                info!("closing: no authenticated session for {handshake:?}");
                break;
            }
        };
        let Some(frame) = frame else {
            break;
        };
        if let Flow::Close = pipeline::handle(&mut conn, frame).await {
            break;
        }
        let authenticated = conn.sessions.values().any(|s| s.is_valid());
        unauthenticated = match unauthenticated {
            _ if authenticated => None,
            None => Some(Instant::now()),
            since => since,
        };
    }
    cleanup(&mut conn);
    drop(conn);
    let _ = writer.await;
    info!("disconnected");
}

/// The writer: takes replies off the channel as they come, so that the
/// bytes queued are known (and senders never wait), and writes them in
/// order. Stops when every sender is gone (or a [`CLOSE_FRAME`] came) and
/// all is written, on a write error, or when the client has read nothing
/// for `stall`.
async fn write_replies(mut wr: Writer, mut rx: mpsc::Receiver<Bytes>, out: Arc<Outflow>, stall: Duration) {
    let mut queue: VecDeque<Bytes> = VecDeque::new();
    let mut open = true;
    // The last time the client took any bytes (or the queue was empty).
    let mut progress = Instant::now();
    loop {
        let Some(front) = queue.front().cloned() else {
            if !open {
                break;
            }
            match rx.recv().await {
                Some(f) if f.is_empty() => {
                    debug!("closing: an answer could not be sent");
                    break;
                }
                Some(f) => {
                    out.meter.add(f.len());
                    queue.push_back(f);
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
                Some(f) if f.is_empty() => {
                    debug!("closing: an answer could not be sent");
                    open = false;
                }
                Some(f) => {
                    out.meter.add(f.len());
                    queue.push_back(f);
                }
                None => open = false,
            },
            r = wr.write(&front) => match r {
                Ok(n) if n > 0 => {
                    progress = Instant::now();
                    out.meter.sub(n);
                    if let Some(f) = queue.front_mut() {
                        f.advance(n);
                        if f.is_empty() {
                            queue.pop_front();
                        }
                    }
                    out.changed.notify_one();
                }
                Ok(_) => break,
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
    out.stop();
    // Replies still queued are dropped here (with the I/O slots they hold).
    drop(queue);
    drop(rx);
    let _ = wr.shutdown().await;
}

/// Tears down what the connection owned: pending operations, and each of
/// its sessions (with trees and opens) of which it was the last channel. A
/// session with another channel left lives on ([MS-SMB2] 3.3.7.1).
fn cleanup(conn: &mut ConnState) {
    for (_, op) in lock(&conn.pending).drain() {
        let _ = op.cancel.send(());
    }
    let server = conn.server.clone();
    conn.bindings.clear();
    conn.channels.clear();
    for (sid, session) in conn.sessions.drain() {
        if !leave_channel(&session, conn.id) {
            continue;
        }
        {
            let mut table = lock(&server.sessions);
            if table.get(&sid).is_some_and(|s| Arc::ptr_eq(s, &session)) {
                table.remove(&sid);
            }
        }
        crate::cmd::logoff::disconnect_session(&server, &session);
    }
}

/// Takes a connection off a session's channel list; true when it was the
/// last one (then the session is the caller's to tear down).
pub fn leave_channel(session: &Session, conn_id: u64) -> bool {
    let mut inner = lock(&session.inner);
    inner.channels.retain(|&c| c != conn_id);
    inner.channels.is_empty()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    async fn pair() -> (Inbox, tokio::net::tcp::OwnedWriteHalf) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let client = TcpStream::connect(addr).await.expect("connect");
        let (server, _) = listener.accept().await.expect("accept");
        let (rd, _) = server.into_split();
        let (_, wr) = client.into_split();
        (Inbox::new(Some(Box::new(rd))), wr)
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
}
