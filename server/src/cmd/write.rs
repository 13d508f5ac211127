//! WRITE ([MS-SMB2] 3.3.5.13), to files and named pipes.

use bytes::BytesMut;
use protocol::msg::write::{WriteRequest, WriteResponse};
use protocol::NtStatus;

use super::bad;
use crate::fs;
use crate::handler::{Ctx, HResult, Resp};
use crate::journal::{Decision, OpId};
use crate::model::{Delta, PersistentFileId};
use crate::state::files::access;
use crate::state::lock;
use crate::state::open::OpenKind;
use crate::state::{Open, Server};
use std::sync::Arc;

/// The largest file NTFS holds, 16 TiB less 64 KiB: Windows fails a write
/// past it with INVALID_PARAMETER, and Duet does the same.
const MAX_FILE_SIZE: u64 = 0xFFF_FFFF_0000;

/// Writes at or past this offset check that the space they may allocate
/// exists (see [`check_space`]); below it the write itself finds out.
const SPACE_CHECK_FROM: u64 = 64 << 20;

pub fn handle(ctx: &mut Ctx<'_>) -> HResult {
    let req = WriteRequest::parse(ctx.msg).map_err(bad)?;
    // With the byte-range lock check of the offset it names, under the
    // ChannelSequence check's hold (an append-only open's is checked below).
    let (open, locked) = ctx.open_for_io(req.file_id, req.offset, req.data.len() as u64, true)?;
    // Beyond Connection.MaxWriteSize (3.3.5.13).
    if req.data.len() > ctx.conn.max_io() as usize {
        return Err(NtStatus::INVALID_PARAMETER);
    }
    super::check_credit_charge(ctx, req.data.len() as u32)?;
    let fid = open.file_id();
    let count = match &open.kind {
        // Never in a session: reclaiming it opens its file.
        OpenKind::Unopened => return Err(NtStatus::FILE_CLOSED),
        OpenKind::Pipe(p) => {
            let server = ctx.server.clone();
            lock(p).write(req.data, &*server).map_err(|e| e.status())?;
            req.data.len()
        }
        OpenKind::Fs(h) => {
            if open.is_dir {
                return Err(NtStatus::INVALID_DEVICE_REQUEST);
            }
            let append_only = open.access & access::FILE_WRITE_DATA == 0 && open.access & access::FILE_APPEND_DATA != 0;
            if open.access & (access::FILE_WRITE_DATA | access::FILE_APPEND_DATA) == 0 {
                return Err(NtStatus::ACCESS_DENIED);
            }
            let len = req.data.len() as u64;
            // An append-only open writes at the end, wherever it asks to:
            // the end as it is when the data is written (a WRITE before it
            // may still be writing), checked here against where it is now.
            let offset = if append_only { h.stat().map_err(|e| e.status())?.size } else { req.offset };
            // An append records where its data goes before it writes it
            // (below, [`Decision::AppendAt`]); where a power loss must find
            // that record, the WRITE waits for it on a blocking thread.
            let wait = append_only && ctx.server.journal.must_wait();
            let at = if append_only {
                At::End(Some(Decide { op: ctx.op, wait: wait && ctx.single }))
            } else {
                At::Offset(offset)
            };
            check_range(offset, len)?;
            if len > 0 {
                if let Some(key) = open.key {
                    let locked = if append_only {
                        ctx.server.io_conflict(key, open.persistent_id, offset, len, true)
                    } else {
                        locked
                    };
                    if locked {
                        return Err(NtStatus::FILE_LOCK_CONFLICT);
                    }
                    // Readers that cache the file must drop their copies.
                    ctx.server.files().break_level2(&key, open.persistent_id);
                }
                check_space(&open, h, offset + len)?;
            }
            // A lone large WRITE whose data the journal does not hold is
            // synced in the file before it is answered (WriteData::InFile).
            let sync = ctx.single && ctx.server.syncs_write_in_file(req.data.len());
            if ctx.single && (req.data.len() >= DEFER_FROM || wait) {
                // Large writes run beside the connection, which reads on;
                // the data stays in the request frame, shared, not copied.
                let data = ctx.frame.slice_ref(req.data);
                let open = open.clone();
                let server = ctx.server.clone();
                let mut r = Resp::ok(BytesMut::new()).file(fid);
                r.deferred = Some(Box::pin(async move {
                    let rt = tokio::runtime::Handle::current();
                    tokio::task::spawn_blocking(move || {
                        let _guard = rt.enter();
                        write_file(&server, &open, &data, at, sync)
                    })
                    .await
                    .map_err(|_| NtStatus::INTERNAL_ERROR)?
                }));
                return Ok(r);
            }
            return write_file(ctx.server, &open, req.data, at, sync);
        }
    };
    let mut body = BytesMut::with_capacity(17);
    WriteResponse { count: count as u32 }.encode(&mut body);
    Ok(Resp::ok(body).file(fid))
}

