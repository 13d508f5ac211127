//! What a command handler is given and what it answers: the contract
//! between the pipeline ([`crate::pipeline`]), which calls handlers, and
//! the handlers ([`crate::cmd`]), which never call back into it.
//!
//! A handler gets a [`Ctx`] (its connection, session, tree and the
//! element's bytes) and returns a [`Resp`] (status, body, and what the
//! pipeline should do besides: go async, sign with new keys, close) or an
//! error status.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};
use protocol::crypto::transform;
use protocol::header::{Header, HEADER_LEN};
use protocol::msg::FileId;
use protocol::NtStatus;

use crate::connection::ConnState;
use crate::model::Delta;
use crate::state::session::SessionCrypto;
use crate::state::{Server, Session, Tree};

/// A future that completes an async operation.
pub type PendingFut = Pin<Box<dyn Future<Output = Result<Resp, NtStatus>> + Send>>;

/// A handler's answer for one element.
pub struct Resp {
    /// SUCCESS or an informational/warning status (BUFFER_OVERFLOW,
    /// MORE_PROCESSING_REQUIRED); errors normally come as `Err(status)`.
    pub status: NtStatus,
    pub body: BytesMut,
    /// The file the element acted on, for related compound elements.
    pub file_id: Option<FileId>,
    /// Go async: send STATUS_PENDING now and this future's result later.
    pub pending: Option<PendingFut>,
    /// The pending future goes on when its connection is lost while its
    /// session has another channel (a CREATE under a CreateGuid, which the
    /// client replays on another channel and must find then): it is not
    /// cancelled with the connection, and its answer, which nobody
    /// receives, still passes point 3.
    pub outlives_channel: bool,
    /// Finish off the connection's task (large READ/WRITE file I/O), so the
    /// connection reads on meanwhile; the answer is sent when done, with no
    /// interim response. Only offered when [`Ctx::single`] is true.
    pub deferred: Option<PendingFut>,
    /// SESSION_SETUP: the session id to put in the response header.
    pub session_id: Option<u64>,
    /// TREE_CONNECT: the tree id to put in the response header.
    pub tree_id: Option<u32>,
    /// SESSION_SETUP: sign the response with these keys (the final leg).
    pub sign_with: Option<Arc<SessionCrypto>>,
    /// SESSION_SETUP: add the response to this session's preauth hash.
    pub preauth_session: Option<Arc<Session>>,
    /// NEGOTIATE: add the response to the connection's preauth hash.
    pub preauth_conn: bool,
    /// Do not send any response (CANCEL).
    pub no_response: bool,
    /// Room allocated in front of `body` (see [`body_with_headroom`]).
    pub headroom: Option<BytesMut>,
    /// The rest of the body, left in a file: a READ's data, sent after
    /// `body` with `sendfile` ([`crate::transport::FileRegion`]). Only in a
    /// deferred answer (the result of [`Resp::deferred`]), and only when
    /// [`Ctx::may_send_file`] was true.
    pub file_data: Option<FileData>,
    /// The deferred answer will carry its data in `file_data`, not in a
    /// buffer: it takes no share of the I/O budget ([`crate::alloc`]).
    pub deferred_in_file: bool,
    /// Close the connection after sending.
    pub close: bool,
    /// What a pending or deferred answer changed in the long-lived state
    /// (the pipeline applies them with the answer, [`crate::state::record`]).
    /// Handlers that answer at once push theirs into [`Ctx::deltas`].
    pub deltas: Vec<Delta>,
    /// A change made at once ([`Server::change_open`]) was one a restart
    /// restores: the answer waits for its point-3 record to be durable (the
    /// log holds the change before it). Handlers that answer at once set
    /// [`Ctx::kept`].
    pub kept: bool,
    /// Keeps the element's operation busy for the journal's retirer
    /// ([`crate::state::retiring::Retirer::busy`]) until this answer is
    /// dropped, after its point 3: an async element that acts after its
    /// wait (a rename after lease breaks) keeps its request in the log.
    pub busy: Option<crate::state::retiring::Busy>,
    /// Run once the answer was handed to the connection's writer: what
    /// must reach the client after it (a reclaimed handle's break notice
    /// that a restart brought back, which the client can only take once it
    /// knows the handle again).
    pub after: Option<Box<dyn FnOnce() + Send>>,
}

