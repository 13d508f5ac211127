"""Symbolic links (reparse points) through Python's smbprotocol:
`smbprotocol_symlinks.py PORT SHARE USER PASSWORD`. Prints one `ok ...`
line per step; any failure raises. Run by server/tests/pyclient.rs, which
lays out the share first (target.txt, sub/inner.txt, on-disk links
disk_link -> target.txt and abs_link -> /path/of/share/target.txt, and
links that leave the share: evil -> /etc,
sub/evil2 -> ../../outside.txt) and checks the share on disk afterwards.

Covers FSCTL_SET_REPARSE_POINT (smbclient.symlink and raw buffers),
FSCTL_GET_REPARSE_POINT, FILE_ATTRIBUTE_REPARSE_POINT and the tag in
directory listings, STATUS_STOPPED_ON_SYMLINK and its Symbolic Link Error
Response (which smbprotocol follows on its own), targets outside the share
refused when made and when met, hostile reparse buffers, a link moved to
where it would escape, FSCTL_DELETE_REPARSE_POINT and removing a link."""
import functools
import stat
import struct
import sys

import smbclient
from smbclient._io import SMBFileTransaction, SMBRawIO, ioctl_request
from smbclient._os import _get_reparse_point
from smbprotocol.exceptions import SMBOSError, SMBResponseException
from smbprotocol.ioctl import CtlCode, IOCTLFlags
from smbprotocol.open import CreateOptions, FilePipePrinterAccessMask
from smbprotocol.reparse_point import SymbolicLinkReparseDataBuffer

port, share, user, password = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
smbclient.register_session("127.0.0.1", username=user, password=password, port=port)
base = rf"\\127.0.0.1\{share}"
for name in ("mkdir", "open_file", "symlink", "readlink", "stat", "lstat", "remove", "rename", "scandir", "listdir",
             "rmdir"):
    setattr(smbclient, name, functools.partial(getattr(smbclient, name), port=port))

STATUS_ACCESS_DENIED = 0xC0000022
STATUS_NOT_A_REPARSE_POINT = 0xC0000275
STATUS_IO_REPARSE_DATA_INVALID = 0xC0000278
STATUS_INVALID_BUFFER_SIZE = 0xC0000206
STATUS_IO_REPARSE_TAG_INVALID = 0xC0000276
STATUS_NOT_SUPPORTED = 0xC00000BB
STATUS_STOPPED_ON_SYMLINK = 0x8000002D
IO_REPARSE_TAG_SYMLINK = 0xA000000C
FILE_ATTRIBUTE_REPARSE_POINT = 0x400
FILE_ATTRIBUTE_DIRECTORY = 0x10


def refused(what, status, f):
    try:
        f()
    except SMBOSError as e:
        assert e.ntstatus == status, f"{what}: {e.ntstatus:#x}, expected {status:#x}"
        print(f"ok refused {what}")
        return
    raise AssertionError(f"{what}: succeeded")


def symlink_buffer(substitute, print_name, flags):
    """A REPARSE_DATA_BUFFER of IO_REPARSE_TAG_SYMLINK ([MS-FSCC] 2.1.2.4)."""
    sub = substitute.encode("utf-16-le")
    prn = print_name.encode("utf-16-le")
    data = struct.pack("<HHHHI", 0, len(sub), len(sub), len(prn), flags) + sub + prn
    return struct.pack("<IHH", IO_REPARSE_TAG_SYMLINK, len(data), 0) + data


def fsctl(path, code, buf, disposition_mode="x", create_options=CreateOptions.FILE_OPEN_REPARSE_POINT,
          access=FilePipePrinterAccessMask.FILE_WRITE_ATTRIBUTES | FilePipePrinterAccessMask.FILE_READ_ATTRIBUTES,
          max_output=0):
    """Opens `path` (as the link itself) and sends the FSCTL `code` with
    the raw input `buf`; returns the output."""
    raw = SMBRawIO(path, mode=disposition_mode, desired_access=access, create_options=create_options, port=port)
    with SMBFileTransaction(raw) as transaction:
        ioctl_request(transaction, code, flags=IOCTLFlags.SMB2_0_IOCTL_IS_FSCTL, input_buffer=buf,
                      output_size=max_output)
    result = transaction.results[0]
    if isinstance(result, Exception):
        raise result
    return result


def set_reparse(path, buf, mode="x"):
    return fsctl(path, CtlCode.FSCTL_SET_REPARSE_POINT, buf, disposition_mode=mode)


