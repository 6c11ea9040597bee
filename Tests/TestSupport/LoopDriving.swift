import Compat
import LoopTools
import Testing

/// Thrown by `runUntil` when its deadline passes.
public struct ConditionTimedOut: Error {
    public init() {}
}

/// Drives the loop until `done()` or the deadline; never hangs. Records an issue
/// and throws when the deadline passes first, ending the test there (what follows
/// would index results that never came).
@discardableResult
public func runUntil(
    _ loop: Loop, timeoutMs: Int = 10_000, sourceLocation: SourceLocation = #_sourceLocation,
    _ done: () throws -> Bool
) throws -> Bool {
    let deadline = monotonicNanoseconds() + Int64(timeoutMs) * 1_000_000
    while try !done() {
        if monotonicNanoseconds() > deadline {
            Issue.record("condition not met within \(timeoutMs) ms", sourceLocation: sourceLocation)
            throw ConditionTimedOut()
        }
        try loop.runOnce()
    }
    return true
}

/// Drives the loop for `ms` milliseconds (`each` before every poll).
public func runFor(_ loop: Loop, ms: Int, _ each: () -> Void = {}) throws {
    let end = monotonicNanoseconds() + Int64(ms) * 1_000_000
    while monotonicNanoseconds() < end {
        each()
        try loop.runOnce()
    }
}
