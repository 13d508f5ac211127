//! A real server in-process, spoken to over TCP with hand-built frames:
//! the consistency points fire in order, and malformed input gets an
//! NTSTATUS or a closed connection, never a crash or a hang.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use protocol::header::{flags, Command, Header};
use protocol::msg::negotiate::{dialect, NegotiateRequest};
use protocol::NtStatus;
use server::journal::{Journal, Record, RecordingJournal};

/// The points a recording journal saw, as `1:<frame length>`, `2:<index>`,
/// `3:<index>` and `4`.
fn events(rec: &RecordingJournal) -> Vec<String> {
    rec.records()
        .into_iter()
        .filter_map(|r| match r {
            Record::PreAck { frame, .. } => Some(format!("1:{}", frame.len())),
            Record::PreCommand { index, .. } => Some(format!("2:{index}")),
            Record::PostCompletion { index, .. } => Some(format!("3:{index}")),
            Record::PostReplyAck { .. } => Some("4".into()),
            _ => None,
        })
        .collect()
}

fn start(journal: Arc<dyn Journal>) -> (SocketAddr, tempfile::TempDir) {
    common::start_in_process(&[("duet", "duetpass")], Some(journal))
}

fn frame(msg: &[u8]) -> Vec<u8> {
    let mut f = vec![0u8, (msg.len() >> 16) as u8, (msg.len() >> 8) as u8, msg.len() as u8];
    f.extend_from_slice(msg);
    f
}

/// A request asking for 8 credits, so that the ids of a compound sent next
/// are granted before it is sent (the server checks them all first).
fn message(command: Command, message_id: u64, body: &[u8]) -> Vec<u8> {
    let mut m = BytesMut::new();
    Header { command: command as u16, message_id, credits: 8, credit_charge: 1, ..Default::default() }.encode(&mut m);
    m.extend_from_slice(body);
    m.to_vec()
}

fn negotiate() -> Vec<u8> {
    let mut b = BytesMut::new();
    NegotiateRequest {
        security_mode: 1,
        capabilities: 0,
        client_guid: [7; 16],
        dialects: vec![dialect::SMB2_0_2, dialect::SMB2_1],
        contexts: vec![],
    }
    .encode(&mut b);
    message(Command::Negotiate, 0, &b)
}

fn echo(mid: u64) -> Vec<u8> {
    message(Command::Echo, mid, &[4, 0, 0, 0])
}

fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s
}

/// Reads one frame; None when the server closed the connection.
fn read_frame(s: &mut TcpStream) -> Option<Vec<u8>> {
    let mut h = [0u8; 4];
    s.read_exact(&mut h).ok()?;
    let len = ((h[1] as usize) << 16) | ((h[2] as usize) << 8) | h[3] as usize;
    let mut m = vec![0u8; len];
    s.read_exact(&mut m).ok()?;
    Some(m)
}

fn status(msg: &[u8]) -> NtStatus {
    NtStatus(Header::parse(msg).unwrap().status)
}

