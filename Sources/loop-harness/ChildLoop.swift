import Compat
import Glibc
import LoopTools

/// `loop-harness child-loop`: a bare loop for tests and comparisons that send
/// it real signals. Prints `ready <pid>` once the loop runs, then
/// `shutdown <code> <signal> <ms>` and the counters when it stops.
func runChildLoop(_ args: Arguments) throws -> Int32 {
    let backend = try args.backend()
    let unblockedThread = args.flag("--unblocked-thread")
    ProcessSignals.prepare(for: backend)
    if unblockedThread {
        // Breaks the signalfd rule on purpose: a thread that does not block the admin signals.
        var none = sigset_t()
        sigemptyset(&none)
        var saved = sigset_t()
        pthread_sigmask(SIG_SETMASK, &none, &saved)
        _ = startThread { while true { pause() } }
        pthread_sigmask(SIG_SETMASK, &saved, nil)
    }
    let loop = try Loop.make(backend)
    var signalledAt: Int64 = 0
    try loop.registerSleep(every: 1) {
        if signalledAt == 0 && loop.shutdownReason != nil { signalledAt = monotonicNanoseconds() }
    }
    say("ready \(getpid()) \(backend)")
    
    let reason = try loop.run()
    let stoppedAt = monotonicNanoseconds()
    let latency = signalledAt == 0 ? 0 : (stoppedAt - signalledAt) / 1_000_000
    var signo: Int32 = 0
    if case .signal(let s) = reason { signo = s }
    if case .power = reason { signo = SIGPWR }
    say("shutdown \(reason.legacyCode) \(signo) \(latency)")
    say("counters: \(loop.counters)")
    
    try loop.close()
    return 0
}
