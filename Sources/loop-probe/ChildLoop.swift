import CommandLineOptions
import Compat
import Glibc
import LoopTools
import NodeSupport

let childLoopOptions = CommandOptions(
    command: "child-loop",
    summary: "A bare loop for tests that send it signals: prints `ready PID BACKEND`, then "
        + "`shutdown CODE SIGNAL MS` and the counters when a signal stops it.",
    options: [
        .flag(
            "--unblocked-thread",
            "start a thread that does not block the admin signals (breaks the signalfd rule on purpose)")
    ])

/// `loop-probe child-loop`: a bare loop for tests and comparisons that send
/// it real signals. Prints `ready <pid>` once the loop runs, then
/// `shutdown <code> <signal> <ms>` and the counters when it stops.
func runChildLoop(_ args: Arguments) throws -> Int32 {
    let options = try args.parse(childLoopOptions)
    let backend = try options.backend()
    let json = options.json
    let unblockedThread = options.flag("--unblocked-thread")
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
    if json {
        say(
            JSON.object([
                ("event", .string("ready")), ("pid", .int(Int(getpid()))), ("backend", .string(backend.rawValue)),
            ]).description)
    } else {
        say("ready \(getpid()) \(backend)")
    }
    let reason = try loop.run()
    let stoppedAt = monotonicNanoseconds()
    let latency = signalledAt == 0 ? 0 : (stoppedAt - signalledAt) / 1_000_000
    var signo: Int32 = 0
    if case .signal(let s) = reason { signo = s }
    if case .power = reason { signo = SIGPWR }
    if json {
        say(
            JSON.object([
                ("event", .string("shutdown")), ("code", .int(reason.legacyCode)), ("signal", .int(Int(signo))),
                ("latencyMs", .int(Int(latency))),
                ("loop", .object(loop.counters.fields.map { ($0.0, .int($0.1)) })),
            ]).description)
    } else {
        say("shutdown \(reason.legacyCode) \(signo) \(latency)")
        for line in CounterReport.lines(loop: loop.counters) { say(line) }
    }

    try loop.close()
    return 0
}
