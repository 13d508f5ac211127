//! The DCE/RPC subset Duet serves on named pipes: bind, request/response, and srvsvc ([MS-RPCE], [MS-SRVS]).
//!
//! A client opens `\PIPE\srvsvc` (or `wkssvc`) on `IPC$` with CREATE and then
//! talks connection-oriented DCE/RPC ([C706 chapter 12], [MS-RPCE] 2.2) over
//! WRITE/READ or FSCTL_PIPE_TRANSCEIVE. [`Pipe`] is that endpoint, sans-IO:
//! the server hands it the bytes the client wrote and takes back the bytes
//! the client reads. It knows no sockets, files or SMB2 framing.
//!
//! # How the server drives a pipe
//! - CREATE of `srvsvc`/`wkssvc` on IPC$: [`PipeKind::from_name`], then [`Pipe::new`];
//!   for an anonymous or guest session also [`Pipe::set_caller`]`(`[`Caller::Anonymous`]`)`.
//! - The server implements [`PipeBackend`] (shares, server info, and
//!   [`PipeBackend::now`] for NetrRemoteTOD, since this crate reads no clock).
//! - WRITE: [`Pipe::write`]; the whole write is consumed (answer with its length).
//! - READ: [`Pipe::read`]`(length)`. `None`: nothing to read. Otherwise answer
//!   STATUS_BUFFER_OVERFLOW if [`Pipe::more_pending`] (the message was cut
//!   short; the client reads the rest), else STATUS_SUCCESS. A READ never
//!   returns bytes of two PDUs: each PDU fragment is one message.
//! - IOCTL FSCTL_PIPE_TRANSCEIVE: [`Pipe::transceive`]`(input, max_output)`,
//!   with the same STATUS_BUFFER_OVERFLOW rule; later fragments of a long
//!   response are fetched by the client with READ.
//! - Errors: [`RpcError::status`] gives the NTSTATUS; the pipe is then
//!   disconnected (except after `PipeBusy`).
//!
//! # Layout
//! - [`pipe`]: the pipe endpoint: buffering, reassembly, bind and dispatch.
//! - [`pdu`]: connection-oriented PDUs (bind, bind_ack, request, response, fault).
//! - [`ndr`]: NDR 2.0 encoder and decoder helpers.
//! - [`srvsvc`]: NetrShareEnum, NetrShareGetInfo, NetrServerGetInfo, NetrShareEnumSticky,
//!   NetrShareCheck, NetrRemoteTOD, and empty answers to the session, file, connection,
//!   disk, transport and device enumerations.
//! - [`wkssvc`]: the workstation service's NetrWkstaGetInfo.

pub mod ndr;
pub mod pdu;
pub mod pipe;
pub mod srvsvc;
pub mod wkssvc;

pub use pipe::{Pipe, PipeKind};

use crate::error::ParseError;
use crate::status::NtStatus;

/// Share type: a disk share ([MS-SRVS] 2.2.2.4).
pub const STYPE_DISKTREE: u32 = 0x0000_0000;
/// Share type: the interprocess-communication share, `IPC$`.
pub const STYPE_IPC: u32 = 0x0000_0003;
/// Share type flag: an administrative (special) share such as `C$`.
pub const STYPE_SPECIAL: u32 = 0x8000_0000;

/// One share, as the backend describes it to srvsvc (SHARE_INFO_*, [MS-SRVS] 2.2.4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShareInfo {
    pub name: String,
    /// `STYPE_DISKTREE`, `STYPE_IPC`, optionally `| STYPE_SPECIAL`.
    pub share_type: u32,
    pub comment: String,
    /// The local path, as a string for display (Windows clients expect `C:\...` style, but any string works).
    pub path: String,
    /// `0xFFFF_FFFF` for unlimited.
    pub max_uses: u32,
    pub current_uses: u32,
}

/// The server, as srvsvc and wkssvc describe it (SERVER_INFO_10x, [MS-SRVS] 2.2.4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerInfo {
    /// NetBIOS name.
    pub name: String,
    pub comment: String,
    pub version_major: u32,
    pub version_minor: u32,
    /// `SV_TYPE_*` bits ([MS-SRVS] 2.2.2, Server Types).
    pub server_type: u32,
}

/// Who is calling, as far as the RPC calls care ([MS-SRVS] 3.1.4: some
/// levels are for privileged callers only).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Caller {
    /// An anonymous or guest session: share levels 2 and 502, which show
    /// local paths, are answered with ERROR_ACCESS_DENIED.
    Anonymous,
    /// An authenticated user: everything is shown, as Samba does.
    #[default]
    Authenticated,
}

/// What the pipe needs to know about the server. Called during [`Pipe::write`].
pub trait PipeBackend {
    fn shares(&self) -> Vec<ShareInfo>;
    fn server_info(&self) -> ServerInfo;
    /// The workgroup or domain name (wkssvc `langroup`).
    fn workgroup(&self) -> String {
        "WORKGROUP".to_string()
    }
    /// The current time, for NetrRemoteTOD. `None` (the default) answers it
    /// with ERROR_NOT_SUPPORTED: this crate does not read the clock.
    fn now(&self) -> Option<std::time::SystemTime> {
        None
    }
}

/// The pipe cannot go on: the peer broke the protocol, or the server misused
/// the pipe. Faults that the RPC protocol can express (unknown opnum, bad stub
/// data, unknown interface) are not errors: they are answered with a fault PDU.
///
/// After any error but [`RpcError::PipeBusy`] the pipe is disconnected: every
/// later write or transceive returns [`RpcError::Disconnected`] and reads
/// return nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RpcError {
    /// A PDU header or body could not be parsed.
    #[error("malformed PDU: {0}")]
    Malformed(#[from] ParseError),
    /// A PDU's frag_length is larger than we accept.
    #[error("PDU of {0} bytes is too large")]
    PduTooLarge(usize),
    /// A fragmented request grew past the reassembly limit.
    #[error("reassembled request of {0} bytes is too large")]
    RequestTooLarge(usize),
    /// The data representation is not little-endian ASCII IEEE.
    #[error("unsupported data representation {0:02x?}")]
    UnsupportedDataRepresentation([u8; 4]),
    /// The PDU is well formed but not allowed here (wrong version, type or fragment order).
    #[error("protocol error: {0}")]
    Protocol(&'static str),
    /// The client keeps sending requests without reading the answers.
    #[error("{0} bytes of output are waiting to be read")]
    OutputFull(usize),
    /// FSCTL_PIPE_TRANSCEIVE while output of an earlier call is still unread.
    #[error("pipe busy: output is pending")]
    PipeBusy,
    /// The pipe was disconnected by an earlier error.
    #[error("pipe disconnected")]
    Disconnected,
}

impl RpcError {
    /// The NTSTATUS the server should answer the WRITE or IOCTL with.
    pub fn status(&self) -> NtStatus {
        match self {
            RpcError::PipeBusy => NtStatus(0xC000_00AE),     // STATUS_PIPE_BUSY
            RpcError::Disconnected => NtStatus(0xC000_00B0), // STATUS_PIPE_DISCONNECTED
            _ => NtStatus::INVALID_PARAMETER,
        }
    }
}