impl Resp {
    pub fn ok(body: BytesMut) -> Resp {
        Resp::with_status(NtStatus::SUCCESS, body)
    }

    pub fn with_status(status: NtStatus, body: BytesMut) -> Resp {
        Resp {
            status,
            body,
            file_id: None,
            pending: None,
            outlives_channel: false,
            deferred: None,
            session_id: None,
            tree_id: None,
            sign_with: None,
            preauth_session: None,
            preauth_conn: false,
            no_response: false,
            headroom: None,
            file_data: None,
            deferred_in_file: false,
            close: false,
            deltas: Vec::new(),
            kept: false,
            busy: None,
            after: None,
        }
    }

    /// An error response that carries ErrorData ([MS-SMB2] 2.2.2), e.g.
    /// the buffer size a STATUS_BUFFER_TOO_SMALL caller needs.
    pub fn error_with_data(status: NtStatus, data: &[u8]) -> Resp {
        let mut body = BytesMut::with_capacity(8 + data.len().max(1));
        body.put_u16_le(9);
        body.put_u8(0); // ErrorContextCount
        body.put_u8(0);
        body.put_u32_le(data.len() as u32);
        if data.is_empty() {
            body.put_u8(0);
        } else {
            body.put_slice(data);
        }
        Resp::with_status(status, body)
    }

    pub fn file(mut self, id: FileId) -> Resp {
        self.file_id = Some(id);
        self
    }
}

/// Bytes of an open's file that end an answer's body ([`Resp::file_data`]):
/// `len` of them from `offset`, all there when the answer was made.
pub struct FileData {
    pub open: Arc<crate::state::Open>,
    pub offset: u64,
    pub len: usize,
}

/// What a handler result is.
pub type HResult = Result<Resp, NtStatus>;

/// Everything a handler may look at for one element.
pub struct Ctx<'a> {
    pub server: &'a Arc<Server>,
    pub conn: &'a mut ConnState,
    pub hdr: &'a Header,
    /// This element's bytes, header included.
    pub msg: &'a [u8],
    /// The same bytes, shared, for handlers that keep a payload (WRITE).
    pub frame: &'a Bytes,
    /// The element is the whole request (not part of a compound), so the
    /// handler may answer with [`Resp::deferred`].
    pub single: bool,
    pub session: Option<Arc<Session>>,
    pub tree: Option<Arc<Tree>>,
    /// The request came inside a transform header.
    pub encrypted: bool,
    /// The answer will go out neither signed nor encrypted, alone in its
    /// frame, on a connection whose writer sends file regions: a large
    /// READ may leave its data in the file ([`Resp::file_data`]).
    pub may_send_file: bool,
    /// For related compound elements: the file id the previous element used.
    pub chain_file_id: Option<FileId>,
    /// The journal's operation and this element's index in it, for a
    /// handler that records what it decided before it changes anything
    /// ([`crate::journal::Journal::decided`]).
    pub op: (crate::journal::OpId, usize),
    /// The ticket of this element's point-2 record: a handler whose change
    /// a restore (or a takeover) must be able to undo or follow waits for
    /// it ([`crate::journal::Journal::durable`]) before it changes anything
    /// on disk (an exclusive CREATE under a CreateGuid, a rename).
    pub point2: crate::journal::Ticket,
    /// What the element changed in the long-lived state, in order: the
    /// pipeline journals them with the response (point 3) and applies them
    /// to the state model ([`crate::state::record`]).
    pub deltas: Vec<Delta>,
    /// A change the element made at once ([`Server::change_open`]) was one
    /// a restart restores: its answer waits for its point-3 record to be
    /// durable ([`Resp::kept`]).
    pub kept: bool,
}

