//! One interconnect link over TCP: frames in ([`FrameReader`]), frames out with a
//! heartbeat every beat ([`writer`]), and the checks every frame of a joined link must
//! pass ([`Peer`]).
//!
//! Bad input never stops the node: a frame that does not decode (corrupt, oversized,
//! unknown) is counted in [`Counters`] and closes that one link; so does a frame of
//! another cluster, from another node or generation, or out of order.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use takeover::codec::{self, Frame, FrameError, Header, Message, Status};
use takeover::{ClusterId, Health, NodeId};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::{mpsc, Notify};

use super::outbox::{Out, Outbox};

/// A heartbeat goes out on every link this often (DESIGN.md, "Pair and takeover").
pub const BEAT: Duration = Duration::from_millis(100);
/// A link that brings nothing (not even a heartbeat) for this long is dead: the
/// partner is frozen, gone, or cut off (a partner that is killed closes its links at
/// once). Ten beats: an append waits at most this long on a frozen partner; 500 ms
/// gave false alarms on the shared 2-core machine under a load of 8 (a false alarm
/// costs a resync, nothing more).
pub const SILENT: Duration = Duration::from_secs(1);
/// A partner that sends heartbeats but acknowledges nothing of what it was sent for
/// this long (its disk is stuck, say) is given up as if it were silent: every durable
/// answer would wait for it.
pub const ACK_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a new link may take to send its join.
pub const JOIN_TIMEOUT: Duration = Duration::from_secs(2);
/// Most bytes of queued frames written in one go.
const WRITE_BATCH: usize = 1 << 20;

/// Frames refused, by kind, for `duet status`.
#[derive(Debug, Default)]
pub struct Counters {
    /// Frames that do not decode: bad magic, version, checksum, kind or payload, or a
    /// stream cut in the middle of a frame.
    pub corrupt: AtomicU64,
    /// Frames announcing more than the codec's largest payload.
    pub oversized: AtomicU64,
    /// Frames of another cluster.
    pub foreign: AtomicU64,
    /// Frames from another node or run than the link's, out of order, or mirror
    /// records and acknowledgements that do not follow what came before.
    pub stale: AtomicU64,
    /// Joins refused (another cluster, our own node id, not the partner, an older
    /// incarnation, rings of another size), and links that never sent one.
    pub joins: AtomicU64,
    /// Connections closed at once: too many links waiting for their join.
    pub busy: AtomicU64,
}

impl Counters {
    /// Counts a frame that did not decode.
    pub fn refused(&self, e: &FrameError) {
        let c = match e {
            FrameError::TooLong(_) => &self.oversized,
            _ => &self.corrupt,
        };
        c.fetch_add(1, Ordering::Relaxed);
    }
}

/// Why a link ended.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error("the partner closed the link")]
    Closed,
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("a bad frame: {0}")]
    Bad(FrameError),
}

/// Reads whole frames off a link.
pub struct FrameReader {
    rd: OwnedReadHalf,
    buf: BytesMut,
    counters: Arc<Counters>,
}

impl FrameReader {
    pub fn new(rd: OwnedReadHalf, counters: Arc<Counters>) -> FrameReader {
        FrameReader { rd, buf: BytesMut::new(), counters }
    }

    /// The next frame of a joined link, from `peer` (checked, and counted when it is not
    /// from it), within [`SILENT`]. The error says why the link ends: silent, closed by the
    /// partner, unreadable, or a frame out of place.
    pub async fn next_from(&mut self, peer: &mut Peer) -> Result<Frame, String> {
        let f = match tokio::time::timeout(SILENT, self.next()).await {
            Err(_) => return Err(format!("silent for {} ms", SILENT.as_millis())),
            Ok(Err(LinkError::Closed)) => return Err("the partner closed it".to_string()),
            Ok(Err(e)) => return Err(e.to_string()),
            Ok(Ok(f)) => f,
        };
        peer.check(&f.header, &self.counters)?;
        Ok(f)
    }

    /// The next whole frame. A frame that does not decode is counted and ends the link.
    pub async fn next(&mut self) -> Result<Frame, LinkError> {
        loop {
            match codec::decode(&self.buf) {
                Ok(Some((frame, used))) => {
                    self.buf.advance(used);
                    return Ok(frame);
                }
                Ok(None) => {}
                Err(e) => {
                    self.counters.refused(&e);
                    return Err(LinkError::Bad(e));
                }
            }
            if self.buf.capacity() - self.buf.len() < 64 << 10 {
                self.buf.reserve(64 << 10);
            }
            if self.rd.read_buf(&mut self.buf).await? == 0 {
                if self.buf.is_empty() {
                    return Err(LinkError::Closed);
                }
                self.counters.refused(&FrameError::Truncated);
                return Err(LinkError::Bad(FrameError::Truncated));
            }
        }
    }
}

