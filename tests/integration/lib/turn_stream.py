#!/usr/bin/env python3
"""What a TURN-over-TCP byte stream carries, for the TURN suites.

  turn_stream.py parse FILE...
      Reads each FILE as the bytes one direction of a TURN client's TCP
      connection carried (STUN messages and ChannelData, RFC 8656) and
      prints one JSON object for all of them: stun (messages), cookies
      (with the magic cookie 0x2112A442), channeldata, dtls (DTLS records
      in ChannelData), rtp, rtcp, ssrcs (the RTP SSRCs seen, hex), and
      unparsed (bytes left when something was not TURN framing).
  turn_stream.py count HEX[,HEX...] FILE...
      Prints, for each byte string, how many times it occurs in the FILEs
      (one "HEX N" line each)."""
import json
import sys


def parse(paths):
    r = {"stun": 0, "cookies": 0, "channeldata": 0, "dtls": 0, "rtp": 0, "rtcp": 0, "unparsed": 0}
    ssrcs = {}
    for p in paths:
        d = open(p, "rb").read()
        i = 0
        while i + 4 <= len(d):
            b0 = d[i]
            if b0 < 0x40:
                n = 20 + int.from_bytes(d[i + 2:i + 4], "big")
                if d[i + 4:i + 8] == b"\x21\x12\xa4\x42":
                    r["cookies"] += 1
                r["stun"] += 1
                i += n
            elif b0 < 0x80:
                n = int.from_bytes(d[i + 2:i + 4], "big")
                body = d[i + 4:i + 4 + n]
                r["channeldata"] += 1
                i += 4 + ((n + 3) & ~3)
                if len(body) >= 13 and 20 <= body[0] <= 63 and body[1:3] == b"\xfe\xfd":
                    r["dtls"] += 1
                elif len(body) >= 12 and 128 <= body[0] <= 191:
                    if 72 <= (body[1] & 0x7F) <= 76:
                        r["rtcp"] += 1
                    else:
                        r["rtp"] += 1
                        s = body[8:12].hex()
                        ssrcs[s] = ssrcs.get(s, 0) + 1
            else:
                break
        r["unparsed"] += max(0, len(d) - i)
    r["ssrcs"] = [s for s, n in sorted(ssrcs.items(), key=lambda x: -x[1]) if n >= 10]
    print(json.dumps(r))


def count(patterns, paths):
    data = [open(p, "rb").read() for p in paths]
    for h in patterns.split(","):
        if h:
            b = bytes.fromhex(h)
            print(h, sum(d.count(b) for d in data))


if __name__ == "__main__":
    if len(sys.argv) >= 3 and sys.argv[1] == "parse":
        parse(sys.argv[2:])
    elif len(sys.argv) >= 4 and sys.argv[1] == "count":
        count(sys.argv[2], sys.argv[3:])
    else:
        sys.exit(__doc__)
