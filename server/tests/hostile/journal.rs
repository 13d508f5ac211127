//! The consistency points of large READs and WRITEs, which finish off the
//! connection's task (`pipeline::spawn_deferred`): each element gets one
//! point-3 record, with the answer the client is sent, and the journal can
//! find that answer by the request's replay key.

use std::collections::HashMap;
use std::sync::Arc;

use protocol::header::{Command, Header};
use protocol::msg::negotiate::dialect;
use protocol::NtStatus;
use server::journal::{Journal, OpId, Record, RecordingJournal, ReplayKey};

use crate::client::{write_body, Client};
use crate::common;

/// A point-3 record: the response and the replay key.
type Completion = (Vec<u8>, Option<ReplayKey>);

#[test]
fn a_deferred_write_has_one_point_3_with_its_real_answer() {
    let rec = Arc::new(RecordingJournal::new());
    let (addr, _dir) = common::start_in_process(&[("duet", "duetpass")], Some(rec.clone()));
    let mut c = Client::logged_on(addr, dialect::SMB3_0_2, "duet", "duetpass");
    c.tree_connect("data").expect("tree connect");
    let f = c.create("deferred.bin").expect("create");
    let big = vec![0x5a; 64 * 1024]; // large enough to be deferred
    assert_eq!(c.write(f, 0, b"small"), NtStatus::SUCCESS);
    assert_eq!(c.write(f, 0, &big), NtStatus::SUCCESS);
    assert_eq!(c.read(f, 0, big.len() as u32).expect("read"), big);

    let records = rec.records();
    let mut commands: HashMap<OpId, u16> = HashMap::new();
    let mut completions: HashMap<(OpId, usize), Vec<Completion>> = HashMap::new();
    for r in &records {
        match r {
            Record::PreAck { op, frame, .. } => {
                commands.insert(*op, Header::parse(frame).expect("journaled request").command);
            }
            Record::PostCompletion { op, index, response, key, .. } => {
                completions.entry((*op, *index)).or_default().push((response.clone(), *key));
            }
            _ => {}
        }
    }
    for (at, seen) in &completions {
        assert_eq!(seen.len(), 1, "one point-3 record per element, {at:?}: {seen:?}");
    }
    // The large WRITE's record holds its real answer: 64 KiB written
    // (Count, [MS-SMB2] 2.2.22), kept under the request's replay key.
    let writes: Vec<&Completion> = completions
        .iter()
        .filter(|((op, _), _)| commands.get(op) == Some(&(Command::Write as u16)))
        .map(|(_, seen)| &seen[0])
        .collect();
    assert_eq!(writes.len(), 2);
    let (response, key) = writes
        .iter()
        .find(|(resp, _)| resp.get(4..8) == Some(&(big.len() as u32).to_le_bytes()[..]))
        .expect("the large WRITE's answer was journaled");
    let key = key.expect("a WRITE on an open has a replay key");
    let mut msg = Vec::new();
    let mut h = bytes::BytesMut::new();
    Header { command: Command::Write as u16, ..Default::default() }.encode(&mut h);
    msg.extend_from_slice(&h);
    msg.extend_from_slice(&write_body(f, 0, &big));
    assert_eq!(ReplayKey::of(&Header::parse(&msg).unwrap(), &msg, None), Some(key), "the client's resend has the same key");
    assert_eq!(&rec.replayed(&key).expect("saved").response[..], &response[..]);
}
