"""resilient_smb.py: a client that behaves like Windows after a lost server.

Shared by testdata/restart_client.py (server/tests/restart.rs) and
testdata/crash_client.py (scripts/crash.sh). Built on smbprotocol's
low-level API (connection / session / tree / open), with what it lacks
added here:

- SMB2_FLAGS_REPLAY_OPERATION on a resent request ([MS-SMB2] 3.2.4.1.1:
  a request resent after a lost connection, on 3.x dialects), by swapping
  the header class smbprotocol.connection builds its requests with;
- oplock and lease break notifications ([MS-SMB2] 2.2.23, 2.2.23.2),
  which smbprotocol's receive thread cannot take (it looks message id
  0xFFFFFFFFFFFFFFFF up among its own requests and dies): they are
  acknowledged ([MS-SMB2] 2.2.24, 2.2.24.2) from a side thread;
- a time limit on every request, after which the connection counts as
  lost (as a Windows client drops a connection whose request timed out);
- durable opens (DHnQ with a batch oplock, or DH2Q with a lease,
  [MS-SMB2] 2.2.13.2.3, 2.2.13.2.11) and their reclaim on a new
  connection and session (DHnC, DH2C, [MS-SMB2] 3.2.4.4, 3.3.5.9.7,
  3.3.5.9.12).

Nothing here is specific to Duet.
"""
import argparse
import struct
import sys
import threading
import time
import uuid

import smbprotocol.connection as _conn_mod
from smbprotocol.connection import Connection, Dialects
from smbprotocol.create_contexts import (SMB2CreateDurableHandleReconnect, SMB2CreateDurableHandleReconnectV2,
                                         SMB2CreateDurableHandleRequest, SMB2CreateDurableHandleRequestV2,
                                         SMB2CreateDurableHandleResponse, SMB2CreateDurableHandleResponseV2,
                                         SMB2CreateRequestLeaseV2, SMB2CreateResponseLeaseV2)
from smbprotocol.exceptions import SMBResponseException
from smbprotocol.header import Commands, NtStatus, Smb2Flags, SMB2HeaderRequest
from smbprotocol.open import (CreateDisposition, FilePipePrinterAccessMask, ImpersonationLevel, Open,
                              RequestedOplockLevel, ShareAccess, SMB2SetInfoRequest, SMB2SetInfoResponse)
from smbprotocol.session import Session
from smbprotocol.tree import TreeConnect

BREAK_MID = 0xFFFFFFFFFFFFFFFF
SHARE_ALL = ShareAccess.FILE_SHARE_READ | ShareAccess.FILE_SHARE_WRITE | ShareAccess.FILE_SHARE_DELETE
RWH = 0x07  # lease state: read, write and handle caching
BATCH = RequestedOplockLevel.SMB2_OPLOCK_LEVEL_BATCH
LEASE = RequestedOplockLevel.SMB2_OPLOCK_LEVEL_LEASE

# --- the replay flag ---------------------------------------------------------
_flags = threading.local()


class _Header(SMB2HeaderRequest):
    """smbprotocol's request header, with the replay flag set while a
    resend is being built on this thread."""

    def __init__(self):
        super().__init__()
        if getattr(_flags, "replay", False):
            self["flags"].set_flag(Smb2Flags.SMB2_FLAGS_REPLAY_OPERATIONS)


_conn_mod.SMB2HeaderRequest = _Header


class ConnectionLost(Exception):
    """The connection died (or a request timed out) before an answer came."""


class Failed(Exception):
    """The server answered with an error status."""

    def __init__(self, status, what=""):
        super().__init__(f"{what}: {status_name(status)}")
        self.status = status


_NAMES = {
    0xC0000034: "STATUS_OBJECT_NAME_NOT_FOUND",
    0xC0000035: "STATUS_OBJECT_NAME_COLLISION",
    0xC0000054: "STATUS_FILE_LOCK_CONFLICT",
    0xC0000055: "STATUS_LOCK_NOT_GRANTED",
    0xC000007E: "STATUS_RANGE_NOT_LOCKED",
    0xC0000467: "STATUS_FILE_NOT_AVAILABLE",
    0xC000000D: "STATUS_INVALID_PARAMETER",
    0xC0000043: "STATUS_SHARING_VIOLATION",
    0xC0000022: "STATUS_ACCESS_DENIED",
    0xC0000008: "STATUS_INVALID_HANDLE",
    0xC0000128: "STATUS_FILE_CLOSED",
    0xC0000056: "STATUS_DELETE_PENDING",
    0xC00000E3: "STATUS_INVALID_OPLOCK_PROTOCOL",
}


