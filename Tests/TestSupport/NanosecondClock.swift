import Compat
import Synchronization

/// A clock the test sets, finer than the loop's milliseconds: `loopClock` reads it
/// truncated, and rounded up where the loop asks for that, so a test can put the time
/// between two milliseconds and see what counts from which.
public final class NanosecondClock: Sendable {
    private let value: Atomic<Int64>

    public init(_ nanoseconds: Int64) { value = Atomic(nanoseconds) }

    /// The time now, in nanoseconds.
    public var nanoseconds: Int64 {
        get { value.load(ordering: .relaxed) }
        set { value.store(newValue, ordering: .relaxed) }
    }

    /// This clock as the loop's (`LoopConfiguration.clock`).
    public var loopClock: LoopClock {
        LoopClock({ self.nanoseconds / 1_000_000 }, roundedUp: { (self.nanoseconds + 999_999) / 1_000_000 })
    }
}
