//! Issue 11, items 1, 7 and 8 and two of its "also seen": who a request
//! runs as, and the logon itself.
//!
//! - An encrypted request runs as the session of its transform header only
//!   ([MS-SMB2] 3.3.5.2.1.1): one whose inner header names another session
//!   (or any element of a compound that does) closes the connection; an
//!   anonymous (or guest) session has no encryption keys, and an encrypted
//!   request on one closes the connection.
//! - Encryption required server-wide covers IPC$ and its share listing: a
//!   client that cannot encrypt is refused at SESSION_SETUP, a 3.x client
//!   that sends plain requests gets ACCESS_DENIED, and so do anonymous and
//!   guest logons (they cannot encrypt).
//! - Many clients logging on at once all get final SESSION_SETUP answers
//!   signed with the key they derive. (Item 7 was not reproduced, before
//!   these changes or after: these two tests stand guard. The likeliest
//!   cause found is item 8: after a restart, new sessions took the ids of
//!   old ones that reconnecting clients still held, and a client that
//!   looks its sessions up by id verified with the wrong one's key.)
//! - Ids do not repeat across restarts: a PreviousSessionId from before a
//!   restart does not end a session of after it.
//! - Failed logons from one address are slowed down, and a connection is
//!   closed after too many.
//!
//! The raw client here speaks 3.1.1 too ([`Client311`]: negotiate contexts
//! and the preauth hash), which `client.rs` does not.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use protocol::auth::ntlm;
use protocol::crypto::kdf;
use protocol::crypto::preauth::PreauthHash;
use protocol::crypto::signing::{self, SigningAlgorithm};
use protocol::header::{flags, Command};
use protocol::msg::create::create_disposition;
use protocol::msg::negotiate::{cipher, dialect, NegotiateContext, NegotiateRequest, NegotiateResponse, HASH_SHA512};
use protocol::msg::session_setup::{SessionSetupRequest, SessionSetupResponse};
use protocol::NtStatus;
use server::config::{Config, Signing};

use crate::client::{self, Client};
use crate::common;

/// Runs a server in this process, as [`common::start_in_process`] does,
/// with the configuration changed by `tune` first.
pub fn start_with(users: &[(&str, &str)], tune: impl FnOnce(&mut Config)) -> (SocketAddr, tempfile::TempDir) {
    common::start_in_process_with(users, None, tune)
}

// ---- a 3.1.1 logon ----------------------------------------------------------

/// A connection of the raw client negotiated at 3.1.1, with the
/// connection's preauth hash ([MS-SMB2] 3.2.5.2).
pub struct Client311 {
    pub c: Client,
    pub preauth: PreauthHash,
}

impl Client311 {
    /// Connects and negotiates 3.1.1 with SHA-512 preauth, AES-128-CCM and
    /// AES-CMAC signing.
    pub fn connect(addr: SocketAddr) -> Client311 {
        let mut c = Client::connect(addr);
        let salt: [u8; 32] = rand::random();
        let mut b = BytesMut::new();
        NegotiateRequest {
            security_mode: 1,
            capabilities: 0x4 | 0x40,
            client_guid: rand::random(),
            dialects: vec![dialect::SMB3_1_1],
            contexts: vec![
                NegotiateContext::PreauthIntegrity { hash_algorithms: vec![HASH_SHA512], salt: &salt },
                NegotiateContext::Encryption { ciphers: vec![cipher::AES_128_CCM] },
                NegotiateContext::Signing { algorithms: vec![protocol::msg::negotiate::signing_algorithm::AES_CMAC] },
            ],
        }
        .encode(&mut b);
        let req = c.message(Command::Negotiate, 0, 1, &b);
        c.next_mid = 1;
        c.send_raw(&client::frame(&req));
        let a = c.recv().expect("negotiate answer");
        assert_eq!(a.status(), NtStatus::SUCCESS, "negotiate 3.1.1");
        let r = NegotiateResponse::parse(&a.msg).expect("negotiate response");
        assert_eq!(r.dialect_revision, dialect::SMB3_1_1);
        c.dialect = dialect::SMB3_1_1;
        let mut preauth = PreauthHash::new();
        preauth.update(&req);
        preauth.update(&a.msg);
        Client311 { c, preauth }
    }

