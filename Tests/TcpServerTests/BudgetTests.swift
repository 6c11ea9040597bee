import Glibc
import TestSupport
import Testing

@testable import HttpServer
@testable import TcpServer

extension TcpServer {
    /// Bytes of incoming requests held now, counted connection by connection.
    var incomingBytesHeld: Int {
        connections.values.filter(\.isIncoming).reduce(0) { $0 + $1.received.count }
    }

    /// The incoming connection from `client`, if it is open.
    func connection(of client: TestClient) -> TcpConnection? {
        let address = client.localAddress
        return connections.values.first { $0.isIncoming && $0.peer == address }
    }
}

extension TcpServerLoopTests {
    @Suite struct Budget {
        /// The bounds' defaults are the numbers README and MIGRATION.md give.
        @Test func boundsDefaultsAreTheDocumentedOnes() {
            let c = TcpServerConfiguration()
            #expect(c.maxRequestsPerTurn == 16 && c.maxReadAheadBytes == 32 * 1024 && c.requestBytesBudget == 64 << 20)
        }

        /// With a 64 KiB budget for request bytes, six clients each holding 20 KB of a
        /// 60 KB body never make the server hold more than 64 KiB: each newcomer past the
        /// budget makes the least recently active holder give way (a 503 and closed,
        /// counted in `budgetRefusals`), oldest first, and a client asking a plain
        /// `GET` is still served.
        @Test(arguments: LoopBackendKind.allCases)
        func partialBodiesStayWithinTheBudget(kind: LoopBackendKind) throws {
            let budget = 64 * 1024
            try withHttpServer(kind, .testing { $0.requestBytesBudget = budget }) { loop, server in
                server.handler = { request, responder in responder.respond(.text(200, String(request.path))) }
                let partial =
                    "POST /upload HTTP/1.1\r\nHost: test\r\nContent-Length: 60000\r\n\r\n"
                    + String(repeating: "b", count: 20_000)
                var holders: [TestClient] = []
                var mostHeld = 0
                for _ in 0..<6 {
                    let holder = try TestClient(port: server.port)
                    holders.append(holder)
                    holder.send(partial)
                    // Until the server holds all it sent, or has refused it.
                    try runUntil(loop) {
                        for client in holders { client.pump() }
                        mostHeld = max(mostHeld, server.tcp.incomingBytesHeld)
                        return holder.peerClosed
                            || server.tcp.connection(of: holder)?.received.count == partial.utf8.count
                    }
                }
                let good = try TestClient(port: server.port, from: 0x7f00_0002)
                good.send(get("/good"))
                let response = try awaitResponse(loop, good)
                #expect(response.status == 200 && response.body == bytes("/good\n"))
                mostHeld = max(mostHeld, server.tcp.incomingBytesHeld)
                #expect(mostHeld <= budget, "held \(mostHeld) bytes of requests (budget \(budget))")
                #expect(server.tcp.stats.budgetRefusals == 3)
                #expect(server.tcp.stats.requestBytesHeld == server.tcp.incomingBytesHeld)
                // The oldest gave way, each with its 503.
                for client in holders { client.pump() }
                #expect(holders.map(\.peerClosed) == [true, true, true, false, false, false])
                for client in holders.prefix(3) { #expect(client.takeHttpResponse()?.status == 503) }
            }
        }

        /// A single request bigger than the whole budget, with no other connection to give
        /// way, is refused with a 503 and closed; the next client is served.
        @Test(arguments: LoopBackendKind.allCases)
        func aRequestBiggerThanTheBudgetIsRefused(kind: LoopBackendKind) throws {
            let budget = 16 * 1024
            try withHttpServer(kind, .testing { $0.requestBytesBudget = budget }) { loop, server in
                server.handler = { request, responder in responder.respond(.text(200, String(request.path))) }
                let big = try TestClient(port: server.port)
                big.send(
                    "POST /upload HTTP/1.1\r\nHost: test\r\nContent-Length: 40000\r\n\r\n"
                        + String(repeating: "b", count: 40_000))
                let refused = try awaitResponse(loop, big)
                #expect(refused.status == 503)
                try awaitClosed(loop, big)
                #expect(server.tcp.stats.budgetRefusals == 1)
                let good = try TestClient(port: server.port)
                good.send(get("/next"))
                #expect(try awaitResponse(loop, good).body == bytes("/next\n"))
                #expect(server.tcp.stats.requestBytesHeld == 0)
            }
        }
    }
}