def status_name(status):
    if status in _NAMES:
        return _NAMES[status]
    for k, v in vars(NtStatus).items():
        if k.startswith("STATUS_") and v == status:
            return k
    return f"0x{status:08x}"


# --- break notifications -----------------------------------------------------
class _RawMessage:
    """A request smbprotocol's Connection.send takes: COMMAND, pack, len."""

    def __init__(self, command, data):
        self.COMMAND = command
        self._data = data

    def pack(self):
        return self._data

    def __len__(self):
        return len(self._data)


class _Field:
    def __init__(self, v):
        self.v = v

    def get_value(self):
        return self.v


class _BreakSink:
    """Stands in for a request in smbprotocol's table of outstanding
    requests when a break notification (message id all ones) arrives;
    its answer is handed to `on_break`."""

    def __init__(self, on_break):
        self.session_id = 0
        self.response_event_lock = threading.Lock()
        self.response_event = threading.Event()
        self.message = {"reserved": _Field(0)}
        self.async_id = None
        self._on_break = on_break

    @property
    def response(self):
        return None

    @response.setter
    def response(self, header):
        self._on_break(header)


class _Outstanding(dict):
    def __init__(self, on_break):
        super().__init__()
        self._on_break = on_break

    def __missing__(self, key):
        if key == BREAK_MID:
            return _BreakSink(self._on_break)
        raise KeyError(key)


