//! SET_INFO ([MS-SMB2] 3.3.5.21): times and attributes, rename,
//! delete-on-close, sizes, position, mode and extended attributes.

use bytes::BytesMut;
use protocol::fscc::set_info::{disposition_flags, parse_set_file_info, SetFileInfo, SetTime};
use protocol::msg::query_info::info_type;
use protocol::msg::set_info::{SetInfoRequest, SetInfoResponse};
use protocol::NtStatus;
use tracing::debug;

use super::bad;
use crate::fs::{self, SmbPath};
use crate::handler::{Ctx, HResult, Resp};
use crate::model::Delta;
use crate::state::files::{access, Inode};
use crate::state::lock;
use crate::state::notify::{action, filter};
use crate::state::{Open, Server, Session};
use std::sync::Arc;

pub fn handle(ctx: &mut Ctx<'_>) -> HResult {
    let req = SetInfoRequest::parse(ctx.msg).map_err(bad)?;
    let open = ctx.open(req.file_id)?;
    let fid = open.file_id();
    // Beyond Connection.MaxTransactSize (Samba refuses it too).
    if req.buffer.len() > ctx.conn.max_io() as usize {
        return Err(NtStatus::INVALID_PARAMETER);
    }
    match req.info_type {
        info_type::FILE => {
            let info = parse_set_file_info(req.file_info_class, req.buffer).map_err(|e| e.status())?;
            if let SetFileInfo::Rename { replace_if_exists, name, .. } = &info {
                need(&open, access::DELETE)?;
                // A restore (or the partner's takeover) follows a rename that
                // has no answer in the log (`restart::redo`): it must find the
                // request's records before the rename is carried out.
                // A rename alone in its frame, of a file (a stream's rename is
                // not followed by a restore); in a compound it does not wait
                // (a killed process is covered, a mirror that lacks it is not).
                let journal = &ctx.server.journal;
                let wait = (journal.must_wait() && ctx.single && open.base.is_none()).then_some(ctx.point2);
                let session = ctx.session()?.clone();
                let later = Later {
                    server: ctx.server.clone(),
                    open: open.clone(),
                    name: name.to_string(),
                    replace: *replace_if_exists,
                    posix: ctx.conn.aapl != 0,
                    session,
                    wait,
                };
                if let Some(key) = break_others_handle_caching(ctx.server, &open) {
                    return Ok(rename_after_breaks(later, key));
                }
                if wait.is_some_and(|t| !journal.is_durable(t)) {
                    return Ok(rename_when_durable(later));
                }
            }
            set_file(ctx, &open, info)?;
        }
        info_type::FILESYSTEM => {
            protocol::fscc::set_info::parse_set_fs_info(req.file_info_class, req.buffer).map_err(|e| e.status())?;
            return Err(NtStatus::ACCESS_DENIED);
        }
        info_type::SECURITY => {
            let token = super::security::token(&ctx.server.users, ctx.session()?);
            let nfs = ctx.conn.aapl & protocol::msg::aapl::caps::SUPPORTS_NFS_ACE != 0;
            super::security::set(&open, &token, req.additional_information, nfs, req.buffer)?
        }
        info_type::QUOTA => return Err(NtStatus::NOT_SUPPORTED),
        _ => return Err(NtStatus::INVALID_PARAMETER),
    }
    let mut body = BytesMut::with_capacity(2);
    SetInfoResponse.encode(&mut body);
    Ok(Resp::ok(body).file(fid))
}

fn need(open: &Open, a: u32) -> Result<(), NtStatus> {
    if open.access & a == 0 {
        Err(NtStatus::ACCESS_DENIED)
    } else {
        Ok(())
    }
}

