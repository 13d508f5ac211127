//! SPNEGO ([RFC 4178], [MS-SPNG]) around NTLMSSP, server side.
//!
//! The exchange Duet serves:
//! 1. NEGOTIATE response: [`negotiate_hint`], a NegTokenInit2 offering NTLMSSP.
//! 2. SESSION_SETUP #1: the client's GSS-API InitialContextToken holding a
//!    NegTokenInit (mechTypes, mechToken = NTLM NEGOTIATE_MESSAGE). The server
//!    answers `encode_response(AcceptIncomplete, Some(challenge), true)`.
//! 3. SESSION_SETUP #2: a NegTokenResp (responseToken = AUTHENTICATE_MESSAGE,
//!    maybe mechListMIC). The server answers `AcceptCompleted`; when the client
//!    sent a mechListMIC, the server checks it
//!    ([`super::ntlm::ServerContext::verify_mech_list_mic`]) and includes its own
//!    ([`super::ntlm::ServerContext::mech_list_mic`]) with
//!    [`encode_response_with_mic`]. Both MICs cover the mechTypes list of step 2,
//!    so the server keeps [`ClientToken::mech_list`] from the first leg.
//!
//! A client may also send a bare NTLMSSP token (`raw_ntlmssp`): the answer is
//! then the bare NTLMSSP message, without SPNEGO.
//!
//! [`super::Acceptor`] applies all of this; use these functions directly only
//! for something it does not do.
//!
//! ```text
//! InitialContextToken ::= [APPLICATION 0] IMPLICIT SEQUENCE {
//!     thisMech OID (1.3.6.1.5.5.2), innerContextToken NegotiationToken }
//! NegotiationToken ::= CHOICE { negTokenInit [0] NegTokenInit, negTokenResp [1] NegTokenResp }
//! NegTokenInit ::= SEQUENCE { mechTypes [0] MechTypeList, reqFlags [1] ContextFlags OPTIONAL,
//!     mechToken [2] OCTET STRING OPTIONAL, mechListMIC [3] OCTET STRING OPTIONAL }
//! NegTokenInit2 ::= SEQUENCE { mechTypes [0], reqFlags [1] OPTIONAL, mechToken [2] OPTIONAL,
//!     negHints [3] NegHints OPTIONAL, mechListMIC [4] OPTIONAL }   -- [MS-SPNG] 2.2.1
//! NegTokenResp ::= SEQUENCE { negState [0] ENUMERATED OPTIONAL, supportedMech [1] OID OPTIONAL,
//!     responseToken [2] OCTET STRING OPTIONAL, mechListMIC [3] OCTET STRING OPTIONAL }
//! ```

use super::der::{self, context};
use super::AuthError;

/// DER contents of the SPNEGO OID, 1.3.6.1.5.5.2.
pub const SPNEGO_OID: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x02];
/// DER contents of the NTLMSSP OID, 1.3.6.1.4.1.311.2.2.10.
pub const NTLMSSP_OID: &[u8] = &[0x2b, 0x06, 0x01, 0x04, 0x01, 0x82, 0x37, 0x02, 0x02, 0x0a];
/// The signature that starts every NTLMSSP message.
pub const NTLMSSP_SIGNATURE: &[u8; 8] = b"NTLMSSP\0";
/// The hint name [MS-SPNG] 3.2.5.2 tells servers to send.
const HINT_NAME: &[u8] = b"not_defined_in_RFC4178@please_ignore";

/// The token the client sent, reduced to what NTLM needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientToken<'a> {
    /// The NTLMSSP message. Empty when the client's optimistic mechToken is
    /// for another mechanism (Kerberos) or absent: answer
    /// `encode_response(AcceptIncomplete, None, true)` and wait for the NEGOTIATE_MESSAGE.
    pub ntlmssp: &'a [u8],
    /// The client sent a bare NTLMSSP message: answer bare too.
    pub raw_ntlmssp: bool,
    /// The DER MechTypeList (the SEQUENCE OF OIDs, tag and length included)
    /// of a NegTokenInit: what both mechListMICs cover.
    pub mech_list: Option<&'a [u8]>,
    /// The client's mechListMIC, if it sent one.
    pub mech_list_mic: Option<&'a [u8]>,
}

