//! Credits and message ids ([MS-SMB2] 3.3.1.1, 3.3.1.2, 3.3.5.2.3,
//! 3.3.5.2.5), issue 11 items 3 and 6: a captured signed or encrypted
//! request cannot be replayed, ids never granted, reused or reserved close
//! the connection, CreditCharge must cover the payload, and one small
//! compound cannot make the server build an answer of hundreds of MiB.
//!
//! The server runs in this test's process (nextest runs each test in a
//! process of its own), so its memory is this process's.

use std::time::Duration;

use bytes::BytesMut;
use protocol::header::{flags, Command, Header};
use protocol::msg::change_notify::ChangeNotifyRequest;
use protocol::msg::ioctl::{fsctl, IoctlRequest};
use protocol::msg::negotiate::dialect;
use protocol::msg::oplock_break::OplockBreak;
use protocol::msg::read::ReadResponse;
use protocol::NtStatus;

use crate::client::{self, compound, elements, frame, read_body, write_body, Client};
use crate::common;

/// How long a refused connection may take to close.
const CLOSE_WAIT: Duration = Duration::from_secs(10);

fn start() -> (std::net::SocketAddr, tempfile::TempDir) {
    common::start_in_process(&[("duet", "duetpass")], None)
}

/// A logged-on client with a tree connected to the share `data`.
fn client(addr: std::net::SocketAddr, d: u16) -> Client {
    let mut c = Client::logged_on(addr, d, "duet", "duetpass");
    c.tree_connect("data").expect("tree connect");
    c
}

/// Sends one hand-made, framed message and says whether the server closed
/// the connection instead of answering.
fn closes_on(c: &mut Client, msg: Vec<u8>) -> bool {
    let f = c.protect(msg);
    c.send_raw(&f);
    c.is_closed_within(CLOSE_WAIT)
}

/// A WRITE captured on the wire (signed, or encrypted) and sent again
/// later is not carried out a second time: its MessageId was used, so the
/// server closes the connection, and the file keeps what was written after
/// the capture.
#[test]
fn a_replayed_signed_or_encrypted_write_is_refused() {
    let (addr, dir) = start();
    for (sign, encrypt) in [(true, false), (false, true)] {
        let mut c = client(addr, dialect::SMB3_0_2);
        c.sign = sign;
        c.encrypt = encrypt;
        let name = format!("replay-{sign}-{encrypt}.txt");
        let f = c.create(&name).expect("create");
        // The request the attacker captures.
        let mid = c.next_mid;
        c.next_mid += 1;
        let captured = c.protect(c.message(Command::Write, mid, 1, &write_body(f, 0, b"first")));
        c.send_raw(&captured);
        assert_eq!(c.recv().expect("an answer").status(), NtStatus::SUCCESS);
        assert_eq!(c.write(f, 0, b"SECOND"), NtStatus::SUCCESS);
        assert_eq!(std::fs::read(dir.path().join(&name)).unwrap(), b"SECOND");
        // The replay.
        c.send_raw(&captured);
        assert!(c.is_closed_within(CLOSE_WAIT), "sign {sign} encrypt {encrypt}: a replayed WRITE closes the connection");
        assert_eq!(std::fs::read(dir.path().join(&name)).unwrap(), b"SECOND", "the replay was not carried out");
    }
}

