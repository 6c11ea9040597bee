@_spi(LoopInternals) import LoopCore

/// Peers that recently acknowledged something this server sent: proof that they
/// receive from us at the address they claim. A reply to any other address may be
/// a reflection (a request with a forged source), so its resends are bounded by
/// what that address sent (`UdpServerConfiguration.unacknowledgedReplyFactor`).
///
/// Bounded: the oldest entries go first, and an entry is trusted for `memoryMs`.
struct AcknowledgingPeers {
    private var lastAck: [PeerAddress: Int64] = [:]
    private var order = FifoQueue<(peer: PeerAddress, at: Int64)>()
    let capacity: Int
    let memoryMs: Int64

    init(capacity: Int, memoryMs: Int64) {
        self.capacity = max(1, capacity)
        self.memoryMs = memoryMs
    }

    mutating func acknowledged(by peer: PeerAddress, at now: Int64) {
        lastAck[peer] = now
        order.append((peer, now))
        while lastAck.count > capacity, let oldest = order.popFirst() {
            if lastAck[oldest.peer] == oldest.at { lastAck[oldest.peer] = nil }
        }
        // Refreshing a busy peer appends to `order` every time; keep it bounded by the live entries.
        if order.count > 2 * lastAck.count + 64 { rebuild() }
    }

    func contains(_ peer: PeerAddress, at now: Int64) -> Bool {
        guard let at = lastAck[peer] else { return false }
        return now - at < memoryMs
    }

    var count: Int { lastAck.count }

    private mutating func rebuild() {
        var fresh = FifoQueue<(peer: PeerAddress, at: Int64)>()
        for (peer, at) in lastAck.sorted(by: { $0.value < $1.value }) { fresh.append((peer, at)) }
        order = fresh
    }
}
