import Glibc
import TestSupport
import Testing

@testable import HttpServer
@testable import TcpServer

extension TcpServerLoopTests {
    @Suite struct Fairness {
        /// A client pipelining 5,000 `GET /` in one write, three times over, does not hold up
        /// another client's single request sent at the same moment: at most a few turns'
        /// worth of its requests (`maxRequestsPerTurn` a turn) are served before the other's,
        /// and that answer comes within a generous second. Every pipelined request is still
        /// answered.
        @Test(arguments: LoopBackendKind.allCases)
        func aPipeliningClientDoesNotHoldUpAnother(kind: LoopBackendKind) throws {
            try withHttpServer(kind) { loop, server in
                var handled: [Substring] = []
                server.handler = { request, responder in
                    handled.append(request.path)
                    responder.respond(.text(200, "ok"))
                }
                let replySize = HttpResponse.text(200, "ok").serialized(keepAlive: true).count
                let pipeliner = try TestClient(port: server.port, receiveBufferSize: 1 << 20)
                try runUntil(loop) { server.tcp.stats.incomingOpen == 1 }
                // Room in the kernel for a whole buffer's replies: the server never has to
                // wait for the pipeliner to read, so only its own bound interleaves the two.
                var size: Int32 = 1 << 20
                let pipelined = try #require(server.tcp.connections.values.first)
                setsockopt(pipelined.fd, SOL_SOCKET, SO_SNDBUF, &size, socklen_t(MemoryLayout<Int32>.size))
                let good = try TestClient(port: server.port, from: 0x7f00_0002)
                try runUntil(loop) { server.tcp.stats.incomingOpen == 2 }
                let batch = String(repeating: get("/p"), count: 5000)
                var servedBefore: [Int] = []
                var waitedMs: [Int] = []
                for round in 1...3 {
                    // Both at once: the pipeliner's socket comes first in the loop's order.
                    let asked = handled.count
                    let askedAt = monotonicNanoseconds()
                    pipeliner.send(batch)
                    good.send(get("/good"))
                    var response: HttpFetched?
                    try runUntil(loop) {
                        pipeliner.pump()
                        good.pump()
                        response = good.takeHttpResponse()
                        return response != nil
                    }
                    waitedMs.append(elapsedMs(since: askedAt))
                    #expect(response?.status == 200)
                    let goodIndex = try #require(handled.lastIndex(of: "/good"))
                    servedBefore.append(goodIndex - asked)
                    // Every pipelined request is answered all the same.
                    try runUntil(loop, timeoutMs: 30_000) {
                        pipeliner.pump()
                        return pipeliner.received.count >= 5000 * replySize
                    }
                    #expect(pipeliner.received.count == 5000 * replySize)
                    #expect(handled.count == round * 5001)
                    pipeliner.received = []
                }
                let bound = 3 * server.tcp.configuration.maxRequestsPerTurn
                #expect(
                    servedBefore.allSatisfy { $0 <= bound },
                    "pipelined requests served before the other client's: \(servedBefore) (bound \(bound))")
                #expect(waitedMs.allSatisfy { $0 < 1000 }, "the other client waited \(waitedMs) ms")
                #expect(server.tcp.stats.turnsYielded > 0)
                #expect(server.tcp.stats.requestBytesHeld == 0)
            }
        }

        /// 100 requests in one write, all read at once: at most `maxRequestsPerTurn` (4)
        /// reach the handler in any one turn of the loop, and the rest are served on the
        /// following turns although the socket has nothing new to report; every one is
        /// answered, in order.
        @Test(arguments: LoopBackendKind.allCases)
        func bufferedRequestsAreServedAFewATurn(kind: LoopBackendKind) throws {
            try withTcpServer(kind, .testing { $0.maxRequestsPerTurn = 4 }) { loop, server in
                server.echo()
                let client = try TestClient(port: server.port)
                try runUntil(loop) { server.stats.incomingOpen == 1 }
                let lines = (0..<100).map { "line \($0)" }
                client.send(lines.map { $0 + "\n" }.joined())
                var mostInATurn = 0
                try runUntil(loop) {
                    let before = server.stats.requestsIn
                    try loop.runOnce()
                    mostInATurn = max(mostInATurn, server.stats.requestsIn - before)
                    client.pump()
                    return server.stats.requestsIn == 100
                }
                #expect(mostInATurn <= 4, "\(mostInATurn) requests served in one turn")
                #expect(server.stats.turnsYielded >= 24)
                var answers: [String] = []
                try runUntil(loop) {
                    client.pump()
                    while let line = client.takeLine() { answers.append(line) }
                    return answers.count == 100
                }
                #expect(answers == lines.map { $0.uppercased() })
            }
        }
    }
}
