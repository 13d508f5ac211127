//! LOGOFF ([MS-SMB2] 3.3.5.6).

use std::sync::Arc;

use bytes::BytesMut;
use protocol::msg::logoff::{LogoffRequest, LogoffResponse};
use protocol::NtStatus;

use crate::handler::{Ctx, HResult, Resp};
use crate::model::Delta;
use crate::state::deltas;
use crate::state::session::AuthState;
use crate::state::{lock, Server, Session};

pub fn handle(ctx: &mut Ctx<'_>) -> HResult {
    LogoffRequest::parse(ctx.msg).map_err(|_| NtStatus::INVALID_PARAMETER)?;
    let session = ctx.session()?.clone();
    let crypto = ctx.conn.signing_crypto(&session);
    ctx.conn.sessions.remove(&session.id);
    lock(&ctx.server.sessions).remove(&session.id);
    // Durable handles outlive a logoff as they outlive a lost connection
    // (Samba and Windows keep them; smbtorture durable-open.reopen4).
    disconnect_session(ctx.server, &session, &mut ctx.deltas);
    let mut body = BytesMut::with_capacity(4);
    LogoffResponse.encode(&mut body);
    let mut r = Resp::ok(body);
    // The session is gone from the tables, so sign the answer here.
    if let Some(c) = crypto {
        if !c.signing_key.is_empty() && !ctx.encrypted && (ctx.hdr.is_signed() || c.signing_required) {
            r.sign_with = Some(c);
        }
    }
    Ok(r)
}

/// Tears a session down because its last connection went away. Unlike
/// LOGOFF, this is not the client's wish, so durable opens are kept for
/// reconnect ([MS-SMB2] 3.3.7.1). What it changes in the state model is
/// pushed to `out`: each open retained or closed, each tree connect, then
/// the session.
pub fn disconnect_session(server: &Arc<Server>, session: &Arc<Session>, out: &mut Vec<Delta>) {
    let (opens, trees, owner) = {
        let mut inner = lock(&session.inner);
        inner.auth = AuthState::Expired;
        let trees: Vec<_> = inner.trees.drain().map(|(_, t)| t).collect();
        let opens: Vec<_> = inner.opens.drain().map(|(_, o)| o).collect();
        (opens, trees, inner.owner())
    };
    let (user, domain) = (owner.user, owner.domain);
    for o in opens {
        if let Err(o) = crate::state::durable::preserve(server, o, &user, &domain, out) {
            crate::state::close::close_open(server, &o, out);
        }
    }
    end_session(session, &trees, out);
}

/// Closes every open and tree of a session and marks it expired.
pub fn close_session(server: &Arc<Server>, session: &Arc<Session>, out: &mut Vec<Delta>) {
    let (opens, trees) = {
        let mut inner = lock(&session.inner);
        inner.auth = AuthState::Expired;
        let trees: Vec<_> = inner.trees.drain().map(|(_, t)| t).collect();
        let opens: Vec<_> = inner.opens.drain().map(|(_, o)| o).collect();
        (opens, trees)
    };
    for o in opens {
        crate::state::close::close_open(server, &o, out);
    }
    end_session(session, &trees, out);
}

/// The session's tree connects and then the session leave the model.
fn end_session(session: &Session, trees: &[Arc<crate::state::Tree>], out: &mut Vec<Delta>) {
    out.extend(trees.iter().filter_map(|t| deltas::tree_down(session, t)));
    out.extend(deltas::session_down(session));
}
