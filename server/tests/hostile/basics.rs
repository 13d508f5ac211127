//! The raw client against a real server, doing everything by the rules:
//! plain, signed and encrypted sessions on each dialect it speaks. If these
//! fail, the other hostile tests prove nothing.

use protocol::msg::negotiate::dialect;
use protocol::NtStatus;

use crate::client::Client;
use crate::common;

#[test]
fn the_raw_client_works_plain_signed_and_encrypted() {
    let (addr, dir) = common::start_in_process(&[("duet", "duetpass")], None);
    for (d, sign, encrypt) in [
        (dialect::SMB2_0_2, false, false),
        (dialect::SMB2_1, true, false),
        (dialect::SMB3_0_2, true, false),
        (dialect::SMB3_0_2, false, true),
    ] {
        let mut c = Client::logged_on(addr, d, "duet", "duetpass");
        c.sign = sign;
        c.encrypt = encrypt;
        c.tree_connect("data").expect("tree connect");
        let name = format!("basics-{d:x}-{sign}-{encrypt}.txt");
        let f = c.create(&name).expect("create");
        assert_eq!(c.write(f, 0, b"hello, duet"), NtStatus::SUCCESS);
        assert_eq!(c.read(f, 0, 64).expect("read"), b"hello, duet");
        assert_eq!(c.close(f), NtStatus::SUCCESS);
        let root = c.open_root().expect("open root");
        let (status, buf) = c.query_directory(root, "basics-*");
        assert_eq!(status, NtStatus::SUCCESS);
        let listed = String::from_utf16_lossy(
            &buf.chunks_exact(2).map(|p| u16::from_le_bytes([p[0], p[1]])).collect::<Vec<_>>(),
        );
        assert!(listed.contains(&name), "{name} listed");
        assert_eq!(std::fs::read(dir.path().join(&name)).unwrap(), b"hello, duet");
    }
    let mut c = Client::connect(addr);
    c.negotiate(dialect::SMB3_0_2);
    assert_eq!(c.login("duet", "wrong"), Err(NtStatus::LOGON_FAILURE));
}

/// Two clients that create one name at once with OPEN_IF both succeed: one
/// makes it and the other opens what was made (smbtorture's
/// smb2.create.mkdir-dup, which once lost this race in CI and answered
/// OBJECT_NAME_COLLISION). Directories and files, many rounds to meet the
/// race.
#[test]
fn two_clients_creating_one_name_with_open_if_both_get_it() {
    use protocol::msg::create::create_disposition::OPEN_IF;
    use std::sync::{Arc, Barrier};
    const ROUNDS: usize = 300;
    const DIRECTORY: u32 = 0x1;
    const NON_DIRECTORY: u32 = 0x40;
    let (addr, _dir) = common::start_in_process(&[("duet", "duetpass")], None);
    let barrier = Arc::new(Barrier::new(2));
    let racers: Vec<_> = (0..2)
        .map(|_| {
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                let mut c = Client::logged_on(addr, dialect::SMB3_0_2, "duet", "duetpass");
                c.tree_connect("data").expect("tree connect");
                let mut failed = Vec::new();
                for round in 0..ROUNDS {
                    let (name, options) = match round % 2 {
                        0 => (format!("race-dir-{round}"), DIRECTORY),
                        _ => (format!("race-file-{round}"), NON_DIRECTORY),
                    };
                    barrier.wait();
                    match c.create_with(&name, crate::client::ACCESS_RW, OPEN_IF, options) {
                        Ok(f) => assert_eq!(c.close(f), NtStatus::SUCCESS),
                        Err(status) => failed.push(format!("{name}: {status:?}")),
                    }
                }
                failed
            })
        })
        .collect();
    let failed: Vec<String> = racers.into_iter().flat_map(|r| r.join().unwrap()).collect();
    assert!(failed.is_empty(), "{} of {} racing OPEN_IF creates failed: {:?}", failed.len(), 2 * ROUNDS, failed);
}

/// An append-only open (FILE_APPEND_DATA without FILE_WRITE_DATA) writes
/// at the end whatever offset it names ([MS-FSA] 2.1.5.3), also when large
/// WRITEs come back to back: the second is handled while the first is
/// still being written, so the end must be taken when each one writes,
/// not when it is handled (a second WRITE overwrote the first).
#[test]
fn pipelined_appends_all_land_at_the_end() {
    use crate::client::{charge, write_body};
    use protocol::header::Command;
    use protocol::msg::create::create_disposition::OPEN_IF;
    const APPEND_ONLY: u32 = 0x0000_0004 | 0x0010_0000 | 0x0000_0080; // FILE_APPEND_DATA | SYNCHRONIZE | FILE_READ_ATTRIBUTES
    const PIECE: usize = 256 * 1024;
    const PIECES: usize = 24;
    let (addr, dir) = common::start_in_process(&[("duet", "duetpass")], None);
    let mut c = Client::logged_on(addr, dialect::SMB3_0_2, "duet", "duetpass");
    c.tree_connect("data").expect("tree connect");
    let f = c.create_with("appended.bin", APPEND_ONLY, OPEN_IF, 0x40).expect("append-only open");
    for i in 0..PIECES {
        c.send_charged(Command::Write, &write_body(f, 0, &vec![i as u8 + 1; PIECE]), charge(PIECE));
    }
    for _ in 0..PIECES {
        assert_eq!(c.recv().expect("an answer to each WRITE").status(), NtStatus::SUCCESS);
    }
    assert_eq!(c.close(f), NtStatus::SUCCESS);
    let got = std::fs::read(dir.path().join("appended.bin")).unwrap();
    assert_eq!(got.len(), PIECES * PIECE, "every append kept");
    let mut pieces: Vec<u8> = got.chunks(PIECE).map(|p| p[0]).collect();
    assert!(got.chunks(PIECE).all(|p| p.iter().all(|&b| b == p[0])), "pieces whole");
    pieces.sort_unstable();
    assert_eq!(pieces, (1..=PIECES as u8).collect::<Vec<_>>(), "each piece once");
}
