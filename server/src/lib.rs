//! Duet's server: tokio connections, sessions, trees, opens, the
//! share-confined file system and the request pipeline, plus the `duet`
//! binary's entry points.
//!
//! # Layout
//! - [`alloc`]: large I/O buffers: allocator tuning, the server-wide I/O
//!   budget and per-connection slots.
//! - [`config`]: the TOML configuration, flags and the embedded default.
//! - [`limits`]: the descriptor limit, and the counts of connections,
//!   sessions, opens and queued replies against the configured limits.
//! - [`users`]: the users file of NT hashes.
//! - [`acl`]: access checks against stored security descriptors, a
//!   session's SIDs, what a set descriptor becomes when stored, and
//!   inheritance on create (plain functions, no I/O).
//! - [`conn`]: one task per TCP connection: framing in, responses out.
//! - [`pipeline`]: the one door in and the one door out of every request:
//!   decryption, compound splitting, signature checks, dispatch, signing,
//!   encryption. The consistency points hook in here and nowhere else.
//! - [`cmd`]: one handler module per SMB2 command.
//! - [`state`]: the server's long-lived state: sessions, trees, opens, the
//!   per-file table for share modes, locks and delete-on-close.
//! - [`model`]: the long-lived state as plain data (sessions, trees, opens,
//!   files, leases, locks, id allocators), partitioned by share set, changed
//!   only by applying a `Delta`, with versioned checkpoints. Handlers push
//!   deltas and the pipeline applies them; [`state`] still serves requests.
//! - [`fs`]: the share-confined file system, and its directory watches
//!   (inotify) for change notify.
//! - [`journal`]: the consistency-point interface the pipeline writes
//!   through (fallible, ticketed, with deltas and replay keys), and its
//!   implementations: none, NVRAM, recording (for tests).
//! - [`lab`]: `duet lab`: a pair in network namespaces on one machine, with
//!   addresses that move (issue 14).
//! - [`pair`]: the pair's configuration, the interconnect to the partner,
//!   journal mirroring, share sets, ownership claims and the lease (issue 14);
//!   [`restart::takeover`] takes a dead partner's set over from the mirror.
//! - [`admin`]: the operator's view (`duet status`, `duet close-handle`)
//!   over a local admin socket.
//! - [`fuzzing`]: sequences of frames against an in-process server, for the
//!   fuzz target and its corpus test.
//!
//! Mutexes are taken in the order of [`state`'s lock order](state#lock-order).

// Part of that order: no `std::sync::MutexGuard` lives across an `.await`.
#![deny(clippy::await_holding_lock)]

pub mod acl;
pub mod admin;
pub mod alloc;
pub mod cmd;
pub mod config;
pub mod conn;
pub mod connection;
pub mod error;
pub mod failpoint;
pub mod fs;
pub mod fuzzing;
pub mod guid;
pub mod handler;
pub mod journal;
pub mod lab;
pub mod limits;
pub mod model;
pub mod pair;
pub mod pipeline;
pub mod restart;
pub mod state;
pub mod transport;
pub mod users;

pub use error::RunError;

use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::TcpListener;
use tracing::{debug, error, info, warn, Instrument};

use config::Config;
use state::Server;

/// Sets up `tracing` to stderr with the given filter.
pub fn init_logging(filter: &str) {
    let filter =
        tracing_subscriber::EnvFilter::try_new(filter).unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    use std::io::IsTerminal;
    let ansi = std::io::stderr().is_terminal();
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_ansi(ansi).with_writer(std::io::stderr).try_init();
}

