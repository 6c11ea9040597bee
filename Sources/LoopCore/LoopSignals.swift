import Synchronization

/// The state that arrives from outside the loop's thread: signal handlers,
/// timer expirations, worker threads. Lock-free atomics only, so a signal
/// handler may write any of it.
public final class LoopSignals: Sendable {
    /// 0 = running; otherwise a `ShutdownReason.encoded`.
    public let shutdown = Atomic<Int>(0)
    /// Raised every quickpoll interval while the process is busy; cleared by the loop.
    public let needsToQuickPoll = Atomic<Bool>(false)
    /// Set by a worker that finished a job (the original's `needsCleanup`).
    public let needsCleanup = Atomic<Bool>(false)
    /// True only while the loop thread is blocked waiting for readiness.
    public let inWaitState = Atomic<Bool>(false)
    /// True while the loop runs a quickpoll (the timer then does not raise the flag).
    public let inQuickPoll = Atomic<Bool>(false)
    /// ms clock advanced by the quickpoll timer between refreshes.
    public let nowApprox = Atomic<Int64>(0)
    /// CPU usage moving average in percent, as `Double` bits.
    private let cpuBits = Atomic<UInt64>(0)

    public let alarms = Atomic<Int>(0)
    public let vtAlarms = Atomic<Int>(0)
    public let sigChlds = Atomic<Int>(0)
    public let sigQueues = Atomic<Int>(0)
    public let sigPipes = Atomic<Int>(0)
    public let sigIOs = Atomic<Int>(0)
    public let sigOthers = Atomic<Int>(0)
    public let wakeups = Atomic<Int>(0)

    public init() {}

    /// Records the first shutdown request; later ones do not overwrite it.
    public func requestShutdown(_ reason: ShutdownReason) {
        _ = shutdown.compareExchange(expected: 0, desired: reason.encoded, ordering: .sequentiallyConsistent)
    }

    /// Takes the recorded request, leaving none: `run()` consumes what it returns.
    public func takeShutdownRequest() -> ShutdownReason? {
        ShutdownReason(encoded: shutdown.exchange(0, ordering: .sequentiallyConsistent))
    }

    public var shutdownReason: ShutdownReason? {
        ShutdownReason(encoded: shutdown.load(ordering: .acquiring))
    }

    /// One quickpoll-interval tick: `nowApprox` moves 10 ms and, unless a
    /// quickpoll is running, long work is asked to quickpoll.
    public func quickPollTick(count: Int, intervalMs: Int64) {
        vtAlarms.add(count, ordering: .relaxed)
        // Wrapping: a clock at the end of its range must not trap inside a signal handler.
        nowApprox.wrappingAdd(intervalMs &* Int64(count), ordering: .relaxed)
        if !inQuickPoll.load(ordering: .relaxed) {
            needsToQuickPoll.store(true, ordering: .releasing)
        }
    }

    public var cpuUsage: Double { Double(bitPattern: cpuBits.load(ordering: .relaxed)) }

    /// Feeds `count` real-timer ticks into `cpu = 0.99*cpu + 0.01*(busy ? 100 : 0)`.
    /// Lock-free (a CAS loop), so the SIGALRM handler may call it.
    public func recordCPUTicks(busy: Bool, count: Int) {
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
