//! Sequences of frames against a whole server, for the fuzz target
//! (`server/fuzz`, target `frames`) and the corpus test that CI runs
//! (`server/tests/fuzz_frames.rs`).
//!
//! [`run`] reads its input as a little program for a client: each step
//! starts with an opcode byte. Some steps do things by the rules (NEGOTIATE,
//! an NTLMv2 logon, a tree connect, a CREATE), so that the fuzzer reaches
//! the handlers behind authentication; the others send whatever bytes the
//! input holds, as framed or unframed data, alone or in compounds, plain,
//! signed or encrypted with the session's real keys, with message ids off
//! by any amount. The server runs in this process over an in-memory pipe,
//! on a current-thread runtime whose clock is paused, so timeouts and
//! deadlines cost no real time.
//!
//! What [`run`] checks: nothing panics (the fuzzer's panic hook aborts on a
//! panic in any task; the corpus test installs its own), and after the
//! program the server still answers a NEGOTIATE on a new connection.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use protocol::auth::ntlm;
use protocol::crypto::kdf::{self, SessionKeys};
use protocol::crypto::signing::{self, SigningAlgorithm};
use protocol::crypto::transform;
use protocol::header::{flags, Command, Header, HEADER_LEN};
use protocol::msg::create::CreateRequest;
use protocol::msg::negotiate::{cipher, dialect, NegotiateRequest, NegotiateResponse};
use protocol::msg::session_setup::{SessionSetupRequest, SessionSetupResponse};
use protocol::msg::tree_connect::TreeConnectRequest;
use protocol::msg::FileId;
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

use crate::config::{Config, ShareConfig};
use crate::state::Server;

const USER: &str = "duet";
const PASSWORD: &str = "duetpass";
/// How long (virtual time) the client waits for an answer.
const WAIT: Duration = Duration::from_secs(5);
/// Most steps one input runs, so that one input stays cheap.
const MAX_STEPS: usize = 64;

/// What the server answered during one input: (command, status) of every
/// answer the client read, in order. The corpus test checks with it that
/// the seeds reach the handlers they mean to.
pub type Answers = Vec<(u16, u32)>;

/// Runs one input against a fresh server. Panics when the server panicked
/// or stopped answering.
pub fn run(input: &[u8]) -> Answers {
    let rt =
        tokio::runtime::Builder::new_current_thread().enable_all().start_paused(true).build().expect("a tokio runtime");
    rt.block_on(run_async(input))
}

async fn run_async(input: &[u8]) -> Answers {
    let share = share_dir();
    let mut cfg = Config { listen: vec![], ..Config::default() };
    cfg.shares.push(ShareConfig::new("data", share.clone()));
    cfg.inline_users.push((USER.into(), PASSWORD.into()));
    let server = Arc::new(Server::new(cfg).expect("a server on the fuzz share"));

    let mut client = FuzzClient::connect(&server);
    let mut prog = Program { data: input, at: 0 };
    for _ in 0..MAX_STEPS {
        let Some(op) = prog.u8() else { break };
        if !client.step(op, &mut prog, &server).await {
            break;
        }
    }
    client.drain().await;
    let answers = std::mem::take(&mut client.answers);
    drop(client);

    // The server is still there for a newcomer.
    let mut probe = FuzzClient::connect(&server);
    let body = negotiate_body(dialect::SMB2_1);
    let m = probe.message(Command::Negotiate, &body);
    probe.send_msg(m, false, false).await;
    let answer = probe.recv().await;
    assert!(answer.is_some(), "the server stopped answering NEGOTIATE after the input");
    let _ = std::fs::remove_dir_all(&share);
    answers
}

/// A fresh share directory per run (one per process and thread, emptied
/// before each input).
fn share_dir() -> PathBuf {
    let dir = std::env::temp_dir()
        .join(format!("duet-fuzz-{}-{:?}", std::process::id(), std::thread::current().id()))
        .to_path_buf();
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create the fuzz share");
    dir
}

/// The input, read front to back; every read past the end gives `None`.
struct Program<'a> {
    data: &'a [u8],
    at: usize,
}

