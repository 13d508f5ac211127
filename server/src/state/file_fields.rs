//! A file's long-lived state, read from the state model and changed there
//! at once: where the file and each of its opens are now (the path, which
//! a rename moves), and whether a delete is pending on it ([MS-FSA]
//! 2.1.1.5 File.PendingDelete). The per-file table ([`super::files`])
//! keeps no copy of either; an open's runtime part ([`super::open::OpenState`])
//! keeps no path.
//!
//! The model's paths are share-relative, with `\` separators and no
//! leading one: an open's as its client named it, a file's as its first
//! open named it (or, after a rename, as the rename placed it on disk).
//! Where the file system needs the on-disk spelling (a delete at the last
//! close, a rename's source, change notify), the path is resolved again
//! ([`Server::disk_path`]).
//!
//! Changes go through [`Server::change_model`], as an open's fields go
//! through [`Server::change_open`]: decided from the model, applied and
//! journaled as a state change under one hold of its lock, so that the
//! next request, on any connection, sees them (a CREATE refused with
//! STATUS_DELETE_PENDING right after a SET_INFO, a CLOSE that deletes the
//! file at its new name right after a rename).
//!
//! Lock order: these take the model's lock (`Server.recorder`), the last
//! in the order ([`super`]); they may be called with `Server.files` held
//! (the table's lock ranks above the model's), never with the model's.

use super::files::FileUid;
use super::{Open, Server};
use crate::model::{Delta, FileRecord, Model};

impl Server {
    /// The open's path in the model (share-relative, no leading `\`),
    /// following renames; `None` for a pipe, or an open the model does not
    /// have yet (its CREATE has not passed its point 3).
    pub fn path_of(&self, open: &Open) -> Option<String> {
        open.key?;
        self.read_open(open.persistent_id, |o| o.map(|o| o.path().to_string()))
    }

    /// Reads the file's record in the model (`None`: the file has no
    /// open the model has).
    pub fn read_file<R>(&self, key: FileUid, read: impl FnOnce(Option<&FileRecord>) -> R) -> R {
        let set = self.set();
        self.with_model(|m| read(file_in(m, set, key)))
    }

    /// The file's path in the model.
    pub fn file_path(&self, key: FileUid) -> Option<String> {
        self.read_file(key, |f| f.map(|f| f.path().to_string()))
    }

    /// Is a delete pending on the file (File.PendingDelete)?
    pub fn delete_pending(&self, key: FileUid) -> bool {
        self.read_file(key, |f| f.is_some_and(FileRecord::delete_pending))
    }

    /// Where the file is on disk now: its path in the model, resolved in
    /// `share` (the on-disk spelling of each component; a symbolic link at
    /// the leaf is the link itself, as an open of it with
    /// FILE_OPEN_REPARSE_POINT has it). For a named stream's key, the
    /// stream's file.
    pub fn disk_path(&self, share: &crate::fs::Share, key: FileUid) -> Option<crate::fs::Resolved> {
        let path = self.file_path(key)?;
        let file = path.split_once(':').map_or(path.as_str(), |(f, _)| f);
        let parsed = crate::fs::path::SmbPath::parse(file).ok()?;
        share.resolve_open(&parsed, true).ok()
    }

    /// Sets or clears the file's delete-pending state, at once; nothing
    /// when the model does not have the file. See [`Server::change_model`].
    pub fn set_delete_pending(&self, key: FileUid, on: bool) -> bool {
        let set = self.set();
        let ((), kept) = self.change_model(|m| {
            let change = file_in(m, set, key).is_some_and(|f| f.delete_pending() != on);
            ((), if change { vec![Delta::DeletePendingSet { set, file: key, on }] } else { Vec::new() })
        });
        kept
    }

    /// Records that the file (or named stream) `key` is at `path` now
    /// (share-relative), and its opens with it, at once.
    pub fn move_file(&self, key: FileUid, path: String) -> bool {
        let set = self.set();
        let ((), kept) = self.change_model(|m| {
            let change = file_in(m, set, key).is_some_and(|f| f.path() != path);
            ((), if change { vec![Delta::FileMoved { set, file: key, path }] } else { Vec::new() })
        });
        kept
    }
}

/// A file's record in the model's partition `set`.
pub fn file_in(m: &Model, set: ::ids::SetId, key: FileUid) -> Option<&FileRecord> {
    m.partition(set)?.file(key)
}
