//! Directory watches with inotify(7): change notify also sees what is
//! changed on the server's disk or through another protocol, and the marks
//! that keep what Duet changes itself out of it.
//!
//! # One source per change
//! Duet's own changes are reported by its own path (the CREATE, SET_INFO
//! and CLOSE handlers), which knows more than inotify can tell: the SMB
//! spelling, a stream, a write reported once at close. So an inotify event
//! that Duet caused is dropped here, and inotify is the source only of what
//! Duet did not do. Two kinds of marks tell them apart:
//!
//! - **Name marks** ([`Watcher::mark`]): a namespace change Duet makes
//!   (create, mkdir, unlink, rmdir, rename, link) marks its (directory,
//!   name) before the system call and, when the call returns, records the
//!   end of the kernel's queue at that moment (bytes read so far plus
//!   `FIONREAD`). An event on that name is Duet's if a marked call was in
//!   flight when it was read, or if it lies before the recorded end.
//! - **Inode marks** ([`Tracked`]): every [`super::Handle`] registers its
//!   inode while it lives, and records the end of the queue when the last
//!   one on an inode goes. A data or attribute event (`IN_MODIFY`,
//!   `IN_ATTRIB`) on a name whose inode Duet holds open, or that lies
//!   before the end recorded at its close, is Duet's: writes, truncation,
//!   times, DOS attributes, EAs, streams and the file id all go through a
//!   handle.
//!
//! The marks are exact for Duet's own calls. The price: a change another
//! process makes to a file while a client holds it open through Duet (or
//! to a name in the instant Duet changes the same name) is not reported.
//! smbd makes the same trade the other way round (with `kernel change
//! notify`, its own changes reach a watch only for the filter bits inotify
//! does not cover).
//!
//! # Bounds and confinement
//! At most `max_dirs` directories are watched per server (the caller caps
//! each client below that). A directory is watched through an fd opened
//! under the share root with `openat2` (`RESOLVE_BENEATH`, no symlinks),
//! named to the kernel as `/proc/self/fd/N`: a symlink, inside the share or
//! out, is never watched, and a subtree walk never follows one. A watched
//! directory moved out of the watched tree loses its watches
//! ([`Watcher::forget`]). The kernel's queue overflowing
//! (`IN_Q_OVERFLOW`) is [`Seen::Overflow`]: the watches answer
//! STATUS_NOTIFY_ENUM_DIR.

use std::collections::HashMap;
use std::ffi::CString;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use super::sys;

/// An inotify watch descriptor.
pub type Wd = i32;

/// A file's identity for the inode marks: (device, inode).
pub type InodeKey = (u64, u64);

/// What a directory watch asks the kernel for.
const WATCH_MASK: u32 = libc::IN_CREATE
    | libc::IN_DELETE
    | libc::IN_MOVED_FROM
    | libc::IN_MOVED_TO
    | libc::IN_MODIFY
    | libc::IN_ATTRIB
    | libc::IN_ONLYDIR
    | libc::IN_EXCL_UNLINK;

/// The size of `struct inotify_event` without its name.
const EVENT_HEADER: usize = 16;

/// What the kernel reported, in queue order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seen {
    /// The kernel's queue overflowed: changes were lost.
    Overflow,
    /// A change of an entry of a watched directory.
    Entry(Entry),
}

/// A change of the entry `name` of the watched directory `dir`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub share: String,
    /// The directory's components from the share root, as on disk.
    pub dir: Vec<String>,
    pub name: String,
    /// The inotify mask: one of `IN_CREATE`, `IN_DELETE`, `IN_MOVED_FROM`,
    /// `IN_MOVED_TO`, `IN_MODIFY`, `IN_ATTRIB`, with `IN_ISDIR` for a
    /// directory.
    pub mask: u32,
    /// Pairs an `IN_MOVED_FROM` with its `IN_MOVED_TO`.
    pub cookie: u32,
    /// Duet made this change itself, and its own path reports it: kept
    /// for the bookkeeping of watched directories only.
    pub own: bool,
}

