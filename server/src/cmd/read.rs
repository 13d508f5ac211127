//! READ ([MS-SMB2] 3.3.5.12), from files and named pipes.
//!
//! A large READ (at least [`DEFER_FROM`]) runs beside the connection. When
//! its answer will be neither signed nor encrypted ([`Ctx::may_send_file`])
//! its data stays in the file: the answer is the READ response's fixed part
//! with the DataLength the file's size allows, and the connection's writer
//! sends the data after it with `sendfile` ([`crate::transport`]), so it
//! is not copied into a buffer and out again.

use std::sync::Arc;

use bytes::BytesMut;
use protocol::msg::read::{ReadRequest, ReadResponse};
use protocol::NtStatus;

use super::bad;
use crate::handler::{Ctx, FileData, HResult, Resp};
use crate::state::files::access;
use crate::state::lock;
use crate::state::open::OpenKind;
use crate::state::Open;

pub fn handle(ctx: &mut Ctx<'_>) -> HResult {
    let req = ReadRequest::parse(ctx.msg).map_err(bad)?;
    // With the byte-range lock check, under the ChannelSequence check's hold.
    let (open, locked) = ctx.open_for_io(req.file_id, req.offset, u64::from(req.length), false)?;
    // Beyond Connection.MaxReadSize (3.3.5.12).
    if req.length > ctx.conn.max_io() {
        return Err(NtStatus::INVALID_PARAMETER);
    }
    super::check_credit_charge(ctx, req.length)?;
    let fid = open.file_id();
    match &open.kind {
        // Never in a session: reclaiming it opens its file.
        OpenKind::Unopened => Err(NtStatus::FILE_CLOSED),
        OpenKind::Pipe(p) => {
            let mut pipe = lock(p);
            let Some(data) = pipe.read(req.length as usize) else {
                // Nothing to read yet: a real pipe would block. Duet's pipes
                // answer every request at once, so this is a client error.
                return Err(NtStatus::PIPE_BROKEN);
            };
            let status = if pipe.more_pending() { NtStatus::BUFFER_OVERFLOW } else { NtStatus::SUCCESS };
            let mut body = BytesMut::with_capacity(16 + data.len());
            ReadResponse { data: &data, data_remaining: 0 }.encode(&mut body);
            Ok(Resp::with_status(status, body).file(fid))
        }
        OpenKind::Fs(_) => {
            if open.is_dir {
                return Err(NtStatus::INVALID_DEVICE_REQUEST);
            }
            if open.access & (access::FILE_READ_DATA | access::FILE_EXECUTE) == 0 {
                return Err(NtStatus::ACCESS_DENIED);
            }
            check_range(req.offset, u64::from(req.length))?;
            if locked {
                return Err(NtStatus::FILE_LOCK_CONFLICT);
            }
            let len = req.length as usize;
            let (offset, minimum) = (req.offset, req.minimum_count);
            if ctx.single && len >= DEFER_FROM {
                // Large reads run beside the connection, which reads on.
                let open = open.clone();
                // A stream's bytes are in an xattr, not the file: no sendfile.
                let in_file = ctx.may_send_file && !open.handle().is_some_and(|h| h.is_stream());
                let mut r = Resp::ok(BytesMut::new()).file(fid);
                r.deferred_in_file = in_file;
                r.deferred = Some(Box::pin(async move {
                    tokio::task::spawn_blocking(move || {
                        if in_file {
                            read_in_file(&open, len, offset, minimum)
                        } else {
                            read_file(&open, len, offset, minimum)
                        }
                    })
                    .await
                    .map_err(|_| NtStatus::INTERNAL_ERROR)?
                }));
                return Ok(r);
            }
            read_file(&open, len, offset, minimum)
        }
    }
}

/// Reads at least this large are deferred (see [`Resp::deferred`]).
const DEFER_FROM: usize = 64 * 1024;

/// Reads file data into a response with headroom for the headers.
fn read_file(open: &Arc<Open>, len: usize, offset: u64, minimum: u32) -> HResult {
    let h = open.handle().ok_or(NtStatus::INVALID_DEVICE_REQUEST)?;
    let room_len = crate::handler::HEADROOM;
    let (room, mut body) = crate::handler::body_with_headroom(crate::alloc::size_class(room_len + 16 + len) - room_len);
    ReadResponse::encode_header(0, 0, &mut body);
    body.truncate(16);
    let n = h.read_append(&mut body, len, offset).map_err(|e| e.status())?;
    if n == 0 && len > 0 || (n as u32) < minimum {
        return Err(NtStatus::END_OF_FILE);
    }
    body[4..8].copy_from_slice(&(n as u32).to_le_bytes());
    if n == 0 {
        body.extend_from_slice(&[0]);
    }
    lock(&open.st).position = offset + n as u64;
    let mut r = Resp::ok(body).file(open.file_id());
    r.headroom = Some(room);
    Ok(r)
}

/// The answer to a read whose data stays in the file, for the writer to
/// send ([`Resp::file_data`]): DataLength is what the file holds from
/// `offset` now, up to `len` (the file's size, `fstat`), and the answers at
/// and past the end are those of [`read_file`]. The data is brought into
/// the page cache here, on a blocking thread, so that sending it does not
/// wait for the disk. Should the file shrink before it is sent, the writer
/// closes the connection rather than send less than DataLength says.
fn read_in_file(open: &Arc<Open>, len: usize, offset: u64, minimum: u32) -> HResult {
    let h = open.handle().ok_or(NtStatus::INVALID_DEVICE_REQUEST)?;
    let size = h.size().map_err(|e| e.status())?;
    let n = size.saturating_sub(offset).min(len as u64) as usize;
    if n == 0 && len > 0 || (n as u32) < minimum {
        return Err(NtStatus::END_OF_FILE);
    }
    crate::failpoint::pause("read-in-file");
    h.load(offset, n);
    // The fixed part (16 bytes: n is not 0); the data follows from the file.
    let mut body = BytesMut::with_capacity(16);
    ReadResponse::encode_header(n as u32, 0, &mut body);
    lock(&open.st).position = offset + n as u64;
    let mut r = Resp::ok(body).file(open.file_id());
    r.file_data = Some(FileData { open: open.clone(), offset, len: n });
    Ok(r)
}

/// A read may not reach past the largest file offset, 2^63 - 1 ([MS-FSA]
/// 2.1.5.2: ByteOffset is a signed 64-bit value): INVALID_PARAMETER, even
/// for an empty read starting past it.
fn check_range(offset: u64, length: u64) -> Result<(), NtStatus> {
    match offset.checked_add(length) {
        Some(end) if end <= i64::MAX as u64 => Ok(()),
        _ => Err(NtStatus::INVALID_PARAMETER),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_stop_at_the_largest_offset() {
        let max = i64::MAX as u64;
        assert_eq!(check_range(0, 10), Ok(()));
        assert_eq!(check_range(max - 1, 1), Ok(()));
        assert_eq!(check_range(max, 0), Ok(()));
        assert_eq!(check_range(max, 1), Err(NtStatus::INVALID_PARAMETER));
        assert_eq!(check_range(max + 1, 0), Err(NtStatus::INVALID_PARAMETER));
        assert_eq!(check_range(u64::MAX, 0), Err(NtStatus::INVALID_PARAMETER));
        assert_eq!(check_range(u64::MAX - 2, 10), Err(NtStatus::INVALID_PARAMETER));
    }
}
