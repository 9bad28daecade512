#!/usr/bin/env python3
"""What a PNG screenshot shows, for the suites: its size, how many distinct
colours it has, the colour of given pixels and how many pixels are close to
given colours. Standard library only (zlib).

  png_stats.py FILE [--at X,Y ...] [--near RRGGBB ...]

Prints one line "WIDTH HEIGHT DISTINCT", then one line "X,Y RRGGBB" per
--at and one line "RRGGBB COUNT" per --near (channels within 24 of it).
Exits 1 when FILE is not an 8-bit RGB or RGBA PNG it can read."""
import struct
import sys
import zlib


def decode(path):
    with open(path, "rb") as f:
        data = f.read()
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError("not a PNG")
    pos, idat, head = 8, [], None
    while pos + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        if zlib.crc32(kind + body) != struct.unpack(">I", data[pos + 8 + length:pos + 12 + length])[0]:
            raise ValueError("bad CRC in chunk %r" % kind)
        if kind == b"IHDR":
            head = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat.append(body)
        elif kind == b"IEND":
            break
        pos += 12 + length
    if not head:
        raise ValueError("no IHDR")
    width, height, depth, ctype, _, _, interlace = head
    if depth != 8 or ctype not in (2, 6) or interlace:
        raise ValueError("only 8-bit RGB/RGBA, not interlaced")
    bpp = 3 if ctype == 2 else 4
    raw = zlib.decompress(b"".join(idat))
    stride = width * bpp
    rows, prev = [], bytearray(stride)
    for y in range(height):
        ftype = raw[y * (stride + 1)]
        line = bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        if ftype == 1:
            for i in range(bpp, stride):
                line[i] = (line[i] + line[i - bpp]) & 255
        elif ftype == 2:
            line = bytearray((a + b) & 255 for a, b in zip(line, prev))
        elif ftype == 3:
            for i in range(stride):
                left = line[i - bpp] if i >= bpp else 0
                line[i] = (line[i] + ((left + prev[i]) >> 1)) & 255
        elif ftype == 4:
            for i in range(stride):
                a = line[i - bpp] if i >= bpp else 0
                b = prev[i]
                c = prev[i - bpp] if i >= bpp else 0
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        elif ftype != 0:
            raise ValueError("bad filter type")
        rows.append(line)
        prev = line
    return width, height, bpp, rows


def main(argv):
    path, at, near = argv[1], [], []
    args = iter(argv[2:])
    for a in args:
        if a == "--at":
            at.append(tuple(int(v) for v in next(args).split(",")))
        elif a == "--near":
            near.append(next(args))
    try:
        width, height, bpp, rows = decode(path)
    except (OSError, ValueError, zlib.error, struct.error) as e:
        print("png_stats: %s: %s" % (path, e), file=sys.stderr)
        return 1
    targets = [tuple(int(c[i:i + 2], 16) for i in (0, 2, 4)) for c in near]
    counts = [0] * len(targets)
    colours = set()
    for line in rows:
        for x in range(0, width * bpp, bpp):
            px = (line[x], line[x + 1], line[x + 2])
            colours.add(px)
            for i, t in enumerate(targets):
                if abs(px[0] - t[0]) <= 24 and abs(px[1] - t[1]) <= 24 and abs(px[2] - t[2]) <= 24:
                    counts[i] += 1
    print(width, height, len(colours))
    for x, y in at:
        line = rows[y]
        print("%d,%d %02x%02x%02x" % (x, y, line[x * bpp], line[x * bpp + 1], line[x * bpp + 2]))
    for c, n in zip(near, counts):
        print(c, n)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
