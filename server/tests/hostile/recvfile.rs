//! Large WRITEs whose data goes from the socket into the file with
//! `splice` (a plain session: no signature or cipher covers the data): the
//! file holds what was written, at offsets, across and past its end, with
//! several WRITEs in flight; point 1 records the WRITE's fixed part and no
//! digest, and point 3 no replay key; a signed session's WRITEs are read
//! into memory as before; a WRITE refused before its data was taken
//! (access, a byte-range lock, its range) is answered and its data dropped
//! off the socket, the stream still framed; and a client that goes away in
//! the middle of a WRITE's data gets no answer, while the server serves on;
//! and WRITEs waiting for their data in sockets are bounded: past
//! `MAX_SPLICING` a WRITE's data is read into memory.

use std::collections::HashMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use protocol::header::{Command, Header};
use protocol::msg::create::create_disposition;
use protocol::msg::negotiate::dialect;
use protocol::NtStatus;
use server::admin::{RecvfileStatus, Request, Response};
use server::journal::{OpId, Record, RecordingJournal, WriteData};

use crate::client::{charge, frame, write_body, Client, ACCESS_RW};
use crate::common;

/// GENERIC_READ: an open that may not write.
const ACCESS_READ: u32 = 0x8000_0000;

/// What WRITEs moved from their sockets so far (`duet status`).
fn received(sock: &Path) -> RecvfileStatus {
    match server::admin::client::call(sock, &Request::Status) {
        Ok(Response::Status(st)) => st.server.recvfile,
        other => panic!("status: {other:?}"),
    }
}

/// Bytes a status counted as taken from sockets into files.
fn moved(r: &RecvfileStatus) -> u64 {
    r.bytes + r.copied_bytes + r.buffered_bytes
}

/// An in-process server with an admin socket and a recording journal that
/// keeps no large WRITE's data in its records (as the `group` and
/// `process` policies do).
fn server() -> (std::net::SocketAddr, tempfile::TempDir, PathBuf, tempfile::TempDir, Arc<RecordingJournal>) {
    let rec = Arc::new(RecordingJournal::new().keeping_write_data(WriteData::NotKept));
    let sock_dir = tempfile::tempdir().unwrap();
    let sock = sock_dir.path().join("admin.sock");
    let at = sock.clone();
    let (addr, dir) = common::start_in_process_with(&[("duet", "duetpass")], Some(rec.clone()), move |cfg| {
        cfg.admin_socket = Some(at);
    });
    (addr, dir, sock, sock_dir, rec)
}

fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Writes `data` at `offset` into `model` (growing it with zeros).
fn put(model: &mut Vec<u8>, offset: usize, data: &[u8]) {
    if model.len() < offset + data.len() {
        model.resize(offset + data.len(), 0);
    }
    model[offset..offset + data.len()].copy_from_slice(data);
}

/// The point-1 frames and point-3 records of the WRITEs journaled so far:
/// (frame, status, has a replay key), in order.
fn journaled_writes(rec: &RecordingJournal) -> Vec<(Vec<u8>, u32, bool)> {
    let mut frames: HashMap<OpId, Vec<u8>> = HashMap::new();
    let mut out = Vec::new();
    for r in rec.records() {
        match r {
            Record::PreAck { op, frame, .. } => {
                frames.insert(op, frame);
            }
            Record::PostCompletion { op, status, key, .. } => {
                if let Some(f) = frames.get(&op).filter(|f| Header::parse(f).unwrap().command == Command::Write as u16)
                {
                    out.push((f.clone(), status, key.is_some()));
                }
            }
            _ => {}
        }
    }
    out
}

fn structure_size(frame: &[u8]) -> u16 {
    u16::from_le_bytes([frame[64], frame[65]])
}

