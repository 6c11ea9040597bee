import Compat
import Glibc
import Synchronization
import TestSupport
import Testing

extension LoopConformance {
    @Suite struct SleepCallbacks {
        @Test(arguments: LoopBackendKind.allCases)
        func cadenceIsAboutThePeriodAndNeverFaster(kind: LoopBackendKind) throws {
            try withLoop(kind) { loop in
                var fast: [Int64] = []
                var slow: [Int64] = []
                let start = loop.now
                try loop.registerSleep(every: 10) { fast.append(loop.now) }
                try loop.registerSleep(every: 100) { slow.append(loop.now) }
                try runFor(loop, ms: 600)
                // runFor's last iteration starts before 600 ms and may wait up to one
                // quickpoll interval more: the span actually run is 600 to ~611 ms.
                let span = loop.now - start
                let fastGaps = zip(fast.dropFirst(), fast).map { $0 - $1 }
                let slowGaps = zip(slow.dropFirst(), slow).map { $0 - $1 }
                #expect(fastGaps.allSatisfy { $0 >= 10 }, "\(fastGaps)")
                #expect(slowGaps.allSatisfy { $0 >= 100 }, "\(slowGaps)")
                // Never faster: at most one fire per period of the span (60 or 61 at 10 ms).
                #expect(fast.count <= Int(span / 10), "\(fast.count) fires at 10 ms in \(span) ms")
                #expect(slow.count <= Int(span / 100), "\(slow.count) fires at 100 ms in \(span) ms")
                // About the period: the median gap within half a period of it (a loaded 2-core
                // machine delays some wake-ups, not most), and at least half the fires.
                func median(_ gaps: [Int64]) -> Int64 { gaps.isEmpty ? .max : gaps.sorted()[gaps.count / 2] }
                #expect(fast.count >= Int(span / 20) && median(fastGaps) <= 15, "fast gaps \(fastGaps)")
                #expect(slow.count >= Int(span / 200) && median(slowGaps) <= 150, "slow gaps \(slowGaps)")
            }
        }

        /// Alone, a callback runs at its own period, not rounded up to the
        /// 40 ms minimum tick as in the original (defect 5).
        @Test(arguments: LoopBackendKind.allCases, [50, 100])
        func aLoneCallbackKeepsItsOwnPeriod(kind: LoopBackendKind, period: Int) throws {
            try withLoop(kind) { loop in
                var calls: [Int64] = []
                try loop.registerSleep(every: period) { calls.append(monotonicNanoseconds()) }
                try runUntil(loop, timeoutMs: 5_000) { calls.count >= 7 }
                let gaps = zip(calls.dropFirst(), calls).map { Double($0 - $1) / 1e6 }
                let mean = gaps.reduce(0, +) / Double(max(gaps.count, 1))
                #expect(calls.count >= 7)
                #expect(mean >= Double(period) - 1 && mean < Double(period) * 1.15, "mean period \(mean) ms")
            }
        }

        @Test(arguments: LoopBackendKind.allCases)
        func minimumTickFollowsTheFastestCallback(kind: LoopBackendKind) throws {
            try withLoop(kind) { loop in
                #expect(loop.minTick == 40)
                let slow = try loop.registerSleep(every: 100) {}
                #expect(loop.minTick == 40)
                let fast = try loop.registerSleep(every: 10) {}
                #expect(loop.minTick == 10)
                try loop.unregister(fast)
                #expect(loop.minTick == 40)
                let faster = try loop.registerSleep(every: 5) {}
                try loop.unregister(slow)
                #expect(loop.minTick == 5)
                try loop.unregister(faster)
                #expect(loop.minTick == 40)
            }
        }

        @Test(arguments: LoopBackendKind.allCases)
        func clockGoingBackwardsResetsLastCall(kind: LoopBackendKind) throws {
            let time = Mutex<Int64>(1_000)
            var config = LoopConfiguration.unroutedTimerSignalsAccepted
            config.clock = LoopClock { time.withLock { $0 } }
            try withLoop(kind, configuration: config) { loop in
                var fires = 0
                try loop.registerSleep(every: 50) { fires += 1 }
                time.withLock { $0 = 1_060 }
                try loop.runOnce()
                #expect(fires == 1)
                time.withLock { $0 = 500 } // back 560 ms
                try loop.runOnce()
                try loop.runOnce()
                #expect(fires == 1)
                time.withLock { $0 = 540 }
                try loop.runOnce()
                #expect(fires == 1) // 40 ms after the reset: not due
                time.withLock { $0 = 560 }
                try loop.runOnce()
                #expect(fires == 2) // due 50 ms after the reset
            }
        }

        @Test(arguments: LoopBackendKind.allCases)
        func sleepCallbackMayUnregisterItselfAndOthers(kind: LoopBackendKind) throws {
            try withLoop(kind) { loop in
                var a = 0
                var b = 0
                var ra: Registration!
                var rb: Registration!
                rb = try loop.registerSleep(every: 5) { b += 1 }
                ra = try loop.registerSleep(every: 5) {
                    a += 1
                    try? loop.unregister(ra)
                    try? loop.unregister(rb)
                }
                try runFor(loop, ms: 100)
                #expect(a == 1)
                #expect(b <= 1)
            }
        }
    }
}

