//! An authenticated (or authenticating) session ([MS-SMB2] 3.3.1.8).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use protocol::auth::ntlm;
use protocol::crypto::kdf::SessionKeys;
use protocol::crypto::preauth::PreauthHash;
use protocol::crypto::signing::SigningAlgorithm;
use protocol::crypto::{CipherKey, CryptoError, SigningKey};

use super::{lock, Open, Tree};
use crate::model::{Owner, SessionInfo};

/// How far authentication got on this runtime handle (not saved: a session
/// whose node died mid-authentication starts over).
pub enum AuthState {
    /// Between the first and the last SESSION_SETUP leg (a logon or a
    /// re-authentication).
    InProgress { ntlm: Box<ntlm::ServerContext>, preauth: PreauthHash, mech_list: Option<Vec<u8>> },
    /// The exchange completed. The session's long-lived fields are the
    /// state model's record ([`SessionInner::info`]), which its
    /// SESSION_SETUP's point 3 brings in.
    Valid,
    /// The handle was torn down (LOGOFF, its last channel gone, a
    /// reconnect with PreviousSessionId, a failed logon): no request
    /// reaches the session through it again.
    Expired,
}

/// Keys and policies the pipeline needs for every message of a session
/// (or of one of its channels, which signs with its own key).
///
/// The keys are prepared once, here ([`SigningKey`], [`CipherKey`]: key
/// schedules, GHASH tables, CMAC subkeys), not per message; the raw bytes
/// stay for what exports them (the state model's session keys). Built only
/// by [`SessionCrypto::new`] and [`SessionCrypto::for_channel`], so the
/// prepared keys always match the raw ones.
#[derive(Clone)]
pub struct SessionCrypto {
    pub dialect: u16,
    pub signing_alg: SigningAlgorithm,
    /// Empty for a session without keys (anonymous, guest).
    pub signing_key: Vec<u8>,
    pub encryption_key: Vec<u8>,
    pub decryption_key: Vec<u8>,
    pub cipher: u16,
    pub signing_required: bool,
    pub encrypt_data: bool,
    /// `None` when `signing_key` is empty.
    signer: Option<Arc<SigningKey>>,
    /// What [`CipherKey::new`] said of the raw key: no cipher negotiated,
    /// or no key, is an error each message gets.
    encryptor: Result<Arc<CipherKey>, CryptoError>,
    decryptor: Result<Arc<CipherKey>, CryptoError>,
}

impl SessionCrypto {
    /// The session's crypto from its derived `keys` (`None`: a session
    /// without keys). A signing key that does not fit `signing_alg` is an
    /// error; an encryption key that does not fit `cipher` (or `cipher` 0,
    /// none negotiated) only fails each message that would use it, as
    /// before the keys were prepared.
    pub fn new(
        dialect: u16,
        signing_alg: SigningAlgorithm,
        cipher: u16,
        keys: Option<SessionKeys>,
        signing_required: bool,
        encrypt_data: bool,
    ) -> Result<SessionCrypto, CryptoError> {
        let keys = keys.unwrap_or_else(|| SessionKeys {
            signing_key: Vec::new(),
            encryption_key: Vec::new(),
            decryption_key: Vec::new(),
            application_key: Vec::new(),
        });
        let cipher_key = |raw: &[u8]| CipherKey::new(cipher, raw).map(Arc::new);
        Ok(SessionCrypto {
            dialect,
            signing_alg,
            signer: signer(signing_alg, &keys.signing_key)?,
            encryptor: cipher_key(&keys.encryption_key),
            decryptor: cipher_key(&keys.decryption_key),
            signing_key: keys.signing_key,
            encryption_key: keys.encryption_key,
            decryption_key: keys.decryption_key,
            cipher,
            signing_required,
            encrypt_data,
        })
    }

