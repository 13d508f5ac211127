//! NTLM ([MS-NLMP]), server side, NTLMv2 only.
//!
//! [`ServerContext`] runs one exchange: the client's NEGOTIATE_MESSAGE in,
//! the CHALLENGE_MESSAGE out, the AUTHENTICATE_MESSAGE in, an
//! [`Authenticated`] (or an error) out. NTLMv1 and LM responses are refused.
//! After a successful exchange the context computes and checks the SPNEGO
//! mechListMIC ([MS-NLMP] 3.4.4.2 with extended session security).
//!
//! Formats (little-endian; a `fields` is `{ len: u16 | max_len: u16 | offset: u32 }`
//! locating a payload buffer from the start of the message):
//! ```text
//! NEGOTIATE_MESSAGE (2.2.1.1):    { "NTLMSSP\0" | message_type=1: u32 | negotiate_flags: u32 |
//!                                   domain_name: fields | workstation: fields | (version: [u8; 8]) | payload }
//! CHALLENGE_MESSAGE (2.2.1.2):    { "NTLMSSP\0" | message_type=2: u32 | target_name: fields |
//!                                   negotiate_flags: u32 | server_challenge: [u8; 8] | _reserved: [u8; 8] |
//!                                   target_info: fields | version: [u8; 8] | payload }
//! AUTHENTICATE_MESSAGE (2.2.1.3): { "NTLMSSP\0" | message_type=3: u32 | lm_challenge_response: fields |
//!                                   nt_challenge_response: fields | domain_name: fields | user_name: fields |
//!                                   workstation: fields | encrypted_random_session_key: fields |
//!                                   negotiate_flags: u32 | (version: [u8; 8]) | (mic: [u8; 16]) | payload }
//! AV_PAIR (2.2.2.1):              { av_id: u16 | av_len: u16 | value: [u8; av_len] }, ending with MsvAvEOL
//! NTLMv2_CLIENT_CHALLENGE (2.2.2.7): { resp_type=1: u8 | hi_resp_type=1: u8 | _reserved: [u8; 6] |
//!                                   timestamp: u64 | challenge_from_client: [u8; 8] | _reserved: u32 |
//!                                   av_pairs | (padding) }
//! ```

use hmac::{Hmac, Mac};
use md5::{Digest, Md5};
use rc4::{KeyInit, Rc4, StreamCipher};

use super::spnego::NTLMSSP_SIGNATURE;
use super::{nt_hash, AuthError};
use crate::crypto::ct_eq;

type HmacMd5 = Hmac<Md5>;
type Rc4_128 = Rc4<rc4::consts::U16>;

/// NegotiateFlags ([MS-NLMP] 2.2.2.5), in bit order.
pub mod flags {
    pub const UNICODE: u32 = 0x0000_0001;
    pub const OEM: u32 = 0x0000_0002;
    pub const REQUEST_TARGET: u32 = 0x0000_0004;
    pub const SIGN: u32 = 0x0000_0010;
    pub const SEAL: u32 = 0x0000_0020;
    pub const DATAGRAM: u32 = 0x0000_0040;
    pub const LM_KEY: u32 = 0x0000_0080;
    pub const NTLM: u32 = 0x0000_0200;
    pub const ANONYMOUS: u32 = 0x0000_0800;
    pub const OEM_DOMAIN_SUPPLIED: u32 = 0x0000_1000;
    pub const OEM_WORKSTATION_SUPPLIED: u32 = 0x0000_2000;
    pub const ALWAYS_SIGN: u32 = 0x0000_8000;
    pub const TARGET_TYPE_DOMAIN: u32 = 0x0001_0000;
    pub const TARGET_TYPE_SERVER: u32 = 0x0002_0000;
    pub const EXTENDED_SESSIONSECURITY: u32 = 0x0008_0000;
    pub const IDENTIFY: u32 = 0x0010_0000;
    pub const REQUEST_NON_NT_SESSION_KEY: u32 = 0x0040_0000;
    pub const TARGET_INFO: u32 = 0x0080_0000;
    pub const VERSION: u32 = 0x0200_0000;
    pub const NEGOTIATE_128: u32 = 0x2000_0000;
    pub const KEY_EXCH: u32 = 0x4000_0000;
    pub const NEGOTIATE_56: u32 = 0x8000_0000;
}

/// AvId values ([MS-NLMP] 2.2.2.1), in the standard's order.
pub mod av {
    pub const EOL: u16 = 0;
    pub const NB_COMPUTER_NAME: u16 = 1;
    pub const NB_DOMAIN_NAME: u16 = 2;
    pub const DNS_COMPUTER_NAME: u16 = 3;
    pub const DNS_DOMAIN_NAME: u16 = 4;
    pub const DNS_TREE_NAME: u16 = 5;
    pub const FLAGS: u16 = 6;
    pub const TIMESTAMP: u16 = 7;
    pub const SINGLE_HOST: u16 = 8;
    pub const TARGET_NAME: u16 = 9;
    pub const CHANNEL_BINDINGS: u16 = 10;
    /// MsvAvFlags bit: the AUTHENTICATE_MESSAGE carries a MIC.
    pub const FLAG_MIC_PRESENT: u32 = 0x0000_0002;
}

const NEGOTIATE: u32 = 1;
const CHALLENGE: u32 = 2;
const AUTHENTICATE: u32 = 3;
const NEGOTIATE_HEADER_LEN: usize = 32;
const CHALLENGE_HEADER_LEN: usize = 56;
const AUTHENTICATE_FLAGS_END: usize = 64;
const MIC_OFFSET: usize = 72;
const AUTHENTICATE_HEADER_LEN: usize = 88;
/// The header of NTLMv2_CLIENT_CHALLENGE before its AV pairs.
const BLOB_HEADER_LEN: usize = 28;
/// Product version 10.0, build 17763, NTLMSSP_REVISION_W2K3 ([MS-NLMP] 2.2.2.10).
const VERSION: [u8; 8] = [10, 0, 0x63, 0x45, 0, 0, 0, 0x0f];

/// The flags the server grants when the client asks for them.
const GRANTABLE: u32 = flags::SIGN
    | flags::SEAL
    | flags::ALWAYS_SIGN
    | flags::EXTENDED_SESSIONSECURITY
    | flags::NEGOTIATE_128
    | flags::NEGOTIATE_56
    | flags::KEY_EXCH
    | flags::VERSION;

/// The names the server reports in its CHALLENGE_MESSAGE target info ([MS-NLMP] 2.2.2.1).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ServerConfig {
    pub netbios_domain: String,
    pub netbios_computer: String,
    pub dns_domain: String,
    pub dns_computer: String,
}