/// The embedded default: serve `./duet-data/share` as `duet`, with user
/// `duet` and a password generated once, kept in `./duet-data/password`,
/// and printed; `./duet-data` is the state directory too (unless one is
/// given).
pub fn default_setup(cfg: &mut Config) -> std::io::Result<()> {
    use rand::Rng;
    use std::os::unix::fs::OpenOptionsExt;
    let base = Path::new("duet-data");
    let share = base.join("share");
    std::fs::create_dir_all(&share)?;
    let pw_file = base.join("password");
    let password = match std::fs::read_to_string(&pw_file) {
        Ok(p) => p.trim().to_string(),
        Err(_) => {
            let p: String =
                rand::thread_rng().sample_iter(&rand::distributions::Alphanumeric).take(16).map(char::from).collect();
            let mut f =
                std::fs::OpenOptions::new().create(true).write(true).truncate(true).mode(0o600).open(&pw_file)?;
            std::io::Write::write_all(&mut f, p.as_bytes())?;
            p
        }
    };
    let default_share = config::ShareConfig::new("duet", share.clone());
    cfg.shares.push(config::ShareConfig { comment: "Duet default share".into(), ..default_share });
    cfg.inline_users.push(("duet".into(), password.clone()));
    if cfg.state_dir.is_none() {
        cfg.state_dir = Some(base.to_path_buf());
    }
    // Port 445 needs root; anyone else gets 4450.
    if !nix::unistd::geteuid().is_root() {
        for a in &mut cfg.listen {
            if a.port() == 445 {
                a.set_port(4450);
            }
        }
    }
    let port = cfg.listen.first().map(|a| a.port()).unwrap_or(445);
    let ip = cfg.listen.first().map(|a| a.ip().to_string()).unwrap_or_default();
    let port_arg = if port == 445 { String::new() } else { format!(" -p {port}") };
    eprintln!("duet: serving {} as //{ip}/duet", share.display());
    eprintln!("duet: user duet, password {password}");
    eprintln!("duet: try: smbclient //{ip}/duet{port_arg} -U duet%{password}");
    Ok(())
}

