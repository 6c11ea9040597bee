import Compat
import Glibc
import LoopTools

/// scale: how the cost of the loop's work grows with what is registered but idle.
/// Three curves, each contender a process of its own on CPU 1, in rounds that
/// rotate the order; the figure is the median of every timed run:
/// - `fds`: ns per dispatched event with N idle descriptors registered (unbound UDP
///   sockets, which never fire) and one socketpair passing a byte back and forth;
///   libevent's select and epoll backends run the same in C (scripts/peers/scale-libevent.c);
/// - `sleepers`: the same ns per event with N sleep callbacks of 1 s registered over
///   one second (each called once a second), and the CPU an otherwise idle loop spends
///   on them;
/// - `jobs`: ns per worker job, N trivial jobs submitted at once until the last
///   completion has run on the loop thread.
func benchScale(_ context: BenchContext) throws {
    let budget = context.budget
    let peer = context.peer("scale-libevent")
    context.report.peer(
        "libevent \(libeventVersion()) select and epoll backends (scripts/peers/scale-libevent.c)",
        for: "scale-fds")

    // fds
    var fdContenders: [(String, [String])] = LoopBackendKind.allCases.map {
        ($0.rawValue, [context.selfPath, "scale", "fds", "--backend", $0.rawValue])
    }
    if let peer {
        fdContenders.append(("libevent epoll", [peer, "epoll"]))
        fdContenders.append(("libevent select", [peer, "select"]))
    }
    let fdShape = [
        "--counts", budget.scaleFds.map(String.init).joined(separator: ","),
        "--events", String(budget.scaleEvents), "--runs", String(budget.scaleRuns),
        "--max-ms", String(budget.scaleMaxMs),
    ]
    let fds = try measureCurve(fdContenders, shape: fdShape, key: "ns_per_event", rounds: budget.scaleRounds)
    context.report.add(
        Curve(
            name: "scale-fds", title: "Cost per event vs idle descriptors registered",
            x: "registered idle descriptors", y: "ns per dispatched event",
            counts: budget.scaleFds, series: fds.cells, runs: fds.runs))
    addScaleTarget(
        context, fds, name: "idle descriptors: epoll at 15,000 vs at 10",
        formula: "ns/event epoll N=15000 ÷ N=10", from: 10, to: 15_000, goal: 1.2)

    // sleepers
    let sleeperContenders: [(String, [String])] = LoopBackendKind.allCases.map {
        ($0.rawValue, [context.selfPath, "scale", "sleepers", "--backend", $0.rawValue])
    }
    let sleeperShape = [
        "--counts", budget.scaleSleepers.map(String.init).joined(separator: ","),
        "--events", String(budget.scaleSleeperEvents), "--runs", "1",
        "--idle-ms", String(budget.scaleIdleMs),
    ]
    let (sleepers, sleepersIdle) = try measureCurves(
        sleeperContenders, shape: sleeperShape,
        keys: ("result", "ns_per_event"), ("idle", "idle_cpu_pct"),
        rounds: budget.scaleSleeperRounds)
    context.report.add(
        Curve(
            name: "scale-sleepers", title: "Cost per event vs sleep callbacks of 1 s registered",
            x: "sleep callbacks (1 s each)", y: "ns per dispatched event",
            counts: budget.scaleSleepers, series: sleepers.cells, runs: sleepers.runs))
    context.report.add(
        Curve(
            name: "scale-sleepers-idle", title: "CPU of an idle loop vs sleep callbacks of 1 s",
            x: "sleep callbacks (1 s each)", y: "CPU %",
            counts: budget.scaleSleepers, series: sleepersIdle.cells, runs: sleepersIdle.runs))
    addScaleTarget(
        context, sleepers, name: "sleep callbacks: epoll with 100,000 vs 10",
        formula: "ns/event epoll N=100000 ÷ N=10", from: 10, to: 100_000, goal: 2.0)

    // jobs
    let jobContenders: [(String, [String])] = LoopBackendKind.allCases.map {
        ($0.rawValue, [context.selfPath, "scale", "jobs", "--backend", $0.rawValue])
    }
    let jobShape = [
        "--counts", budget.scaleJobs.map(String.init).joined(separator: ","), "--runs", String(budget.scaleRuns),
    ]
    let jobs = try measureCurve(jobContenders, shape: jobShape, key: "ns_per_job", rounds: budget.scaleRounds)
    context.report.add(
        Curve(
            name: "scale-jobs", title: "Cost per worker job vs jobs in one batch",
            x: "jobs submitted at once", y: "ns per job (submit to completion)",
            counts: budget.scaleJobs, series: jobs.cells, runs: jobs.runs))
    for kind in LoopBackendKind.allCases {
        addScaleTarget(
            context, jobs, series: kind.rawValue, name: "worker jobs, \(kind.rawValue): per job at 100,000 vs 1,000",
            formula: "ns/job N=100000 ÷ N=1000", from: 1_000, to: 100_000, goal: 1.5)
    }
}

