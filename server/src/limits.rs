//! Bounded resources: what one client, or all of them, can make the
//! server hold. The limits come from the `[limits]` section of the
//! configuration ([`crate::config::Limits`]); this module counts what is in
//! use against them.
//!
//! - Connections, in all and per client address: counted from `accept`
//!   until the connection's task ends ([`ConnSlot`]). Over a limit the
//!   connection is closed at once.
//! - Sessions and opens, in all: counted for as long as the session or
//!   open object lives ([`SessionSlot`], [`OpenSlot`]), so every way one
//!   ends (CLOSE, LOGOFF, a lost connection, a durable handle's expiry)
//!   gives its place back.
//! - File descriptors: at start the soft `RLIMIT_NOFILE` is raised to the
//!   hard limit ([`raise_nofile`]). Connections and opens each hold one
//!   descriptor, so both limits are capped from it: connections to half of
//!   what is left after [`FD_RESERVE`], opens to the rest. Opens can then
//!   never use up the descriptors that `accept` needs to answer a new
//!   client. One session may hold at most half of the server's opens, so
//!   that a single client opening files until refused leaves room for the
//!   others.
//! - Reply bytes queued for the connections' writers, which
//!   [`crate::conn`] uses for back-pressure.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use protocol::NtStatus;

use crate::config::Limits;

/// Descriptors kept free beyond connections and opens: listeners, the
/// runtime's epoll and wakers, standard streams, the shares' root
/// directories, and the descriptors a path lookup or a directory listing
/// holds for a moment.
pub const FD_RESERVE: u64 = 256;

/// Raises the soft limit on open files to the hard limit and returns the
/// limit in force (the soft limit as it was when it cannot be raised).
pub fn raise_nofile() -> u64 {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) else {
        return 1024;
    };
    if soft >= hard {
        tracing::info!(limit = soft, "open files limit");
        return soft;
    }
    match setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
        Ok(()) => {
            tracing::info!(from = soft, to = hard, "open files limit raised to the hard limit");
            hard
        }
        Err(e) => {
            tracing::warn!(limit = soft, hard, "cannot raise the open files limit: {e}");
            soft
        }
    }
}

/// The soft limit on open files now.
pub fn nofile() -> u64 {
    nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE).map_or(1024, |(soft, _)| soft)
}

/// Why a new connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("too many connections ({0})")]
    Total(usize),
    #[error("too many connections from this address ({0})")]
    FromAddress(usize),
}

/// The counters, shared with the slots that give their places back.
#[derive(Default)]
struct Counters {
    conns: Mutex<ConnTable>,
    sessions: AtomicUsize,
    opens: AtomicUsize,
    /// Reply bytes queued for the writers of all connections.
    queued: AtomicUsize,
}

#[derive(Default)]
struct ConnTable {
    total: usize,
    by_address: HashMap<AddrKey, usize>,
}

/// A client address as the per-address limit counts it: an IPv4 address,
/// or the /64 prefix of an IPv6 one (a host usually has a /64 to itself).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AddrKey(IpAddr);

impl AddrKey {
    pub fn of(ip: IpAddr) -> AddrKey {
        match ip {
            IpAddr::V4(_) => AddrKey(ip),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => AddrKey(IpAddr::V4(v4)),
                None => AddrKey(IpAddr::V6((u128::from(v6) & !0xFFFF_FFFF_FFFF_FFFF).into())),
            },
        }
    }
}

/// The server's resource accounting.
pub struct Resources {
    limits: Limits,
    /// `limits.max_connections`, capped by the descriptor limit.
    max_connections: usize,
    /// `limits.max_opens`, capped by the descriptor limit.
    max_opens: usize,
    /// `limits.max_opens_per_session`, at most half of `max_opens`.
    max_opens_per_session: usize,
    counters: Arc<Counters>,
}

