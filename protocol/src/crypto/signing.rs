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
//!
//! The MACs run on AWS-LC: HMAC-SHA256 on the SHA extensions, GMAC on its
//! AES-GCM (VAES/VPCLMULQDQ where the CPU has them), AES-CMAC on its CBC
//! mode ([`super::ccm`]). None copies the message: HMAC and CMAC take it in
//! pieces (head, 16 zero bytes, tail); GMAC, whose additional data must be
//! one slice, runs over the message as it is and then takes the signature
//! field out of the result (see [`gmac_zeroed`]).
//!
//! [`signature`], [`sign`] and [`verify`] prepare the key for the one
//! call; a [`SigningKey`] is prepared once, when the session's (or the
//! channel's) key is derived, and used for every message.

use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_128_GCM};
use aws_lc_rs::cipher::{EncryptingKey, EncryptionContext, UnboundCipherKey, AES_128};
use aws_lc_rs::hmac;

use super::{ccm, ct_eq, CryptoError};
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

/// A signing key prepared once for every message it signs or verifies
/// ([MS-SMB2] 3.1.4.1): HMAC-SHA256's padded key blocks already hashed,
/// AES-CMAC's key schedule and subkeys, or AES-GMAC's key schedule and
/// GHASH table, and the powers H^(2^k) of its hash subkey H for
/// [`gmac_zeroed`]'s correction.
pub struct SigningKey {
    alg: SigningAlgorithm,
    key: Prepared,
}

// One per session (or channel), made once: its size does not matter, and
// boxing the large variants would add a pointer chase per message.
#[allow(clippy::large_enum_variant)]
enum Prepared {
    HmacSha256(hmac::Key),
    AesCmac(ccm::CmacKey),
    AesGmac(GmacKey),
}

/// Powers H^(2^k) of GMAC's hash subkey kept: enough for any exponent
/// [`gmac_zeroed`] meets (the message's block count, below 2^32 within
/// GCM's 2^36-byte limit).
const H_POWERS: usize = 40;

struct GmacKey {
    gcm: LessSafeKey,
    /// H^(2^k) for k < [`H_POWERS`], H = E(K, 0^128); `None` for a key
    /// prepared for one call, which computes H only when it needs it.
    h_powers: Option<Box<[u128; H_POWERS]>>,
    /// The raw key, for computing H when `h_powers` is `None`.
    raw: [u8; 16],
}

impl GmacKey {
    fn new(key: &[u8; 16], with_powers: bool) -> Result<GmacKey, CryptoError> {
        let gcm = LessSafeKey::new(UnboundKey::new(&AES_128_GCM, key).map_err(|_| CryptoError::KeyLength(16))?);
        let h_powers = match with_powers {
            true => {
                let mut p = Box::new([0u128; H_POWERS]);
                p[0] = hash_subkey(key)?;
                for k in 1..H_POWERS {
                    p[k] = gf_mul(p[k - 1], p[k - 1]);
                }
                Some(p)
            }
            false => None,
        };
        Ok(GmacKey { gcm, h_powers, raw: *key })
    }

    /// H^e.
    fn h_pow(&self, e: u64) -> Result<u128, CryptoError> {
        let Some(p) = &self.h_powers else {
            return Ok(gf_pow(hash_subkey(&self.raw)?, e));
        };
        if e >> H_POWERS != 0 {
            return Err(CryptoError::Malformed("GMAC input"));
        }
        let mut acc = 1u128 << 127;
        for (k, hk) in p.iter().enumerate() {
            if (e >> k) & 1 == 1 {
                acc = gf_mul(acc, *hk);
            }
        }
        Ok(acc)
    }
}

/// GCM's hash subkey H = E(K, 0^128) (NIST SP 800-38D 6.4).
fn hash_subkey(key: &[u8; 16]) -> Result<u128, CryptoError> {
    let bad = |_| CryptoError::Malformed("AES key");
    let mut h = [0u8; 16];
    EncryptingKey::ecb(UnboundCipherKey::new(&AES_128, key).map_err(bad)?)
        .map_err(bad)?
        .less_safe_encrypt(&mut h, EncryptionContext::None)
        .map_err(bad)?;
    Ok(u128::from_be_bytes(h))
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Keys stay out of logs.
        f.debug_struct("SigningKey").field("alg", &self.alg).finish_non_exhaustive()
    }
}

