//! The pipeline's one door out, seen from the wire, on an in-process
//! server: a compound whose CREATE waits for a break its own connection
//! must acknowledge is parked and resumed (no element re-enters the
//! pipeline while it waits), and break notices leave through the same
//! encoder as answers (encrypted for an encrypted session) and pass the
//! journal's points 3 and 4.

mod common;
#[path = "hostile/client.rs"]
mod client;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use client::{compound, elements, Client};
use protocol::crypto::transform;
use protocol::header::{flags, Command};
use protocol::msg::create::{create_disposition, oplock_level, share_access, CreateRequest, CreateResponse};
use protocol::msg::negotiate::dialect;
use protocol::msg::oplock_break::OplockBreak;
use protocol::msg::query_info::QueryInfoRequest;
use protocol::msg::FileId;
use protocol::NtStatus;
use server::journal::{Record, RecordingJournal};

const USER: (&str, &str) = ("duet", "duetpass");

/// FILE_READ_DATA | FILE_READ_ATTRIBUTES | SYNCHRONIZE.
const ACCESS_READ: u32 = 0x0000_0001 | 0x0000_0080 | 0x0010_0000;

fn create_body(name: &str, oplock: u8, disposition: u32) -> BytesMut {
    let mut b = BytesMut::new();
    CreateRequest {
        security_flags: 0,
        requested_oplock_level: oplock,
        impersonation_level: 2,
        smb_create_flags: 0,
        desired_access: ACCESS_READ,
        file_attributes: 0,
        share_access: share_access::READ | share_access::WRITE | share_access::DELETE,
        create_disposition: disposition,
        create_options: 0,
        name: name.into(),
        create_contexts: vec![],
    }
    .encode(&mut b);
    b
}

/// Opens `name` (creating it) with a batch oplock; returns its file id.
fn open_batch(c: &mut Client, name: &str) -> FileId {
    let a = c.call(Command::Create, &create_body(name, oplock_level::BATCH, create_disposition::OPEN_IF));
    assert_eq!(a.status(), NtStatus::SUCCESS);
    let r = CreateResponse::parse(&a.msg).expect("create response");
    assert_eq!(r.oplock_level, oplock_level::BATCH);
    r.file_id
}

fn ack_body(file_id: FileId, level: u8) -> BytesMut {
    let mut b = BytesMut::new();
    OplockBreak { oplock_level: level, file_id }.encode(&mut b);
    b
}

