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
            .field(
                "application_key",
                &format_args!("[{} bytes]", self.application_key.len()),
            )
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
    let cipher_base: &[u8] = if wide && session_key.len() > 16 {
        session_key
    } else {
        &key16
    };

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::unhex;

    fn hash(s: &str) -> [u8; 64] {
        let mut h = [0u8; 64];
        h.copy_from_slice(&unhex(s));
        h
    }

    /// The preauth hash of the 3.1.1 session in [`crate::crypto::preauth`]'s test.
    const PREAUTH_311: &str = "0DD13628CC3ED218EF9DF9772D436D0887AB9814BFAE63A80AA845F36909DB79
                               28622DDDAD522D9751640A459762C5A9D6BB084CBB3CE6BDADEF5D5BCE3C6C01";

    // Vectors of Microsoft's blog "SMB 2 and SMB 3 security in Windows 10: the
    // anatomy of signing and cryptographic keys", appendix. The blog names the
    // keys from the client's side: its EncryptionKey is client-to-server, our
    // decryption key.

    #[test]
    fn smb_3_0_vectors() {
        let k = derive(dialect::SMB3_0, &unhex("7CD451825D0450D235424E44BA6E78CC"), None, None);
        assert_eq!(k.signing_key, unhex("0B7E9C5CAC36C0F6EA9AB275298CEDCE"));
        assert_eq!(k.decryption_key, unhex("FAD27796665B313EBB578F388632B4F7"));
        assert_eq!(k.encryption_key, unhex("B0F0427F7CEB416D1D9DCC0CD4F99447"));
        assert_eq!(k.application_key, unhex("BB23A4575AA26C721AF525AF15A87B4F"));
        // Second channel: only the signing key differs.
        let k2 = derive(
            dialect::SMB3_0_2,
            &unhex("4E01A2B313BCF660CC250BEF021AEDE6"),
            None,
            None,
        );
        assert_eq!(k2.signing_key, unhex("BA1A17DBBFEC349BCA105563D598952F"));
    }

    #[test]
    fn smb_3_1_1_vectors() {
        let h = hash(PREAUTH_311);
        let k = derive(
            dialect::SMB3_1_1,
            &unhex("270E1BA896585EEB7AF3472D3B4C75A7"),
            Some(&h),
            Some(cipher::AES_128_GCM),
        );
        assert_eq!(k.signing_key, unhex("73FE7A9A77BEF0BDE49C650D8CCB5F76"));
        assert_eq!(k.decryption_key, unhex("629BCBC54422A0F572B97F45989B6073"));
        assert_eq!(k.encryption_key, unhex("E2AF0DCEFAC68DA71A0DFBD0D1350D74"));
        assert_eq!(k.application_key, unhex("6D7AD7954E9EC61E907B4D473DC178FF"));
    }

    /// "SMB 3.1.1 Encryption in Windows 10" (session 0x100000000025) and
    /// "Encryption in SMB 3.0: A protocol perspective", from the client's side.
    #[test]
    fn encryption_blog_vectors() {
        let h = hash(
            "B23F3CBFD69487D9832B79B1594A367CDD950909B774C3A4C412B4FCEA9EDDDBA7DB256BA2EA30E9
             77F11F9B113247578E0E915C6D2A513B8F2FCA5707DC8770",
        );
        let k = derive(
            dialect::SMB3_1_1,
            &unhex("419FDDF34C1E001909D362AE7FB6AF79"),
            Some(&h),
            Some(cipher::AES_128_GCM),
        );
        assert_eq!(k.decryption_key, unhex("A2F5E80E5D59103034F32E52F698E5EC"));
        assert_eq!(k.encryption_key, unhex("748C50868C90F302962A5C35F5F9A8BF"));

        let k = derive(dialect::SMB3_0, &unhex("B4546771B515F766A86735532DD6C4F0"), None, None);
        assert_eq!(k.decryption_key, unhex("261B72350558F2E9DCF613070383EDBF"));
        assert_eq!(k.encryption_key, unhex("8FE2B57EC34D2DB5B1A9727F526BBDB5"));
    }

    /// AES-256 keys (L = 256), checked against a one-off Python computation
    /// (hmac/hashlib SP800-108) since no published vector exists.
    #[test]
    fn aes_256_keys_are_32_bytes() {
        let h = hash(
            "B23F3CBFD69487D9832B79B1594A367CDD950909B774C3A4C412B4FCEA9EDDDBA7DB256BA2EA30E9
             77F11F9B113247578E0E915C6D2A513B8F2FCA5707DC8770",
        );
        let k = derive(
            dialect::SMB3_1_1,
            &unhex("419FDDF34C1E001909D362AE7FB6AF79"),
            Some(&h),
            Some(cipher::AES_256_GCM),
        );
        assert_eq!(
            k.encryption_key,
            unhex("f8cae3069ffcdc7662e2941207af463614d520a1a204aaf6b9ead136de931111")
        );
        assert_eq!(
            k.decryption_key,
            unhex("cb61eb110446fbcaeb6a83beedb92779130b833a706e5b3495879d52195b90ed")
        );
        assert_eq!(k.signing_key.len(), 16);
        assert_eq!(k.application_key.len(), 16);
    }

    #[test]
    fn smb_2_uses_the_session_key() {
        let k = derive(dialect::SMB2_1, &[1, 2, 3], None, None);
        let mut padded = vec![1, 2, 3];
        padded.resize(16, 0);
        assert_eq!(k.signing_key, padded);
        assert!(k.encryption_key.is_empty() && k.decryption_key.is_empty());
        // Longer keys are cut to 16 bytes.
        assert_eq!(derive(dialect::SMB2_0_2, &[7; 32], None, None).signing_key, vec![7; 16]);
    }

    #[test]
    fn short_key_is_zero_padded_for_smb3() {
        let a = derive(dialect::SMB3_0, &[9; 8], None, None);
        let mut k = vec![9; 8];
        k.resize(16, 0);
        let b = derive(dialect::SMB3_0, &k, None, None);
        assert!(a == b);
    }
}
