//! A fast SMB 3 client for two of issue 13's benchmarks, built on the
//! `protocol` crate's client-side encoders (raw NTLMSSP, SMB 3.0.2, no
//! signing): a Python client cannot keep the server busy.
//!
//! `bench_client open-close --port P --share S --connections N --seconds T [--persistent]`
//! opens and closes a file as fast as it can on N connections at once, one
//! request at a time on each (as smbtorture's `smb2.bench.path-contention-shared`
//! does), each connection its own file, and prints one JSON line: the
//! opens+closes per second, how many opens were granted a persistent
//! handle, and the client's own CPU time. With `--persistent` every CREATE
//! carries DH2Q with SMB2_DHANDLE_FLAG_PERSISTENT and no oplock ([MS-SMB2]
//! 2.2.13.2.11, 3.3.5.9.10: a persistent handle needs a lease or no
//! caching); without it, no create context at all.
//!
//! `bench_client stall --port P --share S --kills K [--clients C] [--gap MIN:MAX]
//! [--retry-ms MS] [--seed N] [--log FILE] -- DUET ARGS...` measures the
//! restart stall: it starts the server (`DUET ARGS`, stderr to `--log`),
//! runs C client threads that each hold a persistent handle (DH2Q with the
//! persistent flag on a continuously available share) and write 4 KiB
//! stamped blocks in a loop, and K times (MIN..MAX seconds after every
//! client is writing again, default 0.2:0.6) kills the server with SIGKILL
//! and starts it again at once. A client whose connection drops reconnects
//! the way Windows does ([MS-SMB2] 3.2.4.2.4, 3.2.4.4, 3.2.4.1.1): it tries
//! a TCP connection every `--retry-ms` (default 10; each connect given
//! 100 ms, [`CONNECT_TIMEOUT`]) until one is taken, then
//! NEGOTIATE with the same ClientGuid, SESSION_SETUP with PreviousSessionId,
//! TREE_CONNECT, DH2C for its handle (same CreateGuid, persistent flag), and
//! resends its unanswered WRITE with SMB2_FLAGS_REPLAY_OPERATION.
//!
//! Everything runs in one process, so the kill, the server's start and the
//! clients' events are on one clock ([`Instant`], CLOCK_MONOTONIC). Per kill
//! and client it records:
//!
//! - **stall**: from the SIGKILL (the instant before `kill(2)`) to the
//!   answer of the client's replayed WRITE;
//! - **client delay**: the client's own reconnect delay, the part of its
//!   backoff that the server did not cause: from the server's "listening"
//!   line to the start of the client's TCP connect that succeeded (at most
//!   one retry interval; 0 when the client connected first);
//! - **beyond**: stall minus client delay, the server's part (the target:
//!   p99 < 1 s);
//! - the server's exec to "listening" (read from its stderr as it comes).
//!
//! At the end each client reads back every block it had acknowledged and
//! closes its handle; the server is stopped with SIGTERM. It prints the
//! percentiles, one `samples ..., errors E` line, and exits 1 if any client
//! saw an error: a failed reconnect step, an error status, a replayed WRITE
//! that failed, an acknowledged block that read back wrong, or a connection
//! lost without a kill.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command as Process, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use clap::{Parser, Subcommand};
use protocol::auth::ntlm;
use protocol::header::{flags, Command, Header};
use protocol::msg::close::CloseRequest;
use protocol::msg::create::{create_disposition, oplock_level, share_access, CreateRequest, CreateResponse};
use protocol::msg::create_context::{
    durable_v2_flags, DurableHandleReconnectV2, DurableHandleRequestV2, RequestContext, ResponseContext,
};
use protocol::msg::negotiate::{dialect, NegotiateRequest, NegotiateResponse};
use protocol::msg::read::{ReadRequest, ReadResponse};
use protocol::msg::session_setup::{SessionSetupRequest, SessionSetupResponse};
use protocol::msg::tree_connect::{share_capabilities, TreeConnectRequest, TreeConnectResponse};
use protocol::msg::write::WriteRequest;
use protocol::msg::FileId;
use protocol::NtStatus;

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Opens and closes files as fast as it can.
    OpenClose {
        #[arg(long)]
        port: u16,
        #[arg(long)]
        share: String,
        #[arg(long, default_value_t = 4)]
        connections: usize,
        #[arg(long, default_value_t = 5.0)]
        seconds: f64,
        /// DH2Q with the persistent flag on every open.
        #[arg(long)]
        persistent: bool,
        #[arg(long, default_value = "duet")]
        user: String,
        #[arg(long, default_value = "duetpass")]
        password: String,
    },
    /// Kills and restarts the server under clients that hold persistent handles.
    Stall {
        #[arg(long)]
        port: u16,
        #[arg(long)]
        share: String,
        #[arg(long, default_value_t = 100)]
        kills: usize,
        #[arg(long, default_value_t = 1)]
        clients: usize,
        /// Seconds after every client is writing again before the next kill, MIN:MAX.
        #[arg(long, default_value = "0.2:0.6")]
        gap: String,
        /// The clients' reconnect backoff: one TCP connect attempt every MS milliseconds.
        #[arg(long, default_value_t = 10)]
        retry_ms: u64,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// The server's log (its stdout and stderr, appended).
        #[arg(long, default_value = "duet.log")]
        log: String,
        /// One line per kill and client (tab-separated milliseconds).
        #[arg(long)]
        samples: Option<String>,
        #[arg(long, default_value = "duet")]
        user: String,
        #[arg(long, default_value = "duetpass")]
        password: String,
        /// The server's command line.
        #[arg(last = true, required = true)]
        server: Vec<String>,
    },
}

