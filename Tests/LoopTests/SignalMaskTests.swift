import Compat
import Glibc
import LoopTools
import Testing

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
        static let pairs: [(LoopBackendKind, LoopBackendKind)] = [(.epoll, .epoll), (.legacy, .epoll), (.epoll, .legacy)]

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
            #expect(isBlocked(SIGTERM) == (survivor.kind == .epoll), "after closing the \(reverse ? "newer" : "older") loop")
            if survivor.kind == .epoll {
                #expect(isBlocked(SIGINT) && isBlocked(SIGHUP) && isBlocked(SIGPIPE))
                // The surviving epoll loop still takes a SIGTERM through its signalfd.
                pthread_kill(pthread_self(), SIGTERM)
                #expect(try runUntil(survivor, timeoutMs: 2_000) { survivor.shutdownReason != nil })
                #expect(try survivor.run() == .signal(SIGTERM))
            }
            try survivor.close()
            #expect(blockedLoopSignals() == before)
        }

        /// A signal the embedder blocks (or unblocks) after `make()` keeps the
        /// embedder's setting when the loop closes.
        @Test(arguments: LoopBackendKind.allCases)
        func embedderChangesAfterMakeSurviveClose(kind: LoopBackendKind) throws {
            var usr = sigset_t(), saved = sigset_t()
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
    }
}
