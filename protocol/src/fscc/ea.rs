//! Extended attribute lists: FILE_FULL_EA_INFORMATION ([MS-FSCC] 2.4.15)
//! as sent by SET_INFO / CREATE and returned by QUERY_INFO, and
//! FILE_GET_EA_INFORMATION ([MS-FSCC] 2.4.15.1), the names a QUERY_INFO
//! asks for.
//!
//! Both are chains linked by NextEntryOffset (0 ends the chain); each entry
//! after the first starts on a 4-byte boundary. Parsers only walk forward
//! and check every offset against the buffer, so a malicious chain can
//! neither loop nor read out of bounds.

use bytes::{BufMut, BytesMut};

use super::InfoError;
use crate::codec::Reader;
use crate::error::{ParseError, ParseResult};

/// FILE_NEED_EA: the file cannot be understood without this EA.
pub const FILE_NEED_EA: u8 = 0x80;

/// One FILE_FULL_EA_INFORMATION entry.
///
/// Format: `{ next_entry_offset: u32 | flags: u8 | ea_name_length: u8 |
/// ea_value_length: u16 | ea_name | 0u8 | ea_value | padding to 4 }`
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FullEa<'a> {
    pub flags: u8,
    /// ASCII name, without the terminating NUL.
    pub name: &'a [u8],
    pub value: &'a [u8],
}

impl FullEa<'_> {
    /// Encoded length without trailing padding.
    pub fn len(&self) -> usize {
        8 + self.name.len() + 1 + self.value.len()
    }

    /// Never true: an entry has at least its 9-byte header and NUL.
    pub fn is_empty(&self) -> bool {
        false
    }
}

/// One FILE_GET_EA_INFORMATION entry.
///
/// Format: `{ next_entry_offset: u32 | ea_name_length: u8 | ea_name | 0u8 |
/// padding to 4 }`
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GetEa<'a> {
    /// ASCII name, without the terminating NUL.
    pub name: &'a [u8],
}

/// Walks a NextEntryOffset chain, calling `entry` on each entry's bytes
/// (from its start to the end of the buffer, or to the next entry).
fn walk<'a, T>(
    buf: &'a [u8],
    what: &'static str,
    mut entry: impl FnMut(&'a [u8]) -> ParseResult<(usize, T)>,
) -> ParseResult<Vec<T>> {
    let mut out = Vec::new();
    let mut off = 0usize;
    loop {
        let rest = buf.get(off..).ok_or(ParseError::OutOfBounds(what))?;
        let next = Reader::new(rest).u32(what)? as usize;
        let bounded = if next == 0 {
            rest
        } else {
            rest.get(..next).ok_or(ParseError::OutOfBounds(what))?
        };
        let (used, v) = entry(bounded)?;
        out.push(v);
        if next == 0 {
            return Ok(out);
        }
        if next < used || !next.is_multiple_of(4) {
            return Err(ParseError::Invalid(what));
        }
        off += next;
    }
}

/// Parses a FILE_FULL_EA_INFORMATION list. An empty buffer is not a list.
pub fn parse_full_ea_list(buf: &[u8]) -> ParseResult<Vec<FullEa<'_>>> {
    const WHAT: &str = "FILE_FULL_EA_INFORMATION";
    walk(buf, WHAT, |e| {
        let mut r = Reader::new(e);
        r.skip(4, WHAT)?;
        let flags = r.u8(WHAT)?;
        let name_len = r.u8(WHAT)? as usize;
        let value_len = r.u16(WHAT)? as usize;
        let name = r.take(name_len, WHAT)?;
        if r.u8(WHAT)? != 0 || name.is_empty() || name.contains(&0) {
            return Err(ParseError::Invalid(WHAT));
        }
        let value = r.take(value_len, WHAT)?;
        Ok((r.pos(), FullEa { flags, name, value }))
    })
}

/// Parses a FILE_GET_EA_INFORMATION list.
pub fn parse_get_ea_list(buf: &[u8]) -> ParseResult<Vec<GetEa<'_>>> {
    const WHAT: &str = "FILE_GET_EA_INFORMATION";
    walk(buf, WHAT, |e| {
        let mut r = Reader::new(e);
        r.skip(4, WHAT)?;
        let name_len = r.u8(WHAT)? as usize;
        let name = r.take(name_len, WHAT)?;
        if r.u8(WHAT)? != 0 || name.is_empty() || name.contains(&0) {
            return Err(ParseError::Invalid(WHAT));
        }
        Ok((r.pos(), GetEa { name }))
    })
}

