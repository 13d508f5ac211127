//! Case-insensitive lookup of a name in a directory.
//!
//! A small directory is scanned on every miss. A large one (at least
//! [`MIN_INDEXED`] entries) gets an index, folded name to on-disk name, that
//! stays valid while the directory's stamp (inode, mtime, ctime, size) is
//! unchanged. Duet's own creates and deletes update the index in place (the
//! stamp is read just before and just after the change), so a client that
//! creates 10,000 files in one directory does not rescan it each time.
//!
//! Limit: a change made by another process between those two stamp reads,
//! or within one timestamp tick of a stamp on kernels without fine-grained
//! timestamps, is missed until the directory changes again. The only effect
//! is a case-mismatched lookup of that one name failing to find it; an index
//! hit is always confirmed with `statx`.

use std::collections::HashMap;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::sync::Mutex;

use nix::dir::Dir;
use nix::fcntl::OFlag;
use nix::sys::stat::Mode;

use super::wildcard::fold;
use super::{short_name, sys, FsError};

/// Directories smaller than this are scanned, not indexed.
pub(crate) const MIN_INDEXED: usize = 256;
/// At most this many directories are indexed at once (all dropped beyond).
const MAX_DIRS: usize = 256;

/// The identity and version of a directory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Stamp {
    key: (u32, u32, u64),
    mtime: (i64, u32),
    ctime: (i64, u32),
    size: u64,
}

/// Reads `dir`'s stamp.
pub(crate) fn stamp(dir: BorrowedFd<'_>) -> Option<Stamp> {
    let st = sys::statx(dir, c"", libc::AT_EMPTY_PATH).ok()?;
    Some(Stamp {
        key: (st.stx_dev_major, st.stx_dev_minor, st.stx_ino),
        mtime: (st.stx_mtime.tv_sec, st.stx_mtime.tv_nsec),
        ctime: (st.stx_ctime.tv_sec, st.stx_ctime.tv_nsec),
        size: st.stx_size,
    })
}

/// The case-folded form of a name (simple upper-case per character).
pub(crate) fn fold_name(name: &str) -> String {
    name.chars().map(fold).collect()
}

fn same_folded(a: &str, b: &str) -> bool {
    if a.is_ascii() && b.is_ascii() {
        return a.eq_ignore_ascii_case(b);
    }
    a.chars().map(fold).eq(b.chars().map(fold))
}

struct DirIndex {
    stamp: Stamp,
    /// Folded name to (bytewise smallest on-disk name, number of names with that fold).
    names: HashMap<String, (String, u32)>,
}

impl DirIndex {
    fn add(&mut self, name: &str) {
        let e = self.names.entry(fold_name(name)).or_insert_with(|| (name.to_owned(), 0));
        if name.as_bytes() < e.0.as_bytes() {
            e.0 = name.to_owned();
        }
        e.1 += 1;
    }

    /// Removes `name`; false when the index can no longer tell the answer.
    fn remove(&mut self, name: &str) -> bool {
        let folded = fold_name(name);
        match self.names.get_mut(&folded) {
            None => true,
            Some(e) if e.0 == name && e.1 <= 1 => {
                self.names.remove(&folded);
                true
            }
            Some(e) if e.0 != name && e.1 > 1 => {
                e.1 -= 1;
                true
            }
            Some(_) => false,
        }
    }
}

/// The per-share cache of directory indexes.
#[derive(Default)]
pub(crate) struct NameCache {
    dirs: Mutex<HashMap<(u32, u32, u64), DirIndex>>,
}

impl std::fmt::Debug for NameCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NameCache").field("dirs", &self.lock().len()).finish()
    }
}

/// Every UTF-8 name in `dir` except `.` and `..`.
fn scan(dir: BorrowedFd<'_>) -> Result<Vec<String>, FsError> {
    let mut d =
        Dir::openat(Some(dir.as_raw_fd()), ".", OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty())?;
    let mut out = Vec::new();
    for entry in d.iter() {
        let entry = entry?;
        let Ok(name) = entry.file_name().to_str() else { continue };
        if name != "." && name != ".." {
            out.push(name.to_owned());
        }
    }
    Ok(out)
}

impl NameCache {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(u32, u32, u64), DirIndex>> {
        self.dirs.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The on-disk name in `dir` equal to `comp` ignoring case (ties: the
    /// bytewise smallest), or else the one whose 8.3 name is `comp`.
    pub(crate) fn find(&self, dir: BorrowedFd<'_>, comp: &str) -> Result<Option<String>, FsError> {
        let pre = stamp(dir);
        if let Some(pre) = pre {
            if let Some(idx) = self.lock().get(&pre.key) {
                if idx.stamp == pre {
                    if let Some((name, _)) = idx.names.get(&fold_name(comp)) {
                        return Ok(Some(name.clone()));
                    }
                    return self.by_short_name(dir, comp, None);
                }
            }
        }
        let names = scan(dir)?;
        let mut best: Option<&String> = None;
        for name in &names {
            if same_folded(name, comp) && best.into_iter().all(|b| name.as_bytes() < b.as_bytes()) {
                best = Some(name);
            }
        }
        let found = best.cloned();
        if let (Some(pre), true) = (pre, names.len() >= MIN_INDEXED) {
            let mut idx = DirIndex { stamp: pre, names: HashMap::with_capacity(names.len()) };
            for name in &names {
                idx.add(name);
            }
            let mut dirs = self.lock();
            if dirs.len() >= MAX_DIRS {
                dirs.clear();
            }
            dirs.insert(pre.key, idx);
        }
        match found {
            Some(f) => Ok(Some(f)),
            None => self.by_short_name(dir, comp, Some(names)),
        }
    }

    fn by_short_name(&self, dir: BorrowedFd<'_>, comp: &str, names: Option<Vec<String>>) -> Result<Option<String>, FsError> {
        if !super::shortname::looks_mangled(comp) {
            return Ok(None);
        }
        let names = match names {
            Some(n) => n,
            None => scan(dir)?,
        };
        // A name a client could not send (the sidecar area's,
        // `super::spill::DIR`, among them) is not reached by an 8.3 name
        // either: it is not listed, so its 8.3 name is never given out.
        Ok(names
            .into_iter()
            .filter(|n| super::path::check_component(n).is_ok())
            .find(|n| short_name(n).eq_ignore_ascii_case(comp)))
    }

    /// Records a change Duet itself made in `dir`: `pre` is the stamp read
    /// just before it. The index is updated when it was current, else dropped.
    pub(crate) fn changed(&self, dir: BorrowedFd<'_>, pre: Option<Stamp>, added: Option<&str>, removed: Option<&str>) {
        let post = stamp(dir);
        let mut dirs = self.lock();
        let Some(key) = post.or(pre).map(|s| s.key) else { return };
        let Some(idx) = dirs.get_mut(&key) else { return };
        let (Some(pre), Some(post)) = (pre, post) else {
            dirs.remove(&key);
            return;
        };
        if idx.stamp != pre || removed.is_some_and(|r| !idx.remove(r)) {
            dirs.remove(&key);
            return;
        }
        if let Some(a) = added {
            idx.add(a);
        }
        idx.stamp = post;
    }

    /// Forgets `dir`'s index (after a change the index cannot follow).
    pub(crate) fn forget(&self, dir: BorrowedFd<'_>) {
        if let Some(s) = stamp(dir) {
            self.lock().remove(&s.key);
        }
    }

    #[cfg(test)]
    pub(crate) fn indexed(&self) -> usize {
        self.lock().len()
    }
}