#[test]
fn consistency_points_fire_in_order_for_a_compound() {
    let rec = Arc::new(RecordingJournal::new());
    let (addr, _dir) = start(rec.clone());
    let mut s = connect(addr);
    s.write_all(&frame(&negotiate())).unwrap();
    assert_eq!(status(&read_frame(&mut s).unwrap()), NtStatus::SUCCESS);
    // Two unrelated ECHOs in one compound.
    let mut first = echo(1);
    first.resize(72, 0);
    let len = first.len() as u32;
    first[20..24].copy_from_slice(&len.to_le_bytes());
    let mut chain = first;
    chain.extend_from_slice(&echo(2));
    s.write_all(&frame(&chain)).unwrap();
    let reply = read_frame(&mut s).unwrap();
    let h = Header::parse(&reply).unwrap();
    assert_eq!(h.message_id, 1);
    assert_ne!(h.next_command, 0, "both answers come back in one compound");
    // Point 4 comes once the client's TCP has acknowledged the answer's
    // last byte (the writer reads TCP_INFO): shortly after it was read.
    let t = std::time::Instant::now();
    let mut events = events(&rec);
    while events.iter().filter(|e| *e == "4").count() < 2 && t.elapsed() < std::time::Duration::from_secs(5) {
        std::thread::sleep(std::time::Duration::from_millis(5));
        events = self::events(&rec);
    }
    // The compound's own operation (the NEGOTIATE's point 4 may come
    // after the compound's point 1, once its answer was acknowledged).
    let op = rec.records().into_iter().find_map(|r| match r {
        Record::PreAck { op, frame, .. } if frame.len() == 140 => Some(op),
        _ => None,
    });
    let mine: Vec<String> = rec
        .records()
        .into_iter()
        .filter(|r| match r {
            Record::PreAck { op: o, .. }
            | Record::PreCommand { op: o, .. }
            | Record::PostCompletion { op: o, .. }
            | Record::PostReplyAck { op: o } => Some(*o) == op,
            _ => false,
        })
        .filter_map(|r| match r {
            Record::PreAck { frame, .. } => Some(format!("1:{}", frame.len())),
            Record::PreCommand { index, .. } => Some(format!("2:{index}")),
            Record::PostCompletion { index, .. } => Some(format!("3:{index}")),
            Record::PostReplyAck { .. } => Some("4".into()),
            _ => None,
        })
        .collect();
    assert_eq!(mine, ["1:140", "2:0", "3:0", "2:1", "3:1", "4"], "all events: {events:?}");
}

/// A full journal holds the connection back: the request is answered once
/// its point-1 record fits, and the record is never dropped.
#[test]
fn a_full_journal_holds_the_answer_back_until_the_record_fits() {
    let rec = Arc::new(RecordingJournal::new());
    let (addr, _dir) = start(rec.clone());
    let mut s = connect(addr);
    s.write_all(&frame(&negotiate())).unwrap();
    assert_eq!(status(&read_frame(&mut s).unwrap()), NtStatus::SUCCESS);
    let before = events(&rec).len();
    rec.refuse_next(6);
    s.write_all(&frame(&echo(1))).unwrap();
    let reply = read_frame(&mut s).expect("answered once the journal took the record");
    assert_eq!(status(&reply), NtStatus::SUCCESS);
    assert_eq!(rec.refused(), 6);
    let events = events(&rec);
    // (Point 4 of the NEGOTIATE may have been among the refused appends.)
    let echo_points: Vec<&str> = events[before..].iter().map(String::as_str).filter(|e| *e != "4").take(3).collect();
    assert_eq!(echo_points, ["1:68", "2:0", "3:0"], "all events: {events:?}");
}

