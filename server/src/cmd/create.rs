//! CREATE ([MS-SMB2] 3.3.5.9): open or create a file, directory or pipe,
//! with every create disposition, share modes and the create contexts.

use std::sync::{Arc, Mutex};

use bytes::{BufMut, BytesMut};
use protocol::fscc::SecurityDescriptor;
use protocol::msg::aapl::{self, ServerQuery, ServerQueryReply};
use protocol::msg::create::{
    create_action, create_disposition as disp, create_options as opt, file_attributes as fattr, impersonation_level,
    CreateRequest, CreateResponse,
};
use protocol::msg::create_context::{
    durable_v2_flags, lease_flags, DurableHandleReconnectV2, DurableHandleRequestV2, Lease, LeaseV2, RequestContext,
    ResponseContext,
};
use protocol::msg::negotiate::dialect;
use protocol::msg::FileId;
use protocol::NtStatus;
use tracing::{debug, warn};

use super::{file_stat, generic_map};
use crate::fs::{self, FsError, SmbPath};
use crate::handler::{Ctx, HResult, Resp};
use crate::model::{Delta, Durability, Owner, PersistentFileId, SessionId, TreeId, VolatileFileId};
use crate::state::deltas;
use crate::state::file_fields::file_in;
use crate::state::files::{access, Breaks, FileTable, FileUid, Inode, LeaseGrant, OpenRef};
use crate::state::lease::{lease_state, LeaseId};
use crate::state::notify::{action, filter};
use crate::state::open::{AppInstance, Open, OpenFields, OpenKind, OpenState};
use crate::state::oplock::{self, BreakSink};
use crate::state::record::ModelHold;
use crate::state::session::{AuthState, SessionCrypto};
use crate::state::tree::TreeKind;
use crate::state::{durable, Server, Session, Tree};
use crate::state::{lock, now_filetime};

/// Create options Duet refuses with STATUS_NOT_SUPPORTED ([MS-SMB2]
/// 3.3.5.9): FILE_RESERVE_OPFILTER always; FILE_OPEN_BY_FILE_ID because
/// Duet cannot open by file id; FILE_CREATE_TREE_CONNECTION (0x80) as
/// Windows does.
const UNSUPPORTED_OPTIONS: u32 = opt::RESERVE_OPFILTER | opt::OPEN_BY_FILE_ID | CREATE_TREE_CONNECTION;
/// FILE_CREATE_TREE_CONNECTION ([MS-SMB2] 2.2.13).
const CREATE_TREE_CONNECTION: u32 = 0x0000_0080;
/// DesiredAccess bits that are reserved ([MS-SMB2] 3.3.5.9: "If any of
/// the bits in the mask 0x0CE0FE00 are set ... STATUS_ACCESS_DENIED").
const RESERVED_ACCESS: u32 = 0x0CE0_FE00;
/// Bits of CreateOptions that are valid at all.
const VALID_OPTIONS: u32 = 0x00FF_FFFF;
/// File attributes a client may set.
const VALID_ATTRIBUTES: u32 = 0x0000_7FB7;

/// Write-ish access that needs a writable file descriptor.
const WRITE_ACCESS: u32 = access::FILE_WRITE_DATA | access::FILE_APPEND_DATA;
/// Access that modifies the file in any way (refused on read-only shares).
const MODIFY_ACCESS: u32 = access::FILE_WRITE_DATA
    | access::FILE_APPEND_DATA
    | access::FILE_WRITE_EA
    | access::FILE_WRITE_ATTRIBUTES
    | access::DELETE
    | access::WRITE_DAC
    | access::WRITE_OWNER
    | access::FILE_DELETE_CHILD;

pub async fn handle(ctx: &mut Ctx<'_>) -> HResult {
    let req = CreateRequest::parse(ctx.msg).map_err(|e| {
        debug!("bad CREATE: {e}");
        NtStatus::INVALID_PARAMETER
    })?;
    let tree = ctx.tree()?.clone();
    let session = ctx.session()?.clone();
    let dh2c = req.context(|c| matches!(c, RequestContext::DurableHandleReconnectV2(_)));
    if let (Some(RequestContext::DurableHandleReconnectV2(r)), TreeKind::Disk(_)) = (dh2c, &tree.kind) {
        // [MS-SMB2] 3.3.5.9.12: as for DHnC, only the reconnect context
        // matters; a durable request of either version beside it, or a
        // version 1 reconnect, is INVALID_PARAMETER (3.3.5.9.10).
        let other = req.context(|c| {
            matches!(
                c,
                RequestContext::DurableHandleRequest
                    | RequestContext::DurableHandleReconnect { .. }
                    | RequestContext::DurableHandleRequestV2(_)
            )
        });
        if other.is_some() {
            return Err(NtStatus::INVALID_PARAMETER);
        }
        let lease = match req.context(|c| matches!(c, RequestContext::Lease(_))) {
            Some(RequestContext::Lease(l)) => Some(l),
            _ => None,
        };
        let opener = Opener::new(ctx, tree, session);
        let file_id = dh2c_file_id(&opener, r);
        return reconnect_after_teardown(&opener, file_id, lease, &req.name, Some(*r)).await;
    }
    let dhnc = req.context(|c| matches!(c, RequestContext::DurableHandleReconnect { .. }));
    if let (Some(RequestContext::DurableHandleReconnect { file_id }), TreeKind::Disk(_)) = (dhnc, &tree.kind) {
        // [MS-SMB2] 3.3.5.9.7: only the reconnect context matters; the
        // name, access, disposition and the rest are ignored (and not
        // checked), as Windows does.
        if req
            .context(|c| {
                matches!(c, RequestContext::DurableHandleRequestV2(_) | RequestContext::DurableHandleReconnectV2(_))
            })
            .is_some()
        {
            return Err(NtStatus::INVALID_PARAMETER);
        }
        // The lease context counts whatever oplock level the request
        // names: only the name, the handle and the lease key matter here.
        let lease = match req.context(|c| matches!(c, RequestContext::Lease(_))) {
            Some(RequestContext::Lease(l)) => Some(l),
            _ => None,
        };
        return reconnect_after_teardown(&Opener::new(ctx, tree, session), *file_id, lease, &req.name, None).await;
    }
    validate(&req)?;
    if let TreeKind::Ipc = &tree.kind {
        return open_pipe(ctx, &req, tree, session);
    }
    let mut opener = Opener::new(ctx, tree, session);
    if let (Some(RequestContext::Aapl(q)), Some(share)) =
        (req.context(|c| matches!(c, RequestContext::Aapl(_))), opener.tree.share())
    {
        let reply = aapl_reply(&opener.server.cfg.model, share, q);
        if q.request_bitmap & aapl::query::SERVER_CAPS != 0 {
            ctx.conn.aapl = reply.server_caps;
            opener.aapl_on = true;
        }
        opener.aapl = Some(reply);
    }
    if let Some(dh2q) = opener.durable_v2(&req) {
        // [MS-SMB2] 3.3.5.9.10: the AppInstanceId is handled first
        // (3.3.5.9.13), then the CreateGuid is looked up for a replay.
        close_app_instance(&opener, &req, &mut ctx.deltas)?;
        let replay = ctx.hdr.flags & protocol::header::flags::REPLAY_OPERATION != 0;
        if let Some(r) = replayed(&opener, &req, &dh2q, replay)? {
            return Ok(r);
        }
    }
    // While this CREATE is carried out (it may wait for an oplock break),
    // a replay of it is answered STATUS_FILE_NOT_AVAILABLE.
    let creating = opener.durable_v2(&req).map(|d| Creating::start(&opener.server, opener.client_guid, d.create_guid));
    let server = opener.server.clone();
    if undone_by_a_restore(&req) && server.journal.must_wait() {
        // A restore (or the partner's takeover) removes the file of an
        // exclusive CREATE under a CreateGuid that has no answer in the log
        // (`restart::redo`): it must find the request's records there, on
        // this node's storage and in the partner's mirror, before the file
        // is made. Its one wait.
        if let Err(e) = server.journal.durable(ctx.point2).await {
            warn!("journal: an exclusive CREATE's records are not durable: {e}");
            return Err(NtStatus::INSUFFICIENT_RESOURCES);
        }
    }
    let mut deferred = false;
    loop {
        let closed = server.oplock_changed.notified();
        let step = match open_disk(&opener, &req) {
            // A sharing violation is retried once, after the next close of
            // any open or [`SHARING_VIOLATION_DELAY`], as Samba defers
            // them ("defer sharing violations"): a client that closes its
            // connection and at once opens the file again on a new one
            // would otherwise race the server's teardown of the old
            // connection, whose opens still hold the share modes.
            Err(NtStatus::SHARING_VIOLATION) if !deferred => {
                deferred = true;
                let _ = tokio::time::timeout(SHARING_VIOLATION_DELAY, closed).await;
                continue;
            }
            other => other?,
        };
        return match step {
            Step::Done(r) => Ok(r),
            // Async, also in the middle of a compound: the pipeline parks
            // the rest of the chain and reads on meanwhile (the holder may
            // be this very connection).
            Step::Wait(key) => Ok(wait_then_open(opener, ctx.frame.clone(), key, creating)),
        };
    }
}

/// Whether a restore undoes the request when it made its file and has no
/// answer in the log: an exclusive CREATE (FILE_CREATE) under a CreateGuid
/// (a DH2Q context), the file's id made from it ([`fs::uid::for_create`]).
fn undone_by_a_restore(req: &CreateRequest<'_>) -> bool {
    req.exclusive_create_guid().is_some()
}

/// How long a CREATE that meets a sharing violation waits for a close
/// before it is refused.
const SHARING_VIOLATION_DELAY: std::time::Duration = std::time::Duration::from_millis(50);

/// What one attempt at an open came to.
// Returned once per attempt, never stored: boxing the answer would cost an
// allocation per CREATE.
#[allow(clippy::large_enum_variant)]
enum Step {
    Done(Resp),
    /// An oplock break on the file is in progress: try again when it ends.
    Wait(FileUid),
}

/// Everything an open needs from the request's connection, owned, so
/// that an open waiting for an oplock break can finish in its own task.
#[derive(Clone)]
struct Opener {
    server: Arc<Server>,
    tree: Arc<Tree>,
    session: Arc<Session>,
    /// The connection's notice queue, for this open's break notifications.
    tx: tokio::sync::mpsc::WeakUnboundedSender<oplock::Notice>,
    /// Break notifications are encrypted when the session or share is.
    encrypt: Option<Arc<SessionCrypto>>,
    /// Connection.ClientGuid, which leases belong to.
    client_guid: [u8; 16],
    /// Leases need SMB 2.1 or later ([MS-SMB2] 3.3.5.9.8).
    leasing: bool,
    /// Connection.Dialect: durable v2 and app instances need SMB 3.x
    /// ([MS-SMB2] 3.3.5.9.10, 3.3.5.9.13).
    dialect: u16,
    /// The request's ChannelSequence (SMB 3.x; [MS-SMB2] 3.3.5.9: a new
    /// open's Open.ChannelSequence).
    channel_sequence: u16,
    /// The answer to the request's AAPL server query, if it made one.
    aapl: Option<ServerQueryReply>,
    /// The connection negotiated AAPL (this request's query counts): an
    /// open of an existing empty stream does not find it.
    aapl_on: bool,
}

impl Opener {
    fn new(ctx: &Ctx<'_>, tree: Arc<Tree>, session: Arc<Session>) -> Opener {
        let crypto = session.crypto();
        let encrypts = ctx.encrypted || tree.encrypt || crypto.as_ref().is_some_and(|c| c.encrypt_data);
        Opener {
            server: ctx.server.clone(),
            tree,
            session,
            tx: ctx.conn.notice_tx.downgrade(),
            encrypt: if encrypts { crypto } else { None },
            client_guid: ctx.conn.client_guid,
            leasing: ctx.conn.dialect >= protocol::msg::negotiate::dialect::SMB2_1,
            dialect: ctx.conn.dialect,
            channel_sequence: if ctx.conn.dialect >= dialect::SMB3_0 { ctx.hdr.channel_sequence() } else { 0 },
            aapl: None,
            aapl_on: ctx.conn.aapl != 0,
        }
    }

