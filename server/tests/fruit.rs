//! What macOS clients expect: smbtorture's `vfs.fruit` tests that Duet
//! passes, against a real `duet` (the `AFP_AfpInfo` stream rules, the
//! stream names macOS uses, delete and copy with streams). With
//! `DUET_TEST_SERVER=smbd` they run against Samba's smbd with `vfs objects
//! = catia fruit streams_xattr`, which passes each of them too.
//!
//! The tests that first enable AAPL (`enable_aapl` wants READ_DIR_ATTR,
//! OSX_COPYFILE and NFS_ACE, and a 16-byte model) run against
//! `aapl_server` (Duet with `--model MacSamba`, smbd with
//! `fruit:copyfile = yes`). Not here: the AppleDouble conversions. The
//! AAPL server query itself is checked by `pyclient::aapl_server_query`.

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

/// Once AAPL is negotiated, an empty stream is not there for a plain open
/// and not listed (a resource fork cut to nothing, a stream made and not
/// written), while OPEN_IF still opens it; an AfpInfo is always 60 bytes.
#[test]
fn empty_streams_after_aapl() {
    aapl_server().assert_torture_passes(&[
        "vfs.fruit.truncate resource fork to 0 bytes",
        "vfs.fruit.opening and creating resource fork",
        "vfs.fruit.setinfo eof AFP_AfpResource",
        "vfs.fruit.setinfo eof stream",
        "vfs.fruit.empty_stream",
    ]);
}

/// The resource fork through a connection that negotiated AAPL: flushed,
/// and read through an open that outlived a rename of its file.
#[test]
fn resource_fork_after_aapl() {
    aapl_server().assert_torture_passes(&["vfs.fruit.fsync_resource_fork", "vfs.fruit.read open rsrc after rename"]);
}

/// File ids are zero once AAPL is negotiated (QFid, listings, file
/// information), as `vfs_fruit`'s `zero_file_id`, and not before.
#[test]
fn zero_file_id_after_aapl() {
    aapl_server().assert_torture_passes(&["vfs.fruit_file_id.zero file id if AAPL negotiated"]);
}

/// A Time Machine share with a 32 KiB quota, two bands of 8 KiB in a
/// sparse bundle: the volume is reported as 32 KiB with 16 free
/// (`fs::tmsize`, Samba's `fruit:time machine max size`).
#[test]
fn time_machine_quota_is_the_volume_size() {
    let share = common::SHARE;
    Server::start_with(Options {
        mode: Mode::Plain,
        duet_args: vec![
            "--model=MacSamba".into(),
            format!("--time-machine={share}"),
            format!("--time-machine-max-size={share}=32K"),
        ],
        smbd_options: vec![
            "vfs objects = catia fruit streams_xattr".into(),
            "fruit:copyfile = yes".into(),
            "fruit:time machine = yes".into(),
            "fruit:time machine max size = 32K".into(),
        ],
        ..Options::default()
    })
    .assert_torture_passes(&["vfs.fruit_timemachine.Timemachine-volsize"]);
}

/// A directory with a file open below: refused before AAPL (as Windows),
/// renamed after it (POSIX rename, as `vfs_fruit`'s `posix_rename`).
#[test]
fn rename_dir_with_open_file_after_aapl() {
    aapl_server().assert_torture_passes(&["vfs.fruit.rename_dir_openfile"]);
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
