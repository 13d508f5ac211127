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
//!
//! AES-GCM is AWS-LC's (VAES and VPCLMULQDQ assembly where the CPU has
//! them, else AES-NI and PCLMULQDQ); AES-CCM is built on its CBC and CTR
//! modes ([`super::ccm`]). [`encrypt_in_place`] and [`decrypt_in_place`]
//! work in the frame's own buffer; [`encrypt`] and [`decrypt`] copy. Each
//! of them prepares the key (its AES key schedule, and GCM's GHASH table)
//! for the one call; a [`CipherKey`] is prepared once, when the session's
//! keys are derived, and used for every message of the session.

use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_128_GCM, AES_256_GCM};
use bytes::BufMut;

use super::cipher;
use super::{ccm, CryptoError};

/// The protocol id of a transform message.
pub const TRANSFORM_PROTOCOL_ID: [u8; 4] = [0xFD, b'S', b'M', b'B'];
/// Length of the transform header.
pub const TRANSFORM_HEADER_LEN: usize = 52;
/// The only flag: the message is encrypted (Flags/EncryptionAlgorithm of 3.x).
pub const TRANSFORM_FLAG_ENCRYPTED: u16 = 0x0001;
/// Offset of the additional authenticated data within the header.
const AAD_OFFSET: usize = 20;

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
        let h = buf
            .get(..TRANSFORM_HEADER_LEN)
            .ok_or(CryptoError::Malformed("transform header"))?;
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
        Ok(TransformHeader {
            signature,
            nonce,
            original_message_size,
            flags,
            session_id: u64::from_le_bytes(sid),
        })
    }

    /// Appends the 52-byte header (to a `Vec<u8>` or a `BytesMut`).
    pub fn encode(&self, out: &mut impl BufMut) {
        out.put_slice(&TRANSFORM_PROTOCOL_ID);
        out.put_slice(&self.signature);
        out.put_slice(&self.nonce);
        out.put_u32_le(self.original_message_size);
        out.put_u16_le(0);
        out.put_u16_le(self.flags);
        out.put_u64_le(self.session_id);
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

fn gcm_nonce(nonce: &[u8]) -> Result<Nonce, CryptoError> {
    Nonce::try_assume_unique_for_key(nonce).map_err(|_| CryptoError::Malformed("nonce length"))
}

fn ccm_nonce(nonce: &[u8]) -> Result<[u8; ccm::NONCE_LEN], CryptoError> {
    nonce.try_into().map_err(|_| CryptoError::Malformed("nonce length"))
}

/// An encryption or decryption key of a session, prepared once for every
/// message it seals or opens ([MS-SMB2] 3.1.4.3): AES-GCM's key schedule
/// and GHASH table, or AES-CCM's CBC and CTR key schedules.
pub struct CipherKey {
    cipher: u16,
    key: Prepared,
}

// One per session (or channel), made once: its size does not matter, and
// boxing the large variants would add a pointer chase per message.
#[allow(clippy::large_enum_variant)]
enum Prepared {
    Ccm(ccm::CcmKey),
    Gcm(LessSafeKey),
}

impl std::fmt::Debug for CipherKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Keys stay out of logs.
        f.debug_struct("CipherKey").field("cipher", &format_args!("{:#06x}", self.cipher)).finish_non_exhaustive()
    }
}

impl CipherKey {
    /// Prepares `key` for `cipher` (an id of [`cipher`]). An unknown cipher
    /// is [`CryptoError::UnknownCipher`], a key whose length does not fit
    /// it [`CryptoError::KeyLength`].
    pub fn new(cipher: u16, key: &[u8]) -> Result<CipherKey, CryptoError> {
        check_key(cipher, key)?;
        let prepared = match cipher {
            cipher::AES_128_CCM | cipher::AES_256_CCM => Prepared::Ccm(ccm::CcmKey::new(key)?),
            _ => {
                let alg = if cipher == cipher::AES_128_GCM { &AES_128_GCM } else { &AES_256_GCM };
                let unbound = UnboundKey::new(alg, key).map_err(|_| CryptoError::KeyLength(key.len()))?;
                Prepared::Gcm(LessSafeKey::new(unbound))
            }
        };
        Ok(CipherKey { cipher, key: prepared })
    }

    /// The cipher id the key is for.
    pub fn cipher(&self) -> u16 {
        self.cipher
    }

