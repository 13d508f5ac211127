//! WRITEs carried out again at a restart (DESIGN.md, "No lost writes").
//!
//! A WRITE is answered once its point-3 record is durable, and its data is
//! in its point-1 record; it is retired only after the shares' file data
//! was flushed. So after a power loss, every answered WRITE whose data may
//! not have reached the disk is still in the log: the restore writes its
//! data again, in log order, to the file its open was of. Writing the same
//! bytes at the same offset twice leaves the file as once.
//!
//! A WRITE with no point-3 record of success was never answered: the
//! client resends it, and it is not redone here.
//!
//! Only a restart after the kernel went down (a power loss, a kernel
//! crash: the boot id changed, [`super::same_boot`]) can have lost the
//! page cache; after a killed process the page cache holds every answered
//! WRITE, and nothing is redone.

use std::collections::HashMap;
use std::sync::Arc;

use protocol::header::{Command, Header};
use protocol::msg::write::WriteRequest;
use protocol::msg::FileId;
use tracing::{info, warn};

use super::reopen::open_in_share;
use crate::journal::{created_file_id, frame_elements};
use crate::model::{FileUid, Model, PersistentFileId};
use crate::state::Server;

/// One WRITE to carry out again.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Redo {
    pub share: String,
    pub path: String,
    pub file: FileUid,
    pub offset: u64,
    pub data: Vec<u8>,
}

/// The WRITE elements of a request frame that `answered` says succeeded, by
/// element index: (index, the open's persistent id, offset, data). A related
/// element's open is the one the CREATE before it answered with.
pub fn writes_of_frame<'a>(
    frame: &'a [u8],
    answered: impl Fn(usize) -> Option<(u32, &'a [u8])>,
) -> Vec<(usize, u64, u64, &'a [u8])> {
    let mut out = Vec::new();
    let mut chain: Option<FileId> = None;
    for (index, hdr, elem) in frame_elements(frame) {
        if !hdr.is_related() {
            chain = None;
        }
        let answer = answered(index);
        if hdr.command == Command::Write as u16 && answer.is_some_and(|(status, _)| status == 0) {
            if let Ok(w) = WriteRequest::parse(elem) {
                let id = if w.file_id.is_any() { chain } else { Some(w.file_id) };
                if let Some(id) = id {
                    out.push((index, id.persistent, w.offset, w.data));
                }
            }
        }
        if hdr.command == Command::Create as u16 {
            chain = answer.and_then(|(status, body)| created_file_id(status, body));
        }
    }
    out
}

/// Collects the WRITEs of the log to redo, while the model is rebuilt:
/// `note_frame` for each point-1 record, `note_answer` for each point-3
/// record (before its delta is applied to `model`).
#[derive(Default)]
pub struct Collector<'a> {
    frames: HashMap<u64, &'a [u8]>,
    answers: HashMap<(u64, usize), (u32, &'a [u8])>,
    /// The opens the log's deltas made or closed after writing (share,
    /// path, file), by persistent id: a WRITE's open may be closed by the
    /// time of the checkpoint the model starts from.
    opened: HashMap<u64, (String, String, FileUid)>,
    /// Where the log's renames moved each file last.
    moved: HashMap<FileUid, String>,
    redo: Vec<Pending>,
}

/// A WRITE to redo, in log order: placed, or waiting for a later record to
/// say where its open's file was (the open's `OpenUp` went with an earlier
/// part of the log, and the open closed before the checkpoint the model
/// starts from: its `ClosedAfterWriting` comes after the WRITE).
#[derive(Debug)]
enum Pending {
    Placed(Redo),
    Unplaced { op: u64, pid: u64, offset: u64, data: Vec<u8> },
}

impl<'a> Collector<'a> {
    pub fn note_frame(&mut self, op: u64, frame: &'a [u8]) {
        self.frames.insert(op, frame);
    }

