import Glibc
import LoopCore
import Sockets
import TestSupport
import Testing

/// The loopback socket the harness's raw echo, the benchmarks and the tests use. No loop.
@Suite(.processExclusive) struct LoopbackSockets {
    /// `echoAll` sends every queued datagram back to its own sender, and stops when none is left.
    @Test func echoAllAnswersEverySenderAndStopsWhenEmpty() throws {
        let echo = try LoopbackSocket()
        let first = try LoopbackSocket()
        let second = try LoopbackSocket()
        first.send(to: echo.port, [1, 2, 3])
        second.send(to: echo.port, [4])
        first.send(to: echo.port, [5, 6])
        // Loopback queues a datagram on its receiver before sendto returns: all three wait now.
        var waiting = pollfd(fd: echo.fd, events: Int16(POLLIN), revents: 0)
        #expect(poll(&waiting, 1, 5_000) == 1)
        #expect(echo.echoAll() == 3)
        #expect(echo.echoAll() == 0)
        var back = pollfd(fd: first.fd, events: Int16(POLLIN), revents: 0)
        #expect(poll(&back, 1, 5_000) == 1)
        #expect(first.drainCounting() == (datagrams: 2, bytes: 5))
        #expect(second.drainCounting() == (datagrams: 1, bytes: 1))
    }

    /// A port already bound is refused with the address it was asked for.
    @Test func aTakenPortIsRefusedByName() throws {
        let taken = try LoopbackSocket()
        #expect {
            _ = try LoopbackSocket(port: taken.port)
        } throws: { error in
            "\(error)".contains("bind 127.0.0.1:\(taken.port)")
        }
    }
}