/// Resolves on SIGINT or SIGTERM. The handlers are installed when this is
/// called (within the runtime), not when the future is first polled: a
/// SIGTERM that comes while the journal is being restored is then kept,
/// and the server stops as an elective reboot right after, instead of the
/// signal's default action killing it.
pub fn shutdown_signal() -> impl Future<Output = ()> {
    use tokio::signal::unix::{signal, SignalKind};
    let term = signal(SignalKind::terminate()).ok();
    let int = signal(SignalKind::interrupt()).ok();
    async move {
        let recv = |s: Option<tokio::signal::unix::Signal>| async move {
            match s {
                Some(mut s) => {
                    s.recv().await;
                }
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = recv(term) => {}
            () = recv(int) => {}
        }
    }
}

/// Prints a journal file (`duet journal dump`).
pub fn journal_dump(path: &Path, out: &mut dyn std::io::Write) -> Result<(), Box<dyn std::error::Error>> {
    nvram::dump(path, out)?;
    Ok(())
}

/// Runs the server until `shutdown` resolves, with the journal the
/// configuration names ([`Config::journal_path`]), restoring what it holds
/// ([`restart`]); when `shutdown` resolves (SIGTERM), as an elective reboot.
pub async fn run(mut cfg: Config, shutdown: impl Future<Output = ()>) -> Result<(), RunError> {
    cfg.validate()?;
    let t0 = Instant::now();
    let Some(opened) = restart::open(&cfg)? else {
        return run_with_journal(cfg, Arc::new(journal::NoJournal), shutdown).await;
    };
    // The identity check comes first: a node whose configuration is older than
    // its partner's does not restore, let alone serve.
    let pair = match &cfg.pair {
        Some(p) => Some(pair::Pair::start(p.clone(), opened.region.clone()).await?),
        None => None,
    };
    // The share sets: the node's own set is served on its address, and only
    // while this node owns it; who serves which set is the state machine's to
    // say (`pair::driver`).
    let whole = cfg.clone();
    let sets = cfg.pair.as_ref().and_then(|p| p.sets());
    let mut driver = None;
    if let (Some(sets), Some(p)) = (&sets, &pair) {
        let flag = opened.recovery.as_ref().map_or(takeover::Flag::CleanShutdown, |r| r.flag);
        let (handle, verdict) = start_sets(&whole, sets, p, flag).await?;
        match verdict {
            pair::driver::Verdict::Serve { .. } => {
                cfg = handle.taker().home_config(true);
                driver = Some(handle);
            }
            pair::driver::Verdict::Standby { epoch, owner } => {
                let owner = owner.map_or("an unreadable claim".to_string(), |o| format!("node {}", o.0));
                eprintln!(
                    "duet: set {} is held by {owner} at epoch {}: waiting (not serving it)",
                    sets.own.home, epoch.0
                );
                warn!(set = sets.own.home, epoch = epoch.0, %owner, "pair: our set is held by another node: waiting for a giveback");
                return standby(cfg, p.clone(), handle, opened, shutdown).await;
            }
        }
    }
    let (model, writes, renames, creates, appends) = match &opened.recovery {
        Some(r) => match restart::rebuild_with_redo(r).map_err(|e| RunError::Journal(opened.path.clone(), e))? {
            Some(r) => (Some(r.model), r.writes, r.renames, r.creates, r.appends),
            None => Default::default(),
        },
        None => Default::default(),
    };
    limits::raise_nofile();
    let mut server = Server::restored(cfg, model)?;
    server.guid = restart::server_guid(&opened.path)?;
    if let (Some(sets), Some(p)) = (&sets, &pair) {
        // The set's GUID, which the partner answers with after a takeover.
        let (storage, set, mine) = (sets.storage.clone(), takeover::SetId(p.config().node), server.guid);
        server.guid = pair::sets::set_guid_of(storage, set, mine).await.map_err(RunError::Pair)?;
    }
    if let Some(lease) = pair.as_ref().and_then(|p| p.lease()) {
        // The set's shares change nothing on disk without the lease
        // (`pair::fence`), the restore's own changes (below) included: it
        // waits for the storage heartbeat's first renewal.
        if !lease.wait_valid().await {
            return Err(RunError::Pair("no lease on our share set (it was claimed, or storage is stalled)".into()));
        }
        for share in &server.shares {
            share.fs.set_fence(lease.clone());
        }
        server.lease = Some(lease.clone());
    }
    server.journal = opened.journal.clone();
    server.retirer.enable(opened.policy.survives_power_loss());
    server.pair = pair.clone();
    let server = Arc::new(server);
    let same_boot = restart::same_boot(&opened.path);
    if !writes.is_empty() && same_boot {
        info!(writes = writes.len(), "the kernel ran on since the last run: its page cache holds every answered WRITE");
    }
    let writes = if same_boot { Vec::new() } else { writes };
    if !writes.is_empty() || !creates.is_empty() {
        let model = server.model();
        restart::redo::redo(&server, &model, &writes);
        restart::redo::undo_creates(&server, &model, &creates);
    }
    restart::start(&server, &opened, &renames, &appends).await?;
    info!(took_ms = t0.elapsed().as_millis() as u64, "journal ready: state restored, checkpointed and flagged");
    match &driver {
        // The driver binds the set's address, and runs its background tasks
        // while it serves it.
        Some(d) => d.home_restored(server.clone()),
        None => {
            tokio::spawn(restart::retire::run(server.clone(), opened.policy.survives_power_loss()));
        }
    }
    let failed = Arc::new(std::sync::Mutex::new(None));
    let addresses_of = pair.clone();
    let stopping = {
        let failed = failed.clone();
        async move {
            let Some(p) = pair else {
                return shutdown.await;
            };
            tokio::select! {
                () = shutdown => {}
                why = p.failed() => *failed.lock().unwrap_or_else(|e| e.into_inner()) = Some(why),
            }
        }
    };
    let stop = serve(server.clone(), stopping, driver.is_none()).await?;
    stop.abort();
    match &driver {
        None => restart::elective_reboot(&server, &opened).await,
        Some(d) => save_home(d, &opened).await,
    }
    if let Some(p) = &addresses_of {
        p.addresses().release_all();
    }
    if let Some(why) = failed.lock().unwrap_or_else(|e| e.into_inner()).take() {
        return Err(RunError::Pair(why));
    }
    Ok(())
}

/// A pair member's share sets at start: records its boot id, starts its
/// storage heartbeat and lease, and the state machine's driver
/// ([`pair::driver`]), and waits for its verdict on our own set: serve it
/// (the lease is then for our claim), or wait for a giveback.
async fn start_sets(
    whole: &Config,
    sets: &pair::config::Sets,
    p: &Arc<pair::Pair>,
    flag: takeover::Flag,
) -> Result<(pair::driver::Handle, pair::driver::Verdict), RunError> {
    let (cluster, me) = (takeover::ClusterId(p.config().cluster), takeover::NodeId(p.config().node));
    std::fs::create_dir_all(&sets.storage)
        .map_err(|e| RunError::Pair(format!("the shared storage folder {}: {e}", sets.storage.display())))?;
    if let Err(e) = pair::sets::record_boot(&sets.storage, me) {
        warn!(dir = %sets.storage.display(), "pair: cannot record the boot id (a takeover will write answered WRITEs again): {e}");
    }
    let lease = Arc::new(pair::sets::Lease::default());
    p.set_lease(lease.clone());
    pair::sets::start_storage_heartbeat(sets.storage.clone(), cluster, me, p.leases().clone())
        .map_err(|e| RunError::Pair(format!("cannot start the storage heartbeat: {e}")))?;
    // An address left on the interface by an earlier run is not ours now: the
    // driver takes a set's when it binds it (`pair::serving`).
    p.addresses().release(sets.partner.address);
    p.addresses().release(sets.own.address);
    let taker = restart::takeover::Taker { cfg: whole.clone(), sets: sets.clone(), pair: p.clone() };
    let (handle, verdict) = pair::driver::start(taker, flag)?;
    p.set_driver(handle.clone());
    let verdict = verdict.await.map_err(|_| RunError::Pair("the pair's driver stopped at start".into()))?;
    if let pair::driver::Verdict::Serve { epoch } = verdict {
        lease.regain(epoch);
    }
    Ok((handle, verdict))
}

/// A pair member whose own set its partner holds: it keeps its interconnect
/// (its journal stays mirrored) and its admin socket, and serves no share,
/// until the partner gives the set back (the driver then restores and serves
/// it), `shutdown`, or the pair's failure.
async fn standby(
    cfg: Config,
    pair: Arc<pair::Pair>,
    driver: pair::driver::Handle,
    opened: restart::Opened,
    shutdown: impl Future<Output = ()>,
) -> Result<(), RunError> {
    let mut server = Server::new(cfg)?;
    server.pair = Some(pair.clone());
    let server = Arc::new(server);
    let _admin = start_admin(&server).await?;
    let r = tokio::select! {
        () = shutdown => Ok(()),
        () = server.stop.notified() => Ok(()),
        why = pair.failed() => Err(RunError::Pair(why)),
    };
    save_home(&driver, &opened).await;
    r
}

/// At a stop: gives the partner's set back first when this node holds it
/// ([`pair::driver::Handle::stop_taken`]), then saves our own set's state as
/// an elective reboot when this node serves it (the driver knows which server
/// that is now); a node that does not hold its set has nothing of it to save.
async fn save_home(driver: &pair::driver::Handle, opened: &restart::Opened) {
    let taken = driver.stop_taken().await;
    info!("{taken}");
    match driver.home_serving() {
        Some(server) => restart::elective_reboot(&server, opened).await,
        None => info!("stopping: this node does not serve its set; nothing to save"),
    }
}

/// Runs the server with a given consistency-point journal.
pub async fn run_with_journal(
    cfg: Config,
    journal: Arc<dyn journal::Journal>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), RunError> {
    cfg.validate()?;
    limits::raise_nofile();
    let mut server = Server::new(cfg)?;
    server.journal = journal;
    let server = Arc::new(server);
    serve(server, shutdown, true).await?.abort();
    Ok(())
}

/// Listens and serves until `shutdown` resolves; returns the handle that
/// stops accepting.
/// `background`: the server's own scavenger runs here (a pair member's set
/// server has it from the driver, which stops it with the set).
async fn serve(
    server: Arc<Server>,
    shutdown: impl Future<Output = ()>,
    background: bool,
) -> Result<Listening, RunError> {
    if background {
        tokio::spawn(state::durable::scavenger(server.clone()));
    }
    let admin = start_admin(&server).await?;
    let mut listeners = Vec::new();
    for addr in &server.cfg.listen {
        let l = TcpListener::bind(addr).await.map_err(|e| RunError::Bind(*addr, e))?;
        let local = l.local_addr().map_err(|e| RunError::Bind(*addr, e))?;
        eprintln!("duet: listening on {local}");
        info!(%local, "listening");
        listeners.push(l);
    }
    let tasks = listeners.into_iter().map(|l| tokio::spawn(accept_loop(server.clone(), Arc::new(l), None))).collect();
    tokio::select! {
        () = shutdown => info!("shutting down"),
        () = server.stop.notified() => info!("shutting down: `duet stop`"),
    }
    Ok(Listening { tasks, _admin: admin })
}

/// The accept loops of a server, and its admin socket.
struct Listening {
    tasks: Vec<tokio::task::JoinHandle<()>>,
    _admin: Option<admin::socket::SocketFile>,
}

impl Listening {
    /// Stops accepting new connections.
    fn abort(self) {
        for t in self.tasks {
            t.abort();
        }
    }
}

/// Opens the admin socket when one is configured, or by default for `duet
/// serve` (then a failure is only logged). Removed again when dropped.
async fn start_admin(server: &Arc<Server>) -> Result<Option<admin::socket::SocketFile>, RunError> {
    let path = server.cfg.admin_socket_path();
    if server.cfg.admin_socket.is_none() && !server.cfg.admin_socket_default {
        return Ok(None);
    }
    match admin::socket::start(server.clone(), &path).await {
        Ok(f) => Ok(Some(f)),
        Err(e) if server.cfg.admin_socket.is_some() => Err(RunError::Admin(path, e)),
        Err(e) => {
            warn!(path = %path.display(), "no admin socket (`duet status` will not work): {e}");
            Ok(None)
        }
    }
}

/// Accepts connections on one listener for as long as the server runs. A
/// connection over the limits is closed at once. When `accept` fails for
/// want of descriptors or memory, the connection waits in the backlog and
/// the loop backs off briefly rather than spinning; either is logged at
/// most once a second.
pub(crate) async fn accept_loop(server: Arc<Server>, l: Arc<TcpListener>, conns: Option<Arc<pair::serving::ConnTasks>>) {
    let mut refused = Throttle::default();
    let mut failed = Throttle::default();
    loop {
        match l.accept().await {
            Ok((sock, peer)) => {
                let slot = match server.resources.admit(peer.ip()) {
                    Ok(slot) => slot,
                    Err(why) => {
                        match refused.tick() {
                            Some(0) => warn!(%peer, "connection refused: {why}"),
                            Some(n) => {
                                warn!(%peer, "connection refused: {why} ({n} more refused since the last message)")
                            }
                            None => debug!(%peer, "connection refused: {why}"),
                        }
                        drop(sock);
                        continue;
                    }
                };
                let _ = sock.set_nodelay(true);
                // The set's connections, for the partner's tickle after a takeover.
                let list = server.conns.as_ref().or_else(|| server.pair.as_ref().and_then(|p| p.conns()));
                let tracked = list.zip(sock.local_addr().ok());
                let tracked = tracked.map(|(c, local)| c.track(peer, local));
                // A hand-over shuts the socket down through this duplicate.
                let dup = conns.as_ref().and_then(|_| std::os::fd::AsFd::as_fd(&sock).try_clone_to_owned().ok());
                let server = server.clone();
                let id = server.next_conn_id();
                let span = tracing::info_span!("conn", id, %peer);
                let task = tokio::spawn(
                    async move {
                        // Held until the connection's task ends, however it ends.
                        let (_slot, _tracked) = (slot, tracked);
                        conn::serve(server, sock, peer, id).await
                    }
                    .instrument(span),
                );
                if let Some(conns) = &conns {
                    conns.add(task.abort_handle(), dup);
                }
            }
            Err(e) => {
                let scarce =
                    matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM));
                match failed.tick() {
                    Some(0) => error!("accept: {e}"),
                    Some(n) => error!("accept: {e} ({n} more failures since the last message)"),
                    None => {}
                }
                if scarce {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }
}

/// Lets a repeated log message through at most once a second, counting
/// the ones held back.
#[derive(Default)]
struct Throttle {
    last: Option<Instant>,
    held: u64,
}

impl Throttle {
    /// `Some(held back since the last one)` when this one is to be logged.
    fn tick(&mut self) -> Option<u64> {
        let now = Instant::now();
        if self.last.is_some_and(|t| now.duration_since(t) < Duration::from_secs(1)) {
            self.held += 1;
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.held))
    }
}
