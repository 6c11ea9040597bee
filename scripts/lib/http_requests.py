#!/usr/bin/env python3
"""Sends COUNT keep-alive GETs of PATH to 127.0.0.1:PORT over one connection, one at a time,
reading each whole reply (Content-Length): a fixed number of requests, for scripts/http-profile.
Exit 1 on anything but a 200."""
import argparse
import socket
import sys


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--path", default="/status.json")
    p.add_argument("--count", type=int, default=1)
    args = p.parse_args()
    conn = socket.create_connection(("127.0.0.1", args.port), timeout=60)
    request = f"GET {args.path} HTTP/1.1\r\nHost: 127.0.0.1:{args.port}\r\n\r\n".encode()
    buffered = b""
    body_bytes = 0
    for _ in range(args.count):
        conn.sendall(request)
        while b"\r\n\r\n" not in buffered:
            chunk = conn.recv(65536)
            if not chunk:
                print("the connection closed before a reply")
                return 1
            buffered += chunk
        head, _, rest = buffered.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        if not lines[0].startswith(b"HTTP/1.1 200 "):
            print(f"not a 200: {lines[0].decode(errors='replace')}")
            return 1
        length = next(int(line.split(b":", 1)[1]) for line in lines[1:] if line.lower().startswith(b"content-length:"))
        while len(rest) < length:
            chunk = conn.recv(65536)
            if not chunk:
                print("the connection closed within a body")
                return 1
            rest += chunk
        buffered = rest[length:]
        body_bytes += length
    print(f"{args.count} replies of {body_bytes // args.count} body bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
