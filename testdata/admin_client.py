#!/usr/bin/env python3
"""admin_client.py HOST PORT SHARE USER PASSWORD

Holds a session with two opens for server/tests/admin.rs: `held.txt`, a
plain open, and `kept.txt`, a durable (DHnQ) open with a batch oplock. Prints

    READY <kept persistent id> <held persistent id>

(ids as 0x and 16 hex digits) and waits for a line on stdin: `drop` ends the
process without a LOGOFF or a CLOSE, so the server sees the connection lost
and keeps `kept.txt` as a retained handle; anything else (or end of input)
logs off cleanly.
"""
import os
import struct
import sys
import uuid

from smbprotocol.connection import Connection
from smbprotocol.create_contexts import (CreateContextName, SMB2CreateContextRequest,
                                         SMB2CreateDurableHandleRequest)
from smbprotocol.open import (CreateDisposition, FilePipePrinterAccessMask, ImpersonationLevel, Open,
                              RequestedOplockLevel, ShareAccess)
from smbprotocol.session import Session
from smbprotocol.tree import TreeConnect


def create(tree, name, durable):
    f = Open(tree, name)
    contexts = None
    oplock = RequestedOplockLevel.SMB2_OPLOCK_LEVEL_NONE
    if durable:
        ctx = SMB2CreateContextRequest()
        ctx["buffer_name"] = CreateContextName.SMB2_CREATE_DURABLE_HANDLE_REQUEST
        ctx["buffer_data"] = SMB2CreateDurableHandleRequest()
        contexts = [ctx]
        oplock = RequestedOplockLevel.SMB2_OPLOCK_LEVEL_BATCH
    f.create(ImpersonationLevel.Impersonation,
             FilePipePrinterAccessMask.GENERIC_READ | FilePipePrinterAccessMask.GENERIC_WRITE,
             0,
             ShareAccess.FILE_SHARE_READ,
             CreateDisposition.FILE_OVERWRITE_IF,
             0,
             create_contexts=contexts,
             oplock_level=oplock)
    f.write(b"admin test\n", 0)
    persistent = struct.unpack("<Q", f.file_id[:8])[0]
    return f, f"0x{persistent:016x}"


def main():
    host, port, share, user, password = sys.argv[1:6]
    conn = Connection(uuid.uuid4(), host, int(port))
    conn.connect(timeout=30)
    session = Session(conn, user, password, require_encryption=False)
    session.connect()
    tree = TreeConnect(session, rf"\\{host}\{share}")
    tree.connect()
    _held, held_id = create(tree, "held.txt", False)
    _kept, kept_id = create(tree, "kept.txt", True)
    print(f"READY {kept_id} {held_id}", flush=True)
    line = sys.stdin.readline().strip()
    if line == "drop":
        os._exit(0)
    conn.disconnect(True)


if __name__ == "__main__":
    main()
