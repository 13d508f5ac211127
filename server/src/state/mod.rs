//! The server's long-lived state.
//!
//! Sessions live in a server-wide table (a session can be reached from a
//! new connection on reconnect); trees and opens belong to their session.
//! A session's and a tree connect's long-lived fields are the state
//! model's; the runtime [`Session`] and [`Tree`] are handles made from its
//! records (see "Sessions and tree connects" in [`record`]).
//! The per-file table ([`files::FileTable`]) is server-wide: which opens
//! each file has, whichever connection made them, and where their break
//! notices go. Byte-range locks and lock sequences are the state model's
//! alone ([`byte_locks`]), and so are oplock levels and leases: the table
//! decides breaks and grants from the model's records and changes them
//! there ([`files::CachingModel`]).
//!
//! # Lock order
//!
//! The runtime state sits behind `std::sync::Mutex`es, taken with
//! [`lock`]. While holding one, take only locks ranked below it; never two
//! of one rank at once (two sessions' `inner`, two opens' `st`):
//!
//! 1. `Session.inner`: a session's runtime handle: its auth exchange,
//!    prepared keys, channels, its copy of the model's record, and the
//!    handles of its trees and opens.
//! 2. `Server.durable`: the retained (disconnected) durable opens.
//! 3. `Open.writing`: one WRITE per open at a time.
//! 4. `Open.st`: an open's mutable part.
//! 5. `Server.files`: the per-file table. Oplock and lease break notices
//!    are made and queued (as plain data, [`oplock::Notice`]) under it,
//!    and the model's lock with it; the holder's connection encodes and
//!    sends them later, with no lock of the table held.
//! 6. `Server.notify`, then a watch's queue (`notify::Watch.queue`).
//! 7. `Server.recorder` (the state model). [`Server::apply`] holds it for
//!    a whole batch of deltas, and is called with no other lock held; so
//!    is [`Server::with_model`], which reads it (a replayed CREATE's
//!    CreateGuid, an AppInstanceId), and so are [`Server::read_open`] and
//!    [`Server::change_open`], which read and change an open's long-lived
//!    fields ([`fields`]: its ChannelSequence on every SMB 3.x request
//!    that names it, its delete-on-close at CLOSE), and so are
//!    [`Server::change_model`] and [`Server::io_conflict`], which take,
//!    release and check byte-range locks ([`byte_locks`]: a LOCK; a READ
//!    or WRITE only while the model holds a lock at all, and then under
//!    its ChannelSequence check's hold on SMB 3.x, before a WRITE takes
//!    the per-file table's lock for its level II breaks, never under it).
//!    It is taken under `Server.files` by [`record::FilesGuard::caching`],
//!    where oplock levels and leases are read and changed (a CREATE's
//!    grants, breaks and share-mode and delete-pending check, one hold for
//!    all; a WRITE's, LOCK's or SET_INFO's breaks; an acknowledgement; a
//!    time-out; a close's lease end; a directory lease's break, which reads
//!    the directory's path there), and to read what only the model keeps
//!    of files ([`file_fields`]: a CLOSE's delete-pending, a rename's share
//!    check of the target's directory). The journal's own locks are taken
//!    under it (point 3, a state change, a checkpoint), and nothing else:
//!    never `Server.files`. [`Server::apply`] and [`Server::point3`] take
//!    `Server.files`, then the model's lock, after they let go of the
//!    model's, to end the leases whose last opens their `OpenDown`s took
//!    out ([`files::FileTable::end_leases`]).
//!
//! Leaves, under which nothing is taken, may be taken under any of these:
//! `Server.sessions`, `Server.logins`, `Server.creating`, `ConnState.pending`, a pipe's
//! `Mutex<Pipe>` (`OpenKind::Pipe`), `limits::Counters.conns`, a share's
//! name cache (`fs::names::NameCache.dirs`), the inotify watcher's state
//! (`fs::watch::Watcher.inner`: taken by the file system's calls under
//! whatever their caller holds, and under `Server.notify` by the watches;
//! the reader thread holds nothing else while it reads).
//!
//! The nestings in use: `Session.inner` → `Open.st` (a new open's delta,
//! [`deltas::open_up`]); `Session.inner` → `Server.recorder` (a session's
//! and its tree connects' handles made anew from the model's records
//! after a batch is applied, `Server::refresh_handles` in [`record`]);
//! `Server.durable` → `Server.files` and `Open.st` (the check of a
//! reconnect, [`durable::reclaim`]); `Server.files` → `Server.recorder`
//! (oplocks and leases through [`record::FilesGuard::caching`], a
//! share-mode or delete-pending check, [`file_fields`]); `Open.writing` →
//! `Server.files` and `Open.st` (a write and its write time); `Open.st` →
//! `Server.files` (QUERY_DIRECTORY); `Server.notify` → `Watch.queue`.
//! Every other guard is dropped before the next lock is taken.
//!
//! No guard is held across an `.await` (`clippy::await_holding_lock` is
//! denied in `lib.rs`). A task that waits on a `tokio::sync::Notify`
//! (`Server.lock_released`, `Server.oplock_changed`, a watch's `wake`)
//! enables its `Notified` first, checks under the lock, drops the guard and
//! then awaits (`Server.deadlines` needs no such care: its `notify_one`
//! keeps a permit). Notifying never blocks, so it may happen under any lock.

