//! The request pipeline: the one door in and the one door out.
//!
//! **The door in** is [`handle`]: every frame read off a connection enters
//! there, and nothing else runs a request. In between: the transform
//! (decryption), compound splitting, session/tree lookup, signature checks,
//! dispatch to the command handlers in [`crate::cmd`], and on the way out
//! credits, signing and encryption. Every request's MessageIds are checked
//! against the connection's sequence window before anything of the frame
//! runs ([`use_message_ids`]), and a compound's answers together stay
//! within [`MAX_COMPOUND_RESPONSE`]. Handlers never write to the journal
//! or the socket themselves, and never call back into the pipeline: an
//! element that must wait goes async, or waits in its handler without
//! reading the connection.
//!
//! **The door out** is [`encode_frame`]: every frame that leaves is
//! encoded, signed and encrypted there, and every one passes the journal's
//! points 3 (before it is handed to the writer) and 4 (after); point 1 is
//! taken at the top of [`process`] and point 2 before each element's
//! dispatch (DESIGN.md, [`crate::journal`]). The paths by which a frame
//! leaves, all of them:
//!
//! 1. A request's answers, as one frame (`run_chain`, `send_elements`):
//!    the answers of a chain's elements, and the interim STATUS_PENDING
//!    answer of the element that goes async ([MS-SMB2] 3.3.4.2). Point 3
//!    per answered element, point 4 once the request's last answer is out.
//! 2. An async operation's final answer (`spawn_pending`: CHANGE_NOTIFY,
//!    blocking LOCK, a CREATE waiting for a break as the last element),
//!    from the operation's own task, with no credits (the interim had
//!    them); then its points 3 and 4.
//! 3. A parked chain's rest (`park`, `resume`): a CREATE in the middle of
//!    a compound that waits for an oplock or lease break, or a SET_INFO
//!    there whose rename waits for lease breaks ([`may_park`]), sends the
//!    answers before it and its interim answer (path 1) and parks the
//!    rest of the chain with its state (session, tree, file, encryption,
//!    op id, element index). Its wait runs in a task, and when it ends the
//!    connection's task, which read on meanwhile (the acknowledgement may
//!    come from this very connection), runs the rest of the chain: its
//!    final answer heads the frame of the answers after it, as smbd does
//!    (`smbd_smb2_request_pending_queue`; [MS-SMB2] 3.3.5.2.7 leaves it
//!    to the server whether an element of a compound may go async).
//! 4. A deferred answer (`spawn_deferred`: large READ and WRITE file I/O
//!    off the connection's task, no interim), with points 3 and 4 in its
//!    task.
//! 5. A break notice ([`send_notice`]): the file table queues it, as
//!    plain data, for the holder's connection
//!    ([`crate::state::oplock::Notice`]); that connection's task sends it
//!    after the table's lock is long released, under an op id of its own
//!    ([`crate::journal::Journal::unsolicited`]) with points 3 and 4, and
//!    before any answer it sends next (`send_elements`), so a break a
//!    request caused precedes that request's answer. A notice that must
//!    follow an answer (a break in progress at a restart, sent again to
//!    the holder that reclaims its handle) is queued by the answer's
//!    [`Resp::after`], once the answer was handed to the writer.
//! 6. The SMB2 answer to an SMB1 NEGOTIATE (`smb1`), through
//!    `send_elements`, with all four points.
//!
//! An answer that cannot be encoded closes the connection (the writer's
//! [`crate::transport::CLOSE_FRAME`]); nothing else writes to the socket.

use std::sync::Arc;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use protocol::crypto::transform;
use protocol::header::{self, flags, Command, Header, HEADER_LEN};
use protocol::msg::FileId;
use protocol::NtStatus;
use tracing::{debug, trace, warn, Instrument};

use crate::cmd;
use crate::connection::{ConnState, PendingOp, Resume};
use crate::handler::{Ctx, PendingFut, Resp, FRAME_ROOM, HEADROOM};
use crate::journal::{self, OpId, ReplayKey, Ticket};
use crate::pair::fence::Mark;
use crate::state::oplock::Notice;
use crate::state::session::SessionCrypto;
use crate::state::{lock, Server, Session};
use crate::transport::Reply;

/// Whether the connection goes on.
pub enum Flow {
    Continue,
    Close,
}

/// One element of the response chain.
struct OutElement {
    hdr: Header,
    body: BytesMut,
    headroom: Option<BytesMut>,
    sign: Option<Arc<SessionCrypto>>,
    preauth_session: Option<Arc<Session>>,
    preauth_conn: bool,
}

/// The door in: one whole frame off the socket.
pub async fn handle(conn: &mut ConnState, frame: BytesMut) -> Flow {
    if frame.len() < 4 {
        return Flow::Close;
    }
    match &frame[0..4] {
        [0xFF, b'S', b'M', b'B'] => return smb1(conn, &frame).await,
        [0xFD, b'S', b'M', b'B'] => {
            let Some((plain, crypto, session_id)) = decrypt(conn, frame) else {
                debug!("undecryptable transform: closing");
                return Flow::Close;
            };
            if names_another_session(conn, &plain, session_id) {
                warn!(session = session_id, "an encrypted request names another session: closing");
                return Flow::Close;
            }
            process(conn, plain, true, Some((crypto, session_id)), false).await
        }
        [0xFE, b'S', b'M', b'B'] => process(conn, frame.freeze(), false, None, false).await,
        _ => {
            debug!("unknown protocol id: closing");
            Flow::Close
        }
    }
}

/// The door in for a large WRITE whose head alone was read
/// ([`crate::transport::WriteHead`]): when its data can go from the socket
/// into the file as it is ([`data_may_stay_in_socket`]), the WRITE runs on
/// its head, and its handler moves the data ([`cmd::write`]); data that no
/// handler took (the WRITE failed before) is dropped off the socket after
/// the answer. Otherwise the rest of the frame is read and it runs as any
/// other.
pub async fn handle_write_head(conn: &mut ConnState, mut h: crate::transport::WriteHead) -> Flow {
    let slot = match data_may_stay_in_socket(conn, &h) {
        true => conn.server.splicing.clone().try_acquire_owned().ok(),
        false => None,
    };
    if slot.is_none() {
        return match conn.inbox.complete(h).await {
            Some(frame) => handle(conn, frame).await,
            None => Flow::Close,
        };
    }
    h.data.slot = slot;
    conn.in_socket = Some(h.data);
    let flow = process(conn, h.head.freeze(), false, None, true).await;
    if let Some(d) = conn.in_socket.take() {
        conn.inbox.skip(d.rest);
    }
    flow
}

/// Whether a WRITE's data may go from the socket into its file without
/// passing through memory: the answer is neither signed nor encrypted
/// (the same choices as [`run_chain`]'s; a signature covers the data), on
/// a valid session of this connection, in a tree that does not require
/// encryption; the open is a file's, not a named stream's, written at
/// offsets (not append-only: an append records where its data went with
/// its digest, [`crate::journal::Decision`]); and the journal does not keep
/// the data in its point-1 record ([`crate::journal::WriteData`]). Anything
/// that would refuse the WRITE later (access, locks, range, space) is the
/// handler's, which answers it with the data dropped off the socket.
fn data_may_stay_in_socket(conn: &ConnState, h: &crate::transport::WriteHead) -> bool {
    use crate::state::files::access;
    use crate::state::open::OpenKind;
    let Ok(hdr) = Header::parse(&h.head) else {
        return false;
    };
    let len = h.data.len();
    let server = &conn.server;
    let journal_ok =
        !server.journal.keeps_replies() || server.journal.write_data(len) != crate::journal::WriteData::InRecord;
    if !conn.sends_files || !conn.negotiated() || len > conn.max_io() as usize || !journal_ok {
        return false;
    }
    let Some(session) = conn.session(hdr.session_id) else {
        return false;
    };
    if !session.is_valid()
        || signing_for(conn, &hdr, false).is_some()
        || encryption_for_hdr(conn, &hdr).is_some()
        || conn.signing_crypto(&session).is_some_and(|c| c.encrypt_data && conn.dialect >= 0x0300)
    {
        return false;
    }
    let Some(tree) = session.tree(hdr.tree_id) else {
        return false;
    };
    if tree.encrypt {
        return false;
    }
    let Ok((req, _)) = protocol::msg::write::WriteRequest::parse_head(&h.head) else {
        return false;
    };
    let Some(open) = session.open(req.file_id.volatile) else {
        return false;
    };
    if open.persistent_id != req.file_id.persistent || open.tree.id != tree.id || open.is_dir {
        return false;
    }
    let OpenKind::Fs(handle) = &open.kind else {
        return false;
    };
    !handle.is_stream() && open.access & access::FILE_WRITE_DATA != 0
}

