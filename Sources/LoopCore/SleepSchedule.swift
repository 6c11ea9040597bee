/// The sleep callbacks, ordered by when each is next due: an indexed binary
/// min-heap, so the earliest due time is O(1), a registration, removal or call
/// O(log n), and a scan visits only the callbacks that are due. With 100,000
/// registered callbacks a scan that finds three due touches about three.
///
/// The legacy rules stay the loop's (`EventLoop.runSleepers`): due by last call
/// plus period, called newest registration first, a last call in the future
/// (the clock went back) reset to now. Paused callbacks keep their registration
/// but are out of the heap: never due, and not counted for the minimum tick.
struct SleepSchedule {
    private var heap: [Registration] = []
    private var paused: [ObjectIdentifier: Registration] = [:]
    /// How many scheduled callbacks have each period, for the minimum tick.
    private var periods: [Int64: Int] = [:]
    /// The latest last-call time set: a clock below it may have gone back.
    private(set) var latestLastCall: Int64 = .min

    var isEmpty: Bool { heap.isEmpty && paused.isEmpty }
    /// Registered callbacks, paused or not.
    var count: Int { heap.count + paused.count }
    /// The earliest `lastCall + tick` of the scheduled callbacks.
    var earliestDue: Int64 { heap.first?.nextDue ?? .max }

    /// The smallest period among the scheduled callbacks, at most `ceiling`.
    func minimumTick(ceiling: Int64) -> Int64 {
        periods.keys.reduce(ceiling) { min($0, $1) }
    }

    /// Every registration, paused or not (for teardown).
    var all: [Registration] { heap + Array(paused.values) }

    mutating func insert(_ r: Registration) {
        r.sequence = r.sequence == 0 ? nextSequence() : r.sequence
        noteLastCall(r.lastCall)
        periods[r.tick, default: 0] += 1
        r.heapIndex = heap.count
        heap.append(r)
        siftUp(heap.count - 1)
    }

    mutating func remove(_ r: Registration) {
        if paused.removeValue(forKey: ObjectIdentifier(r)) != nil { return }
        guard r.heapIndex >= 0, r.heapIndex < heap.count, heap[r.heapIndex] === r else { return }
        forgetPeriod(r.tick)
        let index = r.heapIndex
        r.heapIndex = -1
        let last = heap.removeLast()
        guard index < heap.count else { return }
        heap[index] = last
        last.heapIndex = index
        siftDown(index)
        siftUp(last.heapIndex)
    }

    /// Out of the schedule until `resume`; false if already paused or not scheduled.
    mutating func pause(_ r: Registration) -> Bool {
        guard r.heapIndex >= 0 else { return false }
        remove(r)
        paused[ObjectIdentifier(r)] = r
        return true
    }

    /// Back in the schedule, due a period after `lastCall`; false if it was not paused.
    mutating func resume(_ r: Registration, lastCall: Int64) -> Bool {
        guard paused.removeValue(forKey: ObjectIdentifier(r)) != nil else { return false }
        r.lastCall = lastCall
        insert(r)
        return true
    }

    /// `r.lastCall` was set to `lastCall`: its place in the heap follows.
    mutating func called(_ r: Registration, at lastCall: Int64) {
        r.lastCall = lastCall
        noteLastCall(lastCall)
        guard r.heapIndex >= 0 else { return }
        siftDown(r.heapIndex)
        siftUp(r.heapIndex)
    }

    /// The scheduled callbacks due at `now`, newest registration first. Visits only
    /// those: a heap node that is not due has no due descendants.
    func due(at now: Int64) -> [Registration] {
        var found: [Registration] = []
        var stack = heap.isEmpty ? [] : [0]
        while let i = stack.popLast() {
            guard heap[i].nextDue <= now else { continue }
            found.append(heap[i])
            let left = 2 * i + 1
            if left < heap.count { stack.append(left) }
            if left + 1 < heap.count { stack.append(left + 1) }
        }
        return found.sorted { $0.sequence > $1.sequence }
    }

    /// The clock went back below some last call: those passing `filter` are reset
    /// to `now` (a visit to every callback, as rare as the clock stepping back).
    mutating func resetFuture(to now: Int64, where filter: (Registration) -> Bool) {
        var skipped = false
        for r in heap where r.lastCall > now {
            if filter(r) { r.lastCall = now } else { skipped = true }
        }
        for r in paused.values where r.lastCall > now { r.lastCall = now }
        rebuild()
        // A skipped one keeps its future time, and the next scan must look again.
        if !skipped { latestLastCall = now }
    }

    mutating func removeAll() {
        for r in heap { r.heapIndex = -1 }
        heap = []
        paused = [:]
        periods = [:]
        latestLastCall = .min
    }

    // MARK: The heap

    private mutating func nextSequence() -> UInt64 {
        lastSequence &+= 1
        return lastSequence
    }
    private var lastSequence: UInt64 = 0

    private mutating func noteLastCall(_ t: Int64) {
        if t > latestLastCall { latestLastCall = t }
    }

    private mutating func forgetPeriod(_ tick: Int64) {
        if let n = periods[tick], n > 1 { periods[tick] = n - 1 } else { periods[tick] = nil }
    }

    /// Earlier due first; equal due times by registration order, so the heap is deterministic.
    private func precedes(_ a: Registration, _ b: Registration) -> Bool {
        let (da, db) = (a.nextDue, b.nextDue)
        return da != db ? da < db : a.sequence < b.sequence
    }

    private mutating func rebuild() {
        var i = heap.count / 2
        while i > 0 {
            i -= 1
            siftDown(i)
        }
        for (index, r) in heap.enumerated() { r.heapIndex = index }
    }

    private mutating func siftUp(_ start: Int) {
        var i = start
        let item = heap[i]
        while i > 0 {
            let parent = (i - 1) / 2
            guard precedes(item, heap[parent]) else { break }
            heap[i] = heap[parent]
            heap[i].heapIndex = i
            i = parent
        }
        heap[i] = item
        item.heapIndex = i
    }

    private mutating func siftDown(_ start: Int) {
        var i = start
        let item = heap[i]
        while true {
            let left = 2 * i + 1
            guard left < heap.count else { break }
            var child = left
            if left + 1 < heap.count && precedes(heap[left + 1], heap[left]) { child = left + 1 }
            guard precedes(heap[child], item) else { break }
            heap[i] = heap[child]
            heap[i].heapIndex = i
            i = child
        }
        heap[i] = item
        item.heapIndex = i
    }
}
