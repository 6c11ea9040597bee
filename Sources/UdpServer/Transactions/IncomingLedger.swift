@_spi(LoopInternals) import LoopCore

/// Who holds the incoming slots and buffered bytes, by peer address (IP), and
/// which partial requests may be evicted when someone else needs the room.
///
/// One peer's share is capped (`maxIncomingSlotsPerPeer`, `maxBufferedBytesPerPeer`),
/// so a flood from one address cannot take what every other peer needs. A partial
/// request that made no progress for `stalledAfterMs` is evictable: under pressure
/// (the peer's own share, or the server's totals) the oldest such one goes first, so
/// garbage left by a flood gives way the moment a real request needs its room.
struct IncomingLedger {
    struct Holding {
        var slots = 0
        var bytes = 0
        /// This peer's incoming transactions in start order; those that left
        /// `.receivingRequest` are dropped lazily.
        fileprivate var started = FifoQueue<Transaction>()
    }

    private var holdings: [UInt32: Holding] = [:]
    /// Every peer's incoming transactions in start order (lazily cleaned, like `started`).
    private var started = FifoQueue<Transaction>()
    /// Incoming transactions held now; the queues are rebuilt when entries no longer
    /// held outnumber them, so they cannot grow without bound behind one old entry.
    private var heldCount = 0

    /// How many of `ip`'s entries an eviction looks at before giving up; entries
    /// still progressing move to the back, so the scan is bounded and fair.
    private static let scanLimit = 16

    func holding(of ip: UInt32) -> (slots: Int, bytes: Int) {
        let h = holdings[ip]
        return (h?.slots ?? 0, h?.bytes ?? 0)
    }

    /// Peers holding anything now.
    var peerCount: Int { holdings.count }

    /// Entries in the queues, finished ones not yet dropped included (their bound is tested).
    var queuedEntries: (all: Int, byPeer: Int) { (started.count, holdings.values.reduce(0) { $0 + $1.started.count }) }

    mutating func added(_ transaction: Transaction) {
        let ip = transaction.key.peer.ip
        holdings[ip, default: Holding()].slots += 1
        holdings[ip]!.started.append(transaction)
        started.append(transaction)
        heldCount += 1
        compactIfSparse(ip)
    }

    mutating func removed(_ transaction: Transaction) {
        let ip = transaction.key.peer.ip
        guard var h = holdings[ip] else { return }
        h.slots -= 1
        if h.slots == 0 && h.bytes == 0 {
            holdings[ip] = nil
        } else {
            holdings[ip] = h
        }
        heldCount -= 1
    }

    mutating func reserved(_ bytes: Int, for ip: UInt32) {
        holdings[ip, default: Holding()].bytes += bytes
    }

    mutating func released(_ bytes: Int, for ip: UInt32) {
        guard bytes != 0, var h = holdings[ip] else { return }
        h.bytes -= bytes
        if h.slots == 0 && h.bytes == 0 {
            holdings[ip] = nil
        } else {
            holdings[ip] = h
        }
    }

    /// The oldest partial request of `ip` (or of anyone, for nil) that `isStalled`,
    /// taken off the queue; nil if none is found within the scan limit.
    mutating func evictionCandidate(of ip: UInt32?, isStalled: (Transaction) -> Bool) -> Transaction? {
        if let ip {
            guard holdings[ip] != nil else { return nil }
            // In place: a copy of the holding would copy its queue on the first pop.
            return Self.takeStalled(from: &holdings[ip]!.started, isStalled)
        }
        return Self.takeStalled(from: &started, isStalled)
    }

    private static func takeStalled(
        from queue: inout FifoQueue<Transaction>,
        _ isStalled: (Transaction) -> Bool
    ) -> Transaction? {
        var looked = 0
        while looked < scanLimit, let front = queue.popFirst() {
            guard front.phase == .receivingRequest else { continue } // done with: drop it
            looked += 1
            if isStalled(front) { return front }
            queue.append(front) // still progressing: look again later
        }
        return nil
    }

    /// Rebuilds the queues once they hold mostly transactions that are no longer
    /// partial, so memory stays proportional to what is actually held.
    private mutating func compactIfSparse(_ ip: UInt32) {
        if started.count > 2 * heldCount + 64 {
            started = Self.partialOnly(started)
        }
        if let h = holdings[ip], h.started.count > 2 * h.slots + 64 {
            holdings[ip]!.started = Self.partialOnly(h.started)
        }
    }

    private static func partialOnly(_ queue: FifoQueue<Transaction>) -> FifoQueue<Transaction> {
        var queue = queue
        var kept = FifoQueue<Transaction>()
        while let t = queue.popFirst() {
            if t.phase == .receivingRequest { kept.append(t) }
        }
        return kept
    }
}