fn set_file(ctx: &mut Ctx<'_>, open: &Open, info: SetFileInfo<'_>) -> Result<(), NtStatus> {
    let h = open.handle().ok_or(NtStatus::NOT_SUPPORTED)?;
    let err = |e: fs::FsError| e.status();
    match info {
        SetFileInfo::Basic { creation_time, last_access_time, last_write_time, change_time, attributes } => {
            need(open, access::FILE_WRITE_ATTRIBUTES)?;
            let t = |s: SetTime| match s {
                SetTime::Set(v) => Some(v),
                _ => None,
            };
            let times = fs::SetTimes {
                creation: t(creation_time),
                last_access: t(last_access_time),
                last_write: t(last_write_time),
                change: t(change_time),
            };
            if let Some(a) = attributes {
                if open.is_dir && a & protocol::fscc::file_attributes::TEMPORARY != 0 {
                    return Err(NtStatus::INVALID_PARAMETER);
                }
                h.set_attributes(a).map_err(err)?;
            }
            // Any basic-info set lands a pending write time first, then an
            // explicit one replaces it.
            crate::state::write_time::land(ctx.server, open, false);
            if let Some(t) = times.last_write {
                crate::state::write_time::set_explicit(ctx.server, open, t);
            }
            h.set_times(times).map_err(err)?;
            if let (Some(share), Some(key)) = (open.share(), open.key) {
                let path = if ctx.server.changes_watched() { ctx.server.disk_path(&share.fs, key) } else { None };
                if let Some(p) = path {
                    ctx.server.report_change(
                        &share.cfg.name,
                        p.components(),
                        action::MODIFIED,
                        filter::ATTRIBUTES | filter::LAST_WRITE | filter::CREATION,
                    );
                    let actor =
                        ctx.server.files().caching(|t, m| t.parent_lease_of(m.model(), &key, open.persistent_id));
                    ctx.server.break_parent_leases(&share.cfg.name, p.components(), actor);
                }
            }
        }
        SetFileInfo::Rename { replace_if_exists, name, .. } => {
            need(open, access::DELETE)?;
            let session = ctx.session()?.clone();
            let posix = ctx.conn.aapl != 0;
            rename(ctx.server, open, &name, replace_if_exists, posix, &session, &mut ctx.kept)?;
        }
        SetFileInfo::Link { replace_if_exists, name } => link(ctx, open, &name, replace_if_exists)?,
        SetFileInfo::Disposition { delete_pending } => set_delete(ctx, open, delete_pending)?,
        SetFileInfo::DispositionEx { flags } => {
            if flags & disposition_flags::POSIX_SEMANTICS != 0 {
                return Err(NtStatus::NOT_SUPPORTED);
            }
            if flags & disposition_flags::ON_CLOSE != 0 {
                need(open, access::DELETE)?;
                let on = flags & disposition_flags::DELETE != 0;
                ctx.kept |= ctx.server.set_delete_on_close(open, on);
            } else {
                set_delete(ctx, open, flags & disposition_flags::DELETE != 0)?;
            }
        }
        SetFileInfo::Position { current_byte_offset } => lock(&open.st).position = current_byte_offset,
        SetFileInfo::Mode { mode } => lock(&open.st).mode = mode,
        SetFileInfo::Allocation { allocation_size } => {
            need(open, access::FILE_WRITE_DATA)?;
            if open.is_dir {
                return Err(NtStatus::INVALID_PARAMETER);
            }
            let size = h.stat().map_err(err)?.size;
            break_level2(ctx, open);
            if allocation_size < size {
                h.set_len(allocation_size).map_err(err)?;
            } else {
                h.allocate(allocation_size).map_err(err)?;
            }
        }
        SetFileInfo::EndOfFile { end_of_file } => {
            need(open, access::FILE_WRITE_DATA)?;
            if open.is_dir {
                return Err(NtStatus::INVALID_PARAMETER);
            }
            if end_of_file > i64::MAX as u64 {
                return Err(NtStatus::INVALID_PARAMETER);
            }
            break_level2(ctx, open);
            h.set_len(end_of_file).map_err(err)?;
            crate::state::write_time::land(ctx.server, open, false);
        }
        SetFileInfo::ValidDataLength { .. } => need(open, access::FILE_WRITE_DATA)?,
        SetFileInfo::FullEa(list) => {
            // [MS-SMB2] 3.3.5.21.1, [MS-FSCC] 2.4.15: needs FILE_WRITE_EA;
            // every name is checked before any is written (`fs::ea`).
            need(open, access::FILE_WRITE_EA)?;
            let pairs: Vec<(&[u8], &[u8])> = list.iter().map(|e| (e.name, e.value)).collect();
            h.set_eas(&pairs).map_err(|e| e.status())?;
            if let (Some(share), Some(key)) = (open.share(), open.key) {
                let path = if ctx.server.changes_watched() { ctx.server.disk_path(&share.fs, key) } else { None };
                if let Some(p) = path {
                    ctx.server.report_change(&share.cfg.name, p.components(), action::MODIFIED, filter::EA);
                }
            }
        }
        SetFileInfo::ShortName { .. } => return Err(NtStatus::NOT_SUPPORTED),
    }
    Ok(())
}

