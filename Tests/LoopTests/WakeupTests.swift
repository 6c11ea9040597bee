import Compat
import Glibc
import TestSupport
import Testing

extension LoopConformance {
    @Suite struct Wakeups {
        @Test(arguments: LoopBackendKind.allCases)
        func stopFromAnotherThreadEndsRun(kind: LoopBackendKind) throws {
            var config = LoopConfiguration.unroutedTimerSignalsAccepted
            config.quickPollIntervalMs = 1000 // so only the wake-up can end the wait early
            try withLoop(kind, configuration: config) { loop in
                try loop.disableTimer()
                let handle = loop.stopHandle
                let t = startThread {
                    usleep(50_000)
                    handle.stop()
                }
                let start = monotonicNanoseconds()
                let reason = try loop.run()
                joinThread(t)
                #expect(reason == .stopped)
                #expect(elapsedMs(since: start) < 900)
                #expect(loop.counters.wakeups >= 1)
            }
        }

        @Test(arguments: LoopBackendKind.allCases)
        func workerCompletionsRunOnTheLoopThread(kind: LoopBackendKind) throws {
            try withLoop(kind) { loop in
                let me = pthread_self()
                var done = 0
                var onLoopThread = 0
                var results: [Int] = []
                for i in 0..<50 {
                    try loop.submit(
                        niceness: i % 2,
                        { () -> Int in
                            pthread_equal(pthread_self(), me) == 0 ? i * i : -1
                        }
                    ) { value in
                        done += 1
                        results.append(value)
                        if pthread_equal(pthread_self(), me) != 0 { onLoopThread += 1 }
                    }
                }
                #expect(try runUntil(loop) { done == 50 })
                #expect(onLoopThread == 50)
                #expect(results.sorted() == (0..<50).map { $0 * $0 })
                #expect(loop.counters.jobsCompleted == 50)
                #expect(loop.pendingJobs == 0)
                // The first job to finish sent a wake-up (a SIGCHLD on legacy). The loop may
                // have collected every completion before it arrived: it is then pending,
                // blocked outside pselect, and the next wait takes it.
                if kind == .legacy { #expect(try runUntil(loop, timeoutMs: 2_000) { loop.counters.sigChlds >= 1 }) }
            }
        }

        /// The original could lose a SIGCHLD that arrived just before select(), or
        /// on another thread, and then slept a full timeout. With the timers off
        /// and a 1 s wait, each lost wake-up would cost up to a second.
        @Test(arguments: LoopBackendKind.allCases)
        func noLostWakeups(kind: LoopBackendKind) throws {
            var config = LoopConfiguration.unroutedTimerSignalsAccepted
            config.quickPollIntervalMs = 1000
            try withLoop(kind, configuration: config) { loop in
                try loop.disableTimer()
                var completed = 0
                var slowest: Int64 = 0
                let rounds = 300
                func next() {
                    let submitted = monotonicNanoseconds()
                    try? loop.submit({ 1 }) { _ in
                        slowest = max(slowest, monotonicNanoseconds() - submitted)
                        completed += 1
                        if completed < rounds { next() }
                    }
                }
                next()
                let start = monotonicNanoseconds()
                let finished = try runUntil(loop, timeoutMs: 20_000) { completed == rounds }
                #expect(finished)
                // 300 round trips take milliseconds; a single lost wake-up costs a whole 1 s wait.
                #expect(elapsedMs(since: start) < 5_000)
                #expect(slowest < 500_000_000, "slowest round trip \(slowest / 1_000_000) ms")
                try loop.enableTimer()
            }
        }
    }
}