/// A successful authentication.
#[derive(Clone, PartialEq, Eq)]
pub struct Authenticated {
    pub user: String,
    pub domain: String,
    pub workstation: String,
    /// Anonymous logon ([MS-NLMP] 3.2.5.1.2): no user, no NT response.
    pub anonymous: bool,
    /// The ExportedSessionKey, which SMB uses as its session key. Zero for anonymous.
    pub session_key: [u8; 16],
}

impl std::fmt::Debug for Authenticated {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticated")
            .field("user", &self.user)
            .field("domain", &self.domain)
            .field("workstation", &self.workstation)
            .field("anonymous", &self.anonymous)
            .finish_non_exhaustive()
    }
}

/// Where one exchange stands.
enum State {
    /// Waiting for the NEGOTIATE_MESSAGE.
    Initial,
    /// CHALLENGE_MESSAGE sent; the MIC needs both messages.
    Challenged {
        negotiate: Vec<u8>,
        challenge: Vec<u8>,
        flags: u32,
    },
    /// Authenticated, with the keys the mechListMIC needs (`None` for anonymous).
    Done { keys: Option<([u8; 16], u32)> },
    /// The exchange failed; it cannot be resumed.
    Failed,
}

/// Server side of one NTLM exchange ([MS-NLMP] 3.2.5). Sans-IO: the server
/// challenge (8 random bytes) and the current time (a FILETIME, for
/// MsvAvTimestamp) are passed in.
pub struct ServerContext {
    config: ServerConfig,
    server_challenge: [u8; 8],
    now_filetime: u64,
    state: State,
}

impl std::fmt::Debug for ServerContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = match self.state {
            State::Initial => "initial",
            State::Challenged { .. } => "challenged",
            State::Done { .. } => "done",
            State::Failed => "failed",
        };
        f.debug_struct("ServerContext")
            .field("config", &self.config)
            .field("state", &state)
            .finish_non_exhaustive()
    }
}

impl ServerContext {
    pub fn new(config: ServerConfig, server_challenge: [u8; 8], now_filetime: u64) -> Self {
        ServerContext {
            config,
            server_challenge,
            now_filetime,
            state: State::Initial,
        }
    }

    /// Takes the client's NEGOTIATE_MESSAGE ([MS-NLMP] 2.2.1.1) and returns the
    /// CHALLENGE_MESSAGE ([MS-NLMP] 2.2.1.2, 3.2.5.1.1), whose target info
    /// holds the NetBIOS and DNS names and MsvAvTimestamp.
    pub fn challenge(&mut self, negotiate: &[u8]) -> Result<Vec<u8>, AuthError> {
        if !matches!(self.state, State::Initial) {
            return Err(AuthError::Malformed("NTLM NEGOTIATE_MESSAGE out of order"));
        }
        let client_flags = parse_negotiate(negotiate)?;
        if client_flags & flags::UNICODE == 0 {
            return Err(AuthError::Unsupported("NTLM client without Unicode"));
        }
        let mut chal_flags = flags::UNICODE
            | flags::NTLM
            | flags::TARGET_INFO
            | flags::TARGET_TYPE_SERVER
            | (client_flags & (GRANTABLE | flags::REQUEST_TARGET));
        // Extended session security wins over the LM session key; neither 56 nor 128 is fine.
        if client_flags & flags::EXTENDED_SESSIONSECURITY == 0 {
            chal_flags &= !flags::EXTENDED_SESSIONSECURITY;
        }

        let c = &self.config;
        let mut info = Vec::new();
        put_av(&mut info, av::NB_DOMAIN_NAME, &utf16(&c.netbios_domain));
        put_av(&mut info, av::NB_COMPUTER_NAME, &utf16(&c.netbios_computer));
        if !c.dns_domain.is_empty() {
            put_av(&mut info, av::DNS_DOMAIN_NAME, &utf16(&c.dns_domain));
        }
        if !c.dns_computer.is_empty() {
            put_av(&mut info, av::DNS_COMPUTER_NAME, &utf16(&c.dns_computer));
        }
        put_av(&mut info, av::TIMESTAMP, &self.now_filetime.to_le_bytes());
        put_av(&mut info, av::EOL, &[]);

        let target_name = utf16(&c.netbios_computer);
        let mut msg = Vec::with_capacity(CHALLENGE_HEADER_LEN + target_name.len() + info.len());
        msg.extend_from_slice(NTLMSSP_SIGNATURE);
        msg.extend_from_slice(&CHALLENGE.to_le_bytes());
        let name_at = CHALLENGE_HEADER_LEN;
        put_fields(&mut msg, target_name.len(), name_at)?;
        msg.extend_from_slice(&chal_flags.to_le_bytes());
        msg.extend_from_slice(&self.server_challenge);
        msg.extend_from_slice(&[0u8; 8]);
        put_fields(&mut msg, info.len(), name_at + target_name.len())?;
        msg.extend_from_slice(&VERSION);
        msg.extend_from_slice(&target_name);
        msg.extend_from_slice(&info);

        self.state = State::Challenged {
            negotiate: negotiate.to_vec(),
            challenge: msg.clone(),
            flags: chal_flags,
        };
        Ok(msg)
    }

