import Compat
import Glibc
import LoopTools
import Synchronization
import TestSupport
import Testing

/// Counts SIGTERMs that reach the embedder's own handler (touched before any handler is installed).
let embedderSigterms = Atomic<Int>(0)

/// Runs `body` with a SIGTERM handler of the embedder's own that counts into
/// `embedderSigterms` (from 0), and the previous disposition restored afterwards.
func withEmbedderSigtermHandler(_ body: () throws -> Void) rethrows {
    _ = embedderSigterms.load(ordering: .relaxed)
    let previous = signal(SIGTERM) { _ in embedderSigterms.add(1, ordering: .relaxed) }
    defer { signal(SIGTERM, previous) }
    embedderSigterms.store(0, ordering: .relaxed)
    try body()
}

extension LoopConformance {
    /// Closing, stopping and running again: re-entrancy, released callbacks, handles
    /// that outlive the loop, and shutdown requests that are neither sticky nor lost.
    @Suite struct Teardown {
        /// Releasing a callback during `close()` frees an object whose deinit calls
        /// back into the loop (the node's heartbeat owned the UdpServer, whose deinit
        /// unregisters): the loop must be consistent by then.
        @Test(arguments: LoopBackendKind.allCases)
        func closeSurvivesDeinitsThatCallBackIntoTheLoop(kind: LoopBackendKind) throws {
            final class CallsBack {
                let loop: Loop
                var registrations: [Registration] = []
                var half: BottomHalf?
                var deinits: () -> Void = {}
                init(loop: Loop) { self.loop = loop }
                deinit {
                    for r in registrations { try? loop.unregister(r) }
                    if let half { try? loop.removeBottomHalf(half) }
                    _ = try? loop.registerSleep(every: 5) {}
                    try? loop.submit({ 1 }) { _ in }
                    try? loop.close()
                    deinits()
                }
            }
            let loop = try Loop.make(kind, configuration: .unroutedTimerSignalsAccepted)
            let p = PipePair()
            var freed = 0
            func target() throws -> CallsBack {
                let target = CallsBack(loop: loop)
                target.deinits = { freed += 1 }
                for _ in 0..<50 { target.registrations.append(try loop.registerSleep(every: 1000) {}) }
                target.registrations.append(try loop.registerRead(fd: p.readEnd) { _ in })
                target.half = try loop.addBottomHalf(needed: { false }) {}
                return target
            }
            // Three objects, each owned only by one kind of callback: a sleep callback
            // (as the node's heartbeat owned its server), a read callback, a completion.
            do {
                let bySleep = try target()
                let byRead = try target()
                let byCompletion = try target()
                try loop.registerSleep(every: 1000) { _ = bySleep }
                try loop.registerRead(fd: p.readEnd, niceness: 1) { _ in _ = byRead }
                try loop.submit({ 2 }) { _ in _ = byCompletion }
            }
            try loop.close()
            #expect(freed == 3)
            #expect(loop.isClosed)
        }

        /// Releasing on `unregister` too: a callback that captures its own handle does
        /// not keep itself, or what it captures, alive once unregistered.
        @Test(arguments: LoopBackendKind.allCases)
        func unregisterReleasesTheCallback(kind: LoopBackendKind) throws {
            final class Probe {}
            try withLoop(kind) { loop in
                weak var weakProbe: Probe?
                var handle: Registration?
                do {
                    let probe = Probe()
                    weakProbe = probe
                    handle = try loop.registerSleep(every: 10) {
                        _ = probe
                        _ = handle
                    }
                }
                #expect(weakProbe != nil)
                try loop.unregister(handle!)
                #expect(weakProbe == nil, "the unregistered callback still holds what it captured")
            }
        }

