//! Delayed write-time updates, as Windows file servers keep them and
//! smbtorture's smb2.timestamps checks ([MS-FSA] 2.1.4.17 and the
//! "delayed write time" notes of [MS-FSCC] 2.4.7).
//!
//! The first WRITE on a handle does not move LastWriteTime at once: the
//! update lands about two seconds later, and later writes through the same
//! handle do not move it again. A FLUSH, an end-of-file or basic-info
//! SET_INFO lands a pending update at once, and CLOSE lands it unless a
//! client set the write time explicitly. Linux moves mtime on every write,
//! so after each write the file's mtime is put back to the time clients
//! should see; the per-file state lives in the file table.

use std::sync::Arc;
use std::time::Duration;

use crate::fs::SetTimes;
use super::{lock, now_filetime, Open, Server};

/// How long after the first write its write time lands.
const DELAY: Duration = Duration::from_secs(2);

/// The write-time state of one file, kept while it is open.
#[derive(Debug, Default, Clone)]
pub struct WriteTime {
    /// The LastWriteTime clients see while writes are pending.
    pub frozen: Option<u64>,
    /// A write happened since the write time last moved.
    pub pending: bool,
    /// A client set the write time; closes leave it alone.
    pub explicit: bool,
}

/// Call before a write: fixes the write time clients see.
pub fn before_write(server: &Server, open: &Open) -> Option<u64> {
    let key = open.key?;
    let h = open.handle()?;
    let mut files = lock(&server.files);
    let entry = files.get_mut(&key)?;
    if entry.write_time.frozen.is_none() {
        entry.write_time.frozen = Some(h.stat().ok()?.mtime);
    }
    entry.write_time.frozen
}

/// Call after a successful write: puts the frozen time back and starts
/// the delayed update for the first write of this handle.
pub fn after_write(server: &Arc<Server>, open: &Arc<Open>, frozen: Option<u64>) {
    let (Some(key), Some(h), Some(t)) = (open.key, open.handle(), frozen) else {
        return;
    };
    let _ = h.set_times(SetTimes { last_write: Some(t), ..Default::default() });
    if let Some(e) = lock(&server.files).get_mut(&key) {
        e.write_time.pending = true;
    }
    let first = {
        let mut st = lock(&open.st);
        !std::mem::replace(&mut st.write_time_armed, true)
    };
    if first {
        let (server, open) = (server.clone(), open.clone());
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                tokio::time::sleep(DELAY).await;
                land(&server, &open, false);
            });
        }
    }
}

/// Lands a pending write-time update now (FLUSH, SET_INFO, the timer).
/// With `closing`, an explicit time set by a client wins.
pub fn land(server: &Server, open: &Open, closing: bool) {
    let (Some(key), Some(h)) = (open.key, open.handle()) else {
        return;
    };
    let mut files = lock(&server.files);
    let Some(e) = files.get_mut(&key) else {
        return;
    };
    if !e.write_time.pending || (closing && e.write_time.explicit) {
        return;
    }
    let now = now_filetime();
    e.write_time.pending = false;
    e.write_time.frozen = Some(now);
    drop(files);
    let _ = h.set_times(SetTimes { last_write: Some(now), ..Default::default() });
}

/// A client set the write time: that is the time from now on.
pub fn set_explicit(server: &Server, open: &Open, t: u64) {
    let Some(key) = open.key else {
        return;
    };
    if let Some(e) = lock(&server.files).get_mut(&key) {
        e.write_time = WriteTime { frozen: Some(t), pending: false, explicit: true };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_has_nothing_pending() {
        let w = WriteTime::default();
        assert!(w.frozen.is_none() && !w.pending && !w.explicit);
    }
}
