#!/usr/bin/env python3
"""crash_client.py: one client of scripts/crash.sh.

    crash_client.py --port P --id N --out DIR [--seed S] [--durable auto|v1|v2]
    crash_client.py --verify-disk SHARE_DIR --model DIR/model-N.json

Behaves like a Windows client whose server keeps going away: it holds
durable opens (DH2Q with a lease when the server grants it, else DHnQ with
a batch oplock), and when its connection drops (or a request goes 30 s
unanswered) it connects again, sets up a new session for the same user,
takes every open back (DH2C / DHnC), and resends the request that had no
answer, with SMB2_FLAGS_REPLAY_OPERATION on SMB 3.x.

Workload, in its own folder cN of the share: stamped 4 KiB writes at fixed
offsets of four data files, exclusive creates of new files (which then get
a stamp written and are closed), renames and deletes of those (set-info
on a durable open), byte-range locks and unlocks (exclusive, fail at once,
with LockSequence) on the data files, set-info end-of-file on a size file,
and reads that check an answered write. It runs until DIR/stop exists.

It keeps a log of what the server acknowledged and counts, honestly:

- lost: an answered write (or create, rename, delete, end-of-file, lock)
  whose effect is not there: checked by reads while running, after every
  reconnect (each held lock must still refuse a second lock), at the end
  through the server, and with --verify-disk on the share's disk;
- duplicated: a resent request that fails in a way that shows its first
  sending was carried out (a replayed exclusive create that collides, a
  replayed lock that is not granted, a replayed unlock of a range not
  locked, a replayed rename whose source is gone);
- client errors: any other error a real client would surface (a failed
  reclaim of a durable open, an error answer, no server for 90 s).

A request that had no answer and was resent counts as fine only when the
resend succeeded and its effect is there (once) at the end.

At the end it writes DIR/client-N.json (counters and the first problems)
and DIR/model-N.json (what the disk must hold), and prints one JSON line.
"""
import argparse
import json
import os
import random
import sys
import time
import traceback

from resilient_smb import Client, ConnectionLost, Failed, Handle, stamp, status_name
from smbprotocol.file_info import FileDispositionInformation, FileEndOfFileInformation, FileRenameInformation
from smbprotocol.open import CreateDisposition, FilePipePrinterAccessMask

BLOCK = 4096
BLOCKS = 32  # per data file
DATA_FILES = 4
LOCK_BASE = 1 << 30  # lock slots live far beyond the data
LOCK_SLOTS = 4
RW = FilePipePrinterAccessMask.GENERIC_READ | FilePipePrinterAccessMask.GENERIC_WRITE
RWD = RW | FilePipePrinterAccessMask.DELETE

COLLISION = 0xC0000035
NOT_FOUND = 0xC0000034
PATH_NOT_FOUND = 0xC000003A
LOCK_NOT_GRANTED = 0xC0000055
RANGE_NOT_LOCKED = 0xC000007E
INVALID_PARAMETER = 0xC000000D