# --- the client ----------------------------------------------------------------
class Client:
    """One SMB client identity (ClientGuid, user) that keeps a connection,
    session and tree connect to one share, and reconnects them."""

    def __init__(self, host, port, share, user, password, timeout=30.0, log=None):
        self.host, self.port, self.share = host, port, share
        self.user, self.password = user, password
        self.guid = uuid.uuid4()
        self.timeout = timeout
        self.conn = self.session = self.tree = None
        self.breaks = []  # (kind, file_id or lease key, new level) seen
        self.notices = []  # the break notifications' bodies, in order
        self.auto_ack = True  # acknowledge breaks as they come (else: `ack`)
        self.server_guids = []  # every ServerGuid a NEGOTIATE answered with, in order
        self.log = log or (lambda *a: None)

    # connection -------------------------------------------------------------
    def connect(self, deadline_s=90.0):
        """Connect, log on and connect the tree, retrying until the server
        answers (it may be restarting) or `deadline_s` passes."""
        self.drop()
        end = time.monotonic() + deadline_s
        last = None
        while time.monotonic() < end:
            conn = None
            try:
                conn = Connection(self.guid, self.host, self.port, require_signing=False)
                conn.outstanding_requests = _Outstanding(lambda h, c=conn: self._on_break(c, h))
                conn.connect(timeout=5)
                session = Session(conn, self.user, self.password, require_encryption=False)
                session.connect()
                tree = TreeConnect(session, rf"\\{self.host}\{self.share}")
                tree.connect()
                self.conn, self.session, self.tree = conn, session, tree
                guid = str(conn.server_guid)
                if guid not in self.server_guids:
                    self.server_guids.append(guid)
                return
            except Exception as e:  # noqa: BLE001 - the server may be down or starting
                last = e
                if conn is not None:
                    try:
                        conn.disconnect(False)
                    except Exception:  # noqa: BLE001
                        pass
                time.sleep(0.1)
        raise ConnectionLost(f"could not reconnect within {deadline_s}s: {last}")

    def drop(self):
        if self.conn is not None:
            try:
                self.conn.disconnect(False)
            except Exception:  # noqa: BLE001
                pass
        self.conn = self.session = self.tree = None

    @property
    def dialect(self):
        return self.conn.dialect if self.conn else 0

    @property
    def can_replay(self):
        return self.dialect >= Dialects.SMB_3_0_0

    def alive(self):
        c = self.conn
        return c is not None and c._t_exc is None and c.transport.connected and c._t_worker.is_alive()

    # one request --------------------------------------------------------------
    def call(self, msg, replay=False, what="request"):
        """Send one request and wait for its final answer. Returns the
        response header; raises Failed for an error status and
        ConnectionLost when no answer came."""
        if self.conn is None:
            raise ConnectionLost("not connected")
        conn = self.conn
        _flags.replay = bool(replay and self.can_replay)
        try:
            req = conn.send(msg, sid=self.session.session_id, tid=self.tree.tree_connect_id)
        except Exception as e:  # noqa: BLE001 - a dead socket
            raise ConnectionLost(f"send: {e}") from e
        finally:
            _flags.replay = False
        end = time.monotonic() + self.timeout
        while True:
            left = end - time.monotonic()
            if left <= 0 or not req.response_event.wait(left):
                self.drop()
                raise ConnectionLost(f"{what}: no answer within {self.timeout}s")
            with req.response_event_lock:
                resp = req.response
                if resp is None:
                    raise ConnectionLost(f"{what}: connection closed")
                status = resp["status"].get_value()
                if status == NtStatus.STATUS_PENDING:
                    req.response_event.clear()
                    continue
                conn.outstanding_requests.pop(req.message["message_id"].get_value(), None)
                if status != NtStatus.STATUS_SUCCESS:
                    raise Failed(status, what)
                return resp

    # break notifications -----------------------------------------------------
    def _on_break(self, conn, header):
        body = header["data"].get_value()
        self.notices.append(body)
        if not self.auto_ack:
            return
        threading.Thread(target=self._ack_break, args=(conn, body), daemon=True).start()

    def ack(self, body, keep):
        """Acknowledges the break notification `body` (one of `notices`)
        keeping `keep` (a lease state, or an oplock level), and waits for
        the answer ([MS-SMB2] 2.2.24.1, 2.2.24.2). Returns what the answer
        says is held now; raises Failed or ConnectionLost."""
        size = struct.unpack_from("<H", body, 0)[0]
        if size == 24:
            file_id = body[8:24]
            msg = struct.pack("<HBBI", 24, keep, 0, 0) + file_id
            resp = self.call(_RawMessage(Commands.SMB2_OPLOCK_BREAK, msg), what="oplock break ack")
            return resp["data"].get_value()[2]
        key = body[8:24]
        msg = struct.pack("<HHI", 36, 0, 0) + key + struct.pack("<IQ", keep, 0)
        resp = self.call(_RawMessage(Commands.SMB2_OPLOCK_BREAK, msg), what="lease break ack")
        return struct.unpack_from("<I", resp["data"].get_value(), 24)[0]

    def _ack_break(self, conn, body):
        try:
            size = struct.unpack_from("<H", body, 0)[0]
            sessions = list(conn.session_table.values())
            if not sessions:
                return
            if size == 24:  # oplock break notification, 2.2.23.1
                level = body[2]
                file_id = body[8:24]
                self.breaks.append(("oplock", file_id.hex(), level))
                sid, tid = sessions[0].session_id, 0
                for s in sessions:
                    o = s.open_table.get(file_id)
                    if o is not None:
                        sid, tid = s.session_id, o.tree_connect.tree_connect_id
                ack = struct.pack("<HBBI", 24, level, 0, 0) + file_id
                conn.send(_RawMessage(Commands.SMB2_OPLOCK_BREAK, ack), sid=sid, tid=tid)
            elif size == 44:  # lease break notification, 2.2.23.2
                flags = struct.unpack_from("<I", body, 4)[0]
                key = body[8:24]
                new_state = struct.unpack_from("<I", body, 28)[0]
                self.breaks.append(("lease", key.hex(), new_state))
                if flags & 0x01:
                    ack = struct.pack("<HHI", 36, 0, 0) + key + struct.pack("<IQ", new_state, 0)
                    conn.send(_RawMessage(Commands.SMB2_OPLOCK_BREAK, ack), sid=sessions[0].session_id, tid=0)
        except Exception as e:  # noqa: BLE001 - a dead connection; the owner reconnects
            self.log(f"break ack failed: {e}")

    # opens --------------------------------------------------------------------
    def create(self, name, disposition, access=None, durable="v1", handle=None, replay=False,
               share=SHARE_ALL, options=0):
        """CREATE `name`; with `durable` v1 (DHnQ + batch oplock) or v2
        (DH2Q + RWH lease) or None. `handle` (a Handle) is filled in and
        returned: a resend of the same create passes the same handle, so a
        v2 create keeps its CreateGuid and lease key."""
        if access is None:
            access = FilePipePrinterAccessMask.GENERIC_READ | FilePipePrinterAccessMask.GENERIC_WRITE
        h = handle or Handle(name, durable)
        f = Open(self.tree, name)
        ctx, level = h.request_contexts()
        msg, _ = f.create(ImpersonationLevel.Impersonation, access, 0, share, disposition, options,
                          create_contexts=ctx, oplock_level=level, send=False)
        resp = self.call(msg, replay=replay, what=f"create {name}")
        self._bind(f, h, resp)
        return h

    def reclaim(self, h):
        """Take `h` back on this connection with DHnC or DH2C; the server
        must give the same file id. Raises Failed or ConnectionLost."""
        f = Open(self.tree, h.name)
        ctx, level = h.reconnect_contexts()
        msg, _ = f.create(ImpersonationLevel.Impersonation,
                          FilePipePrinterAccessMask.GENERIC_READ | FilePipePrinterAccessMask.GENERIC_WRITE, 0,
                          SHARE_ALL, CreateDisposition.FILE_OPEN, 0, create_contexts=ctx, oplock_level=level,
                          send=False)
        old = h.file_id
        resp = self.call(msg, what=f"reclaim {h.name}")
        self._bind(f, h, resp, reclaim=True)
        return h.file_id == old

    def _bind(self, f, h, resp, reclaim=False):
        from smbprotocol.open import SMB2CreateResponse
        cr = SMB2CreateResponse()
        cr.unpack(resp["data"].get_value())
        f._connected = True
        f.file_id = cr["file_id"].get_value()
        f.oplock_level = cr["oplock_level"].get_value()
        f.end_of_file = cr["end_of_file"].get_value()
        self.session.open_table[f.file_id] = f
        h.open = f
        h.file_id = f.file_id
        h.oplock = f.oplock_level
        granted = None
        if cr["create_contexts_length"].get_value() > 0:
            for c in cr["buffer"].get_value():
                d = c.get_context_data()
                if isinstance(d, SMB2CreateDurableHandleResponseV2):
                    granted = "v2"
                elif isinstance(d, SMB2CreateDurableHandleResponse):
                    granted = "v1"
                elif isinstance(d, SMB2CreateResponseLeaseV2) or hasattr(d, "fields") and "lease_state" in d.fields:
                    h.lease_state = d["lease_state"].get_value()
                    h.lease_flags = d["flags"].get_value()
                    if "epoch" in d.fields:
                        e = d["epoch"].get_value()
                        h.lease_epoch = int.from_bytes(e, "little") if isinstance(e, bytes) else e
        if not reclaim:
            h.granted = granted

    def close(self, h, replay=False):
        from smbprotocol.open import SMB2CloseRequest
        msg = SMB2CloseRequest()
        msg["file_id"] = h.file_id
        self.call(msg, replay=replay, what=f"close {h.name}")
        self.session.open_table.pop(h.file_id, None)

    def write(self, h, offset, data, replay=False):
        msg, _ = h.open.write(data, offset, send=False)
        msg["file_id"] = h.file_id
        self.call(msg, replay=replay, what=f"write {h.name}@{offset}")

    def read(self, h, offset, length):
        from smbprotocol.open import SMB2ReadResponse
        msg, _ = h.open.read(offset, length, send=False)
        msg["file_id"] = h.file_id
        try:
            resp = self.call(msg, what=f"read {h.name}@{offset}")
        except Failed as e:
            if e.status == NtStatus.STATUS_END_OF_FILE:
                return b""
            raise
        r = SMB2ReadResponse()
        r.unpack(resp["data"].get_value())
        return r["buffer"].get_value()

    def lock(self, h, offset, length, unlock=False, seq=(0, 0), replay=False):
        """One byte-range lock (exclusive, fail at once) or unlock, with
        LockSequenceNumber/Index `seq`."""
        from smbprotocol.open import LockFlags, SMB2LockElement
        e = SMB2LockElement()
        e["offset"] = offset
        e["length"] = length
        e["flags"] = (LockFlags.SMB2_LOCKFLAG_UNLOCK if unlock
                      else LockFlags.SMB2_LOCKFLAG_EXCLUSIVE_LOCK | LockFlags.SMB2_LOCKFLAG_FAIL_IMMEDIATELY)
        msg, _ = h.open.lock([e], send=False)
        # [MS-SMB2] 2.2.26: LockSequenceNumber is the low 4 bits,
        # LockSequenceIndex the 28 above them (as Windows and Samba lay them
        # out). smbprotocol puts the number in the top 4 bits, which a
        # server reads as an index out of 1..64: no replay detection at all.
        msg["lock_sequence"] = (seq[1] << 4) | seq[0]
        msg["file_id"] = h.file_id
        self.call(msg, replay=replay, what=f"{'unlock' if unlock else 'lock'} {h.name}@{offset}")

    def set_info(self, h, info, replay=False):
        msg = SMB2SetInfoRequest()
        msg["info_type"] = info.INFO_TYPE
        msg["file_info_class"] = info.INFO_CLASS
        msg["file_id"] = h.file_id
        msg["buffer"] = info
        self.call(msg, replay=replay, what=f"set-info {h.name}")