impl Program<'_> {
    fn u8(&mut self) -> Option<u8> {
        let b = *self.data.get(self.at)?;
        self.at += 1;
        Some(b)
    }

    /// A length byte, then that many bytes (fewer at the end).
    fn bytes(&mut self) -> Vec<u8> {
        let n = self.u8().unwrap_or(0) as usize;
        let end = (self.at + n).min(self.data.len());
        let b = self.data[self.at..end].to_vec();
        self.at = end;
        b
    }
}

/// The client side of one in-memory connection.
struct FuzzClient {
    io: DuplexStream,
    next_mid: u64,
    dialect: u16,
    session_id: u64,
    tree_id: u32,
    keys: Option<SessionKeys>,
    file: FileId,
    /// Elements waiting to go out as one compound.
    chain: Vec<Vec<u8>>,
    last_mid: u64,
    answers: Answers,
}

/// Where the FileId sits in each command's request body ([MS-SMB2] 2.2),
/// so that generated bodies can name the file the client opened.
fn file_id_offset(command: u16) -> Option<usize> {
    match Command::from_u16(command)? {
        Command::Close
        | Command::Flush
        | Command::Lock
        | Command::Ioctl
        | Command::QueryDirectory
        | Command::ChangeNotify => Some(8),
        Command::OplockBreak => Some(8),
        Command::Read | Command::Write | Command::SetInfo => Some(16),
        Command::QueryInfo => Some(24),
        _ => None,
    }
}

impl FuzzClient {
    fn connect(server: &Arc<Server>) -> FuzzClient {
        let (mine, theirs) = tokio::io::duplex(1 << 20);
        let (rd, wr) = tokio::io::split(theirs);
        let peer: SocketAddr = "127.0.0.9:40000".parse().expect("literal address");
        let id = server.next_conn_id();
        tokio::spawn(crate::conn::serve_stream(server.clone(), Box::new(rd), Box::new(wr), peer, None, id));
        FuzzClient {
            io: mine,
            next_mid: 0,
            dialect: 0,
            session_id: 0,
            tree_id: 0,
            keys: None,
            file: FileId { persistent: 0, volatile: 0 },
            chain: Vec::new(),
            last_mid: 0,
            answers: Vec::new(),
        }
    }

    /// Runs one step; false when the connection is gone.
    async fn step(&mut self, op: u8, prog: &mut Program<'_>, server: &Arc<Server>) -> bool {
        match op % 12 {
            // Any bytes, framed as one NetBIOS message.
            0 => {
                let b = prog.bytes();
                self.send_framed(&b).await
            }
            // Any bytes, unframed (a frame cut short, a lying length).
            1 => {
                let b = prog.bytes();
                self.io.write_all(&b).await.is_ok()
            }
            2 => {
                let d = [dialect::SMB2_0_2, dialect::SMB2_1, dialect::SMB3_0, dialect::SMB3_0_2]
                    [prog.u8().unwrap_or(0) as usize % 4];
                self.negotiate(d).await
            }
            3 => self.login(PASSWORD).await,
            4 => self.login("wrong password").await,
            5 => {
                let share = if prog.u8().unwrap_or(0).is_multiple_of(2) { "data" } else { "IPC$" };
                let mut b = BytesMut::new();
                TreeConnectRequest { flags: 0, path: format!(r"\\127.0.0.1\{share}") }.encode(&mut b);
                let m = self.message(Command::TreeConnect, &b);
                self.send_msg(m, false, false).await;
                match self.recv().await {
                    Some(h) => {
                        self.tree_id = h.0.tree_id;
                        true
                    }
                    None => false,
                }
            }
            6 => {
                let name = ["", "a.txt", "dir", "a.txt:stream", "../x", "b"][prog.u8().unwrap_or(0) as usize % 6];
                let options = u32::from(prog.u8().unwrap_or(0));
                self.create(name, options).await
            }
            // A request of any command with a fuzzed body, queued for a
            // compound or sent now.
            7 => self.request(prog).await,
            8 => self.flush_chain(prog.u8().unwrap_or(0)).await,
            9 => {
                // CANCEL of the last request (sync form; async ids are the
                // server's).
                let mut m = self.message(Command::Cancel, &[4, 0, 0, 0]);
                m[24..32].copy_from_slice(&self.last_mid.to_le_bytes());
                self.next_mid -= 1;
                self.send_msg(m, false, false).await
            }
            10 => {
                self.drain().await;
                true
            }
            // Start over on a new connection.
            _ => {
                let answers = std::mem::take(&mut self.answers);
                *self = FuzzClient::connect(server);
                self.answers = answers;
                true
            }
        }
    }

