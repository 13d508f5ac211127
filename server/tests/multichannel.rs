//! Multichannel: session binding ([MS-SMB2] 3.3.5.5, 3.3.5.5.2, 3.3.5.5.3)
//! driven on the wire by a small SMB 3.0.2 client with raw NTLMSSP, and
//! smbtorture's binding tests against a `duet` process.
//!
//! The wire tests run the server in this process on 127.0.0.1 (a free
//! port); the smbtorture test uses the common harness (DUET_TEST_SERVER=smbd
//! runs it against Samba's smbd instead).

mod common;

use std::net::{SocketAddr, TcpStream};
use std::process::Command as Process;
use std::time::Duration;

use bytes::BytesMut;
use common::Answer;
use protocol::auth::ntlm;
use protocol::crypto::kdf;
use protocol::header::Command;
use protocol::msg::negotiate::{capabilities, dialect, NegotiateRequest, NegotiateResponse};
use protocol::msg::session_setup::{setup_flags, SessionSetupRequest, SessionSetupResponse};
use protocol::msg::tree_connect::TreeConnectRequest;
use protocol::NtStatus;

fn start() -> (SocketAddr, tempfile::TempDir) {
    common::start_in_process(&[("duet", "duetpass"), ("other", "otherpass")], None)
}


/// A connection of the test client.
struct Conn {
    s: TcpStream,
    mid: u64,
    dialect: u16,
    caps: u32,
}

impl Conn {
    fn open(addr: SocketAddr, dialects: &[u16], client_guid: [u8; 16]) -> Conn {
        let s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut c = Conn { s, mid: 0, dialect: 0, caps: 0 };
        let mut b = BytesMut::new();
        NegotiateRequest { security_mode: 1, capabilities: 0, client_guid, dialects: dialects.to_vec(), contexts: vec![] }.encode(&mut b);
        let a = c.call(Command::Negotiate, 0, &b, None);
        assert_eq!(a.status(), NtStatus::SUCCESS);
        let r = NegotiateResponse::parse(&a.msg).unwrap();
        c.dialect = r.dialect_revision;
        c.caps = r.capabilities;
        c
    }

    /// Sends one request, signed with `sign` (AES-CMAC) when given.
    fn call(&mut self, command: Command, session_id: u64, body: &[u8], sign: Option<&[u8]>) -> Answer {
        let a = common::wire_call(&mut self.s, self.mid, command as u16, session_id, body, sign);
        self.mid += 1;
        a
    }

    fn session_setup(&mut self, session_id: u64, flags: u8, token: &[u8], sign: Option<&[u8]>) -> Answer {
        let mut b = BytesMut::new();
        SessionSetupRequest { flags, security_mode: 1, capabilities: 0, channel: 0, previous_session_id: 0, security_buffer: token }
            .encode(&mut b);
        self.call(Command::SessionSetup, session_id, &b, sign)
    }

    /// NTLM authentication of `user` for session `session_id` (0: a new
    /// one). Returns the last answer, the session id and the signing key
    /// derived from this authentication.
    fn auth(&mut self, session_id: u64, flags: u8, user: &str, password: &str, sign: Option<&[u8]>) -> (Answer, u64, Vec<u8>) {
        let first = self.session_setup(session_id, flags, &ntlm::client::negotiate(), sign);
        if first.status() != NtStatus::MORE_PROCESSING_REQUIRED {
            return (first, session_id, Vec::new());
        }
        if let Some(k) = sign {
            assert!(first.signed_with(k), "the interim answer of a binding is signed with the session's key");
        }
        let sid = first.hdr.session_id;
        let challenge = SessionSetupResponse::parse(&first.msg).unwrap().security_buffer.to_vec();
        let (auth, key) = ntlm::client::authenticate(&challenge, user, "", password, [3; 8], rand_key()).unwrap();
        let last = self.session_setup(sid, flags, &auth, sign);
        let keys = kdf::derive(self.dialect, &key, None, None);
        (last, sid, keys.signing_key)
    }

    fn tree_connect(&mut self, session_id: u64, sign: Option<&[u8]>) -> Answer {
        let mut b = BytesMut::new();
        TreeConnectRequest { flags: 0, path: r"\\127.0.0.1\IPC$".into() }.encode(&mut b);
        self.call(Command::TreeConnect, session_id, &b, sign)
    }
}

/// A fresh ExportedSessionKey for each authentication.
fn rand_key() -> [u8; 16] {
    static NEXT: std::sync::atomic::AtomicU8 = std::sync::atomic::AtomicU8::new(1);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut k = [0u8; 16];
    for (i, b) in k.iter_mut().enumerate() {
        *b = (i as u8).wrapping_mul(37).wrapping_add(n);
    }
    k
}

const GUID: [u8; 16] = [0x42; 16];
const SMB3: [u16; 1] = [dialect::SMB3_0_2];

/// A session of `duet` on a new connection: (connection, session id, key).
fn logged_on(addr: SocketAddr) -> (Conn, u64, Vec<u8>) {
    let mut a = Conn::open(addr, &SMB3, GUID);
    let (last, sid, key) = a.auth(0, 0, "duet", "duetpass", None);
    assert_eq!(last.status(), NtStatus::SUCCESS);
    (a, sid, key)
}

