import Compat
import Glibc
import LoopTools

/// pipes: libevent's test/bench.c on this loop. Every contender (each backend,
/// and libevent's epoll backend in C) runs in its own process pinned to CPU 1
/// with a fresh descriptor table, in rounds that rotate the order; the figure
/// is the median of all timed runs.
func benchPipes(_ context: BenchContext) throws {
    let budget = context.budget
    let workload = "pipes"
    let shape = [
        "--active", String(budget.pipeActive), "--writes", String(budget.pipeWrites),
        "--runs", String(budget.pipeRunsPerRound), "--warmup", String(budget.pipeWarmup),
        "--pipes", budget.pipeCounts.map(String.init).joined(separator: ","),
    ]
    context.report.peer("libevent \(libeventVersion()) epoll backend (scripts/peers/pipes-libevent.c)", for: workload)

    var contenders: [(column: Column, argv: [String])] = LoopBackendKind.allCases.map {
        (Column($0), [context.selfPath, "pipes", "--backend", $0.rawValue] + shape)
    }
    let peer = context.peer("pipes-libevent")
    if let peer { contenders.append((.peer, [peer] + shape)) }

    // Per column and N: the run times in µs, or why there are none.
    var runs: [Column: [Int: [Double]]] = [:]
    var refused: [Column: [Int: String]] = [:]
    for round in 0..<budget.pipeRounds {
        for (column, argv) in rotated(contenders, by: round) {
            let child = try spawn(argv, cpu: 1)
            while let line = child.line(startingWith: "", timeoutMs: 120_000) {
                let f = fields(of: line)
                guard let n = f["pipes"].flatMap(Int.init) else { continue }
                if line.hasPrefix("refused") {
                    refused[column, default: [:]][n] = "refused: fd \(f["fd"] ?? "?") ≥ \(f["limit"] ?? "?")"
                } else if line.hasPrefix("result") {
                    let times = (f["runs_us"] ?? "").split(separator: ",").compactMap { Double($0) }
                    runs[column, default: [:]][n, default: []] += times
                }
            }
            if let status = child.waitForExit(), exited(status) == 0 { continue }
            sayError("  \(column): the pipes child failed")
        }
    }

    for n in budget.pipeCounts {
        func cell(_ c: Column) -> Cell {
            if c == .peer && peer == nil { return .missing("not built") }
            if let why = refused[c]?[n] { return .missing(why) }
            guard let times = runs[c]?[n], !times.isEmpty else { return .missing("failed") }
            return .value(median(times))
        }
        var row = Row(
            workload: workload, label: "N=\(n)", metric: "median µs", key: "median_us",
            epoll: cell(.epoll), legacy: cell(.legacy), peer: cell(.peer), decimals: 0)
        // Run k of a round of one contender beside run k of the same round of another.
        row.runs = runs.compactMapValues { $0[n] }
        context.report.add(row)
        sayError(
            "  N=\(n): epoll \(row.epoll.text(decimals: 0)) µs, legacy \(row.legacy.text(decimals: 0)), libevent \(row.peer?.text(decimals: 0) ?? "-")"
        )
    }
    for (n, goal) in [(1000, 1.2), (8000, 1.3)] {
        let row = context.report.row(workload, "N=\(n)", "median_us")
        let r = row?.epollOverPeer
        var target = TargetResult(
            name: "pipes N=\(n): epoll vs libevent-epoll", formula: "time epoll ÷ libevent",
            ratio: r, goal: .atMost(goal), note: r == nil ? "no figure for N=\(n)" : nil)
        target.spread = row?.spread(.epoll, over: .peer)
        context.report.add(target)
    }
}

/// The installed libevent's version, for the peer's name.
func libeventVersion() -> String {
    guard let file = popen("dpkg-query -W -f '${Version}' libevent-dev 2>/dev/null", "r") else { return "2.1" }
    defer { pclose(file) }
    var buffer = [CChar](repeating: 0, count: 128)
    guard fgets(&buffer, Int32(buffer.count), file) != nil else { return "2.1" }
    return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
}

