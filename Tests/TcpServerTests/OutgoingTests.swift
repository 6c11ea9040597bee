import Glibc
import TestSupport
import Testing

@testable import TcpServer

/// A second TcpServer on the loop, only for outgoing exchanges; closed before the loop.
func withClient<R>(
    _ loop: Loop, _ configuration: TcpServerConfiguration = .testing(),
    _ body: (TcpServer) throws -> R
) rethrows -> R {
    let client = TcpServer(loop: loop, configuration: configuration, framing: LineFraming())
    defer { client.close() }
    return try body(client)
}

/// A listener that never accepts, its queue full: a connect to it is never answered
/// (the kernel drops the SYN), so the exchange can only time out.
final class UnansweringListener {
    let fd: Int32
    let port: UInt16
    private var fillers: [Int32] = []

    init() {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        self.fd = fd
        var address = PeerAddress.loopback(port: 0).socketAddress
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                precondition(bind(fd, $0, length) == 0 && getsockname(fd, $0, &length) == 0)
            }
        }
        let port = UInt16(bigEndian: address.sin_port)
        self.port = port
        precondition(Glibc.listen(fd, 0) == 0)
        // Backlog 0 queues one connection; the next ones wait in SYN_SENT.
        for _ in 0..<2 {
            let filler = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0)
            var destination = PeerAddress.loopback(port: port).socketAddress
            _ = withUnsafePointer(to: &destination) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(filler, $0, length) }
            }
            fillers.append(filler)
        }
        // Until the first one is queued (its handshake done).
        var entry = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        _ = poll(&entry, 1, 2_000)
    }

    deinit {
        for filler in fillers { close(filler) }
        close(fd)
    }
}

extension TcpServerLoopTests {
    @Suite struct Outgoing {
        /// A request to a listening TcpServer on the same loop gets its reply, once,
        /// from a later callback (never inside `send`).
        @Test(arguments: LoopBackendKind.allCases)
        func exchangeWithAServerOnTheSameLoop(kind: LoopBackendKind) throws {
            try withTcpServer(kind) { loop, server in
                server.echo()
                try withClient(loop) { client in
                    let completions = Completions()
                    client.send("hello\n", to: server.address, completions, 0)
                    #expect(completions.completed == 0)
                    try runUntil(loop) { completions.isDone(1) }
                    #expect(completions.reply(0) == "HELLO\n")
                    try runFor(loop, ms: 30)
                    completions.expectExactlyOnce(1)
                    #expect(client.stats.connectsStarted == 1 && client.stats.exchangesCompleted == 1)
                }
            }
        }

        /// A connect to a port nothing listens on fails with `.connectFailed(ECONNREFUSED)`:
        /// thrown by `send`, or given to the completion — exactly one of the two, once.
        @Test(arguments: LoopBackendKind.allCases)
        func refusedConnectEndsOnce(kind: LoopBackendKind) throws {
            try withLoop(kind) { loop in
                try withClient(loop) { client in
                    let completions = Completions()
                    client.send("anyone?\n", to: .loopback(port: closedPort()), completions, 0)
                    try runUntil(loop) { completions.isDone(1) }
                    #expect(completions.error(0) == .connectFailed(errno: ECONNREFUSED))
                    try runFor(loop, ms: 30)
                    completions.expectExactlyOnce(1)
                    #expect(client.stats.connectsFailed == 1 && client.stats.outgoingOpen == 0)
                }
            }
        }

        /// A connect that is never answered ends with `.timedOut` after the exchange's
        /// timeout, once, and its socket is closed.
        @Test(arguments: LoopBackendKind.allCases)
        func unansweredConnectTimesOut(kind: LoopBackendKind) throws {
            try withLoop(kind) { loop in
                let silent = UnansweringListener()
                try withClient(loop) { client in
                    let completions = Completions()
                    let start = monotonicNanoseconds()
                    client.send("hello?\n", to: .loopback(port: silent.port), timeoutMs: 300, completions, 0)
                    try runUntil(loop, timeoutMs: 5_000) { completions.isDone(1) }
                    #expect(completions.error(0) == .timedOut)
                    #expect(elapsedMs(since: start) >= 250)
                    try runFor(loop, ms: 30)
                    completions.expectExactlyOnce(1)
                    #expect(client.stats.timedOut == 1 && client.stats.outgoingOpen == 0)
                }
            }
        }

        /// A peer that closes in the middle of its reply ends the exchange with
        /// `.closedByPeer`, once, counted as truncated.
        @Test(arguments: LoopBackendKind.allCases)
        func peerClosingMidReply(kind: LoopBackendKind) throws {
            try withTcpServer(kind) { loop, server in
                server.onRequest = { [unowned server] request in
                    server.reply(bytes("half a rep"), to: request, thenClose: true)
                }
                try withClient(loop) { client in
                    let completions = Completions()
                    client.send("hello\n", to: server.address, completions, 0)
                    try runUntil(loop) { completions.isDone(1) }
                    #expect(completions.error(0) == .closedByPeer)
                    try runFor(loop, ms: 30)
                    completions.expectExactlyOnce(1)
                    #expect(client.stats.truncated == 1 && client.stats.outgoingOpen == 0)
                }
            }
        }

