#!/usr/bin/env python3
"""break_restart_client.py --port P [--share S] [--user U] [--password PW] [--kind lease|oplock]

The client half of server/tests/restart.rs
`a_lease_break_in_progress_survives_sigkill` and
`an_oplock_break_in_progress_survives_sigkill`: a break in progress when
the server dies comes back with the restart ([MS-SMB2] 3.3.4.6, 3.3.4.7,
3.3.5.22).

Phase 1: client A opens `breaking.dat` durably (lease: DH2Q + RWH lease;
oplock: DHnQ + batch oplock) and does not acknowledge breaks by itself.
Client B (another ClientGuid) opens the same file for reading and
writing, which breaks A (RWH to RH; batch to level II) and waits
(STATUS_PENDING). Once A has the break notification, prints one JSON line
{"phase": "ready", "first": {...the notification...}} and waits for a
line on stdin: meanwhile the test kills and restarts the server.

Phase 2: A connects anew and takes its handle back (DH2C / DHnC): the
answer's lease flags, state and epoch are recorded, and A must get the break
notification again, before anybody else opens the file ("second"). B
connects anew and sends its CREATE again: it must wait, since the break
is still in progress ("b_waited": no final answer within a second). A
acknowledges ("ack": what the answer says A holds now), and B's CREATE
must then complete ("b_after_ack"). A acknowledging again is refused
("second_ack"). Prints one JSON line {"phase": "done", ...}.
"""
import json
import struct
import sys
import time

from resilient_smb import SHARE_ALL, client_for, ConnectionLost, Failed, server_args, status_name, stderr_log
from smbprotocol.header import NtStatus
from smbprotocol.open import (CreateDisposition, FilePipePrinterAccessMask, ImpersonationLevel, Open,
                              RequestedOplockLevel)

NAME = "breaking.dat"
RH = 0x01 | 0x02
LEVEL_II = 0x01


def out(d):
    print(json.dumps(d), flush=True)


def notice(body):
    """What a break notification says ([MS-SMB2] 2.2.23.1, 2.2.23.2)."""
    if struct.unpack_from("<H", body, 0)[0] == 24:
        return {"kind": "oplock", "level": body[2], "file_id": body[8:24].hex()}
    epoch, flags = struct.unpack_from("<HI", body, 2)
    current, new = struct.unpack_from("<II", body, 24)
    return {"kind": "lease", "epoch": epoch, "flags": flags, "key": body[8:24].hex(), "current": current,
            "new": new}


def wait_notice(c, count, limit=10.0):
    """Waits until `c` has seen `count` notifications; the last, or None."""
    end = time.monotonic() + limit
    while time.monotonic() < end:
        if len(c.notices) >= count:
            return c.notices[count - 1]
        time.sleep(0.05)
    return None


def send_open(c):
    """Sends B's CREATE (no oplock, no lease, read and write, every share
    mode) without waiting for its answer; the request."""
    f = Open(c.tree, NAME)
    access = FilePipePrinterAccessMask.GENERIC_READ | FilePipePrinterAccessMask.GENERIC_WRITE
    msg, _ = f.create(ImpersonationLevel.Impersonation, access, 0, SHARE_ALL, CreateDisposition.FILE_OPEN, 0,
                      oplock_level=RequestedOplockLevel.SMB2_OPLOCK_LEVEL_NONE, send=False)
    return c.conn.send(msg, sid=c.session.session_id, tid=c.tree.tree_connect_id)


def final_status(req, limit):
    """The final (not STATUS_PENDING) status of `req` within `limit`
    seconds, or None; and whether an interim STATUS_PENDING came."""
    end = time.monotonic() + limit
    interim = False
    while True:
        left = end - time.monotonic()
        if left <= 0 or not req.response_event.wait(left):
            return None, interim
        with req.response_event_lock:
            resp = req.response
            if resp is None:
                return "connection closed", interim
            status = resp["status"].get_value()
            if status == NtStatus.STATUS_PENDING:
                interim = True
                req.response_event.clear()
                continue
            return status_name(status) if status else "ok", interim


def main():
    ap = server_args()
    ap.add_argument("--kind", choices=["lease", "oplock"], default="lease")
    a = ap.parse_args()
    log = stderr_log("break_restart_client")
    durable = "v2" if a.kind == "lease" else "v1"
    keep = RH if a.kind == "lease" else LEVEL_II

    holder = client_for(a, log=log)
    holder.auto_ack = False
    holder.connect(deadline_s=30)
    h = holder.create(NAME, CreateDisposition.FILE_OVERWRITE_IF, durable=durable)
    ready = {"phase": "ready", "granted": h.granted, "oplock": h.oplock, "lease_state": h.lease_state}
    opener = client_for(a, log=log)
    opener.connect(deadline_s=30)
    req = send_open(opener)
    first = wait_notice(holder, 1)
    ready["first"] = notice(first) if first else None
    ready["b_before_kill"], _ = final_status(req, 0.5)
    out(ready)

    sys.stdin.readline()  # the test kills and restarts the server meanwhile

    res = {"phase": "done"}
    try:
        holder.connect(deadline_s=60)
        seen = len(holder.notices)
        res["same_file_id"] = holder.reclaim(h)
        res["reclaim_lease_state"] = h.lease_state
        res["reclaim_lease_flags"] = h.lease_flags
        res["reclaim_lease_epoch"] = h.lease_epoch
        res["reclaim_oplock"] = h.oplock
        second = wait_notice(holder, seen + 1, limit=5.0)
        res["second"] = notice(second) if second else None
        opener.connect(deadline_s=30)
        req = send_open(opener)
        res["b_waited"], res["b_interim"] = final_status(req, 1.0)
        res["b_waited"] = res["b_waited"] is None
        if second is not None:
            try:
                res["ack"] = holder.ack(second, keep)
            except Failed as e:
                res["ack"] = status_name(e.status)
            res["b_after_ack"], _ = final_status(req, 10.0)
            try:
                holder.ack(second, keep)
                res["second_ack"] = "ok"
            except Failed as e:
                res["second_ack"] = status_name(e.status)
        else:
            res["b_after_ack"], _ = final_status(req, 10.0)
        res["notices"] = [notice(n) for n in holder.notices]
    except (Failed, ConnectionLost) as e:
        res["error"] = str(e)
    out(res)
    holder.drop()
    opener.drop()


if __name__ == "__main__":
    main()