pub mod byte_locks;
pub mod clients;
pub mod close;
pub mod deltas;
pub mod durable;
pub mod fields;
pub mod file_fields;
pub mod files;
pub mod id_alloc;
pub mod lease;
pub mod notify;
pub mod open;
pub mod oplock;
pub mod record;
pub mod retiring;
pub mod session;
pub mod throttle;
pub mod tree;
pub mod write_time;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use crate::config::{Config, ShareConfig};
use crate::error::RunError;
use crate::fs;
use crate::users::Users;

pub use open::Open;
pub use session::Session;
pub use tree::Tree;

/// A configured share with its confined file system.
pub struct ShareEntry {
    pub cfg: ShareConfig,
    pub fs: fs::Share,
}

/// Everything the server knows, shared by all connections.
pub struct Server {
    pub cfg: Config,
    pub users: Users,
    pub shares: Vec<Arc<ShareEntry>>,
    pub guid: [u8; 16],
    /// FILETIME of the server start.
    pub start_time: u64,
    pub sessions: Mutex<HashMap<u64, Arc<Session>>>,
    pub files: Mutex<files::FileTable>,
    /// Durable opens whose connection is gone, by persistent id, for
    /// reconnect.
    pub durable: Mutex<HashMap<u64, durable::Disconnected>>,
    /// DH2Q CREATEs being carried out, by (ClientGuid, CreateGuid): a
    /// replay of one meanwhile is STATUS_FILE_NOT_AVAILABLE ([MS-SMB2]
    /// 3.3.5.9.10). Held for no more than a table lookup.
    pub creating: Mutex<std::collections::HashSet<([u8; 16], [u8; 16])>>,
    /// Change-notify watches.
    pub notify: Mutex<notify::NotifyTable>,
    /// The directories watched with inotify for change notify, and the
    /// marks that keep Duet's own changes out of them ([`fs::watch`]).
    pub watcher: Arc<fs::watch::Watcher>,
    /// Woken whenever a byte-range lock goes from the state model, or an
    /// open leaves it ([`byte_locks`]).
    pub lock_released: tokio::sync::Notify,
    /// How many byte-range locks the state model holds, kept by the
    /// recorder under the model's lock: while none, a READ or WRITE takes
    /// no lock to check for a conflict ([`byte_locks`]).
    byte_locks: AtomicUsize,
    /// Woken whenever an oplock break ends (acknowledged, or the holder
    /// closed).
    pub oplock_changed: tokio::sync::Notify,
    /// The consistency-point hook.
    pub journal: Arc<dyn crate::journal::Journal>,
    /// Session, file and async ids, unique across restarts ([`id_alloc`]).
    ids: id_alloc::IdAlloc,
    /// Connections, sessions, opens and queued replies, counted against
    /// the configured limits.
    pub resources: crate::limits::Resources,
    next_conn: AtomicU64,
    /// Failed logons by client address ([`throttle`]).
    pub logins: Mutex<throttle::LoginThrottle>,
    /// The state model and what records into it ([`record`]).
    recorder: Mutex<record::Recorder>,
    /// Check mode is on ([`record`]).
    checking: bool,
    /// The share set this node's state is recorded under (0 until the pair).
    set: ::ids::SetId,
    /// Requests being carried out ([`record::InFlight`]).
    pub in_flight: record::InFlight,
    /// Woken when the state model records a new deadline (a retained
    /// handle), for [`durable::scavenger`].
    pub deadlines: tokio::sync::Notify,
    /// Finished operations on their way to being retired from the journal
    /// ([`crate::restart::retire`]).
    pub retirer: retiring::Retirer,
    /// Notified by `duet stop` ([`crate::admin`]): the server stops as on
    /// SIGTERM (an elective reboot when it keeps a journal).
    pub stop: tokio::sync::Notify,
    /// The interconnect to the partner, on a pair member ([`crate::pair`]).
    pub pair: Option<Arc<crate::pair::Pair>>,
    /// The lease this server's share set is served under, on a pair member: the
    /// pipeline's gate and the shares' fence ([`crate::pair::fence`]).
    pub lease: Option<Arc<crate::pair::sets::Lease>>,
    /// Where this server's client connections are listed for the partner's
    /// tickle after a takeover ([`crate::pair::conns`]), when it serves the
    /// partner's set (our own set's list is the pair's, [`crate::pair::Pair::conns`]).
    pub conns: Option<Arc<crate::pair::conns::Conns>>,
    /// What the connections' writers sent from files (`sendfile`).
    pub sent: Arc<crate::limits::SendStats>,
    /// What WRITEs moved from their sockets into their files (`splice`).
    pub received: Arc<crate::limits::RecvStats>,
    /// Places for WRITEs whose data is moved from the socket
    /// ([`crate::limits::MAX_SPLICING`]): each holds a blocking thread for as
    /// long as its client takes to send the data.
    pub splicing: Arc<tokio::sync::Semaphore>,
    /// Each client's connections, oldest first: where lease breaks go
    /// ([`clients`]).
    pub clients: Arc<clients::ClientConnections<oplock::Notice>>,
}

