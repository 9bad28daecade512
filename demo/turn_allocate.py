#!/usr/bin/env python3
"""One TURN allocation over TCP with long-term credentials (RFC 5766, RFC 5389):
the check `make run` makes through the encryptor pair before it prints ready.

    turn_allocate.py HOST PORT USER PASSWORD REALM

Sends an Allocate request (relayed transport UDP), answers the 401 challenge
with USERNAME, REALM, NONCE and MESSAGE-INTEGRITY, and exits 0 when the
server grants the allocation (a success response with XOR-RELAYED-ADDRESS),
printing the relayed address; otherwise a clear message and exit 1."""
import hashlib
import hmac
import os
import socket
import struct
import sys

COOKIE = 0x2112A442
ALLOCATE, ALLOCATE_OK, ALLOCATE_ERR = 0x0003, 0x0103, 0x0113
USERNAME, MESSAGE_INTEGRITY, ERROR_CODE = 0x0006, 0x0008, 0x0009
REALM, NONCE, XOR_RELAYED_ADDRESS, REQUESTED_TRANSPORT = 0x0014, 0x0015, 0x0016, 0x0019


def attr(kind, value):
    pad = (4 - len(value) % 4) % 4
    return struct.pack("!HH", kind, len(value)) + value + b"\0" * pad


def message(kind, txn, attrs, key=None):
    body = b"".join(attrs)
    if key is not None:  # MESSAGE-INTEGRITY covers the header with its own length counted
        head = struct.pack("!HHI", kind, len(body) + 24, COOKIE) + txn
        body += attr(MESSAGE_INTEGRITY, hmac.new(key, head + body, hashlib.sha1).digest())
    return struct.pack("!HHI", kind, len(body), COOKIE) + txn + body


def read_exact(sock, n):
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise ConnectionError("the connection closed before a whole answer arrived")
        data += chunk
    return data


def answer(sock):
    head = read_exact(sock, 20)
    kind, length, cookie = struct.unpack("!HHI", head[:8])
    if cookie != COOKIE:
        raise ValueError("not a STUN answer")
    body, attrs, at = read_exact(sock, length), {}, 0
    while at + 4 <= len(body):
        a, n = struct.unpack("!HH", body[at:at + 4])
        attrs.setdefault(a, body[at + 4:at + 4 + n])
        at += 4 + n + (4 - n % 4) % 4
    return kind, attrs


def error_of(attrs):
    v = attrs.get(ERROR_CODE, b"\0\0\0\0")
    return (v[2] & 7) * 100 + v[3], v[4:].decode(errors="replace")


def main():
    if len(sys.argv) != 6:
        print(__doc__.strip().splitlines()[2].strip(), file=sys.stderr)
        return 2
    host, port, user, password, realm = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
    transport = attr(REQUESTED_TRANSPORT, bytes([17, 0, 0, 0]))
    try:
        with socket.create_connection((host, port), timeout=10) as sock:
            sock.sendall(message(ALLOCATE, os.urandom(12), [transport]))
            kind, attrs = answer(sock)
            if kind != ALLOCATE_ERR or error_of(attrs)[0] != 401 or NONCE not in attrs:
                print(f"turn: expected a 401 challenge, got type {kind:#06x}", file=sys.stderr)
                return 1
            nonce, their_realm = attrs[NONCE], attrs.get(REALM, realm.encode())
            key = hashlib.md5(f"{user}:{their_realm.decode()}:{password}".encode()).digest()
            sock.sendall(message(ALLOCATE, os.urandom(12),
                                 [transport, attr(USERNAME, user.encode()), attr(REALM, their_realm),
                                  attr(NONCE, nonce)], key))
            kind, attrs = answer(sock)
    except (OSError, ValueError, ConnectionError) as e:
        print(f"turn: {host}:{port}: {e}", file=sys.stderr)
        return 1
    if kind != ALLOCATE_OK or XOR_RELAYED_ADDRESS not in attrs:
        code, reason = error_of(attrs)
        print(f"turn: allocation refused: {code} {reason}", file=sys.stderr)
        return 1
    v = attrs[XOR_RELAYED_ADDRESS]
    relayed_port = struct.unpack("!H", v[2:4])[0] ^ (COOKIE >> 16)
    relayed_ip = socket.inet_ntoa(struct.pack("!I", struct.unpack("!I", v[4:8])[0] ^ COOKIE))
    print(f"allocated {relayed_ip}:{relayed_port}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
