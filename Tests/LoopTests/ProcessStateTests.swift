import Compat
import Glibc
import LoopTools
import TestSupport
import Testing

/// What a loop may change in the process, captured to compare before and after.
struct ProcessSignalState: Equatable {
    var handlers: [Int32: UInt] = [:]
    var flags: [Int32: Int32] = [:]
    var blocked: [Int32: Bool] = [:]
    var pending: [Int32: Bool] = [:]
    var handlerMasks: [Int32: [Bool]] = [:]
    var realTimer: [Int] = []
    var virtualTimer: [Int] = []

    static func capture() -> ProcessSignalState {
        var s = ProcessSignalState()
        var mask = sigset_t()
        pthread_sigmask(SIG_SETMASK, nil, &mask)
        for signo in loopOwnedSignals {
            var action = sigaction()
            sigaction(signo, nil, &action)
            s.handlers[signo] = unsafeBitCast(action.__sigaction_handler.sa_handler, to: UInt.self)
            s.flags[signo] = action.sa_flags
            s.blocked[signo] = sigismember(&mask, signo) == 1
            s.handlerMasks[signo] = loopOwnedSignals.map { sigismember(&action.sa_mask, $0) == 1 }
        }
        var pending = sigset_t()
        sigpending(&pending)
        for signo in loopOwnedSignals { s.pending[signo] = sigismember(&pending, signo) == 1 }
        var t = itimerval()
        getitimer(Int32(ITIMER_REAL.rawValue), &t)
        s.realTimer = [t.it_interval.tv_sec, t.it_interval.tv_usec, t.it_value.tv_sec, t.it_value.tv_usec]
        getitimer(Int32(ITIMER_VIRTUAL.rawValue), &t)
        s.virtualTimer = [t.it_interval.tv_sec, t.it_interval.tv_usec, t.it_value.tv_sec, t.it_value.tv_usec]
        return s
    }
}

extension LoopConformance {
    @Suite struct ProcessState {
        @Test(arguments: LoopBackendKind.allCases)
        func teardownRestoresSignalsMasksAndTimers(kind: LoopBackendKind) throws {
            let before = ProcessSignalState.capture()
            try withLoop(kind) { loop in
                let during = ProcessSignalState.capture()
                #expect(during != before) // the loop did take over something
                try loop.submit({ 1 }) { _ in }
                try runFor(loop, ms: 30)
                try loop.disableTimer()
                try loop.enableTimer()
            }
            #expect(ProcessSignalState.capture() == before)
        }

        @Test func onlyOneLegacyLoopAtATime() throws {
            let first = try Loop.make(.legacy, configuration: .unroutedTimerSignalsAccepted)
            #expect(throws: LoopError.legacyLoopAlreadyActive) {
                _ = try Loop.make(.legacy, configuration: .unroutedTimerSignalsAccepted)
            }
            // An epoll loop may live beside it.
            let epoll = try Loop.make(.epoll, configuration: .unroutedTimerSignalsAccepted)
            try epoll.close()
            try first.close()
            let again = try Loop.make(.legacy, configuration: .unroutedTimerSignalsAccepted)
            try again.close()
            #expect(throws: LoopError.closed) { try again.registerSleep(every: 10) {} }
        }
    }

    @Suite struct DescriptorLimits {
        @Test func legacyRefusesDescriptorsBeyondFDSetSize() throws {
            try withRaisedDescriptorLimit {
                try withLoop(.legacy) { loop in
                    let p = PipePair()
                    let high = dup2(p.readEnd, 1500)
                    try #require(high == 1500)
                    defer { close(high) }
                    #expect(throws: LoopError.descriptorOutOfRange(fd: 1500, limit: 1024)) {
                        try loop.registerRead(fd: high) { _ in }
                    }
                    #expect(throws: LoopError.descriptorOutOfRange(fd: 1024, limit: 1024)) {
                        try loop.registerRead(fd: 1024) { _ in }
                    }
                }
            }
        }

        @Test(.enabled(if: hardDescriptorLimit() >= 7_000, "needs a hard RLIMIT_NOFILE of 7000 or more"))
        func epollServesThousandsOfDescriptors() throws {
            try withRaisedDescriptorLimit {
                try withLoop(.epoll) { loop in
                    var pairs: [(Int32, Int32)] = []
                    defer {
                        for (a, b) in pairs {
                            close(a)
                            close(b)
                        }
                    }
                    var calls = [Int32: Int]()
                    for _ in 0..<3000 {
                        var fds: [Int32] = [-1, -1]
                        try #require(socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0, &fds) == 0)
                        pairs.append((fds[0], fds[1]))
                        try loop.registerRead(fd: fds[0]) { fd in
                            var buf = [UInt8](repeating: 0, count: 16)
                            while read(fd, &buf, 16) > 0 {}
                            calls[fd, default: 0] += 1
                        }
                    }
                    #expect(pairs.last!.1 > 5000)
                    let chosen = stride(from: 0, to: 3000, by: 29).map { pairs[$0] }
                    for (_, w) in chosen {
                        var b: UInt8 = 7
                        _ = write(w, &b, 1)
                    }
                    #expect(try runUntil(loop) { calls.count == chosen.count })
                    #expect(Set(calls.keys) == Set(chosen.map(\.0)))
                    #expect(loop.counters.registrations == 3000)
                }
            }
        }
    }

    @Suite struct Counters {
        @Test(arguments: LoopBackendKind.allCases)
        func snapshotReportsBackendAndActivity(kind: LoopBackendKind) throws {
            try withLoop(kind) { loop in
                let p = PipePair()
                var reads = 0
                try loop.registerRead(fd: p.readEnd) { _ in
                    reads += 1
                    p.drain()
                }
                try loop.registerSleep(every: 5) {}
                p.fill()
                try runFor(loop, ms: 100)
                let c = loop.counters
                #expect(c.backend == kind)
                #expect(c.polls >= 5)
                #expect(c.callbacks[0] >= 1 + 5)
                #expect(c.sleepCallbacks >= 5)
                #expect(c.registrations == 2)
                #expect(c.alarms >= 20) // 1 ms real timer over 100 ms
                #expect(c.fields.count >= 15)
            }
        }
    }
}

func hardDescriptorLimit() -> Int {
    var limit = rlimit()
    getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
    return limit.rlim_max > UInt(Int.max) ? Int.max : Int(limit.rlim_max)
}
