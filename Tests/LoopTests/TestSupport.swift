import CLoopShim
import Compat
import Glibc
import LoopTools
import Testing
import TestTraits

/// Every loop test lives under this suite: loops touch process-wide signal
/// state and only one legacy loop may exist at a time, so they run one at a time,
/// and never beside another target's loop suite (`.processExclusive`).
@Suite(.serialized, .processExclusive) struct LoopConformance {}

/// Makes a loop of `kind`, runs `body`, and always tears the loop down.
func withLoop<R>(_ kind: LoopBackendKind, configuration: LoopConfiguration = .unroutedTimerSignalsAccepted,
                 _ body: (Loop) throws -> R) throws -> R {
    let loop = try Loop.make(kind, configuration: configuration)
    defer { try? loop.close() }
    return try body(loop)
}

/// Drives the loop until `done()` or the deadline; never hangs. Returns whether `done()` became true.
@discardableResult
func runUntil(_ loop: Loop, timeoutMs: Int64 = 10_000, _ done: () -> Bool) throws -> Bool {
    let deadline = monotonicNanoseconds() + timeoutMs * 1_000_000
    while !done() {
        if monotonicNanoseconds() > deadline { return false }
        try loop.runOnce()
    }
    return true
}

/// Drives the loop for `ms` milliseconds.
func runFor(_ loop: Loop, ms: Int64) throws {
    let end = monotonicNanoseconds() + ms * 1_000_000
    while monotonicNanoseconds() < end { try loop.runOnce() }
}

func elapsedMs(since start: Int64) -> Double { Double(monotonicNanoseconds() - start) / 1e6 }

/// Raises the soft descriptor limit to the hard one for the duration of `body`.
func withRaisedDescriptorLimit<R>(_ body: () throws -> R) rethrows -> R {
    var saved = rlimit()
    getrlimit(Int32(RLIMIT_NOFILE.rawValue), &saved)
    var raised = saved
    raised.rlim_cur = saved.rlim_max
    setrlimit(Int32(RLIMIT_NOFILE.rawValue), &raised)
    defer { setrlimit(Int32(RLIMIT_NOFILE.rawValue), &saved) }
    return try body()
}

/// A descriptor of a regular file already unlinked: select reports it always ready, epoll refuses it.
func unlinkedRegularFile() throws -> Int32 {
    var template = Array("/tmp/loop-file-XXXXXX".utf8CString)
    let fd = mkstemp(&template)
    try #require(fd >= 0)
    template.withUnsafeBufferPointer { _ = unlink($0.baseAddress!) }
    return fd
}

/// Stops `loop` once `ms` have passed, so a `run()` whose expected request never
/// comes ends (and its expectation fails) instead of hanging the suite.
func addWatchdog(_ loop: Loop, ms: Int64 = 5_000) throws {
    let deadline = monotonicNanoseconds() + ms * 1_000_000
    try loop.registerSleep(every: 50) { if monotonicNanoseconds() > deadline { loop.stop() } }
}