/// Writes at least this large are deferred (see [`Resp::deferred`]).
const DEFER_FROM: usize = 64 * 1024;

/// Where a WRITE's data goes.
#[derive(Clone, Copy, Debug)]
enum At {
    Offset(u64),
    /// The end of the file when the data is written, with the open's
    /// other writes held off (an append-only open); recorded in the
    /// journal first, with `Some`.
    End(Option<Decide>),
}

/// How an append records where its data goes ([`crate::journal::Journal::decided`]).
#[derive(Clone, Copy, Debug)]
struct Decide {
    /// The journal's operation and the element's index.
    op: (OpId, usize),
    /// Wait until the record is durable before writing: on a blocking
    /// thread only (a deferred WRITE), under a policy whose records are not
    /// durable when appended.
    wait: bool,
}

/// Records that the append of `len` bytes by `d` goes at `offset`, and
/// waits for the record when `d` says so. A journal that refuses it (full
/// and the WRITE not on a blocking thread, or failing) leaves the append as
/// it was before such records: a resend after a crash may append again.
fn record_append(server: &Arc<Server>, d: Decide, offset: u64, len: u64) {
    let decision = Decision::AppendAt { offset, len };
    let (op, index) = d.op;
    let journal = &server.journal;
    let r = if d.wait {
        tokio::runtime::Handle::current().block_on(async {
            let t = crate::journal::with_backoff(|| journal.decided(op, index, &decision)).await?;
            journal.durable(t).await
        })
    } else {
        journal.decided(op, index, &decision).map(drop)
    };
    if let Err(e) = r {
        tracing::debug!(offset, len, "journal, an append's place not recorded: {e}");
    }
}

/// Writes file data (and syncs it, with `sync`) and answers with the count.
/// A WRITE at the end of the file records where that was
/// ([`Delta::AppendedAt`]): the request's own offset is not where its data
/// went, and a redo after a power loss must write it where it did.
fn write_file(server: &Arc<Server>, open: &Arc<Open>, data: &[u8], at: At, sync: bool) -> HResult {
    let (n, offset) = write_data_at(server, open, data, at)?;
    if sync {
        open.handle().ok_or(NtStatus::INVALID_DEVICE_REQUEST)?.sync().map_err(|e| e.status())?;
    }
    let mut body = BytesMut::with_capacity(17);
    WriteResponse { count: n as u32 }.encode(&mut body);
    let mut r = Resp::ok(body).file(open.file_id());
    if matches!(at, At::End(_)) {
        r.deltas.push(Delta::AppendedAt { open: PersistentFileId(open.persistent_id), offset });
    }
    Ok(r)
}

/// Writes `data` at `offset` through an open, with what every write
/// does besides: one write per open at a time, the delayed write-time
/// update, the open's position and its written mark. The caller has
/// checked access, byte-range locks and broken level II oplocks (WRITE,
/// and server-side copies).
pub(crate) fn write_data(server: &Arc<Server>, open: &Arc<Open>, data: &[u8], offset: u64) -> Result<usize, NtStatus> {
    write_data_at(server, open, data, At::Offset(offset)).map(|(n, _)| n)
}