    /// An NTLMv2 logon; returns the session id and whether the final answer
    /// was signed with the key derived from the session's preauth hash (the
    /// client's keys are kept as [`Client::login`] keeps them).
    pub fn login(&mut self, user: &str, password: &str, previous: u64) -> Result<(u64, bool), NtStatus> {
        let mut hash = self.preauth.clone();
        self.c.session_id = 0;
        let first = self.leg(&ntlm::client::negotiate(), previous, &mut hash);
        hash.update(&first.msg);
        if first.status() != NtStatus::MORE_PROCESSING_REQUIRED {
            return Err(first.status());
        }
        self.c.session_id = first.hdr.session_id;
        let challenge = SessionSetupResponse::parse(&first.msg).expect("challenge").security_buffer.to_vec();
        let (auth, key) = ntlm::client::authenticate(&challenge, user, "", password, rand::random(), rand::random()).expect("authenticate");
        let last = self.leg(&auth, previous, &mut hash);
        if last.status() != NtStatus::SUCCESS {
            self.c.session_id = 0;
            return Err(last.status());
        }
        let keys = kdf::derive(dialect::SMB3_1_1, &key, Some(hash.value()), Some(cipher::AES_128_CCM));
        let good = last.hdr.flags & flags::SIGNED != 0 && signing::verify(SigningAlgorithm::AesCmac, &keys.signing_key, &last.msg);
        self.c.keys = Some(keys);
        Ok((self.c.session_id, good))
    }

    fn leg(&mut self, token: &[u8], previous: u64, hash: &mut PreauthHash) -> client::Answer {
        let mut b = BytesMut::new();
        SessionSetupRequest { flags: 0, security_mode: 1, capabilities: 0, channel: 0, previous_session_id: previous, security_buffer: token }
            .encode(&mut b);
        let mid = self.c.next_mid;
        self.c.next_mid += 1;
        let req = self.c.message(Command::SessionSetup, mid, 1, &b);
        hash.update(&req);
        self.c.send_raw(&client::frame(&req));
        self.c.recv().expect("session setup answer")
    }
}

// ---- 1: the transform header and the inner header bound together ---------

/// A server whose share requires encryption and whose sessions require
/// signing, with two users.
fn strict_server() -> (SocketAddr, tempfile::TempDir) {
    start_with(&[("duet", "duetpass"), ("other", "otherpass")], |c| {
        c.signing = Signing::Required;
        c.shares[0].encrypt = true;
    })
}

/// The victim: `duet` logged on over 3.0.2, connected to the encrypted
/// share, which works. Returns (session, tree).
fn victim_on(c: &mut Client) -> (u64, u32) {
    c.negotiate(dialect::SMB3_0_2);
    let sid = c.login("duet", "duetpass").expect("victim logon");
    c.encrypt = true;
    let tid = c.tree_connect("data").expect("victim tree");
    let f = c.create("victim.txt").expect("victim create");
    assert_eq!(c.close(f), NtStatus::SUCCESS);
    c.encrypt = false;
    (sid, tid)
}

/// Sends, sealed with the client's current keys for session `seal_sid`,
/// one CREATE of `name` whose header names `sid` and `tid`.
fn sealed_create(c: &mut Client, seal_sid: u64, sid: u64, tid: u32, name: &str) {
    let body = Client::create_body(name, client::ACCESS_RW, create_disposition::OPEN_IF, 0);
    let mid = c.next_mid;
    c.next_mid += 1;
    let mut m = c.message(Command::Create, mid, 1, &body);
    address(&mut m, sid, tid);
    let sealed = c.seal_for(seal_sid, &m);
    c.send_raw(&client::frame(&sealed));
}

