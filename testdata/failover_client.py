#!/usr/bin/env python3
"""failover_client.py --host H --port P --share S [--blocks N] [--size B] [--append] [--pause S] [--wait-at N]
                   [--hold-after-loss] [--tag T] [--verify]

The client half of server/tests/failover.rs: one durable v2 open (DH2Q with
an RWH lease) that writes N stamped blocks, one at a time, each waited for,
while the test kills the node that serves the address. The client knows one
address only: when the connection is lost it reconnects to the same address
(now served by the partner), reclaims the handle with DH2C (the same file
id must come back) and resends the request that had no answer with the
replay flag ([MS-SMB2] 3.2.4.1.1), as a Windows client does.

Without --append, block i goes at offset i * size; with --append the open is
append-only (FILE_APPEND_DATA without FILE_WRITE_DATA) and every block goes at
the end of the file: a write carried out twice would show as a block twice.
Block i says "T i" over and over (T is "block" unless --tag says otherwise).

With --hold-after-loss, the first time the connection is lost the client
prints {"lost": i} and waits for a line on stdin before it reconnects (so
that server/tests/restart.rs can restart the server, or crash it again,
before the resend).

With --verify (not with --append), once every block is written the client
reads each one back through the same handle and checks it ("verified" in the
last line; a block that differs is an error).

Prints one JSON line per answered write, {"wrote": i}, and at the end
{"done": true, "blocks": N, "reconnects": R, "reclaimed": true|false,
"stall_ms": S, "server_guids": [...], "errors": [...]}; exits 0 when every write was answered with
success. S is the longest client-visible stall: the longest time between
two answers in a row (a fault's stall; without one, the time a WRITE takes).
server_guids lists each ServerGuid the address answered NEGOTIATE with.
"""
import argparse
import json
import sys
import time

from resilient_smb import Client, ConnectionLost, Failed, stamp
from smbprotocol.open import CreateDisposition

APPEND_ONLY = 0x4 | 0x80 | 0x100000  # FILE_APPEND_DATA | FILE_READ_ATTRIBUTES | SYNCHRONIZE


def out(d):
    print(json.dumps(d), flush=True)


def block(i, size, tag="block"):
    return stamp(f"{tag} {i:06d}", size)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", required=True)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--share", required=True)
    ap.add_argument("--user", default="duet")
    ap.add_argument("--password", default="duetpass")
    ap.add_argument("--name", default="failover.dat")
    ap.add_argument("--blocks", type=int, default=100)
    ap.add_argument("--size", type=int, default=16384)
    ap.add_argument("--append", action="store_true")
    ap.add_argument("--tag", default="block", help="what each block says before its number")
    ap.add_argument("--pause", type=float, default=0.0)
    ap.add_argument("--reconnect-for", type=float, default=60.0)
    ap.add_argument("--wait-at", type=int, default=-1,
                    help="before write N, print {\"waiting\": N} and wait for a line on stdin")
    ap.add_argument("--hold-after-loss", action="store_true",
                    help="on the first lost connection, print {\"lost\": i} and wait for a line on stdin")
    ap.add_argument("--verify", action="store_true",
                    help="after the writes, read every block back through the handle")
    a = ap.parse_args()

    log = lambda m: print(f"client: {m}", file=sys.stderr, flush=True)  # noqa: E731
    c = Client(a.host, a.port, a.share, a.user, a.password, timeout=30.0, log=log)
    errors = []
    reconnects = 0
    reclaimed = True
    stall_ms = 0.0
    c.connect(deadline_s=30.0)
    access = APPEND_ONLY if a.append else None
    h = c.create(a.name, CreateDisposition.FILE_OVERWRITE_IF, access=access, durable="v2")
    if h.granted != "v2":
        out({"done": False, "errors": [f"no durable v2 handle granted ({h.granted})"]})
        return 1
    last_answer = time.monotonic()
    for i in range(a.blocks):
        if i == a.wait_at:
            out({"waiting": i, "t": time.time()})
            line = sys.stdin.readline()
            log(f"go ({line.strip()!r}) at {time.time():.3f}")
            last_answer = time.monotonic()
        data = block(i, a.size, a.tag)
        offset = 0 if a.append else i * a.size
        replay = False
        while True:
            try:
                c.write(h, offset, data, replay=replay)
                break
            except ConnectionLost as e:
                log(f"write {i}: {e}; reconnecting to {a.host}:{a.port}")
                if a.hold_after_loss and reconnects == 0:
                    out({"lost": i})
                    line = sys.stdin.readline()
                    log(f"go ({line.strip()!r}): reconnecting")
                reconnects += 1
                try:
                    c.connect(deadline_s=a.reconnect_for)
                    if not c.reclaim(h):
                        reclaimed = False
                        errors.append(f"write {i}: the reclaim gave another file id")
                except (ConnectionLost, Failed) as e2:
                    errors.append(f"write {i}: reconnect or reclaim failed: {e2}")
                    out({"done": False, "blocks": i, "reconnects": reconnects, "errors": errors})
                    return 1
                log(f"reclaimed the handle after {reconnects} reconnect(s); resending write {i} as a replay")
                replay = True
            except Failed as e:
                errors.append(f"write {i}: {e}")
                out({"done": False, "blocks": i, "reconnects": reconnects, "errors": errors})
                return 1
        now = time.monotonic()
        stall_ms = max(stall_ms, (now - last_answer) * 1000)
        last_answer = now
        out({"wrote": i, "replay": replay, "t": round(time.time(), 3)})
        if a.pause:
            time.sleep(a.pause)
    verified = None
    if a.verify and not a.append:
        verified = True
        for i in range(a.blocks):
            try:
                got = c.read(h, i * a.size, a.size)
            except (ConnectionLost, Failed) as e:
                errors.append(f"read {i}: {e}")
                verified = False
                break
            if got != block(i, a.size, a.tag):
                errors.append(f"read {i}: {len(got)} bytes, not the block written ({got[:14]!r})")
                verified = False
                break
    try:
        c.close(h)
    except (ConnectionLost, Failed) as e:
        errors.append(f"close: {e}")
    out({"done": not errors, "blocks": a.blocks, "reconnects": reconnects, "reclaimed": reclaimed,
         "verified": verified,
         "server_guids": c.server_guids,
         "stall_ms": round(stall_ms), "errors": errors})
    return 0 if not errors else 1


if __name__ == "__main__":
    sys.exit(main())
