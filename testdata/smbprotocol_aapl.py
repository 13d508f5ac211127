"""The AAPL create context (Apple's SMB2 extension, what macOS clients send)
through Python's smbprotocol, an independent client:
`smbprotocol_aapl.py PORT SHARE USER PASSWORD TIME_MACHINE MODEL`, run by
server/tests/pyclient.rs. smbprotocol knows no AAPL, so the context is built
here from the layout macOS and Samba's vfs_fruit use: request
`{ command: u32 | reserved: u32 | request_bitmap: u64 | client_caps: u64 }`,
reply `{ command | reserved | reply_bitmap | [server_caps: u64] |
[volume_caps: u64] | [pad: u32 | model_len: u32 | model UTF-16LE] }`.

  1. a server query as macOS sends it (server caps, volume caps, model) is
     answered with UNIX_BASED, READ_DIR_ATTR, OSX_COPYFILE and NFS_ACE,
     FULL_SYNC in the volume caps when TIME_MACHINE is 1 (none
     otherwise: the share is case-insensitive), and MODEL;
  2. a second query on the same connection is answered too (as vfs_fruit
     does), with only the part it asks for;
  3. a query of the wrong length, and the resolve-id command, are
     STATUS_INVALID_PARAMETER (as vfs_fruit answers);
  4. a CREATE without the context gets no AAPL reply;
  5. data written and FLUSHed reads back;
  6. READ_DIR_ATTR: on the connection that asked for it, a listing at
     FileIdBothDirectoryInformation carries the maximal access in EaSize,
     the resource fork size and compressed Finder info in a 24-byte short
     name (a "never" date without AFP_AfpInfo), the UNIX mode in Reserved2; FileBothDirectoryInformation
     keeps its short names; a connection that did not ask for it is not
     told READ_DIR_ATTR and gets plain listings.
  7. NFS ACEs: a queried DACL ends with S-1-5-88-3-MODE, -1-UID and -2-GID
     (ACCESS_DENIED, no rights), once each; a DACL set with nothing but an
     S-1-5-88-3 ACE changes the mode (0600 here) and stores no DACL; a
     connection without AAPL sees no such ACEs.
  8. POSIX rename: a directory with a file open below (delete on close)
     is renamed through the connection that negotiated AAPL (a connection
     without it is refused, STATUS_ACCESS_DENIED, as Windows); the open
     follows: closing it deletes the file under the new name.

Each step that holds prints `ok STEP`."""
import struct
import sys
import uuid

from smbprotocol.connection import Connection
from smbprotocol.create_contexts import SMB2CreateContextRequest
from smbprotocol.exceptions import SMBResponseException
from smbprotocol.file_info import FileInformationClass
from smbprotocol.open import (CreateDisposition, CreateOptions, FilePipePrinterAccessMask, ImpersonationLevel,
                              Open, ShareAccess, SMB2QueryInfoRequest, SMB2QueryInfoResponse, SMB2SetInfoRequest)
from smbprotocol.query_info import InfoType
from smbprotocol.session import Session
from smbprotocol.tree import TreeConnect

port, share, user, password = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
time_machine, model = sys.argv[5] == "1", sys.argv[6]

SERVER_QUERY, RESOLVE_ID = 1, 2
SERVER_CAPS, VOLUME_CAPS, MODEL_INFO = 1, 2, 4
READ_DIR_ATTR, OSX_COPYFILE, UNIX_BASED, NFS_ACE = 1, 2, 4, 8
CASE_SENSITIVE, FULL_SYNC = 2, 4
INVALID_PARAMETER = 0xC000000D
ACCESS = FilePipePrinterAccessMask.FILE_READ_DATA | FilePipePrinterAccessMask.FILE_WRITE_DATA | \
    FilePipePrinterAccessMask.FILE_READ_ATTRIBUTES


def aapl(data):
    c = SMB2CreateContextRequest()
    c["buffer_name"] = b"AAPL"
    c["buffer_data"] = data
    return c


def query(bitmap, client_caps=READ_DIR_ATTR | UNIX_BASED | NFS_ACE, command=SERVER_QUERY):
    return aapl(struct.pack("<IIQQ", command, 0, bitmap, client_caps))