class Worker:
    def __init__(self, a):
        self.a = a
        self.cid = a.id
        self.rng = random.Random(a.seed * 1000 + a.id)
        self.c = Client(a.host, a.port, a.share, a.user, a.password, timeout=30.0, log=self.note)
        self.dir = f"c{self.cid}"
        self.durable = a.durable
        self.stats = dict(requests=0, resent=0, reconnects=0, lost=0, duplicated=0, errors=0, lost_final=0,
                          ops=0)
        self.problems = []
        self.toggling = None  # (file index, slot) of the lock toggle in flight
        self.held = {}  # key -> Handle: the durable opens kept across reconnects
        self.blocks = {}  # (file index, block) -> set of acceptable tags
        self.files = {}  # path -> tag it must hold, or None: must be absent
        self.unknown = set()  # paths whose fate an error left open
        self.size = None  # acceptable end-of-file values of the size file
        self.locks = set()  # (file index, slot) held
        self.seq = 0
        self.next_file = 0
        self.closing = None  # the Handle a CLOSE in flight is for
        self.in_flight = None  # what the request in flight is (for error messages)

    # bookkeeping ----------------------------------------------------------
    def note(self, msg):
        print(f"client {self.cid}: {msg}", file=sys.stderr, flush=True)

    def problem(self, kind, msg):
        self.stats[kind] += 1
        self.note(f"{kind}: {msg}")
        if len(self.problems) < 50:
            self.problems.append(f"{kind}: {msg}")

    # one request, resent until answered -------------------------------------
    def op(self, what, fn, dup=()):
        """Runs fn(replay) until it has an answer. Returns "ok", "dup"
        (a resend failed with one of `dup`: the first sending had been
        carried out) or "err"."""
        replay = False
        self.in_flight = what
        while True:
            try:
                fn(replay)
                self.stats["requests"] += 1
                return "ok"
            except Failed as e:
                self.stats["requests"] += 1
                if replay and e.status in dup:
                    self.problem("duplicated", f"{what}: resent, {status_name(e.status)}")
                    return "dup"
                self.problem("errors", f"{what}{' (resent)' if replay else ''}: {status_name(e.status)}")
                return "err"
            except ConnectionLost as e:
                self.note(f"{what}: {e}; reconnecting")
                if not self.recover():
                    return "err"
                if self.closing is not None and self.closing.file_id is None:
                    return "ok"  # the CLOSE had been carried out: the open is gone
                replay = True
                self.stats["resent"] += 1

    def recover(self):
        """Connect again and take every held open back; check that the
        locks are still held. False when no server came back."""
        while True:
            try:
                self.c.connect(deadline_s=90)
            except ConnectionLost as e:
                self.problem("errors", f"reconnect: {e}")
                return False
            self.stats["reconnects"] += 1
            try:
                for key, h in list(self.held.items()):
                    self.reclaim(key, h)
                for fi, slot in sorted(self.locks):
                    # A lock whose toggle is in flight may have been
                    # released already (its answer lost): its resend says.
                    if (fi, slot) != self.toggling:
                        self.check_lock(fi, slot)
                return True
            except ConnectionLost as e:
                self.note(f"lost again while recovering: {e}")

    def reclaim(self, key, h):
        try:
            if not self.c.reclaim(h):
                self.problem("errors", f"reclaim {h.name}: another file id came back")
            return
        except Failed as e:
            first = e
        if h is self.closing and first.status == NOT_FOUND:
            h.file_id = None  # its CLOSE was carried out
            del self.held[key]
            return
        if h.pending_name and first.status in (INVALID_PARAMETER, NOT_FOUND):
            try:  # a rename whose answer was lost: the open has its new name
                h.name, h.pending_name = h.pending_name, None
                self.c.reclaim(h)
                return
            except Failed:
                pass
        self.problem("errors", f"reclaim {h.name} ({h.granted}): {status_name(first.status)}"
                     f" (in flight: {self.in_flight}{', a rename to ' + h.pending_name if h.pending_name else ''})")
        # Go on with a fresh open; what the old one held is gone.
        if key.startswith("data"):
            self.locks = {(fi, s) for fi, s in self.locks if f"data{fi}" != key}
        if h is self.closing:
            h.file_id = None
            del self.held[key]
            return
        fresh = Handle(h.name, self.durable)
        try:
            self.c.create(h.name, CreateDisposition.FILE_OPEN_IF, access=RWD, durable=self.durable, handle=fresh)
            self.held[key] = fresh
        except Failed as e:
            self.problem("errors", f"reopen {h.name}: {status_name(e.status)}")
            del self.held[key]

    def check_lock(self, fi, slot):
        """A held lock must still refuse a second exclusive lock on its
        range, even from its own open."""
        h = self.held.get(f"data{fi}")
        if h is None:
            return
        try:
            self.c.lock(h, LOCK_BASE + slot * 100, 100, seq=h.next_lock_seq(slot + 1))
        except Failed as e:
            if e.status != LOCK_NOT_GRANTED:
                self.problem("errors", f"lock check f{fi} slot {slot}: {status_name(e.status)}")
            return
        self.problem("lost", f"lock f{fi} slot {slot} was gone after a reconnect")
        # The probe took the lock: it stands for the lost one from now on.
        # It is held again now, once.

    # setup --------------------------------------------------------------------
    def setup(self):
        self.c.connect(deadline_s=90)
        d = self.c.create(self.dir, CreateDisposition.FILE_OPEN_IF, access=FilePipePrinterAccessMask.GENERIC_READ,
                          durable=None, options=0x1)  # FILE_DIRECTORY_FILE
        self.c.close(d)
        if self.durable == "auto":
            h = self.c.create(f"{self.dir}\\data0.bin", CreateDisposition.FILE_OVERWRITE_IF, access=RWD,
                              durable="v2")
            self.c.close(h)
            self.durable = "v2" if h.granted == "v2" else "v1"
            self.note(f"durable {self.durable} (v2 probe granted {h.granted})")
        for i in range(DATA_FILES):
            self.held[f"data{i}"] = self.c.create(f"{self.dir}\\data{i}.bin", CreateDisposition.FILE_OVERWRITE_IF,
                                                  access=RWD, durable=self.durable)
        self.held["size"] = self.c.create(f"{self.dir}\\size.bin", CreateDisposition.FILE_OVERWRITE_IF,
                                          access=RWD, durable=self.durable)
        self.size = {0}
        for h in self.held.values():
            if h.granted != self.durable:
                self.problem("errors", f"{h.name}: durable {self.durable} asked, {h.granted} granted")

    # the workload ---------------------------------------------------------------
    def step(self):
        r = self.rng.random()
        self.stats["ops"] += 1
        if r < 0.45:
            self.write_block()
        elif r < 0.55:
            self.exclusive_create()
        elif r < 0.63:
            self.rename()
        elif r < 0.70:
            self.delete()
        elif r < 0.85:
            self.lock_toggle()
        elif r < 0.92:
            self.set_eof()
        else:
            self.read_check()

    def tag(self, what):
        self.seq += 1
        return f"c{self.cid} {what} s{self.seq}"

    def write_block(self):
        fi, blk = self.rng.randrange(DATA_FILES), self.rng.randrange(BLOCKS)
        key = f"data{fi}"
        if key not in self.held:
            return
        t = self.tag(f"f{fi} b{blk}")
        data = stamp(t, BLOCK)
        res = self.op(f"write f{fi} b{blk}", lambda rp: self.c.write(self.held[key], blk * BLOCK, data, replay=rp))
        if res == "ok":
            self.blocks[(fi, blk)] = {t}
        else:  # either may be there now
            self.blocks.setdefault((fi, blk), {None}).add(t)

    def exclusive_create(self):
        self.next_file += 1
        path = f"{self.dir}\\x{self.next_file}"
        h = Handle(path, self.durable)
        res = self.op(f"create {path}",
                      lambda rp: self.c.create(path, CreateDisposition.FILE_CREATE, access=RWD, durable=self.durable,
                                               handle=h, replay=rp),
                      dup=(COLLISION,))
        if res == "err":
            self.unknown.add(path)
            return
        if res == "dup":  # it is there, from the first sending: open it to go on
            try:
                self.c.create(path, CreateDisposition.FILE_OPEN, access=RWD, durable=self.durable, handle=h)
            except (Failed, ConnectionLost) as e:
                self.problem("errors", f"open {path} after a collision: {e}")
                self.unknown.add(path)
                return
        self.held["tmp"] = h
        t = self.tag(path)
        res = self.op(f"write {path}", lambda rp: self.c.write(self.held["tmp"], 0, stamp(t, 512), replay=rp))
        self.files[path] = t if res == "ok" else None
        if res != "ok":
            self.unknown.add(path)
        self.close_tmp()

    def close_tmp(self):
        h = self.held.get("tmp")
        if h is None:
            return
        self.closing = h
        try:
            self.op(f"close {h.name}", lambda rp: self.c.close(self.held["tmp"], replay=rp) if "tmp" in self.held
                    else None)
        finally:
            self.closing = None
            self.held.pop("tmp", None)

    def pick(self, prefix):
        names = sorted(p for p, t in self.files.items()
                       if t is not None and p.split("\\")[-1].startswith(prefix) and p not in self.unknown)
        return self.rng.choice(names) if names else None

    def open_tmp(self, path):
        h = Handle(path, self.durable)
        res = self.op(f"open {path}", lambda rp: self.c.create(path, CreateDisposition.FILE_OPEN, access=RWD,
                                                              durable=self.durable, handle=h, replay=rp))
        if res != "ok":
            self.unknown.add(path)
            return None
        self.held["tmp"] = h
        return h

    def rename(self):
        old = self.pick("x")
        if old is None:
            return
        new = old.replace("\\x", "\\r")
        h = self.open_tmp(old)
        if h is None:
            return
        info = FileRenameInformation()
        info["replace_if_exists"] = False
        info["file_name"] = new
        h.pending_name = new
        res = self.op(f"rename {old}", lambda rp: self.c.set_info(self.held["tmp"], info, replay=rp),
                      dup=(NOT_FOUND, COLLISION))
        h.pending_name = None
        if res in ("ok", "dup"):
            self.files[new] = self.files[old]
            self.files[old] = None
            h.name = new
        else:
            self.unknown.update([old, new])
        self.close_tmp()

    def delete(self):
        path = self.pick("r")
        if path is None:
            return
        h = self.open_tmp(path)
        if h is None:
            return
        info = FileDispositionInformation()
        info["delete_pending"] = True
        res = self.op(f"delete {path}", lambda rp: self.c.set_info(self.held["tmp"], info, replay=rp))
        self.close_tmp()
        if res == "ok":
            self.files[path] = None
        else:
            self.unknown.add(path)

    def lock_toggle(self):
        fi, slot = self.rng.randrange(DATA_FILES), self.rng.randrange(LOCK_SLOTS)
        key = f"data{fi}"
        if key not in self.held:
            return
        h = self.held[key]
        seq = h.next_lock_seq(slot + 1)  # the same pair when resent
        off = LOCK_BASE + slot * 100
        self.toggling = (fi, slot)
        try:
            self._lock_toggle(key, fi, slot, seq, off)
        finally:
            self.toggling = None

    def _lock_toggle(self, key, fi, slot, seq, off):
        if (fi, slot) not in self.locks:
            res = self.op(f"lock f{fi} slot {slot}",
                          lambda rp: self.c.lock(self.held[key], off, 100, seq=seq, replay=rp),
                          dup=(LOCK_NOT_GRANTED,))
            if res in ("ok", "dup"):
                self.locks.add((fi, slot))
        else:
            res = self.op(f"unlock f{fi} slot {slot}",
                          lambda rp: self.c.lock(self.held[key], off, 100, unlock=True, seq=seq, replay=rp),
                          dup=(RANGE_NOT_LOCKED,))
            if res in ("ok", "dup"):
                self.locks.discard((fi, slot))

    def set_eof(self):
        if "size" not in self.held:
            return
        v = self.rng.randrange(1, 1 << 20)
        info = FileEndOfFileInformation()
        info["end_of_file"] = v
        res = self.op(f"set-info eof {v}", lambda rp: self.c.set_info(self.held["size"], info, replay=rp))
        if res == "ok":
            self.size = {v}
        else:
            self.size.add(v)

    def read_check(self):
        acked = [(k, v) for k, v in self.blocks.items() if len(v) == 1]
        if not acked:
            return
        (fi, blk), tags = self.rng.choice(sorted(acked))
        key = f"data{fi}"
        if key not in self.held:
            return
        got = []
        res = self.op(f"read f{fi} b{blk}", lambda rp: got.append(self.c.read(self.held[key], blk * BLOCK, BLOCK)))
        if res == "ok" and not block_matches(got[-1], tags):
            self.problem("lost", f"f{fi} b{blk}: read {got[-1][:40]!r}, expected {sorted(tags, key=str)}")

    # the end ----------------------------------------------------------------------
    def finish(self):
        """Close what is held, then check every acknowledged effect through
        the server on a fresh connection."""
        for key in [k for k in self.held if k.startswith("data")]:
            for fi, slot in sorted(self.locks):
                if key == f"data{fi}":
                    h = self.held[key]
                    seq = h.next_lock_seq(slot + 1)
                    self.op(f"final unlock f{fi} slot {slot}",
                            lambda rp, h=h, slot=slot, seq=seq: self.c.lock(h, LOCK_BASE + slot * 100, 100,
                                                                            unlock=True, seq=seq, replay=rp),
                            dup=(RANGE_NOT_LOCKED,))
        for key in list(self.held):
            h = self.held[key]
            self.closing = h
            self.op(f"final close {h.name}", lambda rp, h=h: self.c.close(h, replay=rp) if h.file_id else None)
            self.closing = None
        self.held = {}
        self.c.connect(deadline_s=90)
        model = self.model()
        for path, want in model["files"].items():
            if want is None:
                if self.exists(path):
                    self.problem("lost_final", f"{path} should be gone (deleted or renamed), is there")
                continue
            data = self.read_all(path)
            if data is None:
                self.problem("lost_final", f"{path} is missing")
            elif want["tags"] and not any(data[:want["len"]] == stamp(t, want["len"]) for t in want["tags"]):
                self.problem("lost_final", f"{path}: holds {data[:40]!r}, expected one of {want['tags']}")
        self.check_blocks(model)
        self.c.drop()
        return model

    def exists(self, path):
        try:
            h = self.c.create(path, CreateDisposition.FILE_OPEN, access=FilePipePrinterAccessMask.GENERIC_READ,
                              durable=None)
        except Failed as e:
            if e.status in (NOT_FOUND, PATH_NOT_FOUND):
                return False
            raise
        self.c.close(h)
        return True

    def read_all(self, path):
        try:
            h = self.c.create(path, CreateDisposition.FILE_OPEN, access=FilePipePrinterAccessMask.GENERIC_READ,
                              durable=None)
        except Failed as e:
            if e.status in (NOT_FOUND, PATH_NOT_FOUND):
                return None
            raise
        data = b""
        while len(data) < h.open.end_of_file:
            chunk = self.c.read(h, len(data), min(65536, h.open.end_of_file - len(data)))
            if not chunk:
                break
            data += chunk
        self.c.close(h)
        return data

    def model(self):
        """What the share must hold: each checked region as (offset, len,
        acceptable tags); files that must be absent as None."""
        files = {}
        for path, t in self.files.items():
            if path in self.unknown:
                continue
            files[path] = None if t is None else {"len": 512, "tags": [t]}
        # Data files: one entry per acknowledged block, as an offset in a
        # whole-file check done by blocks.
        blocks = {}
        for (fi, blk), tags in self.blocks.items():
            if len(tags) == 1:
                blocks.setdefault(f"{self.dir}\\data{fi}.bin", {})[str(blk)] = sorted(tags)
        return {"files": files, "blocks": blocks, "size": {f"{self.dir}\\size.bin": sorted(self.size or ())}}

    def check_blocks(self, model):
        for path, want in model["blocks"].items():
            data = self.read_all(path) or b""
            for blk, tags in want.items():
                got = data[int(blk) * BLOCK:(int(blk) + 1) * BLOCK]
                if not block_matches(got, set(tags)):
                    self.problem("lost_final", f"{path} b{blk}: holds {got[:40]!r}, expected {tags}")
        for path, sizes in model["size"].items():
            h = self.c.create(path, CreateDisposition.FILE_OPEN, access=FilePipePrinterAccessMask.GENERIC_READ,
                              durable=None)
            if h.open.end_of_file not in sizes:
                self.problem("lost_final", f"{path}: size {h.open.end_of_file}, expected one of {sizes}")
            self.c.close(h)


