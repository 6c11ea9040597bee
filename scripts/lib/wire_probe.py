"""The cases of scripts/probe-original: hand-made datagrams in the original's format sent to a
node (the original, or a port node of either backend) from a raw socket, and what it sends back.

Each case returns (observation, facts): a line for the table and the facts its verdict reads.
`verdicts` holds, per case, what the original does and what the port does (the same, or the
difference MIGRATION.md Part 2 declares); a node that does otherwise fails the probe.
"""

import random
import select
import socket
import threading
import time

from wire import PAYLOAD, describe, make_ack, num_dgrams, parse, set_header, set_resend_time

PING = 0x11
_ids = iter(range(random.randrange(1000, 1 << 28), 1 << 30))
_ids_lock = threading.Lock()


def new_tid():
    with _ids_lock:
        return next(_ids)


def data(got):
    return [parse(d) | {"raw": d, "ms": ms} for ms, d in got if not parse(d).get("ack")]


def acks(got):
    return [parse(d) | {"raw": d, "ms": ms} for ms, d in got if parse(d).get("ack")]


def one_datagram_request(peer, kind):
    """1. A one-datagram 0x11 request of 1 byte from a non-member: the ACK and the reply."""
    tid = new_tid()
    peer.send(set_header(1, PING, 0, tid, True) + b"\x00")
    got = peer.collect(3, until=lambda g: data(g) and acks(g))
    ack, reply = (acks(got) or [None])[0], (data(got) or [None])[0]
    facts = {"ack_is_makeAck": ack is not None and ack["raw"] == make_ack(0, tid, False, False),
             "reply": reply and {k: reply[k] for k in ("type", "init", "error", "nice", "size", "dgram", "len")}}
    text = "; ".join(describe(x["raw"]) for x in [ack, reply] if x) or "nothing"
    return text + (" (the ACK = makeAck(0, tid, false, false))" if facts["ack_is_makeAck"] else ""), facts


def large_reply(peer, kind):
    """2. The sizes of a reply's datagrams to a stranger at another address. The original's only
    handler answering a stranger with more than a datagram is 0xfd (an HTTP request carried over
    UDP: the page comes back); the port's is its stats (type 3)."""
    tid = new_tid()
    if kind == "original":
        request = b"GET / HTTP/1.0\r\n\r\n\x00" + socket.inet_aton(peer.sock.getsockname()[0])
        msg_type = 0xFD
    else:
        request, msg_type = b"", 3
    peer.send(set_header(len(request), msg_type, 0, tid, True) + request)
    got = peer.collect(5, until=lambda g: _whole(data(g)))
    replies = {d["dgram"]: d for d in data(got) if d["tid"] == tid}
    sizes = [replies[n]["len"] for n in sorted(replies)]
    size = next(iter(replies.values()))["size"] if replies else 0
    facts = {"sizes": sizes, "size": size, "whole": _whole(list(replies.values()))}
    shown = f"{sizes[:3]}...{sizes[-1:]}" if len(sizes) > 4 else str(sizes)
    return f"a {size}-byte reply in {len(sizes)} datagrams of {shown} bytes", facts


def _whole(replies):
    """Every byte of the reply came (each datagram counted once)."""
    if not replies:
        return False
    payloads = {d["dgram"]: d["len"] - 12 for d in replies}
    return sum(payloads.values()) >= replies[0]["size"]


def refusal(peer, kind):
    """3. A request the node will not take: a message size of 0x7fffffff (the original cannot
    allocate it, ENOMEM, UdpServer.cpp:1734; the port's limit is 291,191,900 bytes)."""
    tid = new_tid()
    peer.send(set_header(0x7FFFFFFF, PING, 0, tid, True) + bytes(PAYLOAD))
    got = peer.collect(3, until=lambda g: any(a["cancel"] for a in acks(g)))
    cancel = next((a for a in acks(got) if a["cancel"]), None)
    facts = {"cancel": cancel is not None, "init": cancel and cancel["init"]}
    return ("; ".join(describe(d) for _, d in got) or "nothing"), facts


def short_message(peer, kind):
    """4. A one-datagram message whose size (100) exceeds its payload (10 bytes)."""
    tid = new_tid()
    peer.send(set_header(100, PING, 0, tid, True) + bytes(10))
    got = peer.collect(1.5, until=lambda g: data(g))
    facts = {"replied": bool(data(got)), "acked": bool(acks(got))}
    return ("; ".join(describe(d) for _, d in got) or "nothing (dropped)"), facts


