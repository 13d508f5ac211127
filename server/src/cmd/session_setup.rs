//! SESSION_SETUP ([MS-SMB2] 3.3.5.5): SPNEGO with NTLMSSP, then key
//! derivation, signing and encryption policy for the new session; and
//! session binding (multichannel, 3.3.5.5.2), which authenticates an
//! existing session again on a further connection and gives that channel
//! its own signing key; reauthentication (3.3.5.5.2); and reconnect, whose
//! PreviousSessionId ends the same user's earlier session (3.3.5.5.3).

use std::sync::Arc;

use bytes::BytesMut;
use protocol::auth::{ntlm, spnego, AuthError};
use protocol::crypto::kdf;
use protocol::crypto::signing::SigningAlgorithm;
use protocol::msg::negotiate::{dialect, security_mode};
use protocol::msg::session_setup::{session_flags, setup_flags, SessionSetupRequest, SessionSetupResponse};
use protocol::NtStatus;
use tracing::{info, warn};

use crate::config::Signing;
use crate::connection::Binding;
use crate::handler::{Ctx, HResult, Resp};
use crate::model::Owner;
use crate::state::deltas::Identity;
use crate::state::session::{AuthState, SessionCrypto};
use crate::state::{lock, now_filetime, Session};

/// Channels one session may have, the one it was established on included
/// (Windows' limit; more get STATUS_INSUFFICIENT_RESOURCES).
pub const MAX_CHANNELS_PER_SESSION: usize = 32;

fn ntlm_config(ctx: &Ctx<'_>) -> ntlm::ServerConfig {
    let name = ctx.server.cfg.server_name.to_uppercase();
    ntlm::ServerConfig {
        netbios_domain: name.clone(),
        netbios_computer: name.clone(),
        dns_domain: String::new(),
        dns_computer: name.to_lowercase(),
    }
}

fn in_progress(ctx: &Ctx<'_>) -> AuthState {
    AuthState::InProgress {
        ntlm: Box::new(ntlm::ServerContext::new(ntlm_config(ctx), rand::random(), now_filetime())),
        preauth: ctx.conn.preauth.clone(),
        mech_list: None,
    }
}

fn body(status_flags: u16, token: &[u8]) -> BytesMut {
    let mut b = BytesMut::with_capacity(16 + token.len());
    SessionSetupResponse { session_flags: status_flags, security_buffer: token }.encode(&mut b);
    b
}

/// An error answer for session `sid`, signed with `sign` when given.
fn reject(sid: u64, status: NtStatus, sign: Option<Arc<SessionCrypto>>) -> HResult {
    let mut b = BytesMut::new();
    protocol::header::encode_error_body(&mut b);
    let mut r = Resp::with_status(status, b);
    r.session_id = Some(sid);
    r.sign_with = sign;
    Ok(r)
}

/// The signing algorithm a session or channel of this connection uses.
fn signing_alg(ctx: &Ctx<'_>) -> SigningAlgorithm {
    match ctx.conn.dialect {
        dialect::SMB2_0_2 | dialect::SMB2_1 => SigningAlgorithm::HmacSha256,
        dialect::SMB3_1_1 => ctx.conn.signing_alg,
        _ => SigningAlgorithm::AesCmac,
    }
}

/// The session's keys, when the request carries a valid signature made
/// with them (Session.SigningKey, [MS-SMB2] 3.3.5.2.4).
fn signed_by(ctx: &Ctx<'_>, session: &Session) -> Option<Arc<SessionCrypto>> {
    if !ctx.hdr.is_signed() || ctx.encrypted {
        return None;
    }
    let c = session.crypto()?;
    (!c.signing_key.is_empty() && c.verify(ctx.msg)).then_some(c)
}

