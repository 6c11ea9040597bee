import Compat
import Glibc
import LoopTools

/// dispatch-order: what dispatching in registration order costs when the
/// backend reports in another order. N pipes, all readable and never drained
/// (level-triggered: every poll reports all N), one niceness-0 read callback
/// each; `runOnce` K times. Registered in ascending fd order, the batch comes
/// sorted from select and (after the first wait) from epoll's ready list, and the
/// loop only checks it; registered in descending order, every poll sorts N
/// events. The difference between the two is the cost of the sort.
func runDispatchOrderChild(_ options: Options) throws -> Int32 {
    let backend = try options.backend()
    let counts = try options.ints("--ready", default: [16, 64, 200])
    let polls = try options.int("--polls", default: 20_000)
    let rounds = try options.int("--runs", default: 5)
    guard counts.allSatisfy({ (1...500).contains($0) }), (1...10_000_000).contains(polls), (1...100).contains(rounds) else {
        throw UsageError("--ready takes 1…500 each, --polls 1…10000000, --runs 1…100")
    }
    for n in counts {
        for order in ["ascending", "descending"] {
            var perPoll: [Double] = []
            for _ in 0..<rounds {
                let loop = try Loop.make(backend)
                var pipes: [[Int32]] = []
                for _ in 0..<n {
                    var fds: [Int32] = [-1, -1]
                    guard pipe(&fds) == 0 else { throw SystemError("pipe", errno: errno) }
                    _ = write(fds[1], "x", 1)
                    pipes.append(fds)
                }
                var calls = 0
                for fds in order == "ascending" ? pipes : pipes.reversed() {
                    try loop.registerRead(fd: fds[0]) { _ in calls += 1 }
                }
                for _ in 0..<100 { try loop.runOnce() }  // warm-up: the ready list settles
                let start = monotonicNanoseconds()
                for _ in 0..<polls { try loop.runOnce() }
                perPoll.append(Double(monotonicNanoseconds() - start) / Double(polls))
                try loop.close()
                for fds in pipes { close(fds[0]); close(fds[1]) }
                // Epoll takes up to 256 events a wait (its own descriptors among them): beyond
                // that, a few ready pipes wait for the next poll.
                guard calls * 100 >= (polls + 100) * n * 95 else { throw UsageError("expected about \((polls + 100) * n) callbacks, got \(calls)") }
            }
            perPoll.sort()
            say("result ready=\(n) order=\(order) ns_per_poll=\(Int(perPoll[perPoll.count / 2])) ns_per_callback=\(Int(perPoll[perPoll.count / 2] / Double(n)))")
        }
    }
    return 0
}
