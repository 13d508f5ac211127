//! NDR 2.0 encoder and decoder helpers ([C706 chapter 14], [MS-RPCE] 2.2.5).
//!
//! Only what srvsvc and wkssvc need: little-endian primitives aligned to
//! their size, unique pointers (a non-zero referent id, or zero for NULL),
//! and conformant varying strings (`[string] wchar_t*`).
//!
//! Alignment is counted from the start of the stub data, which is where the
//! NDR stream begins ([C706 14.2.2]). The caller writes embedded pointers'
//! referents itself, after the structure or array that holds them
//! ([C706 14.3.12.3], deferral), because the order depends on the type.

use crate::codec::Reader;
use crate::error::{ParseError, ParseResult};

/// The first referent id handed out; then it grows by 4, as Windows and Samba do.
const FIRST_REFERENT: u32 = 0x0002_0000;

/// Builds an NDR stream.
#[derive(Debug, Clone)]
pub struct NdrWriter {
    buf: Vec<u8>,
    next_referent: u32,
}

impl Default for NdrWriter {
    fn default() -> Self {
        Self::new()
    }
}

impl NdrWriter {
    pub fn new() -> Self {
        NdrWriter { buf: Vec::new(), next_referent: FIRST_REFERENT }
    }

    /// Pads with zeros to a multiple of `n` from the stream start.
    pub fn align(&mut self, n: usize) {
        let pad = (n - self.buf.len() % n) % n;
        self.buf.resize(self.buf.len() + pad, 0);
    }

    pub fn u16(&mut self, v: u16) {
        self.align(2);
        self.buf.extend_from_slice(&v.to_le_bytes());
    }

    /// An `unsigned long` or `DWORD` (4 bytes, aligned to 4).
    pub fn u32(&mut self, v: u32) {
        self.align(4);
        self.buf.extend_from_slice(&v.to_le_bytes());
    }

    /// A non-NULL unique pointer: writes a fresh referent id.
    /// The referent itself is written later by the caller.
    pub fn pointer(&mut self) {
        let id = self.next_referent;
        self.next_referent = self.next_referent.wrapping_add(4).max(FIRST_REFERENT);
        self.u32(id);
    }

    /// A NULL unique pointer.
    pub fn null(&mut self) {
        self.u32(0);
    }

    /// The pointer part of `[string, unique] wchar_t*` : NULL for `None`.
    pub fn string_pointer(&mut self, s: Option<&str>) {
        match s {
            Some(_) => self.pointer(),
            None => self.null(),
        }
    }

    /// A conformant varying UTF-16 string with its terminating NUL
    /// ([C706 14.3.4.2]): max_count, offset 0, actual_count (both counting
    /// UTF-16 units including the NUL), then the units.
    pub fn string(&mut self, s: &str) {
        let units: Vec<u16> = s.encode_utf16().chain(std::iter::once(0)).collect();
        // A u32 count cannot overflow for strings we build: shares and
        // server names are short. Saturate rather than wrap, to stay honest.
        let n = u32::try_from(units.len()).unwrap_or(u32::MAX);
        self.u32(n);
        self.u32(0);
        self.u32(n);
        for u in units {
            self.buf.extend_from_slice(&u.to_le_bytes());
        }
    }

    pub fn len(&self) -> usize {
        self.buf.len()
    }

    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    pub fn into_bytes(self) -> Vec<u8> {
        self.buf
    }
}

/// Reads an NDR stream. Every read is bounds-checked.
#[derive(Debug, Clone)]
pub struct NdrReader<'a> {
    r: Reader<'a>,
}

impl<'a> NdrReader<'a> {
    pub fn new(stub: &'a [u8]) -> Self {
        NdrReader { r: Reader::new(stub) }
    }

    /// Skips padding to a multiple of `n` from the stream start.
    pub fn align(&mut self, n: usize) -> ParseResult<()> {
        let pad = (n - self.r.pos() % n) % n;
        self.r.skip(pad, "NDR alignment padding")
    }

    pub fn u16(&mut self, what: &'static str) -> ParseResult<u16> {
        self.align(2)?;
        self.r.u16(what)
    }

