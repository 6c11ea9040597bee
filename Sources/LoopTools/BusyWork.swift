import Glibc
import LoopCore

/// Burns CPU in small steps until `done()` or `limitMs` passes, calling
/// `step()` between steps (where long work would call QUICKPOLL).
/// Returns the milliseconds spent.
@discardableResult
public func burnCPU(limitMs: Int64, until done: () -> Bool = { false }, step: () -> Void = {}) -> Double {
    let start = monotonicNanoseconds()
    var sink: UInt64 = 0
    while !done() && monotonicNanoseconds() - start < limitMs * 1_000_000 {
        for i in 0..<1000 { sink &+= UInt64(i) &* 2654435761 }
        step()
    }
    // Keeps the arithmetic from being optimised away.
    if sink == 1 { write(2, "", 0) }
    return Double(monotonicNanoseconds() - start) / 1e6
}

/// How long one urgent request waited for a quickpoll.
public struct QuickPollLatency: Sendable {
    /// Wall-clock milliseconds from the send until the urgent socket was served.
    public var wallMs: Double
    /// CPU milliseconds the busy callback burned meanwhile. The legacy quickpoll
    /// timer (ITIMER_VIRTUAL) counts CPU time, so this is what it bounds when the
    /// machine is loaded and the busy thread does not get a whole CPU.
    public var busyCPUMs: Double
}

/// CPU time of the calling thread, ns.
public func threadCPUNanoseconds() -> Int64 {
    var ts = timespec()
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts)
    return Int64(ts.tv_sec) * 1_000_000_000 + Int64(ts.tv_nsec)
}

/// The quickpoll probe: a niceness-1 callback burns CPU and calls
/// `quickPollIfNeeded`; 15 ms in, a datagram goes to a niceness-0 UDP socket.
/// Returns, per round, how long until the urgent socket was served.
public func measureQuickPollLatency(
    _ loop: EventLoop, rounds: Int,
    drive: (() -> Bool) throws -> Void
) throws -> [QuickPollLatency] {
    let server = try LoopbackSocket()
    let client = try LoopbackSocket()
    var fds: [Int32] = [-1, -1]
    guard pipe(&fds) == 0 else { throw SystemError("pipe", errno: errno) }
    defer {
        close(fds[0])
        close(fds[1])
    }
    var sentAt: Int64 = 0
    var servedAt: Int64 = 0
    var sentCPU: Int64 = 0
    var servedCPU: Int64 = 0
    let urgent = try loop.registerRead(fd: server.fd, niceness: 0) { _ in
        server.drain()
        if servedAt == 0 {
            servedAt = monotonicNanoseconds()
            servedCPU = threadCPUNanoseconds()
        }
    }
    let busy = try loop.registerRead(fd: fds[0], niceness: 1) { fd in
        var b: UInt8 = 0
        _ = read(fd, &b, 1)
        let start = monotonicNanoseconds()
        burnCPU(limitMs: 2_000, until: { servedAt != 0 }) {
            if sentAt == 0 && monotonicNanoseconds() - start > 15_000_000 {
                sentAt = monotonicNanoseconds()
                sentCPU = threadCPUNanoseconds()
                client.send(to: server.port)
            }
            loop.quickPollIfNeeded(niceness: loop.niceness)
        }
    }
    defer {
        try? loop.unregister(urgent)
        try? loop.unregister(busy)
    }
    var latencies: [QuickPollLatency] = []
    for _ in 0..<rounds {
        sentAt = 0
        servedAt = 0
        var b: UInt8 = 1
        _ = write(fds[1], &b, 1)
        try drive { servedAt != 0 }
        let served = servedAt != 0 && sentAt != 0
        latencies.append(
            QuickPollLatency(
                wallMs: served ? Double(servedAt - sentAt) / 1e6 : .infinity,
                busyCPUMs: served ? Double(servedCPU - sentCPU) / 1e6 : .infinity))
    }
    return latencies
}
