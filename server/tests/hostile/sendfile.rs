//! Large READ answers sent from their files with `sendfile` (a plain
//! session: no signature or cipher covers the data): the answer's length
//! is what the file holds, at and across its end; the stream stays framed;
//! point 3 records what it records for any READ; a signed session gets the
//! same bytes, copied and signed; and a file that shrinks under an answer
//! being sent closes the connection rather than send a frame whose length
//! lies.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use protocol::header::{Command, Header};
use protocol::msg::create::create_disposition;
use protocol::msg::negotiate::dialect;
use protocol::msg::read::ReadResponse;
use protocol::msg::FileId;
use protocol::NtStatus;
use server::admin::{Request, Response, SendfileStatus};
use server::journal::{OpId, Record, RecordingJournal};

use crate::client::{charge, read_body, read_body_min, Answer, Client, ACCESS_RW};
use crate::common;

/// The file the tests read: not a multiple of any I/O size.
const SIZE: usize = 300_000 + 123;

fn content() -> Vec<u8> {
    (0..SIZE).map(|i| (i * 7 % 251) as u8).collect()
}

/// What the server has sent from files so far (`duet status`).
fn sent(sock: &Path) -> SendfileStatus {
    match server::admin::client::call(sock, &Request::Status) {
        Ok(Response::Status(st)) => st.server.sendfile,
        other => panic!("status: {other:?}"),
    }
}

/// An in-process server with an admin socket and a recording journal, and
/// the test file in its share.
fn server_with_file() -> (std::net::SocketAddr, tempfile::TempDir, PathBuf, tempfile::TempDir, Arc<RecordingJournal>) {
    let rec = Arc::new(RecordingJournal::new());
    let sock_dir = tempfile::tempdir().unwrap();
    let sock = sock_dir.path().join("admin.sock");
    let at = sock.clone();
    let (addr, dir) = common::start_in_process_with(&[("duet", "duetpass")], Some(rec.clone()), move |cfg| {
        cfg.admin_socket = Some(at);
    });
    std::fs::write(dir.path().join("eof.bin"), content()).unwrap();
    (addr, dir, sock, sock_dir, rec)
}

fn open(c: &mut Client) -> FileId {
    c.tree_connect("data").expect("tree connect");
    c.create_with("eof.bin", ACCESS_RW, create_disposition::OPEN, 0).expect("open")
}

/// One READ; its whole answer, the frame's length checked against the
/// data it announces.
fn read(c: &mut Client, f: FileId, offset: u64, length: u32, minimum: u32) -> Answer {
    let b = read_body_min(f, offset, length, minimum);
    let a = c.call_charged(Command::Read, &b, charge(length as usize));
    if a.status() == NtStatus::SUCCESS {
        let r = ReadResponse::parse(&a.msg).expect("read response");
        assert_eq!(a.msg.len(), 64 + 16 + r.data.len(), "the frame holds exactly the data it announces");
    }
    a
}

fn data(a: &Answer) -> Vec<u8> {
    assert_eq!(a.status(), NtStatus::SUCCESS);
    ReadResponse::parse(&a.msg).expect("read response").data.to_vec()
}

/// The reads every test makes, and what each must answer.
fn reads_by_the_end(c: &mut Client, f: FileId) -> Vec<Answer> {
    let want = content();
    let big = 128 * 1024;
    let mut answers = Vec::new();
    // Whole, from the middle.
    let a = read(c, f, 4096, big, 0);
    assert_eq!(data(&a), &want[4096..4096 + big as usize]);
    answers.push(a);
    // Across the end: 128 KiB asked, 1000 bytes there.
    let a = read(c, f, (SIZE - 1000) as u64, big, 0);
    assert_eq!(data(&a), &want[SIZE - 1000..]);
    answers.push(a);
    // Up to the very end, exactly.
    let a = read(c, f, (SIZE - big as usize) as u64, big, 0);
    assert_eq!(data(&a), &want[SIZE - big as usize..]);
    answers.push(a);
    // At the end, past it, and short of MinimumCount: END_OF_FILE.
    for (offset, minimum) in [(SIZE as u64, 0), (SIZE as u64 + 4096, 0), ((SIZE - 1000) as u64, 1001)] {
        let a = read(c, f, offset, big, minimum);
        assert_eq!(a.status(), NtStatus::END_OF_FILE, "offset {offset}, minimum {minimum}");
        answers.push(a);
    }
    // The stream is still framed: the next answer is read whole.
    assert_eq!(c.echo(), NtStatus::SUCCESS);
    answers
}