pub use crate::guid::{guid_text, parse_guid};

impl Server {
    /// Whether a lone WRITE of `len` bytes of data is synced in its file
    /// before it is answered, its data not kept in the journal
    /// ([`crate::journal::WriteData::InFile`]).
    pub fn syncs_write_in_file(&self, len: usize) -> bool {
        self.journal.write_data(len) == crate::journal::WriteData::InFile
    }

    pub fn new(cfg: Config) -> Result<Server, RunError> {
        Server::restored(cfg, None)
    }

    /// A server whose state model starts as `restored` (rebuilt from the
    /// journal, [`crate::restart`]) moved on to its next id generation, or
    /// empty.
    pub fn restored(cfg: Config, restored: Option<crate::model::Model>) -> Result<Server, RunError> {
        let mut users = match &cfg.users_file {
            Some(p) => Users::load(p)?,
            None => Users::new(),
        };
        for (name, pw) in &cfg.inline_users {
            users.add_password(name, pw);
        }
        let watcher = Arc::new(fs::watch::Watcher::new(cfg.limits.max_dir_watches));
        let mut shares = Vec::new();
        for s in &cfg.shares {
            let mut share = fs::Share::new(&s.name, &s.path).map_err(|e| RunError::Share(s.name.clone(), e))?;
            share.set_watcher(watcher.clone());
            shares.push(Arc::new(ShareEntry { cfg: s.clone(), fs: share }));
        }
        let guid: [u8; 16] = rand::random();
        let set = ::ids::SetId(0);
        let (ids, recorder) = match restored {
            Some(mut model) => {
                if let Err(e) = model.apply(&crate::model::Delta::NewGeneration { set }) {
                    return Err(RunError::Journal(
                        cfg.journal_path().unwrap_or_default(),
                        format!("restored state: {e}"),
                    ));
                }
                let generation = model.partition(set).map_or(0, |p| u64::from(p.ids().generation()));
                let ids = id_alloc::IdAlloc::restored(set, generation, cfg.state_dir().as_deref());
                (ids, record::Recorder::with_model(model))
            }
            None => {
                let ids = id_alloc::IdAlloc::start(set, cfg.state_dir().as_deref());
                let recorder = record::Recorder::new(set, ids.generation() as u32);
                (ids, recorder)
            }
        };
        let checking = recorder.checking();
        let byte_locks = AtomicUsize::new(recorder.model().lock_count());
        let logins = Mutex::new(throttle::LoginThrottle::new(&cfg.limits));
        let resources = crate::limits::Resources::new(&cfg.limits, crate::limits::nofile());
        Ok(Server {
            cfg,
            users,
            shares,
            guid,
            start_time: now_filetime(),
            sessions: Mutex::new(HashMap::new()),
            files: Mutex::new(files::FileTable::new(set)),
            durable: Mutex::new(HashMap::new()),
            creating: Mutex::new(std::collections::HashSet::new()),
            notify: Mutex::new(notify::NotifyTable::with_watcher(watcher.clone())),
            watcher,
            lock_released: tokio::sync::Notify::new(),
            byte_locks,
            oplock_changed: tokio::sync::Notify::new(),
            stop: tokio::sync::Notify::new(),
            pair: None,
            lease: None,
            conns: None,
            sent: Arc::default(),
            received: Arc::default(),
            splicing: Arc::new(tokio::sync::Semaphore::new(crate::limits::MAX_SPLICING)),
            clients: Arc::default(),
            journal: Arc::new(crate::journal::NoJournal),
            ids,
            resources,
            next_conn: AtomicU64::new(1),
            logins,
            recorder: Mutex::new(recorder),
            checking,
            set,
            in_flight: record::InFlight::new(),
            deadlines: tokio::sync::Notify::new(),
            retirer: retiring::Retirer::default(),
        })
    }