impl Resources {
    /// Accounting under `limits`, with `nofile` descriptors to spend.
    pub fn new(limits: &Limits, nofile: u64) -> Resources {
        let spare = usize::try_from(nofile.saturating_sub(FD_RESERVE)).unwrap_or(usize::MAX);
        let max_connections = limits.max_connections.min(spare / 2).max(1);
        let max_opens = limits.max_opens.min(spare.saturating_sub(max_connections)).max(1);
        if max_connections < limits.max_connections || max_opens < limits.max_opens {
            tracing::warn!(
                nofile,
                max_connections,
                max_opens,
                "the open files limit caps the connections and opens below the configured limits"
            );
        }
        let max_opens_per_session = limits.max_opens_per_session.min(max_opens / 2).max(1);
        tracing::info!(max_connections, max_opens, max_opens_per_session, "resource limits");
        Resources {
            limits: limits.clone(),
            max_connections,
            max_opens,
            max_opens_per_session,
            counters: Arc::default(),
        }
    }

    /// Connections allowed in all.
    pub fn max_connections(&self) -> usize {
        self.max_connections
    }

    /// Opens allowed in all.
    pub fn max_opens(&self) -> usize {
        self.max_opens
    }

    /// Opens allowed in one session.
    pub fn max_opens_per_session(&self) -> usize {
        self.max_opens_per_session
    }

    /// Takes a place for a new connection from `ip`.
    pub fn admit(&self, ip: IpAddr) -> Result<ConnSlot, Refused> {
        let key = AddrKey::of(ip);
        let mut t = self.counters.conns.lock().unwrap_or_else(|p| p.into_inner());
        if t.total >= self.max_connections {
            return Err(Refused::Total(self.max_connections));
        }
        let n = t.by_address.entry(key).or_insert(0);
        if *n >= self.limits.max_connections_per_address {
            return Err(Refused::FromAddress(self.limits.max_connections_per_address));
        }
        *n += 1;
        t.total += 1;
        Ok(ConnSlot { counters: self.counters.clone(), key })
    }

    /// Connections open now, in all and from `ip`.
    pub fn connections(&self, ip: IpAddr) -> (usize, usize) {
        let t = self.counters.conns.lock().unwrap_or_else(|p| p.into_inner());
        (t.total, t.by_address.get(&AddrKey::of(ip)).copied().unwrap_or(0))
    }

    /// Takes a place for a new session: STATUS_INSUFFICIENT_RESOURCES when
    /// the server has `max_sessions` (as Samba answers when its session
    /// table is full).
    pub fn session_slot(&self) -> Result<SessionSlot, NtStatus> {
        take(&self.counters.sessions, self.limits.max_sessions).ok_or(NtStatus::INSUFFICIENT_RESOURCES)?;
        Ok(SessionSlot { counters: self.counters.clone() })
    }

    /// Takes a place for a new open in a session that holds
    /// `session_opens`: STATUS_INSUFFICIENT_RESOURCES over the per-session
    /// or the server's limit (Samba and Windows answer so when their open
    /// tables are full).
    pub fn open_slot(&self, session_opens: usize) -> Result<OpenSlot, NtStatus> {
        if session_opens >= self.max_opens_per_session {
            return Err(NtStatus::INSUFFICIENT_RESOURCES);
        }
        take(&self.counters.opens, self.max_opens).ok_or(NtStatus::INSUFFICIENT_RESOURCES)?;
        Ok(OpenSlot { counters: self.counters.clone() })
    }

    /// A place for an open that exists already and takes a new form (a
    /// durable handle reclaimed): counted, never refused.
    pub fn open_slot_unchecked(&self) -> OpenSlot {
        self.counters.opens.fetch_add(1, Ordering::Relaxed);
        OpenSlot { counters: self.counters.clone() }
    }

    /// Sessions and opens alive now.
    pub fn in_use(&self) -> (usize, usize) {
        (self.counters.sessions.load(Ordering::Relaxed), self.counters.opens.load(Ordering::Relaxed))
    }

    /// A meter of one connection's queued reply bytes.
    pub fn reply_meter(&self) -> ReplyMeter {
        ReplyMeter {
            counters: self.counters.clone(),
            mine: AtomicUsize::new(0),
            limit: self.limits.reply_queue_mib << 20,
            total_limit: self.limits.reply_queue_total_mib << 20,
        }
    }
}

/// Adds one to `n` unless it has reached `max`.
fn take(n: &AtomicUsize, max: usize) -> Option<()> {
    n.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| (v < max).then_some(v + 1)).ok().map(|_| ())
}

/// A connection's place; given back on drop.
pub struct ConnSlot {
    counters: Arc<Counters>,
    key: AddrKey,
}

