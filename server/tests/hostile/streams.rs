//! Stream names (`file:stream`, [MS-FSCC] 2.1.5) as a hostile client
//! would write them: the stream part is never a path, so no name with a
//! stream reaches outside the share or through a symlink, and a stream
//! written past what one xattr holds goes on in a sidecar file, written in
//! place (a write far into it costs no memory), not a panic or a closed
//! connection.

use protocol::msg::create::create_disposition::{CREATE, OPEN_IF, OVERWRITE_IF};
use protocol::msg::negotiate::dialect;
use protocol::NtStatus;

use crate::client::{Client, ACCESS_RW};
use crate::common;

/// Whether the file at `path` (not followed) has any stream xattr.
fn has_stream_xattr(path: &std::path::Path) -> bool {
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    let mut buf = vec![0u8; 4096];
    // SAFETY: `c` is NUL-terminated; `buf` is writable for its length.
    let n = unsafe { libc::llistxattr(c.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    n > 0 && buf[..n as usize].split(|&b| b == 0).any(|x| x.starts_with(b"user.DosStream."))
}

fn user_xattrs(dir: &std::path::Path) -> bool {
    let probe = dir.join(".probe");
    std::fs::write(&probe, b"").unwrap();
    let c = std::ffi::CString::new(probe.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: both strings are NUL-terminated; the value is 1 byte.
    let ok = unsafe { libc::setxattr(c.as_ptr(), c"user.probe".as_ptr(), b"1".as_ptr().cast(), 1, 0) } == 0;
    std::fs::remove_file(&probe).unwrap();
    ok
}

#[test]
fn stream_names_stay_in_the_share() {
    let (addr, dir) = common::start_in_process(&[("duet", "duetpass")], None);
    if !user_xattrs(dir.path()) {
        eprintln!("no user xattrs under {}: skipped", dir.path().display());
        return;
    }
    let outside = tempfile::tempdir().unwrap();
    let secret = outside.path().join("secret");
    std::fs::write(&secret, b"secret").unwrap();
    std::os::unix::fs::symlink(&secret, dir.path().join("link")).unwrap();
    std::os::unix::fs::symlink(outside.path(), dir.path().join("linkdir")).unwrap();
    std::fs::create_dir(dir.path().join("sub")).unwrap();

    let mut c = Client::logged_on(addr, dialect::SMB3_0_2, "duet", "duetpass");
    c.tree_connect("data").expect("tree connect");
    let f = c.create("base.txt").expect("create");
    assert_eq!(c.write(f, 0, b"base"), NtStatus::SUCCESS);
    assert_eq!(c.close(f), NtStatus::SUCCESS);

    let long = format!("base.txt:{}", "a".repeat(300));
    for (name, want) in [
        ("..:x", NtStatus::OBJECT_PATH_SYNTAX_BAD),
        ("..\\..\\etc\\passwd:x", NtStatus::OBJECT_PATH_SYNTAX_BAD),
        ("sub\\..\\..:x", NtStatus::OBJECT_PATH_SYNTAX_BAD),
        ("base.txt:..\\..\\x", NtStatus::OBJECT_NAME_INVALID),
        ("base.txt:..", NtStatus::OBJECT_NAME_NOT_FOUND),
        ("base.txt:a/b", NtStatus::OBJECT_NAME_INVALID),
        ("base.txt:a\\b:$DATA", NtStatus::OBJECT_NAME_INVALID),
        ("base.txt:x:$INDEX_ALLOCATION", NtStatus::OBJECT_NAME_INVALID),
        ("base.txt:x:$DATA:y", NtStatus::OBJECT_NAME_INVALID),
        ("base.txt:", NtStatus::OBJECT_NAME_INVALID),
        ("base.txt::", NtStatus::OBJECT_NAME_INVALID),
        (long.as_str(), NtStatus::OBJECT_NAME_INVALID),
        ("sub:x\\y", NtStatus::OBJECT_NAME_INVALID),
        // Symlinks in the share are refused, with or without a stream.
        ("link:evil", NtStatus::ACCESS_DENIED),
        ("linkdir:evil", NtStatus::ACCESS_DENIED),
        ("linkdir\\secret:evil", NtStatus::ACCESS_DENIED),
    ] {
        let got = if name == "base.txt:.." {
            // A stream named `..` is only a name: the stream is not there.
            c.create_with(name, 0x0012_0089, protocol::msg::create::create_disposition::OPEN, 0)
        } else {
            c.create(name)
        };
        assert_eq!(got.map(|_| ()), Err(want), "{name:?}");
    }
    // Nothing was made outside the share, nor on the link's target.
    assert!(!has_stream_xattr(&secret));
    assert!(!has_stream_xattr(outside.path()));
    assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 1);
    assert_eq!(std::fs::read(&secret).unwrap(), b"secret");
    // The server still answers, and a good stream works.
    let s = c.create_with("base.txt:ok", 0x0012_019f, CREATE, 0).expect("stream");
    assert_eq!(c.write(s, 0, b"fine"), NtStatus::SUCCESS);
    assert_eq!(c.read(s, 0, 16).expect("read"), b"fine");
    assert_eq!(c.close(s), NtStatus::SUCCESS);
    assert_eq!(std::fs::read(dir.path().join("base.txt")).unwrap(), b"base");
    assert!(has_stream_xattr(&dir.path().join("base.txt")));
}

/// A stream written past what one xattr holds moves to a sidecar file
/// (`fs/spill.rs`) and is written there in place: a write a GiB into it is
/// a sparse `pwrite`, not a read-modify-write of the whole value in memory
/// (which is why such writes were refused before streams could spill).
#[test]
fn a_stream_past_one_xattr_is_written_in_place_in_its_sidecar() {
    let (addr, dir) = common::start_in_process(&[("duet", "duetpass")], None);
    if !user_xattrs(dir.path()) {
        eprintln!("no user xattrs under {}: skipped", dir.path().display());
        return;
    }
    let mut c = Client::logged_on(addr, dialect::SMB3_0_2, "duet", "duetpass");
    c.tree_connect("data").expect("tree connect");
    let s = c.create_with("big.bin:huge", 0x0012_019f, OPEN_IF, 0).expect("stream");
    let data: Vec<u8> = (0..70_000u32).map(|i| (i % 251) as u8).collect();
    assert_eq!(c.write(s, 0, &data), NtStatus::SUCCESS);
    assert_eq!(c.read(s, 0, 70_000).expect("read"), data);
    assert_eq!(c.write(s, 1 << 30, b"x"), NtStatus::SUCCESS);
    assert_eq!(&c.read(s, 1 << 30, 16).expect("read at 1 GiB")[..], b"x");
    assert_eq!(c.echo(), NtStatus::SUCCESS);
    assert_eq!(c.close(s), NtStatus::SUCCESS);
    // The file's own data is untouched, and its sidecar is sparse.
    assert_eq!(std::fs::metadata(dir.path().join("big.bin")).unwrap().len(), 0);
    let area = dir.path().join(".duet:streams");
    let sidecar =
        std::fs::read_dir(&area).unwrap().flatten().flat_map(|d| std::fs::read_dir(d.path()).unwrap().flatten()).next();
    let meta = sidecar.expect("a sidecar file").metadata().unwrap();
    assert_eq!(meta.len(), (1 << 30) + 1);
    assert!(std::os::unix::fs::MetadataExt::blocks(&meta) * 512 < 16 << 20, "the sidecar is not sparse");
}

/// A named stream's byte-range locks are its own (the state model keeps
/// them on the stream's file record, [MS-FSA] 2.1.5.8): they refuse
/// another open of the stream its I/O and locks of the range, not the
/// file's opens, and they go with their open.
///
/// On SMB 2.1 a READ or WRITE reads the locks under a hold of the model's
/// lock of its own, on SMB 3.x under its ChannelSequence check's.
#[test]
fn a_stream_s_locks_are_its_own() {
    let (addr, dir) = common::start_in_process(&[("duet", "duetpass")], None);
    if !user_xattrs(dir.path()) {
        eprintln!("no user xattrs under {}: skipped", dir.path().display());
        return;
    }
    for d in [dialect::SMB2_1, dialect::SMB3_0_2] {
        stream_locks(addr, d);
    }
}

fn stream_locks(addr: std::net::SocketAddr, d: u16) {
    let mut c = Client::logged_on(addr, d, "duet", "duetpass");
    c.tree_connect("data").expect("tree connect");
    let file = c.create_with("locked.txt", ACCESS_RW, OVERWRITE_IF, 0).expect("create the file");
    assert_eq!(c.write(file, 0, b"0123456789"), NtStatus::SUCCESS);
    let a = c.create_with("locked.txt:s", ACCESS_RW, OVERWRITE_IF, 0).expect("create the stream");
    assert_eq!(c.write(a, 0, b"abcdefghij"), NtStatus::SUCCESS);
    let b = c.create("locked.txt:s").expect("open the stream again");
    let other = c.create("locked.txt:t").expect("another stream");

    assert_eq!(c.lock(a, 0, 10, true, false), NtStatus::SUCCESS);
    assert_eq!(c.write(b, 2, b"x"), NtStatus::FILE_LOCK_CONFLICT);
    assert_eq!(c.read(b, 2, 1), Err(NtStatus::FILE_LOCK_CONFLICT));
    assert_eq!(c.lock(b, 5, 1, false, false), NtStatus::LOCK_NOT_GRANTED);
    // The owner writes under it; the file and the other stream are not locked.
    assert_eq!(c.write(a, 2, b"C"), NtStatus::SUCCESS);
    assert_eq!(c.write(file, 2, b"x"), NtStatus::SUCCESS);
    assert_eq!(c.lock(file, 0, 10, true, false), NtStatus::SUCCESS);
    assert_eq!(c.lock(other, 0, 10, true, false), NtStatus::SUCCESS);
    assert_eq!(c.write(b, 20, b"y"), NtStatus::SUCCESS);

    // Unlocked, the range is free; locked again and closed, too.
    assert_eq!(c.lock(a, 0, 10, false, true), NtStatus::SUCCESS);
    assert_eq!(c.lock(a, 0, 10, false, true), NtStatus::RANGE_NOT_LOCKED);
    assert_eq!(c.write(b, 2, b"x"), NtStatus::SUCCESS);
    assert_eq!(c.lock(a, 0, 10, true, false), NtStatus::SUCCESS);
    assert_eq!(c.write(b, 3, b"x"), NtStatus::FILE_LOCK_CONFLICT);
    assert_eq!(c.close(a), NtStatus::SUCCESS);
    assert_eq!(c.write(b, 3, b"x"), NtStatus::SUCCESS);
    assert_eq!(c.read(b, 0, 4), Ok(b"abxx".to_vec()));
    for f in [b, other, file] {
        assert_eq!(c.close(f), NtStatus::SUCCESS);
    }
}
