import Compat
import Glibc
import LoopTools

/// idle: a loop with nothing to do but a 1 s heartbeat, in its own process
/// (so only its own threads count), measured from inside between its start
/// and the SIGTERM that ends it: CPU use and how often it wakes (polls/s).
func benchIdle(_ context: BenchContext) throws {
    let budget = context.budget
    var results: [Column: [String: String]] = [:]
    for kind in LoopBackendKind.allCases {
        let child = try spawn([context.selfPath, "idle", "--backend", kind.rawValue], cpu: 1)
        _ = try child.expect("ready", timeoutMs: 10_000)
        usleep(UInt32(budget.idleMs) * 1000)
        child.terminate()
        results[Column(kind)] = try child.expect("result", timeoutMs: 10_000)
        child.waitForExit()
    }
    for (key, metric, decimals) in [("cpu_pct", "CPU %", 3), ("polls_per_s", "wake-ups/s", 0)] {
        func cell(_ c: Column) -> Cell {
            guard let v = results[c]?.number(key) else { return .missing("failed") }
            return .value(v)
        }
        context.report.add(
            Row(
                workload: "idle", label: "1 heartbeat", metric: metric, key: key,
                epoll: cell(.epoll), legacy: cell(.legacy), peer: nil, decimals: decimals))
    }
    // Tickless: the physical limit is the heartbeat itself, one wake-up a second.
    let wakeups = context.report.row("idle", "1 heartbeat", "polls_per_s")?.epoll.number
    context.report.add(
        TargetResult(
            name: "idle wake-ups of the epoll loop", formula: "wake-ups/s, epoll",
            ratio: wakeups, goal: .atMost(2), note: wakeups == nil ? "no figure" : nil))
    let cpu = context.report.row("idle", "1 heartbeat", "cpu_pct")?.epoll.number
    context.report.add(
        TargetResult(
            name: "idle CPU of the epoll loop", formula: "CPU %, epoll",
            ratio: cpu, goal: .atMost(0.1), note: cpu == nil ? "no figure" : nil))
    let r = context.report.row("idle", "1 heartbeat", "cpu_pct")?.epollOverLegacy
    context.report.add(
        TargetResult(
            name: "idle CPU: epoll no higher than legacy", formula: "CPU % epoll ÷ legacy",
            ratio: r, goal: .atMost(1.0), note: r == nil ? "no figure" : nil))
    sayError("  CPU epoll \(results[.epoll]?["cpu_pct"] ?? "?") %, legacy \(results[.legacy]?["cpu_pct"] ?? "?") %")
}

/// `loop-bench idle`: runs until SIGTERM, then prints
/// `result cpu_pct=... polls_per_s=... alarms=... wakeups=... beats=...`.
func runIdleChild(_ options: Options) throws -> Int32 {
    let backend = try options.backend()
    ProcessSignals.prepare(for: backend)
    let loop = try Loop.make(backend)
    var beats = 0
    try loop.registerSleep(every: 1000) { beats += 1 }
    let cpuStart = processCPUNanoseconds()
    let wallStart = monotonicNanoseconds()
    say("ready pid=\(getpid()) backend=\(backend)")

    _ = try loop.run()
    let wall = Double(monotonicNanoseconds() - wallStart)
    let cpu = Double(processCPUNanoseconds() - cpuStart)
    let counters = loop.counters
    try loop.close()
    say(
        "result cpu_pct=\(format(cpu / wall * 100, decimals: 4)) polls_per_s=\(format(Double(counters.polls) / wall * 1e9, decimals: 1))"
            + " alarms=\(counters.alarms) wakeups=\(counters.wakeups) beats=\(beats)")
    return 0
}