#[test]
fn multichannel_is_advertised_on_3x_only() {
    let (addr, _dir) = start();
    let c = Conn::open(addr, &SMB3, GUID);
    assert_ne!(c.caps & capabilities::MULTI_CHANNEL, 0);
    let c = Conn::open(addr, &[dialect::SMB2_1], GUID);
    assert_eq!(c.caps & capabilities::MULTI_CHANNEL, 0);
}

#[test]
fn a_bound_channel_signs_with_its_own_key_and_outlives_the_first() {
    let (addr, _dir) = start();
    let (mut a, sid, session_key) = logged_on(addr);
    let mut b = Conn::open(addr, &SMB3, GUID);
    let (last, _, channel_key) = b.auth(sid, setup_flags::BINDING, "duet", "duetpass", Some(&session_key));
    assert_eq!(last.status(), NtStatus::SUCCESS);
    assert_ne!(channel_key, session_key);
    assert!(last.signed_with(&channel_key), "the last binding answer is signed with the channel key");
    assert!(!last.signed_with(&session_key));

    // On the bound channel the channel key counts, not the session's.
    let t = b.tree_connect(sid, Some(&channel_key));
    assert_eq!(t.status(), NtStatus::SUCCESS);
    assert!(t.signed_with(&channel_key));
    assert_eq!(b.tree_connect(sid, Some(&session_key)).status(), NtStatus::ACCESS_DENIED);
    // The first connection keeps the session's key.
    let t = a.tree_connect(sid, Some(&session_key));
    assert_eq!(t.status(), NtStatus::SUCCESS);
    assert!(t.signed_with(&session_key));

    // Binding again on a bound channel is refused.
    let again = b.session_setup(sid, setup_flags::BINDING, &ntlm::client::negotiate(), Some(&channel_key));
    assert_eq!(again.status(), NtStatus::REQUEST_NOT_ACCEPTED);

    // The session outlives its first connection...
    drop(a);
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(b.tree_connect(sid, Some(&channel_key)).status(), NtStatus::SUCCESS);
    // ...and LOGOFF on any channel ends it.
    let off = b.call(Command::Logoff, sid, &[4, 0, 0, 0], Some(&channel_key));
    assert_eq!(off.status(), NtStatus::SUCCESS);
    assert!(off.signed_with(&channel_key));
    assert_eq!(b.tree_connect(sid, Some(&channel_key)).status(), NtStatus::USER_SESSION_DELETED);
}

#[test]
fn logoff_on_one_channel_ends_the_session_on_the_others() {
    let (addr, _dir) = start();
    let (mut a, sid, session_key) = logged_on(addr);
    let mut b = Conn::open(addr, &SMB3, GUID);
    let (last, _, channel_key) = b.auth(sid, setup_flags::BINDING, "duet", "duetpass", Some(&session_key));
    assert_eq!(last.status(), NtStatus::SUCCESS);
    assert_eq!(a.call(Command::Logoff, sid, &[4, 0, 0, 0], Some(&session_key)).status(), NtStatus::SUCCESS);
    assert_eq!(b.tree_connect(sid, Some(&channel_key)).status(), NtStatus::USER_SESSION_DELETED);
}

#[test]
fn a_session_is_not_reachable_from_a_connection_that_did_not_bind_it() {
    let (addr, _dir) = start();
    let (_a, sid, session_key) = logged_on(addr);
    let mut b = Conn::open(addr, &SMB3, GUID);
    assert_eq!(b.tree_connect(sid, Some(&session_key)).status(), NtStatus::USER_SESSION_DELETED);
    assert_eq!(b.tree_connect(sid, None).status(), NtStatus::USER_SESSION_DELETED);
    // Nor by SESSION_SETUP without the binding flag (a reauthentication
    // belongs to the session's own connections).
    let r = b.session_setup(sid, 0, &ntlm::client::negotiate(), Some(&session_key));
    assert_eq!(r.status(), NtStatus::USER_SESSION_DELETED);
}