    /// A channel of this session: its own signing key and algorithm
    /// (Channel.SigningKey, [MS-SMB2] 3.3.5.5.3), the session's encryption
    /// keys (shared, not prepared again).
    pub fn for_channel(
        &self,
        signing_alg: SigningAlgorithm,
        signing_key: Vec<u8>,
    ) -> Result<SessionCrypto, CryptoError> {
        Ok(SessionCrypto { signing_alg, signer: signer(signing_alg, &signing_key)?, signing_key, ..self.clone() })
    }

    /// Signs `msg` in place ([MS-SMB2] 3.1.4.1); a session without a
    /// signing key leaves it unchanged (callers check `signing_key` first).
    pub fn sign(&self, msg: &mut [u8]) {
        if let Some(k) = &self.signer {
            k.sign(msg);
        }
    }

    /// Checks `msg`'s signature; false without a signing key.
    pub fn verify(&self, msg: &[u8]) -> bool {
        self.signer.as_ref().is_some_and(|k| k.verify(msg))
    }

    /// Encrypts a frame in place with the session's encryption key
    /// ([`CipherKey::encrypt_in_place`]).
    pub fn encrypt_in_place(&self, session_id: u64, nonce: &[u8], msg: &mut [u8]) -> Result<(), CryptoError> {
        self.encryptor.as_ref().map_err(Clone::clone)?.encrypt_in_place(session_id, nonce, msg)
    }

    /// Decrypts a transform message in place with the session's decryption
    /// key ([`CipherKey::decrypt_in_place`]).
    pub fn decrypt_in_place(&self, msg: &mut [u8]) -> Result<(), CryptoError> {
        self.decryptor.as_ref().map_err(Clone::clone)?.decrypt_in_place(msg)
    }
}

fn signer(alg: SigningAlgorithm, raw: &[u8]) -> Result<Option<Arc<SigningKey>>, CryptoError> {
    match raw.is_empty() {
        true => Ok(None),
        false => SigningKey::new(alg, raw).map(|k| Some(Arc::new(k))),
    }
}

/// A session's runtime handle ([MS-SMB2] 3.3.1.8): what cannot be saved
/// (the authentication exchange, the prepared keys, the channels, the
/// connection, the handles of its opens and tree connects), and the state
/// model's record of the rest, as last applied.
///
/// The long-lived fields (the user, guest and anonymous, the ClientGuid,
/// the keys' bytes and policies, the expiry, the tree connects and their
/// share) are the model's alone ([`crate::model::SessionRecord`]). The
/// handle holds an immutable copy of the record, and of each tree
/// connect's, made from the model when a delta that changes them is
/// applied ([`super::Server::refresh_handles`]), so that a request reads
/// them under the session's own lock and not the model's; nothing else
/// sets them.
pub struct Session {
    pub id: u64,
    pub inner: Mutex<SessionInner>,
    /// The session's place in the server's count of sessions, given back
    /// when the session object goes.
    pub slot: Option<crate::limits::SessionSlot>,
    /// The state model has the session ([`super::deltas::session_up`]):
    /// it completed authentication and has not ended.
    pub up: std::sync::atomic::AtomicBool,
    /// The highest tree id handed out in this session (TreeConnect.TreeId is
    /// the session's, [MS-SMB2] 3.3.5.7; the model's `last_tree` follows it
    /// as the tree connects are applied).
    trees_handed: AtomicU32,
}

pub struct SessionInner {
    pub auth: AuthState,
    /// The model's record of the session (`None` before its SessionUp is
    /// applied); set only by [`super::Server::refresh_handles`].
    info: Option<Arc<SessionInfo>>,
    /// The keys prepared for use (runtime: key schedules, GHASH tables).
    pub crypto: Option<Arc<SessionCrypto>>,
    /// Tree connects by id: handles made from the model's records (disk
    /// shares, [`super::Server::refresh_handles`]), and IPC$'s, which the
    /// model does not record (its pipes are not saved).
    pub trees: HashMap<u32, Arc<Tree>>,
    /// Opens by volatile id.
    pub opens: HashMap<u64, Arc<Open>>,
    /// The connection the session was established on (Session.Connection).
    pub conn_id: u64,
    /// The connections the session is reachable from: the one it was
    /// established on and those bound to it (Session.ChannelList, [MS-SMB2]
    /// 3.3.1.8). The session ends when the last one goes.
    pub channels: Vec<u64>,
}