#[test]
fn large_plain_writes_go_from_the_socket_into_the_file() {
    let (addr, dir, sock, _sock_dir, rec) = server();
    let mut c = Client::logged_on(addr, dialect::SMB3_0_2, "duet", "duetpass");
    c.tree_connect("data").expect("tree connect");
    let f = c.create_with("w.bin", ACCESS_RW, create_disposition::OVERWRITE_IF, 0).expect("create");
    let before = received(&sock);
    let mut model = Vec::new();
    // Whole MiBs, an odd size, an unaligned offset, past the end (a hole
    // before it), and one write too small to be worth it.
    let writes: Vec<(usize, Vec<u8>)> = vec![
        (0, pattern(1 << 20, 1)),
        (1 << 20, pattern(300_001, 2)),
        ((2 << 20) - 5, pattern(65_536, 3)),
        (4 << 20, pattern(200_000, 4)),
        (10, pattern(1000, 5)),
    ];
    for (offset, data) in &writes {
        assert_eq!(c.write(f, *offset as u64, data), NtStatus::SUCCESS, "write at {offset}");
        put(&mut model, *offset, data);
    }
    // Three in flight at once: each is read off the socket in turn.
    let mut mids = Vec::new();
    for (i, offset) in [5 << 20, 6 << 20, (5 << 20) + 4096].into_iter().enumerate() {
        let data = pattern(512 * 1024, 10 + i as u64);
        mids.push(c.send_charged(Command::Write, &write_body(f, offset as u64, &data), charge(data.len())));
        put(&mut model, offset, &data);
    }
    let mut answered = Vec::new();
    for _ in 0..3 {
        let a = c.recv().expect("answer");
        assert_eq!(a.status(), NtStatus::SUCCESS);
        answered.push(a.hdr.message_id);
    }
    answered.sort_unstable();
    assert_eq!(answered, mids);
    assert_eq!(c.echo(), NtStatus::SUCCESS, "the stream is still framed");
    assert_eq!(c.close(f), NtStatus::SUCCESS);
    let on_disk = std::fs::read(dir.path().join("w.bin")).unwrap();
    assert_eq!(on_disk.len(), model.len());
    assert!(on_disk == model, "the file holds what was written");

    let after = received(&sock);
    let large: u64 = (1 << 20) + 300_001 + 65_536 + 200_000 + 3 * 512 * 1024;
    assert_eq!(after.writes - before.writes, 7, "the seven large WRITEs took their data from the socket");
    assert_eq!(moved(&after) - moved(&before), large);
    assert_eq!((after.copied_bytes, after.cut), (0, 0));
    assert!(after.bytes > before.bytes, "with splice");

    // Point 1 holds the fixed part (StructureSize 0xC031, no digest) and
    // point 3 no replay key; the small WRITE is journaled whole, keyed.
    let journaled = journaled_writes(&rec);
    assert_eq!(journaled.len(), 8);
    for (frame, status, keyed) in &journaled {
        assert_eq!(*status, 0);
        let small = frame.len() == 64 + 48 + 1000;
        if small {
            assert!(*keyed, "the small WRITE has its replay key");
        } else {
            assert_eq!((frame.len(), structure_size(frame), *keyed), (112, 0xC031, false));
        }
    }
}

/// A signed session's WRITE is read into memory (the signature covers the
/// data): journaled with its digest and keyed, the socket's data not
/// moved by splice.
#[test]
fn signed_large_writes_are_read_into_memory() {
    let (addr, dir, sock, _sock_dir, rec) = server();
    let mut c = Client::logged_on(addr, dialect::SMB3_0_2, "duet", "duetpass");
    c.sign = true;
    c.tree_connect("data").expect("tree connect");
    let f = c.create_with("s.bin", ACCESS_RW, create_disposition::OVERWRITE_IF, 0).expect("create");
    let before = received(&sock);
    let data = pattern(700_000, 7);
    assert_eq!(c.write(f, 3, &data), NtStatus::SUCCESS);
    assert_eq!(c.close(f), NtStatus::SUCCESS);
    assert_eq!(received(&sock), before, "nothing went from the socket into the file");
    let on_disk = std::fs::read(dir.path().join("s.bin")).unwrap();
    assert!(on_disk[3..] == data[..] && on_disk[..3] == [0, 0, 0]);
    let journaled = journaled_writes(&rec);
    let (frame, status, keyed) = journaled.last().expect("the WRITE's records");
    assert_eq!((frame.len(), structure_size(frame), *status, *keyed), (120, 0x8031, 0, true));
}

