/// The sleep callbacks, ordered by when each is next due: one queue per period,
/// each in last-call order. A callback that runs gets `lastCall = now`, the latest
/// of its queue, so it goes to the back: calling, registering and removing cost
/// O(1), the earliest due time is the earliest of the queues' fronts, and a scan
/// visits only the callbacks that are due. With 100,000 registered callbacks a scan
/// that finds three due touches about three.
///
/// The legacy rules stay the loop's (`EventLoop.runSleepers`): due by last call
/// plus period, called newest registration first, a last call in the future
/// (the clock went back) reset to now. Paused callbacks keep their registration
/// but are in no queue: never due, and not counted for the minimum tick.
///
/// Removal is lazy: a queue entry whose registration was removed, paused, or
/// queued again since (its `scheduleToken` moved on) is dropped when it reaches the
/// front, at most one period later.
struct SleepSchedule {
    private struct Entry {
        let registration: Registration
        let token: UInt32
        var isLive: Bool { registration.isScheduled && registration.scheduleToken == token }
    }

    /// Entries in last-call order from `head`; dead ones stay until they reach the front.
    private struct PeriodQueue {
        var entries: [Entry] = []
        var head = 0

        mutating func dropDeadFront() {
            while head < entries.count && !entries[head].isLive { head += 1 }
            if head == entries.count {
                entries.removeAll(keepingCapacity: true)
                head = 0
            } else if head >= 64 && head * 2 >= entries.count {
                entries.removeFirst(head)
                head = 0
            }
        }

        /// At the back, unless the clock went back and the last call is earlier than the back's.
        mutating func add(_ entry: Entry) {
            // The common case: called now, the latest last call of the queue.
            if head == entries.count || entries[entries.count - 1].registration.lastCall <= entry.registration.lastCall
            {
                entries.append(entry)
                return
            }
            var i = entries.count
            while i > head
                && (!entries[i - 1].isLive || entries[i - 1].registration.lastCall > entry.registration.lastCall)
            {
                i -= 1
            }
            entries.insert(entry, at: i)
        }
    }

    /// One queue per period with scheduled callbacks; a registration carries its
    /// queue's index, so calling one costs no hashing. A queue whose last callback
    /// leaves is emptied and its slot reused, so periods that come and go (backoffs,
    /// computed delays) cost nothing once gone.
    private var queues: [PeriodQueue] = []
    private var queueIndex: [Int64: Int] = [:]
    private var freeQueues: [Int] = []
    private var paused: [ObjectIdentifier: Registration] = [:]
    /// Scheduled callbacks per period, for the minimum tick.
    private var periods: [Int64: Int] = [:]
    private var scheduled = 0
    private var lastSequence: UInt64 = 0
    /// The latest last-call time set: a clock below it may have gone back.
    private(set) var latestLastCall: Int64 = .min

    var isEmpty: Bool { scheduled == 0 && paused.isEmpty }
    /// Registered callbacks, paused or not.
    var count: Int { scheduled + paused.count }

    /// The earliest `lastCall + tick` of the scheduled callbacks: the earliest front.
    /// Visits one front per distinct period (a handful in any real program).
    var earliestDue: Int64 {
        mutating get {
            var earliest = Int64.max
            for i in queues.indices {
                queues[i].dropDeadFront()
                let q = queues[i]
                if q.head < q.entries.count { earliest = min(earliest, q.entries[q.head].registration.nextDue) }
            }
            return earliest
        }
    }

    /// The smallest period among the scheduled callbacks, at most `ceiling`.
    func minimumTick(ceiling: Int64) -> Int64 {
        periods.keys.reduce(ceiling) { min($0, $1) }
    }

    /// Every registration, paused or not (for teardown).
    var all: [Registration] {
        var result = Array(paused.values)
        for q in queues { for e in q.entries[q.head...] where e.isLive { result.append(e.registration) } }
        return result
    }

