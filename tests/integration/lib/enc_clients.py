#!/usr/bin/env python3
"""Plain TCP clients of an encryptor, for the suites that count what it spends.

  enc_clients.py connects PORT N           N connections that send nothing, one after the other
  enc_clients.py stream PORT BYTES CHUNK [SRC]
                                           BYTES random bytes in writes of CHUNK (TCP_NODELAY),
                                           then end of stream; the echo must come back whole
  enc_clients.py hold PORT SRC N           opens N connections from SRC, prints "held", keeps
                                           them (sending nothing) until stdin ends
  enc_clients.py probe PORT SRC            one 1 KiB write from SRC: exit 0 when it is echoed
                                           back, 3 when the connection is closed or reset first
  enc_clients.py garbage PORT BYTES        BYTES random bytes, then end of stream
  enc_clients.py keys-frame FILE           writes a well-formed KEYS frame of 4 random key_IDs
                                           to FILE (for a connection the suite holds open)

Exit status 1 on any other failure, with the reason on stderr."""
import os
import socket
import struct
import sys
import threading
import uuid

HOST = "127.0.0.1"


def connect(port, src=None):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(60)
    if src:
        s.bind((src, 0))
    s.connect((HOST, port))
    return s


def read_all(s):
    got = bytearray()
    while True:
        b = s.recv(65536)
        if not b:
            return bytes(got)
        got += b


def connects(port, n):
    for _ in range(n):
        connect(port).close()


def stream(port, total, chunk, src=None):
    data = os.urandom(total)
    s = connect(port, src)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    echoed = []
    reader = threading.Thread(target=lambda: echoed.append(read_all(s)))
    reader.start()
    for off in range(0, total, chunk):
        s.sendall(data[off:off + chunk])
    s.shutdown(socket.SHUT_WR)
    reader.join()
    s.close()
    if not echoed or echoed[0] != data:
        sys.exit("the echo differs from what was sent (%d of %d bytes back)" % (len(echoed[0]) if echoed else 0, total))


def hold(port, src, n):
    held = [connect(port, src) for _ in range(n)]
    print("held", flush=True)
    sys.stdin.read()
    for s in held:
        s.close()


def probe(port, src):
    data = os.urandom(1024)
    try:
        s = connect(port, src)
        s.sendall(data)
        got = bytearray()
        while len(got) < len(data):
            b = s.recv(65536)
            if not b:
                break
            got += b
        s.close()
    except (ConnectionResetError, BrokenPipeError):
        sys.exit(3)
    if not got:
        sys.exit(3)
    if bytes(got) != data:
        sys.exit("the echo differs from what was sent")


def garbage(port, total):
    s = connect(port)
    try:
        s.sendall(os.urandom(total))
        s.shutdown(socket.SHUT_WR)
        read_all(s)
    except (ConnectionResetError, BrokenPipeError):
        pass
    s.close()


def keys_frame(path):
    body = "".join(str(uuid.uuid4()) for _ in range(4)).encode()
    # magic, type KEYS, mode one-time pad, reserved, seq 0, first index 0, offset 0, length
    head = b"QKE\x01" + struct.pack(">BBHQIII", 1, 1, 0, 0, 0, 0, len(body))
    with open(path, "wb") as f:
        f.write(head + body)


def main(argv):
    cmd = argv[1]
    if cmd == "keys-frame":
        keys_frame(argv[2])
        return
    port = int(argv[2])
    if cmd == "connects":
        connects(port, int(argv[3]))
    elif cmd == "stream":
        stream(port, int(argv[3]), int(argv[4]), argv[5] if len(argv) > 5 else None)
    elif cmd == "hold":
        hold(port, argv[3], int(argv[4]))
    elif cmd == "probe":
        probe(port, argv[3])
    elif cmd == "garbage":
        garbage(port, int(argv[3]))
    else:
        sys.exit("unknown command " + cmd)


if __name__ == "__main__":
    main(sys.argv)
