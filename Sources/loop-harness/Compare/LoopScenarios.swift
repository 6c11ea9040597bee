import CommandLineOptions
import Compat
import Glibc
import LoopTools

/// The scenarios `compare` runs, in order.
var allScenarios: [Scenario] {
    [readinessScenario, sleepScenario, quickPollScenario, wakeupScenario, signalScenario, rpcScenario, idleScenario]
}

/// Runs `body` with a fresh loop of `kind`, closing it afterwards.
func withCompareLoop<R>(_ kind: LoopBackendKind, _ body: (Loop) throws -> R) throws -> R {
    let loop = try Loop.make(kind)
    defer { try? loop.close() }
    return try body(loop)
}

func drive(_ loop: Loop, timeoutMs: Int64 = 10_000, until done: () -> Bool) throws {
    let deadline = monotonicNanoseconds() + timeoutMs * 1_000_000
    while !done() {
        guard monotonicNanoseconds() < deadline else {
            throw CommandFailure("scenario timed out after \(timeoutMs) ms")
        }
        try loop.runOnce()
    }
}

func drive(_ loop: Loop, forMs ms: Int64) throws {
    let end = monotonicNanoseconds() + ms * 1_000_000
    while monotonicNanoseconds() < end { try loop.runOnce() }
}

private func within(_ a: Double?, _ b: Double?, _ tolerance: Double) -> Bool {
    guard let a, let b, a.isFinite, b.isFinite else { return false }
    return abs(a - b) <= tolerance
}

// MARK: fd readiness

let readinessScenario = Scenario(
    name: "readiness",
    summary: "a scripted burst on 40 socketpairs, half niceness 0, half niceness 1: callbacks fired per niceness",
    tolerance: "identical callback counts per niceness (exact; not scaled)",
    measure: { kind, options in
        try withCompareLoop(kind) { loop in
            let rounds = options.quick ? 5 : 50
            var pairs: [(Int32, Int32)] = []
            defer {
                for (a, b) in pairs {
                    close(a)
                    close(b)
                }
            }
            var fired = 0
            for i in 0..<40 {
                var fds: [Int32] = [-1, -1]
                guard socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0, &fds) == 0 else {
                    throw SystemError("socketpair", errno: errno)
                }
                pairs.append((fds[0], fds[1]))
                try loop.registerRead(fd: fds[0], niceness: i % 2) { fd in
                    var buf = [UInt8](repeating: 0, count: 64)
                    while read(fd, &buf, buf.count) > 0 {}
                    fired += 1
                }
            }
            let before = loop.counters
            for _ in 0..<rounds {
                for (_, w) in pairs {
                    var b: UInt8 = 1
                    _ = write(w, &b, 1)
                }
                let target = fired + pairs.count
                try drive(loop) { fired >= target }
            }
            let after = loop.counters
            return [
                ("callbacks0", Double(after.callbacks[0] - before.callbacks[0])),
                ("callbacks1", Double(after.callbacks[1] - before.callbacks[1])),
                ("pollsPerRound", Double(after.polls - before.polls) / Double(rounds)),
            ]
        }
    },
    judge: { e, l, _ in
        e["callbacks0"] == l["callbacks0"] && e["callbacks1"] == l["callbacks1"]
            ? nil : "callback counts differ: epoll \(e), legacy \(l)"
    })

// MARK: sleep callbacks

let sleepPeriods = [10, 40, 100, 250]

let sleepScenario = Scenario(
    name: "sleep",
    summary: "sleep callbacks at 10, 40, 100, 250 ms together: fires, mean period, p99 period error",
    tolerance: "mean periods within max(3 ms, 10%) of each other; fires within 10% (+2)",
    measure: { kind, options in
        try withCompareLoop(kind) { loop in
            let duration: Int64 = options.quick ? 1_000 : 3_000
            var calls = [[Int64]](repeating: [], count: sleepPeriods.count)
            for (i, p) in sleepPeriods.enumerated() {
                try loop.registerSleep(every: p) { calls[i].append(monotonicNanoseconds()) }
            }
            try drive(loop, forMs: duration)
            var out: Measurements = []
            for (i, p) in sleepPeriods.enumerated() {
                var gaps = Sample()
                var errors = Sample()
                for (a, b) in zip(calls[i], calls[i].dropFirst()) {
                    let gap = Double(b - a) / 1e6
                    gaps.add(gap)
                    errors.add(abs(gap - Double(p)))
                }
                out += [
                    ("fires@\(p)", Double(calls[i].count)), ("meanPeriod@\(p)", gaps.mean),
                    ("p99Error@\(p)", errors.percentile(99)),
                ]
            }
            return out
        }
    },
    judge: { e, l, scale in
        for p in sleepPeriods {
            let tol = max(3, 0.1 * Double(p)) * scale
            if !within(e["meanPeriod@\(p)"], l["meanPeriod@\(p)"], tol) {
                return "mean period at \(p) ms differs by more than \(format(tol)) ms"
            }
            let fires = max(e["fires@\(p)"] ?? 0, l["fires@\(p)"] ?? 0)
            if !within(e["fires@\(p)"], l["fires@\(p)"], (0.1 * fires + 2) * scale) {
                return "fire count at \(p) ms differs"
            }
        }
        return nil
    })

// MARK: quickpoll