fn main() {
    let code = match Cli::parse().cmd {
        Cmd::OpenClose { port, share, connections, seconds, persistent, user, password } => {
            open_close(port, &share, connections, seconds, persistent, &user, &password)
        }
        Cmd::Stall { port, share, kills, clients, gap, retry_ms, seed, log, samples, user, password, server } => {
            let gap = parse_gap(&gap);
            let opts =
                StallOpts { port, share, kills, clients, gap, retry_ms, seed, log, samples, user, password, server };
            stall(opts)
        }
    };
    std::process::exit(code);
}

fn parse_gap(s: &str) -> (f64, f64) {
    let (a, b) = s.split_once(':').unwrap_or((s, s));
    let a: f64 = a.parse().unwrap_or(0.2);
    let b: f64 = b.parse().unwrap_or(a);
    (a, b.max(a))
}

// --- the raw client ------------------------------------------------------------

/// Why a call did not succeed.
#[derive(Debug)]
enum Fail {
    /// The connection is gone (or never came): reconnect.
    Lost(String),
    /// The server answered with an error status, or an answer did not parse.
    Status(String, u32),
}

impl std::fmt::Display for Fail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Fail::Lost(s) => write!(f, "connection lost: {s}"),
            Fail::Status(what, s) => write!(f, "{what}: status 0x{s:08x}"),
        }
    }
}

fn lost(e: impl std::fmt::Display) -> Fail {
    Fail::Lost(e.to_string())
}

fn bad(what: &str) -> Fail {
    Fail::Status(format!("{what}: malformed answer"), 0)
}

/// SMB2_GLOBAL_CAP_LEASING | LARGE_MTU | PERSISTENT_HANDLES | ENCRYPTION ([MS-SMB2] 2.2.3).
const CLIENT_CAPS: u32 = 0x02 | 0x04 | 0x10 | 0x40;
/// GENERIC_READ | GENERIC_WRITE.
const ACCESS_RW: u32 = 0x8000_0000 | 0x4000_0000;
/// How long a reconnect's TCP connect may take before it is tried again. A
/// connect made while the killed server's listening socket is being torn
/// down can lose its SYN; without a limit the client would wait out TCP's
/// 1 s retransmission timeout (seen: stalls of 1,000 to 1,021 ms after a
/// first connect attempt that "succeeded", the server listening after 19 ms).
const CONNECT_TIMEOUT: Duration = Duration::from_millis(100);
/// How long one answer may take before the connection counts as lost.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(30);

/// One connection, session and tree.
struct Conn {
    s: TcpStream,
    next_mid: u64,
    session_id: u64,
    tree_id: u32,
}

impl Conn {
    fn on(s: TcpStream) -> Result<Conn, Fail> {
        s.set_nodelay(true).map_err(lost)?;
        s.set_read_timeout(Some(ANSWER_TIMEOUT)).map_err(lost)?;
        Ok(Conn { s, next_mid: 0, session_id: 0, tree_id: 0 })
    }

