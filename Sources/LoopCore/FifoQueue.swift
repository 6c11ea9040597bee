/// A first-in first-out queue with O(1) amortised push and pop.
public struct FifoQueue<Element> {
    private var items: [Element?] = []
    private var head = 0

    public init() {}

    public var isEmpty: Bool { head == items.count }
    public var count: Int { items.count - head }
    public var first: Element? { isEmpty ? nil : items[head] }

    public mutating func append(_ element: Element) { items.append(element) }

    public mutating func popFirst() -> Element? {
        guard !isEmpty else { return nil }
        let element = items[head]
        items[head] = nil  // release what it holds now, not at the next compaction
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
