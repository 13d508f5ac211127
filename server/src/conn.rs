//! One task per TCP connection: read frames, hand each to the pipeline,
//! and write what comes back. A second task writes
//! ([`crate::transport::write_replies`]), so that async completions
//! (CHANGE_NOTIFY, blocking locks) can be sent at any time. Beside the
//! socket, the task takes break notices for its opens and parked compound
//! chains whose wait is over, and hands both to the pipeline too: every
//! frame leaves through the pipeline's one door out.
//!
//! A connection that has no authenticated session within
//! `handshake_timeout_s` is closed ([`crate::config::Limits`]).

use std::net::SocketAddr;
use std::os::fd::AsFd;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::{debug, info};

use crate::connection::{leave_channel, ConnState};
use crate::pipeline::{self, Flow};
use crate::state::{lock, Server};
use crate::transport::{far_future, write_replies, Inbox, Incoming, Outflow, Reader, Reply, Writer, OUT_QUEUE};

/// Serves one TCP connection until the peer goes away or sends garbage.
pub async fn serve(server: Arc<Server>, sock: TcpStream, peer: SocketAddr, id: u64) {
    let local = sock.local_addr().ok();
    // A second descriptor of the socket, for WRITEs whose data is moved
    // from it into their files (`Inbox::lend`): it stays open while one is
    // being moved, whatever becomes of the connection's halves meanwhile.
    let dup = sock.as_fd().try_clone_to_owned().ok();
    let (rd, wr) = sock.into_split();
    serve_on(server, Box::new(rd), Writer::Tcp(wr), peer, local, id, dup).await
}

/// Serves one connection over any byte stream: [`serve`] for TCP, an
/// in-memory pipe for the fuzzer ([`crate::fuzzing`]).
pub async fn serve_stream(
    server: Arc<Server>,
    rd: Reader,
    wr: Box<dyn tokio::io::AsyncWrite + Send + Unpin>,
    peer: SocketAddr,
    local: Option<SocketAddr>,
    id: u64,
) {
    serve_on(server, rd, Writer::Stream(wr), peer, local, id, None).await
}

/// [`serve_stream`] or [`serve`]: on a TCP socket ([`Writer::Tcp`]) point 4
/// waits for its acknowledgements, large READ answers may be sent with
/// `sendfile`, and large WRITEs' data moved into their files with `splice`
/// (`sock`, the socket's second descriptor).
async fn serve_on(
    server: Arc<Server>,
    rd: Reader,
    wr: Writer,
    peer: SocketAddr,
    local: Option<SocketAddr>,
    id: u64,
    sock: Option<std::os::fd::OwnedFd>,
) {
    debug!("connected");
    let limits = &server.cfg.limits;
    let (tx, rx) = mpsc::channel::<Reply>(OUT_QUEUE);
    let outflow = Arc::new(Outflow::new(server.resources.reply_meter(), server.sent.clone()));
    let sends_files = matches!(wr, Writer::Tcp(_));
    let answered = {
        let server = server.clone();
        Arc::new(move |op| pipeline::point4(&server, op)) as crate::transport::Acked
    };
    let stall = Duration::from_secs(limits.send_timeout_s);
    let writer = tokio::spawn(write_replies(wr, rx, outflow.clone(), stall, answered));
    let mut inbox = Inbox::bounded(rd, outflow, Duration::from_secs(limits.frame_timeout_s));
    if let Some(sock) = sock {
        inbox = inbox.with_socket(sock);
    }
    let mut conn = ConnState::new(server.clone(), peer, id, tx, inbox);
    conn.local = local;
    conn.sends_files = sends_files;
    let handshake = Duration::from_secs(limits.handshake_timeout_s);
    // Since when the connection has had no authenticated session.
    let mut unauthenticated = Some(Instant::now());
    loop {
        let deadline = unauthenticated.map(|t| t + handshake);
        // The three ways in: a request off the socket, a break notice for
        // one of this connection's opens, a parked chain whose wait is
        // over. Notices and resumed chains go first: they wait on no one.
        let flow = tokio::select! {
            biased;
            Some(notice) = conn.notices.recv() => pipeline::send_notice(&mut conn, notice).await,
            Some(resume) = conn.resumes.recv() => if resume(&mut conn).await { Flow::Continue } else { Flow::Close },
            f = conn.inbox.next_request() => match f {
                Some(Incoming::Frame(frame)) => pipeline::handle(&mut conn, frame).await,
                Some(Incoming::Head(head)) => pipeline::handle_write_head(&mut conn, head).await,
                None => Flow::Close,
            },
            _ = tokio::time::sleep_until(deadline.unwrap_or_else(far_future)), if deadline.is_some() => {
                info!("closing: no authenticated session for {handshake:?}");
                Flow::Close
            }
        };
        if let Flow::Close = flow {
            break;
        }
        server.check_model_when_idle().await;
        let authenticated = conn.sessions.values().any(|s| s.is_valid());
        unauthenticated = match unauthenticated {
            _ if authenticated => None,
            None => Some(Instant::now()),
            since => since,
        };
    }
    cleanup(&mut conn);
    drop(conn);
    let _ = writer.await;
    info!("disconnected");
}

/// Tears down what the connection owned: pending operations, and each of
/// its sessions (with trees and opens) of which it was the last channel. A
/// session with another channel left lives on ([MS-SMB2] 3.3.7.1).
fn cleanup(conn: &mut ConnState) {
    // From here on no break notice can reach this client: closing the
    // queue first makes every holder on this connection count as gone
    // (`holder_gone`), so an open that meets one of its opens (or a
    // durable open it keeps below) purges it instead of waiting for an
    // acknowledgement that cannot come. Closing it only when the
    // connection is dropped, after the teardown, left a window in which a
    // new open sent a break into the dying queue and waited out the break
    // time-out (smbtorture durable-open.open2-lease, 35 s, then a sharing
    // violation, seen under load).
    conn.notices.close();
    conn.server.clients.unregister(conn.client_guid, conn.id);
    for (_, op) in lock(&conn.pending).drain() {
        // One that outlives its channel goes on while its session has
        // another ([`crate::handler::Resp::outlives_channel`]).
        let other_channel =
            || conn.sessions.get(&op.session_id).is_some_and(|s| lock(&s.inner).channels.iter().any(|&c| c != conn.id));
        if op.outlives_channel && other_channel() {
            continue;
        }
        let _ = op.cancel.send(());
    }
    let server = conn.server.clone();
    conn.bindings.clear();
    conn.channels.clear();
    for (sid, session) in conn.sessions.drain() {
        if !leave_channel(&session, conn.id) {
            continue;
        }
        {
            let mut table = lock(&server.sessions);
            if table.get(&sid).is_some_and(|s| Arc::ptr_eq(s, &session)) {
                table.remove(&sid);
            }
        }
        let mut out = Vec::new();
        crate::cmd::logoff::disconnect_session(&server, &session, &mut out);
        server.apply(&out);
    }
}
