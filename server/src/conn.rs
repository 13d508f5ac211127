//! One task per TCP connection: read frames, hand each to the pipeline,
//! and write what comes back. A second task writes
//! ([`crate::transport::write_replies`]), so that async completions
//! (CHANGE_NOTIFY, blocking locks) can be sent at any time.
//!
//! A connection that has no authenticated session within
//! `handshake_timeout_s` is closed ([`crate::config::Limits`]).

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::{debug, info};

use crate::connection::{leave_channel, ConnState};
use crate::pipeline::{self, Flow};
use crate::state::{lock, Server};
use crate::transport::{far_future, write_replies, Inbox, Outflow, Reader, Writer, OUT_QUEUE};


/// Waits for `done` while serving the connection's other requests, as
/// they come. A request that must wait in the middle of a compound (a
/// CREATE waiting for an oplock break) uses this, so that the break's
/// acknowledgement, which may come from this very connection, is read and
/// handled meanwhile.
pub fn serve_while<'a>(
    conn: &'a mut ConnState,
    done: Pin<Box<dyn Future<Output = ()> + Send + 'a>>,
) -> Pin<Box<dyn Future<Output = ()> + Send + 'a>> {
    // Boxed both ways: the pipeline runs inside this future, which runs
    // inside the pipeline.
    Box::pin(async move {
        let mut done = done;
        loop {
            let frame = tokio::select! {
                biased;
                _ = &mut done => return,
                f = conn.inbox.next_frame(), if !conn.closing => f,
            };
            match frame {
                Some(frame) => {
                    if let Flow::Close = pipeline::handle(conn, frame).await {
                        conn.closing = true;
                    }
                }
                None => conn.closing = true,
            }
        }
    })
}

/// Serves one TCP connection until the peer goes away or sends garbage.
pub async fn serve(server: Arc<Server>, sock: TcpStream, peer: SocketAddr, id: u64) {
    let local = sock.local_addr().ok();
    let (rd, wr) = sock.into_split();
    serve_stream(server, Box::new(rd), Box::new(wr), peer, local, id).await
}

/// Serves one connection over any byte stream: [`serve`] for TCP, an
/// in-memory pipe for the fuzzer ([`crate::fuzzing`]).
pub async fn serve_stream(server: Arc<Server>, rd: Reader, wr: Writer, peer: SocketAddr, local: Option<SocketAddr>, id: u64) {
    debug!("connected");
    let limits = &server.cfg.limits;
    let (tx, rx) = mpsc::channel::<Bytes>(OUT_QUEUE);
    let outflow = Arc::new(Outflow::new(server.resources.reply_meter()));
    let writer = tokio::spawn(write_replies(wr, rx, outflow.clone(), Duration::from_secs(limits.send_timeout_s)));
    let inbox = Inbox::bounded(rd, outflow, Duration::from_secs(limits.frame_timeout_s));
    let mut conn = ConnState::new(server.clone(), peer, id, tx, inbox);
    conn.local = local;
    let handshake = Duration::from_secs(limits.handshake_timeout_s);
    // Since when the connection has had no authenticated session.
    let mut unauthenticated = Some(Instant::now());
    while !conn.closing {
        let deadline = unauthenticated.map(|t| t + handshake);
        let frame = tokio::select! {
            f = conn.inbox.next_frame() => f,
            _ = tokio::time::sleep_until(deadline.unwrap_or_else(far_future)), if deadline.is_some() => {
                info!("closing: no authenticated session for {handshake:?}");
                break;
            }
        };
        let Some(frame) = frame else {
            break;
        };
        if let Flow::Close = pipeline::handle(&mut conn, frame).await {
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
    for (_, op) in lock(&conn.pending).drain() {
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
