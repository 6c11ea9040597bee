import Glibc
import LoopCore

/// Prints a line to stdout and flushes at once: parents read these lines through pipes.
public func say(_ line: String) {
    print(line)
    fflush(nil)
}

/// Writes a line to stderr (progress and errors, kept apart from results).
public func sayError(_ line: String) {
    let text = line + "\n"
    _ = text.withCString { write(2, $0, strlen($0)) }
}

/// CPU time (user + system) of the whole process, in ns.
public func processCPUNanoseconds() -> Int64 {
    var usage = rusage()
    getrusage(RUSAGE_SELF.rawValue, &usage)
    func ns(_ t: timeval) -> Int64 { Int64(t.tv_sec) * 1_000_000_000 + Int64(t.tv_usec) * 1000 }
    return ns(usage.ru_utime) + ns(usage.ru_stime)
}

extension LoopConfiguration {
    /// For a process whose main thread is not ours to set up (a test runner): a
    /// legacy loop off the main thread is accepted although its timer signals
    /// may interrupt other threads (see `allowsUnroutedTimerSignals`).
    public static var unroutedTimerSignalsAccepted: LoopConfiguration {
        var configuration = LoopConfiguration()
        configuration.allowsUnroutedTimerSignals = true
        return configuration
    }
}
