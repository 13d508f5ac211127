//! Saved answers carried in a checkpoint, so that they outlive the records
//! they came from (DESIGN.md, "Exactly once"; issue 13).
//!
//! An answer saved for a replay is kept in memory ([`super::ReplayIndex`])
//! for as long as the client may resend its request. Most of the time its
//! point-3 record is still in the log, and a restart finds it there. Two
//! kinds outlive their records: the answers a restart found in the log (the
//! restart retires their records at once, so that they do not hold the ring's
//! head for minutes) and those of operations whose answer never left
//! (released after a second, [`super::Journal::release`]). Those are written
//! into every checkpoint until their deadline, and read back from the last
//! checkpoint by the next start ([`super::NvramJournal::recover_replies`]): a
//! second crash within their lifetime does not lose them.
//!
//! A checkpoint also carries the request of an operation that waits long while
//! it is being carried out (a rename waiting for lease breaks, which renames
//! after its wait): its records would otherwise hold the ring's head for as
//! long as it waits (up to the break time-out), and the journal could fill
//! meanwhile. Once a checkpoint that carries its request is durable, the
//! operation is released ([`crate::restart::retire`]); a restart finds the
//! request in the checkpoint as it would in the log (the rename under way is
//! followed, [`crate::restart::redo::Collector::renames_in_flight`]).
//!
//! The checkpoint record's payload is then framed; a payload without the
//! frame is the state alone (as every checkpoint was before):
//!
//! ```text
//! // Format: Framed { magic:[u8;8] "DUETCKPT" | state_len:u32 | state[state_len] | Answers }
//! //       | Framed2 { magic:[u8;8] "DUETCKP2" | state_len:u32 | state[state_len]
//! //                   | answers_len:u32 | Answers | Requests }   (with carried requests)
//! // Format: Answers { count:u32 | Answer* | crc32:u32 }   (crc32 of count and every Answer)
//! // Format: Answer { op:u64 | deadline_ms:u64 | status:u32 | Key | response_len:u32 | response }
//! // Format: Key { 1 | create_guid:[u8;16] }
//! //           | { 2 | file:u64 | lock_sequence:u32 }
//! //           | { 3 | file:u64 | command:u16 | channel_sequence:u16 | body:u64 }
//! // Format: Requests { count:u32 | Request* | crc32:u32 }  (crc32 of count and every Request)
//! // Format: Request { op:u64 | frame_len:u32 | frame[frame_len] }   (the point-1 request)
//! ```
//!
//! All integers little-endian; `deadline_ms` is wall-clock milliseconds since
//! the Unix epoch (a deadline that must hold across a restart).

use bytes::Bytes;

use super::{OpId, ReplayKey, Saved, Ticket};
use crate::model::ids::{CreateGuid, PersistentFileId};

/// The first bytes of a framed checkpoint payload. (A model checkpoint
/// starts with `DUETSTAT`.)
pub const MAGIC: [u8; 8] = *b"DUETCKPT";
/// The first bytes of a framed checkpoint payload that carries requests too.
pub const MAGIC_REQUESTS: [u8; 8] = *b"DUETCKP2";

/// Why carried answers do not decode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("the carried answers are truncated")]
    Truncated,
    #[error("the carried answers fail their checksum")]
    Checksum,
    #[error("unknown replay key tag {0}")]
    Tag(u8),
    #[error("{0} bytes left over after the carried answers")]
    Trailing(usize),
}