/// An SMB1 NEGOTIATE that offers SMB2 gets the SMB2 negotiate upgrade
/// ([MS-SMB2] 3.3.5.3.1); anything else SMB1 closes the connection.
async fn smb1(conn: &mut ConnState, frame: &[u8]) -> Flow {
    if conn.negotiated() {
        return Flow::Close;
    }
    match protocol::msg::negotiate::smb1_negotiate_offers_smb2(frame) {
        Some(true) => {
            let wildcard = frame.windows(9).any(|w| w == b"SMB 2.???");
            let hdr = Header { command: Command::Negotiate as u16, ..Default::default() };
            let server = conn.server.clone();
            let conn_id = conn.id;
            let Some(op) = point1(&server, conn_id, frame).await else {
                return Flow::Close;
            };
            // Its MessageId counts as 0 ([MS-SMB2] 3.3.5.2.3).
            if let Err(e) = conn.window.consume(0, 1) {
                debug!("SMB1 negotiate: {e}: closing");
                return Flow::Close;
            }
            if let Err(e) = journal::with_backoff(|| server.journal.pre_command(op, 0)).await {
                warn!("journal, point 2: {e}: closing");
                return Flow::Close;
            }
            let mut resp = cmd::negotiate::smb1_upgrade(conn, wildcard);
            if !point3_final(&server, op, 0, &mut resp).await {
                return Flow::Close;
            }
            let mut out = Vec::new();
            let mut h = hdr.response(resp.status);
            h.credits = conn.window.grant(1);
            out.push(OutElement {
                hdr: h,
                body: resp.body,
                headroom: None,
                sign: None,
                preauth_session: None,
                preauth_conn: false,
            });
            if send_elements(conn, out, None, op).await {
                Flow::Continue
            } else {
                Flow::Close
            }
        }
        _ => Flow::Close,
    }
}

/// Decrypts a transform ([MS-SMB2] 3.3.5.2.1.1): the session its header
/// names must be in Connection.SessionTable and have keys; an anonymous or
/// guest session has none (its keys would come from a session key anyone
/// knows), and an encrypted request on one closes the connection, as the
/// section says the server SHOULD. `None` closes the connection. The frame
/// is decrypted in its own buffer; the plaintext is the same buffer past
/// the transform header.
fn decrypt(conn: &ConnState, mut frame: BytesMut) -> Option<(Bytes, Arc<SessionCrypto>, u64)> {
    let th = transform::TransformHeader::parse(&frame).ok()?;
    let session = conn.session(th.session_id)?;
    {
        let inner = lock(&session.inner);
        if inner.unauthenticated() {
            return None;
        }
    }
    let crypto = session.crypto()?;
    if crypto.decryption_key.is_empty() {
        return None;
    }
    crypto.decrypt_in_place(&mut frame).ok()?;
    frame.advance(transform::TRANSFORM_HEADER_LEN);
    Some((frame.freeze(), crypto, th.session_id))
}

/// True when an element of a decrypted message names a session of this
/// connection other than the transform header's `sid`. The key says who
/// sent the message, so each element must run as that session ([MS-SMB2]
/// 3.3.5.2.1.1, Request.TransformSessionId 3.3.1.13): otherwise a session
/// whose key anyone can compute (an anonymous one, before it had none)
/// would carry requests naming a victim's session and tree, past its
/// required signing and encryption. The caller closes the connection.
///
/// A related element (not the first) with SessionId 0xFFFFFFFFFFFFFFFF
/// inherits the previous element's session (3.3.5.2.7.2). An element naming
/// a session that this connection does not have (nor is binding) runs as
/// nobody: it gets STATUS_USER_SESSION_DELETED like any other (3.3.5.2.9),
/// as on Windows and Samba (smbtorture smb2.compound.invalid2, encrypted,
/// sends unrelated elements with SessionId all ones). Malformed chains are
/// left to [`process`].
fn names_another_session(conn: &ConnState, msg: &[u8], sid: u64) -> bool {
    let mut at = 0usize;
    let mut first = true;
    loop {
        let Some(rest) = msg.get(at..) else {
            return false;
        };
        let Ok(hdr) = Header::parse(rest) else {
            return false;
        };
        let inherits = !first && hdr.is_related() && hdr.session_id == u64::MAX;
        let id = hdr.session_id;
        if !inherits && id != sid && (conn.sessions.contains_key(&id) || conn.bindings.contains_key(&id)) {
            return true;
        }
        first = false;
        let n = hdr.next_command as usize;
        if n == 0 || !n.is_multiple_of(8) || n < HEADER_LEN {
            return false;
        }
        at += n;
    }
}

/// A request's chain (one element, or a compound's) on its way through
/// the pipeline: the message, how far it has got, and what its related
/// elements inherit ([MS-SMB2] 3.3.5.2.7.2). Owned, so that a chain can be
/// parked at an element that must wait and resumed later ([`park`]).
struct Chain {
    msg: Bytes,
    op: OpId,
    /// A WRITE's head whose data is in the socket ([`handle_write_head`]):
    /// it has no replay key ([`journal::spliced_write`]).
    spliced: bool,
    /// The [`journal::write_digest`] point 1 took of a lone WRITE's data.
    write_digest: Option<u64>,
    encrypted: bool,
    /// The transform's keys and session: the answers are encrypted with them.
    encrypt_reply: Option<(Arc<SessionCrypto>, u64)>,
    /// Where the next element starts, and its index.
    at: usize,
    index: usize,
    /// The answers of the elements so far, in bytes ([`MAX_COMPOUND_RESPONSE`]).
    answered: usize,
    file_id: Option<FileId>,
    session: Option<u64>,
    tree: Option<u32>,
    invalid: bool,
    create_err: Option<NtStatus>,
    /// An element asked to close the connection after its answer.
    close: bool,
}

impl Chain {
    /// What an element's answer leaves for the related elements after it.
    fn note(&mut self, hdr: &Header, hdr_eff: &Header, related: bool, resp: &Resp) {
        // The file an unrelated element names (if it got one) starts the
        // chain; a failed related element leaves the chain's file alone.
        if !related || resp.file_id.is_some() {
            self.file_id = resp.file_id;
        }
        if hdr.command == Command::Create as u16 {
            // A CREATE that opened nothing failed, whatever the severity of
            // its status (STATUS_INVALID_EA_NAME is a warning). A pending
            // one is noted here only when it ends the chain.
            let failed = resp.status.is_error() || (resp.file_id.is_none() && resp.status != NtStatus::SUCCESS);
            self.create_err = failed.then_some(resp.status);
        }
        if matches!(resp.status, NtStatus::USER_SESSION_DELETED | NtStatus::NETWORK_NAME_DELETED) {
            // Later related elements have no session or tree to inherit.
            self.invalid = true;
        }
        self.session = Some(resp.session_id.unwrap_or(hdr_eff.session_id));
        self.tree = Some(resp.tree_id.unwrap_or(hdr_eff.tree_id));
    }
}

/// The element a chain is parked at: a CREATE in the middle of a compound
/// that waits for an oplock or lease break, or a SET_INFO whose rename
/// waits for lease breaks ([`park`], [`may_park`]).
struct Waiting {
    hdr: Header,
    hdr_eff: Header,
    related: bool,
    index: usize,
    /// Its final answer's header: async, no credits (the interim had them).
    final_hdr: Header,
    sign: Option<Arc<SessionCrypto>>,
    async_id: u64,
}

/// Splits a (possibly compound) message, runs each element, sends the
/// responses as one frame.
async fn process(
    conn: &mut ConnState,
    msg: Bytes,
    encrypted: bool,
    transform_session: Option<(Arc<SessionCrypto>, u64)>,
    spliced: bool,
) -> Flow {
    let server = conn.server.clone();
    // Point 1. A full journal holds the connection back (nothing more is read
    // or answered) until the record fits; any other failure ends it.
    let conn_id = conn.id;
    let (recorded, write_digest) = if spliced {
        match journal::spliced_write(&msg) {
            Some(r) => (std::borrow::Cow::Owned(r), None),
            None => return Flow::Close,
        }
    } else {
        point1_bytes(&server, &msg)
    };
    let Some(op) = point1(&server, conn_id, &recorded).await else {
        return Flow::Close;
    };
    drop(recorded);
    if let Err(e) = use_message_ids(conn, &msg) {
        // A replayed request, or one beyond the credits granted: the
        // server SHOULD terminate the connection ([MS-SMB2] 3.3.5.2.3).
        warn!("{e}: closing");
        return Flow::Close;
    }
    let chain = Chain {
        msg,
        op,
        spliced,
        write_digest,
        encrypted,
        encrypt_reply: transform_session,
        at: 0,
        index: 0,
        answered: 0,
        file_id: None,
        session: None,
        tree: None,
        invalid: false,
        create_err: None,
        close: false,
    };
    run_chain(conn, chain, Vec::new()).await
}