/// SESSION_SETUP, with failed logons slowed down per client address and
/// counted per connection ([`crate::state::throttle`]): the answer to a
/// final leg waits as the address's count says, and the connection closes
/// after its last allowed failure.
pub async fn handle(ctx: &mut Ctx<'_>) -> HResult {
    let mut result = setup(ctx);
    let status = match &result {
        Ok(r) => r.status,
        Err(s) => *s,
    };
    let ip = ctx.conn.peer.ip();
    let now = std::time::Instant::now();
    let wait = match status {
        NtStatus::LOGON_FAILURE => {
            ctx.conn.login_failures += 1;
            let limit = ctx.server.cfg.limits.login_failures_per_connection;
            if limit != 0 && ctx.conn.login_failures >= limit {
                warn!(peer = %ctx.conn.peer, failures = ctx.conn.login_failures, "too many failed logons: closing the connection");
                if let Ok(r) = &mut result {
                    r.close = true;
                }
            }
            lock(&ctx.server.logins).failed(ip, now)
        }
        NtStatus::SUCCESS => lock(&ctx.server.logins).succeeded(ip, now),
        _ => std::time::Duration::ZERO,
    };
    if !wait.is_zero() {
        info!(peer = %ctx.conn.peer, ?wait, "logon answer held back after failed logons from this address");
        tokio::time::sleep(wait).await;
    }
    result
}

fn setup(ctx: &mut Ctx<'_>) -> HResult {
    let req = SessionSetupRequest::parse(ctx.msg).map_err(|_| NtStatus::INVALID_PARAMETER)?;
    if ctx.server.cfg.encrypt && ctx.conn.cipher == 0 {
        // Encryption is required server-wide (EncryptData and
        // RejectUnencryptedAccess): a connection that cannot encrypt (2.x,
        // or 3.x without a cipher) gets no session at all ([MS-SMB2]
        // 3.3.5.5 steps 1 and 2), so not even IPC$ answers it in plain.
        return Err(NtStatus::ACCESS_DENIED);
    }
    if req.flags & setup_flags::BINDING != 0 {
        return bind(ctx, &req);
    }
    let session: Arc<Session> = if ctx.hdr.session_id == 0 {
        if ctx.conn.sessions.len() + ctx.conn.bindings.len() >= ctx.server.cfg.limits.max_sessions_per_connection {
            // A client may not grow the server's memory without bound.
            return Err(NtStatus::REQUEST_NOT_ACCEPTED);
        }
        // The server's session table is full: INSUFFICIENT_RESOURCES, as
        // Samba answers.
        let slot = ctx.server.resources.session_slot()?;
        let id = ctx.server.next_id();
        let s = Arc::new(Session::new(id, ctx.conn.id, in_progress(ctx)).counted(slot));
        ctx.conn.sessions.insert(id, s.clone());
        s
    } else {
        let Some(s) = ctx.session.clone() else {
            // Another connection's session (or none), without the binding
            // flag: only binding reaches it (3.3.5.5, 3.3.5.2.9). When the
            // request is signed with that session's key, so is the answer,
            // so that the client believes the status.
            let sid = ctx.hdr.session_id;
            let sign = ctx.server.session(sid).and_then(|s| signed_by(ctx, &s));
            return reject(sid, NtStatus::USER_SESSION_DELETED, sign);
        };
        // A reauthentication, over the connection the session was set up
        // on or a bound one; a signed one was checked with this channel's
        // key. It may come unsigned, unless the session requires signing
        // (as Windows and Samba answer; smb2.session.bind_negative_*s and
        // bind_invalid_auth tell the two apart).
        if !ctx.hdr.is_signed() && s.crypto().is_some_and(|c| c.signing_required && !c.signing_key.is_empty()) {
            return Err(NtStatus::ACCESS_DENIED);
        }
        let mut inner = lock(&s.inner);
        match inner.auth {
            AuthState::InProgress { .. } => {}
            AuthState::Valid | AuthState::Expired => {
                // Re-authentication of an existing session.
                inner.auth = in_progress(ctx);
            }
        }
        drop(inner);
        s
    };
    let sid = session.id;
    match step(ctx, &session, &req) {
        Leg::More(out) => {
            let mut r = Resp::with_status(NtStatus::MORE_PROCESSING_REQUIRED, body(0, &out));
            r.session_id = Some(sid);
            r.preauth_session = Some(session.clone());
            Ok(r)
        }
        Leg::Done(done) if (done.anonymous || done.guest) && ctx.server.cfg.encrypt => {
            // An anonymous or guest session has no keys to encrypt with, and
            // every session must encrypt: refused, as Samba does (and as
            // [MS-SMB2] 3.3.5.2.9 would refuse each of its requests).
            warn!(peer = %ctx.conn.peer, user = %done.user, "anonymous or guest logon refused: encryption is required");
            fail(ctx, &session, NtStatus::ACCESS_DENIED)
        }
        Leg::Done(done) => logged_on(ctx, &req, &session, done),
        Leg::Fail(status) => fail(ctx, &session, status),
    }
}

