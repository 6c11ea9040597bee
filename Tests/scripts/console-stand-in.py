"""A stand-in for `loop-harness serve --http`, for Tests/scripts/test-browser-check:
the admin console's contract in Python's http.server, whole, or with one defect.

    python3 console-stand-in.py [--backend NAME] [--defect DEFECT] serve --port 0 --http 0 --save PATH --json

Contract: stdout's first line is {"event":"serving",...,"httpPort":N,"pid":P}; GET / is
the page (a <meta name="admin-token">, #backend, #uptime, #updates, <td data-figure>
cells, <button id="save-exit">, #save-status), updated from GET /status.json once a
second; POST /save-exit with X-Admin-Token writes PATH (JSON with "backend"), answers
{"ok":true} and exits 0; without the token 403, GET 405.
"""

import argparse
import json
import os
import secrets
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

DEFECTS = {
    "none": "the contract, whole",
    "frozen-figures": "/status.json gives the same figures every time",
    "no-live-updates": "the page never fetches /status.json",
    "wrong-backend": "the page names the other backend",
    "open-door": "Save & Exit obeys a POST without the token",
    "dead-button": "the button does nothing",
    "covered-button": "a transparent layer lies over the button (a script's .click() would still work)",
    "no-exit": "the node answers ok but does not exit",
    "exit-1": "the node exits 1 after saving",
    "no-save": "the node exits 0 without writing the save file",
}

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="admin-token" content="{token}">
<title>stand-in node</title>
<style>
body{{font:14px sans-serif;margin:1em}} td{{text-align:right}}
#cover{{position:fixed;inset:0;background:transparent;z-index:10}}
</style></head>
<body>
<p>backend <span id="backend">{backend}</span> uptime <span id="uptime">0</span>
live updates <span id="updates">0</span>
<button id="save-exit" type="button">Save &amp; Exit</button><span id="save-status"></span></p>
{tables}
{cover}
<script>
"use strict";
const token = document.querySelector('meta[name="admin-token"]').content;
let updates = 0, stopped = false;
async function refresh() {{
  if (stopped) return;
  try {{
    const stats = await (await fetch("/status.json", {{cache: "no-store"}})).json();
    document.getElementById("uptime").textContent = stats.uptimeMs + " ms";
    for (const [section, fields] of Object.entries(stats)) {{
      if (fields === null || typeof fields !== "object") continue;
      for (const [name, value] of Object.entries(fields)) {{
        const cell = document.querySelector('td[data-figure="' + section + "." + name + '"]');
        if (cell) cell.textContent = String(value);
      }}
    }}
    document.getElementById("updates").textContent = String(++updates);
  }} catch (error) {{}}
  setTimeout(refresh, 1000);
}}
{listener}
{start}
</script>
</body></html>
"""

LISTENER = """document.getElementById("save-exit").addEventListener("click", async () => {
  const status = document.getElementById("save-status");
  status.textContent = "saving";
  try {
    const reply = await (await fetch("/save-exit", {method: "POST", headers: {"X-Admin-Token": token}})).json();
    if (reply.ok) { stopped = true; status.textContent = "saved"; } else { status.textContent = "refused: " + reply.error; }
  } catch (error) { status.textContent = "failed: " + error; }
});"""


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--backend", default="epoll")
    parser.add_argument("--defect", default="none", choices=sorted(DEFECTS))
    parser.add_argument("command", choices=["serve"])
    parser.add_argument("--port")
    parser.add_argument("--http", type=int, required=True)
    parser.add_argument("--save", required=True)
    parser.add_argument("--json", action="store_true")
    options = parser.parse_args()
    defect = options.defect
    token = secrets.token_hex(16)
    started = time.monotonic()
    counts = {"accepted": 0, "requests": 0}
    lock = threading.Lock()

    def stats():
        elapsed = 0.5 if defect == "frozen-figures" else time.monotonic() - started
        with lock:
            return {
                "backend": options.backend, "uptimeMs": int(elapsed * 1000),
                "loop": {"polls": int(elapsed * 100), "wakeups": 1},
                "server": {"datagramsIn": 0, "datagramsOut": 0},
                "node": {"adminRefused": 0},
                "tcp": {"accepted": 1 if defect == "frozen-figures" else counts["accepted"]},
                "http": {"requests": 1 if defect == "frozen-figures" else counts["requests"]},
            }

    def page():
        tables = "".join(
            f"<table><caption>{section}</caption>" + "".join(
                f'<tr><th>{name}</th><td data-figure="{section}.{name}">{value}</td></tr>' for name, value in fields.items())
            + "</table>"
            for section, fields in stats().items() if isinstance(fields, dict))
        backend = options.backend if defect != "wrong-backend" else {"epoll": "legacy"}.get(options.backend, "epoll")
        return PAGE.format(token=token, backend=backend, tables=tables,
                           cover='<div id="cover"></div>' if defect == "covered-button" else "",
                           listener="" if defect == "dead-button" else LISTENER,
                           start="" if defect == "no-live-updates" else "refresh();")

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def setup(self):
            super().setup()
            with lock:
                counts["accepted"] += 1

        def log_message(self, *_):
            pass

        def reply(self, status, kind, body):
            data = body.encode()
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):
            with lock:
                counts["requests"] += 1
            if self.path == "/":
                self.reply(200, "text/html; charset=utf-8", page())
            elif self.path == "/status.json":
                self.reply(200, "application/json", json.dumps(stats()))
            elif self.path == "/save-exit":
                self.reply(405, "text/plain", "use POST")
            else:
                self.reply(404, "text/plain", "not found")

        def do_POST(self):
            with lock:
                counts["requests"] += 1
            length = int(self.headers.get("Content-Length") or 0)
            self.rfile.read(length)
            if self.path != "/save-exit":
                self.reply(404, "text/plain", "not found")
                return
            if self.headers.get("X-Admin-Token") != token and defect != "open-door":
                self.reply(403, "application/json", json.dumps({"ok": False, "error": "missing or wrong X-Admin-Token"}))
                return
            if defect != "no-save":
                with open(options.save, "w") as file:
                    json.dump(stats(), file)
            self.reply(200, "application/json", json.dumps({"ok": True, "saved": True}))
            self.wfile.flush()
            if defect != "no-exit":
                threading.Thread(target=server.shutdown).start()

    server = ThreadingHTTPServer(("127.0.0.1", options.http), Handler)
    server.daemon_threads = True
    print(json.dumps({"event": "serving", "backend": options.backend, "port": 0,
                      "httpPort": server.server_address[1], "pid": os.getpid()}), flush=True)
    server.serve_forever(poll_interval=0.05)
    print(json.dumps({"event": "stopped", "saved": defect != "no-save"}), flush=True)
    sys.exit(1 if defect == "exit-1" else 0)


if __name__ == "__main__":
    main()
