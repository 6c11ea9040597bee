import Compat
import Glibc
import LoopTools
import Synchronization
import TestSupport
import Testing

/// SIGUSR1s that reached the test's own handler.
let usr1Deliveries = Atomic<Int>(0)

/// Whether the calling thread blocks `signo`.
func isBlocked(_ signo: Int32) -> Bool {
    var mask = sigset_t()
    pthread_sigmask(SIG_SETMASK, nil, &mask)
    return sigismember(&mask, signo) == 1
}

func blockedLoopSignals() -> [Int32: Bool] {
    Dictionary(uniqueKeysWithValues: loopOwnedSignals.map { ($0, isBlocked($0)) })
}

extension LoopConformance {
    /// Each loop undoes only its own mask changes; loops on one thread stack.
    @Suite struct SignalMask {
        static let pairs: [(LoopBackendKind, LoopBackendKind)] = [
            (.epoll, .epoll), (.legacy, .epoll), (.epoll, .legacy),
        ]

        /// Two loops on one thread closed in creation order and in reverse: while one
        /// lives the thread is as it needs, and after both the mask is as before.
        @Test(arguments: 0..<3, [false, true])
        func loopsClosedInEitherOrderRestoreTheMask(pair: Int, reverse: Bool) throws {
            try withOpenThreadMask { try closeTwoLoops(pair: pair, reverse: reverse) }
        }

        private func closeTwoLoops(pair: Int, reverse: Bool) throws {
            let (firstKind, secondKind) = Self.pairs[pair]
            let before = blockedLoopSignals()
            let first = try Loop.make(firstKind, configuration: .unroutedTimerSignalsAccepted)
            let second = try Loop.make(secondKind, configuration: .unroutedTimerSignalsAccepted)
            // The newest loop's needs hold on the thread.
            let whileBoth = isBlocked(SIGTERM)
            #expect(whileBoth == (secondKind == .epoll))
            let (closedFirst, survivor) = reverse ? (second, first) : (first, second)
            try closedFirst.close()
            // The survivor still has the signals as it needs them.
            #expect(
                isBlocked(SIGTERM) == (survivor.kind == .epoll), "after closing the \(reverse ? "newer" : "older") loop"
            )
            if survivor.kind == .epoll {
                #expect(isBlocked(SIGINT) && isBlocked(SIGHUP) && isBlocked(SIGPIPE))
                // The surviving epoll loop still takes a SIGTERM through its signalfd.
                pthread_kill(pthread_self(), SIGTERM)
                #expect(try runUntil(survivor, timeoutMs: 2_000) { survivor.shutdownReason != nil })
                #expect(survivor.takeShutdownRequest() == .signal(SIGTERM))
            }
            try survivor.close()
            #expect(blockedLoopSignals() == before)
        }

        /// A signal the embedder blocks (or unblocks) after `make()` keeps the
        /// embedder's setting when the loop closes.
        @Test(arguments: LoopBackendKind.allCases)
        func embedderChangesAfterMakeSurviveClose(kind: LoopBackendKind) throws {
            var usr = sigset_t()
            var saved = sigset_t()
            sigemptyset(&usr)
            sigaddset(&usr, SIGUSR1)
            pthread_sigmask(SIG_SETMASK, nil, &saved)
            defer { pthread_sigmask(SIG_SETMASK, &saved, nil) }
            try withOpenThreadMask {
                try withLoop(kind) { loop in
                    try loop.runOnce()
                    pthread_sigmask(SIG_BLOCK, &usr, nil)
                }
                #expect(isBlocked(SIGUSR1), "close() unblocked a signal the embedder blocked after make()")
            }
        }

        /// SIGIO's default action terminates the process: both loops count it.
        @Test(arguments: LoopBackendKind.allCases)
        func sigioIsCountedNotFatal(kind: LoopBackendKind) throws {
            // An open mask, as in a program's main thread: close() unblocks what the loop blocked.
            try withOpenThreadMask {
                try withLoop(kind) { loop in
                    try loop.runOnce()
                    pthread_kill(pthread_self(), SIGIO)
                    #expect(try runUntil(loop, timeoutMs: 2_000) { loop.counters.sigIOs >= 1 })
                    // Pending at close it is counted too, not left to kill the process.
                    pthread_kill(pthread_self(), SIGIO)
                    pthread_kill(pthread_self(), SIGPIPE)
                }
            }
        }

        /// The process set-up blocks what each backend needs, and a child process
        /// started afterwards does not inherit it.
        @Test(arguments: LoopBackendKind.allCases)
        func childMaskUndoesTheLibrarysChanges(kind: LoopBackendKind) throws {
            try withOpenThreadMask {
                let before = blockedLoopSignals()
                try withLoop(kind) { loop in
                    try loop.runOnce()
                    var child = ProcessSignals.childMask
                    for signo in loopOwnedSignals {
                        #expect((sigismember(&child, signo) == 1) == before[signo], "\(signalName(signo))")
                    }
                }
            }
        }

