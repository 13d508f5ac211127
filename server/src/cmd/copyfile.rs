//! macOS's copyfile over SMB: once a connection was told AAPL's
//! OSX_COPYFILE ([`protocol::msg::aapl::caps`]), an FSCTL_SRV_COPYCHUNK
//! with no chunks ([MS-SMB2] 2.2.31.1.1, which otherwise copies nothing)
//! copies the whole source file onto the destination from offset 0, and
//! then each of the source's named streams (the Finder info in
//! `AFP_AfpInfo`, the resource fork, any other) over the destination's
//! stream of the same name, as Samba's `vfs_fruit` does with
//! `fruit:copyfile = yes`. The answer counts the data stream's bytes, no
//! chunks.

use std::sync::Arc;

use protocol::NtStatus;

use crate::fs::Handle;
use crate::handler::Ctx;
use crate::state::Open;

/// How much is read and written at once.
const STEP: usize = 1024 * 1024;

/// Copies `src` onto `dst` (access already checked) and returns the data
/// stream's length. Byte-range locks over the copied range refuse it
/// (STATUS_FILE_LOCK_CONFLICT), as a chunk's would.
pub fn copy(ctx: &Ctx<'_>, src: &Arc<Open>, dst: &Arc<Open>) -> Result<u64, NtStatus> {
    let (Some(sh), Some(dh)) = (src.handle(), dst.handle()) else {
        return Err(NtStatus::INVALID_DEVICE_REQUEST);
    };
    let size = sh.size().map_err(|e| e.status())?;
    if let (Some(sk), Some(dk)) = (src.key, dst.key) {
        let server = ctx.server;
        if server.io_conflict(sk, src.persistent_id, 0, size, false)
            || server.io_conflict(dk, dst.persistent_id, 0, size, true)
        {
            return Err(NtStatus::FILE_LOCK_CONFLICT);
        }
        server.files().break_level2(&dk, dst.persistent_id);
    }
    let mut buf = vec![0u8; STEP];
    let mut at = 0u64;
    while at < size {
        let want = STEP.min((size - at) as usize);
        let n = sh.read_at(&mut buf[..want], at).map_err(|e| e.status())?;
        if n == 0 {
            break;
        }
        super::write::write_data(ctx.server, dst, &buf[..n], at)?;
        at += n as u64;
    }
    // Streams go from file to file: a stream open on either side copies
    // the data alone.
    if !sh.is_stream() && !dh.is_stream() {
        copy_streams(sh, dh, &mut buf).map_err(|e| e.status())?;
    }
    Ok(at)
}

/// Each named stream of `src` over the one of the same name (any case) of
/// `dst`, made when missing; a larger one is cut to the source's length.
fn copy_streams(src: &Handle, dst: &Handle, buf: &mut [u8]) -> Result<(), crate::fs::FsError> {
    for s in src.streams()? {
        let Some(from) = src.find_stream(&s.name)? else { continue };
        let from = src.open_stream(from)?;
        let to = match dst.find_stream(&s.name)? {
            Some(x) => x,
            None => dst.create_stream(&s.name)?,
        };
        let to = dst.open_stream(to)?;
        to.set_len(0)?;
        let mut at = 0u64;
        loop {
            let n = from.read_at(buf, at)?;
            if n == 0 {
                break;
            }
            to.write_at(&buf[..n], at)?;
            at += n as u64;
        }
    }
    Ok(())
}
