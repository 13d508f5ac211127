//! AES-CCM (NIST SP 800-38C, RFC 3610) and AES-CMAC (RFC 4493), built on
//! AWS-LC's AES modes.
//!
//! AWS-LC has no CCM with SMB's parameters (a 16-byte tag and an 11-byte
//! nonce, so a 4-byte length field) and its CMAC calls the cipher once per
//! block, so both are built here from its CBC and CTR modes, which run on
//! AES-NI: a CBC-MAC is CBC encryption of the message of which only the last
//! block is kept, done through a small scratch buffer a chunk at a time; the
//! CCM keystream is CTR mode, whose 32-bit big-endian counter is exactly
//! CCM's with a 4-byte length field. A CBC-MAC is serial (each block waits
//! for the one before), so CCM and CMAC run at the latency bound of the AES
//! instructions, several times slower than GCM, which is parallel.
//!
//! Keys are prepared once ([`CmacKey`]: the CBC key schedule and CMAC's
//! subkeys; [`CcmKey`]: the CBC and CTR key schedules) and then used for
//! every message.

use aws_lc_rs::cipher::{Algorithm, EncryptingKey, EncryptionContext, UnboundCipherKey, AES_128, AES_256};

use super::{ct_eq, CryptoError};

const BLOCK: usize = 16;
/// Bytes of message copied to the stack and CBC-encrypted per call.
const CHUNK: usize = 16 * 1024;
/// CCM's nonce length with SMB's 4-byte length field (15 - 4).
pub(crate) const NONCE_LEN: usize = 11;

fn algorithm(key: &[u8]) -> Result<&'static Algorithm, CryptoError> {
    match key.len() {
        16 => Ok(&AES_128),
        32 => Ok(&AES_256),
        n => Err(CryptoError::KeyLength(n)),
    }
}

fn cipher_key(key: &[u8], mode: fn(UnboundCipherKey) -> Result<EncryptingKey, aws_lc_rs::error::Unspecified>) -> Result<EncryptingKey, CryptoError> {
    let unbound = UnboundCipherKey::new(algorithm(key)?, key).map_err(|_| CryptoError::KeyLength(key.len()))?;
    mode(unbound).map_err(|_| CryptoError::KeyLength(key.len()))
}

/// Runs AES in CBC mode over `blocks` (a whole number of blocks) in place,
/// from the chaining value `iv`; returns the last ciphertext block.
fn cbc(key: &EncryptingKey, iv: [u8; BLOCK], blocks: &mut [u8]) -> Result<[u8; BLOCK], CryptoError> {
    key.less_safe_encrypt(blocks, EncryptionContext::Iv128(iv.into()))
        .map_err(|_| CryptoError::Malformed("CBC input is not whole blocks"))?;
    let mut last = [0u8; BLOCK];
    last.copy_from_slice(&blocks[blocks.len() - BLOCK..]);
    Ok(last)
}

/// A CBC-MAC over a stream of bytes, with a prepared CBC key. The last
/// block (full or not) is held back until more bytes come, so CMAC can
/// treat it apart.
struct CbcMac<'k> {
    key: &'k EncryptingKey,
    state: [u8; BLOCK],
    pending: [u8; BLOCK],
    used: usize,
}