impl Entry {
    pub fn is_dir(&self) -> bool {
        self.mask & libc::IN_ISDIR != 0
    }

    /// The entry's components from the share root.
    pub fn path(&self) -> Vec<String> {
        let mut p = self.dir.clone();
        p.push(self.name.clone());
        p
    }
}

/// Why a directory was not watched.
#[derive(Debug, PartialEq, Eq)]
pub enum AddError {
    /// The server's cap on watched directories is reached.
    Full,
    /// It is gone, not a directory, a symlink, or the kernel refused.
    Failed,
}

struct Dir {
    share: String,
    comps: Vec<String>,
    /// Watches (SMB ones) that hold it.
    refs: u32,
}

#[derive(Default)]
struct Inner {
    /// Bytes read from it so far: the queue position of the next event.
    consumed: u64,
    /// Every event before this position has been told Duet's or not: a
    /// mark that ends at or before it can cover nothing, and is not kept
    /// (so an idle queue keeps no marks).
    classified: u64,
    dirs: HashMap<Wd, Dir>,
    by_path: HashMap<(String, Vec<String>), Wd>,
    /// Share roots (`O_PATH`), to look up the entries events name.
    roots: HashMap<String, OwnedFd>,
    /// Name marks: Duet's namespace calls in flight, and where the queue
    /// ended when the last one returned.
    busy: HashMap<(Wd, String), u32>,
    done: HashMap<(Wd, String), u64>,
    /// Inode marks: handles Duet holds, and where the queue ended when the
    /// last one on an inode closed.
    open: HashMap<InodeKey, u32>,
    closed: HashMap<InodeKey, u64>,
}

impl Inner {
    fn drop_dir(&mut self, wd: Wd) {
        if let Some(d) = self.dirs.remove(&wd) {
            self.by_path.remove(&(d.share, d.comps));
        }
    }
}

/// One server's inotify instance, its watched directories and the marks.
pub struct Watcher {
    /// The inotify instance, made when the first watch is ([`Watcher::start`]).
    fd: std::sync::OnceLock<OwnedFd>,
    /// Some directory is watched (marks are kept only then).
    active: AtomicBool,
    inner: Mutex<Inner>,
    max_dirs: usize,
}

impl std::fmt::Debug for Watcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watcher").field("max_dirs", &self.max_dirs).finish_non_exhaustive()
    }
}

impl Watcher {
    /// A watcher that will watch at most `max_dirs` directories. No
    /// inotify instance is made until [`Watcher::start`].
    pub fn new(max_dirs: usize) -> Watcher {
        Watcher {
            fd: std::sync::OnceLock::new(),
            active: AtomicBool::new(false),
            inner: Mutex::new(Inner::default()),
            max_dirs,
        }
    }