    mutating func insert(_ r: Registration) {
        if r.sequence == 0 {
            lastSequence &+= 1
            r.sequence = lastSequence
        }
        noteLastCall(r.lastCall)
        periods[r.tick, default: 0] += 1
        scheduled += 1
        if let index = queueIndex[r.tick] {
            r.queueIndex = index
        } else if let free = freeQueues.popLast() {
            r.queueIndex = free
            queueIndex[r.tick] = free
        } else {
            r.queueIndex = queues.count
            queueIndex[r.tick] = queues.count
            queues.append(PeriodQueue())
        }
        enqueue(r)
    }

    mutating func remove(_ r: Registration) {
        if paused.removeValue(forKey: ObjectIdentifier(r)) != nil { return }
        guard r.isScheduled else { return }
        unschedule(r)
    }

    /// Out of the schedule until `resume`; false if already paused or not scheduled.
    mutating func pause(_ r: Registration) -> Bool {
        guard r.isScheduled else { return false }
        unschedule(r)
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

    /// `r` ran at `lastCall`: to the back of its queue (its old entry is dead now).
    mutating func called(_ r: Registration, at lastCall: Int64) {
        r.lastCall = lastCall
        noteLastCall(lastCall)
        guard r.isScheduled else { return }
        enqueue(r)
    }

    /// The scheduled callbacks due at `now`, newest registration first. Visits only
    /// those (and dead entries among them): a queue's entries after the first one
    /// not due are not due either.
    func due(at now: Int64) -> [Registration] {
        var found: [Registration] = []
        for q in queues {
            var i = q.head
            while i < q.entries.count {
                let r = q.entries[i].registration
                i += 1
                guard r.isScheduled && r.scheduleToken == q.entries[i - 1].token else { continue }
                guard r.nextDue <= now else { break }
                found.append(r)
            }
        }
        // Usually already in order (one queue, called together last time): then no sort.
        var sorted = true
        var i = 1
        while sorted && i < found.count {
            if found[i - 1].sequence < found[i].sequence { sorted = false }
            i += 1
        }
        return sorted ? found : found.sorted { $0.sequence > $1.sequence }
    }

    /// The clock went back below some last call: those passing `filter` are reset
    /// to `now` (a visit to every callback, as rare as the clock stepping back).
    mutating func resetFuture(to now: Int64, where filter: (Registration) -> Bool) {
        var skipped = false
        for i in queues.indices {
            let q = queues[i]
            for e in q.entries[q.head...] where e.isLive && e.registration.lastCall > now {
                if filter(e.registration) { e.registration.lastCall = now } else { skipped = true }
            }
            // A skipped one may now be ahead of later ones set back to now: restore the order.
            queues[i].entries[q.head...].sort { $0.registration.lastCall < $1.registration.lastCall }
        }
        for r in paused.values where r.lastCall > now { r.lastCall = now }
        // A skipped one keeps its future time, and the next scan must look again.
        if !skipped { latestLastCall = now }
    }

    mutating func removeAll() {
        for q in queues { for e in q.entries[q.head...] { e.registration.isScheduled = false } }
        queues = []
        queueIndex = [:]
        freeQueues = []
        paused = [:]
        periods = [:]
        scheduled = 0
        latestLastCall = .min
    }

    // MARK: Queues

    private mutating func enqueue(_ r: Registration) {
        r.isScheduled = true
        r.scheduleToken &+= 1
        queues[r.queueIndex].add(Entry(registration: r, token: r.scheduleToken))
    }

    private mutating func unschedule(_ r: Registration) {
        r.isScheduled = false
        r.scheduleToken &+= 1
        scheduled -= 1
        if let n = periods[r.tick], n > 1 {
            periods[r.tick] = n - 1
        } else {
            // The period's last scheduled callback: its queue holds only dead entries now.
            periods[r.tick] = nil
            if let index = queueIndex.removeValue(forKey: r.tick) {
                queues[index] = PeriodQueue()
                freeQueues.append(index)
            }
        }
    }

    private mutating func noteLastCall(_ t: Int64) {
        if t > latestLastCall { latestLastCall = t }
    }
}
