#![allow(dead_code)] // a library for the suite: not every module uses every call

//! A raw SMB 2/3 client for the hostile-client tests: it speaks the
//! protocol correctly when asked to, and lets a test break any rule it
//! likes (hand-made headers, reused message ids, foreign session ids,
//! frames cut short).
//!
//! It negotiates 2.0.2, 2.1 or 3.0.2 (3.0.2 encrypts with AES-128-CCM and
//! signs with AES-CMAC, [MS-SMB2] 3.1.4.1 and 3.1.4.3; no preauth hash is
//! needed below 3.1.1), authenticates with raw NTLMSSP (NTLMv2, or
//! anonymous), and keeps the message-id window the server grants.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use bytes::BytesMut;
use protocol::auth::ntlm;
use protocol::crypto::kdf::{self, SessionKeys};
use protocol::crypto::signing::{self, SigningAlgorithm};
use protocol::crypto::transform;
use protocol::header::{flags, Command, Header, HEADER_LEN};
use protocol::msg::close::CloseRequest;
use protocol::msg::create::{create_disposition, share_access, CreateRequest, CreateResponse};
use protocol::msg::lock::{lock_flags, LockElement, LockRequest};
use protocol::msg::negotiate::{cipher, dialect, NegotiateRequest, NegotiateResponse};
use protocol::msg::query_directory::{QueryDirectoryRequest, QueryDirectoryResponse};
use protocol::msg::read::{ReadRequest, ReadResponse};
use protocol::msg::session_setup::{SessionSetupRequest, SessionSetupResponse};
use protocol::msg::tree_connect::{TreeConnectRequest, TreeConnectResponse};
use protocol::msg::write::WriteRequest;
use protocol::msg::FileId;
use protocol::NtStatus;

pub use crate::common::Answer;

/// GENERIC_READ | GENERIC_WRITE | DELETE: what the tests open files with.
pub const ACCESS_RW: u32 = 0x8000_0000 | 0x4000_0000 | 0x0001_0000;
/// FILE_LIST_DIRECTORY | SYNCHRONIZE | FILE_READ_ATTRIBUTES.
pub const ACCESS_LIST: u32 = 0x0000_0001 | 0x0010_0000 | 0x0000_0080;
/// FileIdBothDirectoryInformation ([MS-FSCC] 2.4.17).
pub const FILE_ID_BOTH_DIRECTORY_INFORMATION: u8 = 37;

/// One connection of the raw client.
pub struct Client {
    pub s: TcpStream,
    /// The MessageId the next request gets.
    pub next_mid: u64,
    /// Credits the client asks for in each request.
    pub credit_request: u16,
    pub dialect: u16,
    pub max_read: u32,
    pub max_write: u32,
    pub max_transact: u32,
    /// The session requests go to (0 before a login).
    pub session_id: u64,
    /// The tree requests go to (0 before a tree connect).
    pub tree_id: u32,
    /// Keys of the session, from the server's point of view
    /// (`decryption_key` is what the client encrypts with).
    pub keys: Option<SessionKeys>,
    /// Sign requests with the session's key.
    pub sign: bool,
    /// Encrypt requests with the session's key.
    pub encrypt: bool,
}

/// How long a test waits for any one answer.
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(20);

impl Client {
    /// A TCP connection, nothing sent yet.
    pub fn connect(addr: SocketAddr) -> Client {
        Client::from_stream(TcpStream::connect(addr).expect("connect"))
    }

    /// The client on a connection made elsewhere (from another source
    /// address, say), nothing sent yet.
    pub fn from_stream(s: TcpStream) -> Client {
        s.set_read_timeout(Some(ANSWER_TIMEOUT)).unwrap();
        s.set_nodelay(true).unwrap();
        Client {
            s,
            next_mid: 0,
            credit_request: 256,
            dialect: 0,
            max_read: 65536,
            max_write: 65536,
            max_transact: 65536,
            session_id: 0,
            tree_id: 0,
            keys: None,
            sign: false,
            encrypt: false,
        }
    }

    /// Connects, negotiates `dialect` and logs on as `user`.
    pub fn logged_on(addr: SocketAddr, dialect: u16, user: &str, password: &str) -> Client {
        let mut c = Client::connect(addr);
        c.negotiate(dialect);
        c.login(user, password).expect("login");
        c
    }