    /// The request's DH2Q, when it counts: on SMB 3.x only ([MS-SMB2]
    /// 3.3.5.9.10 applies to the 3.x dialect family; older dialects ignore
    /// the context).
    fn durable_v2(&self, req: &CreateRequest<'_>) -> Option<DurableHandleRequestV2> {
        match req.context(|c| matches!(c, RequestContext::DurableHandleRequestV2(_))) {
            Some(RequestContext::DurableHandleRequestV2(d)) if self.dialect >= dialect::SMB3_0 => Some(*d),
            _ => None,
        }
    }

    /// The file id a QFid context answers: zero once the connection
    /// negotiated AAPL, as Samba's `vfs_fruit` (`fruit:zero_file_id`, on by
    /// default), which tells macOS not to rely on file ids.
    fn disk_file_id(&self, fstat: &protocol::fscc::FileStat) -> u64 {
        if self.aapl_on {
            0
        } else {
            fstat.file_id
        }
    }

    /// Puts a new open in its session's table, and returns its delta
    /// ([`deltas::open_up`], under `name`, its share-relative path). A session torn down meanwhile (its last
    /// channel lost, [MS-SMB2] 3.3.7.1; a LOGOFF, 3.3.5.6) while the
    /// CREATE waited for an oplock or lease break has no table to put it
    /// in, and the model no record to attach it to: the CREATE is
    /// cancelled with its session (STATUS_USER_SESSION_DELETED, 3.3.5.2.9),
    /// and the caller's reservation, dropped, undoes the open in the file
    /// table (its share modes, its oplock or lease). Checked and done under
    /// the session's lock, which the teardown takes to empty the table.
    fn attach(&self, open: Arc<Open>, name: &str, fields: &OpenFields) -> Result<Option<Delta>, NtStatus> {
        let mut inner = lock(&self.session.inner);
        if matches!(inner.auth, AuthState::Expired) {
            debug!(session = self.session.id, "a CREATE's session ended while it waited: no open");
            return Err(NtStatus::USER_SESSION_DELETED);
        }
        let up = deltas::open_up(&open, name, &inner, self.client_guid, fields);
        inner.opens.insert(open.volatile_id, open);
        Ok(up)
    }

    /// Has the session been torn down (see [`Opener::attach`])?
    fn session_ended(&self) -> bool {
        matches!(lock(&self.session.inner).auth, AuthState::Expired)
    }

    fn sink(&self, id: u64) -> BreakSink {
        BreakSink {
            tx: self.tx.clone(),
            session_id: self.session.id,
            file_id: FileId { persistent: id, volatile: id },
            encrypt: self.encrypt.clone(),
            client: Some((self.server.clients.clone(), self.client_guid)),
        }
    }
}

/// Goes async ([MS-SMB2] 3.3.4.2): the client gets STATUS_PENDING now,
/// and the CREATE's answer once the oplock holders have acknowledged (or
/// timed out).
fn wait_then_open(opener: Opener, msg: bytes::Bytes, key: FileUid, creating: Option<Creating>) -> Resp {
    let mut r = Resp::ok(BytesMut::new());
    // Under a CreateGuid the open is made even when this channel is lost
    // meanwhile: the client replays the CREATE on another channel of the
    // session, which gets STATUS_FILE_NOT_AVAILABLE while this one waits
    // and the open once it is made ([MS-SMB2] 3.3.5.9.10; smbtorture
    // smb2.replay dhv2-pending2*-sane).
    r.outlives_channel = creating.is_some();
    r.pending = Some(Box::pin(async move {
        let _creating = creating;
        let mut key = key;
        loop {
            oplock::wait_for_breaks(&opener.server, key).await;
            if opener.session_ended() {
                // Cancelled with its session before it touches the file
                // (an overwrite, a new file): see `Opener::attach`.
                return Err(NtStatus::USER_SESSION_DELETED);
            }
            let req = CreateRequest::parse(&msg).map_err(|_| NtStatus::INVALID_PARAMETER)?;
            match open_disk(&opener, &req)? {
                Step::Done(r) => return Ok(r),
                Step::Wait(k) => key = k,
            }
        }
    }));
    r
}

/// How often, and how long apart, a reconnect looks again for an open
/// that another session still holds.
const RECONNECT_TRIES: u32 = 10;
const RECONNECT_RETRY: std::time::Duration = std::time::Duration::from_millis(20);

/// [`reconnect`], waiting a moment for an open that is still attached to
/// another session: a client that drops its connection and at once
/// reconnects on a new one races the server's teardown of the old
/// connection, which is what retains the open (smbtorture
/// durable-open.reopen2-lease failed now and then with
/// STATUS_OBJECT_NAME_NOT_FOUND). An open of this session, or none at
/// all, is answered at once.
async fn reconnect_after_teardown(
    opener: &Opener,
    file_id: FileId,
    lease_request: Option<&Lease>,
    name: &str,
    v2: Option<DurableHandleReconnectV2>,
) -> HResult {
    let mut tries = 0;
    loop {
        let r = reconnect(opener, file_id, lease_request, name, v2);
        if !matches!(r, Err(NtStatus::OBJECT_NAME_NOT_FOUND)) || tries >= RECONNECT_TRIES {
            return r;
        }
        let me = opener.session.id;
        let elsewhere = opener.server.with_model(|m| {
            m.open(PersistentFileId(file_id.persistent)).and_then(|o| o.session()).is_some_and(|s| s.0 != me)
        });
        if !elsewhere {
            return r;
        }
        tries += 1;
        tokio::time::sleep(RECONNECT_RETRY).await;
    }
}

/// The open a DH2C names ([MS-SMB2] 3.3.5.9.12): its persistent id; or,
/// when no open has that id and the client asks for a persistent handle on
/// a continuously available share, the persistent open with the context's
/// CreateGuid (a client that lost the id, or a replay of a DH2C whose
/// answer was lost). The open found is then checked like any other.
fn dh2c_file_id(opener: &Opener, r: &DurableHandleReconnectV2) -> FileId {
    let ca = opener.tree.share().is_some_and(|s| s.cfg.continuous_availability);
    if !ca || r.flags & durable_v2_flags::PERSISTENT == 0 || opener.dialect < dialect::SMB3_0 {
        return r.file_id;
    }
    let client = crate::model::ClientGuid(opener.client_guid);
    let guid = crate::model::CreateGuid(r.create_guid);
    let found = opener.server.with_model(|m| {
        if m.open(PersistentFileId(r.file_id.persistent)).is_some() {
            return None;
        }
        m.sets().filter_map(|set| m.partition(set)).find_map(|p| p.persistent_open(client, guid)).map(|o| o.id().0)
    });
    match found {
        Some(pid) => {
            debug!(asked = r.file_id.persistent, found = pid, "DH2C: persistent open found by its CreateGuid");
            FileId { persistent: pid, volatile: r.file_id.volatile }
        }
        None => r.file_id,
    }
}

/// DHnC ([MS-SMB2] 3.3.5.9.7) and DH2C (3.3.5.9.12): a client takes back
/// a durable open that outlived its connection. The open keeps its file
/// id, oplock, locks and position; the answer carries no durable context.
///
/// With DH2C, an open comes back only with its CreateGuid (zero for a
/// version 1 open), and a persistent one only with
/// SMB2_DHANDLE_FLAG_PERSISTENT. Anything else is
/// STATUS_OBJECT_NAME_NOT_FOUND, as if there were no such open (as
/// smbtorture durable-v2-open.reopen2 expects).
fn reconnect(
    opener: &Opener,
    file_id: FileId,
    lease_request: Option<&Lease>,
    name: &str,
    v2: Option<DurableHandleReconnectV2>,
) -> HResult {
    let share = opener.tree.share().ok_or(NtStatus::INVALID_PARAMETER)?;
    let Owner { user, domain } = lock(&opener.session.inner).owner();
    let server = &opener.server;
    // The open's durability and CreateGuid, as the model has them (they
    // never change: read before the retained opens' lock is taken).
    let (durability, create_guid) = server.read_open(file_id.persistent, |o| {
        o.map_or((Durability::None, None), |o| (o.info().durability, o.info().create_guid.map(|g| g.0)))
    });
    let durable = durability != Durability::None;
    let persistent = matches!(durability, Durability::Persistent { .. });
    // [MS-SMB2] 3.3.5.9.7: a leased open comes back only with its lease
    // key (else it is "not found"), and then only under its own name
    // (else INVALID_PARAMETER); an oplock open only without a lease.
    let check = |old: &Open| -> Result<(), NtStatus> {
        {
            let matches = match v2 {
                // Open.CreateGuid must match; a version 1 open has none
                // (zero), as smbd compares them (smbtorture
                // durable-open.reopen2-lease reclaims a version 1 open
                // with a zero CreateGuid, durable-v2-open.reopen2c fails
                // to with another).
                Some(r) => {
                    create_guid.unwrap_or([0; 16]) == r.create_guid
                        && durable
                        && (!persistent || r.flags & durable_v2_flags::PERSISTENT != 0)
                }
                // A version 2 open comes back with DHnC too, as with
                // smbd (smbtorture durable-v2-open.reopen2b); a version 1
                // open has no CreateGuid for DH2C (reopen2c).
                None => durable,
            };
            if !matches {
                return Err(NtStatus::OBJECT_NAME_NOT_FOUND);
            }
        }
        let key = old.key.ok_or(NtStatus::OBJECT_NAME_NOT_FOUND)?;
        let lease = server.files().caching(|t, m| t.open_lease(m.model(), &key, old.persistent_id));
        match (lease, lease_request) {
            // A lease belongs to its client: the key must come from the
            // same ClientGuid.
            (Some((lid, _)), Some(l)) if lid.key == l.lease_key && lid.client_guid == opener.client_guid => {
                let kept = server.path_of(old).unwrap_or_default();
                if kept.eq_ignore_ascii_case(name.trim_start_matches('\\')) {
                    Ok(())
                } else {
                    debug!(%kept, asked = name, "DHnC with a lease under another name");
                    Err(NtStatus::INVALID_PARAMETER)
                }
            }
            (None, None) => Ok(()),
            _ => Err(NtStatus::OBJECT_NAME_NOT_FOUND),
        }
    };
    let open = Arc::new(durable::reclaim(
        server,
        file_id.persistent,
        &user,
        &domain,
        &share.cfg.name,
        opener.session.id,
        &opener.tree,
        check,
    )?);
    let key = open.key.ok_or(NtStatus::OBJECT_NAME_NOT_FOUND)?;
    let id = open.persistent_id;
    let (level, lease, breaking) = server.files().caching(|t, m| {
        let m = m.model();
        t.set_oplock_sink(m, &key, id, opener.sink(id));
        let breaking = t.oplock_breaking_open(m, &key, id) || t.lease_breaking_open(m, &key, id);
        (t.oplock_level(m, &key, id), t.open_lease_grant(m, &key, id), breaking)
    });
    let mut contexts = Vec::new();
    let level = match (lease, lease_request) {
        (Some((lid, g)), Some(l)) => {
            contexts.push(ResponseContext::Lease(Lease {
                lease_key: lid.key,
                lease_state: g.state,
                lease_flags: if g.breaking { lease_flags::BREAK_IN_PROGRESS } else { 0 },
                lease_duration: 0,
                // Lease.Epoch ([MS-SMB2] 3.3.5.9.12, answered as 3.3.5.9.11).
                v2: l.v2.map(|v| LeaseV2 {
                    parent_lease_key: v.parent_lease_key,
                    epoch: if g.v2 { g.epoch } else { v.epoch },
                }),
            }));
            oplock::level::LEASE
        }
        _ => level,
    };
    let st = open.handle().ok_or(NtStatus::OBJECT_NAME_NOT_FOUND)?.stat().map_err(fs_err)?;
    let delete_pending = opener.server.delete_pending(key);
    lock(&opener.session.inner).opens.insert(open.volatile_id, open.clone());
    let fstat = file_stat(&st, delete_pending);
    let fid = open.file_id();
    let resp = answer(&fstat, level, create_action::OPENED, fid, contexts);
    let mut body = BytesMut::with_capacity(96);
    resp.encode(&mut body);
    let mut r = Resp::ok(body).file(fid);
    if breaking {
        // A break in progress when the holder went (one a restart brought
        // back): its notice again, once the holder has its handle back, so
        // that it flushes and acknowledges ([MS-SMB2] 3.3.4.6, 3.3.4.7).
        let server = server.clone();
        r.after = Some(Box::new(move || {
            if server.files().caching(|t, m| t.resend_break(m.model(), &key, id)) {
                debug!(pid = id, "break in progress: notice sent again to the reclaiming client");
            }
        }));
    }
    r.deltas.push(Delta::OpenReconnected {
        open: PersistentFileId(open.persistent_id),
        session: SessionId(opener.session.id),
        tree: TreeId(opener.tree.id),
        volatile: VolatileFileId(open.volatile_id),
    });
    // The new session's requests start at the reconnect's ChannelSequence:
    // a client's counter is per session, so the old one would make the
    // open's next WRITE look stale ([MS-SMB2] 3.3.5.2.10). At once, as
    // every change of the open's fields (`state::fields`).
    r.kept |= opener.server.set_channel_sequence(&open, opener.channel_sequence);
    Ok(r)
}

