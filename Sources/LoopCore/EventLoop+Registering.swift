/// The registration API: descriptors, sleep callbacks and bottom halves. The
/// table keeps the books; the backend is told here, between its steps.
extension EventLoop {
    /// Calls `callback(fd)` whenever `fd` is readable. Registering the same
    /// non-nil `owner` on the same fd again is a no-op returning the first handle.
    @discardableResult
    public func registerRead(
        fd: Int32, niceness: Int = 0, owner: AnyHashable? = nil,
        _ callback: @escaping (Int32) -> Void
    ) throws(LoopError) -> Registration {
        try register(kind: .read, fd: fd, niceness: niceness, owner: owner, callback)
    }

    /// Calls `callback(fd)` whenever `fd` is writable.
    @discardableResult
    public func registerWrite(
        fd: Int32, niceness: Int = 0, owner: AnyHashable? = nil,
        _ callback: @escaping (Int32) -> Void
    ) throws(LoopError) -> Registration {
        try register(kind: .write, fd: fd, niceness: niceness, owner: owner, callback)
    }

    /// Calls `callback` about every `periodMs` ms, never more often, counted from its last call.
    @discardableResult
    public func registerSleep(
        every periodMs: Int, niceness: Int = 0, owner: AnyHashable? = nil,
        _ callback: @escaping () -> Void
    ) throws(LoopError) -> Registration {
        try checkUsable("registerSleep")
        guard (1...maximumSleepPeriodMs).contains(periodMs) else { throw .invalidPeriod(periodMs) }
        try checkNiceness(niceness)
        if let owner, let existing = table.sleeper(ownedBy: owner) { return existing }
        try table.reserve()
        // A fresh clock, as the original reads one: registered from inside long
        // work, the iteration's `now` is stale and the callback would be due at once.
        let r = Registration(
            kind: .sleep, fd: -1, niceness: niceness, owner: owner,
            tick: Int64(periodMs), now: configuration.clock.milliseconds(),
            fdCallback: nil, sleepCallback: callback)
        table.addSleeper(r)
        minTick = min(minTick, r.tick)
        return r
    }

    /// Takes a sleep callback out of the schedule without giving up its registration:
    /// it is not called, and costs no wake-ups, until `resumeSleep`. For work that
    /// only needs a timer while it has something to time (not in the original).
    /// Registering again with the owner of a paused callback returns it still paused.
    public func pauseSleep(_ registration: Registration) throws(LoopError) {
        try checkThread("pauseSleep")
        guard registration.isActive, registration.kind == .sleep, table.sleepers.pause(registration) else { return }
        minTick = table.sleepers.minimumTick(ceiling: defaultMinimumTickMs)
    }

    /// Puts a paused sleep callback back, due one period from now (a fresh clock, as
    /// at registration). Ignored for a callback that is not paused.
    public func resumeSleep(_ registration: Registration) throws(LoopError) {
        try checkUsable("resumeSleep")
        guard registration.isActive, registration.kind == .sleep,
            table.sleepers.resume(registration, lastCall: configuration.clock.milliseconds())
        else { return }
        minTick = min(minTick, registration.tick)
    }

    /// Removes a registration. Safe from inside any callback, including the
    /// registration's own; unknown or already removed handles are ignored.
    public func unregister(_ registration: Registration) throws(LoopError) {
        try checkThread("unregister")
        guard registration.isActive else { return }
        // Released at the end, once the loop's state is consistent: releasing a
        // callback may run a deinit that calls back into the loop.
        let callback = registration.detach()
        defer { withExtendedLifetime(callback) {} }
        if registration.kind == .child {
            if let watch = table.children.byPid[registration.childPid], watch.registration === registration {
                endChildWatch(watch)
            }
            return
        }
        if registration.kind == .timer {
            table.removeTimer(registration)
            return
        }
        if registration.kind == .sleep {
            table.removeSleeper(registration)
            minTick = table.sleepers.minimumTick(ceiling: defaultMinimumTickMs)
            return
        }
        guard let (entry, old, new) = table.removeDescriptorRegistration(registration), new != old else { return }
        do {
            try backend.setInterest(fd: registration.fd, generation: entry.generation, old: old, new: new)
        } catch {
            // Deliberately ignored: the owner may have closed the fd already, and the
            // kernel then dropped it itself; the loop's books are right either way.
        }
    }