    /// The exclusive CREATEs with a CreateGuid (DH2Q) that were under way
    /// when the node died (no point-3 record): by share (from the session
    /// and tree of the request, as `model` has them), the share-relative
    /// name and the CreateGuid. Such a CREATE may have made its file without
    /// its record; the file it made carries the id [`crate::fs::uid::for_create`]
    /// gives its CreateGuid ([`undo_creates`]).
    pub fn creates_in_flight(&self, model: &Model, set: ids::SetId) -> Vec<(String, String, [u8; 16])> {
        use protocol::msg::create::CreateRequest;
        let Some(p) = model.partition(set) else { return Vec::new() };
        self.unanswered(Command::Create)
            .filter_map(|(hdr, elem)| {
                let req = CreateRequest::parse(elem).ok()?;
                // The CREATE's own rule (`cmd::create`): an exclusive create
                // under a CreateGuid, which collides when it is resent.
                let guid = req.exclusive_create_guid()?;
                let share = p
                    .session(crate::model::SessionId(hdr.session_id))?
                    .tree(crate::model::TreeId(hdr.tree_id))?
                    .share
                    .clone();
                Some((share, req.name.trim_start_matches('\\').to_string(), guid))
            })
            .collect()
    }

    /// The renames (SET_INFO FileRenameInformation) that were under way when
    /// the node died: elements of a logged request with no point-3 record.
    /// The rename may have happened on disk without its record: by open
    /// (persistent id), the share-relative name it was being renamed to.
    pub fn renames_in_flight(&self) -> HashMap<u64, String> {
        use protocol::fscc::set_info::{parse_set_file_info, SetFileInfo};
        use protocol::msg::set_info::SetInfoRequest;
        self.unanswered(Command::SetInfo)
            .filter_map(|(_, elem)| {
                let req = SetInfoRequest::parse(elem).ok()?;
                // SMB2_0_INFO_FILE, FileRenameInformation ([MS-FSCC] 2.4.42).
                if req.info_type != 1 || req.file_info_class != 10 || req.file_id.is_any() {
                    return None;
                }
                match parse_set_file_info(10, req.buffer).ok()? {
                    SetFileInfo::Rename { name, .. } => {
                        Some((req.file_id.persistent, name.trim_start_matches('\\').to_string()))
                    }
                    _ => None,
                }
            })
            .collect()
    }

