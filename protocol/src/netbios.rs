//! NetBIOS session service framing over TCP ([MS-SMB2] 2.1 "Transport").
//!
//! Every SMB2 message on TCP port 445 is preceded by a 4-byte header: a zero
//! byte and a 24-bit big-endian length. This module finds whole frames in a
//! byte buffer and enforces a maximum frame length; message parsers only
//! ever see a whole frame.
//!
//! Format: `{ 0x00 | length: u24 BE | message[length] }`

use bytes::{Buf, BufMut, BytesMut};
use thiserror::Error;

/// Length of the framing header.
pub const HEADER_LEN: usize = 4;

/// The longest message a header can announce: the length has 24 bits.
pub const MAX_LEN: usize = 0xFF_FFFF;

/// The stream cannot be framed: the connection must be closed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum FrameError {
    /// The first byte is not a session message (0x00).
    #[error("not a NetBIOS session message (type {0:#04x})")]
    BadType(u8),
    /// The announced length exceeds what the server accepts.
    #[error("frame of {len} bytes exceeds the maximum of {max}")]
    TooLong { len: usize, max: usize },
}

/// Takes one whole frame off the front of `buf`.
///
/// Returns `Ok(None)` when more bytes are needed (an expected state, not an
/// error), `Ok(Some(frame))` with the message bytes (header removed), or an
/// error when the stream is corrupt. A keep-alive (type 0x85) is consumed
/// and skipped. Nothing is reserved for the rest of a frame: how much to
/// read ahead is the caller's choice (a header alone must not make the
/// server hold the megabytes it announces).
pub fn decode(buf: &mut BytesMut, max_len: usize) -> Result<Option<BytesMut>, FrameError> {
    loop {
        if buf.len() < HEADER_LEN {
            return Ok(None);
        }
        let kind = buf[0];
        let len = ((buf[1] as usize) << 16) | ((buf[2] as usize) << 8) | buf[3] as usize;
        match kind {
            0x00 => {}
            0x85 => {
                // Session keep-alive: no payload.
                buf.advance(HEADER_LEN + len.min(buf.len() - HEADER_LEN));
                continue;
            }
            other => return Err(FrameError::BadType(other)),
        }
        if len > max_len {
            return Err(FrameError::TooLong { len, max: max_len });
        }
        if buf.len() < HEADER_LEN + len {
            return Ok(None);
        }
        buf.advance(HEADER_LEN);
        return Ok(Some(buf.split_to(len)));
    }
}

/// Writes the framing header for a message of `len` bytes; a message
/// longer than [`MAX_LEN`] cannot be framed (its length would wrap), and
/// nothing is written.
pub fn encode_header(len: usize, out: &mut BytesMut) -> Result<(), FrameError> {
    if len > MAX_LEN {
        return Err(FrameError::TooLong { len, max: MAX_LEN });
    }
    out.put_u8(0);
    out.put_u8((len >> 16) as u8);
    out.put_u16((len & 0xffff) as u16);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_reads_yield_one_frame() {
        let mut wire = BytesMut::new();
        encode_header(5, &mut wire).unwrap();
        wire.extend_from_slice(b"hello");
        let mut buf = BytesMut::new();
        for (i, b) in wire.iter().enumerate() {
            buf.put_u8(*b);
            let got = decode(&mut buf, 1024).unwrap();
            if i + 1 < wire.len() {
                assert!(got.is_none());
            } else {
                assert_eq!(&got.unwrap()[..], b"hello");
            }
        }
        assert!(buf.is_empty());
    }

    #[test]
    fn too_long_and_bad_type_are_errors() {
        let mut buf = BytesMut::from(&[0u8, 0x10, 0, 0][..]);
        assert_eq!(decode(&mut buf, 1024), Err(FrameError::TooLong { len: 0x100000, max: 1024 }));
        let mut buf = BytesMut::from(&[0x81u8, 0, 0, 0][..]);
        assert_eq!(decode(&mut buf, 1024), Err(FrameError::BadType(0x81)));
    }

    #[test]
    fn a_header_alone_reserves_nothing() {
        // An 8 MiB frame announced, 4 bytes of it sent.
        let mut buf = BytesMut::from(&[0u8, 0x80, 0, 0, 1, 2, 3, 4][..]);
        let before = buf.capacity();
        assert_eq!(decode(&mut buf, 16 << 20), Ok(None));
        assert_eq!(buf.capacity(), before);
    }

    #[test]
    fn a_message_too_long_to_frame_is_an_error() {
        let mut out = BytesMut::new();
        encode_header(MAX_LEN, &mut out).unwrap();
        assert_eq!(&out[..], &[0, 0xFF, 0xFF, 0xFF]);
        let mut out = BytesMut::new();
        assert_eq!(encode_header(MAX_LEN + 1, &mut out), Err(FrameError::TooLong { len: 1 << 24, max: MAX_LEN }));
        assert_eq!(encode_header(32 << 20, &mut out), Err(FrameError::TooLong { len: 32 << 20, max: MAX_LEN }));
        assert!(out.is_empty(), "nothing written");
    }

    #[test]
    fn keepalive_is_skipped() {
        let mut buf = BytesMut::from(&[0x85u8, 0, 0, 0, 0, 0, 0, 1, 7][..]);
        assert_eq!(&decode(&mut buf, 1024).unwrap().unwrap()[..], &[7]);
    }
}
