"""What the original and the port must do in each case of scripts/probe-original: the same, or
the difference MIGRATION.md Part 2 declares (each rule says which row)."""

from wire import DGRAM_SIZE
from wire_probe import ping_gaps_match

PING_CASE = "6 its pings to a silent member"
EMPTY_REPLY = {"type": 0x11, "init": False, "error": False, "nice": False, "size": 0, "dgram": 0, "len": 12}


def _sizes_are(facts, size):
    sizes = facts.get("sizes") or []
    return facts.get("whole") and len(sizes) > 1 and all(s == size for s in sizes[:-1]) and sizes[-1] <= size


RULES = {
    # Both: an ACK of makeAck's bytes, then an empty reply with neither initiator nor error bit.
    "1 one-datagram request": {
        "original": (lambda f: f["ack_is_makeAck"] and f["reply"] == EMPTY_REPLY, "makeAck's ACK and an empty reply"),
        "port": (lambda f: f["ack_is_makeAck"] and f["reply"] == EMPTY_REPLY, "the original's ACK and reply"),
    },
    # Both: 1462-byte datagrams to a peer on the LAN (the original's DGRAM_SIZE).
    "2 datagram sizes": {
        "original": (lambda f: _sizes_are(f, DGRAM_SIZE), f"the reply whole, in {DGRAM_SIZE}-byte datagrams"),
        "port": (lambda f: _sizes_are(f, DGRAM_SIZE), f"the reply whole, in {DGRAM_SIZE}-byte datagrams"),
    },
    # Declared: the original's refusal sets the initiator bit (no requester's slot has that key).
    "3 refusal cancel ACK": {
        "original": (lambda f: f["cancel"] and f["init"], "a cancel ACK with the initiator bit"),
        "port": (lambda f: f["cancel"] and not f["init"], "a cancel ACK without the initiator bit"),
    },
    # Declared: the original takes the datagram as the whole message; the port drops it.
    "4 msgSize > payload, 1 datagram": {
        "original": (lambda f: f["replied"], "a reply (the handler ran)"),
        "port": (lambda f: not f["replied"] and not f["acked"], "nothing: dropped"),
    },
    # Declared: the original ignores a cancel of an empty reply never resent (UdpSlot.cpp:1266).
    "5 cancel of an empty reply": {
        "original": (lambda f: f["replied"] and f["resent_after_first"] >= 1 and f["resent_after_second"] == 0,
                     "the first cancel ignored (a resend follows), the second obeyed"),
        "port": (lambda f: f["replied"] and f["resent_after_first"] == 0 and f["resent_after_second"] == 0,
                 "the first cancel obeyed"),
    },
    # Declared: 12 bytes with the ACK bit are data to the original, malformed to the port.
    "7a 12 bytes with the ACK bit": {
        "original": (lambda f: f["replied"], "a reply: it is a request there"),
        "port": (lambda f: not f["replied"], "nothing: dropped"),
    },
    # Declared: the original copies a short non-last datagram; the port drops it.
    "7b short non-last datagram": {
        "original": (lambda f: f["replied"] and f["acked"] == [0, 1, 2], "ACKs of 0, 1, 2 and a reply"),
        "port": (lambda f: not f["replied"] and 0 not in f["acked"], "datagram 0 dropped, no reply"),
    },
    # The original: ids from 0, its unanswered ping resent after setResendTime(1000, 2000, n).
    PING_CASE: {
        "original": (lambda f: f["pings"] and f["first_tid"] < 64 and ping_gaps_match(f["gaps"], 1000, 2000)[0],
                     "a first id near 0; copies 1000, 2000, 2000 ms apart"),
        "port": (lambda f: f["pings"] and f["size"] == 112 and ping_gaps_match(f["gaps"], 1000, 2000)[0],
                 "the original's 112-byte PingInfo; copies 1000, 2000, 2000 ms apart (its first id is random)"),
    },
}


# The cases whose rules tell the two sides apart: a declared difference each (case 6 differs only
# in the first id, which the port's rule leaves free).
DECLARED = ["3 refusal cancel ACK", "4 msgSize > payload, 1 datagram", "5 cancel of an empty reply",
            "7a 12 bytes with the ACK bit", "7b short non-last datagram"]


def verdict(title, side, facts):
    check, expected = RULES[title][side]
    try:
        return bool(check(facts)), expected
    except (KeyError, TypeError):
        return False, expected
