/// Incoming transactions that ended recently. A late duplicate of one of their
/// request datagrams is dropped instead of starting the request (and its handler) again.
struct FinishedTransactions {
    private var ended: [TransactionKey: Int64] = [:]
    private var order = FifoQueue<(key: TransactionKey, at: Int64)>()
    let capacity: Int

    init(capacity: Int) { self.capacity = capacity }

    func contains(_ key: TransactionKey) -> Bool { ended[key] != nil }

    mutating func insert(_ key: TransactionKey, at now: Int64) {
        ended[key] = now
        order.append((key, now))
        while order.count > capacity, let oldest = order.popFirst() { forget(oldest) }
    }

    /// Forgets those that ended before `cutoff`.
    mutating func expire(before cutoff: Int64) {
        while let oldest = order.first, oldest.at < cutoff {
            _ = order.popFirst()
            forget(oldest)
        }
    }

    private mutating func forget(_ entry: (key: TransactionKey, at: Int64)) {
        // Only if not re-inserted since.
        if ended[entry.key] == entry.at { ended[entry.key] = nil }
    }

    var count: Int { ended.count }
}
