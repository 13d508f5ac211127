"""A rename in a compound that must wait for a lease break, through Python's
smbprotocol: `smbprotocol_compound_rename.py PORT SHARE USER PASSWORD`.

One client holds a version 2 lease with handle caching on a file; another
renames the file with one compound request, CREATE + SET_INFO
(FileRenameInformation) + CLOSE, the last two related to the first, as
smbclient's and Windows' rename transactions send it. The rename breaks the
lease's handle caching ([MS-FSA] 2.1.5.14.11) and must wait for the
acknowledgement, so its SET_INFO goes async in the middle of the compound
([MS-SMB2] 3.3.4.4, 3.3.5.2.7.2): the CREATE must succeed, the SET_INFO get
its interim STATUS_PENDING and then succeed, the CLOSE (related to the
rename) succeed after it, and the file have its new name. Then the same with
an RWH lease, whose W the CREATE breaks first (the CREATE waits too).

Prints one `ok ...` line per step, or `FAIL ...` with what each element got
(exit status 1). Run by server/tests/pyclient.rs."""
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from resilient_smb import LEASE, SHARE_ALL, Client, Handle, status_name  # noqa: E402
from smbprotocol.create_contexts import SMB2CreateRequestLeaseV2  # noqa: E402
from smbprotocol.file_info import FileRenameInformation  # noqa: E402
from smbprotocol.header import NtStatus  # noqa: E402
from smbprotocol.open import (CreateDisposition, FilePipePrinterAccessMask, ImpersonationLevel, Open,  # noqa: E402
                              SMB2CloseRequest, SMB2SetInfoRequest)

port, share, user, password = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
RELATED_FILE = b"\xff" * 16
DELETE_ACCESS = FilePipePrinterAccessMask.DELETE | FilePipePrinterAccessMask.FILE_READ_ATTRIBUTES


class Leased(Handle):
    """An open asking for a version 2 lease in `state`."""

    def __init__(self, name, key, state):
        super().__init__(name, None)
        self.lease_key, self.state = key, state

    def request_contexts(self):
        lease = SMB2CreateRequestLeaseV2()
        lease["lease_key"] = self.lease_key
        lease["lease_state"] = self.state
        lease["lease_flags"] = 0
        lease["parent_lease_key"] = b"\0" * 16
        lease["epoch"] = b"\0\0"
        return [lease], LEASE


def answers(reqs, limit=20.0):
    """Each request's (interim status or None, final status), waiting up to
    `limit` seconds in all."""
    end = time.monotonic() + limit
    out = []
    for req in reqs:
        interim, final = None, None
        while final is None:
            left = end - time.monotonic()
            if left <= 0 or not req.response_event.wait(left):
                final = "no answer"
                break
            with req.response_event_lock:
                resp = req.response
                if resp is None:
                    final = "connection closed"
                    break
                status = resp["status"].get_value()
                if status == NtStatus.STATUS_PENDING:
                    interim = "STATUS_PENDING"
                    req.response_event.clear()
                    continue
                final = "STATUS_SUCCESS" if status == 0 else status_name(status)
        out.append((interim, final))
    return out


def compound_rename(c, name, to):
    """CREATE `name` + SET_INFO rename to `to` + CLOSE, related, in one
    compound request; what each element got."""
    f = Open(c.tree, name)
    create, _ = f.create(ImpersonationLevel.Impersonation, DELETE_ACCESS, 0, SHARE_ALL,
                         CreateDisposition.FILE_OPEN, 0, send=False)
    info = FileRenameInformation()
    info["replace_if_exists"] = False
    info["file_name"] = to
    rename = SMB2SetInfoRequest()
    rename["info_type"] = info.INFO_TYPE
    rename["file_info_class"] = info.INFO_CLASS
    rename["file_id"] = RELATED_FILE
    rename["buffer"] = info
    close = SMB2CloseRequest()
    close["file_id"] = RELATED_FILE
    reqs = c.conn.send_compound([create, rename, close], c.session.session_id, c.tree.tree_connect_id,
                                related=True)
    return answers(reqs)


holder = Client("127.0.0.1", port, share, user, password)
renamer = Client("127.0.0.1", port, share, user, password)
holder.connect(deadline_s=20)
renamer.connect(deadline_s=20)
root = None


def check(step, name, to, state, key, want_breaks, create_waits):
    h = Leased(name, key, state)
    holder.create(name, CreateDisposition.FILE_OVERWRITE_IF, handle=h)
    assert h.lease_state == state, f"{name}: lease state {h.lease_state}, expected {state}"
    got = compound_rename(renamer, name, to)
    want = [("STATUS_PENDING" if create_waits else None, "STATUS_SUCCESS"), ("STATUS_PENDING", "STATUS_SUCCESS"),
            (None, "STATUS_SUCCESS")]
    breaks = [b[2] for b in holder.breaks if b[0] == "lease" and b[1] == key.hex()]
    # Renamed: the old name is gone and the new one opens.
    renamed = True
    try:
        renamer.close(renamer.create(to, CreateDisposition.FILE_OPEN, access=DELETE_ACCESS, durable=None))
    except Exception:  # noqa: BLE001
        renamed = False
    if got != want or breaks != want_breaks or not renamed:
        print(f"FAIL {step}: elements {got} (wanted {want}), breaks {breaks} (wanted {want_breaks}), "
              f"renamed {renamed}", flush=True)
        sys.exit(1)
    holder.close(h)
    print(f"ok {step}", flush=True)


check("a compound rename waits for an RH lease's break and completes", "held.txt", "moved.txt", 0x03,
      b"\x01" * 16, [0x01], False)
check("a compound rename waits for an RWH lease's two breaks and completes", "held2.txt", "moved2.txt", 0x07,
      b"\x02" * 16, [0x03, 0x01], True)
