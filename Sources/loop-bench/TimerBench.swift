import Compat
import Glibc
import LoopTools
import Synchronization

/// timers: how late sleep callbacks of 10 and 100 ms run, and how long an
/// urgent datagram waits while a background callback hogs the CPU and calls
/// `quickPollIfNeeded` (the quickpoll timer decides when it is served).
func benchTimers(_ context: BenchContext) throws {
    let budget = context.budget
    for (period, intervals) in [(10, budget.timer10Intervals), (100, budget.timer100Intervals)] {
        var errors: [Column: Sample] = [:]
        for kind in LoopBackendKind.allCases {
            errors[Column(kind)] = try measurePeriodErrors(kind, periodMs: period, intervals: intervals)
        }
        for (key, metric) in [("mean_error_ms", "mean error ms"), ("p99_error_ms", "p99 error ms")] {
            func cell(_ c: Column) -> Cell {
                let s = errors[c, default: Sample()]
                return .value(key == "mean_error_ms" ? s.mean : s.percentile(99))
            }
            context.report.add(
                Row(
                    workload: "timers", label: "sleep \(period) ms", metric: metric, key: key,
                    epoll: cell(.epoll), legacy: cell(.legacy), peer: nil, decimals: 2))
        }
        sayError(
            "  sleep \(period) ms: mean error epoll \(format(errors[.epoll]?.mean ?? .nan, decimals: 2)) ms, "
                + "legacy \(format(errors[.legacy]?.mean ?? .nan, decimals: 2)) ms")
    }

    var latencies: [Column: Sample] = [:]
    for kind in LoopBackendKind.allCases {
        latencies[Column(kind)] = try measureQuickPoll(kind, samples: budget.quickPollSamples)
    }
    for (key, metric, p) in [("p50_ms", "p50 ms", 50.0), ("p99_ms", "p99 ms", 99.0)] {
        context.report.add(
            Row(
                workload: "timers", label: "quickpoll under a hog", metric: metric, key: key,
                epoll: .value(latencies[.epoll, default: Sample()].percentile(p)),
                legacy: .value(latencies[.legacy, default: Sample()].percentile(p)),
                peer: nil, decimals: 2))
    }
    sayError(
        "  quickpoll p50: epoll \(format(latencies[.epoll]?.percentile(50) ?? .nan, decimals: 2)) ms, "
            + "legacy \(format(latencies[.legacy]?.percentile(50) ?? .nan, decimals: 2)) ms")
}

/// Interval between consecutive calls minus the period, in ms, for `intervals` intervals.
private func measurePeriodErrors(_ kind: LoopBackendKind, periodMs: Int, intervals: Int) throws -> Sample {
    let loop = try Loop.make(kind)
    defer { try? loop.close() }
    var errors = Sample()
    var last: Int64 = 0
    try loop.registerSleep(every: periodMs) {
        let now = monotonicNanoseconds()
        if last != 0 { errors.add(Double(now - last) / 1e6 - Double(periodMs)) }
        last = now
        if errors.count >= intervals { loop.stop() }
    }
    _ = try loop.run()
    return errors
}

/// What the busy callback and the sender thread share.
private final class QuickPollProbe: Sendable {
    /// Bumped by the busy callback when it starts; the sender waits for it.
    let busyRounds = Atomic<Int>(0)
    let sentAt = Atomic<Int64>(0)
    /// Set when the measurement ends early, so the sender does not wait forever.
    let cancelled = Atomic<Bool>(false)
}

/// ms from a datagram's send until its niceness-0 read callback runs, while a
/// niceness-1 callback burns CPU and calls `quickPollIfNeeded`. Another
/// thread sends it at a random moment 5–25 ms into the busy work, so the send
/// falls at a random phase of the quickpoll timer (a fixed moment would lock
/// onto one phase and give the same latency every round).
private func measureQuickPoll(_ kind: LoopBackendKind, samples: Int) throws -> Sample {
    let loop = try Loop.make(kind)
    defer { try? loop.close() }
    let server = try LoopbackSocket()
    var trigger: [Int32] = [-1, -1]
    guard pipe(&trigger) == 0 else { throw SystemError("pipe", errno: errno) }
    defer {
        close(trigger[0])
        close(trigger[1])
    }
    let probe = QuickPollProbe()
    var servedAt: Int64 = 0

    try loop.registerRead(fd: server.fd, niceness: 0) { _ in
        server.drain()
        if servedAt == 0 { servedAt = monotonicNanoseconds() }
    }
    try loop.registerRead(fd: trigger[0], niceness: 1) { fd in
        var byte: UInt8 = 0
        _ = read(fd, &byte, 1)
        probe.busyRounds.add(1, ordering: .releasing)
        burnCPU(limitMs: 2_000, until: { servedAt != 0 }) { loop.quickPollIfNeeded(niceness: loop.niceness) }
    }

    let port = server.port
    let sender = startThread(blocking: loopOwnedSignals) {
        guard let socket = try? LoopbackSocket() else { return }
        for round in 1...max(samples, 1) {
            while probe.busyRounds.load(ordering: .acquiring) < round {
                if probe.cancelled.load(ordering: .relaxed) { return }
                usleep(50)
            }
            usleep(UInt32.random(in: 5_000...25_000))
            probe.sentAt.store(monotonicNanoseconds(), ordering: .releasing)
            socket.send(to: port)
        }
    }
    defer {
        probe.cancelled.store(true, ordering: .relaxed)
        joinThread(sender)
    }

    var latencies = Sample()
    var byte: UInt8 = 1
    for _ in 0..<samples {
        servedAt = 0
        _ = write(trigger[1], &byte, 1)
        let deadline = monotonicNanoseconds() + 10_000_000_000
        while servedAt == 0 && monotonicNanoseconds() < deadline { try loop.runOnce() }
        guard servedAt != 0 else { throw BenchError("quickpoll: the urgent datagram was never served") }
        latencies.add(Double(servedAt - probe.sentAt.load(ordering: .acquiring)) / 1e6)
    }
    return latencies
}