impl Ctx<'_> {
    /// The session, which the pipeline has checked is valid.
    pub fn session(&self) -> Result<&Arc<Session>, NtStatus> {
        self.session.as_ref().ok_or(NtStatus::USER_SESSION_DELETED)
    }

    pub fn tree(&self) -> Result<&Arc<Tree>, NtStatus> {
        self.tree.as_ref().ok_or(NtStatus::NETWORK_NAME_DELETED)
    }

    /// Resolves a request's file id: the chained one for related elements
    /// that pass the all-ones id.
    pub fn file_id(&self, id: FileId) -> Result<FileId, NtStatus> {
        if id == FileId::ANY && self.hdr.is_related() {
            return self.chain_file_id.ok_or(NtStatus::FILE_CLOSED);
        }
        Ok(id)
    }

    /// Looks an open up by file id in this session and tree, and verifies
    /// the request's ChannelSequence against it ([`Ctx::verify_channel`]).
    pub fn open(&mut self, id: FileId) -> Result<Arc<crate::state::Open>, NtStatus> {
        let open = self.find_open(id)?;
        self.verify_channel(&open, false, |_| ())?;
        Ok(open)
    }

    /// [`Ctx::open`] for an I/O of `len` bytes at `offset` (`write`: a
    /// write), saying besides whether a byte-range lock refuses it
    /// ([`crate::model::FileRecord::io_conflict`]). While the model holds no
    /// lock at all this reads nothing more; else the file's locks are read
    /// under the same hold of the model's lock as the ChannelSequence check
    /// (on SMB 2.x, one of its own), so that a READ or WRITE takes the
    /// model's lock at most once ([`crate::state::byte_locks`]).
    pub fn open_for_io(
        &mut self,
        id: FileId,
        offset: u64,
        len: u64,
        write: bool,
    ) -> Result<(Arc<crate::state::Open>, bool), NtStatus> {
        let open = self.find_open(id)?;
        let reads = len > 0 && self.server.has_byte_locks();
        let conflict = self.verify_channel(&open, reads, |o| {
            o.is_some_and(|(m, o)| {
                m.file(o.id().set(), o.info().file).is_some_and(|f| f.io_conflict(o.id(), offset, len, write))
            })
        })?;
        Ok((open, conflict))
    }

    /// [`Ctx::open`], reading the open's record in the model too (`None`
    /// for an open the model does not have) under the same hold of the
    /// model's lock as the ChannelSequence check (on SMB 2.x, one of its
    /// own): what a CLOSE reads of its open costs no second hold.
    pub fn open_reading<R>(
        &mut self,
        id: FileId,
        read: impl FnOnce(Option<&crate::model::OpenRecord>) -> R,
    ) -> Result<(Arc<crate::state::Open>, R), NtStatus> {
        let open = self.find_open(id)?;
        let r = self.verify_channel(&open, true, |o| read(o.map(|(_, o)| o)))?;
        Ok((open, r))
    }

    /// Verifying the Channel Sequence Number ([MS-SMB2] 3.3.5.2.10), for an
    /// SMB 3.x request that names an open: a ChannelSequence up to 0x7FFF
    /// ahead of Open.ChannelSequence (in 16-bit arithmetic) becomes the
    /// open's; one behind it is stale, and a stale WRITE, SET_INFO or
    /// IOCTL fails with STATUS_FILE_NOT_AVAILABLE (the client has moved to
    /// another channel; an old request must not overwrite newer data).
    /// Other commands go on. A request with SMB2_FLAGS_REPLAY_OPERATION is
    /// held to the same rule: Duet does not count outstanding requests
    /// (Open.OutstandingRequestCount), so a replay with the current
    /// ChannelSequence is let through as if none were outstanding.
    ///
    /// The request also ends the open's replay eligibility (3.3.5.9.10): a
    /// replayed CREATE after it makes a new open, as smbd does (smbtorture
    /// replay.replay6).
    ///
    /// `read` reads the open's record in the model (and the model it is
    /// in) meanwhile; on SMB 2.x,
    /// which checks nothing, the model's lock is taken for it only when
    /// `reads` (else `read` gets `None`).
    fn verify_channel<R>(
        &mut self,
        open: &crate::state::Open,
        reads: bool,
        read: impl FnOnce(Option<(&crate::model::Model, &crate::model::OpenRecord)>) -> R,
    ) -> Result<R, NtStatus> {
        let pid = crate::model::PersistentFileId(open.persistent_id);
        if self.conn.dialect < protocol::msg::negotiate::dialect::SMB3_0 {
            let recorded = reads && open.key.is_some();
            return Ok(if recorded {
                self.server.with_model(|m| read(m.open(pid).map(|o| (m, o))))
            } else {
                read(None)
            });
        }
        let seq = self.hdr.channel_sequence();
        let command = self.hdr.command();
        if open.key.is_none() {
            // A pipe: the model does not record it.
            let mut st = crate::state::lock(&open.st);
            let (raise, verdict) = channel_step(st.pipe_channel_sequence, seq, command);
            if raise {
                st.pipe_channel_sequence = seq;
            }
            return verdict.map(|()| read(None));
        }
        // One hold of the model's lock: read, decide, change.
        let (verdict, kept) = self.server.change_model(|m| {
            let o = m.open(pid);
            // Not in the model yet: no client can name it (see `state::fields`).
            let Some(o) = o else {
                return (Ok(read(None)), Vec::new());
            };
            let mut changes = Vec::new();
            if o.info().replay_eligible && command != Some(protocol::header::Command::Create) {
                changes.push(Delta::ReplayIneligible { open: pid });
            }
            let (raise, verdict) = channel_step(o.channel_sequence(), seq, command);
            if raise {
                changes.push(Delta::ChannelSequenceSet { open: pid, sequence: seq });
            }
            (verdict.map(|()| read(Some((m, o)))), changes)
        });
        self.kept |= kept;
        verdict
    }

    /// Looks an open up by file id in this session and tree.
    pub fn find_open(&self, id: FileId) -> Result<Arc<crate::state::Open>, NtStatus> {
        let id = self.file_id(id)?;
        let session = self.session()?;
        let open = session.open(id.volatile).ok_or(NtStatus::FILE_CLOSED)?;
        if open.persistent_id != id.persistent {
            return Err(NtStatus::FILE_CLOSED);
        }
        if let Some(t) = &self.tree {
            if open.tree.id != t.id {
                return Err(NtStatus::FILE_CLOSED);
            }
        }
        Ok(open)
    }
}