/// Per series and N, the median of every timed run's figure (or why there is none), and the runs.
private typealias Measured = (cells: [String: [Int: Cell]], runs: [String: [Int: [Double]]])

private func measureCurve(
    _ contenders: [(String, [String])], shape: [String], key: String,
    rounds: Int
) throws -> Measured {
    try measureCurves(contenders, shape: shape, keys: ("result", key), ("result", key), rounds: rounds).0
}

/// Runs every contender in rotating rounds; per series and N, the median of the figures
/// under each (line tag, key) its lines gave, or why there is none.
private func measureCurves(
    _ contenders: [(String, [String])], shape: [String],
    keys first: (tag: String, key: String), _ second: (tag: String, key: String),
    rounds: Int
) throws -> (Measured, Measured) {
    var values: [[String: [Int: [Double]]]] = [[:], [:]]
    var refused: [String: [Int: String]] = [:]
    for round in 0..<rounds {
        for (name, argv) in rotated(contenders, by: round) {
            let child = try spawn(argv + shape, cpu: 1)
            while let line = child.line(startingWith: "", timeoutMs: 300_000) {
                let f = fields(of: line)
                guard let n = f["n"].flatMap(Int.init) else { continue }
                if line.hasPrefix("refused") {
                    refused[name, default: [:]][n] = "refused: fd \(f["fd"] ?? "?") ≥ \(f["limit"] ?? "?")"
                }
                for (i, wanted) in [first, second].enumerated() where line.hasPrefix(wanted.tag + " ") {
                    if let v = f.number(wanted.key) { values[i][name, default: [:]][n, default: []].append(v) }
                }
            }
            if let status = child.waitForExit(), exited(status) == 0 { continue }
            sayError("  \(name): the scale child failed")
        }
    }
    var result: [[String: [Int: Cell]]] = [[:], [:]]
    for (i, wanted) in [first, second].enumerated() {
        for (name, _) in contenders {
            var cells: [Int: Cell] = [:]
            for (n, v) in values[i][name] ?? [:] { cells[n] = .value(median(v)) }
            for (n, why) in refused[name] ?? [:] { cells[n] = .missing(why) }
            result[i][name] = cells
            let shown = cells.keys.sorted().map { "\($0): \(cells[$0]!.text(decimals: 1))" }.joined(separator: ", ")
            if i == 0 || wanted.key != first.key { sayError("  \(name) \(wanted.key): \(shown)") }
        }
    }
    return ((result[0], values[0]), (result[1], values[1]))
}

private func addScaleTarget(
    _ context: BenchContext, _ measured: Measured, series name: String = "epoll",
    name target: String, formula: String, from: Int, to: Int, goal: Double
) {
    let series = measured.cells
    let r = quotient(series[name]?[to]?.number, series[name]?[from]?.number)
    var result = TargetResult(
        name: target, formula: formula, ratio: r, goal: .atMost(goal),
        note: r == nil ? "no figure" : nil)
    // Run k at N=to beside run k at N=from: the same child, one after the other.
    result.spread = Spread.ofRatios(measured.runs[name]?[to] ?? [], measured.runs[name]?[from] ?? [])
    context.report.add(result)
}

