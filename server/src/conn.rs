//! One task per TCP connection: read frames, hand each to the pipeline,
//! and write what comes back. A second task writes, so that async
//! completions (CHANGE_NOTIFY, blocking locks) can be sent at any time.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use bytes::{BufMut, Bytes, BytesMut};
use protocol::crypto::preauth::PreauthHash;
use protocol::crypto::signing::SigningAlgorithm;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::OwnedReadHalf;
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use crate::pipeline::{self, Flow};
use crate::state::session::{AuthState, SessionCrypto};
use crate::state::{lock, Server, Session};

/// Largest frame accepted: an 8 MiB write plus headers and a transform.
pub const MAX_FRAME: usize = 8 * 1024 * 1024 + 64 * 1024;
/// Large READs and WRITEs in flight per connection (each holds up to
/// [`MAX_IO`] bytes).
pub const MAX_DEFERRED: usize = 4;
/// Frames queued for the writer per connection.
const OUT_QUEUE: usize = 8;
/// Largest READ/WRITE/transact size the server offers.
pub const MAX_IO: u32 = 8 * 1024 * 1024;

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
    /// Credits granted and not yet used.
    pub credits: u32,
    /// Slots for deferred (large I/O) operations in flight.
    pub io_slots: Arc<tokio::sync::Semaphore>,
    /// Where requests come from.
    pub inbox: Inbox,
    /// A request served while another waited (see [`serve_while`]) asked
    /// to close the connection.
    pub closing: bool,
}

/// The connection's incoming side: the socket's read half and the bytes
/// read but not yet framed.
pub struct Inbox {
    rd: Option<OwnedReadHalf>,
    buf: BytesMut,
    /// The I/O budget taken for the large frame being read.
    lease: Option<crate::alloc::Lease>,
    /// The lease of the frame last returned, until the pipeline takes it
    /// (a deferred WRITE holds its frame until written) or the next frame
    /// is asked for.
    last: Option<crate::alloc::Lease>,
}

/// Frames at least this long are read against the I/O budget.
const LEASE_FROM: usize = 256 * 1024;

impl Inbox {
    pub fn new(rd: Option<OwnedReadHalf>) -> Inbox {
        Inbox { rd, buf: BytesMut::with_capacity(128 * 1024), lease: None, last: None }
    }

    /// The length of the frame whose header is at the front, if any.
    fn pending_len(&self) -> Option<usize> {
        match self.buf.get(..4) {
            Some(h) if h[0] == 0 => Some((usize::from(h[1]) << 16) | (usize::from(h[2]) << 8) | usize::from(h[3])),
            _ => None,
        }
    }

    /// Room to read into: for a large frame (`big`, its length), the whole
    /// frame in a buffer of its own, of its size class
    /// ([`crate::alloc::size_class`]); else at least 64 KiB.
    fn make_room(&mut self, big: Option<usize>) {
        match big {
            Some(len) => {
                let want = crate::alloc::size_class(4 + len);
                if self.buf.capacity() < want {
                    // Not `reserve`: it may double a buffer it owns alone.
                    let mut fresh = BytesMut::with_capacity(want);
                    fresh.extend_from_slice(&self.buf);
                    self.buf = fresh;
                }
            }
            None => {
                if self.buf.capacity() - self.buf.len() < 64 * 1024 {
                    self.buf.reserve(256 * 1024);
                }
            }
        }
    }

    /// The I/O budget of the frame last returned by [`Inbox::next_frame`],
    /// for the operation that keeps the frame beyond its request.
    pub fn take_lease(&mut self) -> Option<crate::alloc::Lease> {
        self.last.take()
    }

    /// The next whole frame; `None` once the peer is gone or sent
    /// something that is not a NetBIOS session message. Cancel-safe: a
    /// frame read halfway stays in the buffer. The body of a large frame
    /// is read only once the server's I/O budget has room for it, so that
    /// request data in memory is bounded server-wide ([`crate::alloc`]).
    pub async fn next_frame(&mut self) -> Option<BytesMut> {
        // The last frame's request is done, unless it took its lease.
        self.last = None;
        loop {
            // A large frame gets its lease and its own buffer before any
            // more of it is read (and before `decode` would grow the small
            // buffer to hold it).
            let big = self.pending_len().filter(|len| (LEASE_FROM..=MAX_FRAME).contains(len));
            if let Some(len) = big {
                if self.lease.is_none() {
                    self.lease = Some(crate::alloc::lease(len).await);
                }
                self.make_room(big);
            }
            match protocol::netbios::decode(&mut self.buf, MAX_FRAME) {
                Ok(Some(frame)) => {
                    self.last = self.lease.take();
                    if frame.len() >= LEASE_FROM {
                        // The large buffer leaves with its frame; read on
                        // into a small one (nothing was read past the frame).
                        let mut rest = BytesMut::with_capacity(128 * 1024);
                        rest.extend_from_slice(&self.buf);
                        self.buf = rest;
                    }
                    return Some(frame);
                }
                Ok(None) => {}
                Err(e) => {
                    warn!("closing: {e}");
                    return None;
                }
            }
            if big.is_none() {
                self.make_room(None);
            }
            let rd = self.rd.as_mut()?;
            let read = match big {
                // No further than the frame's end.
                Some(len) => {
                    let left = 4 + len - self.buf.len();
                    rd.read_buf(&mut (&mut self.buf).limit(left)).await
                }
                None => rd.read_buf(&mut self.buf).await,
            };
            match read {
                Ok(0) => return None,
                Ok(_) => {}
                Err(e) => {
                    debug!("read: {e}");
                    return None;
                }
            }
        }
    }
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
            credits: 1,
            io_slots: Arc::new(tokio::sync::Semaphore::new(MAX_DEFERRED)),
            inbox,
            closing: false,
        }
    }

    pub fn negotiated(&self) -> bool {
        self.dialect != 0
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

/// Serves one connection until the peer goes away or sends garbage.
pub async fn serve(server: Arc<Server>, sock: TcpStream, peer: SocketAddr, id: u64) {
    debug!("connected");
    let local = sock.local_addr().ok();
    let (rd, mut wr) = sock.into_split();
    let (tx, mut rx) = mpsc::channel::<Bytes>(OUT_QUEUE);
    let writer = tokio::spawn(async move {
        while let Some(frame) = rx.recv().await {
            if let Err(e) = wr.write_all(&frame).await {
                debug!("write: {e}");
                break;
            }
        }
        let _ = wr.shutdown().await;
    });
    let mut conn = ConnState::new(server.clone(), peer, id, tx, Inbox::new(Some(rd)));
    conn.local = local;
    while !conn.closing {
        let Some(frame) = conn.inbox.next_frame().await else {
            break;
        };
        if let Flow::Close = pipeline::handle(&mut conn, frame).await {
            break;
        }
    }
    cleanup(&mut conn);
    drop(conn);
    let _ = writer.await;
    info!("disconnected");
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
        (Inbox::new(Some(rd)), wr)
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

    /// The body of a large frame is not read while the server's I/O
    /// budget is spent; it is once the budget comes back.
    #[tokio::test]
    async fn a_large_frame_waits_for_the_budget() {
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
        let waiting = tokio::time::timeout(std::time::Duration::from_millis(300), inbox.next_frame()).await;
        assert!(waiting.is_err(), "a large frame was read with no budget left");
        assert!(inbox.buf.capacity() < 1 << 20, "no large buffer before the lease");
        drop(all);
        let f = inbox.next_frame().await.expect("frame");
        assert_eq!(f.len(), len);
        assert!(f.iter().all(|&b| b == 9));
        drop(writer.await.expect("writer"));
    }
}
