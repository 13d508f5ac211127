//! An authenticated (or authenticating) session ([MS-SMB2] 3.3.1.8).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use protocol::auth::ntlm;
use protocol::crypto::preauth::PreauthHash;
use protocol::crypto::signing::SigningAlgorithm;

use super::{lock, Open, Tree};

/// How far authentication got.
pub enum AuthState {
    /// Between the first and the last SESSION_SETUP leg.
    InProgress { ntlm: Box<ntlm::ServerContext>, preauth: PreauthHash, mech_list: Option<Vec<u8>> },
    Valid,
    /// The session was logged off or expired; requests get
    /// STATUS_USER_SESSION_DELETED / STATUS_NETWORK_SESSION_EXPIRED.
    Expired,
}

/// Keys and policies the pipeline needs for every message of a session.
#[derive(Clone)]
pub struct SessionCrypto {
    pub dialect: u16,
    pub signing_alg: SigningAlgorithm,
    pub signing_key: Vec<u8>,
    pub encryption_key: Vec<u8>,
    pub decryption_key: Vec<u8>,
    pub cipher: u16,
    pub signing_required: bool,
    pub encrypt_data: bool,
}

pub struct Session {
    pub id: u64,
    pub inner: Mutex<SessionInner>,
    /// The session's place in the server's count of sessions, given back
    /// when the session object goes.
    pub slot: Option<crate::limits::SessionSlot>,
    /// The state model has the session ([`super::deltas::session_up`]):
    /// it completed authentication and has not ended.
    pub up: std::sync::atomic::AtomicBool,
}

pub struct SessionInner {
    pub auth: AuthState,
    pub user: String,
    pub domain: String,
    pub guest: bool,
    pub anonymous: bool,
    pub crypto: Option<Arc<SessionCrypto>>,
    pub trees: HashMap<u32, Arc<Tree>>,
    /// Opens by volatile id.
    pub opens: HashMap<u64, Arc<Open>>,
    /// The connection the session was established on (Session.Connection).
    pub conn_id: u64,
    /// The ClientGuid of the connection the session was established on,
    /// which a binding connection must share ([MS-SMB2] 3.3.5.5).
    pub client_guid: [u8; 16],
    /// The connections the session is reachable from: the one it was
    /// established on and those bound to it (Session.ChannelList, [MS-SMB2]
    /// 3.3.1.8). The session ends when the last one goes.
    pub channels: Vec<u64>,
}

impl Session {
    pub fn new(id: u64, conn_id: u64, auth: AuthState) -> Session {
        Session {
            id,
            inner: Mutex::new(SessionInner {
                auth,
                user: String::new(),
                domain: String::new(),
                guest: false,
                anonymous: false,
                crypto: None,
                trees: HashMap::new(),
                opens: HashMap::new(),
                conn_id,
                client_guid: [0; 16],
                channels: vec![conn_id],
            }),
            slot: None,
            up: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// The session, counted in the server's sessions with `slot`.
    pub fn counted(mut self, slot: crate::limits::SessionSlot) -> Session {
        self.slot = Some(slot);
        self
    }

    pub fn crypto(&self) -> Option<Arc<SessionCrypto>> {
        lock(&self.inner).crypto.clone()
    }

    pub fn is_valid(&self) -> bool {
        matches!(lock(&self.inner).auth, AuthState::Valid)
    }

    pub fn tree(&self, id: u32) -> Option<Arc<Tree>> {
        lock(&self.inner).trees.get(&id).cloned()
    }

    pub fn open(&self, volatile_id: u64) -> Option<Arc<Open>> {
        lock(&self.inner).opens.get(&volatile_id).cloned()
    }
}
