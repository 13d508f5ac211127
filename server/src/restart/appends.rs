//! Appends under way when the node died (DESIGN.md, "Exactly once").
//!
//! A WRITE on an append-only open writes wherever the end of the file is,
//! so a resend of one that was carried out but not answered would append
//! its data a second time. Before it writes, such a WRITE records where its
//! data goes ([`Decision::AppendAt`], a point-2 record with a payload). A
//! restart (or a takeover) that finds that record and no point-3 record of
//! the element looks at the file there:
//!
//! - the data is in place (its digest is the request's): the append ran;
//!   the file is synced and the resend is answered as done, from an answer
//!   saved under its replay key like the log's own;
//! - part of it is there and nothing after it (the process died in the
//!   middle of the write): the file is cut back to where the append began,
//!   and the resend appends it whole;
//! - the file ends where the append began: it never wrote; the resend
//!   appends it.
//!
//! Anything else (the file changed after the append, or is another file
//! now) is left as it is, and said in the log.

use std::sync::Arc;

use bytes::BytesMut;
use protocol::header::Command;
use protocol::msg::write::WriteResponse;
use tracing::{info, warn};

use super::reopen::open_in_share;
use crate::journal::{body_hash, frame_elements, recorded_digest, Decision, Logged, NvramJournal};
use crate::journal::{OpId, ReplayKey};
use crate::model::{FileUid, Model};
use crate::state::Server;

/// One append with a recorded place and no answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InFlight {
    pub op: OpId,
    pub index: usize,
    /// The WRITE's replay key: what its resend is answered under.
    pub key: ReplayKey,
    pub share: String,
    /// The open's file and its share-relative path, as the model has them.
    pub path: String,
    pub file: FileUid,
    pub offset: u64,
    pub len: u64,
    /// The [`crate::journal::write_digest`] of its data.
    pub digest: u64,
}

/// The appends of `log` that recorded their place and have no point-3
/// record, with their files as `model` (rebuilt from the same log) has
/// them. An append whose open the model does not know is left out: nothing
/// can resend it (its handle did not survive).
pub fn in_flight(log: &::nvram::LogRecovery, model: &Model) -> Vec<InFlight> {
    let logged = Logged::of(log);
    let decided = log.records.iter().filter(|r| r.kind == ::nvram::Kind::PreCommand && !r.payload.is_empty());
    let mut out = Vec::new();
    for r in decided {
        let (op, index) = (r.op, usize::from(r.element));
        let Some(Decision::AppendAt { offset, len }) = Decision::decode(&r.payload) else { continue };
        if logged.answer(op.0, index).is_some() {
            continue;
        }
        let Some(frame) = logged.frames.get(&op.0) else { continue };
        let key = logged.keys(op.0).into_iter().find(|(i, _)| *i == index).map(|(_, k)| k);
        let elem = frame_elements(frame).find(|(i, h, _)| *i == index && h.command == Command::Write as u16);
        let (Some(key @ ReplayKey::Request { file, .. }), Some((_, _, elem))) = (key, elem) else { continue };
        let Some(part) = model.partition(file.set()) else { continue };
        let Some(open) = part.open(file) else { continue };
        let info = open.info();
        out.push(InFlight {
            op,
            index,
            key,
            share: info.share.clone(),
            path: part.file(info.file).map_or(open.path(), |f| f.path()).to_string(),
            file: info.file,
            offset,
            len,
            digest: recorded_digest(elem),
        });
    }
    out
}

/// What [`settle`] found of one append.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Found {
    /// Its data is in place: its resend is answered as done.
    Done,
    /// Part of it was written and nothing after: cut back.
    CutBack,
    /// Nothing of it was written.
    NotWritten,
    /// The file is not as the append left it, or cannot be read: left alone.
    Left,
}

/// Looks at the file of each append of `appends` ([`in_flight`]) and
/// settles it (see the module doc). Call once the log's own answers are in
/// the replay index ([`NvramJournal::recover_replies`]): an unanswered
/// element's key is forgotten there.
pub fn settle(server: &Arc<Server>, journal: &NvramJournal, appends: &[InFlight]) -> Vec<Found> {
    appends
        .iter()
        .map(|a| {
            let found = look(server, a).unwrap_or_else(|e| {
                warn!(path = a.path, offset = a.offset, "an append under way at the crash: {e}; left as it is");
                Found::Left
            });
            info!(path = a.path, offset = a.offset, len = a.len, ?found, "an append under way at the crash");
            if found == Found::Done {
                let mut body = BytesMut::with_capacity(17);
                WriteResponse { count: a.len as u32 }.encode(&mut body);
                journal.recover_answer(a.key, a.op, 0, body.freeze());
            }
            found
        })
        .collect()
}

fn look(server: &Server, a: &InFlight) -> Result<Found, String> {
    let share = server.share(&a.share).ok_or_else(|| format!("share {:?} is not served", a.share))?;
    let (_, h, st) = open_in_share(&share, &a.path, true)?;
    if share.fs.stored_uid(&h).is_some_and(|uid| uid != a.file) {
        return Ok(Found::Left);
    }
    let end = a.offset.checked_add(a.len).ok_or("offset out of range")?;
    if st.size == a.offset {
        return Ok(Found::NotWritten);
    }
    if st.size < a.offset {
        return Ok(Found::Left);
    }
    let len = usize::try_from(a.len).map_err(|_| "too long")?;
    let mut data = vec![0u8; len.min(usize::try_from(st.size - a.offset).unwrap_or(usize::MAX))];
    let n = h.read_at(&mut data, a.offset).map_err(|e| format!("read: {e}"))?;
    data.truncate(n);
    if st.size >= end {
        if data.len() == len && body_hash(0, &data) == a.digest {
            // In the page cache at least: make it as safe as an answered
            // WRITE's before the resend is answered as done.
            h.sync().map_err(|e| format!("sync: {e}"))?;
            return Ok(Found::Done);
        }
        return Ok(Found::Left);
    }
    // Shorter than the append: the process died while writing it.
    h.set_len(a.offset).map_err(|e| format!("cut back: {e}"))?;
    Ok(Found::CutBack)
}