    /// Removes every registration of `fd`.
    public func unregisterAll(fd: Int32) throws(LoopError) {
        try checkThread("unregisterAll")
        guard let entry = table.entry(fd) else { return }
        for r in entry.reads + entry.writes { try unregister(r) }
    }

    /// Unregisters `fd` and closes it once the current batch of events has
    /// been dispatched, so no event of this batch reaches a reused fd number.
    public func closeAfterBatch(fd: Int32) throws(LoopError) {
        try unregisterAll(fd: fd)
        if dispatchDepth == 0 {
            closeDescriptor(fd)
        } else if !pendingCloses.contains(fd) {
            pendingCloses.append(fd)
        }
    }

    /// Work the loop runs at the top of each poll, and at the end of a quickpoll, while
    /// `needed()` says so (the UDP server's `needBottom`). Keep the handle to remove it.
    @discardableResult
    package func addBottomHalf(needed: @escaping () -> Bool, run: @escaping () -> Void) throws(LoopError) -> BottomHalf
    {
        try checkUsable("addBottomHalf")
        let half = BottomHalf(needed: needed, run: run)
        bottomHalves.append(half)
        return half
    }

    /// Removes a bottom half; a pass in progress skips it.
    package func removeBottomHalf(_ half: BottomHalf) throws(LoopError) {
        try checkThread("removeBottomHalf")
        half.isActive = false
        bottomHalves.removeAll { $0 === half }
    }

    private func register(
        kind: Registration.Kind, fd: Int32, niceness: Int, owner: AnyHashable?,
        _ callback: @escaping (Int32) -> Void
    ) throws(LoopError) -> Registration {
        try checkUsable(kind == .read ? "registerRead" : "registerWrite")
        guard fd >= 0 else { throw .invalidDescriptor(fd) }
        if let limit = backend.descriptorLimit, fd >= limit { throw .descriptorOutOfRange(fd: fd, limit: limit) }
        try checkNiceness(niceness)
        let existing = table.entry(fd)
        if let owner, let entry = existing, let same = table.registration(fd: fd, kind: kind, owner: owner) {
            // Re-armed all the same: the number may name another file now (closed
            // without unregistering, then reused), which the backend does not watch yet.
            try backend.prepare(fd: fd)
            try backend.setInterest(fd: fd, generation: entry.generation, old: entry.interest, new: entry.interest)
            return same
        }
        try table.reserve()
        // Every time, not only for a new entry: the number may now name another file.
        do { try backend.prepare(fd: fd) } catch {
            table.cancelReservation()
            throw error
        }
        let entry = existing ?? table.makeEntry()
        let r = Registration(
            kind: kind, fd: fd, niceness: niceness, owner: owner, tick: 0, now: now,
            fdCallback: callback, sleepCallback: nil)
        let old = existing?.interest ?? []
        let opensChain = (kind == .read ? entry.reads : entry.writes).isEmpty
        if kind == .read { entry.reads.insert(r, at: 0) } else { entry.writes.insert(r, at: 0) }
        // Told even when the interest is unchanged: if the owner closed the fd
        // without unregistering and this is a new file under the same number,
        // the kernel (or select's EBADF clean-up) has forgotten it.
        do {
            try backend.setInterest(fd: fd, generation: entry.generation, old: old, new: entry.interest)
        } catch {
            if kind == .read { entry.reads.removeFirst() } else { entry.writes.removeFirst() }
            table.cancelReservation()
            throw error
        }
        table.added(r, to: entry, opensChain: opensChain, isNewEntry: existing == nil)
        return r
    }
}

/// A bottom half registered with `addBottomHalf`.
package final class BottomHalf {
    let needed: () -> Bool
    let run: () -> Void
    /// False once removed: a pass in progress skips it.
    @exclusivity(unchecked) var isActive = true
    init(needed: @escaping () -> Bool, run: @escaping () -> Void) {
        self.needed = needed
        self.run = run
    }
}
