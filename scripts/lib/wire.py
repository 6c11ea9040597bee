"""The original's UDP datagrams by hand, for probing a node on the wire (scripts/probe-original).

The layout is the original's (UdpProtocol.h), all words big-endian:
  word 0: bits 31-24 message type, 23 ACK, 22 cancel, 21 nice, 20-0 datagram number
  word 1: bit 31 sent by the initiator, 30 had error, 29-0 transaction id
  word 2: message size (data datagrams only); the payload follows.
An ACK is the first 8 bytes alone: the original takes only an 8-byte datagram as an ACK.

`make_ack` and `set_header` transcribe UdpProtocol::makeAck and ::setHeader, as
`OriginalProtocol` in Tests/UdpServerTests/OriginalConformanceTests.swift does.
"""

import ctypes
import os
import select
import socket
import struct
import time

CLONE_NEWNET = 0x40000000
DGRAM_SIZE = 1500 - 28 - 10  # UdpSlot.h DGRAM_SIZE (SMALLDGRAMS): to every peer but itself
PAYLOAD = DGRAM_SIZE - 12
_libc = ctypes.CDLL(None, use_errno=True)


def make_ack(dgram_num, trans_id, we_initiated, cancel):
    """UdpProtocol::makeAck (UdpProtocol.h:164)."""
    number = (dgram_num & 0x001FFFFF) | 0x00800000
    if cancel:
        number |= 0x00400000
    return struct.pack(">II", number, trans_id | (0x80000000 if we_initiated else 0))


def set_header(msg_size, msg_type, dgram_num, trans_id, we_initiated, had_error=False, nice=False, ack_bit=False):
    """UdpProtocol::setHeader (UdpProtocol.h:183); `ack_bit` forges a datagram the original
    would never write."""
    number = dgram_num | msg_type << 24 | (0x00200000 if nice else 0) | (0x00800000 if ack_bit else 0)
    ident = trans_id | (0x80000000 if we_initiated else 0) | (0x40000000 if had_error else 0)
    return struct.pack(">III", number, ident, msg_size & 0xFFFFFFFF)


def num_dgrams(msg_size, max_dgram_size=DGRAM_SIZE):
    """UdpProtocol::getNumDgrams."""
    n = msg_size // (max_dgram_size - 12)
    return 1 if n == 0 else n + (1 if msg_size % (max_dgram_size - 12) else 0)


def set_resend_time(backoff, max_wait, resend_count):
    """UdpSlot::setResendTime with a given backoff and max wait (UdpSlot.cpp:528-545)."""
    value = backoff * (1 << resend_count)
    return min(value, max_wait)


def parse(datagram):
    """The fields of a datagram as the original reads them."""
    if len(datagram) < 8:
        return {"len": len(datagram), "short": True}
    w0, w1 = struct.unpack(">II", datagram[:8])
    fields = {"len": len(datagram), "type": w0 >> 24, "ack": bool(w0 & 0x00800000) and len(datagram) == 8,
              "cancel": bool(w0 & 0x00400000), "nice": bool(w0 & 0x00200000), "dgram": w0 & 0x001FFFFF,
              "init": bool(w1 & 0x80000000), "error": bool(w1 & 0x40000000), "tid": w1 & 0x3FFFFFFF}
    if not fields["ack"] and len(datagram) >= 12:
        fields["size"] = struct.unpack(">I", datagram[8:12])[0]
    return fields


def describe(datagram):
    f = parse(datagram)
    if f.get("short"):
        return f"{f['len']} bytes"
    bits = f"init={int(f['init'])}"
    if f["ack"]:
        return f"ACK d{f['dgram']} {bits} cancel={int(f['cancel'])} [{datagram.hex()}]"
    return (f"DATA 0x{f['type']:02x} d{f['dgram']} size={f.get('size')} {bits} err={int(f['error'])} "
            f"nice={int(f['nice'])} len={f['len']}")


def socket_in(namespace, ip, port=0):
    """A UDP socket bound to ip:port inside network namespace `namespace` (it stays there)."""
    home = os.open("/proc/self/ns/net", os.O_RDONLY)
    target = os.open(f"/run/netns/{namespace}", os.O_RDONLY)
    try:
        if _libc.setns(target, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), f"setns {namespace}")
        try:
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sock.bind((ip, port))
        finally:
            if _libc.setns(home, CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), "setns back")
    finally:
        os.close(home)
        os.close(target)
    sock.setblocking(False)
    return sock


class Peer:
    """A raw socket speaking the original's protocol to one node."""

    def __init__(self, sock, target):
        self.sock = sock
        self.target = target  # (ip, port)
        self.start = time.monotonic()

    def send(self, datagram):
        self.sock.sendto(datagram, self.target)

    def drain(self):
        while True:
            try:
                self.sock.recvfrom(70000)
            except BlockingIOError:
                return

    def collect(self, seconds, until=None, ack_data=True, grace=0.15):
        """(ms since `mark`, bytes) of what the node sends for `seconds`, or until `until(list)`
        holds (then `grace` more). Data datagrams are ACKed as a requester ACKs a reply."""
        got, deadline, begun = [], time.monotonic() + seconds, time.monotonic()
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return got
            ready, _, _ = select.select([self.sock], [], [], left)
            if not ready:
                continue
            data, source = self.sock.recvfrom(70000)
            if tuple(source) != tuple(self.target):
                continue
            got.append((int((time.monotonic() - begun) * 1000), data))
            f = parse(data)
            if ack_data and not f.get("short") and not f["ack"] and not f["init"]:
                self.send(make_ack(f["dgram"], f["tid"], True, False))
            if until and until(got) and deadline - time.monotonic() > grace:
                deadline = time.monotonic() + grace
