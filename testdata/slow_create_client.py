#!/usr/bin/env python3
"""slow_create_client.py --port P --share S [--user U --password W] [--host H] [--no-fill]

The client half of server/tests/restart.rs
`a_slow_exclusive_create_killed_after_making_its_file_is_undone`. One
connection fills the journal with small WRITEs (their data is in its
records) while another sends an exclusive CREATE under a CreateGuid (DH2Q
with an RWH lease) of `slow.txt`, which the server (armed with the
`create-made` failpoint) holds after making the file. Prints
{"sent": true} when the CREATE is on its way; the test kills the server
then, starts it again and writes a line to stdin; the client reconnects
with the same ClientGuid and resends the CREATE with the replay flag, as a
Windows client does. Prints {"resend": "ok"} or {"resend": STATUS_NAME}.

server/tests/failover.rs uses it against a pair node's address (`--host`)
without the filling connection (`--no-fill`): the node dies after making the
file (failpoint `created`), and the resend goes to its partner.
"""
import json
import sys
import threading
import time

from resilient_smb import client_for, ConnectionLost, Failed, Handle, server_args, status_name
from smbprotocol.open import CreateDisposition


def out(d):
    print(json.dumps(d), flush=True)


def fill(a, stop):
    """Small WRITEs until the server goes away (or `stop`)."""
    c = client_for(a, timeout=10.0)
    try:
        c.connect(deadline_s=20)
        h = c.create("filler.bin", CreateDisposition.FILE_OPEN_IF, durable=None)
        i = 0
        while not stop.is_set():
            c.write(h, (i % 256) * 1024, b"f" * 1024)
            i += 1
    except (ConnectionLost, Failed):
        pass


def main():
    ap = server_args(share=None)
    ap.add_argument("--no-fill", action="store_true")
    a = ap.parse_args()
    stop = threading.Event()
    if not a.no_fill:
        filler = threading.Thread(target=fill, args=(a, stop), daemon=True)
        filler.start()
    c = client_for(a, timeout=60.0)
    c.connect(deadline_s=20)
    time.sleep(0.3)
    h = Handle("slow.txt", "v2")
    out({"sent": True})
    try:
        c.create("slow.txt", CreateDisposition.FILE_CREATE, durable="v2", handle=h)
        out({"first": "answered"})
    except ConnectionLost:
        out({"first": "lost"})
    except Failed as e:
        out({"first": status_name(e.status)})
    stop.set()
    sys.stdin.readline()
    c.connect(deadline_s=30)
    try:
        c.create("slow.txt", CreateDisposition.FILE_CREATE, durable="v2", handle=h, replay=True)
        out({"resend": "ok"})
    except Failed as e:
        out({"resend": status_name(e.status)})
    except ConnectionLost as e:
        out({"resend": f"lost: {e}"})


if __name__ == "__main__":
    main()
