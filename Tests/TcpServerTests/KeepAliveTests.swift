import Glibc
import TestSupport
import Testing

@testable import TcpServer

extension TcpServerLoopTests {
    @Suite struct KeepAlive {
        /// One connection carries several requests one after another; each is
        /// answered, and the connection stays open and is counted once.
        @Test(arguments: LoopBackendKind.allCases)
        func severalRequestsOnOneConnection(kind: LoopBackendKind) throws {
            try withTcpServer(kind) { loop, server in
                server.echo()
                let client = try TestClient(port: server.port)
                for i in 0..<5 {
                    client.send("request \(i)\n")
                    #expect(try awaitLine(loop, client) == "REQUEST \(i)")
                }
                #expect(!client.peerClosed)
                #expect(server.stats.accepted == 1 && server.stats.requestsIn == 5 && server.stats.incomingOpen == 1)
            }
        }

        /// Three requests in one write are answered in order, one at a time: the
        /// second reaches the handler only once the first is answered, even when the
        /// handler answers from a later callback.
        @Test(arguments: LoopBackendKind.allCases)
        func pipelinedRequestsAreAnsweredInOrder(kind: LoopBackendKind) throws {
            try withTcpServer(kind) { loop, server in
                var held: [TcpRequest] = []
                server.onRequest = { held.append($0) }
                let client = try TestClient(port: server.port)
                client.send("one\ntwo\nthree\n")
                var lines: [String] = []
                for expected in ["one", "two", "three"] {
                    try runUntil(loop) { held.count == 1 }
                    #expect(text(held[0].bytes) == expected + "\n")
                    // Nothing more reaches the handler while this one is unanswered.
                    try loop.runOnce()
                    #expect(held.count == 1)
                    let request = held.removeFirst()
                    #expect(server.reply(upper(request.bytes), to: request))
                    lines.append(try awaitLine(loop, client))
                }
                #expect(lines == ["ONE", "TWO", "THREE"])
                // A handler that answers at once gets them in order too.
                server.echo()
                client.send("four\nfive\nsix\n")
                #expect(
                    try [awaitLine(loop, client), awaitLine(loop, client), awaitLine(loop, client)] == [
                        "FOUR", "FIVE", "SIX",
                    ])
                #expect(server.stats.requestsIn == 6)
            }
        }

        /// A client that closes its sending side after its request still gets the
        /// reply; then the server closes the connection.
        @Test(arguments: LoopBackendKind.allCases)
        func halfClosedClientGetsItsReply(kind: LoopBackendKind) throws {
            try withTcpServer(kind) { loop, server in
                var held: [TcpRequest] = []
                server.onRequest = { held.append($0) }
                let client = try TestClient(port: server.port)
                client.send("last words\n")
                client.shutdownWrite()
                try runUntil(loop) { held.count == 1 }
                // The end of the stream is read before the answer: the answer still goes out.
                try runFor(loop, ms: 50)
                #expect(server.reply(bytes("answer\n"), to: held[0]))
                #expect(try awaitLine(loop, client) == "answer")
                try awaitClosed(loop, client)
                #expect(!client.resetByPeer)
                #expect(server.stats.incomingOpen == 0 && server.stats.truncated == 0)
            }
        }

        /// A message that says it is the last (`quit`) is answered, then the connection closes.
        @Test(arguments: LoopBackendKind.allCases)
        func aLastMessageClosesAfterItsReply(kind: LoopBackendKind) throws {
            try withTcpServer(kind) { loop, server in
                server.echo()
                let client = try TestClient(port: server.port)
                client.send("quit\nignored\n")
                #expect(try awaitLine(loop, client) == "QUIT")
                try awaitClosed(loop, client)
                #expect(server.stats.requestsIn == 1 && server.stats.incomingOpen == 0)
            }
        }
    }
}
