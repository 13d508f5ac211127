"""Extended attributes through Python's smbprotocol:
`smbprotocol_ea.py PORT SHARE USER PASSWORD SHARE_DIR` runs an EA round trip
against duet (set, query all, query by name, case-insensitive replace, delete
by an empty value, EAs on create, EaSize in FileEaInformation and in a
directory listing, enumeration flags, Duet's own xattr names refused and never
listed, bad names refused) and checks the `user.` xattrs in SHARE_DIR. Prints
`ok <step>` per step and exits 1 at the first failure. Run by
server/tests/pyclient.rs."""
import os
import struct
import sys
import uuid

from smbprotocol.connection import Connection
from smbprotocol.create_contexts import CreateContextName, SMB2CreateContextRequest
from smbprotocol.exceptions import SMBResponseException
from smbprotocol.open import (CreateDisposition, CreateOptions, FilePipePrinterAccessMask as A, ImpersonationLevel,
                              Open, ShareAccess, SMB2QueryInfoRequest, SMB2QueryInfoResponse, SMB2SetInfoRequest)
from smbprotocol.query_info import InfoType

port, share, user, password, share_dir = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5]

SUCCESS = 0
NO_MORE_EAS = 0x80000012
INVALID_EA_NAME = 0x80000013
ACCESS_DENIED = 0xC0000022
BUFFER_TOO_SMALL = 0xC0000023
OBJECT_NAME_NOT_FOUND = 0xC0000034
NONEXISTENT_EA_ENTRY = 0xC0000051
NO_EAS_ON_FILE = 0xC0000052
FULL_EA = 15
EA_INFO = 7
FULL_DIR = 2
RESTART, SINGLE, INDEX = 1, 2, 4
FS_ATTRIBUTE = 5
SUPPORTS_EAS = 0x00800000

from smbprotocol.session import Session  # noqa: E402
from smbprotocol.tree import TreeConnect  # noqa: E402

conn = Connection(uuid.uuid4(), "127.0.0.1", port)
conn.connect()
session = Session(conn, user, password)
session.connect()
tree = TreeConnect(session, rf"\\127.0.0.1\{share}")
tree.connect()


def fail(msg):
    print("FAIL " + msg)
    sys.exit(1)


def check(cond, msg):
    if not cond:
        fail(msg)


def full_ea_list(eas):
    """FILE_FULL_EA_INFORMATION ([MS-FSCC] 2.4.15) for [(name, value)]."""
    out = b""
    for i, (name, value) in enumerate(eas):
        entry = struct.pack("<IBBH", 0, 0, len(name), len(value)) + name + b"\0" + value
        if i + 1 < len(eas):
            entry += b"\0" * (-len(entry) % 4)
            entry = struct.pack("<I", len(entry)) + entry[4:]
        out += entry
    return out


def get_ea_list(names):
    """FILE_GET_EA_INFORMATION ([MS-FSCC] 2.4.15.1) for [name]."""
    out = b""
    for i, name in enumerate(names):
        entry = struct.pack("<IB", 0, len(name)) + name + b"\0"
        if i + 1 < len(names):
            entry += b"\0" * (-len(entry) % 4)
            entry = struct.pack("<I", len(entry)) + entry[4:]
        out += entry
    return out


def parse_eas(buf):
    eas, off = [], 0
    while True:
        nxt, _flags, nlen, vlen = struct.unpack_from("<IBBH", buf, off)
        name = buf[off + 8:off + 8 + nlen]
        value = buf[off + 9 + nlen:off + 9 + nlen + vlen]
        eas.append((name, value))
        if nxt == 0:
            return eas
        off += nxt


def open_file(name, access, disposition=CreateDisposition.FILE_OPEN_IF, eas=None, directory=False):
    f = Open(tree, name)
    contexts = None
    if eas is not None:
        c = SMB2CreateContextRequest()
        c["buffer_name"] = CreateContextName.SMB2_CREATE_EA_BUFFER
        c["buffer_data"] = full_ea_list(eas)
        contexts = [c]
    options = CreateOptions.FILE_DIRECTORY_FILE if directory else CreateOptions.FILE_NON_DIRECTORY_FILE
    share_all = ShareAccess.FILE_SHARE_READ | ShareAccess.FILE_SHARE_WRITE | ShareAccess.FILE_SHARE_DELETE
    try:
        f.create(ImpersonationLevel.Impersonation, access, 0, share_all, disposition, options, create_contexts=contexts)
    except SMBResponseException as e:
        return e.status
    return f