impl SigningKey {
    /// Prepares `key` for `alg`. HMAC-SHA256 takes a key of any length
    /// (RFC 2104); AES-CMAC and AES-GMAC take 16 bytes, and another length
    /// is [`CryptoError::KeyLength`] (the free functions of this module pad
    /// or cut it instead).
    pub fn new(alg: SigningAlgorithm, key: &[u8]) -> Result<SigningKey, CryptoError> {
        SigningKey::prepare(alg, key, true)
    }

    /// `reused`: worth computing what only pays over many messages (GMAC's
    /// powers of H), else computed per call when needed.
    fn prepare(alg: SigningAlgorithm, key: &[u8], reused: bool) -> Result<SigningKey, CryptoError> {
        let prepared = match (alg, <&[u8; 16]>::try_from(key)) {
            (SigningAlgorithm::HmacSha256, _) => Prepared::HmacSha256(hmac::Key::new(hmac::HMAC_SHA256, key)),
            (SigningAlgorithm::AesCmac, Ok(_)) => Prepared::AesCmac(ccm::CmacKey::new(key)?),
            (SigningAlgorithm::AesGmac, Ok(k)) => Prepared::AesGmac(GmacKey::new(k, reused)?),
            (SigningAlgorithm::AesCmac | SigningAlgorithm::AesGmac, Err(_)) => return Err(CryptoError::KeyLength(key.len())),
        };
        Ok(SigningKey { alg, key: prepared })
    }

    /// The algorithm the key is for.
    pub fn algorithm(&self) -> SigningAlgorithm {
        self.alg
    }

    /// Computes the signature of one SMB2 message (header at `msg[0]`; the
    /// signature field is treated as zero) ([MS-SMB2] 3.1.4.1).
    pub fn signature(&self, msg: &[u8]) -> [u8; 16] {
        // AWS-LC fails only on inputs beyond GCM's 2^36-byte limit, which no
        // frame reaches; such a signature never verifies.
        self.mac(msg, GMAC_COPY_MAX).unwrap_or([0xff; 16])
    }

    /// Sets SMB2_FLAGS_SIGNED, then writes the signature into `msg[48..64]`.
    /// A message shorter than the header is left unchanged.
    pub fn sign(&self, msg: &mut [u8]) {
        if msg.len() < HEADER_LEN {
            return;
        }
        let f = header_u32(msg, FLAGS_OFFSET) | flags::SIGNED;
        msg[FLAGS_OFFSET..FLAGS_OFFSET + 4].copy_from_slice(&f.to_le_bytes());
        // With the field zeroed, GMAC runs over the message in place.
        msg[SIGNATURE_OFFSET..HEADER_LEN].fill(0);
        let sig = self.signature(msg);
        msg[SIGNATURE_OFFSET..HEADER_LEN].copy_from_slice(&sig);
    }

    /// Checks the signature in `msg[48..64]`, in constant time.
    pub fn verify(&self, msg: &[u8]) -> bool {
        if msg.len() < HEADER_LEN {
            return false;
        }
        let sig = self.signature(msg);
        ct_eq(&sig, &msg[SIGNATURE_OFFSET..HEADER_LEN])
    }

