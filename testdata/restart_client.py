#!/usr/bin/env python3
"""restart_client.py --port P [--share S] [--user U] [--password PW] [--durable v1|v2] [--blocks N]
                  [--appends N]

The client half of server/tests/restart.rs: a durable open that must come
back after the server restarts (or after the connection alone is lost).

Phase 1: open `restart.dat` durably (v1: DHnQ + batch oplock; v2: DH2Q +
RWH lease), write N stamped 4 KiB blocks (each answered), take an
exclusive byte-range lock on [1 MiB, 1 MiB + 4 KiB), take and release
another (its unlock under LockSequenceIndex 2); with --appends N,
also open `append.dat` for appending only (FILE_APPEND_DATA, no
FILE_WRITE_DATA) and write N stamped pieces of different lengths, each
naming offset 0 (an append-only open writes at the end whatever offset it
names), then close it; and print one JSON line {"phase": "ready", ...}.
Then wait for a line on stdin: meanwhile the test kills and restarts the
server (or does nothing, to test a lost connection alone).

Phase 2: drop the old connection, connect anew (same ClientGuid, new
session for the same user), reclaim the open (DHnC or DH2C with the old
file id), and check: the same file id came back, the unlock resent with
its lock sequence is answered as the replay it is (success, not carried
out again), every answered write is in the file, the lock is still held (a second client's open cannot take
it, though it can lock elsewhere, and cannot write or read its range), the handle can go on writing, and
`append.dat` holds the N pieces one after the other ("appended": true).
Prints one JSON line {"phase": "done", ...}; exit status 0 whenever that
line was printed (the test judges it).
"""
import json
import sys

from resilient_smb import client_for, ConnectionLost, Failed, server_args, stamp, status_name, stderr_log
from smbprotocol.open import CreateDisposition, FilePipePrinterAccessMask

BLOCK = 4096
LOCK_AT = 1 << 20
UNLOCKED_AT = LOCK_AT + 8 * BLOCK
NAME = "restart.dat"
APPEND_NAME = "append.dat"
APPEND_ONLY = 0x4 | 0x80 | 0x100000  # FILE_APPEND_DATA | FILE_READ_ATTRIBUTES | SYNCHRONIZE


def pieces(n):
    """The pieces an append-only open writes, of different lengths."""
    return [stamp(f"append {i}", 1000 + 100 * i) for i in range(n)]


def out(d):
    print(json.dumps(d), flush=True)


