#!/usr/bin/env python3
"""A small Chrome DevTools Protocol client on the standard library alone (the GPU machine
has no Selenium), for benches/map-gpu/.

    cdp.py PORT eval URL JSFILE   opens URL in the browser's first page, evaluates JSFILE's
                                  expression (awaiting a promise) and prints its JSON value
    cdp.py PORT gpu               prints the browser's GPU facts (SystemInfo.getInfo): the
                                  devices, the GL renderer and the WebGL feature status
"""
import base64
import json
import os
import socket
import struct
import sys
import time
import urllib.request


class Conn:
    def __init__(self, port, target):
        for _ in range(150):  # the DevTools endpoint comes up a moment after the browser
            try:
                listing = json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/json/{target}", timeout=2))
                break
            except OSError:
                time.sleep(0.2)
        else:
            sys.exit(f"no DevTools endpoint on port {port}")
        if target == "list":
            listing = [t for t in listing if t.get("type") == "page"][0]
        path = listing["webSocketDebuggerUrl"].split(f":{port}", 1)[1]
        self.s = socket.create_connection(("127.0.0.1", port))
        key = base64.b64encode(os.urandom(16)).decode()
        self.s.sendall((f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
                        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
        self.buf = b""
        while b"\r\n\r\n" not in self.buf:
            self.buf += self.s.recv(4096)
        self.buf = self.buf.split(b"\r\n\r\n", 1)[1]
        self.next_id = 0
        self.events = []  # events that arrived while waiting for a reply

    def _exact(self, n):
        while len(self.buf) < n:
            chunk = self.s.recv(1 << 20)
            if not chunk:
                raise EOFError("the browser closed the connection")
            self.buf += chunk
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def _send(self, obj):
        data = json.dumps(obj).encode()
        mask = os.urandom(4)
        n = len(data)
        if n < 126:
            head = bytes([0x81, 0x80 | n])
        elif n < 65536:
            head = bytes([0x81, 0xFE]) + struct.pack(">H", n)
        else:
            head = bytes([0x81, 0xFF]) + struct.pack(">Q", n)
        self.s.sendall(head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(data)))

    def _recv(self):
        # Chrome sends unfragmented text frames.
        b0, b1 = self._exact(2)
        n = b1 & 0x7F
        if n == 126:
            n = struct.unpack(">H", self._exact(2))[0]
        elif n == 127:
            n = struct.unpack(">Q", self._exact(8))[0]
        payload = self._exact(n)
        return json.loads(payload) if b0 & 0x0F == 1 else None

    def wait_for(self, event):
        while True:
            m = self.events.pop(0) if self.events else self._recv()
            if m and m.get("method") == event:
                return m["params"]

    def call(self, method, params=None):
        self.next_id += 1
        self._send({"id": self.next_id, "method": method, "params": params or {}})
        while True:
            m = self._recv()
            if m and m.get("id") == self.next_id:
                if "error" in m:
                    sys.exit(f"{method}: {m['error']}")
                return m["result"]
            if m and m.get("method") == "Runtime.consoleAPICalled":
                print("console:", " ".join(str(a.get("value")) for a in m["params"]["args"]), file=sys.stderr)
            elif m and "method" in m:
                self.events.append(m)


def main():
    port, mode = int(sys.argv[1]), sys.argv[2]
    if mode == "gpu":
        g = Conn(port, "version").call("SystemInfo.getInfo")["gpu"]
        print(json.dumps({
            "devices": g.get("devices"),
            "glRenderer": (g.get("auxAttributes") or {}).get("glRenderer"),
            "featureStatus": {k: v for k, v in (g.get("featureStatus") or {}).items() if k.startswith("webgl")},
        }, indent=1))
    elif mode == "eval":
        url, jsfile = sys.argv[3], sys.argv[4]
        c = Conn(port, "list")
        c.call("Runtime.enable")
        c.call("Page.enable")
        c.call("Page.navigate", {"url": url})
        c.wait_for("Page.loadEventFired")
        r = c.call("Runtime.evaluate", {"expression": open(jsfile).read(), "awaitPromise": True,
                                        "returnByValue": True, "timeout": 300000})
        print(json.dumps(r.get("exceptionDetails") or r["result"].get("value"), indent=1))
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