        /// A callback that captures the loop (and a handle the program keeps) must not
        /// keep the loop alive after `close()`.
        @Test(arguments: LoopBackendKind.allCases)
        func closedLoopIsFreedDespiteCallbacksCapturingIt(kind: LoopBackendKind) throws {
            weak var weakLoop: Loop?
            var handles: [Registration] = []
            let p = PipePair()
            do {
                let loop = try Loop.make(kind, configuration: .unroutedTimerSignalsAccepted)
                weakLoop = loop
                handles.append(try loop.registerSleep(every: 10) { _ = loop })
                handles.append(try loop.registerRead(fd: p.readEnd) { _ in _ = loop })
                try loop.close()
            }
            #expect(weakLoop == nil, "a cycle through a callback keeps the closed loop alive")
            #expect(handles.allSatisfy { !$0.isActive })
        }

        /// `stopHandle` and `waker` are usable from any thread at any time, also after
        /// `close()`, and reading them while the loop closes is safe.
        @Test(arguments: LoopBackendKind.allCases)
        func stopHandleAndWakerAfterAndDuringClose(kind: LoopBackendKind) throws {
            let loop = try Loop.make(kind, configuration: .unroutedTimerSignalsAccepted)
            let early = loop.stopHandle
            let reads = Atomic<Int>(0)
            let go = Atomic<Bool>(true)
            final class Box: @unchecked Sendable {
                let loop: Loop
                init(_ l: Loop) { loop = l }
            }
            let box = Box(loop)
            let reader = startThread(blocking: loopOwnedSignals) {
                while go.load(ordering: .relaxed) {
                    box.loop.stopHandle.wakeup()
                    box.loop.waker.wakeup()
                    reads.add(1, ordering: .relaxed)
                }
            }
            while reads.load(ordering: .relaxed) < 100 { usleep(100) }
            try loop.close()
            let after = reads.load(ordering: .relaxed)
            while reads.load(ordering: .relaxed) < after + 100 { usleep(100) }
            go.store(false, ordering: .relaxed)
            joinThread(reader)
            early.wakeup()
            early.stop()
            loop.stopHandle.stop()
            loop.waker.wakeup()
            #expect(loop.isClosed)
        }

        /// After `run()` returned, the request is consumed: a drain with `runOnce()`
        /// waits instead of spinning, and `run()` can run again.
        @Test(arguments: LoopBackendKind.allCases)
        func shutdownIsConsumedByRun(kind: LoopBackendKind) throws {
            try withLoop(kind) { loop in
                try loop.registerSleep(every: 1000) {}
                loop.stop()
                #expect(try loop.run() == .stopped)
                #expect(loop.shutdownReason == nil)
                let before = loop.counters.polls
                try runFor(loop, ms: 200)
                // Waits of up to 10 ms: about 20 polls; a spin made 74,000.
                #expect(loop.counters.polls - before < 400, "\(loop.counters.polls - before) polls in 200 ms")
                var beats = 0
                try loop.registerSleep(every: 5) {
                    beats += 1
                    if beats == 3 { loop.stop() }
                }
                let started = monotonicNanoseconds()
                #expect(try loop.run() == .stopped)
                #expect(beats == 3)
                #expect(elapsedMs(since: started) < 5_000)
            }
        }

        /// An admin signal that arrives after `run()` returned and before `close()` is
        /// not swallowed: `close()` hands it to the embedder's own disposition.
        @Test(arguments: LoopBackendKind.allCases)
        func signalBetweenRunAndCloseReachesTheEmbedder(kind: LoopBackendKind) throws {
            try withEmbedderSigtermHandler {
                let loop = try Loop.make(kind, configuration: .unroutedTimerSignalsAccepted)
                loop.stop()
                #expect(try loop.run() == .stopped)
                pthread_kill(pthread_self(), SIGTERM)
                try loop.runOnce() // the loop sees it, and records it as a new request
                #expect(embedderSigterms.load(ordering: .relaxed) == 0)
                try loop.close()
                let deadline = monotonicNanoseconds() + 2_000_000_000
                while embedderSigterms.load(ordering: .relaxed) == 0 && monotonicNanoseconds() < deadline {
                    usleep(1000)
                }
                #expect(embedderSigterms.load(ordering: .relaxed) == 1)
            }
        }