/// Issue 11 item 1: an anonymous logon on the victim's connection (no
/// password needed, and its keys come from the all-zero session key)
/// wrapped a CREATE naming the victim's session and tree, and it ran as the
/// victim. Now the connection is closed and nothing is created.
#[test]
fn an_anonymous_key_cannot_carry_a_request_for_another_session() {
    let (addr, dir) = strict_server();
    let mut c = Client::connect(addr);
    let (victim, tree) = victim_on(&mut c);
    let anon = c.login_anonymous().expect("anonymous logon");
    sealed_create(&mut c, anon, victim, tree, "pwned.txt");
    assert!(c.is_closed_within(Duration::from_secs(5)), "the connection stays open after a transform naming another session");
    assert!(!dir.path().join("pwned.txt").exists(), "the request ran as the victim");
}

/// The same with a user the attacker knows the password of: its own key
/// does not make it anyone else.
#[test]
fn a_users_key_cannot_carry_a_request_for_another_users_session() {
    let (addr, dir) = strict_server();
    let mut c = Client::connect(addr);
    let (victim, tree) = victim_on(&mut c);
    let other = c.login("other", "otherpass").expect("other logon");
    sealed_create(&mut c, other, victim, tree, "pwned.txt");
    assert!(c.is_closed_within(Duration::from_secs(5)), "the connection stays open after a transform naming another session");
    assert!(!dir.path().join("pwned.txt").exists(), "the request ran as the victim");
}

/// Every element of an encrypted compound must run as the transform's
/// session: an unrelated second element naming the victim closes the
/// connection before anything runs, while related elements that inherit
/// the session (SessionId all ones) are served, and an element naming no
/// session of the connection is refused as anywhere else.
#[test]
fn every_element_of_an_encrypted_compound_runs_as_the_transform_session() {
    let (addr, dir) = strict_server();
    // Related elements inherit the session: served.
    let mut c = Client::logged_on(addr, dialect::SMB3_0_2, "other", "otherpass");
    c.encrypt = true;
    c.tree_connect("data").expect("tree");
    let create = c.message(Command::Create, c.next_mid, 1, &Client::create_body("mine.txt", client::ACCESS_RW, create_disposition::OPEN_IF, 0));
    let mut close = c.message(Command::Close, c.next_mid + 1, 1, &close_any());
    address(&mut close, u64::MAX, u32::MAX);
    c.next_mid += 2;
    let sealed = c.seal_for(c.session_id, &client::compound(&[create, close], true));
    c.send_raw(&client::frame(&sealed));
    let a = c.recv().expect("an answer to a related compound");
    let statuses: Vec<u32> = client::elements(&a.msg).iter().map(|(h, _)| h.status).collect();
    assert_eq!(statuses, [NtStatus::SUCCESS.0, NtStatus::SUCCESS.0]);
    // An unrelated element naming no session there is runs as nobody: it
    // is refused, and the connection goes on (smbtorture
    // smb2.compound.invalid2, encrypted, relies on this).
    let echo = c.message(Command::Echo, c.next_mid, 1, &[4, 0, 0, 0]);
    let mut nobody = c.message(Command::Close, c.next_mid + 1, 1, &close_any());
    let tid = c.tree_id;
    address(&mut nobody, u64::MAX, tid);
    c.next_mid += 2;
    let sealed = c.seal_for(c.session_id, &client::compound(&[echo, nobody], false));
    c.send_raw(&client::frame(&sealed));
    let a = c.recv().expect("an answer to a compound naming no session");
    let statuses: Vec<u32> = client::elements(&a.msg).iter().map(|(h, _)| h.status).collect();
    assert_eq!(statuses, [NtStatus::SUCCESS.0, NtStatus::USER_SESSION_DELETED.0]);

    // An unrelated element naming another session: closed, nothing run.
    let mut c = Client::connect(addr);
    let (victim, tree) = victim_on(&mut c);
    let other = c.login("other", "otherpass").expect("other logon");
    let echo = c.message(Command::Echo, c.next_mid, 1, &[4, 0, 0, 0]);
    let mut create = c.message(Command::Create, c.next_mid + 1, 1, &Client::create_body("pwned.txt", client::ACCESS_RW, create_disposition::OPEN_IF, 0));
    address(&mut create, victim, tree);
    c.next_mid += 2;
    let sealed = c.seal_for(other, &client::compound(&[echo, create], false));
    c.send_raw(&client::frame(&sealed));
    assert!(c.is_closed_within(Duration::from_secs(5)), "the connection stays open after a compound naming another session");
    assert!(!dir.path().join("pwned.txt").exists(), "the second element ran as the victim");
}

