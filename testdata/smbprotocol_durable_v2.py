"""Durable handles version 2 through Python's smbprotocol, an independent
client: `smbprotocol_durable_v2.py MODE PORT SHARE USER PASSWORD`, run by
server/tests/durable_v2.rs. smbprotocol has no DH2Q, DH2C or
AppInstanceId structures, so the contexts are built here from [MS-SMB2]
2.2.13.2.11, 2.2.13.2.12, 2.2.13.2.13 and 2.2.14.2.12.

MODE `durable` (a plain share):
  1. a CREATE with a batch oplock, DH2Q (timeout 0, CreateGuid G) and an
     AppInstanceId A gets a version 2 durable handle of the default 60 s;
     data is written through it;
  2. the TCP connection is dropped (no LOGOFF, no CLOSE);
  3. on a new connection, DH2C with another CreateGuid is refused with
     STATUS_OBJECT_NAME_NOT_FOUND, and DH2C with G takes the handle back
     (same FileId, the data is there, and a WRITE is not refused as stale
     though the first connection's ChannelSequence was ahead);
  4. a client with another ClientGuid opens the file with no sharing, DH2Q
     and the same AppInstanceId: the old open is closed (no oplock break,
     no sharing violation), and the old handle is STATUS_FILE_CLOSED;
  5. with AppInstanceVersion (2.2.13.2.15, SMB 3.1.1), a lower version
     cannot take that open over (STATUS_FILE_FORCED_CLOSED), a higher one
     can.
MODE `persistent` (a share served with --ca): DH2Q with
SMB2_DHANDLE_FLAG_PERSISTENT and no oplock gets a persistent handle on a
share whose tree connect says SMB2_SHARE_CAP_CONTINUOUS_AVAILABILITY; after
a TCP drop, DH2C without the persistent flag is refused and DH2C with it
takes the handle back; after another drop, a DH2C with a persistent id that
names no open finds the handle by its CreateGuid (with the persistent flag
and the right CreateGuid only).

MODE `hold` (a share served with --ca): opens a persistent and a version 2
durable handle and keeps them until stdin closes, for `duet status`.

Each step that holds prints `ok STEP`."""
import contextlib
import struct
import sys
import uuid

import smbprotocol.connection

from smbprotocol.connection import Connection
from smbprotocol.create_contexts import SMB2CreateContextRequest, SMB2CreateDurableHandleResponseV2
from smbprotocol.exceptions import SMBResponseException
from smbprotocol.open import (CreateDisposition, CreateOptions, FilePipePrinterAccessMask, ImpersonationLevel,
                              Open, RequestedOplockLevel, ShareAccess)
from smbprotocol.session import Session
from smbprotocol.tree import TreeConnect

DH2Q = b"DH2Q"
DH2C = b"DH2C"
APP_INSTANCE_ID = bytes([0x45, 0xBC, 0xA6, 0x6A, 0xEF, 0xA7, 0xF7, 0x4A,
                         0x90, 0x08, 0xFA, 0x46, 0x2E, 0x14, 0x4D, 0x74])
APP_INSTANCE_VERSION = bytes([0xB9, 0x82, 0xD0, 0xB7, 0x3B, 0x56, 0x07, 0x4F,
                              0xA0, 0x7B, 0x52, 0x4A, 0x81, 0x16, 0xA0, 0x10])
PERSISTENT = 0x2
OBJECT_NAME_NOT_FOUND = 0xC0000034
FILE_CLOSED = 0xC0000128
FILE_FORCED_CLOSED = 0xC00000B6

mode, port, share, user, password = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
ACCESS = FilePipePrinterAccessMask.FILE_READ_DATA | FilePipePrinterAccessMask.FILE_WRITE_DATA | \
    FilePipePrinterAccessMask.FILE_READ_ATTRIBUTES


def context(name, data):
    c = SMB2CreateContextRequest()
    c["buffer_name"] = name
    c["buffer_data"] = data
    return c


def dh2q(guid, timeout=0, flags=0):
    # Timeout, Flags, Reserved (8), CreateGuid.
    return context(DH2Q, struct.pack("<II8s16s", timeout, flags, b"\0" * 8, guid))


def dh2c(file_id, guid, flags=0):
    # FileId (16), CreateGuid, Flags.
    return context(DH2C, struct.pack("<16s16sI", file_id, guid, flags))


def app_instance(app_id):
    # StructureSize 20, Reserved, AppInstanceId.
    return context(APP_INSTANCE_ID, struct.pack("<HH16s", 20, 0, app_id))


def connect(client_guid):
    conn = Connection(client_guid, "127.0.0.1", port)
    conn.connect()
    session = Session(conn, user, password)
    session.connect()
    tree = TreeConnect(session, rf"\\127.0.0.1\{share}")
    tree.connect()
    return conn, tree