/// FileDispositionInformation ([MS-FSA] 2.1.5.14.3).
fn set_delete(ctx: &mut Ctx<'_>, open: &Open, delete: bool) -> Result<(), NtStatus> {
    need(open, access::DELETE)?;
    let key = open.key.ok_or(NtStatus::INVALID_PARAMETER)?;
    if delete {
        let h = open.handle().ok_or(NtStatus::INVALID_PARAMETER)?;
        let st = h.stat().map_err(|e| e.status())?;
        if st.attributes & protocol::fscc::file_attributes::READONLY != 0 {
            return Err(NtStatus::CANNOT_DELETE);
        }
        if st.is_dir && !h.list_dir().map_err(|e| e.status())?.is_empty() {
            return Err(NtStatus::DIRECTORY_NOT_EMPTY);
        }
    }
    // The file's delete-pending is the model's, changed at once: a CREATE
    // after this, on any connection, is refused (STATUS_DELETE_PENDING).
    ctx.kept |= ctx.server.set_delete_pending(key, delete);
    let watchers = if delete && open.is_dir { lock(&ctx.server.files).open_ids(&key) } else { Vec::new() };
    if !watchers.is_empty() {
        lock(&ctx.server.notify).delete_pending(&watchers);
    }
    if delete {
        // The other leases give up handle caching, so that their holders
        // close the handles they keep and the delete happens (as a
        // FILE_DELETE_ON_CLOSE open breaks them, `cmd::create`); the
        // disposition does not wait for them.
        let _ = break_others_handle_caching(ctx.server, open);
    }
    // The open's delete-on-close changes at once too (a CLOSE after it in
    // the compound reads it from the model).
    ctx.kept |= ctx.server.set_delete_on_close(open, delete);
    Ok(())
}

/// A new name for an open's file (a rename's or a link's target): the
/// share, the file's id, the name as the client wrote it, where the file is
/// now and where the name resolves.
struct NewName {
    share: std::sync::Arc<crate::state::ShareEntry>,
    key: crate::model::FileUid,
    target: SmbPath,
    from: fs::Resolved,
    dest: fs::Resolved,
}

/// Parses and resolves `name` (share-relative, a leading backslash
/// allowed) for `open`'s file; the share root is not a name. The caller
/// (`session`) must be allowed to add the name to its directory
/// ([`super::security::check_may_add`], as smbd checks a rename's
/// destination directory).
fn new_name(server: &Server, open: &Open, name: &str, session: &Session) -> Result<NewName, NtStatus> {
    let share = open.share().ok_or(NtStatus::INVALID_PARAMETER)?.clone();
    let key = open.key.ok_or(NtStatus::INVALID_PARAMETER)?;
    let target = SmbPath::parse(name.trim_start_matches('\\')).map_err(|e| e.status())?;
    if target.is_root() {
        return Err(NtStatus::OBJECT_NAME_INVALID);
    }
    let from =
        server.disk_path(&share.fs, key).or_else(|| lock(&open.st).resolved.clone()).ok_or(NtStatus::INTERNAL_ERROR)?;
    let dest = share.fs.resolve(&target).map_err(|e| e.status())?;
    super::security::check_may_add(&share.fs, &dest, open.is_dir, &server.users, session)?;
    Ok(NewName { share, key, target, from, dest })
}

