//! A tree connect: a session's attachment to one share or to IPC$.

use std::sync::Arc;

use super::ShareEntry;

/// What a tree points at.
#[derive(Clone)]
pub enum TreeKind {
    Disk(Arc<ShareEntry>),
    /// IPC$: named pipes only.
    Ipc,
}

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
    pub fn share(&self) -> Option<&Arc<ShareEntry>> {
        match &self.kind {
            TreeKind::Disk(s) => Some(s),
            TreeKind::Ipc => None,
        }
    }
}
