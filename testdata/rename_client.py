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
"""
import argparse
import json
import sys

from resilient_smb import Client, ConnectionLost, Failed, Handle, status_name
from smbprotocol.file_info import FileRenameInformation
from smbprotocol.open import CreateDisposition, FilePipePrinterAccessMask


def out(d):
    print(json.dumps(d), flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", required=True)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--share", required=True)
    ap.add_argument("--user", default="duet")
    ap.add_argument("--password", default="duetpass")
    a = ap.parse_args()
    c = Client(a.host, a.port, a.share, a.user, a.password, timeout=60.0)
    c.connect(deadline_s=20)
    access = (FilePipePrinterAccessMask.GENERIC_READ | FilePipePrinterAccessMask.GENERIC_WRITE
              | FilePipePrinterAccessMask.DELETE)
    h = c.create("before.txt", CreateDisposition.FILE_OVERWRITE_IF, access=access, durable="v2")
    out({"open": h.granted == "v2"})
    info = FileRenameInformation()
    info["replace_if_exists"] = False
    info["file_name"] = "after.txt"
    try:
        c.set_info(h, info)
        out({"first": "answered"})
    except ConnectionLost:
        out({"first": "lost"})
    except Failed as e:
        out({"first": status_name(e.status)})
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