/// Runs a chain's elements from where it stands, and sends their answers
/// after `out` (the answers it already has) as one frame. Stops early at a
/// CREATE in the middle that must wait: its interim answer goes out with
/// the others and the rest of the chain is parked ([`park`]).
async fn run_chain(conn: &mut ConnState, mut c: Chain, mut out: Vec<OutElement>) -> Flow {
    let server = conn.server.clone();
    let _in_flight = server.in_flight.enter();
    // The last point-3 record of the frame that changed something: durable,
    // it covers the frame's earlier records too (see `journal`).
    let mut durable_before_answer = Ticket::DURABLE;
    let msg = c.msg.clone();
    let mut pending_tasks = Vec::new();
    let mut deferred_tasks = Vec::new();
    let mut waiting = None;
    // What runs once this frame was handed to the writer ([`Resp::after`]).
    let mut after = Vec::new();
    loop {
        let rest = &msg[c.at..];
        let Ok(hdr) = Header::parse(rest) else {
            return Flow::Close;
        };
        let len = if hdr.next_command == 0 {
            rest.len()
        } else {
            let n = hdr.next_command as usize;
            if !n.is_multiple_of(8) || n < HEADER_LEN || n > rest.len() {
                return Flow::Close;
            }
            n
        };
        let elem = msg.slice(c.at..c.at + len);
        let first = out.is_empty();
        // Related elements inherit session, tree and file from the previous one.
        let related = hdr.is_related() && !first;
        let mut hdr_eff = hdr.clone();
        if related {
            if hdr.session_id == u64::MAX {
                hdr_eff.session_id = c.session.unwrap_or(0);
            }
            if hdr.tree_id == u32::MAX {
                hdr_eff.tree_id = c.tree.unwrap_or(0);
            }
        }
        let mut resp_hdr = hdr_eff.response(NtStatus::SUCCESS);
        resp_hdr.flags = flags::SERVER_TO_REDIR | (hdr.flags & flags::RELATED_OPERATIONS);
        if hdr.is_async() {
            resp_hdr.flags |= flags::ASYNC_COMMAND;
            resp_hdr.async_id = hdr.async_id;
        }
        // The element's replay key, when its answer is saved for a replay
        // (DESIGN.md, "Exactly once"); with a lone WRITE's digest, if point 1
        // took it (its frame is this element).
        let replay_key = if server.journal.keeps_replies() && ReplayKey::saves_answer(&hdr) && !c.spliced {
            let digest = if c.index == 0 && hdr.next_command == 0 { c.write_digest } else { None };
            ReplayKey::of_digested(&hdr, &elem, if related { c.file_id } else { None }, digest)
                .filter(ReplayKey::answered_from_saved)
        } else {
            None
        };
        let mut busy = false;
        let result = if hdr.is_related() && first {
            // The first element cannot be related ([MS-SMB2] 3.3.5.2.7.2).
            c.invalid = true;
            Err(NtStatus::INVALID_PARAMETER)
        } else if related && c.invalid {
            Err(NtStatus::INVALID_PARAMETER)
        } else if let (true, Some(err)) = (related, c.create_err) {
            // A failed CREATE fails the related elements after it.
            Err(err)
        } else {
            if !related {
                c.invalid = false;
                c.create_err = None;
            }
            let (op, index) = (c.op, c.index);
            let point2 = match journal::with_backoff(|| server.journal.pre_command(op, index)).await {
                Ok(t) => t,
                Err(e) => {
                    warn!("journal, point 2: {e}: closing");
                    return Flow::Close;
                }
            };
            crate::failpoint::hit("point2");
            // A request that is not a replay uses its key anew: an answer
            // saved under it is an older request's (lock sequence numbers
            // wrap), and must not answer a replay of this one.
            if let Some(key) = replay_key.as_ref().filter(|_| !ReplayKey::flagged(&hdr)) {
                server.journal.forget(key);
            }
            // Fencing (DESIGN.md, "Leases"): a pair member carries out no element
            // without its lease. A node resumed from a freeze finds it run out and
            // waits for its storage heartbeat to renew it, which it does not once
            // the partner claimed the set: the connection closes, nothing is done.
            if let Some(lease) = &server.lease {
                if !lease.admits(std::time::Instant::now()) && !lease.wait_valid().await {
                    warn!("no lease on our share set (it was taken over, or storage is stalled): closing");
                    return Flow::Close;
                }
            }
            let single = first && hdr.next_command == 0;
            if let Err(status) = check_answer_room(conn, &hdr, &elem, c.answered) {
                Err(status)
            } else {
                // Its records stay in the journal until its point 3 (below).
                server.retirer.busy(op);
                busy = true;
                let chain = if related { c.file_id } else { None };
                // The lease is checked again right before each change on disk
                // (`pair::fence`): an element held up past it changes nothing,
                // and its connection closes with no answer and no point 3.
                let fence = Mark::take(server.lease.as_ref());
                let r =
                    run_element(conn, &server, &hdr_eff, &elem, c.encrypted, chain, single, (op, index), point2).await;
                if fence.crossed() {
                    warn!(mid = hdr.message_id, "a change on disk was fenced (no lease on our share set): closing");
                    return Flow::Close;
                }
                r
            }
        };
        let last = hdr.next_command == 0;
        let mut resp = match result {
            // The server MAY fail an element of a compound that would go
            // async ([MS-SMB2] 3.3.5.2.7): the last one may, and a CREATE
            // or a rename that waits for a break parks the chain ([`park`],
            // [`may_park`]); any other in the middle fails, as on Windows
            // and in smbd (smbd_smb2_request_pending_queue).
            Ok(r) if r.pending.is_some() && !last && !may_park(hdr.command) => error_resp(NtStatus::INTERNAL_ERROR),
            // Too many requests of this connection wait already ([MS-SMB2]
            // 3.3.4.2: the server MAY fail one that would go async).
            Ok(r)
                if r.pending.is_some() && lock(&conn.pending).len() >= server.cfg.limits.max_pending_per_connection =>
            {
                debug!(mid = hdr.message_id, "too many pending requests");
                error_resp(NtStatus::INSUFFICIENT_RESOURCES)
            }
            Ok(r) => r,
            Err(status) => error_resp(status),
        };
        let index = c.index;
        c.index += 1;
        c.answered += HEADER_LEN + resp.body.len() + 8;
        // Point 3, before anything of the answer is sent. A pending element's
        // interim answer is not its response: it is not kept for replay (its
        // final answer gets a point 3 of its own, `spawn_pending`, `resume`).
        // A deferred element's point 3 comes when its future has finished
        // (`spawn_deferred`).
        let replay_key = if resp.pending.is_none() { replay_key } else { None };
        if resp.deferred.is_none() {
            // The element's state delta goes with its response, and is
            // applied to the model once journaled.
            let deltas = std::mem::take(&mut resp.deltas);
            match server.point3(c.op, index, replay_key.as_ref(), resp.status.0, saved_body(&hdr, &resp), &deltas).await
            {
                Ok((t, keeps)) if keeps || resp.kept || must_be_durable(&hdr) => {
                    durable_before_answer = durable_before_answer.later(t)
                }
                Ok(_) => {}
                Err(e) => {
                    warn!("journal, point 3: {e}: closing");
                    return Flow::Close;
                }
            }
        }
        if busy {
            // A rename that waits for lease breaks renames after its wait:
            // its request stays in the log until its final answer's point 3
            // (the wait is bounded by the break timeout). Other waits (a
            // CHANGE_NOTIFY, a blocking LOCK, a CREATE waiting for a break
            // on a file that exists) let it go.
            // So does one that waits for its records to be durable first
            // (answered later, deferred or pending).
            // A rename waiting for breaks (pending) may wait up to the break
            // time-out: its request is carried in checkpoints meanwhile, so
            // its records do not hold the journal's head that long.
            if hdr.command == Command::SetInfo as u16 {
                for (later, long) in [(&mut resp.pending, true), (&mut resp.deferred, false)] {
                    if let Some(fut) = later.take() {
                        let held = if long {
                            crate::state::retiring::Busy::hold_carrying(&server, c.op, msg.clone())
                        } else {
                            crate::state::retiring::Busy::hold(&server, c.op)
                        };
                        *later = Some(Box::pin(async move {
                            let mut r = fut.await?;
                            r.busy = Some(held);
                            Ok(r)
                        }));
                    }
                }
            }
            server.retirer.idle(c.op);
        }
        if resp.no_response {
            if last {
                break;
            }
            c.at += len;
            continue;
        }
        let parks = resp.pending.is_some() && !last;
        if !parks {
            // A parked element's answer is noted when it comes.
            c.note(&hdr, &hdr_eff, related, &resp);
        }
        resp_hdr.status = resp.status.0;
        trace!(mid = hdr.message_id, status = %resp.status, "answer");
        if let Some(sid) = resp.session_id {
            resp_hdr.session_id = sid;
        }
        if let Some(tid) = resp.tree_id {
            resp_hdr.tree_id = tid;
        }
        resp_hdr.credits = conn.window.grant(hdr.credits);
        c.close |= resp.close;
        // Signing: the session's keys, when the session signs or the request was signed.
        let sign = if c.encrypted {
            None
        } else if let Some(k) = resp.sign_with.take() {
            Some(k)
        } else {
            signing_for(conn, &hdr_eff, hdr.is_signed())
        };
        if sign.is_none() && !c.encrypted && hdr.is_signed() && resp.status == NtStatus::USER_SESSION_DELETED {
            // No key to sign with here (the session is not on this
            // connection), but the SIGNED flag echoes the request's: clients
            // take this status unverified, yet only from an answer flagged
            // signed (as Windows and Samba answer).
            resp_hdr.flags |= flags::SIGNED;
        }
        if let Some(mut fut) = resp.deferred.take() {
            if resp.kept {
                // The deferred answer waits for its point-3 record too.
                fut = Box::pin(async move {
                    let mut r = fut.await.unwrap_or_else(error_resp);
                    r.kept = true;
                    Ok(r)
                });
            }
            let enc = c.encrypt_reply.clone().or_else(|| encryption_for_hdr(conn, &resp_hdr));
            let cost = crate::alloc::io_cost(&hdr, &elem);
            deferred_tasks.push((resp_hdr, sign, enc, fut, index, replay_key, (cost, resp.deferred_in_file)));
        } else if let Some(fut) = resp.pending.take() {
            // The interim answer ([MS-SMB2] 3.3.4.2) carries the credits;
            // the final one none (3.3.1.2).
            let outlives = resp.outlives_channel;
            let async_id = server.next_id();
            let mut interim = resp_hdr.clone();
            interim.flags |= flags::ASYNC_COMMAND;
            interim.async_id = async_id;
            interim.status = NtStatus::PENDING.0;
            let mut body = BytesMut::new();
            header::encode_error_body(&mut body);
            out.push(OutElement {
                hdr: interim.clone(),
                body,
                headroom: None,
                sign: sign.clone(),
                preauth_session: None,
                preauth_conn: false,
            });
            let mut final_hdr = interim;
            final_hdr.credits = 0;
            if parks {
                c.at += len;
                waiting = Some((Waiting { hdr, hdr_eff, related, index, final_hdr, sign, async_id }, fut));
                break;
            }
            pending_tasks.push((async_id, hdr.message_id, hdr_eff.session_id, final_hdr, fut, sign, index, outlives));
        } else {
            after.extend(resp.after.take());
            out.push(OutElement {
                hdr: resp_hdr,
                body: resp.body,
                headroom: resp.headroom.take(),
                sign,
                preauth_session: resp.preauth_session.take(),
                preauth_conn: resp.preauth_conn,
            });
        }
        if last {
            break;
        }
        c.at += len;
    }
    // An answer leaves only once its point-3 record is durable (DESIGN.md,
    // "No lost writes"), and with it every earlier record of the frame.
    if !wait_durable(&server, durable_before_answer).await {
        return Flow::Close;
    }
    // A deferred element passes its point 3 later, in its task.
    if !out.is_empty() || deferred_tasks.is_empty() {
        crate::failpoint::hit("point3");
    }
    let (op, close, encrypted) = (c.op, c.close, c.encrypted);
    // Point 4 once the request's last answer was acknowledged: this frame's,
    // or that of the task that sends the last one.
    let finishes = waiting.is_none() && deferred_tasks.is_empty() && pending_tasks.is_empty();
    if !out.is_empty() {
        let enc = c.encrypt_reply.clone().or_else(|| encryption_for(conn, &out));
        if !send_elements(conn, out, enc, if finishes { op } else { OpId(0) }).await {
            return Flow::Close;
        }
        crate::failpoint::hit("sent");
    } else if finishes {
        point4(&server, op);
    }
    for f in after {
        f();
    }
    if let Some((w, fut)) = waiting {
        park(conn, c, w, fut);
    }
    for (hdr, sign, enc, fut, idx, key, io) in deferred_tasks {
        spawn_deferred(conn, op, idx, key, hdr, sign, enc, fut, io).await;
    }
    for (async_id, message_id, session_id, final_hdr, fut, sign, idx, outlives) in pending_tasks {
        spawn_pending(conn, op, idx, (async_id, message_id, session_id, outlives), final_hdr, fut, sign, encrypted);
    }
    if close {
        Flow::Close
    } else {
        Flow::Continue
    }
}

