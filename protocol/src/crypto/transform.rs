//! The encryption transform ([MS-SMB2] 2.2.41, 3.1.4.3, 3.2.5.1.1.1).
//!
//! Format (52 bytes, little-endian, then the ciphertext):
//! `{ 0xFD 'S' 'M' 'B' | signature: [u8; 16] | nonce: [u8; 16] |
//!   original_message_size: u32 | _reserved: u16 | flags: u16 = 0x0001 |
//!   session_id: u64 }`
//!
//! The signature is the AEAD tag; the additional data is the header from the
//! nonce to the end (bytes 20..52). AES-CCM uses the first 11 bytes of the
//! nonce field, AES-GCM the first 12; the rest is zero.

use aes::{Aes128, Aes256};
use aes_gcm::aead::{AeadInPlace, KeyInit};
use aes_gcm::{Aes128Gcm, Aes256Gcm};
use ccm::consts::{U11, U16};
use ccm::Ccm;

use super::cipher;
use super::CryptoError;

/// The protocol id of a transform message.
pub const TRANSFORM_PROTOCOL_ID: [u8; 4] = [0xFD, b'S', b'M', b'B'];
/// Length of the transform header.
pub const TRANSFORM_HEADER_LEN: usize = 52;
/// The only flag: the message is encrypted (Flags/EncryptionAlgorithm of 3.x).
pub const TRANSFORM_FLAG_ENCRYPTED: u16 = 0x0001;
/// Offset of the additional authenticated data within the header.
const AAD_OFFSET: usize = 20;

type Aes128Ccm = Ccm<Aes128, U16, U11>;
type Aes256Ccm = Ccm<Aes256, U16, U11>;

/// The SMB2 TRANSFORM_HEADER ([MS-SMB2] 2.2.41).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransformHeader {
    pub signature: [u8; 16],
    pub nonce: [u8; 16],
    pub original_message_size: u32,
    pub flags: u16,
    pub session_id: u64,
}

impl TransformHeader {
    /// Parses the 52-byte header at the start of `buf` (the ciphertext may follow).
    pub fn parse(buf: &[u8]) -> Result<Self, CryptoError> {
        let h = buf.get(..TRANSFORM_HEADER_LEN).ok_or(CryptoError::Malformed("transform header"))?;
        if h[..4] != TRANSFORM_PROTOCOL_ID {
            return Err(CryptoError::Malformed("transform protocol id"));
        }
        let mut signature = [0u8; 16];
        signature.copy_from_slice(&h[4..20]);
        let mut nonce = [0u8; 16];
        nonce.copy_from_slice(&h[20..36]);
        let original_message_size = u32::from_le_bytes([h[36], h[37], h[38], h[39]]);
        let flags = u16::from_le_bytes([h[42], h[43]]);
        let mut sid = [0u8; 8];
        sid.copy_from_slice(&h[44..52]);
        Ok(TransformHeader { signature, nonce, original_message_size, flags, session_id: u64::from_le_bytes(sid) })
    }

    /// Appends the 52-byte header.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&TRANSFORM_PROTOCOL_ID);
        out.extend_from_slice(&self.signature);
        out.extend_from_slice(&self.nonce);
        out.extend_from_slice(&self.original_message_size.to_le_bytes());
        out.extend_from_slice(&[0, 0]);
        out.extend_from_slice(&self.flags.to_le_bytes());
        out.extend_from_slice(&self.session_id.to_le_bytes());
    }
}

/// Nonce length in bytes the cipher uses.
pub fn nonce_len(cipher: u16) -> Result<usize, CryptoError> {
    match cipher {
        cipher::AES_128_CCM | cipher::AES_256_CCM => Ok(11),
        cipher::AES_128_GCM | cipher::AES_256_GCM => Ok(12),
        other => Err(CryptoError::UnknownCipher(other)),
    }
}

fn check_key(cipher: u16, key: &[u8]) -> Result<(), CryptoError> {
    match cipher::key_len(cipher) {
        None => Err(CryptoError::UnknownCipher(cipher)),
        Some(n) if n != key.len() => Err(CryptoError::KeyLength(key.len())),
        Some(_) => Ok(()),
    }
}

