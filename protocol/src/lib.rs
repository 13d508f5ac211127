//! The SMB2/3 wire format for Duet: sans-IO.
//!
//! This crate turns bytes into typed messages and typed messages into bytes.
//! It knows NetBIOS session framing, the SMB2 header and every command body
//! Duet serves, NTLMSSP inside SPNEGO, the DCE/RPC subset for the srvsvc
//! pipe, and the signing and encryption transforms. It does not know
//! sockets, files, tokio or the clock: the `server` crate feeds it bytes.
//!
//! # Layout
//! - [`netbios`]: finds whole frames in a byte stream.
//! - [`header`]: the 64-byte SMB2 header and the command codes.
//! - [`credit`]: CreditCharge arithmetic and the command sequence window
//!   that every MessageId is checked against.
//! - [`msg`]: request and response bodies, one module per command.
//! - [`status`]: NTSTATUS codes.
//! - [`codec`]: shared parsing helpers (bounds-checked offsets, UTF-16).
//! - [`error`]: the parse error type.
//! - [`auth`]: NTLMSSP and SPNEGO, server side.
//! - [`crypto`]: signing, key derivation, preauth hash, encryption transform.
//! - [`rpc`]: DCE/RPC bind/request and the srvsvc calls.
//! - [`fuzzing`]: one entry point that runs every parser, for the fuzz
//!   target and the corpus test.
//! - [`fscc`]: file and file-system information classes, security descriptors.

pub mod auth;
pub mod codec;
pub mod credit;
pub mod crypto;
pub mod error;
pub mod fscc;
pub mod fuzzing;
pub mod header;
pub mod msg;
pub mod netbios;
pub mod rpc;
pub mod status;

pub use error::{ParseError, ParseResult};
pub use header::{Command, Header};
pub use status::NtStatus;
