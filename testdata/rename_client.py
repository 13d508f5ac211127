#!/usr/bin/env python3
"""rename_client.py --host H --port P --share S [--user U --password W]

The client half of server/tests/failover.rs
`a_rename_whose_node_died_after_renaming_is_followed_by_the_partner`. Opens
`before.txt` (made new) with a durable v2 handle (DH2Q, RWH lease) and prints
{"open": true}; renames it to `after.txt` (SET_INFO FileRenameInformation),
which the server (armed with the `renamed` failpoint) carries out and dies;
prints {"first": "lost"} (or what came back). After a line on stdin it
reconnects to the same address (served by the partner then), takes the
handle back with DH2C under the old name, then the new one ({"reclaim":
"ok"} or the statuses) and resends the
rename with the replay flag ({"resend": "ok"} or the status).

server/tests/restart.rs `a_rename_waiting_for_a_break_neither_fills_the_journal_nor_is_lost`
adds `--hold-and-fill BYTES`: a second client holds an RWH lease on
`before.txt` and does not acknowledge the break the rename starts, so the
rename waits (it prints {"waiting": true}); meanwhile a third writes BYTES
in 60 KiB WRITEs (their data in the journal's records) and prints
{"filled": true} once every one was answered ({"filled": "lost: ..."} if
not); then the holder acknowledges and the rename goes on.
"""
import json
import sys
import threading
import time

from resilient_smb import client_for, ConnectionLost, Failed, server_args, status_name
from smbprotocol.file_info import FileRenameInformation
from smbprotocol.open import CreateDisposition, FilePipePrinterAccessMask


def out(d):
    print(json.dumps(d), flush=True)


def main():
    ap = server_args(share=None, host=None)
    ap.add_argument("--hold-and-fill", type=int, default=0)
    a = ap.parse_args()
    holder = None
    if a.hold_and_fill:
        holder = client_for(a, timeout=60.0)
        holder.connect(deadline_s=20)
        holder.create("before.txt", CreateDisposition.FILE_OVERWRITE_IF, durable="v2")
    c = client_for(a, timeout=60.0)
    c.connect(deadline_s=20)
    access = (FilePipePrinterAccessMask.GENERIC_READ | FilePipePrinterAccessMask.GENERIC_WRITE
              | FilePipePrinterAccessMask.DELETE)
    # Opened, not overwritten, when held: an overwrite takes the holder's
    # handle caching at once, and the rename would have no break to wait for.
    disposition = CreateDisposition.FILE_OPEN if holder else CreateDisposition.FILE_OVERWRITE_IF
    h = c.create("before.txt", disposition, access=access, durable="v2")
    out({"open": h.granted == "v2"})
    info = FileRenameInformation()
    info["replace_if_exists"] = False
    info["file_name"] = "after.txt"
    first = {}

    def rename():
        try:
            c.set_info(h, info)
            first["first"] = "answered"
        except ConnectionLost:
            first["first"] = "lost"
        except Failed as e:
            first["first"] = status_name(e.status)

    if holder is not None:
        # The breaks the CREATE started were acknowledged; the rename's is not.
        holder.auto_ack = False
        seen = len(holder.notices)
        renaming = threading.Thread(target=rename, daemon=True)
        renaming.start()
        end = time.monotonic() + 20
        while len(holder.notices) == seen and time.monotonic() < end:
            time.sleep(0.01)
        out({"waiting": len(holder.notices) > seen})
        filler = client_for(a, timeout=20.0)
        try:
            filler.connect(deadline_s=20)
            f = filler.create("fill.bin", CreateDisposition.FILE_OVERWRITE_IF, durable=None)
            block = b"f" * (60 * 1024)
            for i in range(a.hold_and_fill // len(block) + 1):
                filler.write(f, (i % 64) * len(block), block)
            out({"filled": True})
        except (ConnectionLost, Failed) as e:
            out({"filled": f"lost: {e}"})
        body = holder.notices[-1]
        new_state = int.from_bytes(body[28:32], "little")
        try:
            holder.ack(body, new_state)
        except (ConnectionLost, Failed):
            pass  # the server dies right after the rename (its failpoint)
        # The server dies right after renaming: a connection that went says
        # so before the request's own time-out.
        end = time.monotonic() + 70
        while renaming.is_alive() and c.alive() and time.monotonic() < end:
            time.sleep(0.05)
        renaming.join(0.5)
        first.setdefault("first", "lost")
    else:
        rename()
    out(first)
    sys.stdin.readline()
    c.connect(deadline_s=30)
    try:
        c.reclaim(h)
        out({"reclaim": "ok"})
    except Failed as e:
        # A rename whose answer was lost: the open may have its new name (a
        # DH2C names the file of the handle it takes back).
        try:
            h.name = "after.txt"
            c.reclaim(h)
            out({"reclaim": "ok"})
        except Failed as e2:
            out({"reclaim": f"{status_name(e.status)}, then {status_name(e2.status)} under the new name"})
            return
    try:
        c.set_info(h, info, replay=True)
        out({"resend": "ok"})
    except Failed as e:
        out({"resend": status_name(e.status)})
    except ConnectionLost as e:
        out({"resend": f"lost: {e}"})


if __name__ == "__main__":
    main()