# --- A link made by a client, read back ---------------------------------
smbclient.symlink("target.txt", base + r"\lnk")
assert smbclient.readlink(base + r"\lnk") == base + r"\target.txt", smbclient.readlink(base + r"\lnk")
rp = _get_reparse_point(base + r"\lnk", port=port)
assert rp["reparse_tag"].get_value() == IO_REPARSE_TAG_SYMLINK
sl = SymbolicLinkReparseDataBuffer()
sl.unpack(rp["data_buffer"].get_value())
assert sl.get_substitute_name() == "target.txt", sl.get_substitute_name()
assert sl.get_print_name() == "target.txt"
assert sl["flags"].get_value() == 1
print("ok a client's link reads back")

st = smbclient.lstat(base + r"\lnk")
assert stat.S_ISLNK(st.st_mode), oct(st.st_mode)
assert st.st_file_attributes & FILE_ATTRIBUTE_REPARSE_POINT
assert st.st_reparse_tag == IO_REPARSE_TAG_SYMLINK
print("ok lstat shows a symbolic link")

# --- Directory listings ---------------------------------------------------
entries = {e.name: e for e in smbclient.scandir(base)}
assert entries["lnk"].is_symlink(), "lnk is not listed as a symlink"
assert not entries["target.txt"].is_symlink()
assert entries["disk_link"].is_symlink(), "a confined link on disk is listed"
assert entries["abs_link"].is_symlink(), "an absolute link on disk into the share is listed"
assert "evil" not in entries, "a link out of the share is listed"
assert not any(n.startswith(".duet-link") for n in entries), entries.keys()
print("ok listing shows confined links as reparse points, not escaping ones")
assert "evil2" not in smbclient.listdir(base + r"\sub")
print("ok listing of a subdirectory hides its escaping link")

# --- Following: STATUS_STOPPED_ON_SYMLINK, which smbprotocol resolves ----
with smbclient.open_file(base + r"\lnk") as f:
    assert f.read() == "hello"
with smbclient.open_file(base + r"\disk_link") as f:
    assert f.read() == "hello"
with smbclient.open_file(base + r"\abs_link") as f:
    assert f.read() == "hello"
print("ok opening a link reaches its target (the client follows)")

smbclient.symlink("sub", base + r"\dlnk", target_is_directory=True)
st = smbclient.lstat(base + r"\dlnk")
assert st.st_file_attributes & FILE_ATTRIBUTE_DIRECTORY, hex(st.st_file_attributes)
with smbclient.open_file(base + r"\dlnk\inner.txt") as f:
    assert f.read() == "inner"
smbclient.symlink("sub", base + r"\dkeep", target_is_directory=True)
print("ok a directory link in the middle of a path is followed")

# The error response itself, without smbprotocol following it.
from smbprotocol.connection import Connection  # noqa: E402
from smbprotocol.open import CreateDisposition, FileAttributes, ImpersonationLevel, Open, ShareAccess  # noqa: E402
from smbprotocol.session import Session  # noqa: E402
from smbprotocol.tree import TreeConnect  # noqa: E402

import uuid  # noqa: E402

for dialect in (0x0311, 0x0210):
    conn = Connection(uuid.uuid4(), "127.0.0.1", port)
    conn.connect(dialect)
    sess = Session(conn, user, password, require_encryption=False)
    sess.connect()
    tree = TreeConnect(sess, base)
    tree.connect()
    o = Open(tree, r"dlnk\inner.txt")
    req = o.create(ImpersonationLevel.Impersonation, FilePipePrinterAccessMask.FILE_READ_DATA,
                   FileAttributes.FILE_ATTRIBUTE_NORMAL, ShareAccess.FILE_SHARE_READ, CreateDisposition.FILE_OPEN, 0,
                   send=False)[0]
    request = conn.send(req, sid=sess.session_id, tid=tree.tree_connect_id)
    try:
        conn.receive(request, resolve_symlinks=False)
        raise AssertionError("opened through a link")
    except SMBResponseException as e:
        assert e.status == STATUS_STOPPED_ON_SYMLINK, hex(e.status)
        details = e.error_details
        assert len(details) == 1, details
        d = details[0]
        assert d.get_substitute_name() == "sub", d.get_substitute_name()
        assert d.get_print_name() == "sub"
        assert d["unparsed_path_length"].get_value() == len("\\inner.txt") * 2, d["unparsed_path_length"].get_value()
        assert d["flags"].get_value() == 1
    conn.disconnect()
print("ok STOPPED_ON_SYMLINK carries the link's target and the unparsed length (3.1.1 and 2.1)")

# --- Links that would leave the share are refused -------------------------
refused("a link climbing out of the share", STATUS_ACCESS_DENIED,
        lambda: set_reparse(base + r"\bad1", symlink_buffer("..\\outside.txt", "..\\outside.txt", 1)))