    /// The queue position just past every event queued so far.
    fn end(&self, inner: &Inner) -> u64 {
        inner.consumed + self.fd.get().map_or(0, |fd| sys::bytes_queued(fd.as_fd()))
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Makes the inotify instance if there is none yet. True when this
    /// call made it: the caller then starts the reader.
    pub fn start(&self) -> std::io::Result<bool> {
        // Under the lock: two first watches at once make one instance.
        let _inner = self.lock();
        if self.fd.get().is_some() {
            return Ok(false);
        }
        let fd = sys::inotify_init()?;
        Ok(self.fd.set(fd).is_ok())
    }

    /// Waits up to `ms` milliseconds for events (false at once when not
    /// started).
    pub fn wait(&self, ms: i32) -> bool {
        self.fd.get().is_some_and(|fd| sys::wait_readable(fd.as_fd(), ms))
    }

    /// Events are queued and not yet read.
    pub fn queued(&self) -> bool {
        self.fd.get().is_some_and(|fd| sys::bytes_queued(fd.as_fd()) > 0)
    }

    pub fn is_started(&self) -> bool {
        self.fd.get().is_some()
    }

    /// Directories watched now.
    pub fn watched(&self) -> usize {
        self.lock().dirs.len()
    }

    /// Watches the directory `comps` of `share` (one more holder if it is
    /// watched already) and returns its descriptor.
    pub fn add_dir(&self, share: &super::Share, comps: &[String]) -> Result<Wd, AddError> {
        let mut inner = self.lock();
        let key = (share.name().to_owned(), comps.to_vec());
        if let Some(wd) = inner.by_path.get(&key).copied() {
            if let Some(d) = inner.dirs.get_mut(&wd) {
                d.refs += 1;
                return Ok(wd);
            }
        }
        if inner.dirs.len() >= self.max_dirs {
            return Err(AddError::Full);
        }
        let Some(ifd) = self.fd.get() else { return Err(AddError::Failed) };
        let rel = CString::new(if comps.is_empty() { ".".to_owned() } else { comps.join("/") })
            .map_err(|_| AddError::Failed)?;
        let dir = sys::openat2_beneath(share.root_fd(), &rel, libc::O_PATH | libc::O_DIRECTORY, 0)
            .map_err(|_| AddError::Failed)?;
        let wd = sys::inotify_add_watch(ifd.as_fd(), dir.as_fd(), WATCH_MASK).map_err(|_| AddError::Failed)?;
        if !inner.roots.contains_key(share.name()) {
            if let Ok(root) = share.root_fd().try_clone_to_owned() {
                inner.roots.insert(share.name().to_owned(), root);
            }
        }
        match inner.dirs.get_mut(&wd) {
            // The same directory under a path we had not caught up with
            // (a move whose events are still queued): the new path holds.
            Some(d) => {
                let old = (d.share.clone(), std::mem::replace(&mut d.comps, comps.to_vec()));
                d.refs += 1;
                inner.by_path.remove(&old);
            }
            None => {
                inner.dirs.insert(wd, Dir { share: key.0.clone(), comps: key.1.clone(), refs: 1 });
            }
        }
        inner.by_path.insert(key, wd);
        self.active.store(true, Ordering::Release);
        Ok(wd)
    }

    /// One holder of `wd` lets go; the last one ends the watch. An
    /// unknown `wd` (its directory went) is ignored.
    pub fn release(&self, wd: Wd) {
        let mut inner = self.lock();
        let Some(d) = inner.dirs.get_mut(&wd) else { return };
        d.refs = d.refs.saturating_sub(1);
        if d.refs > 0 {
            return;
        }
        if let Some(fd) = self.fd.get() {
            sys::inotify_rm_watch(fd.as_fd(), wd);
        }
        inner.drop_dir(wd);
        if inner.dirs.is_empty() {
            self.active.store(false, Ordering::Release);
            inner.busy.clear();
            inner.done.clear();
            inner.closed.clear();
        }
    }

    /// The watched directory `from` (and all below it) is now `to`.
    pub fn moved(&self, share: &str, from: &[String], to: &[String]) {
        let mut inner = self.lock();
        let hit: Vec<Wd> = inner
            .dirs
            .iter()
            .filter(|(_, d)| d.share == share && d.comps.starts_with(from))
            .map(|(wd, _)| *wd)
            .collect();
        for wd in hit {
            let Some(d) = inner.dirs.get_mut(&wd) else { continue };
            let mut comps = to.to_vec();
            comps.extend_from_slice(&d.comps[from.len()..]);
            let old = (d.share.clone(), std::mem::replace(&mut d.comps, comps.clone()));
            inner.by_path.remove(&old);
            inner.by_path.insert((share.to_owned(), comps), wd);
        }
    }

    /// The directory `under` (and all below it) left the watched tree,
    /// maybe the share: no longer watched, whoever held it.
    pub fn forget(&self, share: &str, under: &[String]) {
        let mut inner = self.lock();
        let hit: Vec<Wd> = inner
            .dirs
            .iter()
            .filter(|(_, d)| d.share == share && d.comps.starts_with(under))
            .map(|(wd, _)| *wd)
            .collect();
        for wd in hit {
            if let Some(fd) = self.fd.get() {
                sys::inotify_rm_watch(fd.as_fd(), wd);
            }
            inner.drop_dir(wd);
        }
        if inner.dirs.is_empty() {
            self.active.store(false, Ordering::Release);
        }
    }

    /// Marks the entry `name` of the directory `parent` of `share` as
    /// being changed by Duet until the mark drops (see the module doc).
    /// `None` when that directory is not watched.
    pub fn mark(&self, share: &str, parent: &[String], name: &str) -> Option<Mark<'_>> {
        if !self.active.load(Ordering::Acquire) {
            return None;
        }
        let mut inner = self.lock();
        let wd = *inner.by_path.get(&(share.to_owned(), parent.to_vec()))?;
        let key = (wd, name.to_owned());
        *inner.busy.entry(key.clone()).or_insert(0) += 1;
        Some(Mark { w: self, key })
    }

