//! The `AFP_AfpInfo` stream: macOS keeps a file's Finder info (type,
//! creator, flags) there, and expects the rules of Apple's own servers,
//! which Samba's `vfs_fruit` follows and smbtorture's `vfs.fruit` checks.
//! The stream is kept as any other ([`super::stream`]); these are the
//! rules on top, as plain functions of the request.
//!
//! Format (60 bytes, big-endian): `{ signature: "AFP\0" | version: u32 =
//! 0x100 | _reserved: u32 | backup_time: u32 | finder_info: [u8; 32] |
//! prodos_info: [u8; 6] | _pad: [u8; 6] }`.
//!
//! - It is 60 bytes. An end of file past that is
//!   STATUS_ALLOTTED_SPACE_EXCEEDED; a smaller one is accepted and
//!   changes nothing.
//! - A read at an offset up to 60 reads from offset 0 (macOS's own
//!   off-by-one, which Samba copies); past 60 there is nothing. An open
//!   that made the stream and wrote nothing yet reads an empty AfpInfo
//!   ([`EMPTY`]); until written the stream is not there (not listed, not
//!   found by a plain open).
//! - A write must be at least 3 bytes, start with `AFP`, and be at offset
//!   0 unless it is at least 60 bytes long (else
//!   STATUS_INVALID_PARAMETER); it always lands at offset 0, as the whole
//!   60 bytes (cut or padded with zeros); one of 16 bytes or fewer
//!   changes nothing. The count answered is the count asked.
//! - Writing an all-zero Finder info deletes the stream.

use super::FsError;

/// The stream's name (compared without regard to case).
pub const NAME: &str = "AFP_AfpInfo";
/// Its fixed size.
pub const SIZE: usize = 60;
/// Where the Finder info is.
const FINDER_INFO: std::ops::Range<usize> = 16..48;

/// What a fresh, unwritten AfpInfo reads as: the signature, version 1.0
/// and the "never backed up" time, all else zero.
pub const EMPTY: [u8; SIZE] = {
    let mut b = [0u8; SIZE];
    b[0] = b'A';
    b[1] = b'F';
    b[2] = b'P';
    b[6] = 0x01;
    b[12] = 0x80;
    b
};

/// Is `stream` the AfpInfo stream?
pub fn is(stream: &str) -> bool {
    stream.eq_ignore_ascii_case(NAME)
}

/// The name of macOS's resource fork stream.
pub const RESOURCE: &str = "AFP_Resource";

/// Is `stream` the resource fork (any case)? A resource fork that holds
/// data outlives a delete on close of its open: macOS's own servers and
/// Samba's `vfs_fruit` (4.17) delete it only when it is empty.
pub fn is_resource(stream: &str) -> bool {
    stream.eq_ignore_ascii_case(RESOURCE)
}

/// What a read of `len` bytes at `offset` reads from the stream's
/// `value`: a range of it, or nothing.
pub fn read_range(value_len: usize, offset: u64, len: usize) -> std::ops::Range<usize> {
    if offset > SIZE as u64 {
        return 0..0;
    }
    0..len.min(SIZE).min(value_len)
}

/// What a write of `data` at `offset` does to the stream.
#[derive(Debug, PartialEq, Eq)]
pub enum Write {
    /// Nothing (16 bytes or fewer).
    Nothing,
    /// The stream becomes these 60 bytes.
    Store([u8; SIZE]),
    /// The Finder info is all zero: the stream goes.
    Delete,
}

/// The rules of a write (see the module doc).
pub fn write(data: &[u8], offset: u64) -> Result<Write, FsError> {
    if data.len() < 3 || (offset != 0 && data.len() < SIZE) || &data[..3] != b"AFP" {
        return Err(FsError::InvalidParameter);
    }
    if data.len() <= FINDER_INFO.start {
        return Ok(Write::Nothing);
    }
    let mut v = [0u8; SIZE];
    let n = data.len().min(SIZE);
    v[..n].copy_from_slice(&data[..n]);
    if v[FINDER_INFO].iter().all(|&b| b == 0) {
        return Ok(Write::Delete);
    }
    Ok(Write::Store(v))
}

/// The rules of an end of file: past 60 refused, else nothing changes.
pub fn set_len(len: u64) -> Result<(), FsError> {
    if len > SIZE as u64 {
        return Err(FsError::AllottedSpaceExceeded);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(finder: &[u8]) -> Vec<u8> {
        let mut v = EMPTY.to_vec();
        v[16..16 + finder.len()].copy_from_slice(finder);
        v
    }

    #[test]
    fn reads_start_at_zero_up_to_sixty() {
        assert_eq!(read_range(60, 0, 61), 0..60);
        assert_eq!(read_range(60, 16, 8), 0..8);
        assert_eq!(read_range(60, 59, 2), 0..2);
        assert_eq!(read_range(60, 60, 1), 0..1);
        assert_eq!(read_range(60, 61, 1), 0..0);
        assert_eq!(read_range(60, u64::MAX, 10), 0..0);
        assert_eq!(read_range(10, 0, 60), 0..10, "a short value is read as it is");
        assert_eq!(&EMPTY[..8], b"AFP\0\0\0\x01\0");
    }

    #[test]
    fn writes_follow_the_rules() {
        let good = info(b"SMB,OLE!");
        assert_eq!(write(&good, 0).unwrap(), Write::Store(good.clone().try_into().unwrap()));
        // Any offset, when 60 bytes or more: lands at 0; longer is cut.
        let mut long = good.clone();
        long.resize(10064, 0xEE);
        for at in [1, 30, 61, 10000] {
            assert_eq!(write(&long, at).unwrap(), Write::Store(good.clone().try_into().unwrap()));
        }
        // Short writes: at offset 0 only, padded with zeros.
        assert!(
            matches!(write(&good[..20], 0).unwrap(), Write::Store(v) if v[..20] == good[..20] && v[20..] == [0; 40])
        );
        for (at, n) in [(1, 59), (30, 3), (58, 16)] {
            assert!(matches!(write(&good[..n], at), Err(FsError::InvalidParameter)), "{at} {n}");
        }
        assert_eq!(write(&good[..16], 0).unwrap(), Write::Nothing);
        assert_eq!(write(&good[..3], 0).unwrap(), Write::Nothing);
        for bad in
            [&b""[..], b"A", b"AF", &[0u8; 60], b"XFP............................................................"]
        {
            assert!(matches!(write(bad, 0), Err(FsError::InvalidParameter)));
        }
        // An all-zero Finder info deletes.
        assert_eq!(write(&EMPTY, 0).unwrap(), Write::Delete);
        assert_eq!(write(&good[..17], 0).unwrap(), Write::Store(info(b"S").try_into().unwrap()));
    }

    #[test]
    fn end_of_file() {
        assert!(matches!(set_len(61), Err(FsError::AllottedSpaceExceeded)));
        assert!(set_len(60).is_ok() && set_len(1).is_ok() && set_len(0).is_ok());
        assert!(is("afp_afpinfo") && is("AFP_AfpInfo") && !is("AFP_Resource"));
    }
}
