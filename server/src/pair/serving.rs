//! A share set served on its address (issue 14): the one place where a set's
//! client address is bound ([`bind`]) and let go ([`release`]), the accept loop
//! on it, and the connections it accepted, so that a hand-over can stop reading
//! and close them all ([`Serving`]).
//!
//! Moving addresses between network namespaces (`duet lab`) hooks in at
//! [`bind`] and [`release`]; on one machine an address in 127.0.0.0/8 is bound
//! without being added.

use std::net::SocketAddr;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::net::TcpListener;
use tokio::task::{AbortHandle, JoinHandle};
use tracing::{info, warn};

use crate::state::Server;

/// How long [`bind`] tries before it says that it cannot yet.
const SAY_AFTER: Duration = Duration::from_secs(2);
/// How often [`bind`] tries.
const RETRY: Duration = Duration::from_millis(100);

/// The connection tasks a set's accept loop started, so that a hand-over can
/// close them all at once, each with a duplicate of its socket's descriptor:
/// an aborted task lets its socket go only when it and its writer task are
/// dropped, which can come after the set's address was let go, when the
/// kernel's FIN no longer reaches the client (in `duet lab` it waited for its
/// own 30 s time-out). The duplicate shuts the socket down at once instead.
#[derive(Debug, Default)]
pub struct ConnTasks(Mutex<Vec<(AbortHandle, Option<OwnedFd>)>>);

impl ConnTasks {
    /// Keeps a new connection's task and a duplicate of its socket (`None`
    /// when it could not be made: that connection closes when its task ends),
    /// and forgets the finished ones.
    pub fn add(&self, task: AbortHandle, socket: Option<OwnedFd>) {
        let mut v = self.0.lock().unwrap_or_else(|e| e.into_inner());
        v.retain(|(t, _)| !t.is_finished());
        v.push((task, socket));
    }

    /// Ends every connection at once, as a node's death does: no answer for
    /// what is in flight, no teardown that would change the set's state after
    /// its hand-over (the partner restores it, and its clients reconnect there).
    pub fn abort_all(&self) -> usize {
        let v = std::mem::take(&mut *self.0.lock().unwrap_or_else(|e| e.into_inner()));
        let live = v.iter().filter(|(t, _)| !t.is_finished()).count();
        for (t, socket) in v {
            t.abort();
            if let Some(fd) = socket {
                // The client sees the end now, from the address it connected to.
                let _ = nix::sys::socket::shutdown(fd.as_raw_fd(), nix::sys::socket::Shutdown::Both);
            }
        }
        live
    }
}

/// Binds `addr` for a share set, trying again until it is free: a killed node's
/// listening socket takes a moment to go, a frozen one's stays until it thaws
/// (and steps down) or dies, and a partner handing the set over lets it go at
/// its release.
pub async fn bind(addr: SocketAddr) -> TcpListener {
    let t0 = Instant::now();
    let mut said = false;
    loop {
        match TcpListener::bind(addr).await {
            Ok(l) => return l,
            Err(e) => {
                if !said && t0.elapsed() > SAY_AFTER {
                    warn!(%addr, "pair: cannot bind the set's address yet ({e}): its last owner keeps it; trying on");
                    said = true;
                }
                tokio::time::sleep(RETRY).await;
            }
        }
    }
}

/// Lets a set's address go: its listening socket is closed (new connections
/// are refused by the kernel until the new owner binds it).
pub fn release(address: SocketAddr, listener: Arc<TcpListener>) {
    drop(listener);
    info!(%address, "pair: the set's address is released");
}

/// One set served here: its server, its listening socket and accept loop, the
/// connections accepted.
pub struct Serving {
    pub server: Arc<Server>,
    pub address: SocketAddr,
    listener: Option<Arc<TcpListener>>,
    accept: Option<JoinHandle<()>>,
    conns: Arc<ConnTasks>,
    /// Tasks of the set's server to end with it (its scavenger, its retiring).
    tasks: Vec<JoinHandle<()>>,
    /// The set's journal when it is the partner's set, held here (a journal of
    /// its own in the storage folder, [`crate::restart::taken`]): a giveback
    /// saves the set's state into it.
    pub journal: Option<Arc<::nvram::Journal>>,
}

impl Serving {
    /// Serves `server` on `listener` (bound to `address` by [`bind`]).
    pub fn start(server: Arc<Server>, address: SocketAddr, listener: TcpListener) -> Serving {
        let listener = Arc::new(listener);
        let conns = Arc::new(ConnTasks::default());
        let accept = tokio::spawn(crate::accept_loop(server.clone(), listener.clone(), Some(conns.clone())));
        Serving {
            server,
            address,
            listener: Some(listener),
            accept: Some(accept),
            conns,
            tasks: Vec::new(),
            journal: None,
        }
    }

    /// Ends `task` with the set ([`Serving::release`]).
    pub fn own_task(&mut self, task: JoinHandle<()>) {
        self.tasks.push(task);
    }

    /// Accepts no new connection (they wait in the listening socket's backlog:
    /// a delay for the client, until the release).
    pub fn stop_reading(&mut self) {
        if let Some(a) = self.accept.take() {
            a.abort();
        }
    }

    /// Lets the address go and ends every connection.
    pub fn release(&mut self) {
        self.stop_reading();
        if let Some(l) = self.listener.take() {
            release(self.address, l);
        }
        let n = self.conns.abort_all();
        for t in self.tasks.drain(..) {
            t.abort();
        }
        info!(address = %self.address, connections = n, "pair: the set's connections are closed");
    }
}

impl Drop for Serving {
    fn drop(&mut self) {
        if self.listener.is_some() {
            self.release();
        }
    }
}
