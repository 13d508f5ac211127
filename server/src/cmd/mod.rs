//! One handler module per SMB2 command. Each takes the pipeline's
//! [`crate::handler::Ctx`] and returns a response body (or an
//! NTSTATUS); none writes to the socket or the journal.

pub mod cancel;
pub mod change_notify;
pub mod close;
pub mod copyfile;
pub mod create;
pub mod echo;
pub mod flush;
pub mod ioctl;
pub mod lock;
pub mod logoff;
pub mod nfs_ace;
pub mod negotiate;
pub mod oplock_break;
pub mod query_directory;
pub mod query_info;
pub mod read;
pub mod security;
pub mod session_setup;
pub mod set_info;
pub mod tree_connect;
pub mod write;

use protocol::{Command, NtStatus};

use crate::handler::{Ctx, HResult};

/// Routes one element to its handler.
pub async fn dispatch(ctx: &mut Ctx<'_>, command: Command) -> HResult {
    match command {
        Command::Negotiate => negotiate::handle(ctx),
        Command::SessionSetup => session_setup::handle(ctx).await,
        Command::Logoff => logoff::handle(ctx),
        Command::TreeConnect => tree_connect::handle(ctx),
        Command::TreeDisconnect => tree_connect::disconnect(ctx),
        Command::Create => create::handle(ctx).await,
        Command::Close => close::handle(ctx),
        Command::Flush => off_runtime(|| flush::handle(ctx)),
        Command::Read => read::handle(ctx),
        Command::Write => write::handle(ctx),
        Command::Lock => lock::handle(ctx),
        Command::Ioctl => off_runtime(|| ioctl::handle(ctx)),
        Command::Cancel => cancel::handle(ctx),
        Command::Echo => echo::handle(ctx),
        Command::QueryDirectory => off_runtime(|| query_directory::handle(ctx)),
        Command::ChangeNotify => change_notify::handle(ctx),
        Command::QueryInfo => query_info::handle(ctx),
        Command::SetInfo => set_info::handle(ctx),
        Command::OplockBreak => oplock_break::handle(ctx),
    }
}

/// Runs a handler whose work can be long (a listing of a large directory,
/// an fsync, a server-side copy of megabytes) so that it does not hold up
/// the other connections served by the same runtime worker: the worker
/// hands its queued tasks to another thread first
/// (`tokio::task::block_in_place`). On a current-thread runtime (tests,
/// the fuzzer) it simply runs.
fn off_runtime<R>(f: impl FnOnce() -> R) -> R {
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current() {
        Ok(h) if h.runtime_flavor() == RuntimeFlavor::MultiThread => tokio::task::block_in_place(f),
        _ => f(),
    }
}

/// Maps a parse failure to the status Windows gives for a malformed body.
pub fn bad(_: protocol::ParseError) -> NtStatus {
    NtStatus::INVALID_PARAMETER
}

/// Maps GENERIC_* bits to specific rights ([MS-SMB2] 3.3.5.9, the file
/// generic mapping of [MS-FSA]).
pub fn generic_map(mut a: u32) -> u32 {
    use crate::state::files::access::*;
    if a & GENERIC_READ != 0 {
        a |= FILE_GENERIC_READ;
    }
    if a & GENERIC_WRITE != 0 {
        a |= FILE_GENERIC_WRITE;
    }
    if a & GENERIC_EXECUTE != 0 {
        a |= FILE_GENERIC_EXECUTE;
    }
    if a & GENERIC_ALL != 0 {
        a |= FILE_ALL_ACCESS;
    }
    a & !(GENERIC_READ | GENERIC_WRITE | GENERIC_EXECUTE | GENERIC_ALL)
}

/// The wire view of a file's stat.
pub fn file_stat(st: &crate::fs::Stat, delete_pending: bool) -> protocol::fscc::FileStat {
    protocol::fscc::FileStat {
        creation_time: st.btime,
        last_access_time: st.atime,
        last_write_time: st.mtime,
        change_time: st.ctime,
        allocation_size: if st.is_dir { 0 } else { st.blocks_bytes },
        end_of_file: if st.is_dir { 0 } else { st.size },
        attributes: st.attributes,
        file_id: st.file_id(),
        number_of_links: st.nlink.min(u64::from(u32::MAX)) as u32,
        delete_pending,
        is_directory: st.is_dir,
        ea_size: 0,
        reparse_tag: if st.attributes & protocol::fscc::file_attributes::REPARSE_POINT != 0 {
            protocol::fscc::reparse::IO_REPARSE_TAG_SYMLINK
        } else {
            0
        },
    }
}

/// A READ, WRITE, IOCTL or QUERY_DIRECTORY of `len` payload bytes must be
/// charged enough credits, one per 64 KiB ([MS-SMB2] 3.1.5.2, 3.3.5.2.5;
/// CreditCharge 0 counts as 1). Without multi-credit requests (2.0.2) a
/// request pays for 64 KiB.
pub fn check_credit_charge(ctx: &Ctx<'_>, len: u32) -> Result<(), NtStatus> {
    let charge = if ctx.conn.multi_credit() { u32::from(ctx.hdr.credit_charge.max(1)) } else { 1 };
    if protocol::credit::credit_charge(len) > charge {
        return Err(NtStatus::INVALID_PARAMETER);
    }
    Ok(())
}
