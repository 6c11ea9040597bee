import Compat
import Glibc
import LoopTools
import Synchronization
import TestSupport
import Testing

extension LoopConformance {
    /// The epoll loop is tickless: `run()` waits until the next sleep callback is due,
    /// a descriptor is ready, a wake-up or a signal comes. The legacy loop keeps the
    /// original's ticks (select's 10 ms timeout, SIGALRM every ms). Counted, not timed.
    @Suite struct IdleLoop {
        /// Runs `loop.run()`, stopped from another thread after `ms` if nothing else
        /// stops it first, so a wait that is never ended fails instead of hanging.
        @discardableResult
        func runWithWatchdog(_ loop: Loop, ms: Int = 5_000) throws -> ShutdownReason {
            let handle = loop.stopHandle
            final class Flag: Sendable { let raised = Atomic<Bool>(false) }
            let finished = Flag()
            let dog = startThread {
                let deadline = monotonicNanoseconds() + Int64(ms) * 1_000_000
                while !finished.raised.load(ordering: .acquiring) && monotonicNanoseconds() < deadline { usleep(5_000) }
                if !finished.raised.load(ordering: .acquiring) { handle.stop() }
            }
            defer {
                finished.raised.store(true, ordering: .releasing)
                joinThread(dog)
            }
            return try loop.run()
        }

        @Test(arguments: LoopBackendKind.allCases)
        func runWakesOnlyForItsDeadlines(kind: LoopBackendKind) throws {
            try withLoop(kind) { loop in
                var beats = 0
                try loop.registerSleep(every: 100) {
                    beats += 1
                    if beats == 6 { loop.stop() }
                }
                let before = loop.counters.polls
                try runWithWatchdog(loop)
                let polls = loop.counters.polls - before
                #expect(beats == 6)
                switch kind {
                // One wait per beat; a little slack for a scan that finds the beat a ms early.
                case .epoll: #expect(polls <= 2 * beats + 2, "\(polls) polls for \(beats) beats")
                // Select never waits longer than 10 ms: 600 ms is at least 60 polls; halved for a loaded machine.
                case .legacy: #expect(polls >= 30, "\(polls) polls for \(beats) beats")
                }
            }
        }

        @Test(arguments: LoopBackendKind.allCases)
        func withNothingScheduledOnlyAWakeUpEndsTheWait(kind: LoopBackendKind) throws {
            try withLoop(kind) { loop in
                var completed = 0
                try loop.submit({
                    usleep(150_000)
                    return 7
                }) { completed = $0 }
                let handle = loop.stopHandle
                let stopper = startThread {
                    usleep(400_000)
                    handle.stop()
                }
                let start = monotonicNanoseconds()
                let before = loop.counters.polls
                let reason = try loop.run()
                let polls = loop.counters.polls - before
                joinThread(stopper)
                #expect(reason == .stopped)
                #expect(completed == 7, "the worker's wake-up ended an unbounded wait")
                #expect(elapsedMs(since: start) < 3_000)
                switch kind {
                case .epoll: #expect(polls <= 4, "\(polls) polls")
                case .legacy: #expect(polls >= 20, "\(polls) polls")
                }
            }
        }

        /// After a long wait the approximate clock starts from the clock again, and the
        /// CPU average has counted the wait as idle.
        @Test(arguments: LoopBackendKind.allCases)
        func clockAndCPUAverageAreRightAfterALongWait(kind: LoopBackendKind) throws {
            try withLoop(kind) { loop in
                _ = burnCPU(limitMs: 300)
                try loop.runOnce(maxWaitMs: 0)
                let busyCPU = loop.cpuUsage
                let alarmsBefore = loop.counters.alarms
                var seen: (approxLag: Int64, cpu: Double, alarms: Int)?
                let r = try loop.registerSleep(every: 400) {
                    guard seen == nil else { return }
                    seen = (
                        loop.configuration.clock.milliseconds() - loop.nowApprox, loop.cpuUsage,
                        loop.counters.alarms - alarmsBefore
                    )
                    loop.stop()
                }
                try runWithWatchdog(loop)
                try loop.unregister(r)
                let s = try #require(seen)
                #expect(busyCPU > 50, "CPU average \(busyCPU) after 300 ms of burning")
                #expect(abs(s.approxLag) <= 15, "nowApprox \(s.approxLag) ms behind")
                // 400 idle ticks take the average from ~95 to ~2.
                #expect(s.cpu < 20, "CPU average \(s.cpu) after 400 ms idle")
                // The idle wait is counted in real-timer ticks (1 ms), paused timer or not.
                #expect(s.alarms >= 200, "\(s.alarms) real-timer ticks in 400 ms")
            }
        }

        /// Work that starts after a long wait is asked to quickpoll once it has run a
        /// while (on epoll a whole interval after the wait), never at once for ticks of the wait.
        @Test(arguments: LoopBackendKind.allCases)
        func busyWorkAfterALongWaitIsAskedToQuickPollInTime(kind: LoopBackendKind) throws {
            try withLoop(kind) { loop in
                var askedAfterMs: Double?
                let r = try loop.registerSleep(every: 300, niceness: 1) {
                    guard askedAfterMs == nil else { return }
                    var asked = false
                    let ms = burnCPU(limitMs: 2_000, until: { asked }) { asked = loop.needsToQuickPoll }
                    if asked { askedAfterMs = ms }
                    loop.stop()
                }
                try runWithWatchdog(loop)
                try loop.unregister(r)
                let ms = try #require(askedAfterMs, "never asked to quickpoll in 2 s of work")
                if kind == .epoll { #expect(ms >= 8, "asked after \(ms) ms of work") }
            }
        }

        @Test(arguments: LoopBackendKind.allCases)
        func runOnceWaitsAtMostWhatItIsTold(kind: LoopBackendKind) throws {
            try withLoop(kind) { loop in
                // Nothing registered: runOnce() still returns within the quickpoll interval.
                let start = monotonicNanoseconds()
                for _ in 0..<5 { try loop.runOnce() }
                try loop.runOnce(maxWaitMs: 0)
                #expect(elapsedMs(since: start) < 2_000)
                #expect(throws: LoopError.invalidPeriod(-1)) { try loop.runOnce(maxWaitMs: -1) }
            }
        }
    }
}

extension LoopConformance.IdleLoop {
    /// A clock that steps back while the loop is working (in a callback) must not make
    /// the next wait as long as the step: the deadlines are in the old time. Without a
    /// tick to notice, the loop would sleep a minute here, every sleep callback frozen.
    @Test(arguments: LoopBackendKind.allCases)
    func clockSteppingBackWhileWorkingDoesNotStallRun(kind: LoopBackendKind) throws {
        let offset = Mutex<Int64>(0)
        var config = LoopConfiguration.unroutedTimerSignalsAccepted
        config.clock = LoopClock { monotonicNanoseconds() / 1_000_000 + offset.withLock { $0 } }
        try withLoop(kind, configuration: config) { loop in
            var beats = 0
            try loop.registerSleep(every: 30) {
                beats += 1
                if beats == 3 { offset.withLock { $0 -= 60_000 } } // a minute back
                if beats == 8 { loop.stop() }
            }
            let start = monotonicNanoseconds()
            try runWithWatchdog(loop, ms: 5_000)
            #expect(beats == 8, "\(beats) beats: the loop stalled after the clock stepped back")
            #expect(elapsedMs(since: start) < 4_000)
        }
    }
}
