import CLoopShim

/// Quickpoll (the original's `QUICKPOLL`), the timers around child creation and
/// the interrupt flag.
extension EventLoop {
    /// True when long work at niceness > 0 should call `quickPoll` now.
    public var needsToQuickPoll: Bool {
        backend.pollQuickPollTimer()
        return signals.needsToQuickPoll.load(ordering: .acquiring)
    }

    /// The original's `QUICKPOLL(niceness)`: cheap enough for inner loops.
    @inline(__always)
    public func quickPollIfNeeded(niceness: Int) {
        guard niceness > 0, !inQuickPoll, needsToQuickPoll else { return }
        _ = quickPoll(niceness: niceness)
    }

    /// Serves ready niceness-0 descriptors and due niceness-0 sleep callbacks from
    /// inside long background work. Returns false when refused (niceness 0,
    /// re-entry, wrong thread or closed loop).
    @discardableResult
    public func quickPoll(niceness: Int) -> Bool {
        guard niceness > 0, !isClosed, shim_thread_token() == owner, !isForkedChild else { return false }
        guard !inQuickPoll else {
            stats.quickPollsRefused += 1
            return false
        }
        inQuickPoll = true
        signals.inQuickPoll.store(true, ordering: .relaxed)
        stats.quickPolls += 1
        let savedNiceness = self.niceness
        defer {
            self.niceness = savedNiceness
            inQuickPoll = false
            signals.inQuickPoll.store(false, ordering: .relaxed)
            signals.needsToQuickPoll.store(false, ordering: .relaxed)
        }
        do {
            try poll(quick: true, maxWaitMs: 0)
        } catch {
            // Deliberately ignored: a failed wait leaves nothing to serve, and the
            // long work that asked must go on; the next full poll meets the error again.
        }
        runSleepers(urgentOnly: true)
        // Once more before the long callback resumes: what the quickpoll's callbacks left
        // for a bottom half (a datagram another component sent) does not wait for it.
        if !isClosed { runBottomHalves() }
        return true
    }

    /// True iff `niceness > 0` and the loop is not shutting down or between disable/enableTimer.
    public func canQuickPoll(_ niceness: Int) -> Bool {
        niceness > 0 && timersEnabled && signals.shutdownReason == nil
    }

    /// Stops the timers (around `system()`/`popen()`-style child creation).
    public func disableTimer() throws(LoopError) {
        try checkUsable("disableTimer")
        timersEnabled = false
        backend.setTimersEnabled(false)
    }

    /// Starts the timers again after `disableTimer()`.
    public func enableTimer() throws(LoopError) {
        try checkUsable("enableTimer")
        timersEnabled = true
        backend.setTimersEnabled(true)
    }

    /// The original's `interruptsOff`: clears `interruptsEnabled`.
    public func interruptsOff() throws(LoopError) {
        try checkUsable("interruptsOff")
        setInterrupts(false)
    }

    /// The original's `interruptsOn`: sets `interruptsEnabled`, as `run()` does while it runs.
    public func interruptsOn() throws(LoopError) {
        try checkUsable("interruptsOn")
        setInterrupts(true)
    }

    func setInterrupts(_ enabled: Bool) {
        interruptsEnabled = enabled
        backend.setInterruptsEnabled(enabled)
    }
}
