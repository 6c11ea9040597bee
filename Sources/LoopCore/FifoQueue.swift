/// A first-in first-out queue with O(1) amortised push and pop.
///
/// Inlinable, so other modules get it specialized for their element type: the
/// servers push and pop on every datagram, and an unspecialized generic pays a
/// runtime metadata lookup on each call. Public, under the `LoopInternals` SPI (so
/// out of the user's API): this toolchain does not specialize a `package` generic in
/// another module, which cost the RPC server 15 % of its requests a second at 32 in
/// flight (docs/BENCHMARKS.md).
@_spi(LoopInternals) public struct FifoQueue<Element> {
    @usableFromInline var items: [Element?] = []
    @usableFromInline var head = 0

    @inlinable public init() {}

    @inlinable public var isEmpty: Bool { head == items.count }
    @inlinable public var count: Int { items.count - head }
    @inlinable public var first: Element? { isEmpty ? nil : items[head] }

    @inlinable public mutating func append(_ element: Element) { items.append(element) }

    @inlinable public mutating func popFirst() -> Element? {
        guard !isEmpty else { return nil }
        let element = items[head]
        items[head] = nil // release what it holds now, not at the next compaction
        head += 1
        if head == items.count {
            items.removeAll(keepingCapacity: true)
            head = 0
        } else if head >= 64 && head * 2 >= items.count {
            items.removeFirst(head)
            head = 0
        }
        return element
    }
}

extension FifoQueue: Sendable where Element: Sendable {}
