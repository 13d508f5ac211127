//! Change notification: watches on directories, fed by the changes the
//! server itself makes (create, delete, rename, attribute and size
//! changes). Changes made behind Duet's back on the local file system are
//! not reported yet.

use std::sync::{Arc, Mutex};

use super::lock;

/// Completion filter bits ([MS-SMB2] 2.2.35).
pub mod filter {
    pub const FILE_NAME: u32 = 0x0001;
    pub const DIR_NAME: u32 = 0x0002;
    pub const ATTRIBUTES: u32 = 0x0004;
    pub const SIZE: u32 = 0x0008;
    pub const LAST_WRITE: u32 = 0x0010;
    pub const CREATION: u32 = 0x0040;
    pub const EA: u32 = 0x0080;
    pub const SECURITY: u32 = 0x0100;
    pub const STREAM_NAME: u32 = 0x0200;
}

/// Actions ([MS-FSCC] 2.4.42).
pub mod action {
    pub const ADDED: u32 = 1;
    pub const REMOVED: u32 = 2;
    pub const MODIFIED: u32 = 3;
    pub const RENAMED_OLD_NAME: u32 = 4;
    pub const RENAMED_NEW_NAME: u32 = 5;
    pub const ADDED_STREAM: u32 = 6;
}

/// Events queued for one watching open.
#[derive(Default)]
pub struct Queue {
    pub events: Vec<(u32, String)>,
    /// The output buffer size of the watch's first request: changes are
    /// gathered for that size, so no later request gets more (Windows'
    /// behaviour, which smb2.notify.valid-req checks).
    pub max_len: usize,
    /// More happened than a response can carry.
    pub overflow: bool,
    /// The handle was closed: pending requests end with NOTIFY_CLEANUP.
    pub closed: bool,
    /// The watched directory is to be deleted: requests end with
    /// DELETE_PENDING.
    pub delete_pending: bool,
    /// Requests waiting on this watch, oldest first: changes go to the
    /// oldest one ([MS-SMB2] 3.3.5.19: requests complete in order).
    pub waiting: std::collections::VecDeque<u64>,
    pub next_waiter: u64,
}

impl Queue {
    /// Joins the line of waiting requests; returns the place's id.
    pub fn join(&mut self) -> u64 {
        self.next_waiter += 1;
        self.waiting.push_back(self.next_waiter);
        self.next_waiter
    }

    /// Is `id` first in line?
    pub fn first(&self, id: u64) -> bool {
        self.waiting.front() == Some(&id)
    }

    /// Leaves the line (answered or cancelled).
    pub fn leave(&mut self, id: u64) {
        self.waiting.retain(|w| *w != id);
    }
}

pub struct Watch {
    pub open_id: u64,
    pub share: String,
    /// Lower-cased components of the watched directory.
    pub dir: Vec<String>,
    pub recursive: bool,
    pub filter: u32,
    pub queue: Arc<Mutex<Queue>>,
    pub wake: Arc<tokio::sync::Notify>,
}

/// Most events kept per watch before it reports an overflow.
const MAX_QUEUED: usize = 1024;

#[derive(Default)]
pub struct NotifyTable {
    watches: Vec<Watch>,
}

impl NotifyTable {
    pub fn watch(&self, open_id: u64) -> Option<(Arc<Mutex<Queue>>, Arc<tokio::sync::Notify>)> {
        self.watches.iter().find(|w| w.open_id == open_id).map(|w| (w.queue.clone(), w.wake.clone()))
    }

    pub fn add(&mut self, w: Watch) {
        self.watches.push(w);
    }

    /// Ends a watch when its handle closes.
    pub fn remove(&mut self, open_id: u64) {
        self.watches.retain(|w| {
            if w.open_id == open_id {
                lock(&w.queue).closed = true;
                w.wake.notify_waiters();
                false
            } else {
                true
            }
        });
    }

    /// The directory these opens watch is now delete-pending: their
    /// waiting requests end with STATUS_DELETE_PENDING (as Windows does).
    pub fn delete_pending(&self, open_ids: &[u64]) {
        for w in self.watches.iter().filter(|w| open_ids.contains(&w.open_id)) {
            lock(&w.queue).delete_pending = true;
            w.wake.notify_waiters();
        }
    }

    pub fn is_empty(&self) -> bool {
        self.watches.is_empty()
    }

    /// Reports a change of `path` (components as on disk) in `share`.
    pub fn report(&self, share: &str, path: &[String], act: u32, filter_bits: u32) {
        if path.is_empty() {
            return;
        }
        let lower: Vec<String> = path.iter().map(|c| c.to_lowercase()).collect();
        for w in &self.watches {
            if !w.share.eq_ignore_ascii_case(share) || w.filter & filter_bits == 0 {
                continue;
            }
            let parent = &lower[..lower.len() - 1];
            let hit = if w.recursive { parent.starts_with(&w.dir) } else { parent == w.dir.as_slice() };
            if !hit {
                continue;
            }
            let rel = path[w.dir.len()..].join("\\");
            let mut q = lock(&w.queue);
            if q.events.len() >= MAX_QUEUED {
                q.overflow = true;
            } else {
                q.events.push((act, rel));
            }
            drop(q);
            w.wake.notify_waiters();
        }
    }
}
