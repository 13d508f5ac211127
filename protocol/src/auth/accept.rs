//! The whole SESSION_SETUP exchange for one session: SPNEGO around NTLM.
//!
//! [`Acceptor::step`] takes each security buffer the client sends and
//! returns the buffer to answer with, and whether the exchange is done. It
//! applies the rules of [`super::spnego`] (bare NTLMSSP answered bare; an
//! optimistic token for another mechanism answered with a bare
//! accept-incomplete; the client's mechListMIC checked and ours added) so the
//! server only maps the result to a status:
//! - `Ok(Step::Continue(buf))`: STATUS_MORE_PROCESSING_REQUIRED with `buf`;
//! - `Ok(Step::Done { buf, who })`: STATUS_SUCCESS with `buf` (and the
//!   session keys derived from `who.session_key`);
//! - `Err(AuthError::LogonFailure)`: STATUS_LOGON_FAILURE;
//! - `Err(AuthError::Malformed(_) | AuthError::Unsupported(_))`:
//!   STATUS_INVALID_PARAMETER (or STATUS_LOGON_FAILURE; Windows answers both).
//!
//! After an error or `Done` the acceptor is spent; a new SESSION_SETUP with
//! session id 0 starts a new one.

use super::ntlm::{Authenticated, ServerConfig, ServerContext};
use super::spnego::{encode_response, encode_response_with_mic, parse_client_token, NegState};
use super::AuthError;

/// What to answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Send `0` with STATUS_MORE_PROCESSING_REQUIRED and wait for the next token.
    Continue(Vec<u8>),
    /// Send `buf` with STATUS_SUCCESS: `who` is authenticated (or anonymous).
    Done { buf: Vec<u8>, who: Authenticated },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Leg {
    /// Nothing received yet.
    Start,
    /// We answered an optimistic token for another mechanism; the NTLM
    /// NEGOTIATE_MESSAGE comes next.
    AwaitNegotiate,
    /// CHALLENGE_MESSAGE sent.
    AwaitAuthenticate,
    /// Done or failed.
    Spent,
}

/// Server side of one session's authentication. Sans-IO like
/// [`ServerContext`]: the server challenge and the time are passed in.
#[derive(Debug)]
pub struct Acceptor {
    ntlm: ServerContext,
    leg: Leg,
    raw: bool,
    /// Whether a NegTokenResp already named NTLMSSP as supportedMech.
    mech_sent: bool,
    /// The client's DER MechTypeList, for the mechListMICs.
    mech_list: Option<Vec<u8>>,
}

impl Acceptor {
    pub fn new(config: ServerConfig, server_challenge: [u8; 8], now_filetime: u64) -> Self {
        Acceptor {
            ntlm: ServerContext::new(config, server_challenge, now_filetime),
            leg: Leg::Start,
            raw: false,
            mech_sent: false,
            mech_list: None,
        }
    }