/// The sender of a joined link: every frame must come from it, in order.
#[derive(Clone, Copy, Debug)]
pub struct Peer {
    pub cluster: ClusterId,
    pub node: NodeId,
    pub generation: u32,
    seq: u64,
}

impl Peer {
    /// The sender of the join frame `h`.
    pub fn new(h: &Header) -> Peer {
        Peer { cluster: h.cluster, node: h.node, generation: h.generation, seq: h.seq }
    }

    /// Checks that `h` comes from the same sender, after the last frame; counts it when
    /// it does not.
    pub fn check(&mut self, h: &Header, counters: &Counters) -> Result<(), String> {
        if h.cluster != self.cluster {
            counters.foreign.fetch_add(1, Ordering::Relaxed);
            return Err(format!("a frame of cluster {:#x}", h.cluster.0));
        }
        if h.node != self.node || h.generation != self.generation || h.seq <= self.seq {
            counters.stale.fetch_add(1, Ordering::Relaxed);
            return Err(format!(
                "a frame from node {} run {} seq {} after node {} run {} seq {}",
                h.node.0, h.generation, h.seq, self.node.0, self.generation, self.seq
            ));
        }
        self.seq = h.seq;
        Ok(())
    }
}

/// Who we are on the wire: the header of every frame we send, but for its seq.
#[derive(Clone, Copy, Debug)]
pub struct Sender {
    pub cluster: ClusterId,
    pub node: NodeId,
    pub generation: u32,
}

/// The writer of a link: `first` (the join), then every queued message in order, with a
/// heartbeat each beat, until the queue closes, [`Out::Close`] comes, or a write fails;
/// then it shuts the write side and notifies `closed`. Queued messages are written in
/// batches of up to 1 MiB.
pub async fn writer(
    mut wr: OwnedWriteHalf,
    mut rx: mpsc::UnboundedReceiver<Out>,
    me: Sender,
    first: Message,
    beats_sent: Arc<AtomicU64>,
    closed: Arc<Notify>,
) {
    let mut seq = 0u64;
    let mut buf = Vec::new();
    let mut frame = |buf: &mut Vec<u8>, message: Message| {
        let header = Header { cluster: me.cluster, node: me.node, generation: me.generation, seq };
        seq += 1;
        Frame { header, message }.encode(buf);
    };
    frame(&mut buf, first);
    let mut beat = tokio::time::interval(BEAT);
    beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // A test setting (failpoint `mirror-send:MS`): each batch that carries
    // records for the partner's mirror is held that long before it is sent.
    let hold = crate::failpoint::pause_ms("mirror-send").map(Duration::from_millis);
    let mut records = false;
    // The outbox whose records go out at the instant given.
    let mut later: Option<(tokio::time::Instant, Arc<Outbox>)> = None;
    'link: loop {
        if !buf.is_empty() {
            if let (Some(hold), true) = (hold, std::mem::take(&mut records)) {
                tokio::time::sleep(hold).await;
            }
            if wr.write_all(&buf).await.is_err() {
                break;
            }
            buf.clear();
        }
        tokio::select! {
            biased;
            () = async { tokio::time::sleep_until(later.as_ref().expect("guarded").0).await }, if later.is_some() => {
                if let Some((_, outbox)) = later.take() {
                    outbox.send(None);
                }
            }
            m = rx.recv() => {
                let mut next = m;
                loop {
                    match next {
                        Some(Out::Msg(m)) => {
                            records |= matches!(m, Message::Mirror { .. });
                            frame(&mut buf, m)
                        }
                        Some(Out::Later(outbox)) => {
                            later.get_or_insert_with(|| (tokio::time::Instant::now() + super::outbox::HOLD, outbox));
                        }
                        Some(Out::Close) | None => {
                            let _ = wr.write_all(&buf).await;
                            break 'link;
                        }
                    }
                    if buf.len() >= WRITE_BATCH {
                        break;
                    }
                    match rx.try_recv() {
                        Ok(o) => next = Some(o),
                        Err(_) => break,
                    }
                }
            }
            _ = beat.tick() => {
                frame(&mut buf, Message::Heartbeat(Status { health: Health::Healthy, sets: Vec::new() }));
                beats_sent.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
    let _ = wr.shutdown().await;
    closed.notify_one();
}