def main():
    ap = server_args()
    ap.add_argument("--durable", choices=["v1", "v2"], default="v1")
    ap.add_argument("--blocks", type=int, default=16)
    ap.add_argument("--appends", type=int, default=0)
    a = ap.parse_args()

    log = stderr_log("restart_client")
    c = client_for(a, log=log)
    c.connect(deadline_s=30)
    h = c.create(NAME, CreateDisposition.FILE_OVERWRITE_IF, durable=a.durable)
    ready = {"phase": "ready", "file_id": h.file_id.hex(), "asked": a.durable, "granted": h.granted,
             "oplock": h.oplock, "lease_state": h.lease_state, "dialect": f"0x{c.dialect:04x}"}
    if h.granted != a.durable:
        ready["error"] = f"durable {a.durable} not granted"
        out(ready)
        return
    for i in range(a.blocks):
        c.write(h, i * BLOCK, stamp(f"restart block {i} before", BLOCK))
    c.lock(h, LOCK_AT, BLOCK, seq=h.next_lock_seq(1))
    # A lock taken and released under LockSequenceIndex 2: phase 2 resends
    # the unlock, which must be answered as the replay it is.
    c.lock(h, UNLOCKED_AT, BLOCK, seq=h.next_lock_seq(2))
    unlock_seq = h.next_lock_seq(2)
    c.lock(h, UNLOCKED_AT, BLOCK, unlock=True, seq=unlock_seq)
    ready["written"] = a.blocks
    if a.appends:
        ap_h = c.create(APPEND_NAME, CreateDisposition.FILE_OVERWRITE_IF, access=APPEND_ONLY, durable=None)
        for p in pieces(a.appends):
            c.write(ap_h, 0, p)
        c.close(ap_h)
        ready["appended"] = a.appends
    out(ready)

    sys.stdin.readline()  # the test restarts the server meanwhile

    old_id = h.file_id
    res = {"phase": "done", "reconnect": None}
    try:
        c.connect(deadline_s=60)
        same = c.reclaim(h)
        res["reconnect"] = "ok"
        res["same_file_id"] = same
        res["file_id_after"] = h.file_id.hex()
    except Failed as e:
        res["reconnect"] = status_name(e.status)
    except ConnectionLost as e:
        res["reconnect"] = f"connection lost: {e}"
    if res["reconnect"] != "ok":
        out(res)
        return

    # The unlock resent (its answer "lost") is a replay: the open's lock
    # sequence came back with it, so it succeeds without being carried out
    # again (carried out again, it would find nothing to unlock). Sent
    # without the replay flag, so that the lock sequence alone must catch
    # it, not the answers the journal saved for replays.
    try:
        c.lock(h, UNLOCKED_AT, BLOCK, unlock=True, seq=unlock_seq)
        res["unlock_replay"] = "ok"
    except Failed as e:
        res["unlock_replay"] = status_name(e.status)

    # Every answered write is there.
    missing = []
    for i in range(a.blocks):
        if c.read(h, i * BLOCK, BLOCK) != stamp(f"restart block {i} before", BLOCK):
            missing.append(i)
    res["missing_writes"] = missing

    # The lock is still held: another client cannot take it, though it can
    # lock a range beside it (so the refusal is the lock's doing).
    other = client_for(a, log=log)
    other.connect(deadline_s=30)
    o = other.create(NAME, CreateDisposition.FILE_OPEN, access=FilePipePrinterAccessMask.GENERIC_READ
                     | FilePipePrinterAccessMask.GENERIC_WRITE, durable=None)
    try:
        other.lock(o, LOCK_AT, BLOCK)
        res["lock_held"] = False
        other.lock(o, LOCK_AT, BLOCK, unlock=True)
    except Failed as e:
        res["lock_held"] = status_name(e.status) == "STATUS_LOCK_NOT_GRANTED"
        res["other_lock_status"] = status_name(e.status)
    try:
        other.lock(o, LOCK_AT + 4 * BLOCK, BLOCK)
        other.lock(o, LOCK_AT + 4 * BLOCK, BLOCK, unlock=True)
        res["other_can_lock_elsewhere"] = True
    except Failed as e:
        res["other_can_lock_elsewhere"] = status_name(e.status)
    # And the lock, restored with the state model, refuses the other open's
    # WRITE and READ of its range (the model alone holds it).
    refused = []
    for what, io in (("write", lambda: other.write(o, LOCK_AT, b"x" * 16)), ("read", lambda: other.read(o, LOCK_AT, 16))):
        try:
            io()
            refused.append(f"{what} allowed")
        except Failed as e:
            refused.append(f"{what} {status_name(e.status)}")
    res["other_io_in_lock"] = refused
    other.close(o)
    other.drop()

    # It goes on writing, and its lock is still its own to release.
    try:
        for i in range(a.blocks, a.blocks + 4):
            c.write(h, i * BLOCK, stamp(f"restart block {i} after", BLOCK))
        ok = all(c.read(h, i * BLOCK, BLOCK) == stamp(f"restart block {i} after", BLOCK)
                 for i in range(a.blocks, a.blocks + 4))
        c.lock(h, LOCK_AT, BLOCK, unlock=True, seq=h.next_lock_seq(1))
        res["writes_after"] = "ok" if ok else "read back differs"
    except (Failed, ConnectionLost) as e:
        res["writes_after"] = str(e)
    res["breaks"] = c.breaks
    if a.appends:
        want = b"".join(pieces(a.appends))
        r = c.create(APPEND_NAME, CreateDisposition.FILE_OPEN, access=FilePipePrinterAccessMask.GENERIC_READ,
                     durable=None)
        got = c.read(r, 0, len(want) + 4096)
        c.close(r)
        res["appended"] = got == want
        if got != want:
            res["append_file"] = f"{len(got)} bytes, starts {got[:40]!r}"
    c.close(h)
    c.drop()
    out(res)


if __name__ == "__main__":
    main()