/// A failed logon or reauthentication ends the session on every channel
/// ([MS-SMB2] 3.3.5.5.3). A reauthentication's failure is signed like its
/// request, with the keys it still had.
fn fail(ctx: &mut Ctx<'_>, session: &Arc<Session>, status: NtStatus) -> HResult {
    let sid = session.id;
    let sign =
        if ctx.hdr.is_signed() { ctx.conn.signing_crypto(session).filter(|c| !c.signing_key.is_empty()) } else { None };
    ctx.conn.sessions.remove(&sid);
    ctx.conn.channels.remove(&sid);
    {
        let mut table = lock(&ctx.server.sessions);
        if table.get(&sid).is_some_and(|s| Arc::ptr_eq(s, session)) {
            table.remove(&sid);
        }
    }
    lock(&session.inner).channels.clear();
    crate::cmd::logoff::disconnect_session(ctx.server, session, &mut ctx.deltas);
    reject(sid, status, sign)
}

/// What one leg of the authentication exchange came to.
enum Leg {
    /// Answer with STATUS_MORE_PROCESSING_REQUIRED and this token.
    More(Vec<u8>),
    /// The exchange failed with this status.
    Fail(NtStatus),
    /// The user is authenticated.
    Done(Done),
}

/// An authenticated user and the keys of the exchange.
struct Done {
    user: String,
    domain: String,
    anonymous: bool,
    guest: bool,
    session_key: [u8; 16],
    /// The exchange's preauth hash (3.1.1), the request of this leg included.
    preauth: [u8; 64],
    /// The last SPNEGO token to send.
    out: Vec<u8>,
}

