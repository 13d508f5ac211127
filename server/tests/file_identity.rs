//! A file's identity over a real server: the id kept in the `user.duet.uid`
//! xattr (see `server::fs::uid`) survives a rename, a new file gets a new
//! one, a copy that carried the xattr gets its own once both are open, and
//! share modes still meet across two opens (and two hard links) of one
//! file now that the file table is keyed by that id. Clients can neither
//! read nor write the id as an EA.
//!
//! The test reads the xattr from this process, on the share's directory.

#[path = "common/mod.rs"]
mod common;
#[path = "hostile/client.rs"]
mod client;

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use bytes::{BufMut, BytesMut};
use client::{Client, ACCESS_RW};
use protocol::header::Command;
use protocol::msg::create::create_disposition as disp;
use protocol::msg::negotiate::dialect;
use protocol::fscc::file_info_class;
use protocol::msg::query_info::{info_type, QueryInfoRequest};
use protocol::msg::set_info::SetInfoRequest;
use protocol::msg::FileId;
use protocol::NtStatus;

const UID_XATTR: &std::ffi::CStr = c"user.duet.uid";

fn cpath(p: &Path) -> CString {
    CString::new(p.as_os_str().as_bytes()).unwrap()
}

/// The stored id of `p`, as the server wrote it (16 bytes), if any.
fn stored_uid(p: &Path) -> Option<[u8; 16]> {
    let mut buf = [0u8; 64];
    // SAFETY: the path is NUL-terminated and the buffer writable for its length.
    let n = unsafe { libc::lgetxattr(cpath(p).as_ptr(), UID_XATTR.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    if n < 0 {
        return None;
    }
    Some(buf[..n as usize].try_into().expect("user.duet.uid is 16 bytes"))
}

fn set_stored_uid(p: &Path, v: &[u8]) {
    // SAFETY: both pointers are valid for the call.
    let r = unsafe { libc::lsetxattr(cpath(p).as_ptr(), UID_XATTR.as_ptr(), v.as_ptr().cast(), v.len(), 0) };
    assert_eq!(r, 0, "lsetxattr: {}", std::io::Error::last_os_error());
}

/// Does the file system under `dir` keep user xattrs? The reason when not.
fn user_xattrs(dir: &Path) -> Result<(), String> {
    let probe = dir.join(".xattr-probe");
    std::fs::write(&probe, b"").unwrap();
    let v = b"1";
    // SAFETY: both pointers are valid for the call.
    let r = unsafe { libc::lsetxattr(cpath(&probe).as_ptr(), c"user.probe".as_ptr(), v.as_ptr().cast(), 1, 0) };
    let err = std::io::Error::last_os_error();
    std::fs::remove_file(&probe).unwrap();
    if r == 0 {
        Ok(())
    } else {
        Err(format!("{} keeps no user xattrs ({err})", dir.display()))
    }
}

/// CREATE with the given share access (the client's helper shares all).
fn open_sharing(c: &mut Client, name: &str, access: u32, share: u32) -> Result<FileId, NtStatus> {
    let mut b = Client::create_body(name, access, disp::OPEN, 0);
    // ShareAccess sits at offset 32 of the CREATE body ([MS-SMB2] 2.2.13).
    b[32..36].copy_from_slice(&share.to_le_bytes());
    let a = c.call(Command::Create, &b);
    if a.status() != NtStatus::SUCCESS {
        return Err(a.status());
    }
    Ok(protocol::msg::create::CreateResponse::parse(&a.msg).unwrap().file_id)
}

/// SET_INFO FileRenameInformation ([MS-FSCC] 2.4.42.2, the SMB2 layout).
fn rename(c: &mut Client, f: FileId, to: &str) -> NtStatus {
    let name: Vec<u8> = to.encode_utf16().flat_map(u16::to_le_bytes).collect();
    let mut info = BytesMut::new();
    info.put_u8(0); // ReplaceIfExists
    info.put_bytes(0, 7);
    info.put_u64_le(0); // RootDirectory
    info.put_u32_le(name.len() as u32);
    info.extend_from_slice(&name);
    let mut b = BytesMut::new();
    SetInfoRequest {
        info_type: info_type::FILE,
        file_info_class: file_info_class::FILE_RENAME_INFORMATION,
        buffer: &info,
        additional_information: 0,
        file_id: f,
    }
    .encode(&mut b);
    c.call(Command::SetInfo, &b).status()
}

#[test]
fn the_id_survives_a_rename_and_share_modes_still_meet() {
    let (addr, dir) = common::start_in_process(&[("duet", "duetpass")], None);
    let root = dir.path();
    if let Err(why) = user_xattrs(root) {
        eprintln!("skipped: {why}");
        return;
    }
    let mut c = Client::logged_on(addr, dialect::SMB3_0_2, "duet", "duetpass");
    c.tree_connect("data").unwrap();

    // A new file gets an id on its first open.
    let a = c.create_with("a.txt", ACCESS_RW, disp::CREATE, 0).unwrap();
    let uid = stored_uid(&root.join("a.txt")).expect("the server stored an id");
    assert_ne!(uid, [0; 16]);

    // A rename keeps it (the xattr goes with the inode).
    assert_eq!(rename(&mut c, a, "b.txt"), NtStatus::SUCCESS);
    assert!(!root.join("a.txt").exists());
    assert_eq!(stored_uid(&root.join("b.txt")), Some(uid));

    // Another file, another id.
    let n = c.create_with("new.txt", ACCESS_RW, disp::CREATE, 0).unwrap();
    let other = stored_uid(&root.join("new.txt")).unwrap();
    assert_ne!(other, uid);

    // Share modes meet across opens of the one file: under its new name,
    // and through a hard link made after the first open.
    const NONE: u32 = 0;
    assert_eq!(open_sharing(&mut c, "b.txt", ACCESS_RW, NONE), Err(NtStatus::SHARING_VIOLATION));
    std::fs::hard_link(root.join("b.txt"), root.join("link.txt")).unwrap();
    assert_eq!(open_sharing(&mut c, "link.txt", ACCESS_RW, NONE), Err(NtStatus::SHARING_VIOLATION));
    // ...but not with another file.
    let n2 = open_sharing(&mut c, "new.txt", ACCESS_RW, 7).unwrap();
    assert_eq!(c.close(n2), NtStatus::SUCCESS);

    // A local copy that carried the xattr (`cp --preserve=xattr`) is
    // another file: it opens beside the original, and gets its own id.
    std::fs::copy(root.join("b.txt"), root.join("copy.txt")).unwrap();
    set_stored_uid(&root.join("copy.txt"), &uid);
    let cp = open_sharing(&mut c, "copy.txt", ACCESS_RW, NONE).expect("a copy is not the original");
    let copy_uid = stored_uid(&root.join("copy.txt")).unwrap();
    assert!(copy_uid != uid && copy_uid != other);
    assert_eq!(stored_uid(&root.join("b.txt")), Some(uid), "the original keeps its id");
    assert_eq!(c.close(cp), NtStatus::SUCCESS);

    // Clients cannot see or change the id as an EA: EA NAME is the xattr
    // user.NAME (Samba's layout), and the names under `user.duet.` are
    // neither listed nor set (STATUS_ACCESS_DENIED, whatever their case).
    let mut q = BytesMut::new();
    QueryInfoRequest {
        info_type: info_type::FILE,
        file_info_class: file_info_class::FILE_FULL_EA_INFORMATION,
        output_buffer_length: 4096,
        input_buffer: &[],
        additional_information: 0,
        flags: 0,
        file_id: a,
    }
    .encode(&mut q);
    assert_eq!(c.call(Command::QueryInfo, &q).status(), NtStatus::NO_EAS_ON_FILE);
    let set_ea = |c: &mut Client, name: &[u8]| {
        let mut eas = BytesMut::new();
        protocol::fscc::encode_full_ea_list(&[protocol::fscc::FullEa { flags: 0, name, value: &[1; 16] }], &mut eas).unwrap();
        let mut b = BytesMut::new();
        SetInfoRequest {
            info_type: info_type::FILE,
            file_info_class: file_info_class::FILE_FULL_EA_INFORMATION,
            buffer: &eas,
            additional_information: 0,
            file_id: a,
        }
        .encode(&mut b);
        c.call(Command::SetInfo, &b).status()
    };
    for name in [&b"duet.uid"[..], b"DUET.UID", b"duet.attrib"] {
        assert_eq!(set_ea(&mut c, name), NtStatus::ACCESS_DENIED, "{}", String::from_utf8_lossy(name));
    }
    // "user.duet.uid" is the xattr user.user.duet.uid: another name.
    assert_eq!(set_ea(&mut c, b"user.duet.uid"), NtStatus::SUCCESS);
    let r = c.call(Command::QueryInfo, &q);
    assert_eq!(r.status(), NtStatus::SUCCESS);
    let listed = r.msg.windows(4).filter(|w| w.eq_ignore_ascii_case(b"duet")).count();
    assert_eq!(listed, 1, "only user.duet.uid's own EA is listed");
    assert_eq!(stored_uid(&root.join("b.txt")), Some(uid));

    // While a file is open, its inode is the file: an id written over the
    // stored one by somebody else does not split it in two (opens find
    // the file by its inode while it has opens).
    set_stored_uid(&root.join("b.txt"), &[9; 16]);
    assert_eq!(open_sharing(&mut c, "b.txt", ACCESS_RW, NONE), Err(NtStatus::SHARING_VIOLATION));
    set_stored_uid(&root.join("b.txt"), &uid);

    // Once the last open is gone the file opens exclusively, and still
    // has its id.
    assert_eq!(c.close(a), NtStatus::SUCCESS);
    let b = open_sharing(&mut c, "B.TXT", ACCESS_RW, NONE).unwrap();
    assert_eq!(stored_uid(&root.join("b.txt")), Some(uid));
    assert_eq!(open_sharing(&mut c, "link.txt", ACCESS_RW, 7), Err(NtStatus::SHARING_VIOLATION));
    assert_eq!(c.close(b), NtStatus::SUCCESS);
    assert_eq!(c.close(n), NtStatus::SUCCESS);

    // Directories, the share's root included, get ids too.
    let d = c.create_with("dir", client::ACCESS_LIST, disp::CREATE, 0x1).unwrap();
    let r = c.open_root().unwrap();
    let (dir_uid, root_uid) = (stored_uid(&root.join("dir")).unwrap(), stored_uid(root).unwrap());
    assert!(dir_uid != root_uid && dir_uid != uid && root_uid != uid);
    assert_eq!(c.close(d), NtStatus::SUCCESS);
    assert_eq!(c.close(r), NtStatus::SUCCESS);
}
