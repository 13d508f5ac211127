//! Signing, key derivation, preauth integrity and the encryption transform ([MS-SMB2] 3.1.4, 2.2.41).
//!
//! Everything here is plain computation over byte slices: the server picks
//! the algorithm from the negotiated dialect and hands in the keys.
//!
//! # Layout
//! - [`preauth`]: the SHA-512 preauth integrity hash of 3.1.1 ([MS-SMB2] 3.3.5.4).
//! - [`kdf`](mod@kdf): SP800-108 key derivation and the per-session keys ([MS-SMB2] 3.1.4.2, 3.3.5.5.3).
//! - [`signing`]: HMAC-SHA256, AES-CMAC and AES-GMAC message signatures, and the prepared [`SigningKey`] ([MS-SMB2] 3.1.4.1).
//! - [`transform`]: the TRANSFORM_HEADER and AES-CCM/GCM encryption, and the prepared [`CipherKey`] ([MS-SMB2] 2.2.41, 3.1.4.3).
//! - `ccm`: AES-CCM and AES-CMAC built on AWS-LC's CBC and CTR modes.

mod ccm;
pub mod kdf;
pub mod preauth;
pub mod signing;
pub mod transform;

pub use kdf::{derive, kdf, SessionKeys};
pub use preauth::PreauthHash;
pub use signing::{SigningAlgorithm, SigningKey};
pub use transform::{CipherKey, TransformHeader};

use thiserror::Error;

/// Dialect revision numbers ([MS-SMB2] 2.2.3), as the key derivation needs them.
pub mod dialect {
    pub const SMB2_0_2: u16 = 0x0202;
    pub const SMB2_1: u16 = 0x0210;
    pub const SMB3_0: u16 = 0x0300;
    pub const SMB3_0_2: u16 = 0x0302;
    pub const SMB3_1_1: u16 = 0x0311;
}

/// Encryption cipher ids ([MS-SMB2] 2.2.3.1.2).
pub mod cipher {
    pub const AES_128_CCM: u16 = 0x0001;
    pub const AES_128_GCM: u16 = 0x0002;
    pub const AES_256_CCM: u16 = 0x0003;
    pub const AES_256_GCM: u16 = 0x0004;

    /// Key length in bytes of a cipher, `None` for an unknown id.
    pub fn key_len(cipher: u16) -> Option<usize> {
        match cipher {
            AES_128_CCM | AES_128_GCM => Some(16),
            AES_256_CCM | AES_256_GCM => Some(32),
            _ => None,
        }
    }
}

/// A transform message could not be parsed, authenticated or produced.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CryptoError {
    /// The message is truncated or a field holds a value the specification does not allow.
    #[error("malformed {0}")]
    Malformed(&'static str),
    /// The authentication tag did not match: tampered, or the wrong key.
    #[error("bad authentication tag")]
    BadTag,
    /// The cipher id is not one of [MS-SMB2] 2.2.3.1.2.
    #[error("unknown cipher {0:#06x}")]
    UnknownCipher(u16),
    /// The key's length does not fit the cipher.
    #[error("key of {0} bytes does not fit the cipher")]
    KeyLength(usize),
}

/// Compares two byte strings in time that depends only on their lengths.
pub(crate) fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    // Keep the optimiser from turning the fold into an early exit.
    std::hint::black_box(diff) == 0
}

#[cfg(test)]
pub(crate) fn unhex(s: &str) -> Vec<u8> {
    let s: Vec<u8> = s.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    assert!(s.len() & 1 == 0, "odd hex");
    s.chunks(2)
        .map(|c| u8::from_str_radix(std::str::from_utf8(c).expect("ascii"), 16).expect("hex"))
        .collect()
}
