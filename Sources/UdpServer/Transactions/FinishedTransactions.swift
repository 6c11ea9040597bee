@_spi(LoopInternals) import LoopCore

/// Incoming transactions that ended recently, with what their request looked like.
/// A late copy of one of their request datagrams is acknowledged again (its ACK
/// may be what was lost) but does not start the request, or its handler, a second
/// time. A datagram under the same key that disagrees about the message (type or
/// size) is not a copy: the peer restarted and reused the id, and it is served anew.
struct FinishedTransactions {
    /// What the finished request looked like.
    struct Request: Equatable {
        var type: UInt8
        var size: Int
    }

    private var ended: [TransactionKey: (at: Int64, request: Request?)] = [:]
    private var order = FifoQueue<(key: TransactionKey, at: Int64)>()
    let capacity: Int

    init(capacity: Int) { self.capacity = capacity }

    func contains(_ key: TransactionKey) -> Bool { ended[key] != nil }

    /// Whether a data datagram with `header` under `key` is a copy of a request that ended.
    func isCopy(_ key: TransactionKey, of header: DatagramHeader) -> Bool {
        guard let entry = ended[key] else { return false }
        guard let request = entry.request, let size = header.messageSize else { return true }
        return request == Request(type: header.messageType, size: size)
    }

    /// `request` is nil when nothing of the message was kept (every datagram then counts as a copy).
    /// Only requests received whole are inserted: late data of one that timed out while
    /// partial must not be ACKed as if it had been stored.
    mutating func insert(_ key: TransactionKey, request: Request?, at now: Int64) {
        ended[key] = (now, request)
        order.append((key, now))
        while order.count > capacity, let oldest = order.popFirst() { forget(oldest) }
    }

    mutating func remove(_ key: TransactionKey) { ended[key] = nil }

    /// Forgets those that ended before `cutoff`.
    mutating func expire(before cutoff: Int64) {
        while let oldest = order.first, oldest.at < cutoff {
            _ = order.popFirst()
            forget(oldest)
        }
    }

    private mutating func forget(_ entry: (key: TransactionKey, at: Int64)) {
        // Only if not re-inserted since.
        if ended[entry.key]?.at == entry.at { ended[entry.key] = nil }
    }

    var count: Int { ended.count }
}
