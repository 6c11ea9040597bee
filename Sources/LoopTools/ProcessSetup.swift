import Glibc
import LoopCore

/// The signal-mask rule for a process that runs an epoll loop: block the admin
/// signals (and SIGPIPE, which the loop counts) in `main`, before any other
/// thread exists, so the loop's signalfd sees them. The legacy loop catches
/// them with handlers instead, so they stay unblocked for it.
public func prepareProcessSignals(for backend: LoopBackendKind) {
    guard backend == .epoll else { return }
    var mask = sigset_t()
    sigemptyset(&mask)
    for s in adminSignals + [SIGPIPE] { sigaddset(&mask, s) }
    pthread_sigmask(SIG_BLOCK, &mask, nil)
}

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