// MARK: The child

/// `loop-bench scale fds|sleepers|jobs --backend B --counts N,... [--events K] [--runs R] [--idle-ms T]`:
/// prints per N `result n=N ns_per_event=...` (or `ns_per_job`), `idle n=N idle_cpu_pct=...`
/// for sleepers, or `refused n=N fd=F limit=L` when the backend cannot watch that many.
func runScaleChild(_ options: Options) throws -> Int32 {
    let what = options.operands.first ?? ""
    let backend = try options.backend()
    ProcessSignals.prepare(for: backend)
    let runs = try options.int("--runs", default: 3)
    guard runs >= 1 else { throw UsageError("scale: --runs must be >= 1") }
    switch what {
    case "fds":
        let events = try options.int("--events", default: 200_000)
        // A slow contender (select over a thousand descriptors) stops early and reports what it did.
        let maxMs = try options.int("--max-ms", default: 500)
        for n in try options.ints("--counts", default: [10, 100, 1000]) {
            raiseDescriptorLimit(to: n + 256)
            let loop = try Loop.make(backend, configuration: scaleConfiguration(n))
            defer { try? loop.close() }
            let idle = try IdleDescriptors(count: n)
            let ball = try PingPong()
            do {
                try idle.register(on: loop)
                try ball.register(on: loop)
            } catch {
                guard case .descriptorOutOfRange(let fd, let limit) = error else { throw error }
                say("refused n=\(n) fd=\(fd) limit=\(limit)")
                continue
            }
            _ = try ball.run(loop, events: min(events, 20_000), maxMs: 100) // warm-up
            for _ in 0..<runs {
                let (ns, done) = try ball.run(loop, events: events, maxMs: maxMs)
                say("result n=\(n) ns_per_event=\(format(Double(ns) / Double(done), decimals: 1)) events=\(done)")
            }
        }
    case "sleepers":
        let events = try options.int("--events", default: 400_000)
        let idleMs = try options.int("--idle-ms", default: 2_000)
        for n in try options.ints("--counts", default: [10, 1000]) {
            let loop = try Loop.make(backend, configuration: scaleConfiguration(n))
            defer { try? loop.close() }
            let calls = UnsafeMutablePointer<Int>.allocate(capacity: 1)
            calls.initialize(to: 0)
            defer { calls.deallocate() }
            // Registered over one second, a 25th every 40 ms, as work arrives in a real
            // program: their due times spread over the second, not all in one scan.
            for chunk in 0..<25 {
                for _ in 0..<(n / 25 + (chunk < n % 25 ? 1 : 0)) {
                    try loop.registerSleep(every: 1000) { calls.pointee += 1 }
                }
                let until = monotonicNanoseconds() + 40_000_000
                while monotonicNanoseconds() < until { try loop.runOnce() }
            }
            let ball = try PingPong()
            try ball.register(on: loop)
            _ = try ball.run(loop, events: min(events, 20_000), maxMs: 100) // warm-up
            for _ in 0..<runs {
                let (ns, done) = try ball.run(loop, events: events, maxMs: 60_000)
                say(
                    "result n=\(n) ns_per_event=\(format(Double(ns) / Double(done), decimals: 1)) calls=\(calls.pointee)"
                )
            }
            // Idle: nothing but the sleep callbacks, run() stopped from another thread.
            ball.pause(loop)
            let handle = loop.stopHandle
            let stopper = startThread {
                usleep(UInt32(idleMs) * 1000)
                handle.stop()
            }
            let cpu = processCPUNanoseconds()
            let wall = monotonicNanoseconds()
            let polls = loop.counters.polls
            _ = try loop.run()
            let cpuPct = Double(processCPUNanoseconds() - cpu) / Double(monotonicNanoseconds() - wall) * 100
            joinThread(stopper)
            say("idle n=\(n) idle_cpu_pct=\(format(cpuPct, decimals: 4)) polls=\(loop.counters.polls - polls)")
        }
    case "jobs":
        for n in try options.ints("--counts", default: [1000, 10_000]) {
            let loop = try Loop.make(backend)
            defer { try? loop.close() }
            _ = try runJobs(loop, count: min(n, 1000)) // warm-up: the workers start
            for _ in 0..<runs {
                let ns = try runJobs(loop, count: n)
                say("result n=\(n) ns_per_job=\(format(Double(ns) / Double(n), decimals: 1))")
            }
        }
    default:
        throw UsageError("scale: say fds, sleepers or jobs")
    }
    return 0
}

