//! QUERY_DIRECTORY ([MS-SMB2] 3.3.5.18): directory enumeration with
//! wildcards, restart, reopen, single entry and resume.

use bytes::BytesMut;
use protocol::fscc::DirListBuilder;
use protocol::msg::query_directory::{query_directory_flags as qf, QueryDirectoryRequest, QueryDirectoryResponse};
use protocol::NtStatus;

use super::{bad, file_stat};
use crate::conn::MAX_IO;
use crate::fs;
use crate::pipeline::{Ctx, HResult, Resp};
use crate::state::files::access;
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
    if req.output_buffer_length == 0 || req.output_buffer_length > MAX_IO {
        return Err(NtStatus::INVALID_PARAMETER);
    }
    super::check_credit_charge(ctx, req.output_buffer_length)?;
    if protocol::fscc::dir_entry_fixed_size(req.file_information_class).is_none() {
        return Err(NtStatus::INVALID_INFO_CLASS);
    }
    let mut builder = DirListBuilder::new(req.file_information_class, req.output_buffer_length as usize)
        .map_err(|e| e.status())?;
    let handle = open.handle().ok_or(NtStatus::INVALID_PARAMETER)?;
    let mut st = lock(&open.st);
    let restart = req.flags & (qf::RESTART_SCANS | qf::REOPEN) != 0;
    let first = restart || st.dir.is_none();
    if first {
        let pattern = if req.file_name.is_empty() { "*".to_string() } else { req.file_name.clone() };
        if pattern.contains(['\\', '/']) {
            return Err(NtStatus::OBJECT_NAME_INVALID);
        }
        let mut entries = Vec::new();
        let me = handle.stat().map_err(|e| e.status())?;
        entries.push(fs::DirEntry { name: ".".into(), stat: me.clone() });
        entries.push(fs::DirEntry { name: "..".into(), stat: me });
        entries.extend(handle.list_dir().map_err(|e| e.status())?);
        entries.retain(|e| fs::wildcard_match(&pattern, &e.name));
        st.dir = Some(DirCursor { pattern, entries, next: 0 });
    }
    let cursor = st.dir.as_mut().ok_or(NtStatus::INTERNAL_ERROR)?;
    if cursor.next >= cursor.entries.len() {
        // Nothing matched at all, or the enumeration is done.
        return Err(if first && cursor.entries.is_empty() { NtStatus::NO_SUCH_FILE } else { NtStatus::NO_MORE_FILES });
    }
    let files = lock(&ctx.server.files);
    while cursor.next < cursor.entries.len() {
        let e = &cursor.entries[cursor.next];
        let short = if e.name == "." || e.name == ".." { String::new() } else { fs::short_name(&e.name) };
        let pending = files.is_delete_pending(&(e.stat.dev, e.stat.ino));
        if !builder.push(&e.name, &short, &file_stat(&e.stat, pending)) {
            break;
        }
        cursor.next += 1;
        if req.flags & qf::RETURN_SINGLE_ENTRY != 0 {
            break;
        }
    }
    drop(files);
    if builder.is_empty() {
        // The next entry does not fit in the client's buffer.
        return Err(NtStatus::INFO_LENGTH_MISMATCH);
    }
    let data = builder.finish();
    let mut body = BytesMut::with_capacity(8 + data.len());
    QueryDirectoryResponse { output_buffer: &data }.encode(&mut body);
    Ok(Resp::ok(body).file(fid))
}