    /// NEGOTIATE (3.0.2 only), SESSION_SETUP (NTLMv2, naming `previous`
    /// as PreviousSessionId, [MS-SMB2] 3.2.4.2.3) and TREE_CONNECT. Returns
    /// the tree's share capabilities.
    fn setup(&mut self, guid: [u8; 16], user: &str, pass: &str, share: &str, previous: u64) -> Result<u32, Fail> {
        let mut b = BytesMut::new();
        NegotiateRequest {
            security_mode: 1,
            capabilities: CLIENT_CAPS,
            client_guid: guid,
            dialects: vec![dialect::SMB3_0_2],
            contexts: vec![],
        }
        .encode(&mut b);
        let (_, m) = self.call(Command::Negotiate, &b, 0, "negotiate")?;
        NegotiateResponse::parse(&m).map_err(|_| bad("negotiate"))?;

        let (h, m) = self.session_setup(&ntlm::client::negotiate(), previous)?;
        if h.status != NtStatus::MORE_PROCESSING_REQUIRED.0 {
            return Err(Fail::Status("session setup".into(), h.status));
        }
        self.session_id = h.session_id;
        let challenge = SessionSetupResponse::parse(&m).map_err(|_| bad("challenge"))?.security_buffer.to_vec();
        let (auth, _key) = ntlm::client::authenticate(&challenge, user, "", pass, rand::random(), rand::random())
            .map_err(|_| bad("challenge"))?;
        let (h, _) = self.session_setup(&auth, previous)?;
        if h.status != NtStatus::SUCCESS.0 {
            return Err(Fail::Status("session setup".into(), h.status));
        }

        let mut b = BytesMut::new();
        TreeConnectRequest { flags: 0, path: format!(r"\\127.0.0.1\{share}") }.encode(&mut b);
        let (h, m) = self.call(Command::TreeConnect, &b, 0, "tree connect")?;
        self.tree_id = h.tree_id;
        Ok(TreeConnectResponse::parse(&m).map_err(|_| bad("tree connect"))?.capabilities)
    }

    fn session_setup(&mut self, token: &[u8], previous: u64) -> Result<(Header, Vec<u8>), Fail> {
        let mut b = BytesMut::new();
        SessionSetupRequest {
            flags: 0,
            security_mode: 1,
            capabilities: 0,
            channel: 0,
            previous_session_id: previous,
            security_buffer: token,
        }
        .encode(&mut b);
        self.exchange(Command::SessionSetup, &b, 0)
    }

    /// Sends one request and reads its final answer; an error status is a
    /// [`Fail::Status`] (but MORE_PROCESSING_REQUIRED is the caller's).
    fn call(&mut self, cmd: Command, body: &[u8], hflags: u32, what: &str) -> Result<(Header, Vec<u8>), Fail> {
        let (h, m) = self.exchange(cmd, body, hflags)?;
        if h.status != NtStatus::SUCCESS.0 {
            return Err(Fail::Status(what.into(), h.status));
        }
        Ok((h, m))
    }

    fn exchange(&mut self, cmd: Command, body: &[u8], hflags: u32) -> Result<(Header, Vec<u8>), Fail> {
        let mid = self.next_mid;
        self.next_mid += 1;
        let mut m = BytesMut::with_capacity(68 + body.len());
        m.extend_from_slice(&[0, 0, 0, 0]);
        Header {
            command: cmd as u16,
            message_id: mid,
            credits: 64,
            credit_charge: 1,
            flags: hflags,
            session_id: self.session_id,
            tree_id: self.tree_id,
            ..Default::default()
        }
        .encode(&mut m);
        m.extend_from_slice(body);
        let len = m.len() - 4;
        m[1..4].copy_from_slice(&[(len >> 16) as u8, (len >> 8) as u8, len as u8]);
        self.s.write_all(&m).map_err(lost)?;
        loop {
            let msg = self.recv()?;
            let h = Header::parse(&msg).map_err(|_| bad("header"))?;
            if h.message_id != mid {
                continue; // a break notice or a stray answer
            }
            if h.status == NtStatus::PENDING.0 && h.flags & flags::ASYNC_COMMAND != 0 {
                continue;
            }
            return Ok((h, msg));
        }
    }

    fn recv(&mut self) -> Result<Vec<u8>, Fail> {
        let mut nb = [0u8; 4];
        self.s.read_exact(&mut nb).map_err(lost)?;
        let len = ((nb[1] as usize) << 16) | ((nb[2] as usize) << 8) | nb[3] as usize;
        let mut msg = vec![0u8; len];
        self.s.read_exact(&mut msg).map_err(lost)?;
        Ok(msg)
    }

    /// CREATE `name` (open or create, read-write, all sharing); `dh2` adds
    /// DH2Q or DH2C. Returns the FileId and whether a persistent handle was
    /// granted (a DH2Q answer with the persistent flag).
    fn create(&mut self, name: &str, dh2: Option<RequestContext<'_>>) -> Result<(FileId, bool), Fail> {
        let mut b = BytesMut::new();
        CreateRequest {
            security_flags: 0,
            requested_oplock_level: oplock_level::NONE,
            impersonation_level: 2,
            smb_create_flags: 0,
            desired_access: ACCESS_RW,
            file_attributes: 0,
            share_access: share_access::READ | share_access::WRITE | share_access::DELETE,
            create_disposition: create_disposition::OPEN_IF,
            create_options: 0x40, // FILE_NON_DIRECTORY_FILE
            name: name.into(),
            create_contexts: dh2.into_iter().collect(),
        }
        .encode(&mut b);
        let (_, m) = self.call(Command::Create, &b, 0, "create")?;
        let r = CreateResponse::parse(&m).map_err(|_| bad("create"))?;
        let persistent = r.create_contexts.iter().any(|c| {
            matches!(c, ResponseContext::DurableHandleV2 { flags, .. } if flags & durable_v2_flags::PERSISTENT != 0)
        });
        Ok((r.file_id, persistent))
    }