def open_with(tree, name, contexts):
    f = Open(tree, name)
    replies = f.create(ImpersonationLevel.Impersonation, ACCESS, 0,
                       ShareAccess.FILE_SHARE_READ | ShareAccess.FILE_SHARE_WRITE | ShareAccess.FILE_SHARE_DELETE,
                       CreateDisposition.FILE_OPEN_IF, CreateOptions.FILE_NON_DIRECTORY_FILE,
                       create_contexts=contexts)
    return f, [r for r in replies or [] if isinstance(r, bytes)]


def parse_reply(b):
    command, _, bitmap = struct.unpack_from("<IIQ", b, 0)
    at, out = 16, {"command": command, "bitmap": bitmap}
    if bitmap & SERVER_CAPS:
        out["server_caps"] = struct.unpack_from("<Q", b, at)[0]
        at += 8
    if bitmap & VOLUME_CAPS:
        out["volume_caps"] = struct.unpack_from("<Q", b, at)[0]
        at += 8
    if bitmap & MODEL_INFO:
        _, n = struct.unpack_from("<II", b, at)
        at += 8
        out["model"] = b[at:at + n].decode("utf-16-le")
        at += n
    assert at == len(b), f"AAPL reply of {len(b)} bytes, parsed {at}: {b.hex()}"
    return out


conn = Connection(uuid.uuid4(), "127.0.0.1", port)
conn.connect()
session = Session(conn, user, password)
session.connect()
tree = TreeConnect(session, rf"\\127.0.0.1\{share}")
tree.connect()

f, replies = open_with(tree, "aapl_file", [query(SERVER_CAPS | VOLUME_CAPS | MODEL_INFO)])
assert len(replies) == 1, f"one AAPL reply expected, got {replies}"
r = parse_reply(replies[0])
assert r["command"] == SERVER_QUERY and r["bitmap"] == SERVER_CAPS | VOLUME_CAPS | MODEL_INFO, r
assert r["server_caps"] == UNIX_BASED | READ_DIR_ATTR | OSX_COPYFILE | NFS_ACE, r
assert r["volume_caps"] == (FULL_SYNC if time_machine else 0), r
assert r["model"] == model, r
f.close()
print("ok first query")

f, replies = open_with(tree, "aapl_file", [query(VOLUME_CAPS)])
assert len(replies) == 1 and len(replies[0]) == 24, replies
r = parse_reply(replies[0])
assert r == {"command": SERVER_QUERY, "bitmap": VOLUME_CAPS, "volume_caps": FULL_SYNC if time_machine else 0}, r
f.close()
print("ok second query")

for what, ctx in [("23 bytes", aapl(b"\x01" + b"\0" * 22)), ("25 bytes", aapl(struct.pack("<IIQQ", 1, 0, 7, 0) + b"\0")),
                  ("resolve id", query(SERVER_CAPS, command=RESOLVE_ID))]:
    try:
        open_with(tree, "aapl_file", [ctx])
    except SMBResponseException as e:
        assert e.status == INVALID_PARAMETER, f"{what}: status {e.status:#x}"
        continue
    raise AssertionError(f"{what}: accepted")
print("ok bad queries refused")

f, replies = open_with(tree, "aapl_file", None)
assert replies == [], replies
print("ok no query, no reply")

f.write(b"backup data", 0)
f.flush()
assert f.read(0, 11) == b"backup data"
f.close()
print("ok flush")

FILE_ALL_ACCESS = 0x001F01FF
ID_BOTH, BOTH = FileInformationClass.FILE_ID_BOTH_DIRECTORY_INFORMATION, \
    FileInformationClass.FILE_BOTH_DIRECTORY_INFORMATION


def write_stream(tree, name, data):
    f, _ = open_with(tree, name, None)
    f.write(data, 0)
    f.close()


def listing(tree, pattern, klass):
    d = Open(tree, "")
    d.create(ImpersonationLevel.Impersonation, FilePipePrinterAccessMask.FILE_READ_DATA |
             FilePipePrinterAccessMask.FILE_READ_ATTRIBUTES, 0,
             ShareAccess.FILE_SHARE_READ | ShareAccess.FILE_SHARE_WRITE | ShareAccess.FILE_SHARE_DELETE,
             CreateDisposition.FILE_OPEN, CreateOptions.FILE_DIRECTORY_FILE)
    entries = d.query_directory(pattern, klass)
    d.close()
    assert len(entries) == 1, entries
    return entries[0]


