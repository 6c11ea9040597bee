import Compat
import Glibc
import TestSupport
import Testing

extension LoopConformance {
    /// `loop.after(ms:)`: one call at or after the due time, cancellable, and a wait
    /// that ends when the earliest timer is due (no polling on the tickless loop).
    @Suite struct OneShotTimers {
        @Test(arguments: LoopBackendKind.allCases)
        func firesOnceAtOrAfterItsTimeThenIsGone(kind: LoopBackendKind) throws {
            try withLoop(kind) { loop in
                let start = monotonicNanoseconds()
                var calls: [Int] = []
                let timer = try loop.after(ms: 50) { calls.append(elapsedMs(since: start)) }
                #expect(loop.counters.registrations == 1)
                try runUntil(loop, timeoutMs: 5_000) { !calls.isEmpty }
                try runFor(loop, ms: 150)
                #expect(calls.count == 1, "\(calls)")
                #expect(calls[0] >= 50, "fired after \(calls[0]) ms")
                #expect(!timer.isActive && loop.counters.registrations == 0 && loop.counters.timerCallbacks == 1)
                try loop.unregister(timer) // after it fired: nothing
            }
        }

        @Test(arguments: LoopBackendKind.allCases)
        func aCancelledTimerNeverFires(kind: LoopBackendKind) throws {
            try withLoop(kind) { loop in
                var fired = 0
                var control = 0
                let timer = try loop.after(ms: 20) { fired += 1 }
                try loop.after(ms: 40) { control += 1 }
                try loop.unregister(timer)
                #expect(loop.counters.registrations == 1)
                try runUntil(loop, timeoutMs: 5_000) { control == 1 }
                try runFor(loop, ms: 50)
                #expect(fired == 0 && loop.counters.registrations == 0)
            }
        }

        /// Earliest due first, registration order among equal times; one registered by a
        /// timer's callback runs in a later poll, and the owner rule holds while pending.
        @Test(arguments: LoopBackendKind.allCases)
        func orderOwnersAndTimersFromCallbacks(kind: LoopBackendKind) throws {
            try withLoop(kind) { loop in
                var order: [String] = []
                try loop.after(ms: 30) { order.append("a30") }
                try loop.after(ms: 10) { order.append("b10") }
                let owned = try loop.after(ms: 10, owner: "k") { order.append("c10") }
                #expect(try loop.after(ms: 1, owner: "k") { order.append("never") } === owned)
                try loop.after(ms: 0) {
                    order.append("d0")
                    _ = try? loop.after(ms: 0) { order.append("e0") }
                }
                try runUntil(loop, timeoutMs: 5_000) { order.count >= 5 }
                #expect(
                    order == ["d0", "e0", "b10", "c10", "a30"] || order == ["d0", "b10", "c10", "e0", "a30"]
                        || order == ["d0", "b10", "e0", "c10", "a30"], "\(order)")
                #expect(order.first == "d0" && order.last == "a30" && !order.contains("never"))
                // Gone once fired: the owner may register again.
                var again = false
                #expect(try loop.after(ms: 0, owner: "k") { again = true } !== owned)
                try runUntil(loop, timeoutMs: 5_000) { again }
            }
        }

        /// `run()` waits until the earliest of the next sleep callback and the next
        /// timer. The epoll loop has no tick: a timer 200 ms away beside a 5 s sleep
        /// callback costs a handful of polls, not one per quickpoll interval.
        @Test(arguments: LoopBackendKind.allCases)
        func runWaitsForTheEarliestTimerWithoutPolling(kind: LoopBackendKind) throws {
            try withLoop(kind) { loop in
                try loop.registerSleep(every: 5_000) {}
                let start = monotonicNanoseconds()
                var firedAt = -1
                try loop.after(ms: 200) {
                    firedAt = elapsedMs(since: start)
                    loop.stop()
                }
                let pollsBefore = loop.counters.polls
                #expect(try loop.run() == .stopped)
                let polls = loop.counters.polls - pollsBefore
                #expect(firedAt >= 200 && firedAt < 4_000, "fired after \(firedAt) ms")
                // The legacy loop wakes on its 1 ms tick (the original's design).
                if kind == .epoll { #expect(polls <= 5, "\(polls) polls for one 200 ms timer") }
            }
        }

        /// A clock that reads whole milliseconds drops the fraction: a timer counted from the
        /// truncated reading would fire up to a millisecond early (a 50 ms timer after 49.3 ms).
        /// It counts from the reading rounded up, so it never fires before its whole delay.
        @Test(arguments: LoopBackendKind.allCases)
        func neverEarlyByTheClocksFraction(kind: LoopBackendKind) throws {
            let clock = NanosecondClock(1_000_500_000) // 1000.5 ms
            var configuration = LoopConfiguration.unroutedTimerSignalsAccepted
            configuration.clock = clock.loopClock
            try withLoop(kind, configuration: configuration) { loop in
                var firedAt: Int64 = -1
                try loop.after(ms: 10) { firedAt = clock.nanoseconds }
                for step in 1...30 {
                    clock.nanoseconds = 1_000_500_000 + Int64(step) * 500_000
                    try loop.runOnce(maxWaitMs: 0)
                    if firedAt >= 0 { break }
                }
                #expect(firedAt >= 1_010_500_000, "fired at \(firedAt) ns, registered at 1,000,500,000 for 10 ms")
                #expect(firedAt <= 1_011_500_000, "fired at \(firedAt) ns: later than the next millisecond")
            }
        }

        @Test(arguments: LoopBackendKind.allCases)
        func badArgumentsAreRefused(kind: LoopBackendKind) throws {
            try withLoop(kind) { loop in
                #expect(throws: LoopError.invalidPeriod(-1)) { try loop.after(ms: -1) {} }
                #expect(throws: LoopError.invalidNiceness(3)) { try loop.after(ms: 1, niceness: 3) {} }
                var niceness = -1
                try loop.after(ms: 0, niceness: 1) { niceness = loop.niceness }
                try runUntil(loop, timeoutMs: 5_000) { niceness >= 0 }
                #expect(niceness == 1)
            }
        }

        /// A timer pending at close() is released with the loop, its callback never run.
        @Test(arguments: LoopBackendKind.allCases)
        func aPendingTimerIsReleasedAtClose(kind: LoopBackendKind) throws {
            final class Token {}
            weak var weakToken: Token?
            var fired = false
            try withLoop(kind) { loop in
                let token = Token()
                weakToken = token
                try loop.after(ms: 60_000) { withExtendedLifetime(token) { fired = true } }
            }
            #expect(weakToken == nil && !fired)
        }
    }
}
