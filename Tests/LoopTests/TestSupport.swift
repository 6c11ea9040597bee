import CLoopShim
import Compat
import Glibc
import LoopTools
import TestSupport
import Testing

/// Every loop test lives under this suite: loops touch process-wide signal
/// state and only one legacy loop may exist at a time, so they run one at a time,
/// and never beside another target's loop suite (`.processExclusive`).
@Suite(.serialized, .processExclusive) struct LoopConformance {}

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