/// `loop-bench pipes`: the workload on one backend, in this process. Prints per N
/// `result pipes=N median_us=... runs_us=...`, or `refused pipes=N fd=F limit=L`
/// when the backend cannot watch that many descriptors.
func runPipesChild(_ options: Options) throws -> Int32 {
    let backend = try options.backend()
    ProcessSignals.prepare(for: backend)
    let counts = try options.ints("--pipes", default: [100, 500, 1000, 8000])
    let active = try options.int("--active", default: 100)
    let writes = try options.int("--writes", default: 1000)
    let runs = try options.int("--runs", default: 9)
    let warmup = try options.int("--warmup", default: 3)
    guard runs >= 1, active >= 1, counts.allSatisfy({ $0 >= active }) else {
        throw UsageError("pipes: --runs and --active must be >= 1, and every N >= A")
    }

    for n in counts {
        raiseDescriptorLimit(to: 2 * n + 64)
        let loop = try Loop.make(backend)
        defer { try? loop.close() }
        let ring = try PipeRing(pairs: n, active: active, writes: writes)
        do {
            try ring.register(on: loop)
        } catch {
            guard case .descriptorOutOfRange(let fd, let limit) = error else { throw error }
            say("refused pipes=\(n) fd=\(fd) limit=\(limit)")
            continue
        }
        for _ in 0..<warmup { _ = try ring.run(loop) }
        var times: [Double] = []
        for _ in 0..<runs { times.append(Double(try ring.run(loop)) / 1000) }
        let list = times.map { format($0, decimals: 1) }.joined(separator: ",")
        say(
            "result pipes=\(n) median_us=\(format(median(times), decimals: 1)) runs_us=\(list) failures=\(ring.failures)"
        )
    }
    return 0
}

/// N socketpairs in a ring. The read callback of pair i reads one byte and,
/// while writes remain, sends one to pair i+1; a run primes A pairs spread
/// over the ring and turns the loop until every byte sent has been read.
final class PipeRing {
    private struct Counters {
        var received = 0
        var writesLeft = 0
        var fired = 0
        var failures = 0
    }

    let pairs: Int
    let active: Int
    let writes: Int
    private let readEnds: UnsafeMutableBufferPointer<Int32>
    private let writeEnds: UnsafeMutableBufferPointer<Int32>
    /// Behind a pointer rather than in properties: the callbacks are the
    /// measured hot path, and class properties pay an exclusivity check each.
    private let counters = UnsafeMutablePointer<Counters>.allocate(capacity: 1)

    var failures: Int { counters.pointee.failures }

    init(pairs: Int, active: Int, writes: Int) throws(SystemError) {
        self.pairs = pairs
        self.active = active
        self.writes = writes
        readEnds = .allocate(capacity: pairs)
        writeEnds = .allocate(capacity: pairs)
        readEnds.initialize(repeating: -1)
        writeEnds.initialize(repeating: -1)
        counters.initialize(to: Counters())
        for i in 0..<pairs {
            var fds: [Int32] = [-1, -1]
            guard socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0, &fds) == 0 else {
                throw SystemError("socketpair #\(i)", errno: errno)
            }
            readEnds[i] = fds[0]
            writeEnds[i] = fds[1]
            _ = fcntl(fds[1], F_SETFL, fcntl(fds[1], F_GETFL) | O_NONBLOCK)
        }
    }

    deinit {
        for fd in readEnds where fd >= 0 { close(fd) }
        for fd in writeEnds where fd >= 0 { close(fd) }
        readEnds.deallocate()
        writeEnds.deallocate()
        counters.deallocate()
    }

    func register(on loop: Loop) throws(LoopError) {
        let counters = self.counters
        let writeEnds = self.writeEnds
        let pairs = self.pairs
        for i in 0..<pairs {
            let next = i + 1 == pairs ? 0 : i + 1
            try loop.registerRead(fd: readEnds[i]) { fd in
                var byte: UInt8 = 0
                let n = recv(fd, &byte, 1, 0)
                if n >= 0 { counters.pointee.received += n } else { counters.pointee.failures += 1 }
                if counters.pointee.writesLeft > 0 {
                    if send(writeEnds[next], &byte, 1, 0) != 1 { counters.pointee.failures += 1 }
                    counters.pointee.writesLeft -= 1
                    counters.pointee.fired += 1
                }
            }
        }
    }

    /// One timed run, in ns.
    func run(_ loop: Loop) throws(LoopError) -> Int64 {
        let stride = pairs / active
        var byte = UInt8(ascii: "e")
        counters.pointee.fired = 0
        for i in 0..<active {
            _ = send(writeEnds[i * stride], &byte, 1, 0)
            counters.pointee.fired += 1
        }
        counters.pointee.received = 0
        counters.pointee.writesLeft = writes
        let start = monotonicNanoseconds()
        repeat {
            try loop.runOnce()
        } while counters.pointee.received != counters.pointee.fired
        return monotonicNanoseconds() - start
    }
}
