//! The client connections of a share set served here (our own, or the
//! partner's while we hold it), kept where the partner can read them: the file
//! `conns-<set>` in the shared storage folder, one line `CLIENT SERVER` (both
//! `IP:PORT`) per open connection, replaced (write and rename) each time a
//! connection opens or closes. After a takeover the partner reads it ([`read`])
//! and sends each of these clients a tickle ACK ([`super::address`]).
//!
//! The file is first written when the set's first connection opens here, not
//! when the list is made: a node that starts in standby, or that takes a set
//! over, leaves the set's last owner's list alone until it has a connection of
//! its own (the taker reads that list before it binds the address). A list
//! stops being written when its set is released here ([`Conns::stop`]): the
//! connections closed then must not overwrite the list of the node that takes
//! the set next.
//!
//! The journal and the state model know sessions and opens, not the TCP
//! connections that carry them (a session may have several, and none while
//! it is retained), so the list is kept beside the ownership claims instead.
//! A frozen node's list is the one its kernel still holds connections for; a
//! killed node's connections were closed by its kernel, and tickling them is
//! harmless (the client's kernel has no such connection and resets it).

use std::collections::BTreeMap;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use takeover::SetId;
use tracing::warn;

/// The file that lists `set`'s connections in the storage folder.
pub fn path(storage: &Path, set: SetId) -> PathBuf {
    storage.join(format!("conns-{}", set.0))
}

/// The open connections of one set, mirrored to its file.
#[derive(Debug)]
pub struct Conns {
    path: PathBuf,
    live: Mutex<BTreeMap<u64, (SocketAddr, SocketAddr)>>,
    next: AtomicU64,
    /// A write failed and was logged (once).
    said: AtomicBool,
    /// The set was released here: the file is someone else's now.
    stopped: AtomicBool,
}

impl Conns {
    /// The connections of `set`, kept in `storage`; starts with none (the file
    /// is replaced at the first connection).
    pub fn new(storage: &Path, set: SetId) -> Arc<Conns> {
        let _ = std::fs::create_dir_all(storage);
        Arc::new(Conns {
            path: path(storage, set),
            live: Mutex::new(BTreeMap::new()),
            next: AtomicU64::new(1),
            said: AtomicBool::new(false),
            stopped: AtomicBool::new(false),
        })
    }

    /// The set was released here: the list is no longer written (its
    /// connections, closing now, are not ours to list any more).
    pub fn stop(&self) {
        let _g = self.live.lock().unwrap_or_else(|e| e.into_inner());
        self.stopped.store(true, Ordering::Release);
    }

    /// The set is served here again (given back): the list is written again
    /// from its next change on.
    pub fn resume(&self) {
        let _g = self.live.lock().unwrap_or_else(|e| e.into_inner());
        self.stopped.store(false, Ordering::Release);
    }

    /// Records an open connection from `client` to `server` until the returned
    /// guard drops.
    pub fn track(self: &Arc<Self>, client: SocketAddr, server: SocketAddr) -> Tracked {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let mut live = self.live.lock().unwrap_or_else(|e| e.into_inner());
        live.insert(id, (client, server));
        self.write(&live);
        Tracked { conns: self.clone(), id }
    }

    /// Replaces the file with `live` (called under the lock, so that the files
    /// follow each other in order).
    fn write(&self, live: &BTreeMap<u64, (SocketAddr, SocketAddr)>) {
        if self.stopped.load(Ordering::Acquire) {
            return;
        }
        let text: String = live.values().map(|(c, s)| format!("{c} {s}\n")).collect();
        let tmp = self.path.with_extension(format!("tmp.{}", std::process::id()));
        let r = std::fs::write(&tmp, text).and_then(|()| std::fs::rename(&tmp, &self.path));
        if let Err(e) = r {
            if !self.said.swap(true, Ordering::Relaxed) {
                warn!(path = %self.path.display(), "pair: cannot write the connection list (no tickle for these clients after a takeover): {e}");
            }
        }
    }
}

/// An open connection in its set's list.
#[derive(Debug)]
pub struct Tracked {
    conns: Arc<Conns>,
    id: u64,
}

impl Drop for Tracked {
    fn drop(&mut self) {
        let mut live = self.conns.live.lock().unwrap_or_else(|e| e.into_inner());
        live.remove(&self.id);
        self.conns.write(&live);
    }
}

/// The connections `set`'s file lists: `(client, server)`; none when there is
/// no file. Lines that do not parse are skipped.
pub fn read(storage: &Path, set: SetId) -> io::Result<Vec<(SocketAddr, SocketAddr)>> {
    let text = match std::fs::read_to_string(path(storage, set)) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    Ok(text
        .lines()
        .filter_map(|l| {
            let (c, s) = l.split_once(' ')?;
            Some((c.parse().ok()?, s.parse().ok()?))
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_file_lists_the_open_connections_only() {
        let dir = tempfile::tempdir().unwrap();
        let set = SetId(1);
        let server: SocketAddr = "127.0.0.11:445".parse().unwrap();
        let (c1, c2): (SocketAddr, SocketAddr) =
            ("127.0.0.100:40001".parse().unwrap(), "127.0.0.100:40002".parse().unwrap());
        let old = ("127.9.9.9:1".parse().unwrap(), server);
        std::fs::write(path(dir.path(), set), "127.9.9.9:1 127.0.0.11:445\n").unwrap();
        let conns = Conns::new(dir.path(), set);
        assert_eq!(read(dir.path(), set).unwrap(), vec![old], "the last owner's list stays until a connection");
        let t1 = conns.track(c1, server);
        let t2 = conns.track(c2, server);
        assert_eq!(read(dir.path(), set).unwrap(), vec![(c1, server), (c2, server)]);
        drop(t1);
        assert_eq!(read(dir.path(), set).unwrap(), vec![(c2, server)]);
        drop(t2);
        assert!(read(dir.path(), set).unwrap().is_empty());
        assert!(read(dir.path(), SetId(2)).unwrap().is_empty(), "no file: no connections");
    }

    /// A set released here leaves its list to the node that takes it next: the
    /// connections closing after the release do not rewrite it.
    #[test]
    fn a_stopped_list_is_no_longer_written() {
        let dir = tempfile::tempdir().unwrap();
        let set = SetId(1);
        let server: SocketAddr = "127.0.0.11:445".parse().unwrap();
        let c1: SocketAddr = "127.0.0.100:40001".parse().unwrap();
        let conns = Conns::new(dir.path(), set);
        let t1 = conns.track(c1, server);
        conns.stop();
        let theirs = "127.0.0.100:50000 127.0.0.11:445\n";
        std::fs::write(path(dir.path(), set), theirs).unwrap();
        drop(t1);
        let _t2 = conns.track("127.0.0.100:40002".parse().unwrap(), server);
        assert_eq!(std::fs::read_to_string(path(dir.path(), set)).unwrap(), theirs);
    }

    #[test]
    fn lines_that_do_not_parse_are_skipped() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(path(dir.path(), SetId(3)), "garbage\n127.0.0.100:1 127.0.0.12:445\nx y\n").unwrap();
        let got = read(dir.path(), SetId(3)).unwrap();
        assert_eq!(got, vec![("127.0.0.100:1".parse().unwrap(), "127.0.0.12:445".parse().unwrap())]);
    }
}
