import CommandLineOptions
import Compat
import Glibc
import LoopTools

let twoLoopsOptions = CommandOptions(
    command: "two-loops",
    summary: "An epoll and a legacy loop on one thread, one of them taking the admin signals: closes one, "
        + "sends the process a SIGTERM and prints `shutdown SIGNAL` (the loop that took it) or `timeout`.",
    options: [
        .choice("--order", ["epoll-legacy", "legacy-epoll"], default: "epoll-legacy", "which loop is made first"),
        .choice("--close", ["older", "newer"], default: "older", "the loop closed first"),
        .choice(
            "--admin", ["epoll", "legacy", "both"], default: "legacy",
            "the loop that takes the admin signals (both: each loop asks for them, the newest gets them)"),
        .choice(
            "--prepare", ["none", "epoll", "legacy"], default: "none",
            "run ProcessSignals.prepare for this backend first"),
        .flag("--external", "print `ready PID` and wait in run() for a signal from outside instead of sending one"),
    ])

/// `loop-probe two-loops`: both backends in one process, on the main thread, as
/// `compare` and the tests have them. The SIGTERM is sent to the process
/// (`kill(getpid())`) after the first close when the admin loop survives it,
/// before it otherwise; either way the admin loop must turn it into a shutdown
/// and the process must exit 0, never die of the signal.
func runTwoLoops(_ args: Arguments) throws -> Int32 {
    let options = try args.parse(twoLoopsOptions)
    let closeNewer = options.string("--close") == "newer"
    let both = options.string("--admin") == "both"
    let order = options.string("--order") ?? "epoll-legacy"
    if let prepared = options.string("--prepare").flatMap(LoopBackendKind.init(rawValue:)) {
        ProcessSignals.prepare(for: prepared)
    }
    let kinds: [LoopBackendKind] = order == "epoll-legacy" ? [.epoll, .legacy] : [.legacy, .epoll]
    // With both asking, the newest claim on the thread's mask decides who takes them.
    let admin: LoopBackendKind = both ? kinds[1] : options.string("--admin") == "epoll" ? .epoll : .legacy
    var loops: [Loop] = []
    for kind in kinds {
        var configuration = LoopConfiguration()
        configuration.handlesAdminSignals = both || kind == admin
        loops.append(try Loop.make(kind, configuration: configuration))
    }
    let closed = loops[closeNewer ? 1 : 0]
    let survivor = loops[closeNewer ? 0 : 1]
    let adminLoop = loops.first { $0.kind == admin }!
    if survivor !== adminLoop { kill(getpid(), SIGTERM) }
    let reasonBeforeClose = survivor !== adminLoop ? try awaitShutdown(adminLoop) : nil
    try closed.close()
    let external = options.flag("--external")
    if survivor === adminLoop && !external { kill(getpid(), SIGTERM) }
    if external { say("ready \(getpid())") }
    // The survivor runs on: a signal the closed loop left behind would meet it here.
    let reason = try reasonBeforeClose ?? (external ? awaitShutdownInRun(survivor) : awaitShutdown(survivor))
    try survivor.close()
    var signo: Int32 = 0
    if case .signal(let s)? = reason { signo = s }
    say(reason == nil ? "timeout" : "shutdown \(signo)")
    return reason == nil ? 1 : 0
}

/// Runs `loop` until it has a shutdown request, for 3 s at most (nil then).
private func awaitShutdown(_ loop: Loop) throws -> ShutdownReason? {
    let deadline = monotonicNanoseconds() + 3_000_000_000
    while loop.shutdownReason == nil && monotonicNanoseconds() < deadline { try loop.runOnce(maxWaitMs: 20) }
    return loop.takeShutdownRequest()
}

/// Runs `loop` with `run()` until a shutdown, for 3 s at most (nil then).
private func awaitShutdownInRun(_ loop: Loop) throws -> ShutdownReason? {
    let deadline = monotonicNanoseconds() + 3_000_000_000
    var timedOut = false
    let timer = try loop.registerSleep(every: 50) {
        if monotonicNanoseconds() > deadline {
            timedOut = true
            loop.stop()
        }
    }
    let reason = try loop.run()
    try loop.unregister(timer)
    return timedOut ? nil : reason
}
