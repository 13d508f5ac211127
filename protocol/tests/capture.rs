//! Replays a real smbclient session (captured against Samba's smbd with
//! scripts/capture.py: put, get, ls, rm with signing required) through the
//! codecs: every request parses with its command's parser, every response
//! with its parser, and the conversation has the shape smbclient gives it.

use protocol::header::{Command, Header};
use protocol::msg::*;

fn frames() -> Vec<(u8, Vec<u8>)> {
    let raw = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/../testdata/captures/smbclient-smbd-session.bin")).unwrap();
    let mut out = Vec::new();
    let mut at = 0;
    while at < raw.len() {
        let dir = raw[at];
        let n = u32::from_be_bytes(raw[at + 1..at + 5].try_into().unwrap()) as usize;
        out.push((dir, raw[at + 5..at + 5 + n].to_vec()));
        at += 5 + n;
    }
    out
}

/// The elements of a (possibly compound) message.
fn elements(msg: &[u8]) -> Vec<&[u8]> {
    let mut v = Vec::new();
    let mut at = 0;
    loop {
        let h = Header::parse(&msg[at..]).unwrap();
        let end = if h.next_command == 0 { msg.len() } else { at + h.next_command as usize };
        v.push(&msg[at..end]);
        if h.next_command == 0 {
            return v;
        }
        at = end;
    }
}

#[test]
fn captured_session_parses_end_to_end() {
    let frames = frames();
    assert!(frames.len() > 10, "capture has {} frames", frames.len());
    let mut seen = Vec::new();
    for (dir, msg) in &frames {
        for e in elements(msg) {
            let h = Header::parse(e).unwrap();
            let cmd = h.command().expect("known command");
            let request = *dir == b'C';
            assert_eq!(request, h.flags & protocol::header::flags::SERVER_TO_REDIR == 0);
            if request {
                seen.push(cmd);
                let ok = match cmd {
                    Command::Negotiate => negotiate::NegotiateRequest::parse(e).map(drop),
                    Command::SessionSetup => session_setup::SessionSetupRequest::parse(e).map(drop),
                    Command::TreeConnect => tree_connect::TreeConnectRequest::parse(e).map(drop),
                    Command::Create => create::CreateRequest::parse(e).map(drop),
                    Command::Close => close::CloseRequest::parse(e).map(drop),
                    Command::Read => read::ReadRequest::parse(e).map(drop),
                    Command::Write => write::WriteRequest::parse(e).map(drop),
                    Command::QueryDirectory => query_directory::QueryDirectoryRequest::parse(e).map(drop),
                    Command::QueryInfo => query_info::QueryInfoRequest::parse(e).map(drop),
                    Command::SetInfo => set_info::SetInfoRequest::parse(e).map(drop),
                    Command::Ioctl => ioctl::IoctlRequest::parse(e).map(drop),
                    Command::Logoff => logoff::LogoffRequest::parse(e).map(drop),
                    Command::TreeDisconnect => tree_disconnect::TreeDisconnectRequest::parse(e).map(drop),
                    Command::Echo => echo::EchoRequest::parse(e).map(drop),
                    Command::Flush => flush::FlushRequest::parse(e).map(drop),
                    other => panic!("unexpected request {other:?}"),
                };
                ok.unwrap_or_else(|err| panic!("{cmd:?} request: {err}"));
            } else if h.status == 0 {
                let ok = match cmd {
                    Command::Negotiate => negotiate::NegotiateResponse::parse(e).map(drop),
                    Command::SessionSetup => session_setup::SessionSetupResponse::parse(e).map(drop),
                    Command::TreeConnect => tree_connect::TreeConnectResponse::parse(e).map(drop),
                    Command::Create => create::CreateResponse::parse(e).map(drop),
                    Command::Read => read::ReadResponse::parse(e).map(drop),
                    Command::Write => write::WriteResponse::parse(e).map(drop),
                    _ => Ok(()),
                };
                ok.unwrap_or_else(|err| panic!("{cmd:?} response: {err}"));
            }
        }
    }
    // The first three exchanges are negotiate and the two legs of NTLM;
    // the file was written, read back and listed.
    assert_eq!(&seen[..3], &[Command::Negotiate, Command::SessionSetup, Command::SessionSetup]);
    for c in [Command::TreeConnect, Command::Create, Command::Write, Command::Read, Command::QueryDirectory, Command::Close] {
        assert!(seen.contains(&c), "{c:?} missing from {seen:?}");
    }
    // The client's NEGOTIATE offers 3.1.1 with the preauth context.
    let neg = negotiate::NegotiateRequest::parse(&frames[0].1).unwrap();
    assert!(neg.dialects.contains(&negotiate::dialect::SMB3_1_1));
    assert!(neg.contexts.iter().any(|c| matches!(c, negotiate::NegotiateContext::PreauthIntegrity { .. })));
    // And its first SESSION_SETUP carries a SPNEGO token with NTLMSSP.
    let ss = frames.iter().find(|(d, m)| *d == b'C' && Header::parse(m).unwrap().command == Command::SessionSetup as u16).unwrap();
    let req = session_setup::SessionSetupRequest::parse(&ss.1).unwrap();
    let tok = protocol::auth::spnego::parse_client_token(req.security_buffer).unwrap();
    assert_eq!(&tok.ntlmssp[..8], b"NTLMSSP\0");
}
