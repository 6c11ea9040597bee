import Glibc

/// The loop's millisecond clock. Monotonic by default; tests inject their own
/// to make time go backwards.
public struct LoopClock: Sendable {
    /// Reads the clock, in milliseconds.
    public let milliseconds: @Sendable () -> Int64

    /// A clock read by `milliseconds`, which must be safe to call from any thread.
    public init(_ milliseconds: @escaping @Sendable () -> Int64) {
        self.milliseconds = milliseconds
    }

    /// CLOCK_MONOTONIC: never goes back, so the loop's default.
    public static let monotonic = LoopClock { monotonicNanoseconds() / 1_000_000 }
    /// Wall time, as the original's `gettimeofday`; it may jump backwards.
    public static let wall = LoopClock {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return Int64(ts.tv_sec) * 1000 + Int64(ts.tv_nsec) / 1_000_000
    }
}

/// CLOCK_MONOTONIC in ns (vDSO: no syscall).
@inline(__always)
package func monotonicNanoseconds() -> Int64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Int64(ts.tv_sec) * 1_000_000_000 + Int64(ts.tv_nsec)
}