    pub fn u32(&mut self, what: &'static str) -> ParseResult<u32> {
        self.align(4)?;
        self.r.u32(what)
    }

    /// A unique pointer's referent id: `false` for NULL.
    pub fn pointer(&mut self, what: &'static str) -> ParseResult<bool> {
        Ok(self.u32(what)? != 0)
    }

    /// A conformant varying UTF-16 string ([C706 14.3.4.2]). The offset must
    /// be 0 and actual_count at most max_count; a terminating NUL, if
    /// present, is dropped.
    pub fn string(&mut self, what: &'static str) -> ParseResult<String> {
        let max_count = self.u32(what)?;
        let offset = self.u32(what)?;
        let actual = self.u32(what)?;
        if offset != 0 || actual > max_count {
            return Err(ParseError::Invalid(what));
        }
        let len = usize::try_from(actual).map_err(|_| ParseError::Invalid(what))?;
        let bytes_len = len.checked_mul(2).ok_or(ParseError::Invalid(what))?;
        let bytes = self.r.take(bytes_len, what)?;
        let bytes = match bytes {
            [head @ .., 0, 0] => head,
            b => b,
        };
        crate::codec::utf16le(bytes, what)
    }

    /// A `[string, unique] wchar_t*` whose referent follows at once (a
    /// top-level pointer, [C706 14.3.12.1]).
    pub fn unique_string(&mut self, what: &'static str) -> ParseResult<Option<String>> {
        if self.pointer(what)? {
            Ok(Some(self.string(what)?))
        } else {
            Ok(None)
        }
    }

    /// Bytes not read yet.
    pub fn remaining(&self) -> usize {
        self.r.remaining()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn string_layout_matches_c706() {
        let mut w = NdrWriter::new();
        w.u16(7);
        w.string("ab");
        let b = w.into_bytes();
        assert_eq!(
            b,
            [
                7, 0, 0, 0, // u16 then padding to 4
                3, 0, 0, 0, 0, 0, 0, 0, 3, 0, 0, 0, // max, offset, actual (NUL counted)
                b'a', 0, b'b', 0, 0, 0,
            ]
        );
        let mut r = NdrReader::new(&b);
        assert_eq!(r.u16("x").unwrap(), 7);
        assert_eq!(r.string("s").unwrap(), "ab");
        assert_eq!(r.remaining(), 0);
    }

    #[test]
    fn referents_are_nonzero_and_increasing() {
        let mut w = NdrWriter::new();
        w.pointer();
        w.null();
        w.pointer();
        let b = w.into_bytes();
        let ids: Vec<u32> = b.chunks(4).map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
        assert_eq!(ids, [0x0002_0000, 0, 0x0002_0004]);
    }

    #[test]
    fn string_rejects_bad_counts_and_truncation() {
        let mut w = NdrWriter::new();
        w.string("share");
        let b = w.into_bytes();
        for n in 0..b.len() {
            assert!(NdrReader::new(&b[..n]).string("s").is_err(), "truncated at {n}");
        }
        // actual_count > max_count
        let mut bad = b.clone();
        bad[8] = 9;
        assert_eq!(NdrReader::new(&bad).string("s"), Err(ParseError::Invalid("s")));
        // non-zero offset
        let mut bad = b.clone();
        bad[4] = 1;
        assert_eq!(NdrReader::new(&bad).string("s"), Err(ParseError::Invalid("s")));
        // huge actual_count does not overflow or allocate
        let mut bad = b;
        bad[0..4].copy_from_slice(&u32::MAX.to_le_bytes());
        bad[8..12].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(NdrReader::new(&bad).string("s").is_err());
    }

    #[test]
    fn unique_string_null_and_present() {
        let mut w = NdrWriter::new();
        w.null();
        w.string_pointer(Some("x"));
        w.string("x");
        let b = w.into_bytes();
        let mut r = NdrReader::new(&b);
        assert_eq!(r.unique_string("a").unwrap(), None);
        assert_eq!(r.unique_string("b").unwrap(), Some("x".to_string()));
    }
}
