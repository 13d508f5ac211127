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
    let hints = der::tlv(der::SEQUENCE, &der::tlv(context(0), &der::tlv(der::GENERAL_STRING, HINT_NAME)));
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
        return Ok(ClientToken { ntlmssp: buf, raw_ntlmssp: true, mech_list: None, mech_list_mic: None });
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
    Ok(ClientToken { ntlmssp, raw_ntlmssp: false, mech_list: Some(list.raw), mech_list_mic: mic })
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
    Ok(ClientToken { ntlmssp, raw_ntlmssp: false, mech_list: None, mech_list_mic: mic })
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