/// negState of a NegTokenResp ([RFC 4178] 4.2.2), in the standard's order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NegState {
    AcceptCompleted,
    AcceptIncomplete,
    Reject,
    RequestMic,
}

impl NegState {
    fn to_wire(self) -> u8 {
        match self {
            NegState::AcceptCompleted => 0,
            NegState::AcceptIncomplete => 1,
            NegState::Reject => 2,
            NegState::RequestMic => 3,
        }
    }
}

/// The NegTokenInit2 for the NEGOTIATE response's security buffer
/// ([MS-SPNG] 2.2.1, 3.2.5.2): mechTypes = { NTLMSSP }, negHints.hintName.
pub fn negotiate_hint() -> Vec<u8> {
    let mech_types = der::tlv(der::SEQUENCE, &der::tlv(der::OID, NTLMSSP_OID));
    let hints = der::tlv(
        der::SEQUENCE,
        &der::tlv(context(0), &der::tlv(der::GENERAL_STRING, HINT_NAME)),
    );
    let mut seq = der::tlv(context(0), &mech_types);
    der::write(context(3), &hints, &mut seq);
    let init = der::tlv(context(0), &der::tlv(der::SEQUENCE, &seq));
    let mut inner = der::tlv(der::OID, SPNEGO_OID);
    inner.extend_from_slice(&init);
    der::tlv(der::APPLICATION_0, &inner)
}

/// Finds the NTLMSSP token in what a client sent in SESSION_SETUP: a GSS-API
/// wrapped NegTokenInit (first leg), a NegTokenResp (later legs), or a bare
/// NTLMSSP message. Trailing bytes after the token are refused.
pub fn parse_client_token(buf: &[u8]) -> Result<ClientToken<'_>, AuthError> {
    if buf.starts_with(NTLMSSP_SIGNATURE) {
        return Ok(ClientToken {
            ntlmssp: buf,
            raw_ntlmssp: true,
            mech_list: None,
            mech_list_mic: None,
        });
    }
    let (tlv, rest) = der::read(buf)?;
    if !rest.is_empty() {
        return Err(AuthError::Malformed("bytes after the SPNEGO token"));
    }
    match tlv.tag {
        der::APPLICATION_0 => {
            let (oid, rest) = der::expect(tlv.value, der::OID, "GSS-API mechanism")?;
            if oid.value != SPNEGO_OID {
                return Err(AuthError::Unsupported("GSS-API mechanism other than SPNEGO"));
            }
            let init = der::expect_only(rest, context(0), "NegTokenInit")?;
            parse_init(init.value)
        }
        t if t == context(0) => parse_init(tlv.value),
        t if t == context(1) => parse_resp(tlv.value),
        _ => Err(AuthError::Malformed("SPNEGO token")),
    }
}

/// Walks the context-tagged fields of a SEQUENCE, in increasing tag order.
fn fields<'a>(seq: &'a [u8], what: &'static str) -> Result<[Option<&'a [u8]>; 5], AuthError> {
    let seq = der::expect_only(seq, der::SEQUENCE, what)?;
    let mut out = [None; 5];
    let mut rest = seq.value;
    let mut next = 0u8;
    while !rest.is_empty() {
        let (f, r) = der::read(rest)?;
        rest = r;
        if f.tag & 0xe0 != 0xa0 || (f.tag & 0x1f) < next {
            return Err(AuthError::Malformed(what));
        }
        let n = f.tag & 0x1f;
        next = n + 1;
        if let Some(slot) = out.get_mut(n as usize) {
            *slot = Some(f.value);
        }
        // Later extensions are skipped.
    }
    Ok(out)
}

fn octet_string<'a>(field: &'a [u8], what: &'static str) -> Result<&'a [u8], AuthError> {
    Ok(der::expect_only(field, der::OCTET_STRING, what)?.value)
}

