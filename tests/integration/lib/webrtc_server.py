#!/usr/bin/env python3
"""The page server of the TURN suites: serves DIR on 127.0.0.1:PORT and
writes the body of each POST /NAME to OUT/NAME.json (whole, by rename), so
that a suite can wait for the file. Prints "ready" once it listens.

usage: webrtc_server.py PORT DIR OUT"""
import http.server
import os
import sys
from functools import partial

port, root, out = int(sys.argv[1]), sys.argv[2], sys.argv[3]


class Handler(http.server.SimpleHTTPRequestHandler):
    def do_POST(self):
        name = os.path.basename(self.path.strip("/")) or "post"
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        tmp = os.path.join(out, "." + name + ".tmp")
        with open(tmp, "wb") as f:
            f.write(body)
        os.replace(tmp, os.path.join(out, name + ".json"))
        self.send_response(204)
        self.end_headers()

    def log_message(self, fmt, *args):
        pass


srv = http.server.ThreadingHTTPServer(("127.0.0.1", port), partial(Handler, directory=root))
print("ready", flush=True)
srv.serve_forever()