    fn mac(&self, msg: &[u8], copy_max: usize) -> Result<[u8; 16], CryptoError> {
        let (head, zeros, tail) = parts(msg);
        let zero_block = [0u8; HEADER_LEN];
        let mut out = [0u8; 16];
        match &self.key {
            Prepared::HmacSha256(key) => {
                let mut mac = hmac::Context::with_key(key);
                mac.update(head);
                mac.update(&zero_block[..zeros]);
                mac.update(tail);
                out.copy_from_slice(&mac.sign().as_ref()[..16]);
            }
            Prepared::AesCmac(key) => out = key.mac(&[head, &zero_block[..zeros], tail])?,
            Prepared::AesGmac(key) => {
                let nonce = gmac_nonce(msg);
                let field = msg.get(SIGNATURE_OFFSET..HEADER_LEN).unwrap_or(&[]);
                if field.iter().all(|&b| b == 0) && msg.len() >= HEADER_LEN {
                    out = gmac(&key.gcm, nonce, msg)?;
                } else if msg.len() >= HEADER_LEN && msg.len() > copy_max {
                    out = gmac_zeroed(key, nonce, msg)?;
                } else {
                    let mut aad = Vec::with_capacity(head.len() + zeros + tail.len());
                    aad.extend_from_slice(head);
                    aad.extend_from_slice(&zero_block[..zeros]);
                    aad.extend_from_slice(tail);
                    out = gmac(&key.gcm, nonce, &aad)?;
                }
            }
        }
        Ok(out)
    }
}

/// The key the free functions sign with, for one call: a key of another
/// length than 16 bytes is zero-padded or cut for AES-CMAC and AES-GMAC.
fn prepare(alg: SigningAlgorithm, key: &[u8]) -> Result<SigningKey, CryptoError> {
    match alg {
        SigningAlgorithm::HmacSha256 => SigningKey::prepare(alg, key, false),
        SigningAlgorithm::AesCmac | SigningAlgorithm::AesGmac => SigningKey::prepare(alg, &key16(key), false),
    }
}

/// Computes the signature of one SMB2 message (header at `msg[0]`; the
/// signature field is treated as zero) ([MS-SMB2] 3.1.4.1). The key is
/// prepared for this one call; [`SigningKey`] prepares it once for many.
pub fn signature(alg: SigningAlgorithm, key: &[u8], msg: &[u8]) -> [u8; 16] {
    match prepare(alg, key) {
        Ok(key) => key.signature(msg),
        // Not reached: a padded key always fits. Never verifies.
        Err(_) => [0xff; 16],
    }
}

/// Messages up to this long whose signature field is set are copied with
/// the field zeroed to be GMAC'd; longer ones are corrected instead.
const GMAC_COPY_MAX: usize = 64 * 1024;

#[cfg(test)]
fn mac(alg: SigningAlgorithm, key: &[u8], msg: &[u8], copy_max: usize) -> Result<[u8; 16], CryptoError> {
    prepare(alg, key)?.mac(msg, copy_max)
}

/// GMAC: AES-GCM with everything as additional data and no plaintext.
fn gmac(key: &LessSafeKey, nonce: [u8; 12], aad: &[u8]) -> Result<[u8; 16], CryptoError> {
    let tag = key
        .seal_in_place_separate_tag(Nonce::assume_unique_for_key(nonce), Aad::from(aad), &mut [])
        .map_err(|_| CryptoError::Malformed("GMAC input"))?;
    let mut out = [0u8; 16];
    out.copy_from_slice(tag.as_ref());
    Ok(out)
}

/// The GMAC of `msg` with its signature field taken as zero, without a
/// copy of `msg`. GHASH is linear: over the additional-data blocks X1..Xm
/// and the length block, Y = X1·H^(m+1) + ... + Xm·H^2 + L·H, and the tag is
/// Y + E(K, J0). The signature field is block X4, so the tag of the message
/// with S in that field and the tag with zeros there differ by S·H^(m-2)
/// (NIST SP 800-38D 6.4, 7.1), where H = E(K, 0^128). A prepared key
/// holds H^(2^k), so H^(m-2) costs one multiplication per set bit of m - 2
/// rather than a squaring per bit as well.
fn gmac_zeroed(key: &GmacKey, nonce: [u8; 12], msg: &[u8]) -> Result<[u8; 16], CryptoError> {
    let tag = u128::from_be_bytes(gmac(&key.gcm, nonce, msg)?);
    let mut s = [0u8; 16];
    s.copy_from_slice(&msg[SIGNATURE_OFFSET..HEADER_LEN]);
    let m = msg.len().div_ceil(16) as u64;
    let correction = gf_mul(u128::from_be_bytes(s), key.h_pow(m - 2)?);
    Ok((tag ^ correction).to_be_bytes())
}

