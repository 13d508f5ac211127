//! A tree connect's runtime handle: a session's attachment to one share or
//! to IPC$.

use std::sync::Arc;

use super::ShareEntry;
use crate::model::TreeInfo;

/// What a tree points at.
#[derive(Clone)]
pub enum TreeKind {
    Disk(Arc<ShareEntry>),
    /// IPC$: named pipes only.
    Ipc,
}

/// An immutable handle of a tree connect ([MS-SMB2] 3.3.1.9). A disk
/// share's is made from the state model's record ([`TreeInfo`]) when the
/// TREE_CONNECT's `TreeUp` is applied ([`Tree::from_record`]), and copies
/// its fields; IPC$'s, which the model does not record, by TREE_CONNECT.
pub struct Tree {
    pub id: u32,
    pub kind: TreeKind,
    /// Data on this tree must be encrypted.
    pub encrypt: bool,
    pub read_only: bool,
    /// The maximal access granted on the share.
    pub maximal_access: u32,
}

impl Tree {
    /// The handle of a disk share's tree connect as the model records it;
    /// `None` when no configured share has the record's name.
    pub fn from_record(t: &TreeInfo, share: Option<Arc<ShareEntry>>) -> Option<Tree> {
        Some(Tree {
            id: t.id.0,
            kind: TreeKind::Disk(share?),
            encrypt: t.encrypt,
            read_only: t.read_only,
            maximal_access: t.maximal_access,
        })
    }

    pub fn share(&self) -> Option<&Arc<ShareEntry>> {
        match &self.kind {
            TreeKind::Disk(s) => Some(s),
            TreeKind::Ipc => None,
        }
    }
}