/// An anonymous session has no encryption keys: an encrypted request on
/// it, even naming itself, closes the connection ([MS-SMB2] 3.3.5.2.1.1).
/// Its requests in plain are served, unsigned.
#[test]
fn an_anonymous_session_cannot_encrypt() {
    let (addr, _dir) = strict_server();
    let mut c = Client::connect(addr);
    c.negotiate(dialect::SMB3_0_2);
    c.login_anonymous().expect("anonymous logon");
    assert!(c.tree_connect("IPC$").is_ok(), "anonymous reaches IPC$ in plain");
    let a = c.call(Command::Echo, &[4, 0, 0, 0]);
    assert_eq!(a.status(), NtStatus::SUCCESS);
    assert_eq!(a.hdr.flags & flags::SIGNED, 0, "an anonymous session signs nothing");
    c.encrypt = true;
    c.send(Command::Echo, &[4, 0, 0, 0]);
    assert!(c.is_closed_within(Duration::from_secs(5)), "an encrypted request on an anonymous session was served");
}

/// Sets the TreeId and SessionId of a message's (sync) header ([MS-SMB2]
/// 2.2.1.2: TreeId at 36, SessionId at 40).
fn address(msg: &mut [u8], session_id: u64, tree_id: u32) {
    msg[36..40].copy_from_slice(&tree_id.to_le_bytes());
    msg[40..48].copy_from_slice(&session_id.to_le_bytes());
}

/// A CLOSE body for the file id of a related compound (all ones).
fn close_any() -> BytesMut {
    let mut b = BytesMut::new();
    protocol::msg::close::CloseRequest { flags: 0, file_id: protocol::msg::FileId::ANY }.encode(&mut b);
    b
}

// ---- also seen: encryption required server-wide covers IPC$ ---------------

/// NEGOTIATE 3.0.2 without the encryption capability: the connection has
/// no cipher.
fn negotiate_without_encryption(c: &mut Client) {
    let mut b = BytesMut::new();
    NegotiateRequest { security_mode: 1, capabilities: 0x4, client_guid: rand::random(), dialects: vec![dialect::SMB3_0_2], contexts: vec![] }
        .encode(&mut b);
    let a = c.call(Command::Negotiate, &b);
    assert_eq!(a.status(), NtStatus::SUCCESS);
    c.dialect = dialect::SMB3_0_2;
}