        /// The legacy wait opens SIGCHLD only: a signal the embedder blocked after
        /// `make()` stays blocked during `pselect` too.
        @Test func legacyWaitKeepsTheThreadsCurrentMask() throws {
            _ = usr1Deliveries.load(ordering: .relaxed)
            let previous = signal(SIGUSR1) { _ in usr1Deliveries.add(1, ordering: .relaxed) }
            defer { signal(SIGUSR1, previous) }
            try withOpenThreadMask {
                try withLoop(.legacy) { loop in
                    var usr1 = sigset_t()
                    sigemptyset(&usr1)
                    sigaddset(&usr1, SIGUSR1)
                    pthread_sigmask(SIG_BLOCK, &usr1, nil)
                    usr1Deliveries.store(0, ordering: .relaxed)
                    pthread_kill(pthread_self(), SIGUSR1)
                    try runFor(loop, ms: 30)
                    #expect(usr1Deliveries.load(ordering: .relaxed) == 0, "delivered during the wait")
                    pthread_sigmask(SIG_UNBLOCK, &usr1, nil) // now it is
                    #expect(usr1Deliveries.load(ordering: .relaxed) == 1)
                }
            }
        }

        /// An epoll loop made after a legacy loop on one thread decides (newest claim):
        /// a SIGHUP sent while the legacy loop waits stays for the epoll loop.
        @Test func newestLoopDecidesDuringTheOlderLoopsWait() throws {
            try withOpenThreadMask {
                let legacy = try Loop.make(.legacy, configuration: .unroutedTimerSignalsAccepted)
                let epoll = try Loop.make(.epoll)
                final class Target: @unchecked Sendable { let thread = pthread_self() }
                let target = Target()
                let sender = startThread {
                    usleep(3_000)
                    pthread_kill(target.thread, SIGHUP)
                }
                try runFor(legacy, ms: 50)
                joinThread(sender)
                #expect(legacy.shutdownReason == nil)
                #expect(try runUntil(epoll, timeoutMs: 2_000) { epoll.shutdownReason != nil })
                #expect(epoll.takeShutdownRequest() == .signal(SIGHUP))
                try epoll.close()
                try legacy.close()
            }
        }

        /// A loop freed on another thread cannot restore its owner's mask; children
        /// spawned from the owner thread still start with the program's mask.
        @Test func loopFreedOnAnotherThreadStillGivesChildrenTheProgramsMask() throws {
            final class Box: @unchecked Sendable { var loop: Loop? }
            try withOpenThreadMask {
                let box = Box()
                box.loop = try Loop.make(.epoll)
                try box.loop?.runOnce()
                joinThread(startThread { box.loop = nil })
                #expect(isBlocked(SIGTERM), "the owner's mask stays as the loop left it")
                var child = ProcessSignals.childMask
                #expect(sigismember(&child, SIGTERM) == 0)
                let pid = try ChildProcesses.spawn("/bin/sleep", arguments: ["10"])
                usleep(50_000)
                kill(pid, SIGTERM)
                let status = try #require(reap(pid))
                #expect(killedBy(status) == SIGTERM)
                var term = sigset_t()
                sigemptyset(&term)
                sigaddset(&term, SIGTERM)
                pthread_sigmask(SIG_UNBLOCK, &term, nil)
            }
        }

        /// Nested windows: a signal caught in the outer one survives the inner one and
        /// reaches the loop.
        @Test func nestedChildSignalMaskWindowsKeepTheSignal() throws {
            try withOpenThreadMask {
                try withLoop(.epoll) { loop in
                    try loop.runOnce()
                    ChildProcesses.withChildSignalMask {
                        pthread_kill(pthread_self(), SIGTERM)
                        ChildProcesses.withChildSignalMask {}
                    }
                    #expect(try runUntil(loop, timeoutMs: 2_000) { loop.shutdownReason != nil })
                    #expect(loop.takeShutdownRequest() == .signal(SIGTERM))
                }
            }
        }

        /// Two threads with windows open at once: the first to close must not take the
        /// stand-in away from the second, whose open mask would then meet the default
        /// action (terminate) of a SIGTERM.
        @Test func overlappingChildSignalMaskWindowsShareTheStandIn() throws {
            let step = Atomic<Int>(0)
            final class Report: @unchecked Sendable {
                var reason: ShutdownReason?
                var thread = pthread_self()
            }
            let report = Report()
            let other = startThread {
                withOpenThreadMask {
                    guard let loop = try? Loop.make(.epoll) else { return }
                    report.thread = pthread_self()
                    ChildProcesses.withChildSignalMask {
                        step.store(1, ordering: .releasing) // window open
                        while step.load(ordering: .acquiring) < 2 { usleep(500) } // the first closed its own
                        while step.load(ordering: .acquiring) < 3 { usleep(500) } // SIGTERM sent to this thread
                    }
                    // Not runUntil: this thread is not the test's, so a timeout is reported through
                    // `report.reason` (checked by the test) rather than recorded from here.
                    let deadline = monotonicNanoseconds() + 2_000_000_000
                    while loop.shutdownReason == nil, monotonicNanoseconds() < deadline { try? loop.runOnce() }
                    report.reason = loop.takeShutdownRequest()
                    try? loop.close()
                }
            }
            try withOpenThreadMask {
                try withLoop(.epoll) { loop in
                    try loop.runOnce()
                    ChildProcesses.withChildSignalMask {
                        while step.load(ordering: .acquiring) < 1 { usleep(500) }
                    }
                    step.store(2, ordering: .releasing)
                    pthread_kill(report.thread, SIGTERM)
                    step.store(3, ordering: .releasing)
                    // Inside the scope: the other thread's loop is closed before the descriptor check.
                    joinThread(other)
                }
            }
            #expect(report.reason == .signal(SIGTERM))
        }
    }
}
