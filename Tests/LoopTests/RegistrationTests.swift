import Compat
import Glibc
import LoopTools
import TestSupport
import Testing

extension LoopConformance {
    @Suite struct Registrations {
        @Test(arguments: LoopBackendKind.allCases)
        func readinessOnPipesAndSockets(kind: LoopBackendKind) throws {
            try withLoop(kind) { loop in
                let pipe = PipePair()
                let receiver = try LoopbackSocket()
                let sender = try LoopbackSocket()
                var pipeReads = 0
                var socketReads = 0
                var writable = 0
                try loop.registerRead(fd: pipe.readEnd) { _ in
                    pipeReads += 1
                    pipe.drain()
                }
                try loop.registerRead(fd: receiver.fd) { _ in socketReads += receiver.drain() }
                let w = try loop.registerWrite(fd: sender.fd) { _ in writable += 1 }
                pipe.fill()
                sender.send(to: receiver.port)
                sender.send(to: receiver.port)
                #expect(try runUntil(loop) { pipeReads >= 1 && socketReads >= 2 && writable >= 1 })
                try loop.unregister(w)
                // Nothing ready: no more read callbacks.
                let before = (pipeReads, writable)
                try runFor(loop, ms: 30)
                #expect(pipeReads == before.0 && writable == before.1)
            }
        }

        @Test(arguments: LoopBackendKind.allCases)
        func severalCallbacksPerDescriptorNewestFirst(kind: LoopBackendKind) throws {
            try withLoop(kind) { loop in
                let pipe = PipePair()
                var order: [String] = []
                try loop.registerRead(fd: pipe.readEnd) { _ in order.append("first") }
                try loop.registerRead(fd: pipe.readEnd) { _ in
                    order.append("second")
                    pipe.drain()
                }
                pipe.fill()
                #expect(try runUntil(loop) { !order.isEmpty })
                // A new registration goes to the head of the chain, as in the original.
                #expect(order == ["second", "first"])
            }
        }

        @Test(arguments: LoopBackendKind.allCases)
        func duplicateRegistrationIsANoOp(kind: LoopBackendKind) throws {
            try withLoop(kind) { loop in
                let pipe = PipePair()
                var calls = 0
                let owner = "reader"
                let a = try loop.registerRead(fd: pipe.readEnd, owner: owner) { _ in
                    calls += 1
                    pipe.drain()
                }
                let b = try loop.registerRead(fd: pipe.readEnd, owner: owner) { _ in calls += 100 }
                #expect(a === b)
                #expect(loop.counters.registrations == 1)
                pipe.fill()
                #expect(try runUntil(loop) { calls > 0 })
                #expect(calls == 1)
                // Same owner on another fd or kind is a different registration.
                let other = PipePair()
                let c = try loop.registerRead(fd: other.readEnd, owner: owner) { _ in }
                let d = try loop.registerWrite(fd: pipe.writeEnd, owner: owner) { _ in }
                #expect(c !== a && d !== a)
                let s1 = try loop.registerSleep(every: 50, owner: owner) {}
                let s2 = try loop.registerSleep(every: 50, owner: owner) {}
                #expect(s1 === s2)
            }
        }

        @Test(arguments: LoopBackendKind.allCases)
        func unregisterSelfNextAndOtherDuringDispatch(kind: LoopBackendKind) throws {
            try withLoop(kind) { loop in
                let pipe = PipePair()
                let other = PipePair()
                var log: [String] = []
                var third: Registration!
                var otherReg: Registration!
                var selfReg: Registration!
                // Chain after registration: [self, next(third), ...]; registered in reverse.
                third = try loop.registerRead(fd: pipe.readEnd) { _ in log.append("third") }
                selfReg = try loop.registerRead(fd: pipe.readEnd) { _ in
                    log.append("self")
                    try? loop.unregister(selfReg) // itself
                    try? loop.unregister(third) // its successor
                    try? loop.unregister(otherReg) // another fd's
                    pipe.drain()
                }
                otherReg = try loop.registerRead(fd: other.readEnd) { _ in log.append("other") }
                pipe.fill()
                other.fill()
                #expect(try runUntil(loop) { log.contains("self") })
                try runFor(loop, ms: 30)
                pipe.fill()
                other.fill()
                try runFor(loop, ms: 30)
                #expect(log.filter { $0 == "self" }.count == 1)
                #expect(!log.contains("third"))
                // "other" may have run before "self" in that batch (order across fds is the
                // backend's), but never after it was unregistered.
                #expect(log.filter { $0 == "other" }.count <= 1)
                #expect(loop.counters.registrations == 0)
                // Unregistering again is ignored.
                try loop.unregister(selfReg)
            }
        }