/// Whether an element of this command that goes async in the middle of a
/// compound parks the chain ([`park`]) rather than failing: a CREATE that
/// waits for an oplock or lease break, and a SET_INFO whose rename waits
/// for lease breaks (smbclient's and Windows' rename transaction, CREATE +
/// SET_INFO + CLOSE, of a file whose handle caching another client's lease
/// holds: it answered STATUS_INTERNAL_ERROR before). Both wait for a break
/// that the holder (maybe on this very connection) must be able to
/// acknowledge, and the related elements after them need their result
/// ([MS-SMB2] 3.3.5.2.7.2).
fn may_park(command: u16) -> bool {
    command == Command::Create as u16 || command == Command::SetInfo as u16
}

/// Parks the rest of a chain at an element that waits (a CREATE or a
/// rename in the middle of a compound, waiting for a break), as smbd
/// does (`smbd_smb2_request_pending_queue`): the answers before it and its
/// interim STATUS_PENDING have gone out; its wait runs in a task of its
/// own, cancellable like any async operation ([MS-SMB2] 3.3.5.16); and
/// when it ends the connection's task resumes the chain ([`resume`]),
/// having read on meanwhile: the break's acknowledgement may come from
/// this very connection. The element waits; nothing re-enters the
/// pipeline.
fn park(conn: &mut ConnState, chain: Chain, w: Waiting, fut: PendingFut) {
    let fut = cancellable(conn, w.async_id, w.hdr.message_id, w.hdr_eff.session_id, fut);
    let tx = conn.resume_tx.clone();
    let fence = Mark::take(conn.server.lease.as_ref());
    tokio::spawn(async move {
        let result = fut.await;
        let resume: Resume = if fence.crossed() {
            // A change on disk was fenced (`pair::fence`): no answer.
            warn!(mid = w.hdr.message_id, "a change on disk was fenced (no lease on our share set): closing");
            Box::new(|_: &mut ConnState| Box::pin(async { false }))
        } else {
            Box::new(move |conn: &mut ConnState| Box::pin(resume(conn, chain, w, result)))
        };
        // The connection is gone when nobody receives: so is the chain.
        let _ = tx.send(resume);
    });
}

/// Goes on with a parked chain on the connection's task: the waiting
/// element's final answer (async, no credits) heads the frame of the
/// answers of the elements after it, as smbd sends them. False when the
/// connection must close.
async fn resume(conn: &mut ConnState, mut c: Chain, w: Waiting, result: Result<Resp, NtStatus>) -> bool {
    let mut resp = match result {
        Ok(r) => r,
        Err(s) => error_resp(s),
    };
    let server = conn.server.clone();
    if !point3_final(&server, c.op, w.index, &mut resp).await {
        return false;
    }
    c.note(&w.hdr, &w.hdr_eff, w.related, &resp);
    c.close |= resp.close;
    let mut hdr = w.final_hdr;
    hdr.status = resp.status.0;
    let after = resp.after.take();
    trace!(mid = hdr.message_id, status = %resp.status, "answer after the wait");
    let out = vec![OutElement {
        hdr,
        body: resp.body,
        headroom: resp.headroom.take(),
        sign: w.sign,
        preauth_session: None,
        preauth_conn: false,
    }];
    // The rest of the chain goes out in the same frame as this answer (or
    // after it, when it parks again).
    let flow = run_chain(conn, c, out).await;
    if let Some(f) = after {
        f();
    }
    matches!(flow, Flow::Continue)
}

/// Registers an async operation for CANCEL ([MS-SMB2] 3.3.5.16) and
/// returns its future, which ends with STATUS_CANCELLED when cancelled
/// (or when the connection goes) and unregisters it when done.
fn cancellable(conn: &mut ConnState, async_id: u64, message_id: u64, session_id: u64, fut: PendingFut) -> PendingFut {
    let (cancel_tx, cancel_rx) = tokio::sync::oneshot::channel();
    lock(&conn.pending)
        .insert(async_id, PendingOp { message_id, session_id, cancel: cancel_tx, outlives_channel: false });
    let pending = conn.pending.clone();
    Box::pin(async move {
        let result = tokio::select! {
            r = fut => r,
            // Cancelled when told; an operation let go on without its
            // connection (its sender dropped) is not.
            Ok(()) = cancel_rx => Err(NtStatus::CANCELLED),
        };
        lock(&pending).remove(&async_id);
        result
    })
}

/// Responses to an encrypted session's requests are encrypted even when a
/// request came in plain (e.g. after the session turned encryption on).
fn encryption_for(conn: &ConnState, out: &[OutElement]) -> Option<(Arc<SessionCrypto>, u64)> {
    encryption_for_hdr(conn, &out.first()?.hdr)
}

fn encryption_for_hdr(conn: &ConnState, hdr: &Header) -> Option<(Arc<SessionCrypto>, u64)> {
    let first = hdr;
    if first.command == Command::SessionSetup as u16 || first.command == Command::Negotiate as u16 {
        // The client has no keys before it reads this answer.
        return None;
    }
    let sid = first.session_id;
    let session = conn.session(sid)?;
    let crypto = session.crypto()?;
    if crypto.encrypt_data && session.is_valid() {
        Some((crypto, sid))
    } else {
        None
    }
}