    /// NEGOTIATE offering exactly `dialect` (signing enabled, large MTU and
    /// encryption capabilities for 3.x). Panics unless the server agrees.
    pub fn negotiate(&mut self, d: u16) -> NegotiateResponse<'static> {
        let mut b = BytesMut::new();
        let caps = if d >= dialect::SMB3_0 { 0x4 | 0x40 } else { 0x4 };
        NegotiateRequest { security_mode: 1, capabilities: caps, client_guid: rand::random(), dialects: vec![d], contexts: vec![] }
            .encode(&mut b);
        let a = self.call(Command::Negotiate, &b);
        assert_eq!(a.status(), NtStatus::SUCCESS, "negotiate");
        let msg: &'static [u8] = Box::leak(a.msg.into_boxed_slice());
        let r = NegotiateResponse::parse(msg).expect("negotiate response");
        self.dialect = r.dialect_revision;
        self.max_read = r.max_read_size;
        self.max_write = r.max_write_size;
        self.max_transact = r.max_transact_size;
        r
    }

    fn session_setup(&mut self, token: &[u8], previous: u64) -> Answer {
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
        self.call(Command::SessionSetup, &b)
    }

    /// NTLMv2 logon; on success the session's keys are kept and the session
    /// id is used from now on. The final answer's signature is checked when
    /// the server signed it.
    pub fn login(&mut self, user: &str, password: &str) -> Result<u64, NtStatus> {
        self.login_with_previous(user, password, 0)
    }

    /// [`Client::login`] naming a PreviousSessionId ([MS-SMB2] 3.3.5.5.3).
    pub fn login_with_previous(&mut self, user: &str, password: &str, previous: u64) -> Result<u64, NtStatus> {
        self.session_id = 0;
        let first = self.session_setup(&ntlm::client::negotiate(), previous);
        if first.status() != NtStatus::MORE_PROCESSING_REQUIRED {
            return Err(first.status());
        }
        self.session_id = first.hdr.session_id;
        let challenge = SessionSetupResponse::parse(&first.msg).expect("challenge").security_buffer.to_vec();
        let (auth, key) =
            ntlm::client::authenticate(&challenge, user, "", password, rand::random(), rand::random()).expect("authenticate");
        let last = self.session_setup(&auth, previous);
        if last.status() != NtStatus::SUCCESS {
            self.session_id = 0;
            return Err(last.status());
        }
        let keys = kdf::derive(self.dialect, &key, None, Some(cipher::AES_128_CCM));
        if last.hdr.flags & flags::SIGNED != 0 {
            assert!(signing::verify(self.signing_alg(), &keys.signing_key, &last.msg), "the final SESSION_SETUP answer's signature");
        }
        self.keys = Some(keys);
        Ok(self.session_id)
    }

    /// An anonymous NTLM logon ([MS-NLMP] 3.2.5.1.2: no user, no NT
    /// response). Anonymous has the all-zero session key, so anyone can
    /// compute the keys kept here.
    pub fn login_anonymous(&mut self) -> Result<u64, NtStatus> {
        self.session_id = 0;
        let first = self.session_setup(&ntlm::client::negotiate(), 0);
        if first.status() != NtStatus::MORE_PROCESSING_REQUIRED {
            return Err(first.status());
        }
        self.session_id = first.hdr.session_id;
        let last = self.session_setup(&anonymous_authenticate(), 0);
        if last.status() != NtStatus::SUCCESS {
            self.session_id = 0;
            return Err(last.status());
        }
        self.keys = Some(kdf::derive(self.dialect, &[0u8; 16], None, Some(cipher::AES_128_CCM)));
        Ok(self.session_id)
    }

    /// TREE_CONNECT to `\\127.0.0.1\share`; the tree is used from now on.
    pub fn tree_connect(&mut self, share: &str) -> Result<u32, NtStatus> {
        let mut b = BytesMut::new();
        TreeConnectRequest { flags: 0, path: format!(r"\\127.0.0.1\{share}") }.encode(&mut b);
        let a = self.call(Command::TreeConnect, &b);
        if a.status() != NtStatus::SUCCESS {
            return Err(a.status());
        }
        TreeConnectResponse::parse(&a.msg).expect("tree connect response");
        self.tree_id = a.hdr.tree_id;
        Ok(self.tree_id)
    }

    /// A CREATE body for `name` with the given access and disposition.
    pub fn create_body(name: &str, access: u32, disposition: u32, options: u32) -> BytesMut {
        let mut b = BytesMut::new();
        CreateRequest {
            security_flags: 0,
            requested_oplock_level: 0,
            impersonation_level: 2,
            smb_create_flags: 0,
            desired_access: access,
            file_attributes: 0,
            share_access: share_access::READ | share_access::WRITE | share_access::DELETE,
            create_disposition: disposition,
            create_options: options,
            name: name.into(),
            create_contexts: vec![],
        }
        .encode(&mut b);
        b
    }

    /// Opens (or creates) `name` read-write.
    pub fn create(&mut self, name: &str) -> Result<FileId, NtStatus> {
        self.create_with(name, ACCESS_RW, create_disposition::OPEN_IF, 0)
    }

    /// Opens the share's root directory for listing.
    pub fn open_root(&mut self) -> Result<FileId, NtStatus> {
        self.create_with("", ACCESS_LIST, create_disposition::OPEN, 0x1)
    }

    pub fn create_with(&mut self, name: &str, access: u32, disposition: u32, options: u32) -> Result<FileId, NtStatus> {
        let b = Client::create_body(name, access, disposition, options);
        let a = self.call(Command::Create, &b);
        if a.status() != NtStatus::SUCCESS {
            return Err(a.status());
        }
        Ok(CreateResponse::parse(&a.msg).expect("create response").file_id)
    }

    pub fn close(&mut self, file_id: FileId) -> NtStatus {
        let mut b = BytesMut::new();
        CloseRequest { flags: 0, file_id }.encode(&mut b);
        self.call(Command::Close, &b).status()
    }

    pub fn write(&mut self, file_id: FileId, offset: u64, data: &[u8]) -> NtStatus {
        let b = write_body(file_id, offset, data);
        self.call_charged(Command::Write, &b, charge(data.len())).status()
    }

    /// A LOCK of one range, failing at once (`exclusive`: an exclusive
    /// lock, else shared), or its unlock (`unlock`).
    pub fn lock(&mut self, file_id: FileId, offset: u64, length: u64, exclusive: bool, unlock: bool) -> NtStatus {
        let flags = match (unlock, exclusive) {
            (true, _) => lock_flags::UNLOCK,
            (false, true) => lock_flags::EXCLUSIVE_LOCK | lock_flags::FAIL_IMMEDIATELY,
            (false, false) => lock_flags::SHARED_LOCK | lock_flags::FAIL_IMMEDIATELY,
        };
        let mut b = BytesMut::new();
        LockRequest { lock_sequence: 0, file_id, locks: vec![LockElement { offset, length, flags }] }.encode(&mut b);
        self.call(Command::Lock, &b).status()
    }

    pub fn read(&mut self, file_id: FileId, offset: u64, length: u32) -> Result<Vec<u8>, NtStatus> {
        let b = read_body(file_id, offset, length);
        let a = self.call_charged(Command::Read, &b, charge(length as usize));
        if a.status() != NtStatus::SUCCESS {
            return Err(a.status());
        }
        Ok(ReadResponse::parse(&a.msg).expect("read response").data.to_vec())
    }

    /// QUERY_DIRECTORY with `pattern` (FileIdBothDirectoryInformation,
    /// restarting the scan); the answer's status and buffer.
    pub fn query_directory(&mut self, dir: FileId, pattern: &str) -> (NtStatus, Vec<u8>) {
        let mut b = BytesMut::new();
        QueryDirectoryRequest {
            file_information_class: FILE_ID_BOTH_DIRECTORY_INFORMATION,
            flags: 0x01,
            file_index: 0,
            file_id: dir,
            file_name: pattern.into(),
            output_buffer_length: 65536,
        }
        .encode(&mut b);
        let a = self.call(Command::QueryDirectory, &b);
        let buf = if a.status() == NtStatus::SUCCESS {
            QueryDirectoryResponse::parse(&a.msg).map(|r| r.output_buffer.to_vec()).unwrap_or_default()
        } else {
            Vec::new()
        };
        (a.status(), buf)
    }

    pub fn echo(&mut self) -> NtStatus {
        self.call(Command::Echo, &[4, 0, 0, 0]).status()
    }

    /// The signing algorithm of the negotiated dialect.
    pub fn signing_alg(&self) -> SigningAlgorithm {
        if self.dialect >= dialect::SMB3_0 {
            SigningAlgorithm::AesCmac
        } else {
            SigningAlgorithm::HmacSha256
        }
    }

    /// One request message (header and body, not framed) with the client's
    /// session and tree and the given MessageId and CreditCharge.
    pub fn message(&self, command: Command, message_id: u64, charge: u16, body: &[u8]) -> Vec<u8> {
        let mut m = BytesMut::new();
        Header {
            command: command as u16,
            message_id,
            credits: self.credit_request,
            credit_charge: charge,
            session_id: self.session_id,
            tree_id: self.tree_id,
            ..Default::default()
        }
        .encode(&mut m);
        m.extend_from_slice(body);
        m.to_vec()
    }

    /// Signs a message in place with the session's signing key.
    pub fn sign_msg(&self, msg: &mut [u8]) {
        let keys = self.keys.as_ref().expect("signing needs a session");
        let f = u32::from_le_bytes(msg[16..20].try_into().unwrap()) | flags::SIGNED;
        msg[16..20].copy_from_slice(&f.to_le_bytes());
        signing::sign(self.signing_alg(), &keys.signing_key, msg);
    }

    /// Wraps one message (or a compound) in a transform header for
    /// `session_id`, with the session's client-to-server key.
    pub fn seal_for(&self, session_id: u64, msg: &[u8]) -> Vec<u8> {
        let keys = self.keys.as_ref().expect("encryption needs a session");
        let nonce: [u8; 16] = rand::random();
        transform::encrypt(cipher::AES_128_CCM, &keys.decryption_key, session_id, &nonce, msg).expect("encrypt")
    }

    /// Signs and seals as the client is set to, then frames.
    pub fn protect(&self, mut msg: Vec<u8>) -> Vec<u8> {
        if self.encrypt {
            msg = self.seal_for(self.session_id, &msg);
        } else if self.sign && self.keys.is_some() {
            self.sign_msg(&mut msg);
        }
        frame(&msg)
    }

    /// Sends one request with the next MessageId, CreditCharge 1.
    pub fn send(&mut self, command: Command, body: &[u8]) -> u64 {
        self.send_charged(command, body, 1)
    }

    /// Sends one request charging `charge` credits (it uses that many
    /// MessageIds).
    pub fn send_charged(&mut self, command: Command, body: &[u8], charge: u16) -> u64 {
        let mid = self.next_mid;
        self.next_mid += u64::from(charge.max(1));
        let f = self.protect(self.message(command, mid, charge, body));
        self.send_raw(&f);
        mid
    }

    /// Writes bytes to the socket as they are (a whole frame, or part of one).
    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.s.write_all(bytes).expect("send");
    }

    /// One request and its final answer (interim STATUS_PENDING answers are
    /// skipped).
    pub fn call(&mut self, command: Command, body: &[u8]) -> Answer {
        self.call_charged(command, body, 1)
    }

    pub fn call_charged(&mut self, command: Command, body: &[u8], charge: u16) -> Answer {
        self.send_charged(command, body, charge);
        loop {
            let a = self.recv().unwrap_or_else(|| panic!("no answer to {command:?}: connection closed"));
            if a.status() == NtStatus::PENDING && a.hdr.flags & flags::ASYNC_COMMAND != 0 {
                continue;
            }
            return a;
        }
    }

    /// The next answer off the wire, decrypted when it came in a transform;
    /// `None` when the server closed the connection (or sent nothing for
    /// [`ANSWER_TIMEOUT`]).
    pub fn recv(&mut self) -> Option<Answer> {
        let raw = self.recv_frame()?;
        let msg = if raw.starts_with(&transform::TRANSFORM_PROTOCOL_ID) {
            let keys = self.keys.as_ref().expect("an encrypted answer needs a session");
            transform::decrypt(cipher::AES_128_CCM, &keys.encryption_key, &raw).expect("decrypt the answer")
        } else {
            raw
        };
        let hdr = Header::parse(&msg).expect("answer header");
        Some(Answer { hdr, msg })
    }

    /// One NetBIOS frame's payload; `None` on EOF, reset or timeout.
    pub fn recv_frame(&mut self) -> Option<Vec<u8>> {
        let mut h = [0u8; 4];
        self.s.read_exact(&mut h).ok()?;
        let len = ((h[1] as usize) << 16) | ((h[2] as usize) << 8) | h[3] as usize;
        let mut msg = vec![0u8; len];
        self.s.read_exact(&mut msg).ok()?;
        Some(msg)
    }

    /// True when the server has closed the connection: a read returns EOF
    /// or a reset within `wait` (frames still queued are read and dropped).
    pub fn is_closed_within(&mut self, wait: Duration) -> bool {
        self.s.set_read_timeout(Some(wait)).unwrap();
        let mut buf = [0u8; 65536];
        let deadline = std::time::Instant::now() + wait;
        let closed = loop {
            match self.s.read(&mut buf) {
                Ok(0) => break true,
                Ok(_) => {
                    if std::time::Instant::now() > deadline {
                        break false;
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock || e.kind() == std::io::ErrorKind::TimedOut => break false,
                Err(_) => break true,
            }
        };
        self.s.set_read_timeout(Some(ANSWER_TIMEOUT)).unwrap();
        closed
    }
}

/// Credits a payload of `len` bytes costs ([MS-SMB2] 3.1.5.2): one per
/// 64 KiB, at least one.
pub fn charge(len: usize) -> u16 {
    len.div_ceil(65536).max(1) as u16
}

/// A NetBIOS session message around `msg`.
pub fn frame(msg: &[u8]) -> Vec<u8> {
    let mut f = vec![0u8, (msg.len() >> 16) as u8, (msg.len() >> 8) as u8, msg.len() as u8];
    f.extend_from_slice(msg);
    f
}

pub fn read_body(file_id: FileId, offset: u64, length: u32) -> BytesMut {
    read_body_min(file_id, offset, length, 0)
}

/// [`read_body`] with a MinimumCount.
pub fn read_body_min(file_id: FileId, offset: u64, length: u32, minimum_count: u32) -> BytesMut {
    let mut b = BytesMut::new();
    ReadRequest {
        padding: 0x50,
        flags: 0,
        length,
        offset,
        file_id,
        minimum_count,
        channel: 0,
        remaining_bytes: 0,
        read_channel_info: &[],
    }
    .encode(&mut b);
    b
}

pub fn write_body(file_id: FileId, offset: u64, data: &[u8]) -> BytesMut {
    let mut b = BytesMut::new();
    WriteRequest { offset, file_id, channel: 0, remaining_bytes: 0, flags: 0, data, write_channel_info: &[] }.encode(&mut b);
    b
}

/// Joins messages into one compound request: each but the last padded to
/// 8 bytes with its NextCommand set. `related` marks every element after
/// the first as related ([MS-SMB2] 3.2.4.1.4).
pub fn compound(msgs: &[Vec<u8>], related: bool) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, m) in msgs.iter().enumerate() {
        let mut m = m.clone();
        if related && i > 0 {
            let f = u32::from_le_bytes(m[16..20].try_into().unwrap()) | flags::RELATED_OPERATIONS;
            m[16..20].copy_from_slice(&f.to_le_bytes());
        }
        if i + 1 < msgs.len() {
            while m.len() % 8 != 0 {
                m.push(0);
            }
            let n = m.len() as u32;
            m[20..24].copy_from_slice(&n.to_le_bytes());
        }
        out.extend_from_slice(&m);
    }
    out
}

