//! What macOS clients expect: smbtorture's `vfs.fruit` tests that Duet
//! passes, against a real `duet` (the `AFP_AfpInfo` stream rules, the
//! stream names macOS uses, delete and copy with streams). With
//! `DUET_TEST_SERVER=smbd` they run against Samba's smbd with `vfs objects
//! = catia fruit streams_xattr`, which passes each of them too.
//!
//! Not here: the tests that first enable AAPL (`enable_aapl` in
//! smbtorture wants READ_DIR_ATTR, OSX_COPYFILE and NFS_ACE, which Duet
//! does not offer, and smbd with fruit's defaults neither) and the
//! AppleDouble conversions. The AAPL server query itself is checked by
//! `pyclient::aapl_server_query`.

mod common;

use common::{Mode, Options, Server};

fn server() -> Server {
    Server::start_with(Options {
        mode: Mode::Plain,
        smbd_options: vec!["vfs objects = catia fruit streams_xattr".into()],
        ..Options::default()
    })
}

/// A server that offers what smbtorture's `enable_aapl` wants: Duet as it
/// is, with `MacSamba` as its model (the model string's length is
/// checked); smbd with `fruit:copyfile = yes` (Duet always offers it).
fn aapl_server() -> Server {
    Server::start_with(Options {
        mode: Mode::Plain,
        duet_args: vec!["--model=MacSamba".into()],
        smbd_options: vec!["vfs objects = catia fruit streams_xattr".into(), "fruit:copyfile = yes".into()],
        ..Options::default()
    })
}

/// macOS's copyfile: once AAPL told OSX_COPYFILE, a copy-chunk with no
/// chunks copies the whole file and its streams (`cmd::copyfile`); before,
/// it copies nothing.
#[test]
fn copyfile() {
    aapl_server().assert_torture_passes(&["vfs.fruit.copyfile"]);
}

/// What AAPL offers (READ_DIR_ATTR, OSX_COPYFILE, NFS_ACE, a 16-byte
/// model) and a listing with the resource fork size and Finder info, of a
/// name with a character NTFS refuses (U+F022, the private-use form of
/// `:` macOS sends; Duet keeps it as it is, with no catia mapping).
#[test]
fn aapl_readdir_attr() {
    aapl_server().assert_torture_passes(&[
        "vfs.fruit.SMB2/CREATE context AAPL",
        "vfs.fruit.readdir_attr with names with illegal ntfs characters",
    ]);
}

/// The uid, gid and mode as MS-NFS ACEs, once each, also after a set
/// that carried more of them (`cmd::nfs_ace`).
#[test]
fn nfs_aces() {
    aapl_server().assert_torture_passes(&["vfs.fruit.NFS ACE entries"]);
}

#[test]
fn afpinfo_stream_rules() {
    server().assert_torture_passes(&[
        "vfs.fruit.read metadata",
        "vfs.fruit.write metadata",
        "vfs.fruit.null afpinfo",
        "vfs.fruit.File without AFP_AfpInfo",
        "vfs.fruit.create delete-on-close AFP_AfpInfo",
        "vfs.fruit.setinfo delete-on-close AFP_AfpInfo",
        "vfs.fruit.setinfo eof AFP_AfpInfo",
        "vfs.fruit.delete AFP_AfpInfo by writing all 0",
        "vfs.fruit.writing_afpinfo",
    ]);
}

#[test]
fn streams_as_macos_uses_them() {
    server().assert_torture_passes(&[
        "vfs.fruit.stream names",
        "vfs.fruit.delete",
        "vfs.fruit.creating rsrc with read-only access",
        "vfs.fruit.copy-chunk streams",
    ]);
}

/// The resource fork: 64 MiB and more (a stream past one xattr moves to a
/// sidecar file, `fs::spill`), written, read, sized and cut short; a
/// delete on close leaves one that holds data in place (as `vfs_fruit`).
#[test]
fn resource_fork() {
    server().assert_torture_passes(&[
        "vfs.fruit.resource fork IO",
        "vfs.fruit.create delete-on-close AFP_AfpResource",
        "vfs.fruit.setinfo delete-on-close AFP_AfpResource",
    ]);
}