    /// A handle on `key` was opened.
    fn opened(&self, key: InodeKey) {
        *self.lock().open.entry(key).or_insert(0) += 1;
    }

    /// A handle on `key` was closed.
    fn closed(&self, key: InodeKey) {
        let mut inner = self.lock();
        let last = match inner.open.get_mut(&key) {
            Some(n) if *n > 1 => {
                *n -= 1;
                false
            }
            _ => true,
        };
        if last {
            inner.open.remove(&key);
            if self.active.load(Ordering::Acquire) {
                let end = self.end(&inner);
                if end > inner.classified {
                    inner.closed.insert(key, end);
                }
            }
        }
    }

    /// A registration of an open handle on `key` (see [`Tracked`]).
    pub(super) fn track(self: &Arc<Self>, key: InodeKey) -> Tracked {
        self.opened(key);
        Tracked { w: self.clone(), key }
    }

    /// Reads what the kernel has queued (nothing when nothing is: the
    /// fd does not block) and says, event by event, whether Duet made it.
    pub fn read(&self) -> Vec<Seen> {
        let mut buf = vec![0u8; 64 * 1024];
        let mut out = Vec::new();
        // (index into `out`, queue offset, share, dir path, name) of the
        // data and attribute events to look up by inode.
        let mut lookups = Vec::new();
        {
            let mut inner = self.lock();
            let Some(fd) = self.fd.get() else { return out };
            let n = match nix::unistd::read(fd.as_raw_fd(), &mut buf) {
                Ok(n) => n,
                Err(_) => return out,
            };
            let base = inner.consumed;
            inner.consumed += n as u64;
            for (off, wd, mask, cookie, name) in parse(&buf[..n]) {
                let off = base + off as u64;
                if mask & libc::IN_Q_OVERFLOW != 0 {
                    out.push(Seen::Overflow);
                    continue;
                }
                if mask & libc::IN_IGNORED != 0 {
                    inner.drop_dir(wd);
                    continue;
                }
                // Events on a watched directory itself (no name) say
                // nothing its parent's watch does not.
                let Some(name) = name else { continue };
                let Some(d) = inner.dirs.get(&wd) else { continue };
                let key = (wd, name.clone());
                let own = inner.busy.get(&key).is_some_and(|n| *n > 0)
                    || inner.done.get(&key).is_some_and(|end| *end > off);
                let entry = Entry { share: d.share.clone(), dir: d.comps.clone(), name, mask, cookie, own };
                if !own && mask & (libc::IN_MODIFY | libc::IN_ATTRIB) != 0 {
                    lookups.push((out.len(), off));
                }
                out.push(Seen::Entry(entry));
            }
        }
        if lookups.is_empty() {
            self.tidy();
            return out;
        }
        // Look the names up with no lock held (a few system calls).
        let keys: Vec<Option<InodeKey>> = lookups
            .iter()
            .map(|(i, _)| match &out[*i] {
                Seen::Entry(e) => self.inode_of(e),
                Seen::Overflow => None,
            })
            .collect();
        {
            let inner = self.lock();
            for ((i, off), key) in lookups.iter().zip(keys) {
                let Some(key) = key else { continue };
                let own = inner.open.contains_key(&key) || inner.closed.get(&key).is_some_and(|end| end > off);
                if let Seen::Entry(e) = &mut out[*i] {
                    e.own = own;
                }
            }
        }
        self.tidy();
        out
    }