/// A compound CREATE + related QUERY_INFO whose CREATE breaks the batch
/// oplock this same connection holds (smbtorture's
/// smb2.compound.compound-break, run in CI by `binary(oplocks)`, does the
/// same through Samba's client): the break notice comes first, then the
/// CREATE's interim STATUS_PENDING, alone; the connection reads on (an
/// ECHO is answered, and so is the acknowledgement); then the rest of the
/// chain comes as one compound: the CREATE's final answer (async, no
/// credits: the interim had them) and the QUERY_INFO's. Before, the CREATE
/// waited inside the pipeline, which re-entered itself to read the
/// acknowledgement, and no interim answer was sent.
#[test]
fn a_compound_waiting_for_its_own_connections_break_is_parked_and_resumed() {
    let (addr, _dir) = common::start_in_process(&[USER], None);
    let mut c = Client::logged_on(addr, dialect::SMB2_1, USER.0, USER.1);
    c.tree_connect("data").expect("tree connect");
    let held = open_batch(&mut c, "doc.pptx");

    let mut qi = BytesMut::new();
    QueryInfoRequest {
        info_type: 1,
        file_info_class: 5, // FileStandardInformation
        output_buffer_length: 0x1000,
        input_buffer: &[],
        additional_information: 0,
        flags: 0,
        file_id: FileId::ANY,
    }
    .encode(&mut qi);
    let create_mid = c.next_mid;
    let m1 = c.message(Command::Create, create_mid, 1, &create_body("doc.pptx", oplock_level::NONE, create_disposition::OPEN));
    let m2 = c.message(Command::QueryInfo, create_mid + 1, 1, &qi);
    c.next_mid += 2;
    let chain = c.protect(compound(&[m1, m2], true));
    c.send_raw(&chain);

    let notice = c.recv().expect("the break notice");
    assert_eq!(notice.hdr.command, Command::OplockBreak as u16);
    assert_eq!(notice.hdr.message_id, u64::MAX);
    let n = OplockBreak::parse(&notice.msg).expect("oplock break");
    assert_eq!((n.file_id, n.oplock_level), (held, oplock_level::II));

    let interim = c.recv().expect("the CREATE's interim answer");
    assert_eq!(interim.hdr.message_id, create_mid);
    assert_eq!(interim.status(), NtStatus::PENDING);
    assert_ne!(interim.hdr.flags & flags::ASYNC_COMMAND, 0);
    assert_ne!(interim.hdr.credits, 0, "the interim answer grants the CREATE's credits");
    assert_eq!(interim.hdr.next_command, 0, "the interim answer ends its frame: the chain is parked behind it");

    // The connection reads on while the CREATE waits.
    let echo = c.call(Command::Echo, &[4, 0, 0, 0]);
    assert_eq!(echo.status(), NtStatus::SUCCESS);

    c.send(Command::OplockBreak, &ack_body(held, oplock_level::II));
    let acked = c.recv().expect("the acknowledgement's answer");
    assert_eq!((acked.hdr.command, acked.status()), (Command::OplockBreak as u16, NtStatus::SUCCESS));

    let rest = c.recv().expect("the rest of the chain");
    let els = elements(&rest.msg);
    assert_eq!(els.len(), 2, "the CREATE's final answer and the QUERY_INFO's come as one compound");
    let (h1, b1) = &els[0];
    assert_eq!((h1.command, h1.message_id, h1.status), (Command::Create as u16, create_mid, NtStatus::SUCCESS.0));
    assert_ne!(h1.flags & flags::ASYNC_COMMAND, 0);
    assert_eq!(h1.async_id, interim.hdr.async_id);
    assert_eq!(h1.credits, 0, "credits are granted once, on the interim answer");
    let opened = CreateResponse::parse(b1).expect("create response").file_id;
    assert_ne!(opened, held);
    let (h2, _) = &els[1];
    assert_eq!((h2.command, h2.message_id, h2.status), (Command::QueryInfo as u16, create_mid + 1, NtStatus::SUCCESS.0));
    assert_ne!(h2.flags & flags::RELATED_OPERATIONS, 0);
    assert_ne!(h2.credits, 0);
}

/// The points a recording journal saw, as text: `U:<op>`, `1:<op>`,
/// `2:<op>:<index>`, `3:<op>:<index>`, `4:<op>`.
fn events(rec: &RecordingJournal) -> Vec<String> {
    rec.records()
        .into_iter()
        .filter_map(|r| match r {
            Record::Unsolicited { op, .. } => Some(format!("U:{}", op.0)),
            Record::PreAck { op, .. } => Some(format!("1:{}", op.0)),
            Record::PreCommand { op, index } => Some(format!("2:{}:{index}", op.0)),
            Record::PostCompletion { op, index, .. } => Some(format!("3:{}:{index}", op.0)),
            Record::PostReplyAck { op } => Some(format!("4:{}", op.0)),
            _ => None,
        })
        .collect()
}

/// The operation whose point 3 recorded `response`.
fn completed_with(rec: &RecordingJournal, response: &[u8]) -> Option<u64> {
    rec.records().into_iter().find_map(|r| match r {
        Record::PostCompletion { op, response: r, .. } if r == response => Some(op.0),
        _ => None,
    })
}