/// NegTokenInit ([RFC 4178] 4.2.1), the contents of `[0]`.
fn parse_init(buf: &[u8]) -> Result<ClientToken<'_>, AuthError> {
    let f = fields(buf, "NegTokenInit")?;
    let types = f[0].ok_or(AuthError::Malformed("NegTokenInit without mechTypes"))?;
    let list = der::expect_only(types, der::SEQUENCE, "MechTypeList")?;
    let mut rest = list.value;
    let mut first = None;
    let mut offers_ntlm = false;
    while !rest.is_empty() {
        let (oid, r) = der::expect(rest, der::OID, "MechTypeList")?;
        rest = r;
        first.get_or_insert(oid.value);
        offers_ntlm |= oid.value == NTLMSSP_OID;
    }
    if !offers_ntlm {
        return Err(AuthError::Unsupported("client does not offer NTLMSSP"));
    }
    let token = f[2].map(|t| octet_string(t, "mechToken")).transpose()?;
    let mic = f[3].map(|t| octet_string(t, "mechListMIC")).transpose()?;
    let ntlmssp = match token {
        // The optimistic token is for the client's first mechanism.
        Some(t) if first == Some(NTLMSSP_OID) => {
            if !t.starts_with(NTLMSSP_SIGNATURE) {
                return Err(AuthError::Malformed("NTLMSSP mechToken"));
            }
            t
        }
        _ => &[],
    };
    Ok(ClientToken {
        ntlmssp,
        raw_ntlmssp: false,
        mech_list: Some(list.raw),
        mech_list_mic: mic,
    })
}

/// NegTokenResp ([RFC 4178] 4.2.2), the contents of `[1]`.
fn parse_resp(buf: &[u8]) -> Result<ClientToken<'_>, AuthError> {
    let f = fields(buf, "NegTokenResp")?;
    if let Some(state) = f[0] {
        let s = der::expect_only(state, der::ENUMERATED, "negState")?;
        if s.value == [NegState::Reject.to_wire()] {
            return Err(AuthError::LogonFailure);
        }
    }
    if let Some(mech) = f[1] {
        let oid = der::expect_only(mech, der::OID, "supportedMech")?;
        if oid.value != NTLMSSP_OID {
            return Err(AuthError::Unsupported("mechanism other than NTLMSSP"));
        }
    }
    let token = f[2].map(|t| octet_string(t, "responseToken")).transpose()?;
    let mic = f[3].map(|t| octet_string(t, "mechListMIC")).transpose()?;
    let ntlmssp = token.unwrap_or(&[]);
    if !ntlmssp.is_empty() && !ntlmssp.starts_with(NTLMSSP_SIGNATURE) {
        return Err(AuthError::Malformed("NTLMSSP responseToken"));
    }
    Ok(ClientToken {
        ntlmssp,
        raw_ntlmssp: false,
        mech_list: None,
        mech_list_mic: mic,
    })
}

/// A NegTokenResp ([RFC 4178] 4.2.2): supportedMech = NTLMSSP when `first`,
/// the responseToken when given.
pub fn encode_response(state: NegState, ntlmssp: Option<&[u8]>, first: bool) -> Vec<u8> {
    encode_response_with_mic(state, ntlmssp, first, None)
}