    /// Drops the marks every event they could cover has been read past.
    fn tidy(&self) {
        let mut inner = self.lock();
        let consumed = inner.consumed;
        inner.classified = consumed;
        inner.done.retain(|_, end| *end > consumed);
        inner.closed.retain(|_, end| *end > consumed);
    }

    /// The (device, inode) of the entry an event names, symlinks not
    /// followed; `None` if it is gone.
    fn inode_of(&self, e: &Entry) -> Option<InodeKey> {
        let root = self.lock().roots.get(&e.share)?.try_clone().ok()?;
        let rel = CString::new(if e.dir.is_empty() { ".".to_owned() } else { e.dir.join("/") }).ok()?;
        let dir = sys::openat2_beneath(root.as_fd(), &rel, libc::O_PATH | libc::O_DIRECTORY, 0).ok()?;
        let name = CString::new(e.name.as_str()).ok()?;
        let st = sys::statx(dir.as_fd(), &name, libc::AT_SYMLINK_NOFOLLOW).ok()?;
        Some(key_of(&st))
    }
}

/// The inode key of a `statx` result.
pub(super) fn key_of(st: &libc::statx) -> InodeKey {
    (libc::makedev(st.stx_dev_major, st.stx_dev_minor), st.stx_ino)
}

/// The events in `buf`: (offset in `buf`, wd, mask, cookie, name). A torn
/// tail (which the kernel never hands out) is left out.
fn parse(buf: &[u8]) -> Vec<(usize, Wd, u32, u32, Option<String>)> {
    let mut out = Vec::new();
    let mut i = 0;
    while i + EVENT_HEADER <= buf.len() {
        let word = |k: usize| {
            let b = &buf[i + 4 * k..i + 4 * k + 4];
            u32::from_ne_bytes([b[0], b[1], b[2], b[3]])
        };
        let (wd, mask, cookie, len) = (word(0) as i32, word(1), word(2), word(3) as usize);
        let Some(raw) = buf.get(i + EVENT_HEADER..i + EVENT_HEADER + len) else { break };
        let raw = &raw[..raw.iter().position(|b| *b == 0).unwrap_or(raw.len())];
        // A name that is not UTF-8 cannot be sent to a client (nor is it
        // listed): the event is kept without it.
        let name = if len == 0 { None } else { std::str::from_utf8(raw).ok().map(str::to_owned) };
        if len == 0 || name.is_some() {
            out.push((i, wd, mask, cookie, name));
        }
        i += EVENT_HEADER + len;
    }
    out
}

/// A name mark ([`Watcher::mark`]): Duet's change of the entry is in
/// flight until this drops.
pub struct Mark<'a> {
    w: &'a Watcher,
    key: (Wd, String),
}

impl Drop for Mark<'_> {
    fn drop(&mut self) {
        let mut inner = self.w.lock();
        let end = self.w.end(&inner);
        if let Some(n) = inner.busy.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                inner.busy.remove(&self.key);
            }
        }
        if end > inner.classified {
            let e = inner.done.entry(self.key.clone()).or_insert(0);
            *e = (*e).max(end);
        }
    }
}

