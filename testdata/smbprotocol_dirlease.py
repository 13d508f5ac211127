"""Directory leases through Python's smbprotocol ([MS-SMB2] 3.3.5.9.8 with
SMB2_CAP_DIRECTORY_LEASING; [MS-FSA] 2.1.4.13, the break of a file's parent
directory), the cases smbtorture 4.17's smb2.lease leaves out:
`smbprotocol_dirlease.py PORT SHARE USER PASSWORD`.

A directory asked for RWH gets RH. Another client's create, write-and-close,
delete, and rename in the directory break it to none, and a rename from one
leased directory to another breaks both. A change made by the holder under
a file lease that names the directory's lease as its parent breaks nothing;
the same holder's change without that parent key does. And, for a file's
lease: a delete disposition another client sets takes its handle caching.
Prints one `ok ...`
line per step; any failure raises. Run by server/tests/pyclient.rs."""
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from resilient_smb import LEASE, Client, Handle  # noqa: E402
from smbprotocol.create_contexts import SMB2CreateRequestLeaseV2  # noqa: E402
from smbprotocol.file_info import FileDispositionInformation, FileRenameInformation  # noqa: E402
from smbprotocol.open import CreateDisposition, CreateOptions, FilePipePrinterAccessMask  # noqa: E402

port, share, user, password = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
RH = 0x03
DIR = CreateOptions.FILE_DIRECTORY_FILE
READ = FilePipePrinterAccessMask.GENERIC_READ
RWD = READ | FilePipePrinterAccessMask.GENERIC_WRITE | FilePipePrinterAccessMask.DELETE


class Leased(Handle):
    """An open asking for an RWH version 2 lease, with a parent key or not."""

    def __init__(self, name, key, parent=None):
        super().__init__(name, None)
        self.lease_key, self.parent = key, parent

    def request_contexts(self):
        lease = SMB2CreateRequestLeaseV2()
        lease["lease_key"] = self.lease_key
        lease["lease_state"] = 0x07
        lease["lease_flags"] = 0x04 if self.parent else 0  # SMB2_LEASE_FLAG_PARENT_LEASE_KEY_SET
        lease["parent_lease_key"] = self.parent or b"\0" * 16
        lease["epoch"] = b"\0\0"
        return [lease], LEASE


def key(n):
    return bytes([n]) * 16


holder = Client("127.0.0.1", port, share, user, password)
other = Client("127.0.0.1", port, share, user, password)
holder.connect(deadline_s=20)
other.connect(deadline_s=20)


def lease_dir(name, k):
    """Opens directory `name` under lease key `k` (again): RH."""
    h = Leased(name, k)
    holder.create(name, CreateDisposition.FILE_OPEN_IF, access=READ, handle=h, options=DIR)
    assert h.lease_state == RH, f"{name}: lease state {h.lease_state}, expected RH"
    return h


def broken(k):
    return [b for b in holder.breaks if b[0] == "lease" and b[1] == k.hex()]


def expect_break(k, what, to=0):
    end = time.monotonic() + 5
    while time.monotonic() < end:
        if broken(k):
            assert broken(k)[0][2] == to, f"{what}: broken to {broken(k)[0][2]}, expected {to}"
            print(f"ok {what}")
            time.sleep(0.3)  # the acknowledgement goes out
            holder.breaks[:] = [b for b in holder.breaks if b[1] != k.hex()]
            return
        time.sleep(0.05)
    raise AssertionError(f"{what}: no lease break came")


def expect_no_break(k, what):
    time.sleep(1.0)
    assert not broken(k), f"{what}: the directory lease was broken: {holder.breaks}"
    print(f"ok {what}")


def plain(client, name, disposition=CreateDisposition.FILE_OPEN, options=0):
    h = Handle(name, None)
    client.create(name, disposition, access=RWD, handle=h, options=options)
    return h


def rename(client, name, to):
    h = plain(client, name)
    info = FileRenameInformation()
    info["replace_if_exists"] = False
    info["file_name"] = to
    client.set_info(h, info)
    client.close(h)


def delete(client, h):
    info = FileDispositionInformation()
    info["delete_pending"] = True
    client.set_info(h, info)
    client.close(h)


K, K2, OWN = key(1), key(2), key(3)
lease_dir("dl", K)
print("ok a directory asked for RWH gets RH")

other.close(plain(other, "dl\\f1", CreateDisposition.FILE_CREATE))
expect_break(K, "another client's create breaks it")

lease_dir("dl", K)
h = plain(other, "dl\\f1")
other.write(h, 0, b"changed")
other.close(h)
expect_break(K, "another client's write and close break it")

lease_dir("dl", K)
rename(other, "dl\\f1", "dl\\f2")
expect_break(K, "another client's rename in it breaks it")

lease_dir("dl", K)
delete(other, plain(other, "dl\\f2"))
expect_break(K, "another client's delete breaks it")

other.close(plain(other, "dl2", CreateDisposition.FILE_CREATE, options=DIR))
other.close(plain(other, "dl\\f3", CreateDisposition.FILE_CREATE))
holder.breaks.clear()
time.sleep(0.3)
lease_dir("dl", K)
lease_dir("dl2", K2)
rename(other, "dl\\f3", "dl2\\f3")
expect_break(K, "a rename out of it breaks it")
expect_break(K2, "and the directory it went to")

lease_dir("dl", K)
own = Leased("dl\\own", OWN, parent=K)
holder.create("dl\\own", CreateDisposition.FILE_CREATE, access=RWD, handle=own)
holder.write(own, 0, b"mine")
holder.close(own)
own = Leased("dl\\own", OWN, parent=K)
holder.create("dl\\own", CreateDisposition.FILE_OPEN, access=RWD, handle=own)
delete(holder, own)
expect_no_break(K, "the holder's own create, write and delete under its parent key break nothing")

holder.close(plain(holder, "dl\\nokey", CreateDisposition.FILE_CREATE))
expect_break(K, "the holder's create without the parent key breaks it")

F = key(9)
held = Leased("dl\\held", F)
holder.create("dl\\held", CreateDisposition.FILE_CREATE, access=RWD, handle=held)
assert held.lease_state == 0x07, f"file lease {held.lease_state}"
h = plain(other, "dl\\held")
expect_break(F, "another client's open takes a file lease's W", to=RH)
delete_info = FileDispositionInformation()
delete_info["delete_pending"] = True
other.set_info(h, delete_info)
expect_break(F, "a delete disposition takes its H", to=0x01)
other.close(h)
