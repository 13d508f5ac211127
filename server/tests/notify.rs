//! Change notify through a real client: smbtorture's smb2.notify tests
//! against a real `duet`. Each test in the first list passes on Samba's
//! smbd too (`DUET_TEST_SERVER=smbd`).

mod common;

use common::{Kind, Mode, Server};

#[test]
fn change_notify() {
    let server = Server::start(Mode::Plain);
    server.assert_torture_passes(&[
        "smb2.notify.valid-req",
        "smb2.notify.tcon",
        "smb2.notify.tdis",
        "smb2.notify.tdis1",
        "smb2.notify.close",
        "smb2.notify.logoff",
        "smb2.notify.session-reconnect",
        "smb2.notify.invalid-reauth",
        "smb2.notify.basedir",
        "smb2.notify.double",
        "smb2.notify.file",
        "smb2.notify.tcp",
        "smb2.notify.overflow",
        // A watched directory that becomes delete-pending ends the
        // waiting requests with STATUS_DELETE_PENDING.
        "smb2.notify.rmdir1",
        "smb2.notify.rmdir2",
        "smb2.notify.rmdir3",
        "smb2.notify.rmdir4",
        "smb2.notify.handle-permissions",
    ]);
}

/// Two requests waiting on one handle are answered in the order they
/// came, and a rename is an attribute change of the new name. smbd
/// answers this one differently (it fails the test), so it runs against
/// Duet only.
#[test]
fn requests_on_one_handle_complete_in_order() {
    let server = Server::start(Mode::Plain);
    if server.kind == Kind::Smbd {
        return;
    }
    server.assert_torture_passes(&["smb2.notify.mask-change"]);
}
