//! QUERY_DIRECTORY ([MS-SMB2] 3.3.5.18): directory enumeration with
//! wildcards, restart, reopen, single entry and resume.

use bytes::BytesMut;
use protocol::fscc::{file_info_class as fic, DirListBuilder};
use protocol::msg::aapl;
use protocol::msg::query_directory::{query_directory_flags as qf, QueryDirectoryRequest, QueryDirectoryResponse};
use protocol::NtStatus;

use super::{bad, file_stat, security};
use crate::fs;
use crate::handler::{Ctx, HResult, Resp};
use crate::state::files::{access, Inode};
use crate::state::lock;
use crate::state::open::DirCursor;

pub fn handle(ctx: &mut Ctx<'_>) -> HResult {
    let req = QueryDirectoryRequest::parse(ctx.msg).map_err(bad)?;
    let open = ctx.open(req.file_id)?;
    let fid = open.file_id();
    if !open.is_dir {
        return Err(NtStatus::INVALID_PARAMETER);
    }
    if open.access & access::FILE_READ_DATA == 0 {
        return Err(NtStatus::ACCESS_DENIED);
    }
    // Beyond Connection.MaxTransactSize (3.3.5.18).
    if req.output_buffer_length == 0 || req.output_buffer_length > ctx.conn.max_io() {
        return Err(NtStatus::INVALID_PARAMETER);
    }
    super::check_credit_charge(ctx, req.output_buffer_length)?;
    if protocol::fscc::dir_entry_fixed_size(req.file_information_class).is_none() {
        return Err(NtStatus::INVALID_INFO_CLASS);
    }
    let mut builder =
        DirListBuilder::new(req.file_information_class, req.output_buffer_length as usize).map_err(|e| e.status())?;
    let handle = open.handle().ok_or(NtStatus::INVALID_PARAMETER)?;
    let mut st = lock(&open.st);
    let restart = req.flags & (qf::RESTART_SCANS | qf::REOPEN) != 0;
    let first = restart || st.dir.is_none();
    if first {
        let pattern = if req.file_name.is_empty() { "*".to_string() } else { req.file_name.clone() };
        if pattern.contains(['\\', '/']) || pattern.encode_utf16().count() > fs::wildcard::MAX_PATTERN {
            return Err(NtStatus::OBJECT_NAME_INVALID);
        }
        let expr = fs::wildcard::Expr::new(&pattern);
        let mut entries = Vec::new();
        let me = handle.stat().map_err(|e| e.status())?;
        entries.push(fs::DirEntry { name: ".".into(), stat: me.clone(), link: None });
        entries.push(fs::DirEntry { name: "..".into(), stat: me, link: None });
        // Symbolic links are listed as reparse points when confined to the
        // share from this directory, and left out otherwise (`fs::link`).
        let listed = match st.resolved.as_ref() {
            Some(here) => handle.list_dir_in(here.components(), open.share().and_then(|s| s.fs.root_components())),
            None => handle.list_dir(),
        };
        entries.extend(listed.map_err(|e| e.status())?);
        entries.retain(|e| expr.matches(&e.name));
        st.dir = Some(DirCursor { pattern, entries, next: 0 });
    }
    let cursor = st.dir.as_mut().ok_or(NtStatus::INTERNAL_ERROR)?;
    if cursor.next >= cursor.entries.len() {
        // Nothing matched at all, or the enumeration is done.
        return Err(if first && cursor.entries.is_empty() { NtStatus::NO_SUCH_FILE } else { NtStatus::NO_MORE_FILES });
    }
    // Every class but FileDirectoryInformation and FileNamesInformation
    // has an EaSize: only those pay for reading the xattrs.
    let with_ea_size =
        !matches!(req.file_information_class, fic::FILE_DIRECTORY_INFORMATION | fic::FILE_NAMES_INFORMATION);
    // A client that negotiated AAPL's READ_DIR_ATTR gets Apple's fields in
    // FileIdBothDirectoryInformation ([`aapl::DirAttr`]).
    let mut apple = (ctx.conn.aapl & aapl::caps::SUPPORTS_READ_DIR_ATTR != 0
        && req.file_information_class == fic::FILE_ID_BOTH_DIRECTORY_INFORMATION)
        .then(|| Apple::new(ctx));
    let files = lock(&ctx.server.files);
    while cursor.next < cursor.entries.len() {
        let e = &mut cursor.entries[cursor.next];
        if !first {
            // The listing was taken when the enumeration started: show each
            // later entry as it is now, and skip the ones deleted since
            // ([MS-FSA] 2.1.5.6.3: entries come from the directory, not a
            // copy of it).
            let fresh = if e.name == "." || e.name == ".." { handle.stat() } else { handle.stat_child(&e.name) };
            match fresh {
                Ok(st) => e.stat = st,
                Err(fs::FsError::NotFound | fs::FsError::SymlinkRefused | fs::FsError::AccessDenied) => {
                    cursor.next += 1;
                    continue;
                }
                Err(err) => return Err(err.status()),
            }
        }
        let short = if e.name == "." || e.name == ".." { String::new() } else { fs::short_name(&e.name) };
        let pending = files.uid_of(Inode::of(&e.stat)).is_some_and(|k| ctx.server.delete_pending(k));
        let mut fstat = file_stat(&e.stat, pending);
        if ctx.conn.aapl != 0 {
            // Zero file ids once AAPL is negotiated (as `vfs_fruit`).
            fstat.file_id = 0;
        }
        if with_ea_size {
            // [MS-FSCC] 2.4.8 and siblings: EaSize as FileEaInformation
            // reports it. ".." is left at 0 (the handle is not on it).
            // A reparse point sends its tag there instead ([MS-FSCC]
            // 2.4.8): a symlink's xattrs are never read (they would be its
            // target's).
            fstat.ea_size = match e.name.as_str() {
                "." => handle.ea_size(),
                ".." => 0,
                _ if e.stat.attributes & fs::attr::REPARSE_POINT != 0 => 0,
                name => handle.child_ea_size(name),
            };
        }
        let pushed = match apple.as_mut() {
            // A reparse point is listed as without AAPL (as smbd does).
            Some(a) if e.stat.attributes & fs::attr::REPARSE_POINT == 0 => {
                builder.push_aapl(&e.name, &fstat, &a.attr(handle, &e.name, &e.stat))
            }
            _ => builder.push(&e.name, &short, &fstat),
        };
        if !pushed {
            break;
        }
        cursor.next += 1;
        if req.flags & qf::RETURN_SINGLE_ENTRY != 0 {
            break;
        }
    }
    drop(files);
    if builder.is_empty() {
        if cursor.next >= cursor.entries.len() {
            // Everything left had been deleted.
            return Err(NtStatus::NO_MORE_FILES);
        }
        return Err(first_entry_does_not_fit(req.file_information_class, req.output_buffer_length));
    }
    let data = builder.finish();
    let mut body = BytesMut::with_capacity(8 + data.len());
    QueryDirectoryResponse { output_buffer: &data }.encode(&mut body);
    Ok(Resp::ok(body).file(fid))
}