        /// A legacy waker that outlives its loop reaches nothing, not the next loop
        /// (which may reuse the first one's addresses).
        @Test func legacyWakerOutlivingItsLoopDoesNotWakeTheNext() throws {
            for _ in 0..<20 {
                // Only the waker survives: the next loop may reuse the first one's memory.
                let stale = try {
                    let first = try Loop.make(.legacy, configuration: .unroutedTimerSignalsAccepted)
                    defer { try? first.close() }
                    return first.waker
                }()
                try withLoop(.legacy) { second in
                    try second.runOnce()
                    let before = second.counters.sigChlds
                    stale.wakeup()
                    try runFor(second, ms: 20)
                    #expect(second.counters.sigChlds == before, "a stale waker woke the next loop")
                }
            }
        }

        /// `close()` from a bottom half ends `run()` with `.stopped` on both backends
        /// (epoll used to wait on its closed descriptor and throw).
        @Test(arguments: LoopBackendKind.allCases)
        func closeInsideABottomHalfEndsRun(kind: LoopBackendKind) throws {
            let loop = try Loop.make(kind, configuration: .unroutedTimerSignalsAccepted)
            var runs = 0
            try addWatchdog(loop)
            try loop.addBottomHalf(needed: { true }) {
                runs += 1
                if runs == 3 { try? loop.close() }
            }
            #expect(try loop.run() == .stopped)
            #expect(runs == 3)
        }

        /// Several requests before one is consumed: none is lost. Each `run()` returns
        /// one, admin signals first.
        @Test(arguments: LoopBackendKind.allCases)
        func requestsArrivingTogetherAreEachReturned(kind: LoopBackendKind) throws {
            try withOpenThreadMask {
                try withLoop(kind) { loop in
                    loop.stop()
                    pthread_kill(pthread_self(), SIGTERM)
                    try loop.runOnce() // epoll reads it from its signalfd; legacy's handler already ran
                    try addWatchdog(loop)
                    #expect(try loop.run() == .signal(SIGTERM))
                    #expect(try loop.run() == .stopped)
                    #expect(loop.shutdownReason == nil)
                }
            }
        }

        /// A program that drives the loop with `runOnce()` consumes the request it acts
        /// on with `takeShutdownRequest()`; `close()` then hands nothing back.
        @Test(arguments: LoopBackendKind.allCases)
        func consumedRequestIsNotHandedBack(kind: LoopBackendKind) throws {
            try withEmbedderSigtermHandler {
                try withOpenThreadMask {
                    let loop = try Loop.make(kind, configuration: .unroutedTimerSignalsAccepted)
                    pthread_kill(pthread_self(), SIGTERM)
                    #expect(try runUntil(loop, timeoutMs: 2_000) { loop.shutdownReason != nil })
                    #expect(loop.takeShutdownRequest() == .signal(SIGTERM))
                    try loop.close()
                    usleep(50_000)
                    #expect(embedderSigterms.load(ordering: .relaxed) == 0)
                }
            }
        }

        /// The owner is the thread, not its `pthread_t`, which glibc hands to the next
        /// thread once the first has exited.
        @Test func aThreadReusingTheOwnersHandleIsRefused() throws {
            final class Box: @unchecked Sendable {
                var loop: Loop?
                var outcome = ""
            }
            let box = Box()
            joinThread(startThread { box.loop = try? Loop.make(.epoll) })
            joinThread(
                startThread {
                    do {
                        try box.loop?.runOnce()
                        box.outcome = "accepted"
                    } catch LoopError.wrongThread {
                        box.outcome = "refused"
                    } catch {
                        box.outcome = "\(error)"
                    }
                })
            #expect(box.outcome == "refused")
            box.loop = nil
        }
    }
}