    /// Takes the client's security buffer of one SESSION_SETUP request.
    pub fn step(&mut self, token: &[u8], lookup: &dyn Fn(&str, &str) -> Option<[u8; 16]>) -> Result<Step, AuthError> {
        let leg = std::mem::replace(&mut self.leg, Leg::Spent);
        let t = parse_client_token(token)?;
        match leg {
            Leg::Start | Leg::AwaitNegotiate => {
                if leg == Leg::Start {
                    self.raw = t.raw_ntlmssp;
                    self.mech_list = t.mech_list.map(<[u8]>::to_vec);
                } else if t.raw_ntlmssp != self.raw {
                    return Err(AuthError::Malformed("SPNEGO and bare NTLMSSP mixed"));
                }
                if t.ntlmssp.is_empty() {
                    if leg == Leg::AwaitNegotiate || self.mech_list.is_none() {
                        return Err(AuthError::Malformed("no NTLMSSP token"));
                    }
                    self.leg = Leg::AwaitNegotiate;
                    self.mech_sent = true;
                    return Ok(Step::Continue(encode_response(NegState::AcceptIncomplete, None, true)));
                }
                let challenge = self.ntlm.challenge(t.ntlmssp)?;
                self.leg = Leg::AwaitAuthenticate;
                if self.raw {
                    return Ok(Step::Continue(challenge));
                }
                let first = !self.mech_sent;
                self.mech_sent = true;
                Ok(Step::Continue(encode_response(
                    NegState::AcceptIncomplete,
                    Some(&challenge),
                    first,
                )))
            }
            Leg::AwaitAuthenticate => {
                if t.raw_ntlmssp != self.raw {
                    return Err(AuthError::Malformed("SPNEGO and bare NTLMSSP mixed"));
                }
                let who = self.ntlm.authenticate(t.ntlmssp, lookup)?;
                if self.raw {
                    return Ok(Step::Done { buf: Vec::new(), who });
                }
                let mut mic = None;
                if let Some(client_mic) = t.mech_list_mic {
                    let list = self
                        .mech_list
                        .as_deref()
                        .ok_or(AuthError::Malformed("mechListMIC without mechTypes"))?;
                    if !who.anonymous {
                        if !self.ntlm.verify_mech_list_mic(list, client_mic) {
                            return Err(AuthError::LogonFailure);
                        }
                        mic = self.ntlm.mech_list_mic(list);
                    }
                }
                let buf =
                    encode_response_with_mic(NegState::AcceptCompleted, None, false, mic.as_ref().map(|m| &m[..]));
                Ok(Step::Done { buf, who })
            }
            Leg::Spent => Err(AuthError::Malformed("SESSION_SETUP after the exchange ended")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::der::{self, context};
    use crate::auth::nt_hash;
    use crate::auth::ntlm::client;
    use crate::auth::spnego::tests as sp;
    use crate::auth::spnego::{NTLMSSP_OID, SPNEGO_OID};
    use crate::crypto::unhex;

    fn lookup(user: &str, _: &str) -> Option<[u8; 16]> {
        (user == "alice").then(|| nt_hash("sekrit"))
    }

    fn smbclient_config() -> ServerConfig {
        ServerConfig {
            netbios_domain: "WORKGROUP".into(),
            netbios_computer: "DUET".into(),
            dns_domain: String::new(),
            dns_computer: "duet".into(),
        }
    }

    #[test]
    fn smbclient_session_gives_the_same_answers() {
        let mut a = Acceptor::new(smbclient_config(), [1, 2, 3, 4, 5, 6, 7, 8], 0x01dc_0000_0000_0000);
        let first = a.step(&unhex(sp::SMBCLIENT_INIT), &lookup).unwrap();
        assert_eq!(first, Step::Continue(unhex(sp::SMBCLIENT_CHALLENGE_RESPONSE)));
        match a.step(&unhex(sp::SMBCLIENT_AUTH), &lookup).unwrap() {
            Step::Done { buf, who } => {
                assert_eq!(buf, unhex(sp::SMBCLIENT_FINAL));
                assert_eq!(who.user, "alice");
            }
            other => panic!("{other:?}"),
        }
        assert!(a.step(&unhex(sp::SMBCLIENT_AUTH), &lookup).is_err());
    }

    #[test]
    fn tampered_mech_list_mic_is_a_logon_failure() {
        let mut a = Acceptor::new(smbclient_config(), [1, 2, 3, 4, 5, 6, 7, 8], 0x01dc_0000_0000_0000);
        a.step(&unhex(sp::SMBCLIENT_INIT), &lookup).unwrap();
        let mut auth = unhex(sp::SMBCLIENT_AUTH);
        let last = auth.len() - 5;
        auth[last] ^= 1;
        assert_eq!(a.step(&auth, &lookup), Err(AuthError::LogonFailure));
    }

    #[test]
    fn bare_ntlmssp_is_answered_bare() {
        let mut a = Acceptor::new(ServerConfig::default(), [3; 8], 5);
        let Step::Continue(chal) = a.step(&client::negotiate(), &lookup).unwrap() else {
            panic!()
        };
        assert!(chal.starts_with(b"NTLMSSP\0\x02"));
        let (auth, key) = client::authenticate(&chal, "alice", "", "sekrit", [4; 8], [5; 16]).unwrap();
        match a.step(&auth, &lookup).unwrap() {
            Step::Done { buf, who } => {
                assert!(buf.is_empty());
                assert_eq!(who.session_key, key);
            }
            other => panic!("{other:?}"),
        }
    }

    fn wrap_init(mech_types: &[&[u8]], token: Option<&[u8]>) -> (Vec<u8>, Vec<u8>) {
        let mut list = Vec::new();
        for m in mech_types {
            der::write(der::OID, m, &mut list);
        }
        let list = der::tlv(der::SEQUENCE, &list);
        let mut seq = der::tlv(context(0), &list);
        if let Some(t) = token {
            der::write(context(2), &der::tlv(der::OCTET_STRING, t), &mut seq);
        }
        let mut inner = der::tlv(der::OID, SPNEGO_OID);
        inner.extend_from_slice(&der::tlv(context(0), &der::tlv(der::SEQUENCE, &seq)));
        (der::tlv(der::APPLICATION_0, &inner), list)
    }

    fn wrap_resp(token: &[u8], mic: Option<&[u8]>) -> Vec<u8> {
        let mut seq = der::tlv(context(2), &der::tlv(der::OCTET_STRING, token));
        if let Some(m) = mic {
            der::write(context(3), &der::tlv(der::OCTET_STRING, m), &mut seq);
        }
        der::tlv(context(1), &der::tlv(der::SEQUENCE, &seq))
    }

    /// The token of a NegTokenResp our acceptor sent.
    fn response_token(buf: &[u8]) -> Vec<u8> {
        let (outer, _) = der::read(buf).unwrap();
        let (seq, _) = der::read(outer.value).unwrap();
        let mut rest = seq.value;
        while !rest.is_empty() {
            let (f, r) = der::read(rest).unwrap();
            rest = r;
            if f.tag == context(2) {
                return der::read(f.value).unwrap().0.value.to_vec();
            }
        }
        Vec::new()
    }

    #[test]
    fn kerberos_first_then_ntlm_with_mech_list_mics() {
        const KRB5: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x12, 0x01, 0x02, 0x02];
        let mut a = Acceptor::new(ServerConfig::default(), [3; 8], 5);
        let (init, list) = wrap_init(&[KRB5, NTLMSSP_OID], Some(b"\x60\x03\x06\x01\x00"));
        let Step::Continue(first) = a.step(&init, &lookup).unwrap() else {
            panic!()
        };
        assert_eq!(first, encode_response(NegState::AcceptIncomplete, None, true));

        let Step::Continue(second) = a.step(&wrap_resp(&client::negotiate(), None), &lookup).unwrap() else {
            panic!()
        };
        // supportedMech went out with the first answer, not again.
        assert_eq!(
            second,
            encode_response(NegState::AcceptIncomplete, Some(&response_token(&second)), false)
        );
        let chal = response_token(&second);
        let (auth, key) = client::authenticate(&chal, "alice", "WG", "sekrit", [4; 8], [5; 16]).unwrap();
        let mic = client::mech_list_mic(&key, client::NEGOTIATE_FLAGS, &list);
        let Step::Done { buf, .. } = a.step(&wrap_resp(&auth, Some(&mic)), &lookup).unwrap() else {
            panic!()
        };
        let (outer, _) = der::read(&buf).unwrap();
        let server_mic = &outer.raw[outer.raw.len() - 16..];
        assert!(client::verify_server_mech_list_mic(
            &key,
            client::NEGOTIATE_FLAGS,
            &list,
            server_mic
        ));
    }

    #[test]
    fn failures_spend_the_acceptor() {
        let mut a = Acceptor::new(ServerConfig::default(), [3; 8], 5);
        assert!(a.step(b"junk", &lookup).is_err());
        assert!(a.step(&client::negotiate(), &lookup).is_err());

        let mut a = Acceptor::new(ServerConfig::default(), [3; 8], 5);
        let Step::Continue(chal) = a.step(&client::negotiate(), &lookup).unwrap() else {
            panic!()
        };
        let (auth, _) = client::authenticate(&chal, "alice", "", "wrong", [4; 8], [5; 16]).unwrap();
        assert_eq!(a.step(&auth, &lookup), Err(AuthError::LogonFailure));
        assert!(a.step(&auth, &lookup).is_err());
    }
}
