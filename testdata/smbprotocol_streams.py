"""Alternate data streams through Python's smbprotocol (its smbclient API):
`smbprotocol_streams.py PORT SHARE USER PASSWORD SHARE_DIR` writes the
streams Windows and macOS write (`Zone.Identifier`, `AFP_AfpInfo`), reads
them back (also under another case), lists them (FileStreamInformation),
renames the file and finds them still there, renames a stream, deletes one, checks the
file's own data untouched and that EAs and streams do not show in each
other's lists, and checks the xattrs in SHARE_DIR (Samba's streams_xattr
layout); writes a 1 MiB stream (kept in a sidecar file under
SHARE_DIR/.duet:streams, which no client path reaches) and checks that it
goes with the file. Prints `ok <step>` per step; any failure raises. Run by
server/tests/pyclient.rs."""
import functools
import os
import sys

import smbclient
from smbclient._io import SMBFileIO, SMBFileTransaction, set_info
from smbprotocol.exceptions import SMBOSError, SMBResponseException
from smbprotocol.file_info import FileRenameInformation
from smbprotocol.open import FilePipePrinterAccessMask

port, share, user, password, share_dir = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5]
smbclient.register_session("127.0.0.1", username=user, password=password, port=port)
base = rf"\\127.0.0.1\{share}"
for name in ("open_file", "liststreams", "rename", "remove", "stat", "listxattr", "setxattr", "truncate"):
    setattr(smbclient, name, functools.partial(getattr(smbclient, name), port=port))

OBJECT_NAME_NOT_FOUND = 0xC0000034

zone = b"[ZoneTransfer]\r\nZoneId=3\r\nHostUrl=https://example.com/setup.exe\r\n"
afp = b"AFP\x00" + b"\x00\x00\x01\x00" + b"\x00" * 4 + b"TEXTttxt" + b"\x00" * 40
assert len(afp) == 60


def write(path, data, mode="wb"):
    with smbclient.open_file(path, mode) as f:
        f.write(data)


def read(path):
    with smbclient.open_file(path, "rb") as f:
        return f.read()


def streams(path):
    return {s.name: s.size for s in smbclient.liststreams(path)}


doc = base + r"\doc.txt"
write(doc, b"base data")
write(doc + ":Zone.Identifier", zone)
write(doc + ":AFP_AfpInfo:$DATA", afp)
print("ok written")

assert read(doc + ":Zone.Identifier") == zone
assert read(doc + ":afp_afpinfo") == afp
assert read(doc + "::$DATA") == b"base data"
assert read(doc) == b"base data"
print("ok read back")

got = streams(doc)
assert got == {"::$DATA": 9, ":Zone.Identifier:$DATA": len(zone), ":AFP_AfpInfo:$DATA": 60}, got
print("ok listed")

# EAs and streams are kept apart.
assert smbclient.listxattr(doc) == [], smbclient.listxattr(doc)
smbclient.setxattr(doc, b"user.note", b"an EA")
assert streams(doc).keys() == got.keys(), streams(doc)
print("ok EAs and streams apart")

# Samba's layout on disk: user.DosStream.NAME:$DATA = bytes + NUL.
on_disk = os.path.join(share_dir, "doc.txt")
assert os.getxattr(on_disk, "user.DosStream.Zone.Identifier:$DATA") == zone + b"\0"
assert os.getxattr(on_disk, "user.DosStream.AFP_AfpInfo:$DATA") == afp + b"\0"
print("ok streams_xattr layout")

smbclient.rename(doc, base + r"\renamed.txt")
doc = base + r"\renamed.txt"
assert read(doc + ":Zone.Identifier") == zone
assert streams(doc) == got, streams(doc)
print("ok renamed with its streams")



def rename_stream(path, new_name, replace=False):
    """FileRenameInformation on an open of the stream `path`, with a
    `:stream` target (smbclient.rename sends a whole path)."""
    raw = SMBFileIO(path, mode="r", share_access="rwd", desired_access=FilePipePrinterAccessMask.DELETE
                    | FilePipePrinterAccessMask.FILE_READ_ATTRIBUTES, port=port)
    with SMBFileTransaction(raw) as transaction:
        info = FileRenameInformation()
        info["replace_if_exists"] = replace
        info["file_name"] = new_name
        set_info(transaction, info)


rename_stream(doc + ":Zone.Identifier", ":Zone.Renamed:$DATA")
assert streams(doc) == {"::$DATA": 9, ":Zone.Renamed:$DATA": len(zone), ":AFP_AfpInfo:$DATA": 60}, streams(doc)
assert read(doc + ":zone.renamed") == zone
try:
    rename_stream(doc + ":Zone.Renamed", ":AFP_AfpInfo")
    raise AssertionError("a stream renamed onto another without replace")
