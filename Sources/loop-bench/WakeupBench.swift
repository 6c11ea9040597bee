import Compat
import Glibc
import LoopTools

/// wakeup: a worker thread finishes a job while the loop is blocked in its
/// wait; the latency runs from the job's last instruction to its completion
/// running on the loop thread. The epoll loop is woken through its eventfd,
/// the legacy loop by a SIGCHLD sent to the loop thread. Each measurement is
/// a process pinned to one CPU: on this VM a wake-up across CPUs costs more
/// than either mechanism and varies from run to run. The C peer measures the
/// bare mechanisms (scripts/peers/wakeup-c.c) in the same placement.
func benchWakeup(_ context: BenchContext) throws {
    let budget = context.budget
    let workload = "wakeup"
    context.report.peer("bare eventfd / SIGCHLD wake-ups in C (scripts/peers/wakeup-c.c)", for: workload)
    let counts = ["--samples", String(budget.wakeupSamples), "--warmup", String(budget.wakeupWarmup)]
    var contenders: [(name: String, argv: [String])] = LoopBackendKind.allCases.map {
        ("loop \($0)", [context.selfPath, "wakeup", "--backend", $0.rawValue] + counts)
    }
    let peer = context.peer("wakeup-c")
    if let peer {
        contenders += [
            ("C eventfd", [peer, "--mode", "eventfd"] + counts), ("C signal", [peer, "--mode", "signal"] + counts),
        ]
    }

    var results: [String: [[String: String]]] = [:]
    for round in 0..<budget.wakeupRounds {
        for (name, argv) in rotated(contenders, by: round) {
            let child = try spawn(argv, cpu: 1)
            results[name, default: []].append(try child.expect("result", timeoutMs: 60_000))
            child.waitForExit()
        }
    }

    func cell(_ name: String, _ key: String) -> Cell {
        if name.hasPrefix("C"), peer == nil { return .missing("not built") }
        let values = (results[name] ?? []).compactMap { $0.number(key) }
        return values.isEmpty ? .missing("failed") : .value(median(values))
    }
    func runs(_ name: String, _ key: String) -> [Double] { (results[name] ?? []).map { $0.number(key) ?? .nan } }
    for (key, metric) in [("p50_us", "p50 µs"), ("p99_us", "p99 µs")] {
        var row = Row(
            workload: workload, label: "job → completion", metric: metric, key: key,
            epoll: cell("loop epoll", key), legacy: cell("loop legacy", key),
            peer: cell("C eventfd", key), decimals: 1)
        row.runs = [.epoll: runs("loop epoll", key), .legacy: runs("loop legacy", key), .peer: runs("C eventfd", key)]
        context.report.add(row)
    }
    for (key, metric) in [("p50_us", "p50 µs"), ("p99_us", "p99 µs")] {
        var row = Row(
            workload: workload, label: "bare mechanism in C", metric: metric, key: key,
            epoll: cell("C eventfd", key), legacy: cell("C signal", key), peer: nil, decimals: 1)
        row.runs = [.epoll: runs("C eventfd", key), .legacy: runs("C signal", key)]
        context.report.add(row)
    }
    let curves = ["loop epoll", "loop legacy", "C eventfd", "C signal"].compactMap { name in
        mergedCDF(results[name] ?? []).map { (name, $0) }
    }
    context.report.add(
        Distribution(
            name: "wakeup", title: "Wake-up latency: job done → completion on the loop thread",
            series: curves))
    let job = context.report.row(workload, "job → completion", "p50_us")
    let overBare = job?.epollOverPeer
    var target = TargetResult(
        name: "wake-up p50: the epoll loop vs the bare eventfd in C", formula: "p50 loop epoll ÷ C eventfd",
        ratio: overBare, goal: .atMost(1.15), note: overBare == nil ? "the C peer is not built" : nil)
    target.spread = job?.spread(.epoll, over: .peer)
    context.report.add(target)
    let r = job?.epollOverLegacy
    target = TargetResult(
        name: "wake-up p50: eventfd vs SIGCHLD", formula: "p50 epoll ÷ legacy",
        ratio: r, goal: .atMost(0.5), note: r == nil ? "no figure" : nil)
    target.spread = job?.spread(.epoll, over: .legacy)
    context.report.add(target)
    let bare = context.report.row(workload, "bare mechanism in C", "p50_us")
    let floor = bare?.epollOverLegacy
    target = TargetResult(
        name: "(the same for the bare mechanisms in C)", formula: "p50 C eventfd ÷ C signal",
        ratio: floor, goal: .atMost(0.5), note: floor == nil ? "the C peer is not built" : nil)
    target.spread = bare?.spread(.epoll, over: .legacy)
    context.report.add(target)
    sayError(
        "  p50: loop epoll \(cell("loop epoll", "p50_us").text(decimals: 1)) µs, legacy \(cell("loop legacy", "p50_us").text(decimals: 1)) µs;"
            + " C eventfd \(cell("C eventfd", "p50_us").text(decimals: 1)) µs, signal \(cell("C signal", "p50_us").text(decimals: 1)) µs"
    )
}

/// `loop-bench wakeup`: one job at a time on one backend; prints
/// `result p50_us=... p99_us=... samples=N`.
func runWakeupChild(_ options: Options) throws -> Int32 {
    let backend = try options.backend()
    ProcessSignals.prepare(for: backend)
    let samples = try options.int("--samples", default: 1000)
    let warmup = try options.int("--warmup", default: 50)
    let latencies = try measureWakeups(backend, samples: max(samples, 1), warmup: max(warmup, 0))
    say(
        "result p50_us=\(format(latencies.percentile(50), decimals: 1)) p99_us=\(format(latencies.percentile(99), decimals: 1))"
            + " samples=\(latencies.count) " + cdfField(latencies))
    return 0
}

/// Each job sleeps a little (so the loop is surely back in its wait), stamps
/// the time as its last act, and its completion submits the next job.
private func measureWakeups(_ kind: LoopBackendKind, samples: Int, warmup: Int) throws -> Sample {
    let loop = try Loop.make(kind)
    defer { try? loop.close() }
    var latencies = Sample()
    var completed = 0
    var failure: LoopError?

    func submitNext() {
        // A varying delay, so the wake-ups do not lock onto the legacy loop's 1 ms timer.
        let delay = UInt32.random(in: 150...350)
        do {
            try loop.submit({ () -> Int64 in
                usleep(delay)
                return monotonicNanoseconds()
            }) { finishedAt in
                let latency = monotonicNanoseconds() - finishedAt
                completed += 1
                if completed > warmup { latencies.add(Double(latency) / 1000) }
                if completed < samples + warmup { submitNext() } else { loop.stop() }
            }
        } catch {
            failure = error
            loop.stop()
        }
    }

    submitNext()
    _ = try loop.run()
    if let failure { throw failure }
    return latencies
}
