import Compat
import Glibc

/// The signal-mask rule for a process that runs only an epoll loop: block the
/// admin signals in main, before any other thread exists, so the loop's
/// signalfd sees SIGTERM. The legacy loop catches them with handlers instead.
func prepareProcessSignals(for backend: LoopBackendKind) {
    guard backend == .epoll else { return }
    var mask = sigset_t()
    sigemptyset(&mask)
    for s in adminSignals + [SIGPIPE] { sigaddset(&mask, s) }
    pthread_sigmask(SIG_BLOCK, &mask, nil)
}

/// Raises the soft descriptor limit to at least `count` (up to the hard limit).
func raiseDescriptorLimit(to count: Int) {
    var limit = rlimit()
    getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
    if limit.rlim_cur < rlim_t(count) {
        limit.rlim_cur = min(rlim_t(count), limit.rlim_max)
        setrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
    }
}

/// CPU time (user + system) of the whole process, in ns.
func processCPUNanoseconds() -> Int64 {
    var usage = rusage()
    getrusage(Int32(RUSAGE_SELF.rawValue), &usage)
    func ns(_ t: timeval) -> Int64 { Int64(t.tv_sec) * 1_000_000_000 + Int64(t.tv_usec) * 1000 }
    return ns(usage.ru_utime) + ns(usage.ru_stime)
}