let quickPollScenario = Scenario(
    name: "quickpoll",
    summary: "latency of a niceness-0 UDP request served while a niceness-1 callback burns CPU",
    tolerance: "p50 at most 50 ms and p99 at most 150 ms on both",
    measure: { kind, options in
        try withCompareLoop(kind) { loop in
            var latencies = Sample()
            for latency in try measureQuickPollLatency(
                loop, rounds: options.quick ? 5 : 20, drive: { try drive(loop, until: $0) })
            {
                latencies.add(latency.wallMs)
            }
            options.distributions.record(kind, "quickpoll: urgent request served after, ms", latencies)
            return [
                ("p50ms", latencies.percentile(50)), ("p99ms", latencies.percentile(99)),
                ("quickpolls", Double(loop.counters.quickPolls)),
            ]
        }
    },
    judge: { e, l, scale in
        for (name, figures) in [("epoll", e), ("legacy", l)] {
            if (figures["p50ms"] ?? .infinity) > 50 * scale { return "\(name) p50 above \(format(50 * scale)) ms" }
            if (figures["p99ms"] ?? .infinity) > 150 * scale { return "\(name) p99 above \(format(150 * scale)) ms" }
        }
        return nil
    })

// MARK: wake-ups

let wakeupScenario = Scenario(
    name: "wakeup",
    summary: "worker-completion latency: eventfd (epoll) vs SIGCHLD via tgkill (legacy)",
    tolerance: "p99 at most 20 ms on both (no lost wake-ups); the ratio is reported, not judged",
    measure: { kind, options in
        try withCompareLoop(kind) { loop in
            var latencies = Sample()
            let rounds = options.quick ? 50 : 500
            var done = 0
            func next() {
                try? loop.submit({ monotonicNanoseconds() }) { finishedAt in
                    latencies.add(Double(monotonicNanoseconds() - finishedAt) / 1e3)
                    done += 1
                    if done < rounds { next() }
                }
            }
            next()
            try drive(loop) { done == rounds }
            options.distributions.record(kind, "wakeup: worker completion to callback, µs", latencies)
            return [
                ("p50us", latencies.percentile(50)), ("p99us", latencies.percentile(99)),
                ("wakeups", Double(loop.counters.wakeups)),
            ]
        }
    },
    judge: { e, l, scale in
        let bound = 20_000 * scale
        return (e["p99us"] ?? .infinity) <= bound && (l["p99us"] ?? .infinity) <= bound
            ? nil : "wake-up p99 above \(format(bound)) µs"
    })

// MARK: signals

let compareSignals: [(String, Int32)] = [("HUP", SIGHUP), ("TERM", SIGTERM), ("INT", SIGINT)]

let signalScenario = Scenario(
    name: "signals",
    summary: "SIGHUP/SIGTERM/SIGINT each sent with kill(2) to a child process running each backend",
    tolerance: "same shutdown code (1) on both; exit within 1000 ms of the signal",
    measure: { kind, _ in
        var out: Measurements = []
        for (name, signo) in compareSignals {
            let child = try ChildProcess(
                ["child-loop", "--backend", kind.rawValue], executable: ChildProcess.probePath)
            guard child.line(startingWith: "ready") != nil else {
                throw CommandFailure(
                    "\(ChildProcess.probePath) child-loop did not start (swift build builds loop-probe)")
            }
            let sent = monotonicNanoseconds()
            kill(child.pid, signo)
            let report = child.line(startingWith: "shutdown")
            let status = child.waitForExit()
            let exitMs = Double(monotonicNanoseconds() - sent) / 1e6
            let code = report.flatMap { Double($0.split(separator: " ")[1]) } ?? -1
            out += [("code\(name)", status == 0 ? code : -1), ("exitMs\(name)", exitMs)]
        }
        return out
    },
    judge: { e, l, scale in
        for (name, _) in compareSignals {
            if e["code\(name)"] != 1 || l["code\(name)"] != 1 { return "SIG\(name) did not give shutdown 1 on both" }
            if (e["exitMs\(name)"] ?? .infinity) > 1000 * scale || (l["exitMs\(name)"] ?? .infinity) > 1000 * scale {
                return "SIG\(name): exit took longer than \(format(1000 * scale)) ms"
            }
        }
        return nil
    })

// MARK: idle

let idleScenario = Scenario(
    name: "idle",
    summary:
        "an idle loop with one heartbeat, in run() (stopped from another thread): CPU time and wake-ups per second",
    tolerance:
        "epoll wakes at most 2.5 times a second (the heartbeat and the stop) and uses no more CPU than legacy (+0.5 percentage points)",
    measure: { kind, options in
        try withCompareLoop(kind) { loop in
            try loop.registerSleep(every: 1000) {}
            try drive(loop, forMs: 100)
            let seconds = options.quick ? 1.0 : 3.0
            let polls = loop.counters.polls
            let cpu = (Double(processCPUNanoseconds()) / 1e9)
            let start = monotonicNanoseconds()
            // run(), as a node runs: runOnce() returns within the quickpoll interval by design.
            let handle = loop.stopHandle
            let stopper = startThread {
                usleep(UInt32(seconds * 1_000_000))
                handle.stop()
            }
            _ = try loop.run()
            joinThread(stopper)
            let wall = Double(monotonicNanoseconds() - start) / 1e9
            return [
                ("cpuPercent", ((Double(processCPUNanoseconds()) / 1e9) - cpu) / wall * 100),
                ("wakeupsPerSec", Double(loop.counters.polls - polls) / wall),
            ]
        }
    },
    judge: { e, l, scale in
        guard let ew = e["wakeupsPerSec"], let lw = l["wakeupsPerSec"], let ec = e["cpuPercent"],
            let lc = l["cpuPercent"]
        else { return "missing figures" }
        if ew > lw * scale { return "epoll wakes more often than legacy" }
        if ew > 2.5 * scale { return "epoll wakes \(format(ew)) times a second, not at most 2.5" }
        if ec > lc * scale + 0.5 * scale { return "epoll idle CPU above legacy's" }
        return nil
    })
