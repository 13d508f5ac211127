"""The name a file's FileAllInformation reports, through Python's
smbprotocol: `smbprotocol_names.py PORT SHARE USER PASSWORD` creates
`sub\\Name.txt` (and `sub`), queries FILE_ALL_INFORMATION on it and
prints `name <FileName>`. Run by server/tests/pyclient.rs."""
import sys
import uuid

from smbprotocol.connection import Connection
from smbprotocol.file_info import FileInformationClass
from smbprotocol.open import (CreateDisposition, CreateOptions, FilePipePrinterAccessMask, ImpersonationLevel,
                              Open, ShareAccess, SMB2QueryInfoRequest, SMB2QueryInfoResponse)
from smbprotocol.query_info import InfoType
from smbprotocol.session import Session
from smbprotocol.tree import TreeConnect

port, share, user, password = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
conn = Connection(uuid.uuid4(), "127.0.0.1", port)
conn.connect()
session = Session(conn, user, password)
session.connect()
tree = TreeConnect(session, rf"\\127.0.0.1\{share}")
tree.connect()
access = FilePipePrinterAccessMask.FILE_READ_ATTRIBUTES | FilePipePrinterAccessMask.FILE_READ_DATA | \
    FilePipePrinterAccessMask.FILE_WRITE_DATA
d = Open(tree, "sub")
d.create(ImpersonationLevel.Impersonation, access, 0, ShareAccess.FILE_SHARE_READ, CreateDisposition.FILE_OPEN_IF,
         CreateOptions.FILE_DIRECTORY_FILE)
f = Open(tree, "sub\\Name.txt")
f.create(ImpersonationLevel.Impersonation, access, 0, ShareAccess.FILE_SHARE_READ, CreateDisposition.FILE_OPEN_IF,
         CreateOptions.FILE_NON_DIRECTORY_FILE)
q = SMB2QueryInfoRequest()
q["info_type"] = InfoType.SMB2_0_INFO_FILE
q["file_info_class"] = FileInformationClass.FILE_ALL_INFORMATION
q["output_buffer_length"] = 1024
q["file_id"] = f.file_id
req = conn.send(q, session.session_id, tree.tree_connect_id)
resp = SMB2QueryInfoResponse()
resp.unpack(conn.receive(req)["data"].get_value())
buf = resp["buffer"].get_value()
# FILE_ALL_INFORMATION ([MS-FSCC] 2.4.2): FileNameLength at offset 96,
# the name from 100.
n = int.from_bytes(buf[96:100], "little")
print("name " + buf[100:100 + n].decode("utf-16-le"))
f.close()
d.close()
conn.disconnect()