/// The longest a version 2 durable or persistent handle waits for its
/// client, and the timeout granted when the client leaves it to the
/// server (DH2Q Timeout 0): Samba's values, which smbtorture
/// durable-v2-open expects ([MS-SMB2] 3.3.5.9.10 leaves them to the
/// implementation).
const V2_TIMEOUT_MAX_MS: u32 = 300_000;
const V2_TIMEOUT_DEFAULT_MS: u32 = 60_000;

/// The timeout granted for a DH2Q's `asked` ([MS-SMB2] 2.2.14.2.12).
fn v2_timeout(asked: u32) -> u32 {
    if asked == 0 {
        V2_TIMEOUT_DEFAULT_MS
    } else {
        asked.min(V2_TIMEOUT_MAX_MS)
    }
}

/// The durable handle a new open gets ([MS-SMB2] 3.3.5.9.6 DHnQ,
/// 3.3.5.9.10 DH2Q): none for a directory; a persistent handle when DH2Q
/// asks for one on a continuously available share, whatever the caching
/// (smbtorture durable-v2-open.persistent-open-oplock and -lease expect
/// it with every oplock level and lease state); otherwise a version 1 or
/// 2 durable handle only with a batch oplock or a lease that caches
/// handles.
fn grant_durability(
    req: &CreateRequest<'_>,
    dh2q: Option<&DurableHandleRequestV2>,
    is_dir: bool,
    continuously_available: bool,
    caches_handles: bool,
) -> Durability {
    if is_dir {
        return Durability::None;
    }
    match dh2q {
        Some(d) if d.flags & durable_v2_flags::PERSISTENT != 0 && continuously_available => {
            Durability::Persistent { timeout_ms: v2_timeout(d.timeout) }
        }
        Some(d) if caches_handles => Durability::V2 { timeout_ms: v2_timeout(d.timeout) },
        Some(_) => Durability::None,
        None if caches_handles && req.context(|c| matches!(c, RequestContext::DurableHandleRequest)).is_some() => {
            Durability::V1 { timeout_ms: crate::state::open::DURABLE_TIMEOUT.as_millis() as u32 }
        }
        None => Durability::None,
    }
}

/// The response context that reports a granted durable handle ([MS-SMB2]
/// 2.2.14.2.3, 2.2.14.2.12).
fn durable_context(d: Durability) -> Option<ResponseContext<'static>> {
    match d {
        Durability::None => None,
        Durability::V1 { .. } => Some(ResponseContext::DurableHandle),
        Durability::V2 { timeout_ms } => Some(ResponseContext::DurableHandleV2 { timeout: timeout_ms, flags: 0 }),
        Durability::Persistent { timeout_ms } => {
            Some(ResponseContext::DurableHandleV2 { timeout: timeout_ms, flags: durable_v2_flags::PERSISTENT })
        }
    }
}

/// What a DH2Q CREATE keeps for a replay ([MS-SMB2] 3.3.5.9.10):
/// Open.CreateGuid is set whether or not durability is granted, and the
/// open is replay eligible (as smbd keeps every DH2Q create in its replay
/// cache), with its AppInstanceId.
fn keep_for_replay(fields: &mut OpenFields, dh2q: Option<&DurableHandleRequestV2>, req: &CreateRequest<'_>) {
    if let Some(d) = dh2q {
        fields.create_guid = Some(d.create_guid);
        fields.replay_eligible = true;
        fields.app_instance = app_instance(req);
    }
}

/// The request's AppInstanceId and AppInstanceVersion ([MS-SMB2]
/// 2.2.13.2.13, 2.2.13.2.15).
fn app_instance(req: &CreateRequest<'_>) -> Option<AppInstance> {
    let id = match req.context(|c| matches!(c, RequestContext::AppInstanceId(_))) {
        Some(RequestContext::AppInstanceId(id)) => *id,
        _ => return None,
    };
    let version = match req.context(|c| matches!(c, RequestContext::AppInstanceVersion { .. })) {
        Some(RequestContext::AppInstanceVersion { high, low }) => Some((*high, *low)),
        _ => None,
    };
    Some(AppInstance { id, version })
}

/// SMB2_CREATE_APP_INSTANCE_ID ([MS-SMB2] 3.3.5.9.13): a new open with an
/// AppInstanceId closes the opens of the same file on the same share that
/// carry the same AppInstanceId and belong to another client (a failover
/// cluster node taking over an application's files), connected or
/// retained, without an oplock or lease break. With
/// AppInstanceVersion on SMB 3.1.1, an old open of a version at least as
/// high stays and the new one fails with STATUS_FILE_FORCED_CLOSED.
///
/// Called for a CREATE with DH2Q only (3.3.5.9.10 processes the app
/// instance first).
fn close_app_instance(opener: &Opener, req: &CreateRequest<'_>, out: &mut Vec<Delta>) -> Result<(), NtStatus> {
    let Some(AppInstance { id, version }) = app_instance(req) else {
        return Ok(());
    };
    let share = opener.tree.share().ok_or(NtStatus::INVALID_PARAMETER)?;
    let path = req.name.trim_start_matches('\\');
    let me = crate::model::ClientGuid(opener.client_guid);
    // (persistent id, session and volatile id while connected, version)
    type Found = (u64, Option<(u64, u64)>, Option<(u64, u64)>);
    let found: Vec<Found> = opener.server.with_model(|m| {
        m.sets()
            .filter_map(|set| m.partition(set))
            .flat_map(|p| p.app_instance_opens(crate::model::AppInstanceId(id)))
            .filter(|o| {
                o.info().client_guid != me
                    && o.info().share.eq_ignore_ascii_case(&share.cfg.name)
                    && o.path().eq_ignore_ascii_case(path)
            })
            .map(|o| (o.id().0, o.session().map(|s| (s.0, o.volatile().0)), o.info().app_instance_version))
            .collect()
    });
    if let Some((new_high, new_low)) = version.filter(|_| opener.dialect >= dialect::SMB3_1_1) {
        let newer = |v: &Option<(u64, u64)>| v.is_some_and(|(h, l)| h > new_high || (h == new_high && l >= new_low));
        if found.iter().any(|(_, _, v)| newer(v)) {
            return Err(NtStatus::FILE_FORCED_CLOSED);
        }
    }
    for (pid, attached, _) in found {
        match attached {
            Some((sid, volatile)) => {
                let Some(session) = opener.server.session(sid) else { continue };
                let open = {
                    let mut inner = lock(&session.inner);
                    match inner.opens.get(&volatile) {
                        Some(o) if o.persistent_id == pid => inner.opens.remove(&volatile),
                        _ => None,
                    }
                };
                if let Some(o) = open {
                    debug!(pid, "open closed by a new open with its AppInstanceId");
                    crate::state::close::close_open(&opener.server, &o, out);
                }
            }
            None => durable::purge(&opener.server, pid, out),
        }
    }
    Ok(())
}

/// A DH2Q CREATE being carried out: its (ClientGuid, CreateGuid) is in
/// [`Server::creating`] until it is answered, so that a replay of it meanwhile
/// is refused ([MS-SMB2] 3.3.5.9.10; smbtorture replay.dhv2-pending*).
struct Creating {
    server: Arc<Server>,
    key: ([u8; 16], [u8; 16]),
}

impl Creating {
    fn start(server: &Arc<Server>, client_guid: [u8; 16], create_guid: [u8; 16]) -> Creating {
        let key = (client_guid, create_guid);
        lock(&server.creating).insert(key);
        Creating { server: server.clone(), key }
    }
}

impl Drop for Creating {
    fn drop(&mut self) {
        lock(&self.server.creating).remove(&self.key);
    }
}