refused("a link climbing out from a subdirectory", STATUS_ACCESS_DENIED,
        lambda: set_reparse(base + r"\sub\bad2", symlink_buffer("..\\..\\outside.txt", "x", 1)))
refused("an absolute link", STATUS_ACCESS_DENIED,
        lambda: set_reparse(base + r"\bad3", symlink_buffer("\\??\\C:\\Windows", "C:\\Windows", 0)))
refused("an absolute UNC link", STATUS_ACCESS_DENIED,
        lambda: set_reparse(base + r"\bad4", symlink_buffer("\\??\\UNC\\127.0.0.1\\data\\target.txt", "x", 0)))
refused("a relative link that starts at the root", STATUS_ACCESS_DENIED,
        lambda: set_reparse(base + r"\bad5", symlink_buffer("\\etc\\passwd", "x", 1)))
refused("an on-disk link out of the share, opened", STATUS_ACCESS_DENIED,
        lambda: smbclient.open_file(base + r"\evil\passwd").read())
refused("an on-disk link out of the share, opened as itself", STATUS_ACCESS_DENIED,
        lambda: _get_reparse_point(base + r"\evil", port=port))
refused("an on-disk link out of the share in a subdirectory", STATUS_ACCESS_DENIED,
        lambda: smbclient.open_file(base + r"\sub\evil2").read())

# A link moved to where its target would be outside the share.
set_reparse(base + r"\sub\up", symlink_buffer("..\\target.txt", "..\\target.txt", 1))
with smbclient.open_file(base + r"\sub\up") as f:
    assert f.read() == "hello"
refused("a link moved to where it escapes", STATUS_ACCESS_DENIED,
        lambda: smbclient.rename(base + r"\sub\up", base + r"\up"))

# --- Hostile buffers --------------------------------------------------------
refused("an empty buffer", STATUS_INVALID_BUFFER_SIZE, lambda: set_reparse(base + r"\h0", b""))
for n in (1, 7):
    refused(f"a {n}-byte buffer", STATUS_IO_REPARSE_DATA_INVALID, lambda: set_reparse(base + rf"\h{n}", b"0" * n))
good = symlink_buffer("target.txt", "target.txt", 1)
refused("a buffer longer than it says", STATUS_IO_REPARSE_DATA_INVALID,
        lambda: set_reparse(base + r"\h8", good + b"0"))
refused("a buffer shorter than it says", STATUS_IO_REPARSE_DATA_INVALID,
        lambda: set_reparse(base + r"\h9", good[:-1]))
huge = struct.pack("<IHH", IO_REPARSE_TAG_SYMLINK, 0xFFFF, 0) + b"\0" * 0xFFFF
refused("a 64 KiB buffer", STATUS_IO_REPARSE_DATA_INVALID, lambda: set_reparse(base + r"\h10", huge))
bad_names = struct.pack("<IHHHHHHI", IO_REPARSE_TAG_SYMLINK, 12, 0, 0xFFF0, 0xFF, 0, 0, 1)
refused("names outside the buffer", STATUS_IO_REPARSE_DATA_INVALID, lambda: set_reparse(base + r"\h11", bad_names))
refused("a reserved tag", STATUS_IO_REPARSE_TAG_INVALID,
        lambda: set_reparse(base + r"\h12", struct.pack("<IHH", 0, 0, 0)))
refused("another tag", STATUS_NOT_SUPPORTED,
        lambda: set_reparse(base + r"\h13", struct.pack("<IHH", 0x80000025, 4, 0) + b"asdf"))
refused("GET on a plain file", STATUS_NOT_A_REPARSE_POINT, lambda: _get_reparse_point(base + r"\target.txt", port=port))
with smbclient.open_file(base + r"\target.txt") as f:
    assert f.read() == "hello"
print("ok the server still answers after hostile buffers")

# --- Deleting the reparse point, and the link -----------------------------
smbclient.symlink("target.txt", base + r"\lnk2")
fsctl(base + r"\lnk2", CtlCode.FSCTL_DELETE_REPARSE_POINT, struct.pack("<IHH", IO_REPARSE_TAG_SYMLINK, 0, 0),
      disposition_mode="r")
st = smbclient.lstat(base + r"\lnk2")
assert not stat.S_ISLNK(st.st_mode) and st.st_size == 0, (oct(st.st_mode), st.st_size)
print("ok deleting the reparse point leaves an empty file")

smbclient.remove(base + r"\lnk")
with smbclient.open_file(base + r"\target.txt") as f:
    assert f.read() == "hello"
smbclient.rmdir(base + r"\dlnk")
assert "inner.txt" in smbclient.listdir(base + r"\sub")
print("ok removing links leaves their targets")