impl<'k> CbcMac<'k> {
    fn new(key: &'k EncryptingKey) -> CbcMac<'k> {
        CbcMac { key, state: [0; BLOCK], pending: [0; BLOCK], used: 0 }
    }

    fn block(&mut self, mut b: [u8; BLOCK]) -> Result<(), CryptoError> {
        self.state = cbc(self.key, self.state, &mut b)?;
        Ok(())
    }

    fn update(&mut self, mut data: &[u8]) -> Result<(), CryptoError> {
        if data.is_empty() {
            return Ok(());
        }
        if self.used == BLOCK {
            self.block(self.pending)?;
            self.used = 0;
        }
        if self.used > 0 {
            let n = (BLOCK - self.used).min(data.len());
            self.pending[self.used..self.used + n].copy_from_slice(&data[..n]);
            self.used += n;
            data = &data[n..];
            if data.is_empty() {
                return Ok(());
            }
            self.block(self.pending)?;
            self.used = 0;
        }
        // Whole blocks, keeping 1 to 16 bytes back.
        let bulk = (data.len() - 1) / BLOCK * BLOCK;
        let mut scratch = [0u8; CHUNK];
        for chunk in data[..bulk].chunks(CHUNK) {
            let s = &mut scratch[..chunk.len()];
            s.copy_from_slice(chunk);
            self.state = cbc(self.key, self.state, s)?;
        }
        let rest = &data[bulk..];
        self.pending[..rest.len()].copy_from_slice(rest);
        self.used = rest.len();
        Ok(())
    }

    /// Pads what came so far with zeros to a whole block (CCM's padding of
    /// the additional data and of the message).
    fn pad(&mut self) {
        if self.used > 0 {
            self.pending[self.used..].fill(0);
            self.used = BLOCK;
        }
    }

    /// The CBC-MAC of the zero-padded input (CCM's T before encryption).
    fn finish_padded(mut self) -> Result<[u8; BLOCK], CryptoError> {
        self.pad();
        if self.used == BLOCK {
            self.block(self.pending)?;
        }
        Ok(self.state)
    }

    /// The AES-CMAC of the input (RFC 4493 2.4), with the subkeys K1, K2.
    fn finish_cmac(mut self, k1: &[u8; BLOCK], k2: &[u8; BLOCK]) -> Result<[u8; BLOCK], CryptoError> {
        let (mut last, k) = if self.used == BLOCK {
            (self.pending, k1)
        } else {
            let mut p = [0u8; BLOCK];
            p[..self.used].copy_from_slice(&self.pending[..self.used]);
            p[self.used] = 0x80;
            (p, k2)
        };
        for (b, k) in last.iter_mut().zip(k) {
            *b ^= k;
        }
        self.block(last)?;
        Ok(self.state)
    }
}

/// Doubling in GF(2^128) as CMAC's subkeys use it (RFC 4493 2.3).
fn dbl(b: [u8; BLOCK]) -> [u8; BLOCK] {
    let v = u128::from_be_bytes(b);
    let carry = 0u128.wrapping_sub(v >> 127) & 0x87;
    ((v << 1) ^ carry).to_be_bytes()
}

/// An AES-CMAC key (RFC 4493) prepared once: the CBC key schedule and the
/// subkeys K1 and K2 (2.3).
pub(crate) struct CmacKey {
    cbc: EncryptingKey,
    k1: [u8; BLOCK],
    k2: [u8; BLOCK],
}

impl CmacKey {
    /// A 16- or 32-byte AES key; any other length is [`CryptoError::KeyLength`].
    pub(crate) fn new(key: &[u8]) -> Result<CmacKey, CryptoError> {
        let cbc_key = cipher_key(key, EncryptingKey::cbc)?;
        let l = cbc(&cbc_key, [0; BLOCK], &mut [0; BLOCK])?;
        let k1 = dbl(l);
        Ok(CmacKey { cbc: cbc_key, k1, k2: dbl(k1) })
    }

    /// AES-CMAC of the concatenation of `parts`.
    pub(crate) fn mac(&self, parts: &[&[u8]]) -> Result<[u8; BLOCK], CryptoError> {
        let mut mac = CbcMac::new(&self.cbc);
        for p in parts {
            mac.update(p)?;
        }
        mac.finish_cmac(&self.k1, &self.k2)
    }
}

/// AES-CMAC of the concatenation of `parts` (prepares the key each call).
#[cfg(test)]
pub(crate) fn cmac(key: &[u8], parts: &[&[u8]]) -> Result<[u8; BLOCK], CryptoError> {
    CmacKey::new(key)?.mac(parts)
}

/// CCM's counter block i for `nonce` (flags = L - 1 = 3).
fn counter(nonce: &[u8; NONCE_LEN], i: u32) -> [u8; BLOCK] {
    let mut a = [0u8; BLOCK];
    a[0] = 3;
    a[1..12].copy_from_slice(nonce);
    a[12..].copy_from_slice(&i.to_be_bytes());
    a
}

/// An AES-CCM key prepared once: the CBC key schedule for the CBC-MAC and
/// the CTR one for the keystream (the same AES key in two modes).
pub(crate) struct CcmKey {
    cbc: EncryptingKey,
    ctr: EncryptingKey,
}

impl CcmKey {
    /// A 16- or 32-byte AES key; any other length is [`CryptoError::KeyLength`].
    pub(crate) fn new(key: &[u8]) -> Result<CcmKey, CryptoError> {
        Ok(CcmKey { cbc: cipher_key(key, EncryptingKey::cbc)?, ctr: cipher_key(key, EncryptingKey::ctr)? })
    }