/// A DH2Q CREATE whose CreateGuid names an open of this client that is
/// still replay eligible ([MS-SMB2] 3.3.5.9.10): without
/// SMB2_FLAGS_REPLAY_OPERATION it is STATUS_DUPLICATE_OBJECTID; with it,
/// the answer is that open's, made again (the request's oplock level, as
/// smbd answers, the lease as it is now), and nothing is opened. A replay
/// with a lease is refused (STATUS_ACCESS_DENIED) unless the open has a
/// lease of the same key, and so is a replay without a lease of an open
/// that has one. A retained open (its connection lost before the answer
/// reached the client, or a restart) is taken back into this session, as
/// a DH2C would. `None`: no such open, the CREATE goes on.
fn replayed(
    opener: &Opener,
    req: &CreateRequest<'_>,
    dh2q: &DurableHandleRequestV2,
    replay: bool,
) -> Result<Option<Resp>, NtStatus> {
    if lock(&opener.server.creating).contains(&(opener.client_guid, dh2q.create_guid)) {
        // The first CREATE is still being carried out.
        return Err(NtStatus::FILE_NOT_AVAILABLE);
    }
    let client = crate::model::ClientGuid(opener.client_guid);
    let guid = crate::model::CreateGuid(dh2q.create_guid);
    let found = opener.server.with_model(|m| {
        m.sets()
            .filter_map(|set| m.partition(set))
            .find_map(|p| p.replay_open(client, guid))
            .map(|o| (o.id().0, o.session().map(|s| (s.0, o.volatile().0))))
    });
    let Some((pid, attached)) = found else {
        if replay {
            tracing::info!(name = %req.name, "a replayed CREATE names no open by its CreateGuid: carried out anew");
        }
        return Ok(None);
    };
    if !replay {
        return Err(NtStatus::DUPLICATE_OBJECTID);
    }
    let lease_request = match req.context(|c| matches!(c, RequestContext::Lease(_))) {
        Some(RequestContext::Lease(l)) if opener.leasing && req.requested_oplock_level == oplock::level::LEASE => {
            Some(*l)
        }
        _ => None,
    };
    let server = &opener.server;
    let mut r = match attached {
        Some((sid, volatile)) => {
            if sid != opener.session.id {
                // Another session's open: not this client's to answer for.
                return Err(NtStatus::ACCESS_DENIED);
            }
            let open = opener.session.open(volatile).filter(|o| o.persistent_id == pid);
            let Some(open) = open else {
                // Not yet (or no longer) in the session's table: the
                // first CREATE is still being carried out.
                return Err(NtStatus::FILE_NOT_AVAILABLE);
            };
            Resp::ok(BytesMut::new()).file(open.file_id())
        }
        None => {
            // Taken back like a DH2C, then answered as a replay.
            let r = DurableHandleReconnectV2 {
                file_id: FileId { persistent: pid, volatile: pid },
                create_guid: dh2q.create_guid,
                flags: dh2q.flags,
            };
            reconnect(opener, r.file_id, lease_request.as_ref(), &req.name, Some(r))?
        }
    };
    let fid = r.file_id.ok_or(NtStatus::FILE_NOT_AVAILABLE)?;
    let open = opener.session.open(fid.volatile).ok_or(NtStatus::FILE_NOT_AVAILABLE)?;
    let key = open.key.ok_or(NtStatus::FILE_NOT_AVAILABLE)?;
    let (durability, action) = server.read_open(open.persistent_id, |o| {
        o.map_or((Durability::None, create_action::OPENED), |o| (o.info().durability, o.info().create_action))
    });
    let held = server.files().caching(|t, m| t.open_lease_grant(m.model(), &key, open.persistent_id));
    let mut contexts = Vec::new();
    let level = match (held, lease_request) {
        (Some((lid, g)), Some(l)) if lid.key == l.lease_key => {
            contexts.push(ResponseContext::Lease(Lease {
                lease_key: lid.key,
                lease_state: g.state,
                lease_flags: if g.breaking { lease_flags::BREAK_IN_PROGRESS } else { 0 },
                lease_duration: 0,
                v2: g.v2.then(|| LeaseV2 {
                    parent_lease_key: l.v2.map_or([0; 16], |v| v.parent_lease_key),
                    epoch: g.epoch,
                }),
            }));
            oplock::level::LEASE
        }
        (None, None) => req.requested_oplock_level,
        _ => {
            debug!(pid, "replayed CREATE with another lease or none");
            return Err(NtStatus::ACCESS_DENIED);
        }
    };
    // As smbd answers: for an oplock, the durable context when the
    // replay's own oplock level could have had one; for a lease, as the
    // open is.
    let could = matches!(durability, Durability::Persistent { .. })
        || level == oplock::level::BATCH
        || level == oplock::level::LEASE;
    if could {
        contexts.extend(durable_context(durability));
    }
    let st = open.handle().ok_or(NtStatus::FILE_NOT_AVAILABLE)?.stat().map_err(fs_err)?;
    let delete_pending = server.delete_pending(key);
    let fstat = file_stat(&st, delete_pending);
    for c in &req.create_contexts {
        match c {
            RequestContext::QueryMaximalAccess { .. } => contexts
                .push(ResponseContext::MaximalAccess { query_status: 0, maximal_access: opener.tree.maximal_access }),
            RequestContext::QueryOnDiskId => contexts.push(ResponseContext::OnDiskId {
                disk_file_id: opener.disk_file_id(&fstat),
                volume_id: opener.tree.share().map_or(0, |s| u64::from(s.fs.volume_serial())),
            }),
            _ => {}
        }
    }
    let resp = answer(&fstat, level, action, fid, contexts);
    let mut body = BytesMut::with_capacity(160);
    resp.encode(&mut body);
    r.body = body;
    r.status = NtStatus::SUCCESS;
    Ok(Some(r))
}

/// The checks on the request's own fields that come before any lookup
/// ([MS-SMB2] 3.3.5.9), in the order Windows applies them: impersonation
/// level, reserved and privileged access bits, disposition, options,
/// attributes, share access, name, context names.
fn validate(req: &CreateRequest<'_>) -> Result<(), NtStatus> {
    if req.impersonation_level > impersonation_level::DELEGATE {
        return Err(NtStatus::BAD_IMPERSONATION_LEVEL);
    }
    if req.desired_access & RESERVED_ACCESS != 0 {
        // Checked before the attributes, as Windows does.
        return Err(NtStatus::ACCESS_DENIED);
    }
    if req.desired_access & access::ACCESS_SYSTEM_SECURITY != 0 {
        // SACL access needs SeSecurityPrivilege, which no Duet user holds
        // ([MS-FSA] 2.1.5.1.2.1).
        return Err(NtStatus::PRIVILEGE_NOT_HELD);
    }
    if req.create_disposition > disp::OVERWRITE_IF {
        return Err(NtStatus::INVALID_PARAMETER);
    }
    if req.create_options & !VALID_OPTIONS != 0 {
        return Err(NtStatus::INVALID_PARAMETER);
    }
    if req.create_options & UNSUPPORTED_OPTIONS != 0 {
        return Err(NtStatus::NOT_SUPPORTED);
    }
    if req.create_options & opt::DIRECTORY_FILE != 0 && req.create_options & opt::NON_DIRECTORY_FILE != 0 {
        return Err(NtStatus::INVALID_PARAMETER);
    }
    if req.file_attributes & !VALID_ATTRIBUTES != 0 {
        return Err(NtStatus::INVALID_PARAMETER);
    }
    if req.share_access & !0x7 != 0 {
        return Err(NtStatus::INVALID_PARAMETER);
    }
    if req.name.starts_with('\\') {
        return Err(NtStatus::INVALID_PARAMETER);
    }
    let has = |f: fn(&RequestContext<'_>) -> bool| req.create_contexts.iter().any(f);
    let v1 = has(|c| matches!(c, RequestContext::DurableHandleRequest | RequestContext::DurableHandleReconnect { .. }));
    let v2 =
        has(|c| matches!(c, RequestContext::DurableHandleRequestV2(_) | RequestContext::DurableHandleReconnectV2(_)));
    if v1 && v2 {
        // [MS-SMB2] 3.3.5.9: version 1 and version 2 durable contexts
        // do not mix.
        return Err(NtStatus::INVALID_PARAMETER);
    }
    if req.create_contexts.iter().any(|c| matches!(c, RequestContext::Other(c) if c.name.len() < 4)) {
        // Every create context name is at least four bytes ([MS-SMB2]
        // 2.2.13.2); Windows refuses shorter ones.
        return Err(NtStatus::INVALID_PARAMETER);
    }
    Ok(())
}

fn open_pipe(
    ctx: &mut Ctx<'_>,
    req: &CreateRequest<'_>,
    tree: Arc<crate::state::Tree>,
    session: Arc<crate::state::Session>,
) -> HResult {
    let kind = protocol::rpc::PipeKind::from_name(&req.name).ok_or(NtStatus::OBJECT_NAME_NOT_FOUND)?;
    let mut pipe = protocol::rpc::Pipe::new(kind);
    let unauthenticated = lock(&session.inner).unauthenticated();
    if unauthenticated {
        pipe.set_caller(protocol::rpc::Caller::Anonymous);
    }
    let slot = ctx.server.resources.open_slot(lock(&session.inner).opens.len())?;
    let id = ctx.server.next_id();
    let open = Arc::new(Open {
        persistent_id: id,
        volatile_id: id,
        session_id: session.id,
        tree,
        kind: OpenKind::Pipe(Mutex::new(pipe)),
        access: generic_map(req.desired_access),
        share_access: req.share_access,
        create_options: req.create_options,
        is_dir: false,
        key: None,
        base: None,
        st: Mutex::new(OpenState::new(None)),
        writing: Mutex::new(()),
        slot,
    });
    lock(&session.inner).opens.insert(id, open);
    let file_id = FileId { persistent: id, volatile: id };
    let now = now_filetime();
    let resp = CreateResponse {
        oplock_level: 0,
        flags: 0,
        create_action: create_action::OPENED,
        creation_time: 0,
        last_access_time: now,
        last_write_time: now,
        change_time: now,
        allocation_size: 4096,
        end_of_file: 0,
        file_attributes: fattr::NORMAL,
        file_id,
        create_contexts: Vec::new(),
    };
    let mut body = BytesMut::with_capacity(96);
    resp.encode(&mut body);
    Ok(Resp::ok(body).file(file_id))
}

fn fs_err(e: FsError) -> NtStatus {
    e.status()
}

/// STATUS_STOPPED_ON_SYMLINK with the Symbolic Link Error Response
/// ([MS-SMB2] 2.2.2.2.1): the link's target (relative, as `fs::link`
/// keeps links) and how much of the path the client opened follows the
/// link. On SMB 3.1.1 it rides in an SMB2 ERROR Context of id
/// SMB2_ERROR_ID_DEFAULT ([MS-SMB2] 2.2.2, 2.2.2.1); before, it is the
/// ErrorData itself.
fn stopped_on_symlink(stop: &fs::Stopped, conn_dialect: u16) -> Resp {
    use protocol::fscc::reparse::{SymlinkReparse, SYMLINK_FLAG_RELATIVE};
    let link = SymlinkReparse {
        substitute_name: stop.target.clone(),
        print_name: stop.target.clone(),
        flags: SYMLINK_FLAG_RELATIVE,
    };
    let mut data = BytesMut::new();
    let unparsed = u16::try_from(stop.unparsed).unwrap_or(u16::MAX);
    if link.encode_error(unparsed, &mut data).is_none() {
        // A target too long for the response's 16-bit lengths.
        return Resp::error_with_data(NtStatus::ACCESS_DENIED, &[]);
    }
    if conn_dialect < dialect::SMB3_1_1 {
        return Resp::error_with_data(NtStatus::STOPPED_ON_SYMLINK, &data);
    }
    let mut body = BytesMut::with_capacity(16 + data.len());
    body.put_u16_le(9);
    body.put_u8(1); // ErrorContextCount
    body.put_u8(0);
    body.put_u32_le(8 + data.len() as u32); // ByteCount
    body.put_u32_le(data.len() as u32); // ErrorDataLength
    body.put_u32_le(0); // ErrorId: SMB2_ERROR_ID_DEFAULT
    body.put_slice(&data);
    Resp::with_status(NtStatus::STOPPED_ON_SYMLINK, body)
}

/// The EAs an ExtA context gives a new or overwritten file: (name, value).
type NewEas<'a> = Vec<(&'a [u8], &'a [u8])>;

/// Create contexts that only matter when a file is created or overwritten.
/// Returns the EAs to set on it.
///
/// - ExtA ([MS-SMB2] 3.3.5.9.1; [MS-FSA] 2.1.5.1.1, 2.1.5.1.2.1: the EAs
///   of a file the CREATE makes, overwrites or supersedes): checked whole
///   before anything is created, so a bad list creates nothing. Without
///   user xattrs STATUS_EAS_NOT_SUPPORTED (FileFsAttributeInformation then
///   does not claim FILE_SUPPORTS_EXTENDED_ATTRIBUTES); a malformed list
///   STATUS_INVALID_PARAMETER and a name Windows refuses
///   STATUS_INVALID_EA_NAME (as smbd); a server's own name
///   STATUS_ACCESS_DENIED (`fs::ea`). An empty buffer asks for nothing.
/// - SecD ([MS-SMB2] 3.3.5.9.2): a malformed descriptor is refused with
///   STATUS_INVALID_SECURITY_DESCR before anything is made; a new file or
///   directory stores it ([`super::security::store_for_new`]). An
///   overwrite or supersede keeps the file's descriptor.
fn check_new_file_contexts<'a>(req: &CreateRequest<'a>, eas_supported: bool) -> Result<NewEas<'a>, NtStatus> {
    let mut eas = Vec::new();
    for c in &req.create_contexts {
        match c {
            RequestContext::EaBuffer(b) if !b.is_empty() => {
                if !eas_supported {
                    return Err(NtStatus::EAS_NOT_SUPPORTED);
                }
                let list = protocol::fscc::ea::parse_full_ea_list(b).map_err(|_| NtStatus::INVALID_PARAMETER)?;
                for e in &list {
                    fs::ea::check_name(e.name).map_err(|e| e.status())?;
                }
                eas.extend(list.iter().map(|e| (e.name, e.value)));
            }
            RequestContext::SecurityDescriptor(b) => {
                SecurityDescriptor::parse(b).map_err(|_| NtStatus::INVALID_SECURITY_DESCR)?;
            }
            _ => {}
        }
    }
    Ok(eas)
}

/// How many times an open looks again after another client made the name
/// between its lookup and its create.
const CREATE_RACE_RETRIES: usize = 8;