    /// Verifies the AUTHENTICATE_MESSAGE ([MS-NLMP] 2.2.1.3, 3.2.5.1.2, 3.3.2).
    ///
    /// `lookup(user, domain)` returns the user's NT hash ([`super::nt_hash`]),
    /// or `None` for an unknown user; it compares user names
    /// case-insensitively. The NTLMv2 proof is tried with the domain as sent,
    /// then upper-cased, then empty, as clients differ in what they hash.
    /// An anonymous AUTHENTICATE (no user, no NT response, an empty or one-byte
    /// LM response) succeeds with `anonymous: true` and a zero key; the caller
    /// decides whether to allow it. With NTLMSSP_NEGOTIATE_KEY_EXCH the
    /// exported session key is RC4-decrypted; when MsvAvFlags says a MIC is
    /// present it is checked over all three messages.
    pub fn authenticate(
        &mut self,
        authenticate: &[u8],
        lookup: &dyn Fn(&str, &str) -> Option<[u8; 16]>,
    ) -> Result<Authenticated, AuthError> {
        let (negotiate, challenge, chal_flags) = match std::mem::replace(&mut self.state, State::Failed) {
            State::Challenged {
                negotiate,
                challenge,
                flags,
            } => (negotiate, challenge, flags),
            other => {
                self.state = other;
                return Err(AuthError::Malformed("NTLM AUTHENTICATE_MESSAGE out of order"));
            }
        };
        let msg = parse_authenticate(authenticate)?;
        let user = decode_string(msg.user, msg.flags, "NTLM user name")?;
        let domain = decode_string(msg.domain, msg.flags, "NTLM domain name")?;
        let workstation = decode_string(msg.workstation, msg.flags, "NTLM workstation")?;

        if user.is_empty() && msg.nt.is_empty() && msg.lm.len() <= 1 {
            self.state = State::Done { keys: None };
            return Ok(Authenticated {
                user,
                domain,
                workstation,
                anonymous: true,
                session_key: [0u8; 16],
            });
        }
        match msg.nt.len() {
            0 => return Err(AuthError::Unsupported("LM authentication")),
            24 => return Err(AuthError::Unsupported("NTLMv1 authentication")),
            n if n < 16 + BLOB_HEADER_LEN => return Err(AuthError::Malformed("NTLMv2 response")),
            _ => {}
        }
        let (proof, blob) = msg.nt.split_at(16);
        let pairs = parse_av_pairs(&blob[BLOB_HEADER_LEN..])?;
        let av_flags = pairs
            .iter()
            .find(|(id, _)| *id == av::FLAGS)
            .map(|(_, v)| read_u32_value(v))
            .transpose()?
            .unwrap_or(0);

        let nt = lookup(&user, &domain).ok_or(AuthError::LogonFailure)?;
        let upper = upcase(&domain);
        let mut candidates: Vec<&str> = vec![&domain];
        if upper != domain {
            candidates.push(&upper);
        }
        if !domain.is_empty() {
            candidates.push("");
        }
        let response_key = candidates
            .into_iter()
            .map(|d| ntowfv2(&nt, &user, d))
            .find(|key| ct_eq(&hmac_md5(key, &[&self.server_challenge, blob]), proof))
            .ok_or(AuthError::LogonFailure)?;
        let session_base_key = hmac_md5(&response_key, &[proof]);

        let negotiated = chal_flags & msg.flags | (msg.flags & (flags::UNICODE | flags::NTLM));
        let exported = if negotiated & flags::KEY_EXCH != 0 {
            let enc: [u8; 16] = msg
                .encrypted_key
                .try_into()
                .map_err(|_| AuthError::Malformed("NTLM encrypted session key"))?;
            rc4(&session_base_key, &enc)
        } else {
            session_base_key
        };

        if av_flags & av::FLAG_MIC_PRESENT != 0 {
            let mic = authenticate
                .get(MIC_OFFSET..MIC_OFFSET + 16)
                .ok_or(AuthError::Malformed("NTLM AUTHENTICATE_MESSAGE MIC"))?;
            if !ct_eq(&message_mic(&exported, &negotiate, &challenge, authenticate), mic) {
                return Err(AuthError::LogonFailure);
            }
        }

        self.state = State::Done {
            keys: Some((exported, negotiated)),
        };
        Ok(Authenticated {
            user,
            domain,
            workstation,
            anonymous: false,
            session_key: exported,
        })
    }

    /// The server's mechListMIC over `mech_list` (the DER MechTypeList of the
    /// client's NegTokenInit): an NTLMSSP signature with the server-to-client
    /// keys and sequence number 0 ([MS-NLMP] 3.4.4.2, [MS-SPNG] 3.2.5.1).
    /// `None` before a successful, non-anonymous authentication or without
    /// extended session security.
    pub fn mech_list_mic(&self, mech_list: &[u8]) -> Option<[u8; 16]> {
        let (key, negotiated) = self.keys()?;
        Some(mac(&key, negotiated, Direction::ServerToClient, 0, mech_list))
    }

    /// Checks the client's mechListMIC over `mech_list`, made with the
    /// client-to-server keys and sequence number 0. False whenever
    /// [`Self::mech_list_mic`] would be `None`.
    pub fn verify_mech_list_mic(&self, mech_list: &[u8], mic: &[u8]) -> bool {
        match self.keys() {
            Some((key, negotiated)) => ct_eq(&mac(&key, negotiated, Direction::ClientToServer, 0, mech_list), mic),
            None => false,
        }
    }

    fn keys(&self) -> Option<([u8; 16], u32)> {
        match self.state {
            State::Done {
                keys: Some((key, negotiated)),
            } if negotiated & flags::EXTENDED_SESSIONSECURITY != 0 => Some((key, negotiated)),
            _ => None,
        }
    }
}

// --- message parsing ---------------------------------------------------------

/// Reads a `fields` triple at `at` and borrows its buffer from `msg`.
fn field<'a>(msg: &'a [u8], at: usize, what: &'static str) -> Result<&'a [u8], AuthError> {
    let f = msg.get(at..at + 8).ok_or(AuthError::Malformed(what))?;
    let len = u16::from_le_bytes([f[0], f[1]]) as usize;
    let offset = u32::from_le_bytes([f[4], f[5], f[6], f[7]]) as usize;
    if len == 0 {
        return Ok(&[]);
    }
    let end = offset.checked_add(len).ok_or(AuthError::Malformed(what))?;
    msg.get(offset..end).ok_or(AuthError::Malformed(what))
}

fn u32_at(msg: &[u8], at: usize, what: &'static str) -> Result<u32, AuthError> {
    let b = msg.get(at..at + 4).ok_or(AuthError::Malformed(what))?;
    Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

fn check_header(msg: &[u8], message_type: u32, min_len: usize, what: &'static str) -> Result<(), AuthError> {
    if msg.len() < min_len {
        return Err(AuthError::Malformed(what));
    }
    if &msg[..8] != NTLMSSP_SIGNATURE || u32_at(msg, 8, what)? != message_type {
        return Err(AuthError::Malformed(what));
    }
    Ok(())
}

/// NEGOTIATE_MESSAGE ([MS-NLMP] 2.2.1.1): checks it and returns its flags.
fn parse_negotiate(msg: &[u8]) -> Result<u32, AuthError> {
    const WHAT: &str = "NTLM NEGOTIATE_MESSAGE";
    check_header(msg, NEGOTIATE, NEGOTIATE_HEADER_LEN, WHAT)?;
    let f = u32_at(msg, 12, WHAT)?;
    if f & flags::VERSION != 0 && msg.len() < NEGOTIATE_HEADER_LEN + 8 {
        return Err(AuthError::Malformed(WHAT));
    }
    // The (OEM) names are informational, but must lie inside the message.
    field(msg, 16, WHAT)?;
    field(msg, 24, WHAT)?;
    Ok(f)
}

/// The parts of an AUTHENTICATE_MESSAGE ([MS-NLMP] 2.2.1.3) the server uses.
struct AuthenticateMessage<'a> {
    lm: &'a [u8],
    nt: &'a [u8],
    domain: &'a [u8],
    user: &'a [u8],
    workstation: &'a [u8],
    encrypted_key: &'a [u8],
    flags: u32,
}

