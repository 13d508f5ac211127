"""Hard links through Python's smbprotocol (its smbclient API sends
FileLinkInformation, [MS-FSCC] 2.4.27.2): `smbprotocol_links.py PORT SHARE
USER PASSWORD`. Prints one `ok ...` line per step; any failure raises.
Run by server/tests/pyclient.rs, which also checks the share on disk."""
import functools
import sys

import smbclient
from smbclient._io import SMBFileIO, SMBFileTransaction, set_info
from smbprotocol.exceptions import SMBOSError
from smbprotocol.file_info import FileLinkInformation
from smbprotocol.open import FilePipePrinterAccessMask

port, share, user, password = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
smbclient.register_session("127.0.0.1", username=user, password=password, port=port)
base = rf"\\127.0.0.1\{share}"
# Every call names the port (smbclient connects to 445 otherwise).
for name in ("mkdir", "open_file", "link", "stat", "remove"):
    setattr(smbclient, name, functools.partial(getattr(smbclient, name), port=port))


def refused(what, status, f):
    try:
        f()
    except SMBOSError as e:
        assert e.ntstatus == status, f"{what}: {e.ntstatus:#x}, expected {status:#x}"
        print(f"ok refused {what}")
        return
    raise AssertionError(f"{what}: succeeded")


smbclient.mkdir(base + r"\d")
with smbclient.open_file(base + r"\a.txt", "w") as f:
    f.write("one")
smbclient.link(base + r"\a.txt", base + r"\d\b.txt")
assert smbclient.stat(base + r"\a.txt").st_nlink == 2
assert smbclient.stat(base + r"\d\b.txt").st_ino == smbclient.stat(base + r"\a.txt").st_ino
print("ok linked")

with smbclient.open_file(base + r"\d\b.txt", "a") as f:
    f.write(" two")
with smbclient.open_file(base + r"\a.txt", "r") as f:
    assert f.read() == "one two"
print("ok one file under two names")

with smbclient.open_file(base + r"\c.txt", "w") as f:
    f.write("other")
STATUS_OBJECT_NAME_COLLISION = 0xC0000035
STATUS_FILE_IS_A_DIRECTORY = 0xC00000BA
refused("an existing name", STATUS_OBJECT_NAME_COLLISION, lambda: smbclient.link(base + r"\a.txt", base + r"\c.txt"))
refused("a directory", STATUS_FILE_IS_A_DIRECTORY, lambda: smbclient.link(base + r"\d", base + r"\e"))


def raw_link(src, name):
    """FileLinkInformation with `name` sent as it is (smbclient.link
    normalizes `..` away on the client)."""
    raw = SMBFileIO(src, mode="r", share_access="rwd", desired_access=FilePipePrinterAccessMask.FILE_WRITE_ATTRIBUTES,
                    port=port)
    with SMBFileTransaction(raw) as transaction:
        info = FileLinkInformation()
        info["replace_if_exists"] = False
        info["file_name"] = name
        set_info(transaction, info)


STATUS_OBJECT_PATH_SYNTAX_BAD = 0xC000003B
STATUS_OBJECT_NAME_INVALID = 0xC0000033
try:
    raw_link(base + r"\a.txt", "..\\escaped.txt")
    raise AssertionError("a link out of the share succeeded")
except SMBOSError as e:
    assert e.ntstatus in (STATUS_OBJECT_PATH_SYNTAX_BAD, STATUS_OBJECT_NAME_INVALID), hex(e.ntstatus)
    print(f"ok refused a name outside the share ({e.ntstatus:#x})")

smbclient.remove(base + r"\a.txt")
with smbclient.open_file(base + r"\d\b.txt", "r") as f:
    assert f.read() == "one two"
assert smbclient.stat(base + r"\d\b.txt").st_nlink == 1
print("ok the other name lives on")
