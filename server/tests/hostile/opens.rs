//! An open's long-lived fields, which only the state model keeps
//! (`server/src/state/fields.rs`): a change one request makes is there for
//! the very next one, whether it is the next element of the same compound
//! or a request read while the first one's answer is still being made.

use bytes::BytesMut;
use protocol::header::Command;
use protocol::msg::close::CloseRequest;
use protocol::msg::create::create_disposition::{CREATE, OPEN_IF};
use protocol::msg::negotiate::dialect;
use protocol::msg::set_info::SetInfoRequest;
use protocol::msg::FileId;
use protocol::NtStatus;

use crate::client::{charge, compound, elements, frame, write_body, Client, ACCESS_RW};
use crate::common;

/// FileDispositionInformation and FileDispositionInformationEx ([MS-FSCC] 2.4.11, 2.4.12).
const FILE_DISPOSITION_INFORMATION: u8 = 13;
const FILE_DISPOSITION_INFORMATION_EX: u8 = 64;
/// FILE_DISPOSITION_DELETE | FILE_DISPOSITION_ON_CLOSE.
const DELETE_ON_CLOSE: u32 = 0x1 | 0x8;

/// A message of the client's session and tree with this ChannelSequence
/// ([MS-SMB2] 2.2.1.2: the low 16 bits of the request's Status field).
fn with_channel_sequence(mut msg: Vec<u8>, sequence: u16) -> Vec<u8> {
    msg[8..10].copy_from_slice(&sequence.to_le_bytes());
    msg
}

/// CREATE, SET_INFO that marks the file for deletion, CLOSE, as one
/// related compound: the CLOSE deletes the file, the delete-on-close it
/// reads being the one the SET_INFO before it set.
#[test]
fn a_compound_s_close_deletes_what_its_set_info_marked() {
    let (addr, dir) = common::start_in_process(&[("duet", "duetpass")], None);
    let mut c = Client::logged_on(addr, dialect::SMB3_0_2, "duet", "duetpass");
    c.tree_connect("data").expect("tree connect");
    for (name, class, value) in [
        ("plain.txt", FILE_DISPOSITION_INFORMATION, vec![1u8]),
        ("ex.txt", FILE_DISPOSITION_INFORMATION_EX, DELETE_ON_CLOSE.to_le_bytes().to_vec()),
    ] {
        let create = Client::create_body(name, ACCESS_RW, CREATE, 0);
        let mut set = BytesMut::new();
        SetInfoRequest {
            info_type: 1,
            file_info_class: class,
            buffer: &value,
            additional_information: 0,
            file_id: FileId::ANY,
        }
        .encode(&mut set);
        let mut close = BytesMut::new();
        CloseRequest { flags: 0, file_id: FileId::ANY }.encode(&mut close);
        let mid = c.next_mid;
        c.next_mid += 3;
        let msgs = [
            c.message(Command::Create, mid, 1, &create),
            c.message(Command::SetInfo, mid + 1, 1, &set),
            c.message(Command::Close, mid + 2, 1, &close),
        ];
        c.send_raw(&frame(&compound(&msgs, true)));
        let answers = elements(&c.recv_frame().expect("the compound's answers"));
        let statuses: Vec<_> = answers.iter().map(|(h, _)| NtStatus(h.status)).collect();
        assert_eq!(statuses, [NtStatus::SUCCESS; 3], "{name}");
        assert!(!dir.path().join(name).exists(), "{name}: the compound's CLOSE deleted it");
    }
}

/// A WRITE raises the open's ChannelSequence, and the request after it
/// holds it: a WRITE with the old one is stale (STATUS_FILE_NOT_AVAILABLE,
/// [MS-SMB2] 3.3.5.2.10), a READ with it goes on. Also when the raising
/// WRITE is large (its data written off the connection's task, its answer
/// later) and the stale one is sent right behind it.
#[test]
fn a_raised_channel_sequence_holds_for_the_next_request() {
    let (addr, _dir) = common::start_in_process(&[("duet", "duetpass")], None);
    let mut c = Client::logged_on(addr, dialect::SMB3_0_2, "duet", "duetpass");
    c.tree_connect("data").expect("tree connect");
    let f = c.create_with("seq.txt", ACCESS_RW, OPEN_IF, 0).expect("create");
    let send = |c: &mut Client, command: Command, body: &[u8], n: usize, sequence: u16| {
        let mid = c.next_mid;
        let charge = charge(n);
        c.next_mid += u64::from(charge);
        let msg = with_channel_sequence(c.message(command, mid, charge, body), sequence);
        c.send_raw(&frame(&msg));
        mid
    };
    let small = write_body(f, 0, b"data");
    send(&mut c, Command::Write, &small, 4, 5);
    assert_eq!(c.recv().expect("answer").status(), NtStatus::SUCCESS);
    send(&mut c, Command::Write, &small, 4, 4);
    assert_eq!(c.recv().expect("answer").status(), NtStatus::FILE_NOT_AVAILABLE, "a stale WRITE");
    let read = crate::client::read_body(f, 0, 4);
    send(&mut c, Command::Read, &read, 4, 4);
    assert_eq!(c.recv().expect("answer").status(), NtStatus::SUCCESS, "a READ with the old sequence goes on");

    let large = vec![7u8; 64 * 1024];
    let big = write_body(f, 0, &large);
    let first = send(&mut c, Command::Write, &big, large.len(), 9);
    let second = send(&mut c, Command::Write, &small, 4, 8);
    let mut got = std::collections::HashMap::new();
    while got.len() < 2 {
        let a = c.recv().expect("answer");
        got.insert(a.hdr.message_id, a.status());
    }
    assert_eq!(got[&first], NtStatus::SUCCESS);
    assert_eq!(got[&second], NtStatus::FILE_NOT_AVAILABLE, "stale behind a large WRITE that raised the sequence");
    assert_eq!(c.close(f), NtStatus::SUCCESS);
}
