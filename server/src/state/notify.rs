//! Change notification ([MS-SMB2] 3.3.5.19): watches on directories, fed
//! by two sources. The changes the server itself makes (create, delete,
//! rename, attribute, EA, stream and size changes) are reported by the
//! handlers that make them ([`super::Server::report_change`]). Changes made
//! on the server's disk or by another protocol come from inotify
//! ([`crate::fs::watch`]): the directories that watches cover are watched
//! with inotify while the watch lives, a WATCH_TREE watch's subdirectories
//! too (within `limits.max_dir_watches_per_client` and
//! `limits.max_dir_watches`), and the reader thread ([`spawn_reader`])
//! turns the kernel's events into the same notifications
//! ([`NotifyTable::apply_disk`]). An event Duet caused itself is dropped by
//! the watcher's marks, so no change is reported twice.

use std::sync::{Arc, Mutex, Weak};

use super::lock;
use crate::fs::watch::{self, Entry, Seen, Watcher, Wd};

/// Completion filter bits ([MS-SMB2] 2.2.35).
pub mod filter {
    pub const FILE_NAME: u32 = 0x0001;
    pub const DIR_NAME: u32 = 0x0002;
    pub const ATTRIBUTES: u32 = 0x0004;
    pub const SIZE: u32 = 0x0008;
    pub const LAST_WRITE: u32 = 0x0010;
    pub const LAST_ACCESS: u32 = 0x0020;
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
    /// The same as on disk.
    pub disk_dir: Vec<String>,
    /// The ClientGuid of the client that made it (the per-client cap on
    /// inotify watches).
    pub client: [u8; 16],
    /// The inotify watches it holds: its directory, and for a WATCH_TREE
    /// watch those below it.
    pub held: Vec<Wd>,
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
    /// The server's inotify watcher; without one, only Duet's own changes
    /// are reported.
    watcher: Option<Arc<Watcher>>,
}

/// The filter bits of a name change of a directory or of a file.
fn name_filter(is_dir: bool) -> u32 {
    if is_dir {
        filter::DIR_NAME
    } else {
        filter::FILE_NAME
    }
}

/// What an `IN_ATTRIB` may be: inotify does not say which (smbd's mapping).
const ATTRIB_FILTER: u32 = filter::ATTRIBUTES | filter::LAST_WRITE | filter::LAST_ACCESS | filter::EA | filter::SECURITY;
/// What an `IN_MODIFY` is: a write, as Duet reports its own at close.
const MODIFY_FILTER: u32 = filter::LAST_WRITE | filter::SIZE;

impl NotifyTable {
    /// A table whose watches also see changes on disk through `watcher`.
    pub fn with_watcher(watcher: Arc<Watcher>) -> NotifyTable {
        NotifyTable { watches: Vec::new(), watcher: Some(watcher) }
    }

    pub fn watch(&self, open_id: u64) -> Option<(Arc<Mutex<Queue>>, Arc<tokio::sync::Notify>)> {
        self.watches.iter().find(|w| w.open_id == open_id).map(|w| (w.queue.clone(), w.wake.clone()))
    }

    /// Adds a watch, and watches its directories with inotify (the
    /// directory of `share`, and for a WATCH_TREE watch those below it,
    /// within the caps).
    pub fn add(&mut self, w: Watch, share: &crate::fs::Share, limits: &crate::config::Limits) {
        let recursive = w.recursive;
        let dir = w.disk_dir.clone();
        self.watches.push(w);
        let i = self.watches.len() - 1;
        self.arm(i, share, &dir, !recursive, limits);
    }