fn signing_for(conn: &ConnState, hdr: &Header, request_signed: bool) -> Option<Arc<SessionCrypto>> {
    let cmd = hdr.command();
    if matches!(cmd, Some(Command::Negotiate)) || hdr.session_id == 0 {
        return None;
    }
    let session = conn.session(hdr.session_id)?;
    // A session being reauthenticated still has its keys: the interim
    // answers to its signed requests are signed too.
    // A bound channel signs with its own key ([MS-SMB2] 3.3.4.1.1).
    let crypto = conn.signing_crypto(&session)?;
    if crypto.signing_key.is_empty() {
        return None;
    }
    if request_signed || crypto.signing_required {
        Some(crypto)
    } else {
        None
    }
}

/// Checks every MessageId of a frame's requests against the connection's
/// sequence window and uses them ([MS-SMB2] 3.3.5.2.3), before any of the
/// requests runs: each id is used once, and only ids granted in responses
/// the client has already received, so a compound's elements cannot live
/// on the credits of their own answers. A multi-credit request uses
/// CreditCharge consecutive ids. CANCEL is skipped: it reuses the id of
/// the request it cancels. An error means the connection must close.
fn use_message_ids(conn: &mut ConnState, msg: &[u8]) -> Result<(), String> {
    let mut at = 0usize;
    loop {
        let rest = &msg[at..];
        let hdr = Header::parse(rest).map_err(|e| format!("bad header: {e}"))?;
        if hdr.command != Command::Cancel as u16 {
            let charge = if conn.multi_credit() { hdr.credit_charge } else { 1 };
            conn.window.consume(hdr.message_id, charge).map_err(|e| e.to_string())?;
        }
        if hdr.next_command == 0 {
            return Ok(());
        }
        let n = hdr.next_command as usize;
        if !n.is_multiple_of(8) || n < HEADER_LEN || n > rest.len() {
            return Err("bad NextCommand".into());
        }
        at += n;
    }
}

/// The most bytes a frame's answers may take together: the largest single
/// answer the server offers ([`crate::connection::MAX_IO`], its MaxReadSize and
/// MaxTransactSize), and 64 KiB for the headers and the small answers
/// beside it. [MS-SMB2] 3.3.4.1.3: the server SHOULD NOT send a response
/// larger than MaxTransactSize + 256; this bounds the memory one small
/// compound of large READs (or QUERY_INFOs, IOCTLs...) can take.
pub const MAX_COMPOUND_RESPONSE: usize = crate::connection::MAX_IO as usize + 64 * 1024;

/// Refuses an element whose answer could take the frame's answers past
/// [`MAX_COMPOUND_RESPONSE`] (STATUS_INSUFFICIENT_RESOURCES), given the
/// bytes `answered` by the elements before it. An element asking for more
/// than the connection's maximums is left to its handler, which refuses it
/// with STATUS_INVALID_PARAMETER before it allocates anything.
fn check_answer_room(conn: &ConnState, hdr: &Header, elem: &[u8], answered: usize) -> Result<(), NtStatus> {
    let Some(payload) = hdr.command().and_then(|c| protocol::credit::payload(c, elem)) else {
        return Ok(());
    };
    if payload.response > conn.max_io() {
        return Ok(());
    }
    if answered + HEADER_LEN + payload.response as usize > MAX_COMPOUND_RESPONSE {
        debug!(mid = hdr.message_id, answered, asked = payload.response, "compound answer too large");
        return Err(NtStatus::INSUFFICIENT_RESOURCES);
    }
    Ok(())
}

fn error_resp(status: NtStatus) -> Resp {
    let mut body = BytesMut::with_capacity(9);
    header::encode_error_body(&mut body);
    Resp::with_status(status, body)
}

/// Checks the session, signature, encryption and tree of one element, then
/// dispatches it.
#[allow(clippy::too_many_arguments)]
async fn run_element(
    conn: &mut ConnState,
    server: &Arc<Server>,
    hdr: &Header,
    elem: &Bytes,
    encrypted: bool,
    chain_file_id: Option<FileId>,
    single: bool,
    op: (crate::journal::OpId, usize),
    point2: crate::journal::Ticket,
) -> Result<Resp, NtStatus> {
    let Some(command) = hdr.command() else {
        return Err(NtStatus::INVALID_PARAMETER);
    };
    trace!(?command, mid = hdr.message_id, "request");
    if !conn.negotiated() && command != Command::Negotiate {
        let mut r = error_resp(NtStatus::INVALID_PARAMETER);
        r.close = true;
        return Ok(r);
    }
    let needs_session =
        !matches!(command, Command::Negotiate | Command::SessionSetup | Command::Echo | Command::Cancel);
    let mut session = None;
    if needs_session
        || (command == Command::SessionSetup && hdr.session_id != 0)
        || (command == Command::Echo && hdr.session_id != 0)
    {
        match conn.session(hdr.session_id) {
            Some(s) => session = Some(s),
            None if needs_session => return Err(NtStatus::USER_SESSION_DELETED),
            // Binding, or a session of another connection: the handler
            // looks further and checks the signature itself.
            None => {}
        }
    }
    if let Some(s) = &session {
        if command != Command::SessionSetup {
            let inner = lock(&s.inner);
            match inner.auth {
                // As the model's record says ([MS-SMB2] 3.3.5.2.9): none
                // yet (its logon's point 3 has not passed) is no session.
                crate::state::session::AuthState::Valid => match inner.info() {
                    None => return Err(NtStatus::USER_SESSION_DELETED),
                    Some(i) if i.expires_at.is_some_and(|t| t <= crate::state::deltas::now()) => {
                        return Err(NtStatus::NETWORK_SESSION_EXPIRED)
                    }
                    Some(_) => {}
                },
                crate::state::session::AuthState::Expired => return Err(NtStatus::NETWORK_SESSION_EXPIRED),
                crate::state::session::AuthState::InProgress { .. } => return Err(NtStatus::USER_SESSION_DELETED),
            }
        }
        // A bound channel verifies with its own key ([MS-SMB2] 3.3.5.2.4).
        if let Some(crypto) = conn.signing_crypto(s) {
            if !encrypted && hdr.is_signed() && !crypto.signing_key.is_empty() {
                if !crypto.verify(elem) {
                    warn!(mid = hdr.message_id, "bad signature");
                    return Err(NtStatus::ACCESS_DENIED);
                }
            } else if !encrypted
                && crypto.signing_required
                && !matches!(command, Command::Negotiate | Command::SessionSetup | Command::Cancel)
                && s.is_valid()
            {
                return Err(NtStatus::ACCESS_DENIED);
            }
            if crypto.encrypt_data
                && !encrypted
                && s.is_valid()
                && command != Command::SessionSetup
                && conn.dialect >= 0x0300
            {
                return Err(NtStatus::ACCESS_DENIED);
            }
        }
    }
    let needs_tree = matches!(
        command,
        Command::TreeDisconnect
            | Command::Create
            | Command::Close
            | Command::Flush
            | Command::Read
            | Command::Write
            | Command::Lock
            | Command::Ioctl
            | Command::QueryDirectory
            | Command::ChangeNotify
            | Command::QueryInfo
            | Command::SetInfo
    );
    let mut tree = None;
    if needs_tree {
        let s = session.as_ref().ok_or(NtStatus::USER_SESSION_DELETED)?;
        let t = s.tree(hdr.tree_id).ok_or(NtStatus::NETWORK_NAME_DELETED)?;
        if t.encrypt && !encrypted && conn.dialect >= 0x0300 {
            return Err(NtStatus::ACCESS_DENIED);
        }
        tree = Some(t);
    }
    if let Some(r) = replayed_answer(server, hdr, elem, chain_file_id, session.as_ref()).await {
        return Ok(r);
    }
    // A large READ may leave its data in the file for the writer to send
    // (`sendfile`) when its answer goes out as it is: alone in its frame,
    // neither signed nor encrypted (the same choices the answer's encoding
    // makes below, in `run_chain`), on a TCP connection.
    let may_send_file = single
        && command == Command::Read
        && conn.sends_files
        && !encrypted
        && signing_for(conn, hdr, hdr.is_signed()).is_none()
        && encryption_for_hdr(conn, hdr).is_none();
    let span =
        tracing::debug_span!("session", id = hdr.session_id, tree = hdr.tree_id, mid = hdr.message_id, cmd = ?command);
    let mut ctx = Ctx {
        server,
        conn,
        hdr,
        msg: elem,
        frame: elem,
        session,
        tree,
        encrypted,
        may_send_file,
        chain_file_id,
        single,
        op,
        point2,
        deltas: Vec::new(),
        kept: false,
    };
    let result = cmd::dispatch(&mut ctx, command).instrument(span).await;
    // The changes made come with the answer, whatever it is.
    let mut r = match result {
        Ok(r) => r,
        Err(status) if ctx.deltas.is_empty() && !ctx.kept => return Err(status),
        Err(status) => error_resp(status),
    };
    r.kept |= ctx.kept;
    if !ctx.deltas.is_empty() {
        ctx.deltas.append(&mut r.deltas);
        r.deltas = ctx.deltas;
    }
    Ok(r)
}

