import Glibc

/// Tunables shared by both backends; the defaults are the original's numbers.
public struct LoopConfiguration: Sendable {
    /// The quickpoll timer and the longest wait (the original's `QUICKPOLL_INTERVAL`).
    public var quickPollIntervalMs = 10
    /// The real timer that feeds the CPU-usage average.
    public var realTimerIntervalMs = 1
    /// The registration pool (the original's `MAX_SLOTS`).
    public var maxRegistrations = 10_000
    /// Threads of the worker pool, started on the first submitted job.
    public var workerThreads = 2
    /// Whether the loop turns SIGHUP/SIGTERM/SIGINT/SIGPWR into a shutdown.
    public var handlesAdminSignals = true
    /// The clock of `now`, the sleep callbacks and their periods.
    public var clock: LoopClock = .monotonic
    /// Legacy loop only: allow it off the main thread although the main thread
    /// takes process-directed SIGALRM/SIGVTALRM (see `ProcessSignals.prepare`).
    /// Every thread that does not block them is then interrupted up to 1000
    /// times a second (EINTR from poll, nanosleep, sleep).
    public var allowsUnroutedTimerSignals = false

    /// The original's numbers; change the fields afterwards.
    public init() {}

    /// Each field within its range, or the first that is not; `EventLoop.init` checks it.
    public func validate() throws(LoopError) {
        let fields: [(String, Int, ClosedRange<Int>)] = [
            ("quickPollIntervalMs", quickPollIntervalMs, 1...60_000),
            ("realTimerIntervalMs", realTimerIntervalMs, 1...60_000),
            ("maxRegistrations", maxRegistrations, 1...10_000_000),
            ("workerThreads", workerThreads, 1...1024),
        ]
        for (field, value, allowed) in fields where !allowed.contains(value) {
            throw .invalidConfiguration(field: field, value: value, allowed: allowed)
        }
    }
}

/// The longest sleep period (about 24.8 days): far beyond any real period, and
/// small enough that period arithmetic on a millisecond clock cannot overflow.
public let maximumSleepPeriodMs = Int(Int32.max)

/// The sleep-callback scan cadence starts at 40 ms (the original's default minimum tick).
package let defaultMinimumTickMs: Int64 = 40

/// The signals a loop owns; worker threads block all of them so that
/// process-directed ones reach a thread that expects them.
package let loopOwnedSignals: [Int32] = [
    SIGALRM, SIGVTALRM, SIGCHLD, SIGIO, SIGPIPE, SIGHUP, SIGTERM, SIGINT, SIGPWR,
]