except SMBOSError as e:
    assert e.ntstatus == 0xC0000035, hex(e.ntstatus)  # OBJECT_NAME_COLLISION
rename_stream(doc + ":Zone.Renamed", ":Zone.Identifier")
assert streams(doc) == got, streams(doc)
print("ok stream renamed")

# A stream's size, and its end of file set: a plain stream is cut short;
# AFP_AfpInfo keeps its 60 bytes (macOS's rule, as vfs_fruit: a smaller end
# of file changes nothing, a larger one is STATUS_ALLOTTED_SPACE_EXCEEDED).
write(doc + ":Cut", b"0123456789")
smbclient.truncate(doc + ":Cut", 4)
assert read(doc + ":Cut") == b"0123"
smbclient.remove(doc + ":Cut")
assert smbclient.stat(doc + ":AFP_AfpInfo").st_size == 60
smbclient.truncate(doc + ":AFP_AfpInfo", 32)
assert read(doc + ":AFP_AfpInfo") == afp
try:
    smbclient.truncate(doc + ":AFP_AfpInfo", 61)
    raise AssertionError("AFP_AfpInfo grown past 60 bytes")
except (SMBOSError, SMBResponseException) as e:
    status = e.ntstatus if isinstance(e, SMBOSError) else e.status
    assert status == 0xC0000099, hex(status)  # ALLOTTED_SPACE_EXCEEDED
print("ok end of file")

smbclient.remove(doc + ":AFP_AfpInfo")
assert streams(doc) == {"::$DATA": 9, ":Zone.Identifier:$DATA": len(zone)}, streams(doc)
try:
    read(doc + ":AFP_AfpInfo")
    raise AssertionError("a deleted stream opened")
except SMBOSError as e:
    assert e.ntstatus == OBJECT_NAME_NOT_FOUND, hex(e.ntstatus)
assert read(doc) == b"base data"
print("ok one stream deleted, the file untouched")

# Past one xattr (64 KiB; on ext4 without ea_inode, past one block for
# all of a file's xattrs) a stream moves to a sidecar file in the share's
# hidden .duet:streams directory, keyed by the file's stable id: 1 MiB is
# written, read back and listed with its size; the xattr is gone.
big = bytes(range(256)) * 4096
write(doc + ":Zone.Identifier", big, mode="r+b")
assert read(doc + ":zone.identifier") == big
assert streams(doc) == {"::$DATA": 9, ":Zone.Identifier:$DATA": len(big)}, streams(doc)
on_disk = os.path.join(share_dir, "renamed.txt")
assert "user.DosStream.Zone.Identifier:$DATA" not in os.listxattr(on_disk), os.listxattr(on_disk)
uid = int.from_bytes(os.getxattr(on_disk, "user.duet.uid"), "little")
sidecar = os.path.join(share_dir, ".duet:streams", f"{uid:032x}")
assert os.listdir(sidecar) == ["s.Zone.Identifier"], os.listdir(sidecar)
assert os.path.getsize(os.path.join(sidecar, "s.Zone.Identifier")) == len(big)
# Written into at an offset and cut short, as any stream.
with smbclient.open_file(doc + ":Zone.Identifier", "r+b") as f:
    f.seek(100)
    f.write(b"middle")
smbclient.truncate(doc + ":Zone.Identifier", 200000)
assert read(doc + ":Zone.Identifier") == big[:100] + b"middle" + big[106:200000]
print("ok large stream")

# No client path reaches the sidecar directory, nor does a listing show it.
assert not any(n.lower().startswith(".duet") for n in smbclient.listdir(base, port=port)), smbclient.listdir(base, port=port)
for bad in (r"\.duet:streams", r"\.duet:streams:$DATA", rf"\.duet:streams\{uid:032x}\s.Zone.Identifier"):
    try:
        smbclient.stat(base + bad)
        raise AssertionError(f"{bad} opened")
    except SMBOSError as e:
        assert e.ntstatus in (OBJECT_NAME_NOT_FOUND, 0xC0000033), hex(e.ntstatus)  # NOT_FOUND, NAME_INVALID
print("ok sidecar unreachable")

# macOS's resource fork outlives a delete (on close) while it holds data,
# as on Apple's servers and vfs_fruit; an empty one goes.
write(doc + ":AFP_Resource", b"fork")
smbclient.remove(doc + ":AFP_Resource")
assert read(doc + ":afp_resource") == b"fork"
smbclient.truncate(doc + ":AFP_Resource", 0)
smbclient.remove(doc + ":AFP_Resource")
assert ":AFP_Resource:$DATA" not in streams(doc), streams(doc)
print("ok resource fork kept while it holds data")

smbclient.remove(doc)
assert not os.path.exists(os.path.join(share_dir, "renamed.txt"))
assert not os.path.exists(sidecar), os.listdir(sidecar)
print("ok file and streams deleted")
