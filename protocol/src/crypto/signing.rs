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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::unhex;

    /// The final, signed SESSION_SETUP response of the 3.1.1 example in
    /// Microsoft's "anatomy of signing and cryptographic keys" blog, signed
    /// with AES-CMAC under SigningKey 73FE7A9A77BEF0BDE49C650D8CCB5F76.
    const SIGNED_RESPONSE: &str = "FE534D4240000100000000000100800009000000000000000300000000000000FFFE000000000000
                                   1900000000100000EBE146DA120BA25FC3376A49DFE31BC10900000048001D00A11B3019A0030A01
                                   00A3120410010000003B453CDC3524164200000000";
    const KEY: &str = "73FE7A9A77BEF0BDE49C650D8CCB5F76";

    #[test]
    fn aes_cmac_matches_windows() {
        let msg = unhex(SIGNED_RESPONSE);
        let key = unhex(KEY);
        assert_eq!(
            signature(SigningAlgorithm::AesCmac, &key, &msg).to_vec(),
            unhex("EBE146DA120BA25FC3376A49DFE31BC1")
        );
        assert!(verify(SigningAlgorithm::AesCmac, &key, &msg));
        // Re-signing an unsigned copy gives the same bytes.
        let mut copy = msg.clone();
        copy[SIGNATURE_OFFSET..HEADER_LEN].fill(0);
        copy[FLAGS_OFFSET] &= !(flags::SIGNED as u8);
        sign(SigningAlgorithm::AesCmac, &key, &mut copy);
        assert_eq!(copy, msg);
    }

    /// HMAC-SHA256 and AES-GMAC over the same message, checked against a
    /// one-off Python computation (hmac/hashlib and pyca/cryptography AESGCM
    /// with an empty plaintext, nonce = MessageId 3 || 0x00000001 for a response).
    #[test]
    fn hmac_and_gmac_match_an_independent_computation() {
        let msg = unhex(SIGNED_RESPONSE);
        let key = unhex(KEY);
        assert_eq!(
            signature(SigningAlgorithm::HmacSha256, &key, &msg).to_vec(),
            unhex("373d8b4ae191dc8c15be375c5bdaefcb")
        );
        assert_eq!(gmac_nonce(&msg).to_vec(), unhex("030000000000000001000000"));
        assert_eq!(
            signature(SigningAlgorithm::AesGmac, &key, &msg).to_vec(),
            unhex("75d05bac99ff7fcc52a44c354381d559")
        );
    }

    #[test]
    fn gmac_nonce_marks_cancel_and_response() {
        let mut msg = vec![0u8; 64];
        msg[24] = 0x2a;
        assert_eq!(gmac_nonce(&msg)[8..], [0, 0, 0, 0]);
        msg[COMMAND_OFFSET] = COMMAND_CANCEL as u8;
        assert_eq!(gmac_nonce(&msg)[8..], [2, 0, 0, 0]);
        msg[FLAGS_OFFSET] = flags::SERVER_TO_REDIR as u8;
        assert_eq!(gmac_nonce(&msg)[..9], [0x2a, 0, 0, 0, 0, 0, 0, 0, 3]);
    }

    #[test]
    fn round_trip_and_mismatch_for_every_algorithm() {
        let key = [0x11u8; 16];
        for alg in [
            SigningAlgorithm::HmacSha256,
            SigningAlgorithm::AesCmac,
            SigningAlgorithm::AesGmac,
        ] {
            let mut msg = unhex(SIGNED_RESPONSE);
            msg[SIGNATURE_OFFSET..HEADER_LEN].fill(0);
            msg[FLAGS_OFFSET] = 0x01;
            sign(alg, &key, &mut msg);
            assert_ne!(msg[FLAGS_OFFSET] & flags::SIGNED as u8, 0);
            assert!(verify(alg, &key, &msg), "{alg:?}");
            assert!(!verify(alg, &[0x12; 16], &msg), "{alg:?} wrong key");
            for at in [0, 20, 30, 50, 70, msg.len() - 1] {
                let mut bad = msg.clone();
                bad[at] ^= 0x80;
                assert!(!verify(alg, &key, &bad), "{alg:?} byte {at}");
            }
            // The message id is part of the GMAC nonce and of the MAC input.
            let mut bad = msg.clone();
            bad[MESSAGE_ID_OFFSET] ^= 1;
            assert!(!verify(alg, &key, &bad));
        }
    }

    #[test]
    fn short_messages_do_not_panic() {
        for len in 0..HEADER_LEN {
            let mut m = vec![0u8; len];
            for alg in [
                SigningAlgorithm::HmacSha256,
                SigningAlgorithm::AesCmac,
                SigningAlgorithm::AesGmac,
            ] {
                let _ = signature(alg, &[1; 16], &m);
                assert!(!verify(alg, &[1; 16], &m));
                sign(alg, &[1; 16], &mut m);
                assert!(m.iter().all(|&b| b == 0));
            }
        }
        // Odd key lengths are padded or cut rather than refused.
        let _ = signature(SigningAlgorithm::AesCmac, &[], &[0; 64]);
        let _ = signature(SigningAlgorithm::AesGmac, &[1; 40], &[0; 64]);
    }

    #[test]
    fn algorithm_ids() {
        for alg in [
            SigningAlgorithm::HmacSha256,
            SigningAlgorithm::AesCmac,
            SigningAlgorithm::AesGmac,
        ] {
            assert_eq!(SigningAlgorithm::from_id(alg.id()), Some(alg));
        }
        assert_eq!(SigningAlgorithm::from_id(3), None);
    }
}