    /// Seals `buf` in place; returns the tag.
    fn seal(&self, nonce: &[u8], aad: &[u8], buf: &mut [u8]) -> Result<[u8; 16], CryptoError> {
        match &self.key {
            Prepared::Ccm(k) => k.seal(&ccm_nonce(nonce)?, aad, buf),
            Prepared::Gcm(k) => {
                let tag = k
                    .seal_in_place_separate_tag(gcm_nonce(nonce)?, Aad::from(aad), buf)
                    .map_err(|_| CryptoError::Malformed("message too long for the cipher"))?;
                let mut out = [0u8; 16];
                out.copy_from_slice(tag.as_ref());
                Ok(out)
            }
        }
    }

    /// Opens `buf` in place, checking `tag`. On an error `buf` holds bytes
    /// that must not be used.
    fn open(&self, nonce: &[u8], aad: &[u8], buf: &mut [u8], tag: &[u8; 16]) -> Result<(), CryptoError> {
        match &self.key {
            Prepared::Ccm(k) => k.open(&ccm_nonce(nonce)?, aad, buf, tag),
            Prepared::Gcm(k) => k
                .open_in_place_separate_tag(gcm_nonce(nonce)?, Aad::from(aad), tag, buf)
                .map(|_| ())
                .map_err(|_| CryptoError::BadTag),
        }
    }

    /// [`encrypt`] with this key.
    pub fn encrypt(&self, session_id: u64, nonce: &[u8], plain: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let mut out = Vec::with_capacity(TRANSFORM_HEADER_LEN + plain.len());
        out.resize(TRANSFORM_HEADER_LEN, 0);
        out.extend_from_slice(plain);
        self.encrypt_in_place(session_id, nonce, &mut out)?;
        Ok(out)
    }

    /// [`encrypt_in_place`] with this key: `msg` is
    /// [`TRANSFORM_HEADER_LEN`] bytes of room followed by the plaintext.
    pub fn encrypt_in_place(&self, session_id: u64, nonce: &[u8], msg: &mut [u8]) -> Result<(), CryptoError> {
        let n = nonce_len(self.cipher)?;
        let nonce = nonce.get(..n).ok_or(CryptoError::Malformed("nonce too short"))?;
        let plain_len = msg.len().checked_sub(TRANSFORM_HEADER_LEN).ok_or(CryptoError::Malformed("no room for the header"))?;
        let size = u32::try_from(plain_len).map_err(|_| CryptoError::Malformed("message too long"))?;
        let mut hdr = TransformHeader {
            signature: [0; 16],
            nonce: [0; 16],
            original_message_size: size,
            flags: TRANSFORM_FLAG_ENCRYPTED,
            session_id,
        };
        hdr.nonce[..n].copy_from_slice(nonce);
        let (head, body) = msg.split_at_mut(TRANSFORM_HEADER_LEN);
        hdr.encode(&mut &mut head[..]);
        let tag = self.seal(&head[AAD_OFFSET..n + AAD_OFFSET], &head[AAD_OFFSET..], body)?;
        head[4..20].copy_from_slice(&tag);
        Ok(())
    }

    /// [`decrypt`] with this key.
    pub fn decrypt(&self, msg: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let mut buf = msg.to_vec();
        self.decrypt_in_place(&mut buf)?;
        buf.drain(..TRANSFORM_HEADER_LEN);
        Ok(buf)
    }

    /// [`decrypt_in_place`] with this key: on success the plaintext is
    /// `msg[TRANSFORM_HEADER_LEN..]`.
    pub fn decrypt_in_place(&self, msg: &mut [u8]) -> Result<(), CryptoError> {
        let hdr = TransformHeader::parse(msg)?;
        let n = nonce_len(self.cipher)?;
        if hdr.flags != TRANSFORM_FLAG_ENCRYPTED {
            return Err(CryptoError::Malformed("transform flags"));
        }
        let (head, body) = msg.split_at_mut(TRANSFORM_HEADER_LEN);
        if hdr.original_message_size as usize != body.len() || body.is_empty() {
            return Err(CryptoError::Malformed("transform original message size"));
        }
        self.open(&hdr.nonce[..n], &head[AAD_OFFSET..], body, &hdr.signature)
    }
}

