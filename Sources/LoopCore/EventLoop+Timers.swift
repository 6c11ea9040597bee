/// One-shot timers: a callback once, at or after a time, on the loop thread.
extension EventLoop {
    /// Calls `callback` once, on the loop thread, at least `ms` ms from now (a fresh
    /// clock read, as `registerSleep` takes one), in the first full poll at or after
    /// that time; then the registration is removed. Cancel it before then with
    /// `unregister` (a no-op once it has fired). The loop's wait ends when the
    /// earliest timer is due: no polling and no wake-ups before (the legacy loop still
    /// wakes on its 1 ms tick, so its timers fire within about 1 ms of their time).
    ///
    /// Timers due in the same poll run after the sleep callbacks, earliest due time
    /// first, registration order among equal times; one registered by such a callback
    /// runs in a later poll even if due at once. A quickpoll does not run them.
    /// Registering with the `owner` of a timer still pending returns that timer's
    /// handle unchanged (the legacy dedup rule of `registerSleep`).
    ///
    /// - Parameters:
    ///   - ms: 0…`maximumSleepPeriodMs`; 0 runs it in the next full poll.
    ///   - niceness: the niceness `niceness` reports while the callback runs (0…2).
    ///   - owner: a key that makes registering again a no-op while the timer is pending.
    ///   - callback: called once, unless cancelled first.
    /// - Returns: the handle to pass to `unregister`.
    /// - Throws: `.invalidPeriod` for an `ms` outside its range, `.invalidNiceness`,
    ///   `.noEmptySlots` when the registration pool is full, and the usual `.wrongThread`,
    ///   `.forkedChild` and `.closed`.
    @discardableResult
    public func after(
        ms: Int, niceness: Int = 0, owner: AnyHashable? = nil,
        _ callback: @escaping () -> Void
    ) throws(LoopError) -> Registration {
        try checkUsable("after")
        guard (0...maximumSleepPeriodMs).contains(ms) else { throw .invalidPeriod(ms) }
        try checkNiceness(niceness)
        if let owner, let existing = table.timers.timer(ownedBy: owner) { return existing }
        try table.reserve()
        let r = Registration(
            kind: .timer, fd: -1, niceness: niceness, owner: owner, tick: Int64(ms),
            now: configuration.clock.millisecondsRoundedUp(), fdCallback: nil,
            sleepCallback: callback)
        table.timers.insert(r)
        return r
    }

    /// The timers due at `now`, each removed before its call, so that it may register
    /// another with the same owner and `unregister` on its handle does nothing.
    func runTimers() {
        for r in table.timers.takeDue(at: now) where r.isActive {
            table.removeTimer(r)
            let callback = r.detach() as? () -> Void
            stats.timerCallbacks += 1
            let saved = niceness
            niceness = r.effectiveNiceness
            stats.callbacks[min(max(r.niceness, 0), 2)] += 1
            callback?()
            niceness = saved
        }
    }
}