/// With `encrypt = true`, IPC$ and its share listing answered clients that
/// do not encrypt: a 2.1 client, a 3.0.2 client without the encryption
/// capability, an anonymous logon. Now none gets a session (ACCESS_DENIED,
/// [MS-SMB2] 3.3.5.5), a 3.x session's plain requests are refused (3.3.5.2.9)
/// and IPC$ is marked encrypted; smbclient lists the shares when it
/// encrypts, and not otherwise.
#[test]
fn encryption_required_covers_ipc() {
    let (addr, _dir) = start_with(&[("duet", "duetpass")], |c| c.encrypt = true);

    let mut c = Client::connect(addr);
    c.negotiate(dialect::SMB2_1);
    assert_eq!(c.login("duet", "duetpass"), Err(NtStatus::ACCESS_DENIED), "a 2.1 client got a session");

    let mut c = Client::connect(addr);
    negotiate_without_encryption(&mut c);
    assert_eq!(c.login("duet", "duetpass"), Err(NtStatus::ACCESS_DENIED), "a 3.0.2 client without encryption got a session");

    let mut c = Client::connect(addr);
    c.negotiate(dialect::SMB3_0_2);
    assert_eq!(c.login_anonymous(), Err(NtStatus::ACCESS_DENIED), "an anonymous session, which cannot encrypt, was set up");

    let mut c = Client::logged_on(addr, dialect::SMB3_0_2, "duet", "duetpass");
    assert_eq!(c.tree_connect("IPC$"), Err(NtStatus::ACCESS_DENIED), "IPC$ answered a plain TREE_CONNECT");
    c.encrypt = true;
    let body = {
        let mut b = BytesMut::new();
        protocol::msg::tree_connect::TreeConnectRequest { flags: 0, path: r"\\127.0.0.1\IPC$".into() }.encode(&mut b);
        b
    };
    let a = c.call(Command::TreeConnect, &body);
    assert_eq!(a.status(), NtStatus::SUCCESS);
    let r = protocol::msg::tree_connect::TreeConnectResponse::parse(&a.msg).unwrap();
    assert_ne!(r.share_flags & protocol::msg::tree_connect::share_flags::ENCRYPT_DATA, 0, "IPC$ is not marked encrypted");

    // Real clients: the listing works encrypted, and only then.
    let port = addr.port();
    let list = |args: &[&str], proto: &str| {
        let mut s = common::Smbclient::new(port);
        s.arg("-L").arg("//127.0.0.1").protocol(Some(proto)).args(args.iter().copied());
        s.run()
    };
    let out = list(&["-U", "duet%duetpass", "--option=client smb encrypt=required"], "SMB3");
    assert!(out.success() && out.stdout.contains("data"), "smbclient -L with encryption: {out}");
    let out = list(&["-U", "duet%duetpass"], "SMB2");
    assert!(!out.stdout.contains("data"), "smbclient -L over SMB 2.1 listed the shares: {out}");
    let out = list(&["-N"], "SMB3");
    assert!(!out.stdout.contains("data"), "anonymous smbclient -L listed the shares: {out}");
}

// ---- 7: concurrent logons ----------------------------------------------------

/// Eight clients log on over and over at once (new connections, each
/// naming its previous session as a reconnecting client does), on 3.0.2 and
/// 3.1.1 with signing required: every final SESSION_SETUP answer is signed,
/// with the key the client derives, and the session then works.
#[test]
fn concurrent_logons_all_get_good_signatures() {
    let (addr, _dir) = start_with(&[("duet", "duetpass"), ("other", "otherpass")], |c| c.signing = Signing::Required);
    const THREADS: usize = 8;
    const LOGONS: usize = 50;
    let threads: Vec<_> = (0..THREADS)
        .map(|t| {
            std::thread::spawn(move || {
                let (user, pass) = if t % 2 == 0 { ("duet", "duetpass") } else { ("other", "otherpass") };
                let mut bad = Vec::new();
                let mut previous = 0;
                let mut old: Option<Client> = None;
                for i in 0..LOGONS {
                    let (mut c, sid, good) = if (t + i) % 2 == 0 {
                        let mut c = Client311::connect(addr);
                        let (sid, good) = c.login(user, pass, previous).unwrap_or_else(|s| panic!("logon {t}/{i}: {s:?}"));
                        (c.c, sid, good)
                    } else {
                        let mut c = Client::connect(addr);
                        c.negotiate(dialect::SMB3_0_2);
                        // Not Client::login, which panics on a bad signature
                        // instead of counting it.
                        let (sid, good) = login_302(&mut c, user, pass, previous);
                        (c, sid, good)
                    };
                    if !good {
                        bad.push(format!("thread {t} logon {i} (session {sid:#x})"));
                    }
                    c.sign = true;
                    assert_eq!(c.echo(), NtStatus::SUCCESS);
                    previous = sid;
                    // The old connection goes once the new session is up.
                    drop(old.replace(c));
                }
                bad
            })
        })
        .collect();
    let bad: Vec<String> = threads.into_iter().flat_map(|t| t.join().unwrap()).collect();
    assert!(bad.is_empty(), "final SESSION_SETUP answers not signed with the derived key: {bad:?}");
}