/// Encrypts `plain` (one or more SMB2 messages, a compound) for `session_id`
/// and returns the whole transform message ([MS-SMB2] 3.1.4.3).
///
/// `nonce` holds at least 11 (CCM) or 12 (GCM) bytes of fresh, never-reused
/// nonce; only that many are used. For 3.0 and 3.0.2, where no cipher is
/// negotiated, pass [`cipher::AES_128_CCM`]. The key is prepared for this
/// one call; [`CipherKey`] prepares it once for many.
pub fn encrypt(cipher: u16, key: &[u8], session_id: u64, nonce: &[u8], plain: &[u8]) -> Result<Vec<u8>, CryptoError> {
    CipherKey::new(cipher, key)?.encrypt(session_id, nonce, plain)
}

/// [`encrypt`] in place: `msg` is [`TRANSFORM_HEADER_LEN`] bytes of room
/// followed by the plaintext; the header is written into the room and the
/// plaintext encrypted where it lies.
pub fn encrypt_in_place(cipher: u16, key: &[u8], session_id: u64, nonce: &[u8], msg: &mut [u8]) -> Result<(), CryptoError> {
    CipherKey::new(cipher, key)?.encrypt_in_place(session_id, nonce, msg)
}

/// Decrypts a whole transform message and checks its tag (additional data:
/// header bytes 20..52). Returns the plaintext SMB2 message(s).
///
/// The caller parses the header first ([`TransformHeader::parse`]) to find the
/// session, and so the key, from `session_id`.
pub fn decrypt(cipher: u16, key: &[u8], msg: &[u8]) -> Result<Vec<u8>, CryptoError> {
    CipherKey::new(cipher, key)?.decrypt(msg)
}