/// Opens or creates the file or directory a CREATE names. When the name is
/// made by someone else between the lookup and the create (`mkdirat` or
/// `O_EXCL` meets `EEXIST`), a disposition that may open an existing file
/// looks again and opens what was made, as a local file system would: two
/// clients creating one directory with OPEN_IF both succeed, one CREATED
/// and one OPENED (smb2.create.mkdir-dup).
fn open_disk(opener: &Opener, req: &CreateRequest<'_>) -> Result<Step, NtStatus> {
    for _ in 0..CREATE_RACE_RETRIES {
        if let Some(step) = try_open_disk(opener, req)? {
            return Ok(step);
        }
    }
    Err(NtStatus::OBJECT_NAME_COLLISION)
}

/// One attempt of [`open_disk`]: `None` when the name appeared between the
/// lookup and the create.
fn try_open_disk(opener: &Opener, req: &CreateRequest<'_>) -> Result<Option<Step>, NtStatus> {
    let server = &opener.server;
    let tree = &opener.tree;
    // Before anything is opened: a place in the session's and the
    // server's open tables (each open holds a file descriptor).
    let slot = server.resources.open_slot(lock(&opener.session.inner).opens.len())?;
    let share = tree.share().ok_or(NtStatus::INVALID_PARAMETER)?.clone();
    // `file:stream[:$DATA]` names a stream; `file::$DATA` the file itself.
    let (base_name, stream) = fs::stream::split(&req.name).map_err(fs_err)?;
    let data_stream = base_name.len() != req.name.len();
    let path = SmbPath::parse(base_name).map_err(fs_err)?;
    let mut desired = generic_map(req.desired_access);
    if desired & access::MAXIMUM_ALLOWED != 0 {
        desired = (desired & !access::MAXIMUM_ALLOWED) | tree.maximal_access;
    }
    if tree.read_only && desired & MODIFY_ACCESS != 0 && req.desired_access & access::MAXIMUM_ALLOWED == 0 {
        return Err(NtStatus::ACCESS_DENIED);
    }
    if tree.read_only {
        desired &= !MODIFY_ACCESS;
    }
    let want_dir = req.create_options & opt::DIRECTORY_FILE != 0;
    // A data stream (`::$DATA` too) is never a directory.
    let want_file = req.create_options & opt::NON_DIRECTORY_FILE != 0 || data_stream;
    if want_dir && data_stream {
        return Err(NtStatus::NOT_A_DIRECTORY);
    }
    let delete_on_close = req.create_options & opt::DELETE_ON_CLOSE != 0;
    if delete_on_close && desired & access::DELETE == 0 {
        return Err(NtStatus::INVALID_PARAMETER);
    }
    if let Some(sname) = stream {
        return open_stream(opener, req, &share, &path, sname, desired, slot);
    }
    if req.context(|c| matches!(c, RequestContext::TimewarpToken(_))).is_some() {
        // [MS-SMB2] 3.3.5.9.7: Duet keeps no previous versions, so no
        // snapshot matches the timestamp.
        return Err(NtStatus::OBJECT_NAME_NOT_FOUND);
    }
    // [MS-SMB2] 3.3.5.9.8, 3.3.5.9.11: a lease context counts when the
    // oplock level asks for a lease, on SMB 2.1 and later.
    let lease_req = lease_request(opener, req);
    let lease_id = lease_req.map(|l| LeaseId { client_guid: opener.client_guid, key: l.lease_key });
    // A lease key in use on another file is refused.
    let key_elsewhere = |key: Option<FileUid>| {
        let file = |id| server.files().caching(|t, m| t.lease_file(m.model(), &id));
        lease_id.is_some_and(|id| file(id).is_some_and(|f| Some(f) != key))
    };
    // FILE_OPEN_REPARSE_POINT opens a symbolic link itself; any other
    // link on the way stops the open for the client to follow ([MS-SMB2]
    // 3.3.5.9, 2.2.2.2.1; `fs::link`).
    let open_link = req.create_options & opt::OPEN_REPARSE_POINT != 0;
    let resolved = match share.fs.resolve_open(&path, open_link) {
        Err(FsError::StoppedOnSymlink(stop)) => return Ok(Some(Step::Done(stopped_on_symlink(&stop, opener.dialect)))),
        r => r.map_err(fs_err)?,
    };
    let (existing, stored_sd) = if resolved.exists() {
        let (st, sd) = share.fs.stat_sd(&resolved).map_err(fs_err)?;
        (Some(st), sd)
    } else {
        (None, None)
    };
    let overwrite = matches!(req.create_disposition, disp::SUPERSEDE | disp::OVERWRITE | disp::OVERWRITE_IF);
    // An existing file's stored descriptor decides what this open may have
    // ([MS-SMB2] 3.3.5.9, [MS-FSA] 2.1.5.1.2.1: the access check). An
    // overwrite needs FILE_WRITE_DATA besides what was asked, as in smbd;
    // MAXIMUM_ALLOWED gets what the descriptor grants.
    let file_max = match &existing {
        Some(_) if req.create_disposition != disp::CREATE => {
            super::security::max_access_on_open(&share.fs, &resolved, stored_sd, &server.users, &opener.session)?
        }
        _ => None,
    };
    if let Some(max) = file_max {
        let asked = generic_map(req.desired_access) & !(access::MAXIMUM_ALLOWED | access::ACCESS_SYSTEM_SECURITY);
        let needs = asked | if overwrite { access::FILE_WRITE_DATA } else { 0 };
        if needs & !max != 0 {
            return Err(NtStatus::ACCESS_DENIED);
        }
        if req.desired_access & access::MAXIMUM_ALLOWED != 0 {
            desired = asked | (max & tree.maximal_access);
            if tree.read_only {
                desired &= !MODIFY_ACCESS;
            }
        }
    }
    let maximal_access = file_max.map_or(tree.maximal_access, |m| m & tree.maximal_access);
    let new_eas = if existing.is_none() || overwrite {
        check_new_file_contexts(req, share.fs.supports_xattrs())?
    } else {
        Vec::new()
    };

    let d = req.create_disposition;
    let id = server.next_id();
    let open_ref = OpenRef::new(id, desired, req.share_access);
    let (handle, st, action, created, rsv) = match existing {
        Some(st) => {
            if d == disp::CREATE {
                return Err(NtStatus::OBJECT_NAME_COLLISION);
            }
            let overwrite = matches!(d, disp::SUPERSEDE | disp::OVERWRITE | disp::OVERWRITE_IF);
            if resolved.is_link() {
                // The link itself: a directory's link is opened as a
                // directory would be, and nothing overwrites one (it has
                // no data to truncate).
                let dir_link = st.attributes & fattr::DIRECTORY != 0;
                if overwrite {
                    return Err(NtStatus::ACCESS_DENIED);
                }
                if dir_link && want_file {
                    return Err(NtStatus::FILE_IS_A_DIRECTORY);
                }
                if !dir_link && (want_dir || path.trailing_separator()) {
                    return Err(NtStatus::NOT_A_DIRECTORY);
                }
            } else {
                if st.is_dir && want_file {
                    return Err(NtStatus::FILE_IS_A_DIRECTORY);
                }
                if !st.is_dir && (want_dir || path.trailing_separator()) {
                    return Err(NtStatus::NOT_A_DIRECTORY);
                }
            }
            if st.is_dir && overwrite {
                return Err(NtStatus::INVALID_PARAMETER);
            }
            if st.attributes & fattr::READONLY != 0 && (desired & WRITE_ACCESS != 0 || overwrite) {
                return Err(NtStatus::ACCESS_DENIED);
            }
            if st.attributes & fattr::READONLY != 0 && delete_on_close {
                return Err(NtStatus::CANNOT_DELETE);
            }
            if overwrite {
                // Overwrite keeps HIDDEN/SYSTEM only when the caller asks for them.
                let keep = st.attributes & (fattr::HIDDEN | fattr::SYSTEM);
                let asked = req.file_attributes & (fattr::HIDDEN | fattr::SYSTEM);
                if keep & !asked != 0 {
                    return Err(NtStatus::ACCESS_DENIED);
                }
            }
            // The file's id if it has opens (else there is nothing to
            // check against, and no id is read before the open).
            let live = lock(&server.files).uid_of(Inode::of(&st));
            if key_elsewhere(live) {
                return Err(NtStatus::INVALID_PARAMETER);
            }
            let (breaks, violation) = match live {
                None => Default::default(),
                Some(key) => {
                    // Fail fast, before opening anything; the checks are
                    // repeated atomically with the reservation below. A
                    // pending delete refuses the open before any oplock
                    // break (as Windows does).
                    // Delete-pending and the other opens' share modes are the
                    // model's: read under one hold of its lock, which ranks
                    // below the table's.
                    let set = server.set();
                    server
                        .files()
                        .caching(|t, m| {
                            if file_in(m.model(), set, key).is_some_and(|f| f.delete_pending()) {
                                return None;
                            }
                            let lease = lease_id;
                            Some(open_breaks(t, m, &key, desired, req.share_access, overwrite, delete_on_close, lease))
                        })
                        .ok_or(NtStatus::DELETE_PENDING)?
                }
            };
            let mut purged = Vec::new();
            for pid in &breaks.orphans {
                durable::purge(server, *pid, &mut purged);
            }
            server.apply(&purged);
            if let (true, Some(key)) = (breaks.wait, live) {
                return Ok(Some(Step::Wait(key)));
            }
            if violation {
                return Err(NtStatus::SHARING_VIOLATION);
            }
            let write = desired & WRITE_ACCESS != 0 || overwrite;
            let (h, st) = share.fs.open_stat(&resolved, write && !st.is_dir).map_err(fs_err)?;
            let here = share.fs.resolve_open(&path, open_link).map_err(fs_err)?;
            let rsv = Reservation::take(server, &share, &h, &st, id, open_ref, here, true, None)?;
            let action = if overwrite {
                h.set_len(0).map_err(fs_err)?;
                // An overwritten or superseded file loses its named
                // streams ([MS-FSA] 2.1.5.1.2.1; smbtorture
                // smb2.streams.create-disposition).
                h.remove_streams().map_err(fs_err)?;
                if !new_eas.is_empty() {
                    h.set_eas(&new_eas).map_err(|e| e.status())?;
                }
                // FILE_ATTRIBUTE_DIRECTORY does not make a file a directory
                // ([MS-FSA] 2.1.5.1.2.1): it is dropped, not an error.
                let attrs = (req.file_attributes | fattr::ARCHIVE) & !(fattr::NORMAL | fattr::DIRECTORY);
                let _ = h.set_attributes(attrs);
                if d == disp::SUPERSEDE {
                    create_action::SUPERSEDED
                } else {
                    create_action::OVERWRITTEN
                }
            } else {
                create_action::OPENED
            };
            // What the answer reports: after the truncation, if any.
            let st = if action == create_action::OPENED { st } else { h.stat().map_err(fs_err)? };
            (h, st, action, false, rsv)
        }
        None => {
            if matches!(d, disp::OPEN | disp::OVERWRITE) {
                return Err(NtStatus::OBJECT_NAME_NOT_FOUND);
            }
            if tree.read_only {
                return Err(NtStatus::ACCESS_DENIED);
            }
            if want_dir && !matches!(d, disp::CREATE | disp::OPEN_IF) {
                return Err(NtStatus::INVALID_PARAMETER);
            }
            if path.trailing_separator() && !want_dir {
                return Err(NtStatus::OBJECT_NAME_INVALID);
            }
            if delete_on_close && req.file_attributes & fattr::READONLY != 0 {
                return Err(NtStatus::CANNOT_DELETE);
            }
            if key_elsewhere(None) {
                return Err(NtStatus::INVALID_PARAMETER);
            }
            super::security::check_may_add(&share.fs, &resolved, want_dir, &server.users, &opener.session)?;
            // A file made under a CreateGuid carries an id made from it, so
            // that a restart can tell it ([`fs::uid::for_create`]).
            let minted =
                req.context(|c| matches!(c, RequestContext::DurableHandleRequestV2(_))).and_then(|c| match c {
                    RequestContext::DurableHandleRequestV2(d) => Some(fs::uid::for_create(&d.create_guid)),
                    _ => None,
                });
            let made = if want_dir {
                share.fs.create_dir(&resolved, 0o755)
            } else {
                share.fs.create_file_as(&resolved, 0o644, minted)
            };
            let h = match made {
                // Made meanwhile by another client: look again.
                Err(FsError::Exists) if d != disp::CREATE => return Ok(None),
                made => made.map_err(fs_err)?,
            };
            if minted.is_some() && d == disp::CREATE {
                // A test setting: an exclusive CREATE under a CreateGuid that
                // made its file and is slow to finish, or dies there.
                crate::failpoint::pause("create-made");
                crate::failpoint::hit("created");
            }
            let mut attrs = req.file_attributes & !fattr::NORMAL;
            if !want_dir {
                // A new file is always ARCHIVE; FILE_ATTRIBUTE_DIRECTORY
                // without FILE_DIRECTORY_FILE creates a plain file
                // ([MS-FSA] 2.1.5.1.1), so the bit is dropped.
                attrs = (attrs & !fattr::DIRECTORY) | fattr::ARCHIVE;
            }
            if attrs != 0 {
                let _ = h.set_attributes(attrs);
            }
            if !new_eas.is_empty() {
                if let Err(e) = h.set_eas(&new_eas) {
                    // The names were checked; the file system refused a
                    // value (no room): the CREATE fails and leaves nothing.
                    drop(h);
                    let _ = if want_dir { share.fs.rmdir(&resolved) } else { share.fs.unlink(&resolved) };
                    return Err(e.status());
                }
            }
            // Its descriptor: inherited from the parent's, and the SecD
            // context's (checked in `check_new_file_contexts`).
            let secd = match req.context(|c| matches!(c, RequestContext::SecurityDescriptor(_))) {
                Some(RequestContext::SecurityDescriptor(b)) => SecurityDescriptor::parse(b).ok(),
                _ => None,
            };
            if let Err(e) =
                super::security::store_for_new(&share.fs, &resolved, &h, secd.as_ref(), &server.users, &opener.session)
            {
                drop(h);
                let _ = if want_dir { share.fs.rmdir(&resolved) } else { share.fs.unlink(&resolved) };
                return Err(e);
            }
            let st = h.stat().map_err(fs_err)?;
            let here = share.fs.resolve(&path).map_err(fs_err)?;
            let rsv = Reservation::take(server, &share, &h, &st, id, open_ref, here, false, minted)?;
            (h, st, create_action::CREATED, true, rsv)
        }
    };
    let key = rsv.key;
    let mut st = st;
    if let Some(RequestContext::AllocationSize(n)) = req.context(|c| matches!(c, RequestContext::AllocationSize(_))) {
        // [MS-SMB2] 3.3.5.9.6: only a file this request created or
        // overwrote gets the allocation; the response reports the result.
        if !st.is_dir && action != create_action::OPENED && handle.allocate(*n).is_ok() {
            st = handle.stat().map_err(fs_err)?;
        }
    }
    // Directories get no oplock; a lease on SMB 3.x only
    // (SMB2_CAP_DIRECTORY_LEASING, [MS-SMB2] 3.3.5.9.8).
    let mut lease: Option<LeaseGrant> = None;
    let parent_key = lease_req
        .and_then(|l| l.v2.filter(|_| l.lease_flags & lease_flags::PARENT_LEASE_KEY_SET != 0))
        .map(|v| v.parent_lease_key);
    // Nor do symbolic links (nothing to cache: no data, and the client
    // does not follow them through this open).
    let is_link = handle.is_link();
    let oplock = match (st.is_dir, lease_req, lease_id) {
        _ if is_link => oplock::level::NONE,
        (true, Some(l), Some(lid)) if opener.dialect >= dialect::SMB3_0 => {
            let epoch = l.v2.map(|v| v.epoch);
            let sink = opener.sink(id);
            let grant = |t: &mut FileTable, m: &mut ModelHold<'_>| {
                t.grant_dir_lease(m, &share.cfg.name, &key, id, lid, l.lease_state, epoch, parent_key, sink)
            };
            lease = Some(server.files().caching(grant));
            oplock::level::LEASE
        }
        (true, _, _) => oplock::level::NONE,
        (false, Some(l), Some(lid)) => {
            let epoch = l.v2.map(|v| v.epoch);
            let sink = opener.sink(id);
            let grant = |t: &mut FileTable, m: &mut ModelHold<'_>| {
                t.grant_lease(m, &key, id, lid, l.lease_state, epoch, parent_key, sink)
            };
            lease = Some(server.files().caching(grant));
            oplock::level::LEASE
        }
        _ => {
            let sink = opener.sink(id);
            server.files().caching(|t, m| t.grant_oplock(m.model(), &key, id, req.requested_oplock_level, sink))
        }
    };
    // The grant rides in the open's own delta (the lease itself is in the
    // model already: `Server::files`).
    let caching = match lease_id {
        Some(lid) if lease.is_some() => deltas::Grant::Lease(lid.key),
        _ => deltas::Grant::Oplock(oplock),
    };
    let caches_handles =
        oplock == oplock::level::BATCH || lease.is_some_and(|g| g.state & lease_state::HANDLE_CACHING != 0);
    let dh2q = opener.durable_v2(req);
    let durability = grant_durability(
        req,
        dh2q.as_ref(),
        st.is_dir || handle.is_link(),
        share.cfg.continuous_availability,
        caches_handles,
    );
    let resolved = rsv.path.clone();
    let resolved_for_notify = resolved.clone();
    let state = OpenState::new(Some(resolved));
    let mut fields = OpenFields::new(action, opener.channel_sequence);
    fields.delete_on_close = delete_on_close;
    fields.durability = durability;
    keep_for_replay(&mut fields, dh2q.as_ref(), req);
    let open = Arc::new(Open {
        persistent_id: id,
        volatile_id: id,
        session_id: opener.session.id,
        tree: tree.clone(),
        kind: OpenKind::Fs(handle),
        access: desired,
        share_access: req.share_access,
        create_options: req.create_options,
        is_dir: st.is_dir,
        key: Some(key),
        base: None,
        st: Mutex::new(state),
        writing: Mutex::new(()),
        slot,
    });
    let name = path.components().join("\\");
    let up = opener.attach(open, &name, &fields)?.map(|d| deltas::with_grant(d, caching));
    rsv.keep();
    let fstat = file_stat(&st, false);
    if created {
        let f = if st.is_dir { filter::DIR_NAME } else { filter::FILE_NAME };
        server.report_change(&share.cfg.name, resolved_for_notify.components(), action::ADDED, f);
        // The directory's leases break, but the one the request names as
        // its parent's (smbtorture smb2.lease.v2_request).
        let actor = parent_key.map(|key| LeaseId { client_guid: opener.client_guid, key });
        server.break_parent_leases(&share.cfg.name, resolved_for_notify.components(), actor);
    }

    let mut contexts = Vec::new();
    if let (Some(g), Some(l)) = (lease, lease_req) {
        contexts.push(lease_context(&g, &l));
    }
    contexts.extend(durable_context(durability));
    for c in &req.create_contexts {
        match c {
            RequestContext::QueryMaximalAccess { .. } => {
                contexts.push(ResponseContext::MaximalAccess { query_status: 0, maximal_access })
            }
            RequestContext::QueryOnDiskId => contexts.push(ResponseContext::OnDiskId {
                disk_file_id: opener.disk_file_id(&fstat),
                volume_id: u64::from(share.fs.volume_serial()),
            }),
            _ => {}
        }
    }
    contexts.extend(opener.aapl.clone().map(ResponseContext::Aapl));
    let file_id = FileId { persistent: id, volatile: id };
    let resp = answer(&fstat, oplock, action, file_id, contexts);
    let mut body = BytesMut::with_capacity(160);
    resp.encode(&mut body);
    let mut r = Resp::ok(body).file(file_id);
    r.deltas.extend(up);
    Ok(Some(Step::Done(r)))
}