afp_info = bytearray(60)
afp_info[0:8] = b"AFP\0\0\0\x01\0"
afp_info[16:24] = b"SMB,OLE!"
afp_info[24:26] = b"\x01\x00"  # Finder flags
write_stream(tree, "aapl_mac:AFP_AfpInfo", bytes(afp_info))
write_stream(tree, "aapl_mac:AFP_Resource", b"foo")
e = listing(tree, "aapl_mac", ID_BOTH)
short = e["short_name"].get_value() + e["short_name_padding"].get_value()
assert e["short_name_length"].get_value() == 24, e
assert e["ea_size"].get_value() == FILE_ALL_ACCESS, e
assert struct.unpack_from("<Q", short, 0)[0] == 3, short.hex()
assert short[8:16] == b"SMB,OLE!" and short[16:18] == b"\x01\x00", short.hex()
assert struct.unpack_from(">I", short, 20)[0] != 0x80000000, short.hex()
assert e["reserved2"].get_value() & 0o170777 == 0o100644, oct(e["reserved2"].get_value())
e = listing(tree, "aapl_file", ID_BOTH)
short = e["short_name"].get_value() + e["short_name_padding"].get_value()
assert short == b"\0" * 20 + b"\x80\0\0\0", short.hex()
e = listing(tree, "aapl_mac", BOTH)
assert e["short_name"].get_value().decode("utf-16-le") == "AAPL_MAC", e

conn2 = Connection(uuid.uuid4(), "127.0.0.1", port)
conn2.connect()
session2 = Session(conn2, user, password)
session2.connect()
tree2 = TreeConnect(session2, rf"\\127.0.0.1\{share}")
tree2.connect()
f, replies = open_with(tree2, "aapl_file", [query(SERVER_CAPS, client_caps=UNIX_BASED)])
assert parse_reply(replies[0])["server_caps"] == UNIX_BASED | OSX_COPYFILE | NFS_ACE, replies
f.close()
e = listing(tree2, "aapl_mac", ID_BOTH)
assert e["short_name"].get_value().decode("utf-16-le") == "AAPL_MAC", e
assert e["ea_size"].get_value() != FILE_ALL_ACCESS, e
tree2.disconnect()
session2.disconnect()
conn2.disconnect()
print("ok readdir_attr")

DACL, READ_CONTROL, WRITE_DAC = 4, 0x20000, 0x40000


def dacl_sids(sd):
    """(type, mask, SID string) of each ACE of a self-relative descriptor's DACL."""
    at = struct.unpack_from("<I", sd, 16)[0]
    count = struct.unpack_from("<H", sd, at + 4)[0]
    at, out = at + 8, []
    for _ in range(count):
        kind, _, size, mask = struct.unpack_from("<BBHI", sd, at)
        n = sd[at + 9]
        auth = int.from_bytes(sd[at + 10:at + 16], "big")
        subs = struct.unpack_from(f"<{n}I", sd, at + 16)
        out.append((kind, mask, "S-1-%d-%s" % (auth, "-".join(map(str, subs)))))
        at += size
    return out


def sd_call(tree, f, req):
    conn, session = tree.session.connection, tree.session
    req["file_id"] = f.file_id
    r = conn.receive(conn.send(req, session.session_id, tree.tree_connect_id))
    return r


def get_dacl(tree, f):
    q = SMB2QueryInfoRequest()
    q["info_type"] = InfoType.SMB2_0_INFO_SECURITY
    q["output_buffer_length"] = 4096
    q["additional_information"] = DACL
    resp = SMB2QueryInfoResponse()
    resp.unpack(sd_call(tree, f, q)["data"].get_value())
    return dacl_sids(resp["buffer"].get_value())


def open_sd(tree, name):
    f = Open(tree, name)
    f.create(ImpersonationLevel.Impersonation, ACCESS | READ_CONTROL | WRITE_DAC, 0,
             ShareAccess.FILE_SHARE_READ | ShareAccess.FILE_SHARE_WRITE | ShareAccess.FILE_SHARE_DELETE,
             CreateDisposition.FILE_OPEN_IF, CreateOptions.FILE_NON_DIRECTORY_FILE)
    return f


f = open_sd(tree, "aapl_nfs")
nfs = [a for a in get_dacl(tree, f) if a[2].startswith("S-1-5-88-")]
assert [a[2].split("-")[4] for a in nfs] == ["3", "1", "2"], nfs
assert all(kind == 1 and mask == 0 for kind, mask, _ in nfs), nfs
mode = int(nfs[0][2].split("-")[5])
assert mode & 0o170000 == 0o100000, oct(mode)
only_mode = b"".join([struct.pack("<BBHI", 1, 0, 28, 0), struct.pack("<BB", 1, 3), (5).to_bytes(6, "big"),
                      struct.pack("<III", 88, 3, 0o600)])