        /// A second exchange to the same peer goes over the kept connection:
        /// `connectionsReused`, one connect, one accepted socket.
        @Test(arguments: LoopBackendKind.allCases)
        func keepAliveConnectionIsReused(kind: LoopBackendKind) throws {
            try withTcpServer(kind) { loop, server in
                server.echo()
                try withClient(loop) { client in
                    let completions = Completions()
                    for i in 0..<3 {
                        client.send("request \(i)\n", to: server.address, completions, i)
                        try runUntil(loop) { completions.isDone(i + 1) }
                        #expect(completions.reply(i) == "REQUEST \(i)\n")
                    }
                    completions.expectExactlyOnce(3)
                    #expect(client.stats.connectsStarted == 1 && client.stats.connectionsReused == 2)
                    #expect(client.stats.outgoingIdle == 1 && server.stats.accepted == 1)
                }
            }
        }

        /// A pooled connection the peer closed while it sat idle (not yet seen by the
        /// client's loop) fails before any reply byte: the exchange is tried once more
        /// on a fresh connection and succeeds, and its completion runs once.
        @Test(arguments: LoopBackendKind.allCases)
        func pooledConnectionClosedMeanwhileIsRetried(kind: LoopBackendKind) throws {
            try withTcpServer(kind) { loop, server in
                var lastConnection: TcpConnectionID?
                server.onRequest = { [unowned server] request in
                    lastConnection = request.connection
                    server.reply(upper(request.bytes), to: request)
                }
                try withClient(loop) { client in
                    let completions = Completions()
                    client.send("first\n", to: server.address, completions, 0)
                    try runUntil(loop) { completions.isDone(1) }
                    #expect(client.stats.outgoingIdle == 1)
                    // The peer closes its end; the client sends before its loop sees it.
                    server.close(lastConnection!)
                    client.send("second\n", to: server.address, completions, 1)
                    try runUntil(loop) { completions.isDone(2) }
                    #expect(completions.reply(1) == "SECOND\n")
                    try runFor(loop, ms: 30)
                    completions.expectExactlyOnce(2)
                    #expect(client.stats.connectionsReused == 1 && client.stats.connectsStarted == 2)
                    #expect(client.stats.exchangesFailed == 0)
                }
            }
        }

        /// A pooled connection to a server that has gone away meanwhile: the retry's
        /// connect is refused, and the completion gets that, once.
        @Test(arguments: LoopBackendKind.allCases)
        func retryToAServerThatHasGoneFailsOnce(kind: LoopBackendKind) throws {
            try withTcpServer(kind) { loop, server in
                server.echo()
                try withClient(loop) { client in
                    let completions = Completions()
                    client.send("first\n", to: server.address, completions, 0)
                    try runUntil(loop) { completions.isDone(1) }
                    server.close()
                    client.send("second\n", to: server.address, completions, 1)
                    try runUntil(loop) { completions.isDone(2) }
                    #expect(completions.error(1) == .connectFailed(errno: ECONNREFUSED))
                    try runFor(loop, ms: 30)
                    completions.expectExactlyOnce(2)
                    #expect(client.stats.outgoingOpen == 0 && client.stats.exchangesFailed == 1)
                }
            }
        }

        /// A reply that grows past `maxMessageBytes` without ending fails the
        /// exchange with `.malformedReply`, once, and the connection is closed.
        @Test(arguments: LoopBackendKind.allCases)
        func oversizedReplyFailsTheExchange(kind: LoopBackendKind) throws {
            try withTcpServer(kind) { loop, server in
                server.onRequest = { [unowned server] request in
                    server.reply([UInt8](repeating: 0x61, count: 300_000), to: request)
                }
                try withClient(loop, .testing { $0.maxMessageBytes = 100_000 }) { client in
                    let completions = Completions()
                    client.send("big\n", to: server.address, completions, 0)
                    try runUntil(loop) { completions.isDone(1) }
                    #expect(completions.error(0) == .malformedReply)
                    try runFor(loop, ms: 30)
                    completions.expectExactlyOnce(1)
                    #expect(client.stats.outgoingOpen == 0 && client.stats.refusedMessages == 1)
                }
            }
        }

        /// A peer that says more than its reply (bytes after it) cannot be trusted with
        /// the next exchange: the connection is not pooled.
        @Test(arguments: LoopBackendKind.allCases)
        func bytesAfterTheReplyAreNotPooled(kind: LoopBackendKind) throws {
            try withTcpServer(kind) { loop, server in
                server.onRequest = { [unowned server] request in server.reply(bytes("one\nstray\n"), to: request) }
                try withClient(loop) { client in
                    let completions = Completions()
                    client.send("hi\n", to: server.address, completions, 0)
                    try runUntil(loop) { completions.isDone(1) }
                    #expect(completions.reply(0) == "one\n")
                    try runUntil(loop) { client.stats.outgoingOpen == 0 }
                    #expect(client.stats.outgoingIdle == 0)
                    completions.expectExactlyOnce(1)
                }
            }
        }