/// Encoded length of a FILE_FULL_EA_INFORMATION list as
/// [`encode_full_ea_list`] writes it (4-byte padding between entries, none
/// after the last). 0 for an empty list.
pub fn ea_list_size(eas: &[FullEa<'_>]) -> usize {
    let mut total = 0;
    for (i, ea) in eas.iter().enumerate() {
        total += if i + 1 == eas.len() {
            ea.len()
        } else {
            ea.len().next_multiple_of(4)
        };
    }
    total
}

/// Appends a FILE_FULL_EA_INFORMATION list; writes nothing for an empty
/// list. InvalidParameter if a name is empty, over 255 bytes or holds a
/// NUL, or a value is over 65535 bytes (nothing is written then).
pub fn encode_full_ea_list(eas: &[FullEa<'_>], out: &mut BytesMut) -> Result<(), InfoError> {
    for ea in eas {
        if ea.name.is_empty()
            || ea.name.len() > 255
            || ea.name.contains(&0)
            || ea.value.len() > 0xFFFF
        {
            return Err(InfoError::InvalidParameter);
        }
    }
    for (i, ea) in eas.iter().enumerate() {
        let last = i + 1 == eas.len();
        let next = if last {
            0
        } else {
            ea.len().next_multiple_of(4)
        };
        out.put_u32_le(next as u32);
        out.put_u8(ea.flags);
        out.put_u8(ea.name.len() as u8);
        out.put_u16_le(ea.value.len() as u16);
        out.put_slice(ea.name);
        out.put_u8(0);
        out.put_slice(ea.value);
        if !last {
            out.put_bytes(0, next - ea.len());
        }
    }
    Ok(())
}

/// Appends as many whole entries of `eas` as fit in `max_len` bytes and
/// returns how many were written, for a QUERY_INFO FileFullEaInformation
/// answer limited by OutputBufferLength. The server answers
/// STATUS_BUFFER_OVERFLOW when fewer than all were written (or
/// STATUS_BUFFER_TOO_SMALL when none were). InvalidParameter as for
/// [`encode_full_ea_list`].
pub fn encode_full_ea_list_limited(
    eas: &[FullEa<'_>],
    max_len: usize,
    out: &mut BytesMut,
) -> Result<usize, InfoError> {
    let mut used = 0usize;
    let mut n = 0;
    for ea in eas {
        let start = used.next_multiple_of(4);
        if start + ea.len() > max_len {
            break;
        }
        used = start + ea.len();
        n += 1;
    }
    encode_full_ea_list(&eas[..n], out)?;
    Ok(n)
}

/// Appends a FILE_GET_EA_INFORMATION list (the client side of a query;
/// used by tests and tools). InvalidParameter on a bad name.
pub fn encode_get_ea_list(names: &[GetEa<'_>], out: &mut BytesMut) -> Result<(), InfoError> {
    if names
        .iter()
        .any(|n| n.name.is_empty() || n.name.len() > 255 || n.name.contains(&0))
    {
        return Err(InfoError::InvalidParameter);
    }
    for (i, n) in names.iter().enumerate() {
        let len = 4 + 1 + n.name.len() + 1;
        let last = i + 1 == names.len();
        let next = if last { 0 } else { len.next_multiple_of(4) };
        out.put_u32_le(next as u32);
        out.put_u8(n.name.len() as u8);
        out.put_slice(n.name);
        out.put_u8(0);
        if !last {
            out.put_bytes(0, next - len);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<FullEa<'static>> {
        vec![
            FullEa {
                flags: 0,
                name: b"user.a",
                value: b"1",
            },
            FullEa {
                flags: FILE_NEED_EA,
                name: b"X",
                value: b"",
            },
            FullEa {
                flags: 0,
                name: b"LONGER.NAME",
                value: &[1, 2, 3, 4, 5],
            },
        ]
    }

    #[test]
    fn full_list_round_trip_and_layout() {
        let eas = sample();
        let mut out = BytesMut::new();
        encode_full_ea_list(&eas, &mut out).unwrap();
        assert_eq!(out.len(), ea_list_size(&eas));
        // First entry: 8 + 6 + 1 + 1 = 16, already aligned.
        assert_eq!(&out[..8], &[16, 0, 0, 0, 0, 6, 1, 0]);
        assert_eq!(&out[8..16], b"user.a\x001");
        // Second: 8 + 1 + 1 + 0 = 10 -> 12.
        assert_eq!(&out[16..20], &[12, 0, 0, 0]);
        assert_eq!(out[20], FILE_NEED_EA);
        assert_eq!(&out[26..28], &[0, 0]);
        // Last: NextEntryOffset 0, no trailing padding.
        assert_eq!(&out[28..32], &[0, 0, 0, 0]);
        assert_eq!(out.len(), 28 + 8 + 11 + 1 + 5);
        assert_eq!(parse_full_ea_list(&out).unwrap(), eas);
    }

    #[test]
    fn full_list_truncations_fail() {
        let mut out = BytesMut::new();
        encode_full_ea_list(&sample(), &mut out).unwrap();
        for n in 0..out.len() {
            assert!(parse_full_ea_list(&out[..n]).is_err(), "len {n}");
        }
    }

    #[test]
    fn malformed_chains_fail() {
        let mut out = BytesMut::new();
        encode_full_ea_list(&sample(), &mut out).unwrap();
        // NextEntryOffset past the end.
        let mut b = out.to_vec();
        b[0] = 200;
        assert!(parse_full_ea_list(&b).is_err());
        // NextEntryOffset inside the entry (overlap).
        let mut b = out.to_vec();
        b[0] = 8;
        assert!(parse_full_ea_list(&b).is_err());
        // Missing NUL after the name.
        let mut b = out.to_vec();
        b[14] = b'x';
        assert!(parse_full_ea_list(&b).is_err());
        // Value length overrunning the entry.
        let mut b = out.to_vec();
        b[6] = 9;
        assert!(parse_full_ea_list(&b).is_err());
    }

    #[test]
    fn encode_rejects_bad_entries() {
        let long = [b'a'; 256];
        let mut out = BytesMut::new();
        assert!(encode_full_ea_list(
            &[FullEa {
                flags: 0,
                name: &long,
                value: b""
            }],
            &mut out
        )
        .is_err());
        assert!(encode_full_ea_list(
            &[FullEa {
                flags: 0,
                name: b"",
                value: b""
            }],
            &mut out
        )
        .is_err());
        assert!(out.is_empty());
        assert_eq!(ea_list_size(&[]), 0);
    }

    #[test]
    fn limited_encoding_keeps_whole_entries() {
        let eas = sample();
        let mut all = BytesMut::new();
        encode_full_ea_list(&eas, &mut all).unwrap();
        for max in 0..=all.len() + 4 {
            let mut out = BytesMut::new();
            let n = encode_full_ea_list_limited(&eas, max, &mut out).unwrap();
            assert!(out.len() <= max);
            assert_eq!(out.len(), ea_list_size(&eas[..n]));
            if n > 0 {
                assert_eq!(parse_full_ea_list(&out).unwrap(), eas[..n]);
            }
        }
        let mut out = BytesMut::new();
        assert_eq!(encode_full_ea_list_limited(&eas, 16, &mut out), Ok(1));
        assert_eq!(
            encode_full_ea_list_limited(&eas, 15, &mut BytesMut::new()),
            Ok(0)
        );
    }

    #[test]
    fn get_list_round_trip_and_truncation() {
        let names = [
            GetEa { name: b"user.a" },
            GetEa { name: b"B" },
            GetEa { name: b"third" },
        ];
        let mut out = BytesMut::new();
        encode_get_ea_list(&names, &mut out).unwrap();
        assert_eq!(&out[..4], &[12, 0, 0, 0]);
        assert_eq!(out[4], 6);
        assert_eq!(parse_get_ea_list(&out).unwrap(), names);
        for n in 0..out.len() {
            assert!(parse_get_ea_list(&out[..n]).is_err(), "len {n}");
        }
    }
}