/// WRITEs refused before their data is taken get their status, and the
/// stream stays framed (the data is dropped off the socket): a read-only
/// open (ACCESS_DENIED, read into memory as before), a range another open
/// holds locked (FILE_LOCK_CONFLICT) and an offset past the largest file
/// (INVALID_PARAMETER), both with the data left in the socket until then.
#[test]
fn refused_writes_drop_their_data_and_the_stream_goes_on() {
    let (addr, dir, sock, _sock_dir, _rec) = server();
    std::fs::write(dir.path().join("r.bin"), pattern(3 << 20, 9)).unwrap();
    let mut c = Client::logged_on(addr, dialect::SMB3_0_2, "duet", "duetpass");
    c.tree_connect("data").expect("tree connect");
    let data = pattern(256 * 1024, 8);
    let before = received(&sock);

    let ro = c.create_with("r.bin", ACCESS_READ, create_disposition::OPEN, 0).expect("open read-only");
    assert_eq!(c.write(ro, 0, &data), NtStatus::ACCESS_DENIED);
    assert_eq!(c.echo(), NtStatus::SUCCESS);

    let a = c.create_with("r.bin", ACCESS_RW, create_disposition::OPEN, 0).expect("open a");
    let b = c.create_with("r.bin", ACCESS_RW, create_disposition::OPEN, 0).expect("open b");
    assert_eq!(c.lock(a, 0, 1 << 20, true, false), NtStatus::SUCCESS);
    assert_eq!(c.write(b, 4096, &data), NtStatus::FILE_LOCK_CONFLICT);
    assert_eq!(c.echo(), NtStatus::SUCCESS);
    assert_eq!(c.write(b, 1 << 62, &data), NtStatus::INVALID_PARAMETER);
    assert_eq!(c.echo(), NtStatus::SUCCESS);
    assert_eq!(received(&sock), before, "no refused WRITE's data went into the file");

    // Outside the lock the same open writes, from the socket.
    assert_eq!(c.write(b, 2 << 20, &data), NtStatus::SUCCESS);
    let after = received(&sock);
    assert_eq!((after.writes - before.writes, moved(&after) - moved(&before)), (1, data.len() as u64));
    let mut want = pattern(3 << 20, 9);
    put(&mut want, 2 << 20, &data);
    assert!(std::fs::read(dir.path().join("r.bin")).unwrap() == want, "only the last WRITE changed the file");
}