/// The breaks a new open of the file (or stream) `key` starts, and whether
/// its share modes refuse it ([MS-FSA] 2.1.4.12 orders the two: see
/// [`FileTable::break_for_open_of`]). A stat open breaks nothing, unless it
/// overwrites; one that only reads attributes breaks no lease. The other
/// opens' share modes, oplocks and leases are read from the model `m`.
#[allow(clippy::too_many_arguments)]
fn open_breaks(
    files: &mut FileTable,
    m: &mut ModelHold<'_>,
    key: &FileUid,
    desired: u32,
    share_access: u32,
    overwrite: bool,
    delete_on_close: bool,
    lease_id: Option<LeaseId>,
) -> (Breaks, bool) {
    let violation = !files.check_share(key, desired, share_access, m.model());
    let breaks = if oplock::is_stat_open(desired) && !overwrite {
        Default::default()
    } else {
        let leases = overwrite || !oplock::is_lease_stat_open(desired);
        files.break_for_open_of(m, key, overwrite, violation, delete_on_close, lease_id, leases)
    };
    (breaks, violation)
}

/// The response context of a granted lease ([MS-SMB2] 2.2.14.2.10,
/// 2.2.14.2.11): the key, the state, and for version 2 the epoch and the
/// parent key echoed.
fn lease_context(g: &LeaseGrant, l: &Lease) -> ResponseContext<'static> {
    let mut flags = if g.breaking { lease_flags::BREAK_IN_PROGRESS } else { 0 };
    let v2 = g.v2.then(|| {
        let parent = l.v2.filter(|_| l.lease_flags & lease_flags::PARENT_LEASE_KEY_SET != 0);
        if parent.is_some() {
            flags |= lease_flags::PARENT_LEASE_KEY_SET;
        }
        LeaseV2 { parent_lease_key: parent.map_or([0; 16], |v| v.parent_lease_key), epoch: g.epoch }
    });
    ResponseContext::Lease(Lease {
        lease_key: l.lease_key,
        lease_state: g.state,
        lease_flags: flags,
        lease_duration: 0,
        v2,
    })
}

/// The lease a CREATE asks for: a lease context counts when the oplock
/// level asks for a lease, on SMB 2.1 and later ([MS-SMB2] 3.3.5.9.8,
/// 3.3.5.9.11).
fn lease_request(opener: &Opener, req: &CreateRequest<'_>) -> Option<Lease> {
    match req.context(|c| matches!(c, RequestContext::Lease(_))) {
        Some(RequestContext::Lease(l)) if opener.leasing && req.requested_oplock_level == oplock::level::LEASE => {
            Some(*l)
        }
        _ => None,
    }
}

