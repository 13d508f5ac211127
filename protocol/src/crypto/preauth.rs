//! The preauth integrity hash of SMB 3.1.1 ([MS-SMB2] 3.2.5.2, 3.3.5.4).
//!
//! The connection's hash starts at zero and absorbs the NEGOTIATE request and
//! response; each session copies it and absorbs its SESSION_SETUP requests and
//! every response but the final, successful one. The result is the context of
//! the 3.1.1 key derivation ([`crate::crypto::kdf::derive`]).

use sha2::{Digest, Sha512};

/// `H(i) = SHA-512(H(i-1) || message)`, starting from 64 zero bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct PreauthHash([u8; 64]);

impl PreauthHash {
    /// The initial value: 64 zero bytes.
    pub fn new() -> Self {
        PreauthHash([0u8; 64])
    }

    /// Absorbs one whole SMB2 message (header included, no NetBIOS framing).
    pub fn update(&mut self, msg: &[u8]) {
        let mut h = Sha512::new();
        h.update(self.0);
        h.update(msg);
        self.0.copy_from_slice(&h.finalize());
    }

    /// The current value.
    pub fn value(&self) -> &[u8; 64] {
        &self.0
    }
}

impl Default for PreauthHash {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for PreauthHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PreauthHash(")?;
        for b in &self.0[..8] {
            write!(f, "{b:02x}")?;
        }
        write!(f, "..)")
    }
}
