#!/usr/bin/env python3
"""raw_open.py HOST PORT SHARE USER PASSWORD PATH...

Opens each PATH on //HOST/SHARE with a raw SMB2 CREATE (smbprotocol), sending
the path exactly as given (no client-side cleanup of `..`), and tries to read
up to 4 KiB from it. Prints one line per path:

    PATH -> OK <first bytes>          the open (and read) succeeded
    PATH -> NT_STATUS... / error      the server refused it

Exit status 0 unless the connection or logon itself failed.
Used by server/tests/smbclient.rs (raw_dotdot_paths_refused).
"""
import sys
import uuid

from smbprotocol.connection import Connection
from smbprotocol.exceptions import SMBResponseException
from smbprotocol.open import (CreateDisposition, CreateOptions, FilePipePrinterAccessMask,
                              ImpersonationLevel, Open, ShareAccess)
from smbprotocol.session import Session
from smbprotocol.tree import TreeConnect


def main():
    host, port, share, user, password = sys.argv[1:6]
    paths = sys.argv[6:]
    conn = Connection(uuid.uuid4(), host, int(port))
    conn.connect(timeout=30)
    try:
        session = Session(conn, user, password, require_encryption=False)
        session.connect()
        tree = TreeConnect(session, rf"\\{host}\{share}")
        tree.connect()
        for path in paths:
            f = Open(tree, path)
            try:
                f.create(ImpersonationLevel.Impersonation,
                         FilePipePrinterAccessMask.GENERIC_READ,
                         0,
                         ShareAccess.FILE_SHARE_READ | ShareAccess.FILE_SHARE_WRITE,
                         CreateDisposition.FILE_OPEN,
                         0)
            except SMBResponseException as e:
                print(f"{path} -> {status_name(e)}", flush=True)
                continue
            except Exception as e:  # noqa: BLE001 - report anything else as a refusal too
                print(f"{path} -> error {type(e).__name__}: {e}", flush=True)
                continue
            data = b""
            try:
                if f.end_of_file:
                    data = f.read(0, min(4096, f.end_of_file))
            except Exception as e:  # noqa: BLE001
                data = f"(read failed: {e})".encode()
            print(f"{path} -> OK {data[:200]!r}", flush=True)
            try:
                f.close()
            except Exception:  # noqa: BLE001
                pass
    finally:
        conn.disconnect(True)


NAMES = {
    0xC0000022: "NT_STATUS_ACCESS_DENIED",
    0xC000000D: "NT_STATUS_INVALID_PARAMETER",
    0xC0000033: "NT_STATUS_OBJECT_NAME_INVALID",
    0xC0000034: "NT_STATUS_OBJECT_NAME_NOT_FOUND",
    0xC000003A: "NT_STATUS_OBJECT_PATH_NOT_FOUND",
    0xC000003B: "NT_STATUS_OBJECT_PATH_SYNTAX_BAD",
    0xC00000BA: "NT_STATUS_FILE_IS_A_DIRECTORY",
}


def status_name(e):
    status = e.status & 0xFFFFFFFF
    return NAMES.get(status, f"NTSTATUS 0x{status:08x}")


if __name__ == "__main__":
    main()