/// Runs one leg of the NTLMSSP-in-SPNEGO exchange held in `auth`'s
/// [`AuthState::InProgress`], adding the request to its preauth hash (3.1.1).
fn step(ctx: &Ctx<'_>, auth: &Session, req: &SessionSetupRequest<'_>) -> Leg {
    let token = match spnego::parse_client_token(req.security_buffer) {
        Ok(t) => t,
        Err(e) => {
            warn!(peer = %ctx.conn.peer, "bad SPNEGO token: {e}");
            return Leg::Fail(NtStatus::INVALID_PARAMETER);
        }
    };
    let mut inner = lock(&auth.inner);
    let AuthState::InProgress { ntlm, preauth, mech_list } = &mut inner.auth else {
        return Leg::Fail(NtStatus::INTERNAL_ERROR);
    };
    if ctx.conn.dialect == dialect::SMB3_1_1 {
        preauth.update(ctx.msg);
    }
    if let Some(m) = token.mech_list {
        *mech_list = Some(m.to_vec());
    }
    let raw = token.raw_ntlmssp;
    let msg_type = token.ntlmssp.get(8..12).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]));
    match msg_type {
        // An optimistic token for another mechanism: ask for NTLMSSP.
        None => Leg::More(spnego::encode_response(spnego::NegState::AcceptIncomplete, None, true)),
        Some(1) => match ntlm.challenge(token.ntlmssp) {
            Ok(c) => Leg::More(if raw {
                c
            } else {
                spnego::encode_response(spnego::NegState::AcceptIncomplete, Some(&c), true)
            }),
            Err(e) => {
                warn!(peer = %ctx.conn.peer, "bad NTLM negotiate: {e}");
                Leg::Fail(NtStatus::INVALID_PARAMETER)
            }
        },
        Some(3) => {
            let users = &ctx.server.users;
            let auth = ntlm.authenticate(token.ntlmssp, &|user, _domain| users.nt_hash(user));
            let guest_shares = ctx.server.shares.iter().any(|s| s.cfg.guest_ok);
            let (user, domain, anonymous, guest, session_key) = match auth {
                Ok(a) => {
                    if let (Some(ml), Some(mic)) = (&*mech_list, token.mech_list_mic) {
                        if !a.anonymous && !ntlm.verify_mech_list_mic(ml, mic) {
                            warn!(peer = %ctx.conn.peer, user = %a.user, "bad mechListMIC");
                            return Leg::Fail(NtStatus::LOGON_FAILURE);
                        }
                    }
                    (a.user, a.domain, a.anonymous, false, a.session_key)
                }
                Err(e @ AuthError::Malformed(_)) => {
                    // A response that does not parse (an NTLMv2 blob whose
                    // AV_PAIRs overrun it, smbtorture ntlmssp_bug14932) is
                    // a bad parameter, not a wrong password.
                    warn!(peer = %ctx.conn.peer, "bad NTLM authenticate: {e}");
                    return Leg::Fail(NtStatus::INVALID_PARAMETER);
                }
                Err(e) => {
                    let user = ntlm_user(token.ntlmssp).unwrap_or_default();
                    // An unknown user may be a guest where a share allows guests
                    // ("map to guest = bad user"); a wrong password never is.
                    if guest_shares && users.nt_hash(&user).is_none() {
                        (user, String::new(), false, true, [0u8; 16])
                    } else {
                        warn!(peer = %ctx.conn.peer, %user, "logon failure: {e}");
                        return Leg::Fail(NtStatus::LOGON_FAILURE);
                    }
                }
            };
            // A mechListMIC answers the client's own ([MS-SPNG] 3.3.5.1).
            let server_mic = if anonymous || guest || token.mech_list_mic.is_none() {
                None
            } else {
                mech_list.as_deref().and_then(|ml| ntlm.mech_list_mic(ml))
            };
            let out = if raw {
                Vec::new()
            } else {
                spnego::encode_response_with_mic(
                    spnego::NegState::AcceptCompleted,
                    None,
                    false,
                    server_mic.as_ref().map(|m| &m[..]),
                )
            };
            Leg::Done(Done { user, domain, anonymous, guest, session_key, preauth: *preauth.value(), out })
        }
        Some(_) => Leg::Fail(NtStatus::INVALID_PARAMETER),
    }
}