/// Encodes, signs and (when asked) encrypts the elements as one frame, and
/// sends it: the door out, for the connection's task. Break notices queued
/// for the connection go first: a request of this connection may have
/// caused them, and a client that reads its answer expects them before it
/// (smbtorture's oplock tests count breaks as soon as a request returns).
/// False when the frame could not be encoded: the connection must close.
async fn send_elements(
    conn: &mut ConnState,
    out: Vec<OutElement>,
    encrypt: Option<(Arc<SessionCrypto>, u64)>,
    finishes: OpId,
) -> bool {
    while let Ok(n) = conn.notices.try_recv() {
        if !write_notice(conn, n).await {
            return false;
        }
    }
    match encode_frame(&mut conn.preauth, out, encrypt) {
        Some(frame) => {
            let _ = conn.tx.send(Reply::new(frame.freeze(), finishes)).await;
            true
        }
        None => false,
    }
}

/// Sends a break notice queued for this connection
/// ([`crate::state::oplock::Notice`]) through the door out, with points 3
/// and 4 under an op id of its own ([`crate::journal::Journal::unsolicited`]).
pub async fn send_notice(conn: &mut ConnState, notice: Notice) -> Flow {
    if write_notice(conn, notice).await {
        Flow::Continue
    } else {
        Flow::Close
    }
}

/// An Oplock or Lease Break Notification ([MS-SMB2] 2.2.23, 3.3.4.6,
/// 3.3.4.7): MessageId all ones, no credits, not signed, encrypted when the
/// holder's session or share is (3.3.4.1.4). False when it cannot be
/// encoded (the connection closes, as for an answer).
async fn write_notice(conn: &mut ConnState, n: Notice) -> bool {
    let hdr = Header {
        credit_charge: 0,
        status: 0,
        command: Command::OplockBreak as u16,
        credits: 0,
        flags: flags::SERVER_TO_REDIR,
        next_command: 0,
        message_id: u64::MAX,
        async_id: 0,
        tree_id: 0,
        session_id: n.session_id,
        signature: [0; 16],
    };
    let server = conn.server.clone();
    let op = server.journal.unsolicited(conn.id);
    let journaled = op != OpId(0);
    if journaled && !point3_notice(&server, op, &n.body).await {
        return false;
    }
    let e = OutElement { hdr, body: n.body, headroom: None, sign: None, preauth_session: None, preauth_conn: false };
    let mut unused = protocol::crypto::preauth::PreauthHash::new();
    let Some(frame) = encode_frame(&mut unused, vec![e], n.encrypt) else {
        return false;
    };
    let _ = conn.tx.send(Reply::new(frame.freeze(), if journaled { op } else { OpId(0) })).await;
    true
}

/// Encodes, signs and encrypts elements into one frame, NetBIOS header
/// included. `preauth` is the connection's preauth hash (NEGOTIATE).
/// `None` when it cannot be sent: encryption failed, or the frame is longer
/// than a NetBIOS header can announce (in every build: the length must not
/// wrap).
fn encode_frame(
    conn_preauth: &mut protocol::crypto::preauth::PreauthHash,
    out: Vec<OutElement>,
    encrypt: Option<(Arc<SessionCrypto>, u64)>,
) -> Option<BytesMut> {
    encode_frame_ending_in_file(conn_preauth, out, encrypt, 0)
}

/// [`encode_frame`] for a frame whose last `tail` bytes are not in it but
/// in a file, sent after it ([`crate::transport::FileRegion`]): the NetBIOS
/// length counts them. Only a lone element that is neither signed nor
/// encrypted can end so (signing and encryption cover every byte); `None`
/// for any other.
fn encode_frame_ending_in_file(
    conn_preauth: &mut protocol::crypto::preauth::PreauthHash,
    out: Vec<OutElement>,
    encrypt: Option<(Arc<SessionCrypto>, u64)>,
    tail: usize,
) -> Option<BytesMut> {
    let n = out.len();
    if n == 0 {
        return None;
    }
    if tail > 0 && (n > 1 || encrypt.is_some() || out.iter().any(|e| e.sign.is_some())) {
        warn!("an answer whose data is in a file cannot be signed or encrypted: closing");
        return None;
    }
    // The frame starts with the NetBIOS header and room for a transform
    // header, filled in at the end (the room is dropped when not encrypting).
    let mut chain = BytesMut::new();
    for (i, mut e) in out.into_iter().enumerate() {
        if encrypt.is_some() {
            e.sign = None;
        }
        if e.sign.is_some() {
            e.hdr.flags |= flags::SIGNED;
        }
        let mut m = match e.headroom.take() {
            // The body was allocated behind room for the NetBIOS and SMB2
            // headers: write them there and join without copying the data.
            Some(mut room) if i == 0 && room.len() == HEADROOM => {
                let mut h = BytesMut::with_capacity(HEADER_LEN);
                e.hdr.encode(&mut h);
                room[FRAME_ROOM..].copy_from_slice(&h);
                room.unsplit(e.body);
                let m = room.split_off(FRAME_ROOM);
                chain = room;
                m
            }
            _ => {
                if i == 0 {
                    chain.put_bytes(0, FRAME_ROOM);
                }
                let mut m = BytesMut::with_capacity(HEADER_LEN + e.body.len() + 8);
                e.hdr.encode(&mut m);
                m.unsplit(e.body);
                m
            }
        };
        if i + 1 < n {
            while m.len() % 8 != 0 {
                m.put_u8(0);
            }
            let len = m.len() as u32;
            m[20..24].copy_from_slice(&len.to_le_bytes());
        } else if n > 1 {
            // [MS-SMB2] 3.3.4.1.3: the last response of a compounded
            // chain is padded to 8 bytes too (NextCommand stays 0), as
            // smbd and Windows send it (smbtorture
            // smb2.compound.compound-padding).
            while m.len() % 8 != 0 {
                m.put_u8(0);
            }
        }
        // Signed before hashing: the preauth hash covers the message as
        // sent (a binding's interim answers are signed).
        if let Some(k) = &e.sign {
            k.sign(&mut m);
        }
        if e.preauth_conn {
            conn_preauth.update(&m);
        }
        if let Some(s) = &e.preauth_session {
            if let crate::state::session::AuthState::InProgress { preauth, .. } = &mut lock(&s.inner).auth {
                preauth.update(&m);
            }
        }
        chain.unsplit(m);
    }
    match encrypt {
        Some((crypto, sid)) => {
            // Encrypted where it lies, the transform header in the room.
            let nonce: [u8; 16] = rand::random();
            let nlen = transform::nonce_len(crypto.cipher).unwrap_or(12);
            if let Err(e) = crypto.encrypt_in_place(sid, &nonce[..nlen], &mut chain[4..]) {
                warn!("encrypt: {e}");
                return None;
            }
        }
        None => chain.advance(transform::TRANSFORM_HEADER_LEN),
    }
    let len = chain.len() - 4 + tail;
    let mut h = BytesMut::with_capacity(4);
    if let Err(e) = protocol::netbios::encode_header(len, &mut h) {
        warn!("response not sent: {e}");
        return None;
    }
    chain[..4].copy_from_slice(&h);
    Some(chain)
}

