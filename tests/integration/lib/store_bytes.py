#!/usr/bin/env python3
"""Key bytes in store files, for the sealed store suite (test_sealed_store.sh).

  store_bytes.py keys KEYFILE FILE...     how many keys of KEYFILE ("key_ID
                                          base64" lines) appear raw in any FILE
  store_bytes.py blocks BLOCKDIR FILE...  how many 32-byte pieces of the link
                                          blocks in BLOCKDIR (*.key) appear in any FILE
  store_bytes.py tamper DATA_DIR KEY_ID   flips one byte inside the sealed key
                                          bytes of KEY_ID's record in the keys database
                                          (the KME stopped); exits 1 when not found
  store_bytes.py tamper-stock DATA_DIR    the same in the first stock record (the
                                          next a take opens); prints its key_ID
  store_bytes.py recover KEYFILE STORE_KEY KEYRING FILE...
                                          what an attacker holding the site's key
                                          file gets: the data key unwrapped from
                                          KEYRING (the store's "epochs" file), every
                                          epoch key in it opened, and every sealed
                                          value of a key of KEYFILE searched for at
                                          any offset of any FILE; prints how many of
                                          those keys it opened (exits 3 when the data
                                          key does not unwrap)

A piece is found at any offset of a FILE, whatever its alignment there."""
import base64
import glob
import os
import shutil
import subprocess
import sys

PIECE = 32


def count_found(needles, files):
    found = set()
    for path in files:
        with open(path, "rb") as f:
            hay = f.read()
        for i in range(len(hay) - PIECE + 1):
            if hay[i:i + PIECE] in needles:
                found.add(hay[i:i + PIECE])
    return len(found)


def keys(keyfile, files):
    needles = set()
    with open(keyfile) as f:
        for line in f:
            parts = line.split()
            if len(parts) == 2:
                raw = base64.b64decode(parts[1])
                for o in range(0, len(raw) - PIECE + 1, PIECE):
                    needles.add(raw[o:o + PIECE])
    print(count_found(needles, files))


def blocks(blockdir, files):
    needles = set()
    for path in sorted(glob.glob(os.path.join(blockdir, "*.key"))):
        with open(path, "rb") as f:
            raw = f.read()
        for o in range(0, len(raw) - PIECE + 1, PIECE):
            needles.add(raw[o:o + PIECE])
    print(count_found(needles, files))


def flip_one(data_dir, pick):
    """Dumps every database of the store in data_dir (mdb_dump -a), flips one
    byte in the middle of the last 16 + 32 bytes of the value of the first
    record that pick(database, key bytes) accepts (inside the sealed key,
    before its tag), loads the dump into a new store (mdb_load) and puts it in
    place: the live record is the one changed, never a stale copy in a freed
    page. Returns the key of the record changed, or None."""
    dump = subprocess.run(["mdb_dump", "-a", data_dir], check=True, capture_output=True, text=True).stdout
    lines = dump.split("\n")
    db, in_data, changed = None, False, None
    for i, line in enumerate(lines):
        if line.startswith("database="):
            db = line.split("=", 1)[1]
        elif line == "HEADER=END":
            in_data, pos = True, 0
        elif line == "DATA=END":
            in_data = False
        elif in_data:
            if pos % 2 == 0 and changed is None and pick(db, bytes.fromhex(line.strip())):
                value = bytearray.fromhex(lines[i + 1].strip())
                value[len(value) - 16 - 16] ^= 0x01
                lines[i + 1] = " " + value.hex()
                changed = bytes.fromhex(line.strip())
            pos += 1
    if changed is None:
        return None
    fresh = data_dir + ".tampered"
    shutil.rmtree(fresh, ignore_errors=True)
    os.mkdir(fresh, 0o700)
    subprocess.run(["mdb_load", "-f", "/dev/stdin", fresh], input="\n".join(lines), check=True, text=True)
    os.replace(os.path.join(fresh, "data.mdb"), os.path.join(data_dir, "data.mdb"))
    shutil.rmtree(fresh, ignore_errors=True)
    return changed


def tamper(data_dir, key_id):
    """KEY_ID's record in the keys database."""
    return 0 if flip_one(data_dir, lambda db, key: db == "keys" and key == key_id.encode()) else 1


def tamper_stock(data_dir):
    """The first record of the stock database (the first a take opens);
    prints its key_ID (the last 36 bytes of its key)."""
    changed = flip_one(data_dir, lambda db, key: db == "stock")
    if changed is None:
        return 1
    print(changed[-36:].decode())
    return 0


def recover(keyfile, store_key, keyring, files):
    """Layout: store/epoch_keys.c (header, slots) and store/seal.h (values)."""
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM
    from cryptography.hazmat.primitives.keywrap import aes_key_unwrap_with_padding, InvalidUnwrap
    from cryptography.exceptions import InvalidTag
    with open(store_key, "rb") as f:
        kek = f.read()
    with open(keyring, "rb") as f:
        ring = f.read()
    store_id, kind, wlen = ring[16:32], ring[32:33], ring[33]
    try:
        data_key = aes_key_unwrap_with_padding(kek, ring[34:34 + wlen]) if kind == b"F" else ring[34:66]
    except InvalidUnwrap:
        return 3
    epochs = {}
    for at in range(512, len(ring) - 255, 256):
        slot = ring[at:at + 256]
        if slot[0] == 0:
            continue
        aad = b"epoch\0" + store_id + slot[1:88]
        sealed = slot[88:148]
        try:
            epochs[slot[8:16]] = AESGCM(data_key).decrypt(sealed[:12], sealed[12:], aad)
        except InvalidTag:
            pass
    wanted = {}
    with open(keyfile) as f:
        for line in f:
            parts = line.split()
            if len(parts) == 2:
                wanted[parts[0]] = base64.b64decode(parts[1])
    opened = set()
    for path in files:
        with open(path, "rb") as f:
            hay = f.read()
        for eid, ekey in epochs.items():
            gcm = AESGCM(ekey)
            at = hay.find(eid)
            while at >= 0:
                for key_id, raw in wanted.items():
                    if key_id in opened:
                        continue
                    end = at + 8 + 12 + len(raw) + 16
                    if end > len(hay):
                        continue
                    try:
                        got = gcm.decrypt(hay[at + 8:at + 20], hay[at + 20:end], b"keys\0" + key_id.encode())
                    except InvalidTag:
                        continue
                    if got == raw:
                        opened.add(key_id)
                at = hay.find(eid, at + 1)
    print(len(opened))
    return 0


def main(argv):
    if len(argv) >= 3 and argv[1] == "keys":
        keys(argv[2], argv[3:])
    elif len(argv) >= 3 and argv[1] == "blocks":
        blocks(argv[2], argv[3:])
    elif len(argv) == 4 and argv[1] == "tamper":
        return tamper(argv[2], argv[3])
    elif len(argv) == 3 and argv[1] == "tamper-stock":
        return tamper_stock(argv[2])
    elif len(argv) >= 6 and argv[1] == "recover":
        return recover(argv[2], argv[3], argv[4], argv[5:])
    else:
        print(__doc__, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
