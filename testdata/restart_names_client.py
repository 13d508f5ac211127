#!/usr/bin/env python3
"""restart_names_client.py --port P [--share S] [--user U] [--password PW]

The client half of server/tests/restart.rs's test of a file's name and
delete-pending after a restart: both are the state model's alone, so
what a restart rebuilds from the journal is what answers.

Phase 1: open `named.dat` durably (DHnQ + batch oplock, with DELETE
access), write to it, rename it to `renamed.dat` (FileRenameInformation)
and set it delete-pending (FileDispositionInformation); print one JSON
line {"phase": "ready", ...}. Then wait for a line on stdin: meanwhile the
test kills and restarts the server.

Phase 2: reconnect, reclaim the open (DHnC with the old file id), and
check: its name (FileAllInformation) is the new one ("name"), a delete
is pending on it ("delete_pending"); an open of the
new name by a second client is refused with STATUS_DELETE_PENDING
("other_open"); after the reclaimed handle's close, the file is gone
("after_close": STATUS_OBJECT_NAME_NOT_FOUND). Prints one JSON line
{"phase": "done", ...}; exit status 0 whenever that line was printed (the
test judges it).
"""
import json
import struct
import sys

from resilient_smb import client_for, ConnectionLost, Failed, server_args, stamp, status_name, stderr_log
from smbprotocol.file_info import FileDispositionInformation, FileRenameInformation
from smbprotocol.open import (CreateDisposition, FilePipePrinterAccessMask, SMB2QueryInfoRequest,
                              SMB2QueryInfoResponse)

NAME = "named.dat"
NEW_NAME = "renamed.dat"
FILE_ALL_INFORMATION = 18
SMB2_0_INFO_FILE = 1


def out(d):
    print(json.dumps(d), flush=True)


def query_name(c, h):
    """The name and delete-pending of the open, from its FileAllInformation
    ([MS-FSCC] 2.4.2: FileStandardInformation's DeletePending at byte 60,
    FileNameInformation's length at 96 and name at 100)."""
    msg = SMB2QueryInfoRequest()
    msg["info_type"] = SMB2_0_INFO_FILE
    msg["file_info_class"] = FILE_ALL_INFORMATION
    msg["output_buffer_length"] = 1024
    msg["file_id"] = h.file_id
    resp = c.call(msg, what=f"query name {h.name}")
    r = SMB2QueryInfoResponse()
    r.unpack(resp["data"].get_value())
    buf = r["buffer"].get_value()
    (n,) = struct.unpack_from("<I", buf, 96)
    return buf[100:100 + n].decode("utf-16-le"), buf[60] != 0


def main():
    a = server_args().parse_args()
    log = stderr_log("restart_names_client")
    c = client_for(a, log=log)
    c.connect(deadline_s=30)
    access = (FilePipePrinterAccessMask.GENERIC_READ | FilePipePrinterAccessMask.GENERIC_WRITE
              | FilePipePrinterAccessMask.DELETE)
    h = c.create(NAME, CreateDisposition.FILE_OVERWRITE_IF, access=access, durable="v1")
    ready = {"phase": "ready", "file_id": h.file_id.hex(), "granted": h.granted}
    if h.granted != "v1":
        ready["error"] = "durable v1 not granted"
        out(ready)
        return
    try:
        c.write(h, 0, stamp("named", 4096))
        rename = FileRenameInformation()
        rename["file_name"] = NEW_NAME
        c.set_info(h, rename)
        dispose = FileDispositionInformation()
        dispose["delete_pending"] = True
        c.set_info(h, dispose)
        ready["name"], ready["delete_pending"] = query_name(c, h)
    except Failed as e:
        ready["error"] = status_name(e.status)
    out(ready)
    if "error" in ready:
        return

    sys.stdin.readline()  # the test restarts the server meanwhile

    res = {"phase": "done", "reconnect": None}
    try:
        c.connect(deadline_s=60)
        c.reclaim(h)
        res["reconnect"] = "ok"
    except Failed as e:
        res["reconnect"] = status_name(e.status)
    except ConnectionLost as e:
        res["reconnect"] = f"connection lost: {e}"
    if res["reconnect"] != "ok":
        out(res)
        return
    try:
        res["name"], res["delete_pending"] = query_name(c, h)
    except Failed as e:
        res["name"] = status_name(e.status)

    other = client_for(a, log=log)
    other.connect(deadline_s=30)
    try:
        o = other.create(NEW_NAME, CreateDisposition.FILE_OPEN, access=FilePipePrinterAccessMask.GENERIC_READ,
                         durable=None)
        other.close(o)
        res["other_open"] = "ok"
    except Failed as e:
        res["other_open"] = status_name(e.status)

    c.close(h)
    try:
        o = other.create(NEW_NAME, CreateDisposition.FILE_OPEN, access=FilePipePrinterAccessMask.GENERIC_READ,
                         durable=None)
        other.close(o)
        res["after_close"] = "ok"
    except Failed as e:
        res["after_close"] = status_name(e.status)
    other.drop()
    c.drop()
    out(res)


if __name__ == "__main__":
    main()
