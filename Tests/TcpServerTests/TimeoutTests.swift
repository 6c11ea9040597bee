import Glibc
import TestSupport
import Testing

@testable import HttpServer
@testable import TcpServer

/// Short timeouts, scanned every 50 ms.
private let short = TcpServerConfiguration.testing {
    $0.timeoutMs = 300
    $0.idleTimeoutMs = 300
    $0.requestDeadlineMs = 900
    $0.scanIntervalMs = 50
}

extension TcpServerLoopTests {
    @Suite struct Timeouts {
        /// A client that connects and says nothing is closed once idle for
        /// `idleTimeoutMs`, and not long before.
        @Test(arguments: LoopBackendKind.allCases)
        func silentConnectionIsClosed(kind: LoopBackendKind) throws {
            try withTcpServer(kind, short) { loop, server in
                let client = try TestClient(port: server.port)
                try runUntil(loop) { server.stats.incomingOpen == 1 }
                let start = monotonicNanoseconds()
                try awaitClosed(loop, client, timeoutMs: 5_000)
                #expect(elapsedMs(since: start) >= 200)
                #expect(server.stats.idleClosed == 1 && server.stats.incomingOpen == 0)
            }
        }

        /// Half a request, then silence: after `timeoutMs` the server answers with
        /// the framing's timed-out reply and closes.
        @Test(arguments: LoopBackendKind.allCases)
        func stalledRequestIsAnsweredAndClosed(kind: LoopBackendKind) throws {
            try withTcpServer(kind, short) { loop, server in
                server.echo()
                let client = try TestClient(port: server.port)
                client.send("half a li")
                #expect(try awaitLine(loop, client, timeoutMs: 5_000) == "timed out")
                try awaitClosed(loop, client)
                #expect(server.stats.timedOut == 1 && server.stats.requestsIn == 0)
            }
        }

        /// A slowloris sends a byte every ~50 ms of a header that never ends: each
        /// byte is progress, so `timeoutMs` never ends it, but `requestDeadlineMs` does,
        /// with a 408; another client is served meanwhile.
        @Test(arguments: LoopBackendKind.allCases)
        func slowlorisIsCutOffByTheRequestDeadline(kind: LoopBackendKind) throws {
            try withHttpServer(kind, short) { loop, server in
                server.handler = { _, responder in responder.respond(.text(200, "hello")) }
                let slow = try TestClient(port: server.port)
                slow.send("GET / HTTP/1.1\r\nX-Slow: ")
                let start = monotonicNanoseconds()
                var lastByte = start
                var otherServed = false
                var other: TestClient?
                try runUntil(loop, timeoutMs: 10_000) {
                    if monotonicNanoseconds() - lastByte >= 50_000_000 && !slow.peerClosed {
                        slow.send("a")
                        lastByte = monotonicNanoseconds()
                    }
                    // Halfway through, another client comes and goes.
                    if other == nil && elapsedMs(since: start) >= 300 {
                        other = try TestClient(port: server.port)
                        other!.send(get("/"))
                    }
                    if let other, !otherServed {
                        other.pump()
                        if let response = other.takeHttpResponse() {
                            #expect(response.status == 200)
                            otherServed = true
                        }
                    }
                    slow.pump()
                    return slow.peerClosed
                }
                #expect(elapsedMs(since: start) >= 700)
                #expect(otherServed)
                #expect(slow.takeHttpResponse()?.status == 408)
                #expect(server.tcp.stats.timedOut == 1)
                #expect(server.stats.refusedByStatus[408] == 1)
            }
        }

        /// A request whose handler has not answered yet is the handler's: it is not
        /// timed out however long it takes, and the late answer arrives.
        @Test(arguments: LoopBackendKind.allCases)
        func requestWithItsHandlerIsNotTimedOut(kind: LoopBackendKind) throws {
            try withTcpServer(kind, short) { loop, server in
                var held: [TcpRequest] = []
                server.onRequest = { held.append($0) }
                let client = try TestClient(port: server.port)
                client.send("slow work\n")
                try runUntil(loop) { held.count == 1 }
                // Three times timeoutMs and idleTimeoutMs.
                try runFor(loop, ms: 900)
                #expect(server.stats.timedOut == 0 && server.stats.idleClosed == 0)
                #expect(server.reply(bytes("done\n"), to: held[0]))
                #expect(try awaitLine(loop, client) == "done")
                #expect(!client.peerClosed)
            }
        }

        /// A keep-alive connection is idle-closed only after its last reply: the
        /// idle time counts from the answer, not from the request.
        @Test(arguments: LoopBackendKind.allCases)
        func keepAliveIdleCountsFromTheLastReply(kind: LoopBackendKind) throws {
            try withTcpServer(kind, short) { loop, server in
                server.echo()
                let client = try TestClient(port: server.port)
                client.send("a\n")
                #expect(try awaitLine(loop, client) == "A")
                let start = monotonicNanoseconds()
                try awaitClosed(loop, client, timeoutMs: 5_000)
                #expect(elapsedMs(since: start) >= 200)
                #expect(server.stats.idleClosed == 1 && server.stats.timedOut == 0)
            }
        }
    }
}

extension TcpServerLoopTests.Timeouts {
    /// The timeout scan runs only while there is something to time: a listener
    /// with no connections costs its loop no wake-ups; the first connection brings
    /// the scan back (its idle timeout still ends it) and the last one takes it away.
    @Test(arguments: LoopBackendKind.allCases)
    func scanRunsOnlyWhileThereAreConnections(kind: LoopBackendKind) throws {
        try withTcpServer(kind, short) { loop, server in
            let idle = loop.counters.sleepCallbacks
            try runFor(loop, ms: 200)
            #expect(loop.counters.sleepCallbacks == idle, "the scan ran with no connection")
            let client = try TestClient(port: server.port)
            try runUntil(loop) { server.stats.incomingOpen == 1 }
            try awaitClosed(loop, client, timeoutMs: 5_000)
            #expect(server.stats.idleClosed == 1)
            try runFor(loop, ms: 100)
            let settled = loop.counters.sleepCallbacks
            try runFor(loop, ms: 200)
            #expect(loop.counters.sleepCallbacks == settled, "the scan kept running with no connection")
        }
    }
}
