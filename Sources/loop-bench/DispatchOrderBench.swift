import Compat
import Glibc
import LoopTools

/// dispatch-order: what dispatching in registration order costs when the
/// backend reports in another order. N pipes, all readable and never drained
/// (level-triggered: every poll reports all N), one niceness-0 read callback
/// each; `runOnce` K times. "in order": registered in ascending fd order and made
/// readable in that order, so select (ascending fds) and epoll (its ready list
/// keeps the order fds became ready) both report in registration order, and the
/// loop only checks it. "reversed": registered in descending fd order and made
/// readable in ascending order, so both report the reverse and every poll sorts
/// N events. The difference between the two is the cost of the sort. Both
/// backends (or the one `--backend` names) in this process, side by side.
func runDispatchOrderChild(_ options: Options) throws -> Int32 {
    let backends = options.value("--backend") == nil ? LoopBackendKind.allCases : [try options.backend()]
    let counts = try options.ints("--ready", default: [16, 64, 200])
    let polls = try options.int("--polls", default: 20_000)
    let rounds = try options.int("--runs", default: 5)
    guard counts.allSatisfy({ (1...500).contains($0) }), (1...10_000_000).contains(polls), (1...100).contains(rounds)
    else {
        throw UsageError("--ready takes 1…500 each, --polls 1…10000000, --runs 1…100")
    }
    var rows: [(n: Int, order: String, ns: [LoopBackendKind: Double])] = []
    for n in counts {
        for order in ["in order", "reversed"] {
            var row: [LoopBackendKind: Double] = [:]
            // Alternating backends round by round, so drift in the machine hits both alike.
            var samples: [LoopBackendKind: [Double]] = [:]
            for _ in 0..<rounds {
                for backend in backends {
                    samples[backend, default: []].append(
                        try nsPerPoll(backend, ready: n, reversed: order == "reversed", polls: polls))
                }
            }
            for (backend, s) in samples { row[backend] = s.sorted()[s.count / 2] }
            rows.append((n, order, row))
        }
    }
    say(
        "ready  order       " + backends.map { "\($0.rawValue) ns/poll".leftPadded(to: 17) }.joined()
            + (backends.count == 2 ? "  epoll/legacy" : ""))
    for r in rows {
        var line = String(r.n).padded(to: 7) + r.order.padded(to: 12)
        for b in backends { line += String(Int(r.ns[b] ?? 0)).leftPadded(to: 17) }
        if backends.count == 2, let e = r.ns[.epoll], let l = r.ns[.legacy] {
            line += format(e / l, decimals: 2).leftPadded(to: 14)
        }
        say(line)
    }
    say("\nsort cost (reversed ÷ in order):")
    for n in counts {
        let asc = rows.first { $0.n == n && $0.order == "in order" }!.ns
        let desc = rows.first { $0.n == n && $0.order == "reversed" }!.ns
        say(
            "  ready \(n): "
                + backends.map { "\($0.rawValue) \(format((desc[$0] ?? 0) / (asc[$0] ?? 1), decimals: 2))" }.joined(
                    separator: "  "))
    }
    return 0
}

/// The cost of one poll with `ready` always-ready pipes.
private func nsPerPoll(_ backend: LoopBackendKind, ready n: Int, reversed: Bool, polls: Int) throws -> Double {
    let loop = try Loop.make(backend)
    defer { try? loop.close() }
    var pipes: [[Int32]] = []
    defer {
        for fds in pipes {
            close(fds[0])
            close(fds[1])
        }
    }
    for _ in 0..<n {
        var fds: [Int32] = [-1, -1]
        guard pipe(&fds) == 0 else { throw SystemError("pipe", errno: errno) }
        pipes.append(fds)
    }
    var calls = 0
    for fds in reversed ? pipes.reversed() : pipes {
        try loop.registerRead(fd: fds[0]) { _ in calls += 1 }
    }
    // Readable in ascending fd order: epoll's ready list keeps that order from now on.
    for fds in pipes { _ = write(fds[1], "x", 1) }
    for _ in 0..<100 { try loop.runOnce() } // warm-up: the ready list settles
    let start = monotonicNanoseconds()
    for _ in 0..<polls { try loop.runOnce() }
    let ns = Double(monotonicNanoseconds() - start) / Double(polls)
    // Epoll takes up to 256 events a wait (its own descriptors among them): beyond
    // that, a few ready pipes wait for the next poll.
    guard calls * 100 >= (polls + 100) * n * 95 else {
        throw UsageError("expected about \((polls + 100) * n) callbacks, got \(calls)")
    }
    return ns
}