/// The last leg of a logon or reauthentication: keys and policies
/// ([MS-SMB2] 3.3.5.5.3).
///
/// An anonymous or guest session gets no keys at all: its session key is
/// all zeros (anonymous, [MS-NLMP] 3.2.5.1.2) or not proven (a guest), so
/// keys from it would authenticate nothing. It never signs nor has signing
/// required, is never told to encrypt (SMB2_SESSION_FLAG_IS_NULL or
/// IS_GUEST, never ENCRYPT_DATA), and an encrypted request on it closes the
/// connection (3.3.5.2.1.1). Its final answer is unsigned, on 3.1.1 too
/// (there is no key to sign it with).
fn logged_on(ctx: &mut Ctx<'_>, req: &SessionSetupRequest<'_>, session: &Arc<Session>, done: Done) -> HResult {
    let dialect = ctx.conn.dialect;
    let sid = session.id;
    let Done { user, domain, anonymous, guest, session_key, preauth, out } = done;
    let keys = kdf::derive(
        dialect,
        &session_key,
        (dialect == dialect::SMB3_1_1).then_some(&preauth),
        Some(ctx.conn.cipher).filter(|c| *c != 0),
    );
    let unsigned = anonymous || guest;
    let signing_required = !unsigned
        && (ctx.server.cfg.signing == Signing::Required
            || u16::from(req.security_mode) & security_mode::SIGNING_REQUIRED != 0);
    let encrypt_data = !unsigned && ctx.server.cfg.encrypt && dialect >= dialect::SMB3_0 && ctx.conn.cipher != 0;
    let previous = session.crypto().filter(|c| !c.signing_key.is_empty());
    let crypto = match previous {
        // A reauthentication keeps the session's keys, as the client does
        // (Session.SessionKey is retained, 3.3.5.5.2), even when the new
        // identity is anonymous or a guest.
        Some(c) => c,
        // The keys are prepared here, once for the session's messages.
        None => {
            let keys = (!unsigned).then_some(keys);
            match SessionCrypto::new(dialect, signing_alg(ctx), ctx.conn.cipher, keys, signing_required, encrypt_data) {
                Ok(c) => Arc::new(c),
                Err(e) => {
                    warn!(peer = %ctx.conn.peer, session = sid, "session keys refused: {e}");
                    return fail(ctx, session, NtStatus::INTERNAL_ERROR);
                }
            }
        }
    };
    let encrypt_data = crypto.encrypt_data;
    let mut inner = lock(&session.inner);
    inner.auth = AuthState::Valid;
    inner.crypto = Some(crypto.clone());
    if !ctx.conn.channels.contains_key(&sid) {
        // Not a reauthentication over a bound channel: this is
        // Session.Connection.
        inner.conn_id = ctx.conn.id;
    }
    // Who the user is, the keys and the policies are the model's record,
    // which this element's point 3 brings in (and the session's handle
    // copies then, `Server::refresh_handles`): a SessionUp at the first
    // logon, a SessionReauthenticated after.
    let who = Identity { owner: Owner { user: user.clone(), domain: domain.clone() }, guest, anonymous };
    let up = crate::state::deltas::session_authenticated(session, &inner, who, ctx.conn.client_guid);
    drop(inner);
    ctx.deltas.extend(up);
    lock(&ctx.server.sessions).insert(sid, session.clone());
    info!(peer = %ctx.conn.peer, %user, anonymous, guest, session = sid, "logged on");
    if req.previous_session_id != 0 && req.previous_session_id != sid && !anonymous && !guest {
        end_previous(ctx, req.previous_session_id, &user, &domain);
    }
    let mut flags = 0;
    if guest {
        flags |= session_flags::IS_GUEST;
    }
    if anonymous {
        flags |= session_flags::IS_NULL;
    }
    if encrypt_data {
        flags |= session_flags::ENCRYPT_DATA;
    }
    let mut r = Resp::ok(body(flags, &out));
    r.session_id = Some(sid);
    // 3.1.1 signs the final leg always; earlier dialects when signing.
    if !crypto.signing_key.is_empty() && (dialect == dialect::SMB3_1_1 || signing_required || ctx.hdr.is_signed()) {
        r.sign_with = Some(ctx.conn.signing_crypto(session).unwrap_or(crypto));
    }
    Ok(r)
}

/// Ends the session a reconnecting client names in PreviousSessionId
/// ([MS-SMB2] 3.3.5.5.3), when the same user (user and domain, as a
/// durable reclaim compares them) set it up: as if its last connection had
/// dropped (3.3.7.1), so its durable opens wait for a DHnC reclaim, and
/// from now on requests on it, from any connection it was reachable from,
/// get STATUS_USER_SESSION_DELETED. A session of another user is left
/// alone. This happens before the answer goes out, so a client that sends
/// its reclaims right after finds the opens kept.
fn end_previous(ctx: &mut Ctx<'_>, prev_id: u64, user: &str, domain: &str) {
    let Some(prev) = ctx.server.session(prev_id) else {
        return;
    };
    {
        let inner = lock(&prev.inner);
        let same_user = inner.info().is_some_and(|i| {
            !i.anonymous
                && !i.guest
                && !i.owner.user.is_empty()
                && i.owner.same_as(&Owner { user: user.into(), domain: domain.into() })
        });
        if !same_user || matches!(inner.auth, AuthState::InProgress { .. }) {
            return;
        }
    }
    {
        let mut table = lock(&ctx.server.sessions);
        if !table.get(&prev_id).is_some_and(|s| Arc::ptr_eq(s, &prev)) {
            // Ended meanwhile by another request.
            return;
        }
        table.remove(&prev_id);
    }
    // Every channel loses it: on the connections that still hold it, it
    // is expired, which answers USER_SESSION_DELETED (3.3.5.2.9).
    lock(&prev.inner).channels.clear();
    ctx.conn.sessions.remove(&prev_id);
    ctx.conn.channels.remove(&prev_id);
    ctx.conn.bindings.remove(&prev_id);
    info!(peer = %ctx.conn.peer, %user, session = prev_id, "previous session ended by a reconnect");
    crate::cmd::logoff::disconnect_session(ctx.server, &prev, &mut ctx.deltas);
}