/// [`write_data`] at `at`: the count written and the offset it was written at.
fn write_data_at(server: &Arc<Server>, open: &Arc<Open>, data: &[u8], at: At) -> Result<(usize, u64), NtStatus> {
    let h = open.handle().ok_or(NtStatus::INVALID_DEVICE_REQUEST)?;
    let _writing = lock(&open.writing);
    let offset = match at {
        At::Offset(o) => o,
        At::End(_) => h.stat().map_err(|e| e.status())?.size,
    };
    check_range(offset, data.len() as u64)?;
    if let (At::End(Some(d)), false) = (at, data.is_empty()) {
        record_append(server, d, offset, data.len() as u64);
    }
    let frozen = crate::state::write_time::before_write(server, open);
    // Past the element's lease check, before its data is written: a test holds
    // it here (and freezes the node) until its partner took the set over.
    crate::failpoint::pause("write-held");
    crate::failpoint::hit_after("torn", || drop(h.write_at(&data[..data.len() / 2], offset)));
    let n = h.write_at(data, offset).map_err(|e| e.status())?;
    crate::failpoint::hit("written");
    if n > 0 {
        crate::state::write_time::after_write(server, open, frozen);
    }
    let mut st = lock(&open.st);
    st.position = offset + n as u64;
    st.written = true;
    Ok((n, offset))
}

/// A write must start at a valid file offset (at most 2^63 - 1, [MS-FSA]
/// 2.1.5.3) and, when it carries data, end within [`MAX_FILE_SIZE`]. An
/// empty write anywhere up to 2^63 - 1 succeeds and writes nothing.
fn check_range(offset: u64, len: u64) -> Result<(), NtStatus> {
    if offset > i64::MAX as u64 || (len > 0 && offset.checked_add(len).is_none_or(|end| end > MAX_FILE_SIZE)) {
        return Err(NtStatus::INVALID_PARAMETER);
    }
    Ok(())
}

/// Duet keeps no sparse-file state, so a write past the end of file is
/// treated as NTFS treats one to a file that is not sparse: the gap is
/// allocated too. When the file system could not hold the grown file, the
/// write fails with DISK_FULL up front, instead of leaving a hole that no
/// later write could fill.
fn check_space(open: &Open, h: &fs::Handle, end: u64) -> Result<(), NtStatus> {
    if end < SPACE_CHECK_FROM {
        return Ok(());
    }
    let Some(Ok(space)) = open.share().map(|s| s.fs.statvfs()) else {
        return Ok(());
    };
    let avail = space.avail_blocks.saturating_mul(space.block_size);
    if end <= avail {
        return Ok(());
    }
    let size = h.stat().map_err(|e| e.status())?.size;
    if growth_fits(size, end, avail) {
        Ok(())
    } else {
        Err(NtStatus::DISK_FULL)
    }
}

/// Does growing a file of `size` bytes to `end` fit in `avail` free bytes?
fn growth_fits(size: u64, end: u64, avail: u64) -> bool {
    end.saturating_sub(size) <= avail
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_ranges() {
        let max = i64::MAX as u64;
        assert_eq!(check_range(0, 10), Ok(()));
        // Empty writes: anywhere up to 2^63 - 1.
        assert_eq!(check_range(max, 0), Ok(()));
        assert_eq!(check_range(MAX_FILE_SIZE, 0), Ok(()));
        assert_eq!(check_range(max + 1, 0), Err(NtStatus::INVALID_PARAMETER));
        assert_eq!(check_range(u64::MAX, 0), Err(NtStatus::INVALID_PARAMETER));
        // Data: the end within the largest file.
        assert_eq!(check_range(MAX_FILE_SIZE - 1, 1), Ok(()));
        assert_eq!(check_range(MAX_FILE_SIZE, 1), Err(NtStatus::INVALID_PARAMETER));
        assert_eq!(check_range(max, 1), Err(NtStatus::INVALID_PARAMETER));
        assert_eq!(check_range(u64::MAX, 65536), Err(NtStatus::INVALID_PARAMETER));
        assert_eq!(check_range(u64::MAX - 1, 65536), Err(NtStatus::INVALID_PARAMETER));
    }

    #[test]
    fn growth_against_free_space() {
        assert!(growth_fits(100, 50, 0));
        assert!(growth_fits(100, 200, 100));
        assert!(!growth_fits(100, 201, 100));
        assert!(!growth_fits(0, MAX_FILE_SIZE, 1 << 40));
    }
}
