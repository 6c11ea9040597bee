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
    /// A sleep period must be at least 1 ms.
    case invalidPeriod(Int)
    /// Only one legacy loop may exist in a process: it owns process-wide signal state.
    case legacyLoopAlreadyActive
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
        case .invalidPeriod(let ms): return "invalid sleep period \(ms) ms (must be >= 1)"
        case .legacyLoopAlreadyActive:
            return "a legacy loop already exists in this process; close it before creating another"
        case .closed: return "the loop is closed"
        case .system(let e): return e.description
        }
    }
}