impl Drop for ConnSlot {
    fn drop(&mut self) {
        let mut t = self.counters.conns.lock().unwrap_or_else(|p| p.into_inner());
        t.total = t.total.saturating_sub(1);
        if let Some(n) = t.by_address.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                t.by_address.remove(&self.key);
            }
        }
    }
}

/// A session's place; given back when the session object goes.
pub struct SessionSlot {
    counters: Arc<Counters>,
}

impl Drop for SessionSlot {
    fn drop(&mut self) {
        self.counters.sessions.fetch_sub(1, Ordering::Relaxed);
    }
}

/// An open's place; given back when the open object (and with it its
/// file descriptor) goes.
pub struct OpenSlot {
    counters: Arc<Counters>,
}

impl Drop for OpenSlot {
    fn drop(&mut self) {
        self.counters.opens.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The reply bytes queued for one connection's writer, counted also in the
/// server's total.
pub struct ReplyMeter {
    counters: Arc<Counters>,
    mine: AtomicUsize,
    limit: usize,
    total_limit: usize,
}

impl ReplyMeter {
    pub fn add(&self, n: usize) {
        self.mine.fetch_add(n, Ordering::Relaxed);
        self.counters.queued.fetch_add(n, Ordering::Relaxed);
    }

    pub fn sub(&self, n: usize) {
        self.mine.fetch_sub(n, Ordering::Relaxed);
        self.counters.queued.fetch_sub(n, Ordering::Relaxed);
    }

    /// Bytes queued for this connection.
    pub fn queued(&self) -> usize {
        self.mine.load(Ordering::Relaxed)
    }

    /// May the connection read another request? Not while its own queue
    /// is over the limit, nor while the server's is and it has replies of
    /// its own still queued (a connection with none always may, so a
    /// client that reads its replies is never held up by one that does
    /// not).
    pub fn has_room(&self) -> bool {
        let mine = self.queued();
        mine <= self.limit && (mine == 0 || self.counters.queued.load(Ordering::Relaxed) <= self.total_limit)
    }
}

impl Drop for ReplyMeter {
    fn drop(&mut self) {
        let mine = *self.mine.get_mut();
        self.counters.queued.fetch_sub(mine, Ordering::Relaxed);
    }
}

/// What the connections' writers have sent from files, server-wide
/// ([`crate::transport::FileRegion`]; `duet status`).
#[derive(Default)]
pub struct SendStats {
    /// File regions sent whole.
    pub regions: AtomicU64,
    /// Their bytes sent with `sendfile`.
    pub sendfile_bytes: AtomicU64,
    /// Their bytes read and written instead (no `sendfile` on the stream or
    /// the file system).
    pub copied_bytes: AtomicU64,
}

/// Most WRITEs whose data moves from the socket into the file at once,
/// server-wide. Each holds a blocking thread while its client sends the
/// data (for as long as the frame time-out, if it trickles); past this
/// many, a WRITE's data is read into memory as any other's, so that slow
/// clients cannot take the blocking threads file I/O needs.
pub const MAX_SPLICING: usize = 16;

/// What WRITEs took from their sockets straight into their files
/// ([`crate::transport::WriteHead`]), shared by the server's connections.
#[derive(Debug, Default)]
pub struct RecvStats {
    /// WRITEs whose data was moved so, whole.
    pub writes: AtomicU64,
    /// Their bytes moved with `splice`.
    pub spliced_bytes: AtomicU64,
    /// Their bytes read and written instead (no `splice` on the socket or
    /// the file system).
    pub copied_bytes: AtomicU64,
    /// Their bytes the connection had read already with the WRITE's head,
    /// written from memory.
    pub buffered_bytes: AtomicU64,
    /// WRITEs whose data stopped part-way (the client went, or the file
    /// refused it): their connections closed unanswered.
    pub cut: AtomicU64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits {
            max_connections: 3,
            max_connections_per_address: 2,
            max_sessions: 2,
            max_opens: 4,
            max_opens_per_session: 3,
            ..Limits::default()
        }
    }

    #[test]
    fn connections_per_address_and_in_all_are_given_back() {
        let r = Resources::new(&limits(), 100_000);
        let a: IpAddr = "127.0.0.1".parse().unwrap();
        let b: IpAddr = "127.0.0.2".parse().unwrap();
        let c: IpAddr = "127.0.0.3".parse().unwrap();
        let a1 = r.admit(a).unwrap();
        let a2 = r.admit(a).unwrap();
        assert_eq!(r.admit(a).err(), Some(Refused::FromAddress(2)));
        let b1 = r.admit(b).unwrap();
        assert_eq!(r.admit(c).err(), Some(Refused::Total(3)));
        assert_eq!(r.connections(a), (3, 2));
        drop(a1);
        assert_eq!(r.connections(a), (2, 1));
        let a3 = r.admit(a).unwrap();
        drop((a2, a3, b1));
        assert_eq!(r.connections(a), (0, 0));
        assert!(r.counters.conns.lock().unwrap().by_address.is_empty(), "no entry left for gone addresses");
    }

    #[test]
    fn ipv6_counts_by_prefix_and_mapped_ipv4_as_ipv4() {
        let x: IpAddr = "2001:db8::1".parse().unwrap();
        let y: IpAddr = "2001:db8::ffff:2".parse().unwrap();
        let z: IpAddr = "2001:db8:0:1::1".parse().unwrap();
        assert_eq!(AddrKey::of(x), AddrKey::of(y));
        assert_ne!(AddrKey::of(x), AddrKey::of(z));
        let m: IpAddr = "::ffff:127.0.0.1".parse().unwrap();
        assert_eq!(AddrKey::of(m), AddrKey::of("127.0.0.1".parse().unwrap()));
    }

    #[test]
    fn opens_per_session_and_in_all() {
        let r = Resources::new(&limits(), 100_000);
        // 3 configured, but no session may hold more than half of the 4.
        assert_eq!(r.max_opens_per_session(), 2);
        assert_eq!(r.open_slot(2).err(), Some(NtStatus::INSUFFICIENT_RESOURCES));
        let o1 = r.open_slot(0).unwrap();
        let o2 = r.open_slot(1).unwrap();
        let o3 = r.open_slot(0).unwrap();
        let o4 = r.open_slot(1).unwrap();
        assert_eq!(r.open_slot(0).err(), Some(NtStatus::INSUFFICIENT_RESOURCES));
        let forced = r.open_slot_unchecked();
        assert_eq!(r.in_use().1, 5);
        drop((o1, o2, o3, o4, forced));
        assert_eq!(r.in_use().1, 0);
        let s1 = r.session_slot().unwrap();
        let _s2 = r.session_slot().unwrap();
        assert!(r.session_slot().is_err());
        drop(s1);
        assert!(r.session_slot().is_ok());
    }

    #[test]
    fn descriptor_limit_caps_connections_and_opens() {
        let l = Limits::default();
        let r = Resources::new(&l, 1 << 20);
        assert_eq!((r.max_connections(), r.max_opens()), (l.max_connections, l.max_opens));
        assert_eq!(r.max_opens_per_session(), l.max_opens_per_session);
        // 1024 descriptors: 768 to spend, half to connections at most.
        let r = Resources::new(&l, 1024);
        assert_eq!((r.max_connections(), r.max_opens()), (384, 384));
        let r = Resources::new(&l, 20_000);
        assert_eq!(r.max_connections(), 4096);
        assert_eq!(r.max_opens(), 20_000 - 256 - 4096);
        assert_eq!(r.max_opens_per_session(), (20_000 - 256 - 4096) / 2);
        let r = Resources::new(&l, 10);
        assert!(r.max_connections() >= 1 && r.max_opens() >= 1);
    }

    #[test]
    fn reply_meter_room() {
        let l = Limits { reply_queue_mib: 1, reply_queue_total_mib: 2, ..Limits::default() };
        let r = Resources::new(&l, 1 << 20);
        let a = r.reply_meter();
        let b = r.reply_meter();
        assert!(a.has_room());
        a.add(1 << 20);
        assert!(a.has_room(), "at the limit is not over it");
        a.add(1);
        assert!(!a.has_room());
        a.sub(1);
        b.add(3 << 20);
        assert!(!b.has_room());
        assert!(!a.has_room(), "over the total, with replies of its own queued");
        let c = r.reply_meter();
        assert!(c.has_room(), "a connection with nothing queued may always read");
        drop(b);
        assert!(a.has_room());
        assert_eq!(r.counters.queued.load(Ordering::Relaxed), 1 << 20);
    }
}
