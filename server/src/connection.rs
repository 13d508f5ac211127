//! One connection's SMB state ([MS-SMB2] 3.3.1.7): the negotiated
//! dialect and capabilities, the preauth hash, the sessions and channels
//! reachable from it, the credit window, and its async operations. What
//! handlers may read and change of their connection; the serving of the
//! socket itself is [`crate::conn`], the moving of bytes [`crate::transport`].

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use protocol::credit::SequenceWindow;
use protocol::crypto::preauth::PreauthHash;
use protocol::crypto::signing::SigningAlgorithm;
use tokio::sync::mpsc;

use crate::alloc::MAX_DEFERRED;
use crate::state::oplock::Notice;
use crate::state::session::{AuthState, SessionCrypto};
use crate::state::{lock, Server, Session};
use crate::transport::Inbox;
/// What a WRITE handler takes of its data left in the socket
/// ([`ConnState::in_socket`], [`Inbox::lend`]).
pub use crate::transport::{DataInSocket, Loan};

/// Largest READ/WRITE/transact size the server offers.
pub const MAX_IO: u32 = 8 * 1024 * 1024;

/// The rest of a compound chain, to run on the connection's task once the
/// element it waited at is done: the pipeline parks a chain whose CREATE
/// must wait for an oplock break rather than wait in the middle of it
/// ([`crate::pipeline`]), and the connection's task, which read on
/// meanwhile, calls this with its state. The future answers whether the
/// connection goes on. Boxed so that this module need not know the
/// pipeline's types (imports run one way).
pub type Resume = Box<dyn for<'a> FnOnce(&'a mut ConnState) -> Pin<Box<dyn Future<Output = bool> + Send + 'a>> + Send>;

/// An async operation waiting to complete, for CANCEL.
pub struct PendingOp {
    pub message_id: u64,
    pub session_id: u64,
    pub cancel: tokio::sync::oneshot::Sender<()>,
    /// [`crate::handler::Resp::outlives_channel`].
    pub outlives_channel: bool,
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
    /// The writer can send file regions with `sendfile` (a TCP socket):
    /// large READ answers that are neither signed nor encrypted go out so.
    pub sends_files: bool,
    pub server: Arc<Server>,
    /// Whole frames (NetBIOS header included) to the writer; only the
    /// pipeline's door out (its one encoder) sends on it.
    pub tx: mpsc::Sender<crate::transport::Reply>,
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
    /// The data of the WRITE being run whose head alone was read
    /// ([`crate::transport::WriteHead`]): its handler takes it to move it
    /// into the file; left here, it is dropped off the socket.
    pub in_socket: Option<DataInSocket>,
    /// Break notices for this connection's opens, queued by the file
    /// table ([`BreakSink`](crate::state::oplock::BreakSink)); the
    /// connection's task sends them through the pipeline.
    pub notices: mpsc::UnboundedReceiver<Notice>,
    pub notice_tx: mpsc::UnboundedSender<Notice>,
    /// Compound chains parked at an element that waited, whose wait is
    /// over: the connection's task goes on with them (see [`Resume`]).
    pub resumes: mpsc::UnboundedReceiver<Resume>,
    pub resume_tx: mpsc::UnboundedSender<Resume>,
    /// Failed logons on this connection (`Limits::login_failures_per_connection`).
    pub login_failures: u32,
    /// The AAPL server capabilities ([`protocol::msg::aapl::caps`]) this
    /// connection's client was last told, 0 before its first AAPL server
    /// query: what macOS turns on for the whole connection (Samba's
    /// `vfs_fruit` keeps the same per smbd process, one per connection).
    pub aapl: u64,
}

impl ConnState {
    pub fn new(
        server: Arc<Server>,
        peer: SocketAddr,
        id: u64,
        tx: mpsc::Sender<crate::transport::Reply>,
        inbox: Inbox,
    ) -> ConnState {
        let (notice_tx, notices) = mpsc::unbounded_channel();
        let (resume_tx, resumes) = mpsc::unbounded_channel();
        ConnState {
            window: SequenceWindow::new(server.cfg.max_credits),
            id,
            peer,
            local: None,
            sends_files: false,
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
            in_socket: None,
            notices,
            notice_tx,
            resumes,
            resume_tx,
            login_failures: 0,
            aapl: 0,
        }
    }

    pub fn negotiated(&self) -> bool {
        self.dialect != 0
    }

    /// Connection.SupportsMultiCredit ([MS-SMB2] 3.3.5.4): SMB 2.1 and
    /// later over TCP, where the server offers SMB2_GLOBAL_CAP_LARGE_MTU.
    pub fn multi_credit(&self) -> bool {
        self.dialect >= protocol::msg::negotiate::dialect::SMB2_1
            && self.dialect != protocol::msg::negotiate::dialect::SMB2_WILDCARD
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

/// Takes a connection off a session's channel list; true when it was the
/// last one (then the session is the caller's to tear down).
pub fn leave_channel(session: &Session, conn_id: u64) -> bool {
    let mut inner = lock(&session.inner);
    inner.channels.retain(|&c| c != conn_id);
    inner.channels.is_empty()
}