/// An id beyond the credits granted, an id already used (by a request that
/// succeeded or not), and 0xFFFFFFFFFFFFFFFF (reserved for the server's
/// break notifications, also in an OPLOCK_BREAK acknowledgement) each close
/// the connection; the server stays up for others.
#[test]
fn ids_never_granted_reused_or_reserved_close_the_connection() {
    let (addr, _dir) = start();
    let echo = [4u8, 0, 0, 0];

    // Far beyond the window (the client holds a few hundred credits).
    let mut c = client(addr, dialect::SMB3_0_2);
    let m = c.message(Command::Echo, c.next_mid + 100_000, 1, &echo);
    assert!(closes_on(&mut c, m), "an id never granted");

    // The id of the previous request.
    let mut c = client(addr, dialect::SMB3_0_2);
    assert_eq!(c.echo(), NtStatus::SUCCESS);
    let m = c.message(Command::Echo, c.next_mid - 1, 1, &echo);
    assert!(closes_on(&mut c, m), "a reused id");

    // Id 0, the NEGOTIATE's, reused in a signed request.
    let mut c = client(addr, dialect::SMB3_0_2);
    c.sign = true;
    let m = c.message(Command::Echo, 0, 1, &echo);
    assert!(closes_on(&mut c, m), "id 0 reused");

    // Reused by a request that failed: the id is used all the same.
    let mut c = client(addr, dialect::SMB2_1);
    let mid = c.next_mid;
    let a = c.call(Command::TreeConnect, &[9, 0, 0, 0, 0, 0, 0, 0]);
    assert!(a.status().is_error());
    let m = c.message(Command::Echo, mid, 1, &echo);
    assert!(closes_on(&mut c, m), "the id of a failed request");

    // The reserved id, in an ECHO and in an oplock break acknowledgement.
    let mut c = client(addr, dialect::SMB3_0_2);
    let m = c.message(Command::Echo, u64::MAX, 1, &echo);
    assert!(closes_on(&mut c, m), "id 2^64 - 1 in an ECHO");
    let mut c = client(addr, dialect::SMB3_0_2);
    let f = c.create("break.txt").expect("create");
    let mut b = BytesMut::new();
    OplockBreak { oplock_level: 0, file_id: f }.encode(&mut b);
    let m = c.message(Command::OplockBreak, u64::MAX, 1, &b);
    assert!(closes_on(&mut c, m), "id 2^64 - 1 in an OPLOCK_BREAK acknowledgement");

    // Before NEGOTIATE the window is { 0 }.
    let mut c = Client::connect(addr);
    let m = c.message(Command::Echo, 1, 1, &echo);
    c.send_raw(&frame(&m));
    assert!(c.is_closed_within(CLOSE_WAIT), "id 1 before any credit was granted");

    // Every one of those closed only its own connection.
    let mut c = client(addr, dialect::SMB3_0_2);
    assert_eq!(c.echo(), NtStatus::SUCCESS);
}

/// A multi-credit request uses CreditCharge consecutive ids; CANCEL uses
/// none (it names the request it cancels); and a compound's elements each
/// use their own, all of them granted before the compound was sent.
#[test]
fn charges_cancels_and_compounds_use_ids_as_the_spec_says() {
    let (addr, _dir) = start();
    let echo = [4u8, 0, 0, 0];

    // A READ charged 4 credits uses ids m..m+4: m+3 is gone after it.
    let mut c = client(addr, dialect::SMB3_0_2);
    let f = c.create("range.txt").expect("create");
    assert_eq!(c.write(f, 0, &[7; 100]), NtStatus::SUCCESS);
    let mid = c.next_mid;
    assert_eq!(c.call_charged(Command::Read, &read_body(f, 0, 100), 4).status(), NtStatus::SUCCESS);
    assert_eq!(c.next_mid, mid + 4);
    let m = c.message(Command::Echo, mid + 3, 1, &echo);
    assert!(closes_on(&mut c, m), "an id inside a multi-credit request's range");

    // CANCEL with an id already used (the usual case: the id of the request
    // it cancels), or one never granted, uses no id and is not refused.
    let mut c = client(addr, dialect::SMB3_0_2);
    for mid in [c.next_mid - 1, c.next_mid + 100_000, u64::MAX] {
        let m = c.message(Command::Cancel, mid, 1, &echo);
        c.send_raw(&frame(&m));
    }
    let mid = c.next_mid;
    assert_eq!(c.echo(), NtStatus::SUCCESS, "the connection lives on");
    assert_eq!(c.next_mid, mid + 1);

    // A compound's elements use one id each.
    let mut c = client(addr, dialect::SMB3_0_2);
    let mid = c.next_mid;
    let chain = compound(&[c.message(Command::Echo, mid, 1, &echo), c.message(Command::Echo, mid + 1, 1, &echo)], false);
    c.send_raw(&frame(&chain));
    let answer = c.recv_frame().expect("the compound's answer");
    assert!(elements(&answer).iter().all(|(h, _)| NtStatus(h.status) == NtStatus::SUCCESS));
    c.next_mid = mid + 2;
    assert_eq!(c.echo(), NtStatus::SUCCESS);
    // Two elements with the same id: the whole compound is refused.
    let mid = c.next_mid;
    let chain = compound(&[c.message(Command::Echo, mid, 1, &echo), c.message(Command::Echo, mid, 1, &echo)], false);
    c.send_raw(&frame(&chain));
    assert!(c.is_closed_within(CLOSE_WAIT), "one id twice in a compound");
}