/// [`Ctx::verify_channel`]'s rule, from the open's ChannelSequence
/// `current` and the request's `seq`: whether `seq` becomes the open's (up
/// to 0x7FFF ahead, in 16-bit arithmetic), and the verdict (one behind is
/// stale: a WRITE, SET_INFO or IOCTL fails with STATUS_FILE_NOT_AVAILABLE).
fn channel_step(current: u16, seq: u16, command: Option<protocol::header::Command>) -> (bool, Result<(), NtStatus>) {
    use protocol::header::Command;
    let ahead = seq.wrapping_sub(current);
    if ahead <= 0x7FFF {
        return (ahead != 0, Ok(()));
    }
    match command {
        Some(Command::Write | Command::SetInfo | Command::Ioctl) => (false, Err(NtStatus::FILE_NOT_AVAILABLE)),
        _ => (false, Ok(())),
    }
}

/// Room in front of a frame's first message: the NetBIOS header (4) and a
/// transform header (52), so that a frame is encrypted in place.
pub const FRAME_ROOM: usize = 4 + transform::TRANSFORM_HEADER_LEN;

/// Room in front of a body for the NetBIOS (4), transform (52) and SMB2
/// (64) headers.
pub const HEADROOM: usize = FRAME_ROOM + HEADER_LEN;

/// A body buffer with [`HEADROOM`] in front of it, for large responses
/// (READ): returns (headroom, body); put the headroom in [`Resp::headroom`].
pub fn body_with_headroom(capacity: usize) -> (BytesMut, BytesMut) {
    let mut b = BytesMut::with_capacity(HEADROOM + capacity);
    b.resize(HEADROOM, 0);
    let body = b.split_off(HEADROOM);
    (b, body)
}
