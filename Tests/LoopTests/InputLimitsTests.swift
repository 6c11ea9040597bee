import Compat
import Glibc
import LoopTools
import Synchronization
import TestSupport
import Testing

extension LoopConformance {
    /// Absurd values get a thrown error, never a trap; costs stay linear.
    @Suite struct InputLimits {
        @Test(arguments: LoopBackendKind.allCases)
        func hugeOrNegativeArgumentsThrow(kind: LoopBackendKind) throws {
            try withLoop(kind) { loop in
                for period in [Int.max, Int(Int32.max) + 1, 0, -1, Int.min] {
                    #expect(throws: LoopError.invalidPeriod(period)) { try loop.registerSleep(every: period) {} }
                }
                // The longest period is accepted and runs without overflow.
                try loop.registerSleep(every: maximumSleepPeriodMs) {}
                for niceness in [-1, 3, Int.max, Int.min] {
                    #expect(throws: LoopError.invalidNiceness(niceness)) {
                        try loop.registerSleep(every: 10, niceness: niceness) {}
                    }
                    #expect(throws: LoopError.invalidNiceness(niceness)) {
                        try loop.registerRead(fd: 0, niceness: niceness) { _ in }
                    }
                    #expect(throws: LoopError.invalidNiceness(niceness)) {
                        try loop.submit(niceness: niceness, { 1 }) { _ in }
                    }
                }
                #expect(throws: LoopError.invalidDescriptor(-5)) { try loop.registerRead(fd: -5) { _ in } }
                #expect(throws: (any Error).self) { try loop.registerRead(fd: Int32.max) { _ in } }
                try runFor(loop, ms: 30)
            }
        }

        @Test(arguments: LoopBackendKind.allCases)
        func outOfRangeConfigurationThrows(kind: LoopBackendKind) throws {
            let cases: [(WritableKeyPath<LoopConfiguration, Int>, Int, String)] = [
                (\.quickPollIntervalMs, Int(Int32.max) + 1, "quickPollIntervalMs"),
                (\.quickPollIntervalMs, 0, "quickPollIntervalMs"),
                (\.realTimerIntervalMs, -1, "realTimerIntervalMs"),
                (\.realTimerIntervalMs, Int.max, "realTimerIntervalMs"),
                (\.maxRegistrations, 0, "maxRegistrations"),
                (\.workerThreads, 1_000_000, "workerThreads"),
            ]
            let descriptorsBefore = openDescriptors()
            let signalsBefore = ProcessSignalState.capture()
            for (path, value, name) in cases {
                var config = LoopConfiguration.unroutedTimerSignalsAccepted
                config[keyPath: path] = value
                #expect {
                    _ = try Loop.make(kind, configuration: config)
                } throws: { error in
                    guard case .invalidConfiguration(let field, let got, _) = error as? LoopError else { return false }
                    return field == name && got == value
                }
            }
            // Nothing was left behind: no descriptor, no disposition, mask or timer, and
            // (for legacy, one loop a process) no claim on the process: a loop can be made at once.
            #expect(openDescriptors() == descriptorsBefore)
            #expect(ProcessSignalState.capture() == signalsBefore)
            try withLoop(kind) { try $0.runOnce() }
        }

        /// A clock at the end of its range: due times saturate instead of overflowing.
        @Test(arguments: LoopBackendKind.allCases)
        func clockNearItsMaximumDoesNotTrap(kind: LoopBackendKind) throws {
            var config = LoopConfiguration.unroutedTimerSignalsAccepted
            config.clock = LoopClock { Int64.max - 5 }
            try withLoop(kind, configuration: config) { loop in
                try loop.registerSleep(every: maximumSleepPeriodMs) {}
                try loop.registerSleep(every: 10) {}
                try runFor(loop, ms: 30)
            }
        }

        /// A sleep callback registered inside long work counts its period from the
        /// moment it was registered, not from the iteration's start.
        @Test(arguments: LoopBackendKind.allCases)
        func sleepRegisteredInsideLongWorkWaitsItsPeriod(kind: LoopBackendKind) throws {
            try withLoop(kind) { loop in
                let p = PipePair()
                var registeredAt: Int64 = 0
                var firstCallAt: Int64 = 0
                try loop.registerRead(fd: p.readEnd) { _ in
                    p.drain()
                    guard registeredAt == 0 else { return }
                    burnCPU(limitMs: 150)
                    registeredAt = monotonicNanoseconds()
                    _ = try? loop.registerSleep(every: 100) {
                        if firstCallAt == 0 { firstCallAt = monotonicNanoseconds() }
                    }
                }
                p.fill()
                #expect(try runUntil(loop, timeoutMs: 5_000) { firstCallAt != 0 })
                let waitedMs = Double(firstCallAt - registeredAt) / 1e6
                #expect(waitedMs >= 95, "first call \(waitedMs) ms after registration, period 100 ms")
            }
        }

        /// Owner dedup is a lookup, not a scan: many owners register quickly, and the
        /// same owner still gets its first handle back.
        @Test(arguments: LoopBackendKind.allCases)
        func manySleepOwnersRegisterInLinearTime(kind: LoopBackendKind) throws {
            var config = LoopConfiguration.unroutedTimerSignalsAccepted
            config.maxRegistrations = 50_000
            try withLoop(kind, configuration: config) { loop in
                let started = monotonicNanoseconds()
                var handles: [Registration] = []
                for i in 0..<20_000 { handles.append(try loop.registerSleep(every: 60_000, owner: i) {}) }
                // A scan per registration took ~30 s for 20,000 owners; a lookup ~10 ms.
                #expect(elapsedMs(since: started) < 3_000)
                #expect(try loop.registerSleep(every: 5, owner: 12_345) {} === handles[12_345])
                try loop.unregister(handles[7])
                #expect(try loop.registerSleep(every: 60_000, owner: 7) {} !== handles[7])
                #expect(loop.counters.registrations == 20_000)
            }
        }

        /// Collecting completions costs what is collected: 200,000 jobs drain in well
        /// under a second (the quadratic version took ~25 s after the work was done).
        @Test(arguments: LoopBackendKind.allCases)
        func workerCompletionsAreLinear(kind: LoopBackendKind) throws {
            try withLoop(kind) { loop in
                let jobs = 200_000
                var done = 0
                var urgentDone = 0
                for i in 0..<jobs {
                    let niceness = i % 2
                    try loop.submit(niceness: niceness, { i }) { _ in
                        done += 1
                        if niceness == 0 { urgentDone += 1 }
                    }
                }
                #expect(try runUntil(loop, timeoutMs: 15_000) { done == jobs })
                #expect(urgentDone == jobs / 2)
                #expect(loop.pendingJobs == 0)
                #expect(loop.counters.jobsCompleted == jobs)
            }
        }
    }
}