/// CREATE of a named stream (`file:stream`, [MS-SMB2] 3.3.5.9, [MS-FSA]
/// 2.1.5.1 with a stream name), kept as an xattr of the file
/// ([`fs::stream`]):
///
/// - A stream is a file: FILE_DIRECTORY_FILE is STATUS_NOT_A_DIRECTORY
///   (checked by the caller). Directories have streams too.
/// - When the file does not exist, a disposition that creates makes it
///   (empty, with the request's attributes) as Windows does; OPEN and
///   OVERWRITE are STATUS_OBJECT_NAME_NOT_FOUND.
/// - The dispositions then apply to the stream: CREATE of an existing
///   one is STATUS_OBJECT_NAME_COLLISION, OPEN of a missing one
///   STATUS_OBJECT_NAME_NOT_FOUND, OVERWRITE(_IF) and SUPERSEDE empty it.
/// - Share modes are the stream's own: its opens are checked against
///   each other, not against the file's (smbtorture
///   smb2.streams.sharemodes), except that a stream open that does not
///   share delete refuses an open of the file for delete
///   ([`crate::state::files::FileTable::check_share`]). A delete pending
///   on the file, or on the stream, is STATUS_DELETE_PENDING.
/// - A read-only file's streams are not opened for writing
///   (STATUS_ACCESS_DENIED).
/// - Once the connection negotiated AAPL, an empty stream is not found by
///   FILE_OPEN (STATUS_OBJECT_NAME_NOT_FOUND), as `vfs_fruit` has it.
/// - A stream is a file for oplocks and leases too ([MS-FSA] 2.1.5.17:
///   an oplock is on a stream): its opens break each other's as a
///   file's do, its lease key is one of its own (a key in use on the file
///   or another stream is STATUS_INVALID_PARAMETER), and a CREATE that
///   must wait for a break goes async. No durable handle is granted on a
///   stream: its open ends with its connection and a restart.
fn open_stream(
    opener: &Opener,
    req: &CreateRequest<'_>,
    share: &Arc<crate::state::ShareEntry>,
    path: &SmbPath,
    sname: &str,
    mut desired: u32,
    slot: crate::limits::OpenSlot,
) -> Result<Option<Step>, NtStatus> {
    let server = &opener.server;
    let tree = &opener.tree;
    let d = req.create_disposition;
    if !share.fs.supports_xattrs() {
        // Nowhere to keep one (as on a file system without streams).
        return Err(NtStatus::OBJECT_NAME_INVALID);
    }
    let resolved = share.fs.resolve(path).map_err(fs_err)?;
    let mut created_file = false;
    let (h, st) = if resolved.exists() {
        // A stream is opened under its file's stored descriptor.
        let stored = share.fs.stored_sd(&resolved).map_err(fs_err)?;
        if let Some(max) =
            super::security::max_access_on_open(&share.fs, &resolved, stored, &server.users, &opener.session)?
        {
            let asked = generic_map(req.desired_access) & !(access::MAXIMUM_ALLOWED | access::ACCESS_SYSTEM_SECURITY);
            let overwrite = matches!(d, disp::SUPERSEDE | disp::OVERWRITE | disp::OVERWRITE_IF);
            if (asked | if overwrite { access::FILE_WRITE_DATA } else { 0 }) & !max != 0 {
                return Err(NtStatus::ACCESS_DENIED);
            }
            if req.desired_access & access::MAXIMUM_ALLOWED != 0 {
                desired = asked | (max & desired);
            }
        }
        share.fs.open_stat(&resolved, false).map_err(fs_err)?
    } else {
        if matches!(d, disp::OPEN | disp::OVERWRITE) {
            return Err(NtStatus::OBJECT_NAME_NOT_FOUND);
        }
        if tree.read_only {
            return Err(NtStatus::ACCESS_DENIED);
        }
        if path.trailing_separator() {
            return Err(NtStatus::OBJECT_NAME_INVALID);
        }
        let h = match share.fs.create_file_as(&resolved, 0o644, None) {
            // Made meanwhile by another client: look again (the
            // disposition is the stream's, CREATE too).
            Err(FsError::Exists) => return Ok(None),
            made => made.map_err(fs_err)?,
        };
        let attrs = ((req.file_attributes & !fattr::NORMAL) & !fattr::DIRECTORY) | fattr::ARCHIVE;
        let _ = h.set_attributes(attrs);
        created_file = true;
        let st = h.stat().map_err(fs_err)?;
        (h, st)
    };
    let here = share.fs.resolve(path).map_err(fs_err)?;
    let overwrite = matches!(d, disp::SUPERSEDE | disp::OVERWRITE | disp::OVERWRITE_IF);
    if st.attributes & fattr::READONLY != 0 && (desired & WRITE_ACCESS != 0 || overwrite) {
        return Err(NtStatus::ACCESS_DENIED);
    }
    // The file's id: the one its opens use, else the one kept with it.
    let inode = Inode::of(&st);
    let live = lock(&server.files).uid_of(inode);
    let base = match live {
        Some(k) => k,
        None => {
            let uid = if created_file { share.fs.new_file_uid(&h, &st) } else { share.fs.file_uid(&h, &st) };
            match lock(&server.files).inode_of(&uid) {
                Some(other) if other != inode => fs::uid::derived(&st),
                _ => uid,
            }
        }
    };
    let id = server.next_id();
    let upper = sname.to_uppercase();
    let lease_req = lease_request(opener, req);
    let lease_id = lease_req.map(|l| LeaseId { client_guid: opener.client_guid, key: l.lease_key });
    let delete_on_close = req.create_options & opt::DELETE_ON_CLOSE != 0;
    let key = {
        let mut files = server.files();
        let key = files.stream_key(base, &upper, fs::stream::stream_uid(base, sname));
        // A lease key in use on another file (or stream) is refused.
        let elsewhere = |t: &mut FileTable, m: &mut ModelHold<'_>| {
            lease_id.is_some_and(|lid| t.lease_file(m.model(), &lid).is_some_and(|f| f != key))
        };
        if files.caching(elsewhere) {
            return Err(NtStatus::INVALID_PARAMETER);
        }
        // The stream's oplock and lease holders are broken as a file's
        // (see `open_disk`); the CREATE waits for them when it must. A
        // delete pending on the file or the stream refuses it first; both,
        // and the share modes, are the model's.
        let set = server.set();
        let (breaks, violation) = files
            .caching(|t, m| {
                let pending = |k| file_in(m.model(), set, k).is_some_and(|f| f.delete_pending());
                if pending(base) || pending(key) {
                    return None;
                }
                let lease = lease_id;
                Some(open_breaks(t, m, &key, desired, req.share_access, overwrite, delete_on_close, lease))
            })
            .ok_or(NtStatus::DELETE_PENDING)?;
        if breaks.wait || !breaks.orphans.is_empty() {
            drop(files);
            let mut purged = Vec::new();
            for pid in &breaks.orphans {
                durable::purge(server, *pid, &mut purged);
            }
            server.apply(&purged);
            if breaks.wait {
                return Ok(Some(Step::Wait(key)));
            }
            return Ok(None);
        }
        if violation {
            return Err(NtStatus::SHARING_VIOLATION);
        }
        files.add_stream_open(key, &upper, base, inode, OpenRef::new(id, desired, req.share_access));
        key
    };
    // Until the open is complete, an error takes the table entry out again.
    let undo = |e: NtStatus| {
        let (_, file_last) = server.files().caching(|t, m| t.remove_stream_open(m, &key, id));
        if file_last && server.delete_pending(base) {
            if let Some(p) = server.disk_path(&share.fs, base) {
                let _ = share.fs.unlink(&p);
            }
        }
        e
    };
    let found = h.find_stream(sname).map_err(|e| undo(fs_err(e)))?;
    let (xattr, action) = match found {
        Some(_) if d == disp::CREATE => return Err(undo(NtStatus::OBJECT_NAME_COLLISION)),
        Some(x) if overwrite => {
            if tree.read_only {
                return Err(undo(NtStatus::ACCESS_DENIED));
            }
            let action = if d == disp::SUPERSEDE { create_action::SUPERSEDED } else { create_action::OVERWRITTEN };
            (x, action)
        }
        Some(x) => (x, create_action::OPENED),
        None if matches!(d, disp::OPEN | disp::OVERWRITE) => return Err(undo(NtStatus::OBJECT_NAME_NOT_FOUND)),
        None if tree.read_only => return Err(undo(NtStatus::ACCESS_DENIED)),
        // An AfpInfo comes to be when it is first written (macOS's rule,
        // `fs::afpinfo`): until then it reads as an empty one and is not
        // listed.
        None if fs::afpinfo::is(sname) => {
            (fs::stream::xattr_name(sname).map_err(|e| undo(fs_err(e)))?, create_action::CREATED)
        }
        None => match h.create_stream(sname) {
            Ok(x) => (x, create_action::CREATED),
            // Made meanwhile by another open (OPEN_IF, OVERWRITE_IF,
            // SUPERSEDE): that one is opened.
            Err(FsError::Exists) if d != disp::CREATE => match h.find_stream(sname) {
                Ok(Some(x)) => (x, create_action::OPENED),
                Ok(None) => return Err(undo(NtStatus::OBJECT_NAME_COLLISION)),
                Err(e) => return Err(undo(fs_err(e))),
            },
            Err(e) => return Err(undo(fs_err(e))),
        },
    };
    let handle = h.open_stream(xattr).map_err(|e| undo(fs_err(e)))?;
    if action == create_action::OVERWRITTEN || action == create_action::SUPERSEDED {
        handle.set_len(0).map_err(|e| undo(fs_err(e)))?;
    }
    let stat = handle.stat().map_err(|e| undo(fs_err(e)))?;
    // Once AAPL is negotiated an empty stream is not there for a plain
    // open (as `vfs_fruit`: macOS takes a resource fork cut to nothing
    // for none); OPEN_IF and the others still open it.
    if opener.aapl_on && d == disp::OPEN && stat.size == 0 {
        return Err(undo(NtStatus::OBJECT_NAME_NOT_FOUND));
    }
    let (oplock, lease) = match (lease_req, lease_id) {
        (Some(l), Some(lid)) => {
            let epoch = l.v2.map(|v| v.epoch);
            let parent_key =
                l.v2.filter(|_| l.lease_flags & lease_flags::PARENT_LEASE_KEY_SET != 0).map(|v| v.parent_lease_key);
            let sink = opener.sink(id);
            let grant = |t: &mut FileTable, m: &mut ModelHold<'_>| {
                t.grant_lease(m, &key, id, lid, l.lease_state, epoch, parent_key, sink)
            };
            let g = server.files().caching(grant);
            (oplock::level::LEASE, Some(g))
        }
        _ => {
            let sink = opener.sink(id);
            let level =
                server.files().caching(|t, m| t.grant_oplock(m.model(), &key, id, req.requested_oplock_level, sink));
            (level, None)
        }
    };
    let caching = match lease_id {
        Some(lid) if lease.is_some() => deltas::Grant::Lease(lid.key),
        _ => deltas::Grant::Oplock(oplock),
    };
    let state = OpenState::new(Some(here.clone()));
    let mut fields = OpenFields::new(action, opener.channel_sequence);
    fields.delete_on_close = delete_on_close;
    // A stream open is never durable; its CreateGuid is kept all the same.
    keep_for_replay(&mut fields, opener.durable_v2(req).as_ref(), req);
    let open = Arc::new(Open {
        persistent_id: id,
        volatile_id: id,
        session_id: opener.session.id,
        tree: tree.clone(),
        kind: OpenKind::Fs(handle),
        access: desired,
        share_access: req.share_access,
        create_options: req.create_options,
        is_dir: false,
        key: Some(key),
        base: Some(base),
        st: Mutex::new(state),
        writing: Mutex::new(()),
        slot,
    });
    let name = format!("{}:{sname}", path.components().join("\\"));
    let up = opener.attach(open, &name, &fields).map_err(undo)?.map(|d| deltas::with_grant(d, caching));
    if created_file {
        server.report_change(&share.cfg.name, here.components(), action::ADDED, filter::FILE_NAME);
        server.break_parent_leases(&share.cfg.name, here.components(), None);
    } else if action == create_action::CREATED {
        server.report_change(&share.cfg.name, here.components(), action::ADDED_STREAM, filter::STREAM_NAME);
    }
    let fstat = file_stat(&stat, false);
    let mut contexts = Vec::new();
    if let (Some(g), Some(l)) = (lease, lease_req) {
        contexts.push(lease_context(&g, &l));
    }
    for c in &req.create_contexts {
        match c {
            RequestContext::QueryMaximalAccess { .. } => {
                contexts.push(ResponseContext::MaximalAccess { query_status: 0, maximal_access: tree.maximal_access })
            }
            RequestContext::QueryOnDiskId => contexts.push(ResponseContext::OnDiskId {
                disk_file_id: opener.disk_file_id(&fstat),
                volume_id: u64::from(share.fs.volume_serial()),
            }),
            _ => {}
        }
    }
    contexts.extend(opener.aapl.clone().map(ResponseContext::Aapl));
    let file_id = FileId { persistent: id, volatile: id };
    let resp = answer(&fstat, oplock, action, file_id, contexts);
    let mut body = BytesMut::with_capacity(160);
    resp.encode(&mut body);
    let mut r = Resp::ok(body).file(file_id);
    r.deltas.extend(up);
    Ok(Some(Step::Done(r)))
}

