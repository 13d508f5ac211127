//! A small, strict ASN.1 DER reader and writer for SPNEGO (X.690 8.1, 10.1).
//!
//! Only what SPNEGO uses: single-byte tags (no high-tag-number form) and
//! definite lengths of up to 4 length bytes. The indefinite form is refused;
//! a long-form length that could have been shorter is accepted, as some
//! encoders emit it. Every read checks its bounds.

use super::AuthError;

pub const SEQUENCE: u8 = 0x30;
pub const OID: u8 = 0x06;
pub const OCTET_STRING: u8 = 0x04;
pub const ENUMERATED: u8 = 0x0a;
pub const GENERAL_STRING: u8 = 0x1b;
/// `[APPLICATION 0]`, constructed: the GSS-API InitialContextToken (RFC 2743 3.1).
pub const APPLICATION_0: u8 = 0x60;

/// `[n]`, context-specific and constructed.
pub const fn context(n: u8) -> u8 {
    0xa0 | n
}

/// One tag-length-value element.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tlv<'a> {
    pub tag: u8,
    /// The contents.
    pub value: &'a [u8],
    /// The whole element: tag, length and contents.
    pub raw: &'a [u8],
}

/// Reads one element from the start of `buf`; returns it and what follows.
pub fn read(buf: &[u8]) -> Result<(Tlv<'_>, &[u8]), AuthError> {
    let (&tag, rest) = buf.split_first().ok_or(AuthError::Malformed("DER tag"))?;
    if tag & 0x1f == 0x1f {
        return Err(AuthError::Malformed("DER high tag number"));
    }
    let (&first, mut rest) = rest.split_first().ok_or(AuthError::Malformed("DER length"))?;
    let len = if first < 0x80 {
        first as usize
    } else {
        let n = (first & 0x7f) as usize;
        if n == 0 {
            return Err(AuthError::Malformed("DER indefinite length"));
        }
        if n > 4 {
            return Err(AuthError::Malformed("DER length too long"));
        }
        let bytes = rest.get(..n).ok_or(AuthError::Malformed("DER length"))?;
        rest = &rest[n..];
        bytes.iter().fold(0usize, |acc, &b| (acc << 8) | b as usize)
    };
    let value = rest.get(..len).ok_or(AuthError::Malformed("DER contents"))?;
    let header = buf.len() - rest.len();
    Ok((
        Tlv {
            tag,
            value,
            raw: &buf[..header + len],
        },
        &rest[len..],
    ))
}

/// Reads one element that must carry `tag`.
pub fn expect<'a>(buf: &'a [u8], tag: u8, what: &'static str) -> Result<(Tlv<'a>, &'a [u8]), AuthError> {
    let (tlv, rest) = read(buf)?;
    if tlv.tag != tag {
        return Err(AuthError::Malformed(what));
    }
    Ok((tlv, rest))
}

/// Reads exactly one element that must carry `tag` and fill `buf`.
pub fn expect_only<'a>(buf: &'a [u8], tag: u8, what: &'static str) -> Result<Tlv<'a>, AuthError> {
    let (tlv, rest) = expect(buf, tag, what)?;
    if !rest.is_empty() {
        return Err(AuthError::Malformed(what));
    }
    Ok(tlv)
}

/// Appends a definite length in its shortest form.
fn write_len(len: usize, out: &mut Vec<u8>) {
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = (len as u32).to_be_bytes();
        let skip = bytes.iter().take_while(|&&b| b == 0).count();
        out.push(0x80 | (4 - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
}

/// Appends one element.
pub fn write(tag: u8, value: &[u8], out: &mut Vec<u8>) {
    out.push(tag);
    write_len(value.len(), out);
    out.extend_from_slice(value);
}

/// Builds one element.
pub fn tlv(tag: u8, value: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(value.len() + 6);
    write(tag, value, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths_roundtrip() {
        for len in [0usize, 1, 0x7f, 0x80, 0xff, 0x100, 0xffff, 0x10000] {
            let v = vec![0x5a; len];
            let enc = tlv(OCTET_STRING, &v);
            let (t, rest) = read(&enc).unwrap();
            assert_eq!(t.tag, OCTET_STRING);
            assert_eq!(t.value.len(), len);
            assert_eq!(t.raw, &enc[..]);
            assert!(rest.is_empty());
            for cut in 0..enc.len() {
                assert!(read(&enc[..cut]).is_err(), "prefix {cut} of {len}");
            }
        }
    }

    #[test]
    fn refuses_odd_forms() {
        assert!(read(&[0x30, 0x80, 0x00, 0x00]).is_err()); // indefinite
        assert!(read(&[0x1f, 0x01, 0x00]).is_err()); // high tag number
        assert!(read(&[0x04, 0x85, 0, 0, 0, 0, 1, 0]).is_err()); // 5 length bytes
        assert!(read(&[0x04, 0x84, 0xff, 0xff, 0xff, 0xff]).is_err()); // beyond the input
                                                                       // Non-minimal long form is accepted.
        let (t, _) = read(&[0x04, 0x81, 0x01, 0xaa]).unwrap();
        assert_eq!(t.value, &[0xaa]);
    }
}