/// [`decrypt`] in place: on success the plaintext is
/// `msg[TRANSFORM_HEADER_LEN..]`. On an error `msg` holds bytes that must
/// not be used (the connection is closed anyway).
pub fn decrypt_in_place(cipher: u16, key: &[u8], msg: &mut [u8]) -> Result<(), CryptoError> {
    CipherKey::new(cipher, key)?.decrypt_in_place(msg)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::unhex;

    // Vectors of Microsoft's Open Specifications blogs "SMB 3.1.1 Encryption in
    // Windows 10" and "Encryption in SMB 3.0: A protocol perspective".

    const WRITE_311: &str = "FE534D4240000100000000000900010008000000000000000500000000000000FFFE000001000000
                             25000000001000000000000000000000000000000000000031007000170000000000000000000000
                             0600000004000000010000000400000000000000000000007000000000000000536D623320656E63
                             72797074696F6E2074657374696E67";

    #[test]
    fn aes_128_gcm_request_of_the_3_1_1_blog() {
        let key = unhex("A2F5E80E5D59103034F32E52F698E5EC");
        let plain = unhex(WRITE_311);
        let expected = unhex(
            "FD534D42BD73D97D2BC9001BCAFAC0FDFF5FEEBCC7D6822D269CAF48904C664C0000000087000000
             0000010025000000001000006ECDD2A7AFC7B47763057A041B8FD4DAFFE990B70C9E09D36C084E02
             D14EF247F8BDE38ACF6256F8B1D3B56F77FBDEB312FEA5E92CBCC1ED8FB2EBBFAA75E49A4A394BB4
             4576545567C24D4C014D47C9FBDFDAFD2C4F9B72F8D256452620A299F48E29E53D6B61D1C13A19E9
             1AF013F00D17E3ABC2FC3D36C8C1B6B93973253852DBD442E46EE8",
        );
        let nonce = unhex("C7D6822D269CAF48904C664C");
        let out = encrypt(cipher::AES_128_GCM, &key, 0x1000_0000_0025, &nonce, &plain).unwrap();
        assert_eq!(out, expected);
        assert_eq!(decrypt(cipher::AES_128_GCM, &key, &expected).unwrap(), plain);
        let h = TransformHeader::parse(&expected).unwrap();
        assert_eq!(h.session_id, 0x1000_0000_0025);
        assert_eq!(h.original_message_size, 0x87);
        assert_eq!(h.flags, TRANSFORM_FLAG_ENCRYPTED);
    }

    #[test]
    fn aes_128_gcm_response_of_the_3_1_1_blog() {
        let key = unhex("748C50868C90F302962A5C35F5F9A8BF");
        let msg = unhex(
            "FD534D42ACBE1CB7ED343ADF1725EF144D90D4B0E06831DD2E8EB7B4000000000000000050000000
             00000100250000000010000026BBBF949983A6C1C796559D0F2C510CB651D1F7B6AC8DED32A2A0B8
             F2D793A815C6F6B848D69767A215841A42D400AE6DDB5F0B44173A014973321FDD7950DA6179159B
             82E03C9E18A050FF0EA1C967",
        );
        let plain = unhex(
            "FE534D4240000100000000000900010001000000000000000500000000000000FFFE000001000000
             25000000001000000000000000000000000000000000000011000000170000000000000000000000",
        );
        assert_eq!(decrypt(cipher::AES_128_GCM, &key, &msg).unwrap(), plain);
    }

    #[test]
    fn aes_128_ccm_messages_of_the_3_0_blog() {
        // Client to server: Windows fills all 16 nonce bytes; CCM uses 11, the
        // additional data covers all 16.
        let key = unhex("261B72350558F2E9DCF613070383EDBF");
        let msg = unhex(
            "FD534D4281A286535415445DAE393921E44FA42E66E69A111892584FB5ED524A
             744DA3EE87000000000001001100001400E4080025C8FEE16605A437832D1CD5
             2DA9F4645333482A175FE5384563F45FCDAFAEF38BC62BA4D5C62897996625A4
             4C29BE5658DE2E6117585779E7B59FFD971278D08580D7FA899E410E910EABF5
             AA1DB43050B33B49182637759AC15D84BFCDF5B6B238993C0F4CF4D6012023F6
             C627297075D84B7803912D0A9639634453595EF3E33FFE4E7AC2AB",
        );
        let plain = unhex(
            "FE534D4240000100000000000900400008000000000000000400000000000000
             FFFE0000010000001100001400E4080000000000000000000000000000000000
             3100700017000000000000000000000015010000390000020100000039020000
             00000000000000007000000000000000536D623320656E6372797074696F6E20
             74657374696E67",
        );
        assert_eq!(decrypt(cipher::AES_128_CCM, &key, &msg).unwrap(), plain);
        // Our own encryption with the same 11 nonce bytes gives the same ciphertext
        // (the tag differs: our unused nonce bytes are zero).
        let ours = encrypt(
            cipher::AES_128_CCM,
            &key,
            0x8E40014000011,
            &unhex("66E69A111892584FB5ED52"),
            &plain,
        )
        .unwrap();
        assert_eq!(ours[TRANSFORM_HEADER_LEN..], msg[TRANSFORM_HEADER_LEN..]);
        assert_eq!(decrypt(cipher::AES_128_CCM, &key, &ours).unwrap(), plain);

        // Server to client.
        let key = unhex("8FE2B57EC34D2DB5B1A9727F526BBDB5");
        let msg = unhex(
            "FD534D42A6015530A18F6D9AFFE22AFAE8E66484860000000000000011000014
             00E4080050000000000001001100001400E40800DBF46435C5F14169293CE079
             E344479BF670227E49873F458672C3098DAC467DD5809F369D67409166515787
             1483E01F7BECD02064EAC3E235F913668BBC2F097980D4B378F1993EFF6E60D1
             77309E5B",
        );
        let plain = unhex(
            "FE534D4240000100000000000900210009000000000000000400000000000000
             FFFE0000010000001100001400E4080000000000000000000000000000000000
             11000000170000000000000000000000",
        );
        assert_eq!(decrypt(cipher::AES_128_CCM, &key, &msg).unwrap(), plain);
    }

    /// AES-256: no published vector; checked against a one-off Python
    /// computation (pyca/cryptography AESGCM and AESCCM, tag 16) with the
    /// 3.1.1 blog's WRITE request and the 256-bit key of the KDF test.
    #[test]
    fn aes_256_matches_an_independent_computation() {
        let key = unhex("f8cae3069ffcdc7662e2941207af463614d520a1a204aaf6b9ead136de931111");
        let plain = unhex(WRITE_311);
        let gcm = unhex(
            "fd534d42e7734c2e087ac9c6f601e946dd8cf01cc7d6822d269caf48904c664c0000000087000000000001002500000000100000
             cd157299119d2654a3a84fc81ce4f049baabeb95d40fe1366f974462e70bd931af0e2ec9fd13b6392b6b67debdecacafef7b3bf4
             489fa99b48303effbf00e41f267f6b5fc13a761a04dd6f72ef5860639897d448cec55d56b6dc94571f0288c18120acb217861620
             525f0e439d1895c945b2c6b793b168156e3d86c281441fc3d569737b8ac71d",
        );
        let ccm = unhex(
            "fd534d42433c43b0057967fafc24b0a14969d92cc7d6822d269caf48904c66000000000087000000000001002500000000100000
             d68769abadf71e4ef80ece3d0facd40282f4877cadb59d2a01d1a2932c1b626de988eacb8b3f1e713662351c0fd32054d49a137a
             8c6c05754823f3b074eb37da7cf4b71f7a108a63dd03bc8f716d7266bbe0b65dfc62a3ed141a2f4a95d3dae9eb477ae042d8213e
             feb3504063a0b381425d443be030e0a9f526327c742f89f00a69df41a17f58",
        );
        let nonce = unhex("C7D6822D269CAF48904C664C");
        assert_eq!(
            encrypt(cipher::AES_256_GCM, &key, 0x1000_0000_0025, &nonce, &plain).unwrap(),
            gcm
        );
        assert_eq!(
            encrypt(cipher::AES_256_CCM, &key, 0x1000_0000_0025, &nonce[..11], &plain).unwrap(),
            ccm
        );
        assert_eq!(decrypt(cipher::AES_256_GCM, &key, &gcm).unwrap(), plain);
        assert_eq!(decrypt(cipher::AES_256_CCM, &key, &ccm).unwrap(), plain);
    }

    fn all() -> [(u16, Vec<u8>); 4] {
        [
            (cipher::AES_128_CCM, vec![1; 16]),
            (cipher::AES_128_GCM, vec![2; 16]),
            (cipher::AES_256_CCM, vec![3; 32]),
            (cipher::AES_256_GCM, vec![4; 32]),
        ]
    }

    #[test]
    fn round_trip_tamper_and_truncation_for_every_cipher() {
        let plain = unhex(WRITE_311);
        for (c, key) in all() {
            let msg = encrypt(c, &key, 7, &[9; 12], &plain).unwrap();
            assert_eq!(msg.len(), TRANSFORM_HEADER_LEN + plain.len());
            assert_eq!(decrypt(c, &key, &msg).unwrap(), plain, "{c}");

            // Any flipped bit of the tag, the additional data or the ciphertext.
            for at in [4, 19, 20, 35, 44, 51, 52, msg.len() - 1] {
                let mut bad = msg.clone();
                bad[at] ^= 0x01;
                assert_eq!(decrypt(c, &key, &bad), Err(CryptoError::BadTag), "{c} byte {at}");
            }
            let mut wrong = key.clone();
            wrong[0] ^= 1;
            assert_eq!(decrypt(c, &wrong, &msg), Err(CryptoError::BadTag));

            // Every prefix fails cleanly.
            for cut in 0..msg.len() {
                assert!(
                    matches!(decrypt(c, &key, &msg[..cut]), Err(CryptoError::Malformed(_))),
                    "{c} cut {cut}"
                );
            }
            // Trailing bytes too.
            let mut long = msg.clone();
            long.push(0);
            assert!(matches!(decrypt(c, &key, &long), Err(CryptoError::Malformed(_))));
            // The flags must say "encrypted".
            let mut flags = msg.clone();
            flags[42] = 0;
            assert!(matches!(decrypt(c, &key, &flags), Err(CryptoError::Malformed(_))));
        }
    }

    #[test]
    fn bad_parameters_are_refused() {
        let plain = [0u8; 70];
        assert_eq!(
            encrypt(5, &[0; 16], 1, &[0; 12], &plain),
            Err(CryptoError::UnknownCipher(5))
        );
        assert_eq!(
            encrypt(cipher::AES_128_GCM, &[0; 32], 1, &[0; 12], &plain),
            Err(CryptoError::KeyLength(32))
        );
        assert_eq!(
            encrypt(cipher::AES_256_CCM, &[0; 16], 1, &[0; 12], &plain),
            Err(CryptoError::KeyLength(16))
        );
        assert!(matches!(
            encrypt(cipher::AES_128_GCM, &[0; 16], 1, &[0; 11], &plain),
            Err(CryptoError::Malformed(_))
        ));
        let msg = encrypt(cipher::AES_128_CCM, &[0; 16], 1, &[0; 11], &plain).unwrap();
        assert_eq!(decrypt(0, &[0; 16], &msg), Err(CryptoError::UnknownCipher(0)));
        assert_eq!(
            decrypt(cipher::AES_128_CCM, &[0; 15], &msg),
            Err(CryptoError::KeyLength(15))
        );
        let mut smb2 = msg.clone();
        smb2[0] = 0xFE;
        assert!(matches!(TransformHeader::parse(&smb2), Err(CryptoError::Malformed(_))));
    }

    /// One prepared key per cipher, used for many messages in a row (so
    /// nothing may carry over from one to the next), gives the bytes of
    /// the free functions, and then still the vectors above.
    #[test]
    fn prepared_keys_match_the_free_functions() {
        for (c, key) in all() {
            let prepared = CipherKey::new(c, &key).unwrap();
            assert_eq!(prepared.cipher(), c);
            for (i, len) in [1usize, 15, 16, 17, 64, 4095, 16_385, 65_536, 70_001, 1 << 20].into_iter().enumerate() {
                let plain: Vec<u8> = (0..len).map(|j| (j * 31 + len) as u8).collect();
                let nonce = [i as u8 + 1; 16];
                let free = encrypt(c, &key, 0x55 + i as u64, &nonce, &plain).unwrap();
                assert_eq!(prepared.encrypt(0x55 + i as u64, &nonce, &plain).unwrap(), free, "{c} {len}");
                let mut frame = vec![0u8; TRANSFORM_HEADER_LEN];
                frame.extend_from_slice(&plain);
                prepared.encrypt_in_place(0x55 + i as u64, &nonce, &mut frame).unwrap();
                assert_eq!(frame, free, "{c} {len}");
                prepared.decrypt_in_place(&mut frame).unwrap();
                assert_eq!(frame[TRANSFORM_HEADER_LEN..], plain[..], "{c} {len}");
                assert_eq!(prepared.decrypt(&free).unwrap(), plain, "{c} {len}");
                let mut bad = free.clone();
                bad[len / 2 + TRANSFORM_HEADER_LEN] ^= 1;
                assert_eq!(prepared.decrypt(&bad), Err(CryptoError::BadTag), "{c} {len}");
                assert_eq!(decrypt(c, &key, &bad), Err(CryptoError::BadTag), "{c} {len}");
            }
        }
        let key = CipherKey::new(cipher::AES_128_GCM, &unhex("A2F5E80E5D59103034F32E52F698E5EC")).unwrap();
        let plain = unhex(WRITE_311);
        let sealed = key.encrypt(0x1000_0000_0025, &unhex("C7D6822D269CAF48904C664C"), &plain).unwrap();
        assert_eq!(sealed[4..20], unhex("BD73D97D2BC9001BCAFAC0FDFF5FEEBC")[..]);
        assert_eq!(key.decrypt(&sealed).unwrap(), plain);
    }

    #[test]
    fn a_prepared_key_of_another_length_or_an_unknown_cipher_is_refused() {
        for (c, key) in all() {
            for n in [0, 1, 15, 17, 24, 31, 33] {
                assert_eq!(CipherKey::new(c, &vec![1; n]).unwrap_err(), CryptoError::KeyLength(n), "{c} {n}");
            }
            let other = if key.len() == 16 { 32 } else { 16 };
            assert_eq!(CipherKey::new(c, &vec![1; other]).unwrap_err(), CryptoError::KeyLength(other));
        }
        for c in [0, 5, 0xffff] {
            assert_eq!(CipherKey::new(c, &[0; 16]).unwrap_err(), CryptoError::UnknownCipher(c));
        }
    }

    #[test]
    fn header_encode_parse_round_trip() {
        let h = TransformHeader {
            signature: [1; 16],
            nonce: [2; 16],
            original_message_size: 0x1234,
            flags: 1,
            session_id: 0x0102_0304_0506_0708,
        };
        let mut out = Vec::new();
        h.encode(&mut out);
        assert_eq!(out.len(), TRANSFORM_HEADER_LEN);
        assert_eq!(TransformHeader::parse(&out).unwrap(), h);
        for cut in 0..out.len() {
            assert!(TransformHeader::parse(&out[..cut]).is_err());
        }
    }
}