    /// The elements of `command` in the logged requests that have no
    /// point-3 record: header and bytes.
    fn unanswered(&self, command: Command) -> impl Iterator<Item = (Header, &'a [u8])> + '_ {
        self.frames.iter().flat_map(move |(&op, &frame)| {
            frame_elements(frame).filter_map(move |(index, hdr, elem)| {
                (hdr.command == command as u16 && !self.answers.contains_key(&(op, index))).then_some((hdr, elem))
            })
        })
    }

    /// Element `element` of `op` answered `status` with `body` and the
    /// deltas `batch`: when it is a successful WRITE, its data is to be
    /// redone on the file its open (in `model`, as it stands at this point
    /// of the log) was of, at the request's offset, or where the batch says
    /// an append-only open's data went ([`crate::model::Delta::AppendedAt`]).
    #[allow(clippy::too_many_arguments)]
    pub fn note_answer(
        &mut self,
        model: &Model,
        set: ids::SetId,
        op: u64,
        element: u16,
        status: u32,
        body: &'a [u8],
        batch: &[crate::model::Delta],
    ) {
        let index = usize::from(element);
        self.answers.insert((op, index), (status, body));
        let Some(frame) = self.frames.get(&op).copied() else { return };
        // A related WRITE after a CREATE in the same frame finds the
        // CREATE's answer, noted before its own.
        let answers = &self.answers;
        let answered = |i: usize| answers.get(&(op, i)).copied();
        let Some(p) = model.partition(set) else { return };
        for (i, pid, offset, data) in writes_of_frame(frame, answered) {
            if i != index {
                continue;
            }
            let offset = batch
                .iter()
                .find_map(|d| match d {
                    crate::model::Delta::AppendedAt { open, offset } if open.0 == pid => Some(*offset),
                    _ => None,
                })
                .unwrap_or(offset);
            let data = data.to_vec();
            let placed = match p.open(PersistentFileId(pid)) {
                Some(o) => Some((o.info().share.clone(), o.path().to_string(), o.info().file)),
                None => self.opened.get(&pid).cloned(),
            };
            self.redo.push(match placed {
                Some((share, path, file)) => Pending::Placed(Redo { share, path, file, offset, data }),
                None => Pending::Unplaced { op, pid, offset, data },
            });
        }
    }

    /// Notes what a point-3 record's deltas say about opens and files: the
    /// opens made (so a WRITE of one closed since is still placed) and the
    /// renames (so a WRITE is redone where its file is now).
    pub fn note_deltas(&mut self, batch: &[crate::model::Delta]) {
        for d in batch {
            match d {
                crate::model::Delta::OpenUp(n) => {
                    self.opened.insert(n.info.persistent.0, (n.info.share.clone(), n.path.clone(), n.info.file));
                }
                crate::model::Delta::ClosedAfterWriting { open, share, path, file } => {
                    self.opened.insert(open.0, (share.clone(), path.clone(), *file));
                }
                crate::model::Delta::FileMoved { file, path, .. } => {
                    self.moved.insert(*file, path.clone());
                }
                _ => {}
            }
        }
    }

    /// The WRITEs to carry out again, in log order, each at the place the
    /// last rename in the log gave its file.
    pub fn into_redo(self) -> Vec<Redo> {
        let Collector { moved, opened, redo, .. } = self;
        redo.into_iter()
            .filter_map(|w| match w {
                Pending::Placed(w) => Some(w),
                Pending::Unplaced { op, pid, offset, data } => match opened.get(&pid) {
                    Some((share, path, file)) => {
                        Some(Redo { share: share.clone(), path: path.clone(), file: *file, offset, data })
                    }
                    None => {
                        warn!(
                            op,
                            pid = format_args!("{pid:#x}"),
                            "redo: a WRITE of an open the log does not know; skipped"
                        );
                        None
                    }
                },
            })
            .map(|mut w| {
                if let Some(p) = moved.get(&w.file) {
                    w.path.clone_from(p);
                }
                w
            })
            .collect()
    }
}

/// Removes the files that exclusive CREATEs under way at the crash made
/// ([`Collector::creates_in_flight`]): each only when the file there now
/// carries the id its CreateGuid gives (so it was made by that CREATE and
/// by nothing else) and no open of the rebuilt `model` is of it. The client
/// never got an answer; it resends the CREATE, which then makes the file
/// anew. Returns how many were removed.
pub fn undo_creates(server: &Arc<Server>, model: &Model, creates: &[(String, String, [u8; 16])]) -> usize {
    let mut undone = 0;
    for (share_name, path, guid) in creates {
        let Some(share) = server.share(share_name) else { continue };
        let Ok((resolved, h, st)) = open_in_share(&share, path, false) else {
            info!(path, "a CREATE under way at the crash had not made its file");
            continue;
        };
        let uid = crate::fs::uid::for_create(guid);
        let mine = share.fs.stored_uid(&h) == Some(uid);
        let open = model.partition(server.set()).is_some_and(|p| p.file(uid).is_some());
        drop(h);
        if !mine || open {
            info!(path, mine, open, "a CREATE under way at the crash: its file is left (not made by it, or open)");
        }
        if mine && !open {
            let r = if st.is_dir { share.fs.rmdir(&resolved) } else { share.fs.unlink(&resolved) };
            match r {
                Ok(()) => {
                    info!(path, "a CREATE under way at the crash had made its file: removed, for the resent CREATE");
                    undone += 1;
                }
                Err(e) => warn!(path, "cannot remove the file of a CREATE under way at the crash: {e}"),
            }
        }
    }
    undone
}

/// Carries the WRITEs out again, in order, each on the file it was of (by
/// its path now, when the rebuilt model still knows the file, else by the
/// path it had), and only when the file there is that file.
pub fn redo(server: &Arc<Server>, model: &Model, writes: &[Redo]) -> usize {
    let mut done = 0;
    // Each file is synced once, after all its writes: a sync per WRITE
    // made the restart take the number of WRITEs times the disk's flush
    // (measured by scripts/bench-stall.sh: 187 ms of restore, 22 ms batched).
    let mut to_sync: HashMap<FileUid, (crate::fs::Handle, usize)> = HashMap::new();
    for w in writes {
        let path = model.partition(server.set()).and_then(|p| p.file(w.file)).map_or(w.path.as_str(), |f| f.path());
        let r = (|| -> Result<(), String> {
            let share = server.share(&w.share).ok_or("share not served")?;
            let (_, h, st) = open_in_share(&share, path, true)?;
            if share.fs.file_uid(&h, &st) != w.file {
                return Err("the file there is another one now".into());
            }
            h.write_at(&w.data, w.offset).map_err(|e| e.to_string())?;
            to_sync.entry(w.file).or_insert((h, 0)).1 += 1;
            Ok(())
        })();
        if let Err(why) = r {
            warn!(path, offset = w.offset, "redo of an answered WRITE failed: {why}");
        }
    }
    for (file, (h, n)) in to_sync {
        match h.sync() {
            Ok(()) => done += n,
            Err(e) => warn!(?file, writes = n, "redo: the file's sync failed: {e}"),
        }
    }
    if !writes.is_empty() {
        info!(writes = writes.len(), done, "answered WRITEs carried out again");
    }
    done
}

#[cfg(test)]
pub(crate) mod tests {
    use bytes::BytesMut;

