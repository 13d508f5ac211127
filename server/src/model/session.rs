//! Sessions and their tree connects ([MS-SMB2] 3.3.1.8 Per Session, 3.3.1.9 Per Tree
//! Connect), as far as they outlive a connection.
//!
//! The model is the only holder of these fields: the runtime session and
//! tree connect are handles made from these records when a delta that
//! changes them is applied (`crate::state::record`).
//!
//! Only sessions whose authentication completed are in the model: a session in progress
//! (its NTLM context, its preauth hash) is runtime state, and a client whose node died
//! mid-authentication starts over. The channel list (the connections a session can be
//! reached on) is runtime too: a restored session has none until a client binds or
//! reconnects.

use std::collections::BTreeMap;
use std::fmt;

use super::ids::{ClientGuid, SessionId, Timestamp, TreeId};

/// Who a session or an open belongs to: the user's identity (Session.SecurityContext,
/// Open.DurableOwner). Compared without regard to ASCII case.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Owner {
    pub user: String,
    pub domain: String,
}

impl Owner {
    /// Is this the same user (case-insensitively, as Windows compares names)?
    pub fn same_as(&self, other: &Owner) -> bool {
        self.user.eq_ignore_ascii_case(&other.user) && self.domain.eq_ignore_ascii_case(&other.domain)
    }
}

/// A session's keys ([MS-SMB2] 3.3.1.8 Session.SessionKey, SigningKey, EncryptionKey,
/// DecryptionKey, ApplicationKey), kept so that a reconnect after a restart can be
/// verified. Empty when the dialect or the policy has none. Their `Debug` shows lengths,
/// never the keys.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct SessionKeys {
    pub session_key: Vec<u8>,
    pub signing: Vec<u8>,
    pub encryption: Vec<u8>,
    pub decryption: Vec<u8>,
    pub application: Vec<u8>,
}

impl fmt::Debug for SessionKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionKeys")
            .field("session_key", &self.session_key.len())
            .field("signing", &self.signing.len())
            .field("encryption", &self.encryption.len())
            .field("decryption", &self.decryption.len())
            .field("application", &self.application.len())
            .finish()
    }
}

/// What a session is, as the SESSION_SETUP that completed it made it
/// ([`crate::model::Delta::SessionUp`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionInfo {
    pub id: SessionId,
    /// The authenticated user (Session.SecurityContext, Session.UserName).
    pub owner: Owner,
    pub guest: bool,
    pub anonymous: bool,
    /// The ClientGuid of the connection that established it, which a binding connection
    /// must share ([MS-SMB2] 3.3.5.5).
    pub client_guid: ClientGuid,
    /// Connection.Dialect of that connection (the wire value, e.g. `0x0311`).
    pub dialect: u16,
    /// The signing algorithm (SigningAlgorithmId of SMB2_SIGNING_CAPABILITIES: 0
    /// HMAC-SHA256, 1 AES-CMAC, 2 AES-GMAC).
    pub signing_algorithm: u16,
    /// The cipher (the wire id of SMB2_ENCRYPTION_CAPABILITIES; 0 for none).
    pub cipher: u16,
    /// Session.SigningRequired.
    pub signing_required: bool,
    /// Session.EncryptData.
    pub encrypt_data: bool,
    pub keys: SessionKeys,
    /// Session.CreationTime.
    pub created_at: Timestamp,
    /// Session.ExpirationTime (`None`: does not expire). An expired session is not
    /// removed: its requests get STATUS_NETWORK_SESSION_EXPIRED until it
    /// re-authenticates ([MS-SMB2] 3.3.5.2.9), so this is no deadline of the model.
    /// Only an authentication protocol that gives a lifetime sets it (3.3.5.5.3: a
    /// Kerberos ticket's); NTLM, the one Duet accepts, gives none, so no session
    /// expires today.
    pub expires_at: Option<Timestamp>,
}

/// A tree connect ([MS-SMB2] 3.3.1.9): a session's attachment to a share.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TreeInfo {
    pub id: TreeId,
    /// TreeConnect.Share, by its configured name (`IPC$` for the pipes).
    pub share: String,
    /// Data on this tree must be encrypted (Share.EncryptData).
    pub encrypt: bool,
    pub read_only: bool,
    /// TreeConnect.MaximalAccess.
    pub maximal_access: u32,
}

/// A session in the model: its [`SessionInfo`], its tree connects and its tree id
/// counter. Changed only by [`crate::model::Model::apply`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionRecord {
    pub(super) info: SessionInfo,
    pub(super) trees: BTreeMap<TreeId, TreeInfo>,
    /// The highest tree id handed out.
    pub(super) last_tree: u32,
}

impl SessionRecord {
    pub(super) fn new(info: SessionInfo) -> SessionRecord {
        SessionRecord { info, trees: BTreeMap::new(), last_tree: 0 }
    }

    pub fn info(&self) -> &SessionInfo {
        &self.info
    }

    pub fn id(&self) -> SessionId {
        self.info.id
    }

    pub fn trees(&self) -> impl Iterator<Item = &TreeInfo> {
        self.trees.values()
    }

    pub fn tree(&self, id: TreeId) -> Option<&TreeInfo> {
        self.trees.get(&id)
    }

    /// The highest tree id handed out (0: none yet).
    pub fn last_tree(&self) -> TreeId {
        TreeId(self.last_tree)
    }

    /// The id for the session's next tree connect (counting from 1; `None` once the
    /// ids have run out, never 0 or `u32::MAX`).
    pub fn next_tree_id(&self) -> Option<TreeId> {
        self.last_tree.checked_add(1).filter(|t| *t < u32::MAX).map(TreeId)
    }
}
