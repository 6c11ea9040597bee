"""A stand-in for `loop-harness serve --http` in Tests/scripts/test-http-load: the same
command line, serving line, /status.json figures and SIGTERM exit, from a small
keep-alive HTTP server, so that scripts/http-load can be shown to fail when a node
misbehaves. (Not executable: test-scripts runs every executable here as a test.)

    HTTP_LOAD_NODE="python3 Tests/scripts/http-load-stand-in.py" scripts/http-load --quick

As "legacy" it refuses (503, then close) every connection past HTTP_LOAD_STAND_IN_OPEN
(default 150) open at once, as the select loop refuses descriptors past 1023.
HTTP_LOAD_STAND_IN_FAULT names misbehaviours (comma-separated):
    mute-after-hold   once 100 connections were open and then all but 5 closed, answer nothing
    unanswered        never answer every 25th connection
    drop-held         close every 10th connection 0.3 s after its first reply
    miscount          report three more open sockets than there are
    bad-exit          exit 3 on SIGTERM
"""

import json
import os
import selectors
import signal
import socket
import sys
import time

args = sys.argv[1:]
if not args or args[0] != "serve":
    print("usage: http-load-stand-in.py serve --port 0 --http 0 --json [--backend epoll|legacy]", file=sys.stderr)
    sys.exit(2)
backend = args[args.index("--backend") + 1] if "--backend" in args else "epoll"
faults = set(os.environ.get("HTTP_LOAD_STAND_IN_FAULT", "").split(","))
open_limit = int(os.environ.get("HTTP_LOAD_STAND_IN_OPEN", "150")) if backend == "legacy" else 1 << 30
started = time.monotonic()

listener = socket.socket()
listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
listener.bind(("127.0.0.1", 0))
listener.listen(128)
listener.setblocking(False)
selector = selectors.DefaultSelector()
selector.register(listener, selectors.EVENT_READ)
tcp = {"incomingOpen": 0, "accepted": 0, "refusedDescriptors": 0, "refusedAtLimit": 0, "closedLeastUsed": 0,
       "timedOut": 0}
http = {"requests": 0, "responses2xx": 0, "responses5xx": 0}
state = {"serial": 0, "maxOpen": 0, "muted": False, "stop": None}
drop_at = {}  # socket -> when to close it (drop-held)


def status_body():
    figures = dict(tcp)
    if "miscount" in faults:
        figures["incomingOpen"] += 3
    return json.dumps({"backend": backend, "uptimeMs": int((time.monotonic() - started) * 1000),
                       "loop": {}, "server": {}, "node": {}, "tcp": figures, "http": http}).encode()


def reply(status, body, keep_alive):
    reason = {200: "OK", 404: "Not Found", 503: "Service Unavailable"}[status]
    head = (f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n"
            f"Connection: {'keep-alive' if keep_alive else 'close'}\r\n\r\n")
    return head.encode() + body


def close(sock):
    selector.unregister(sock)
    sock.close()
    drop_at.pop(sock, None)
    tcp["incomingOpen"] -= 1
    if "mute-after-hold" in faults and state["maxOpen"] >= 100 and tcp["incomingOpen"] <= 5:
        state["muted"] = True


def accept():
    while True:
        try:
            sock, _ = listener.accept()
        except BlockingIOError:
            return
        tcp["accepted"] += 1
        if tcp["incomingOpen"] >= open_limit:
            tcp["refusedDescriptors"] += 1
            try:
                sock.send(reply(503, b"too many connections\n", False))
            except OSError:
                pass
            sock.close()
            continue
        sock.setblocking(False)
        state["serial"] += 1
        tcp["incomingOpen"] += 1
        state["maxOpen"] = max(state["maxOpen"], tcp["incomingOpen"])
        silent = "unanswered" in faults and state["serial"] % 25 == 0
        selector.register(sock, selectors.EVENT_READ, {"buffer": b"", "silent": silent, "serial": state["serial"],
                                                       "answered": 0})


def readable(sock, data):
    try:
        chunk = sock.recv(65536)
    except OSError:
        chunk = b""
    if not chunk:
        close(sock)
        return
    data["buffer"] += chunk
    while b"\r\n\r\n" in data["buffer"]:
        head, data["buffer"] = data["buffer"].split(b"\r\n\r\n", 1)
        http["requests"] += 1
        if data["silent"] or state["muted"]:
            continue
        path = head.split(b" ")[1] if head.count(b" ") >= 2 else b""
        keep_alive = b"connection: close" not in head.lower()
        if path == b"/status.json":
            http["responses2xx"] += 1
            message = reply(200, status_body(), keep_alive)
        else:
            message = reply(404, b"not found\n", keep_alive)
        try:
            sock.sendall(message)  # small replies to a client that reads: the buffer takes them
        except OSError:
            close(sock)
            return
        data["answered"] += 1
        if not keep_alive:
            close(sock)
            return
        if "drop-held" in faults and data["serial"] % 10 == 0 and data["answered"] == 1:
            drop_at[sock] = time.monotonic() + 0.3


def on_signal(number, _frame):
    state["stop"] = number


signal.signal(signal.SIGTERM, on_signal)
signal.signal(signal.SIGINT, on_signal)
print(json.dumps({"event": "serving", "backend": backend, "address": "127.0.0.1", "port": 0, "pid": os.getpid(),
                  "httpPort": listener.getsockname()[1]}, separators=(",", ":")), flush=True)
while state["stop"] is None:
    for key, _ in selector.select(timeout=0.05):
        if key.fileobj is listener:
            accept()
        else:
            readable(key.fileobj, key.data)
    now = time.monotonic()
    for sock in [s for s, t in drop_at.items() if t <= now]:
        close(sock)
print(json.dumps({"event": "stopped", "reason": "signal", "signal": state["stop"]}), flush=True)
sys.exit(3 if "bad-exit" in faults else 0)
