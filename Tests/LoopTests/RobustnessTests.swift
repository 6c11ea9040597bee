import Compat
import Glibc
import LoopTools
import TestSupport
import Testing

extension LoopConformance {
    /// Misuse and faults: each gets a clear outcome, never a hang, a spin or corruption.
    @Suite struct Robustness {
        /// A stop handle kept past `close()` must not reach anything else: not an
        /// unrelated descriptor that reused the eventfd's number, not a later loop.
        @Test(arguments: LoopBackendKind.allCases)
        func staleStopHandleReachesNothing(kind: LoopBackendKind) throws {
            let first = try Loop.make(kind, configuration: .unroutedTimerSignalsAccepted)
            let handle = first.stopHandle
            try first.close()
            let unrelated = PipePair()
            handle.wakeup()
            handle.stop()
            var buf = [UInt8](repeating: 0, count: 16)
            _ = fcntl(unrelated.readEnd, F_SETFL, O_NONBLOCK)
            #expect(read(unrelated.readEnd, &buf, 16) < 0, "the stale waker wrote into a reused descriptor")
            try withLoop(kind) { second in
                try runFor(second, ms: 20)
                #expect(second.shutdownReason == nil)
            }
        }

        /// The owner closed a registered fd while a dup of the file lives on: the
        /// kernel keeps an epoll entry no DEL can reach. The loop must not spin on it.
        @Test(arguments: LoopBackendKind.allCases)
        func closeBeforeUnregisterOfADupedFileDoesNotSpin(kind: LoopBackendKind) throws {
            try withLoop(kind) { loop in
                let p = PipePair()
                let fd = dup(p.readEnd)
                let r = try loop.registerRead(fd: fd) { _ in }
                p.fill() // readable from now on, level-triggered
                try loop.runOnce()
                close(fd)
                try loop.unregister(r)
                let before = loop.counters.polls
                try runFor(loop, ms: 100)
                // An idle loop polls ~10-40 times in 100 ms; a spinning one thousands.
                #expect(loop.counters.polls - before < 200, "\(loop.counters.polls - before) polls in 100 ms")
            }
        }

        /// Closed without unregistering, then a new file under the same number is
        /// registered: the new file is watched (the kernel, or select's EBADF
        /// clean-up, had forgotten the old one).
        @Test(arguments: LoopBackendKind.allCases)
        func registrationOnAReusedNumberAfterCloseWithoutUnregisterFires(kind: LoopBackendKind) throws {
            try withLoop(kind) { loop in
                let first = PipePair()
                let second = PipePair()
                let fd = dup(first.readEnd)
                try loop.registerRead(fd: fd) { _ in }
                try loop.runOnce()
                close(fd) // owner forgot to unregister
                try loop.runOnce() // legacy: select reports EBADF and drops it
                #expect(dup2(second.readEnd, fd) == fd)
                defer { close(fd) }
                var fired = 0
                try loop.registerRead(fd: fd) { _ in
                    fired += 1
                    second.drain()
                }
                second.fill()
                #expect(try runUntil(loop, timeoutMs: 2_000) { fired > 0 })
            }
        }

        @Test(arguments: LoopBackendKind.allCases)
        func closeFromInsideACallbackEndsRun(kind: LoopBackendKind) throws {
            let loop = try Loop.make(kind, configuration: .unroutedTimerSignalsAccepted)
            try loop.registerSleep(every: 5) { try? loop.close() }
            let reason = try loop.run()
            #expect(reason == .stopped)
            #expect(loop.isClosed)
            #expect(throws: LoopError.closed) { try loop.runOnce() }
        }

        /// An admin signal the embedder itself blocks stays pending for the embedder
        /// when the loop closes; it is not swallowed, and it does not kill the process.
        @Test(arguments: LoopBackendKind.allCases)
        func signalsTheEmbedderBlocksStayPendingAfterClose(kind: LoopBackendKind) throws {
            var block = sigset_t()
            var saved = sigset_t()
            sigemptyset(&block)
            sigaddset(&block, SIGTERM)
            pthread_sigmask(SIG_BLOCK, &block, &saved)
            defer { pthread_sigmask(SIG_SETMASK, &saved, nil) }
            try withLoop(kind) { loop in
                try loop.runOnce()
                try loop.close()
                pthread_kill(pthread_self(), SIGTERM)
            }
            var pending = sigset_t()
            sigpending(&pending)
            #expect(sigismember(&pending, SIGTERM) == 1)
            var zero = timespec()
            #expect(sigtimedwait(&block, nil, &zero) == SIGTERM) // consume it here
        }

        @Test(arguments: LoopBackendKind.allCases)
        func closeAfterBatchTwiceClosesOnce(kind: LoopBackendKind) throws {
            try withLoop(kind) { loop in
                let p = PipePair()
                let fd = dup(p.readEnd)
                var reopened: Int32 = -1
                try loop.registerRead(fd: fd) { fd in
                    try? loop.closeAfterBatch(fd: fd)
                    try? loop.closeAfterBatch(fd: fd)
                }
                p.fill()
                try runUntil(loop, timeoutMs: 2_000) { fcntl(fd, F_GETFD) < 0 }
                // The number is free once; a file opened now keeps it.
                reopened = dup(p.writeEnd)
                try loop.runOnce()
                #expect(fcntl(reopened, F_GETFD) >= 0)
                close(reopened)
            }
        }

        /// select reports a regular file always ready; epoll refuses it (EPERM), so the
        /// epoll backend reports it ready itself: the same callbacks run on both.
        @Test(arguments: LoopBackendKind.allCases)
        func regularFilesAreAlwaysReady(kind: LoopBackendKind) throws {
            try withLoop(kind) { loop in
                let fd = try unlinkedRegularFile()
                defer { close(fd) }
                var reads = 0
                let r = try loop.registerRead(fd: fd) { _ in reads += 1 }
                #expect(try runUntil(loop, timeoutMs: 2_000) { reads >= 3 })
                try loop.unregister(r)
                let after = reads
                try runFor(loop, ms: 20)
                #expect(reads == after)
            }
        }

        @Test func legacyClearsAsyncModeWhenAnFdLeaves() throws {
            try withLoop(.legacy) { loop in
                let p = PipePair()
                let r = try loop.registerRead(fd: p.readEnd) { _ in }
                #expect(fcntl(p.readEnd, F_GETFL) & O_ASYNC != 0)
                try loop.unregister(r)
                #expect(fcntl(p.readEnd, F_GETFL) & O_ASYNC == 0)
            }
        }
    }
}