    /// A header for the next MessageId with the client's session and tree.
    fn message(&mut self, command: Command, body: &[u8]) -> Vec<u8> {
        let mut m = BytesMut::new();
        Header {
            command: command as u16,
            message_id: self.next_mid,
            credits: 32,
            credit_charge: 1,
            session_id: self.session_id,
            tree_id: self.tree_id,
            ..Default::default()
        }
        .encode(&mut m);
        self.last_mid = self.next_mid;
        self.next_mid += 1;
        m.extend_from_slice(body);
        m.to_vec()
    }

    async fn request(&mut self, prog: &mut Program<'_>) -> bool {
        let command = u16::from(prog.u8().unwrap_or(0) % 19);
        let how = prog.u8().unwrap_or(0);
        let mid_delta = prog.u8().unwrap_or(0) as i8;
        let charge = prog.u8().unwrap_or(1);
        let mut body = prog.bytes();
        if how & 0x40 != 0 {
            if let Some(at) = file_id_offset(command) {
                if body.len() < at + 16 {
                    body.resize(at + 16, 0);
                }
                body[at..at + 8].copy_from_slice(&self.file.persistent.to_le_bytes());
                body[at + 8..at + 16].copy_from_slice(&self.file.volatile.to_le_bytes());
            }
        }
        let mut m = BytesMut::new();
        let mut hdr = Header {
            command,
            message_id: self.next_mid.wrapping_add_signed(i64::from(mid_delta)),
            credits: 32,
            credit_charge: u16::from(charge),
            session_id: if how & 0x80 != 0 { self.session_id ^ 1 } else { self.session_id },
            tree_id: self.tree_id,
            ..Default::default()
        };
        if how & 0x04 != 0 && !self.chain.is_empty() {
            hdr.flags |= flags::RELATED_OPERATIONS;
        }
        if how & 0x20 != 0 {
            hdr.flags |= flags::REPLAY_OPERATION;
        }
        hdr.encode(&mut m);
        self.last_mid = hdr.message_id;
        self.next_mid += u64::from(charge.max(1));
        m.extend_from_slice(&body);
        self.chain.push(m.to_vec());
        if how & 0x08 != 0 && self.chain.len() < 8 {
            return true;
        }
        self.flush_chain(how).await
    }

    /// Sends the queued elements as one compound, signed (bit 0) or
    /// encrypted (bit 1) when the client has keys.
    async fn flush_chain(&mut self, how: u8) -> bool {
        if self.chain.is_empty() {
            return true;
        }
        let n = self.chain.len();
        let mut out = Vec::new();
        for (i, mut m) in std::mem::take(&mut self.chain).into_iter().enumerate() {
            if i + 1 < n {
                while m.len() % 8 != 0 {
                    m.push(0);
                }
                let len = m.len() as u32;
                m[20..24].copy_from_slice(&len.to_le_bytes());
            }
            if how & 0x01 != 0 && self.keys.is_some() && how & 0x02 == 0 {
                self.sign(&mut m);
            }
            out.extend_from_slice(&m);
        }
        self.send_msg(out, false, how & 0x02 != 0).await
    }

    fn sign(&self, m: &mut [u8]) {
        let Some(k) = &self.keys else { return };
        let f = u32::from_le_bytes([m[16], m[17], m[18], m[19]]) | flags::SIGNED;
        m[16..20].copy_from_slice(&f.to_le_bytes());
        let alg =
            if self.dialect >= dialect::SMB3_0 { SigningAlgorithm::AesCmac } else { SigningAlgorithm::HmacSha256 };
        signing::sign(alg, &k.signing_key, m);
    }

    async fn send_msg(&mut self, mut m: Vec<u8>, sign: bool, encrypt: bool) -> bool {
        if sign {
            self.sign(&mut m);
        }
        if encrypt && self.dialect >= dialect::SMB3_0 {
            if let Some(k) = &self.keys {
                let nonce = [0x5a; 16];
                if let Ok(t) = transform::encrypt(cipher::AES_128_CCM, &k.decryption_key, self.session_id, &nonce, &m) {
                    m = t;
                }
            }
        }
        self.send_framed(&m).await
    }