fn parse_authenticate(msg: &[u8]) -> Result<AuthenticateMessage<'_>, AuthError> {
    const WHAT: &str = "NTLM AUTHENTICATE_MESSAGE";
    check_header(msg, AUTHENTICATE, AUTHENTICATE_FLAGS_END, WHAT)?;
    let flags = u32_at(msg, 60, WHAT)?;
    if flags & flags::VERSION != 0 && msg.len() < AUTHENTICATE_FLAGS_END + 8 {
        return Err(AuthError::Malformed(WHAT));
    }
    Ok(AuthenticateMessage {
        lm: field(msg, 12, "NTLM LmChallengeResponse")?,
        nt: field(msg, 20, "NTLM NtChallengeResponse")?,
        domain: field(msg, 28, "NTLM domain name")?,
        user: field(msg, 36, "NTLM user name")?,
        workstation: field(msg, 44, "NTLM workstation")?,
        encrypted_key: field(msg, 52, "NTLM encrypted session key")?,
        flags,
    })
}

/// A list of AV_PAIRs ([MS-NLMP] 2.2.2.1) up to MsvAvEOL; what follows it is ignored.
fn parse_av_pairs(mut buf: &[u8]) -> Result<Vec<(u16, &[u8])>, AuthError> {
    const WHAT: &str = "NTLM AV_PAIR list";
    let mut out = Vec::new();
    loop {
        let h = buf.get(..4).ok_or(AuthError::Malformed(WHAT))?;
        let id = u16::from_le_bytes([h[0], h[1]]);
        let len = u16::from_le_bytes([h[2], h[3]]) as usize;
        let value = buf.get(4..4 + len).ok_or(AuthError::Malformed(WHAT))?;
        if id == av::EOL {
            return Ok(out);
        }
        out.push((id, value));
        buf = &buf[4 + len..];
    }
}

fn read_u32_value(v: &[u8]) -> Result<u32, AuthError> {
    let b: [u8; 4] = v.try_into().map_err(|_| AuthError::Malformed("NTLM MsvAvFlags"))?;
    Ok(u32::from_le_bytes(b))
}

fn decode_string(b: &[u8], negotiated: u32, what: &'static str) -> Result<String, AuthError> {
    if negotiated & flags::UNICODE != 0 {
        crate::codec::utf16le(b, what).map_err(|_| AuthError::Malformed(what))
    } else {
        // OEM: taken as Latin-1, which is right for ASCII names.
        Ok(b.iter().map(|&c| c as char).collect())
    }
}

// --- encoding -----------------------------------------------------------------

fn utf16(s: &str) -> Vec<u8> {
    s.encode_utf16().flat_map(u16::to_le_bytes).collect()
}

fn put_av(out: &mut Vec<u8>, id: u16, value: &[u8]) {
    out.extend_from_slice(&id.to_le_bytes());
    out.extend_from_slice(&(value.len().min(u16::MAX as usize) as u16).to_le_bytes());
    out.extend_from_slice(&value[..value.len().min(u16::MAX as usize)]);
}

fn put_fields(out: &mut Vec<u8>, len: usize, offset: usize) -> Result<(), AuthError> {
    let len = u16::try_from(len).map_err(|_| AuthError::Malformed("NTLM buffer too long"))?;
    let offset = u32::try_from(offset).map_err(|_| AuthError::Malformed("NTLM buffer too long"))?;
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&offset.to_le_bytes());
    Ok(())
}

// --- cryptography ([MS-NLMP] 3.3.2, 3.4) ------------------------------------------

fn hmac_md5(key: &[u8], parts: &[&[u8]]) -> [u8; 16] {
    let mut mac = <HmacMd5 as Mac>::new_from_slice(key).expect("HMAC accepts keys of any length");
    for p in parts {
        mac.update(p);
    }
    mac.finalize().into_bytes().into()
}

fn md5(parts: &[&[u8]]) -> [u8; 16] {
    let mut h = Md5::new();
    for p in parts {
        h.update(p);
    }
    h.finalize().into()
}

fn rc4(key: &[u8; 16], data: &[u8; 16]) -> [u8; 16] {
    let mut out = *data;
    Rc4_128::new(key.into()).apply_keystream(&mut out);
    out
}

/// The MIC of the three messages ([MS-NLMP] 3.1.5.1.2, 3.2.5.1.2), with the
/// AUTHENTICATE_MESSAGE's own MIC field taken as zero.
fn message_mic(exported: &[u8; 16], negotiate: &[u8], challenge: &[u8], authenticate: &[u8]) -> [u8; 16] {
    let mut zeroed = authenticate.to_vec();
    if let Some(mic) = zeroed.get_mut(MIC_OFFSET..MIC_OFFSET + 16) {
        mic.fill(0);
    }
    hmac_md5(exported, &[negotiate, challenge, &zeroed])
}

/// Upper case as Windows does it: one character for one, so a character
/// whose upper case is longer ('ß' → "SS") stays as it is.
fn upcase(s: &str) -> String {
    s.chars()
        .map(|c| {
            let mut up = c.to_uppercase();
            match (up.next(), up.next()) {
                (Some(u), None) => u,
                _ => c,
            }
        })
        .collect()
}