    /// The CBC-MAC T of CCM over B0, the encoded additional data and the message.
    fn tag_of(&self, nonce: &[u8; NONCE_LEN], aad: &[u8], msg: &[u8]) -> Result<[u8; BLOCK], CryptoError> {
        let len = u32::try_from(msg.len()).map_err(|_| CryptoError::Malformed("message too long for CCM"))?;
        let mut mac = CbcMac::new(&self.cbc);
        let mut b0 = [0u8; BLOCK];
        // Flags: Adata, M' = (16 - 2) / 2, L' = 4 - 1.
        b0[0] = if aad.is_empty() { 0 } else { 0x40 } | (7 << 3) | 3;
        b0[1..12].copy_from_slice(nonce);
        b0[12..].copy_from_slice(&len.to_be_bytes());
        mac.update(&b0)?;
        if !aad.is_empty() {
            match u16::try_from(aad.len()) {
                Ok(n) if n < 0xFF00 => mac.update(&n.to_be_bytes())?,
                _ => {
                    let n = u32::try_from(aad.len()).map_err(|_| CryptoError::Malformed("additional data too long for CCM"))?;
                    mac.update(&[0xFF, 0xFE])?;
                    mac.update(&n.to_be_bytes())?;
                }
            }
            mac.update(aad)?;
            mac.pad();
        }
        mac.update(msg)?;
        mac.finish_padded()
    }

    fn ctr(&self, nonce: &[u8; NONCE_LEN], i: u32, buf: &mut [u8]) -> Result<(), CryptoError> {
        self.ctr
            .less_safe_encrypt(buf, EncryptionContext::Iv128(counter(nonce, i).into()))
            .map(|_| ())
            .map_err(|_| CryptoError::Malformed("CTR"))
    }

    /// Encrypts `buf` in place; returns the 16-byte tag.
    pub(crate) fn seal(&self, nonce: &[u8; NONCE_LEN], aad: &[u8], buf: &mut [u8]) -> Result<[u8; BLOCK], CryptoError> {
        let mut tag = self.tag_of(nonce, aad, buf)?;
        self.ctr(nonce, 1, buf)?;
        self.ctr(nonce, 0, &mut tag)?;
        Ok(tag)
    }

