//! NEGOTIATE ([MS-SMB2] 3.3.5.3 for the SMB1 upgrade, 3.3.5.4).

use bytes::BytesMut;
use protocol::auth::spnego;
use protocol::crypto::signing::SigningAlgorithm;
use protocol::msg::negotiate::{
    capabilities, cipher, context_type, dialect, security_mode, signing_algorithm, NegotiateContext, NegotiateRequest,
    NegotiateResponse, HASH_SHA512,
};
use protocol::NtStatus;
use tracing::debug;

use crate::config::Signing;
use crate::connection::ConnState;
use crate::handler::{Ctx, HResult, Resp};
use crate::state::now_filetime;

/// Dialects the server speaks, oldest first.
const DIALECTS: [u16; 5] = [dialect::SMB2_0_2, dialect::SMB2_1, dialect::SMB3_0, dialect::SMB3_0_2, dialect::SMB3_1_1];
/// Ciphers in the server's order of preference.
const CIPHERS: [u16; 4] = [cipher::AES_128_GCM, cipher::AES_128_CCM, cipher::AES_256_GCM, cipher::AES_256_CCM];

fn security_mode(conn: &ConnState) -> u16 {
    let mut m = security_mode::SIGNING_ENABLED;
    if conn.server.cfg.signing == Signing::Required {
        m |= security_mode::SIGNING_REQUIRED;
    }
    m
}

fn response_body(conn: &ConnState, dialect_revision: u16, caps: u32, contexts: Vec<NegotiateContext<'_>>) -> BytesMut {
    let hint = spnego::negotiate_hint();
    // Without multi-credit requests (2.0.2) a message carries 64 KiB at most
    // ([MS-SMB2] 3.3.5.4); with them, as much as the credits pay for.
    let max_io = conn.max_io();
    let resp = NegotiateResponse {
        security_mode: security_mode(conn),
        dialect_revision,
        server_guid: conn.server.guid,
        capabilities: caps,
        max_transact_size: max_io,
        max_read_size: max_io,
        max_write_size: max_io,
        system_time: now_filetime(),
        server_start_time: 0,
        security_buffer: &hint,
        contexts,
    };
    let mut body = BytesMut::with_capacity(256);
    resp.encode(&mut body);
    body
}

/// The answer to an SMB1 NEGOTIATE that offers SMB2: dialect 2.??? when the
/// client offered it, else 2.0.2 (and then the connection is negotiated).
pub fn smb1_upgrade(conn: &mut ConnState, wildcard: bool) -> Resp {
    let d = if wildcard { dialect::SMB2_WILDCARD } else { dialect::SMB2_0_2 };
    if !wildcard {
        conn.dialect = dialect::SMB2_0_2;
    }
    conn.server_security_mode = security_mode(conn);
    Resp::ok(response_body(conn, d, 0, Vec::new()))
}

