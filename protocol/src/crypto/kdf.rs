//! Key derivation ([MS-SMB2] 3.1.4.2) and the per-session keys ([MS-SMB2] 3.3.5.5.3).
//!
//! The KDF is SP800-108 in counter mode with HMAC-SHA256 as the PRF, a 32-bit
//! counter `r` and the output length `L` in bits:
//! `K(i) = HMAC-SHA256(Ki, [i]32be || Label || 0x00 || Context || [L]32be)`.
//! The labels and contexts of [MS-SMB2] include their terminating NUL, so the
//! input carries two zero bytes between a label and its context.

use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::cipher;
use super::dialect;

type HmacSha256 = Hmac<Sha256>;

/// SP800-108 counter mode with HMAC-SHA256, r = 32, L = `out.len() * 8` ([MS-SMB2] 3.1.4.2).
pub fn kdf(key: &[u8], label: &[u8], context: &[u8], out: &mut [u8]) {
    let l_bits = (out.len() as u32).wrapping_mul(8);
    for (i, chunk) in out.chunks_mut(32).enumerate() {
        let mut mac = <HmacSha256 as Mac>::new_from_slice(key).expect("HMAC accepts keys of any length");
        mac.update(&(i as u32 + 1).to_be_bytes());
        mac.update(label);
        mac.update(&[0]);
        mac.update(context);
        mac.update(&l_bits.to_be_bytes());
        let block = mac.finalize().into_bytes();
        chunk.copy_from_slice(&block[..chunk.len()]);
    }
}

/// The keys of one session, from the server's point of view.
#[derive(Clone, PartialEq, Eq)]
pub struct SessionKeys {
    /// Signs and verifies messages of this session (always 16 bytes).
    pub signing_key: Vec<u8>,
    /// Encrypts server-to-client messages ("ServerOut" / "SMBS2CCipherKey"). Empty before 3.0.
    pub encryption_key: Vec<u8>,
    /// Decrypts client-to-server messages ("ServerIn " / "SMBC2SCipherKey"). Empty before 3.0.
    pub decryption_key: Vec<u8>,
    /// What the server hands to the RPC layer as the session key ("SMB2APP" / "SMBAppKey").
    /// Before 3.0 this is the session key itself, which is what servers hand out there.
    pub application_key: Vec<u8>,
}

impl std::fmt::Debug for SessionKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Keys stay out of logs.
        f.debug_struct("SessionKeys")
            .field("signing_key", &format_args!("[{} bytes]", self.signing_key.len()))
            .field("encryption_key", &format_args!("[{} bytes]", self.encryption_key.len()))
            .field("decryption_key", &format_args!("[{} bytes]", self.decryption_key.len()))
            .field("application_key", &format_args!("[{} bytes]", self.application_key.len()))
            .finish()
    }
}

/// Derives the session's keys per [MS-SMB2] 3.3.5.5.3.
///
/// - 2.0.2 and 2.1: the signing key is the session key (HMAC-SHA256); there is
///   no encryption.
/// - 3.0 and 3.0.2: fixed labels and contexts ("SMB2AESCMAC"/"SmbSign",
///   "SMB2AESCCM"/"ServerOut"/"ServerIn ", "SMB2APP"/"SmbRpc").
/// - 3.1.1: "SMBSigningKey", "SMBS2CCipherKey", "SMBC2SCipherKey",
///   "SMBAppKey", each with the session's preauth hash as context. A missing
///   hash is taken as zeros (the caller should always have one).
///
/// `session_key` is the cryptographic key of the authentication: its first 16
/// bytes, zero-padded, are Session.SessionKey. With an AES-256 `cipher` the
/// encryption keys are 32 bytes, derived from the full key (Session.FullSessionKey).
/// An unknown dialect is treated as 3.1.1.
pub fn derive(dialect: u16, session_key: &[u8], preauth_hash: Option<&[u8; 64]>, cipher: Option<u16>) -> SessionKeys {
    let mut key16 = [0u8; 16];
    let n = session_key.len().min(16);
    key16[..n].copy_from_slice(&session_key[..n]);

    if dialect == dialect::SMB2_0_2 || dialect == dialect::SMB2_1 {
        return SessionKeys {
            signing_key: key16.to_vec(),
            encryption_key: Vec::new(),
            decryption_key: Vec::new(),
            application_key: key16.to_vec(),
        };
    }

    let wide = matches!(cipher, Some(cipher::AES_256_CCM) | Some(cipher::AES_256_GCM));
    let cipher_len = if wide { 32 } else { 16 };
    // The full key feeds the cipher keys only with AES-256 ([MS-SMB2] 3.3.5.5.3).
    let cipher_base: &[u8] = if wide && session_key.len() > 16 { session_key } else { &key16 };

    let derive_n = |base: &[u8], label: &[u8], context: &[u8], len: usize| {
        let mut out = vec![0u8; len];
        kdf(base, label, context, &mut out);
        out
    };

    if dialect == dialect::SMB3_0 || dialect == dialect::SMB3_0_2 {
        SessionKeys {
            signing_key: derive_n(&key16, b"SMB2AESCMAC\0", b"SmbSign\0", 16),
            encryption_key: derive_n(cipher_base, b"SMB2AESCCM\0", b"ServerOut\0", cipher_len),
            decryption_key: derive_n(cipher_base, b"SMB2AESCCM\0", b"ServerIn \0", cipher_len),
            application_key: derive_n(&key16, b"SMB2APP\0", b"SmbRpc\0", 16),
        }
    } else {
        let zeros = [0u8; 64];
        let ctx: &[u8] = preauth_hash.map(|h| &h[..]).unwrap_or(&zeros);
        SessionKeys {
            signing_key: derive_n(&key16, b"SMBSigningKey\0", ctx, 16),
            encryption_key: derive_n(cipher_base, b"SMBS2CCipherKey\0", ctx, cipher_len),
            decryption_key: derive_n(cipher_base, b"SMBC2SCipherKey\0", ctx, cipher_len),
            application_key: derive_n(&key16, b"SMBAppKey\0", ctx, 16),
        }
    }
}