    fn close(&mut self, file_id: FileId) -> Result<(), Fail> {
        let mut b = BytesMut::new();
        CloseRequest { flags: 0, file_id }.encode(&mut b);
        self.call(Command::Close, &b, 0, "close").map(|_| ())
    }

    fn read(&mut self, file_id: FileId, offset: u64, length: u32) -> Result<Vec<u8>, Fail> {
        let mut b = BytesMut::new();
        ReadRequest {
            padding: 0x50,
            flags: 0,
            length,
            offset,
            file_id,
            minimum_count: 0,
            channel: 0,
            remaining_bytes: 0,
            read_channel_info: &[],
        }
        .encode(&mut b);
        let (_, m) = self.call(Command::Read, &b, 0, "read")?;
        Ok(ReadResponse::parse(&m).map_err(|_| bad("read"))?.data.to_vec())
    }
}

fn write_body(file_id: FileId, offset: u64, data: &[u8]) -> BytesMut {
    let mut b = BytesMut::new();
    WriteRequest { offset, file_id, channel: 0, remaining_bytes: 0, flags: 0, data, write_channel_info: &[] }
        .encode(&mut b);
    b
}

fn cpu_seconds() -> f64 {
    use nix::sys::resource::{getrusage, UsageWho};
    use nix::sys::time::TimeValLike;
    getrusage(UsageWho::RUSAGE_SELF)
        .map(|u| (u.user_time().num_microseconds() + u.system_time().num_microseconds()) as f64 / 1e6)
        .unwrap_or(f64::NAN)
}

// --- open-close ----------------------------------------------------------------

fn open_close(port: u16, share: &str, conns: usize, seconds: f64, persistent: bool, user: &str, pass: &str) -> i32 {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    // Every connection is set up before the clock starts.
    let mut ready = Vec::new();
    for _ in 0..conns {
        let c = TcpStream::connect(addr).map_err(lost).and_then(Conn::on).and_then(|mut c| {
            let caps = c.setup(rand::random(), user, pass, share, 0)?;
            Ok((c, caps))
        });
        match c {
            Ok(c) => ready.push(c),
            Err(e) => {
                eprintln!("bench_client: setup: {e}");
                return 1;
            }
        }
    }
    if persistent && ready.iter().any(|(_, caps)| caps & share_capabilities::CONTINUOUS_AVAILABILITY == 0) {
        eprintln!("bench_client: share {share} is not continuously available");
    }
    let stop = Arc::new(AtomicBool::new(false));
    let cpu0 = cpu_seconds();
    let t0 = Instant::now();
    let workers: Vec<_> = ready
        .into_iter()
        .enumerate()
        .map(|(i, (mut c, _))| {
            let stop = stop.clone();
            thread::spawn(move || -> Result<(u64, u64), Fail> {
                let name = format!("oc-{i}.dat");
                let (mut ops, mut granted) = (0u64, 0u64);
                while !stop.load(Ordering::Relaxed) {
                    let dh2 = persistent.then(|| {
                        RequestContext::DurableHandleRequestV2(DurableHandleRequestV2 {
                            timeout: 0,
                            flags: durable_v2_flags::PERSISTENT,
                            create_guid: rand::random(),
                        })
                    });
                    let (fid, p) = c.create(&name, dh2)?;
                    c.close(fid)?;
                    ops += 1;
                    granted += p as u64;
                }
                Ok((ops, granted))
            })
        })
        .collect();
    thread::sleep(Duration::from_secs_f64(seconds));
    stop.store(true, Ordering::Relaxed);
    let (mut ops, mut granted, mut errors) = (0u64, 0u64, 0u64);
    for w in workers {
        match w.join() {
            Ok(Ok((o, g))) => {
                ops += o;
                granted += g;
            }
            Ok(Err(e)) => {
                eprintln!("bench_client: {e}");
                errors += 1;
            }
            Err(_) => errors += 1,
        }
    }
    let secs = t0.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - cpu0;
    println!(
        "{{\"ops\": {ops}, \"ops_per_s\": {:.1}, \"persistent_granted\": {granted}, \"seconds\": {secs:.3}, \"client_cpu_s\": {cpu:.3}, \"errors\": {errors}}}",
        ops as f64 / secs
    );
    if errors > 0 || (persistent && granted < ops) {
        if persistent && granted < ops {
            eprintln!("bench_client: {} of {ops} opens were not granted a persistent handle", ops - granted);
        }
        return 1;
    }
    0
}