        /// `close()` with exchanges outstanding ends each with `.shuttingDown`, once,
        /// and later `send`s throw `.shuttingDown`.
        @Test(arguments: LoopBackendKind.allCases)
        func closeEndsOutstandingExchanges(kind: LoopBackendKind) throws {
            try withTcpServer(kind) { loop, server in
                var held: [TcpRequest] = []
                server.onRequest = { held.append($0) }
                try withClient(loop) { client in
                    let completions = Completions()
                    for i in 0..<3 { client.send("wait \(i)\n", to: server.address, completions, i) }
                    let silent = UnansweringListener()
                    client.send("never\n", to: .loopback(port: silent.port), completions, 3)
                    try runUntil(loop) { held.count == 3 }
                    client.close()
                    #expect((0..<4).allSatisfy { completions.error($0) == .shuttingDown })
                    client.close()
                    client.send("late\n", to: server.address, completions, 4)
                    #expect(completions.error(4) == .shuttingDown)
                    for request in held { server.reply(bytes("too late\n"), to: request) }
                    try runFor(loop, ms: 50)
                    completions.expectExactlyOnce(5)
                    #expect(client.stats.outgoingOpen == 0)
                }
            }
        }

        /// A completion that closes its own server: the other exchanges end with
        /// `.shuttingDown`, every completion runs once, and nothing runs after.
        @Test(arguments: LoopBackendKind.allCases)
        func closeFromInsideACompletion(kind: LoopBackendKind) throws {
            try withTcpServer(kind) { loop, server in
                var held: [TcpRequest] = []
                server.onRequest = { [unowned server] request in
                    if text(request.bytes) == "now\n" {
                        server.reply(bytes("done\n"), to: request)
                    } else {
                        held.append(request)
                    }
                }
                try withClient(loop) { client in
                    let completions = Completions()
                    client.send("later 1\n", to: server.address, completions, 1)
                    client.send("later 2\n", to: server.address, completions, 2)
                    try runUntil(loop) { held.count == 2 }
                    client.send("now\n", to: server.address, completions, 0) { [unowned client] _ in
                        client.close()
                        // A send from the completion, after close: refused at once.
                        client.send("after\n", to: server.address, completions, 3)
                    }
                    try runUntil(loop) { completions.isDone(4) }
                    #expect(completions.reply(0) == "done\n")
                    #expect(completions.error(1) == .shuttingDown && completions.error(2) == .shuttingDown)
                    #expect(completions.error(3) == .shuttingDown)
                    try runFor(loop, ms: 50)
                    completions.expectExactlyOnce(4)
                    #expect(client.stats.outgoingOpen == 0 && client.stats.outgoingIdle == 0)
                    held = []
                }
            }
        }

        /// A completion that sends the next request from inside it reuses the
        /// connection the reply came on.
        @Test(arguments: LoopBackendKind.allCases)
        func sendFromInsideACompletionReusesTheConnection(kind: LoopBackendKind) throws {
            try withTcpServer(kind) { loop, server in
                server.echo()
                try withClient(loop) { client in
                    let completions = Completions()
                    client.send("one\n", to: server.address, completions, 0) { [unowned client] _ in
                        client.send("two\n", to: server.address, completions, 1)
                    }
                    try runUntil(loop) { completions.isDone(2) }
                    #expect(completions.reply(1) == "TWO\n")
                    completions.expectExactlyOnce(2)
                    #expect(client.stats.connectsStarted == 1 && client.stats.connectionsReused == 1)
                }
            }
        }

        /// A handler that closes its own server: the exchange waiting for the reply
        /// ends once, with the connection closed under it.
        @Test(arguments: LoopBackendKind.allCases)
        func serverClosedFromInsideItsHandler(kind: LoopBackendKind) throws {
            try withTcpServer(kind) { loop, server in
                server.onRequest = { [unowned server] _ in server.close() }
                try withClient(loop) { client in
                    let completions = Completions()
                    client.send("bye\n", to: server.address, completions, 0)
                    try runUntil(loop) { completions.isDone(1) }
                    #expect(
                        completions.error(0) == .closedByPeer
                            || completions.error(0) == .transferFailed(errno: ECONNRESET))
                    try runFor(loop, ms: 30)
                    completions.expectExactlyOnce(1)
                    #expect(server.isClosed && server.stats.incomingOpen == 0)
                    // A client that comes now finds nothing listening.
                    #expect(throws: (any Error).self) { try TestClient(port: server.port) }
                }
            }
        }
    }
}