/// Credits granted never exceed the maximum (8192 by default) outstanding:
/// asked for 65535, the client gets the window filled to 8192 ids, the
/// last of which it may use, and not one more.
#[test]
fn the_window_never_spans_more_than_the_maximum() {
    let (addr, _dir) = start();
    for past_end in [false, true] {
        let mut c = client(addr, dialect::SMB3_0_2);
        c.credit_request = 65535;
        let a = c.call(Command::Echo, &[4, 0, 0, 0]);
        assert_eq!(a.status(), NtStatus::SUCCESS);
        assert!(a.hdr.credits > 0 && a.hdr.credits < 8192, "granted {}", a.hdr.credits);
        // Every request so far was answered in order, so the window is the
        // 8192 ids from the next one.
        let last = c.next_mid + 8191;
        let m = c.message(Command::Echo, if past_end { last + 1 } else { last }, 1, &[4, 0, 0, 0]);
        if past_end {
            assert!(closes_on(&mut c, m), "one id past 8192 outstanding");
        } else {
            c.send_raw(&frame(&m));
            assert_eq!(c.recv().expect("an answer").status(), NtStatus::SUCCESS, "the 8192nd id");
        }
    }
}

/// [MS-SMB2] 3.3.5.2.5: with multi-credit requests a READ, WRITE or IOCTL
/// whose CreditCharge does not cover its payload (1 credit per 64 KiB,
/// CreditCharge 0 counting as 1) fails with STATUS_INVALID_PARAMETER and
/// does nothing; on SMB 2.0.2 a request carries 64 KiB at most.
#[test]
fn a_credit_charge_too_small_for_the_payload_is_invalid_parameter() {
    let (addr, dir) = start();
    let mut c = client(addr, dialect::SMB3_0_2);
    let f = c.create("charge.bin").expect("create");
    assert_eq!(c.write(f, 0, &[1; 300_000]), NtStatus::SUCCESS);

    for charge in [0, 1, 4] {
        let a = c.call_charged(Command::Read, &read_body(f, 0, 300_000), charge);
        assert_eq!(a.status(), NtStatus::INVALID_PARAMETER, "READ of 300000 bytes charged {charge}");
        let a = c.call_charged(Command::Write, &write_body(f, 0, &[2; 300_000]), charge);
        assert_eq!(a.status(), NtStatus::INVALID_PARAMETER, "WRITE of 300000 bytes charged {charge}");
    }
    assert_eq!(std::fs::read(dir.path().join("charge.bin")).unwrap(), vec![1; 300_000], "no WRITE was carried out");
    assert_eq!(c.call_charged(Command::Read, &read_body(f, 0, 300_000), 5).status(), NtStatus::SUCCESS);
    assert_eq!(c.call_charged(Command::Read, &read_body(f, 0, 65536), 0).status(), NtStatus::SUCCESS, "charge 0 pays for 64 KiB");

    let mut b = BytesMut::new();
    IoctlRequest {
        ctl_code: fsctl::FSCTL_QUERY_NETWORK_INTERFACE_INFO,
        file_id: protocol::msg::FileId::ANY,
        input: &[],
        max_input_response: 0,
        output: &[],
        max_output_response: 200_000,
        flags: 1,
    }
    .encode(&mut b);
    assert_eq!(c.call_charged(Command::Ioctl, &b, 1).status(), NtStatus::INVALID_PARAMETER, "IOCTL asking 200000 bytes charged 1");
    assert_eq!(c.call_charged(Command::Ioctl, &b, 4).status(), NtStatus::SUCCESS);

    // READs beyond MaxReadSize are INVALID_PARAMETER whatever they are charged.
    let max = c.max_read;
    assert_eq!(c.call_charged(Command::Read, &read_body(f, 0, max + 1), client::charge(max as usize + 1)).status(), NtStatus::INVALID_PARAMETER);

    // SMB 2.0.2: no multi-credit requests, 64 KiB per request.
    let mut c = client(addr, dialect::SMB2_0_2);
    assert_eq!(c.max_read, 65536);
    let f = c.create("charge.bin").expect("create");
    assert_eq!(c.call_charged(Command::Read, &read_body(f, 0, 65536), 0).status(), NtStatus::SUCCESS);
    let mid = c.next_mid;
    let a = c.call_charged(Command::Read, &read_body(f, 0, 65537), 2);
    assert_eq!(a.status(), NtStatus::INVALID_PARAMETER);
    // On 2.0.2 the charge is not a range: the request used one id.
    c.next_mid = mid + 1;
    assert_eq!(c.echo(), NtStatus::SUCCESS);
}