/// FileRenameInformation ([MS-FSA] 2.1.5.14.11).
///
/// An open of a named stream renames the stream ([`rename_stream`]). A
/// `:stream` target for a file's open is STATUS_NOT_SUPPORTED. A file
/// whose streams are open is not renamed (STATUS_ACCESS_DENIED, as smbd
/// answers: smbtorture smb2.streams.basefile-rename-with-open-stream).
/// Nor is a directory with open files below (STATUS_ACCESS_DENIED, as
/// Windows), unless `posix`: on a connection that negotiated AAPL the
/// rename is POSIX's, as `vfs_fruit`'s `posix_rename` (macOS renames
/// folders whatever is open in them), and the opens below follow it
/// ([`move_opens_below`]).
fn rename(
    server: &Arc<Server>,
    open: &Open,
    name: &str,
    replace: bool,
    posix: bool,
    session: &Session,
    kept: &mut bool,
) -> Result<(), NtStatus> {
    if let Some(base) = open.base {
        return rename_stream(server, open, base, name, replace, kept);
    }
    if name.starts_with(':') {
        return Err(NtStatus::NOT_SUPPORTED);
    }
    let NewName { share, key, target, from, dest } = new_name(server, open, name, session)?;
    if lock(&server.files).stream_opens(&key) > 0 {
        return Err(NtStatus::ACCESS_DENIED);
    }
    if dest.exists() {
        let dst_st = share.fs.stat(&dest).map_err(|e| e.status())?;
        // The target's id if it has opens: this open's own when it is
        // the same inode (a case-only rename, or a hard link).
        let dst_key = lock(&server.files).uid_of(Inode::of(&dst_st));
        if dst_key != Some(key) {
            if !replace {
                return Err(NtStatus::OBJECT_NAME_COLLISION);
            }
            if dst_st.is_dir {
                return Err(NtStatus::ACCESS_DENIED);
            }
            if dst_key.is_some_and(|k| lock(&server.files).open_count(&k) > 0) {
                return Err(NtStatus::ACCESS_DENIED);
            }
        }
    }
    let children = open.is_dir && has_open_children(server, &share, &from);
    if children && !posix {
        return Err(NtStatus::ACCESS_DENIED);
    }
    if !target_parent_shareable(server, &share, &dest, open.is_dir)? {
        return Err(NtStatus::SHARING_VIOLATION);
    }
    let new = share.fs.rename(&from, &target, replace).map_err(|e| e.status())?;
    // A test setting: the node dies right after a rename.
    crate::failpoint::hit("renamed");
    let f = if open.is_dir { filter::DIR_NAME } else { filter::FILE_NAME };
    server.report_change(&share.cfg.name, from.components(), action::RENAMED_OLD_NAME, f);
    server.report_change(&share.cfg.name, new.components(), action::RENAMED_NEW_NAME, f);
    let actor = server.files().caching(|t, m| t.parent_lease_of(m.model(), &key, open.persistent_id));
    server.break_parent_leases(&share.cfg.name, from.components(), actor);
    server.break_parent_leases(&share.cfg.name, new.components(), actor);
    if !open.is_dir {
        // A renamed file gets the ARCHIVE attribute on Windows, which
        // watchers of attribute changes see as a modification of the new
        // name (smbtorture smb2.notify.mask-change).
        server.report_change(&share.cfg.name, new.components(), action::MODIFIED, filter::ATTRIBUTES);
    }
    debug!(from = %from.smb_path(), to = %new.smb_path(), "renamed");
    if children {
        *kept |= move_opens_below(server, &share, &from, &new);
    }
    // The file and its opens are at the new name in the model at once: a
    // CLOSE that deletes it, or a QUERY_INFO of its name, on any
    // connection, finds it there.
    let path = new.smb_path().trim_start_matches('\\').to_string();
    *kept |= server.move_file(key, path);
    lock(&open.st).resolved = Some(new);
    Ok(())
}

/// A rename or a delete disposition breaks the handle caching of the file's
/// other leases (other keys than this open's), as Windows and Samba do; a
/// rename waits for the holders to acknowledge: a holder that caches
/// handles may have the file open under its old name ([MS-FSA] 2.1.5.14.11;
/// smbtorture smb2.lease.rename_wait, v2_rename). Holders that are gone
/// (retained handles) are purged. The file, when the rename must wait.
fn break_others_handle_caching(server: &Arc<Server>, open: &Open) -> Option<crate::model::FileUid> {
    let key = open.key?;
    let breaks = server.files().caching(|t, m| {
        let own = t.open_lease(m.model(), &key, open.persistent_id).map(|(id, _)| id);
        t.break_handle_caching(m, &key, own)
    });
    let mut purged = Vec::new();
    for pid in &breaks.orphans {
        crate::state::durable::purge(server, *pid, &mut purged);
    }
    server.apply(&purged);
    breaks.wait.then_some(key)
}

