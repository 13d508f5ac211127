//! SESSION_SETUP ([MS-SMB2] 3.3.5.5): SPNEGO with NTLMSSP, then key
//! derivation, signing and encryption policy for the new session.

use std::sync::Arc;

use bytes::BytesMut;
use protocol::auth::{ntlm, spnego};
use protocol::crypto::kdf;
use protocol::crypto::signing::SigningAlgorithm;
use protocol::msg::negotiate::{dialect, security_mode};
use protocol::msg::session_setup::{session_flags, setup_flags, SessionSetupRequest, SessionSetupResponse};
use protocol::NtStatus;
use tracing::{info, warn};

use crate::config::Signing;
use crate::pipeline::{Ctx, HResult, Resp};
use crate::state::session::{AuthState, SessionCrypto};
use crate::state::{lock, now_filetime, Session};

/// Sessions (set up or in progress) one connection may hold.
pub const MAX_SESSIONS_PER_CONNECTION: usize = 64;

fn ntlm_config(ctx: &Ctx<'_>) -> ntlm::ServerConfig {
    let name = ctx.server.cfg.server_name.to_uppercase();
    ntlm::ServerConfig {
        netbios_domain: name.clone(),
        netbios_computer: name.clone(),
        dns_domain: String::new(),
        dns_computer: name.to_lowercase(),
    }
}

fn body(status_flags: u16, token: &[u8]) -> BytesMut {
    let mut b = BytesMut::with_capacity(16 + token.len());
    SessionSetupResponse { session_flags: status_flags, security_buffer: token }.encode(&mut b);
    b
}

