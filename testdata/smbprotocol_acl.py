"""Security descriptors through Python's smbprotocol:
`smbprotocol_acl.py PORT SHARE USER1 PASSWORD1 USER2 PASSWORD2 SHARE_DIR [USER2_SID]`
sets a DACL as USER1 and reads it back, checks that it is kept in the
`user.duet.NTACL` xattr and is no EA, that it is enforced for USER2 (a
denied open, MAXIMUM_ALLOWED, a deny ACE), that a partial set (owner only)
keeps the DACL, that hostile descriptors are refused and change nothing,
that the SACL and a foreign owner are refused, that a SecD create context
and an inheritable ACE of the parent give new files their DACL, and that
the descriptor survives a rename. Each user's SID is Duet's
S-1-5-21-1146438996-1-1-(1000 + FNV-1a(lower-cased name) mod 10^9), or
for USER2 the USER2_SID its users file line gives.
Prints `ok <step>` per step and exits 1 at the first failure. Run by
server/tests/pyclient.rs."""
import os
import struct
import sys
import uuid

from smbprotocol.connection import Connection
from smbprotocol.create_contexts import CreateContextName, SMB2CreateContextRequest
from smbprotocol.exceptions import SMBResponseException
from smbprotocol.open import (CreateDisposition, CreateOptions, ImpersonationLevel, Open, ShareAccess,
                              SMB2QueryInfoRequest, SMB2QueryInfoResponse, SMB2SetInfoRequest)
from smbprotocol.query_info import InfoType
from smbprotocol.session import Session
from smbprotocol.tree import TreeConnect

port, share = int(sys.argv[1]), sys.argv[2]
user1, pass1, user2, pass2, share_dir = sys.argv[3:8]

SUCCESS = 0
ACCESS_DENIED = 0xC0000022
INVALID_OWNER = 0xC000005A
PRIVILEGE_NOT_HELD = 0xC0000061
INVALID_SECURITY_DESCR = 0xC0000079

OWNER, GROUP, DACL, SACL = 1, 2, 4, 8
SELF_RELATIVE, DACL_PRESENT = 0x8000, 0x0004
OI, CI, IO = 0x01, 0x02, 0x08
READ_DATA, WRITE_DATA, READ_EA, WRITE_EA, READ_ATTRIBUTES = 0x1, 0x2, 0x8, 0x10, 0x80
DELETE, READ_CONTROL, WRITE_DAC, WRITE_OWNER, SYNCHRONIZE = 0x10000, 0x20000, 0x40000, 0x80000, 0x100000
ACCESS_SYSTEM_SECURITY, MAXIMUM_ALLOWED, GENERIC_ALL = 0x01000000, 0x02000000, 0x10000000
FILE_ALL = 0x001F01FF
FULL_EA, ACCESS_INFO = 15, 8


def fail(msg):
    print("FAIL " + msg)
    sys.exit(1)


def check(cond, msg):
    if not cond:
        fail(msg)


def duet_sid(name):
    h = 0x811C9DC5
    for b in name.lower().encode():
        h = ((h ^ b) * 0x01000193) & 0xFFFFFFFF
    return f"S-1-5-21-1146438996-1-1-{1000 + h % 1000000000}"


def sid_bytes(s):
    parts = s.split("-")
    auth, subs = int(parts[2]), [int(p) for p in parts[3:]]
    return struct.pack("<BB", 1, len(subs)) + auth.to_bytes(6, "big") + b"".join(struct.pack("<I", x) for x in subs)


def ace(kind, flags, mask, sid):
    body = struct.pack("<I", mask) + sid_bytes(sid)
    return struct.pack("<BBH", kind, flags, 4 + len(body)) + body


def acl(aces):
    body = b"".join(aces)
    return struct.pack("<BBHHH", 2, 0, 8 + len(body), len(aces), 0) + body


def sd(control=SELF_RELATIVE, owner=None, group=None, dacl=None):
    """A self-relative descriptor laid out DACL, owner, group (as Duet and Windows lay them out)."""
    parts, offs, at = b"", [0, 0, 0, 0], 20
    if dacl is not None:
        control |= DACL_PRESENT
        offs[3], parts, at = at, parts + dacl, at + len(dacl)
    if owner is not None:
        b = sid_bytes(owner)
        offs[0], parts, at = at, parts + b, at + len(b)
    if group is not None:
        b = sid_bytes(group)
        offs[1], parts, at = at, parts + b, at + len(b)
    return struct.pack("<BBHIIII", 1, 0, control, *offs) + parts


def login(user, password):
    conn = Connection(uuid.uuid4(), "127.0.0.1", port)
    conn.connect()
    session = Session(conn, user, password)
    session.connect()
    tree = TreeConnect(session, rf"\\127.0.0.1\{share}")
    tree.connect()
    return conn, session, tree


