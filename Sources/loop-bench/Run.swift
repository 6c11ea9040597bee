import Compat
import Glibc
import LoopTools

/// How much of each workload a run does: the full run, or `--quick`, which
/// does every workload once with tiny counts so it can be smoke-tested.
struct Budget {
    let quick: Bool

    // Many short repetitions rather than a few long ones: the machine is
    // shared, and interleaving spreads bursts of other work over all contenders.
    var echoRepeats: Int { quick ? 1 : 5 }
    var echoWarmupMs: Int { quick ? 30 : 150 }
    var echoMeasureMs: Int { quick ? 100 : 500 }

    var rpcRepeats: Int { quick ? 1 : 5 }
    var rpcWarmupMs: Int { quick ? 30 : 100 }
    var rpcMeasureMs: Int { quick ? 100 : 400 }

    let pipeCounts = [100, 500, 1000, 8000]
    let pipeActive = 100
    let pipeWrites = 1000
    /// 3 rounds of 3 timed runs: the median of 9 runs per contender and N.
    var pipeRounds: Int { quick ? 1 : 3 }
    var pipeRunsPerRound: Int { quick ? 1 : 3 }
    var pipeWarmup: Int { quick ? 0 : 2 }

    var wakeupRounds: Int { quick ? 1 : 3 }
    var wakeupSamples: Int { quick ? 20 : 700 }
    var wakeupWarmup: Int { quick ? 2 : 50 }

    var timer10Intervals: Int { quick ? 5 : 150 }
    var timer100Intervals: Int { quick ? 2 : 20 }
    var quickPollSamples: Int { quick ? 2 : 40 }

    var originalRounds: Int { quick ? 1 : 3 }
    var originalRestSeconds: Int { quick ? 1 : 3 }
    var originalMeasureMs: Int { quick ? 200 : 1000 }

    var idleMs: Int { quick ? 300 : 2000 }
    var idleRepeats: Int { quick ? 1 : 3 }

    var scaleRounds: Int { quick ? 1 : 3 }
    var scaleRuns: Int { quick ? 1 : 3 }
    var scaleFds: [Int] { quick ? [10, 1000] : [10, 100, 500, 1000, 5000, 15_000] }
    var scaleEvents: Int { quick ? 5_000 : 200_000 }
    var scaleMaxMs: Int { quick ? 100 : 500 }
    var scaleSleeperRounds: Int { quick ? 1 : 2 }
    var scaleSleepers: [Int] { quick ? [10, 1000] : [10, 1000, 10_000, 100_000] }
    /// Long enough for the 1 s callbacks to come due at least once in the timed part.
    var scaleSleeperEvents: Int { quick ? 5_000 : 600_000 }
    var scaleIdleMs: Int { quick ? 300 : 2_500 }
    var scaleJobs: [Int] { quick ? [1000, 10_000] : [1000, 10_000, 100_000] }
}

/// What every workload gets.
struct BenchContext {
    let budget: Budget
    let report: Report
    /// This executable, for the server modes it starts in child processes.
    let selfPath: String
    let peersDirectory: String
    /// scripts/lib/original_bench.py: the `original` workload's namespaces and nodes.
    let originalDriver: String

    /// The path of a compiled C peer, if `scripts/bench` built it.
    func peer(_ name: String) -> String? {
        let path = "\(peersDirectory)/\(name)"
        return access(path, X_OK) == 0 ? path : nil
    }
}

/// The workloads in the order of the table.
let workloads: [(name: String, run: @Sendable (BenchContext) throws -> Void)] = [
    ("udp-echo", benchUdpEcho),
    ("rpc", benchRpc),
    ("pipes", benchPipes),
    ("wakeup", benchWakeup),
    ("timers", benchTimers),
    ("idle", benchIdle),
    ("original", benchOriginal),
    ("scale", benchScale),
]

/// `loop-bench run`: every selected workload on both backends and the peers.
func runAll(_ options: Options) throws -> Int32 {
    // A child that exits early must not kill us through a write to its pipe.
    // (The legacy loop saves and restores this disposition.)
    _ = signal(SIGPIPE, SIG_IGN)

    let quick = options.flag("--quick")
    let names = workloads.map(\.name)
    var selected = names
    if let only = options.value("--only") {
        selected = only.split(separator: ",").map(String.init)
        if let unknown = selected.first(where: { !names.contains($0) }) {
            throw UsageError("--only: unknown workload '\(unknown)'; the workloads are \(names.joined(separator: ","))")
        }
    }
    // A smoke test must not overwrite the figures of the last full run.
    let jsonPath =
        options.value("--json") ?? (quick ? ".build-bench/bench-quick.json" : ".build-bench/bench-latest.json")
    let markdownPath =
        options.value("--markdown")
        ?? (jsonPath.hasSuffix(".json") ? String(jsonPath.dropLast(5)) : jsonPath) + ".md"
    let command = options.value("--label") ?? CommandLine.arguments.joined(separator: " ")

    let report = Report(command: command, quick: quick)
    let context = BenchContext(
        budget: Budget(quick: quick), report: report, selfPath: selfExecutablePath(),
        peersDirectory: options.value("--peers") ?? "scripts/peers/bin",
        originalDriver: options.value("--original-driver") ?? "scripts/lib/original_bench.py")
    if !canPin { report.note("taskset or a second CPU is missing: nothing was pinned") }

    // A workload that ran while other processes used the machine is run again up to this many
    // times; the quietest attempt is kept, and its load says how busy the machine was.
    let retries = try options.int("--busy-retries", default: quick ? 0 : 1)
    for workload in workloads where selected.contains(workload.name) {
        report.currentWorkload = workload.name
        let mark = report.mark
        var quietest: Report.Attempt?
        for attempt in 1...(retries + 1) {
            sayError("== \(workload.name)" + (attempt > 1 ? " (again: the machine was busy)" : ""))
            let start = CPUSnapshot.now()
            do {
                try workload.run(context)
            } catch {
                report.note("\(workload.name) failed: \(error)")
                sayError("  failed: \(error)")
            }
            let load = WorkloadLoad(workload.name, from: start, to: .now(), attempt: attempt)
            report.add(load)
            sayError(
                "  (\(format(load.seconds, decimals: 1)) s; other processes used \(format(load.othersPercent, decimals: 1)) %"
                    + " of a CPU\(load.busy ? ": BUSY" : ""))")
            guard load.busy else { break }
            let taken = report.takeAttempt(since: mark, load: load)
            if quietest.map({ taken.load.othersPercent < $0.load.othersPercent }) ?? true { quietest = taken }
            guard attempt > retries, let kept = quietest else { continue }
            report.restore(kept, since: mark)
            if kept.load.attempt != attempt { sayError("  kept attempt \(kept.load.attempt), the quieter") }
        }
    }

    print(report.text)
    fflush(nil) // before the progress line on stderr
    try writeFile(jsonPath, report.json)
    try writeFile(markdownPath, report.markdown)
    sayError("wrote \(jsonPath) and \(markdownPath)")
    return 0
}