/// Runs a deferred element's future in its own task and sends its answer
/// (points 3 and 4 happen there). Waits for the connection's I/O slots
/// first ([`crate::alloc::slots_for`]), so a connection has a bounded
/// amount of large I/O in flight; they are held until the answer is on
/// the socket. `io`: the I/O the operation holds in bytes, and whether its
/// data will stay in the file ([`Resp::deferred_in_file`]): such an answer
/// leaves as its frame's head and a file region ([`Resp::file_data`]).
#[allow(clippy::too_many_arguments)]
async fn spawn_deferred(
    conn: &mut ConnState,
    op: OpId,
    index: usize,
    replay_key: Option<ReplayKey>,
    hdr: Header,
    sign: Option<Arc<SessionCrypto>>,
    enc: Option<(Arc<SessionCrypto>, u64)>,
    fut: PendingFut,
    (cost, in_file): (usize, bool),
) {
    // A WRITE whose frame was read against the I/O budget keeps that
    // share until it is written (see Inbox); a READ takes one if there is
    // room. Large READs with one may overlap on a connection (one read from
    // disk while the last is sent); any other large operation runs alone.
    // WRITEs through one open take turns anyway, and the next one's frame
    // is read meanwhile, so one at a time costs nothing but a frame less.
    // A READ whose data stays in its file holds no buffer: it takes no share
    // of the budget, and overlaps like one that has it.
    let is_read = hdr.command == Command::Read as u16;
    let lease = match conn.inbox.take_lease() {
        Some(lease) => Some(lease),
        None if is_read && !in_file => crate::alloc::try_lease(cost),
        None => None,
    };
    let slots = crate::alloc::slots_for(cost, is_read && (lease.is_some() || in_file));
    let Ok(permit) = conn.io_slots.clone().acquire_many_owned(slots).await else {
        return;
    };
    let lease = lease.unwrap_or_default().with_slot(permit);
    let tx = conn.tx.clone();
    let server = conn.server.clone();
    let fence = Mark::take(server.lease.as_ref());
    tokio::spawn(async move {
        let resp = match fut.await {
            Ok(r) => r,
            Err(s) => error_resp(s),
        };
        if resp.no_response {
            // Given up part-way (a WRITE whose data stopped coming): no
            // answer, no point 3; the connection closes.
            let _ = tx.send(crate::transport::CLOSE_FRAME.into()).await;
            return;
        }
        if fence.crossed() {
            // A change on disk was fenced (`pair::fence`): no answer, no point 3.
            warn!(mid = hdr.message_id, "a change on disk was fenced (no lease on our share set): closing");
            let _ = tx.send(crate::transport::CLOSE_FRAME.into()).await;
            return;
        }
        let journaled =
            server.point3(op, index, replay_key.as_ref(), resp.status.0, saved_body(&hdr, &resp), &resp.deltas).await;
        let (durable_before_answer, keeps) = match journaled {
            Ok(r) => r,
            Err(e) => {
                warn!("journal, point 3: {e}: closing");
                let _ = tx.send(crate::transport::CLOSE_FRAME.into()).await;
                return;
            }
        };
        // A large WRITE is answered only once its record is durable.
        if (keeps || resp.kept || must_be_durable(&hdr)) && !wait_durable(&server, durable_before_answer).await {
            let _ = tx.send(crate::transport::CLOSE_FRAME.into()).await;
            return;
        }
        crate::failpoint::hit("point3");
        let mut h = hdr;
        h.status = resp.status.0;
        let after = resp.after;
        let data = resp.file_data;
        let tail = data.as_ref().map_or(0, |d| d.len);
        let e = OutElement {
            hdr: h,
            body: resp.body,
            headroom: resp.headroom,
            sign,
            preauth_session: None,
            preauth_conn: false,
        };
        let mut unused = protocol::crypto::preauth::PreauthHash::new();
        // The slot (and a WRITE's lease) stays taken until the writer has
        // written (or dropped) the answer, its file region included: a
        // client that does not read its replies holds at most MAX_DEFERRED
        // of them. An answer that cannot be sent ends the connection.
        let reply = match (encode_frame_ending_in_file(&mut unused, vec![e], enc, tail), data) {
            (Some(frame), Some(d)) => Reply {
                frame: frame.freeze(),
                op,
                file: Some(crate::transport::FileRegion { file: d.open, offset: d.offset, len: d.len, lease }),
            },
            (Some(frame), None) => Reply::new(crate::alloc::leased(frame, lease), op),
            (None, _) => crate::transport::CLOSE_FRAME.into(),
        };
        let _ = tx.send(reply).await;
        if let Some(f) = after {
            f();
        }
    });
}

/// A READ answer sent from its open's file ([`crate::transport::FileRegion`])
/// holds the open, and with it the descriptor, until it is on the socket.
/// (Here, where both the writer's side and the state are known.)
impl crate::transport::FileSource for crate::state::Open {
    fn fd(&self) -> Option<std::os::fd::BorrowedFd<'_>> {
        self.handle().map(|h| h.fd())
    }
}

/// Point 4. The answer has left already: a failure is logged, and at worst
/// a restore sends the answer again, which the client takes as a duplicate.
pub fn point4(server: &Server, op: OpId) {
    if let Err(e) = server.journal.post_reply_ack(op) {
        // The operation is retired all the same; at worst a restore sends
        // the answer again, which the client takes as a duplicate.
        warn!("journal, point 4: {e}");
    }
    crate::failpoint::hit("point4");
    if server.retirer.answered(op) {
        if let Err(e) = server.journal.retire(op) {
            warn!("journal, retire: {e}");
        }
    }
}

/// Point 3 of an answer that comes after its element's interim answer (an
/// async operation's, a parked chain's waiting element's): its response
/// and its delta, then the delta applied. False when the journal failed
/// (the connection closes).
async fn point3_final(server: &Server, op: OpId, index: usize, resp: &mut Resp) -> bool {
    let deltas = std::mem::take(&mut resp.deltas);
    match server.point3(op, index, None, resp.status.0, &resp.body, &deltas).await {
        Ok((t, _)) => wait_durable(server, t).await,
        Err(e) => {
            warn!("journal, point 3: {e}: closing");
            false
        }
    }
}

/// Point 3 of a break notice (operation `op` of
/// [`crate::journal::Journal::unsolicited`]): the notice as the response of
/// element 0, with no replay key and no delta, and the operation noted for
/// retiring ([`crate::state::retiring::Retirer::notice`]). False when the
/// journal failed (the connection closes).
///
/// The notice does not wait for its record to be durable: it changes
/// nothing a restart restores. The breaking state of the oplock or lease is
/// a state change of its own, journaled by the file table when the break
/// begins (`Delta::OplockBreaking`, `Delta::LeaseBreaking`), whatever
/// becomes of the notice; a restore reads no notice back (their records
/// have no point-1 request, and nothing is sent again from them). Waiting
/// would add a sync of the group commit to every break under `group` and
/// gain nothing: a crash that loses the record loses only the log's account
/// that the notice left.
async fn point3_notice(server: &Server, op: OpId, body: &[u8]) -> bool {
    server.retirer.notice(op);
    match server.point3(op, 0, None, 0, body, &[]).await {
        Ok(_) => true,
        Err(e) => {
            warn!("journal, point 3 of a break notice: {e}: closing");
            false
        }
    }
}

/// Point 1 of a frame: its record appended (a full journal holds the
/// connection back until it fits), the operation noted for retiring. `None`
/// when the journal failed: the connection closes.
async fn point1(server: &Server, conn_id: u64, frame: &[u8]) -> Option<OpId> {
    match journal::with_backoff(|| server.journal.pre_ack(conn_id, frame)).await {
        Ok((op, _)) => {
            server.retirer.started(op);
            crate::failpoint::hit("point1");
            Some(op)
        }
        Err(e) => {
            warn!("journal, point 1: {e}: closing");
            None
        }
    }
}

/// What point 1 records of a frame: all of it, or, for a lone WRITE whose
/// data the journal does not keep in its record
/// ([`crate::journal::Journal::write_data`]), its header, the WRITE's fixed
/// part and the digest of its data ([`journal::digested_write`]), from which
/// its replay key is rebuilt after a restart. With the digest, when there is
/// one, for the element's replay key at point 3 (the data is hashed once).
fn point1_bytes<'a>(server: &Server, msg: &'a [u8]) -> (std::borrow::Cow<'a, [u8]>, Option<u64>) {
    use std::borrow::Cow;
    const FIXED: usize = HEADER_LEN + journal::WRITE_FIXED;
    // Data of 8 bytes or less costs no more than its digest.
    if msg.len() <= FIXED + 8 {
        return (Cow::Borrowed(msg), None);
    }
    match Header::parse(msg) {
        Ok(h) if h.command == Command::Write as u16 && h.next_command == 0 => {
            // The WRITE's Length ([MS-SMB2] 2.2.21): what its handler decides by too.
            let len = u32::from_le_bytes([
                msg[HEADER_LEN + 4],
                msg[HEADER_LEN + 5],
                msg[HEADER_LEN + 6],
                msg[HEADER_LEN + 7],
            ]) as usize;
            match server.journal.write_data(len) {
                crate::journal::WriteData::InRecord => (Cow::Borrowed(msg), None),
                crate::journal::WriteData::InFile | crate::journal::WriteData::NotKept => {
                    let digest = journal::write_digest(msg);
                    match journal::digested_write(msg, digest) {
                        Some(record) => (Cow::Owned(record), Some(digest)),
                        None => (Cow::Borrowed(msg), None),
                    }
                }
            }
        }
        _ => (Cow::Borrowed(msg), None),
    }
}

/// The saved answer of a replayed request (SMB2_FLAGS_REPLAY_OPERATION)
/// whose point-3 record exists (DESIGN.md, "Exactly once"): it is answered
/// from that record and not carried out again. Only a session that holds
/// the open the key names gets it, and only once the record is durable.
/// (A replayed CREATE is left to its handler.)
async fn replayed_answer(
    server: &Server,
    hdr: &Header,
    elem: &[u8],
    chain_file: Option<FileId>,
    session: Option<&Arc<Session>>,
) -> Option<Resp> {
    if !ReplayKey::flagged(hdr) || !server.journal.keeps_replies() {
        return None;
    }
    let key = ReplayKey::of(hdr, elem, chain_file)?;
    let pid = match key {
        // A replayed CREATE is the handler's: it finds the open by its
        // CreateGuid and gives it to this session ([MS-SMB2] 3.3.5.9.10),
        // which a saved answer alone would not (after a restart the open
        // is retained, attached to no session).
        ReplayKey::Create(_) => return None,
        // A LOCK's lock sequence is the handler's ([`ReplayKey::answered_from_saved`]).
        ReplayKey::Lock { .. } => return None,
        ReplayKey::Request { file, .. } => file.0,
    };
    // The open must be this session's, and the request of its current
    // ChannelSequence: one that is stale is the handler's to refuse
    // (STATUS_FILE_NOT_AVAILABLE, [MS-SMB2] 3.3.5.2.10), saved answer or not.
    let open = session.and_then(|s| lock(&s.inner).opens.values().find(|o| o.persistent_id == pid).cloned());
    let current = open.and_then(|o| server.channel_sequence_of(&o));
    if current != Some(hdr.channel_sequence()) {
        return None;
    }
    let saved = server.journal.replayed(&key)?;
    if !wait_durable(server, saved.ticket).await {
        return None;
    }
    debug!(mid = hdr.message_id, status = saved.status, "replay answered from its saved response");
    Some(Resp::with_status(NtStatus(saved.status), BytesMut::from(&saved.response[..])))
}