/// Four smbclient processes logging on over and over at once, signing
/// required on both sides, on 3.1.1, 3.0.2 and 2.1: every run succeeds
/// (smbclient checks the final SESSION_SETUP signature and every one after).
#[test]
fn concurrent_smbclient_logons_with_signing_required() {
    let (addr, _dir) = start_with(&[("duet", "duetpass")], |c| c.signing = Signing::Required);
    let threads: Vec<_> = (0..4)
        .map(|t| {
            std::thread::spawn(move || {
                let mut failed = Vec::new();
                for i in 0..6 {
                    let proto = ["SMB3", "SMB3_02", "SMB2_10"][(t + i) % 3];
                    let mut s = common::Smbclient::new(addr.port());
                    s.target("//127.0.0.1/data")
                        .user("duet", "duetpass")
                        .protocol(Some(proto))
                        .arg("--option=client signing=required")
                        .cmd("ls");
                    let out = s.run();
                    if !out.success() || out.all().contains("NT_STATUS_") {
                        failed.push(format!("{out}"));
                    }
                }
                failed
            })
        })
        .collect();
    let failed: Vec<String> = threads.into_iter().flat_map(|t| t.join().unwrap()).collect();
    assert!(failed.is_empty(), "{} smbclient runs failed:{}", failed.len(), failed.join(""));
}

/// A 3.0.2 NTLMv2 logon with the raw client's pieces; returns the session
/// id and whether the final answer carries a good signature.
fn login_302(c: &mut Client, user: &str, pass: &str, previous: u64) -> (u64, bool) {
    let setup = |c: &mut Client, token: &[u8]| {
        let mut b = BytesMut::new();
        SessionSetupRequest { flags: 0, security_mode: 1, capabilities: 0, channel: 0, previous_session_id: previous, security_buffer: token }
            .encode(&mut b);
        c.call(Command::SessionSetup, &b)
    };
    c.session_id = 0;
    let first = setup(c, &ntlm::client::negotiate());
    assert_eq!(first.status(), NtStatus::MORE_PROCESSING_REQUIRED);
    c.session_id = first.hdr.session_id;
    let challenge = SessionSetupResponse::parse(&first.msg).unwrap().security_buffer.to_vec();
    let (auth, key) = ntlm::client::authenticate(&challenge, user, "", pass, rand::random(), rand::random()).unwrap();
    let last = setup(c, &auth);
    assert_eq!(last.status(), NtStatus::SUCCESS, "logon of {user}");
    let keys = kdf::derive(c.dialect, &key, None, Some(cipher::AES_128_CCM));
    let good = last.hdr.flags & flags::SIGNED != 0 && signing::verify(SigningAlgorithm::AesCmac, &keys.signing_key, &last.msg);
    c.keys = Some(keys);
    (c.session_id, good)
}

// ---- 8: ids do not repeat across restarts ----------------------------------

/// The duet binary with `--state-dir`, on a fresh port.
fn duet_with_state(state: &std::path::Path) -> common::Server {
    common::Server::start_with(common::Options {
        mode: common::Mode::Plain,
        duet_args: vec!["--state-dir".into(), state.display().to_string()],
        ..common::Options::default()
    })
}