/// Seals `buf` in place; returns the tag.
fn seal(cipher: u16, key: &[u8], nonce: &[u8], aad: &[u8], buf: &mut [u8]) -> Result<[u8; 16], CryptoError> {
    check_key(cipher, key)?;
    let bad_key = |_| CryptoError::KeyLength(key.len());
    let tag = match cipher {
        cipher::AES_128_CCM => Aes128Ccm::new_from_slice(key)
            .map_err(bad_key)?
            .encrypt_in_place_detached(nonce.into(), aad, buf),
        cipher::AES_256_CCM => Aes256Ccm::new_from_slice(key)
            .map_err(bad_key)?
            .encrypt_in_place_detached(nonce.into(), aad, buf),
        cipher::AES_128_GCM => Aes128Gcm::new_from_slice(key)
            .map_err(bad_key)?
            .encrypt_in_place_detached(nonce.into(), aad, buf),
        cipher::AES_256_GCM => Aes256Gcm::new_from_slice(key)
            .map_err(bad_key)?
            .encrypt_in_place_detached(nonce.into(), aad, buf),
        other => return Err(CryptoError::UnknownCipher(other)),
    }
    .map_err(|_| CryptoError::Malformed("message too long for the cipher"))?;
    let mut out = [0u8; 16];
    out.copy_from_slice(&tag);
    Ok(out)
}

/// Opens `buf` in place, checking `tag`.
fn open(cipher: u16, key: &[u8], nonce: &[u8], aad: &[u8], buf: &mut [u8], tag: &[u8; 16]) -> Result<(), CryptoError> {
    check_key(cipher, key)?;
    let bad_key = |_| CryptoError::KeyLength(key.len());
    match cipher {
        cipher::AES_128_CCM => Aes128Ccm::new_from_slice(key)
            .map_err(bad_key)?
            .decrypt_in_place_detached(nonce.into(), aad, buf, tag.into()),
        cipher::AES_256_CCM => Aes256Ccm::new_from_slice(key)
            .map_err(bad_key)?
            .decrypt_in_place_detached(nonce.into(), aad, buf, tag.into()),
        cipher::AES_128_GCM => Aes128Gcm::new_from_slice(key)
            .map_err(bad_key)?
            .decrypt_in_place_detached(nonce.into(), aad, buf, tag.into()),
        cipher::AES_256_GCM => Aes256Gcm::new_from_slice(key)
            .map_err(bad_key)?
            .decrypt_in_place_detached(nonce.into(), aad, buf, tag.into()),
        other => return Err(CryptoError::UnknownCipher(other)),
    }
    .map_err(|_| CryptoError::BadTag)
}

/// Encrypts `plain` (one or more SMB2 messages, a compound) for `session_id`
/// and returns the whole transform message ([MS-SMB2] 3.1.4.3).
///
/// `nonce` holds at least 11 (CCM) or 12 (GCM) bytes of fresh, never-reused
/// nonce; only that many are used. For 3.0 and 3.0.2, where no cipher is
/// negotiated, pass [`cipher::AES_128_CCM`].
pub fn encrypt(cipher: u16, key: &[u8], session_id: u64, nonce: &[u8], plain: &[u8]) -> Result<Vec<u8>, CryptoError> {
    let n = nonce_len(cipher)?;
    check_key(cipher, key)?;
    let nonce = nonce.get(..n).ok_or(CryptoError::Malformed("nonce too short"))?;
    let size = u32::try_from(plain.len()).map_err(|_| CryptoError::Malformed("message too long"))?;
    let mut hdr = TransformHeader {
        signature: [0; 16],
        nonce: [0; 16],
        original_message_size: size,
        flags: TRANSFORM_FLAG_ENCRYPTED,
        session_id,
    };
    hdr.nonce[..n].copy_from_slice(nonce);
    let mut out = Vec::with_capacity(TRANSFORM_HEADER_LEN + plain.len());
    hdr.encode(&mut out);
    out.extend_from_slice(plain);
    let (head, body) = out.split_at_mut(TRANSFORM_HEADER_LEN);
    let tag = seal(cipher, key, &head[..n + AAD_OFFSET][AAD_OFFSET..], &head[AAD_OFFSET..], body)?;
    head[4..20].copy_from_slice(&tag);
    Ok(out)
}

/// Decrypts a whole transform message and checks its tag (additional data:
/// header bytes 20..52). Returns the plaintext SMB2 message(s).
///
/// The caller parses the header first ([`TransformHeader::parse`]) to find the
/// session, and so the key, from `session_id`.
pub fn decrypt(cipher: u16, key: &[u8], msg: &[u8]) -> Result<Vec<u8>, CryptoError> {
    let hdr = TransformHeader::parse(msg)?;
    let n = nonce_len(cipher)?;
    check_key(cipher, key)?;
    if hdr.flags != TRANSFORM_FLAG_ENCRYPTED {
        return Err(CryptoError::Malformed("transform flags"));
    }
    let body = &msg[TRANSFORM_HEADER_LEN..];
    if hdr.original_message_size as usize != body.len() || body.is_empty() {
        return Err(CryptoError::Malformed("transform original message size"));
    }
    let mut plain = body.to_vec();
    let aad = &msg[AAD_OFFSET..TRANSFORM_HEADER_LEN];
    open(cipher, key, &hdr.nonce[..n], aad, &mut plain, &hdr.signature)?;
    Ok(plain)
}
