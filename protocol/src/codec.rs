//! Small helpers shared by the message codecs.
//!
//! SMB2 bodies locate their variable parts by offsets counted from the start
//! of the SMB2 header. So every body parser takes the whole message (`msg`,
//! header included) and reads its fixed part from `msg[HEADER_LEN..]` with
//! nom's `complete` little-endian parsers; variable buffers are borrowed
//! from `msg` with [`slice_at`], which checks the bounds.

use bytes::{BufMut, BytesMut};
use nom::number::complete::le_u16;

use crate::error::{ParseError, ParseResult};
use crate::header::HEADER_LEN;

/// The body of a message: everything after the 64-byte header.
pub fn body(msg: &[u8]) -> ParseResult<&[u8]> {
    msg.get(HEADER_LEN..).ok_or(ParseError::Truncated("SMB2 header"))
}

/// Reads the StructureSize field and checks it against the expected value.
/// Returns the input after it.
pub fn structure_size(input: &[u8], expected: u16) -> ParseResult<&[u8]> {
    let (rest, size) = le_u16::<_, nom::error::Error<&[u8]>>(input)?;
    if size != expected {
        return Err(ParseError::Invalid("structure size"));
    }
    Ok(rest)
}

/// Borrows `len` bytes at `offset` (counted from the header start).
/// A zero length yields an empty slice whatever the offset.
pub fn slice_at<'a>(msg: &'a [u8], offset: usize, len: usize, what: &'static str) -> ParseResult<&'a [u8]> {
    if len == 0 {
        return Ok(&[]);
    }
    let end = offset.checked_add(len).ok_or(ParseError::OutOfBounds(what))?;
    if offset < HEADER_LEN || end > msg.len() {
        return Err(ParseError::OutOfBounds(what));
    }
    Ok(&msg[offset..end])
}

/// Decodes UTF-16LE. Unpaired surrogates and odd lengths are invalid.
pub fn utf16le(b: &[u8], what: &'static str) -> ParseResult<String> {
    if !b.len().is_multiple_of(2) {
        return Err(ParseError::Invalid(what));
    }
    let units = b.chunks_exact(2).map(|c| u16::from_le_bytes([c[0], c[1]]));
    char::decode_utf16(units)
        .collect::<Result<String, _>>()
        .map_err(|_| ParseError::Invalid(what))
}

/// Appends `s` as UTF-16LE; returns the number of bytes written.
pub fn put_utf16le(s: &str, out: &mut BytesMut) -> usize {
    let start = out.len();
    for u in s.encode_utf16() {
        out.put_u16_le(u);
    }
    out.len() - start
}

/// Byte length of `s` in UTF-16LE.
pub fn utf16_len(s: &str) -> usize {
    s.encode_utf16().count() * 2
}

/// Pads `out` with zeros until its length (plus `base`) is a multiple of `align`.
pub fn pad_to(out: &mut BytesMut, base: usize, align: usize) {
    while !(base + out.len()).is_multiple_of(align) {
        out.put_u8(0);
    }
}

/// Little-endian readers over a slice with bounds checks, for fixed-layout
/// structures inside buffers (info classes, contexts).
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }
    pub fn pos(&self) -> usize {
        self.pos
    }
    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }
    pub fn rest(&self) -> &'a [u8] {
        &self.buf[self.pos..]
    }
    pub fn take(&mut self, n: usize, what: &'static str) -> ParseResult<&'a [u8]> {
        if self.remaining() < n {
            return Err(ParseError::Truncated(what));
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }
    pub fn skip(&mut self, n: usize, what: &'static str) -> ParseResult<()> {
        self.take(n, what).map(|_| ())
    }
    pub fn u8(&mut self, what: &'static str) -> ParseResult<u8> {
        Ok(self.take(1, what)?[0])
    }
    pub fn u16(&mut self, what: &'static str) -> ParseResult<u16> {
        let b = self.take(2, what)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }
    pub fn u32(&mut self, what: &'static str) -> ParseResult<u32> {
        let b = self.take(4, what)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    pub fn u64(&mut self, what: &'static str) -> ParseResult<u64> {
        let b = self.take(8, what)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }
    pub fn guid(&mut self, what: &'static str) -> ParseResult<[u8; 16]> {
        let mut g = [0u8; 16];
        g.copy_from_slice(self.take(16, what)?);
        Ok(g)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slice_at_checks_bounds() {
        let msg = vec![0u8; 80];
        assert_eq!(slice_at(&msg, 64, 16, "x").unwrap().len(), 16);
        assert!(slice_at(&msg, 70, 16, "x").is_err());
        assert!(slice_at(&msg, 10, 4, "x").is_err());
        assert!(slice_at(&msg, usize::MAX, 4, "x").is_err());
        assert!(slice_at(&msg, 9999, 0, "x").unwrap().is_empty());
    }

    #[test]
    fn utf16_roundtrip() {
        let mut b = BytesMut::new();
        put_utf16le("dir\\Ünï😀", &mut b);
        assert_eq!(utf16le(&b, "n").unwrap(), "dir\\Ünï😀");
        assert!(utf16le(&[0x00, 0xD8], "n").is_err());
        assert!(utf16le(&[0x41], "n").is_err());
    }
}