/// Each malformed input must end in an error status or a closed
/// connection, within the read timeout.
#[test]
fn malformed_input_is_refused_cleanly() {
    let (addr, _dir) = start(Arc::new(server::journal::NoJournal));
    let neg = negotiate();
    let mut cases: Vec<(&str, Vec<Vec<u8>>)> = vec![
        ("garbage protocol id", vec![frame(b"\xAASMBhello")]),
        ("SMB1 but not negotiate", vec![frame(&[0xFF, b'S', b'M', b'B', 0x73, 0, 0, 0])]),
        ("truncated header", vec![frame(&neg[..40])]),
        ("truncated negotiate body", vec![frame(&neg[..70])]),
        ("request before negotiate", vec![frame(&echo(0))]),
        ("second negotiate", vec![frame(&neg), frame(&neg)]),
        ("oversized frame", vec![vec![0, 0xFF, 0xFF, 0xFF]]),
        ("bad NetBIOS type", vec![vec![0x81, 0, 0, 0]]),
        ("unknown command", vec![frame(&neg), frame(&message(Command::Echo, 1, &[4, 0, 0, 0])[..].iter().copied().enumerate().map(|(i, b)| if i == 12 { 0x55 } else { b }).collect::<Vec<_>>())]),
        ("next_command past the end", vec![frame(&neg), {
            let mut e = echo(1);
            e[20..24].copy_from_slice(&4096u32.to_le_bytes());
            frame(&e)
        }]),
        ("next_command unaligned", vec![frame(&neg), {
            let mut e = echo(1);
            e.extend_from_slice(&echo(2));
            e[20..24].copy_from_slice(&69u32.to_le_bytes());
            frame(&e)
        }]),
        ("session setup with garbage token", vec![frame(&neg), {
            let mut b = BytesMut::new();
            protocol::msg::session_setup::SessionSetupRequest {
                flags: 0,
                security_mode: 1,
                capabilities: 0,
                channel: 0,
                previous_session_id: 0,
                security_buffer: b"\x60\x05junk",
            }
            .encode(&mut b);
            frame(&message(Command::SessionSetup, 1, &b))
        }]),
        ("tree connect without a session", vec![frame(&neg), frame(&message(Command::TreeConnect, 1, &[9, 0, 0, 0, 72, 0, 0, 0]))]),
    ];
    // The fixed corpus of captured bad messages, if any.
    if let Ok(dir) = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../testdata/bad")) {
        for e in dir.flatten() {
            let bytes = std::fs::read(e.path()).unwrap();
            cases.push(("corpus file", vec![frame(&neg), frame(&bytes)]));
        }
    }
    for (name, frames) in cases {
        let mut s = connect(addr);
        let n = frames.len();
        let mut last = None;
        for (i, f) in frames.iter().enumerate() {
            if s.write_all(f).is_err() {
                break;
            }
            last = read_frame(&mut s);
            if i + 1 < n {
                assert!(last.is_some(), "{name}: set-up message was refused");
            }
        }
        if let Some(m) = last {
            let st = status(&m);
            assert!(st.is_error(), "{name}: got {st:?}");
        }
    }
    // The server is still there and healthy.
    let mut s = connect(addr);
    s.write_all(&frame(&neg)).unwrap();
    assert_eq!(status(&read_frame(&mut s).unwrap()), NtStatus::SUCCESS);
    s.write_all(&frame(&echo(1))).unwrap();
    let r = read_frame(&mut s).unwrap();
    assert_eq!(status(&r), NtStatus::SUCCESS);
    assert!(Header::parse(&r).unwrap().flags & flags::SERVER_TO_REDIR != 0);
}

/// A client cannot grow the server's memory by opening session after
/// session on one connection: past the limit, SESSION_SETUP is refused.
#[test]
fn session_setup_flood_is_bounded() {
    let (addr, _dir) = start(Arc::new(server::journal::NoJournal));
    let mut s = connect(addr);
    s.write_all(&frame(&negotiate())).unwrap();
    assert_eq!(status(&read_frame(&mut s).unwrap()), NtStatus::SUCCESS);
    let token = protocol::auth::ntlm::client::negotiate();
    let limit = server::config::Limits::default().max_sessions_per_connection;
    for i in 0..limit + 2 {
        let mut b = BytesMut::new();
        protocol::msg::session_setup::SessionSetupRequest {
            flags: 0,
            security_mode: 1,
            capabilities: 0,
            channel: 0,
            previous_session_id: 0,
            security_buffer: &token,
        }
        .encode(&mut b);
        s.write_all(&frame(&message(Command::SessionSetup, 1 + i as u64, &b))).unwrap();
        let st = status(&read_frame(&mut s).unwrap());
        if i < limit {
            assert_eq!(st, NtStatus::MORE_PROCESSING_REQUIRED, "session {i}");
        } else {
            assert_eq!(st, NtStatus::REQUEST_NOT_ACCEPTED, "session {i}");
        }
    }
}