pub fn handle(ctx: &mut Ctx<'_>) -> HResult {
    let req = SessionSetupRequest::parse(ctx.msg).map_err(|_| NtStatus::INVALID_PARAMETER)?;
    if req.flags & setup_flags::BINDING != 0 {
        // Multichannel binding is not offered.
        return Err(NtStatus::REQUEST_NOT_ACCEPTED);
    }
    let dialect = ctx.conn.dialect;
    let session: Arc<Session> = if ctx.hdr.session_id == 0 {
        if ctx.conn.sessions.len() >= MAX_SESSIONS_PER_CONNECTION {
            // A client may not grow the server's memory without bound.
            return Err(NtStatus::REQUEST_NOT_ACCEPTED);
        }
        let id = ctx.server.next_id();
        let s = Arc::new(Session::new(
            id,
            ctx.conn.id,
            AuthState::InProgress {
                ntlm: Box::new(ntlm::ServerContext::new(ntlm_config(ctx), rand::random(), now_filetime())),
                preauth: ctx.conn.preauth.clone(),
                mech_list: None,
            },
        ));
        ctx.conn.sessions.insert(id, s.clone());
        s
    } else {
        let s = ctx.session.clone().ok_or(NtStatus::USER_SESSION_DELETED)?;
        let mut inner = lock(&s.inner);
        match inner.auth {
            AuthState::InProgress { .. } => {}
            AuthState::Valid | AuthState::Expired => {
                // Re-authentication of an existing session.
                inner.auth = AuthState::InProgress {
                    ntlm: Box::new(ntlm::ServerContext::new(ntlm_config(ctx), rand::random(), now_filetime())),
                    preauth: ctx.conn.preauth.clone(),
                    mech_list: None,
                };
            }
        }
        drop(inner);
        ctx.conn.sessions.entry(s.id).or_insert_with(|| s.clone());
        s
    };
    let sid = session.id;
    let fail = |ctx: &mut Ctx<'_>, status: NtStatus| -> HResult {
        ctx.conn.sessions.remove(&sid);
        lock(&ctx.server.sessions).remove(&sid);
        let mut r = Resp::with_status(status, {
            let mut b = BytesMut::new();
            protocol::header::encode_error_body(&mut b);
            b
        });
        r.session_id = Some(sid);
        Ok(r)
    };

    let token = match spnego::parse_client_token(req.security_buffer) {
        Ok(t) => t,
        Err(e) => {
            warn!(peer = %ctx.conn.peer, "bad SPNEGO token: {e}");
            return fail(ctx, NtStatus::INVALID_PARAMETER);
        }
    };
    let mut inner = lock(&session.inner);
    let AuthState::InProgress { ntlm, preauth, mech_list } = &mut inner.auth else {
        return Err(NtStatus::INTERNAL_ERROR);
    };
    if dialect == dialect::SMB3_1_1 {
        preauth.update(ctx.msg);
    }
    if let Some(m) = token.mech_list {
        *mech_list = Some(m.to_vec());
    }
    let raw = token.raw_ntlmssp;
    let msg_type = token.ntlmssp.get(8..12).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]));
    match msg_type {
        None => {
            // An optimistic token for another mechanism: ask for NTLMSSP.
            let out = spnego::encode_response(spnego::NegState::AcceptIncomplete, None, true);
            drop(inner);
            let mut r = Resp::with_status(NtStatus::MORE_PROCESSING_REQUIRED, body(0, &out));
            r.session_id = Some(sid);
            r.preauth_session = Some(session.clone());
            Ok(r)
        }
        Some(1) => {
            let challenge = match ntlm.challenge(token.ntlmssp) {
                Ok(c) => c,
                Err(e) => {
                    drop(inner);
                    warn!(peer = %ctx.conn.peer, "bad NTLM negotiate: {e}");
                    return fail(ctx, NtStatus::INVALID_PARAMETER);
                }
            };
            let out = if raw { challenge } else { spnego::encode_response(spnego::NegState::AcceptIncomplete, Some(&challenge), true) };
            drop(inner);
            let mut r = Resp::with_status(NtStatus::MORE_PROCESSING_REQUIRED, body(0, &out));
            r.session_id = Some(sid);
            r.preauth_session = Some(session.clone());
            Ok(r)
        }
        Some(3) => {
            let users = &ctx.server.users;
            let auth = ntlm.authenticate(token.ntlmssp, &|user, _domain| users.nt_hash(user));
            let mech_list = mech_list.clone();
            let preauth_value = *preauth.value();
            let guest_shares = ctx.server.shares.iter().any(|s| s.cfg.guest_ok);
            let (user, domain, anonymous, guest, session_key) = match auth {
                Ok(a) => {
                    if let (Some(ml), Some(mic)) = (&mech_list, token.mech_list_mic) {
                        if !a.anonymous && !ntlm.verify_mech_list_mic(ml, mic) {
                            drop(inner);
                            warn!(peer = %ctx.conn.peer, user = %a.user, "bad mechListMIC");
                            return fail(ctx, NtStatus::LOGON_FAILURE);
                        }
                    }
                    (a.user, a.domain, a.anonymous, false, a.session_key)
                }
                Err(e) => {
                    let user = ntlm_user(token.ntlmssp).unwrap_or_default();
                    // An unknown user may be a guest where a share allows guests
                    // ("map to guest = bad user"); a wrong password never is.
                    if guest_shares && users.nt_hash(&user).is_none() {
                        (user, String::new(), false, true, [0u8; 16])
                    } else {
                        drop(inner);
                        warn!(peer = %ctx.conn.peer, %user, "logon failure: {e}");
                        return fail(ctx, NtStatus::LOGON_FAILURE);
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
                spnego::encode_response_with_mic(spnego::NegState::AcceptCompleted, None, false, server_mic.as_ref().map(|m| &m[..]))
            };
            let keys = kdf::derive(dialect, &session_key, (dialect == dialect::SMB3_1_1).then_some(&preauth_value), Some(ctx.conn.cipher).filter(|c| *c != 0));
            let signing_alg = match dialect {
                dialect::SMB2_0_2 | dialect::SMB2_1 => SigningAlgorithm::HmacSha256,
                dialect::SMB3_1_1 => ctx.conn.signing_alg,
                _ => SigningAlgorithm::AesCmac,
            };
            let unsigned = anonymous || guest;
            let signing_required = !unsigned
                && (ctx.server.cfg.signing == Signing::Required || req.security_mode as u16 & security_mode::SIGNING_REQUIRED != 0);
            let encrypt_data = !unsigned && ctx.server.cfg.encrypt && dialect >= dialect::SMB3_0 && ctx.conn.cipher != 0;
            let crypto = Arc::new(SessionCrypto {
                dialect,
                signing_alg,
                signing_key: if unsigned { Vec::new() } else { keys.signing_key },
                encryption_key: keys.encryption_key,
                decryption_key: keys.decryption_key,
                cipher: ctx.conn.cipher,
                signing_required,
                encrypt_data,
            });
            inner.auth = AuthState::Valid;
            inner.user = user.clone();
            inner.domain = domain;
            inner.anonymous = anonymous;
            inner.guest = guest;
            inner.crypto = Some(crypto.clone());
            inner.conn_id = ctx.conn.id;
            drop(inner);
            lock(&ctx.server.sessions).insert(sid, session.clone());
            info!(peer = %ctx.conn.peer, %user, anonymous, guest, session = sid, "logged on");
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
            if !unsigned && (dialect == dialect::SMB3_1_1 || signing_required || ctx.hdr.is_signed()) {
                r.sign_with = Some(crypto);
            }
            Ok(r)
        }
        Some(_) => {
            drop(inner);
            fail(ctx, NtStatus::INVALID_PARAMETER)
        }
    }
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