/// Whether an element's answer may leave only once its point-3 record (and
/// with it the frame's point 1) is durable, whatever its deltas: a WRITE's
/// (DESIGN.md, "No lost writes": its point-1 record holds the data) and a
/// FLUSH's. Besides, an answer waits when its deltas changed what a restart
/// restores ([`Server::point3`]). An answer that changed nothing a restart
/// brings back (a READ, a query, an ECHO, an open that is not durable) may
/// leave at once: should the node die, the client's state ends with it.
fn must_be_durable(hdr: &Header) -> bool {
    hdr.command == Command::Write as u16 || hdr.command == Command::Flush as u16
}

/// The response bytes point 3 keeps: the body of an answer that is saved
/// for a replay ([`ReplayKey::saves_answer`]), else none (a READ's data is
/// not copied into the journal).
fn saved_body<'a>(hdr: &Header, resp: &'a Resp) -> &'a [u8] {
    if ReplayKey::saves_answer(hdr) {
        &resp.body
    } else {
        &[]
    }
}

/// Waits until the record of `ticket` is durable, when the journal's appends
/// may not be at once. False when the journal failed (the connection closes:
/// the client resends after reconnecting).
async fn wait_durable(server: &Server, ticket: Ticket) -> bool {
    if !server.journal.must_wait() || server.journal.is_durable(ticket) {
        return true;
    }
    match server.journal.durable(ticket).await {
        Ok(()) => true,
        Err(e) => {
            warn!("journal, waiting for a record to be durable: {e}: closing");
            false
        }
    }
}

/// Runs an async operation's future in its own task ([MS-SMB2] 3.3.4.2:
/// its interim answer has gone out) and sends its final answer through
/// the same encoder, with points 3 and 4.
#[allow(clippy::too_many_arguments)]
fn spawn_pending(
    conn: &mut ConnState,
    op: OpId,
    index: usize,
    (async_id, message_id, session_id, outlives_channel): (u64, u64, u64, bool),
    final_hdr: Header,
    fut: PendingFut,
    sign: Option<Arc<SessionCrypto>>,
    encrypted: bool,
) {
    let fut = cancellable(conn, async_id, message_id, session_id, fut);
    if let Some(p) = lock(&conn.pending).get_mut(&async_id) {
        p.outlives_channel = outlives_channel;
    }
    let tx = conn.tx.clone();
    let server = conn.server.clone();
    let enc = if encrypted { conn.session(session_id).and_then(|s| s.crypto()).map(|c| (c, session_id)) } else { None };
    let fence = Mark::take(server.lease.as_ref());
    tokio::spawn(async move {
        let resp = match fut.await {
            Ok(r) => r,
            Err(s) => error_resp(s),
        };
        if fence.crossed() {
            // A change on disk was fenced (`pair::fence`): no answer, no point 3.
            warn!(message_id, "a change on disk was fenced (no lease on our share set): closing");
            let _ = tx.send(crate::transport::CLOSE_FRAME.into()).await;
            return;
        }
        let mut resp = resp;
        if !point3_final(&server, op, index, &mut resp).await {
            let _ = tx.send(crate::transport::CLOSE_FRAME.into()).await;
            return;
        }
        let mut h = final_hdr;
        h.status = resp.status.0;
        let after = resp.after.take();
        let e = OutElement {
            hdr: h,
            body: resp.body,
            headroom: resp.headroom,
            sign,
            preauth_session: None,
            preauth_conn: false,
        };
        let mut unused = protocol::crypto::preauth::PreauthHash::new();
        // An answer that cannot be sent ends the connection.
        let frame = encode_frame(&mut unused, vec![e], enc).map_or(crate::transport::CLOSE_FRAME, BytesMut::freeze);
        let _ = tx.send(Reply::new(frame, op)).await;
        if let Some(f) = after {
            f();
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_data_carries_the_needed_size() {
        let r = Resp::error_with_data(NtStatus::BUFFER_TOO_SMALL, &120u32.to_le_bytes());
        assert_eq!(r.status, NtStatus::BUFFER_TOO_SMALL);
        assert_eq!(&r.body[..], &[9, 0, 0, 0, 4, 0, 0, 0, 120, 0, 0, 0]);
        let empty = Resp::error_with_data(NtStatus::ACCESS_DENIED, &[]);
        assert_eq!(&empty.body[..], &[9, 0, 0, 0, 0, 0, 0, 0, 0]);
    }

    /// A lone WRITE request frame with `len` bytes of data.
    fn write_frame(len: usize) -> Vec<u8> {
        let mut out = BytesMut::new();
        Header { command: Command::Write as u16, ..Default::default() }.encode(&mut out);
        let data = vec![0x5a; len];
        protocol::msg::write::WriteRequest {
            offset: 0,
            file_id: FileId { persistent: 1, volatile: 1 },
            channel: 0,
            remaining_bytes: 0,
            flags: 0,
            data: &data,
            write_channel_info: &[],
        }
        .encode(&mut out);
        out.to_vec()
    }

    /// Point 1 keeps a small lone WRITE whole under a journal that survives a
    /// power loss (a restart writes it again from the record), and only the
    /// fixed part and the digest of the data of a large one (synced in its
    /// file before it is answered) and of any one under a journal that
    /// survives a killed process only; the replay key rebuilt from that
    /// record is the request's.
    #[test]
    fn point1_keeps_the_data_of_a_write_only_where_the_journal_keeps_it() {
        let journal = |keep: bool| {
            let storage = ::nvram::MemStorage::new(1 << 20);
            let opts = ::nvram::Options::new(ids::ClusterId(1), ids::NodeId(1), ::nvram::Durability::None);
            let region = Arc::new(::nvram::Journal::create(storage, opts).unwrap());
            Arc::new(crate::journal::NvramJournal::new(region).keeping_write_data(keep))
        };
        let mut server = Server::new(crate::config::Config::default()).unwrap();
        let digested = HEADER_LEN + 48 + 8;
        let small = write_frame(4096);
        let large = write_frame(crate::journal::WRITE_IN_FILE_FROM);
        let tiny = write_frame(8);
        let len = |server: &Server, msg: &[u8]| point1_bytes(server, msg).0.len();
        server.journal = journal(true);
        assert_eq!(len(&server, &small), small.len());
        assert_eq!(len(&server, &large), digested);
        assert!(server.syncs_write_in_file(crate::journal::WRITE_IN_FILE_FROM) && !server.syncs_write_in_file(4096));
        server.journal = journal(false);
        assert_eq!(len(&server, &small), digested);
        assert_eq!(len(&server, &large), digested);
        assert_eq!(len(&server, &tiny), tiny.len(), "8 bytes of data are kept: no smaller digested");
        assert!(!server.syncs_write_in_file(crate::journal::WRITE_IN_FILE_FROM));
        for msg in [&small, &large] {
            let (record, digest) = point1_bytes(&server, msg);
            let hdr = Header::parse(msg).unwrap();
            let key = ReplayKey::of(&hdr, msg, None).unwrap();
            assert_eq!(ReplayKey::of_digested(&hdr, msg, None, digest), Some(key));
            assert_eq!(ReplayKey::of(&Header::parse(&record).unwrap(), &record, None), Some(key));
        }
    }

    fn element(body_len: usize) -> OutElement {
        let hdr = Header { command: Command::Read as u16, ..Default::default() }.response(NtStatus::SUCCESS);
        OutElement {
            hdr,
            body: BytesMut::zeroed(body_len),
            headroom: None,
            sign: None,
            preauth_session: None,
            preauth_conn: false,
        }
    }

    /// A frame longer than a NetBIOS header can announce is not sent (in
    /// release builds too: the length used to wrap), and one just short of
    /// it is.
    #[test]
    fn a_frame_too_long_for_netbios_is_not_encoded() {
        let mut preauth = protocol::crypto::preauth::PreauthHash::new();
        let max = protocol::netbios::MAX_LEN;
        let f = encode_frame(&mut preauth, vec![element(max - HEADER_LEN)], None).expect("the largest frame");
        assert_eq!(&f[..4], &[0, 0xFF, 0xFF, 0xFF]);
        assert_eq!(f.len(), 4 + max);
        assert!(encode_frame(&mut preauth, vec![element(max - HEADER_LEN + 1)], None).is_none());
        assert!(encode_frame(&mut preauth, vec![element(9 << 20), element(9 << 20)], None).is_none());
    }
}