def cancel_empty_reply(peer, kind):
    """5. The requester cancels an empty reply instead of ACKing it: once before any resend,
    then again after the first resend."""
    tid = new_tid()
    peer.send(set_header(1, PING, 0, tid, True) + b"\x00")
    first = peer.collect(3, until=lambda g: data(g), ack_data=False, grace=0)
    if not data(first):
        return "no reply", {"replied": False}
    peer.send(make_ack(0, tid, True, True))
    after_first = [d for d in data(peer.collect(1.2, ack_data=False)) if d["tid"] == tid]
    peer.send(make_ack(0, tid, True, True))
    after_second = [d for d in data(peer.collect(2.2, ack_data=False)) if d["tid"] == tid]
    facts = {"replied": True, "resent_after_first": len(after_first), "resent_after_second": len(after_second)}
    return (f"reply resent {len(after_first)}x after the first cancel (at {[d['ms'] for d in after_first]} ms), "
            f"{len(after_second)}x after the second"), facts


def ack_bit_data(peer, kind):
    """7a. A 12-byte datagram with the ACK bit: a 0-byte 0x11 request with the ACK bit set."""
    tid = new_tid()
    peer.send(set_header(0, PING, 0, tid, True, ack_bit=True))
    got = peer.collect(1.5, until=lambda g: data(g))
    facts = {"replied": bool(data(got))}
    return ("; ".join(describe(d) for _, d in got) or "nothing (dropped)"), facts


def short_non_last(peer, kind):
    """7b. A 3000-byte message whose datagram 0 carries 3 bytes, then datagrams 1 and 2 whole."""
    tid = new_tid()
    peer.send(set_header(3000, PING, 0, tid, True) + b"abc")
    peer.send(set_header(3000, PING, 1, tid, True) + bytes(PAYLOAD))
    peer.send(set_header(3000, PING, 2, tid, True) + bytes(3000 - 2 * PAYLOAD))
    got = peer.collect(1.5, until=lambda g: data(g))
    facts = {"replied": bool(data(got)), "acked": sorted(a["dgram"] for a in acks(got))}
    return f"ACKs of {facts['acked']}; " + ("a reply" if facts["replied"] else "no reply"), facts


CASES = [("1 one-datagram request", one_datagram_request), ("2 datagram sizes", large_reply),
         ("3 refusal cancel ACK", refusal), ("4 msgSize > payload, 1 datagram", short_message),
         ("5 cancel of an empty reply", cancel_empty_reply), ("7a 12 bytes with the ACK bit", ack_bit_data),
         ("7b short non-last datagram", short_non_last)]


class PingRecorder(threading.Thread):
    """6. A member that never answers: the node's pings to it, with their arrival times."""

    def __init__(self, sock):
        super().__init__(daemon=True)
        self.sock, self.got, self.stop = sock, [], threading.Event()
        self.began = time.monotonic()

    def run(self):
        while not self.stop.is_set():
            if select.select([self.sock], [], [], 0.05)[0]:
                payload, _ = self.sock.recvfrom(70000)
                self.got.append((int((time.monotonic() - self.began) * 1000), payload))

    def summary(self):
        pings = [parse(d) | {"ms": ms} for ms, d in self.got if not parse(d).get("ack") and parse(d)["type"] == PING]
        if not pings:
            return "no ping", {"pings": False}
        first = pings[0]["tid"]
        copies = [p["ms"] for p in pings if p["tid"] == first]
        gaps = [b - a for a, b in zip(copies, copies[1:])]
        ids = list(dict.fromkeys(p["tid"] for p in pings))
        facts = {"pings": True, "first_tid": first, "gaps": gaps, "ids": ids[:4], "size": pings[0].get("size")}
        return (f"first ping tid {first} ({pings[0].get('size')} bytes), ids {ids[:4]}; unanswered, "
                f"its copies {len(copies)}x, gaps {gaps} ms"), facts


def ping_gaps_match(gaps, backoff, max_wait, slack=250):
    """The gaps between copies of one unanswered request against setResendTime."""
    wanted = [set_resend_time(backoff, max_wait, i) for i in range(len(gaps))]
    return bool(gaps) and all(abs(g - w) <= slack + w * 0.1 for g, w in zip(gaps, wanted)), wanted