    async fn send_framed(&mut self, m: &[u8]) -> bool {
        let len = m.len().min(0xFF_FFFF);
        let mut f = vec![0, (len >> 16) as u8, (len >> 8) as u8, len as u8];
        f.extend_from_slice(&m[..len]);
        self.io.write_all(&f).await.is_ok()
    }

    /// The next answer (decrypted when the client can), skipping interim
    /// STATUS_PENDING answers; `None` when the server closed the pipe or
    /// said nothing for [`WAIT`].
    async fn recv(&mut self) -> Option<(Header, Vec<u8>)> {
        loop {
            let mut h = [0u8; 4];
            tokio::time::timeout(WAIT, self.io.read_exact(&mut h)).await.ok()?.ok()?;
            let len = (usize::from(h[1]) << 16) | (usize::from(h[2]) << 8) | usize::from(h[3]);
            let mut msg = vec![0u8; len];
            tokio::time::timeout(WAIT, self.io.read_exact(&mut msg)).await.ok()?.ok()?;
            if msg.starts_with(&transform::TRANSFORM_PROTOCOL_ID) {
                let k = self.keys.as_ref()?;
                msg = transform::decrypt(cipher::AES_128_CCM, &k.encryption_key, &msg).ok()?;
            }
            if msg.len() < HEADER_LEN {
                return None;
            }
            let hdr = Header::parse(&msg).ok()?;
            self.answers.push((hdr.command, hdr.status));
            if hdr.status == protocol::NtStatus::PENDING.0 && hdr.flags & flags::ASYNC_COMMAND != 0 {
                continue;
            }
            return Some((hdr, msg));
        }
    }

    /// Reads whatever answers come until the server has been quiet for
    /// [`WAIT`] (virtual time).
    async fn drain(&mut self) {
        while self.recv().await.is_some() {}
    }

    async fn negotiate(&mut self, d: u16) -> bool {
        let body = negotiate_body(d);
        let m = self.message(Command::Negotiate, &body);
        self.send_msg(m, false, false).await;
        match self.recv().await {
            Some((_, msg)) => {
                if let Ok(r) = NegotiateResponse::parse(&msg) {
                    self.dialect = r.dialect_revision;
                }
                true
            }
            None => false,
        }
    }

    async fn session_setup(&mut self, token: &[u8]) -> Option<(Header, Vec<u8>)> {
        let mut b = BytesMut::new();
        SessionSetupRequest {
            flags: 0,
            security_mode: 1,
            capabilities: 0,
            channel: 0,
            previous_session_id: 0,
            security_buffer: token,
        }
        .encode(&mut b);
        let m = self.message(Command::SessionSetup, &b);
        self.send_msg(m, false, false).await;
        self.recv().await
    }

    async fn login(&mut self, password: &str) -> bool {
        let saved = self.session_id;
        self.session_id = 0;
        let Some((h, msg)) = self.session_setup(&ntlm::client::negotiate()).await else { return false };
        let Ok(r) = SessionSetupResponse::parse(&msg) else {
            self.session_id = saved;
            return true;
        };
        let challenge = r.security_buffer.to_vec();
        self.session_id = h.session_id;
        let Ok((auth, key)) = ntlm::client::authenticate(&challenge, USER, "", password, [1; 8], [2; 16]) else {
            return true;
        };
        let Some((h, _)) = self.session_setup(&auth).await else { return false };
        if h.status == 0 {
            self.keys = Some(kdf::derive(self.dialect, &key, None, Some(cipher::AES_128_CCM)));
        } else {
            self.session_id = saved;
        }
        true
    }

    async fn create(&mut self, name: &str, options: u32) -> bool {
        let mut b = BytesMut::new();
        CreateRequest {
            security_flags: 0,
            requested_oplock_level: 0,
            impersonation_level: 2,
            smb_create_flags: 0,
            desired_access: 0x8000_0000 | 0x4000_0000 | 0x0001_0000,
            file_attributes: 0,
            share_access: 7,
            create_disposition: 3,
            create_options: options & 0x1041,
            name: name.into(),
            create_contexts: vec![],
        }
        .encode(&mut b);
        let m = self.message(Command::Create, &b);
        self.send_msg(m, false, false).await;
        match self.recv().await {
            Some((h, msg)) => {
                if h.status == 0 {
                    if let Ok(r) = protocol::msg::create::CreateResponse::parse(&msg) {
                        self.file = r.file_id;
                    }
                }
                true
            }
            None => false,
        }
    }
}