// --- stall ---------------------------------------------------------------------

struct StallOpts {
    port: u16,
    share: String,
    kills: usize,
    clients: usize,
    gap: (f64, f64),
    retry_ms: u64,
    seed: u64,
    log: String,
    samples: Option<String>,
    user: String,
    password: String,
    server: Vec<String>,
}

/// What the supervisor and the clients share.
struct Shared {
    /// The instant before each SIGKILL, in order.
    kills: Mutex<Vec<Instant>>,
    /// The instant each start's "listening" line was read; index 0 is the first start.
    listening: Mutex<Vec<Instant>>,
    /// How many clients have answered their replay after the latest kill (and are writing).
    recovered: AtomicUsize,
    /// Set at the end: the clients check their blocks, close and stop.
    stop: AtomicBool,
    requests: AtomicU64,
}

/// One kill as one client saw it.
struct Sample {
    kill: usize,
    client: usize,
    stall: Duration,
    delay: Duration,
    /// Kill to the client's first failed send or read.
    detect: Duration,
    /// Reconnect attempts the client made.
    attempts: u32,
    /// Of those, connects that timed out after [`CONNECT_TIMEOUT`].
    timeouts: u32,
}

enum Report {
    Sample(Sample),
    Error(usize, String),
}

/// A 4 KiB block that names its client and sequence number.
fn stamp(client: usize, seq: u64) -> Vec<u8> {
    let line = format!("client {client} write {seq}\n");
    line.as_bytes().iter().copied().cycle().take(4096).collect()
}

const SLOTS: u64 = 16;

struct StallClient {
    id: usize,
    addr: SocketAddr,
    share: String,
    user: String,
    pass: String,
    retry: Duration,
    guid: [u8; 16],
    create_guid: [u8; 16],
    name: String,
    sh: Arc<Shared>,
    tx: mpsc::Sender<Report>,
}

impl StallClient {
    fn err(&self, msg: String) {
        let _ = self.tx.send(Report::Error(self.id, msg));
    }