/// An inode mark: a [`super::Handle`]'s registration while it lives.
pub struct Tracked {
    w: Arc<Watcher>,
    key: InodeKey,
}

impl Tracked {
    /// A second registration of the same inode (a duplicated handle).
    pub(super) fn again(&self) -> Tracked {
        self.w.track(self.key)
    }
}

impl Drop for Tracked {
    fn drop(&mut self) {
        self.w.closed(self.key);
    }
}

impl std::fmt::Debug for Tracked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Tracked").field(&self.key).finish()
    }
}

/// The directories below `comps` of `share` (not `comps` itself), breadth
/// first, at most `max`; symlinks are never followed, and names that are
/// not UTF-8 are left out (no client could be told about them).
pub fn subdirs(share: &super::Share, comps: &[String], max: usize) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    let mut queue = std::collections::VecDeque::from([comps.to_vec()]);
    while let Some(dir) = queue.pop_front() {
        if out.len() >= max {
            break;
        }
        let Ok(rel) = CString::new(if dir.is_empty() { ".".to_owned() } else { dir.join("/") }) else { continue };
        let Ok(fd) = sys::openat2_beneath(share.root_fd(), &rel, libc::O_RDONLY | libc::O_DIRECTORY, 0) else {
            continue;
        };
        let Ok(mut d) = nix::dir::Dir::from(fd) else { continue };
        let dfd = d.as_raw_fd();
        let mut names = Vec::new();
        for entry in d.iter().flatten() {
            let Ok(name) = entry.file_name().to_str() else { continue };
            if name == "." || name == ".." {
                continue;
            }
            let is_dir = match entry.file_type() {
                Some(t) => t == nix::dir::Type::Directory,
                None => {
                    // No type in the entry: ask, relative to the listed
                    // directory, the name not followed.
                    nix::sys::stat::fstatat(Some(dfd), entry.file_name(), nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW)
                        .is_ok_and(|st| st.st_mode & libc::S_IFMT == libc::S_IFDIR)
                }
            };
            if is_dir {
                names.push(name.to_owned());
            }
        }
        for name in names {
            if out.len() >= max {
                break;
            }
            let mut p = dir.clone();
            p.push(name);
            out.push(p.clone());
            queue.push_back(p);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(wd: i32, mask: u32, cookie: u32, name: &str, pad: usize) -> Vec<u8> {
        let mut v = Vec::new();
        let len = if name.is_empty() { 0 } else { name.len() + pad };
        for w in [wd as u32, mask, cookie, len as u32] {
            v.extend_from_slice(&w.to_ne_bytes());
        }
        if len > 0 {
            v.extend_from_slice(name.as_bytes());
            v.resize(v.len() + pad, 0);
        }
        v
    }

    #[test]
    fn parses_events_with_their_offsets() {
        let mut buf = event(1, libc::IN_CREATE, 0, "a.txt", 11);
        let second = buf.len();
        buf.extend(event(2, libc::IN_Q_OVERFLOW, 0, "", 0));
        let third = buf.len();
        buf.extend(event(1, libc::IN_MOVED_TO, 7, "b", 15));
        let got = parse(&buf);
        assert_eq!(
            got,
            vec![
                (0, 1, libc::IN_CREATE, 0, Some("a.txt".into())),
                (second, 2, libc::IN_Q_OVERFLOW, 0, None),
                (third, 1, libc::IN_MOVED_TO, 7, Some("b".into())),
            ]
        );
    }

    #[test]
    fn a_torn_or_lying_event_is_left_out() {
        let mut buf = event(1, libc::IN_CREATE, 0, "a", 15);
        buf.truncate(buf.len() - 1);
        assert!(parse(&buf).is_empty());
        let mut buf = event(1, libc::IN_CREATE, 0, "a", 3);
        buf[12..16].copy_from_slice(&u32::MAX.to_ne_bytes());
        assert!(parse(&buf).is_empty());
    }
}