    use super::*;
    use crate::model::tests::{open_on, session_with_tree};
    use crate::model::{Caching, Durability};

    fn write_frame(file: FileId, offset: u64, data: &[u8]) -> Vec<u8> {
        let hdr = Header { command: Command::Write as u16, ..Default::default() };
        let mut out = BytesMut::new();
        hdr.encode(&mut out);
        let w = WriteRequest {
            offset,
            file_id: file,
            channel: 0,
            remaining_bytes: 0,
            flags: 0,
            data,
            write_channel_info: &[],
        };
        w.encode(&mut out);
        out.to_vec()
    }

    pub(crate) fn rename_frame(file: FileId, to: &str) -> Vec<u8> {
        use protocol::msg::set_info::SetInfoRequest;
        let hdr = Header { command: Command::SetInfo as u16, ..Default::default() };
        let name: Vec<u8> = to.encode_utf16().flat_map(u16::to_le_bytes).collect();
        // FILE_RENAME_INFORMATION_TYPE_2 ([MS-FSCC] 2.4.42.2).
        let mut info = vec![0u8; 20];
        info[16..20].copy_from_slice(&(name.len() as u32).to_le_bytes());
        info.extend_from_slice(&name);
        let mut out = BytesMut::new();
        hdr.encode(&mut out);
        SetInfoRequest { info_type: 1, file_info_class: 10, buffer: &info, additional_information: 0, file_id: file }
            .encode(&mut out);
        out.to_vec()
    }

    fn create_frame(session: u64, tree: u32, name: &str, disposition: u32, guid: Option<[u8; 16]>) -> Vec<u8> {
        use protocol::msg::create::CreateRequest;
        use protocol::msg::create_context::{DurableHandleRequestV2, RequestContext};
        let hdr = Header { command: Command::Create as u16, session_id: session, tree_id: tree, ..Default::default() };
        let mut out = BytesMut::new();
        hdr.encode(&mut out);
        let contexts: Vec<RequestContext<'_>> = guid
            .map(|g| {
                RequestContext::DurableHandleRequestV2(DurableHandleRequestV2 { timeout: 0, flags: 0, create_guid: g })
            })
            .into_iter()
            .collect();
        CreateRequest {
            security_flags: 0,
            requested_oplock_level: 0,
            impersonation_level: 2,
            smb_create_flags: 0,
            desired_access: 0x12019f,
            file_attributes: 0,
            share_access: 7,
            create_disposition: disposition,
            create_options: 0,
            name: name.into(),
            create_contexts: contexts,
        }
        .encode(&mut out);
        out.to_vec()
    }

