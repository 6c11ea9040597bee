import Glibc
import TestSupport
import Testing

@testable import TcpServer

extension TcpServerLoopTests {
    @Suite struct Accepting {
        /// 300 clients connect at once and each sends a request: every one is
        /// accepted, counted and answered. With a budget of 0 ms the accept callback
        /// takes one connection per call and returns to the loop, so the queue is
        /// emptied over many polls while the clients accepted first are already served.
        @Test(arguments: LoopBackendKind.allCases)
        func acceptStormIsServedWithinTheBudget(kind: LoopBackendKind) throws {
            let count = 300
            try withTcpServer(kind, .testing { $0.acceptBudgetMs = 0 }) { loop, server in
                server.echo()
                var clients: [TestClient] = []
                for i in 0..<count {
                    let client = try TestClient(port: server.port)
                    client.send("client \(i)\n")
                    clients.append(client)
                }
                var replies = [String?](repeating: nil, count: count)
                var mostAcceptedInOnePoll = 0
                var repliesWhileAccepting = 0
                try runUntil(loop, timeoutMs: 30_000) {
                    for (i, client) in clients.enumerated() where replies[i] == nil {
                        client.pump()
                        replies[i] = client.takeLine()
                        if replies[i] != nil && server.stats.accepted < count { repliesWhileAccepting += 1 }
                    }
                    let before = server.stats.accepted
                    try loop.runOnce()
                    mostAcceptedInOnePoll = max(mostAcceptedInOnePoll, server.stats.accepted - before)
                    return replies.allSatisfy { $0 != nil }
                }
                #expect(replies == (0..<count).map { "CLIENT \($0)" })
                #expect(server.stats.accepted == count)
                #expect(server.stats.requestsIn == count && server.stats.repliesOut == count)
                #expect(server.stats.incomingOpen == count)
                #expect(mostAcceptedInOnePoll == 1, "the accept callback stops after its budget")
                #expect(repliesWhileAccepting > 0, "clients accepted early are served before the queue is empty")
            }
        }

        /// A listener that fails every accept (shut down under the server: `EINVAL`)
        /// does not hold the loop inside its callback: accepting pauses until the next
        /// scan, and a connection already open is still served meanwhile.
        @Test(arguments: LoopBackendKind.allCases)
        func failingListenerPausesAccepting(kind: LoopBackendKind) throws {
            try withTcpServer(kind) { loop, server in
                server.echo()
                let client = try TestClient(port: server.port)
                try runUntil(loop) { server.stats.incomingOpen == 1 }
                shutdown(server.listener, Int32(SHUT_RDWR))
                try loop.runOnce()
                client.send("still here\n")
                #expect(try awaitLine(loop, client) == "STILL HERE")
                try runUntil(loop) { server.stats.acceptPauses >= 2 }
                #expect(server.stats.accepted == 1)
            }
        }

        /// The default budget accepts many connections per call, and the storm is
        /// still served whole.
        @Test(arguments: LoopBackendKind.allCases)
        func acceptStormWithTheDefaultBudget(kind: LoopBackendKind) throws {
            let count = 300
            try withTcpServer(kind) { loop, server in
                server.echo()
                let clients = try (0..<count).map { i in
                    let client = try TestClient(port: server.port)
                    client.send("c\(i)\n")
                    return client
                }
                var replies = [String?](repeating: nil, count: count)
                try runUntil(loop, timeoutMs: 30_000) {
                    for (i, client) in clients.enumerated() where replies[i] == nil {
                        client.pump()
                        replies[i] = client.takeLine()
                    }
                    return replies.allSatisfy { $0 != nil }
                }
                #expect(replies == (0..<count).map { "C\($0)" })
                #expect(server.stats.accepted == count)
            }
        }
    }
}
