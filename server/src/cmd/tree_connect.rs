//! TREE_CONNECT ([MS-SMB2] 3.3.5.7) and TREE_DISCONNECT (3.3.5.8).

use std::sync::Arc;

use bytes::BytesMut;
use protocol::msg::tree_connect::{
    share_capabilities, share_flags, share_type, TreeConnectRequest, TreeConnectResponse,
};
use protocol::msg::tree_disconnect::{TreeDisconnectRequest, TreeDisconnectResponse};
use protocol::NtStatus;
use tracing::{debug, info};

use crate::handler::{Ctx, HResult, Resp};
use crate::model::{TreeId, TreeInfo};
use crate::state::files::access;
use crate::state::lock;
use crate::state::tree::{Tree, TreeKind};

/// Tree connects one session may hold.
pub const MAX_TREES_PER_SESSION: usize = 1024;

/// What an owner gets on a writable share.
pub const FILE_ALL_ACCESS: u32 = access::FILE_ALL_ACCESS;
/// Read, execute, read attributes/EA, read control, synchronize.
pub const FILE_READ_ONLY_ACCESS: u32 = access::FILE_GENERIC_READ | access::FILE_GENERIC_EXECUTE;

pub fn handle(ctx: &mut Ctx<'_>) -> HResult {
    let req = TreeConnectRequest::parse(ctx.msg).map_err(|_| NtStatus::INVALID_PARAMETER)?;
    let session = ctx.session()?.clone();
    // The path is \\server\share.
    let name = req.path.trim_start_matches('\\').split_once('\\').map(|(_, s)| s).unwrap_or("");
    if name.is_empty() || name.contains('\\') {
        return Err(NtStatus::BAD_NETWORK_NAME);
    }
    let (guest, anonymous) = {
        let i = lock(&session.inner);
        i.info().map_or((false, false), |i| (i.guest, i.anonymous))
    };
    let dialect = ctx.conn.dialect;
    let (kind, encrypt, read_only) = if name.eq_ignore_ascii_case("IPC$") {
        // Encryption required server-wide covers IPC$ too (global
        // EncryptData, [MS-SMB2] 3.3.5.7): its share listing is no less
        // private than the shares. Sessions that cannot encrypt never get
        // this far (3.3.5.5).
        (TreeKind::Ipc, ctx.server.cfg.encrypt, false)
    } else {
        let share = ctx.server.share(name).ok_or_else(|| {
            debug!(%name, "no such share");
            NtStatus::BAD_NETWORK_NAME
        })?;
        if (guest || anonymous) && !share.cfg.guest_ok {
            info!(%name, "guest refused on share");
            return Err(NtStatus::ACCESS_DENIED);
        }
        let encrypt = share.cfg.encrypt || ctx.server.cfg.encrypt;
        if encrypt && (dialect < 0x0300 || ctx.conn.cipher == 0 || guest || anonymous) {
            // The client cannot encrypt (an anonymous or guest session has
            // no keys), and the share requires it.
            return Err(NtStatus::ACCESS_DENIED);
        }
        let ro = share.cfg.read_only;
        (TreeKind::Disk(share), encrypt, ro)
    };
    let maximal_access = if read_only { FILE_READ_ONLY_ACCESS } else { FILE_ALL_ACCESS };
    if lock(&session.inner).trees.len() >= MAX_TREES_PER_SESSION {
        return Err(NtStatus::INSUFFICIENT_RESOURCES);
    }
    let id = session.next_tree_id().ok_or(NtStatus::INSUFFICIENT_RESOURCES)?;
    let is_ipc = matches!(kind, TreeKind::Ipc);
    let ca = match &kind {
        TreeKind::Disk(share) => {
            // The model's record; the session's handle of it is made
            // when it is applied, at this element's point 3
            // ([`crate::state::Server::refresh_handles`]).
            let tree = TreeInfo { id: TreeId(id), share: share.cfg.name.clone(), encrypt, read_only, maximal_access };
            let up = crate::state::deltas::tree_up(&session, tree).ok_or(NtStatus::USER_SESSION_DELETED)?;
            ctx.deltas.push(up);
            share.cfg.continuous_availability
        }
        TreeKind::Ipc => {
            // Not recorded: IPC$'s handle is the only one.
            let tree = Arc::new(Tree { id, kind, encrypt, read_only, maximal_access });
            lock(&session.inner).trees.insert(id, tree);
            false
        }
    };
    let mut flags = if is_ipc { share_flags::NO_CACHING } else { share_flags::MANUAL_CACHING };
    if encrypt {
        flags |= share_flags::ENCRYPT_DATA;
    }
    let mut body = BytesMut::with_capacity(16);
    TreeConnectResponse {
        share_type: if is_ipc { share_type::PIPE } else { share_type::DISK },
        share_flags: flags,
        // [MS-SMB2] 3.3.5.7: a continuously available share says so.
        capabilities: if ca { share_capabilities::CONTINUOUS_AVAILABILITY } else { 0 },
        maximal_access,
    }
    .encode(&mut body);
    let mut r = Resp::ok(body);
    // The response carries the new tree id in its header.
    r.tree_id = Some(id);
    Ok(r)
}

pub fn disconnect(ctx: &mut Ctx<'_>) -> HResult {
    TreeDisconnectRequest::parse(ctx.msg).map_err(|_| NtStatus::INVALID_PARAMETER)?;
    let session = ctx.session()?.clone();
    let tree = ctx.tree()?.clone();
    let opens: Vec<_> = {
        let mut inner = lock(&session.inner);
        // The handle goes now, so that no request starts on the tree; the
        // model's record goes with `TreeDown` at point 3.
        inner.trees.remove(&tree.id);
        let ids: Vec<u64> = inner.opens.iter().filter(|(_, o)| o.tree.id == tree.id).map(|(k, _)| *k).collect();
        ids.into_iter().filter_map(|k| inner.opens.remove(&k)).collect()
    };
    for o in opens {
        crate::state::close::close_open(ctx.server, &o, &mut ctx.deltas);
    }
    ctx.deltas.extend(crate::state::deltas::tree_down(&session, &tree));
    let mut body = BytesMut::with_capacity(4);
    TreeDisconnectResponse.encode(&mut body);
    Ok(Resp::ok(body))
}