extension LoopConformance.SleepCallbacks {
    /// A paused callback keeps its registration but is never called, does not set the
    /// minimum tick, and once resumed is due a whole period later.
    @Test(arguments: LoopBackendKind.allCases)
    func pausedCallbackIsNotCalledAndResumesAPeriodLater(kind: LoopBackendKind) throws {
        try withLoop(kind) { loop in
            var calls: [Int64] = []
            let r = try loop.registerSleep(every: 30) { calls.append(loop.now) }
            try runUntil(loop) { calls.count >= 2 }
            #expect(loop.minTick == 30)
            try loop.pauseSleep(r)
            try loop.pauseSleep(r) // twice: harmless
            #expect(loop.minTick == defaultMinimumTickMs)
            #expect(loop.counters.registrations == 1)
            let pausedAt = calls.count
            try runFor(loop, ms: 150)
            #expect(calls.count == pausedAt, "called while paused")
            let resumedAt = loop.configuration.clock.milliseconds()
            try loop.resumeSleep(r)
            try loop.resumeSleep(r) // not paused: ignored
            #expect(loop.minTick == 30)
            try runUntil(loop) { calls.count > pausedAt }
            #expect(calls[pausedAt] - resumedAt >= 30, "due \(calls[pausedAt] - resumedAt) ms after resuming")
            // Unregistered while paused: gone, and resuming it does nothing.
            try loop.pauseSleep(r)
            try loop.unregister(r)
            try loop.resumeSleep(r)
            #expect(loop.counters.registrations == 0)
            let before = calls.count
            try runFor(loop, ms: 100)
            #expect(calls.count == before)
        }
    }

    /// Thousands of callbacks: each keeps its own period (never faster), and those due
    /// in one scan run newest registration first, as the original walks its chain.
    @Test(arguments: LoopBackendKind.allCases)
    func thousandsOfCallbacksKeepTheirPeriodsAndOrder(kind: LoopBackendKind) throws {
        try withLoop(kind) { loop in
            let count = 2_000
            var calls: [(index: Int, at: Int64)] = []
            calls.reserveCapacity(count * 20)
            var registrations: [Registration] = []
            for i in 0..<count {
                registrations.append(try loop.registerSleep(every: 20 + i % 41) { calls.append((i, loop.now)) })
            }
            let start = loop.now
            try runFor(loop, ms: 400)
            let span = loop.now - start
            var byCallback = [[Int64]](repeating: [], count: count)
            for c in calls { byCallback[c.index].append(c.at) }
            for i in 0..<count {
                let period = Int64(20 + i % 41)
                let gaps = zip(byCallback[i].dropFirst(), byCallback[i]).map { $0 - $1 }
                #expect(gaps.allSatisfy { $0 >= period }, "callback \(i) (every \(period) ms): gaps \(gaps)")
                #expect(
                    byCallback[i].count <= Int(span / period),
                    "callback \(i) ran \(byCallback[i].count) times in \(span) ms")
            }
            #expect(byCallback.filter(\.isEmpty).count == 0, "some callbacks never ran in \(span) ms")
            // One scan, one `now`: indices strictly descending within it.
            var i = 0
            while i < calls.count {
                var j = i + 1
                while j < calls.count && calls[j].at == calls[i].at {
                    #expect(
                        calls[j].index < calls[j - 1].index,
                        "scan at \(calls[i].at): \(calls[j - 1].index) before \(calls[j].index)")
                    j += 1
                }
                i = j
            }
            for r in registrations { try loop.unregister(r) }
            #expect(loop.minTick == defaultMinimumTickMs)
        }
    }
}

extension LoopConformance.SleepCallbacks {
    /// Two callbacks due in one scan: the first (newest) pauses the second, which then
    /// is not called, although the scan's due set was fixed before; resumed, it runs again.
    @Test(arguments: LoopBackendKind.allCases)
    func callbackPausedByAnotherInTheSameScanIsNotCalled(kind: LoopBackendKind) throws {
        let time = Mutex<Int64>(1_000)
        var config = LoopConfiguration.unroutedTimerSignalsAccepted
        config.clock = LoopClock { time.withLock { $0 } }
        try withLoop(kind, configuration: config) { loop in
            var older = 0
            var newer = 0
            let first = try loop.registerSleep(every: 50) { older += 1 }
            try loop.registerSleep(every: 50) {
                newer += 1
                if newer == 1 { try? loop.pauseSleep(first) }
            }
            time.withLock { $0 = 1_060 }
            try loop.runOnce(maxWaitMs: 0)
            #expect(newer == 1)
            #expect(older == 0, "called while paused")
            try loop.resumeSleep(first)
            time.withLock { $0 = 1_200 }
            try loop.runOnce(maxWaitMs: 0)
            #expect(older == 1)
        }
    }

    /// Periods that come and go (computed delays): thousands of distinct ones registered
    /// and removed leave the loop working as before, and none of them is called after.
    @Test(arguments: LoopBackendKind.allCases)
    func manyDistinctPeriodsComeAndGo(kind: LoopBackendKind) throws {
        try withLoop(kind) { loop in
            var stray = 0
            var beats = 0
            try loop.registerSleep(every: 20) { beats += 1 }
            for round in 0..<5 {
                var batch: [Registration] = []
                for i in 0..<2_000 {
                    batch.append(try loop.registerSleep(every: 1_000 + round * 2_000 + i) { stray += 1 })
                }
                try loop.runOnce(maxWaitMs: 0)
                for r in batch { try loop.unregister(r) }
            }
            #expect(loop.counters.registrations == 1)
            #expect(loop.minTick == 20)
            let before = beats
            try runUntil(loop) { beats >= before + 3 }
            #expect(stray == 0)
        }
    }
}