def query(f, cls, out_len=4096, info_type=InfoType.SMB2_0_INFO_FILE, buf=b"", flags=0, index=0):
    q = SMB2QueryInfoRequest()
    q["info_type"] = info_type
    q["file_info_class"] = cls
    q["output_buffer_length"] = out_len
    q["additional_information"] = index
    q["flags"] = flags
    q["file_id"] = f.file_id
    q["buffer"] = buf
    req = conn.send(q, session.session_id, tree.tree_connect_id)
    try:
        r = conn.receive(req)
    except SMBResponseException as e:
        return e.status, b""
    resp = SMB2QueryInfoResponse()
    resp.unpack(r["data"].get_value())
    return r["status"].get_value(), resp["buffer"].get_value()


def set_eas(f, eas):
    s = SMB2SetInfoRequest()
    s["info_type"] = InfoType.SMB2_0_INFO_FILE
    s["file_info_class"] = FULL_EA
    s["file_id"] = f.file_id
    s["buffer"] = full_ea_list(eas)
    req = conn.send(s, session.session_id, tree.tree_connect_id)
    try:
        conn.receive(req)
    except SMBResponseException as e:
        return e.status
    return SUCCESS


def all_eas(f):
    status, buf = query(f, FULL_EA, flags=RESTART)
    check(status == SUCCESS, f"query all: {status:#x}")
    return parse_eas(buf)


def ea_size(f):
    status, buf = query(f, EA_INFO)
    check(status == SUCCESS and len(buf) == 4, f"FileEaInformation: {status:#x}")
    return struct.unpack("<I", buf)[0]


def chained_size(eas):
    """What smbd reports as EaSize over SMB2: the FILE_FULL_EA_INFORMATION
    list's length, 4-byte padding between entries."""
    return len(full_ea_list(eas))


rw = A.FILE_READ_DATA | A.FILE_WRITE_DATA | A.FILE_READ_ATTRIBUTES | A.FILE_READ_EA | A.FILE_WRITE_EA | A.DELETE

# The share claims EAs (its file system has user xattrs).
root = open_file("", A.FILE_READ_ATTRIBUTES | A.FILE_READ_DATA, CreateDisposition.FILE_OPEN, directory=True)
status, buf = query(root, FS_ATTRIBUTE, info_type=InfoType.SMB2_0_INFO_FILESYSTEM)
check(status == SUCCESS and struct.unpack_from("<I", buf)[0] & SUPPORTS_EAS, f"fs attributes {status:#x} {buf[:4]!r}")
print("ok fs-attributes")

# EAs on create (ExtA).
first = [(b"EAONE", b"VALUE1"), (b"SecondEA", b"ValueTwo")]
f = open_file("ea.txt", rw, CreateDisposition.FILE_OVERWRITE_IF, eas=first)
check(not isinstance(f, int), f"create with ExtA: {f}")
check(sorted(all_eas(f)) == sorted(first), f"EAs after create: {all_eas(f)}")
check(ea_size(f) == chained_size(first) == 45, f"EaSize {ea_size(f)}")
print("ok create-ea")

# Stored as user.NAME, where getfattr sees them.
local = os.listxattr(os.path.join(share_dir, "ea.txt"))
check("user.EAONE" in local and "user.SecondEA" in local, f"local xattrs {local}")
check(os.getxattr(os.path.join(share_dir, "ea.txt"), "user.SecondEA") == b"ValueTwo", "local value")
print("ok local-xattrs")

# SET_INFO of two more, query all, query one by name. (The order of a
# listing is the file system's: ext4 does not keep the order of setting.)
check(set_eas(f, [(b"third", b"3"), (b"Fourth", b"four")]) == SUCCESS, "set two")
got = all_eas(f)
check(sorted(got) == sorted(first + [(b"third", b"3"), (b"Fourth", b"four")]), f"all four {got}")
status, buf = query(f, FULL_EA, buf=get_ea_list([b"SECONDEA"]))
check(status == SUCCESS and parse_eas(buf) == [(b"SecondEA", b"ValueTwo")], f"by name {status:#x} {buf!r}")
status, buf = query(f, FULL_EA, buf=get_ea_list([b"fourth", b"missing"]))
check(status == SUCCESS and parse_eas(buf) == [(b"Fourth", b"four"), (b"missing", b"")], f"by names {buf!r}")
print("ok set-and-query")

# Case-insensitive replace keeps one EA (and its stored spelling).
check(set_eas(f, [(b"eaone", b"replaced")]) == SUCCESS, "replace")
got = all_eas(f)
check(len(got) == 4 and (b"EAONE", b"replaced") in got, f"after replace {got}")
print("ok replace")

# An empty value deletes.
check(set_eas(f, [(b"THIRD", b"")]) == SUCCESS, "delete")
got = all_eas(f)
check(sorted(n for n, _ in got) == [b"EAONE", b"Fourth", b"SecondEA"], f"after delete {got}")
check(ea_size(f) == chained_size(got), f"EaSize after delete {ea_size(f)} vs {chained_size(got)}")
print("ok delete")