    /// A fresh id, unique across restarts of this node (session ids, file
    /// ids, async ids; layout in [`id_alloc`]).
    pub fn next_id(&self) -> u64 {
        self.ids.next_id()
    }

    pub fn next_conn_id(&self) -> u64 {
        self.next_conn.fetch_add(1, Ordering::Relaxed)
    }

    /// A share by name, case-insensitively.
    pub fn share(&self, name: &str) -> Option<Arc<ShareEntry>> {
        self.shares.iter().find(|s| s.cfg.name.eq_ignore_ascii_case(name)).cloned()
    }

    /// Tells change-notify watchers about a change in a share.
    pub fn report_change(&self, share: &str, path: &[String], action: u32, filter: u32) {
        let n = lock(&self.notify);
        if !n.is_empty() {
            n.report(share, path, action, filter);
        }
    }

    /// Breaks the leases on the directory `child` (share-relative
    /// components) is in, but `actor`'s: `child` was made, removed or
    /// renamed, or changed in a way the directory's listing shows
    /// ([`files::FileTable::break_dir_leases`]).
    pub fn break_parent_leases(&self, share: &str, child: &[String], actor: Option<lease::LeaseId>) {
        let Some((_, dir)) = child.split_last() else {
            return;
        };
        if lock(&self.files).has_dir_leases() {
            let set = self.set();
            let is_dir = |m: &crate::model::Model, k: &files::FileUid| {
                file_fields::file_in(m, set, *k).is_some_and(|f| same_path(f.path(), dir))
            };
            self.files().caching(|t, m| t.break_dir_leases(m, share, is_dir, actor));
        }
    }

    /// Is anybody told of changes in the share's directories (change
    /// notify watchers, directory leases)? Where it is not, a change's
    /// on-disk path need not be looked up ([`Server::disk_path`]).
    pub fn changes_watched(&self) -> bool {
        !lock(&self.notify).is_empty() || lock(&self.files).has_dir_leases()
    }

    pub fn session(&self, id: u64) -> Option<Arc<Session>> {
        lock(&self.sessions).get(&id).cloned()
    }
}

/// Is the share-relative `path` (a model's, `\\`-separated) the directory
/// `dir` (on-disk components)? Without regard to ASCII case: a model's
/// path is spelled as a client named it.
fn same_path(path: &str, dir: &[String]) -> bool {
    let mut parts = path.split('\\').filter(|c| !c.is_empty());
    dir.iter().all(|d| parts.next().is_some_and(|p| p.eq_ignore_ascii_case(d))) && parts.next().is_none()
}

/// Locks a mutex, recovering from poisoning: a panic in one request must
/// not take the whole server down.
pub fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The current time as a FILETIME (100 ns units since 1601).
pub fn now_filetime() -> u64 {
    let d = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    (d.as_secs() + 11_644_473_600) * 10_000_000 + u64::from(d.subsec_nanos()) / 100
}

impl protocol::rpc::PipeBackend for Server {
    fn shares(&self) -> Vec<protocol::rpc::ShareInfo> {
        let mut v: Vec<_> = self
            .shares
            .iter()
            .map(|s| protocol::rpc::ShareInfo {
                name: s.cfg.name.clone(),
                share_type: protocol::rpc::STYPE_DISKTREE,
                comment: s.cfg.comment.clone(),
                path: format!("C:{}", s.cfg.path.display()).replace('/', "\\"),
                max_uses: u32::MAX,
                current_uses: 0,
            })
            .collect();
        v.push(protocol::rpc::ShareInfo {
            name: "IPC$".into(),
            share_type: protocol::rpc::STYPE_IPC | protocol::rpc::STYPE_SPECIAL,
            comment: "IPC Service".into(),
            path: String::new(),
            max_uses: u32::MAX,
            current_uses: 0,
        });
        v
    }

    fn now(&self) -> Option<std::time::SystemTime> {
        Some(std::time::SystemTime::now())
    }

    fn server_info(&self) -> protocol::rpc::ServerInfo {
        protocol::rpc::ServerInfo {
            name: self.cfg.server_name.to_uppercase(),
            comment: "Duet".into(),
            version_major: 10,
            version_minor: 0,
            // SV_TYPE_WORKSTATION | SV_TYPE_SERVER | SV_TYPE_SERVER_NT
            server_type: 0x0000_9003,
        }
    }
}