/// A normal multi-credit READ of the largest size offered works, and so
/// does a WRITE of it.
#[test]
fn a_multi_credit_read_and_write_of_the_largest_size_work() {
    let (addr, dir) = start();
    let mut c = client(addr, dialect::SMB3_0_2);
    assert_eq!(c.max_read, 8 << 20);
    let data: Vec<u8> = (0..c.max_read).map(|i| (i % 251) as u8).collect();
    let f = c.create("big.bin").expect("create");
    assert_eq!(c.write(f, 0, &data), NtStatus::SUCCESS);
    assert_eq!(std::fs::read(dir.path().join("big.bin")).unwrap(), data);
    let got = c.read(f, 0, c.max_read).expect("an 8 MiB READ charged 128 credits");
    assert!(got == data, "the data read back");
}

/// Issue 11, item 3: one small frame chaining many 8 MiB READs, each
/// charged its 128 credits, is answered with the first READ's data and
/// STATUS_INSUFFICIENT_RESOURCES for the rest: the answer stays within
/// MaxReadSize plus headers, the server's memory does not grow by the sum
/// of the READs, and the connection goes on.
#[test]
fn a_compound_of_large_reads_is_bounded() {
    const READS: usize = 24;
    let (addr, dir) = start();
    std::fs::write(dir.path().join("eight.bin"), vec![5u8; 8 << 20]).unwrap();
    let mut c = client(addr, dialect::SMB3_0_2);
    let f = c.create("eight.bin").expect("open");
    // Enough credits for the whole compound (24 x 128 = 3072).
    c.credit_request = 8192;
    assert_eq!(c.echo(), NtStatus::SUCCESS);
    c.credit_request = 256;

    let charge = client::charge(8 << 20);
    let msgs: Vec<Vec<u8>> = (0..READS)
        .map(|i| c.message(Command::Read, c.next_mid + (i as u64) * u64::from(charge), charge, &read_body(f, 0, 8 << 20)))
        .collect();
    c.next_mid += (READS as u64) * u64::from(charge);
    let chain = compound(&msgs, false);
    assert!(chain.len() < 4096, "one small frame");

    let peak_before = client::peak_rss_kib(std::process::id());
    c.send_raw(&frame(&chain));
    let answer = c.recv_frame().expect("one answer for the compound");
    let peak_after = client::peak_rss_kib(std::process::id());

    let els = elements(&answer);
    assert_eq!(els.len(), READS, "an answer for each READ");
    assert_eq!(NtStatus(els[0].0.status), NtStatus::SUCCESS);
    assert_eq!(ReadResponse::parse(&els[0].1).expect("read response").data.len(), 8 << 20);
    for (i, (h, _)) in els.iter().enumerate().skip(1) {
        assert_eq!(NtStatus(h.status), NtStatus::INSUFFICIENT_RESOURCES, "READ {i}");
    }
    assert!(answer.len() <= (8 << 20) + 64 * 1024, "answer of {} bytes", answer.len());
    // Before the bound the server held all 24 READs (192 MiB) at once.
    let grown_mib = peak_after.saturating_sub(peak_before) / 1024;
    assert!(grown_mib < 64, "peak RSS grew by {grown_mib} MiB");

    assert_eq!(c.echo(), NtStatus::SUCCESS, "the connection goes on");
}

