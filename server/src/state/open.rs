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

/// The mutable part of an open kept at runtime: cursors, the position,
/// caches, what a write did, and where the file system resolved the open's
/// name (`resolved`, for the calls that take a path: a listing, a reparse
/// point). The open's path is the model's alone
/// ([`crate::model::OpenRecord::path`], which renames move and a restart
/// restores; [`super::Server::path_of`]).
///
/// An open's long-lived fields ([MS-SMB2] 3.3.1.10) are the state model's
/// alone ([`crate::model::OpenRecord`], read and changed by the open's
/// persistent id through [`super::Server::read_open`] and
/// [`super::Server::change_open`]): Open.DurableOpenTimeout,
/// Open.IsDurable and Open.IsPersistent, Open.CreateGuid,
/// Open.IsReplayEligible, Open.AppInstanceId and its version, the
/// CreateAction, Open.ChannelSequence and delete-on-close. An open the
/// model does not record (a pipe on IPC$) has none of them but its
/// ChannelSequence, kept here ([`OpenState::pipe_channel_sequence`]).
pub struct OpenState {
    pub resolved: Option<fs::Resolved>,
    pub dir: Option<DirCursor>,
    pub position: u64,
    pub mode: u32,
    /// Open.ChannelSequence ([MS-SMB2] 3.3.5.2.10) of an open the model
    /// does not record (a pipe); a file's is the model's.
    pub pipe_channel_sequence: u16,
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

/// What a CREATE decided of a new open's long-lived fields ([MS-SMB2]
/// 3.3.5.9): they go into the open's `OpenUp` ([`super::deltas::open_up`])
/// and from then on are the state model's alone (see [`OpenState`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OpenFields {
    /// Open.IsDurable, Open.IsPersistent and Open.DurableOpenTimeout.
    pub durability: Durability,
    /// What a DH2Q CREATE carried ([MS-SMB2] 3.3.5.9.10): Open.CreateGuid.
    pub create_guid: Option<[u8; 16]>,
    /// Open.IsReplayEligible: a replayed CREATE with the CreateGuid gets
    /// this open back, until a request names the open.
    pub replay_eligible: bool,
    /// Open.AppInstanceId and the version ([MS-SMB2] 3.3.5.9.13).
    pub app_instance: Option<AppInstance>,
    /// The CREATE's CreateAction, for the answer to a replay.
    pub create_action: u32,
    /// Open.ChannelSequence: the CREATE's ([MS-SMB2] 3.3.5.9).
    pub channel_sequence: u16,
    /// FILE_DELETE_ON_CLOSE was asked for.
    pub delete_on_close: bool,
}

impl OpenFields {
    /// An open with none of them: not durable, no CreateGuid, opened.
    pub fn new(create_action: u32, channel_sequence: u16) -> OpenFields {
        OpenFields {
            durability: Durability::None,
            create_guid: None,
            replay_eligible: false,
            app_instance: None,
            create_action,
            channel_sequence,
            delete_on_close: false,
        }
    }
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
