//! NTLM ([MS-NLMP]), server side, NTLMv2 only.

use super::AuthError;

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
    pub anonymous: bool,
    /// The ExportedSessionKey: the SMB session key. Zero for anonymous.
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

/// Server side of one NTLM exchange ([MS-NLMP] 3.2.5).
#[derive(Debug)]
pub struct ServerContext {
    config: ServerConfig,
    server_challenge: [u8; 8],
    now_filetime: u64,
}

impl ServerContext {
    pub fn new(config: ServerConfig, server_challenge: [u8; 8], now_filetime: u64) -> Self {
        ServerContext { config, server_challenge, now_filetime }
    }

    /// Takes the client's NEGOTIATE_MESSAGE and returns the CHALLENGE_MESSAGE.
    pub fn challenge(&mut self, negotiate: &[u8]) -> Result<Vec<u8>, AuthError> {
        let _ = (negotiate, &self.config, self.server_challenge, self.now_filetime);
        Err(AuthError::Unsupported("not yet implemented"))
    }

    /// Verifies the AUTHENTICATE_MESSAGE.
    pub fn authenticate(
        &mut self,
        authenticate: &[u8],
        lookup: &dyn Fn(&str, &str) -> Option<[u8; 16]>,
    ) -> Result<Authenticated, AuthError> {
        let _ = (authenticate, lookup);
        Err(AuthError::Unsupported("not yet implemented"))
    }

    /// The server's mechListMIC over `mech_list`, after a successful, non-anonymous authentication.
    pub fn mech_list_mic(&self, mech_list: &[u8]) -> Option<[u8; 16]> {
        let _ = mech_list;
        None
    }

    /// Checks the client's mechListMIC over `mech_list`.
    pub fn verify_mech_list_mic(&self, mech_list: &[u8], mic: &[u8]) -> bool {
        let _ = (mech_list, mic);
        false
    }
}

/// Client side, enough to drive the server in tests.
pub mod client {
    use super::AuthError;

    /// A NEGOTIATE_MESSAGE asking for NTLMv2 with extended session security, signing and key exchange.
    pub fn negotiate() -> Vec<u8> {
        Vec::new()
    }

    /// An AUTHENTICATE_MESSAGE answering `challenge`; returns it and the exported session key.
    pub fn authenticate(
        challenge: &[u8],
        user: &str,
        domain: &str,
        password: &str,
        client_challenge: [u8; 8],
        random_session_key: [u8; 16],
    ) -> Result<(Vec<u8>, [u8; 16]), AuthError> {
        let _ = (challenge, user, domain, password, client_challenge, random_session_key);
        Err(AuthError::Unsupported("not yet implemented"))
    }
}