/// [`encode_response`] with a mechListMIC.
pub fn encode_response_with_mic(state: NegState, ntlmssp: Option<&[u8]>, first: bool, mic: Option<&[u8]>) -> Vec<u8> {
    let mut seq = der::tlv(context(0), &der::tlv(der::ENUMERATED, &[state.to_wire()]));
    if first {
        der::write(context(1), &der::tlv(der::OID, NTLMSSP_OID), &mut seq);
    }
    if let Some(t) = ntlmssp {
        der::write(context(2), &der::tlv(der::OCTET_STRING, t), &mut seq);
    }
    if let Some(m) = mic {
        der::write(context(3), &der::tlv(der::OCTET_STRING, m), &mut seq);
    }
    der::tlv(context(1), &der::tlv(der::SEQUENCE, &seq))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::crypto::preauth::tests::EXCHANGE;
    use crate::crypto::unhex;

    // A session with smbclient (Samba 4), captured on 127.0.0.1 against this
    // code: the client's NegTokenInit, our CHALLENGE_MESSAGE and its wrapping,
    // the client's NegTokenResp (AUTHENTICATE_MESSAGE with a MIC, and a
    // mechListMIC), and our final answer, which smbclient accepted (it went on
    // to a signed TREE_CONNECT). Server: challenge 0102030405060708, time
    // 0x01dc000000000000, names WORKGROUP / DUET / - / duet; user alice,
    // password "sekrit".
    pub(crate) const SMBCLIENT_INIT: &str =
        "604806062b0601050502a03e303ca00e300c060a2b06010401823702020aa22a04284e544c4d53535000010000001582
        086200000000280000000000000028000000060100000000000f";
    pub(crate) const SMBCLIENT_CHALLENGE: &str =
        "4e544c4d5353500002000000080008003800000015828a62010203040506070800000000000000003e003e0040000000
        0a0063450000000f44005500450054000200120057004f0052004b00470052004f005500500001000800440055004500
        540003000800640075006500740007000800000000000000dc0100000000";
    pub(crate) const SMBCLIENT_CHALLENGE_RESPONSE: &str =
        "a18199308196a0030a0101a10c060a2b06010401823702020aa28180047e4e544c4d5353500002000000080008003800
        000015828a62010203040506070800000000000000003e003e00400000000a0063450000000f44005500450054000200
        120057004f0052004b00470052004f005500500001000800440055004500540003000800640075006500740007000800
        000000000000dc0100000000";
    pub(crate) const SMBCLIENT_AUTH: &str =
        "a182019a30820196a282017e0482017a4e544c4d53535000030000001800180058000000da00da007000000012001200
        4a0100000a000a005c0100000400040066010000100010006a01000015820862060100000000000fd32ad144695eea8a
        93b06adde04d4e0a000000000000000000000000000000000000000000000000df998370a70e89536a17304a82fe5a34
        0101000000000000000000000000dc010fddb3fe4250e41e000000000200120057004f0052004b00470052004f005500
        500001000800440055004500540003000800640075006500740007000800000000000000dc0106000400020000000800
        300030000000000000000000000000000000a616287b3f771ec38a0b2595df37de3df939bf7c06d5d1bd74817f6c250b
        bdf20a0010000000000000000000000000000000000009001c0063006900660073002f003100320037002e0030002e00
        30002e0031000000000057004f0052004b00470052004f005500500061006c0069006300650056004d0057238633e8ee
        8064680010452b4c4829a312041001000000fc6a957b8408ebff00000000";
    pub(crate) const SMBCLIENT_FINAL: &str = "a11b3019a0030a0100a3120410010000008d440dc164c4847b00000000";

    /// The security buffer of a SESSION_SETUP request or response of the
    /// Windows exchange in [`crate::crypto::preauth`]'s tests.
    pub(crate) fn windows_buffer(i: usize) -> Vec<u8> {
        let msg = unhex(EXCHANGE[i].0);
        // SMB2_FLAGS_SERVER_TO_REDIR tells a response (2.2.6) from a request (2.2.5).
        let (at, len_at) = if msg[16] & 1 == 0 { (76, 78) } else { (68, 70) };
        let off = u16::from_le_bytes([msg[at], msg[at + 1]]) as usize;
        let len = u16::from_le_bytes([msg[len_at], msg[len_at + 1]]) as usize;
        msg[off..off + len].to_vec()
    }

    pub(crate) const MECH_LIST: &str = "300c060a2b06010401823702020a";

    #[test]
    fn negotiate_hint_bytes() {
        let hint = negotiate_hint();
        let expected = unhex(
            "6048 0606 2b0601050502
             a03e 303c
                  a00e 300c 060a 2b06010401823702020a
                  a32a 3028 a026 1b24 6e6f745f646566696e65645f696e5f5246433431373840706c656173655f69676e6f7265",
        );
        assert_eq!(hint, expected);
        // Its mechTypes are what the client echoes.
        let (outer, rest) = der::read(&hint).unwrap();
        assert!(rest.is_empty() && outer.tag == der::APPLICATION_0);
    }

    #[test]
    fn windows_first_leg() {
        let buf = windows_buffer(2);
        let t = parse_client_token(&buf).unwrap();
        assert!(!t.raw_ntlmssp);
        assert_eq!(t.ntlmssp.len(), 40);
        assert!(t.ntlmssp.starts_with(b"NTLMSSP\0\x01\0\0\0"));
        assert_eq!(t.mech_list, Some(&unhex(MECH_LIST)[..]));
        assert_eq!(t.mech_list_mic, None);
    }

    #[test]
    fn windows_server_answers_are_reproduced() {
        // Our encoding of Windows's CHALLENGE gives Windows's bytes.
        let resp = windows_buffer(3);
        let challenge = &resp[resp.len() - 0x94..];
        assert!(challenge.starts_with(b"NTLMSSP\0\x02"));
        assert_eq!(encode_response(NegState::AcceptIncomplete, Some(challenge), true), resp);
        // And the final answer with its mechListMIC (from the signed response).
        let final_msg = unhex(
            "FE534D4240000100000000000100800009000000000000000300000000000000FFFE000000000000
             1900000000100000EBE146DA120BA25FC3376A49DFE31BC10900000048001D00A11B3019A0030A01
             00A3120410010000003B453CDC3524164200000000",
        );
        let mic = unhex("010000003B453CDC3524164200000000");
        assert_eq!(
            encode_response_with_mic(NegState::AcceptCompleted, None, false, Some(&mic)),
            final_msg[72..]
        );
    }

    #[test]
    fn windows_second_leg() {
        let buf = windows_buffer(4);
        let t = parse_client_token(&buf).unwrap();
        assert_eq!(t.ntlmssp.len(), 0x1a6);
        assert!(t.ntlmssp.starts_with(b"NTLMSSP\0\x03"));
        assert_eq!(t.mech_list, None);
        assert_eq!(t.mech_list_mic, Some(&unhex("0100000063775A9A5FD97F0600000000")[..]));
    }

    #[test]
    fn smbclient_session() {
        let init = unhex(SMBCLIENT_INIT);
        let t = parse_client_token(&init).unwrap();
        assert_eq!(t.mech_list, Some(&unhex(MECH_LIST)[..]));
        assert!(t.ntlmssp.starts_with(b"NTLMSSP\0\x01"));
        let challenge = unhex(SMBCLIENT_CHALLENGE);
        assert_eq!(
            encode_response(NegState::AcceptIncomplete, Some(&challenge), true),
            unhex(SMBCLIENT_CHALLENGE_RESPONSE)
        );
        let auth = unhex(SMBCLIENT_AUTH);
        let t = parse_client_token(&auth).unwrap();
        assert!(t.ntlmssp.starts_with(b"NTLMSSP\0\x03"));
        assert_eq!(t.mech_list_mic.map(|m| m.len()), Some(16));
        let fin = unhex(SMBCLIENT_FINAL);
        let mic = &fin[fin.len() - 16..];
        assert_eq!(
            encode_response_with_mic(NegState::AcceptCompleted, None, false, Some(mic)),
            fin
        );
    }

    #[test]
    fn every_prefix_fails_cleanly() {
        let tokens = [
            unhex(SMBCLIENT_INIT),
            unhex(SMBCLIENT_AUTH),
            windows_buffer(2),
            windows_buffer(4),
            encode_response(NegState::AcceptIncomplete, Some(b"NTLMSSP\0"), true),
        ];
        for tok in &tokens {
            assert!(parse_client_token(tok).is_ok());
            for cut in 0..tok.len() {
                assert!(
                    parse_client_token(&tok[..cut]).is_err(),
                    "cut {cut} of {:02x?}",
                    &tok[..4]
                );
            }
            let mut long = tok.clone();
            long.push(0);
            assert!(parse_client_token(&long).is_err());
        }
    }

    #[test]
    fn raw_ntlmssp() {
        let t = parse_client_token(b"NTLMSSP\0\x01\0\0\0rest").unwrap();
        assert!(t.raw_ntlmssp);
        assert_eq!(t.ntlmssp, b"NTLMSSP\0\x01\0\0\0rest");
    }

    fn init_with(mech_types: &[&[u8]], token: Option<&[u8]>) -> Vec<u8> {
        let mut list = Vec::new();
        for m in mech_types {
            der::write(der::OID, m, &mut list);
        }
        let mut seq = der::tlv(context(0), &der::tlv(der::SEQUENCE, &list));
        if let Some(t) = token {
            der::write(context(2), &der::tlv(der::OCTET_STRING, t), &mut seq);
        }
        let mut inner = der::tlv(der::OID, SPNEGO_OID);
        inner.extend_from_slice(&der::tlv(context(0), &der::tlv(der::SEQUENCE, &seq)));
        der::tlv(der::APPLICATION_0, &inner)
    }

    const KRB5: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x12, 0x01, 0x02, 0x02];

    #[test]
    fn kerberos_first_leaves_the_ntlm_token_empty() {
        let tok = init_with(&[KRB5, NTLMSSP_OID], Some(b"\x60\x01\x00"));
        let t = parse_client_token(&tok).unwrap();
        assert!(t.ntlmssp.is_empty());
        assert!(t.mech_list.is_some());
        // No mechToken at all.
        let tok = init_with(&[NTLMSSP_OID], None);
        assert!(parse_client_token(&tok).unwrap().ntlmssp.is_empty());
    }

    #[test]
    fn refusals() {
        assert!(matches!(
            parse_client_token(&init_with(&[KRB5], Some(b"x"))),
            Err(AuthError::Unsupported(_))
        ));
        // An NTLMSSP mechToken that is not NTLMSSP.
        assert!(matches!(
            parse_client_token(&init_with(&[NTLMSSP_OID], Some(b"garbage"))),
            Err(AuthError::Malformed(_))
        ));
        // Another GSS-API mechanism.
        let mut inner = der::tlv(der::OID, KRB5);
        inner.extend_from_slice(&der::tlv(context(0), &der::tlv(der::SEQUENCE, &[])));
        assert!(matches!(
            parse_client_token(&der::tlv(der::APPLICATION_0, &inner)),
            Err(AuthError::Unsupported(_))
        ));
        // The client rejects.
        let reject = encode_response(NegState::Reject, None, false);
        assert_eq!(parse_client_token(&reject), Err(AuthError::LogonFailure));
        // Fields out of order.
        let mut seq = der::tlv(context(2), &der::tlv(der::OCTET_STRING, b"NTLMSSP\0"));
        der::write(context(0), &der::tlv(der::ENUMERATED, &[1]), &mut seq);
        assert!(parse_client_token(&der::tlv(context(1), &der::tlv(der::SEQUENCE, &seq))).is_err());
        // Wrong inner types.
        let seq = der::tlv(context(2), &der::tlv(der::OID, b"NTLMSSP\0"));
        assert!(parse_client_token(&der::tlv(context(1), &der::tlv(der::SEQUENCE, &seq))).is_err());
        assert!(parse_client_token(&[]).is_err());
        assert!(parse_client_token(&[0x30, 0x00]).is_err());
    }

    #[test]
    fn mutations_do_not_panic() {
        let tokens = [unhex(SMBCLIENT_INIT), unhex(SMBCLIENT_AUTH), windows_buffer(4)];
        let mut x = 0x2545_f491_4f6c_dd1du64;
        for tok in &tokens {
            for _ in 0..2000 {
                let mut t = tok.clone();
                for _ in 0..3 {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    let at = (x as usize) % t.len();
                    t[at] = (x >> 32) as u8;
                }
                let _ = parse_client_token(&t);
            }
        }
    }
}
