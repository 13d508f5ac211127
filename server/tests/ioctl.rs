//! FSCTLs through a real client: smbtorture's server-side copy tests
//! (FSCTL_SRV_REQUEST_RESUME_KEY and FSCTL_SRV_COPYCHUNK[_WRITE]) and
//! sparse-file tests (FSCTL_SET_SPARSE, FSCTL_QUERY_ALLOCATED_RANGES,
//! FSCTL_SET_ZERO_DATA) against a real `duet`. Each passes on Samba's smbd too (`DUET_TEST_SERVER=smbd`).

mod common;

use common::{Mode, Server};

#[test]
fn server_side_copy() {
    let server = Server::start(Mode::Plain);
    server.assert_torture_passes(&[
        "smb2.ioctl.req_resume_key",
        "smb2.ioctl.req_two_resume_keys",
        "smb2.ioctl.copy_chunk_simple",
        "smb2.ioctl.copy_chunk_multi",
        "smb2.ioctl.copy_chunk_tiny",
        "smb2.ioctl.copy_chunk_overwrite",
        "smb2.ioctl.copy_chunk_append",
        "smb2.ioctl.copy_chunk_limits",
        // Byte-range locks on the source and the target are honoured.
        "smb2.ioctl.copy_chunk_src_lock",
        "smb2.ioctl.copy_chunk_dest_lock",
        "smb2.ioctl.copy_chunk_bad_key",
        "smb2.ioctl.copy_chunk_src_is_dest",
        "smb2.ioctl.copy_chunk_src_is_dest_overlap",
        // Read or execute access on the source; write (and read, for
        // COPYCHUNK) on the target.
        "smb2.ioctl.copy_chunk_bad_access",
        "smb2.ioctl.copy_chunk_write_access",
        "smb2.ioctl.copy_chunk_src_exceed",
        "smb2.ioctl.copy_chunk_src_exceed_multi",
        "smb2.ioctl.copy_chunk_sparse_dest",
        "smb2.ioctl.copy_chunk_max_output_sz",
        "smb2.ioctl.copy_chunk_zero_length",
        "smb2.ioctl.copy_chunk_across_shares",
        "smb2.ioctl.copy_chunk_across_shares2",
        "smb2.ioctl.copy_chunk_across_shares3",
    ]);
}

#[test]
fn sparse_files() {
    let server = Server::start(Mode::Plain);
    server.assert_torture_passes(&[
        "smb2.ioctl.sparse_file_flag",
        "smb2.ioctl.sparse_file_attr",
        "smb2.ioctl.sparse_dir_flag",
        "smb2.ioctl.sparse_set_nobuf",
        "smb2.ioctl.sparse_set_oversize",
        "smb2.ioctl.sparse_qar",
        "smb2.ioctl.sparse_qar_malformed",
        "smb2.ioctl.sparse_punch",
        "smb2.ioctl.sparse_hole_dealloc",
        "smb2.ioctl.sparse_copy_chunk",
        "smb2.ioctl.sparse_punch_invalid",
        // Access rules: any write access sets the flag, ranges need read
        // data, zeroing needs write data.
        "smb2.ioctl.sparse_perms",
        "smb2.ioctl.sparse_lock",
        "smb2.ioctl.sparse_qar_ob1",
        "smb2.ioctl.sparse_qar_multi",
        "smb2.ioctl.sparse_qar_overflow",
    ]);
}