#[test]
fn large_reads_at_and_across_the_end_of_file_go_out_from_the_file() {
    let (addr, _dir, sock, _sock_dir, rec) = server_with_file();
    let mut c = Client::logged_on(addr, dialect::SMB3_0_2, "duet", "duetpass");
    let f = open(&mut c);
    let before = sent(&sock);
    reads_by_the_end(&mut c, f);
    let after = sent(&sock);
    assert_eq!(after.answers - before.answers, 3, "the three READs with data went out from the file");
    assert_eq!(after.bytes - before.bytes, 128 * 1024 + 1000 + 128 * 1024, "their data, with sendfile");
    assert_eq!(after.copied_bytes, 0);

    // Point 3 of each READ holds what it holds for any READ: its status,
    // no response bytes (a READ's data is not journaled) and no replay key.
    let mut commands: HashMap<OpId, u16> = HashMap::new();
    let mut reads = Vec::new();
    for r in rec.records() {
        match r {
            Record::PreAck { op, frame, .. } => {
                commands.insert(op, Header::parse(&frame).expect("journaled request").command);
            }
            Record::PostCompletion { op, status, response, key, .. } if commands.get(&op) == Some(&(Command::Read as u16)) => {
                reads.push((NtStatus(status), response.len(), key.is_some()));
            }
            _ => {}
        }
    }
    let ok = (NtStatus::SUCCESS, 0, false);
    let eof = (NtStatus::END_OF_FILE, 0, false);
    assert_eq!(reads, vec![ok, ok, ok, eof, eof, eof]);
}

/// A signed session's READs cannot go out from the file (the signature
/// covers the data): the same answers, signed, and nothing sent with
/// sendfile.
#[test]
fn signed_large_reads_are_copied_and_signed() {
    let (addr, _dir, sock, _sock_dir, _rec) = server_with_file();
    let mut c = Client::logged_on(addr, dialect::SMB3_0_2, "duet", "duetpass");
    c.sign = true;
    let f = open(&mut c);
    let before = sent(&sock);
    let key = c.keys.as_ref().expect("keys").signing_key.clone();
    for a in reads_by_the_end(&mut c, f) {
        assert!(a.signed_with(&key), "a signed session's READ answer is signed");
    }
    assert_eq!(sent(&sock), before, "nothing went out with sendfile");
}

/// A file cut short after its READ's answer announced its length: the
/// connection closes rather than send a frame shorter than it says (the
/// client would take the next answer's bytes for this one's data). The
/// server pauses between taking the file's size and answering
/// (`DUET_FAILPOINT=read-in-file:MS`) while the test truncates the file.
#[test]
fn a_file_that_shrinks_under_its_answer_closes_the_connection() {
    let srv = common::Server::start_with(common::Options {
        duet_env: vec![("DUET_FAILPOINT".into(), "read-in-file:1500".into())],
        ..common::Options::default()
    });
    if srv.kind != common::Kind::Duet {
        return;
    }
    let path = srv.share_dir().join("shrinks.bin");
    std::fs::write(&path, vec![0x42u8; 2 << 20]).unwrap();
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], srv.port));
    let mut c = Client::logged_on(addr, dialect::SMB3_0_2, common::USER, common::PASSWORD);
    c.tree_connect(common::SHARE).expect("tree connect");
    let f = c.create_with("shrinks.bin", ACCESS_RW, create_disposition::OPEN, 0).expect("open");
    let from = srv.log().len();
    c.send_charged(Command::Read, &read_body(f, 0, 1 << 20), charge(1 << 20));
    srv.wait_log(from, Duration::from_secs(20), |l| l.contains("failpoint: pausing"));
    std::fs::OpenOptions::new().write(true).open(&path).unwrap().set_len(100_000).unwrap();
    // The answer announces 1 MiB; 100,000 bytes of it exist.
    assert!(c.recv_frame().is_none(), "a frame came whole from a file cut short");
    srv.wait_log(from, Duration::from_secs(20), |l| l.contains("a file shrank under the READ answer"));
    // The server serves on.
    let mut c = Client::logged_on(addr, dialect::SMB3_0_2, common::USER, common::PASSWORD);
    c.tree_connect(common::SHARE).expect("tree connect");
    let f = c.create_with("shrinks.bin", ACCESS_RW, create_disposition::OPEN, 0).expect("open");
    assert_eq!(c.read(f, 0, 4096).expect("read"), vec![0x42u8; 4096]);
}
