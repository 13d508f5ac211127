#!/usr/bin/env python3
"""Loads a Duet server with persistent handles for scripts/bench-restore.sh:
CONNECTIONS connections, each with SESSIONS sessions (each its own tree
connect), each session OPENS files opened with DH2Q and the persistent flag
on a continuously available share. Prints one JSON line
{"opens": N, "persistent": M, "seconds": S} once all are open, then holds
them until stdin closes (the server is killed meanwhile)."""
import argparse
import json
import sys
import time
import uuid

from smbprotocol.connection import Connection
from smbprotocol.create_contexts import DurableHandleFlags, SMB2CreateDurableHandleRequestV2
from smbprotocol.open import (CreateDisposition, CreateOptions, FilePipePrinterAccessMask, ImpersonationLevel, Open,
                              RequestedOplockLevel, ShareAccess)
from smbprotocol.session import Session
from smbprotocol.tree import TreeConnect

p = argparse.ArgumentParser()
p.add_argument("--port", type=int, required=True)
p.add_argument("--share", required=True)
p.add_argument("--user", required=True)
p.add_argument("--password", required=True)
p.add_argument("--connections", type=int, default=100)
p.add_argument("--sessions", type=int, default=10)
p.add_argument("--opens", type=int, default=10)
a = p.parse_args()

t0 = time.monotonic()
keep = []
opens = persistent = 0
for c in range(a.connections):
    conn = Connection(uuid.uuid4(), "127.0.0.1", a.port, require_signing=False)
    conn.connect(timeout=10)
    keep.append(conn)
    for s in range(a.sessions):
        session = Session(conn, a.user, a.password, require_encryption=False)
        session.connect()
        tree = TreeConnect(session, rf"\\127.0.0.1\{a.share}")
        tree.connect()
        keep += [session, tree]
        for o in range(a.opens):
            f = Open(tree, f"c{c}-s{s}-f{o}.dat")
            d = SMB2CreateDurableHandleRequestV2()
            d["timeout"] = 0
            d["flags"] = DurableHandleFlags.SMB2_DHANDLE_FLAG_PERSISTENT
            d["create_guid"] = uuid.uuid4()
            resp = f.create(ImpersonationLevel.Impersonation,
                            FilePipePrinterAccessMask.GENERIC_READ | FilePipePrinterAccessMask.GENERIC_WRITE,
                            0, ShareAccess.FILE_SHARE_READ | ShareAccess.FILE_SHARE_WRITE, CreateDisposition.FILE_OVERWRITE_IF,
                            CreateOptions.FILE_NON_DIRECTORY_FILE, create_contexts=[d],
                            oplock_level=RequestedOplockLevel.SMB2_OPLOCK_LEVEL_NONE)
            opens += 1
            for r in resp or []:
                flags = getattr(r, "fields", {}).get("flags") if hasattr(r, "fields") else None
                if flags is not None and int(flags.get_value()) & DurableHandleFlags.SMB2_DHANDLE_FLAG_PERSISTENT:
                    persistent += 1
            keep.append(f)
print(json.dumps({"opens": opens, "persistent": persistent, "seconds": round(time.monotonic() - t0, 1)}), flush=True)
sys.stdin.read()
