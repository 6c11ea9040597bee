import CLoopShim
import CommandLineOptions
import Compat
import Glibc
import LoopTools
import Synchronization

/// `loop-probe timer-routing`: a loop on a second thread while the main
/// thread sleeps in `poll`; prints `refused <reason>` or `eintr <n>`, the
/// number of times the main thread's sleep was interrupted in one second.
/// `--prepared` runs `ProcessSignals.prepare` first; `--accept-unrouted` sets
/// `allowsUnroutedTimerSignals`.
let timerRoutingOptions = CommandOptions(
    command: "timer-routing",
    summary: "A loop on a second thread while the main thread sleeps in poll: prints `refused REASON` "
        + "or `eintr N`, the main thread's interrupted sleeps in one second.",
    options: [
        .flag("--prepared", "run ProcessSignals.prepare first"),
        .flag("--accept-unrouted", "set allowsUnroutedTimerSignals"),
    ])

func runTimerRouting(_ args: Arguments) throws -> Int32 {
    let options = try args.parse(timerRoutingOptions)
    let backend = try options.backend()
    let json = options.json
    if options.flag("--prepared") { ProcessSignals.prepare(for: backend) }
    var configuration = LoopConfiguration()
    configuration.allowsUnroutedTimerSignals = options.flag("--accept-unrouted")
    // 0 = starting, 1 = running, 2 = refused.
    let state = Atomic<Int>(0)
    let thread = startThread { [configuration] in
        let loop: Loop
        do {
            loop = try Loop.make(backend, configuration: configuration)
        } catch {
            say(json ? JSON.object([("refused", .string("\(error)"))]).description : "refused \(error)")
            state.store(2, ordering: .releasing)
            return
        }
        state.store(1, ordering: .releasing)
        let started = monotonicNanoseconds()
        _ = try? loop.registerSleep(every: 50) { if monotonicNanoseconds() - started > 1_500_000_000 { loop.stop() } }
        _ = try? loop.run()
        try? loop.close()
    }
    while state.load(ordering: .acquiring) == 0 { usleep(1000) }
    if state.load(ordering: .acquiring) == 1 {
        var interrupted = 0
        let end = monotonicNanoseconds() + 1_000_000_000
        while monotonicNanoseconds() < end {
            if poll(nil, 0, 100) < 0 && errno == EINTR { interrupted += 1 }
        }
        say(json ? JSON.object([("eintr", .int(interrupted))]).description : "eintr \(interrupted)")
    }
    joinThread(thread)
    return 0
}

/// `loop-probe fork-check`: forks while a loop with running workers exists.
/// The child must be refused the loop (`.forkedChild`), close it at once
/// (no join of threads it does not have), start with the admin signals
/// unblocked, and be able to make a loop of its own; it reports by exit code.
/// The parent keeps serving worker completions meanwhile. Prints
/// `fork-check child-exit=<code|hung> completions=<n>/50`.
let forkCheckOptions = CommandOptions(
    command: "fork-check",
    summary: "Forks beside a loop with running workers and checks both sides: prints "
        + "`fork-check child-exit=CODE|hung completions=N/50`.",
    options: [])

func runForkCheck(_ args: Arguments) throws -> Int32 {
    let options = try args.parse(forkCheckOptions)
    let backend = try options.backend()
    ProcessSignals.prepare(for: backend)
    let loop = try Loop.make(backend)
    var warmed = false
    try loop.submit({ 1 }) { _ in warmed = true }
    while !warmed { try loop.runOnce() }

    let pid = shim_fork()
    if pid == 0 { _exit(forkedChildChecks(loop, backend: backend)) }
    guard pid > 0 else { throw SystemError("fork", errno: errno) }

    var completions = 0
    for i in 0..<50 { try loop.submit({ i }) { _ in completions += 1 } }
    let deadline = monotonicNanoseconds() + 5_000_000_000
    var status: Int32 = 0
    var reaped = false
    while monotonicNanoseconds() < deadline && !(reaped && completions == 50) {
        try loop.runOnce()
        if !reaped && waitpid(pid, &status, WNOHANG) == pid { reaped = true }
    }
    if !reaped {
        kill(pid, SIGKILL)
        waitpid(pid, &status, 0)
    }
    let child = reaped ? (exited(status).map { "\($0)" } ?? "signal\(killedBy(status) ?? 0)") : "hung"
    if options.json {
        var fields: [(String, JSON)] = [("reaped", .bool(reaped))]
        if reaped, let code = exited(status) { fields.append(("childExit", .int(Int(code)))) }
        if reaped, let signo = killedBy(status) { fields.append(("childSignal", .int(Int(signo)))) }
        fields += [("completions", .int(completions)), ("submitted", .int(50))]
        say(JSON.object(fields).description)
    } else {
        say("fork-check child-exit=\(child) completions=\(completions)/50")
    }
    try loop.close()
    return 0
}

/// The child's side of `fork-check`: 0 when every check passed, else the first that failed.
private func forkedChildChecks(_ loop: Loop, backend: LoopBackendKind) -> Int32 {
    // Driving the inherited loop would steal the parent's wake-ups and events.
    for _ in 0..<20 {
        do {
            try loop.runOnce()
            return 10
        } catch LoopError.forkedChild {
        } catch {
            return 11
        }
        usleep(5_000)
    }
    loop.stopHandle.wakeup() // must do nothing here
    // The admin signals take their default action here: unblocked (the atfork
    // handler gave the child the program's mask) and not caught by the parent's loop.
    var mask = sigset_t()
    pthread_sigmask(SIG_SETMASK, nil, &mask)
    if adminSignals.contains(where: { sigismember(&mask, $0) == 1 }) { return 13 }
    for signo in adminSignals {
        var action = sigaction()
        sigaction(signo, nil, &action)
        if action.__sigaction_handler.sa_handler != nil { return 16 }
    }
    // A loop of its own works, while the parent's copy is still open.
    guard let own = try? Loop.make(backend) else { return 14 }
    var beats = 0
    _ = try? own.registerSleep(every: 5) { beats += 1 }
    let end = monotonicNanoseconds() + 2_000_000_000
    while beats < 3 && monotonicNanoseconds() < end { try? own.runOnce() }
    // Closing the parent's copy leaves the child's own loop alone.
    let closeStarted = monotonicNanoseconds()
    guard (try? loop.close()) != nil, monotonicNanoseconds() - closeStarted < 1_000_000_000 else { return 12 }
    let before = beats
    while beats < before + 3 && monotonicNanoseconds() < end + 2_000_000_000 { try? own.runOnce() }
    try? own.close()
    return beats >= before + 3 ? 0 : 15
}