class Handle:
    """What a client keeps of one durable open to take it back."""

    def __init__(self, name, durable):
        self.name = name
        self.durable = durable  # "v1", "v2" or None: what was asked for
        self.granted = None  # what the server granted
        self.file_id = None
        self.open = None
        self.oplock = None
        self.lease_state = None
        self.lease_flags = None  # the last answer's lease flags and epoch
        self.lease_epoch = None
        self.create_guid = uuid.uuid4()
        self.lease_key = uuid.uuid4().bytes
        self.pending_name = None  # its name after a rename whose answer was lost
        self.lock_seq = {}  # LockSequenceIndex -> the last LockSequenceNumber sent with it

    def request_contexts(self):
        if self.durable == "v1":
            return [SMB2CreateDurableHandleRequest()], BATCH
        if self.durable == "v2":
            d = SMB2CreateDurableHandleRequestV2()
            d["timeout"] = 0
            d["flags"] = 0
            d["create_guid"] = self.create_guid
            return [d, self._lease()], LEASE
        return None, RequestedOplockLevel.SMB2_OPLOCK_LEVEL_NONE

    def reconnect_contexts(self):
        if self.durable == "v2":
            d = SMB2CreateDurableHandleReconnectV2()
            d["file_id"] = self.file_id
            d["create_guid"] = self.create_guid
            d["flags"] = 0
            return [d, self._lease()], LEASE
        d = SMB2CreateDurableHandleReconnect()
        d["data"] = self.file_id
        return [d], BATCH

    def _lease(self):
        lease = SMB2CreateRequestLeaseV2()
        lease["lease_key"] = self.lease_key
        lease["lease_state"] = RWH
        lease["lease_flags"] = 0
        lease["parent_lease_key"] = b"\x00" * 16
        lease["epoch"] = b"\x00\x00"
        return lease

    def next_lock_seq(self, index):
        """(LockSequenceNumber, LockSequenceIndex) for a new lock request on
        bucket `index` (1..64), [MS-SMB2] 3.2.4.19: a number other than the
        bucket's last, which the server takes for a replay ([MS-SMB2]
        3.3.5.14); a resend passes the same pair again."""
        n = (self.lock_seq.get(index, 0) + 1) % 16
        self.lock_seq[index] = n
        return (n, index)


def stamp(tag, size):
    """`size` bytes that say `tag` over and over: a block that names the
    write that put it there."""
    line = (tag + "\n").encode()
    return (line * (size // len(line) + 1))[:size]


def server_args(share="share", host="127.0.0.1"):
    """An argument parser with the options every client of this module
    takes: where the server is and who logs on (the tests' defaults).
    A client adds its own options and calls parse_args()."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", default=host, required=host is None)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--share", default=share, required=share is None)
    ap.add_argument("--user", default="duet")
    ap.add_argument("--password", default="duetpass")
    return ap


def stderr_log(name):
    """A log function for Client(log=...) that writes "name: message"
    lines to standard error."""
    return lambda m: print(f"{name}: {m}", file=sys.stderr, flush=True)


def client_for(a, **kw):
    """A Client of the server that server_args()'s parsed `a` names."""
    return Client(a.host, a.port, a.share, a.user, a.password, **kw)