#[test]
fn binding_refusals() {
    let (addr, _dir) = start();
    let (_a, sid, session_key) = logged_on(addr);
    let bind =
        |c: &mut Conn, sid: u64, sign: Option<&[u8]>| c.session_setup(sid, setup_flags::BINDING, &ntlm::client::negotiate(), sign).status();

    // A 2.x connection cannot bind.
    let mut c = Conn::open(addr, &[dialect::SMB2_1], GUID);
    assert_eq!(bind(&mut c, sid, Some(&session_key)), NtStatus::REQUEST_NOT_ACCEPTED);
    // Another 3.x dialect than the session's.
    let mut c = Conn::open(addr, &[dialect::SMB3_0], GUID);
    assert_eq!(bind(&mut c, sid, Some(&session_key)), NtStatus::INVALID_PARAMETER);
    // Unsigned.
    let mut c = Conn::open(addr, &SMB3, GUID);
    assert_eq!(bind(&mut c, sid, None), NtStatus::INVALID_PARAMETER);
    // Signed with a wrong key.
    assert_eq!(bind(&mut c, sid, Some(&[9u8; 16])), NtStatus::ACCESS_DENIED);
    // Unknown session.
    assert_eq!(bind(&mut c, sid + 1000, Some(&session_key)), NtStatus::USER_SESSION_DELETED);
    // Session id 0.
    assert_eq!(bind(&mut c, 0, None), NtStatus::INVALID_PARAMETER);
    // Another client (ClientGuid).
    let mut c = Conn::open(addr, &SMB3, [0x17; 16]);
    assert_eq!(bind(&mut c, sid, Some(&session_key)), NtStatus::USER_SESSION_DELETED);
    // Another user: refused, and the connection can still bind as the right one.
    let mut c = Conn::open(addr, &SMB3, GUID);
    let (last, _, _) = c.auth(sid, setup_flags::BINDING, "other", "otherpass", Some(&session_key));
    assert_eq!(last.status(), NtStatus::ACCESS_DENIED);
    assert!(last.signed_with(&session_key), "a refusal of a signed binding is signed with the session's key");
    let (last, _, _) = c.auth(sid, setup_flags::BINDING, "duet", "wrong", Some(&session_key));
    assert_eq!(last.status(), NtStatus::LOGON_FAILURE);
    let (last, _, channel_key) = c.auth(sid, setup_flags::BINDING, "duet", "duetpass", Some(&session_key));
    assert_eq!(last.status(), NtStatus::SUCCESS);
    assert!(last.signed_with(&channel_key));
}

/// smbtorture's binding tests that Samba's smbd passes (see the report in
/// the commit), run against the server under test.
#[test]
fn smbtorture_binding_tests_pass() {
    let srv = common::Server::start(common::Mode::Plain);
    let tests = [
        "smb2.session.bind1",
        "smb2.session.bind2",
        "smb2.session.bind_negative_smb202",
        "smb2.session.bind_negative_smb210s",
        "smb2.session.bind_negative_smb210d",
        "smb2.session.bind_negative_smb2to3s",
        "smb2.session.bind_negative_smb2to3d",
        "smb2.session.bind_negative_smb3to2s",
        "smb2.session.bind_negative_smb3to2d",
        "smb2.session.bind_negative_smb3to3s",
        "smb2.session.bind_negative_smb3to3d",
        "smb2.session.bind_negative_smb3encGtoCs",
        "smb2.session.bind_negative_smb3encGtoCd",
        "smb2.session.bind_negative_smb3signCtoHs",
        "smb2.session.bind_negative_smb3signHtoCs",
        "smb2.session.bind_negative_smb3signCtoGs",
        "smb2.session.bind_negative_smb3signGtoCs",
        "smb2.session.bind_negative_smb3signGtoHs",
        "smb2.session.bind_negative_smb3sneGtoCs",
        "smb2.session.bind_negative_smb3sneCtoGs",
        "smb2.session.bind_negative_smb3signC30toGs",
        "smb2.session.bind_negative_smb3signGtoH2Xs",
        "smb2.multichannel.generic.interface_info",
        "smb2.multichannel.generic.num_channels",
        "smb2.lock.replay_smb3_specification_multi",
    ];
    let out = Process::new("smbtorture")
        .arg(srv.unc())
        .args(["-p", &srv.port.to_string(), "-U", &format!("{}%{}", common::USER, common::PASSWORD)])
        .arg("--maximum-runtime=120")
        .args(tests)
        .output()
        .expect("run smbtorture");
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    let passed: Vec<&str> = text.lines().filter_map(|l| l.strip_prefix("success: ")).collect();
    let failed: Vec<&str> = text.lines().filter(|l| l.starts_with("failure: ") || l.starts_with("error: ")).collect();
    assert!(failed.is_empty(), "failed: {failed:?}\n{text}\nserver log:\n{}", srv.log());
    assert_eq!(passed.len(), tests.len(), "not every test reported success:\n{text}");
}

/// A CREATE under a CreateGuid that waits for an oplock or lease break goes
/// on when its channel is lost: a replay on another channel of the session
/// gets STATUS_FILE_NOT_AVAILABLE while it waits, and the open once it is
/// made ([MS-SMB2] 3.3.5.9.10). Samba's "sane" variants of smbtorture's
/// pending-replay tests (the `-windows` ones expect Windows' answers).
#[test]
fn a_pending_create_outlives_its_channel_for_its_replay() {
    let srv = common::Server::start(common::Mode::Plain);
    srv.assert_torture_passes(&[
        "smb2.replay.dhv2-pending2n-vs-oplock-sane",
        "smb2.replay.dhv2-pending2n-vs-lease-sane",
        "smb2.replay.dhv2-pending2l-vs-oplock-sane",
        "smb2.replay.dhv2-pending2l-vs-lease-sane",
        "smb2.replay.dhv2-pending2o-vs-oplock-sane",
        "smb2.replay.dhv2-pending2o-vs-lease-sane",
    ]);
}