    /// Decrypts `buf` in place and checks `tag`. On an error `buf` holds
    /// unauthenticated bytes, which the caller must drop.
    pub(crate) fn open(&self, nonce: &[u8; NONCE_LEN], aad: &[u8], buf: &mut [u8], tag: &[u8; BLOCK]) -> Result<(), CryptoError> {
        self.ctr(nonce, 1, buf)?;
        let mut expected = self.tag_of(nonce, aad, buf)?;
        self.ctr(nonce, 0, &mut expected)?;
        if ct_eq(&expected, tag) {
            Ok(())
        } else {
            Err(CryptoError::BadTag)
        }
    }
}

/// [`CcmKey::seal`] with a key prepared for this one call.
#[cfg(test)]
pub(crate) fn seal(key: &[u8], nonce: &[u8; NONCE_LEN], aad: &[u8], buf: &mut [u8]) -> Result<[u8; BLOCK], CryptoError> {
    CcmKey::new(key)?.seal(nonce, aad, buf)
}

/// [`CcmKey::open`] with a key prepared for this one call.
#[cfg(test)]
pub(crate) fn open(key: &[u8], nonce: &[u8; NONCE_LEN], aad: &[u8], buf: &mut [u8], tag: &[u8; BLOCK]) -> Result<(), CryptoError> {
    CcmKey::new(key)?.open(nonce, aad, buf, tag)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::unhex;

    /// RFC 4493 4: the four AES-128 examples, fed whole and in odd pieces.
    #[test]
    fn cmac_matches_rfc_4493() {
        let key = unhex("2b7e151628aed2a6abf7158809cf4f3c");
        let msg = unhex(
            "6bc1bee22e409f96e93d7e117393172aae2d8a571e03ac9c9eb76fac45af8e51
             30c81c46a35ce411e5fbc1191a0a52eff69f2445df4f9b17ad2b417be66c3710",
        );
        for (len, mac) in [
            (0, "bb1d6929e95937287fa37d129b756746"),
            (16, "070a16b46b4d4144f79bdd9dd04a287c"),
            (40, "dfa66747de9ae63030ca32611497c827"),
            (64, "51f0bebf7e3b9d92fc49741779363cfe"),
        ] {
            assert_eq!(cmac(&key, &[&msg[..len]]).unwrap().to_vec(), unhex(mac), "{len}");
            for cut in [1, 15, 16, 17, 33] {
                let cut = cut.min(len);
                let (a, b) = msg[..len].split_at(cut);
                assert_eq!(cmac(&key, &[a, &[], b]).unwrap().to_vec(), unhex(mac), "{len} cut {cut}");
            }
        }
    }

    /// SMB's CCM (16-byte tag, 11-byte nonce) against a one-off Python
    /// computation (pyca/cryptography AESCCM, tag_length 16), over lengths
    /// that end mid-block and cross the scratch chunk.
    #[test]
    fn ccm_matches_an_independent_computation() {
        let key = [0x42u8; 16];
        let nonce = [9u8; NONCE_LEN];
        for (len, tag) in [
            (17, "07f10f89a74001d2940eb908b3df0d35"),
            (CHUNK + 1, "d4d3055d6a252104bd36684cd86d0e75"),
            (3 * CHUNK + 5, "9f65880d7aff3d4e1f536bf714340109"),
        ] {
            let plain: Vec<u8> = (0..len).map(|i| (i * 31 + 7) as u8).collect();
            let mut buf = plain.clone();
            assert_eq!(seal(&key, &nonce, b"additional", &mut buf).unwrap().to_vec(), unhex(tag), "{len}");
            assert_eq!(buf[..16].to_vec(), unhex("4713ddda2520567155f23785a9603c3d"));
        }
    }

    #[test]
    fn ccm_round_trips_and_refuses_a_bad_tag() {
        let key = [0x42u8; 16];
        let nonce = [9u8; NONCE_LEN];
        for len in [0, 1, 15, 16, 17, CHUNK - 1, CHUNK, CHUNK + 1, 3 * CHUNK + 5] {
            let plain: Vec<u8> = (0..len).map(|i| (i * 31 + 7) as u8).collect();
            let mut buf = plain.clone();
            let tag = seal(&key, &nonce, b"additional", &mut buf).unwrap();
            assert!(len == 0 || buf != plain);
            let sealed = buf.clone();
            open(&key, &nonce, b"additional", &mut buf, &tag).unwrap();
            assert_eq!(buf, plain, "{len}");
            let mut bad = tag;
            bad[15] ^= 1;
            let mut again = sealed.clone();
            assert_eq!(open(&key, &nonce, b"additional", &mut again, &bad), Err(CryptoError::BadTag));
            if len > 0 {
                let mut again = sealed.clone();
                again[len - 1] ^= 0x10;
                assert_eq!(open(&key, &nonce, b"additional", &mut again, &tag), Err(CryptoError::BadTag));
            }
        }
    }

    /// The additional data's long form (0xFFFE and four length bytes),
    /// which SMB never needs (its additional data is 32 bytes), checked
    /// against pyca/cryptography AESCCM as above.
    #[test]
    fn long_additional_data() {
        let key = [1u8; 32];
        let aad = vec![5u8; 0x10000];
        let mut buf = b"payload".to_vec();
        let tag = seal(&key, &[2; NONCE_LEN], &aad, &mut buf).unwrap();
        assert_eq!([&buf[..], &tag].concat(), unhex("c06783f3d769e5eca7b9da7fb767350491d04cdaa0bdc6"));
        open(&key, &[2; NONCE_LEN], &aad, &mut buf, &tag).unwrap();
        assert_eq!(buf, b"payload");
    }
}