/// The ids of a compound must all be granted before it is sent: its
/// elements cannot live on the credits of their own answers, so the credits
/// a client holds bound what one frame can ask for. A client holding one
/// credit that sends two READs in a compound, or one READ charged two, is
/// refused (the connection closes) before anything runs.
#[test]
fn requests_beyond_the_credits_held_are_refused() {
    let (addr, _dir) = start();
    for two_reads in [true, false] {
        let mut c = Client::connect(addr);
        // Ask for one credit a request: the client always holds exactly one.
        c.credit_request = 1;
        c.negotiate(dialect::SMB3_0_2);
        c.login("duet", "duetpass").expect("login");
        c.tree_connect("data").expect("tree connect");
        let f = c.create("held.bin").expect("create");
        assert_eq!(c.write(f, 0, &[3; 65536]), NtStatus::SUCCESS);
        let mid = c.next_mid;
        let msg = if two_reads {
            compound(&[c.message(Command::Read, mid, 1, &read_body(f, 0, 65536)), c.message(Command::Read, mid + 1, 1, &read_body(f, 0, 65536))], false)
        } else {
            c.message(Command::Read, mid, 2, &read_body(f, 0, 131072))
        };
        c.send_raw(&frame(&msg));
        assert!(c.is_closed_within(CLOSE_WAIT), "two reads {two_reads}: one credit held, two charged");
    }
}

/// An async request's interim answer (STATUS_PENDING) grants the credits;
/// its final answer grants none ([MS-SMB2] 3.3.4.1.2). The CANCEL that ends
/// it reuses its id.
#[test]
fn an_async_answer_grants_credits_in_the_interim_only() {
    let (addr, _dir) = start();
    let mut c = client(addr, dialect::SMB3_0_2);
    let root = c.open_root().expect("open the root");
    let mut b = BytesMut::new();
    ChangeNotifyRequest { flags: 0, output_buffer_length: 4096, file_id: root, completion_filter: 0x1 }.encode(&mut b);
    let mid = c.send(Command::ChangeNotify, &b);
    let interim = c.recv().expect("the interim answer");
    assert_eq!(interim.status(), NtStatus::PENDING);
    assert!(interim.hdr.flags & flags::ASYNC_COMMAND != 0);
    assert!(interim.hdr.credits >= 1, "the interim answer grants credits");

    let mut cancel = BytesMut::new();
    Header { command: Command::Cancel as u16, message_id: mid, session_id: c.session_id, tree_id: c.tree_id, ..Default::default() }
        .encode(&mut cancel);
    cancel.extend_from_slice(&[4, 0, 0, 0]);
    c.send_raw(&frame(&cancel));
    let last = c.recv().expect("the final answer");
    assert_eq!(last.status(), NtStatus::CANCELLED);
    assert_eq!(last.hdr.message_id, mid);
    assert_eq!(last.hdr.credits, 0, "the final answer grants none");
    assert_eq!(c.echo(), NtStatus::SUCCESS);
}
