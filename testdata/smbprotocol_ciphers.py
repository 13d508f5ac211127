#!/usr/bin/env python3
"""smbprotocol_ciphers.py encrypt|sign PORT SHARE USER PASSWORD

A second, independent client (Python smbprotocol). `encrypt`, against a
server that requires encryption: every SMB 3.1.1 cipher (AES-128/256
CCM/GCM), then SMB 3.0 and 3.0.2. `sign`, against a server that requires
signing: every SMB 3.1.1 signing algorithm (AES-GMAC, AES-CMAC,
HMAC-SHA256), then SMB 3.0, 3.0.2, 2.1 and 2.0.2. Each combination connects,
writes a file, reads it back and checks the bytes. Prints one `ok` line per
combination and exits non-zero on the first failure.
"""
import sys
import uuid

from smbprotocol.connection import Ciphers, Connection, Dialects, SigningAlgorithms
from smbprotocol.open import (CreateDisposition, CreateOptions, FileAttributes,
                              FilePipePrinterAccessMask, ImpersonationLevel, Open,
                              ShareAccess)
from smbprotocol.session import Session
from smbprotocol.tree import TreeConnect

mode = sys.argv[1]
port, share, user, password = int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
encrypt = mode == "encrypt"


def round_trip(dialect, cipher=None, signing=None):
    conn = Connection(uuid.uuid4(), "127.0.0.1", port)
    conn.connect(dialect=dialect,
                 preferred_encryption_algos=[cipher] if cipher else None,
                 preferred_signing_algos=[signing] if signing is not None else None)
    try:
        sess = Session(conn, user, password, require_encryption=encrypt)
        sess.connect()
        tree = TreeConnect(sess, r"\\127.0.0.1\%s" % share)
        tree.connect()
        name = "pyclient-%x-%s-%s.bin" % (dialect, cipher, signing)
        f = Open(tree, name)
        f.create(ImpersonationLevel.Impersonation,
                 FilePipePrinterAccessMask.GENERIC_READ | FilePipePrinterAccessMask.GENERIC_WRITE
                 | FilePipePrinterAccessMask.DELETE,
                 FileAttributes.FILE_ATTRIBUTE_NORMAL, ShareAccess.FILE_SHARE_READ,
                 CreateDisposition.FILE_OVERWRITE_IF,
                 CreateOptions.FILE_NON_DIRECTORY_FILE | CreateOptions.FILE_DELETE_ON_CLOSE)
        data = (bytes(range(256)) * 300)[:conn.max_write_size]
        f.write(data, 0)
        back = f.read(0, len(data))
        if back != data:
            raise SystemExit("data mismatch for %s" % name)
        f.close()
        if not encrypt and not sess.signing_required:
            raise SystemExit("session is not signed")
        print("ok %s dialect=%#x cipher=%s signing=%s" % (mode, dialect, cipher, signing))
    finally:
        conn.disconnect()


if encrypt:
    for cipher in (Ciphers.AES_128_GCM, Ciphers.AES_128_CCM, Ciphers.AES_256_GCM, Ciphers.AES_256_CCM):
        round_trip(Dialects.SMB_3_1_1, cipher=cipher)
    round_trip(Dialects.SMB_3_0_2)
    round_trip(Dialects.SMB_3_0_0)
else:
    for signing in (SigningAlgorithms.AES_GMAC, SigningAlgorithms.AES_CMAC, SigningAlgorithms.HMAC_SHA256):
        round_trip(Dialects.SMB_3_1_1, signing=signing)
    for d in (Dialects.SMB_3_0_2, Dialects.SMB_3_0_0, Dialects.SMB_2_1_0, Dialects.SMB_2_0_2):
        round_trip(d)