    #[test]
    fn an_unanswered_exclusive_create_with_a_create_guid_is_under_way() {
        let set = ids::SetId(0);
        let mut m = Model::new();
        m.add_set(set, 3).unwrap();
        let (s, t) = session_with_tree(&mut m, set);
        let exclusive = create_frame(s.0, t.0, "dir\\x1", 2, Some([7; 16]));
        let answered = create_frame(s.0, t.0, "x2", 2, Some([8; 16]));
        let open_if = create_frame(s.0, t.0, "x3", 3, Some([9; 16]));
        let no_guid = create_frame(s.0, t.0, "x4", 2, None);
        let mut c = Collector::default();
        for (op, f) in [(1, &exclusive), (2, &answered), (3, &open_if), (4, &no_guid)] {
            c.note_frame(op, f);
        }
        c.note_answer(&m, set, 2, 0, 0, b"", &[]);
        assert_eq!(c.creates_in_flight(&m, set), vec![("data".to_string(), "dir\\x1".to_string(), [7; 16])]);
        // The id such a create gives its file is its CreateGuid's, and no other's.
        assert_eq!(crate::fs::uid::for_create(&[7; 16]), crate::fs::uid::for_create(&[7; 16]));
        assert_ne!(crate::fs::uid::for_create(&[7; 16]), crate::fs::uid::for_create(&[8; 16]));
    }

    #[test]
    fn a_rename_with_no_point_3_is_under_way_and_an_answered_one_is_not() {
        let m = Model::new();
        let under_way = rename_frame(FileId { persistent: 5, volatile: 5 }, "dir\\new.txt");
        let answered = rename_frame(FileId { persistent: 6, volatile: 6 }, "other.txt");
        let mut c = Collector::default();
        c.note_frame(1, &under_way);
        c.note_frame(2, &answered);
        c.note_answer(&m, ids::SetId(0), 2, 0, 0, b"", &[]);
        let r = c.renames_in_flight();
        assert_eq!(r.len(), 1, "{r:?}");
        assert_eq!(r.get(&5).map(String::as_str), Some("dir\\new.txt"));
    }

    #[test]
    fn an_answered_write_is_redone_on_its_open_file_and_an_unanswered_one_is_not() {
        let set = ids::SetId(0);
        let mut m = Model::new();
        m.add_set(set, 3).unwrap();
        let (s, t) = session_with_tree(&mut m, set);
        let up = open_on(&m, s, t, 77, Durability::V1 { timeout_ms: 60_000 }, Caching::None);
        let crate::model::Delta::OpenUp(n) = &up else { unreachable!() };
        let pid = n.info.persistent.0;
        m.apply(&up).unwrap();

        let answered = write_frame(FileId { persistent: pid, volatile: 1 }, 4096, b"stamped");
        let unanswered = write_frame(FileId { persistent: pid, volatile: 1 }, 0, b"never answered");
        let failed = write_frame(FileId { persistent: pid, volatile: 1 }, 8192, b"refused");
        let mut c = Collector::default();
        c.note_frame(1, &answered);
        c.note_frame(2, &unanswered);
        c.note_frame(3, &failed);
        c.note_answer(&m, set, 1, 0, 0, b"", &[]);
        c.note_answer(&m, set, 3, 0, 0xC000_0022, b"", &[]);
        assert_eq!(
            c.into_redo(),
            vec![Redo {
                share: "data".into(),
                path: "f".into(),
                file: FileUid(77),
                offset: 4096,
                data: b"stamped".to_vec()
            }]
        );
    }