impl SessionInner {
    /// The model's record of the session, as last applied; `None` before
    /// its logon's point 3.
    pub fn info(&self) -> Option<&SessionInfo> {
        self.info.as_deref()
    }

    /// Installs the model's record (`super::record`'s refresh only).
    pub(super) fn set_info(&mut self, info: Option<Arc<SessionInfo>>) {
        self.info = info;
    }

    /// The authenticated user (Session.SecurityContext); empty before the
    /// logon's point 3.
    pub fn owner(&self) -> Owner {
        self.info().map_or_else(Owner::default, |i| i.owner.clone())
    }

    /// An anonymous or guest session (one without keys of its own)?
    pub fn unauthenticated(&self) -> bool {
        self.info().is_some_and(|i| i.anonymous || i.guest)
    }

    /// The ClientGuid of the connection the session was established on.
    pub fn client_guid(&self) -> Option<[u8; 16]> {
        self.info().map(|i| i.client_guid.0)
    }
}

impl Session {
    pub fn new(id: u64, conn_id: u64, auth: AuthState) -> Session {
        Session {
            id,
            inner: Mutex::new(SessionInner {
                auth,
                info: None,
                crypto: None,
                trees: HashMap::new(),
                opens: HashMap::new(),
                conn_id,
                channels: vec![conn_id],
            }),
            slot: None,
            up: std::sync::atomic::AtomicBool::new(false),
            trees_handed: AtomicU32::new(0),
        }
    }