/// Slow clients cannot take every blocking thread: while `MAX_SPLICING`
/// WRITEs wait for the rest of their data, the next WRITE's data is read
/// into memory as any other's, and it is answered at once; once the slow
/// clients go, their places are free again. (Before, every such WRITE held
/// a blocking thread for as long as its client took, up to the frame
/// time-out.)
#[test]
fn writes_waiting_for_their_data_in_sockets_are_bounded() {
    let (addr, dir, sock, _sock_dir, _rec) = server();
    let data = pattern(256 * 1024, 12);
    let mut slow = Vec::new();
    for i in 0..server::limits::MAX_SPLICING {
        let mut c = Client::logged_on(addr, dialect::SMB3_0_2, "duet", "duetpass");
        c.tree_connect("data").expect("tree connect");
        let f = c.create_with(&format!("slow{i}.bin"), ACCESS_RW, create_disposition::OVERWRITE_IF, 0).expect("create");
        let msg = c.message(Command::Write, c.next_mid, charge(data.len()), &write_body(f, 0, &data));
        // The head and a little of the data; the rest never comes.
        c.s.write_all(&frame(&msg)[..112 + 4 + 1000]).unwrap();
        slow.push(c);
    }
    let until = Instant::now() + Duration::from_secs(20);
    while received(&sock).moving < server::limits::MAX_SPLICING as u64 {
        assert!(Instant::now() < until, "the slow WRITEs never all waited: {:?}", received(&sock));
        std::thread::sleep(Duration::from_millis(20));
    }
    let before = received(&sock);
    let mut c = Client::logged_on(addr, dialect::SMB3_0_2, "duet", "duetpass");
    c.tree_connect("data").expect("tree connect");
    let f = c.create_with("fast.bin", ACCESS_RW, create_disposition::OVERWRITE_IF, 0).expect("create");
    assert_eq!(c.write(f, 0, &data), NtStatus::SUCCESS);
    let after = received(&sock);
    assert_eq!((after.writes, after.moving), (before.writes, before.moving), "the WRITE took no place");
    assert!(std::fs::read(dir.path().join("fast.bin")).unwrap() == data);
    drop(slow);
    let until = Instant::now() + Duration::from_secs(20);
    while received(&sock).moving > 0 {
        assert!(Instant::now() < until, "the slow WRITEs' places were not given back: {:?}", received(&sock));
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(c.write(f, 1 << 20, &data), NtStatus::SUCCESS);
    assert_eq!(received(&sock).writes, after.writes + 1, "a free place: the data moved from the socket");
}

/// A client that sends a WRITE's head and part of its data, then goes:
/// the WRITE is not answered (no point 3), the move counts as cut short,
/// and the server serves others on.
#[test]
fn a_client_that_goes_away_mid_data_gets_no_answer() {
    let (addr, _dir, sock, _sock_dir, rec) = server();
    let mut c = Client::logged_on(addr, dialect::SMB3_0_2, "duet", "duetpass");
    c.tree_connect("data").expect("tree connect");
    let f = c.create_with("cut.bin", ACCESS_RW, create_disposition::OVERWRITE_IF, 0).expect("create");
    let before = received(&sock);
    let data = pattern(1 << 20, 11);
    let msg = c.message(Command::Write, c.next_mid, charge(data.len()), &write_body(f, 0, &data));
    let wire = frame(&msg);
    // The head and 300 KiB of the data, in pieces, then the end.
    for piece in wire[..112 + 4 + 300 * 1024].chunks(50_000) {
        c.s.write_all(piece).unwrap();
        std::thread::sleep(Duration::from_millis(20));
    }
    c.s.shutdown(std::net::Shutdown::Both).unwrap();
    let until = Instant::now() + Duration::from_secs(20);
    while received(&sock).cut == before.cut {
        assert!(Instant::now() < until, "the cut WRITE was not counted");
        std::thread::sleep(Duration::from_millis(20));
    }
    let after = received(&sock);
    assert_eq!(after.writes, before.writes, "the WRITE did not complete");
    // Its point 1 and 2, no point 3.
    let last_write = rec
        .records()
        .iter()
        .rev()
        .find_map(|r| match r {
            Record::PreAck { op, frame, .. } if Header::parse(frame).unwrap().command == Command::Write as u16 => {
                Some(*op)
            }
            _ => None,
        })
        .expect("the WRITE's point 1");
    assert!(
        !rec.records().iter().any(|r| matches!(r, Record::PostCompletion { op, .. } if *op == last_write)),
        "a WRITE cut short passed point 3"
    );
    let mut c = Client::logged_on(addr, dialect::SMB3_0_2, "duet", "duetpass");
    c.tree_connect("data").expect("tree connect");
    let f = c.create_with("cut.bin", ACCESS_RW, create_disposition::OPEN, 0).expect("open again");
    assert_eq!(c.write(f, 0, &data), NtStatus::SUCCESS);
    assert_eq!(c.read(f, 0, 65536).expect("read"), data[..65536]);
}
