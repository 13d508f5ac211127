//! SMB2 message bodies, one module per command ([MS-SMB2] 2.2).
//!
//! Every request type has `parse(msg)`, where `msg` is the whole message
//! starting at the SMB2 header (offsets in the body count from there), and
//! every response type has `encode(&self, out)`, which appends the body to
//! `out` assuming the body begins at [`crate::header::HEADER_LEN`] of its
//! message. Payloads borrow from the message.

pub mod negotiate;
