//! FILE_OBJECTID_BUFFER ([MS-FSCC] 2.1.3.1), the 64-byte answer to
//! FSCTL_CREATE_OR_GET_OBJECT_ID and FSCTL_GET_OBJECT_ID.

use bytes::{BufMut, BytesMut};

use crate::codec::Reader;
use crate::error::ParseResult;

/// FILE_OBJECTID_BUFFER, type 1 ([MS-FSCC] 2.1.3.1).
///
/// Format: `{ object_id: [u8; 16] | birth_volume_id: [u8; 16] |
/// birth_object_id: [u8; 16] | domain_id: [u8; 16] }`
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileObjectIdBuffer {
    pub object_id: [u8; 16],
    pub birth_volume_id: [u8; 16],
    pub birth_object_id: [u8; 16],
    pub domain_id: [u8; 16],
}

impl FileObjectIdBuffer {
    pub const LEN: usize = 64;

    /// The deterministic object id Duet gives a file: its 64-bit file id
    /// and the volume serial, each zero-extended to 16 bytes. Birth ids
    /// equal the current ids (files never move between volumes); no
    /// domain.
    pub fn for_file(volume_serial: u64, file_id: u64) -> Self {
        let mut object_id = [0u8; 16];
        object_id[..8].copy_from_slice(&file_id.to_le_bytes());
        object_id[8..].copy_from_slice(&volume_serial.to_le_bytes());
        let mut volume_id = [0u8; 16];
        volume_id[..8].copy_from_slice(&volume_serial.to_le_bytes());
        FileObjectIdBuffer {
            object_id,
            birth_volume_id: volume_id,
            birth_object_id: object_id,
            domain_id: [0; 16],
        }
    }

    pub fn parse(input: &[u8]) -> ParseResult<(&[u8], Self)> {
        let mut r = Reader::new(input);
        let v = FileObjectIdBuffer {
            object_id: r.guid("FILE_OBJECTID_BUFFER")?,
            birth_volume_id: r.guid("FILE_OBJECTID_BUFFER")?,
            birth_object_id: r.guid("FILE_OBJECTID_BUFFER")?,
            domain_id: r.guid("FILE_OBJECTID_BUFFER")?,
        };
        Ok((r.rest(), v))
    }

    pub fn encode(&self, out: &mut BytesMut) {
        out.put_slice(&self.object_id);
        out.put_slice(&self.birth_volume_id);
        out.put_slice(&self.birth_object_id);
        out.put_slice(&self.domain_id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_truncation() {
        let v = FileObjectIdBuffer::for_file(0x99, 0x1234);
        let mut out = BytesMut::new();
        v.encode(&mut out);
        assert_eq!(out.len(), FileObjectIdBuffer::LEN);
        assert_eq!(&out[..2], &[0x34, 0x12]);
        assert_eq!(out[8], 0x99);
        let (rest, back) = FileObjectIdBuffer::parse(&out).unwrap();
        assert!(rest.is_empty());
        assert_eq!(back, v);
        for n in 0..out.len() {
            assert!(FileObjectIdBuffer::parse(&out[..n]).is_err());
        }
    }
}
