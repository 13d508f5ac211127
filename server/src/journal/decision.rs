//! What an element decided before it changed anything: the payload of a
//! point-2 record written after the plain one ([`super::Journal::decided`]).
//!
//! A request whose point-3 record is missing after a crash was either not
//! carried out, or carried out without its record. For most requests a resend
//! does no harm either way (a WRITE at an offset writes the same bytes
//! again); for a WRITE on an append-only open it would append its data a
//! second time. So such a WRITE records where its data goes before it writes
//! it, and the restore looks there ([`crate::restart::appends`]): if the data
//! is in place, the resend is answered as done.
//!
//! ```text
//! // Format: { tag: u8 = 1 (AppendAt) | offset: u64 | len: u64 }, little-endian
//! ```

/// A decision, as the restore reads it back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// A WRITE on an append-only open writes its `len` bytes at `offset`
    /// (the end of the file when it decided).
    AppendAt { offset: u64, len: u64 },
}

const APPEND_AT: u8 = 1;

impl Decision {
    /// The record's payload.
    pub fn encode(&self) -> [u8; 17] {
        let Decision::AppendAt { offset, len } = *self;
        let mut b = [0u8; 17];
        b[0] = APPEND_AT;
        b[1..9].copy_from_slice(&offset.to_le_bytes());
        b[9..].copy_from_slice(&len.to_le_bytes());
        b
    }

    /// A payload [`Decision::encode`] made; `None` for anything else (a
    /// later format's decision is not acted on).
    pub fn decode(b: &[u8]) -> Option<Decision> {
        if b.len() != 17 || b[0] != APPEND_AT {
            return None;
        }
        let offset = u64::from_le_bytes(b[1..9].try_into().ok()?);
        let len = u64::from_le_bytes(b[9..].try_into().ok()?);
        Some(Decision::AppendAt { offset, len })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_decision_decodes_as_it_was_encoded() {
        let d = Decision::AppendAt { offset: 1 << 40, len: 8 << 20 };
        assert_eq!(Decision::decode(&d.encode()), Some(d));
    }

    #[test]
    fn other_payloads_are_no_decision() {
        let mut b = Decision::AppendAt { offset: 1, len: 2 }.encode();
        assert_eq!(Decision::decode(&b[..16]), None);
        assert_eq!(Decision::decode(&[]), None);
        b[0] = 2;
        assert_eq!(Decision::decode(&b), None);
    }
}