/// NTOWFv2 ([MS-NLMP] 3.3.2): `HMAC_MD5(NT hash, UNICODE(Uppercase(User) || UserDom))`.
fn ntowfv2(nt_hash: &[u8; 16], user: &str, domain: &str) -> [u8; 16] {
    let mut who = utf16(&upcase(user));
    who.extend_from_slice(&utf16(domain));
    hmac_md5(nt_hash, &[&who])
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Direction {
    ClientToServer,
    ServerToClient,
}

/// SIGNKEY ([MS-NLMP] 3.4.5.2), with extended session security.
fn sign_key(exported: &[u8; 16], dir: Direction) -> [u8; 16] {
    let magic: &[u8] = match dir {
        Direction::ClientToServer => b"session key to client-to-server signing key magic constant\0",
        Direction::ServerToClient => b"session key to server-to-client signing key magic constant\0",
    };
    md5(&[exported, magic])
}

/// SEALKEY ([MS-NLMP] 3.4.5.3), with extended session security.
fn seal_key(exported: &[u8; 16], negotiated: u32, dir: Direction) -> [u8; 16] {
    let magic: &[u8] = match dir {
        Direction::ClientToServer => b"session key to client-to-server sealing key magic constant\0",
        Direction::ServerToClient => b"session key to server-to-client sealing key magic constant\0",
    };
    let key: &[u8] = if negotiated & flags::NEGOTIATE_128 != 0 {
        exported
    } else if negotiated & flags::NEGOTIATE_56 != 0 {
        &exported[..7]
    } else {
        &exported[..5]
    };
    md5(&[key, magic])
}

/// MAC ([MS-NLMP] 3.4.4.2, extended session security): the first use of a
/// fresh sealing handle, as for a mechListMIC.
/// `{ version=1: u32 | checksum: [u8; 8] | seq_num: u32 }`.
fn mac(exported: &[u8; 16], negotiated: u32, dir: Direction, seq: u32, msg: &[u8]) -> [u8; 16] {
    let digest = hmac_md5(&sign_key(exported, dir), &[&seq.to_le_bytes(), msg]);
    let mut checksum = [0u8; 8];
    checksum.copy_from_slice(&digest[..8]);
    if negotiated & flags::KEY_EXCH != 0 {
        let key = seal_key(exported, negotiated, dir);
        Rc4_128::new((&key).into()).apply_keystream(&mut checksum);
    }
    let mut out = [0u8; 16];
    out[..4].copy_from_slice(&1u32.to_le_bytes());
    out[4..12].copy_from_slice(&checksum);
    out[12..].copy_from_slice(&seq.to_le_bytes());
    out
}

/// Client side, enough to drive the server in tests and fuzz corpora: NTLMv2
/// with extended session security, key exchange and a MIC.
pub mod client {
    use super::*;

    /// Flags of [`negotiate`]: Unicode, NTLM, signing and sealing, extended
    /// session security, target info, version, 128/56-bit, key exchange.
    pub const NEGOTIATE_FLAGS: u32 = flags::UNICODE
        | flags::REQUEST_TARGET
        | flags::SIGN
        | flags::SEAL
        | flags::NTLM
        | flags::ALWAYS_SIGN
        | flags::EXTENDED_SESSIONSECURITY
        | flags::TARGET_INFO
        | flags::VERSION
        | flags::NEGOTIATE_128
        | flags::KEY_EXCH
        | flags::NEGOTIATE_56;

    /// The workstation name the client reports.
    pub const WORKSTATION: &str = "DUET-CLIENT";

    /// A NEGOTIATE_MESSAGE ([MS-NLMP] 2.2.1.1) with [`NEGOTIATE_FLAGS`], no names. Always the same bytes.
    pub fn negotiate() -> Vec<u8> {
        let mut msg = Vec::with_capacity(40);
        msg.extend_from_slice(NTLMSSP_SIGNATURE);
        msg.extend_from_slice(&NEGOTIATE.to_le_bytes());
        msg.extend_from_slice(&NEGOTIATE_FLAGS.to_le_bytes());
        for _ in 0..2 {
            msg.extend_from_slice(&[0, 0, 0, 0]);
            msg.extend_from_slice(&40u32.to_le_bytes());
        }
        msg.extend_from_slice(&VERSION);
        msg
    }

    /// An AUTHENTICATE_MESSAGE ([MS-NLMP] 3.1.5.1.2) answering `challenge`
    /// (which answered [`negotiate`]); returns it and the exported session key.
    /// When the challenge's target info has MsvAvTimestamp, the LM response is
    /// zeros and a MIC is included, as Windows clients do.
    pub fn authenticate(
        challenge: &[u8],
        user: &str,
        domain: &str,
        password: &str,
        client_challenge: [u8; 8],
        random_session_key: [u8; 16],
    ) -> Result<(Vec<u8>, [u8; 16]), AuthError> {
        const WHAT: &str = "NTLM CHALLENGE_MESSAGE";
        check_header(challenge, CHALLENGE, 48, WHAT)?;
        let chal_flags = u32_at(challenge, 20, WHAT)?;
        let mut server_challenge = [0u8; 8];
        server_challenge.copy_from_slice(&challenge[24..32]);
        field(challenge, 12, WHAT)?;
        let info = field(challenge, 40, "NTLM target info")?;
        if chal_flags & flags::UNICODE == 0 {
            return Err(AuthError::Unsupported("NTLM server without Unicode"));
        }
        let pairs = if info.is_empty() {
            Vec::new()
        } else {
            parse_av_pairs(info)?
        };
        let timestamp = pairs
            .iter()
            .find(|(id, _)| *id == av::TIMESTAMP)
            .map(|(_, v)| <[u8; 8]>::try_from(*v).map_err(|_| AuthError::Malformed("NTLM MsvAvTimestamp")))
            .transpose()?;

        let mut client_info = Vec::new();
        for (id, v) in &pairs {
            if *id != av::FLAGS {
                put_av(&mut client_info, *id, v);
            }
        }
        if timestamp.is_some() {
            put_av(&mut client_info, av::FLAGS, &av::FLAG_MIC_PRESENT.to_le_bytes());
        }
        put_av(&mut client_info, av::EOL, &[]);

        let mut blob = vec![1, 1, 0, 0, 0, 0, 0, 0];
        blob.extend_from_slice(&timestamp.unwrap_or([0; 8]));
        blob.extend_from_slice(&client_challenge);
        blob.extend_from_slice(&[0; 4]);
        blob.extend_from_slice(&client_info);
        blob.extend_from_slice(&[0; 4]);

        let key = ntowfv2(&nt_hash(password), user, domain);
        let proof = hmac_md5(&key, &[&server_challenge, &blob]);
        let mut nt = proof.to_vec();
        nt.extend_from_slice(&blob);
        let lm = if timestamp.is_some() {
            vec![0u8; 24]
        } else {
            let mut lm = hmac_md5(&key, &[&server_challenge, &client_challenge]).to_vec();
            lm.extend_from_slice(&client_challenge);
            lm
        };
        let session_base_key = hmac_md5(&key, &[&proof]);
        let negotiated = chal_flags & NEGOTIATE_FLAGS;
        let (exported, encrypted) = if negotiated & flags::KEY_EXCH != 0 {
            (random_session_key, rc4(&session_base_key, &random_session_key).to_vec())
        } else {
            (session_base_key, Vec::new())
        };

        let bufs = [utf16(domain), utf16(user), utf16(WORKSTATION), lm, nt, encrypted];
        // Header field order: LM, NT, domain, user, workstation, session key.
        let order = [3usize, 4, 0, 1, 2, 5];
        let mut offsets = [0usize; 6];
        let mut at = AUTHENTICATE_HEADER_LEN;
        for (i, b) in bufs.iter().enumerate() {
            offsets[i] = at;
            at += b.len();
        }
        let mut msg = Vec::with_capacity(at);
        msg.extend_from_slice(NTLMSSP_SIGNATURE);
        msg.extend_from_slice(&AUTHENTICATE.to_le_bytes());
        for i in order {
            put_fields(&mut msg, bufs[i].len(), offsets[i])?;
        }
        msg.extend_from_slice(&negotiated.to_le_bytes());
        msg.extend_from_slice(&VERSION);
        msg.extend_from_slice(&[0u8; 16]);
        for b in &bufs {
            msg.extend_from_slice(b);
        }
        if timestamp.is_some() {
            let mic = hmac_md5(&exported, &[&negotiate(), challenge, &msg]);
            msg[MIC_OFFSET..MIC_OFFSET + 16].copy_from_slice(&mic);
        }
        Ok((msg, exported))
    }

    /// The client's mechListMIC over `mech_list` (client-to-server keys, sequence 0).
    pub fn mech_list_mic(session_key: &[u8; 16], negotiated: u32, mech_list: &[u8]) -> [u8; 16] {
        mac(session_key, negotiated, Direction::ClientToServer, 0, mech_list)
    }

    /// Checks the server's mechListMIC over `mech_list` (server-to-client keys, sequence 0).
    pub fn verify_server_mech_list_mic(session_key: &[u8; 16], negotiated: u32, mech_list: &[u8], mic: &[u8]) -> bool {
        ct_eq(
            &mac(session_key, negotiated, Direction::ServerToClient, 0, mech_list),
            mic,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::unhex;

    const SERVER_CHALLENGE: [u8; 8] = [0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef];

    fn config() -> ServerConfig {
        ServerConfig {
            netbios_domain: "WORKGROUP".into(),
            netbios_computer: "DUET".into(),
            dns_domain: "example.test".into(),
            dns_computer: "duet.example.test".into(),
        }
    }

    fn users(user: &str, _domain: &str) -> Option<[u8; 16]> {
        match user.to_lowercase().as_str() {
            "user" => Some(nt_hash("Password")),
            "alice" => Some(nt_hash("sekrit")),
            _ => None,
        }
    }

    /// [MS-NLMP] 4.2.4.3: the AUTHENTICATE_MESSAGE of the NTLMv2 example
    /// (no MIC, key exchange with RandomSessionKey = 0x55 * 16).
    fn spec_authenticate() -> Vec<u8> {
        unhex(
            "4e544c4d53535000 03000000 18001800 6c000000 54005400 84000000 0c000c00 48000000
             08000800 54000000 10001000 5c000000 10001000 d8000000 358288e2 0501280a0000000f
             44006f006d00610069006e00 5500730065007200 43004f004d0050005500540045005200
             86c35097ac9cec102554764a57cccc19aaaaaaaaaaaaaaaa
             68cd0ab851e51c96aabc927bebef6a1c 0101000000000000 0000000000000000 aaaaaaaaaaaaaaaa 00000000
             02000c0044006f006d00610069006e00 01000c005300650072007600650072000000000000000000
             c5dad2544fc9799094ce1ce90bc9d03e",
        )
    }

    /// [MS-NLMP] 4.2.4.1.3: the AV pairs of the example's target info.
    fn spec_target_info() -> Vec<u8> {
        unhex("02000c0044006f006d00610069006e00 01000c00530065007200760065007200 00000000")
    }

    #[test]
    fn ntlmv2_vectors_of_ms_nlmp_4_2_4() {
        let key = ntowfv2(&nt_hash("Password"), "User", "Domain");
        assert_eq!(
            key.to_vec(),
            unhex("0c868a403bfd7a93a3001ef22ef02e3f"),
            "4.2.4.1.1 NTOWFv2"
        );

        let mut temp = unhex("0101000000000000 0000000000000000 aaaaaaaaaaaaaaaa 00000000");
        temp.extend_from_slice(&spec_target_info());
        temp.extend_from_slice(&[0; 4]);
        let proof = hmac_md5(&key, &[&SERVER_CHALLENGE, &temp]);
        assert_eq!(
            proof.to_vec(),
            unhex("68cd0ab851e51c96aabc927bebef6a1c"),
            "4.2.4.2.2 NTProofStr"
        );

        let base = hmac_md5(&key, &[&proof]);
        assert_eq!(
            base.to_vec(),
            unhex("8de40ccadbc14a82f15cb0ad0de95ca3"),
            "4.2.4.1.2 session base key"
        );

        let lm = hmac_md5(&key, &[&SERVER_CHALLENGE, &[0xaa; 8]]);
        assert_eq!(lm.to_vec(), unhex("86c35097ac9cec102554764a57cccc19"), "4.2.4.2.1 LMv2");

        assert_eq!(
            rc4(&base, &[0x55; 16]).to_vec(),
            unhex("c5dad2544fc9799094ce1ce90bc9d03e"),
            "4.2.4.2.3"
        );
    }

    #[test]
    fn sign_and_seal_keys_of_ms_nlmp_4_2_4_4() {
        let exported = [0x55u8; 16];
        let negotiated = flags::EXTENDED_SESSIONSECURITY | flags::NEGOTIATE_128 | flags::KEY_EXCH;
        let sign = sign_key(&exported, Direction::ClientToServer);
        let seal = seal_key(&exported, negotiated, Direction::ClientToServer);
        assert_eq!(sign.to_vec(), unhex("4788dc861b4782f35d43fd98fe1a2d39"));
        assert_eq!(seal.to_vec(), unhex("59f600973cc4960a25480a7c196e4c58"));

        // GSS_WrapEx: the handle seals "Plaintext" first, then the checksum.
        let plaintext = utf16("Plaintext");
        let checksum = &hmac_md5(&sign, &[&0u32.to_le_bytes(), &plaintext])[..8];
        assert_eq!(checksum.to_vec(), unhex("7035 2851 f256 4309"));
        let mut handle = Rc4_128::new((&seal).into());
        let mut sealed = plaintext.clone();
        handle.apply_keystream(&mut sealed);
        assert_eq!(sealed, unhex("54e50165bf1936dc996020c1811b0f06fb5f"));
        let mut c = [0u8; 8];
        c.copy_from_slice(checksum);
        handle.apply_keystream(&mut c);
        assert_eq!(c.to_vec(), unhex("7fb38ec5c55d4976"));

        // Our MAC is that computation on a fresh handle.
        let sig = mac(&exported, negotiated, Direction::ClientToServer, 0, &plaintext);
        let mut fresh = [0u8; 8];
        fresh.copy_from_slice(checksum);
        Rc4_128::new((&seal).into()).apply_keystream(&mut fresh);
        assert_eq!(sig[..4], [1, 0, 0, 0]);
        assert_eq!(sig[4..12], fresh);
        assert_eq!(sig[12..], [0, 0, 0, 0]);
    }

    #[test]
    fn server_accepts_the_spec_authenticate_message() {
        let mut server = ServerContext::new(config(), SERVER_CHALLENGE, 0);
        server.challenge(&client::negotiate()).unwrap();
        let auth = server.authenticate(&spec_authenticate(), &users).unwrap();
        assert_eq!(auth.user, "User");
        assert_eq!(auth.domain, "Domain");
        assert_eq!(auth.workstation, "COMPUTER");
        assert!(!auth.anonymous);
        assert_eq!(auth.session_key, [0x55; 16]);
    }

    #[test]
    fn challenge_message_layout() {
        let now = 0x01d9_0000_1234_5678u64;
        let mut server = ServerContext::new(config(), SERVER_CHALLENGE, now);
        let chal = server.challenge(&client::negotiate()).unwrap();
        assert_eq!(&chal[..8], b"NTLMSSP\0");
        assert_eq!(u32_at(&chal, 8, "").unwrap(), 2);
        assert_eq!(&chal[24..32], &SERVER_CHALLENGE);
        let f = u32_at(&chal, 20, "").unwrap();
        for bit in [
            flags::UNICODE,
            flags::NTLM,
            flags::TARGET_INFO,
            flags::EXTENDED_SESSIONSECURITY,
            flags::KEY_EXCH,
        ] {
            assert_ne!(f & bit, 0, "{bit:#x}");
        }
        assert_eq!(f & flags::LM_KEY, 0);
        assert_eq!(field(&chal, 12, "").unwrap(), &utf16("DUET")[..]);
        let pairs = parse_av_pairs(field(&chal, 40, "").unwrap()).unwrap();
        let ids: Vec<u16> = pairs.iter().map(|p| p.0).collect();
        assert_eq!(
            ids,
            [
                av::NB_DOMAIN_NAME,
                av::NB_COMPUTER_NAME,
                av::DNS_DOMAIN_NAME,
                av::DNS_COMPUTER_NAME,
                av::TIMESTAMP
            ]
        );
        assert_eq!(pairs[0].1, &utf16("WORKGROUP")[..]);
        assert_eq!(pairs[4].1, &now.to_le_bytes()[..]);
        // A second NEGOTIATE on the same context is refused.
        assert!(server.challenge(&client::negotiate()).is_err());
    }

    fn exchange(
        user: &str,
        domain: &str,
        password: &str,
    ) -> (ServerContext, Result<Authenticated, AuthError>, [u8; 16]) {
        let mut server = ServerContext::new(config(), [7; 8], 0x01d9_0000_0000_0000);
        let chal = server.challenge(&client::negotiate()).unwrap();
        let (auth, key) = client::authenticate(&chal, user, domain, password, [0xaa; 8], [0x42; 16]).unwrap();
        let result = server.authenticate(&auth, &users);
        (server, result, key)
    }

    #[test]
    fn round_trip_with_mic_and_key_exchange() {
        let (server, result, key) = exchange("Alice", "WORKGROUP", "sekrit");
        let auth = result.unwrap();
        assert_eq!(auth.user, "Alice");
        assert_eq!(auth.domain, "WORKGROUP");
        assert_eq!(auth.workstation, client::WORKSTATION);
        assert_eq!(key, [0x42; 16]);
        assert_eq!(auth.session_key, key);

        // mechListMIC both ways.
        let mech_list = unhex("300c060a2b06010401823702020a");
        let negotiated = client::NEGOTIATE_FLAGS;
        let client_mic = client::mech_list_mic(&key, negotiated, &mech_list);
        assert!(server.verify_mech_list_mic(&mech_list, &client_mic));
        assert!(!server.verify_mech_list_mic(&mech_list[1..], &client_mic));
        let server_mic = server.mech_list_mic(&mech_list).unwrap();
        assert_ne!(server_mic, client_mic, "the directions use different keys");
        assert!(client::verify_server_mech_list_mic(
            &key,
            negotiated,
            &mech_list,
            &server_mic
        ));
    }

    #[test]
    fn wrong_password_and_unknown_user_fail() {
        assert_eq!(exchange("alice", "WORKGROUP", "wrong").1, Err(AuthError::LogonFailure));
        assert_eq!(
            exchange("mallory", "WORKGROUP", "sekrit").1,
            Err(AuthError::LogonFailure)
        );
        let (server, result, _) = exchange("alice", "WORKGROUP", "wrong");
        assert!(result.is_err());
        assert_eq!(server.mech_list_mic(b"x"), None);
    }

    #[test]
    fn domain_case_and_empty_domain_are_tried() {
        // Client hashed with an upper-case domain but sent it in lower case, or hashed with none.
        assert!(exchange("alice", "workgroup", "sekrit").1.is_ok());
        assert!(exchange("alice", "", "sekrit").1.is_ok());
    }

    #[test]
    fn tampered_mic_or_response_fails() {
        let mut server = ServerContext::new(config(), [7; 8], 1);
        let chal = server.challenge(&client::negotiate()).unwrap();
        let (auth, _) = client::authenticate(&chal, "alice", "WG", "sekrit", [1; 8], [2; 16]).unwrap();
        let mut bad = auth.clone();
        bad[MIC_OFFSET] ^= 1;
        assert_eq!(server.authenticate(&bad, &users), Err(AuthError::LogonFailure));
        // The context is spent after a failure.
        assert!(server.authenticate(&auth, &users).is_err());

        // A flipped bit in the encrypted session key changes the exported key, so the MIC fails.
        let mut server = ServerContext::new(config(), [7; 8], 1);
        let chal = server.challenge(&client::negotiate()).unwrap();
        let (auth, _) = client::authenticate(&chal, "alice", "WG", "sekrit", [1; 8], [2; 16]).unwrap();
        let mut bad = auth.clone();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        assert_eq!(server.authenticate(&bad, &users), Err(AuthError::LogonFailure));
    }

    #[test]
    fn anonymous_logon() {
        let mut server = ServerContext::new(config(), [7; 8], 1);
        server.challenge(&client::negotiate()).unwrap();
        // Empty user, domain, workstation and NT response; LM response Z(1); no key.
        let mut msg = Vec::new();
        msg.extend_from_slice(b"NTLMSSP\0");
        msg.extend_from_slice(&3u32.to_le_bytes());
        put_fields(&mut msg, 1, 72).unwrap();
        for _ in 0..5 {
            put_fields(&mut msg, 0, 73).unwrap();
        }
        msg.extend_from_slice(&(flags::UNICODE | flags::ANONYMOUS | flags::VERSION).to_le_bytes());
        msg.extend_from_slice(&VERSION);
        msg.push(0);
        let auth = server
            .authenticate(&msg, &|_: &str, _: &str| -> Option<[u8; 16]> { panic!("no lookup") })
            .unwrap();
        assert!(auth.anonymous);
        assert_eq!(auth.session_key, [0; 16]);
        assert!(auth.user.is_empty());
        assert_eq!(server.mech_list_mic(b"x"), None);
    }

    #[test]
    fn ntlmv1_and_lm_are_refused() {
        for nt_len in [0usize, 24] {
            let mut server = ServerContext::new(config(), [7; 8], 1);
            server.challenge(&client::negotiate()).unwrap();
            let user = utf16("alice");
            let mut msg = Vec::new();
            msg.extend_from_slice(b"NTLMSSP\0");
            msg.extend_from_slice(&3u32.to_le_bytes());
            put_fields(&mut msg, 24, 64).unwrap(); // LM
            put_fields(&mut msg, nt_len, 88).unwrap(); // NT
            put_fields(&mut msg, 0, 64).unwrap(); // domain
            put_fields(&mut msg, user.len(), 112).unwrap();
            put_fields(&mut msg, 0, 64).unwrap(); // workstation
            put_fields(&mut msg, 0, 64).unwrap(); // key
            msg.extend_from_slice(&(flags::UNICODE | flags::NTLM).to_le_bytes());
            msg.extend_from_slice(&[0x11; 48]);
            msg.extend_from_slice(&user);
            assert!(
                matches!(server.authenticate(&msg, &users), Err(AuthError::Unsupported(_))),
                "{nt_len}"
            );
        }
    }

    #[test]
    fn every_prefix_of_negotiate_fails() {
        let neg = client::negotiate();
        for cut in 0..neg.len() {
            let mut server = ServerContext::new(config(), [7; 8], 1);
            assert!(
                matches!(server.challenge(&neg[..cut]), Err(AuthError::Malformed(_))),
                "{cut}"
            );
        }
        let mut server = ServerContext::new(config(), [7; 8], 1);
        assert!(server.challenge(&neg).is_ok());
    }

    #[test]
    fn every_prefix_of_authenticate_fails() {
        let mut server = ServerContext::new(config(), [7; 8], 1);
        let chal = server.challenge(&client::negotiate()).unwrap();
        let (auth, _) = client::authenticate(&chal, "alice", "WG", "sekrit", [1; 8], [2; 16]).unwrap();
        for msg in [auth, spec_authenticate()] {
            for cut in 0..msg.len() {
                let mut server = ServerContext::new(config(), SERVER_CHALLENGE, 1);
                server.challenge(&client::negotiate()).unwrap();
                assert!(server.authenticate(&msg[..cut], &users).is_err(), "{cut}");
            }
        }
        // And every prefix of the challenge is refused by the client.
        for cut in 0..chal.len() {
            assert!(
                client::authenticate(&chal[..cut], "a", "b", "c", [0; 8], [0; 16]).is_err(),
                "{cut}"
            );
        }
    }

    #[test]
    fn garbage_does_not_panic() {
        // Offsets and lengths pointing anywhere, including past the end.
        let mut msg = spec_authenticate();
        for i in 12..64 {
            for v in [0x00u8, 0x7f, 0xff] {
                let saved = msg[i];
                msg[i] = v;
                let mut server = ServerContext::new(config(), SERVER_CHALLENGE, 1);
                server.challenge(&client::negotiate()).unwrap();
                let _ = server.authenticate(&msg, &users);
                msg[i] = saved;
            }
        }
        assert!(parse_av_pairs(&[0x01, 0x00, 0xff, 0xff]).is_err());
        assert!(parse_av_pairs(&[]).is_err());
    }

    #[test]
    fn authenticate_before_challenge_is_refused() {
        let mut server = ServerContext::new(config(), SERVER_CHALLENGE, 1);
        assert!(matches!(
            server.authenticate(&spec_authenticate(), &users),
            Err(AuthError::Malformed(_))
        ));
    }

    /// Replays the smbclient session of [`super::super::spnego`]'s tests:
    /// same challenge, same time, same names, so the same CHALLENGE_MESSAGE.
    #[test]
    fn smbclient_session_replays() {
        use crate::auth::spnego::{parse_client_token, tests as sp};
        let config = ServerConfig {
            netbios_domain: "WORKGROUP".into(),
            netbios_computer: "DUET".into(),
            dns_domain: String::new(),
            dns_computer: "duet".into(),
        };
        let mut server = ServerContext::new(config, [1, 2, 3, 4, 5, 6, 7, 8], 0x01dc_0000_0000_0000);
        let init = unhex(sp::SMBCLIENT_INIT);
        let init = parse_client_token(&init).unwrap();
        assert_eq!(server.challenge(init.ntlmssp).unwrap(), unhex(sp::SMBCLIENT_CHALLENGE));
        let auth = unhex(sp::SMBCLIENT_AUTH);
        let auth = parse_client_token(&auth).unwrap();
        let lookup = |u: &str, _: &str| (u == "alice").then(|| nt_hash("sekrit"));
        let who = server.authenticate(auth.ntlmssp, &lookup).unwrap();
        assert_eq!(
            (who.user.as_str(), who.domain.as_str(), who.workstation.as_str()),
            ("alice", "WORKGROUP", "VM")
        );
        let mech_list = init.mech_list.unwrap();
        assert!(server.verify_mech_list_mic(mech_list, auth.mech_list_mic.unwrap()));
        let fin = unhex(sp::SMBCLIENT_FINAL);
        assert_eq!(server.mech_list_mic(mech_list).unwrap()[..], fin[fin.len() - 16..]);

        // The same messages with the wrong password fail.
        let mut server = ServerContext::new(ServerConfig::default(), [1, 2, 3, 4, 5, 6, 7, 8], 0x01dc_0000_0000_0000);
        server.challenge(init.ntlmssp).unwrap();
        assert_eq!(
            server.authenticate(auth.ntlmssp, &|_: &str, _: &str| Some(nt_hash("wrong"))),
            Err(AuthError::LogonFailure)
        );
    }

    /// The Windows exchange of Microsoft's "anatomy of signing and
    /// cryptographic keys" blog: the SMB session key is the NTLM exported
    /// session key, so it checks the MIC and both mechListMICs Windows made.
    #[test]
    fn windows_mic_and_mech_list_mics() {
        use crate::auth::spnego::{parse_client_token, tests as sp};
        let exported: [u8; 16] = unhex("270E1BA896585EEB7AF3472D3B4C75A7").try_into().unwrap();
        let init = sp::windows_buffer(2);
        let negotiate = parse_client_token(&init).unwrap().ntlmssp;
        let resp = sp::windows_buffer(3);
        let challenge = &resp[resp.len() - 0x94..];
        let second = sp::windows_buffer(4);
        let second = parse_client_token(&second).unwrap();
        let authenticate = second.ntlmssp;
        assert_eq!(
            message_mic(&exported, negotiate, challenge, authenticate)[..],
            authenticate[MIC_OFFSET..MIC_OFFSET + 16]
        );
        let msg = parse_authenticate(authenticate).unwrap();
        assert_eq!(decode_string(msg.user, msg.flags, "").unwrap(), "administrator");
        assert_eq!(decode_string(msg.domain, msg.flags, "").unwrap(), "SUT311");

        let server = ServerContext {
            config: ServerConfig::default(),
            server_challenge: [0; 8],
            now_filetime: 0,
            state: State::Done {
                keys: Some((exported, msg.flags)),
            },
        };
        let mech_list = unhex(sp::MECH_LIST);
        assert!(server.verify_mech_list_mic(&mech_list, second.mech_list_mic.unwrap()));
        assert_eq!(
            server.mech_list_mic(&mech_list).unwrap().to_vec(),
            unhex("010000003B453CDC3524164200000000")
        );
    }

    #[test]
    fn upper_case_is_one_for_one() {
        assert_eq!(upcase("straße Émile"), "STRAßE ÉMILE");
        let nt = nt_hash("pw");
        assert_eq!(ntowfv2(&nt, "straße", "d"), hmac_md5(&nt, &[&utf16("STRAßEd")]));
        assert_eq!(ntowfv2(&nt, "Straße", "d"), ntowfv2(&nt, "STRAßE", "d"));
    }
}
