import Glibc

/// The loop's millisecond clock. Monotonic by default; tests inject their own
/// to make time go backwards.
public struct LoopClock: Sendable {
    /// Reads the clock, in whole milliseconds (the fraction dropped).
    public let milliseconds: @Sendable () -> Int64
    /// Reads the clock rounded up to the next whole millisecond: where a one-shot timer
    /// starts counting, so that the truncated `milliseconds` reaching its due time means its
    /// whole delay has passed (`after(ms:)` never fires early). A clock of whole
    /// milliseconds reads the same both ways.
    public let millisecondsRoundedUp: @Sendable () -> Int64

    /// A clock read by `milliseconds`, which must be safe to call from any thread, in
    /// whole milliseconds; `roundedUp`, when it has finer time, reads it rounded up.
    public init(
        _ milliseconds: @escaping @Sendable () -> Int64,
        roundedUp: (@Sendable () -> Int64)? = nil
    ) {
        self.milliseconds = milliseconds
        self.millisecondsRoundedUp = roundedUp ?? milliseconds
    }

    /// CLOCK_MONOTONIC: never goes back, so the loop's default.
    public static let monotonic = LoopClock(
        { monotonicNanoseconds() / 1_000_000 },
        roundedUp: { (monotonicNanoseconds() + 999_999) / 1_000_000 })
    /// Wall time, as the original's `gettimeofday`; it may jump backwards.
    public static let wall = LoopClock(
        { wallNanoseconds() / 1_000_000 },
        roundedUp: { (wallNanoseconds() + 999_999) / 1_000_000 })
}

private func wallNanoseconds() -> Int64 {
    var ts = timespec()
    clock_gettime(CLOCK_REALTIME, &ts)
    return Int64(ts.tv_sec) * 1_000_000_000 + Int64(ts.tv_nsec)
}

/// CLOCK_MONOTONIC in ns (vDSO: no syscall).
@inline(__always)
package func monotonicNanoseconds() -> Int64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Int64(ts.tv_sec) * 1_000_000_000 + Int64(ts.tv_nsec)
}
