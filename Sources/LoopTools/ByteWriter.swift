/// Bytes appended through a pointer into memory it owns: what `JSON` renders into.
///
/// An `[UInt8]` checks its uniqueness and capacity at every append, and those checks
/// cost more than the stores: the node's stats (about 2 KB, a hundred strings and as
/// many numbers) took 150,000 instructions to render into one.
struct ByteWriter: ~Copyable {
    private var start: UnsafeMutablePointer<UInt8>
    private var capacity: Int
    private(set) var count = 0

    init(capacity: Int) {
        self.capacity = max(capacity, 16)
        start = .allocate(capacity: self.capacity)
    }

    deinit { start.deallocate() }

    /// What was written.
    var bytes: [UInt8] { Array(UnsafeBufferPointer(start: start, count: count)) }

    mutating func append(_ byte: UInt8) {
        if count == capacity { grow(to: count + 1) }
        start[count] = byte
        count += 1
    }

    mutating func append(_ bytes: UnsafeBufferPointer<UInt8>) {
        guard let source = bytes.baseAddress, bytes.count > 0 else { return }
        if count + bytes.count > capacity { grow(to: count + bytes.count) }
        (start + count).update(from: source, count: bytes.count)
        count += bytes.count
    }

    /// ASCII text given as a literal (`StaticString` is its bytes, no `String` made).
    mutating func append(_ text: StaticString) {
        append(UnsafeBufferPointer(start: text.utf8Start, count: text.utf8CodeUnitCount))
    }

    /// Decimal digits, sign first.
    mutating func append(decimal value: Int) {
        if value < 0 { append(0x2d) } // -
        var rest = value.magnitude
        var digits = 1
        while rest >= 10 {
            rest /= 10
            digits += 1
        }
        if count + digits > capacity { grow(to: count + digits) }
        rest = value.magnitude
        var i = count + digits
        repeat {
            i -= 1
            start[i] = 0x30 + UInt8(rest % 10)
            rest /= 10
        } while rest > 0
        count += digits
    }

    @inline(never)
    private mutating func grow(to needed: Int) {
        let newCapacity = max(needed, 2 * capacity)
        let larger = UnsafeMutablePointer<UInt8>.allocate(capacity: newCapacity)
        larger.update(from: start, count: count)
        start.deallocate()
        start = larger
        capacity = newCapacity
    }
}