# Enumeration: one at a time, by index, and its end.
status, buf = query(f, FULL_EA, flags=RESTART | SINGLE)
check(status == SUCCESS and parse_eas(buf) == [got[0]], f"single 1 {status:#x}")
status, buf = query(f, FULL_EA, flags=SINGLE)
check(status == SUCCESS and parse_eas(buf) == [got[1]], f"single 2 {status:#x}")
status, buf = query(f, FULL_EA)
check(status == SUCCESS and parse_eas(buf) == [got[2]], f"rest {status:#x}")
status, _ = query(f, FULL_EA)
check(status == NO_MORE_EAS, f"end {status:#x}")
status, buf = query(f, FULL_EA, flags=INDEX | SINGLE, index=2)
check(status == SUCCESS and parse_eas(buf) == [got[1]], f"index 2 {status:#x}")
status, _ = query(f, FULL_EA, flags=INDEX, index=9)
check(status == NONEXISTENT_EA_ENTRY, f"index 9 {status:#x}")
status, _ = query(f, FULL_EA, out_len=4, flags=RESTART)
check(status == BUFFER_TOO_SMALL, f"small buffer {status:#x}")
print("ok enumeration")

# Duet's own xattrs: refused as EAs and never listed.
for name in [b"duet.uid", b"DUET.ATTRIB", b"duet.btime"]:
    status = set_eas(f, [(name, b"x")])
    check(status == ACCESS_DENIED, f"set {name!r}: {status:#x}")
check(all(not n.lower().startswith(b"duet.") for n, _ in all_eas(f)), "duet names listed")
status, buf = query(f, FULL_EA, buf=get_ea_list([b"duet.uid"]))
check(status == SUCCESS and parse_eas(buf) == [(b"duet.uid", b"")], f"duet.uid by name {buf!r}")
check(any(x.startswith("user.duet.") for x in os.listxattr(os.path.join(share_dir, "ea.txt"))), "no duet xattr?")
print("ok duet-names")

# Bad names: STATUS_INVALID_EA_NAME, nothing changed, nothing created.
before = all_eas(f)
status = set_eas(f, [(b"fine", b"1"), (b"bad*name", b"x")])
check(status == INVALID_EA_NAME, f"bad name {status:#x}")
check(sorted(all_eas(f)) == sorted(before), "bad list changed something")
bad = open_file("bad.txt", rw, CreateDisposition.FILE_CREATE, eas=[(b"bad:name", b"x")])
check(bad == INVALID_EA_NAME, f"create with bad name: {bad}")
gone = open_file("bad.txt", A.FILE_READ_ATTRIBUTES, CreateDisposition.FILE_OPEN)
check(gone == OBJECT_NAME_NOT_FOUND, f"bad create left a file: {gone}")
print("ok bad-names")

# EaSize in a directory listing (FileFullDirectoryInformation), 0 without EAs.
plain = open_file("plain.txt", rw, CreateDisposition.FILE_OVERWRITE_IF)
status, _ = query(plain, FULL_EA, flags=RESTART)
check(status == NO_EAS_ON_FILE, f"no EAs {status:#x}")
check(ea_size(plain) == 0, "plain EaSize")
listing = {}
for e in root.query_directory("*", FULL_DIR):
    listing[e["file_name"].get_value().decode("utf-16-le")] = e["ea_size"].get_value()
check(listing.get("ea.txt") == ea_size(f), f"listing {listing} vs {ea_size(f)}")
check(listing.get("plain.txt") == 0, f"listing {listing}")
print("ok listing")

# Access: FILE_READ_EA to query, FILE_WRITE_EA to set.
ro = open_file("ea.txt", A.FILE_READ_ATTRIBUTES, CreateDisposition.FILE_OPEN)
status, _ = query(ro, FULL_EA, flags=RESTART)
check(status == ACCESS_DENIED, f"query without READ_EA {status:#x}")
check(set_eas(ro, [(b"x", b"1")]) == ACCESS_DENIED, "set without WRITE_EA")
ro.close()
print("ok access")

# A directory keeps EAs too.
d = open_file("dir", rw & ~A.FILE_READ_DATA & ~A.FILE_WRITE_DATA, CreateDisposition.FILE_OPEN_IF, eas=[(b"D", b"1")],
              directory=True)
check(not isinstance(d, int), f"dir create {d}")
check(all_eas(d) == [(b"D", b"1")], "dir EAs")
d.close()
print("ok directory")

plain.close()
f.close()
root.close()
conn.disconnect()