A, B = login(user1, pass1), login(user2, pass2)
SHARE_ALL = ShareAccess.FILE_SHARE_READ | ShareAccess.FILE_SHARE_WRITE | ShareAccess.FILE_SHARE_DELETE


def open_file(who, name, access, disposition=CreateDisposition.FILE_OPEN, directory=False, secd=None):
    _, _, tree = who
    f = Open(tree, name)
    contexts = None
    if secd is not None:
        c = SMB2CreateContextRequest()
        c["buffer_name"] = CreateContextName.SMB2_CREATE_SD_BUFFER
        c["buffer_data"] = secd
        contexts = [c]
    options = CreateOptions.FILE_DIRECTORY_FILE if directory else CreateOptions.FILE_NON_DIRECTORY_FILE
    try:
        f.create(ImpersonationLevel.Impersonation, access, 0, SHARE_ALL, disposition, options, create_contexts=contexts)
    except SMBResponseException as e:
        return e.status
    return f


def query(who, f, info_type, cls, additional=0, out_len=4096):
    conn, session, tree = who
    q = SMB2QueryInfoRequest()
    q["info_type"] = info_type
    q["file_info_class"] = cls
    q["output_buffer_length"] = out_len
    q["additional_information"] = additional
    q["file_id"] = f.file_id
    req = conn.send(q, session.session_id, tree.tree_connect_id)
    try:
        r = conn.receive(req)
    except SMBResponseException as e:
        return e.status, b""
    resp = SMB2QueryInfoResponse()
    resp.unpack(r["data"].get_value())
    return r["status"].get_value(), resp["buffer"].get_value()


def get_sd(who, f, additional):
    status, buf = query(who, f, InfoType.SMB2_0_INFO_SECURITY, 0, additional)
    check(status == SUCCESS, f"query sd {additional:#x}: {status:#x}")
    return buf


def set_info(who, f, info_type, cls, buf, additional=0):
    conn, session, tree = who
    s = SMB2SetInfoRequest()
    s["info_type"] = info_type
    s["file_info_class"] = cls
    s["additional_information"] = additional
    s["file_id"] = f.file_id
    s["buffer"] = buf
    req = conn.send(s, session.session_id, tree.tree_connect_id)
    try:
        conn.receive(req)
    except SMBResponseException as e:
        return e.status
    return SUCCESS


def set_sd(who, f, buf, additional):
    return set_info(who, f, InfoType.SMB2_0_INFO_SECURITY, 0, buf, additional)


def granted(who, f):
    status, buf = query(who, f, InfoType.SMB2_0_INFO_FILE, ACCESS_INFO)
    check(status == SUCCESS, f"FileAccessInformation {status:#x}")
    return struct.unpack("<I", buf)[0]


alice, bob = duet_sid(user1), (sys.argv[8] if len(sys.argv) > 8 else duet_sid(user2))
owner = f"S-1-22-1-{os.geteuid()}"
admin = READ_CONTROL | WRITE_DAC | WRITE_OWNER

# A new file's owner is the POSIX owner's SID, which every user holds.
f = open_file(A, "acl.txt", admin | WRITE_DATA | READ_DATA, CreateDisposition.FILE_OVERWRITE_IF)
check(not isinstance(f, int), f"create: {f}")
f.write(b"secret", 0)
got = get_sd(A, f, OWNER)
check(got == sd(owner=owner), f"derived owner {got.hex()}")
# alice takes ownership and sets a DACL that names her only; it reads back
# as it was set.
only_alice = sd(owner=alice, dacl=acl([ace(0, 0, FILE_ALL, alice)]))
check(set_sd(A, f, only_alice, DACL | OWNER) == SUCCESS, "set owner and DACL")
got = get_sd(A, f, DACL | OWNER)
check(got == only_alice, f"read back {got.hex()}")
print("ok set and read back")

# Kept in Duet's own xattr, which is no EA.
path = os.path.join(share_dir, "acl.txt")
whole = get_sd(A, f, DACL | OWNER | GROUP)
check(os.getxattr(path, "user.duet.NTACL") == whole, "xattr holds the descriptor")
status, buf = query(A, f, InfoType.SMB2_0_INFO_FILE, FULL_EA)
check(b"NTACL" not in buf, f"listed as an EA: {buf!r}")
ea = struct.pack("<IBBH", 0, 0, 10, 1) + b"duet.NTACL\0x"
check(set_info(A, f, InfoType.SMB2_0_INFO_FILE, FULL_EA, ea) == ACCESS_DENIED, "set as an EA")
check(os.getxattr(path, "user.duet.NTACL") == whole, "xattr unchanged by the EA set")
print("ok stored in user.duet.NTACL, no EA")

