import CLoopShim
import Compat
import Glibc
import LoopTools
import TestSupport
import Testing

extension LoopConformance {
    @Suite struct Signals {
        static let shutdownSignals: [Int32] = [SIGHUP, SIGTERM, SIGINT, SIGPWR]

        /// Real process-directed signals, sent with kill(2) to a child whose
        /// threads are all the loop's own.
        @Test(arguments: LoopBackendKind.allCases, shutdownSignals)
        func adminSignalShutsTheLoopDown(kind: LoopBackendKind, signo: Int32) throws {
            let child = try ChildProcess(
                ["child-loop", "--backend", kind.rawValue], executable: ChildProcess.probePath)
            let ready = try #require(child.line(startingWith: "ready"))
            #expect(ready.hasSuffix(kind.rawValue))
            kill(child.pid, signo)
            let line = try #require(child.line(startingWith: "shutdown"))
            let fields = line.split(separator: " ")
            #expect(fields[1] == (signo == SIGPWR ? "3" : "1"))
            #expect(fields[2] == "\(signo)")
            let status = try #require(child.waitForExit())
            #expect(exited(status) == 0)
        }

        /// The legacy handler runs on whichever thread the kernel picks and
        /// forwards a wake-up to the loop thread, so the loop always shuts down
        /// cleanly. signalfd needs the signal blocked in every thread: a thread
        /// that does not block it may take the signal's default action and kill
        /// the process (which thread gets it is the kernel's choice, so the epoll
        /// case tries a few times). That is the embedder's rule in the README.
        @Test(arguments: LoopBackendKind.allCases)
        func signalLandingOnAnotherThread(kind: LoopBackendKind) throws {
            var killed = 0
            for _ in 0..<10 {
                let child = try ChildProcess(
                    ["child-loop", "--backend", kind.rawValue, "--unblocked-thread"],
                    executable: ChildProcess.probePath)
                _ = try #require(child.line(startingWith: "ready"))
                kill(child.pid, SIGTERM)
                let report = child.line(startingWith: "shutdown")
                let status = try #require(child.waitForExit())
                switch kind {
                case .legacy:
                    #expect(report?.hasPrefix("shutdown 1 \(SIGTERM)") == true)
                    #expect(exited(status) == 0)
                case .epoll:
                    if killedBy(status) == SIGTERM { killed += 1 } else { #expect(exited(status) == 0) }
                }
                if kind == .legacy || killed > 0 { break }
            }
            if kind == .epoll { #expect(killed > 0) }
        }

        /// A signal directed at the loop thread reaches both designs in-process:
        /// the legacy handler, or the loop thread's signalfd.
        @Test(arguments: LoopBackendKind.allCases)
        func threadDirectedSignalInProcess(kind: LoopBackendKind) throws {
            try withLoop(kind) { loop in
                let started = monotonicNanoseconds()
                // A watchdog, so a missed signal fails the test instead of hanging the run.
                try loop.registerSleep(every: 100) {
                    if monotonicNanoseconds() - started > 5_000_000_000 { loop.stop() }
                }
                pthread_kill(pthread_self(), SIGHUP)
                let reason = try loop.run()
                #expect(reason == .signal(SIGHUP))
                #expect(reason.legacyCode == 1)
            }
        }

        @Test(arguments: LoopBackendKind.allCases)
        func sigpipeIsCountedNotFatal(kind: LoopBackendKind) throws {
            try withLoop(kind) { loop in
                let p = PipePair()
                close(p.readEnd)
                var b: UInt8 = 1
                #expect(write(p.writeEnd, &b, 1) == -1 && errno == EPIPE)
                let counted = try runUntil(loop) { loop.counters.sigPipes >= 1 }
                #expect(counted)
            }
        }

        /// ITIMER_VIRTUAL counts CPU time: an idle legacy loop sees few SIGVTALRMs,
        /// a busy one about one per 10 ms of CPU. The epoll quickpoll timer is wall time.
        @Test(arguments: LoopBackendKind.allCases)
        func quickPollTimerTicksFollowCPUOnLegacyAndWallTimeOnEpoll(kind: LoopBackendKind) throws {
            try withLoop(kind) { loop in
                let idleStart = loop.counters.vtAlarms
                try runFor(loop, ms: 300)
                let idleTicks = loop.counters.vtAlarms - idleStart
                let busyStart = loop.counters.vtAlarms
                // 300 ms of this thread's CPU, however long that takes on a loaded machine (the
                // virtual timer counts CPU time: 300 ms of wall time may be a third of that).
                let cpuStart = threadCPUNanoseconds()
                burnCPU(
                    limitMs: 10_000, until: { threadCPUNanoseconds() - cpuStart >= 300_000_000 },
                    step: { _ = loop.needsToQuickPoll })
                try loop.runOnce()
                let busyTicks = loop.counters.vtAlarms - busyStart
                #expect(busyTicks >= 5, "busy ticks \(busyTicks)")
                switch kind {
                case .legacy: #expect(idleTicks < 15, "idle ticks \(idleTicks)")
                case .epoll: #expect(idleTicks >= 10, "idle ticks \(idleTicks)")
                }
            }
        }

        /// A process-directed SIGVTALRM may land on any thread that does not block
        /// it; the flag is an atomic, so the loop thread sees it all the same.
        @Test func virtualTimerOnAnotherThreadStillRaisesTheFlag() throws {
            try withLoop(.legacy) { loop in
                var block = sigset_t()
                var saved = sigset_t()
                sigemptyset(&block)
                sigaddset(&block, SIGVTALRM)
                pthread_sigmask(SIG_BLOCK, &block, &saved)
                defer { pthread_sigmask(SIG_SETMASK, &saved, nil) }
                try loop.runOnce()
                var raised = false
                burnCPU(limitMs: 3_000, until: { raised }) { raised = loop.needsToQuickPoll }
                #expect(raised)
                // The handler ran on another thread: this one blocks the signal.
                #expect(loop.counters.vtAlarms >= 1)
            }
        }

        @Test(arguments: LoopBackendKind.allCases)
        func disableTimerStopsTicksAndEnableRestartsThem(kind: LoopBackendKind) throws {
            try withLoop(kind) { loop in
                try runFor(loop, ms: 30)
                try loop.disableTimer()
                #expect(!loop.canQuickPoll(1))
                try loop.runOnce()
                let before = loop.counters.alarms
                try runFor(loop, ms: 100)
                #expect(loop.counters.alarms - before <= 2)
                try loop.enableTimer()
                #expect(loop.canQuickPoll(1))
                #expect(!loop.canQuickPoll(0))
                try runFor(loop, ms: 100)
                #expect(loop.counters.alarms - before >= 20)
            }
        }

        @Test(arguments: LoopBackendKind.allCases)
        func cpuUsageAverageMovesWithLoad(kind: LoopBackendKind) throws {
            try withLoop(kind) { loop in
                try runFor(loop, ms: 300)
                let idle = loop.cpuUsage
                burnCPU(limitMs: 400)
                try loop.runOnce()
                let busy = loop.cpuUsage
                #expect(busy > idle, "idle \(idle)% busy \(busy)%")
                #expect(busy > 30, "busy \(busy)%")
            }
        }
    }
}