/// The elements of a compound answer, each with its header.
pub fn elements(msg: &[u8]) -> Vec<(Header, Vec<u8>)> {
    let mut out = Vec::new();
    let mut at = 0;
    while at + HEADER_LEN <= msg.len() {
        let h = Header::parse(&msg[at..]).expect("element header");
        let end = if h.next_command == 0 { msg.len() } else { (at + h.next_command as usize).min(msg.len()) };
        let next = h.next_command;
        out.push((h, msg[at..end].to_vec()));
        if next == 0 {
            break;
        }
        at = end;
    }
    out
}

/// An anonymous AUTHENTICATE_MESSAGE ([MS-NLMP] 2.2.1.3): LM response Z(1),
/// every other field empty, NTLMSSP_NEGOTIATE_ANONYMOUS.
pub fn anonymous_authenticate() -> Vec<u8> {
    const PAYLOAD_AT: u32 = 72;
    let mut msg = Vec::new();
    msg.extend_from_slice(b"NTLMSSP\0");
    msg.extend_from_slice(&3u32.to_le_bytes());
    // LmChallengeResponse: one zero byte at the payload's start.
    msg.extend_from_slice(&1u16.to_le_bytes());
    msg.extend_from_slice(&1u16.to_le_bytes());
    msg.extend_from_slice(&PAYLOAD_AT.to_le_bytes());
    // NtChallengeResponse, DomainName, UserName, Workstation,
    // EncryptedRandomSessionKey: empty.
    for _ in 0..5 {
        msg.extend_from_slice(&0u16.to_le_bytes());
        msg.extend_from_slice(&0u16.to_le_bytes());
        msg.extend_from_slice(&(PAYLOAD_AT + 1).to_le_bytes());
    }
    let f = ntlm::flags::UNICODE | ntlm::flags::ANONYMOUS | ntlm::flags::VERSION;
    msg.extend_from_slice(&f.to_le_bytes());
    msg.extend_from_slice(&[6, 1, 0, 0, 0, 0, 0, 15]); // Version
    assert_eq!(msg.len(), PAYLOAD_AT as usize);
    msg.push(0);
    msg
}

/// VmRSS of a process in KiB, from /proc.
pub fn rss_kib(pid: u32) -> u64 {
    proc_status_kib(pid, "VmRSS:")
}

/// VmHWM (peak RSS) of a process in KiB, from /proc.
pub fn peak_rss_kib(pid: u32) -> u64 {
    proc_status_kib(pid, "VmHWM:")
}

fn proc_status_kib(pid: u32, field: &str) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read /proc status");
    s.lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("status field")
}