# Enforced: bob may not read; alice may.
check(open_file(B, "acl.txt", READ_DATA) == ACCESS_DENIED, "bob opened for read")
g = open_file(A, "acl.txt", READ_DATA)
check(not isinstance(g, int) and g.read(0, 6) == b"secret", f"alice read: {g}")
g.close()
# MAXIMUM_ALLOWED gives bob no data and no say over the descriptor (only
# what smbd adds: the attributes, and DELETE from the parent directory).
g = open_file(B, "acl.txt", MAXIMUM_ALLOWED)
check(not isinstance(g, int), f"bob MAXIMUM_ALLOWED: {g}")
check(granted(B, g) & (READ_DATA | WRITE_DATA | READ_CONTROL | WRITE_DAC) == 0, f"bob got {granted(B, g):#x}")
g.close()
check(open_file(B, "acl.txt", WRITE_DAC) == ACCESS_DENIED, "bob opened for WRITE_DAC")
print("ok enforced for a second user")

# A deny ACE ahead of an allow: bob may read, not write.
deny = sd(dacl=acl([ace(1, 0, WRITE_DATA, bob), ace(0, 0, FILE_ALL, "S-1-1-0")]))
check(set_sd(A, f, deny, DACL) == SUCCESS, "set deny")
check(open_file(B, "acl.txt", WRITE_DATA) == ACCESS_DENIED, "bob opened for write")
g = open_file(B, "acl.txt", READ_DATA)
check(not isinstance(g, int), f"bob read: {g}")
g.close()
g = open_file(A, "acl.txt", WRITE_DATA)
check(not isinstance(g, int), f"alice write: {g}")
g.close()
print("ok deny ACE")

# A partial set (the owner only) keeps the DACL.
check(set_sd(A, f, sd(owner="S-1-1-0"), OWNER) == SUCCESS, "set owner")
check(get_sd(A, f, DACL | OWNER) == sd(owner="S-1-1-0", dacl=acl([ace(1, 0, WRITE_DATA, bob),
                                                                   ace(0, 0, FILE_ALL, "S-1-1-0")])), "after owner set")
check(set_sd(A, f, sd(owner=alice), OWNER) == SUCCESS, "owner back")
print("ok partial set merged")

# Hostile descriptors are refused and change nothing.
before = get_sd(A, f, DACL | OWNER | GROUP)
good = sd(owner=owner, dacl=acl([ace(0, 0, FILE_ALL, alice)]))
bad = {
    "empty": b"",
    "short header": good[:12],
    "revision 2": b"\x02" + good[1:],
    "not self-relative": good[:2] + struct.pack("<H", DACL_PRESENT) + good[4:],
    "owner past the end": good[:4] + struct.pack("<I", 0xFFFFFF00) + good[8:],
    "owner in the header": good[:4] + struct.pack("<I", 8) + good[8:],
    "DACL past the end": good[:16] + struct.pack("<I", len(good) - 4) + good[20:],
    "ACL size past the end": good[:22] + struct.pack("<H", 0xFFF0) + good[24:],
    "ACE count too large": good[:24] + struct.pack("<H", 5000) + good[26:],
    "ACL revision 9": good[:20] + b"\x09" + good[21:],
    "ACE size 3": good[:30] + struct.pack("<H", 3) + good[32:],
    "16 sub-authorities": sd(owner=owner)[:21] + b"\x10" + sd(owner=owner)[22:],
    "truncated": good[:-3],
}
for what, buf in bad.items():
    status = set_sd(A, f, buf, DACL | OWNER)
    check(status == INVALID_SECURITY_DESCR, f"{what}: {status:#x}")
check(get_sd(A, f, DACL | OWNER | GROUP) == before, "a refused set changed the descriptor")
check(set_sd(A, f, sd(owner="S-1-5-18"), OWNER) == INVALID_OWNER, "foreign owner")
check(set_sd(A, f, good, SACL) == ACCESS_DENIED, "SACL without ACCESS_SYSTEM_SECURITY")
check(open_file(A, "acl.txt", ACCESS_SYSTEM_SECURITY) == PRIVILEGE_NOT_HELD, "ACCESS_SYSTEM_SECURITY")
f.close()
print("ok hostile descriptors refused")

# Survives a rename (the xattr moves with the file).
f = open_file(A, "acl.txt", DELETE | admin)
check(set_sd(A, f, only_alice, DACL) == SUCCESS, "reset")
new = "acl2.txt".encode("utf-16-le")
rename = struct.pack("<BxxxxxxxQI", 1, 0, len(new)) + new
check(set_info(A, f, InfoType.SMB2_0_INFO_FILE, 10, rename) == SUCCESS, "rename")
f.close()
check(open_file(B, "acl2.txt", READ_DATA) == ACCESS_DENIED, "bob read after rename")
print("ok kept through a rename")

