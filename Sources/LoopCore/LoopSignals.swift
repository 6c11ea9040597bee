import Synchronization

/// The state that arrives from outside the loop's thread: signal handlers,
/// timer expirations, worker threads. Lock-free atomics only, so a signal
/// handler may write any of it.
package final class LoopSignals: Sendable {
    /// Shutdown requests not yet consumed: bit `s` for admin signal `s`, bit 0
    /// for `stop()`. A set of bits, not one slot, so no request is lost when
    /// several arrive before one is consumed.
    private let pendingShutdowns = Atomic<UInt64>(0)
    /// Raised every quickpoll interval while the process is busy; cleared by the loop.
    package let needsToQuickPoll = Atomic<Bool>(false)
    /// Set by a worker that finished a job (the original's `needsCleanup`).
    package let needsCleanup = Atomic<Bool>(false)
    /// True only while the loop thread is blocked waiting for readiness.
    package let inWaitState = Atomic<Bool>(false)
    /// True while the loop runs a quickpoll (the timer then does not raise the flag).
    package let inQuickPoll = Atomic<Bool>(false)
    /// ms clock advanced by the quickpoll timer between refreshes.
    package let nowApprox = Atomic<Int64>(0)
    /// CPU usage moving average in percent, as `Double` bits.
    private let cpuBits = Atomic<UInt64>(0)

    package let alarms = Atomic<Int>(0)
    package let vtAlarms = Atomic<Int>(0)
    package let sigChlds = Atomic<Int>(0)
    package let sigQueues = Atomic<Int>(0)
    package let sigPipes = Atomic<Int>(0)
    package let sigIOs = Atomic<Int>(0)
    package let sigOthers = Atomic<Int>(0)
    package let wakeups = Atomic<Int>(0)

    package init() {}

    /// Records a shutdown request. Lock-free: signal handlers call it.
    package func requestShutdown(_ reason: ShutdownReason) {
        pendingShutdowns.bitwiseOr(Self.bit(for: reason), ordering: .sequentiallyConsistent)
    }

    /// The request `run()` would return next, without consuming it: admin signals
    /// first (in signal-number order), then `stop()`.
    package var shutdownReason: ShutdownReason? {
        Self.first(of: pendingShutdowns.load(ordering: .acquiring))
    }

    /// Takes the next request (as `shutdownReason` orders them), leaving the others.
    package func takeShutdownRequest() -> ShutdownReason? {
        var pending = pendingShutdowns.load(ordering: .acquiring)
        while let reason = Self.first(of: pending) {
            let (taken, actual) = pendingShutdowns.compareExchange(
                expected: pending, desired: pending & ~Self.bit(for: reason), ordering: .sequentiallyConsistent)
            if taken { return reason }
            pending = actual
        }
        return nil
    }

    /// Takes every pending admin signal (for `close()` to hand back); a pending stop is dropped.
    package func takeAllShutdownSignals() -> [Int32] {
        let pending = pendingShutdowns.exchange(0, ordering: .sequentiallyConsistent)
        return (1..<64).filter { pending & (1 << UInt64($0)) != 0 }.map { Int32($0) }
    }

    private static func bit(for reason: ShutdownReason) -> UInt64 {
        guard let signo = reason.signalNumber, signo > 0, signo < 64 else { return 1 }
        return 1 << UInt64(signo)
    }

    private static func first(of pending: UInt64) -> ShutdownReason? {
        guard pending != 0 else { return nil }
        let signals = pending & ~1
        guard signals != 0 else { return .stopped }
        return .forSignal(Int32(signals.trailingZeroBitCount))
    }

    /// One quickpoll-interval tick: `nowApprox` moves 10 ms and, unless a
    /// quickpoll is running, long work is asked to quickpoll.
    package func quickPollTick(count: Int, intervalMs: Int64) {
        // Wrapping: a clock at the end of its range must not trap inside a signal handler.
        nowApprox.wrappingAdd(intervalMs &* Int64(count), ordering: .relaxed)
        raiseQuickPoll(count)
    }

    /// Expirations read some time after they happened (not in a handler): `nowApprox`
    /// becomes `now`, the clock read at the time of reading.
    package func quickPollTick(count: Int, now: Int64) {
        nowApprox.store(now, ordering: .relaxed)
        raiseQuickPoll(count)
    }

    private func raiseQuickPoll(_ count: Int) {
        vtAlarms.add(count, ordering: .relaxed)
        if !inQuickPoll.load(ordering: .relaxed) {
            needsToQuickPoll.store(true, ordering: .releasing)
        }
    }

    package var cpuUsage: Double { Double(bitPattern: cpuBits.load(ordering: .relaxed)) }

    /// Feeds `count` real-timer ticks into `cpu = 0.99*cpu + 0.01*(busy ? 100 : 0)`.
    /// Lock-free (a CAS loop), so the SIGALRM handler may call it.
    package func recordCPUTicks(busy: Bool, count: Int) {
        guard count > 0 else { return }
        alarms.add(count, ordering: .relaxed)
        // One tick (the SIGALRM handler's case) is a plain multiplication.
        var decay = 0.99
        if count > 1 { for _ in 1..<Swift.min(count, 2000) { decay *= 0.99 } }
        var old = cpuBits.load(ordering: .relaxed)
        while true {
            let cpu = Double(bitPattern: old)
            let target = busy ? 100.0 : 0.0
            let new = target + (cpu - target) * decay
            let (exchanged, original) = cpuBits.compareExchange(
                expected: old, desired: new.bitPattern, ordering: .relaxed)
            if exchanged { return }
            old = original
        }
    }
}
