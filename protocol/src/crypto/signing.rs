//! Message signing ([MS-SMB2] 3.1.4.1).
//!
//! The signature covers the whole message (one element of a compound, from
//! its header to the end of its padding) with the 16-byte signature field
//! taken as zero:
//! - HMAC-SHA256, truncated to 16 bytes, for 2.0.2 and 2.1;
//! - AES-128-CMAC for 3.0, 3.0.2, and 3.1.1 by default;
//! - AES-128-GMAC for 3.1.1 when SIGNING_CAPABILITIES selects it; its 12-byte
//!   nonce is the MessageId (8 bytes, little-endian) followed by a 32-bit
//!   little-endian word whose bit 0 is set in a response
//!   (SMB2_FLAGS_SERVER_TO_REDIR) and bit 1 in a CANCEL request.
//!
//! Keys are 16 bytes; a key of another length is zero-padded or cut to 16
//! bytes, so these functions never fail. A message shorter than the header
//! is signed as if zero-padded to 64 bytes (and never verifies against a real
//! signature).

use aes::Aes128;
use aes_gcm::aead::{AeadInPlace, KeyInit};
use aes_gcm::Aes128Gcm;
use cmac::Cmac;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::ct_eq;
use crate::header::{flags, HEADER_LEN, SIGNATURE_OFFSET};

/// Signing algorithms ([MS-SMB2] 2.2.3.1.7), in the standard's order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SigningAlgorithm {
    HmacSha256,
    AesCmac,
    AesGmac,
}

impl SigningAlgorithm {
    /// Maps a SigningAlgorithmId of SMB2_SIGNING_CAPABILITIES.
    pub fn from_id(id: u16) -> Option<Self> {
        match id {
            0 => Some(SigningAlgorithm::HmacSha256),
            1 => Some(SigningAlgorithm::AesCmac),
            2 => Some(SigningAlgorithm::AesGmac),
            _ => None,
        }
    }

    /// The SigningAlgorithmId of SMB2_SIGNING_CAPABILITIES.
    pub fn id(self) -> u16 {
        match self {
            SigningAlgorithm::HmacSha256 => 0,
            SigningAlgorithm::AesCmac => 1,
            SigningAlgorithm::AesGmac => 2,
        }
    }
}

const FLAGS_OFFSET: usize = 16;
const COMMAND_OFFSET: usize = 12;
const MESSAGE_ID_OFFSET: usize = 24;
const COMMAND_CANCEL: u16 = 0x000C;

fn key16(key: &[u8]) -> [u8; 16] {
    let mut k = [0u8; 16];
    let n = key.len().min(16);
    k[..n].copy_from_slice(&key[..n]);
    k
}

/// The parts of the message to feed a MAC: before the signature, zeros, after.
fn parts(msg: &[u8]) -> (&[u8], usize, &[u8]) {
    if msg.len() >= HEADER_LEN {
        (&msg[..SIGNATURE_OFFSET], 16, &msg[HEADER_LEN..])
    } else if msg.len() >= SIGNATURE_OFFSET {
        (&msg[..SIGNATURE_OFFSET], HEADER_LEN - SIGNATURE_OFFSET, &[])
    } else {
        (msg, HEADER_LEN - msg.len(), &[])
    }
}

fn header_u32(msg: &[u8], at: usize) -> u32 {
    match msg.get(at..at + 4) {
        Some(b) => u32::from_le_bytes([b[0], b[1], b[2], b[3]]),
        None => 0,
    }
}

fn header_u16(msg: &[u8], at: usize) -> u16 {
    match msg.get(at..at + 2) {
        Some(b) => u16::from_le_bytes([b[0], b[1]]),
        None => 0,
    }
}

fn header_u64(msg: &[u8], at: usize) -> u64 {
    match msg.get(at..at + 8) {
        Some(b) => {
            let mut a = [0u8; 8];
            a.copy_from_slice(b);
            u64::from_le_bytes(a)
        }
        None => 0,
    }
}

/// The AES-GMAC nonce of a message ([MS-SMB2] 3.1.4.1).
fn gmac_nonce(msg: &[u8]) -> [u8; 12] {
    let mut nonce = [0u8; 12];
    nonce[..8].copy_from_slice(&header_u64(msg, MESSAGE_ID_OFFSET).to_le_bytes());
    let mut role = 0u32;
    if header_u32(msg, FLAGS_OFFSET) & flags::SERVER_TO_REDIR != 0 {
        role |= 1;
    }
    if header_u16(msg, COMMAND_OFFSET) == COMMAND_CANCEL {
        role |= 2;
    }
    nonce[8..].copy_from_slice(&role.to_le_bytes());
    nonce
}

/// Computes the signature of one SMB2 message (header at `msg[0]`; the
/// signature field is treated as zero) ([MS-SMB2] 3.1.4.1).
pub fn signature(alg: SigningAlgorithm, key: &[u8], msg: &[u8]) -> [u8; 16] {
    let (head, zeros, tail) = parts(msg);
    let zero_block = [0u8; HEADER_LEN];
    let mut out = [0u8; 16];
    match alg {
        SigningAlgorithm::HmacSha256 => {
            let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC accepts keys of any length");
            mac.update(head);
            mac.update(&zero_block[..zeros]);
            mac.update(tail);
            out.copy_from_slice(&mac.finalize().into_bytes()[..16]);
        }
        SigningAlgorithm::AesCmac => {
            let k = key16(key);
            let mut mac = <Cmac<Aes128> as Mac>::new_from_slice(&k).expect("16-byte key fits AES-128");
            mac.update(head);
            mac.update(&zero_block[..zeros]);
            mac.update(tail);
            out.copy_from_slice(&mac.finalize().into_bytes());
        }
        SigningAlgorithm::AesGmac => {
            let k = key16(key);
            let cipher = Aes128Gcm::new(&k.into());
            let nonce = gmac_nonce(msg);
            // GMAC is GCM with everything as additional data and no plaintext.
            let mut aad = Vec::with_capacity(head.len() + zeros + tail.len());
            aad.extend_from_slice(head);
            aad.extend_from_slice(&zero_block[..zeros]);
            aad.extend_from_slice(tail);
            let mut empty: [u8; 0] = [];
            match cipher.encrypt_in_place_detached(&nonce.into(), &aad, &mut empty) {
                Ok(tag) => out.copy_from_slice(&tag),
                // Only reachable for inputs beyond GCM's 2^36-byte limit, which no frame reaches.
                Err(_) => out = [0xff; 16],
            }
        }
    }
    out
}

/// Sets SMB2_FLAGS_SIGNED, then writes the signature into `msg[48..64]`.
/// A message shorter than the header is left unchanged.
pub fn sign(alg: SigningAlgorithm, key: &[u8], msg: &mut [u8]) {
    if msg.len() < HEADER_LEN {
        return;
    }
    let f = header_u32(msg, FLAGS_OFFSET) | flags::SIGNED;
    msg[FLAGS_OFFSET..FLAGS_OFFSET + 4].copy_from_slice(&f.to_le_bytes());
    let sig = signature(alg, key, msg);
    msg[SIGNATURE_OFFSET..HEADER_LEN].copy_from_slice(&sig);
}

/// Checks the signature in `msg[48..64]`, in constant time.
pub fn verify(alg: SigningAlgorithm, key: &[u8], msg: &[u8]) -> bool {
    if msg.len() < HEADER_LEN {
        return false;
    }
    let sig = signature(alg, key, msg);
    ct_eq(&sig, &msg[SIGNATURE_OFFSET..HEADER_LEN])
}