/// Multiplication in GCM's GF(2^128), blocks read big-endian (bit 0 is the
/// most significant): NIST SP 800-38D Algorithm 1, without branches on
/// either operand.
fn gf_mul(x: u128, y: u128) -> u128 {
    const R: u128 = 0xE1 << 120;
    let mut z = 0u128;
    let mut v = y;
    for i in 0..128 {
        z ^= v & 0u128.wrapping_sub((x >> (127 - i)) & 1);
        v = (v >> 1) ^ (R & 0u128.wrapping_sub(v & 1));
    }
    z
}

/// `h` to the power `e` (`e` is public: it comes from the message length).
fn gf_pow(h: u128, mut e: u64) -> u128 {
    let one = 1u128 << 127;
    let (mut acc, mut base) = (one, h);
    while e > 0 {
        if e & 1 == 1 {
            acc = gf_mul(acc, base);
        }
        base = gf_mul(base, base);
        e >>= 1;
    }
    acc
}

/// Sets SMB2_FLAGS_SIGNED, then writes the signature into `msg[48..64]`.
/// A message shorter than the header is left unchanged.
pub fn sign(alg: SigningAlgorithm, key: &[u8], msg: &mut [u8]) {
    if let Ok(key) = prepare(alg, key) {
        key.sign(msg);
    }
}