private func scaleConfiguration(_ n: Int) -> LoopConfiguration {
    var configuration = LoopConfiguration()
    configuration.maxRegistrations = max(configuration.maxRegistrations, n + 64)
    return configuration
}

/// N trivial jobs at once; ns until the last completion ran.
private func runJobs(_ loop: Loop, count: Int) throws -> Int64 {
    let done = UnsafeMutablePointer<Int>.allocate(capacity: 1)
    done.initialize(to: 0)
    defer { done.deallocate() }
    let start = monotonicNanoseconds()
    for i in 0..<count { try loop.submit({ i }) { _ in done.pointee += 1 } }
    while done.pointee < count { try loop.runOnce() }
    return monotonicNanoseconds() - start
}

/// Descriptors registered for reading that never become readable: unbound UDP sockets.
private final class IdleDescriptors {
    private var fds: [Int32] = []

    init(count: Int) throws(SystemError) {
        for i in 0..<count {
            let fd = socket(AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
            guard fd >= 0 else { throw SystemError("socket #\(i)", errno: errno) }
            fds.append(fd)
        }
    }

    deinit { for fd in fds { close(fd) } }

    func register(on loop: Loop) throws(LoopError) {
        for fd in fds { try loop.registerRead(fd: fd) { _ in } }
    }
}

/// One socketpair: the read callback takes the byte and sends it back through
/// the other end while events remain, so every poll dispatches one event.
private final class PingPong {
    private let a: Int32, b: Int32
    private let left = UnsafeMutablePointer<Int>.allocate(capacity: 1)
    private var registration: Registration?

    init() throws(SystemError) {
        var fds: [Int32] = [-1, -1]
        guard socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0, &fds) == 0 else {
            throw SystemError("socketpair", errno: errno)
        }
        (a, b) = (fds[0], fds[1])
        _ = fcntl(b, F_SETFL, fcntl(b, F_GETFL) | O_NONBLOCK)
        left.initialize(to: 0)
    }

    deinit {
        close(a)
        close(b)
        left.deallocate()
    }

    func register(on loop: Loop) throws(LoopError) {
        let left = self.left
        let b = self.b
        registration = try loop.registerRead(fd: a) { fd in
            var byte: UInt8 = 0
            guard recv(fd, &byte, 1, 0) == 1 else { return }
            left.pointee -= 1
            if left.pointee > 0 { _ = send(b, &byte, 1, 0) }
        }
    }

    func pause(_ loop: Loop) {
        if let registration { try? loop.unregister(registration) }
        registration = nil
    }

    /// ns for `events` dispatched events, or for those done when `maxMs` ran out.
    func run(_ loop: Loop, events: Int, maxMs: Int) throws(LoopError) -> (ns: Int64, events: Int) {
        left.pointee = events
        var byte = UInt8(ascii: "x")
        let start = monotonicNanoseconds()
        let deadline = start + Int64(maxMs) * 1_000_000
        _ = send(b, &byte, 1, 0)
        var polls = 0
        while left.pointee > 0 {
            try loop.runOnce()
            polls += 1
            if polls & 255 == 0 && monotonicNanoseconds() >= deadline { break }
        }
        let elapsed = monotonicNanoseconds() - start
        let done = events - max(left.pointee, 0)
        // Take the byte in flight out of the pair, so the next run starts with one.
        left.pointee = 0
        while recv(a, &byte, 1, Int32(MSG_DONTWAIT)) == 1 {}
        return (elapsed, max(done, 1))
    }
}