/// The checkpoint payload for `state` with `answers` and `requests` (by
/// operation, the point-1 frame) carried: `state` itself when there are none.
pub fn frame(state: &[u8], answers: &[(ReplayKey, Saved, u64)], requests: &[(OpId, Bytes)]) -> Vec<u8> {
    if answers.is_empty() && requests.is_empty() {
        return state.to_vec();
    }
    let carried: usize = requests.iter().map(|(_, f)| f.len() + 12).sum();
    let mut out = Vec::with_capacity(state.len() + 24 + answers.len() * 64 + carried);
    out.extend_from_slice(if requests.is_empty() { &MAGIC } else { &MAGIC_REQUESTS });
    out.extend_from_slice(&len32(state.len()).to_le_bytes());
    out.extend_from_slice(state);
    let answers_len_at = out.len();
    if !requests.is_empty() {
        out.extend_from_slice(&0u32.to_le_bytes());
    }
    put_answers(&mut out, answers);
    if !requests.is_empty() {
        let n = len32(out.len() - answers_len_at - 4);
        out[answers_len_at..answers_len_at + 4].copy_from_slice(&n.to_le_bytes());
        let start = out.len();
        out.extend_from_slice(&len32(requests.len()).to_le_bytes());
        for (op, frame) in requests {
            out.extend_from_slice(&op.0.to_le_bytes());
            out.extend_from_slice(&len32(frame.len()).to_le_bytes());
            out.extend_from_slice(frame);
        }
        let crc = crc32fast::hash(&out[start..]);
        out.extend_from_slice(&crc.to_le_bytes());
    }
    out
}

fn len32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// Appends `Answers` (see the module doc).
fn put_answers(out: &mut Vec<u8>, answers: &[(ReplayKey, Saved, u64)]) {
    let start = out.len();
    out.extend_from_slice(&u32::try_from(answers.len()).unwrap_or(u32::MAX).to_le_bytes());
    for (key, saved, deadline) in answers {
        out.extend_from_slice(&saved.op.0.to_le_bytes());
        out.extend_from_slice(&deadline.to_le_bytes());
        out.extend_from_slice(&saved.status.to_le_bytes());
        match key {
            ReplayKey::Create(g) => {
                out.push(1);
                out.extend_from_slice(&g.0);
            }
            ReplayKey::Lock { file, lock_sequence } => {
                out.push(2);
                out.extend_from_slice(&file.0.to_le_bytes());
                out.extend_from_slice(&lock_sequence.to_le_bytes());
            }
            ReplayKey::Request { file, command, channel_sequence, body } => {
                out.push(3);
                out.extend_from_slice(&file.0.to_le_bytes());
                out.extend_from_slice(&command.to_le_bytes());
                out.extend_from_slice(&channel_sequence.to_le_bytes());
                out.extend_from_slice(&body.to_le_bytes());
            }
        }
        out.extend_from_slice(&u32::try_from(saved.response.len()).unwrap_or(u32::MAX).to_le_bytes());
        out.extend_from_slice(&saved.response);
    }
    let crc = crc32fast::hash(&out[start..]);
    out.extend_from_slice(&crc.to_le_bytes());
}

/// A checkpoint payload's parts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Parts<'a> {
    pub state: &'a [u8],
    /// The carried answers' bytes ([`decode`] them).
    pub answers: Option<&'a [u8]>,
    /// The carried requests' bytes ([`decode_requests`] them).
    pub requests: Option<&'a [u8]>,
}

/// A checkpoint payload's state, and its carried answers' bytes if it has
/// any ([`decode`] them). A payload that is not framed is all state. A frame
/// whose state length runs past the end is taken for state too: the state's
/// own decoder then says what is wrong.
pub fn split(payload: &[u8]) -> (&[u8], Option<&[u8]>) {
    let p = parts(payload);
    (p.state, p.answers)
}

/// A checkpoint payload taken apart (see [`split`]).
pub fn parts(payload: &[u8]) -> Parts<'_> {
    let whole = Parts { state: payload, answers: None, requests: None };
    let (rest, with_requests) = match (payload.strip_prefix(&MAGIC[..]), payload.strip_prefix(&MAGIC_REQUESTS[..])) {
        (Some(rest), _) => (rest, false),
        (_, Some(rest)) => (rest, true),
        _ => return whole,
    };
    let mut r = rest;
    let Ok(len) = take_u32(&mut r) else { return whole };
    let Ok(state) = take(&mut r, len as usize) else { return whole };
    if !with_requests {
        return Parts { state, answers: Some(r), requests: None };
    }
    let Ok(len) = take_u32(&mut r) else { return whole };
    let Ok(answers) = take(&mut r, len as usize) else { return whole };
    Parts { state, answers: (!answers.is_empty()).then_some(answers), requests: Some(r) }
}

