//! An open: one handle a client holds ([MS-SMB2] 3.3.1.10).

use std::sync::{Arc, Mutex};

use protocol::msg::FileId;

use super::files::FileUid;
use super::Tree;
use crate::fs;
use crate::model::Durability;

/// How long a disconnected durable open waits for its client
/// (Open.DurableOpenTimeout, [MS-SMB2] 3.3.1.10; Samba's default for
/// version 1 handles, the value is implementation-specific, 3.3.5.9.6).
/// Here, below both, so that the retained opens ([`super::durable`]) and
/// the deltas that record an open need not import each other.
pub const DURABLE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// What the handle refers to.
pub enum OpenKind {
    /// A file or directory in a share.
    Fs(fs::Handle),
    /// A named pipe on IPC$.
    Pipe(Mutex<protocol::rpc::Pipe>),
    /// A retained handle that a restart brought back, whose file is opened
    /// again only when its client reclaims it
    /// ([`super::durable::reclaim`]): until then nothing reads or writes
    /// through it.
    Unopened,
}

/// A directory enumeration in progress (QUERY_DIRECTORY).
pub struct DirCursor {
    pub pattern: String,
    pub entries: Vec<fs::DirEntry>,
    pub next: usize,
}

/// The mutable part of an open.
pub struct OpenState {
    /// Share-relative path as the client named it (no leading backslash).
    pub path: String,
    pub resolved: Option<fs::Resolved>,
    pub delete_on_close: bool,
    pub dir: Option<DirCursor>,
    pub position: u64,
    pub mode: u32,
    /// The durable handle granted (Open.IsDurable, Open.IsPersistent,
    /// Open.DurableOpenTimeout, [MS-SMB2] 3.3.1.10): a durable open
    /// outlives its connection (`state::durable`). Its oplock or lease
    /// lives in the per-file table.
    pub durability: Durability,
    /// What a DH2Q CREATE carried ([MS-SMB2] 3.3.5.9.10): Open.CreateGuid
    /// and Open.ClientGuid, for DH2C and for a replayed CREATE.
    pub create_guid: Option<[u8; 16]>,
    /// Open.IsReplayEligible: a replayed CREATE with the CreateGuid gets
    /// this open back, until a request names the open.
    pub replay_eligible: bool,
    /// Open.AppInstanceId and the version ([MS-SMB2] 3.3.5.9.13).
    pub app_instance: Option<AppInstance>,
    /// The CREATE's CreateAction, for the answer to a replay.
    pub create_action: u32,
    /// Open.ChannelSequence ([MS-SMB2] 3.3.5.2.10).
    pub channel_sequence: u16,
    /// The file was written through this open (for timestamps on close).
    pub written: bool,
    /// The delayed write-time update of this handle's first write has
    /// been scheduled.
    pub write_time_armed: bool,
    /// Where an EA enumeration without an index or a restart goes on: the
    /// 0-based index of the next EA to return (QUERY_INFO of
    /// FileFullEaInformation, [MS-SMB2] 3.3.5.20.1). Runtime only: a
    /// reopened handle starts again from the first EA.
    pub ea_next: usize,
}

/// Open.AppInstanceId and Open.ApplicationInstanceVersionHigh and Low
/// ([MS-SMB2] 3.3.1.10, 2.2.13.2.13, 2.2.13.2.15).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AppInstance {
    pub id: [u8; 16],
    /// (high, low), when the CREATE carried an AppInstanceVersion.
    pub version: Option<(u64, u64)>,
}

pub struct Open {
    pub persistent_id: u64,
    pub volatile_id: u64,
    pub session_id: u64,
    pub tree: Arc<Tree>,
    pub kind: OpenKind,
    pub access: u32,
    pub share_access: u32,
    pub create_options: u32,
    pub is_dir: bool,
    pub key: Option<FileUid>,
    /// For an open of a named stream (`file:stream`): the file's id; `key`
    /// is then the stream's ([`crate::fs::stream::stream_uid`]).
    pub base: Option<FileUid>,
    pub st: Mutex<OpenState>,
    /// Held for the whole of a WRITE (data and the write-time bookkeeping
    /// around it). Writes to one file serialize on the inode lock in the
    /// kernel anyway; waiting here sleeps, where two writers racing for
    /// the inode lock spin on it and take CPU from everything else.
    pub writing: Mutex<()>,
    /// The open's place in the server's count of opens, given back when
    /// the open (and its file descriptor) goes.
    pub slot: crate::limits::OpenSlot,
}

impl OpenState {
    /// Was a durable handle (of any version) granted?
    pub fn durable(&self) -> bool {
        self.durability != Durability::None
    }

    /// A persistent handle ([MS-SMB2] 3.3.1.10 Open.IsPersistent).
    pub fn persistent(&self) -> bool {
        matches!(self.durability, Durability::Persistent { .. })
    }
}

impl Open {
    pub fn file_id(&self) -> FileId {
        FileId { persistent: self.persistent_id, volatile: self.volatile_id }
    }

    pub fn handle(&self) -> Option<&fs::Handle> {
        match &self.kind {
            OpenKind::Fs(h) => Some(h),
            OpenKind::Pipe(_) | OpenKind::Unopened => None,
        }
    }

    pub fn share(&self) -> Option<&Arc<super::ShareEntry>> {
        self.tree.share()
    }
}

