/// The pending one-shot timers (`EventLoop.after`), a binary min-heap by due time,
/// registration order breaking ties: the earliest is at the front in O(1), adding
/// and firing cost O(log n). Cancelling is lazy: a cancelled timer's entry stays
/// until it reaches the front, where `dropDeadFront` discards it, so a cancel
/// costs O(1) and a timer cancelled long before its time is gone at that time.
struct OneShotTimers {
    private struct Entry {
        let due: Int64
        let sequence: UInt64
        let registration: Registration
        func precedes(_ other: Entry) -> Bool { (due, sequence) < (other.due, other.sequence) }
    }

    private var heap: [Entry] = []
    private var owners: [AnyHashable: Registration] = [:]
    private var lastSequence: UInt64 = 0
    /// Timers added and neither fired nor cancelled.
    private(set) var pending = 0

    /// The pending timer registered with `owner`, if any.
    func timer(ownedBy owner: AnyHashable) -> Registration? { owners[owner] }

    mutating func insert(_ r: Registration) {
        lastSequence &+= 1
        r.sequence = lastSequence
        pending += 1
        if let owner = r.owner { owners[owner] = r }
        heap.append(Entry(due: r.nextDue, sequence: lastSequence, registration: r))
        siftUp(heap.count - 1)
    }

    /// A timer leaves (cancelled, or about to fire): its entry goes when it reaches the front.
    mutating func remove(_ r: Registration) {
        pending -= 1
        if let owner = r.owner, owners[owner] === r { owners[owner] = nil }
    }

    /// When the earliest pending timer is due; `.max` when none is.
    var earliestDue: Int64 {
        mutating get {
            dropDeadFront()
            return heap.first?.due ?? .max
        }
    }

    /// Takes the timers due at `now` out of the heap, earliest first (registration
    /// order among equal times). Each is still active: the caller removes it before its call.
    mutating func takeDue(at now: Int64) -> [Registration] {
        var due: [Registration] = []
        while true {
            dropDeadFront()
            guard let first = heap.first, first.due <= now else { return due }
            popFront()
            due.append(first.registration)
        }
    }

    /// Every pending timer (for teardown), and none afterwards.
    mutating func removeAll() -> [Registration] {
        let live = heap.map(\.registration).filter(\.isActive)
        heap = []
        owners = [:]
        pending = 0
        return live
    }

    private mutating func dropDeadFront() {
        while let first = heap.first, !first.registration.isActive { popFront() }
    }

    private mutating func popFront() {
        let last = heap.removeLast()
        guard !heap.isEmpty else { return }
        heap[0] = last
        siftDown(0)
    }

    private mutating func siftUp(_ index: Int) {
        var child = index
        while child > 0 {
            let parent = (child - 1) / 2
            guard heap[child].precedes(heap[parent]) else { return }
            heap.swapAt(child, parent)
            child = parent
        }
    }

    private mutating func siftDown(_ index: Int) {
        var parent = index
        while true {
            let left = 2 * parent + 1
            let right = left + 1
            var first = parent
            if left < heap.count && heap[left].precedes(heap[first]) { first = left }
            if right < heap.count && heap[right].precedes(heap[first]) { first = right }
            if first == parent { return }
            heap.swapAt(parent, first)
            parent = first
        }
    }
}