/// The requests [`frame`] carried: by operation, the point-1 frame (borrowed
/// from `bytes`).
pub fn decode_requests(bytes: &[u8]) -> Result<Vec<(OpId, &[u8])>, Error> {
    let mut r = checked(bytes)?;
    let count = take_u32(&mut r)?;
    // Each request takes at least 12 bytes: no count allocates past the input.
    let mut out = Vec::with_capacity((count as usize).min(r.len() / 12));
    for _ in 0..count {
        let op = OpId(take_u64(&mut r)?);
        let len = take_u32(&mut r)? as usize;
        out.push((op, take(&mut r, len)?));
    }
    if !r.is_empty() {
        return Err(Error::Trailing(r.len()));
    }
    Ok(out)
}

/// The answers [`frame`] carried: key, saved answer (its ticket durable:
/// it comes from a durable checkpoint) and deadline.
pub fn decode(bytes: &[u8]) -> Result<Vec<(ReplayKey, Saved, u64)>, Error> {
    let mut r = checked(bytes)?;
    let count = take_u32(&mut r)?;
    // Each answer takes at least 29 bytes: no count allocates past the input.
    let mut out = Vec::with_capacity((count as usize).min(r.len() / 29));
    for _ in 0..count {
        let op = OpId(take_u64(&mut r)?);
        let deadline = take_u64(&mut r)?;
        let status = take_u32(&mut r)?;
        let key = match take(&mut r, 1)?[0] {
            1 => ReplayKey::Create(CreateGuid(take(&mut r, 16)?.try_into().map_err(|_| Error::Truncated)?)),
            2 => ReplayKey::Lock { file: PersistentFileId(take_u64(&mut r)?), lock_sequence: take_u32(&mut r)? },
            3 => ReplayKey::Request {
                file: PersistentFileId(take_u64(&mut r)?),
                command: take_u16(&mut r)?,
                channel_sequence: take_u16(&mut r)?,
                body: take_u64(&mut r)?,
            },
            t => return Err(Error::Tag(t)),
        };
        let len = take_u32(&mut r)? as usize;
        let response = Bytes::copy_from_slice(take(&mut r, len)?);
        out.push((key, Saved { op, status, response, ticket: Ticket::DURABLE }, deadline));
    }
    if !r.is_empty() {
        return Err(Error::Trailing(r.len()));
    }
    Ok(out)
}

/// A section's bytes without its trailing crc32, once that holds.
fn checked(bytes: &[u8]) -> Result<&[u8], Error> {
    let body_len = bytes.len().checked_sub(4).ok_or(Error::Truncated)?;
    let (body, crc) = bytes.split_at(body_len);
    if crc32fast::hash(body) != u32::from_le_bytes([crc[0], crc[1], crc[2], crc[3]]) {
        return Err(Error::Checksum);
    }
    Ok(body)
}

fn take<'a>(r: &mut &'a [u8], n: usize) -> Result<&'a [u8], Error> {
    if r.len() < n {
        return Err(Error::Truncated);
    }
    let (head, rest) = r.split_at(n);
    *r = rest;
    Ok(head)
}

fn take_u16(r: &mut &[u8]) -> Result<u16, Error> {
    let b = take(r, 2)?;
    Ok(u16::from_le_bytes([b[0], b[1]]))
}