/// A rename carried out after a wait, and what it needs.
struct Later {
    server: Arc<Server>,
    open: Arc<Open>,
    name: String,
    replace: bool,
    /// A directory with open files below may be renamed ([`rename`]).
    posix: bool,
    session: Arc<Session>,
    /// The request's point-2 record, to wait for before renaming (under a
    /// journal whose records are not durable when appended, or mirrored).
    wait: Option<crate::journal::Ticket>,
}

impl Later {
    /// Waits for the request's records when it must, then renames.
    async fn rename(self) -> HResult {
        if let Some(t) = self.wait {
            if let Err(e) = self.server.journal.durable(t).await {
                tracing::warn!("journal: a rename's records are not durable: {e}");
                return Err(NtStatus::INSUFFICIENT_RESOURCES);
            }
        }
        let mut kept = false;
        rename(&self.server, &self.open, &self.name, self.replace, self.posix, &self.session, &mut kept)?;
        let mut body = BytesMut::with_capacity(2);
        SetInfoResponse.encode(&mut body);
        let mut r = Resp::ok(body).file(self.open.file_id());
        r.kept = kept;
        Ok(r)
    }
}

/// The rename goes async ([MS-SMB2] 3.3.4.2): STATUS_PENDING now, the
/// answer once the broken leases were acknowledged (or timed out), when
/// the rename is carried out.
fn rename_after_breaks(later: Later, key: crate::model::FileUid) -> Resp {
    let mut r = Resp::ok(BytesMut::new());
    r.pending = Some(Box::pin(async move {
        let mut key = key;
        loop {
            crate::state::oplock::wait_for_breaks(&later.server, key).await;
            match break_others_handle_caching(&later.server, &later.open) {
                Some(k) => key = k,
                None => break,
            }
        }
        later.rename().await
    }));
    r
}

/// A rename alone in its frame whose records are not durable yet: answered
/// later (deferred), once they are and it was carried out.
fn rename_when_durable(later: Later) -> Resp {
    let mut r = Resp::ok(BytesMut::new());
    r.deferred = Some(Box::pin(later.rename()));
    r
}

/// FileRenameInformation of an open of a named stream ([MS-FSA]
/// 2.1.5.15.11.1, stream rename): the target is `:name[:$DATA]`.
///
/// - A target that is not a stream name (a path) names the file, which is
///   open through this very stream: STATUS_SHARING_VIOLATION (as Windows
///   answers, smbtorture smb2.streams.rename2). The file's own data
///   stream (`::$DATA`) as a target is STATUS_NOT_SUPPORTED.
/// - A malformed stream name is STATUS_INVALID_PARAMETER.
/// - The stream must have no other open (STATUS_SHARING_VIOLATION); an
///   open target stream is STATUS_ACCESS_DENIED; an existing one is
///   STATUS_OBJECT_NAME_COLLISION without ReplaceIfExists, and replaced
///   only when it is empty (else STATUS_INVALID_PARAMETER).
/// - The open follows its stream; its key in the per-file table stays.
fn rename_stream(
    server: &Arc<Server>,
    open: &Open,
    base: crate::model::FileUid,
    name: &str,
    replace: bool,
    kept: &mut bool,
) -> Result<(), NtStatus> {
    if !name.starts_with(':') {
        return Err(NtStatus::SHARING_VIOLATION);
    }
    let (_, target) = fs::stream::split(name).map_err(|_| NtStatus::INVALID_PARAMETER)?;
    let Some(new) = target else { return Err(NtStatus::NOT_SUPPORTED) };
    let key = open.key.ok_or(NtStatus::INVALID_PARAMETER)?;
    let h = open.handle().ok_or(NtStatus::INVALID_PARAMETER)?;
    let upper = new.to_uppercase();
    {
        let mut files = lock(&server.files);
        if files.open_count(&key) > 1 {
            return Err(NtStatus::SHARING_VIOLATION);
        }
        let target_key = files.stream_key(base, &upper, fs::stream::stream_uid(base, new));
        if target_key != key && files.open_count(&target_key) > 0 {
            return Err(if replace { NtStatus::ACCESS_DENIED } else { NtStatus::OBJECT_NAME_COLLISION });
        }
        h.rename_stream(new, replace).map_err(|e| match e {
            fs::FsError::Exists => NtStatus::OBJECT_NAME_COLLISION,
            e => e.status(),
        })?;
        files.rename_stream(&key, base, &upper);
    }
    let path = server.path_of(open).unwrap_or_default();
    let file_path = path.split_once(':').map_or(path.as_str(), |(f, _)| f);
    *kept |= server.move_file(key, format!("{file_path}:{new}"));
    Ok(())
}