    fn run(self) {
        // Set up: a persistent handle on the share.
        let (mut conn, mut fid) = match self.first_setup() {
            Ok(c) => c,
            Err(e) => return self.err(format!("setup: {e}")),
        };
        let mut acked: Vec<Option<u64>> = vec![None; SLOTS as usize];
        let mut seen_kills = 0usize;
        let mut seq = 0u64;
        self.sh.recovered.fetch_add(1, Ordering::SeqCst);
        while !self.sh.stop.load(Ordering::SeqCst) {
            seq += 1;
            let slot = seq % SLOTS;
            let body = write_body(fid, slot * 4096, &stamp(self.id, seq));
            match conn.call(Command::Write, &body, 0, "write") {
                Ok(_) => {
                    acked[slot as usize] = Some(seq);
                    self.sh.requests.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                Err(Fail::Status(what, s)) => return self.err(format!("{what}: status 0x{s:08x}")),
                Err(Fail::Lost(_)) => {}
            }
            // The connection is gone: which kill was it?
            let failed_at = Instant::now();
            let (k, killed_at) = {
                let kills = self.sh.kills.lock().unwrap();
                (kills.len(), kills.last().copied())
            };
            let Some(killed_at) = killed_at.filter(|_| k > seen_kills) else {
                return self.err(format!("connection lost without a kill (after kill {seen_kills})"));
            };
            seen_kills = k;
            match self.recover(conn.session_id, fid, slot, seq) {
                Ok((c2, f2, answered, connect_start, attempts, timeouts)) => {
                    conn = c2;
                    fid = f2;
                    acked[slot as usize] = Some(seq);
                    self.sh.requests.fetch_add(1, Ordering::Relaxed);
                    let listened = self.sh.listening.lock().unwrap().get(k).copied();
                    let delay = listened.map(|l| connect_start.saturating_duration_since(l)).unwrap_or_default();
                    let _ = self.tx.send(Report::Sample(Sample {
                        kill: k,
                        client: self.id,
                        stall: answered - killed_at,
                        delay,
                        detect: failed_at.saturating_duration_since(killed_at),
                        attempts,
                        timeouts,
                    }));
                    self.sh.recovered.fetch_add(1, Ordering::SeqCst);
                }
                Err(e) => return self.err(format!("kill {k}: {e}")),
            }
        }
        // The end: every acknowledged block must read back as written.
        for (slot, s) in acked.iter().enumerate() {
            let Some(s) = *s else { continue };
            match conn.read(fid, slot as u64 * 4096, 4096) {
                Ok(d) if d == stamp(self.id, s) => {}
                Ok(d) => self.err(format!(
                    "slot {slot}: acknowledged write {s} reads back as {:?}",
                    String::from_utf8_lossy(&d[..d.len().min(40)])
                )),
                Err(e) => return self.err(format!("final read: {e}")),
            }
        }
        if let Err(e) = conn.close(fid) {
            self.err(format!("final close: {e}"));
        }
    }

    fn first_setup(&self) -> Result<(Conn, FileId), Fail> {
        let mut c = Conn::on(TcpStream::connect(self.addr).map_err(lost)?)?;
        let caps = c.setup(self.guid, &self.user, &self.pass, &self.share, 0)?;
        if caps & share_capabilities::CONTINUOUS_AVAILABILITY == 0 {
            return Err(Fail::Status(format!("share {} is not continuously available", self.share), 0));
        }
        let dh2q = RequestContext::DurableHandleRequestV2(DurableHandleRequestV2 {
            timeout: 0,
            flags: durable_v2_flags::PERSISTENT,
            create_guid: self.create_guid,
        });
        let (fid, persistent) = c.create(&self.name, Some(dh2q))?;
        if !persistent {
            return Err(Fail::Status("create: no persistent handle granted".into(), 0));
        }
        Ok((c, fid))
    }

    /// Reconnects as Windows does and resends the WRITE of `seq` with the
    /// replay flag. Returns the new connection and FileId, when the resend
    /// was answered, when the successful TCP connect began and how many
    /// connects were tried.
    fn recover(
        &self,
        previous: u64,
        fid: FileId,
        slot: u64,
        seq: u64,
    ) -> Result<(Conn, FileId, Instant, Instant, u32, u32), Fail> {
        let give_up = Instant::now() + Duration::from_secs(90);
        let (mut attempts, mut timeouts) = (0, 0);
        loop {
            // Backoff: one connect attempt every `retry`.
            let (s, start) = loop {
                let start = Instant::now();
                attempts += 1;
                match TcpStream::connect_timeout(&self.addr, CONNECT_TIMEOUT) {
                    Ok(s) => break (s, start),
                    Err(e) if e.kind() == std::io::ErrorKind::TimedOut => timeouts += 1,
                    Err(e) if Instant::now() > give_up => return Err(lost(format!("no server for 90 s: {e}"))),
                    Err(_) => thread::sleep(self.retry),
                }
            };
            let mut c = Conn::on(s)?;
            let step = (|| {
                c.setup(self.guid, &self.user, &self.pass, &self.share, previous)?;
                let dh2c = RequestContext::DurableHandleReconnectV2(DurableHandleReconnectV2 {
                    file_id: fid,
                    create_guid: self.create_guid,
                    flags: durable_v2_flags::PERSISTENT,
                });
                let (fid2, _) = c.create(&self.name, Some(dh2c))?;
                if fid2.persistent != fid.persistent {
                    return Err(Fail::Status("DH2C gave another persistent file id".into(), 0));
                }
                let body = write_body(fid2, slot * 4096, &stamp(self.id, seq));
                c.call(Command::Write, &body, flags::REPLAY_OPERATION, "replayed write")?;
                Ok(fid2)
            })();
            match step {
                Ok(fid2) => return Ok((c, fid2, Instant::now(), start, attempts, timeouts)),
                // The new server went too (it should not: the supervisor waits) or was not
                // ready: try again.
                Err(Fail::Lost(_)) if Instant::now() < give_up => thread::sleep(self.retry),
                Err(e) => return Err(e),
            }
        }
    }
}

/// The server under test, restarted by the supervisor.
struct Server {
    argv: Vec<String>,
    log: String,
    child: Option<Child>,
    sh: Arc<Shared>,
}

impl Server {
    /// Starts the server; returns exec to "listening".
    fn start(&mut self) -> Result<Duration, String> {
        let out = OpenOptions::new().create(true).append(true).open(&self.log).map_err(|e| e.to_string())?;
        let err_log = out.try_clone().map_err(|e| e.to_string())?;
        let t0 = Instant::now();
        // In the log's folder, where a core dump lands.
        let cwd = std::path::Path::new(&self.log).parent().filter(|p| !p.as_os_str().is_empty());
        let mut child = Process::new(&self.argv[0]);
        if let Some(d) = cwd {
            child.current_dir(d);
        }
        let mut child = child
            .args(&self.argv[1..])
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("start {}: {e}", self.argv[0]))?;
        let stderr = child.stderr.take().ok_or("no stderr")?;
        self.child = Some(child);
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || tee(stderr, err_log, tx));
        match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(at) => {
                self.sh.listening.lock().unwrap().push(at);
                Ok(at - t0)
            }
            Err(_) => {
                let child = self.child.as_mut().ok_or("no server")?;
                if let Ok(Some(st)) = child.try_wait() {
                    return Err(format!("the server exited before listening: {st}"));
                }
                Err(format!("the server did not listen within 60 s; its threads: {}", self.backtrace()))
            }
        }
    }

    /// The server's threads' stacks (gdb, when there is one), appended to
    /// the log; returns where they went.
    fn backtrace(&self) -> String {
        let Some(child) = self.child.as_ref() else { return "no server".into() };
        let pid = child.id().to_string();
        match Process::new("gdb").args(["-batch", "-p", &pid, "-ex", "thread apply all bt"]).output() {
            Ok(out) => {
                if let Ok(mut f) = OpenOptions::new().append(true).open(&self.log) {
                    let _ = writeln!(f, "--- bench_client: the server's stacks (pid {pid}) ---");
                    let _ = f.write_all(&out.stdout);
                    let _ = f.write_all(&out.stderr);
                }
                format!("in {}", self.log)
            }
            Err(e) => format!("not taken (gdb: {e})"),
        }
    }

    /// SIGKILL, noting the instant; waits for the process to be gone.
    fn kill(&mut self) -> Result<(), String> {
        let child = self.child.as_mut().ok_or("no server")?;
        if let Ok(Some(st)) = child.try_wait() {
            return Err(format!("the server had exited by itself: {st}"));
        }
        self.sh.kills.lock().unwrap().push(Instant::now());
        child.kill().map_err(|e| e.to_string())?;
        child.wait().map_err(|e| e.to_string())?;
        Ok(())
    }

    /// The server's exit status when it has exited (by itself: the
    /// supervisor reaps what it kills).
    fn exited(&mut self) -> Option<String> {
        let child = self.child.as_mut()?;
        match child.try_wait() {
            Ok(Some(st)) => Some(st.to_string()),
            _ => None,
        }
    }

    fn terminate(&mut self) {
        if let Some(mut child) = self.child.take() {
            let pid = nix::unistd::Pid::from_raw(child.id() as i32);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
            let end = Instant::now() + Duration::from_secs(30);
            while Instant::now() < end {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Copies the server's stderr to its log; sends the instant of the
/// "duet: listening" line.
fn tee(stderr: impl Read, mut log: File, tx: mpsc::Sender<Instant>) {
    // Bytes, not lines of text: nothing the server writes may stop the copy
    // (a closed pipe would hide its last words).
    let mut r = BufReader::new(stderr);
    let mut line = Vec::new();
    loop {
        line.clear();
        match r.read_until(b'\n', &mut line) {
            Ok(0) => return,
            Ok(_) => {
                let now = Instant::now();
                if line.starts_with(b"duet: listening") {
                    let _ = tx.send(now);
                }
                let _ = log.write_all(&line);
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return,
        }
    }
}

/// A small deterministic generator for the kill gaps.
fn next_rand(state: &mut u64) -> f64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    (*state >> 11) as f64 / (1u64 << 53) as f64
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    // Nearest rank.
    let rank = ((p / 100.0) * sorted.len() as f64).ceil().max(1.0) as usize;
    sorted[rank.min(sorted.len()) - 1]
}

fn summary(name: &str, mut v: Vec<f64>) -> String {
    v.sort_by(|a, b| a.total_cmp(b));
    format!(
        "{name}: p50 {:.1}, p99 {:.1}, max {:.1} ms ({} samples)",
        percentile(&v, 50.0),
        percentile(&v, 99.0),
        v.last().copied().unwrap_or(f64::NAN),
        v.len()
    )
}

fn stall(o: StallOpts) -> i32 {
    let sh = Arc::new(Shared {
        kills: Mutex::new(Vec::new()),
        listening: Mutex::new(Vec::new()),
        recovered: AtomicUsize::new(0),
        stop: AtomicBool::new(false),
        requests: AtomicU64::new(0),
    });
    let mut server = Server { argv: o.server.clone(), log: o.log.clone(), child: None, sh: sh.clone() };
    let mut starts = Vec::new();
    match server.start() {
        Ok(d) => starts.push(d),
        Err(e) => {
            eprintln!("bench_client: {e}");
            return 1;
        }
    }
    let addr = SocketAddr::from(([127, 0, 0, 1], o.port));
    let (tx, rx) = mpsc::channel();
    let mut handles = Vec::new();
    for id in 1..=o.clients {
        let c = StallClient {
            id,
            addr,
            share: o.share.clone(),
            user: o.user.clone(),
            pass: o.password.clone(),
            retry: Duration::from_millis(o.retry_ms),
            guid: rand::random(),
            create_guid: rand::random(),
            name: format!("stall-{id}.dat"),
            sh: sh.clone(),
            tx: tx.clone(),
        };
        handles.push(thread::spawn(move || c.run()));
    }
    drop(tx);

    let mut samples = Vec::new();
    let mut errors = Vec::new();
    let mut rng = o.seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut done = 0;
    // Waits until every client has recovered `want` times in all; collects reports.
    let wait_all = |want: usize, samples: &mut Vec<Sample>, errors: &mut Vec<(usize, String)>| -> bool {
        let end = Instant::now() + Duration::from_secs(120);
        while sh.recovered.load(Ordering::SeqCst) < want {
            match rx.recv_timeout(Duration::from_millis(5)) {
                Ok(Report::Sample(s)) => samples.push(s),
                Ok(Report::Error(c, e)) => {
                    eprintln!("bench_client: client {c}: {e}");
                    errors.push((c, e));
                    return false;
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => return false,
                Err(mpsc::RecvTimeoutError::Timeout) if Instant::now() > end => {
                    errors.push((0, format!("clients did not recover within 120 s (want {want})")));
                    return false;
                }
                Err(_) => {}
            }
        }
        true
    };
    let mut ok = wait_all(o.clients, &mut samples, &mut errors);
    while ok && done < o.kills {
        let gap = o.gap.0 + next_rand(&mut rng) * (o.gap.1 - o.gap.0);
        thread::sleep(Duration::from_secs_f64(gap));
        if let Err(e) = server.kill() {
            errors.push((0, e));
            break;
        }
        done += 1;
        match server.start() {
            Ok(d) => starts.push(d),
            Err(e) => {
                errors.push((0, e));
                break;
            }
        }
        ok = wait_all(o.clients * (done + 1), &mut samples, &mut errors);
        if done % 10 == 0 {
            eprintln!("bench_client: {done}/{} kills", o.kills);
        }
    }
    if !ok {
        // A client's connection went without a kill: did the server die by itself?
        thread::sleep(Duration::from_millis(100));
        if let Some(st) = server.exited() {
            errors.push((0, format!("the server died by itself after kill {done}: {st}")));
        }
    }
    thread::sleep(Duration::from_millis(200));
    sh.stop.store(true, Ordering::SeqCst);
    for h in handles {
        let _ = h.join();
    }
    for r in rx.try_iter() {
        match r {
            Report::Sample(s) => samples.push(s),
            Report::Error(c, e) => {
                eprintln!("bench_client: client {c}: {e}");
                errors.push((c, e));
            }
        }
    }
    if let Some(st) = server.exited() {
        errors.push((0, format!("the server died by itself: {st}")));
    }
    server.terminate();
    for (c, e) in &errors {
        if *c == 0 {
            eprintln!("bench_client: supervisor: {e}");
        }
    }

    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    if let Some(path) = &o.samples {
        if let Ok(mut f) = File::create(path) {
            let _ = writeln!(
                f,
                "kill\tclient\tstall_ms\tdelay_ms\tbeyond_ms\tdetect_ms\tattempts\tconnect_timeouts\tstart_ms"
            );
            for s in &samples {
                let start = starts.get(s.kill).map(|d| ms(*d)).unwrap_or(f64::NAN);
                let _ = writeln!(
                    f,
                    "{}\t{}\t{:.3}\t{:.3}\t{:.3}\t{:.3}\t{}\t{}\t{:.3}",
                    s.kill,
                    s.client,
                    ms(s.stall),
                    ms(s.delay),
                    ms(s.stall.saturating_sub(s.delay)),
                    ms(s.detect),
                    s.attempts,
                    s.timeouts,
                    start
                );
            }
        }
    }
    println!(
        "{}",
        summary("stall (SIGKILL to the replayed WRITE answered)", samples.iter().map(|s| ms(s.stall)).collect())
    );
    println!(
        "{}",
        summary(
            "beyond the client's reconnect delay",
            samples.iter().map(|s| ms(s.stall.saturating_sub(s.delay))).collect()
        )
    );
    println!(
        "{}",
        summary("client's reconnect delay (listening to its connect)", samples.iter().map(|s| ms(s.delay)).collect())
    );
    println!("{}", summary("server exec to listening", starts.iter().skip(1).map(|d| ms(*d)).collect()));
    println!("{}", summary("kill to the client's failed request", samples.iter().map(|s| ms(s.detect)).collect()));
    println!(
        "reconnect connects that timed out ({} ms each, a SYN lost): {} in {} samples",
        CONNECT_TIMEOUT.as_millis(),
        samples.iter().map(|s| s.timeouts).sum::<u32>(),
        samples.iter().filter(|s| s.timeouts > 0).count()
    );
    println!(
        "kills {done}, clients {}, samples {}, requests {}, errors {}",
        o.clients,
        samples.len(),
        sh.requests.load(Ordering::Relaxed),
        errors.len()
    );
    if errors.is_empty() && done == o.kills {
        0
    } else {
        1
    }
}