fn take_u32(r: &mut &[u8]) -> Result<u32, Error> {
    let b = take(r, 4)?;
    Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

fn take_u64(r: &mut &[u8]) -> Result<u64, Error> {
    let b = take(r, 8)?;
    Ok(u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answers() -> Vec<(ReplayKey, Saved, u64)> {
        let saved = |op: u64, status: u32, body: &[u8]| Saved {
            op: OpId(op),
            status,
            response: Bytes::copy_from_slice(body),
            ticket: Ticket::DURABLE,
        };
        vec![
            (ReplayKey::Create(CreateGuid([7; 16])), saved(1, 0, b"create answer"), 1_000),
            (ReplayKey::Lock { file: PersistentFileId(9), lock_sequence: 0x21 }, saved(2, 0, b"lk"), 2_000),
            (
                ReplayKey::Request { file: PersistentFileId(9), command: 9, channel_sequence: 3, body: 0xdead },
                saved(u64::MAX, 0xc000_0022, b""),
                u64::MAX,
            ),
        ]
    }

    #[test]
    fn carried_answers_come_back_as_they_went() {
        let state = b"DUETSTAT the model".to_vec();
        let payload = frame(&state, &answers(), &[]);
        let (s, carried) = split(&payload);
        assert_eq!(s, &state[..]);
        assert_eq!(decode(carried.unwrap()).unwrap(), answers());
    }

    fn requests() -> Vec<(OpId, Bytes)> {
        vec![(OpId(5), Bytes::from_static(b"a rename's request")), (OpId(9), Bytes::new())]
    }

    #[test]
    fn carried_requests_come_back_as_they_went_with_or_without_answers() {
        let state = b"DUETSTAT the model".to_vec();
        for answers in [answers(), Vec::new()] {
            let payload = frame(&state, &answers, &requests());
            let p = parts(&payload);
            assert_eq!(p.state, &state[..]);
            assert_eq!(p.answers.map(|a| decode(a).unwrap()).unwrap_or_default(), answers);
            let back = decode_requests(p.requests.unwrap()).unwrap();
            let want = requests();
            let want: Vec<(OpId, &[u8])> = want.iter().map(|(op, f)| (*op, &f[..])).collect();
            assert_eq!(back, want);
            assert_eq!(split(&payload), (&state[..], p.answers));
        }
        // Without requests, the frame is the older one.
        assert_eq!(parts(&frame(&state, &answers(), &[])).requests, None);
    }

    #[test]
    fn damaged_requests_are_an_error_never_a_panic() {
        let payload = frame(b"state", &[], &requests());
        let carried = parts(&payload).requests.unwrap().to_vec();
        for cut in 0..carried.len() {
            assert!(decode_requests(&carried[..cut]).is_err(), "cut at {cut}");
        }
        for i in 0..carried.len() {
            let mut d = carried.clone();
            d[i] ^= 0x40;
            assert!(decode_requests(&d).is_err(), "byte {i}");
        }
        // A frame cut short anywhere is taken for state, never a panic.
        for cut in 0..payload.len() {
            let p = parts(&payload[..cut]);
            assert!(p.requests.is_none_or(|r| decode_requests(r).is_err()), "cut at {cut}");
        }
    }

    #[test]
    fn a_payload_without_answers_is_the_state_alone() {
        let state = b"DUETSTAT the model".to_vec();
        assert_eq!(frame(&state, &[], &[]), state);
        assert_eq!(split(&state), (&state[..], None));
        // A frame whose state runs past the end is not taken apart.
        let mut bad = MAGIC.to_vec();
        bad.extend_from_slice(&1000u32.to_le_bytes());
        bad.extend_from_slice(b"short");
        assert_eq!(split(&bad), (&bad[..], None));
    }

    #[test]
    fn damaged_answers_are_an_error_never_a_panic() {
        let payload = frame(b"state", &answers(), &[]);
        let (_, carried) = split(&payload);
        let carried = carried.unwrap();
        for cut in 0..carried.len() {
            assert!(decode(&carried[..cut]).is_err(), "cut at {cut}");
        }
        for i in 0..carried.len() {
            let mut d = carried.to_vec();
            d[i] ^= 0x40;
            assert!(decode(&d).is_err(), "byte {i}");
        }
    }
}
