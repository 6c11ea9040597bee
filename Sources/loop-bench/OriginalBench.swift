import Compat
import Glibc
import LoopTools

/// original: the original C++ node, the port's epoll node and the port's legacy node, each in
/// turn a one-host cluster in the same network namespace, loaded by the same C client with
/// one-datagram ping RPCs (type 0x11, a 3-byte request both answer with an empty reply), and
/// each at rest. Namespaces and the original's start are Python's job
/// (scripts/lib/original_bench.py, which reuses the cluster and syscall-profile code); this
/// reads its lines. Where the original cannot run (absent, or not root) its column says why.
func benchOriginal(_ context: BenchContext) throws {
    let budget = context.budget
    let workload = "original"
    context.report.peer(
        "the original C++ node (\(originalLocation())/bin/gb), a one-host cluster in a network namespace",
        for: workload)
    var skipped: String?
    var results: [Column: [String: [[String: String]]]] = [:]
    var failures: [String] = []
    let unavailable = originalBenchUnavailable(context)
    if let unavailable {
        skipped = unavailable
        sayError("  SKIPPED: \(unavailable)")
    } else {
        let child = try spawn([
            "/usr/bin/env", "python3", context.originalDriver, "--client", context.peer("udp-client")!,
            "--harness", ChildProcess.siblingPath("loop-harness"), "--rounds", String(budget.originalRounds),
            "--rest-s", String(budget.originalRestSeconds), "--warmup-ms", String(budget.rpcWarmupMs),
            "--ms", String(budget.originalMeasureMs),
        ])
        while let line = child.line(startingWith: "", timeoutMs: 300_000) {
            if line.hasPrefix("skipped original ") {
                skipped = String(line.dropFirst("skipped original ".count))
                sayError("  the original: SKIPPED (\(skipped!))")
                continue
            }
            let f = fields(of: line)
            guard let subject = f["subject"], let column = Column(rawValue: subject) else { continue }
            if line.hasPrefix("failed") {
                failures.append(line)
                sayError("  \(line)")
            } else if line.hasPrefix("rest ") {
                results[column, default: [:]]["rest", default: []].append(f)
                sayError("  \(subject) at rest: CPU \(f["cpu_pct"] ?? "?") %, \(f["wakeups_per_s"] ?? "?") wake-ups/s")
            } else if line.hasPrefix("result "), let window = f["window"] {
                results[column, default: [:]]["c=\(window)", default: []].append(f)
                sayError(
                    "  \(subject) c=\(window): \(f["rtt_per_s"] ?? "?") RPC/s, p50 \(f["p50_us"] ?? "?") µs"
                        + (f["lost"].map { $0 == "0" ? "" : ", \($0) lost" } ?? ""))
            }
        }
        if let status = child.waitForExit(timeoutMs: 120_000), exited(status) != 0 {
            failures.append("original_bench.py exited \(exited(status).map(String.init) ?? "on a signal")")
        }
    }
    for failure in failures { context.report.note("original: \(failure)") }
    if let skipped { context.report.note("original: the original's column SKIPPED: \(skipped)") }

    let cases: [(label: String, group: String, metrics: [(String, String, Int)])] = [
        ("ping 0x11, c=1", "c=1", rpcMetrics), ("ping 0x11, c=32", "c=32", rpcMetrics),
        ("at rest", "rest", [("cpu_pct", "CPU %", 3), ("wakeups_per_s", "wake-ups/s (context switches)", 0)]),
    ]
    for c in cases {
        for (key, metric, decimals) in c.metrics {
            func values(_ column: Column) -> [Double] {
                (results[column]?[c.group] ?? []).map { r in
                    // A run that completed nothing in its window has no figures.
                    c.group != "rest" && (r.number("samples") ?? 0) == 0 ? .nan : r.number(key) ?? .nan
                }
            }
            func cell(_ column: Column) -> Cell {
                if let unavailable { return .missing("SKIPPED: \(unavailable)") }
                if column == .original, let skipped { return .missing("SKIPPED: \(skipped)") }
                let numbers = values(column).filter(\.isFinite)
                return numbers.isEmpty ? .missing("failed") : .value(median(numbers))
            }
            var row = Row(
                workload: workload, label: c.label, metric: metric, key: key,
                epoll: cell(.epoll), legacy: cell(.legacy), peer: nil, decimals: decimals)
            row.original = cell(.original)
            row.runs = [.epoll: values(.epoll), .legacy: values(.legacy), .original: values(.original)]
            context.report.add(row)
        }
    }
    addOriginalTargets(context.report, skipped: skipped)
}

/// A ping case's figures; the node's CPU per RPC tells a rate the server limits from one the
/// path limits (the client's CPU, the bridge, the wake-ups between CPUs).
private let rpcMetrics = [
    ("rtt_per_s", "RPC/s", 0), ("p50_us", "p50 µs", 1), ("p99_us", "p99 µs", 1),
    ("server_cpu_us", "node CPU µs per RPC", 1),
]

private func addOriginalTargets(_ report: Report, skipped: String?) {
    let goals: [(name: String, label: String, key: String, column: Column, goal: Goal)] = [
        ("ping RPC c=32: the epoll node vs the original", "ping 0x11, c=32", "rtt_per_s", .epoll, .atLeast(1.5)),
        ("at rest, CPU: the epoll node vs the original", "at rest", "cpu_pct", .epoll, .atMost(0.01)),
        ("ping RPC c=32: the legacy node vs the original", "ping 0x11, c=32", "rtt_per_s", .legacy, .within(0.8, 1.25)),
        ("at rest, CPU: the legacy node vs the original", "at rest", "cpu_pct", .legacy, .within(0.8, 1.25)),
    ]
    for g in goals {
        let row = report.row("original", g.label, g.key)
        let mine = g.column == .epoll ? row?.epoll.number : row?.legacy.number
        let r = quotient(mine, row?.original?.number)
        let metric = g.key == "cpu_pct" ? "CPU %" : "RPC/s"
        var target = TargetResult(
            name: g.name, formula: "\(metric) \(g.column) ÷ original", ratio: r, goal: g.goal,
            note: r == nil ? (skipped.map { "the original SKIPPED: \($0)" } ?? "no figure") : nil)
        target.spread = row?.spread(g.column, over: .original)
        report.add(target)
    }
}

/// Why the workload cannot run at all here, or nil.
private func originalBenchUnavailable(_ context: BenchContext) -> String? {
    if getuid() != 0 { return "the nodes run in network namespaces, which need root" }
    if context.peer("udp-client") == nil { return "the C client is not built (run scripts/bench)" }
    if access(context.originalDriver, R_OK) != 0 { return "no \(context.originalDriver) (run from the repository)" }
    if access(ChildProcess.siblingPath("loop-harness"), X_OK) != 0 {
        return "no loop-harness beside loop-bench (scripts/bench builds it)"
    }
    return nil
}

/// Where scripts/lib/original.py looks for the original: LOOP_ORIGINAL, else ../shared/original.
private func originalLocation() -> String {
    getenv("LOOP_ORIGINAL").map { String(cString: $0) } ?? "../shared/original"
}
