/// A fixed-size set of datagram numbers (sent, acked, received…).
struct BitSet {
    private var words: [UInt64]
    let capacity: Int
    private(set) var count = 0

    init(capacity: Int) {
        self.capacity = capacity
        words = [UInt64](repeating: 0, count: (capacity + 63) / 64)
    }

    subscript(index: Int) -> Bool {
        words[index >> 6] & (1 << UInt64(index & 63)) != 0
    }

    /// Returns whether `index` was newly added.
    @discardableResult
    mutating func insert(_ index: Int) -> Bool {
        let mask: UInt64 = 1 << UInt64(index & 63)
        if words[index >> 6] & mask != 0 { return false }
        words[index >> 6] |= mask
        count += 1
        return true
    }

    /// Returns whether `index` was there.
    @discardableResult
    mutating func remove(_ index: Int) -> Bool {
        let mask: UInt64 = 1 << UInt64(index & 63)
        if words[index >> 6] & mask == 0 { return false }
        words[index >> 6] &= ~mask
        count -= 1
        return true
    }

    mutating func insertAll() {
        for i in words.indices { words[i] = ~0 }
        if capacity & 63 != 0 { words[words.count - 1] = (1 << UInt64(capacity & 63)) - 1 }
        count = capacity
    }

    /// The first index at or after `start` that is not in the set, or `capacity`.
    func firstAbsent(from start: Int) -> Int {
        var i = start
        while i < capacity {
            let word = ~words[i >> 6] >> UInt64(i & 63)
            if word != 0 { return min(capacity, i + word.trailingZeroBitCount) }
            i = (i | 63) + 1
        }
        return capacity
    }

    var isFull: Bool { count == capacity }
}