# The SecD create context: the new file gets its DACL.
secd = sd(dacl=acl([ace(0, 0, READ_DATA | READ_ATTRIBUTES | SYNCHRONIZE, bob)]))
f = open_file(A, "secd.txt", admin | WRITE_DATA, CreateDisposition.FILE_CREATE, secd=secd)
check(not isinstance(f, int), f"create with SecD: {f}")
check(get_sd(A, f, DACL) == sd(dacl=acl([ace(0, 0, READ_DATA | READ_ATTRIBUTES | SYNCHRONIZE, bob)])), "SecD DACL")
f.close()
check(open_file(A, "secd.txt", WRITE_DATA) == ACCESS_DENIED, "alice write on the SecD file")
g = open_file(B, "secd.txt", READ_DATA)
check(not isinstance(g, int), f"bob read on the SecD file: {g}")
g.close()
print("ok SecD on create")

# Inheritance: a directory's OI|CI ACE and CREATOR OWNER ACE reach a new file.
d = open_file(A, "dir", admin | READ_DATA, CreateDisposition.FILE_CREATE, directory=True)
check(not isinstance(d, int), f"mkdir: {d}")
parent = sd(dacl=acl([ace(0, OI | CI, FILE_ALL, alice), ace(0, OI | CI | IO, GENERIC_ALL, "S-1-3-0")]))
check(set_sd(A, d, parent, DACL) == SUCCESS, "set dir DACL")
c = open_file(A, "dir\\child.txt", admin | WRITE_DATA, CreateDisposition.FILE_CREATE)
check(not isinstance(c, int), f"create child: {c}")
child = get_sd(A, c, DACL | OWNER)
check(child == sd(owner=owner, dacl=acl([ace(0, 0, FILE_ALL, alice), ace(0, 0, FILE_ALL, owner)])),
      f"inherited {child.hex()}")
c.close()
print("ok inherited on create")

# Making a name in a directory needs FILE_ADD_FILE (a file) or
# FILE_ADD_SUBDIRECTORY (a directory) from the directory's DACL: bob is not
# in it; alice is.
check(open_file(B, "dir\\bob.txt", WRITE_DATA, CreateDisposition.FILE_CREATE) == ACCESS_DENIED, "bob made a file")
check(open_file(B, "dir\\bobdir", READ_DATA, CreateDisposition.FILE_CREATE, directory=True) == ACCESS_DENIED,
      "bob made a directory")
check(not os.path.exists(os.path.join(share_dir, "dir", "bob.txt")), "bob's file is on disk")
add_only = sd(dacl=acl([ace(0, 0, FILE_ALL, alice), ace(0, 0, READ_DATA | 0x2 | SYNCHRONIZE, bob)]))
check(set_sd(A, d, add_only, DACL) == SUCCESS, "let bob add files")
g = open_file(B, "dir\\bob.txt", WRITE_DATA, CreateDisposition.FILE_CREATE)
check(not isinstance(g, int), f"bob made a file with FILE_ADD_FILE: {g}")
g.close()
check(open_file(B, "dir\\bobdir", READ_DATA, CreateDisposition.FILE_CREATE, directory=True) == ACCESS_DENIED,
      "bob made a directory with FILE_ADD_FILE only")
g = open_file(A, "dir\\alicedir", READ_DATA, CreateDisposition.FILE_CREATE, directory=True)
check(not isinstance(g, int), f"alice made a directory: {g}")
g.close()
# A rename or a hard link into the directory adds a name there too.
check(set_sd(A, d, sd(dacl=acl([ace(0, 0, FILE_ALL, alice)])), DACL) == SUCCESS, "alice only again")


def move(who, f, name, cls=10):
    new = name.encode("utf-16-le")
    return set_info(who, f, InfoType.SMB2_0_INFO_FILE, cls, struct.pack("<BxxxxxxxQI", 0, 0, len(new)) + new)


g = open_file(B, "bobs.txt", DELETE | WRITE_DATA, CreateDisposition.FILE_CREATE)
check(not isinstance(g, int), f"bob made a file in the root: {g}")
check(move(B, g, "dir\\moved.txt") == ACCESS_DENIED, "bob renamed into the directory")
check(move(B, g, "dir\\linked.txt", 11) == ACCESS_DENIED, "bob linked into the directory")
check(not os.path.exists(os.path.join(share_dir, "dir", "moved.txt")), "bob's rename is on disk")
check(move(B, g, "bobs2.txt") == SUCCESS, "bob renamed in the root")
g.close()
g = open_file(A, "bobs2.txt", DELETE)
check(move(A, g, "dir\\moved.txt") == SUCCESS, "alice renamed into the directory")
g.close()
d.close()
print("ok adding to a directory checked")
