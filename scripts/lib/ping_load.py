#!/usr/bin/env python3
"""A load of ping RPCs (message type 0x11) at a fixed rate, spoken on the wire directly, so that
the original and both builds of the port answer the very same datagrams (scripts/syscall-profile).

  ping_load.py --to IP:PORT [--rate N] [--size N] [--max-in-flight N]

Runs until SIGTERM/SIGINT (or the end of standard input); every 0.2 s, and once more at the end,
prints a JSON line of running totals: {"t": seconds, "sent", "replies" (answers of any kind),
"errors" (error replies among them), "timeouts"}.

The request is `--size` bytes (1 by default): the original answers a 0x11 from an address not in
its hosts.conf with an empty reply whatever its size, but sizes 3, 4, 5, 8 and sizeof(PingInfo)
(112) mean something to it; the port answers a payload that is not a PingInfo with an error
reply. Either way one request datagram, the server's ACK, one reply datagram and our ACK.

The header (Sources/UdpServer/Wire/DatagramHeader.swift, the original's layout), big-endian:
  word 0: bits 31-24 message type, 23 ACK, 22 cancel, 21 nice, 20-0 datagram number
  word 1: bit 31 sent by the initiator, 30 had error, 29-0 transaction id
  word 2: message size (data datagrams only)
"""

import json
import os
import random
import select
import signal
import socket
import struct
import sys
import time

PING_TYPE = 0x11
ACK_BIT = 0x0080_0000
INITIATOR_BIT = 0x8000_0000
HAD_ERROR_BIT = 0x4000_0000
TRANSACTION_MASK = 0x3FFF_FFFF
ATTEMPT_TIMEOUT_S = 2.0
REPORT_EVERY_S = 0.2


def request_datagram(transaction, payload):
    word0 = PING_TYPE << 24  # datagram 0, not an ACK
    word1 = INITIATOR_BIT | transaction
    return struct.pack(">III", word0, word1, len(payload)) + payload


def ack_datagram(message_type, datagram_number, transaction):
    # The requester's ACK of a reply datagram carries the initiator bit.
    return struct.pack(">II", message_type << 24 | ACK_BIT | datagram_number, INITIATOR_BIT | transaction)


class Load:
    def __init__(self, address, rate, size, max_in_flight):
        self.address = address
        self.rate = rate
        self.payload = bytes([0x5A]) * size
        self.max_in_flight = max_in_flight
        self.socket = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.socket.setblocking(False)
        self.socket.connect(address)
        self.next_transaction = random.randrange(1, TRANSACTION_MASK // 2)
        self.in_flight = {}  # transaction -> when sent
        self.totals = {"sent": 0, "replies": 0, "errors": 0, "timeouts": 0}
        self.started = time.monotonic()
        self.stopping = False

    def report(self):
        line = dict(self.totals, t=round(time.monotonic() - self.started, 3))
        sys.stdout.write(json.dumps(line) + "\n")
        sys.stdout.flush()

    def send_due(self, now):
        due = int((now - self.started) * self.rate) - self.totals["sent"]
        while due > 0 and len(self.in_flight) < self.max_in_flight:
            transaction = self.next_transaction
            self.next_transaction = (self.next_transaction + 1) & TRANSACTION_MASK
            try:
                self.socket.send(request_datagram(transaction, self.payload))
            except (BlockingIOError, ConnectionRefusedError):
                return  # the next turn tries again
            self.in_flight[transaction] = now
            self.totals["sent"] += 1
            due -= 1

    def receive(self):
        while True:
            try:
                datagram = self.socket.recv(65536)
            except (BlockingIOError, InterruptedError):
                return
            except ConnectionRefusedError:  # an ICMP for an earlier request: nobody there yet
                continue
            if len(datagram) < 8:
                continue
            word0, word1 = struct.unpack_from(">II", datagram)
            transaction = word1 & TRANSACTION_MASK
            if word0 & ACK_BIT or word1 & INITIATOR_BIT:
                continue  # the server's ACK of our request
            self.socket.send(ack_datagram(word0 >> 24, word0 & 0x1F_FFFF, transaction))
            if self.in_flight.pop(transaction, None) is not None:
                # The port's error reply to a payload that is not a PingInfo is its answer too:
                # "errors" counts those among the replies.
                self.totals["replies"] += 1
                if word1 & HAD_ERROR_BIT:
                    self.totals["errors"] += 1

    def expire(self, now):
        old = [t for t, sent in self.in_flight.items() if now - sent > ATTEMPT_TIMEOUT_S]
        for transaction in old:
            del self.in_flight[transaction]
        self.totals["timeouts"] += len(old)

    def run(self):
        last_report = self.started
        watched = [self.socket]
        if not os.isatty(0):
            watched.append(sys.stdin)
        while not self.stopping:
            now = time.monotonic()
            self.send_due(now)
            try:
                readable, _, _ = select.select(watched, [], [], 0.001)
            except InterruptedError:
                readable = []
            if self.socket in readable:
                self.receive()
            if sys.stdin in readable and not sys.stdin.readline():
                break  # the end of input stops the load (its parent has gone)
            now = time.monotonic()
            self.expire(now)
            if now - last_report >= REPORT_EVERY_S:
                self.report()
                last_report = now
        self.report()


def main():
    args = sys.argv[1:]
    options = {"--to": None, "--rate": "1000", "--size": "1", "--max-in-flight": "64"}
    while args:
        name = args.pop(0)
        if name not in options or not args:
            sys.exit(f"usage: ping_load.py --to IP:PORT [--rate N] [--size N] [--max-in-flight N] ({name}?)")
        options[name] = args.pop(0)
    if not options["--to"]:
        sys.exit("ping_load.py: --to IP:PORT is required")
    ip, port = options["--to"].rsplit(":", 1)
    load = Load((ip, int(port)), int(options["--rate"]), int(options["--size"]), int(options["--max-in-flight"]))

    def stop(*_):
        load.stopping = True
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    load.run()


if __name__ == "__main__":
    main()