/// FileLinkInformation ([MS-FSA] 2.1.5.14.6): a second name for the
/// open's file, in the same share. A directory cannot be linked
/// (STATUS_FILE_IS_A_DIRECTORY); an existing name is replaced only with
/// ReplaceIfExists, never when it is a directory or open
/// (STATUS_ACCESS_DENIED), else STATUS_OBJECT_NAME_COLLISION. A stream
/// name is refused. The new name shares the file's stable id (it is the
/// inode's), so opens through either name are of one file.
fn link(ctx: &mut Ctx<'_>, open: &Open, name: &str, replace: bool) -> Result<(), NtStatus> {
    if open.base.is_some() {
        // An open of a named stream: a stream has no names of its own.
        return Err(NtStatus::INVALID_PARAMETER);
    }
    if open.is_dir {
        return Err(NtStatus::FILE_IS_A_DIRECTORY);
    }
    if name.contains(':') {
        return Err(NtStatus::INVALID_PARAMETER);
    }
    let session = ctx.session()?.clone();
    let NewName { share, key, target, from, dest } = new_name(ctx.server, open, name, &session)?;
    if share.cfg.read_only {
        return Err(NtStatus::ACCESS_DENIED);
    }
    if dest.exists() && replace {
        let dst_st = share.fs.stat(&dest).map_err(|e| e.status())?;
        let dst_key = lock(&ctx.server.files).uid_of(Inode::of(&dst_st));
        if dst_key != Some(key) && dst_key.is_some_and(|k| lock(&ctx.server.files).open_count(&k) > 0) {
            return Err(NtStatus::ACCESS_DENIED);
        }
    }
    let new = share.fs.link(&from, &target, replace).map_err(|e| match e {
        fs::FsError::IsADirectory => NtStatus::FILE_IS_A_DIRECTORY,
        e => e.status(),
    })?;
    ctx.server.report_change(&share.cfg.name, new.components(), action::ADDED, filter::FILE_NAME);
    let actor = ctx.server.files().caching(|t, m| t.parent_lease_of(m.model(), &key, open.persistent_id));
    ctx.server.break_parent_leases(&share.cfg.name, new.components(), actor);
    debug!(from = %from.smb_path(), to = %new.smb_path(), "linked");
    Ok(())
}

/// Can the rename open the target's parent directory? Windows opens it
/// for FILE_ADD_FILE (FILE_ADD_SUBDIRECTORY for a directory) and
/// SYNCHRONIZE, sharing read and write only ([MS-FSA] 2.1.5.14.11: the
/// rename opens the destination directory), so another open of that
/// directory that holds DELETE, or that does not share write, makes the
/// rename fail with STATUS_SHARING_VIOLATION.
fn target_parent_shareable(
    server: &Server,
    share: &crate::state::ShareEntry,
    dest: &fs::Resolved,
    is_dir: bool,
) -> Result<bool, NtStatus> {
    let parent = match dest.components().split_last() {
        Some((_, parent)) => parent.join("\\"),
        None => return Ok(true),
    };
    let parent = SmbPath::parse(&parent).map_err(|e| e.status())?;
    let parent = share.fs.resolve(&parent).map_err(|e| e.status())?;
    let st = share.fs.stat(&parent).map_err(|e| e.status())?;
    let mut files = lock(&server.files);
    let Some(k) = files.uid_of(Inode::of(&st)) else { return Ok(true) };
    // The other opens' share modes are the model's (its lock ranks below
    // the table's).
    Ok(server.with_model(|m| files.check_share(&k, rename_parent_access(is_dir), RENAME_PARENT_SHARE, m)))
}

/// The access the rename's open of the target directory asks for.
fn rename_parent_access(is_dir: bool) -> u32 {
    // FILE_ADD_SUBDIRECTORY is FILE_APPEND_DATA's bit, FILE_ADD_FILE is
    // FILE_WRITE_DATA's ([MS-SMB2] 2.2.13.1.2).
    (if is_dir { access::FILE_APPEND_DATA } else { access::FILE_WRITE_DATA }) | access::SYNCHRONIZE
}

