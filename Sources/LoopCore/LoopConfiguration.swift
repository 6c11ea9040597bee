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
    public var clock: LoopClock = .monotonic

    public init() {}
}

/// The sleep-callback scan cadence starts at 40 ms (the original's default minimum tick).
public let defaultMinimumTickMs: Int64 = 40

/// The signals a loop owns; worker threads block all of them so that
/// process-directed ones reach a thread that expects them.
public let loopOwnedSignals: [Int32] = [
    SIGALRM, SIGVTALRM, SIGCHLD, SIGIO, SIGPIPE, SIGHUP, SIGTERM, SIGINT, SIGPWR,
]