    /// An append-only open's WRITE names an offset that is not where its
    /// data went: the redo writes it where its record says it was appended.
    #[test]
    fn an_appended_write_is_redone_where_it_was_appended_not_at_its_request_offset() {
        let set = ids::SetId(0);
        let mut m = Model::new();
        m.add_set(set, 3).unwrap();
        let (s, t) = session_with_tree(&mut m, set);
        let up = open_on(&m, s, t, 77, Durability::V1 { timeout_ms: 60_000 }, Caching::None);
        let crate::model::Delta::OpenUp(n) = &up else { unreachable!() };
        let pid = n.info.persistent.0;
        m.apply(&up).unwrap();

        let appended = write_frame(FileId { persistent: pid, volatile: 1 }, 0, b"second");
        let mut c = Collector::default();
        c.note_frame(1, &appended);
        let batch = [crate::model::Delta::AppendedAt { open: PersistentFileId(pid), offset: 6 }];
        c.note_answer(&m, set, 1, 0, 0, b"", &batch);
        let redo = c.into_redo();
        assert_eq!(redo.len(), 1);
        assert_eq!((redo[0].offset, redo[0].data.as_slice()), (6, &b"second"[..]));
    }

    /// The open of an answered WRITE was closed, and its file renamed, before
    /// the checkpoint the model starts from: the log's own OpenUp places the
    /// WRITE and its last FileMoved says where the file is now.
    #[test]
    fn a_write_of_an_open_closed_since_is_redone_where_its_file_was_moved() {
        let set = ids::SetId(0);
        let mut m = Model::new();
        m.add_set(set, 3).unwrap();
        let (s, t) = session_with_tree(&mut m, set);
        let up = open_on(&m, s, t, 77, Durability::None, Caching::None);
        let crate::model::Delta::OpenUp(n) = &up else { unreachable!() };
        let pid = n.info.persistent.0;
        // The model the restore starts from no longer has the open.
        let write = write_frame(FileId { persistent: pid, volatile: 1 }, 0, b"stamped");
        let mut c = Collector::default();
        c.note_deltas(std::slice::from_ref(&up));
        c.note_frame(2, &write);
        c.note_answer(&m, set, 2, 0, 0, b"", &[]);
        c.note_deltas(&[crate::model::Delta::FileMoved { set, file: FileUid(77), path: "r1".into() }]);
        let redo = c.into_redo();
        assert_eq!(redo.len(), 1, "{redo:?}");
        assert_eq!((redo[0].path.as_str(), redo[0].file, redo[0].offset), ("r1", FileUid(77), 0));
    }

    /// The open's OpenUp went with a compacted part of the log, and the open
    /// closed before the checkpoint the model starts from: the WRITE is
    /// placed by the `ClosedAfterWriting` its CLOSE recorded after it (it
    /// was skipped, and its data lost to a power loss, before).
    #[test]
    fn a_write_whose_open_up_is_gone_is_placed_by_its_close() {
        let set = ids::SetId(0);
        let mut m = Model::new();
        m.add_set(set, 3).unwrap();
        let pid = 0x0003_0000_0000_0009;
        let write = write_frame(FileId { persistent: pid, volatile: 1 }, 512, b"stamped");
        let mut c = Collector::default();
        c.note_frame(2, &write);
        c.note_answer(&m, set, 2, 0, 0, b"", &[]);
        c.note_deltas(&[
            crate::model::Delta::ClosedAfterWriting {
                open: PersistentFileId(pid),
                share: "data".into(),
                path: "dir\\f".into(),
                file: FileUid(78),
            },
            crate::model::Delta::OpenDown { open: PersistentFileId(pid) },
        ]);
        let redo = c.into_redo();
        assert_eq!(
            redo,
            vec![Redo {
                share: "data".into(),
                path: "dir\\f".into(),
                file: FileUid(78),
                offset: 512,
                data: b"stamped".to_vec()
            }]
        );
        // Without it, the WRITE cannot be placed.
        let mut c = Collector::default();
        c.note_frame(2, &write);
        c.note_answer(&m, set, 2, 0, 0, b"", &[]);
        assert!(c.into_redo().is_empty());
    }
}