/// Binds an existing session to this connection as a further channel
/// ([MS-SMB2] 3.3.5.5 step 4, 3.3.5.5.2): the checks, then an NTLM
/// authentication of the same user on this connection, whose session key
/// gives the channel its signing key (3.3.5.5.3). The session's encryption
/// keys stay as they are.
///
/// The requests of the exchange are signed with the session's key, and so
/// are the answers, up to the last one, which is signed with the channel's
/// new key (3.3.4.1.1).
fn bind(ctx: &mut Ctx<'_>, req: &SessionSetupRequest<'_>) -> HResult {
    let sid = ctx.hdr.session_id;
    if sid == 0 {
        return Err(NtStatus::INVALID_PARAMETER);
    }
    // The session: one this connection is binding already, else from
    // GlobalSessionTable.
    let session = match ctx.conn.bindings.get(&sid) {
        Some(b) => b.session.clone(),
        None => match ctx.session.clone().or_else(|| ctx.server.session(sid)) {
            Some(s) => s,
            None => return Err(NtStatus::USER_SESSION_DELETED),
        },
    };
    let Some(scrypto) = session.crypto() else {
        return Err(NtStatus::USER_SESSION_DELETED);
    };
    let here = ctx.conn.sessions.contains_key(&sid);
    // The pipeline checked the signature of a session reachable here; for
    // any other it is checked with Session.SigningKey (3.3.5.2.4).
    let sign = if here {
        ctx.hdr.is_signed().then(|| ctx.conn.signing_crypto(&session)).flatten()
    } else {
        signed_by(ctx, &session)
    };
    if ctx.hdr.is_signed() && sign.is_none() {
        return Err(NtStatus::ACCESS_DENIED);
    }
    let reject = |status: NtStatus| reject(sid, status, sign.clone());
    // Windows keeps an AES-GMAC session on AES-GMAC channels
    // (smb2.session.bind_negative_smb3sign* check this).
    let conn_alg = signing_alg(ctx);
    if scrypto.signing_alg == SigningAlgorithm::AesGmac && conn_alg != SigningAlgorithm::AesGmac {
        return reject(NtStatus::REQUEST_OUT_OF_SEQUENCE);
    }
    if conn_alg == SigningAlgorithm::AesGmac && scrypto.signing_alg != SigningAlgorithm::AesGmac {
        return reject(NtStatus::NOT_SUPPORTED);
    }
    if ctx.conn.dialect < dialect::SMB3_0 || !ctx.server.cfg.multichannel {
        // No multichannel on this connection: the flag is refused.
        return reject(NtStatus::REQUEST_NOT_ACCEPTED);
    }
    if !ctx.hdr.is_signed() {
        return reject(NtStatus::INVALID_PARAMETER);
    }
    if scrypto.dialect != ctx.conn.dialect {
        return reject(NtStatus::INVALID_PARAMETER);
    }
    if scrypto.cipher != ctx.conn.cipher {
        // The channel encrypts with the session's keys, so with its cipher.
        return reject(NtStatus::INVALID_PARAMETER);
    }
    {
        let inner = lock(&session.inner);
        if inner.client_guid() != Some(ctx.conn.client_guid) {
            return reject(NtStatus::USER_SESSION_DELETED);
        }
        match inner.auth {
            AuthState::Valid => {}
            AuthState::InProgress { .. } => return reject(NtStatus::REQUEST_NOT_ACCEPTED),
            AuthState::Expired => return reject(NtStatus::NETWORK_SESSION_EXPIRED),
        }
        if inner.unauthenticated() {
            return reject(NtStatus::NOT_SUPPORTED);
        }
        if inner.channels.len() >= MAX_CHANNELS_PER_SESSION && !here {
            return reject(NtStatus::INSUFFICIENT_RESOURCES);
        }
    }
    if here {
        // Already a channel of the session (or where it was established).
        return reject(NtStatus::REQUEST_NOT_ACCEPTED);
    }
    if !ctx.conn.bindings.contains_key(&sid) {
        if ctx.conn.sessions.len() + ctx.conn.bindings.len() >= ctx.server.cfg.limits.max_sessions_per_connection {
            return reject(NtStatus::REQUEST_NOT_ACCEPTED);
        }
        let auth = Arc::new(Session::new(sid, ctx.conn.id, in_progress(ctx)));
        ctx.conn.bindings.insert(sid, Binding { session: session.clone(), auth });
    }
    let Some(auth) = ctx.conn.bindings.get(&sid).map(|b| b.auth.clone()) else {
        return Err(NtStatus::INTERNAL_ERROR);
    };
    let done = match step(ctx, &auth, req) {
        Leg::More(out) => {
            let mut r = Resp::with_status(NtStatus::MORE_PROCESSING_REQUIRED, body(0, &out));
            r.session_id = Some(sid);
            r.preauth_session = Some(auth);
            r.sign_with = sign;
            return Ok(r);
        }
        Leg::Fail(status) => {
            ctx.conn.bindings.remove(&sid);
            return reject(status);
        }
        Leg::Done(done) => {
            ctx.conn.bindings.remove(&sid);
            done
        }
    };
    // The binding user must be the session's user (3.3.5.5.2).
    let same_user = {
        let inner = lock(&session.inner);
        !done.anonymous && !done.guest && inner.info().is_some_and(|i| i.owner.user.eq_ignore_ascii_case(&done.user))
    };
    if !same_user {
        warn!(peer = %ctx.conn.peer, user = %done.user, session = sid, "binding by another user refused");
        return reject(NtStatus::ACCESS_DENIED);
    }
    // Channel.SigningKey: from the binding's session key and, for 3.1.1,
    // the binding exchange's preauth hash (3.3.5.5.3).
    let dialect = ctx.conn.dialect;
    let keys = kdf::derive(dialect, &done.session_key, (dialect == dialect::SMB3_1_1).then_some(&done.preauth), None);
    let channel = match scrypto.for_channel(conn_alg, keys.signing_key) {
        Ok(c) => Arc::new(c),
        Err(e) => {
            warn!(peer = %ctx.conn.peer, session = sid, "channel signing key refused: {e}");
            return reject(NtStatus::INTERNAL_ERROR);
        }
    };
    {
        let mut inner = lock(&session.inner);
        if !matches!(inner.auth, AuthState::Valid) {
            // Logged off (or its last channel gone) meanwhile.
            return reject(NtStatus::USER_SESSION_DELETED);
        }
        if inner.channels.len() >= MAX_CHANNELS_PER_SESSION {
            return reject(NtStatus::INSUFFICIENT_RESOURCES);
        }
        inner.channels.push(ctx.conn.id);
    }
    ctx.conn.sessions.insert(sid, session.clone());
    ctx.conn.channels.insert(sid, channel.clone());
    info!(peer = %ctx.conn.peer, user = %done.user, session = sid, "session bound to a new channel");
    let flags = if scrypto.encrypt_data { session_flags::ENCRYPT_DATA } else { 0 };
    let mut r = Resp::ok(body(flags, &done.out));
    r.session_id = Some(sid);
    r.sign_with = Some(channel);
    Ok(r)
}

/// The user name in an AUTHENTICATE_MESSAGE, for the log and guest mapping
/// ([MS-NLMP] 2.2.1.3: UserNameFields at offset 36).
fn ntlm_user(msg: &[u8]) -> Option<String> {
    let f = msg.get(36..44)?;
    let len = u16::from_le_bytes([f[0], f[1]]) as usize;
    let off = u32::from_le_bytes([f[4], f[5], f[6], f[7]]) as usize;
    let b = msg.get(off..off.checked_add(len)?)?;
    protocol::codec::utf16le(b, "user").ok()
}