    /// The id for the session's next tree connect, counting from 1 (`None`
    /// once the ids have run out: 0 and 0xFFFFFFFF are never ids).
    pub fn next_tree_id(&self) -> Option<u32> {
        self.trees_handed
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |t| t.checked_add(1).filter(|n| *n < u32::MAX))
            .ok()
            .map(|t| t + 1)
    }

    /// The session, counted in the server's sessions with `slot`.
    pub fn counted(mut self, slot: crate::limits::SessionSlot) -> Session {
        self.slot = Some(slot);
        self
    }

    pub fn crypto(&self) -> Option<Arc<SessionCrypto>> {
        lock(&self.inner).crypto.clone()
    }

    /// Authenticated, in the model, and not torn down.
    pub fn is_valid(&self) -> bool {
        let inner = lock(&self.inner);
        matches!(inner.auth, AuthState::Valid) && inner.info.is_some()
    }

    pub fn tree(&self, id: u32) -> Option<Arc<Tree>> {
        lock(&self.inner).trees.get(&id).cloned()
    }

    pub fn open(&self, volatile_id: u64) -> Option<Arc<Open>> {
        lock(&self.inner).opens.get(&volatile_id).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use protocol::crypto::{cipher, dialect, kdf, signing, transform};

    /// Tree ids are the session's: each session counts from 1, skipping
    /// 0xFFFFFFFF (the related-compound placeholder), and refuses once they
    /// have run out rather than handing one out twice.
    #[test]
    fn tree_ids_are_counted_per_session() {
        let (a, b) = (Session::new(1, 1, AuthState::Valid), Session::new(2, 1, AuthState::Valid));
        assert_eq!((a.next_tree_id(), a.next_tree_id()), (Some(1), Some(2)));
        assert_eq!(b.next_tree_id(), Some(1), "another session counts on its own");
        a.trees_handed.store(u32::MAX - 2, Ordering::Relaxed);
        assert_eq!(a.next_tree_id(), Some(u32::MAX - 1));
        assert_eq!(a.next_tree_id(), None, "0xFFFFFFFF is never a tree id");
        assert_eq!(a.next_tree_id(), None, "nor is 0 after it");
    }

    fn keys(c: u16) -> SessionKeys {
        kdf::derive(dialect::SMB3_1_1, &[0x42; 16], Some(&[7; 64]), Some(c))
    }

    /// The session's prepared keys sign, verify, encrypt and decrypt as the
    /// free functions do with its raw keys; a channel signs with its own key
    /// and encrypts with the session's.
    #[test]
    fn prepared_keys_act_as_the_raw_ones() {
        for (alg, c) in [
            (SigningAlgorithm::AesGmac, cipher::AES_128_GCM),
            (SigningAlgorithm::AesCmac, cipher::AES_256_CCM),
            (SigningAlgorithm::HmacSha256, cipher::AES_128_CCM),
        ] {
            let crypto = SessionCrypto::new(dialect::SMB3_1_1, alg, c, Some(keys(c)), true, true).unwrap();
            let mut msg: Vec<u8> = (0..300u32).map(|i| i as u8).collect();
            let mut free = msg.clone();
            crypto.sign(&mut msg);
            signing::sign(alg, &crypto.signing_key, &mut free);
            assert_eq!(msg, free, "{alg:?}");
            assert!(crypto.verify(&msg));

            let mut frame = vec![0u8; transform::TRANSFORM_HEADER_LEN + 300];
            let mut free = frame.clone();
            crypto.encrypt_in_place(9, &[3; 16][..transform::nonce_len(c).unwrap()], &mut frame).unwrap();
            transform::encrypt_in_place(
                c,
                &crypto.encryption_key,
                9,
                &[3; 16][..transform::nonce_len(c).unwrap()],
                &mut free,
            )
            .unwrap();
            assert_eq!(frame, free, "{c}");
            // Sealed with the decryption key, as a client would.
            let sealed = transform::encrypt(
                c,
                &crypto.decryption_key,
                9,
                &[4; 16][..transform::nonce_len(c).unwrap()],
                &[5; 80],
            )
            .unwrap();
            let mut opened = sealed.clone();
            crypto.decrypt_in_place(&mut opened).unwrap();
            assert_eq!(opened[transform::TRANSFORM_HEADER_LEN..], [5; 80]);
            assert!(crypto.decrypt_in_place(&mut frame).is_err(), "not the decryption key");

            let channel = crypto.for_channel(alg, vec![0x77; 16]).unwrap();
            let mut on_channel = msg.clone();
            channel.sign(&mut on_channel);
            assert_ne!(on_channel, msg);
            assert!(channel.verify(&on_channel) && !crypto.verify(&on_channel));
            let mut again = sealed.clone();
            channel.decrypt_in_place(&mut again).unwrap();
            assert_eq!(again, opened);
        }
    }

    #[test]
    fn missing_or_bad_keys() {
        // No keys (anonymous, guest): nothing signs or verifies, nothing is encrypted.
        let none =
            SessionCrypto::new(dialect::SMB3_1_1, SigningAlgorithm::AesCmac, cipher::AES_128_GCM, None, false, false)
                .unwrap();
        let mut msg = vec![0u8; 100];
        none.sign(&mut msg);
        assert_eq!(msg, vec![0u8; 100]);
        assert!(!none.verify(&msg));
        assert_eq!(none.encrypt_in_place(1, &[0; 12], &mut [0; 100]), Err(CryptoError::KeyLength(0)));
        // No cipher negotiated: each message fails as the free function would.
        let plain = SessionCrypto::new(
            dialect::SMB3_1_1,
            SigningAlgorithm::AesCmac,
            0,
            Some(keys(cipher::AES_128_GCM)),
            false,
            false,
        )
        .unwrap();
        assert_eq!(plain.decrypt_in_place(&mut [0; 100]), Err(CryptoError::UnknownCipher(0)));
        assert!(plain.verify(&{
            let mut m = vec![1u8; 100];
            plain.sign(&mut m);
            m
        }));
        // A signing key that does not fit its algorithm is refused.
        let mut bad = keys(cipher::AES_128_GCM);
        bad.signing_key = vec![1; 15];
        assert!(SessionCrypto::new(dialect::SMB3_1_1, SigningAlgorithm::AesGmac, 0, Some(bad), false, false).is_err());
        assert!(plain.for_channel(SigningAlgorithm::AesCmac, vec![1; 17]).is_err());
    }
}
