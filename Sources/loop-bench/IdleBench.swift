import Compat
import Glibc
import LoopTools

/// idle: a loop with nothing to do but a 1 s heartbeat, in its own process
/// (so only its own threads count), measured from inside between its start
/// and the SIGTERM that ends it: CPU use and how often it wakes (polls/s).
func benchIdle(_ context: BenchContext) throws {
    let budget = context.budget
    var results: [Column: [[String: String]]] = [:]
    for repetition in 0..<budget.idleRepeats {
        for kind in rotated(LoopBackendKind.allCases, by: repetition) {
            let child = try spawn([context.selfPath, "idle", "--backend", kind.rawValue], cpu: 1)
            _ = try child.expect("ready", timeoutMs: 10_000)
            usleep(UInt32(budget.idleMs) * 1000)
            child.terminate()
            results[Column(kind), default: []].append(try child.expect("result", timeoutMs: 10_000))
            child.waitForExit()
        }
    }
    for (key, metric, decimals) in [("cpu_pct", "CPU %", 3), ("polls_per_s", "wake-ups/s", 0)] {
        func cell(_ c: Column) -> Cell {
            let values = (results[c] ?? []).compactMap { $0.number(key) }
            return values.isEmpty ? .missing("failed") : .value(median(values))
        }
        var row = Row(
            workload: "idle", label: "1 heartbeat", metric: metric, key: key,
            epoll: cell(.epoll), legacy: cell(.legacy), peer: nil, decimals: decimals)
        row.runs = results.mapValues { $0.map { $0.number(key) ?? .nan } }
        context.report.add(row)
    }
    // Tickless: the physical limit is the heartbeat itself, one wake-up a second.
    let wakeups = context.report.row("idle", "1 heartbeat", "polls_per_s")
    var target = TargetResult(
        name: "idle wake-ups of the epoll loop", formula: "wake-ups/s, epoll",
        ratio: wakeups?.epoll.number, goal: .atMost(2), note: wakeups?.epoll.number == nil ? "no figure" : nil)
    target.spread = Spread.of(wakeups?.runs[.epoll] ?? [])
    context.report.add(target)
    let cpu = context.report.row("idle", "1 heartbeat", "cpu_pct")
    target = TargetResult(
        name: "idle CPU of the epoll loop", formula: "CPU %, epoll",
        ratio: cpu?.epoll.number, goal: .atMost(0.1), note: cpu?.epoll.number == nil ? "no figure" : nil)
    target.spread = Spread.of(cpu?.runs[.epoll] ?? [])
    context.report.add(target)
    let r = cpu?.epollOverLegacy
    target = TargetResult(
        name: "idle CPU: epoll no higher than legacy", formula: "CPU % epoll ÷ legacy",
        ratio: r, goal: .atMost(1.0), note: r == nil ? "no figure" : nil)
    target.spread = cpu?.spread(.epoll, over: .legacy)
    context.report.add(target)
    sayError(
        "  CPU epoll \(cpu?.epoll.text(decimals: 3) ?? "?") %, legacy \(cpu?.legacy.text(decimals: 3) ?? "?") %")
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