    /// Watches `dir` for watch `i` with inotify, and unless `only` the
    /// directories below it, as far as the caps allow.
    fn arm(&mut self, i: usize, share: &crate::fs::Share, dir: &[String], only: bool, limits: &crate::config::Limits) {
        let Some(watcher) = self.watcher.clone() else { return };
        if !watcher.is_started() {
            return;
        }
        let client = self.watches[i].client;
        let mut used: usize = self.watches.iter().filter(|w| w.client == client).map(|w| w.held.len()).sum();
        let room = limits.max_dir_watches_per_client.saturating_sub(used);
        if room == 0 {
            return;
        }
        let mut dirs = vec![dir.to_vec()];
        if !only {
            dirs.extend(watch::subdirs(share, dir, room - 1));
        }
        for d in dirs {
            if used >= limits.max_dir_watches_per_client {
                break;
            }
            match watcher.add_dir(share, &d) {
                Ok(wd) => {
                    self.watches[i].held.push(wd);
                    used += 1;
                }
                Err(watch::AddError::Full) => {
                    tracing::warn!(share = share.name(), "change notify: limits.max_dir_watches reached; a directory is not watched for changes on disk");
                    break;
                }
                Err(watch::AddError::Failed) => {}
            }
        }
    }

    /// Ends a watch when its handle closes, and the inotify watches only
    /// it held.
    pub fn remove(&mut self, open_id: u64) {
        let watcher = self.watcher.clone();
        self.watches.retain(|w| {
            if w.open_id == open_id {
                lock(&w.queue).closed = true;
                w.wake.notify_waiters();
                if let Some(watcher) = &watcher {
                    for wd in &w.held {
                        watcher.release(*wd);
                    }
                }
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
        self.deliver(share, path, act, filter_bits, false);
    }

    /// Tells every watch that changes were lost (the kernel's queue
    /// overflowed): their requests end with STATUS_NOTIFY_ENUM_DIR
    /// ([MS-SMB2] 3.3.5.19), and the client enumerates the directory.
    pub fn overflow_all(&self) {
        for w in &self.watches {
            lock(&w.queue).overflow = true;
            w.wake.notify_waiters();
        }
    }

    /// Turns what inotify saw into notifications, and keeps the watched
    /// directories up to date: a new or moved-in directory below a
    /// WATCH_TREE watch is watched too, a watched one moved away is not
    /// any more. An `IN_MOVED_FROM` and the `IN_MOVED_TO` with its cookie
    /// are a rename (old and new name in one directory; removed and added
    /// across two, as Windows reports a move); either alone is a removal
    /// or an addition. Events Duet caused are not reported (their own path
    /// did), but their bookkeeping is done.
    pub fn apply_disk(&mut self, seen: &[Seen], share_of: &dyn Fn(&str) -> Option<Arc<super::ShareEntry>>, limits: &crate::config::Limits) {
        let mut i = 0;
        while i < seen.len() {
            let e = match &seen[i] {
                Seen::Overflow => {
                    self.overflow_all();
                    i += 1;
                    continue;
                }
                Seen::Entry(e) => e,
            };
            i += 1;
            let names = name_filter(e.is_dir());
            if e.mask & libc::IN_MOVED_FROM != 0 {
                let pair = match seen.get(i) {
                    Some(Seen::Entry(t)) if t.mask & libc::IN_MOVED_TO != 0 && t.cookie == e.cookie => Some(t),
                    _ => None,
                };
                if let Some(t) = pair {
                    i += 1;
                    if let Some(watcher) = &self.watcher {
                        if e.is_dir() {
                            if e.share == t.share {
                                watcher.moved(&e.share, &e.path(), &t.path());
                            } else {
                                watcher.forget(&e.share, &e.path());
                            }
                        }
                    }
                    if t.is_dir() {
                        self.new_dir(t, share_of, limits);
                    }
                    if !(e.own || t.own) {
                        if e.share == t.share && e.dir == t.dir {
                            self.deliver(&e.share, &e.path(), action::RENAMED_OLD_NAME, names, true);
                            self.deliver(&t.share, &t.path(), action::RENAMED_NEW_NAME, names, true);
                        } else {
                            self.deliver(&e.share, &e.path(), action::REMOVED, names, true);
                            self.deliver(&t.share, &t.path(), action::ADDED, names, true);
                        }
                    }
                    continue;
                }
                // Moved out of every watched directory (maybe out of the
                // share): its watches end.
                if e.is_dir() {
                    if let Some(watcher) = &self.watcher {
                        watcher.forget(&e.share, &e.path());
                    }
                }
                if !e.own {
                    self.deliver(&e.share, &e.path(), action::REMOVED, names, true);
                }
                continue;
            }
            if e.mask & (libc::IN_CREATE | libc::IN_MOVED_TO) != 0 {
                if e.is_dir() {
                    self.new_dir(e, share_of, limits);
                }
                if !e.own {
                    self.deliver(&e.share, &e.path(), action::ADDED, names, true);
                }
            } else if e.own {
            } else if e.mask & libc::IN_DELETE != 0 {
                self.deliver(&e.share, &e.path(), action::REMOVED, names, true);
            } else if e.mask & libc::IN_MODIFY != 0 {
                self.deliver(&e.share, &e.path(), action::MODIFIED, MODIFY_FILTER, true);
            } else if e.mask & libc::IN_ATTRIB != 0 {
                self.deliver(&e.share, &e.path(), action::MODIFIED, ATTRIB_FILTER, true);
            }
        }
    }

    /// The directory `e` names appeared (made, or moved in): the
    /// WATCH_TREE watches above it watch it and what is below it.
    fn new_dir(&mut self, e: &Entry, share_of: &dyn Fn(&str) -> Option<Arc<super::ShareEntry>>, limits: &crate::config::Limits) {
        let Some(share) = share_of(&e.share) else { return };
        let path = e.path();
        let lower: Vec<String> = path.iter().map(|c| c.to_lowercase()).collect();
        let covering: Vec<usize> = (0..self.watches.len())
            .filter(|i| {
                let w = &self.watches[*i];
                w.recursive && w.share.eq_ignore_ascii_case(&e.share) && lower.len() > w.dir.len() && lower.starts_with(&w.dir)
            })
            .collect();
        for i in covering {
            self.arm(i, &share.fs, &path, false, limits);
        }
    }

    /// Queues a change for every watch it concerns. A change from disk
    /// that repeats the last one queued is not queued again (a file
    /// written in many pieces is one modification).
    fn deliver(&self, share: &str, path: &[String], act: u32, filter_bits: u32, from_disk: bool) {
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
            if from_disk && q.events.last().is_some_and(|(a, n)| *a == act && *n == rel) {
                continue;
            }
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

/// Makes sure the server's inotify watcher is started, with its reader
/// thread; false when inotify is not to be had (then only Duet's own
/// changes are reported).
pub fn ensure_reader(server: &Arc<super::Server>) -> bool {
    match server.watcher.start() {
        Ok(false) => true,
        Ok(true) => {
            let weak = Arc::downgrade(server);
            let w = server.watcher.clone();
            let spawned = std::thread::Builder::new().name("duet-inotify".into()).spawn(move || reader(weak, w));
            if let Err(e) = spawned {
                tracing::warn!("change notify: no inotify reader ({e}); changes on disk are not reported");
                return false;
            }
            true
        }
        Err(e) => {
            tracing::warn!("change notify: no inotify ({e}); changes on disk are not reported");
            false
        }
    }
}

/// The reader thread: waits for inotify events, and hands them to the
/// watches. Ends when the server is gone.
fn reader(server: Weak<super::Server>, watcher: Arc<Watcher>) {
    loop {
        let ready = watcher.wait(500);
        let Some(server) = server.upgrade() else { return };
        if !ready {
            continue;
        }
        let mut seen = watcher.read();
        // A rename's two events may straddle two reads.
        for _ in 0..4 {
            match seen.last() {
                Some(Seen::Entry(e)) if e.mask & libc::IN_MOVED_FROM != 0 && watcher.queued() => seen.extend(watcher.read()),
                _ => break,
            }
        }
        if seen.is_empty() {
            continue;
        }
        let share_of = |name: &str| server.share(name);
        lock(&server.notify).apply_disk(&seen, &share_of, &server.cfg.limits);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn watch(table: &mut NotifyTable, id: u64, dir: &[&str], recursive: bool, filter: u32) -> Arc<Mutex<Queue>> {
        let disk_dir: Vec<String> = dir.iter().map(|s| s.to_string()).collect();
        let w = Watch {
            open_id: id,
            share: "data".into(),
            dir: disk_dir.iter().map(|c| c.to_lowercase()).collect(),
            disk_dir,
            client: [0; 16],
            held: Vec::new(),
            recursive,
            filter,
            queue: Arc::new(Mutex::new(Queue { max_len: 4096, ..Default::default() })),
            wake: Arc::new(tokio::sync::Notify::new()),
        };
        let q = w.queue.clone();
        table.watches.push(w);
        q
    }

    fn entry(dir: &[&str], name: &str, mask: u32, cookie: u32, own: bool) -> Seen {
        Seen::Entry(Entry {
            share: "data".into(),
            dir: dir.iter().map(|s| s.to_string()).collect(),
            name: name.into(),
            mask,
            cookie,
            own,
        })
    }

    fn events(q: &Arc<Mutex<Queue>>) -> Vec<(u32, String)> {
        lock(q).events.clone()
    }

    fn apply(t: &mut NotifyTable, seen: &[Seen]) {
        t.apply_disk(seen, &|_| None, &crate::config::Limits::default());
    }

    #[test]
    fn a_move_pair_is_a_rename_in_one_directory_and_removed_added_across_two() {
        let mut t = NotifyTable::default();
        let q = watch(&mut t, 1, &[], true, filter::FILE_NAME);
        apply(
            &mut t,
            &[
                entry(&[], "a", libc::IN_MOVED_FROM, 7, false),
                entry(&[], "b", libc::IN_MOVED_TO, 7, false),
                entry(&[], "b", libc::IN_MOVED_FROM, 8, false),
                entry(&["Sub"], "b", libc::IN_MOVED_TO, 8, false),
                // Out of the watched tree, and in from outside it.
                entry(&["Sub"], "b", libc::IN_MOVED_FROM, 9, false),
                entry(&[], "c", libc::IN_MOVED_TO, 10, false),
            ],
        );
        let want: Vec<(u32, String)> = [
            (action::RENAMED_OLD_NAME, "a"),
            (action::RENAMED_NEW_NAME, "b"),
            (action::REMOVED, "b"),
            (action::ADDED, "Sub\\b"),
            (action::REMOVED, "Sub\\b"),
            (action::ADDED, "c"),
        ]
        .iter()
        .map(|(a, n)| (*a, n.to_string()))
        .collect();
        assert_eq!(events(&q), want);
    }

    #[test]
    fn duets_own_changes_and_filtered_ones_are_not_reported() {
        let mut t = NotifyTable::default();
        let files = watch(&mut t, 1, &[], false, filter::FILE_NAME);
        let dirs = watch(&mut t, 2, &[], false, filter::DIR_NAME | filter::LAST_WRITE);
        apply(
            &mut t,
            &[
                entry(&[], "mine", libc::IN_CREATE, 0, true),
                entry(&[], "mine", libc::IN_MOVED_FROM, 3, true),
                entry(&[], "mine2", libc::IN_MOVED_TO, 3, false),
                entry(&[], "f", libc::IN_CREATE, 0, false),
                entry(&[], "d", libc::IN_CREATE | libc::IN_ISDIR, 0, false),
                entry(&[], "f", libc::IN_MODIFY, 0, false),
                entry(&[], "f", libc::IN_MODIFY, 0, false),
                entry(&[], "f", libc::IN_ATTRIB, 0, true),
                // Below the directory of a watch that is not WATCH_TREE.
                entry(&["d"], "x", libc::IN_CREATE, 0, false),
            ],
        );
        assert_eq!(events(&files), vec![(action::ADDED, "f".to_string())]);
        // The two writes are one modification.
        assert_eq!(events(&dirs), vec![(action::ADDED, "d".to_string()), (action::MODIFIED, "f".to_string())]);
    }

    /// The kernel's queue overflowing ends every watch's next request
    /// with STATUS_NOTIFY_ENUM_DIR.
    #[test]
    fn an_inotify_overflow_reaches_every_watch() {
        let mut t = NotifyTable::default();
        let a = watch(&mut t, 1, &[], false, filter::FILE_NAME);
        let b = watch(&mut t, 2, &["x"], true, filter::ATTRIBUTES);
        apply(&mut t, &[entry(&[], "f", libc::IN_CREATE, 0, false), Seen::Overflow]);
        assert!(lock(&a).overflow);
        assert!(lock(&b).overflow);
    }
}