def block_matches(data, tags):
    return any((t is None and data in (b"", b"\0" * len(data))) or (t is not None and data == stamp(t, BLOCK))
               for t in tags)


def verify_disk(share, model_path):
    """The same checks as the end of a run, on the share's disk."""
    model = json.load(open(model_path))
    lost, problems = 0, []

    def local(p):
        return os.path.join(share, *p.split("\\"))

    for path, want in model["files"].items():
        f = local(path)
        if want is None:
            if os.path.exists(f):
                lost += 1
                problems.append(f"{path} should be gone")
        elif not os.path.exists(f):
            lost += 1
            problems.append(f"{path} is missing")
        else:
            data = open(f, "rb").read()
            if not any(data[:want["len"]] == stamp(t, want["len"]) for t in want["tags"]):
                lost += 1
                problems.append(f"{path}: holds {data[:40]!r}")
    for path, want in model["blocks"].items():
        f = local(path)
        data = open(f, "rb").read() if os.path.exists(f) else b""
        for blk, tags in want.items():
            if not block_matches(data[int(blk) * BLOCK:(int(blk) + 1) * BLOCK], set(tags)):
                lost += 1
                problems.append(f"{path} b{blk}: holds {data[int(blk) * BLOCK:][:40]!r}")
    for path, sizes in model["size"].items():
        f = local(path)
        size = os.path.getsize(f) if os.path.exists(f) else None
        if size not in sizes:
            lost += 1
            problems.append(f"{path}: size {size}, expected {sizes}")
    print(json.dumps({"lost_disk": lost, "problems": problems[:20]}), flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int)
    ap.add_argument("--share", default="crash")
    ap.add_argument("--user", default="duet")
    ap.add_argument("--password", default="duetpass")
    ap.add_argument("--id", type=int, default=0)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--durable", choices=["auto", "v1", "v2"], default="auto")
    ap.add_argument("--out", help="folder for client-N.json, model-N.json and the stop file")
    ap.add_argument("--max-seconds", type=float, default=3600)
    ap.add_argument("--verify-disk", metavar="SHARE_DIR")
    ap.add_argument("--model")
    a = ap.parse_args()
    if a.verify_disk:
        verify_disk(a.verify_disk, a.model)
        return

    w = Worker(a)
    stop = os.path.join(a.out, "stop")
    end = time.monotonic() + a.max_seconds
    try:
        # The server may die while the client sets up, as at any other
        # moment: set up again on the next server (what the first attempt
        # opened is retained there until its timeout, and harmless).
        for attempt in range(100):
            try:
                w.setup()
                break
            except ConnectionLost as e:
                w.note(f"setup: {e}; setting up again")
                w.held.clear()
                time.sleep(0.05)
        else:
            raise ConnectionLost("setup: no server to set up on")
        while not os.path.exists(stop) and time.monotonic() < end:
            try:
                w.step()
            except Exception as e:  # noqa: BLE001 - count it and go on
                w.problem("errors", f"unexpected: {type(e).__name__}: {e}\n{traceback.format_exc()}")
                w.held.pop("tmp", None)
        model = w.finish()
    except Exception as e:  # noqa: BLE001 - report, do not hide
        w.problem("errors", f"client died: {type(e).__name__}: {e}\n{traceback.format_exc()}")
        model = w.model()
    stats = dict(w.stats, id=w.cid, durable=w.durable, problems=w.problems)
    json.dump(model, open(os.path.join(a.out, f"model-{w.cid}.json"), "w"))
    json.dump(stats, open(os.path.join(a.out, f"client-{w.cid}.json"), "w"))
    print(json.dumps({k: v for k, v in stats.items() if k != "problems"}), flush=True)


if __name__ == "__main__":
    main()