dacl = struct.pack("<BBHHH", 2, 0, 8 + len(only_mode), 1, 0) + only_mode
s = SMB2SetInfoRequest()
s["info_type"] = InfoType.SMB2_0_INFO_SECURITY
s["file_info_class"] = 0
s["additional_information"] = DACL
s["buffer"] = struct.pack("<BBHIIII", 1, 0, 0x8004, 0, 0, 0, 20) + dacl
sd_call(tree, f, s)
nfs = [a for a in get_dacl(tree, f) if a[2].startswith("S-1-5-88-3-")]
assert len(nfs) == 1 and int(nfs[0][2].split("-")[5]) == 0o100600, nfs
f.close()
conn3 = Connection(uuid.uuid4(), "127.0.0.1", port)
conn3.connect()
session3 = Session(conn3, user, password)
session3.connect()
tree3 = TreeConnect(session3, rf"\\127.0.0.1\{share}")
tree3.connect()
f = open_sd(tree3, "aapl_nfs")
plain = get_dacl(tree3, f)
assert plain and not [a for a in plain if a[2].startswith("S-1-5-88-")], plain
f.close()
tree3.disconnect()
session3.disconnect()
conn3.disconnect()
print("ok nfs aces")

ACCESS_DENIED = 0xC0000022
DELETE = 0x10000


def open_dir(tree, name, disposition):
    d = Open(tree, name)
    d.create(ImpersonationLevel.Impersonation, FilePipePrinterAccessMask.FILE_READ_DATA | DELETE |
             FilePipePrinterAccessMask.FILE_READ_ATTRIBUTES, 0,
             ShareAccess.FILE_SHARE_READ | ShareAccess.FILE_SHARE_WRITE | ShareAccess.FILE_SHARE_DELETE,
             disposition, CreateOptions.FILE_DIRECTORY_FILE)
    return d


def rename(tree, f, new):
    name = new.encode("utf-16-le")
    s = SMB2SetInfoRequest()
    s["info_type"] = InfoType.SMB2_0_INFO_FILE
    s["file_info_class"] = 10
    s["buffer"] = struct.pack("<BxxxxxxxQI", 0, 0, len(name)) + name
    try:
        sd_call(tree, f, s)
    except SMBResponseException as e:
        return e.status
    return 0


run = uuid.uuid4().hex[:8]  # the script runs twice on one share
d = open_dir(tree, f"aapl_dir{run}", CreateDisposition.FILE_CREATE)
inner = Open(tree, f"aapl_dir{run}\\inner")
inner.create(ImpersonationLevel.Impersonation, ACCESS | DELETE, 0,
             ShareAccess.FILE_SHARE_READ | ShareAccess.FILE_SHARE_WRITE | ShareAccess.FILE_SHARE_DELETE,
             CreateDisposition.FILE_CREATE,
             CreateOptions.FILE_NON_DIRECTORY_FILE | CreateOptions.FILE_DELETE_ON_CLOSE)
inner.write(b"x", 0)
conn4 = Connection(uuid.uuid4(), "127.0.0.1", port)
conn4.connect()
session4 = Session(conn4, user, password)
session4.connect()
tree4 = TreeConnect(session4, rf"\\127.0.0.1\{share}")
tree4.connect()
d4 = open_dir(tree4, f"aapl_dir{run}", CreateDisposition.FILE_OPEN)
assert rename(tree4, d4, f"aapl_dir{run}w") == ACCESS_DENIED, "renamed without AAPL"
d4.close()
tree4.disconnect()
session4.disconnect()
conn4.disconnect()
assert rename(tree, d, f"aapl_dir{run}2") == 0, "POSIX rename refused"
d.close()
inner.close()
d = open_dir(tree, f"aapl_dir{run}2", CreateDisposition.FILE_OPEN)
names = [e["file_name"].get_value().decode("utf-16-le") for e in d.query_directory("*", ID_BOTH)]
d.close()
assert sorted(names) == [".", ".."], names
print("ok posix rename")

tree.disconnect()
session.disconnect()
conn.disconnect()