        @Test(arguments: LoopBackendKind.allCases)
        func reusedDescriptorNeverGetsAStaleEvent(kind: LoopBackendKind) throws {
            try withLoop(kind) { loop in
                let a = PipePair()
                let b = PipePair()
                let empty = PipePair()
                var staleCalls = 0
                var swapped = false
                var regs: [Int32: Registration] = [:]
                // Whichever ready fd runs first replaces the other with an unreadable one
                // under the same number, inside the same batch.
                func swapOut(_ victim: Int32) {
                    guard !swapped else { return }
                    swapped = true
                    try? loop.unregister(regs[victim]!)
                    dup2(empty.readEnd, victim)
                    _ = try? loop.registerRead(fd: victim) { _ in staleCalls += 1 }
                }
                regs[a.readEnd] = try loop.registerRead(fd: a.readEnd) { _ in
                    a.drain()
                    swapOut(b.readEnd)
                }
                regs[b.readEnd] = try loop.registerRead(fd: b.readEnd) { _ in
                    b.drain()
                    swapOut(a.readEnd)
                }
                a.fill()
                b.fill()
                #expect(try runUntil(loop) { swapped })
                try runFor(loop, ms: 30)
                #expect(staleCalls == 0)
                #expect(loop.counters.staleEvents >= 1)
            }
        }

        @Test(arguments: LoopBackendKind.allCases)
        func closeAfterBatchClosesOnlyAfterDispatch(kind: LoopBackendKind) throws {
            try withLoop(kind) { loop in
                let a = PipePair()
                let fd = dup(a.readEnd)
                var seenOpenInside = false
                try loop.registerRead(fd: fd) { fd in
                    try? loop.closeAfterBatch(fd: fd)
                    seenOpenInside = fcntl(fd, F_GETFD) >= 0
                }
                a.fill()
                #expect(try runUntil(loop) { seenOpenInside })
                #expect(fcntl(fd, F_GETFD) < 0)
            }
        }

        @Test(arguments: LoopBackendKind.allCases)
        func badRegistrationsGetClearErrors(kind: LoopBackendKind) throws {
            var config = LoopConfiguration.unroutedTimerSignalsAccepted
            config.maxRegistrations = 3
            try withLoop(kind, configuration: config) { loop in
                #expect(throws: LoopError.invalidDescriptor(-1)) { try loop.registerRead(fd: -1) { _ in } }
                #expect(throws: LoopError.invalidPeriod(0)) { try loop.registerSleep(every: 0) {} }
                let p = PipePair()
                let r = try loop.registerRead(fd: p.readEnd) { _ in }
                try loop.registerRead(fd: p.readEnd) { _ in }
                try loop.registerSleep(every: 10) {}
                #expect(throws: LoopError.noEmptySlots(limit: 3)) { try loop.registerWrite(fd: p.writeEnd) { _ in } }
                try loop.unregister(r)
                try loop.registerWrite(fd: p.writeEnd) { _ in }
                // A closed descriptor is refused by the backend, with errno.
                let closed = dup(p.readEnd)
                close(closed)
                #expect(throws: LoopError.self) { try loop.registerRead(fd: closed) { _ in } }
            }
        }

        @Test(arguments: LoopBackendKind.allCases)
        func callsFromAnotherThreadAreRefused(kind: LoopBackendKind) throws {
            try withLoop(kind) { loop in
                nonisolated(unsafe) let shared = loop
                let p = PipePair()
                nonisolated(unsafe) var caught: LoopError?
                nonisolated(unsafe) var quickPolled = true
                let fd = p.readEnd
                let t = startThread {
                    do { try shared.registerRead(fd: fd) { _ in } } catch let e as LoopError { caught = e } catch {}
                    quickPolled = shared.quickPoll(niceness: 1)
                }
                joinThread(t)
                #expect(caught == .wrongThread(operation: "registerRead"))
                #expect(!quickPolled)
                #expect(loop.counters.registrations == 0)
            }
        }

        @Test(arguments: LoopBackendKind.allCases)
        func registeredDescriptorsAreMadeNonBlocking(kind: LoopBackendKind) throws {
            try withLoop(kind) { loop in
                let p = PipePair()
                try loop.registerRead(fd: p.readEnd) { _ in }
                let flags = fcntl(p.readEnd, F_GETFL)
                #expect(flags & O_NONBLOCK != 0)
                // O_ASYNC only on the legacy loop, as the original did.
                #expect((flags & O_ASYNC != 0) == (kind == .legacy))
            }
        }
    }
}