/// A break notice to an encrypted (SMB 3.0.2) session leaves encrypted,
/// through the pipeline's encoder, under an op id of its own that passes
/// point 3 (with the notice's bytes) and point 4, in that order.
#[test]
fn a_break_notice_on_an_encrypted_session_is_encrypted_and_journaled() {
    let rec = Arc::new(RecordingJournal::new());
    let (addr, _dir) = common::start_in_process(&[USER], Some(rec.clone()));
    let mut c = Client::logged_on(addr, dialect::SMB3_0_2, USER.0, USER.1);
    c.encrypt = true;
    c.tree_connect("data").expect("tree connect");
    let held = open_batch(&mut c, "secret.txt");

    // A second open of the file, on another connection, breaks the oplock.
    let mut other = Client::logged_on(addr, dialect::SMB2_1, USER.0, USER.1);
    other.tree_connect("data").expect("tree connect");
    other.send(Command::Create, &create_body("secret.txt", oplock_level::NONE, create_disposition::OPEN));

    let raw = c.recv_frame().expect("the break notice");
    assert!(raw.starts_with(&transform::TRANSFORM_PROTOCOL_ID), "the notice is encrypted");
    let keys = c.keys.as_ref().unwrap();
    let msg = transform::decrypt(protocol::msg::negotiate::cipher::AES_128_CCM, &keys.encryption_key, &raw).expect("decrypt");
    let hdr = protocol::header::Header::parse(&msg).unwrap();
    assert_eq!((hdr.command, hdr.message_id), (Command::OplockBreak as u16, u64::MAX));
    assert_eq!(OplockBreak::parse(&msg).unwrap().file_id, held);
    let body = msg[protocol::header::HEADER_LEN..].to_vec();

    // Point 4 is recorded once the frame is handed on, maybe after the
    // client has read it: wait for it (no bound on speed is asserted).
    let deadline = Instant::now() + Duration::from_secs(20);
    let op = loop {
        let found = completed_with(&rec, &body);
        let events = events(&rec);
        if let Some(op) = found {
            if events.contains(&format!("4:{op}")) {
                let at = |e: String| events.iter().position(|x| *x == e).unwrap();
                assert!(at(format!("U:{op}")) < at(format!("3:{op}:0")), "{events:?}");
                assert!(at(format!("3:{op}:0")) < at(format!("4:{op}")), "{events:?}");
                assert!(!events.contains(&format!("1:{op}")), "a notice has no point 1: {events:?}");
                break op;
            }
        }
        assert!(Instant::now() < deadline, "the notice never passed points 3 and 4: {events:?}");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_ne!(op, 0);

    // The holder acknowledges; the other open goes ahead.
    c.send(Command::OplockBreak, &ack_body(held, oplock_level::II));
    let acked = c.recv().expect("the acknowledgement's answer");
    assert_eq!(acked.status(), NtStatus::SUCCESS);
    let opened = loop {
        let a = other.recv().expect("the second open's answer");
        if a.status() != NtStatus::PENDING {
            break a;
        }
    };
    assert_eq!(opened.status(), NtStatus::SUCCESS);
}

/// A CREATE that fails with a status of warning severity (an ExtA context
/// with a bad EA name: STATUS_INVALID_EA_NAME, 0x80000013) fails the
/// related elements after it with the same status, as an error-severity
/// failure does ([MS-SMB2] 3.3.5.2.7.2). Before, only error statuses
/// counted, and the related QUERY_INFO ran on no file at all.
#[test]
fn a_create_failed_with_a_warning_fails_its_related_elements() {
    use protocol::msg::create_context::RequestContext;
    let (addr, _dir) = common::start_in_process(&[USER], None);
    let mut c = Client::logged_on(addr, dialect::SMB2_1, USER.0, USER.1);
    c.tree_connect("data").expect("tree connect");
    let mut eas = BytesMut::new();
    protocol::fscc::encode_full_ea_list(&[protocol::fscc::FullEa { flags: 0, name: b"bad?name", value: b"x" }], &mut eas)
        .unwrap();
    let mut create = BytesMut::new();
    CreateRequest {
        security_flags: 0,
        requested_oplock_level: oplock_level::NONE,
        impersonation_level: 2,
        smb_create_flags: 0,
        desired_access: ACCESS_READ,
        file_attributes: 0,
        share_access: share_access::READ,
        create_disposition: create_disposition::OPEN_IF,
        create_options: 0,
        name: "new.txt".into(),
        create_contexts: vec![RequestContext::EaBuffer(&eas)],
    }
    .encode(&mut create);
    let mut qi = BytesMut::new();
    QueryInfoRequest {
        info_type: 1,
        file_info_class: 5, // FileStandardInformation
        output_buffer_length: 0x1000,
        input_buffer: &[],
        additional_information: 0,
        flags: 0,
        file_id: FileId::ANY,
    }
    .encode(&mut qi);
    let mid = c.next_mid;
    let m1 = c.message(Command::Create, mid, 1, &create);
    let m2 = c.message(Command::QueryInfo, mid + 1, 1, &qi);
    c.next_mid += 2;
    let chain = c.protect(compound(&[m1, m2], true));
    c.send_raw(&chain);
    let answer = c.recv().expect("the chain's answer");
    let els = elements(&answer.msg);
    let statuses: Vec<u32> = els.iter().map(|(h, _)| h.status).collect();
    let invalid_ea_name = 0x8000_0013;
    assert_eq!(statuses, vec![invalid_ea_name, invalid_ea_name]);
}