/// The sharing of the rename's open of the target directory.
const RENAME_PARENT_SHARE: u32 = crate::state::files::share::READ | crate::state::files::share::WRITE;

/// After a POSIX rename of the directory `from` to `to`: the files with
/// opens below it are below `to` now, in the state model (a `FileMoved`
/// for each, which moves its opens' paths too, applied at once) and in
/// each open's resolved path, in every session. True when a change is one
/// a restart restores.
fn move_opens_below(server: &Server, share: &crate::state::ShareEntry, from: &fs::Resolved, to: &fs::Resolved) -> bool {
    let set = server.set();
    let ((), kept) = server.change_model(|m| {
        let Some(p) = m.partition(set) else { return ((), Vec::new()) };
        let moved = p
            .files()
            .filter(|f| f.share().eq_ignore_ascii_case(&share.cfg.name))
            .filter_map(|f| {
                let rest = below(f.path(), from.components())?;
                let path = [to.smb_path(), rest].into_iter().filter(|c| !c.is_empty()).collect::<Vec<_>>().join("\\");
                Some(Delta::FileMoved { set, file: f.uid(), path })
            })
            .collect();
        ((), moved)
    });
    let sessions: Vec<Arc<Session>> = lock(&server.sessions).values().cloned().collect();
    for session in sessions {
        let opens: Vec<Arc<Open>> = lock(&session.inner).opens.values().cloned().collect();
        for o in opens {
            let mut st = lock(&o.st);
            let Some(new) = st.resolved.as_ref().and_then(|r| r.moved(from, to)) else { continue };
            st.resolved = Some(new);
        }
    }
    kept
}

/// The rest of the model's path `path` below the directory `dir` (on-disk
/// components), when it lies below it (not `dir` itself); ASCII case aside,
/// as a model's path is spelled as a client named it.
fn below(path: &str, dir: &[String]) -> Option<String> {
    let mut parts = path.split('\\').filter(|c| !c.is_empty());
    for d in dir {
        if !parts.next()?.eq_ignore_ascii_case(d) {
            return None;
        }
    }
    let rest: Vec<&str> = parts.collect();
    (!rest.is_empty()).then(|| rest.join("\\"))
}

/// Is any file below this directory open? (Windows refuses to rename such
/// a directory.) The model's files say, by their paths.
fn has_open_children(server: &Server, share: &crate::state::ShareEntry, dir: &fs::Resolved) -> bool {
    let set = server.set();
    server.with_model(|m| {
        m.partition(set).is_some_and(|p| {
            p.files()
                .any(|f| f.share().eq_ignore_ascii_case(&share.cfg.name) && below(f.path(), dir.components()).is_some())
        })
    })
}

/// A size change breaks level II oplocks ([MS-FSA] 2.1.4.12).
fn break_level2(ctx: &Ctx<'_>, open: &Open) {
    if let Some(key) = open.key {
        ctx.server.files().break_level2(&key, open.persistent_id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::files::{share, share_conflict, Sharing};

    fn dir_open(access: u32, share_access: u32) -> Sharing {
        Sharing { access, share_access }
    }

    #[test]
    fn rename_conflicts_with_parent_opens_like_windows() {
        let rw = access::FILE_READ_DATA | access::FILE_WRITE_DATA | access::SYNCHRONIZE;
        let all = share::READ | share::WRITE | share::DELETE;
        let conflicts = |o: &Sharing| share_conflict(*o, rename_parent_access(false), RENAME_PARENT_SHARE);
        // smbtorture smb2.rename: DELETE access on the parent, shared or not.
        assert!(conflicts(&dir_open(rw | access::DELETE, all)));
        assert!(conflicts(&dir_open(rw | access::DELETE, 0)));
        // Parent open that shares nothing.
        assert!(conflicts(&dir_open(rw, 0)));
        // An ordinary listing handle does not get in the way.
        assert!(!conflicts(&dir_open(rw, all)));
        assert!(!conflicts(&dir_open(access::FILE_READ_DATA | access::SYNCHRONIZE, share::READ | share::WRITE)));
        // Nor does an attributes-only open.
        assert!(!conflicts(&dir_open(access::FILE_READ_ATTRIBUTES, 0)));
    }
}
