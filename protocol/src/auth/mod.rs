//! NTLMSSP ([MS-NLMP]) inside SPNEGO ([RFC 4178], [MS-SPNG]): the server side of authentication.
//!
//! A SESSION_SETUP security buffer goes to [`spnego::parse_client_token`],
//! which finds the NTLMSSP token; [`ntlm::ServerContext`] answers the
//! NEGOTIATE_MESSAGE with a CHALLENGE_MESSAGE and checks the
//! AUTHENTICATE_MESSAGE; [`spnego::encode_response`] wraps the answer. No I/O,
//! no clock, no randomness: the caller passes the server challenge and time.
//!
//! [`Acceptor`] strings these together for one session; it is what the
//! server uses.
//!
//! # Layout
//! - [`accept`]: one session's SESSION_SETUP exchange, start to end.
//! - [`spnego`]: NegTokenInit2 hint, client tokens, NegTokenResp.
//! - [`ntlm`]: NTLMv2 server context, mechListMIC, and a client for tests.
//! - `der`: the small, strict ASN.1 DER reader and writer SPNEGO needs.

pub mod accept;
mod der;
pub mod ntlm;
pub mod spnego;

pub use accept::{Acceptor, Step};
pub use ntlm::{Authenticated, ServerConfig, ServerContext};
pub use spnego::{ClientToken, NegState};

use md4::{Digest, Md4};
use thiserror::Error;

/// Authentication failed or could not proceed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum AuthError {
    /// The peer sent bytes that are not a valid token or message.
    #[error("malformed {0}")]
    Malformed(&'static str),
    /// Unknown user, wrong password, or a MIC that does not verify
    /// (STATUS_LOGON_FAILURE).
    #[error("logon failure")]
    LogonFailure,
    /// A valid request Duet does not serve (NTLMv1, LM, Kerberos only).
    #[error("unsupported: {0}")]
    Unsupported(&'static str),
}

/// The NT one-way function of [MS-NLMP] 3.3.1: MD4 of the UTF-16LE password.
pub fn nt_hash(password: &str) -> [u8; 16] {
    let mut h = Md4::new();
    for u in password.encode_utf16() {
        h.update(u.to_le_bytes());
    }
    let mut out = [0u8; 16];
    out.copy_from_slice(&h.finalize());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nt_hash_of_password() {
        // [MS-NLMP] 4.2.2.1.2: NTOWFv1("Password").
        assert_eq!(
            nt_hash("Password"),
            [0xa4, 0xf4, 0x9c, 0x40, 0x65, 0x10, 0xbd, 0xca, 0xb6, 0x82, 0x4e, 0xe7, 0xc3, 0x0f, 0xd8, 0x52]
        );
    }
}