fn negotiate_body(d: u16) -> BytesMut {
    let mut b = BytesMut::new();
    NegotiateRequest {
        security_mode: 1,
        capabilities: 0x44,
        client_guid: [9; 16],
        dialects: vec![d],
        contexts: vec![],
    }
    .encode(&mut b);
    b
}

/// Inputs that walk the server's main paths: seeds for the fuzzer and the
/// fixed part of the corpus test. Each is a program for [`run`].
pub fn seeds() -> Vec<(&'static str, Vec<u8>)> {
    // Opcodes of `FuzzClient::step`.
    const RAW: u8 = 0;
    const NEG: u8 = 2;
    const LOGIN: u8 = 3;
    const BAD_LOGIN: u8 = 4;
    const TCON: u8 = 5;
    const CREATE: u8 = 6;
    const REQ: u8 = 7;
    const DRAIN: u8 = 10;
    // A REQUEST step: command, how (bit 0 sign, 1 encrypt, 2 related,
    // 3 hold for a compound, 5 replay flag, 6 patch in the open's FileId,
    // 7 a foreign session), MessageId delta, CreditCharge, body.
    let req = |command: Command, how: u8, delta: u8, charge: u8, body: &[u8]| {
        let mut v = vec![REQ, command as u8, how, delta, charge, body.len() as u8];
        v.extend_from_slice(body);
        v
    };
    let read_body = {
        let mut b = BytesMut::new();
        protocol::msg::read::ReadRequest {
            padding: 0x50,
            flags: 0,
            length: 4096,
            offset: 0,
            file_id: FileId { persistent: 0, volatile: 0 },
            minimum_count: 0,
            channel: 0,
            remaining_bytes: 0,
            read_channel_info: &[],
        }
        .encode(&mut b);
        b.to_vec()
    };
    let read = |how: u8| req(Command::Read, how | 0x40, 0, 1, &read_body);
    let write_body = {
        let mut b = BytesMut::new();
        protocol::msg::write::WriteRequest {
            offset: 0,
            file_id: FileId { persistent: 0, volatile: 0 },
            channel: 0,
            remaining_bytes: 0,
            flags: 0,
            data: b"fuzzed bytes",
            write_channel_info: &[],
        }
        .encode(&mut b);
        b.to_vec()
    };
    let write = req(Command::Write, 0x40, 0, 1, &write_body);
    let echo = |how: u8, delta: u8| req(Command::Echo, how, delta, 1, &[4, 0, 0, 0]);
    let mut logged_on = vec![NEG, 3, LOGIN, TCON, 0, CREATE, 1, 0x40];
    let mut seeds = vec![
        ("negotiate-only", vec![NEG, 0, DRAIN]),
        ("bad-login", vec![NEG, 3, BAD_LOGIN, BAD_LOGIN, DRAIN]),
        ("garbage-frame", vec![RAW, 8, 0xFE, b'S', b'M', b'B', 0, 0, 0, 0]),
    ];
    let mut s = logged_on.clone();
    s.extend(&write);
    s.extend(read(0));
    s.extend(read(1));
    s.extend(read(2));
    seeds.push(("read-plain-signed-encrypted", s));
    let mut s = logged_on.clone();
    s.extend(echo(0x08, 0));
    s.extend(read(0x0C));
    s.extend(read(0x04));
    seeds.push(("compound-related", s));
    let mut s = logged_on.clone();
    s.extend(echo(0, 0));
    s.extend(echo(0, 0xFE));
    s.extend(echo(1, 0x7F));
    s.extend(echo(0x80, 0));
    seeds.push(("message-ids-and-sessions", s));
    logged_on.extend([9, DRAIN, 11, NEG, 1, LOGIN]);
    seeds.push(("cancel-and-reconnect", logged_on));
    seeds
}
