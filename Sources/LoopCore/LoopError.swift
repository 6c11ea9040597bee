/// Why a loop operation was refused.
public enum LoopError: Error, Equatable, CustomStringConvertible, Sendable {
    /// A negative descriptor.
    case invalidDescriptor(Int32)
    /// The backend cannot watch this descriptor (the select loop stops below `FD_SETSIZE`).
    case descriptorOutOfRange(fd: Int32, limit: Int32)
    /// Loop state may only be touched by the thread that owns the loop.
    case wrongThread(operation: String)
    /// The registration pool (`maxRegistrations`) is exhausted.
    case noEmptySlots(limit: Int)
    /// A sleep period must be between 1 ms and `maximumSleepPeriodMs`.
    case invalidPeriod(Int)
    /// Niceness is 0 (urgent), 1 (background) or 2 (lowest).
    case invalidNiceness(Int)
    /// A `LoopConfiguration` field out of its range.
    case invalidConfiguration(field: String, value: Int, allowed: ClosedRange<Int>)
    /// The loop belongs to the process that created it; a forked child cannot use it.
    case forkedChild(operation: String)
    /// A legacy loop off the main thread while the main thread takes SIGALRM: its
    /// 1 kHz timer signals would interrupt the main thread's sleeps and polls.
    case legacyTimerSignalsUnrouted
    /// Only one legacy loop may exist in a process: it owns process-wide signal state.
    case legacyLoopAlreadyActive
    /// `watchChild`: the pid is not a child of this process (or was reaped already).
    case notAChild(Int32)
    /// `watchChild`: the child is watched already (one watch per child).
    case childAlreadyWatched(Int32)
    /// The loop was closed.
    case closed
    /// A system call failed.
    case system(SystemError)

    public var description: String {
        switch self {
        case .invalidDescriptor(let fd): return "invalid descriptor \(fd)"
        case .descriptorOutOfRange(let fd, let limit):
            return "descriptor \(fd) is out of range for this backend (must be below \(limit))"
        case .wrongThread(let op): return "\(op) called from a thread that does not own the loop"
        case .noEmptySlots(let limit): return "no empty slots: all \(limit) registrations are in use"
        case .invalidPeriod(let ms):
            return
                "invalid sleep period or timer delay \(ms) ms (periods 1...\(maximumSleepPeriodMs), delays 0...\(maximumSleepPeriodMs))"
        case .invalidNiceness(let n): return "invalid niceness \(n) (must be 0, 1 or 2)"
        case .invalidConfiguration(let field, let value, let allowed):
            return
                "LoopConfiguration.\(field) = \(value) is out of range (\(allowed.lowerBound)...\(allowed.upperBound))"
        case .forkedChild(let op):
            return "\(op) called in a forked child: the loop belongs to the parent process; close it and make a new one"
        case .legacyTimerSignalsUnrouted:
            return "a legacy loop off the main thread needs the timer signals routed to it: call "
                + "ProcessSignals.prepare(for: .legacy) in main before starting threads, or set "
                + "LoopConfiguration.allowsUnroutedTimerSignals to accept SIGALRM interrupting other threads"
        case .legacyLoopAlreadyActive:
            return "a legacy loop already exists in this process; close it before creating another"
        case .notAChild(let pid):
            return
                "process \(pid) is not a child of this process (or was reaped already): only a child's exit can be watched"
        case .childAlreadyWatched(let pid): return "child \(pid) is watched already; unregister that watch first"
        case .closed: return "the loop is closed"
        case .system(let e): return e.description
        }
    }
}