/// What READ_DIR_ATTR adds to a listing's entries, as Samba's `vfs_fruit`
/// (`readdir_attr`) gives it: the maximal access the caller would get
/// (the entry's stored descriptor as an open checks it,
/// [`security::max_access_on_open`], else the tree's), the resource fork's
/// size, the compressed Finder info ([`fs::MacMeta`]), and the UNIX mode
/// when the connection was told NFS_ACE.
struct Apple {
    server: std::sync::Arc<crate::state::Server>,
    session: Option<std::sync::Arc<crate::state::Session>>,
    tree_max: u32,
    with_mode: bool,
    /// The caller's token, made at the first entry with a descriptor.
    token: Option<crate::acl::Token>,
    /// The listed directory grants FILE_DELETE_CHILD (or has no
    /// descriptor), found at the first entry that needs it.
    delete_child: Option<bool>,
}

impl Apple {
    fn new(ctx: &Ctx<'_>) -> Apple {
        Apple {
            server: ctx.server.clone(),
            session: ctx.session.clone(),
            tree_max: ctx.tree.as_ref().map_or(access::FILE_READ_ATTRIBUTES, |t| t.maximal_access),
            with_mode: ctx.conn.aapl & aapl::caps::SUPPORTS_NFS_ACE != 0,
            token: None,
            delete_child: None,
        }
    }

    fn attr(&mut self, dir: &fs::Handle, name: &str, st: &fs::Stat) -> aapl::DirAttr {
        let meta = dir.child_mac_meta(name);
        let max_access = match security::parse_stored(meta.sd.clone()) {
            Some(sd) if name != "." && name != ".." => self.max_from(dir, &sd),
            _ => self.tree_max,
        };
        aapl::DirAttr {
            max_access,
            rfork_size: meta.rfork_size,
            finder_info: meta.finder_info(st.is_dir, st.btime),
            unix_mode: if self.with_mode { st.mode as u16 } else { 0 },
        }
    }

    /// [`security::max_access_on_open`]'s answer for an entry of `dir`
    /// whose stored descriptor is `sd`, within the tree's maximal access.
    fn max_from(&mut self, dir: &fs::Handle, sd: &protocol::fscc::security::SecurityDescriptor) -> u32 {
        let Some(session) = &self.session else { return self.tree_max };
        let token = self.token.get_or_insert_with(|| security::token(&self.server.users, session));
        let mut max = crate::acl::max_access(sd, token) | access::FILE_READ_ATTRIBUTES;
        if max & access::DELETE == 0 {
            let grants = *self.delete_child.get_or_insert_with(|| {
                security::parse_stored(dir.stored_sd().ok().flatten())
                    .is_none_or(|p| crate::acl::max_access(&p, token) & access::FILE_DELETE_CHILD != 0)
            });
            if grants {
                max |= access::DELETE;
            }
        }
        max & self.tree_max
    }
}

/// The status when not even the next entry fits the client's buffer
/// ([MS-FSA] 2.1.5.6.3): STATUS_INFO_LENGTH_MISMATCH when the buffer is
/// smaller than the class's fixed part, else STATUS_BUFFER_OVERFLOW (the
/// name is what does not fit). The entry stays next, so a retry with a
/// larger buffer returns it.
fn first_entry_does_not_fit(class: u8, output_buffer_length: u32) -> NtStatus {
    match protocol::fscc::dir_entry_fixed_size(class) {
        Some(fixed) if output_buffer_length as usize >= fixed => NtStatus::BUFFER_OVERFLOW,
        _ => NtStatus::INFO_LENGTH_MISMATCH,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use protocol::fscc::file_info_class as fic;

    #[test]
    fn small_buffers_get_the_windows_status() {
        let fixed = protocol::fscc::dir_entry_fixed_size(fic::FILE_BOTH_DIRECTORY_INFORMATION).unwrap() as u32;
        assert_eq!(first_entry_does_not_fit(fic::FILE_BOTH_DIRECTORY_INFORMATION, 1), NtStatus::INFO_LENGTH_MISMATCH);
        assert_eq!(
            first_entry_does_not_fit(fic::FILE_BOTH_DIRECTORY_INFORMATION, fixed - 1),
            NtStatus::INFO_LENGTH_MISMATCH
        );
        assert_eq!(first_entry_does_not_fit(fic::FILE_BOTH_DIRECTORY_INFORMATION, fixed), NtStatus::BUFFER_OVERFLOW);
    }
}