pub fn handle(ctx: &mut Ctx<'_>) -> HResult {
    let conn = &mut *ctx.conn;
    if conn.negotiated() {
        // A second NEGOTIATE on a connection is a protocol violation.
        let mut r = Resp::with_status(NtStatus::INVALID_PARAMETER, BytesMut::new());
        r.close = true;
        return Ok(r);
    }
    let req = NegotiateRequest::parse(ctx.msg).map_err(|_| NtStatus::INVALID_PARAMETER)?;
    let Some(chosen) = DIALECTS.iter().rev().copied().find(|d| req.dialects.contains(d)) else {
        debug!(dialects = ?req.dialects, "no common dialect");
        return Err(NtStatus::NOT_SUPPORTED);
    };
    conn.client_guid = req.client_guid;
    if chosen >= dialect::SMB2_1 {
        ctx.server.clients.register(req.client_guid, conn.id, &conn.notice_tx);
    }
    conn.client_capabilities = req.capabilities;
    conn.client_security_mode = req.security_mode;
    conn.client_dialects = req.dialects.clone();

    let mut caps = 0;
    if chosen >= dialect::SMB2_1 {
        caps |= capabilities::LEASING | capabilities::LARGE_MTU;
    }
    if chosen >= dialect::SMB3_0 {
        // [MS-SMB2] 3.3.5.4: leases on directories (granted RH at most,
        // broken when the directory's entries change; `cmd::create`).
        caps |= capabilities::DIRECTORY_LEASING;
    }
    if chosen >= dialect::SMB3_0 && conn.server.cfg.multichannel {
        // Session binding ([MS-SMB2] 3.3.5.4, 3.3.5.5.2); FSCTL_VALIDATE_NEGOTIATE_INFO
        // answers with the same capabilities.
        caps |= capabilities::MULTI_CHANNEL;
    }
    if chosen >= dialect::SMB3_0 && conn.server.cfg.shares.iter().any(|s| s.continuous_availability) {
        // [MS-SMB2] 3.3.5.4: persistent handles, offered when a share is
        // continuously available (3.3.5.9.10 grants them only there).
        caps |= capabilities::PERSISTENT_HANDLES;
    }
    if (chosen == dialect::SMB3_0 || chosen == dialect::SMB3_0_2) && req.capabilities & capabilities::ENCRYPTION != 0 {
        caps |= capabilities::ENCRYPTION;
        conn.cipher = cipher::AES_128_CCM;
    }
    conn.signing_alg = if chosen >= dialect::SMB3_0 { SigningAlgorithm::AesCmac } else { SigningAlgorithm::HmacSha256 };

    let mut out_ctx = Vec::new();
    let salt: [u8; 32] = rand::random();
    if chosen == dialect::SMB3_1_1 {
        let mut preauth_ok = false;
        let mut seen = std::collections::HashSet::new();
        for c in &req.contexts {
            let t = match c {
                NegotiateContext::PreauthIntegrity { .. } => context_type::PREAUTH_INTEGRITY_CAPABILITIES,
                NegotiateContext::Encryption { .. } => context_type::ENCRYPTION_CAPABILITIES,
                NegotiateContext::Signing { .. } => context_type::SIGNING_CAPABILITIES,
                NegotiateContext::Other { context_type, .. } => *context_type,
            };
            if t != 0x0005 && !seen.insert(t) {
                // Each context type may appear once ([MS-SMB2] 3.3.5.4).
                return Err(NtStatus::INVALID_PARAMETER);
            }
            match c {
                NegotiateContext::PreauthIntegrity { hash_algorithms, .. } => {
                    if !hash_algorithms.contains(&HASH_SHA512) {
                        return Err(NtStatus::SMB_NO_PREAUTH_INTEGRITY_HASH_OVERLAP);
                    }
                    preauth_ok = true;
                }
                NegotiateContext::Encryption { ciphers } => {
                    conn.cipher = CIPHERS.iter().copied().find(|c| ciphers.contains(c)).unwrap_or(0);
                }
                NegotiateContext::Signing { algorithms } => {
                    conn.signing_alg = if algorithms.contains(&signing_algorithm::AES_GMAC) {
                        SigningAlgorithm::AesGmac
                    } else if algorithms.contains(&signing_algorithm::AES_CMAC) {
                        SigningAlgorithm::AesCmac
                    } else if algorithms.contains(&signing_algorithm::HMAC_SHA256) {
                        SigningAlgorithm::HmacSha256
                    } else {
                        SigningAlgorithm::AesCmac
                    };
                }
                NegotiateContext::Other { .. } => {}
            }
        }
        if !preauth_ok {
            return Err(NtStatus::INVALID_PARAMETER);
        }
        conn.preauth.update(ctx.msg);
        out_ctx.push(NegotiateContext::PreauthIntegrity { hash_algorithms: vec![HASH_SHA512], salt: &salt });
        if req.contexts.iter().any(|c| matches!(c, NegotiateContext::Encryption { .. })) {
            out_ctx.push(NegotiateContext::Encryption { ciphers: vec![conn.cipher] });
        }
        if req.contexts.iter().any(|c| matches!(c, NegotiateContext::Signing { .. })) {
            let id = match conn.signing_alg {
                SigningAlgorithm::HmacSha256 => signing_algorithm::HMAC_SHA256,
                SigningAlgorithm::AesCmac => signing_algorithm::AES_CMAC,
                SigningAlgorithm::AesGmac => signing_algorithm::AES_GMAC,
            };
            out_ctx.push(NegotiateContext::Signing { algorithms: vec![id] });
        }
    }
    conn.dialect = chosen;
    conn.server_capabilities = caps;
    conn.server_security_mode = security_mode(conn);
    debug!(dialect = format_args!("{chosen:#06x}"), cipher = conn.cipher, "negotiated");
    let body = response_body(conn, chosen, caps, out_ctx);
    let mut r = Resp::ok(body);
    r.preauth_conn = chosen == dialect::SMB3_1_1;
    Ok(r)
}