def durable_v2_response(contexts):
    """(timeout, flags) of the DH2Q response context, or None."""
    for c in contexts or []:
        if isinstance(c, SMB2CreateDurableHandleResponseV2):
            return c["timeout"].get_value(), c["flags"].get_value()
    return None


def expect_status(status, what, f):
    try:
        f()
    except SMBResponseException as e:
        assert e.status == status, f"{what}: status {e.status:#x}, expected {status:#x}"
        return
    raise AssertionError(f"{what}: succeeded, expected {status:#x}")


@contextlib.contextmanager
def channel_sequence(n):
    """Requests sent meanwhile carry ChannelSequence `n` (smbprotocol
    always sends 0)."""
    plain = smbprotocol.connection.SMB2HeaderRequest

    class Header(plain):
        def __init__(self):
            super().__init__()
            self["channel_sequence"] = n

    smbprotocol.connection.SMB2HeaderRequest = Header
    try:
        yield
    finally:
        smbprotocol.connection.SMB2HeaderRequest = plain


def app_version(high, low):
    # StructureSize 24, Reserved, Padding, AppInstanceVersionHigh and Low.
    return context(APP_INSTANCE_VERSION, struct.pack("<HHIQQ", 24, 0, 0, high, low))


def drop(conn):
    """Drops the TCP connection as a network failure would: no LOGOFF."""
    conn.transport.close()


def durable():
    client = uuid.uuid4()
    guid = uuid.uuid4().bytes
    app_id = uuid.uuid4().bytes
    conn1, tree1 = connect(client)
    f1 = Open(tree1, "dh2.txt")
    got = f1.create(ImpersonationLevel.Impersonation, ACCESS, 0, ShareAccess.FILE_SHARE_READ,
                    CreateDisposition.FILE_OVERWRITE_IF, CreateOptions.FILE_NON_DIRECTORY_FILE,
                    create_contexts=[dh2q(guid), app_instance(app_id)],
                    oplock_level=RequestedOplockLevel.SMB2_OPLOCK_LEVEL_BATCH)
    assert f1.oplock_level == RequestedOplockLevel.SMB2_OPLOCK_LEVEL_BATCH, f1.oplock_level
    assert durable_v2_response(got) == (60000, 0), got
    # Written with ChannelSequence 5 (Open.ChannelSequence becomes 5): the
    # next session's counter starts again at 0, and its WRITE must not look
    # stale after the reconnect ([MS-SMB2] 3.3.5.2.10).
    with channel_sequence(5):
        f1.write(b"kept across a drop", 0)
    file_id = f1.file_id
    print("ok dh2q granted")

    drop(conn1)
    conn2, tree2 = connect(client)
    f2 = Open(tree2, "dh2.txt")

    def reconnect(g):
        return f2.create(ImpersonationLevel.Impersonation, ACCESS, 0, ShareAccess.FILE_SHARE_READ,
                         CreateDisposition.FILE_OPEN, 0, create_contexts=[dh2c(file_id, g)],
                         oplock_level=RequestedOplockLevel.SMB2_OPLOCK_LEVEL_BATCH)

    expect_status(OBJECT_NAME_NOT_FOUND, "DH2C with another CreateGuid", lambda: reconnect(uuid.uuid4().bytes))
    print("ok wrong create guid refused")
    got = reconnect(guid)
    assert f2.file_id == file_id, (f2.file_id, file_id)
    assert durable_v2_response(got) is None, got
    assert f2.read(0, 100) == b"kept across a drop"
    f2.write(b"KEPT", 0)
    print("ok dh2c reconnected")

    # Another client (another ClientGuid) with the same AppInstanceId: a
    # failover node taking the application over.
    conn3, tree3 = connect(uuid.uuid4())
    f3 = Open(tree3, "dh2.txt")
    got = f3.create(ImpersonationLevel.Impersonation, ACCESS, 0, 0, CreateDisposition.FILE_OPEN,
                    CreateOptions.FILE_NON_DIRECTORY_FILE,
                    create_contexts=[dh2q(uuid.uuid4().bytes), app_instance(app_id), app_version(2, 0)],
                    oplock_level=RequestedOplockLevel.SMB2_OPLOCK_LEVEL_BATCH)
    assert durable_v2_response(got) == (60000, 0), got
    assert f3.read(0, 100) == b"KEPT across a drop"
    expect_status(FILE_CLOSED, "the old open after the takeover", lambda: f2.read(0, 10))
    print("ok app instance takeover")

    # AppInstanceVersion (SMB 3.1.1): an older version cannot take the
    # open over (STATUS_FILE_FORCED_CLOSED), a newer one can.
    conn4, tree4 = connect(uuid.uuid4())
    f4 = Open(tree4, "dh2.txt")

    def take_over(high):
        return f4.create(ImpersonationLevel.Impersonation, ACCESS, 0, 0, CreateDisposition.FILE_OPEN,
                         CreateOptions.FILE_NON_DIRECTORY_FILE,
                         create_contexts=[dh2q(uuid.uuid4().bytes), app_instance(app_id), app_version(high, 0)])

    expect_status(FILE_FORCED_CLOSED, "an older AppInstanceVersion", lambda: take_over(1))
    assert f3.read(0, 4) == b"KEPT"
    take_over(3)
    expect_status(FILE_CLOSED, "the open taken over by a newer version", lambda: f3.read(0, 4))
    print("ok app instance version")
    f4.close()
    conn4.disconnect()
    conn3.disconnect()
    conn2.disconnect()