/// Checks the signature in `msg[48..64]`, in constant time.
pub fn verify(alg: SigningAlgorithm, key: &[u8], msg: &[u8]) -> bool {
    prepare(alg, key).is_ok_and(|key| key.verify(msg))
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

    /// The GMAC of a long message, computed in place and corrected for its
    /// signature field, equals the GMAC of a copy with the field zeroed;
    /// for every length around a block boundary and a few long ones.
    #[test]
    fn gmac_correction_equals_the_copy() {
        let key = unhex(KEY);
        let vector = unhex(SIGNED_RESPONSE);
        assert_eq!(
            mac(SigningAlgorithm::AesGmac, &key, &vector, 0).unwrap().to_vec(),
            unhex("75d05bac99ff7fcc52a44c354381d559")
        );
        for len in (64..=200).chain([4095, 4096, 4097, 70_001, 1 << 20]) {
            let mut msg: Vec<u8> = (0..len).map(|i| (i * 13 + len) as u8).collect();
            msg[SIGNATURE_OFFSET] |= 1;
            let corrected = mac(SigningAlgorithm::AesGmac, &key, &msg, 0).unwrap();
            let copied = mac(SigningAlgorithm::AesGmac, &key, &msg, usize::MAX).unwrap();
            assert_eq!(corrected, copied, "{len}");
            assert_eq!(signature(SigningAlgorithm::AesGmac, &key, &msg), copied, "{len}");
            // And that is the signature sign() writes.
            let mut signed = msg.clone();
            sign(SigningAlgorithm::AesGmac, &key, &mut signed);
            assert!(verify(SigningAlgorithm::AesGmac, &key, &signed), "{len}");
        }
    }

    #[test]
    fn gf_mul_identity_and_known_product() {
        let one = 1u128 << 127;
        let x = 0x66e94bd4ef8a2c3b884cfa59ca342b2e_u128;
        assert_eq!(gf_mul(x, one), x);
        assert_eq!(gf_mul(one, x), x);
        assert_eq!(gf_pow(x, 0), one);
        assert_eq!(gf_pow(x, 3), gf_mul(x, gf_mul(x, x)));
        // NIST GCM test case 2: H = 66e94bd4ef8a2c3b884cfa59ca342b2e, C =
        // 0388dace60b6a392f328c2b971b2fe78, GHASH(C, len) = f38cbb1ad69223dcc3457ae5b6b0f885
        // = (C·H + L·H)·... computed as (C·H ^ L)·H.
        let c = 0x0388dace60b6a392f328c2b971b2fe78_u128;
        let l = 0x0000000000000000_0000000000000080_u128;
        assert_eq!(gf_mul(gf_mul(c, x) ^ l, x), 0xf38cbb1ad69223dcc3457ae5b6b0f885);
    }

    /// The prepared key's powers of H give what squaring does.
    #[test]
    fn h_powers_equal_gf_pow() {
        let key = [0x5au8; 16];
        let (with, without) = (GmacKey::new(&key, true).unwrap(), GmacKey::new(&key, false).unwrap());
        let h = hash_subkey(&key).unwrap();
        for e in (0..300).chain([4094, 4096, 65_537, (1 << 32) - 1, (1 << 40) - 1]) {
            assert_eq!(with.h_pow(e).unwrap(), gf_pow(h, e), "{e}");
            assert_eq!(without.h_pow(e).unwrap(), gf_pow(h, e), "{e}");
        }
        assert!(with.h_pow(1 << 40).is_err());
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

    /// One prepared key per algorithm, used for many messages in a row (so
    /// nothing may carry over from one to the next), gives the bytes of
    /// the free functions, and then still the vectors above.
    #[test]
    fn prepared_keys_match_the_free_functions() {
        let key = unhex(KEY);
        let vector = unhex(SIGNED_RESPONSE);
        for (alg, expected) in [
            (SigningAlgorithm::HmacSha256, "373d8b4ae191dc8c15be375c5bdaefcb"),
            (SigningAlgorithm::AesCmac, "EBE146DA120BA25FC3376A49DFE31BC1"),
            (SigningAlgorithm::AesGmac, "75d05bac99ff7fcc52a44c354381d559"),
        ] {
            let prepared = SigningKey::new(alg, &key).unwrap();
            assert_eq!(prepared.algorithm(), alg);
            for len in [0, 1, 47, 48, 63, 64, 65, 79, 80, 81, 200, 4096, 65_536, 70_001, 1 << 20] {
                let mut msg: Vec<u8> = (0..len).map(|i| (i * 29 + len) as u8).collect();
                if len > SIGNATURE_OFFSET {
                    // A received message: its signature field is set.
                    msg[SIGNATURE_OFFSET] |= 1;
                }
                assert_eq!(prepared.signature(&msg), signature(alg, &key, &msg), "{alg:?} {len}");
                let mut ours = msg.clone();
                let mut free = msg.clone();
                prepared.sign(&mut ours);
                sign(alg, &key, &mut free);
                assert_eq!(ours, free, "{alg:?} {len}");
                assert_eq!(prepared.verify(&ours), len >= HEADER_LEN, "{alg:?} {len}");
                assert_eq!(verify(alg, &key, &ours), len >= HEADER_LEN, "{alg:?} {len}");
                if len >= HEADER_LEN {
                    ours[len - 1] ^= 0x40;
                    assert!(!prepared.verify(&ours), "{alg:?} {len}");
                }
            }
            assert_eq!(prepared.signature(&vector).to_vec(), unhex(expected), "{alg:?}");
            assert_eq!(prepared.verify(&vector), alg == SigningAlgorithm::AesCmac);
        }
    }

    #[test]
    fn a_prepared_aes_key_of_another_length_is_refused() {
        for alg in [SigningAlgorithm::AesCmac, SigningAlgorithm::AesGmac] {
            for n in [0, 1, 15, 17, 24, 32] {
                assert_eq!(SigningKey::new(alg, &vec![7; n]).unwrap_err(), CryptoError::KeyLength(n), "{alg:?} {n}");
            }
        }
        // HMAC takes any length, as the free function does.
        for n in [0, 15, 16, 64, 100] {
            let k = SigningKey::new(SigningAlgorithm::HmacSha256, &vec![7; n]).unwrap();
            assert_eq!(k.signature(&[1; 80]), signature(SigningAlgorithm::HmacSha256, &vec![7; n], &[1; 80]));
        }
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