/// The answer to an AAPL server query ([`protocol::msg::aapl`]; Apple's
/// extension, in no [MS-SMB2] section), as Samba's `vfs_fruit` gives it:
/// the parts asked for, of what Duet really does.
///
/// - Server capabilities: UNIX_BASED; READ_DIR_ATTR when the client says
///   it reads it (FileIdBothDirectoryInformation then carries the maximal
///   access, resource fork size and Finder info, [`aapl::DirAttr`]);
///   OSX_COPYFILE (a copy-chunk with no chunks copies the whole file and
///   its streams, [`super::copyfile`]); NFS_ACE (security descriptors
///   carry the uid, gid and mode as MS-NFS ACEs, and a mode ACE set is a
///   chmod, [`super::nfs_ace`]; listings carry the mode too).
///
/// The server capabilities told are the connection's from then on
/// (`ConnState::aapl`), as a query that asks for them is answered.
/// - Volume capabilities: CASE_SENSITIVE when the share's names are,
///   FULL_SYNC on a Time Machine share (FLUSH is a full fsync there). Not
///   SUPPORT_RESOLVE_ID: the resolve-id command is refused.
/// - The model string of the configuration.
///
/// Every query is answered, the first of a connection and the ones after,
/// as `vfs_fruit` does.
fn aapl_reply(model: &str, share: &crate::state::ShareEntry, q: &ServerQuery) -> ServerQueryReply {
    let mut volume_caps = 0;
    if !share.fs.case_insensitive() {
        volume_caps |= aapl::volume_caps::CASE_SENSITIVE;
    }
    if share.cfg.time_machine {
        volume_caps |= aapl::volume_caps::FULL_SYNC;
    }
    // READ_DIR_ATTR only for a client that says it reads it (as
    // `vfs_fruit`).
    let server_caps = aapl::caps::UNIX_BASED
        | aapl::caps::SUPPORTS_OSX_COPYFILE
        | aapl::caps::SUPPORTS_NFS_ACE
        | (q.client_caps & aapl::caps::SUPPORTS_READ_DIR_ATTR);
    ServerQueryReply {
        reply_bitmap: q.request_bitmap & aapl::query::ALL,
        server_caps,
        volume_caps,
        model: model.to_string(),
    }
}

/// A CREATE response for an opened file ([MS-SMB2] 2.2.14).
fn answer<'a>(
    fstat: &protocol::fscc::FileStat,
    oplock_level: u8,
    create_action: u32,
    file_id: FileId,
    create_contexts: Vec<ResponseContext<'a>>,
) -> CreateResponse<'a> {
    CreateResponse {
        oplock_level,
        flags: 0,
        create_action,
        creation_time: fstat.creation_time,
        last_access_time: fstat.last_access_time,
        last_write_time: fstat.last_write_time,
        change_time: fstat.change_time,
        allocation_size: fstat.allocation_size,
        end_of_file: fstat.end_of_file,
        file_attributes: fstat.wire_attributes(),
        file_id,
        create_contexts,
    }
}

/// An open's entry in the per-file table, taken atomically with the
/// share-mode and delete-pending checks ([MS-FSA] 2.1.5.1.2.2) so that two
/// racing CREATEs cannot both pass them. Until [`keep`](Self::keep) is
/// called, dropping it (any error on the way to a completed open) takes
/// the entry out again, and deletes the file when that was its last open
/// and another open left a delete pending meanwhile.
struct Reservation<'a> {
    server: &'a Arc<crate::state::Server>,
    share: Arc<crate::state::ShareEntry>,
    key: crate::state::files::FileUid,
    id: u64,
    is_dir: bool,
    path: fs::Resolved,
    kept: bool,
}

impl<'a> Reservation<'a> {
    /// Checks and records the open of `h` (whose metadata is `st`);
    /// `existing` says whether a delete pending on the file refuses it (a
    /// file this request created has none).
    ///
    /// The file's id: when the inode already has opens, the one they use
    /// (no system call); else the one stored with the file, read (or, the
    /// first time, made) outside the table's lock. A stored id that is
    /// another open inode's (a copy that carried the xattr) is replaced by
    /// a new one for this inode, and should that meet an open inode too,
    /// the id derived from this inode's (dev, ino) is used: it is unique
    /// among the inodes with opens. See [`crate::fs::uid`].
    #[allow(clippy::too_many_arguments)]
    fn take(
        server: &'a Arc<crate::state::Server>,
        share: &Arc<crate::state::ShareEntry>,
        h: &fs::Handle,
        st: &fs::Stat,
        id: u64,
        open: OpenRef,
        path: fs::Resolved,
        existing: bool,
        minted: Option<FileUid>,
    ) -> Result<Reservation<'a>, NtStatus> {
        let inode = Inode::of(st);
        let mut stored: Option<FileUid> = None;
        let mut reminted = false;
        loop {
            let mut files = lock(&server.files);
            let key = match (files.uid_of(inode), stored) {
                (Some(live), _) => Some(live),
                (None, Some(uid)) if files.inode_of(&uid).is_none() => Some(uid),
                (None, Some(_)) if reminted => Some(fs::uid::derived(st)),
                (None, _) => None,
            };
            if let Some(key) = key {
                // Delete-pending and the other opens' share modes are the
                // model's, read under one hold of its lock (which ranks
                // below the table's); a file with no entry has no opens,
                // nothing pending, and nothing to check against.
                if files.get(&key).is_some() {
                    let set = server.set();
                    let asked = open.pending.unwrap_or_default();
                    let refused = server.with_model(|m| {
                        if existing && file_in(m, set, key).is_some_and(|f| f.delete_pending()) {
                            Some(NtStatus::DELETE_PENDING)
                        } else if !files.check_share(&key, asked.access, asked.share_access, m) {
                            Some(NtStatus::SHARING_VIOLATION)
                        } else {
                            None
                        }
                    });
                    if let Some(e) = refused {
                        return Err(e);
                    }
                }
                files.add_open(key, inode, open);
                return Ok(Reservation { server, share: share.clone(), key, id, is_dir: st.is_dir, path, kept: false });
            }
            drop(files);
            stored = Some(match stored {
                None if existing => share.fs.file_uid(h, st),
                None => match minted {
                    Some(uid) => share.fs.new_file_uid_as(h, st, uid),
                    None => share.fs.new_file_uid(h, st),
                },
                Some(dup) => {
                    reminted = true;
                    share.fs.remint_uid(h, st, dup)
                }
            });
        }
    }

    /// The open is complete: its entry stays until CLOSE.
    fn keep(mut self) {
        self.kept = true;
    }
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        if self.kept {
            return;
        }
        let last = self.server.files().caching(|t, m| t.remove_open(m, &self.key, self.id));
        if last && self.server.delete_pending(self.key) {
            let fs = &self.share.fs;
            let p = &self.path;
            let _ = if self.is_dir { fs.rmdir(p) } else { fs.unlink(p) };
        }
    }
}

impl OpenState {
    pub fn new(resolved: Option<fs::Resolved>) -> OpenState {
        OpenState {
            resolved,
            dir: None,
            position: 0,
            mode: 0,
            pipe_channel_sequence: 0,
            written: false,
            write_time_armed: false,
            ea_next: 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use protocol::msg::create_context::CreateContext;

    /// FILE_ATTRIBUTE_VOLUME ([MS-FSCC] 2.6): never valid in a CREATE.
    const VOLUME: u32 = 0x0000_0008;

    fn req(access_mask: u32, attrs: u32, options: u32) -> CreateRequest<'static> {
        CreateRequest {
            security_flags: 0,
            requested_oplock_level: 0,
            impersonation_level: impersonation_level::IMPERSONATION,
            smb_create_flags: 0,
            desired_access: access_mask,
            file_attributes: attrs,
            share_access: 7,
            create_disposition: disp::OPEN_IF,
            create_options: options,
            name: "f".into(),
            create_contexts: Vec::new(),
        }
    }

    #[test]
    fn reserved_access_before_attributes() {
        // gentest: reserved access bits with an invalid attribute are
        // ACCESS_DENIED, not INVALID_PARAMETER.
        assert_eq!(validate(&req(0x0800_0000, VOLUME, 0)), Err(NtStatus::ACCESS_DENIED));
        assert_eq!(validate(&req(0x0400_0000, 0, 0)), Err(NtStatus::ACCESS_DENIED));
        assert_eq!(validate(&req(access::MAXIMUM_ALLOWED, VOLUME, 0)), Err(NtStatus::INVALID_PARAMETER));
        assert_eq!(validate(&req(access::ACCESS_SYSTEM_SECURITY, 0, 0)), Err(NtStatus::PRIVILEGE_NOT_HELD));
        assert_eq!(validate(&req(access::MAXIMUM_ALLOWED, 0, 0)), Ok(()));
    }

    #[test]
    fn create_options_as_windows() {
        let st = |o| validate(&req(access::MAXIMUM_ALLOWED, 0, o));
        for bit in 0..32 {
            let o = 1u32 << bit;
            let want = match o {
                0x0000_0080 | 0x0000_2000 | 0x0010_0000 => Err(NtStatus::NOT_SUPPORTED),
                o if o >= 0x0100_0000 => Err(NtStatus::INVALID_PARAMETER),
                _ => Ok(()),
            };
            assert_eq!(st(o), want, "option {o:#x}");
        }
        assert_eq!(st(opt::DIRECTORY_FILE | opt::NON_DIRECTORY_FILE), Err(NtStatus::INVALID_PARAMETER));
    }

    #[test]
    fn context_names_of_four_bytes_or_more() {
        for (name, ok) in
            [(&b"x"[..], false), (b"xx", false), (b"xxx", false), (b"xxxx", true), (b"xxxxxxxxxxxxxxxxx", true)]
        {
            let mut r = req(access::MAXIMUM_ALLOWED, 0, 0);
            r.create_contexts.push(RequestContext::Other(CreateContext { name, data: &[] }));
            assert_eq!(validate(&r).is_ok(), ok, "{name:?}");
        }
    }

    #[test]
    fn new_file_contexts() {
        let mut r = req(access::MAXIMUM_ALLOWED, 0, 0);
        r.create_contexts.push(RequestContext::EaBuffer(&[]));
        assert_eq!(check_new_file_contexts(&r, true), Ok(vec![]));
        // One EA "ab" = "z".
        let one = b"\0\0\0\0\0\x02\x01\0ab\0z";
        r.create_contexts[0] = RequestContext::EaBuffer(one);
        assert_eq!(check_new_file_contexts(&r, false), Err(NtStatus::EAS_NOT_SUPPORTED));
        assert_eq!(check_new_file_contexts(&r, true), Ok(vec![(&b"ab"[..], &b"z"[..])]));
        r.create_contexts[0] = RequestContext::EaBuffer(&[0; 12]);
        assert_eq!(check_new_file_contexts(&r, true), Err(NtStatus::INVALID_PARAMETER));
        r.create_contexts[0] = RequestContext::EaBuffer(b"\0\0\0\0\0\x02\x01\0a?\0z");
        assert_eq!(check_new_file_contexts(&r, true), Err(NtStatus::INVALID_EA_NAME));
        r.create_contexts[0] = RequestContext::EaBuffer(b"\0\0\0\0\0\x08\x01\0duet.uid\0z");
        assert_eq!(check_new_file_contexts(&r, true), Err(NtStatus::ACCESS_DENIED));
        r.create_contexts[0] = RequestContext::SecurityDescriptor(&[1, 0]);
        assert_eq!(check_new_file_contexts(&r, true), Err(NtStatus::INVALID_SECURITY_DESCR));
        // An empty self-relative descriptor: revision 1, SE_SELF_RELATIVE.
        let empty = [1, 0, 0, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        r.create_contexts[0] = RequestContext::SecurityDescriptor(&empty);
        assert_eq!(check_new_file_contexts(&r, true), Ok(vec![]));
    }
}
