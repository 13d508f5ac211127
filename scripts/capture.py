#!/usr/bin/env python3
"""capture.py LISTEN_PORT TARGET_PORT OUT_FILE

A recording TCP proxy on 127.0.0.1 for making test captures: forwards one
client connection to 127.0.0.1:TARGET_PORT and appends every NetBIOS frame,
in order, to OUT_FILE as `direction (1 byte: 'C' client->server, 'S' back)
| length (4 bytes BE) | frame`. Exits when the connection ends.
"""
import socket
import sys
import threading

listen_port, target_port, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
lock = threading.Lock()
log = open(out, "wb")


def pump(src, dst, tag):
    buf = b""
    while True:
        data = src.recv(1 << 16)
        if not data:
            break
        dst.sendall(data)
        buf += data
        while len(buf) >= 4:
            n = int.from_bytes(buf[1:4], "big")
            if len(buf) < 4 + n:
                break
            with lock:
                log.write(tag + n.to_bytes(4, "big") + buf[4:4 + n])
            buf = buf[4 + n:]
    try:
        dst.shutdown(socket.SHUT_WR)
    except OSError:
        pass


srv = socket.socket()
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("127.0.0.1", listen_port))
srv.listen(1)
cli, _ = srv.accept()
up = socket.create_connection(("127.0.0.1", target_port))
t1 = threading.Thread(target=pump, args=(cli, up, b"C"))
t2 = threading.Thread(target=pump, args=(up, cli, b"S"))
t1.start(); t2.start(); t1.join(); t2.join()
log.close()