/// Issue 11 item 8: ids started again at 1 after a restart, so the first
/// session of the new boot had the id of the first session of the old one,
/// and a client reconnecting with that PreviousSessionId ended a stranger's
/// live session of the same user. Now every id carries the boot's
/// generation, kept in the state directory: session and file ids of two
/// boots differ, and the old PreviousSessionId ends nothing.
#[test]
fn ids_do_not_repeat_across_a_restart() {
    let state = tempfile::tempdir().unwrap();
    let addr_of = |s: &common::Server| -> SocketAddr { format!("127.0.0.1:{}", s.port).parse().unwrap() };

    let before = duet_with_state(state.path());
    let mut old = Client::logged_on(addr_of(&before), dialect::SMB3_0_2, "duet", "duetpass");
    old.tree_connect(common::SHARE).unwrap();
    let old_file = old.create("a.txt").unwrap();
    let old_session = old.session_id;
    drop(old);
    drop(before);

    let after = duet_with_state(state.path());
    let addr = addr_of(&after);
    let mut live = Client::logged_on(addr, dialect::SMB3_0_2, "duet", "duetpass");
    live.tree_connect(common::SHARE).unwrap();
    let new_file = live.create("b.txt").unwrap();
    assert_ne!(live.session_id, old_session, "the first session of each boot got the same id");
    assert_ne!(new_file.persistent, old_file.persistent, "file ids repeat across boots");
    // The layout ([`server::state::id_alloc`]): the generation went up by one.
    let generation = |id: u64| (id >> 32) & 0xFF_FFFF;
    assert_eq!(generation(live.session_id), (generation(old_session) + 1) & 0xFF_FFFF, "{old_session:#x} then {:#x}", live.session_id);

    // A client reconnects naming its session of the boot before.
    let mut reconnecting = Client::connect(addr);
    reconnecting.negotiate(dialect::SMB3_0_2);
    reconnecting.login_with_previous("duet", "duetpass", old_session).expect("reconnect");
    assert_eq!(live.echo(), NtStatus::SUCCESS, "the live session was ended by a PreviousSessionId of the boot before");
    assert_eq!(live.close(new_file), NtStatus::SUCCESS, "the live session lost its open");
}

// ---- also seen: failed logons slowed down -----------------------------------

/// Over a thousand wrong passwords a second on one connection, never
/// disconnected. Now (with 3 failures allowed, waits of 100, 200 and 400 ms
/// after them, and 6 failures per connection) six wrong passwords take at
/// least 700 ms and the connection is closed after the sixth; a right
/// password from a fresh connection still gets in, after a wait as long as
/// a failure's would be (so that a slow answer does not give a failure
/// away).
#[test]
fn failed_logons_are_slowed_down_and_end_the_connection() {
    let (addr, _dir) = start_with(&[("duet", "duetpass")], |c| {
        c.limits.login_failures_before_delay = 3;
        c.limits.login_failure_delay_max_ms = 400;
        c.limits.login_failures_per_connection = 6;
    });
    let mut c = Client::connect(addr);
    c.negotiate(dialect::SMB3_0_2);
    let t = Instant::now();
    for i in 0..6 {
        assert_eq!(c.login("duet", &format!("guess{i}")), Err(NtStatus::LOGON_FAILURE));
    }
    let took = t.elapsed();
    assert!(took >= Duration::from_millis(700), "six failed logons took only {took:?}");
    assert!(c.is_closed_within(Duration::from_secs(5)), "the connection stays open after six failed logons");

    let t = Instant::now();
    let mut fresh = Client::connect(addr);
    fresh.negotiate(dialect::SMB3_0_2);
    fresh.login("duet", "duetpass").expect("the right password still gets in");
    assert!(t.elapsed() >= Duration::from_millis(400), "a logon from a throttled address was answered at once");
    fresh.tree_connect("data").expect("and the session works");
}