def persistent():
    client = uuid.uuid4()
    guid = uuid.uuid4().bytes
    conn1, tree1 = connect(client)
    assert tree1.is_ca_share, "no SMB2_SHARE_CAP_CONTINUOUS_AVAILABILITY"
    f1 = Open(tree1, "ph.txt")
    got = f1.create(ImpersonationLevel.Impersonation, ACCESS, 0, ShareAccess.FILE_SHARE_READ,
                    CreateDisposition.FILE_OVERWRITE_IF, CreateOptions.FILE_NON_DIRECTORY_FILE,
                    create_contexts=[dh2q(guid, timeout=5000, flags=PERSISTENT)])
    assert durable_v2_response(got) == (5000, PERSISTENT), got
    f1.write(b"persistent", 0)
    file_id = f1.file_id
    print("ok persistent granted")

    drop(conn1)
    conn2, tree2 = connect(client)
    f2 = Open(tree2, "ph.txt")

    def reconnect(flags):
        return f2.create(ImpersonationLevel.Impersonation, ACCESS, 0, ShareAccess.FILE_SHARE_READ,
                         CreateDisposition.FILE_OPEN, 0, create_contexts=[dh2c(file_id, guid, flags)])

    expect_status(OBJECT_NAME_NOT_FOUND, "DH2C of a persistent handle without the flag", lambda: reconnect(0))
    reconnect(PERSISTENT)
    assert f2.file_id == file_id
    assert f2.read(0, 100) == b"persistent"
    print("ok persistent reconnected")

    # [MS-SMB2] 3.3.5.9.12: a DH2C whose persistent id names no open finds
    # a persistent open by its CreateGuid, with the persistent flag only.
    drop(conn2)
    conn3, tree3 = connect(client)
    f3 = Open(tree3, "ph.txt")
    unknown = bytes(b ^ 0x5A for b in file_id[:8]) + file_id[8:]

    def reconnect_as(fid, g, flags):
        return f3.create(ImpersonationLevel.Impersonation, ACCESS, 0, ShareAccess.FILE_SHARE_READ,
                         CreateDisposition.FILE_OPEN, 0, create_contexts=[dh2c(fid, g, flags)])

    expect_status(OBJECT_NAME_NOT_FOUND, "DH2C of an unknown id without the persistent flag",
                  lambda: reconnect_as(unknown, guid, 0))
    expect_status(OBJECT_NAME_NOT_FOUND, "DH2C of an unknown id and another CreateGuid",
                  lambda: reconnect_as(unknown, uuid.uuid4().bytes, PERSISTENT))
    reconnect_as(unknown, guid, PERSISTENT)
    assert f3.file_id == file_id, (f3.file_id, file_id)
    assert f3.read(0, 100) == b"persistent"
    print("ok persistent found by its CreateGuid")
    f3.close()
    conn3.disconnect()


def hold():
    """A persistent handle without caching and a version 2 durable handle
    with a batch oplock, held until stdin closes (then the process dies
    and its connection with it)."""
    conn, tree = connect(uuid.uuid4())
    p = Open(tree, "held-persistent.txt")
    p.create(ImpersonationLevel.Impersonation, ACCESS, 0, ShareAccess.FILE_SHARE_READ,
             CreateDisposition.FILE_OVERWRITE_IF, CreateOptions.FILE_NON_DIRECTORY_FILE,
             create_contexts=[dh2q(uuid.uuid4().bytes, flags=PERSISTENT)])
    d = Open(tree, "held-v2.txt")
    d.create(ImpersonationLevel.Impersonation, ACCESS, 0, ShareAccess.FILE_SHARE_READ,
             CreateDisposition.FILE_OVERWRITE_IF, CreateOptions.FILE_NON_DIRECTORY_FILE,
             create_contexts=[dh2q(uuid.uuid4().bytes)],
             oplock_level=RequestedOplockLevel.SMB2_OPLOCK_LEVEL_BATCH)
    print("ok held", flush=True)
    sys.stdin.read()


{"durable": durable, "persistent": persistent, "hold": hold}[mode]()
